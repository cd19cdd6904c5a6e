package ops

import (
	"math"

	"qstream/codec"
)

// Tumbling and hopping windows share panes: the time axis is cut into panes
// of gcd(SIZE, HOP); window k covers panes [k·h, k·h+w) and ends at
// (k·h+w)·P + OFFSET. A trade updates one pane; a window is the combination
// of its w panes, computed by a winSwag that slides h panes per window, so
// a 5-minute window hopping by 1 second costs O(1) amortized per window
// instead of O(trades in 5 minutes). Tumbling windows are the case w = h = 1.
//
// Each symbol owns a ring of ringCap panes; a ring entry is tagged with the
// pane index it holds (Q), so panes are claimed and recycled lazily and the
// ring never needs compaction. The live panes of a symbol always span less
// than ringCap (LoPane..DataHi, checked on every trade), so two live panes
// never share an entry.

func (w *WindowOperator) winStart(k int64) int64 { return k*w.h*w.paneNs + w.off }
func (w *WindowOperator) winEnd(k int64) int64   { return (k*w.h+w.w)*w.paneNs + w.off }

// kAfter returns the first window whose end is after t.
func (w *WindowOperator) kAfter(t int64) int64 {
	t = winClamp(t)
	return winFloorDiv(t-w.off-w.w*w.paneNs, w.h*w.paneNs) + 1
}

func (w *WindowOperator) paneIdx(slot int, q int64) int64 {
	return int64(slot)*w.ringCap + q&w.ringMask
}

// paneGet returns pane q of slot for reading (an empty state if the ring
// entry holds another pane).
func (w *WindowOperator) paneGet(slot int, q int64) *aggState {
	p := &w.panes[w.paneIdx(slot, q)]
	if p.Live != 0 && p.Q == q {
		return &p.A
	}
	return &w.zeroAgg
}

// paneClaim returns pane q of slot for writing, recycling the ring entry if
// it holds a dead pane.
func (w *WindowOperator) paneClaim(slot int, q int64) *winPane {
	i := w.paneIdx(slot, q)
	p := &w.panes[i]
	if p.Live == 0 || p.Q != q {
		*p = winPane{Q: q, Live: 1}
		if w.useSk {
			w.sketches[i].Reset()
		}
	}
	return p
}

// paneSync moves NextK past the windows the firing watermark has passed
// (OnWatermark fired or skipped them all) and keeps NDP valid.
func (w *WindowOperator) paneSync(slot int) {
	s := &w.slots[slot]
	if w.kFire > s.NextK {
		s.NextK = w.kFire
	}
	if s.NDP != winNone && s.NDP < s.NextK*w.h {
		w.paneRescan(slot)
	}
}

// paneRescan finds the first non-empty pane at or after NextK·h.
func (w *WindowOperator) paneRescan(slot int) {
	s := &w.slots[slot]
	s.NDP = winNone
	if s.DataHi == winNone {
		return
	}
	for q := max(s.NextK*w.h, s.LoPane); q <= s.DataHi; q++ {
		if w.paneGet(slot, q).N > 0 {
			s.NDP = q
			return
		}
	}
}

// paneFirstK is the first window to fire: the first at or after NextK that
// contains pane NDP.
func (w *WindowOperator) paneFirstK(slot int) int64 {
	s := &w.slots[slot]
	return max(s.NextK, winCeilDiv(s.NDP-w.w+1, w.h))
}

func (w *WindowOperator) paneKey(slot int) {
	if w.slots[slot].NDP == winNone {
		w.heapRemove(slot)
		return
	}
	w.heapSet(slot, w.winEnd(w.paneFirstK(slot)))
}

// winSkip is returned by the per-type event functions for a trade that is
// skipped without being refused (it is not counted in Events).
const winSkip = codec.Reason(255)

