package ops

import (
	"math"

	"qstream/codec"
)

// Sliding (trailing) windows keep the symbol's trades in the sorted buffer.
// Evaluation points form a chain in event time: the first trade time, then
// each first trade time at or after the previous point + SLIDE (every
// distinct trade time without SLIDE). A point e is evaluated over
// (e−SIZE, e] once the firing watermark is past e. Cursor is the first
// buffered trade the chain has not passed; a winSwag over buffered trades
// slides from point to point, so consecutive evaluations cost O(1)
// amortized (two-stacks, or subtract-on-evict for invertible aggregations).
//
// A late trade (behind the firing watermark, within the allowed lateness)
// re-fires every evaluated point whose window contains it, and without
// SLIDE becomes a point itself (evaluated at once); with SLIDE it never
// becomes a point, so the chain does not change retroactively.

func (w *WindowOperator) slideEvent(slot int, s *winSym, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	if r := w.bufRoom(s); r != codec.ReasonNone {
		return dst, r
	}
	if !w.bufReserve(s) {
		return dst, w.refuseFull()
	}
	at := w.bufUpper(s, ts)
	same := at > s.BufHead && w.rec(s, at-1).Ts == ts
	w.bufInsert(s, at, winRec{Ts: ts, X: x, V: v})
	if at < s.Sw.Hi {
		s.Sw.Dirty = 1
	}
	if ts >= w.fwm { // ahead of the chain
		if at < s.Cursor {
			s.Cursor++
		}
		w.slideKey(slot, s)
		return dst, codec.ReasonNone
	}
	// Late: keep it out of the chain, re-fire what it changes.
	if at < s.Cursor {
		s.Cursor++
	} else {
		s.Cursor = at + 1
	}
	first := at
	if same {
		first = w.bufLower(s, ts)
	} else if w.spec.HopNs == 0 {
		w.rec(s, at).Point = 1
	}
	dst = w.slideRefire(slot, s, first, ts+w.sizeNs, seq, ts, ingest, dst)
	w.slideKey(slot, s)
	return dst, codec.ReasonNone
}

// slideKey moves Cursor past trades that cannot be points and puts the slot
// in the heap for its next point.
func (w *WindowOperator) slideKey(slot int, s *winSym) {
	end := s.BufHead + s.BufN
	next := s.LastPoint + w.slideNs
	for ; s.Cursor < end; s.Cursor++ {
		if t := w.rec(s, s.Cursor).Ts; s.HasPoint == 0 || t >= next {
			w.heapSet(slot, t+1)
			return
		}
	}
	w.heapRemove(slot)
}

// slideWindow aggregates buffered trades [lo, hi) with sw, its suffix
// aggregates in tmp (temporary sweeps) or, when tmp is nil, beside the
// symbol's trades (its own aggregator s.Sw). The result points into sw or
// the operator's scratch: read it before the next call.
func (w *WindowOperator) slideWindow(s *winSym, sw *winSwag, tmp []aggState, lo, hi int64) *aggState {
	w.recSlide(s, sw, tmp, lo, hi)
	if !w.inv && sw.Lo < sw.B {
		r := &w.qAgg
		*r = *w.recSufAt(s, tmp, sw.Lo)
		r.merge(w.mask, &sw.Back)
		return r
	}
	return &sw.Back
}

func (w *WindowOperator) recSlide(s *winSym, sw *winSwag, tmp []aggState, lo, hi int64) {
	if sw.Dirty != 0 || lo < sw.Lo || lo > sw.Hi || hi < sw.Hi || sw.Lo < s.BufHead {
		w.recRebuild(s, sw, lo, hi)
		return
	}
	for sw.Hi < hi {
		r := w.rec(s, sw.Hi)
		sw.Back.add(w.mask, r.X, r.V, r.Ts, 0, 0)
		sw.Hi++
	}
	for sw.Lo < lo {
		if w.inv {
			r := w.rec(s, sw.Lo)
			var item aggState
			item.add(w.mask, r.X, r.V, r.Ts, 0, 0)
			sw.Back.sub(w.mask, &item)
			sw.Evicts++
		} else if sw.Lo == sw.B { // flip
			for q := sw.Hi - 1; q >= sw.Lo; q-- {
				r := w.rec(s, q)
				var t aggState
				t.add(w.mask, r.X, r.V, r.Ts, 0, 0)
				if q+1 < sw.Hi {
					t.merge(w.mask, w.recSufAt(s, tmp, q+1))
				}
				*w.recSufAt(s, tmp, q) = t
			}
			sw.B = sw.Hi
			sw.Back = aggState{}
		}
		sw.Lo++
	}
	if sw.B < sw.Lo {
		sw.B = sw.Lo
	}
	if w.inv && sw.Evicts >= hi-lo {
		w.recRebuild(s, sw, lo, hi)
	}
}

