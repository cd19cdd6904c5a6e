package ops

import (
	"math"

	"qstream/codec"
)

// Session windows: trades less than GAP apart form one session [first,
// last+GAP), kept per symbol in a list sorted by time (at most
// MaxOpenWindowsPerSymbol), its nodes from the operator's sess pool. A
// trade within GAP of a session joins it; a (late or out-of-order) trade
// within GAP of two sessions bridges them and they merge. A session fires
// on_time when the firing watermark reaches last+GAP. A late trade that
// changes a session already due re-fires it at once (late), with its new
// bounds; if the change moves the session's end past the watermark, it
// fires again on_time when the watermark gets there. Sessions are released
// (with their sketches) once fired and behind the watermark by more than
// the allowed lateness.

func (w *WindowOperator) sessNode(c int32) *winSession { return w.sess.at(c, 0) }

// sessRelease returns session node c and its sketch to their pools.
func (w *WindowOperator) sessRelease(c int32) {
	if sk := w.sessNode(c).Sk; sk != 0 {
		w.sks.release(sk)
	}
	w.sess.release(c)
}

// sessPurge releases fired sessions that can no longer change.
func (w *WindowOperator) sessPurge(s *winSym) {
	live := wmSatSub(w.wm, w.lateNs)
	prev := int32(0)
	for c := s.Sess; c != 0; {
		se := w.sessNode(c)
		next := se.Next
		if se.Fired != 0 && se.Last+w.sizeNs <= live {
			if prev == 0 {
				s.Sess = next
			} else {
				w.sessNode(prev).Next = next
			}
			w.sessRelease(c)
			s.NSess--
		} else {
			prev = c
		}
		c = next
	}
}

// sessReleaseAll returns every session of s (ResetSlot).
func (w *WindowOperator) sessReleaseAll(s *winSym) {
	for c := s.Sess; c != 0; {
		next := w.sessNode(c).Next
		w.sessRelease(c)
		c = next
	}
	s.Sess, s.NSess = 0, 0
}

func (w *WindowOperator) sessEvent(slot int, s *winSym, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	gap := w.sizeNs
	w.sessPurge(s)
	// cur: the first session that does not end (last + GAP) at or before ts.
	prev, cur := int32(0), s.Sess
	for cur != 0 && w.sessNode(cur).Last+gap <= ts {
		prev, cur = cur, w.sessNode(cur).Next
	}
	join := cur != 0 && w.sessNode(cur).First-gap < ts
	var nx int32
	if join {
		if n := w.sessNode(cur).Next; n != 0 && w.sessNode(n).First-gap < ts {
			nx = n // the trade bridges sessions cur and nx
		}
	}
	if !join && int64(s.NSess) == w.maxOpen {
		return dst, w.reject(codec.ReasonOversize, "ts", "sessions of the symbol at MaxOpenWindowsPerSymbol")
	}
	if w.useBuf {
		if r := w.bufRoom(s); r != codec.ReasonNone {
			return dst, r
		}
	}
	if (!join && (!w.sess.reserve(1, &w.budget) || (w.useSk && !w.sks.reserve(1, &w.budget)))) ||
		(w.useBuf && !w.bufReserve(s)) {
		return dst, w.refuseFull()
	}
	var at int64
	if w.useBuf {
		at = w.bufUpper(s, ts)
		w.bufInsert(s, at, winRec{Ts: ts, X: x, V: v})
	}
	var se *winSession
	if !join {
		c := w.sess.alloc()
		se = w.sessNode(c)
		*se = winSession{First: ts, Last: ts, Next: cur}
		if w.useSk {
			se.Sk = w.sks.alloc()
		}
		if prev == 0 {
			s.Sess = c
		} else {
			w.sessNode(prev).Next = c
		}
		s.NSess++
		se.A.add(w.mask, x, v, ts, 0, 0)
	} else {
		se = w.sessNode(cur)
		var prevX float64
		var nextTs int64
		if w.mask&aggNeedTW != 0 && se.A.twMiddle(ts) {
			prevX, nextTs = w.neighbours(s, at)
		}
		se.A.add(w.mask, x, v, ts, prevX, nextTs)
		se.First, se.Last = min(se.First, ts), max(se.Last, ts)
		if nx != 0 {
			w.counters.Merges++
			n := w.sessNode(nx)
			se.A.merge(w.mask, &n.A)
			se.Last = n.Last
			se.Fires = max(se.Fires, n.Fires)
			if w.useSk {
				w.sks.at(se.Sk, 0).Merge(w.sks.at(n.Sk, 0))
			}
			se.Next = n.Next
			w.sessRelease(nx)
			s.NSess--
		}
	}
	if w.useSk {
		w.sks.at(se.Sk, 0).Add(x)
	}
	if se.Last+gap <= w.fwm { // already due: the trade is late
		se.Fired = 1
		dst = w.sessEmit(slot, s, se, TimingLate, true, seq, ts, ingest, dst)
	} else {
		se.Fired = 0
	}
	w.sessKey(slot, s)
	return dst, codec.ReasonNone
}

// sessKey puts slot in the heap at the end of its first unfired session.
func (w *WindowOperator) sessKey(slot int, s *winSym) {
	for c := s.Sess; c != 0; {
		se := w.sessNode(c)
		if se.Fired == 0 {
			w.heapSet(slot, se.Last+w.sizeNs)
			return
		}
		c = se.Next
	}
	w.heapRemove(slot)
}

// sessEmit appends session se of slot; keyed results count as a firing.
func (w *WindowOperator) sessEmit(slot int, s *winSym, se *winSession, timing Timing, keyed bool, seq uint64, ts, ingest int64, dst []Output) []Output {
	end := se.Last + w.sizeNs
	val := math.NaN()
	if w.kind == AggPercentile {
		var ok bool
		if val, ok = w.pctTimeRange(s, se.First, se.Last, se.A.N); !ok {
			w.counters.Sketched++
			val = w.sks.at(se.Sk, 0).rank(uint64(pctRank(w.pctMilli, se.A.N)))
		}
	}
	ord := se.Fires
	if keyed {
		se.Fires++
	}
	return w.emit(dst, slot, &se.A, se.First, end, end, timing, uint64(ord), seq, ts, ingest, val, keyed)
}

// sessFire fires the slot's first due session (OnWatermark).
func (w *WindowOperator) sessFire(slot int, s *winSym, seq uint64, ts int64, dst []Output) []Output {
	for c := s.Sess; c != 0; {
		se := w.sessNode(c)
		if se.Fired == 0 {
			se.Fired = 1
			dst = w.sessEmit(slot, s, se, TimingOnTime, true, seq, ts, 0, dst)
			break
		}
		c = se.Next
	}
	// Return what can no longer change (no visible effect).
	w.sessPurge(s)
	w.sessKey(slot, s)
	if w.useBuf && !w.slotDue(slot) {
		w.bufPurge(s)
	}
	return dst
}

func (w *WindowOperator) sessOpen(slot int, s *winSym, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	for c := s.Sess; c != 0; {
		se := w.sessNode(c)
		c = se.Next
		if se.Fired != 0 || se.A.N == 0 {
			continue
		}
		if mode == winOpenStats {
			end := se.Last + w.sizeNs
			st = w.appendStats(st, &se.A, se.First, end, end)
			continue
		}
		dst = w.sessEmit(slot, s, se, TimingEarly, mode == winOpenFire, seq, ts, ingest, dst)
	}
	return dst, st
}
