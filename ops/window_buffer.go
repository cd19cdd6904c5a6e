package ops

import (
	"math"

	"qstream/codec"
)

// The per-symbol trade buffer is a sequence of winRec sorted by event time,
// ties in arrival order, with absolute indices (BufHead is the absolute
// index of the oldest). Its storage is chunks of recL records from the
// operator's recs pool (with the sliding two-stacks' suffix aggregates
// beside them): chunk number abs/recL sits in the symbol's directory at
// entry (abs/recL) mod recDirN. The symbol holds exactly the chunks that
// [BufHead, BufHead+BufN) touches: a chunk is taken when the end of the
// buffer enters it (bufReserve first) and released when the head leaves it.
// An insert shifts the later records up by one, so with bounded disorder it
// costs the displacement, not the length.

// recChunkAt returns the recs pool chunk of chunk number c of s.
func (w *WindowOperator) recChunkAt(s *winSym, c int64) *int32 {
	return w.dirs.at(s.Dir, int(w.paneDirN+(c&(w.recDirN-1))))
}

// rec returns the buffered trade at absolute index abs, which must be in a
// held chunk. The chunk last resolved is cached in the operator (one trade
// reads the same chunk of its symbol many times).
func (w *WindowOperator) rec(s *winSym, abs int64) *winRec {
	if s == w.rcS && abs>>w.recShift == w.rcN {
		return &w.rcRecs[abs&w.recMask]
	}
	return w.recSlow(s, abs)
}

func (w *WindowOperator) recSlow(s *winSym, abs int64) *winRec {
	return &w.recSpan(s, abs>>w.recShift)[abs&w.recMask]
}

// recSpan returns the records of held chunk number n of s (recL of them;
// those outside [BufHead, BufHead+BufN) are not trades) and caches it for
// rec, keeping the chunk it displaces as a second entry (a buffer usually
// spans one or two chunks).
func (w *WindowOperator) recSpan(s *winSym, n int64) []winRec {
	if s == w.rcS && n == w.rcN {
		return w.rcRecs
	}
	if s == w.rc2S && n == w.rc2N {
		w.rcS, w.rcN, w.rcRecs, w.rc2S, w.rc2N, w.rc2Recs = w.rc2S, w.rc2N, w.rc2Recs, w.rcS, w.rcN, w.rcRecs
		return w.rcRecs
	}
	w.rc2S, w.rc2N, w.rc2Recs = w.rcS, w.rcN, w.rcRecs
	w.rcS, w.rcN, w.rcRecs = s, n, w.recs.chunk(w.recChunk(s, n))
	return w.rcRecs
}

// recChunk returns the recs pool chunk of held chunk number n of s.
func (w *WindowOperator) recChunk(s *winSym, n int64) int32 {
	if n == s.HotRecN && s.HotRecC != 0 {
		return s.HotRecC
	}
	c := *w.recChunkAt(s, n)
	s.HotRecN, s.HotRecC = n, c
	return c
}

// recRelease returns held chunk number n of s to the pool.
func (w *WindowOperator) recRelease(s *winSym, n int64) {
	w.recs.release(*w.recChunkAt(s, n))
	if n == s.HotRecN {
		s.HotRecC = 0
	}
	if s == w.rcS && n == w.rcN {
		w.rcS, w.rcRecs = nil, nil
	}
	if s == w.rc2S && n == w.rc2N {
		w.rc2S, w.rc2Recs = nil, nil
	}
}

// recSufAt returns the suffix aggregate storage of the trade at abs: tmp
// (indexed modulo its power-of-two length) for temporary sweeps, else
// beside the symbol's buffered trade.
func (w *WindowOperator) recSufAt(s *winSym, tmp []aggState, abs int64) *aggState {
	if tmp != nil {
		return &tmp[abs&int64(len(tmp)-1)]
	}
	return w.recs.auxAt(w.recChunk(s, abs>>w.recShift), int(abs&(w.recL-1)))
}