func (w *WindowOperator) recRebuild(s *winSym, sw *winSwag, lo, hi int64) {
	*sw = winSwag{Lo: lo, Hi: lo, B: lo}
	for sw.Hi < hi {
		r := w.rec(s, sw.Hi)
		sw.Back.add(w.mask, r.X, r.V, r.Ts, 0, 0)
		sw.Hi++
	}
}

// slideEval appends the evaluation at point abs index c (the first trade at
// its time, r) computed with sw.
func (w *WindowOperator) slideEval(slot int, s *winSym, c int64, r *winRec, sw *winSwag, tmp []aggState, timing Timing, keyed bool,
	seq uint64, ts, ingest int64, dst []Output) []Output {
	e := r.Ts
	lo, hi := w.bufUpper(s, e-w.sizeNs), w.bufUpper(s, e)
	a := w.slideWindow(s, sw, tmp, lo, hi)
	val := math.NaN()
	if w.kind == AggPercentile {
		val = w.pctRecords(s, lo, hi)
	}
	ord := r.Fires // r is still c: nothing above moves trades
	if keyed {
		r.Fires++
	}
	return w.emit(dst, slot, a, e-w.sizeNs, e, e, timing, uint64(ord), seq, ts, ingest, val, keyed)
}

// slideFire evaluates the slot's next point (OnWatermark).
func (w *WindowOperator) slideFire(slot int, s *winSym, seq uint64, ts int64, dst []Output) []Output {
	c := s.Cursor
	r := w.rec(s, c)
	e := r.Ts
	r.Point = 1
	dst = w.slideEval(slot, s, c, r, &s.Sw, nil, TimingOnTime, true, seq, ts, 0, dst)
	s.LastPoint, s.HasPoint = e, 1
	s.Cursor = w.bufUpper(s, e)
	w.slideKey(slot, s)
	// Once the slot has nothing more due, return the trades no evaluation
	// can need any more, but not those the aggregator holds: it evicts them
	// itself on its next slide.
	if !w.slotDue(slot) {
		keep := int64(math.MaxInt64)
		if s.Sw.Dirty == 0 && s.Sw.Hi > s.Sw.Lo {
			keep = s.Sw.Lo
		}
		w.bufPurgeBefore(s, keep)
	}
	return dst
}

// slideIdle releases the buffer of a symbol whose trades can no longer be
// in any window (its newest is behind the watermark by SIZE plus the
// allowed lateness), with its aggregator: if it trades again soon enough
// for its next window to overlap the last one, that window is summed
// afresh instead of slid to (the same value up to rounding).
func (w *WindowOperator) slideIdle(s *winSym) {
	// LastTs is the newest buffered trade's time while any is buffered.
	if s.BufN == 0 || s.Cursor != s.BufHead+s.BufN || s.LastTs > wmSatSub(wmSatSub(w.wm, w.lateNs), w.sizeNs) {
		return
	}
	s.Sw.Dirty = 1
	w.bufPurge(s)
}

// slideTmp returns scratch suffix storage for a temporary sweep over the
// buffer (nil for invertible aggregations, which need none).
func (w *WindowOperator) slideTmp() []aggState {
	return w.tmpSuffix // nil for invertible aggregations
}

// slideRefire re-evaluates the points among trades [from, Cursor) with time
// before until (late).
func (w *WindowOperator) slideRefire(slot int, s *winSym, from, until int64, seq uint64, ts, ingest int64, dst []Output) []Output {
	sw := winSwag{Dirty: 1}
	tmp := w.slideTmp()
	for i := from; i < s.Cursor; i++ {
		r := w.rec(s, i)
		if r.Ts >= until {
			break
		}
		if r.Point != 0 {
			dst = w.slideEval(slot, s, i, r, &sw, tmp, TimingLate, true, seq, ts, ingest, dst)
		}
	}
	return dst
}

// slideOpen appends the trailing window at the symbol's latest trade.
func (w *WindowOperator) slideOpen(slot int, s *winSym, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	if s.BufN == 0 {
		return dst, st
	}
	hi := s.BufHead + s.BufN
	e := w.rec(s, hi-1).Ts
	lo := w.bufUpper(s, e-w.sizeNs)
	sw := winSwag{Dirty: 1}
	a := w.slideWindow(s, &sw, w.slideTmp(), lo, hi)
	if mode == winOpenStats {
		return dst, w.appendStats(st, a, e-w.sizeNs, e, e)
	}
	val := math.NaN()
	if w.kind == AggPercentile {
		val = w.pctRecords(s, lo, hi)
	}
	return w.emit(dst, slot, a, e-w.sizeNs, e, e, TimingEarly, 0, seq, ts, ingest, val, false), st
}
