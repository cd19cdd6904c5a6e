package ops

import (
	"math"
)

// SketchRelativeAccuracy is the relative error bound α of Sketch quantiles:
// for a value v inside the covered range the estimate e satisfies
// |e − v| <= α·|v|.
const SketchRelativeAccuracy = 0.01

// Sketch bin counts per sign. With γ = (1+α)/(1−α) a store of B bins covers
// magnitudes spanning a factor γ^B: about 26,000 for 512 bins.
const (
	sketchPosBins = 512
	sketchNegBins = 512
)

var (
	sketchGamma      = (1 + SketchRelativeAccuracy) / (1 - SketchRelativeAccuracy)
	sketchInvLnGamma = 1 / math.Log(sketchGamma)
	sketchLnGamma    = math.Log(sketchGamma)
)

// Sketch is a mergeable quantile sketch in the style of DDSketch (Masson,
// Rim, Lee, VLDB 2019): values are counted in logarithmic bins, bin i
// holding magnitudes in (γ^(i−1), γ^i], so the bin's representative
// 2γ^i/(γ+1) is within SketchRelativeAccuracy of every value in it. It is a
// fixed-size, pointer-free value (about 4 KiB): it copies with an
// assignment, serialises with encoding/binary and never allocates.
//
// Each sign has a store of a fixed number of consecutive bins that slides
// to follow the data. When the magnitudes of one sign span more than the
// store covers (see sketchPosBins), the lowest-magnitude bins are collapsed
// into the lowest bin of the store, as DDSketch's collapsing store does:
// quantiles that fall among collapsed values lose the bound, the others keep
// it. Collapsed reports how many values were folded so. Counts per bin are
// uint32: a sketch holds at most 2^32−1 values per bin.
//
// The zero value is an empty sketch.
type Sketch struct {
	N         uint64 // values added
	Zero      uint64 // values equal to zero
	CollapseN uint64 // values counted in a collapsed edge bin
	Pos       sketchStore512
	Neg       sketchStoreNeg
}

// sketchStore512 and sketchStoreNeg are the same store (possibly of
// different sizes); the logic works on slices of their bins.
type sketchStore512 struct {
	Off    int32 // bin index of Bins[0]
	Lo, Hi int32 // lowest and highest non-empty positions in Bins, when N > 0
	N      uint64
	Bins   [sketchPosBins]uint32
}

type sketchStoreNeg struct {
	Off    int32
	Lo, Hi int32
	N      uint64
	Bins   [sketchNegBins]uint32
}

// Reset empties s.
func (s *Sketch) Reset() { *s = Sketch{} }

// Count returns the number of values added.
func (s *Sketch) Count() uint64 { return s.N }

// Collapsed returns how many values sit in a collapsed edge bin, where the
// accuracy bound does not hold.
func (s *Sketch) Collapsed() uint64 { return s.CollapseN }

// sketchIndex is the bin of magnitude m > 0.
func sketchIndex(m float64) int32 {
	return int32(math.Ceil(math.Log(m) * sketchInvLnGamma))
}

// sketchValue is the representative magnitude of bin i.
func sketchValue(i int32) float64 {
	return math.Exp(float64(i)*sketchLnGamma) * 2 / (1 + sketchGamma)
}

// Add counts x. NaN and ±Inf are ignored (window operators never pass them).
func (s *Sketch) Add(x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	s.N++
	switch {
	case x > 0:
		s.CollapseN += sketchAdd(&s.Pos.Off, &s.Pos.Lo, &s.Pos.Hi, &s.Pos.N, s.Pos.Bins[:], sketchIndex(x), 1)
	case x < 0:
		s.CollapseN += sketchAdd(&s.Neg.Off, &s.Neg.Lo, &s.Neg.Hi, &s.Neg.N, s.Neg.Bins[:], sketchIndex(-x), 1)
	default:
		s.Zero++
	}
}

// Merge adds every value of o to s. Merging is exact (the result equals the
// sketch of the union) unless a store has to collapse.
func (s *Sketch) Merge(o *Sketch) {
	if o.N == 0 {
		return
	}
	s.N += o.N
	s.Zero += o.Zero
	s.CollapseN += o.CollapseN
	if o.Pos.N > 0 {
		for j := o.Pos.Lo; j <= o.Pos.Hi; j++ {
			if c := o.Pos.Bins[j]; c != 0 {
				s.CollapseN += sketchAdd(&s.Pos.Off, &s.Pos.Lo, &s.Pos.Hi, &s.Pos.N, s.Pos.Bins[:], o.Pos.Off+j, c)
			}
		}
	}
	if o.Neg.N > 0 {
		for j := o.Neg.Lo; j <= o.Neg.Hi; j++ {
			if c := o.Neg.Bins[j]; c != 0 {
				s.CollapseN += sketchAdd(&s.Neg.Off, &s.Neg.Lo, &s.Neg.Hi, &s.Neg.N, s.Neg.Bins[:], o.Neg.Off+j, c)
			}
		}
	}
}

