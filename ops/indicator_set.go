package ops

import (
	"errors"
	"fmt"
	"math"
)

// MaxIndicatorStateBytes bounds the memory of one IndicatorSet (see
// IndicatorStateBytes); NewIndicatorSet refuses larger configurations with
// ErrIndicatorStateTooLarge.
const MaxIndicatorStateBytes = 1 << 30

// ErrIndicatorStateTooLarge is returned (wrapped, with the figures) by
// NewIndicatorSet when maxSlots × the per-slot state exceeds
// MaxIndicatorStateBytes.
var ErrIndicatorStateTooLarge = errors.New("ops: indicator state too large")

// indSlotHdrBytes is the size of indSlotHdr: three 8-byte words.
const indSlotHdrBytes = 24

// Per-kind state sizes, in float64s of the arena and uint32s of the integer
// side array. See IndicatorSet for the layouts.
func (s IndicatorSpec) stateFloats() int {
	switch s.Kind {
	case IndSMA:
		return 4 + s.Period
	case IndEMA:
		return 1
	case IndRSI:
		return 3
	case IndVWAP:
		return 4
	case IndVWAPN:
		return 8 + 2*s.Period
	}
	return 0
}

func (s IndicatorSpec) stateInts() int {
	switch s.Kind {
	case IndSMA:
		return 1
	case IndVWAPN:
		return 2
	}
	return 0
}

// IndicatorStateBytes returns the memory an IndicatorSet of specs for
// maxSlots symbols preallocates:
//
//	maxSlots × (8·Σ floats(spec) + 4·Σ ints(spec) + 24)
//
// with floats = n+4 for SMA(n), 1 for EMA, 3 for RSI, 4 for the session
// VWAP and 2n+8 for vwap:n; ints = 1 for SMA, 2 for vwap:n; 24 bytes of slot
// header. The default set (sma:5,sma:20,ema:12,rsi:14,vwap) takes 360 bytes
// per symbol; sma:100000 alone 800 KB. Specs are assumed valid.
func IndicatorStateBytes(specs []IndicatorSpec, maxSlots int) int64 {
	return int64(maxSlots) * indPerSlotBytes(specs)
}

func indPerSlotBytes(specs []IndicatorSpec) int64 {
	var floats, ints int64
	for _, s := range specs {
		floats += int64(s.stateFloats())
		ints += int64(s.stateInts())
	}
	return 8*floats + 4*ints + indSlotHdrBytes
}

