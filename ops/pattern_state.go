package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"qstream/codec"
)

// ErrPatternState is wrapped by every error of the pattern detector's
// LoadState.
var ErrPatternState = errors.New("ops: bad pattern state")

// Pattern state encoding, version 2, little-endian, floats as IEEE-754 bits
// (a restore is bit-exact):
//
//	magic     [4]byte "QPAT"
//	version   u16 (2), reserved u16 (0)
//	config    u64, codec.HashID of the specs and MaxTradesPerSymbol
//	nslots    u32, slots that follow (the pipeline's slots in use)
//	late      u64, capped u64
//	slots     nslots × {
//	            planned u8, seen u8, 6 zero bytes, lastTs i64, prevPrice u64,
//	            ntrails u32, nprev u32, prev nprev × u64,
//	            nents u32, 4 zero bytes, ents nents × { ts i64, volume u64 } (the ring, oldest first),
//	            nmax u32, nmin u32, maxq nmax × { at u64, price u64 }, minq nmin × { at u64, price u64 }
//	              (the deques, front first; at is the entry's index in ents),
//	            trails ntrails × { n u32, 4 zero bytes, vsum u64, vcmp u64 } (each set is the last n entries) }
//	indicator u64 length + IndicatorSet.AppendState when technical patterns exist
//	crc       u32, CRC-32C of every byte above
//
// Version 1 (still read) had no deques and a price in each ring entry
// ({ ts i64, price u64, volume u64 }): its deques are rebuilt on load. The
// ring keeps no prices since version 2: an entry in neither deque can never
// be a set's extreme. The running sums are restored bit for bit. A slot's
// plan is rebuilt from its symbol, so the pipeline passes the snapshot's
// slot table (loadSyms).
const (
	patStateMagic   = "QPAT"
	patStateVersion = 2
)

// patHashSpec is what the built-in detector's configuration hash covers: the
// built-in patterns' own fields, printed with %+v (the form of the first
// snapshots, which had exactly these fields), so that fields added to
// PatternSpec for other pattern types do not change it.
type patHashSpec struct {
	ID          string
	Type        PatternType
	Symbols     []string
	Threshold   float64
	TimeframeNs int64
	Down        bool
	Multiplier  float64
	Signal      TechnicalSignal
	Fast, Slow  int
	Period      int
	Overbought  float64
	Oversold    float64
}

func (ps *patternSet) configHash() uint64 {
	hs := make([]patHashSpec, len(ps.specs))
	for i, s := range ps.specs {
		hs[i] = patHashSpec{s.ID, s.Type, s.Symbols, s.Threshold, s.TimeframeNs, s.Down, s.Multiplier, s.Signal, s.Fast, s.Slow, s.Period, s.Overbought, s.Oversold}
	}
	return codec.HashID(fmt.Appendf(nil, "%+v|%d", hs, ps.capN))
}

// AppendState appends the detector's state for the pipeline's slots in use.
func (ps *patternSet) AppendState(dst []byte) []byte {
	start := len(dst)
	le := binary.LittleEndian
	n := 0
	for i := range ps.slots {
		if ps.slots[i].plan != nil {
			n = i + 1
		}
	}
	dst = append(dst, patStateMagic...)
	dst = le.AppendUint16(dst, patStateVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, ps.configHash())
	dst = le.AppendUint32(dst, uint32(n))
	dst = le.AppendUint64(dst, ps.stats.Late)
	dst = le.AppendUint64(dst, ps.stats.Capped)
	for i := range ps.slots[:n] {
		st := &ps.slots[i]
		var planned, seen byte
		if st.plan != nil {
			planned = 1
		}
		if st.seen {
			seen = 1
		}
		dst = append(dst, planned, seen, 0, 0, 0, 0, 0, 0)
		var prev []float64
		prevPrice := 0.0
		if ps.prevs != nil {
			pv := ps.prev(i)
			prevPrice = pv[len(pv)-1]
			if st.plan != nil && len(st.plan.tech) > 0 {
				prev = pv[:len(pv)-1]
			}
		}
		dst = le.AppendUint64(dst, uint64(st.lastTs))
		dst = le.AppendUint64(dst, math.Float64bits(prevPrice))
		dst = le.AppendUint32(dst, uint32(len(st.trails)))
		dst = le.AppendUint32(dst, uint32(len(prev)))
		for _, v := range prev {
			dst = le.AppendUint64(dst, math.Float64bits(v))
		}
		var oldest uint64 = st.tail
		if len(st.trails) > 0 {
			oldest = st.trails[0].head
		}
		dst = le.AppendUint32(dst, uint32(st.tail-oldest))
		dst = le.AppendUint32(dst, 0)
		m := uint64(len(st.ents) - 1)
		for k := oldest; k != st.tail; k++ {
			e := st.ents[k&m]
			dst = le.AppendUint64(dst, uint64(e.ts))
			dst = le.AppendUint64(dst, math.Float64bits(e.volume))
		}
		var mxh, mnh uint64 = st.mxt, st.mnt
		if len(st.trails) > 0 {
			mxh, mnh = st.trails[0].qx, st.trails[0].qn
		}
		dst = le.AppendUint32(dst, uint32(st.mxt-mxh))
		dst = le.AppendUint32(dst, uint32(st.mnt-mnh))
		for _, q := range [2]struct {
			q          []patQ
			head, tail uint64
		}{{st.maxq, mxh, st.mxt}, {st.minq, mnh, st.mnt}} {
			qm := uint64(len(q.q) - 1)
			for k := q.head; k != q.tail; k++ {
				e := q.q[k&qm]
				dst = le.AppendUint64(dst, e.pos-oldest)
				dst = le.AppendUint64(dst, math.Float64bits(e.price))
			}
		}
		for j := range st.trails {
			tr := &st.trails[j]
			dst = le.AppendUint32(dst, uint32(st.tail-tr.head))
			dst = le.AppendUint32(dst, 0)
			dst = le.AppendUint64(dst, math.Float64bits(tr.vsum))
			dst = le.AppendUint64(dst, math.Float64bits(tr.vcmp))
		}
	}
	if ps.ind != nil {
		at := len(dst)
		dst = le.AppendUint64(dst, 0)
		dst = ps.ind.AppendState(dst)
		le.PutUint64(dst[at:], uint64(len(dst)-at-8))
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], pipeCRCTable))
}

