package ops

import (
	"math"

	"qstream/codec"
)

// Count windows: every N trades of a symbol in arrival order form a chunk;
// the N-th trade fires it (on_time) from OnEvent. Event time is not
// consulted (no lateness); start and end are the smallest and largest event
// time in the chunk, TWAP weights the last trade until end (so by zero).
// The end of input fires the partial chunk. Keys carry the chunk number.
// TWAP and percentiles keep the chunk's trades in the buffer (N <=
// MaxBufferedEventsPerSymbol); a trade whose buffer chunk the pool cannot
// give (MaxStateBytes) is refused.

func (w *WindowOperator) countEvent(slot int, s *winSym, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	var prevX float64
	var nextTs int64
	if w.useBuf {
		if !w.bufReserve(s) {
			return dst, w.refuseFull()
		}
		at := w.bufUpper(s, ts)
		w.bufInsert(s, at, winRec{Ts: ts, X: x, V: v})
		if w.mask&aggNeedTW != 0 && s.Chunk.twMiddle(ts) {
			prevX, nextTs = w.neighbours(s, at)
		}
	}
	s.Chunk.add(w.mask, x, v, ts, prevX, nextTs)
	s.ChunkMin, s.ChunkMax = min(s.ChunkMin, ts), max(s.ChunkMax, ts)
	if s.Chunk.N >= w.countN {
		dst = w.countEmit(slot, s, TimingOnTime, true, seq, ts, ingest, dst)
		w.countReset(s)
	}
	return dst, codec.ReasonNone
}

func (w *WindowOperator) countEmit(slot int, s *winSym, timing Timing, keyed bool, seq uint64, ts, ingest int64, dst []Output) []Output {
	val := math.NaN()
	if w.kind == AggPercentile {
		val = w.pctRecords(s, s.BufHead, s.BufHead+s.BufN)
	}
	ord := uint64(s.ChunkNo)<<32 | uint64(s.ChunkFires)
	if keyed {
		s.ChunkFires++
	}
	return w.emit(dst, slot, &s.Chunk, s.ChunkMin, s.ChunkMax, s.ChunkMax, timing, ord, seq, ts, ingest, val, keyed)
}

func (w *WindowOperator) countReset(s *winSym) {
	s.Chunk = aggState{}
	s.ChunkMin, s.ChunkMax = math.MaxInt64, math.MinInt64
	s.ChunkFires = 0
	s.ChunkNo++
	if w.useBuf {
		w.bufClear(s)
	}
}

// countFlush fires the partial chunk at the end of input.
func (w *WindowOperator) countFlush(slot int, s *winSym, seq uint64, ts int64, dst []Output) []Output {
	w.heapRemove(slot)
	if s.Chunk.N == 0 {
		return dst
	}
	dst = w.countEmit(slot, s, TimingOnTime, true, seq, ts, 0, dst)
	w.countReset(s)
	return dst
}

func (w *WindowOperator) countOpen(slot int, s *winSym, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	if s.Chunk.N == 0 {
		return dst, st
	}
	if mode == winOpenStats {
		return dst, w.appendStats(st, &s.Chunk, s.ChunkMin, s.ChunkMax, s.ChunkMax)
	}
	return w.countEmit(slot, s, TimingEarly, mode == winOpenFire, seq, ts, ingest, dst), st
}
