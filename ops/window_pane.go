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
// A symbol's panes live in blocks of paneP consecutive panes taken from the
// operator's panes pool: block b holds panes [b·paneP, (b+1)·paneP), zeroed
// when taken, with the suffix aggregates of the two-stacks beside them
// (hopping min, max, stddev, OHLCV, TWAP, custom). The symbol holds one
// contiguous run of blocks [BlkLo, BlkLo+BlkN), found through its directory
// (paneDirN entries, block b at b mod paneDirN). A pane outside the held
// blocks is empty.
//
// A trade takes, before it changes anything, the blocks that it and the
// firings it leads to will write: its pane, the first pane of every window
// containing it (which keeps that window's firing ordinal) and, for the
// two-stacks, every pane of those windows (the suffix aggregates cover
// them), so firing never needs memory. Panes below paneLive can never be
// read again (no window containing them can fire or change); paneFree
// releases their sketches and the blocks wholly below it. What a symbol
// holds therefore spans less than ringCap + 2·w panes (the live panes span
// less than ringCap, checked on every trade as MaxOpenWindowsPerSymbol),
// which bounds its directory.

func (w *WindowOperator) winStart(k int64) int64 { return k*w.h*w.paneNs + w.off }
func (w *WindowOperator) winEnd(k int64) int64   { return (k*w.h+w.w)*w.paneNs + w.off }

// kAfter returns the first window whose end is after t.
func (w *WindowOperator) kAfter(t int64) int64 {
	t = winClamp(t)
	return winFloorDiv(t-w.off-w.w*w.paneNs, w.h*w.paneNs) + 1
}

// paneBlock returns the panes pool chunk of held block b.
func (w *WindowOperator) paneBlock(s *winSym, b int64) int32 {
	return *w.dirs.at(s.Dir, int(b&(w.paneDirN-1)))
}

// paneAt returns pane q of s, or nil when no held block has it (the pane is
// empty). The hot block (see winSym.HotBlk) is the one of the symbol's
// latest trade.
func (w *WindowOperator) paneAt(s *winSym, q int64) *winPane {
	if q>>w.paneShift == s.HotBlk && s.HotBlkC != 0 {
		return w.panes.at(s.HotBlkC, int(q&(w.paneP-1)))
	}
	return w.paneAtSlow(s, q)
}

// paneAtSlow is paneAt away from the hot block.
func (w *WindowOperator) paneAtSlow(s *winSym, q int64) *winPane {
	c := w.paneChunk(s, q>>w.paneShift)
	if c == 0 {
		return nil
	}
	return w.panes.at(c, int(q&(w.paneP-1)))
}

// paneChunk returns the panes pool chunk of block b of s, 0 when it is not
// held: from the hot entry, the second cache entry (reads walk the panes
// of a window in order), else the directory (which refills the second
// entry).
func (w *WindowOperator) paneChunk(s *winSym, b int64) int32 {
	if b == s.HotBlk && s.HotBlkC != 0 {
		return s.HotBlkC
	}
	if b == s.ColdBlk && s.ColdBlkC != 0 {
		return s.ColdBlkC
	}
	if uint64(b-s.BlkLo) >= uint64(s.BlkN) {
		return 0
	}
	c := w.paneBlock(s, b)
	s.ColdBlk, s.ColdBlkC = b, c
	return c
}

// paneGet returns pane q of s for reading (the empty state if it is not
// held).
func (w *WindowOperator) paneGet(s *winSym, q int64) *aggState {
	if p := w.paneAt(s, q); p != nil {
		return &p.A
	}
	return &w.zeroAgg
}

// paneOrd returns the firing ordinal of the window whose first pane is q
// and counts this firing. The pane is held (paneHold took the first pane of
// every window of every trade); if it were not, the firing would get
// ordinal 0 rather than fail.
func (w *WindowOperator) paneOrd(s *winSym, q int64) uint32 {
	p := w.paneAt(s, q)
	if p == nil {
		return 0
	}
	p.Fires++
	return p.Fires - 1
}

