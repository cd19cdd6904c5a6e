package ops

import "math"

// WatermarkTracker combines per-source watermarks into the watermark of one
// shard, as Flink's WatermarkStrategy.forBoundedOutOfOrderness with
// withIdleness does.
//
// A source's watermark is the largest event time it has sent minus the
// configured out-of-orderness. The shard's watermark is the minimum over
// active sources: a source becomes active with its first event; a source
// that has sent nothing for longer than the idle timeout (in processing
// time) stops holding the watermark back, and holds it again from its next
// event on. The combined watermark never goes backwards: while a resumed
// source catches up, the watermark stays where it was, and the resumed
// source's events behind it are late. If every active source is idle the
// watermark stays put. EndOfInput moves it to +∞ (math.MaxInt64).
//
// The tracker never reads a clock: the caller passes processing time
// (monotonic nanoseconds, any origin) to Observe and Tick. Before any event
// the watermark is math.MinInt64. It is not safe for concurrent use (one
// per shard). Observe and Tick cost O(number of sources seen).
type WatermarkTracker struct {
	oooNs, idleNs int64
	src           []wmSource
	seen          int // sources 0..seen−1 have sent something
	wm            int64
}

type wmSource struct {
	maxTs   int64 // largest event time seen
	lastNow int64 // processing time of the last event
	seen    bool
	closed  bool
}

// MaxWatermarkSources bounds the sources of one tracker.
const MaxWatermarkSources = 1 << 16

// NewWatermarkTracker returns a tracker for sources 0..maxSources−1 (at
// least 1, at most MaxWatermarkSources). outOfOrdernessNs (>= 0) is the
// bounded disorder of each source; idleTimeoutNs <= 0 disables idleness.
func NewWatermarkTracker(maxSources int, outOfOrdernessNs, idleTimeoutNs int64) *WatermarkTracker {
	maxSources = min(max(maxSources, 1), MaxWatermarkSources)
	return &WatermarkTracker{
		oooNs:  max(outOfOrdernessNs, 0),
		idleNs: idleTimeoutNs,
		src:    make([]wmSource, maxSources),
		wm:     math.MinInt64,
	}
}

// Watermark returns the current combined watermark.
func (t *WatermarkTracker) Watermark() int64 { return t.wm }

// Observe records an event of source at eventTsNs, received at processing
// time nowNs, and returns the combined watermark and whether it advanced.
// A source index outside the tracker is ignored.
func (t *WatermarkTracker) Observe(source int, eventTsNs, nowNs int64) (watermark int64, advanced bool) {
	if source < 0 || source >= len(t.src) {
		return t.wm, false
	}
	s := &t.src[source]
	if !s.seen || eventTsNs > s.maxTs {
		s.maxTs = eventTsNs
	}
	s.seen, s.closed, s.lastNow = true, false, nowNs
	t.seen = max(t.seen, source+1)
	return t.recompute(nowNs)
}

// Tick re-evaluates idleness at processing time nowNs (call it periodically
// when no events arrive) and returns the watermark and whether it advanced.
func (t *WatermarkTracker) Tick(nowNs int64) (watermark int64, advanced bool) {
	return t.recompute(nowNs)
}

// CloseSource marks a finished source: it no longer holds the watermark
// back (until it sends again).
func (t *WatermarkTracker) CloseSource(source int, nowNs int64) (watermark int64, advanced bool) {
	if source >= 0 && source < len(t.src) {
		t.src[source].closed = true
	}
	return t.recompute(nowNs)
}

// EndOfInput moves the watermark to +∞ (math.MaxInt64): every open window
// fires. It reports whether the watermark advanced.
func (t *WatermarkTracker) EndOfInput() (watermark int64, advanced bool) {
	adv := t.wm != math.MaxInt64
	t.wm = math.MaxInt64
	return t.wm, adv
}

// Idle reports whether source is currently not holding the watermark back
// (never seen, closed, or idle at processing time nowNs).
func (t *WatermarkTracker) Idle(source int, nowNs int64) bool {
	if source < 0 || source >= len(t.src) {
		return true
	}
	return !t.holds(&t.src[source], nowNs)
}

// SourceWatermark returns the watermark of one source alone
// (math.MinInt64 before its first event).
func (t *WatermarkTracker) SourceWatermark(source int) int64 {
	if source < 0 || source >= len(t.src) || !t.src[source].seen {
		return math.MinInt64
	}
	return wmSatSub(t.src[source].maxTs, t.oooNs)
}

func (t *WatermarkTracker) holds(s *wmSource, nowNs int64) bool {
	if !s.seen || s.closed {
		return false
	}
	return t.idleNs <= 0 || nowNs-s.lastNow <= t.idleNs
}

func (t *WatermarkTracker) recompute(nowNs int64) (int64, bool) {
	m, any := int64(math.MaxInt64), false
	for i := range t.src[:t.seen] {
		s := &t.src[i]
		if !t.holds(s, nowNs) {
			continue
		}
		any = true
		m = min(m, wmSatSub(s.maxTs, t.oooNs))
	}
	if any && m > t.wm {
		t.wm = m
		return t.wm, true
	}
	return t.wm, false
}

// wmSatSub is a − b for b >= 0, saturating at math.MinInt64.
func wmSatSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}
