package feeds

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffCeiling(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := b.Ceiling(i); got != w*time.Millisecond {
			t.Errorf("Ceiling(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	// Huge attempts and a cap near the int64 limit must not overflow.
	big := Backoff{Base: time.Second, Max: time.Duration(1<<63 - 1)}
	for _, a := range []int{62, 63, 64, 1000} {
		if c := big.Ceiling(a); c <= 0 || c > big.Max {
			t.Errorf("Ceiling(%d) = %v out of range", a, c)
		}
	}
	var zero Backoff
	if got := zero.Ceiling(0); got != DefaultBackoffBase {
		t.Errorf("zero Backoff Ceiling(0) = %v, want %v", got, DefaultBackoffBase)
	}
	if got := zero.Ceiling(100); got != DefaultBackoffMax {
		t.Errorf("zero Backoff Ceiling(100) = %v, want %v", got, DefaultBackoffMax)
	}
}

// Property: every delay lies in [min(Min, ceiling), ceiling], the ceiling never
// decreases with the attempt, and it reaches Max.
func TestBackoffDelayProperty(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 2000; trial++ {
		b := Backoff{
			Base: time.Duration(1 + rnd.Int64N(int64(time.Second))),
			Max:  time.Duration(1 + rnd.Int64N(int64(time.Minute))),
			Min:  time.Duration(rnd.Int64N(int64(50 * time.Millisecond))),
		}
		prev := time.Duration(0)
		for a := 0; a < 70; a++ {
			c := b.Ceiling(a)
			if c < prev {
				t.Fatalf("%+v: Ceiling(%d) = %v < Ceiling(%d) = %v", b, a, c, a-1, prev)
			}
			prev = c
			d := b.Delay(a, rnd)
			lo := min(b.withDefaults().Min, c)
			if d < lo || d > c {
				t.Fatalf("%+v: Delay(%d) = %v outside [%v, %v]", b, a, d, lo, c)
			}
		}
		if prev != b.withDefaults().Max {
			t.Fatalf("%+v: ceiling after 70 attempts %v, want Max %v", b, prev, b.withDefaults().Max)
		}
	}
}

// Full jitter: draws spread over the whole interval, not clustered at the top.
func TestBackoffJitterSpread(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Second, Min: time.Millisecond}
	rnd := newJitterRand(42)
	lo, hi := b.Max, time.Duration(0)
	var sum time.Duration
	const n = 10000
	for i := 0; i < n; i++ {
		d := b.Delay(3, rnd)
		lo, hi = min(lo, d), max(hi, d)
		sum += d
	}
	if lo > 50*time.Millisecond || hi < 950*time.Millisecond {
		t.Errorf("draws span [%v, %v], want close to [1ms, 1s]", lo, hi)
	}
	if mean := sum / n; mean < 400*time.Millisecond || mean > 600*time.Millisecond {
		t.Errorf("mean %v, want about 500ms", mean)
	}
	// The same seed gives the same sequence.
	r1, r2 := newJitterRand(7), newJitterRand(7)
	for i := 0; i < 100; i++ {
		if a, c := b.Delay(i, r1), b.Delay(i, r2); a != c {
			t.Fatalf("seeded draws differ at %d: %v vs %v", i, a, c)
		}
	}
}

func TestBackoffExhausted(t *testing.T) {
	tests := []struct {
		max, failures int
		want          bool
	}{
		{0, 0, false}, {0, 1 << 30, false}, {3, 2, false}, {3, 3, true}, {3, 4, true}, {1, 1, true},
	}
	for _, tc := range tests {
		if got := (Backoff{MaxAttempts: tc.max}).Exhausted(tc.failures); got != tc.want {
			t.Errorf("MaxAttempts %d, failures %d: Exhausted = %v, want %v", tc.max, tc.failures, got, tc.want)
		}
	}
}

func TestSleepCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleepCtx on a cancelled context = %v, want context.Canceled", err)
	}
	if err := sleepCtx(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("sleepCtx = %v", err)
	}
}

func ExampleBackoff() {
	b := Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second, MaxAttempts: 8}
	for attempt := 0; attempt < 6; attempt++ {
		// Delay(attempt, rnd) draws uniformly from [Min, Ceiling(attempt)].
		fmt.Println(attempt, b.Ceiling(attempt))
	}
	fmt.Println("give up after 8 failures:", b.Exhausted(8))
	// Output:
	// 0 100ms
	// 1 200ms
	// 2 400ms
	// 3 800ms
	// 4 1.6s
	// 5 2s
	// give up after 8 failures: true
}