// paneSufAt returns the suffix aggregate storage of pane q: tmp (indexed
// modulo its power-of-two length) for temporary sweeps, else the symbol's
// held block. A pane outside the held blocks cannot happen for the slot's
// own aggregator (see paneFree); it gets a scratch entry, never a panic.
func (w *WindowOperator) paneSufAt(s *winSym, tmp []aggState, q int64) *aggState {
	if tmp != nil {
		return &tmp[q&int64(len(tmp)-1)]
	}
	c := w.paneChunk(s, q>>w.paneShift)
	if c == 0 {
		return &w.qAgg2
	}
	return w.panes.auxAt(c, int(q&(w.paneP-1)))
}

// paneLive returns the lowest pane that may still be read: the first pane of
// the first window not yet fired on time (NextK), of the first window that
// can still change (kAlive), and of the slot's aggregator when its next
// slide can reuse it. An aggregator that the next firing would rebuild
// anyway (it ends before NextK's first pane) is dropped here, so that it
// holds nothing back. A symbol with nothing left to fire (no data at or
// after NextK's first pane) whose fired windows can no longer change is
// idle: it holds no pane anyone will read (a later trade takes the blocks
// it needs), and its aggregator is dropped too, so that an idle symbol
// holds no window: if it trades again soon enough for its next window to
// overlap the last one, that window is summed afresh instead of slid to
// (the same value up to rounding).
func (w *WindowOperator) paneLive(s *winSym) int64 {
	if s.NextK == math.MinInt64 {
		return math.MinInt64
	}
	if s.NDP == winNone && s.NextK <= w.kAlive {
		s.Sw.Dirty = 1 // idle: see above
		return math.MaxInt64
	}
	t := min(s.NextK*w.h, w.kAlive*w.h)
	if sw := &s.Sw; w.w > 1 && sw.Dirty == 0 && sw.Hi > sw.Lo {
		if sw.Hi >= s.NextK*w.h {
			t = min(t, sw.Lo)
		} else {
			sw.Dirty = 1
		}
	}
	return t
}

// paneFree releases what no window can read any more: the sketches of panes
// below paneLive and the blocks wholly below it.
func (w *WindowOperator) paneFree(s *winSym) {
	if s.BlkN == 0 {
		return
	}
	t := w.paneLive(s)
	if w.useSk && t > s.FreeQ {
		q0 := max(s.FreeQ, s.BlkLo<<w.paneShift)
		q1 := min(t, (s.BlkLo+s.BlkN)<<w.paneShift)
		for q := q0; q < q1; q++ {
			if p := w.paneAt(s, q); p.Sk != 0 {
				w.sks.release(p.Sk)
				p.Sk = 0
			}
		}
		s.FreeQ = t
	}
	for s.BlkN > 0 && (t == math.MaxInt64 || (s.BlkLo+1)<<w.paneShift <= t) {
		w.panes.release(w.paneBlock(s, s.BlkLo))
		if s.HotBlk == s.BlkLo {
			s.HotBlkC = 0
		}
		if s.ColdBlk == s.BlkLo {
			s.ColdBlkC = 0
		}
		s.BlkLo++
		s.BlkN--
	}
	if s.BlkN == 0 {
		s.FreeQ = math.MinInt64 // nothing held: blocks taken later start clean
	}
}

// paneReleaseAll returns every block and sketch of s.
func (w *WindowOperator) paneReleaseAll(s *winSym) {
	s.HotBlkC, s.ColdBlkC = 0, 0
	for ; s.BlkN > 0; s.BlkN-- {
		c := w.paneBlock(s, s.BlkLo)
		if w.useSk {
			for _, p := range w.panes.chunk(c) {
				if p.Sk != 0 {
					w.sks.release(p.Sk)
				}
			}
		}
		w.panes.release(c)
		s.BlkLo++
	}
}

// paneBlocksNeeded returns how many blocks holding panes [lo, hi] takes
// beyond those held, and false if the run would not fit the directory
// (which the span check of paneEvent rules out).
func (w *WindowOperator) paneBlocksNeeded(s *winSym, lo, hi int64) (int, bool) {
	bl, bh := lo>>w.paneShift, hi>>w.paneShift
	if s.BlkN > 0 {
		bl, bh = min(bl, s.BlkLo), max(bh, s.BlkLo+s.BlkN-1)
	}
	n := bh - bl + 1
	if n > w.paneDirN {
		return 0, false
	}
	return int(n - s.BlkN), true
}

