package ops

import (
	"math"
	"testing"

	"qstream/internal/testvectors"
)

// Conformance against third-party reference vectors from "Technical Analysis
// from A to Z" (Achelis) as published by TA-Lib.NETCore (TA-Lib conventions)
// and Tulip Indicators (EMA seeded with the first input). The files live
// beside the repository in ../shared/testdata; see its SOURCES.md.

var indKinds = map[string]IndicatorKind{"sma": IndSMA, "ema": IndEMA, "rsi": IndRSI}

// checkRefCase feeds c.Input to a fresh set and compares every output: NaN
// before c.First, the reference value (within c.Tolerance) from there on.
func checkRefCase(t *testing.T, c testvectors.Case, seed EMASeed) {
	t.Helper()
	spec := IndicatorSpec{Kind: indKinds[c.Name], Period: c.Period}
	want, err := c.Wanted()
	if err != nil {
		t.Fatal(err)
	}
	if c.First < 0 || c.First+len(want) != len(c.Input) {
		t.Fatalf("%s %s: %d outputs from index %d do not end at the last of %d inputs", c.Source, spec, len(want), c.First, len(c.Input))
	}
	tol := c.Tolerance()
	set, err := NewIndicatorSet([]IndicatorSpec{spec}, IndicatorOptions{EMASeed: seed}, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 1)
	for i, x := range c.Input {
		set.Update(0, int64(i), x, 1, out)
		got := out[0]
		if i < c.First {
			if !math.IsNaN(got) {
				t.Errorf("%s %s seed=%s: input %d: got %v, want null (warm-up)", c.Source, spec, seed, i, got)
			}
			continue
		}
		if w := want[i-c.First]; !(math.Abs(got-w) <= tol) {
			t.Errorf("%s %s seed=%s: input %d: got %.6f, want %s (±%g)", c.Source, spec, seed, i, got, c.Want[i-c.First], tol)
		}
	}
}

func testConformance(t *testing.T, file string, parse func([]byte) ([]testvectors.Case, map[string]int, error), seed EMASeed) {
	raw, err := testvectors.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	cases, present, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]int{}
	for _, c := range cases {
		checkRefCase(t, c, seed)
		checked[c.Name]++
	}
	if err := testvectors.CheckCounts(file, present, checked); err != nil {
		t.Error(err)
	}
	t.Logf("%s: checked %v", file, checked)
}

// TestIndicatorConformanceTALib checks every Sma, Ema and Rsi case of the
// TA-Lib.NETCore file (EMA seeded with the SMA, the default).
func TestIndicatorConformanceTALib(t *testing.T) {
	testConformance(t, "indicators/talib_netcore_atoz.json", testvectors.TALib, EMASeedSMA)
}

// TestIndicatorConformanceTulip checks every sma, ema and rsi block of
// Tulip's atoz.txt (EMA seeded with the first input).
func TestIndicatorConformanceTulip(t *testing.T) {
	testConformance(t, "indicators/tulip_atoz.txt", testvectors.Tulip, EMASeedFirst)
}
