package ops

import (
	"math"

	"qstream/codec"
)

// The per-symbol trade buffer is a ring of bufCap winRec sorted by event
// time, ties in arrival order. Records have absolute indices (BufHead is the
// absolute index of the oldest); an insert shifts the later records up by
// one, so with bounded disorder it costs the displacement, not the length.

func (w *WindowOperator) rec(slot int, abs int64) *winRec {
	if w.bufMask != 0 {
		return &w.recs[int64(slot)*w.bufCap+abs&w.bufMask]
	}
	return &w.recs[int64(slot)*w.bufCap+abs%w.bufCap]
}

// bufUpper returns the absolute index of the first record with Ts > ts.
func (w *WindowOperator) bufUpper(slot int, ts int64) int64 {
	s := &w.slots[slot]
	lo, hi := s.BufHead, s.BufHead+s.BufN
	if lo == hi || w.rec(slot, hi-1).Ts <= ts {
		return hi
	}
	for lo < hi {
		m := lo + (hi-lo)/2
		if w.rec(slot, m).Ts <= ts {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// bufLower returns the absolute index of the first record with Ts >= ts.
func (w *WindowOperator) bufLower(slot int, ts int64) int64 {
	return w.bufUpper(slot, ts-1)
}

// bufInsert inserts r at absolute index at (BufHead <= at <= end), shifting
// later records up. The caller made room.
func (w *WindowOperator) bufInsert(slot int, at int64, r winRec) {
	s := &w.slots[slot]
	end := s.BufHead + s.BufN
	for i := end; i > at; i-- {
		*w.rec(slot, i) = *w.rec(slot, i-1)
	}
	*w.rec(slot, at) = r
	s.BufN++
}

// bufRoom makes room for one record: it drops records no window can need
// any more and, for a percentile operator, spills the oldest value when that
// is not enough (its window answers from its sketch). It returns
// ReasonOversize when neither frees a place.
func (w *WindowOperator) bufRoom(slot int) codec.Reason {
	s := &w.slots[slot]
	if s.BufN < w.bufCap {
		return codec.ReasonNone
	}
	w.bufPurge(slot)
	if s.BufN < w.bufCap {
		return codec.ReasonNone
	}
	if w.bufMust {
		return w.reject(codec.ReasonOversize, "", "buffered trades of the symbol at MaxBufferedEventsPerSymbol")
	}
	s.SpillTs = max(s.SpillTs, w.rec(slot, s.BufHead).Ts)
	w.bufDropHead(slot)
	w.counters.Spilled++
	return codec.ReasonNone
}

func (w *WindowOperator) bufDropHead(slot int) {
	s := &w.slots[slot]
	d := s.BufHead
	*w.rec(slot, d) = winRec{}
	s.BufHead++
	s.BufN--
	if s.Cursor < s.BufHead {
		s.Cursor = s.BufHead
	}
	if d >= s.Sw.Lo && d < s.Sw.Hi {
		s.Sw.Dirty = 1
	}
}

// bufPurge drops the oldest records that no window can need any more: in
// sliding windows those at or before wm − lateness − SIZE; for TWAP those
// before wm − lateness except the last of them (a later out-of-order trade
// may need its value); for percentiles those before the first window that
// can still fire.
func (w *WindowOperator) bufPurge(slot int) {
	s := &w.slots[slot]
	live := wmSatSub(w.wm, w.lateNs)
	switch {
	case w.spec.Type == WindowSliding:
		hz := wmSatSub(live, w.sizeNs)
		for s.BufN > 0 && w.rec(slot, s.BufHead).Ts <= hz {
			w.bufDropHead(slot)
		}
	case w.spec.Type == WindowCount:
		// The buffer is the current chunk.
	case w.kind == AggTWAP:
		for s.BufN > 1 && w.rec(slot, s.BufHead+1).Ts < live {
			w.bufDropHead(slot)
		}
	default: // percentile
		var hz int64
		switch w.spec.Type {
		case WindowSession:
			hz = math.MaxInt64
			for _, ss := range w.sessOf(slot)[:s.NSess] {
				if ss.Fired == 0 || ss.Last+w.sizeNs > live {
					hz = ss.First
					break
				}
			}
		default:
			hz = w.winStart(w.kAlive)
		}
		for s.BufN > 0 && w.rec(slot, s.BufHead).Ts < hz {
			w.bufDropHead(slot)
		}
	}
}

// neighbours returns, for a record just inserted at absolute index at, the
// value of the record before it and the time of the record after it (for
// TWAP inserts inside a unit). Missing neighbours give (0, ts).
func (w *WindowOperator) neighbours(slot int, at int64) (prevX float64, nextTs int64) {
	s := &w.slots[slot]
	r := w.rec(slot, at)
	prevX, nextTs = 0, r.Ts
	if at > s.BufHead {
		prevX = w.rec(slot, at-1).X
	}
	if at+1 < s.BufHead+s.BufN {
		nextTs = w.rec(slot, at+1).Ts
	}
	return prevX, nextTs
}

// pctRank is the 1-based nearest rank ⌈q·n⌉ for q in thousandths of a
// percent, computed exactly in integers.
func pctRank(qMilli, n int64) int64 {
	r := (qMilli*n + 99999) / 100000
	return min(max(r, 1), n)
}

// pctRecords returns the percentile of the buffered trades [lo, hi)
// (absolute indices): exact when there are at most PercentileExactMax of
// them, else from a sketch built over them.
func (w *WindowOperator) pctRecords(slot int, lo, hi int64) float64 {
	n := hi - lo
	if n <= 0 {
		return math.NaN()
	}
	r := pctRank(w.pctMilli, n)
	if n <= int64(cap(w.scratch)) {
		vals := w.scratch[:0]
		for i := lo; i < hi; i++ {
			vals = append(vals, w.rec(slot, i).X)
		}
		return aggSelect(vals, int(r-1))
	}
	w.counters.Sketched++
	w.scratchSk.Reset()
	for i := lo; i < hi; i++ {
		w.scratchSk.Add(w.rec(slot, i).X)
	}
	return w.scratchSk.rank(uint64(r))
}

// pctTimeRange returns the percentile of the n trades with event time in
// [from, to], exactly from the buffer when it still holds all of them and n
// is within PercentileExactMax; ok=false asks the caller for the sketch.
func (w *WindowOperator) pctTimeRange(slot int, from, to, n int64) (float64, bool) {
	s := &w.slots[slot]
	if n > int64(cap(w.scratch)) || from <= s.SpillTs {
		return 0, false
	}
	lo, hi := w.bufLower(slot, from), w.bufUpper(slot, to)
	if hi-lo != n {
		return 0, false
	}
	return w.pctRecords(slot, lo, hi), true
}
