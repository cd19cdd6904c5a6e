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
// MaxBufferedEventsPerSymbol).

func (w *WindowOperator) countEvent(slot int, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	s := &w.slots[slot]
	var prevX float64
	var nextTs int64
	if w.useBuf {
		at := w.bufUpper(slot, ts)
		w.bufInsert(slot, at, winRec{Ts: ts, X: x, V: v})
		if w.mask&aggNeedTW != 0 && s.Chunk.twMiddle(ts) {
			prevX, nextTs = w.neighbours(slot, at)
		}
	}
	s.Chunk.add(w.mask, x, v, ts, prevX, nextTs)
	s.ChunkMin, s.ChunkMax = min(s.ChunkMin, ts), max(s.ChunkMax, ts)
	if s.Chunk.N >= w.countN {
		dst = w.countEmit(slot, TimingOnTime, true, seq, ts, ingest, dst)
		w.countReset(slot)
	}
	return dst, codec.ReasonNone
}

func (w *WindowOperator) countEmit(slot int, timing Timing, keyed bool, seq uint64, ts, ingest int64, dst []Output) []Output {
	s := &w.slots[slot]
	val := math.NaN()
	if w.kind == AggPercentile {
		val = w.pctRecords(slot, s.BufHead, s.BufHead+s.BufN)
	}
	ord := uint64(s.ChunkNo)<<32 | uint64(s.ChunkFires)
	if keyed {
		s.ChunkFires++
	}
	return w.emit(dst, slot, &s.Chunk, s.ChunkMin, s.ChunkMax, s.ChunkMax, timing, ord, seq, ts, ingest, val, keyed)
}

func (w *WindowOperator) countReset(slot int) {
	s := &w.slots[slot]
	s.Chunk = aggState{}
	s.ChunkMin, s.ChunkMax = math.MaxInt64, math.MinInt64
	s.ChunkFires = 0
	s.ChunkNo++
	s.BufHead += s.BufN
	s.BufN = 0
	s.Cursor = s.BufHead
}

// countFlush fires the partial chunk at the end of input.
func (w *WindowOperator) countFlush(slot int, seq uint64, ts int64, dst []Output) []Output {
	w.heapRemove(slot)
	if w.slots[slot].Chunk.N == 0 {
		return dst
	}
	dst = w.countEmit(slot, TimingOnTime, true, seq, ts, 0, dst)
	w.countReset(slot)
	return dst
}

func (w *WindowOperator) countOpen(slot int, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	s := &w.slots[slot]
	if s.Chunk.N == 0 {
		return dst, st
	}
	if mode == winOpenStats {
		return dst, w.appendStats(st, &s.Chunk, s.ChunkMin, s.ChunkMax, s.ChunkMax)
	}
	return w.countEmit(slot, TimingEarly, mode == winOpenFire, seq, ts, ingest, dst), st
}
