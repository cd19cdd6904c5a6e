package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Checkpoint format (little-endian):
//
//	"QSWS" | version u16 | 0 u16 | fingerprint u64 | body length u64 | body | CRC-32C of everything before
//
// body = wm i64, ttlCursor i64, reclaim sweep cursor u32 and tick u32,
// the WindowCounters, the number of slot
// records u64, then one record per slot in use, by ascending slot:
//
//	slot u32, 0 u32, winSym, then
//	its held pane blocks: BlkN × paneP winPane, each followed by its Sketch when it has one (Sk = 1),
//	the count u64 and the suffix aggregates of its pane aggregator's [Lo, B),
//	its buffered trades: BufN winRec,
//	the count u64 and the suffix aggregates of its trade aggregator's [Lo, B),
//	its sessions by time: NSess × winSession, each followed by its Sketch when it has one
//
// in encoding/binary form, pool indices, caches and heap positions written
// as 0 or −1 (a pane's or session's Sk as 1 for "has a sketch"): a
// snapshot holds what the symbols hold, not the pools. The
// fingerprint covers the spec text, the options and the geometry, so a
// checkpoint only loads into an operator built the same way. Processing-time
// state (the early-firing clock) is not saved. Version 1 (the preallocated
// arrays) is not read.

const (
	winStateMagic   = "QSWS"
	winStateVersion = 2
)

// ErrWindowState is wrapped by every LoadState error.
var ErrWindowState = errors.New("ops: bad window state")

func (w *WindowOperator) fingerprint() uint64 {
	h := uint64(14695981039346656037)
	for _, b := range []byte(w.spec.String()) {
		h = winMix(h ^ uint64(b))
	}
	o := w.opts
	for _, v := range []int64{int64(w.op), int64(w.maxSlots), o.AllowedLatenessNs, int64(o.MaxOpenWindowsPerSymbol),
		int64(o.MaxBufferedEventsPerSymbol), int64(o.PercentileExactMax), o.IdleSymbolTTLNs, o.EarlyEveryNs,
		int64(o.EarlyEveryN), int64(o.Emit), w.ringCap, w.paneNs, w.w, w.h, w.bufCap, w.spec.OffsetNs, w.paneP} {
		h = winMix(h ^ uint64(v))
	}
	return h
}

// AppendState appends a snapshot of the operator's state to dst (a
// checkpoint): the symbols in use and what they hold, so its size follows
// the live state, not maxSlots. It allocates (it is not hot-path work).
func (w *WindowOperator) AppendState(dst []byte) []byte {
	le := binary.LittleEndian
	start := len(dst)
	dst = append(dst, winStateMagic...)
	dst = le.AppendUint16(dst, winStateVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, w.fingerprint())
	lenAt := len(dst)
	dst = le.AppendUint64(dst, 0)
	bodyAt := len(dst)
	dst = le.AppendUint64(dst, uint64(w.wm))
	dst = le.AppendUint64(dst, uint64(w.ttlCursor))
	dst = le.AppendUint64(dst, uint64(w.reclaimCursor)|uint64(w.reclaimTick)<<32)
	dst, _ = binary.Append(dst, le, &w.counters)
	nAt := len(dst)
	dst = le.AppendUint64(dst, 0)
	var n uint64
	for i := 0; i < w.maxSlots; i++ {
		if s := w.symIf(i); s != nil {
			n++
			dst = le.AppendUint32(dst, uint32(i))
			dst = le.AppendUint32(dst, 0)
			dst = w.appendSym(dst, s)
		}
	}
	le.PutUint64(dst[nAt:], n)
	le.PutUint64(dst[lenAt:], uint64(len(dst)-bodyAt))
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], winCRC))
}

var winCRC = crc32.MakeTable(crc32.Castagnoli)

