package ops

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func skExact(sorted []float64, q float64) float64 {
	r := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(r, 1), len(sorted))-1]
}

// TestSketchBound: every nearest-rank quantile estimate is within
// SketchRelativeAccuracy of the exact value, across distributions that
// stay inside the sketch's range (no collapse).
func TestSketchBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() float64{
		"uniform":   func() float64 { return 1 + 999*rng.Float64() },
		"lognormal": func() float64 { return math.Exp(rng.NormFloat64()) }, // spans ~10^4: within one store
		"btc":       func() float64 { return 9600 + 100*rng.Float64() },
		"volumes":   func() float64 { return math.Round(rng.ExpFloat64()*1000) / 1000 }, // many zeros
		"spreads": func() float64 { // negative and positive, magnitudes 0.01..~5
			x := 0.01 + math.Abs(rng.NormFloat64())
			if rng.IntN(2) == 0 {
				return -x
			}
			return x
		},
		"integers": func() float64 { return float64(rng.IntN(20)) }, // heavy ties
	}
	qs := []float64{0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1}
	names := slices.Sorted(maps.Keys(dists)) // a fixed order: the draws are reproducible
	for _, name := range names {
		gen := dists[name]
		for _, n := range []int{1, 2, 7, 100, 10000} {
			var sk Sketch
			vals := make([]float64, n)
			for i := range vals {
				vals[i] = gen()
				sk.Add(vals[i])
			}
			slices.Sort(vals)
			if sk.Count() != uint64(n) {
				t.Fatalf("%s/%d: count %d", name, n, sk.Count())
			}
			if sk.Collapsed() != 0 {
				t.Fatalf("%s/%d: %d collapsed", name, n, sk.Collapsed())
			}
			for _, q := range qs {
				want, got := skExact(vals, q), sk.Quantile(q)
				if math.Abs(got-want) > SketchRelativeAccuracy*math.Abs(want)*(1+1e-12) {
					t.Fatalf("%s/n=%d/q=%v: estimate %v, exact %v (rel error %.4g > %v)", name, n, q, got, want,
						math.Abs(got-want)/math.Abs(want), SketchRelativeAccuracy)
				}
			}
		}
	}
	var empty Sketch
	if !math.IsNaN(empty.Quantile(0.5)) {
		t.Fatal("empty sketch must answer NaN")
	}
	empty.Add(math.NaN())
	empty.Add(math.Inf(1))
	if empty.Count() != 0 {
		t.Fatal("NaN and Inf must be ignored")
	}
}

// TestSketchMerge: merging sketches gives the same quantiles as one sketch
// of the union, in any order and with the stores anchored differently.
func TestSketchMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var whole, a, b, c Sketch
	for i := 0; i < 5000; i++ {
		x := math.Exp(rng.NormFloat64()*1.5) * 100
		if i%7 == 0 {
			x = -x / 50
		}
		whole.Add(x)
		switch {
		case i < 1000:
			a.Add(x)
		case i < 1100:
			b.Add(x * 1) // b is anchored elsewhere by its first value
		default:
			c.Add(x)
		}
	}
	m1 := a
	m1.Merge(&b)
	m1.Merge(&c)
	m2 := c
	m2.Merge(&b)
	m2.Merge(&a)
	for q := 0.001; q <= 1; q += 0.037 {
		w := whole.Quantile(q)
		if g1, g2 := m1.Quantile(q), m2.Quantile(q); g1 != w || g2 != w {
			t.Fatalf("q=%v: merged %v / %v, union %v", q, g1, g2, w)
		}
	}
	if m1.Count() != whole.Count() {
		t.Fatalf("merged count %d, want %d", m1.Count(), whole.Count())
	}
}

// TestSketchCollapse: magnitudes spanning more than the store collapse the
// lowest bins, are counted, and the upper quantiles keep the bound.
func TestSketchCollapse(t *testing.T) {
	var sk Sketch
	vals := []float64{}
	for e := -12; e <= 12; e++ { // 1e-12 .. 1e12: far more than a store covers
		for i := 1; i <= 9; i++ {
			x := float64(i) * math.Pow(10, float64(e))
			vals = append(vals, x)
			sk.Add(x)
		}
	}
	slices.Sort(vals)
	if sk.Collapsed() == 0 {
		t.Fatal("expected collapsed values")
	}
	if sk.Count() != uint64(len(vals)) {
		t.Fatalf("count %d, want %d", sk.Count(), len(vals))
	}
	for _, q := range []float64{0.85, 0.9, 0.95, 0.99, 1} { // above max/γ^512: not collapsed
		want, got := skExact(vals, q), sk.Quantile(q)
		if math.Abs(got-want) > SketchRelativeAccuracy*want*(1+1e-12) {
			t.Fatalf("q=%v: %v vs %v", q, got, want)
		}
	}
	// A value far below a full store is counted in its lowest bin.
	var low Sketch
	low.Add(1e12)
	low.Add(1e-12)
	if low.Collapsed() != 1 || low.Quantile(1) < 0.99e12 {
		t.Fatalf("collapsed %d, max %v", low.Collapsed(), low.Quantile(1))
	}
}

func TestSketchAddDoesNotAllocate(t *testing.T) {
	var sk Sketch
	x := 1.0
	if a := testing.AllocsPerRun(1000, func() { sk.Add(x); x *= 1.001 }); a != 0 {
		t.Fatalf("Sketch.Add allocates %v per call", a)
	}
}

func ExampleSketch() {
	var sk Sketch
	for i := 1; i <= 1000; i++ {
		sk.Add(float64(i))
	}
	p99 := sk.Quantile(0.99) // exact nearest rank: 990
	fmt.Printf("p99 ≈ %.1f (within %.0f%% of 990)\n", p99, SketchRelativeAccuracy*100)
	// Output: p99 ≈ 982.6 (within 1% of 990)
}
