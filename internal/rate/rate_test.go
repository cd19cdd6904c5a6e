package rate

import (
	"testing"
	"time"
)

func TestThroughputRing(t *testing.T) {
	tp := NewRing(5, time.Second)
	if _, _, ok := tp.Rate(time.Minute); ok {
		t.Fatal("a rate from no samples")
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 8 { // wraps the ring: samples 3..7 are kept
		tp.Add(t0.Add(time.Duration(i)*time.Second), uint64(i*i*100))
	}
	check := func(tf time.Duration, wantN uint64, wantS float64) {
		t.Helper()
		n, s, ok := tp.Rate(tf)
		if !ok || n != wantN || s != wantS {
			t.Fatalf("rate(%s) = %d over %vs (%v), want %d over %vs", tf, n, s, ok, wantN, wantS)
		}
	}
	check(time.Second, 4900-3600, 1)
	check(2*time.Second, 4900-2500, 2)
	check(time.Hour, 4900-900, 4) // only 5 samples kept
}