// IndicatorSet computes a fixed list of indicators for up to maxSlots
// symbols, one trade at a time, in O(1) per indicator and without
// allocating. A slot is the caller's dense index of a symbol (for example
// its interned id, or its index within a shard). The set is owned by one
// goroutine (an engine shard); it is not safe for concurrent use.
//
// # Definitions
//
// They follow TA-Lib's default (classic) mode; "input" means a trade of the
// slot since the set was made or the slot last reset. Until an indicator has
// a value its output is NaN (null in JSON).
//
//   - SMA(n): mean of the last n prices; first value at the n-th input.
//   - EMA(n): ema += (price − ema)·k with k = 2/(n+1). With EMASeedSMA the
//     seed is the SMA of the first n inputs, emitted at the n-th input; with
//     EMASeedFirst the seed is the first input, emitted at once.
//   - RSI(n): Wilder. With changes d = price − previous price, gain = max(d,0)
//     and loss = max(−d,0), the first averages are the means of the first n
//     gains and losses (first value at input n+1); later
//     avg = (avg·(n−1) + x)/n. RSI = 100·avgGain/(avgGain+avgLoss): 100 when
//     there were only gains, 0 when only losses, and 0 when there was neither
//     (TA-Lib's convention for a flat series; Tulip would give NaN). TA-Lib
//     tests the denominator against an epsilon (1e-8 in 0.4, 1e-14 in 0.6);
//     this set tests it against exactly zero so that instruments quoted in
//     tiny units keep their RSI.
//   - vwap (session): Σ price·volume / Σ volume over the slot's trades of the
//     current session. Sessions are [off + k·len, off + (k+1)·len) in event
//     time (IndicatorOptions; default: UTC days). A trade at or after the end
//     of the current session starts a new one and resets the sums; a trade
//     stamped before the current session's start (out of order) cannot reopen
//     a closed session and is counted in the current one. NaN while the
//     session's Σ volume is 0.
//   - vwap:n (rolling): the same over the slot's last n trades, regardless of
//     sessions; NaN until n trades have arrived, and NaN while all n trades in
//     the window have volume 0.
//
// # Numerics
//
// Sums are compensated pairs (sum, comp) whose value is sum+comp; each
// addition captures its exact rounding error with Knuth's branch-free TwoSum
// (the Neumaier variant of Kahan summation). A rolling sum (SMA, vwap:n) adds
// the new value and subtracts the evicted one on every trade, so on its own
// its error could still creep up over millions of trades. Each rolling sum
// therefore has a fresh twin that only adds: the sum of the values that
// entered since the ring last wrapped. When the ring wraps, that twin holds
// exactly the n values of the window; it replaces the rolling sum and starts
// again from zero. Error never carries over from one window to the next: a
// value's error comes only from the compensated additions of the last 2n
// trades at most, never from the history before them, in O(1) per trade and
// with no recomputation spike. When a vwap:n window holds only zero volumes
// its exact sums are zero and are set to exact zeros, so "NaN when the
// window's volume is 0" holds exactly. Session sums only add non-negative
// terms and need no twin. EMA and RSI are recurrences with the same
// operation order as TA-Lib. Products are rounded explicitly (float64(x*y))
// so that no platform fuses them into FMAs: the same input gives
// bit-identical output on every architecture, which byte-identical replay
// needs.
//
// # Layout
//
// All state is in three preallocated pointer-free arrays, so the GC has
// nothing to scan and AppendState is a straight copy:
//
//   - arena []float64, maxSlots × stride; within a slot each indicator owns
//     a fixed range: SMA(n) [sum, comp, fresh sum, comp, ring[n]]; EMA [ema,
//     or the sum of the first inputs while seeding]; RSI [previous price,
//     avgGain, avgLoss, or the sums of gains and losses while warming up];
//     vwap [Σpv, comp, Σv, comp]; vwap:n [Σpv, comp, Σv, comp, fresh Σpv,
//     comp, fresh Σv, comp, (pv, v) ring[n]].
//   - ints []uint32, maxSlots × istride: the ring head of SMA(n); the ring head
//     and the number of non-zero volumes in the window of vwap:n.
//   - hdr []indSlotHdr: per slot the trade count and the current session.
//
// Memory is IndicatorStateBytes(specs, maxSlots), at most
// MaxIndicatorStateBytes.
type IndicatorSet struct {
	specs   []IndicatorSpec
	plan    []indPlan
	opts    IndicatorOptions
	slots   int
	stride  int // float64s per slot in arena
	istride int // uint32s per slot in ints
	arena   []float64
	ints    []uint32
	hdr     []indSlotHdr
	used    int // slots [0, used) have seen a trade or a reset; snapshots hold only those
}

// indPlan is the precomputed per-indicator part of Update.
type indPlan struct {
	kind      IndicatorKind
	seedFirst bool    // EMA: seed with the first input
	n         int     // period
	un        uint64  // period, for comparisons with the trade count
	nf        float64 // period as float64
	nm1       float64 // period − 1 (RSI)
	k         float64 // 2/(n+1) (EMA)
	off       int     // first float64 of this indicator within a slot's arena range
	ioff      int     // first uint32 of this indicator within a slot's ints range
}

// indSlotHdr is a slot's fixed header.
type indSlotHdr struct {
	count       uint64 // valid trades since start or the last ResetSlot
	sessStartNs int64  // start of the current session (session VWAP), when sessOpen is 1
	sessOpen    uint64 // 1 once a session is open; a word so the header has no padding
}