func (w *WindowOperator) paneEvent(slot int, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
	s := &w.slots[slot]
	var p int64
	if st := s.DataHi*w.paneNs + w.off; s.DataHi != winNone && ts >= st && ts-st < w.paneNs {
		p = s.DataHi // the usual case: the symbol's newest pane, no division
	} else {
		p = winFloorDiv(ts-w.off, w.paneNs)
	}
	kHi, kLo := p, p-w.w+1
	if w.h != 1 {
		kHi = winFloorDiv(p, w.h)
		if kHi*w.h+w.w <= p {
			w.counters.Unwindowed++
			return dst, winSkip
		}
		kLo = winCeilDiv(p-w.w+1, w.h)
	}
	if w.kFire > s.NextK {
		w.paneSync(slot)
	}
	// The live panes must keep fitting the ring.
	lo, hi := kLo*w.h, p
	if s.LoPane != winNone {
		lo = min(lo, max(w.kAlive*w.h, s.LoPane))
		hi = max(hi, s.DataHi)
	}
	if hi-lo >= w.ringCap {
		return dst, w.reject(codec.ReasonOversize, "ts", "trade too far ahead of the watermark for MaxOpenWindowsPerSymbol")
	}
	var at int64
	if w.useBuf {
		if r := w.bufRoom(slot); r != codec.ReasonNone {
			return dst, r
		}
		at = w.bufUpper(slot, ts)
		w.bufInsert(slot, at, winRec{Ts: ts, X: x, V: v})
	}
	s.LoPane, s.DataHi = lo, hi
	pn := w.paneClaim(slot, p)
	var prevX float64
	var nextTs int64
	if w.mask&aggNeedTW != 0 && pn.A.twMiddle(ts) {
		prevX, nextTs = w.neighbours(slot, at)
	}
	pn.A.add(w.mask, x, v, ts, prevX, nextTs)
	if w.useSk {
		w.sketches[w.paneIdx(slot, p)].Add(x)
	}
	if kLo < s.NextK { // windows already fired (or skipped empty): re-fire them late
		if sw := &s.Sw; sw.Dirty == 0 && p >= sw.Lo && p < sw.Hi {
			if w.inv {
				sw.Back.add(w.mask, x, v, ts, 0, 0)
			} else {
				sw.Dirty = 1
			}
		}
		dst = w.paneRefire(slot, kLo, min(kHi, s.NextK-1), seq, ts, ingest, dst)
	}
	if p >= s.NextK*w.h && (s.NDP == winNone || p < s.NDP) {
		s.NDP = p
		w.paneKey(slot)
	}
	return dst, codec.ReasonNone
}

// paneWindow returns the aggregate of window k using sw (suffix storage
// suf, indexed like the ring). The result points into sw, the ring or the
// operator's scratch: read it before the next call.
func (w *WindowOperator) paneWindow(slot int, sw *winSwag, suf []aggState, k int64) *aggState {
	if w.w == 1 {
		return w.paneGet(slot, k)
	}
	w.paneSlide(slot, sw, suf, k*w.h, k*w.h+w.w)
	if !w.inv && sw.Lo < sw.B {
		r := &w.qAgg
		*r = suf[sw.Lo&w.ringMask]
		r.merge(w.mask, &sw.Back)
		return r
	}
	return &sw.Back
}

