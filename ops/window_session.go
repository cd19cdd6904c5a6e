package ops

import (
	"math"

	"qstream/codec"
)

// Session windows: trades less than GAP apart form one session [first,
// last+GAP), kept per symbol in an array sorted by time (at most
// MaxOpenWindowsPerSymbol). A trade within GAP of a session joins it; a
// (late or out-of-order) trade within GAP of two sessions bridges them and
// they merge. A session fires on_time when the firing watermark reaches
// last+GAP. A late trade that changes a session already due re-fires it at
// once (late), with its new bounds; if the change moves the session's end
// past the watermark, it fires again on_time when the watermark gets there.
// Sessions are released once fired and behind the watermark by more than the
// allowed lateness.

func (w *WindowOperator) sessOf(slot int) []winSession {
	return w.sess[int64(slot)*w.maxOpen : int64(slot+1)*w.maxOpen]
}

func (w *WindowOperator) sessSketch(slot int, sk int32) *Sketch {
	return &w.sketches[int64(slot)*w.maxOpen+int64(sk)]
}

// sessPurge releases fired sessions that can no longer change.
func (w *WindowOperator) sessPurge(slot int) {
	s := &w.slots[slot]
	ss := w.sessOf(slot)
	live := wmSatSub(w.wm, w.lateNs)
	n, j := int(s.NSess), 0
	for i := 0; i < n; i++ {
		if ss[i].Fired != 0 && ss[i].Last+w.sizeNs <= live {
			if w.useSk {
				w.sessSketch(slot, ss[i].Sk).Reset()
			}
			continue
		}
		ss[j] = ss[i]
		j++
	}
	for k := j; k < n; k++ {
		ss[k] = winSession{Sk: -1}
	}
	s.NSess = uint32(j)
}

// sessFreeSketch returns a sketch index no session of slot uses.
func (w *WindowOperator) sessFreeSketch(slot int) int32 {
	if !w.useSk {
		return -1
	}
	ss := w.sessOf(slot)[:w.slots[slot].NSess]
	for k := int32(0); k < int32(w.maxOpen); k++ {
		used := false
		for i := range ss {
			if ss[i].Sk == k {
				used = true
				break
			}
		}
		if !used {
			return k
		}
	}
	return -1 // unreachable: fewer sessions than sketches
}

func (w *WindowOperator) sessEvent(slot int, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	s := &w.slots[slot]
	gap := w.sizeNs
	w.sessPurge(slot)
	ss := w.sessOf(slot)
	n := int(s.NSess)
	i := 0
	for i < n && ss[i].Last+gap <= ts {
		i++
	}
	join := i < n && ss[i].First-gap < ts
	join2 := join && i+1 < n && ss[i+1].First-gap < ts
	if !join && n == int(w.maxOpen) {
		return dst, w.reject(codec.ReasonOversize, "ts", "sessions of the symbol at MaxOpenWindowsPerSymbol")
	}
	var at int64
	if w.useBuf {
		if r := w.bufRoom(slot); r != codec.ReasonNone {
			return dst, r
		}
		at = w.bufUpper(slot, ts)
		w.bufInsert(slot, at, winRec{Ts: ts, X: x, V: v})
	}
	if !join {
		sk := w.sessFreeSketch(slot)
		copy(ss[i+1:n+1], ss[i:n])
		ss[i] = winSession{First: ts, Last: ts, Sk: sk}
		s.NSess++
		ss[i].A.add(w.mask, x, v, ts, 0, 0)
	} else {
		se := &ss[i]
		var prevX float64
		var nextTs int64
		if w.mask&aggNeedTW != 0 && se.A.twMiddle(ts) {
			prevX, nextTs = w.neighbours(slot, at)
		}
		se.A.add(w.mask, x, v, ts, prevX, nextTs)
		se.First, se.Last = min(se.First, ts), max(se.Last, ts)
		if join2 { // the trade bridges sessions i and i+1
			w.counters.Merges++
			nx := &ss[i+1]
			se.A.merge(w.mask, &nx.A)
			se.Last = nx.Last
			se.Fires = max(se.Fires, nx.Fires)
			if w.useSk {
				w.sessSketch(slot, se.Sk).Merge(w.sessSketch(slot, nx.Sk))
				w.sessSketch(slot, nx.Sk).Reset()
			}
			copy(ss[i+1:n-1], ss[i+2:n])
			ss[n-1] = winSession{Sk: -1}
			s.NSess--
		}
	}
	se := &ss[i]
	if w.useSk {
		w.sessSketch(slot, se.Sk).Add(x)
	}
	if se.Last+gap <= w.fwm { // already due: the trade is late
		se.Fired = 1
		dst = w.sessEmit(slot, i, TimingLate, true, seq, ts, ingest, dst)
	} else {
		se.Fired = 0
	}
	w.sessKey(slot)
	return dst, codec.ReasonNone
}

// sessKey puts slot in the heap at the end of its first unfired session.
func (w *WindowOperator) sessKey(slot int) {
	ss := w.sessOf(slot)[:w.slots[slot].NSess]
	for i := range ss {
		if ss[i].Fired == 0 {
			w.heapSet(slot, ss[i].Last+w.sizeNs)
			return
		}
	}
	w.heapRemove(slot)
}

// sessEmit appends session i of slot; keyed results count as a firing.
func (w *WindowOperator) sessEmit(slot, i int, timing Timing, keyed bool, seq uint64, ts, ingest int64, dst []Output) []Output {
	se := &w.sessOf(slot)[i]
	end := se.Last + w.sizeNs
	val := math.NaN()
	if w.kind == AggPercentile {
		var ok bool
		if val, ok = w.pctTimeRange(slot, se.First, se.Last, se.A.N); !ok {
			w.counters.Sketched++
			val = w.sessSketch(slot, se.Sk).rank(uint64(pctRank(w.pctMilli, se.A.N)))
		}
	}
	ord := se.Fires
	if keyed {
		se.Fires++
	}
	return w.emit(dst, slot, &se.A, se.First, end, end, timing, uint64(ord), seq, ts, ingest, val, keyed)
}

// sessFire fires the slot's first due session (OnWatermark).
func (w *WindowOperator) sessFire(slot int, seq uint64, ts int64, dst []Output) []Output {
	ss := w.sessOf(slot)[:w.slots[slot].NSess]
	for i := range ss {
		if ss[i].Fired == 0 {
			ss[i].Fired = 1
			dst = w.sessEmit(slot, i, TimingOnTime, true, seq, ts, 0, dst)
			break
		}
	}
	w.sessKey(slot)
	return dst
}

func (w *WindowOperator) sessOpen(slot int, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	ss := w.sessOf(slot)[:w.slots[slot].NSess]
	for i := range ss {
		if ss[i].Fired != 0 || ss[i].A.N == 0 {
			continue
		}
		if mode == winOpenStats {
			end := ss[i].Last + w.sizeNs
			st = w.appendStats(st, &ss[i].A, ss[i].First, end, end)
			continue
		}
		dst = w.sessEmit(slot, i, TimingEarly, mode == winOpenFire, seq, ts, ingest, dst)
	}
	return dst, st
}