// NewIndicatorSet returns a set computing specs for slots 0..maxSlots−1, all
// empty. It validates specs as ParseIndicators does (1..MaxValues, periods in
// range, no duplicates) and refuses a state larger than
// MaxIndicatorStateBytes. All memory is allocated here.
func NewIndicatorSet(specs []IndicatorSpec, opts IndicatorOptions, maxSlots int) (*IndicatorSet, error) {
	if err := indValidateSpecs(specs); err != nil {
		return nil, err
	}
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if maxSlots < 1 {
		return nil, fmt.Errorf("ops: indicator set: maxSlots %d, want >= 1", maxSlots)
	}
	perSlot := indPerSlotBytes(specs)
	if int64(maxSlots) > MaxIndicatorStateBytes/perSlot {
		return nil, fmt.Errorf("%w: %d slots × %d bytes per slot > %d bytes (MaxIndicatorStateBytes); use fewer slots or shorter periods",
			ErrIndicatorStateTooLarge, maxSlots, perSlot, MaxIndicatorStateBytes)
	}
	s := &IndicatorSet{
		specs: append([]IndicatorSpec(nil), specs...),
		plan:  make([]indPlan, len(specs)),
		opts:  opts,
		slots: maxSlots,
	}
	for i, sp := range specs {
		s.plan[i] = indPlan{
			kind:      sp.Kind,
			seedFirst: opts.EMASeed == EMASeedFirst,
			n:         sp.Period,
			un:        uint64(sp.Period),
			nf:        float64(sp.Period),
			nm1:       float64(sp.Period - 1),
			k:         2 / float64(sp.Period+1),
			off:       s.stride,
			ioff:      s.istride,
		}
		s.stride += sp.stateFloats()
		s.istride += sp.stateInts()
	}
	s.arena = make([]float64, maxSlots*s.stride)
	s.ints = make([]uint32, maxSlots*s.istride)
	s.hdr = make([]indSlotHdr, maxSlots)
	return s, nil
}

// Specs returns a copy of the set's indicator list, in output order.
func (s *IndicatorSet) Specs() []IndicatorSpec {
	return append([]IndicatorSpec(nil), s.specs...)
}

// MaxSlots returns the number of slots given to NewIndicatorSet.
func (s *IndicatorSet) MaxSlots() int { return s.slots }

// Options returns the set's options with defaults filled in and the session
// offset reduced to [0, SessionLengthNs).
func (s *IndicatorSet) Options() IndicatorOptions { return s.opts }

// ResetSlot forgets everything about slot, as if it had never had a trade
// (a symbol was unassigned, or a new trading day restarts all indicators).
// Precondition: 0 <= slot < MaxSlots().
func (s *IndicatorSet) ResetSlot(slot int) {
	clear(s.arena[slot*s.stride : (slot+1)*s.stride])
	clear(s.ints[slot*s.istride : (slot+1)*s.istride])
	s.hdr[slot] = indSlotHdr{}
}