// appendSym appends what s holds (see the format above).
func (w *WindowOperator) appendSym(dst []byte, s *winSym) []byte {
	le := binary.LittleEndian
	c := *s
	c.Dir, c.Sess, c.HotBlk, c.HotBlkC, c.HotRecN, c.HotRecC = 0, 0, 0, 0, 0, 0
	c.ColdBlk, c.ColdBlkC = 0, 0
	dst, _ = binary.Append(dst, le, &c)
	for b := s.BlkLo; b < s.BlkLo+s.BlkN; b++ {
		for _, p := range w.panes.chunk(w.paneBlock(s, b)) {
			sk := p.Sk
			if sk != 0 {
				p.Sk = 1
			}
			dst, _ = binary.Append(dst, le, &p)
			if sk != 0 {
				dst, _ = binary.Append(dst, le, w.sks.at(sk, 0))
			}
		}
	}
	lo, hi := w.sufRange(s, w.twoPanes)
	dst = le.AppendUint64(dst, uint64(hi-lo))
	for q := lo; q < hi; q++ {
		dst, _ = binary.Append(dst, le, w.paneSufAt(s, nil, q))
	}
	for i := s.BufHead; i < s.BufHead+s.BufN; i++ {
		dst, _ = binary.Append(dst, le, w.rec(s, i))
	}
	lo, hi = w.sufRange(s, w.twoRecs)
	dst = le.AppendUint64(dst, uint64(hi-lo))
	for q := lo; q < hi; q++ {
		dst, _ = binary.Append(dst, le, w.recSufAt(s, nil, q))
	}
	for c := s.Sess; c != 0; {
		se := *w.sessNode(c)
		c = se.Next
		sk := se.Sk
		se.Next, se.Sk = 0, 0
		if sk != 0 {
			se.Sk = 1
		}
		dst, _ = binary.Append(dst, le, &se)
		if sk != 0 {
			dst, _ = binary.Append(dst, le, w.sks.at(sk, 0))
		}
	}
	return dst
}

// sufRange returns the items whose suffix aggregates the symbol's own
// aggregator relies on: [Lo, B) of a clean two-stacks, else nothing.
func (w *WindowOperator) sufRange(s *winSym, twoStacks bool) (lo, hi int64) {
	if !twoStacks || s.Sw.Dirty != 0 || s.Sw.B <= s.Sw.Lo {
		return 0, 0
	}
	return s.Sw.Lo, s.Sw.B
}

// winDec reads a snapshot body; the first error sticks.
type winDec struct {
	b   []byte
	err error
}

func (d *winDec) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
}

func (d *winDec) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *winDec) val(v any) {
	if d.err != nil {
		return
	}
	n, err := binary.Decode(d.b, binary.LittleEndian, v)
	if err != nil {
		d.fail("truncated")
		return
	}
	d.b = d.b[n:]
}

// LoadState replaces the operator's state with a snapshot from AppendState
// of an operator built with the same spec, options, op and maxSlots. The
// snapshot is checked (checksum, fingerprint, sizes, MaxStateBytes and the
// invariants the operator indexes by) before anything is replaced: on error
// the operator is unchanged. Early-firing processing time restarts.
func (w *WindowOperator) LoadState(src []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrWindowState, fmt.Sprintf(format, a...))
	}
	const hdr = 4 + 2 + 2 + 8 + 8
	if len(src) < hdr+4 {
		return bad("%d bytes, shorter than a header", len(src))
	}
	if string(src[:4]) != winStateMagic {
		return bad("not a window checkpoint")
	}
	if v := binary.LittleEndian.Uint16(src[4:]); v != winStateVersion {
		return bad("version %d, want %d", v, winStateVersion)
	}
	if fp := binary.LittleEndian.Uint64(src[8:]); fp != w.fingerprint() {
		return bad("taken from an operator with another spec or options")
	}
	bodyLen := binary.LittleEndian.Uint64(src[16:])
	if bodyLen != uint64(len(src)-hdr-4) {
		return bad("body length %d does not match %d bytes", bodyLen, len(src)-hdr-4)
	}
	if crc := binary.LittleEndian.Uint32(src[len(src)-4:]); crc != crc32.Checksum(src[:len(src)-4], winCRC) {
		return bad("checksum mismatch")
	}
	n, err := NewWindowOperator(w.op, w.spec, w.opts, w.maxSlots)
	if err != nil {
		return bad("%v", err)
	}
	d := &winDec{b: src[hdr : len(src)-4]}
	n.wm = int64(d.u64())
	n.ttlCursor = int(d.u64())
	rc := d.u64()
	n.reclaimCursor, n.reclaimTick = int(rc&math.MaxUint32), uint32(rc>>32)
	d.val(&n.counters)
	nrec := d.u64()
	if d.err == nil && nrec > uint64(n.maxSlots) {
		d.fail("%d slot records for %d slots", nrec, n.maxSlots)
	}
	next := int64(0)
	for i := uint64(0); i < nrec && d.err == nil; i++ {
		slot := int64(d.u64() & math.MaxUint32)
		if d.err != nil {
			break
		}
		if slot < next || slot >= int64(n.maxSlots) {
			d.fail("slot record %d: slot %d out of order or range", i, slot)
			break
		}
		next = slot + 1
		if err := n.loadSym(d, int(slot)); err != nil {
			d.fail("slot %d: %v", slot, err)
		}
	}
	if d.err != nil {
		return bad("%v", d.err)
	}
	if len(d.b) != 0 {
		return bad("%d trailing bytes", len(d.b))
	}
	if err := n.validate(); err != nil {
		return bad("%v", err)
	}
	// Derived state: the firing watermark, the heap.
	n.setWatermark(n.wm)
	for i := 0; i < n.maxSlots; i++ {
		s := n.symIf(i)
		if s == nil {
			continue
		}
		switch n.spec.Type {
		case WindowTumbling, WindowHopping:
			n.paneKey(i, s)
		case WindowSliding:
			n.slideKey(i, s)
		case WindowSession:
			n.sessKey(i, s)
		}
	}
	*w = *n
	return nil
}

