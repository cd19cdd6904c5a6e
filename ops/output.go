// Package ops holds qstream's operators: incremental indicators, event-time
// windows and aggregations, complex-event patterns and news analytics. They
// are pure event-time state machines: an event goes in, per-symbol state is
// updated, outputs are appended to a caller-owned slice. They know nothing of
// shards, threads, feeds or sinks and never read the wall clock, which is what
// makes a replay byte-identical.
package ops

import (
	"qstream/codec"
)

// OutKind says which operator produced an Output.
type OutKind uint8

// Output kinds.
const (
	OutIndicators OutKind = iota + 1 // Values[0:NValues] are the configured indicators of one trade
	OutWindow                        // a window result: StartNs, EndNs, Count, Value (or OHLCV in Values[0:5])
	OutPattern                       // a complex-event match
	OutNews                          // a news analytics result
	OutMovement                      // a price movement (movement.go): Value the move, Values[0:2] reference price and ts
)

// Timing is a window pane's timing, as Beam names it.
type Timing uint8

// Pane timings.
const (
	TimingOnTime Timing = iota // the watermark reached the end of the window
	TimingEarly                // an early firing before the watermark got there
	TimingLate                 // a re-firing caused by a late event within the allowed lateness
)

func (t Timing) String() string {
	switch t {
	case TimingEarly:
		return "early"
	case TimingLate:
		return "late"
	}
	return "on_time"
}

// MaxValues bounds the per-output value vector (indicators per stream).
const MaxValues = 16

// Output is one operator result. It is fixed-size and pointer-free so that
// output rings carry it by value; NaN in a value means null (warm-up, an
// empty window).
type Output struct {
	Kind     OutKind
	Timing   Timing
	NValues  uint8
	_        uint8
	Op       uint16 // index of the operator spec that produced it (window spec, pattern)
	_        uint16
	Symbol   codec.Symbol
	_        uint32
	Seq      uint64 // input sequence of the event whose processing produced this output
	Key      uint64 // deterministic idempotency key: hash of operator, symbol, and window end or input seq
	TsNs     int64  // event time of the triggering event (indicators) or of the firing
	Price    float64
	Volume   float64
	StartNs  int64
	EndNs    int64
	Count    int64
	Value    float64
	IngestNs int64 // the triggering event's ingest stamp, carried for end-to-end latency
	Values   [MaxValues]float64
}