// paneHold extends the held blocks to panes [lo, hi]; the caller reserved
// paneBlocksNeeded blocks.
func (w *WindowOperator) paneHold(s *winSym, lo, hi int64) {
	bl, bh := lo>>w.paneShift, hi>>w.paneShift
	set := func(b int64) { *w.dirs.at(s.Dir, int(b&(w.paneDirN-1))) = w.panes.alloc() }
	if s.BlkN == 0 {
		s.BlkLo = bl
		for b := bl; b <= bh; b++ {
			set(b)
		}
		s.BlkN = bh - bl + 1
		return
	}
	for ; s.BlkLo > bl; s.BlkN++ {
		s.BlkLo--
		set(s.BlkLo)
	}
	for ; s.BlkLo+s.BlkN <= bh; s.BlkN++ {
		set(s.BlkLo + s.BlkN)
	}
}

// paneSync moves NextK past the windows the firing watermark has passed
// (OnWatermark fired or skipped them all) and keeps NDP valid.
func (w *WindowOperator) paneSync(s *winSym) {
	if w.kFire > s.NextK {
		s.NextK = w.kFire
	}
	if s.NDP != winNone && s.NDP < s.NextK*w.h {
		w.paneRescan(s)
	}
}

// paneRescan finds the first non-empty pane at or after NextK·h.
func (w *WindowOperator) paneRescan(s *winSym) {
	s.NDP = winNone
	if s.DataHi == winNone {
		return
	}
	for q := max(s.NextK*w.h, s.LoPane); q <= s.DataHi; q++ {
		if w.paneGet(s, q).N > 0 {
			s.NDP = q
			return
		}
	}
}

// paneFirstK is the first window to fire: the first at or after NextK that
// contains pane NDP.
func (w *WindowOperator) paneFirstK(s *winSym) int64 {
	return max(s.NextK, winCeilDiv(s.NDP-w.w+1, w.h))
}

func (w *WindowOperator) paneKey(slot int, s *winSym) {
	if s.NDP == winNone {
		w.heapRemove(slot)
		return
	}
	w.heapSet(slot, w.winEnd(w.paneFirstK(s)))
}

// winSkip is returned by the per-type event functions for a trade that is
// skipped without being refused (it is not counted in Events).
const winSkip = codec.Reason(255)

func (w *WindowOperator) paneEvent(slot int, s *winSym, x, v float64, ts int64, seq uint64, ingest int64, dst []Output) ([]Output, codec.Reason) {
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
		w.paneSync(s)
	}
	// The live panes must keep fitting the span.
	lo, hi := kLo*w.h, p
	if s.LoPane != winNone {
		lo = min(lo, max(w.kAlive*w.h, s.LoPane))
		hi = max(hi, s.DataHi)
	}
	if hi-lo >= w.ringCap {
		return dst, w.reject(codec.ReasonOversize, "ts", "trade too far ahead of the watermark for MaxOpenWindowsPerSymbol")
	}
	// Take what this trade and its firings need before changing anything:
	// usually its blocks are held already and there is nothing else to take.
	holdHi := p
	if w.twoPanes {
		holdHi = kHi*w.h + w.w - 1
	}
	if bl := (kLo * w.h) >> w.paneShift; bl < s.BlkLo || holdHi>>w.paneShift >= s.BlkLo+s.BlkN ||
		(!w.paneSimple && (w.useSk || s.BufN >= w.bufCap || w.bufNeedsChunk(s))) {
		if r := w.paneTake(s, p, kLo*w.h, holdHi); r != codec.ReasonNone {
			return dst, r
		}
	}
	var at int64
	if w.useBuf {
		at = w.bufUpper(s, ts)
		w.bufInsert(s, at, winRec{Ts: ts, X: x, V: v})
	}
	s.LoPane, s.DataHi = lo, hi
	// paneAt, inlined; the block of the trade's pane becomes the hot one.
	if b := p >> w.paneShift; b != s.HotBlk || s.HotBlkC == 0 {
		s.HotBlk, s.HotBlkC = b, w.paneBlock(s, b)
	}
	pn := w.panes.at(s.HotBlkC, int(p&(w.paneP-1)))
	var prevX float64
	var nextTs int64
	if w.mask&aggNeedTW != 0 && pn.A.twMiddle(ts) {
		prevX, nextTs = w.neighbours(s, at)
	}
	pn.A.add(w.mask, x, v, ts, prevX, nextTs)
	if w.useSk {
		if pn.Sk == 0 {
			pn.Sk = w.sks.alloc()
		}
		w.sks.at(pn.Sk, 0).Add(x)
	}
	if kLo < s.NextK { // windows already fired (or skipped empty): re-fire them late
		if sw := &s.Sw; sw.Dirty == 0 && p >= sw.Lo && p < sw.Hi {
			if w.inv {
				sw.Back.add(w.mask, x, v, ts, 0, 0)
			} else {
				sw.Dirty = 1
			}
		}
		dst = w.paneRefire(slot, s, kLo, min(kHi, s.NextK-1), seq, ts, ingest, dst)
	}
	if p >= s.NextK*w.h && (s.NDP == winNone || p < s.NDP) {
		s.NDP = p
		w.paneKey(slot, s)
	}
	return dst, codec.ReasonNone
}

