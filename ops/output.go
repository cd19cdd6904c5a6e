// Package ops holds qstream's operators: incremental indicators, event-time
// windows and aggregations, complex-event patterns and news analytics. They
// are pure event-time state machines: an event goes in, per-symbol state is
// updated, outputs are appended to a caller-owned slice. They know nothing of
// shards, threads, feeds or sinks and never read the wall clock, which is what
// makes a replay byte-identical.
package ops

import (
	"unsafe"

	"qstream/codec"
)

// OutKind says which operator produced an Output.
type OutKind uint8

// Output kinds.
const (
	OutIndicators OutKind = iota + 1 // Values[0:NValues] are the configured indicators of one trade
	OutWindow                        // a window result: StartNs, EndNs, Count, Value (or OHLCV in Values[0:5])
	OutPattern                       // a complex-event match
	OutNews                          // a news analytics result: its JSON line is its text
	OutEvent                         // a signal, system or custom event: its JSON line is its text
	OutMovement                      // a price movement (movement.go): Value the move, Values[0:2] reference price and ts
	OutText                          // a chunk of the text of the OutNews or OutEvent before it
)

// OutKinds is one more than the largest OutKind: tables indexed by kind.
const OutKinds = int(OutText) + 1

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

// OutputHeadroom is how much free capacity a batch of events (Pipeline.OnEvents)
// leaves in its output slice before it returns for its caller to drain the
// slice: a caller that preallocates its buffer and drains it whenever fewer
// than this many outputs fit does not make it grow (what one event rarely
// exceeds).
const OutputHeadroom = MaxValues * 8

// Output is one operator result. It is fixed-size and pointer-free so that
// output rings carry it by value; NaN in a value means null (warm-up, an
// empty window).
type Output struct {
	Kind     OutKind
	Timing   Timing
	NValues  uint8
	Stream   uint8  // the engine's stream index (engine.StreamID); 0 is its first stream
	Op       uint16 // index of the operator spec that produced it (window spec, pattern)
	_        uint16
	Symbol   codec.Symbol
	TextLen  uint32 // OutNews, OutEvent: the length of the text in the OutText outputs that follow
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

// # Outputs with text
//
// Outputs are fixed-size, so an output whose JSON line is variable (a news
// article's analysis, a signal's metadata) is a group: the OutNews or
// OutEvent output, whose TextLen is the length of its line, followed by
// TextOutputs(TextLen) OutText outputs that carry the line's bytes in
// Values, OutputTextChunk bytes each. A group is contiguous wherever
// outputs go (shard rings, the collector, the OutputHandler, sink queues and
// spill files): the engine delivers whole groups only, and consumers step
// over one with GroupLen.

// OutputTextChunk is the number of text bytes one OutText output carries.
const OutputTextChunk = MaxValues * 8

// TextOutputs returns the number of OutText outputs that carry n bytes.
func TextOutputs(n int) int { return (n + OutputTextChunk - 1) / OutputTextChunk }

// GroupLen returns how many outputs the group that starts with o spans: 1
// for an output without text.
func GroupLen(o *Output) int {
	if o.Kind == OutNews || o.Kind == OutEvent {
		return 1 + TextOutputs(int(o.TextLen))
	}
	return 1
}

// CompleteGroups returns the length of the longest prefix of outs that ends
// on a group boundary.
func CompleteGroups(outs []Output) int {
	i := 0
	for i < len(outs) {
		n := GroupLen(&outs[i])
		if i+n > len(outs) {
			break
		}
		i += n
	}
	return i
}

func textView(o *Output) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&o.Values[0])), OutputTextChunk)
}

// AppendGroupText appends the text of the group that starts at outs[0] (an
// OutNews or OutEvent output followed by its OutText outputs), or nothing
// when the group is cut short.
func AppendGroupText(dst []byte, outs []Output) []byte {
	if len(outs) == 0 || GroupLen(&outs[0]) > len(outs) {
		return dst
	}
	n := int(outs[0].TextLen)
	for i := 1; n > 0; i++ {
		k := min(n, OutputTextChunk)
		dst = append(dst, textView(&outs[i])[:k]...)
		n -= k
	}
	return dst
}

// AppendTextGroup appends head (TextLen set here) and the OutText outputs
// that carry text to dst.
func AppendTextGroup(dst []Output, head *Output, text []byte) []Output {
	h := *head
	h.TextLen = uint32(len(text))
	dst = append(dst, h)
	for off := 0; off < len(text); {
		dst = append(dst, Output{Kind: OutText, Symbol: h.Symbol, Seq: h.Seq, TsNs: h.TsNs})
		off += copy(textView(&dst[len(dst)-1]), text[off:])
	}
	return dst
}
