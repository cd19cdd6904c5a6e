package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// Checkpoint format (little-endian):
//
//	"QSWS" | version u16 | 0 u16 | fingerprint u64 | body length u64 | body | CRC-32C of everything before
//
// body = wm i64, ttlCursor i64, the WindowCounters, then each state array
// (slots, panes, pane suffixes, sessions, trades, trade suffixes, sketches)
// as a u64 element count and its elements in encoding/binary form. The
// fingerprint covers the spec text, the options and the geometry, so a
// checkpoint only loads into an operator built the same way. Processing-time
// state (the early-firing clock) is not saved.

const (
	winStateMagic   = "QSWS"
	winStateVersion = 1
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
		int64(o.EarlyEveryN), int64(o.Emit), w.ringCap, w.paneNs, w.w, w.h, w.bufCap, w.spec.OffsetNs} {
		h = winMix(h ^ uint64(v))
	}
	return h
}

// AppendState appends a snapshot of the operator's whole state to dst (a
// checkpoint). It allocates (it is not hot-path work) and its size is about
// the preallocated state.
func (w *WindowOperator) AppendState(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, winStateMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, winStateVersion)
	dst = binary.LittleEndian.AppendUint16(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, w.fingerprint())
	lenAt := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	bodyAt := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(w.wm))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(w.ttlCursor))
	dst, _ = binary.Append(dst, binary.LittleEndian, &w.counters)
	for i, a := range w.stateArrays() {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(a.n))
		if i == 0 { // the heap is derived: LoadState rebuilds it
			slots := slices.Clone(w.slots)
			for j := range slots {
				slots[j].HeapPos, slots[j].HeapKey = -1, 0
			}
			a.v = slots
		}
		dst, _ = binary.Append(dst, binary.LittleEndian, a.v)
	}
	binary.LittleEndian.PutUint64(dst[lenAt:], uint64(len(dst)-bodyAt))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], winCRC))
}

var winCRC = crc32.MakeTable(crc32.Castagnoli)

type winArray struct {
	n int
	v any
}

func (w *WindowOperator) stateArrays() []winArray {
	return []winArray{{len(w.slots), w.slots}, {len(w.panes), w.panes}, {len(w.paneSuffix), w.paneSuffix},
		{len(w.sess), w.sess}, {len(w.recs), w.recs}, {len(w.recSuffix), w.recSuffix}, {len(w.sketches), w.sketches}}
}

// LoadState replaces the operator's state with a snapshot from AppendState
// of an operator built with the same spec, options, op and maxSlots. The
// snapshot is checked (checksum, fingerprint, sizes and the invariants the
// operator indexes by) before anything is replaced: on error the operator
// is unchanged. Early-firing processing time restarts.
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
	body := src[hdr : len(src)-4]
	if len(body) < 16 {
		return bad("truncated")
	}
	n := &WindowOperator{}
	*n = *w
	n.wm = int64(binary.LittleEndian.Uint64(body))
	n.ttlCursor = int(binary.LittleEndian.Uint64(body[8:]))
	body = body[16:]
	used, err := binary.Decode(body, binary.LittleEndian, &n.counters)
	if err != nil {
		return bad("counters: %v", err)
	}
	body = body[used:]
	n.slots = make([]winSlot, len(w.slots))
	n.panes = make([]winPane, len(w.panes))
	n.paneSuffix = winMakeLike(w.paneSuffix)
	n.sess = make([]winSession, len(w.sess))
	n.recs = make([]winRec, len(w.recs))
	n.recSuffix = winMakeLike(w.recSuffix)
	n.sketches = make([]Sketch, len(w.sketches))
	for i, a := range n.stateArrays() {
		if len(body) < 8 {
			return bad("array %d: truncated", i)
		}
		if c := binary.LittleEndian.Uint64(body); c != uint64(a.n) {
			return bad("array %d: %d elements, want %d", i, c, a.n)
		}
		body = body[8:]
		if a.n == 0 {
			continue
		}
		used, err := binary.Decode(body, binary.LittleEndian, a.v)
		if err != nil {
			return bad("array %d: %v", i, err)
		}
		body = body[used:]
	}
	if len(body) != 0 {
		return bad("%d trailing bytes", len(body))
	}
	if err := n.validate(); err != nil {
		return bad("%v", err)
	}
	// Derived state: the firing watermark, the heap.
	n.setWatermark(n.wm)
	n.heap = w.heap[:0]
	n.heapTop = math.MaxInt64
	n.earlyArmed = false
	for i := range n.slots {
		s := &n.slots[i]
		s.HeapPos = -1
		if s.Used == 0 {
			n.ResetSlot(i) // whatever an unused slot holds, start it clean
		}
	}
	for i := range n.slots {
		if n.slots[i].Used == 0 {
			continue
		}
		switch n.spec.Type {
		case WindowTumbling, WindowHopping:
			n.paneKey(i)
		case WindowSliding:
			n.slideKey(i)
		case WindowSession:
			n.sessKey(i)
		}
	}
	*w = *n
	return nil
}