// patReader reads the encoding with one sticky error.
type patReader struct {
	b   []byte
	err error
}

func (r *patReader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		if r.err == nil {
			r.err = errors.New("truncated")
		}
		return make([]byte, max(n, 0))
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}
func (r *patReader) u32() uint32  { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *patReader) u64() uint64  { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *patReader) f64() float64 { return math.Float64frombits(r.u64()) }

// finish reads the end of a snapshot: the indicator state when withInd
// (u64 length, bytes), then nothing more.
func (r *patReader) finish(withInd bool) ([]byte, error) {
	var ind []byte
	if withInd {
		ind = r.take(int(min(r.u64(), uint64(len(r.b)))))
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return ind, nil
}

// LoadState replaces the detector's state with a snapshot of AppendState,
// checked completely first: on error the detector is unchanged. The
// pipeline sets loadSyms to the snapshot's slot table before calling it.
func (ps *patternSet) LoadState(src []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrPatternState, fmt.Sprintf(format, a...))
	}
	if len(src) < 36 || string(src[:4]) != patStateMagic {
		return bad("not a pattern snapshot")
	}
	le := binary.LittleEndian
	body := src[:len(src)-4]
	if crc32.Checksum(body, pipeCRCTable) != le.Uint32(src[len(body):]) {
		return bad("checksum mismatch")
	}
	r := &patReader{b: body[4:]}
	version := le.Uint16(r.take(2))
	if version != 1 && version != patStateVersion {
		return bad("version %d, this build reads 1 and %d", version, patStateVersion)
	}
	r.take(2)
	if h := r.u64(); h != ps.configHash() {
		return bad("taken with other patterns or limits")
	}
	n := int(r.u32())
	if n > len(ps.slots) || n > len(ps.loadSyms) {
		return bad("%d slots, the pipeline holds %d", n, len(ps.loadSyms))
	}
	stats := PatternStats{Late: r.u64(), Capped: r.u64()}
	slots := make([]patSlot, n)
	var prevs []float64 // the slots' range of ps.prevs
	if ps.prevs != nil {
		prevs = make([]float64, n*ps.pstride())
	}
	for i := range slots {
		flags := r.take(8)
		st := &slots[i]
		st.seen = flags[1] == 1
		st.lastTs = int64(r.u64())
		prevPrice := r.f64()
		if prevs != nil {
			prevs[(i+1)*ps.pstride()-1] = prevPrice
		}
		ntr, nprev := int(r.u32()), int(r.u32())
		if flags[0] == 0 {
			if ntr != 0 || nprev != 0 || st.seen {
				return bad("slot %d: state without a plan", i)
			}
			continue
		}
		st.plan = ps.planFor(ps.loadSyms[i])
		wantPrev := 0
		if len(st.plan.tech) > 0 {
			wantPrev = len(ps.indSpecs)
		}
		if ntr != len(st.plan.trails) || nprev != wantPrev {
			return bad("slot %d: %d trailing sets and %d indicator values, its patterns have %d and %d", i, ntr, nprev, len(st.plan.trails), wantPrev)
		}
		if nprev > 0 {
			for j := range nprev {
				prevs[i*ps.pstride()+j] = r.f64()
			}
		}
		nents := int(r.u32())
		r.take(4)
		entSize := 16
		if version == 1 {
			entSize = 24
		}
		if nents > ps.capN || nents*entSize > len(r.b) || (ntr == 0 && nents != 0) {
			return bad("slot %d: a ring of %d trades", i, nents)
		}
		var ents []patEnt
		var prices []float64 // version 1
		if nents > 0 {
			ents = make([]patEnt, patPow2(nents))
		}
		if version == 1 {
			prices = make([]float64, nents)
		}
		prevTs := int64(math.MinInt64)
		for k := range nents {
			ents[k].ts = int64(r.u64())
			if version == 1 {
				prices[k] = r.f64()
			}
			ents[k].volume = r.f64()
			if ents[k].ts < prevTs || (st.seen && ents[k].ts > st.lastTs) {
				return bad("slot %d: ring out of event-time order", i)
			}
			prevTs = ents[k].ts
		}
		st.ents, st.tail = ents, uint64(nents)
		if version == 1 {
			st.maxq, st.minq, st.mxt, st.mnt = patRebuildQ(prices)
		} else {
			nmax, nmin := int(r.u32()), int(r.u32())
			var err error
			if st.maxq, st.mxt, err = patReadQ(r, nents, nmax, func(back, p float64) bool { return back <= p }); err != nil {
				return bad("slot %d: highs: %v", i, err)
			}
			if st.minq, st.mnt, err = patReadQ(r, nents, nmin, func(back, p float64) bool { return back >= p }); err != nil {
				return bad("slot %d: lows: %v", i, err)
			}
		}
		if nents > 0 { // the deques end with the newest entry
			st.back = st.maxq[(st.mxt-1)&uint64(len(st.maxq)-1)].price
		}
		st.setTrails(ntr)
		last := nents
		for j := range st.trails {
			cnt := int(r.u32())
			r.take(4)
			vsum, vcmp := r.f64(), r.f64()
			if cnt > last || (j == 0 && cnt != nents) {
				return bad("slot %d: trailing set %d of %d trades in a ring of %d", i, j, cnt, nents)
			}
			last = cnt
			tr := &st.trails[j]
			tr.head = uint64(nents - cnt)
			if cnt > 0 {
				tr.headTs, tr.headVol = ents[tr.head].ts, ents[tr.head].volume
			}
			tr.seek(st)
			tr.vsum, tr.vcmp = vsum, vcmp
		}
		if r.err != nil {
			return bad("slot %d: %v", i, r.err)
		}
	}
	indState, err := r.finish(ps.ind != nil)
	if err != nil {
		return bad("%v", err)
	}
	if ps.ind != nil {
		if err := ps.ind.LoadState(indState); err != nil {
			return fmt.Errorf("%w: %w", ErrPatternState, err)
		}
	}
	clear(ps.slots)
	copy(ps.slots, slots)
	if ps.prevs != nil {
		clear(ps.prevs)
		copy(ps.prevs, prevs)
	}
	for i := range ps.slots[:n] {
		ps.slots[i].rebase()
	}
	ps.stats = stats
	return nil
}