// bufUpper returns the absolute index of the first record with Ts > ts:
// usually in the newest chunk; else a binary search over the older held
// chunks (by their last record), then within the chunk found.
func (w *WindowOperator) bufUpper(s *winSym, ts int64) int64 {
	lo, hi := s.BufHead, s.BufHead+s.BufN
	if lo == hi {
		return hi
	}
	sh := w.recShift
	cLo, cHi := lo>>sh, (hi-1)>>sh
	recs, base := w.recSpan(s, cHi), cHi<<sh
	if recs[hi-1-base].Ts <= ts {
		return hi
	}
	if first := max(lo, base); cLo < cHi && recs[first-base].Ts > ts {
		// In an older chunk: the first whose last record is after ts, or
		// else the newest chunk's first record.
		c := cHi
		for cLo < c {
			m := cLo + (c-cLo)/2
			if w.rec(s, (m+1)<<sh-1).Ts <= ts {
				cLo = m + 1
			} else {
				c = m
			}
		}
		if cLo == cHi {
			return base
		}
		recs, base = w.recSpan(s, cLo), cLo<<sh
	}
	i, j := int(max(lo, base)-base), int(min(hi, base+w.recL)-base)
	for i < j {
		m := int(uint(i+j) >> 1)
		if recs[m].Ts <= ts {
			i = m + 1
		} else {
			j = m
		}
	}
	return base + int64(i)
}

// bufLower returns the absolute index of the first record with Ts >= ts.
func (w *WindowOperator) bufLower(s *winSym, ts int64) int64 {
	return w.bufUpper(s, ts-1)
}

// bufNeedsChunk reports whether the next insert enters a chunk s does not
// hold.
func (w *WindowOperator) bufNeedsChunk(s *winSym) bool {
	return s.BufN == 0 || (s.BufHead+s.BufN)&(w.recL-1) == 0
}

// bufReserve makes sure the next insert can have its chunk; false when the
// pool is at MaxStateBytes.
func (w *WindowOperator) bufReserve(s *winSym) bool {
	return !w.bufNeedsChunk(s) || (w.dirReserve(s) && w.recs.reserve(1, &w.budget))
}

// bufInsert inserts r at absolute index at (BufHead <= at <= end), shifting
// later records up. The caller made room (bufRoom) and reserved its chunk
// (bufReserve).
func (w *WindowOperator) bufInsert(s *winSym, at int64, r winRec) {
	end := s.BufHead + s.BufN
	if w.bufNeedsChunk(s) {
		*w.recChunkAt(s, end>>w.recShift) = w.recs.alloc()
	}
	for i := end; i > at; i-- {
		*w.rec(s, i) = *w.rec(s, i-1)
	}
	*w.rec(s, at) = r
	s.BufN++
}

// bufRoom makes room for one record: it drops records no window can need
// any more and, for a percentile operator, spills the oldest value when that
// is not enough (its window answers from its sketch). It returns
// ReasonOversize when neither frees a place.
func (w *WindowOperator) bufRoom(s *winSym) codec.Reason {
	if s.BufN < w.bufCap {
		return codec.ReasonNone
	}
	w.bufPurge(s)
	if s.BufN < w.bufCap {
		return codec.ReasonNone
	}
	if w.bufMust {
		return w.reject(codec.ReasonOversize, "", "buffered trades of the symbol at MaxBufferedEventsPerSymbol")
	}
	s.SpillTs = max(s.SpillTs, w.rec(s, s.BufHead).Ts)
	w.bufDropHead(s)
	w.counters.Spilled++
	return codec.ReasonNone
}

func (w *WindowOperator) bufDropHead(s *winSym) {
	d := s.BufHead
	s.BufHead++
	s.BufN--
	if s.BufN == 0 || s.BufHead&(w.recL-1) == 0 { // the head left d's chunk
		w.recRelease(s, d>>w.recShift)
	}
	if s.Cursor < s.BufHead {
		s.Cursor = s.BufHead
	}
	if d >= s.Sw.Lo && d < s.Sw.Hi {
		s.Sw.Dirty = 1
	}
}

// bufClear empties the buffer (a count window's chunk fired), releasing its
// chunks; absolute indices start again at 0, so that a count window of up
// to recL trades takes one chunk.
func (w *WindowOperator) bufClear(s *winSym) {
	if s.BufN > 0 {
		for c, last := s.BufHead>>w.recShift, (s.BufHead+s.BufN-1)>>w.recShift; c <= last; c++ {
			w.recRelease(s, c)
		}
	}
	s.BufHead, s.BufN, s.Cursor = 0, 0, 0
}

