package feeds

import (
	"fmt"

	"qstream/codec"
)

// GapDetector checks the sequence numbers of a feed's events. It is called
// for every decoded event, in order, on the feed's goroutine, and keeps its
// state across reconnects so that it sees what a disconnection lost.
type GapDetector interface {
	// Check observes ev and reports the gap that ev reveals, if any.
	Check(ev *codec.Event) (SeqGap, bool)
}

// SeqGap is a run of missing sequence numbers.
type SeqGap struct {
	Symbol  codec.Symbol
	Last    uint64 // the last number before the gap (0 if the detector does not know it)
	Next    uint64 // the number that revealed the gap (0 if unknown)
	Missing uint64 // how many numbers are missing
	Msg     int64  // the feed's message number that revealed it (set by the feed)
}

// SeqGapError is the error passed to Publisher.Reject with
// ReasonSequenceGap.
type SeqGapError struct{ Gap SeqGap }

func (e *SeqGapError) Error() string {
	g := e.Gap
	if g.Next != 0 {
		return fmt.Sprintf("ws: sequence gap: symbol %d: %d missing between %d and %d", g.Symbol, g.Missing, g.Last, g.Next)
	}
	return fmt.Sprintf("ws: sequence gap: symbol %d: %d missing", g.Symbol, g.Missing)
}

// Reason returns codec.ReasonSequenceGap.
func (e *SeqGapError) Reason() codec.Reason { return codec.ReasonSequenceGap }

// seqGapDetector checks Event.Seq per symbol with a codec.SeqTracker.
type seqGapDetector struct{ t *codec.SeqTracker }

// SeqGapDetector returns a NewGapDetector for WSConfig that checks
// Event.Seq per symbol with a codec.SeqTracker in the given mode. Use
// codec.SeqStrict when the feed's numbers count every message of a symbol
// (Binance trade and aggTrade ids, Coinbase `sequence` on the full
// channel); codec.SeqMonotonic only reports nothing but tolerates the
// skipping numbers of Coinbase's matches and ticker channels. Events with
// Seq 0 carry no number and are not checked.
func SeqGapDetector(mode codec.SeqMode) func(WSAdapter) GapDetector {
	return func(WSAdapter) GapDetector { return &seqGapDetector{t: codec.NewSeqTracker(mode)} }
}

func (d *seqGapDetector) Check(ev *codec.Event) (SeqGap, bool) {
	if ev.Seq == 0 {
		return SeqGap{}, false
	}
	last, _ := d.t.Last(ev.Symbol)
	st, missing := d.t.Observe(ev.Symbol, ev.Seq)
	if st != codec.SeqGap {
		return SeqGap{}, false
	}
	return SeqGap{Symbol: ev.Symbol, Last: last, Next: ev.Seq, Missing: missing}, true
}

// adapterGapper is an adapter that tracks its own sequence (codec.Coinbase
// tracks trade_id per product) and reports the gap before the event of its
// last Decode.
type adapterGapper interface {
	Gap() uint64
}

type adapterGapDetector struct{ a adapterGapper }

// AdapterGapDetector is a NewGapDetector for WSConfig that reports the gaps
// the adapter finds itself: codec.Coinbase checks trade_id, which is
// consecutive per product on the matches channel, where `sequence` is not.
// For an adapter without a Gap() uint64 method it returns nil (no
// detection). The adapter must yield at most one event per message.
func AdapterGapDetector(a WSAdapter) GapDetector {
	g, ok := a.(adapterGapper)
	if !ok {
		return nil
	}
	return &adapterGapDetector{a: g}
}

func (d *adapterGapDetector) Check(ev *codec.Event) (SeqGap, bool) {
	m := d.a.Gap()
	if m == 0 {
		return SeqGap{}, false
	}
	return SeqGap{Symbol: ev.Symbol, Missing: m}, true
}
