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

func (w *WindowOperator) recSuffixOf(slot int) []aggState {
	if w.recSuffix == nil {
		return nil
	}
	return w.recSuffix[int64(slot)*w.bufCap : int64(slot+1)*w.bufCap]
}

func (w *WindowOperator) slideEvent(slot int, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	s := &w.slots[slot]
	if r := w.bufRoom(slot); r != codec.ReasonNone {
		return dst, r
	}
	at := w.bufUpper(slot, ts)
	same := at > s.BufHead && w.rec(slot, at-1).Ts == ts
	w.bufInsert(slot, at, winRec{Ts: ts, X: x, V: v})
	if at < s.Sw.Hi {
		s.Sw.Dirty = 1
	}
	if ts >= w.fwm { // ahead of the chain
		if at < s.Cursor {
			s.Cursor++
		}
		w.slideKey(slot)
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
		first = w.bufLower(slot, ts)
	} else if w.spec.HopNs == 0 {
		w.rec(slot, at).Point = 1
	}
	dst = w.slideRefire(slot, first, ts+w.sizeNs, seq, ts, ingest, dst)
	w.slideKey(slot)
	return dst, codec.ReasonNone
}

// slideKey moves Cursor past trades that cannot be points and puts the slot
// in the heap for its next point.
func (w *WindowOperator) slideKey(slot int) {
	s := &w.slots[slot]
	end := s.BufHead + s.BufN
	if s.HasPoint != 0 {
		next := s.LastPoint + w.slideNs
		for s.Cursor < end && w.rec(slot, s.Cursor).Ts < next {
			s.Cursor++
		}
	}
	if s.Cursor < end {
		w.heapSet(slot, w.rec(slot, s.Cursor).Ts+1)
	} else {
		w.heapRemove(slot)
	}
}

// slideWindow aggregates buffered trades [lo, hi) with sw.
// The result points into sw or the operator's scratch: read it before the
// next call.
func (w *WindowOperator) slideWindow(slot int, sw *winSwag, suf []aggState, lo, hi int64) *aggState {
	w.recSlide(slot, sw, suf, lo, hi)
	if !w.inv && sw.Lo < sw.B {
		r := &w.qAgg
		*r = suf[sw.Lo%w.bufCap]
		r.merge(w.mask, &sw.Back)
		return r
	}
	return &sw.Back
}

func (w *WindowOperator) recSlide(slot int, sw *winSwag, suf []aggState, lo, hi int64) {
	s := &w.slots[slot]
	if sw.Dirty != 0 || lo < sw.Lo || lo > sw.Hi || hi < sw.Hi || sw.Lo < s.BufHead {
		w.recRebuild(slot, sw, lo, hi)
		return
	}
	for sw.Hi < hi {
		r := w.rec(slot, sw.Hi)
		sw.Back.add(w.mask, r.X, r.V, r.Ts, 0, 0)
		sw.Hi++
	}
	for sw.Lo < lo {
		if w.inv {
			r := w.rec(slot, sw.Lo)
			var item aggState
			item.add(w.mask, r.X, r.V, r.Ts, 0, 0)
			sw.Back.sub(w.mask, &item)
			sw.Evicts++
		} else if sw.Lo == sw.B { // flip
			for q := sw.Hi - 1; q >= sw.Lo; q-- {
				r := w.rec(slot, q)
				var t aggState
				t.add(w.mask, r.X, r.V, r.Ts, 0, 0)
				if q+1 < sw.Hi {
					t.merge(w.mask, &suf[(q+1)%w.bufCap])
				}
				suf[q%w.bufCap] = t
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
		w.recRebuild(slot, sw, lo, hi)
	}
}

func (w *WindowOperator) recRebuild(slot int, sw *winSwag, lo, hi int64) {
	*sw = winSwag{Lo: lo, Hi: lo, B: lo}
	for sw.Hi < hi {
		r := w.rec(slot, sw.Hi)
		sw.Back.add(w.mask, r.X, r.V, r.Ts, 0, 0)
		sw.Hi++
	}
}

// slideEval appends the evaluation at point abs index c (the first trade at
// its time) computed with sw.
func (w *WindowOperator) slideEval(slot int, c int64, sw *winSwag, suf []aggState, timing Timing, keyed bool,
	seq uint64, ts, ingest int64, dst []Output) []Output {
	r := w.rec(slot, c)
	e := r.Ts
	lo, hi := w.bufUpper(slot, e-w.sizeNs), w.bufUpper(slot, e)
	a := w.slideWindow(slot, sw, suf, lo, hi)
	val := math.NaN()
	if w.kind == AggPercentile {
		val = w.pctRecords(slot, lo, hi)
	}
	r = w.rec(slot, c)
	ord := r.Fires
	if keyed {
		r.Fires++
	}
	return w.emit(dst, slot, a, e-w.sizeNs, e, e, timing, uint64(ord), seq, ts, ingest, val, keyed)
}

// slideFire evaluates the slot's next point (OnWatermark).
func (w *WindowOperator) slideFire(slot int, seq uint64, ts int64, dst []Output) []Output {
	s := &w.slots[slot]
	c := s.Cursor
	e := w.rec(slot, c).Ts
	w.rec(slot, c).Point = 1
	dst = w.slideEval(slot, c, &s.Sw, w.recSuffixOf(slot), TimingOnTime, true, seq, ts, 0, dst)
	s.LastPoint, s.HasPoint = e, 1
	s.Cursor = w.bufUpper(slot, e)
	w.slideKey(slot)
	return dst
}

// slideRefire re-evaluates the points among trades [from, Cursor) with time
// before until (late).
func (w *WindowOperator) slideRefire(slot int, from, until int64, seq uint64, ts, ingest int64, dst []Output) []Output {
	s := &w.slots[slot]
	sw := winSwag{Dirty: 1}
	suf := w.tmpSuffix[:w.bufCap]
	for i := from; i < s.Cursor; i++ {
		r := w.rec(slot, i)
		if r.Ts >= until {
			break
		}
		if r.Point != 0 {
			dst = w.slideEval(slot, i, &sw, suf, TimingLate, true, seq, ts, ingest, dst)
		}
	}
	return dst
}

// slideOpen appends the trailing window at the symbol's latest trade.
func (w *WindowOperator) slideOpen(slot int, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	s := &w.slots[slot]
	if s.BufN == 0 {
		return dst, st
	}
	hi := s.BufHead + s.BufN
	e := w.rec(slot, hi-1).Ts
	lo := w.bufUpper(slot, e-w.sizeNs)
	sw := winSwag{Dirty: 1}
	a := w.slideWindow(slot, &sw, w.tmpSuffix[:w.bufCap], lo, hi)
	if mode == winOpenStats {
		return dst, w.appendStats(st, a, e-w.sizeNs, e, e)
	}
	val := math.NaN()
	if w.kind == AggPercentile {
		val = w.pctRecords(slot, lo, hi)
	}
	return w.emit(dst, slot, a, e-w.sizeNs, e, e, TimingEarly, 0, seq, ts, ingest, val, false), st
}