// Update feeds one validated trade of the symbol in slot and writes each
// indicator's current value into out[i], in Specs() order; NaN means null
// (warm-up, or a VWAP with zero volume). It does not allocate.
//
// Preconditions: 0 <= slot < MaxSlots() and len(out) >= len(Specs()); a
// violation is a bug in the caller and panics with an index error. A trade
// that validation should have rejected (price not finite, volume negative or
// not finite, or an infinite price·volume) leaves the state untouched and
// writes NaN to every output, so one bad value cannot poison a symbol's sums.
func (s *IndicatorSet) Update(slot int, tsNs int64, price, volume float64, out []float64) {
	out = out[:len(s.plan)]
	h := &s.hdr[slot]
	if slot >= s.used {
		s.used = slot + 1
	}
	pv := float64(price * volume)
	if price-price != 0 || !(volume >= 0) || pv-pv != 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return
	}
	h.count++
	cnt := h.count
	st := s.arena[slot*s.stride : (slot+1)*s.stride]
	is := s.ints[slot*s.istride : (slot+1)*s.istride]
	for i := range s.plan {
		p := &s.plan[i]
		switch p.kind {
		case IndSMA:
			w := st[p.off : p.off+4+p.n]
			hd := is[p.ioff]
			old := w[4+hd]
			w[4+hd] = price
			sum, c := indTwoSum(w[0], w[1], price)
			sum, c = indTwoSum(sum, c, -old)
			fs, fc := indTwoSum(w[2], w[3], price)
			if hd++; int(hd) == p.n {
				// The fresh sum holds exactly the window: take it.
				hd, sum, c, fs, fc = 0, fs, fc, 0, 0
			}
			is[p.ioff] = hd
			w[0], w[1], w[2], w[3] = sum, c, fs, fc
			if cnt >= p.un {
				out[i] = (sum + c) / p.nf
			} else {
				out[i] = math.NaN()
			}

		case IndEMA:
			v := st[p.off]
			switch {
			case p.seedFirst && cnt == 1:
				v = price
			case p.seedFirst || cnt > p.un:
				v = float64((price-v)*p.k) + v
			case cnt < p.un:
				st[p.off] = v + price // the seed's running sum
				out[i] = math.NaN()
				continue
			default: // cnt == n: the seed is the SMA of the first n inputs
				v = (v + price) / p.nf
			}
			st[p.off] = v
			out[i] = v

		case IndRSI:
			w := st[p.off : p.off+3]
			prev := w[0]
			w[0] = price
			if cnt == 1 {
				out[i] = math.NaN()
				continue
			}
			var gain, loss float64
			if d := price - prev; d < 0 {
				loss = -d
			} else {
				gain = d
			}
			switch {
			case cnt <= p.un: // fewer than n changes: sum them
				w[1] += gain
				w[2] += loss
				out[i] = math.NaN()
				continue
			case cnt == p.un+1: // the n-th change: the first averages
				w[1] = (w[1] + gain) / p.nf
				w[2] = (w[2] + loss) / p.nf
			default:
				w[1] = (float64(w[1]*p.nm1) + gain) / p.nf
				w[2] = (float64(w[2]*p.nm1) + loss) / p.nf
			}
			if den := w[1] + w[2]; den != 0 {
				out[i] = 100 * (w[1] / den)
			} else {
				out[i] = 0
			}

		case IndVWAP:
			w := st[p.off : p.off+4]
			if s.sessionStep(h, tsNs) {
				w[0], w[1], w[2], w[3] = 0, 0, 0, 0
			}
			w[0], w[1] = indTwoSum(w[0], w[1], pv)
			w[2], w[3] = indTwoSum(w[2], w[3], volume)
			if den := w[2] + w[3]; den > 0 {
				out[i] = (w[0] + w[1]) / den
			} else {
				out[i] = math.NaN()
			}

		case IndVWAPN:
			w := st[p.off : p.off+8+2*p.n]
			hd, nz := is[p.ioff], is[p.ioff+1]
			j := 8 + 2*int(hd)
			oldPV, oldV := w[j], w[j+1]
			w[j], w[j+1] = pv, volume
			if volume != 0 {
				nz++
			}
			if oldV != 0 {
				nz--
			}
			a, ac := indTwoSum(w[0], w[1], pv)
			a, ac = indTwoSum(a, ac, -oldPV)
			b, bc := indTwoSum(w[2], w[3], volume)
			b, bc = indTwoSum(b, bc, -oldV)
			fa, fac := indTwoSum(w[4], w[5], pv)
			fb, fbc := indTwoSum(w[6], w[7], volume)
			if hd++; int(hd) == p.n {
				// The fresh sums hold exactly the window: take them.
				hd, a, ac, b, bc = 0, fa, fac, fb, fbc
				fa, fac, fb, fbc = 0, 0, 0, 0
			}
			if nz == 0 {
				// Every volume in the window is 0, so is every pv: the exact
				// window sums are 0.
				a, ac, b, bc = 0, 0, 0, 0
			}
			is[p.ioff], is[p.ioff+1] = hd, nz
			w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7] = a, ac, b, bc, fa, fac, fb, fbc
			if den := b + bc; cnt >= p.un && den > 0 {
				out[i] = (a + ac) / den
			} else {
				out[i] = math.NaN()
			}
		}
	}
}

// sessionStep places a trade at tsNs in h's session and reports whether it
// opened a new session (the caller resets the session sums). A trade before
// the open session's start is counted in the open session.
func (s *IndicatorSet) sessionStep(h *indSlotHdr, tsNs int64) bool {
	if h.sessOpen != 0 && (tsNs < h.sessStartNs ||
		uint64(tsNs)-uint64(h.sessStartNs) < uint64(s.opts.SessionLengthNs)) {
		return false
	}
	h.sessStartNs = indSessionStart(tsNs, s.opts.SessionLengthNs, s.opts.SessionOffsetNs)
	h.sessOpen = 1
	return true
}

// indSessionStart returns the start of the session [off + k·length,
// off + (k+1)·length) holding tsNs. Preconditions: 0 < length <= 2^62 and
// 0 <= off < length, so nothing below overflows; a start before MinInt64
// is clamped to it.
func indSessionStart(tsNs, length, off int64) int64 {
	r := tsNs%length - off // ≡ tsNs − off (mod length), in (−2·length, length)
	if r < 0 {
		r += length
		if r < 0 {
			r += length
		}
	}
	if tsNs < math.MinInt64+r {
		return math.MinInt64
	}
	return tsNs - r
}

// indTwoSum adds x to the compensated sum (s, c): it returns s+x rounded and
// c plus the exact rounding error of that addition (Knuth's TwoSum, which
// needs no branch). The represented value is s+c.
func indTwoSum(s, c, x float64) (float64, float64) {
	t := s + x
	z := t - s
	e := (s - (t - z)) + (x - z)
	return t, c + e
}