// paneTake takes what a trade in pane p needs, or refuses it: the blocks of
// panes [lo, hi], room and a chunk in the trade buffer, a sketch for the
// pane. What it takes is invisible until the trade is folded.
func (w *WindowOperator) paneTake(s *winSym, p, lo, hi int64) codec.Reason {
	nBlk := 0
	if bl, bh := lo>>w.paneShift, hi>>w.paneShift; bl < s.BlkLo || bh >= s.BlkLo+s.BlkN {
		w.paneFree(s)
		var ok bool
		if nBlk, ok = w.paneBlocksNeeded(s, lo, hi); !ok {
			return w.reject(codec.ReasonOversize, "ts", "trade too far ahead of the watermark for MaxOpenWindowsPerSymbol")
		}
	}
	if w.useBuf {
		if r := w.bufRoom(s); r != codec.ReasonNone {
			return r
		}
	}
	if (nBlk > 0 && (!w.dirReserve(s) || !w.panes.reserve(nBlk, &w.budget))) || (w.useBuf && !w.bufReserve(s)) ||
		(w.useSk && !w.paneSketchReady(s, p) && !w.sks.reserve(1, &w.budget)) {
		return w.refuseFull()
	}
	if nBlk > 0 {
		w.paneHold(s, lo, hi)
	}
	return codec.ReasonNone
}

// paneSketchReady reports whether pane q of s already has its sketch.
func (w *WindowOperator) paneSketchReady(s *winSym, q int64) bool {
	p := w.paneAt(s, q)
	return p != nil && p.Sk != 0
}

// paneWindow returns the aggregate of window k using sw, with suffix
// aggregates in tmp (temporary sweeps) or, when tmp is nil, beside the
// symbol's panes (its own aggregator s.Sw). The result points into sw, the
// panes or the operator's scratch: read it before the next call.
func (w *WindowOperator) paneWindow(s *winSym, sw *winSwag, tmp []aggState, k int64) *aggState {
	if w.w == 1 {
		return w.paneGet(s, k*w.h)
	}
	w.paneSlide(s, sw, tmp, k*w.h, k*w.h+w.w)
	if !w.inv && sw.Lo < sw.B {
		r := &w.qAgg
		*r = *w.paneSufAt(s, tmp, sw.Lo)
		r.merge(w.mask, &sw.Back)
		return r
	}
	return &sw.Back
}

