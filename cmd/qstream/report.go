package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"qstream/engine"
	"qstream/feeds"
	"qstream/sinks"
)

// openDLQ returns replay's dead-letter handler: a line on stderr for the
// first maxStderrErrors rejections, and every one of them in the
// dead-letter file at path when one is given. close flushes and closes the
// file; call it after the engine has stopped.
func openDLQ(path string, stderr io.Writer) (*sinks.DeadLetters, func(), error) {
	d := &sinks.DeadLetters{Stderr: stderr, MaxShown: maxStderrErrors, Prefix: "qstream: ",
		More: "qstream: further rejected records are counted (and written to --dlq) but not shown"}
	if path == "" {
		return d, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: %w", err)
	}
	d.File = sinks.NewDLQWriter(f, nil)
	return d, func() {
		if err := d.File.Flush(); err != nil {
			fmt.Fprintf(stderr, "qstream: %v\n", err)
		}
		f.Close()
	}, nil
}

// statsJSON is the --emit stats object. Field order is fixed by the struct;
// maps are written with sorted keys by encoding/json, so it is deterministic.
type statsJSON struct {
	Messages uint64            `json:"messages"`
	ByType   map[string]uint64 `json:"by_type"`
	Errors   uint64            `json:"errors"`
	DLQ      uint64            `json:"dlq"`
	Symbols  int               `json:"symbols"`
	Outputs  uint64            `json:"outputs"`
	Rejected map[string]uint64 `json:"rejected"`
	Shards   int               `json:"shards"`
	// Sequence is the continuity of a sequenced input (the IEX-TP streams
	// of a pcap); absent for inputs without sequence numbers.
	Sequence *sequenceJSON `json:"sequence,omitempty"`
}

// sequenceJSON is "sequence" in --emit stats: what the input's sequence
// numbers said about it (feeds.PcapStats documents each counter).
type sequenceJSON struct {
	Sessions          uint64 `json:"sessions"`           // distinct streams
	Gaps              uint64 `json:"gaps"`               // forward jumps
	Missing           uint64 `json:"missing"`            // messages lost in them
	Overlaps          uint64 `json:"overlaps"`           // partial retransmissions (new messages kept)
	Duplicates        uint64 `json:"duplicates"`         // segments already seen whole
	DuplicateMessages uint64 `json:"duplicate_messages"` // messages passed over in overlaps and duplicates
	Resets            uint64 `json:"resets"`             // sequence resets (new epochs, all decoded)
	OffsetMismatches  uint64 `json:"offset_mismatches"`  // continuous sequence, discontinuous stream offset
}

// pcapSequence is the sequence object of a pcap replay.
func pcapSequence(st feeds.PcapStats) *sequenceJSON {
	return &sequenceJSON{
		Sessions:          st.Sessions,
		Gaps:              st.Gaps,
		Missing:           st.MissingMessages,
		Overlaps:          st.Overlaps,
		Duplicates:        st.DuplicateSegments,
		DuplicateMessages: st.DuplicateMessages,
		Resets:            st.Resets,
		OffsetMismatches:  st.OffsetMismatches,
	}
}

// writeStats writes the --emit stats object; seq is nil for inputs without
// sequence numbers.
func writeStats(w io.Writer, st engine.Stats, seq *sequenceJSON) error {
	js := statsJSON{
		Messages: st.Messages,
		ByType:   st.ByKind,
		Errors:   st.Errors,
		DLQ:      st.DeadLetters,
		Symbols:  st.Symbols,
		Outputs:  st.Outputs,
		Rejected: st.Rejected,
		Shards:   len(st.Shards),
		Sequence: seq,
	}
	b, err := json.Marshal(js)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