// paneSlide moves sw to panes [lo, hi).
func (w *WindowOperator) paneSlide(slot int, sw *winSwag, suf []aggState, lo, hi int64) {
	if sw.Dirty != 0 || lo < sw.Lo || lo > sw.Hi || hi < sw.Hi {
		w.paneRebuild(slot, sw, lo, hi)
		return
	}
	for sw.Hi < hi {
		sw.Back.merge(w.mask, w.paneGet(slot, sw.Hi))
		sw.Hi++
	}
	for sw.Lo < lo {
		if w.inv {
			if p := &w.panes[w.paneIdx(slot, sw.Lo)]; p.Live != 0 && p.Q != sw.Lo {
				w.paneRebuild(slot, sw, lo, hi) // the pane was recycled: re-sum
				return
			}
			sw.Back.sub(w.mask, w.paneGet(slot, sw.Lo))
			sw.Evicts++
		} else if sw.Lo == sw.B { // flip: suffix aggregates of [Lo, Hi)
			for q := sw.Hi - 1; q >= sw.Lo; q-- {
				t := *w.paneGet(slot, q)
				if q+1 < sw.Hi {
					t.merge(w.mask, &suf[(q+1)&w.ringMask])
				}
				suf[q&w.ringMask] = t
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
		w.paneRebuild(slot, sw, lo, hi) // bound the rounding of subtractions
	}
}

func (w *WindowOperator) paneRebuild(slot int, sw *winSwag, lo, hi int64) {
	*sw = winSwag{Lo: lo, Hi: lo, B: lo}
	for sw.Hi < hi {
		sw.Back.merge(w.mask, w.paneGet(slot, sw.Hi))
		sw.Hi++
	}
}

func (w *WindowOperator) paneSuffixOf(slot int) []aggState {
	if w.paneSuffix == nil {
		return nil
	}
	return w.paneSuffix[int64(slot)*w.ringCap : int64(slot+1)*w.ringCap]
}

// panePct returns the percentile of window k holding n trades: exact from
// the buffer when possible, else from the panes' merged sketches.
func (w *WindowOperator) panePct(slot int, k, n int64) float64 {
	if v, ok := w.pctTimeRange(slot, w.winStart(k), w.winEnd(k)-1, n); ok {
		return v
	}
	w.counters.Sketched++
	sk := &w.scratchSk
	sk.Reset()
	for q := k * w.h; q < k*w.h+w.w; q++ {
		if p := &w.panes[w.paneIdx(slot, q)]; p.Live != 0 && p.Q == q && p.A.N > 0 {
			sk.Merge(&w.sketches[w.paneIdx(slot, q)])
		}
	}
	return sk.rank(uint64(pctRank(w.pctMilli, n)))
}

// paneFire fires the slot's first due window (OnWatermark).
func (w *WindowOperator) paneFire(slot int, seq uint64, ts int64, dst []Output) []Output {
	s := &w.slots[slot]
	k := w.paneFirstK(slot)
	a := w.paneWindow(slot, &s.Sw, w.paneSuffixOf(slot), k)
	if a.N > 0 {
		pn := w.paneClaim(slot, k*w.h)
		ord := pn.Fires
		pn.Fires++
		val := math.NaN()
		if w.kind == AggPercentile {
			val = w.panePct(slot, k, a.N)
		}
		end := w.winEnd(k)
		dst = w.emit(dst, slot, a, w.winStart(k), end, end, TimingOnTime, uint64(ord), seq, ts, 0, val, true)
	}
	s.NextK = k + 1
	if s.NDP < s.NextK*w.h {
		w.paneRescan(slot)
	}
	w.paneKey(slot)
	return dst
}

// paneRefire re-fires windows ka..kb (already fired or skipped) after a late
// trade, with timing late.
func (w *WindowOperator) paneRefire(slot int, ka, kb int64, seq uint64, ts, ingest int64, dst []Output) []Output {
	sw := winSwag{Dirty: 1}
	suf := w.tmpSuffix[:w.ringCap]
	for k := ka; k <= kb; k++ {
		a := w.paneWindow(slot, &sw, suf, k)
		if a.N == 0 {
			continue
		}
		pn := w.paneClaim(slot, k*w.h)
		ord := pn.Fires
		pn.Fires++
		val := math.NaN()
		if w.kind == AggPercentile {
			val = w.panePct(slot, k, a.N)
		}
		end := w.winEnd(k)
		dst = w.emit(dst, slot, a, w.winStart(k), end, end, TimingLate, uint64(ord), seq, ts, ingest, val, true)
	}
	return dst
}

// paneOpen appends the open windows of slot (see openWindows).
func (w *WindowOperator) paneOpen(slot int, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	w.paneSync(slot)
	s := &w.slots[slot]
	if s.NDP == winNone {
		return dst, st
	}
	sw := winSwag{Dirty: 1}
	suf := w.tmpSuffix[:w.ringCap]
	for k, kEnd := w.paneFirstK(slot), winFloorDiv(s.DataHi, w.h); k <= kEnd; k++ {
		a := w.paneWindow(slot, &sw, suf, k)
		if a.N == 0 {
			continue
		}
		start, end := w.winStart(k), w.winEnd(k)
		if mode == winOpenStats {
			st = w.appendStats(st, a, start, end, end)
			continue
		}
		val := math.NaN()
		if w.kind == AggPercentile {
			val = w.panePct(slot, k, a.N)
		}
		var ord uint32
		fire := mode == winOpenFire
		if fire {
			pn := w.paneClaim(slot, k*w.h)
			ord = pn.Fires
			pn.Fires++
		}
		dst = w.emit(dst, slot, a, start, end, end, TimingEarly, uint64(ord), seq, ts, ingest, val, fire)
	}
	return dst, st
}