// bufReleaseAll returns every chunk of s (ResetSlot).
func (w *WindowOperator) bufReleaseAll(s *winSym) {
	if w.useBuf {
		w.bufClear(s)
	}
}

// bufPurge drops the oldest records that no window can need any more: in
// sliding windows those at or before wm − lateness − SIZE; for TWAP those
// before wm − lateness except the last of them (a later out-of-order trade
// may need its value); for percentiles those before the first window that
// can still fire. Dropping them is never visible in results.
func (w *WindowOperator) bufPurge(s *winSym) {
	w.bufPurgeBefore(s, math.MaxInt64)
}

// bufPurgeBefore is bufPurge that keeps the records from absolute index
// keep on: a sliding operator purging after each evaluation keeps what its
// aggregator holds, so that the aggregator's next slide (and so its
// rounding) is the same whenever the purge happens.
func (w *WindowOperator) bufPurgeBefore(s *winSym, keep int64) {
	live := wmSatSub(w.wm, w.lateNs)
	switch {
	case w.spec.Type == WindowSliding:
		hz := wmSatSub(live, w.sizeNs)
		for s.BufN > 0 && s.BufHead < keep && w.rec(s, s.BufHead).Ts <= hz {
			w.bufDropHead(s)
		}
	case w.spec.Type == WindowCount:
		// The buffer is the current chunk.
	case w.kind == AggTWAP:
		for s.BufN > 1 && w.rec(s, s.BufHead+1).Ts < live {
			w.bufDropHead(s)
		}
	default: // percentile
		var hz int64
		switch w.spec.Type {
		case WindowSession:
			hz = math.MaxInt64
			for c := s.Sess; c != 0; {
				se := w.sess.at(c, 0)
				if se.Fired == 0 || se.Last+w.sizeNs > live {
					hz = se.First
					break
				}
				c = se.Next
			}
		default:
			hz = w.winStart(w.kAlive)
		}
		for s.BufN > 0 && w.rec(s, s.BufHead).Ts < hz {
			w.bufDropHead(s)
		}
	}
}

// neighbours returns, for a record just inserted at absolute index at, the
// value of the record before it and the time of the record after it (for
// TWAP inserts inside a unit). Missing neighbours give (0, ts).
func (w *WindowOperator) neighbours(s *winSym, at int64) (prevX float64, nextTs int64) {
	r := w.rec(s, at)
	prevX, nextTs = 0, r.Ts
	if at > s.BufHead {
		prevX = w.rec(s, at-1).X
	}
	if at+1 < s.BufHead+s.BufN {
		nextTs = w.rec(s, at+1).Ts
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
func (w *WindowOperator) pctRecords(s *winSym, lo, hi int64) float64 {
	n := hi - lo
	if n <= 0 {
		return math.NaN()
	}
	r := pctRank(w.pctMilli, n)
	if n <= int64(cap(w.scratch)) {
		vals := w.scratch[:0]
		for i := lo; i < hi; i++ {
			vals = append(vals, w.rec(s, i).X)
		}
		return aggSelect(vals, int(r-1))
	}
	w.counters.Sketched++
	w.scratchSk.Reset()
	for i := lo; i < hi; i++ {
		w.scratchSk.Add(w.rec(s, i).X)
	}
	return w.scratchSk.rank(uint64(r))
}

// pctTimeRange returns the percentile of the n trades with event time in
// [from, to], exactly from the buffer when it still holds all of them and n
// is within PercentileExactMax; ok=false asks the caller for the sketch.
func (w *WindowOperator) pctTimeRange(s *winSym, from, to, n int64) (float64, bool) {
	if n > int64(cap(w.scratch)) || from <= s.SpillTs {
		return 0, false
	}
	lo, hi := w.bufLower(s, from), w.bufUpper(s, to)
	if hi-lo != n {
		return 0, false
	}
	return w.pctRecords(s, lo, hi), true
}