// loadSym decodes the state of slot from d into fresh pool chunks.
func (w *WindowOperator) loadSym(d *winDec, slot int) error {
	var in winSym
	d.val(&in)
	if d.err != nil {
		return d.err
	}
	if in.Used != 1 || in.Early > 1 {
		return errors.New("bad flags")
	}
	full := errors.New("state over MaxStateBytes")
	s := w.symPage(slot)
	if s == nil {
		return full
	}
	*s = in
	s.Dir, s.Sess, s.NSess, s.BlkN, s.BufN = 0, 0, 0, 0, 0
	s.HotBlk, s.HotBlkC, s.HotRecN, s.HotRecC, s.ColdBlk, s.ColdBlkC = 0, 0, 0, 0, 0, 0
	// Pane blocks.
	if in.BlkN < 0 || in.BlkN > w.paneDirN || (w.ringCap == 0 && in.BlkN != 0) ||
		in.BlkLo < -(winMaxTs>>w.paneShift) || in.BlkLo > winMaxTs>>w.paneShift {
		return errors.New("pane blocks")
	}
	if in.BlkN > 0 {
		if !w.dirReserve(s) || !w.panes.reserve(int(in.BlkN), &w.budget) {
			return full
		}
		w.paneHold(s, in.BlkLo<<w.paneShift, (in.BlkLo+in.BlkN-1)<<w.paneShift)
		for b := s.BlkLo; b < s.BlkLo+s.BlkN && d.err == nil; b++ {
			ps := w.panes.chunk(w.paneBlock(s, b))
			for j := range ps {
				p := &ps[j]
				d.val(p)
				if d.err != nil {
					return d.err
				}
				if p.Sk != 0 {
					if p.Sk != 1 || !w.useSk {
						p.Sk = 0
						return errors.New("pane sketch flag")
					}
					if !w.sks.reserve(1, &w.budget) {
						p.Sk = 0
						return full
					}
					p.Sk = w.sks.alloc()
					if err := w.loadSketch(d, w.sks.at(p.Sk, 0)); err != nil {
						return err
					}
				}
			}
		}
	}
	if err := w.loadSuffix(d, s, w.twoPanes, func(q int64) *aggState {
		if w.paneAt(s, q) == nil {
			return nil
		}
		return w.paneSufAt(s, nil, q)
	}); err != nil {
		return err
	}
	// Buffered trades.
	if in.BufN < 0 || in.BufN > w.bufCap || (!w.useBuf && in.BufN != 0) || in.BufHead < 0 || in.BufHead > 1<<62 {
		return errors.New("buffer bounds")
	}
	for i := int64(0); i < in.BufN; i++ {
		var r winRec
		d.val(&r)
		if d.err != nil {
			return d.err
		}
		if !w.bufReserve(s) {
			return full
		}
		w.bufInsert(s, s.BufHead+s.BufN, r)
	}
	if err := w.loadSuffix(d, s, w.twoRecs, func(q int64) *aggState {
		if q < s.BufHead || q >= s.BufHead+s.BufN {
			return nil
		}
		return w.recSufAt(s, nil, q)
	}); err != nil {
		return err
	}
	// Sessions, appended in order.
	if int64(in.NSess) > w.maxOpen || (w.spec.Type != WindowSession && in.NSess != 0) {
		return errors.New("session count")
	}
	tail := int32(0)
	for i := uint32(0); i < in.NSess; i++ {
		if !w.sess.reserve(1, &w.budget) {
			return full
		}
		c := w.sess.alloc()
		se := w.sessNode(c)
		*se = winSession{}
		if tail == 0 {
			s.Sess = c
		} else {
			w.sessNode(tail).Next = c
		}
		tail = c
		s.NSess++
		d.val(se)
		if d.err != nil {
			se.Sk, se.Next = 0, 0
			return d.err
		}
		sk := se.Sk
		se.Sk, se.Next = 0, 0
		if sk != 0 {
			if sk != 1 || !w.useSk {
				return errors.New("session sketch flag")
			}
			if !w.sks.reserve(1, &w.budget) {
				return full
			}
			se.Sk = w.sks.alloc()
			if err := w.loadSketch(d, w.sks.at(se.Sk, 0)); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadSuffix reads the suffix aggregates of the symbol's aggregator:
// exactly sufRange of them, each into at(q), which must hold it.
func (w *WindowOperator) loadSuffix(d *winDec, s *winSym, twoStacks bool, at func(q int64) *aggState) error {
	n := d.u64()
	if d.err != nil {
		return d.err
	}
	lo, hi := w.sufRange(s, twoStacks)
	if n != uint64(hi-lo) {
		return errors.New("suffix aggregates")
	}
	for q := lo; q < hi; q++ {
		p := at(q)
		if p == nil {
			return errors.New("suffix aggregates outside the held state")
		}
		d.val(p)
		if d.err != nil {
			return d.err
		}
	}
	return nil
}

func (w *WindowOperator) loadSketch(d *winDec, sk *Sketch) error {
	d.val(sk)
	if d.err != nil {
		return d.err
	}
	if !sk.valid() {
		return errors.New("inconsistent sketch")
	}
	return nil
}

// validate checks what indexing relies on, so that a corrupt but
// checksummed snapshot cannot make the hot path panic.
func (w *WindowOperator) validate() error {
	if w.ttlCursor < 0 || w.ttlCursor >= w.maxSlots || w.reclaimCursor < 0 || w.reclaimCursor >= w.maxSlots {
		return errors.New("sweep cursor out of range")
	}
	paneLim := int64(math.MaxInt64)
	if w.paneNs > 0 {
		paneLim = (winMaxTs+8*MaxWindowSpanNs)/w.paneNs + 1
	}
	paneOK := func(q int64, noneOK bool) bool {
		return (noneOK && q == winNone) || (q > -paneLim && q < paneLim)
	}
	tsOK := func(t int64) bool { return t >= 0 && t <= winMaxTs }
	for i := 0; i < w.maxSlots; i++ {
		s := w.symIf(i)
		if s == nil {
			continue
		}
		if s.Cursor < s.BufHead || s.Cursor > s.BufHead+s.BufN {
			return fmt.Errorf("slot %d: cursor", i)
		}
		for j := int64(0); j < s.BufN; j++ {
			r := w.rec(s, s.BufHead+j)
			if !tsOK(r.Ts) || !winFinite(r.X) || !winFinite(r.V) || (j > 0 && r.Ts < w.rec(s, s.BufHead+j-1).Ts) {
				return fmt.Errorf("slot %d: buffered trade %d", i, j)
			}
		}
		if sw := &s.Sw; sw.Dirty > 1 || sw.Lo > sw.B || sw.B > sw.Hi || sw.Evicts < 0 || sw.Back.N < 0 ||
			(w.ringCap > 0 && (!paneOK(sw.Lo, false) || !paneOK(sw.Hi, false) || sw.Hi-sw.Lo > w.ringCap)) ||
			(w.spec.Type == WindowSliding && sw.Dirty == 0 && sw.Hi > sw.Lo && (sw.Lo < s.BufHead || sw.Hi > s.BufHead+s.BufN)) {
			return fmt.Errorf("slot %d: window aggregator", i)
		}
		if s.LastPoint != math.MinInt64 && !tsOK(s.LastPoint) {
			return fmt.Errorf("slot %d: last point", i)
		}
		if w.ringCap > 0 {
			if !paneOK(s.NDP, true) || !paneOK(s.DataHi, true) || !paneOK(s.LoPane, true) ||
				(s.NextK != math.MinInt64 && !paneOK(s.NextK, false)) || (s.NDP != winNone && s.NextK == math.MinInt64) ||
				(s.NDP != winNone && (s.DataHi == winNone || s.LoPane == winNone)) ||
				(s.FreeQ != math.MinInt64 && !paneOK(s.FreeQ, false)) {
				return fmt.Errorf("slot %d: pane indices", i)
			}
		}
		if w.spec.Type == WindowCount {
			if s.Chunk.N < 0 || s.Chunk.N >= w.countN || (w.useBuf && s.BufN != s.Chunk.N) {
				return fmt.Errorf("slot %d: count chunk", i)
			}
		}
		var prev *winSession
		for c := s.Sess; c != 0; {
			se := w.sessNode(c)
			if !tsOK(se.First) || !tsOK(se.Last) || se.First > se.Last || (prev != nil && se.First <= prev.Last) || se.A.N <= 0 ||
				(w.useSk && se.Sk == 0) {
				return fmt.Errorf("slot %d: session bounds", i)
			}
			prev = se
			c = se.Next
		}
	}
	return nil
}