// paneSlide moves sw to panes [lo, hi).
func (w *WindowOperator) paneSlide(s *winSym, sw *winSwag, tmp []aggState, lo, hi int64) {
	if sw.Dirty != 0 || lo < sw.Lo || lo > sw.Hi || hi < sw.Hi {
		w.paneRebuild(s, sw, lo, hi)
		return
	}
	for sw.Hi < hi {
		sw.Back.merge(w.mask, w.paneGet(s, sw.Hi))
		sw.Hi++
	}
	for sw.Lo < lo {
		if w.inv {
			sw.Back.sub(w.mask, w.paneGet(s, sw.Lo))
			sw.Evicts++
		} else if sw.Lo == sw.B { // flip: suffix aggregates of [Lo, Hi)
			for q := sw.Hi - 1; q >= sw.Lo; q-- {
				t := *w.paneGet(s, q)
				if q+1 < sw.Hi {
					t.merge(w.mask, w.paneSufAt(s, tmp, q+1))
				}
				*w.paneSufAt(s, tmp, q) = t
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
		w.paneRebuild(s, sw, lo, hi) // bound the rounding of subtractions
	}
}

func (w *WindowOperator) paneRebuild(s *winSym, sw *winSwag, lo, hi int64) {
	*sw = winSwag{Lo: lo, Hi: lo, B: lo}
	for sw.Hi < hi {
		sw.Back.merge(w.mask, w.paneGet(s, sw.Hi))
		sw.Hi++
	}
}

// panePct returns the percentile of window k holding n trades: exact from
// the buffer when possible, else from the panes' merged sketches.
func (w *WindowOperator) panePct(s *winSym, k, n int64) float64 {
	if v, ok := w.pctTimeRange(s, w.winStart(k), w.winEnd(k)-1, n); ok {
		return v
	}
	w.counters.Sketched++
	sk := &w.scratchSk
	sk.Reset()
	for q := k * w.h; q < k*w.h+w.w; q++ {
		if p := w.paneAt(s, q); p != nil && p.A.N > 0 && p.Sk != 0 {
			sk.Merge(w.sks.at(p.Sk, 0))
		}
	}
	return sk.rank(uint64(pctRank(w.pctMilli, n)))
}

// paneFire fires the slot's first due window (OnWatermark).
func (w *WindowOperator) paneFire(slot int, s *winSym, seq uint64, ts int64, dst []Output) []Output {
	k := w.paneFirstK(s)
	a := w.paneWindow(s, &s.Sw, nil, k)
	if a.N > 0 {
		ord := w.paneOrd(s, k*w.h)
		val := math.NaN()
		if w.kind == AggPercentile {
			val = w.panePct(s, k, a.N)
		}
		end := w.winEnd(k)
		dst = w.emit(dst, slot, a, w.winStart(k), end, end, TimingOnTime, uint64(ord), seq, ts, 0, val, true)
	}
	s.NextK = k + 1
	if s.NDP < s.NextK*w.h {
		w.paneRescan(s)
	}
	w.paneKey(slot, s)
	// Return what the fired windows no longer need (no visible effect: what
	// is released can never be read again). Usually there is nothing: the
	// lowest held block still has panes at or after NextK's first.
	if w.useSk || s.NDP == winNone || (s.BlkLo+1)<<w.paneShift <= min(s.NextK*w.h, w.kAlive*w.h) {
		w.paneFree(s)
	}
	if w.useBuf && !w.slotDue(slot) {
		w.bufPurge(s)
	}
	return dst
}

// paneRefire re-fires windows ka..kb (already fired or skipped) after a late
// trade, with timing late.
func (w *WindowOperator) paneRefire(slot int, s *winSym, ka, kb int64, seq uint64, ts, ingest int64, dst []Output) []Output {
	sw := winSwag{Dirty: 1}
	tmp := w.tmpSuffix
	for k := ka; k <= kb; k++ {
		a := w.paneWindow(s, &sw, tmp, k)
		if a.N == 0 {
			continue
		}
		ord := w.paneOrd(s, k*w.h)
		val := math.NaN()
		if w.kind == AggPercentile {
			val = w.panePct(s, k, a.N)
		}
		end := w.winEnd(k)
		dst = w.emit(dst, slot, a, w.winStart(k), end, end, TimingLate, uint64(ord), seq, ts, ingest, val, true)
	}
	return dst
}

// paneOpen appends the open windows of slot (see openWindows).
func (w *WindowOperator) paneOpen(slot int, s *winSym, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	w.paneSync(s)
	if s.NDP == winNone {
		return dst, st
	}
	sw := winSwag{Dirty: 1}
	tmp := w.tmpSuffix
	for k, kEnd := w.paneFirstK(s), winFloorDiv(s.DataHi, w.h); k <= kEnd; k++ {
		a := w.paneWindow(s, &sw, tmp, k)
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
			val = w.panePct(s, k, a.N)
		}
		var ord uint32
		fire := mode == winOpenFire
		if fire {
			ord = w.paneOrd(s, k*w.h)
		}
		dst = w.emit(dst, slot, a, start, end, end, TimingEarly, uint64(ord), seq, ts, ingest, val, fire)
	}
	return dst, st
}