func winMakeLike(a []aggState) []aggState {
	if a == nil {
		return nil
	}
	return make([]aggState, len(a))
}

// validate checks what indexing relies on, so that a corrupt but
// checksummed snapshot cannot make the hot path panic.
func (w *WindowOperator) validate() error {
	if w.ttlCursor < 0 || w.ttlCursor >= w.maxSlots {
		return errors.New("idle cursor out of range")
	}
	paneLim := int64(math.MaxInt64)
	if w.paneNs > 0 {
		paneLim = (winMaxTs+8*MaxWindowSpanNs)/w.paneNs + 1
	}
	paneOK := func(q int64, noneOK bool) bool {
		return (noneOK && q == winNone) || (q > -paneLim && q < paneLim)
	}
	tsOK := func(t int64) bool { return t >= 0 && t <= winMaxTs }
	for i := range w.slots {
		s := &w.slots[i]
		if s.Used > 1 {
			return fmt.Errorf("slot %d: bad flag", i)
		}
		if s.Used == 0 {
			continue
		}
		if s.BufN < 0 || s.BufN > w.bufCap || (!w.useBuf && s.BufN != 0) || s.BufHead < 0 || s.BufHead > 1<<62 {
			return fmt.Errorf("slot %d: buffer bounds", i)
		}
		if s.Cursor < s.BufHead || s.Cursor > s.BufHead+s.BufN {
			return fmt.Errorf("slot %d: cursor", i)
		}
		for j := int64(0); j < s.BufN; j++ {
			r := w.rec(i, s.BufHead+j)
			if !tsOK(r.Ts) || !winFinite(r.X) || !winFinite(r.V) || (j > 0 && r.Ts < w.rec(i, s.BufHead+j-1).Ts) {
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
				(s.NDP != winNone && (s.DataHi == winNone || s.LoPane == winNone)) {
				return fmt.Errorf("slot %d: pane indices", i)
			}
		}
		if w.spec.Type == WindowCount {
			if s.Chunk.N < 0 || s.Chunk.N >= w.countN || (w.useBuf && s.BufN != s.Chunk.N) {
				return fmt.Errorf("slot %d: count chunk", i)
			}
		}
		if int64(s.NSess) > w.maxOpen || (w.spec.Type != WindowSession && s.NSess != 0) {
			return fmt.Errorf("slot %d: session count", i)
		}
		if w.spec.Type == WindowSession {
			ss := w.sessOf(i)
			for j := 0; j < int(s.NSess); j++ {
				se := &ss[j]
				if !tsOK(se.First) || !tsOK(se.Last) || se.First > se.Last || (j > 0 && se.First <= ss[j-1].Last) || se.A.N <= 0 {
					return fmt.Errorf("slot %d: session %d bounds", i, j)
				}
				if w.useSk {
					if se.Sk < 0 || int64(se.Sk) >= w.maxOpen {
						return fmt.Errorf("slot %d: session %d sketch", i, j)
					}
					for k := 0; k < j; k++ {
						if ss[k].Sk == se.Sk {
							return fmt.Errorf("slot %d: sessions share a sketch", i)
						}
					}
				}
			}
		}
	}
	for i := range w.sketches {
		if !w.sketches[i].valid() {
			return fmt.Errorf("sketch %d: inconsistent", i)
		}
	}
	return nil
}