// patRebuildQ builds the deques over a ring's prices (version 1).
func patRebuildQ(prices []float64) (maxq, minq []patQ, mxt, mnt uint64) {
	if len(prices) == 0 {
		return nil, nil, 0, 0
	}
	maxq, minq = make([]patQ, len(prices)), make([]patQ, len(prices))
	for k, p := range prices {
		for mxt != 0 && maxq[mxt-1].price <= p {
			mxt--
		}
		maxq[mxt] = patQ{uint64(k), p}
		mxt++
		for mnt != 0 && minq[mnt-1].price >= p {
			mnt--
		}
		minq[mnt] = patQ{uint64(k), p}
		mnt++
	}
	qx, qn := make([]patQ, patPow2(int(mxt))), make([]patQ, patPow2(int(mnt)))
	copy(qx, maxq[:mxt])
	copy(qn, minq[:mnt])
	return qx, qn, mxt, mnt
}

// patReadQ reads a deque of n elements over a ring of nents entries: at
// strictly increasing, the last at the newest entry, and no element that the
// next would have popped (pops(back, p) is push's test).
func patReadQ(r *patReader, nents, n int, pops func(back, p float64) bool) ([]patQ, uint64, error) {
	if n > nents || n*16 > len(r.b) || (n == 0) != (nents == 0) {
		return nil, 0, fmt.Errorf("%d elements over %d trades", n, nents)
	}
	if n == 0 {
		return nil, 0, nil
	}
	q := make([]patQ, patPow2(n))
	for k := range n {
		q[k] = patQ{r.u64(), r.f64()}
		if q[k].pos >= uint64(nents) || (k > 0 && (q[k].pos <= q[k-1].pos || pops(q[k-1].price, q[k].price))) {
			return nil, 0, fmt.Errorf("element %d of %d out of order", k, n)
		}
	}
	if q[n-1].pos != uint64(nents-1) {
		return nil, 0, errors.New("the newest trade is missing")
	}
	return q, uint64(n), nil
}

// patPow2 is the smallest power of two >= max(n, 8).
func patPow2(n int) int {
	size := 8
	for size < n {
		size *= 2
	}
	return size
}
