package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"qstream/engine"
	"qstream/feeds"
	"qstream/sinks"
)

// deadLetterReporter is the engine's DeadLetterHandler for the CLI: a line on
// stderr for the first maxStderrErrors rejections, and every one of them in
// the dead-letter file when one is configured.
type deadLetterReporter struct {
	mu     sync.Mutex
	stderr io.Writer
	file   *sinks.DLQWriter
	n      int
	rec    sinks.DeadLetterRecord
}

func openDLQ(path string, stderr io.Writer) (*deadLetterReporter, func(), error) {
	r := &deadLetterReporter{stderr: stderr}
	if path == "" {
		return r, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: %w", err)
	}
	r.file = sinks.NewDLQWriter(f, nil)
	return r, func() {
		if err := r.file.Flush(); err != nil {
			fmt.Fprintf(stderr, "qstream: %v\n", err)
		}
		f.Close()
	}, nil
}

// HandleDeadLetter implements engine.DeadLetterHandler.
func (r *deadLetterReporter) HandleDeadLetter(dl *engine.DeadLetter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.n <= maxStderrErrors {
		where := dl.Pos.String()
		if dl.Event != nil {
			where = fmt.Sprintf("message %d", dl.Event.Seq)
		}
		msg := dl.Reason.String()
		if dl.Err != nil {
			msg = dl.Err.Error()
		}
		fmt.Fprintf(r.stderr, "qstream: %s: %s: %s\n", dl.Feed, where, msg)
		if r.n == maxStderrErrors {
			fmt.Fprintf(r.stderr, "qstream: further rejected records are counted (and written to --dlq) but not shown\n")
		}
	}
	if r.file != nil {
		r.rec = sinks.DeadLetterRecord{Reason: dl.Reason, Feed: dl.Feed, Pos: dl.Pos, Err: dl.Err, Raw: dl.Raw, Event: dl.Event}
		_ = r.file.Write(&r.rec) // sticky; reported at close
	}
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