// sketchAdd adds c values of bin index i to a store and returns how many
// values it had to collapse (c itself when i falls below a store that cannot
// slide down, or the counts folded when the store slides up past its
// lowest bins).
func sketchAdd(off, lo, hi *int32, n *uint64, bins []uint32, i int32, c uint32) (collapsed uint64) {
	B := int32(len(bins))
	if *n == 0 {
		*off = i - B/2
		*lo, *hi = B/2, B/2
		bins[B/2] += c
		*n += uint64(c)
		return 0
	}
	j := i - *off
	switch {
	case j < 0:
		absHi := *off + *hi
		if absHi-i < B { // slide down, keeping the highest bin
			newOff := max(absHi-B+1, i-B/4)
			sketchShift(bins, *off-newOff) // move contents up
			*lo += *off - newOff
			*hi += *off - newOff
			*off = newOff
			j = i - newOff
		} else { // cannot: count it in the lowest bin
			j = 0
			collapsed = uint64(c)
		}
	case j >= B:
		absLo := *off + *lo
		newOff := i - B + 1 + B/4 // leave headroom above i
		if newOff > absLo {
			newOff = max(absLo, i-B+1)
		}
		d := newOff - *off // > 0: contents move down by d positions
		if newOff > absLo {
			// Positions below d fall off the store: fold them into the new
			// lowest bin.
			var folded uint64
			for p := *lo; p < min(d, B); p++ {
				folded += uint64(bins[p])
				bins[p] = 0
			}
			sketchShift(bins, -d)
			bins[0] += uint32(folded)
			collapsed = folded
			*lo = 0
			*hi = max(*hi-d, 0)
		} else {
			sketchShift(bins, -d)
			*lo -= d
			*hi -= d
		}
		*off = newOff
		j = i - newOff
	}
	bins[j] += c
	if j < *lo {
		*lo = j
	}
	if j > *hi {
		*hi = j
	}
	*n += uint64(c)
	return collapsed
}

// sketchShift moves bins by d positions (d > 0: towards higher positions),
// zero-filling what it vacates. Contents moved past either end are expected
// to be empty (callers fold them first).
func sketchShift(bins []uint32, d int32) {
	B := int32(len(bins))
	switch {
	case d > 0:
		if d >= B {
			clear(bins)
			return
		}
		copy(bins[d:], bins[:B-d])
		clear(bins[:d])
	case d < 0:
		d = -d
		if d >= B {
			clear(bins)
			return
		}
		copy(bins[:B-d], bins[d:])
		clear(bins[B-d:])
	}
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): an estimate of
// the ⌈q·n⌉-th smallest value. NaN for an empty sketch.
func (s *Sketch) Quantile(q float64) float64 {
	if s.N == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	r := uint64(math.Ceil(q * float64(s.N)))
	return s.rank(r)
}

// rank returns the estimate of the r-th smallest value (1-based, clamped to
// [1, N]).
func (s *Sketch) rank(r uint64) float64 {
	if s.N == 0 {
		return math.NaN()
	}
	r = min(max(r, 1), s.N)
	var acc uint64
	if s.Neg.N > 0 { // most negative first: highest magnitude bin first
		for j := s.Neg.Hi; j >= s.Neg.Lo; j-- {
			acc += uint64(s.Neg.Bins[j])
			if acc >= r {
				return -sketchValue(s.Neg.Off + j)
			}
		}
	}
	acc += s.Zero
	if acc >= r {
		return 0
	}
	if s.Pos.N > 0 {
		for j := s.Pos.Lo; j <= s.Pos.Hi; j++ {
			acc += uint64(s.Pos.Bins[j])
			if acc >= r {
				return sketchValue(s.Pos.Off + j)
			}
		}
	}
	return sketchValue(s.Pos.Off + s.Pos.Hi) // unreachable when counts are consistent
}

// valid checks the invariants that indexing relies on (used when loading a
// checkpoint): positions within the store and counts that add up.
func (s *Sketch) valid() bool {
	ok := func(off, lo, hi int32, n uint64, bins []uint32) bool {
		if off < -1<<20 || off > 1<<20 {
			return false
		}
		if n == 0 {
			return true
		}
		if lo < 0 || hi < lo || int(hi) >= len(bins) {
			return false
		}
		var sum uint64
		for _, c := range bins {
			sum += uint64(c)
		}
		return sum == n
	}
	return ok(s.Pos.Off, s.Pos.Lo, s.Pos.Hi, s.Pos.N, s.Pos.Bins[:]) && ok(s.Neg.Off, s.Neg.Lo, s.Neg.Hi, s.Neg.N, s.Neg.Bins[:]) &&
		s.N == s.Pos.N+s.Neg.N+s.Zero
}
