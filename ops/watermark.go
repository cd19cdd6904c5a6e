package ops

import "math"

// WatermarkTracker combines per-source watermarks into the watermark of one
// shard, as Flink's WatermarkStrategy.forBoundedOutOfOrderness with
// withIdleness does. It is the one watermark rule of qstream: the engine's
// shards run it over their Publishers' watermarks, and library users run it
// over their own sources.
//
// A source's watermark is the largest event time it has sent minus the
// configured out-of-orderness. The shard's watermark is the minimum over
// active sources: a source becomes active with its first event; a source
// that has shown no activity for longer than the idle timeout (in
// processing time) stops holding the watermark back, and holds it again
// from its next activity on. The combined watermark never goes backwards:
// while a resumed source catches up, the watermark stays where it was, and
// the resumed source's events behind it are late. If every active source is
// idle the watermark stays put.
//
// A source that sent event time math.MaxInt64 has ended: its watermark is
// +∞ (out-of-orderness does not apply) and, its end being a fact rather
// than silence, it is never idle; once every other source has ended or is
// idle, the watermark is +∞. A detached source (Detach, CloseSource)
// stopped without ending: it no longer holds the watermark back, nor does
// it count as active, until it sends again. EndOfInput moves the watermark
// to +∞ (math.MaxInt64) whatever the sources.
//
// Each call either records (Advance, Touch, Detach: O(1), no re-evaluation)
// or records and re-evaluates (Observe, CloseSource, Tick: O(number of
// sources seen)); a caller that records several facts re-evaluates once
// with Tick. Activity is an event (Observe) or whatever the caller counts
// as a sign of life (Touch: the engine counts a Publisher's flushes).
//
// The tracker never reads a clock: the caller passes processing time
// (monotonic nanoseconds, any origin). Before any event the watermark is
// math.MinInt64. Its checkpointed state is the combined watermark
// (Watermark, Restore); the sources re-announce theirs after a restart. It
// is not safe for concurrent use (one per shard) and allocates nothing
// after NewWatermarkTracker.
type WatermarkTracker struct {
	oooNs, idleNs int64
	src           []wmSource
	seen          int // sources 0..seen−1 have sent something
	wm            int64
}

type wmSource struct {
	maxTs   int64 // largest event time seen
	lastNow int64 // processing time of the last activity
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

// Restore sets the combined watermark to watermarkNs, as saved by a
// checkpoint (Watermark), before any source has sent anything again: the
// watermark never goes below it.
func (t *WatermarkTracker) Restore(watermarkNs int64) { t.wm = watermarkNs }

// Observe records an event of source at eventTsNs, received at processing
// time nowNs, and returns the combined watermark and whether it advanced.
// It is Advance, Touch and Tick in one. A source index outside the tracker
// is ignored.
func (t *WatermarkTracker) Observe(source int, eventTsNs, nowNs int64) (watermark int64, advanced bool) {
	if source < 0 || source >= len(t.src) {
		return t.wm, false
	}
	t.Advance(source, eventTsNs)
	t.src[source].lastNow = nowNs
	return t.recompute(nowNs)
}

// Advance records that source has sent event time eventTsNs (math.MaxInt64:
// the source ended), without re-evaluating: the event-time half of Observe.
// A detached source holds the watermark again. A source index outside the
// tracker is ignored.
func (t *WatermarkTracker) Advance(source int, eventTsNs int64) {
	if source < 0 || source >= len(t.src) {
		return
	}
	s := &t.src[source]
	if !s.seen || eventTsNs > s.maxTs {
		s.maxTs = eventTsNs
	}
	s.seen, s.closed = true, false
	t.seen = max(t.seen, source+1)
}

// Touch records activity of source at processing time nowNs without an
// event time and without re-evaluating: the processing-time half of
// Observe. It does not make a source that never sent an event active.
func (t *WatermarkTracker) Touch(source int, nowNs int64) {
	if source >= 0 && source < len(t.src) {
		t.src[source].lastNow = nowNs
	}
}

// Tick re-evaluates idleness at processing time nowNs (call it periodically
// when no events arrive, and after Advance, Touch or Detach) and returns
// the watermark and whether it advanced.
func (t *WatermarkTracker) Tick(nowNs int64) (watermark int64, advanced bool) {
	return t.recompute(nowNs)
}

// Detach records that source stopped without ending, without
// re-evaluating: it no longer holds the watermark back (until it sends
// again).
func (t *WatermarkTracker) Detach(source int) {
	if source >= 0 && source < len(t.src) {
		t.src[source].closed = true
	}
}

// Detached reports whether source was detached and has not sent since.
func (t *WatermarkTracker) Detached(source int) bool {
	return source >= 0 && source < len(t.src) && t.src[source].closed
}

// CloseSource marks a finished source: it no longer holds the watermark
// back (until it sends again). It is Detach and Tick in one.
func (t *WatermarkTracker) CloseSource(source int, nowNs int64) (watermark int64, advanced bool) {
	t.Detach(source)
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
// (never seen, detached, or idle at processing time nowNs).
func (t *WatermarkTracker) Idle(source int, nowNs int64) bool {
	if source < 0 || source >= len(t.src) {
		return true
	}
	return !t.holds(&t.src[source], nowNs)
}

// SourceWatermark returns the watermark of one source alone
// (math.MinInt64 before its first event, math.MaxInt64 once it ended).
func (t *WatermarkTracker) SourceWatermark(source int) int64 {
	if source < 0 || source >= len(t.src) || !t.src[source].seen {
		return math.MinInt64
	}
	return t.sourceWm(&t.src[source])
}

func (t *WatermarkTracker) sourceWm(s *wmSource) int64 {
	if s.maxTs == math.MaxInt64 {
		return math.MaxInt64 // ended
	}
	return wmSatSub(s.maxTs, t.oooNs)
}

func (t *WatermarkTracker) holds(s *wmSource, nowNs int64) bool {
	if !s.seen || s.closed {
		return false
	}
	return t.idleNs <= 0 || s.maxTs == math.MaxInt64 || nowNs-s.lastNow <= t.idleNs
}

func (t *WatermarkTracker) recompute(nowNs int64) (int64, bool) {
	m, any := int64(math.MaxInt64), false
	for i := range t.src[:t.seen] {
		s := &t.src[i]
		if !t.holds(s, nowNs) {
			continue
		}
		any = true
		m = min(m, t.sourceWm(s))
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
