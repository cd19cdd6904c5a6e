package engine

import (
	"math/rand/v2"
	"testing"
)

// The dedup set against an oracle: a slice of the last `horizon` distinct
// keys. Keys are drawn from a small range so that repeats, evictions and
// re-insertions after eviction all happen, and the table is small so that
// probe runs collide and wrap.
func TestDedupSetMatchesOracle(t *testing.T) {
	for _, horizon := range []int{1, 2, 3, 7, 64, 1000} {
		rng := rand.New(rand.NewPCG(uint64(horizon), 99))
		d := newDedupSet(horizon)
		var fifo []uint64
		for i := 0; i < 50_000; i++ {
			key := 1 + rng.Uint64N(uint64(3*horizon+5))
			if rng.IntN(4) == 0 {
				key = key<<40 | key // keys whose low bits collide
			}
			want := false
			for _, k := range fifo {
				if k == key {
					want = true
					break
				}
			}
			if !want {
				fifo = append(fifo, key)
				if len(fifo) > horizon {
					fifo = fifo[1:]
				}
			}
			if got := d.seen(key); got != want {
				t.Fatalf("horizon %d step %d key %d: seen %v, want %v", horizon, i, key, got, want)
			}
			if d.len() != len(fifo) {
				t.Fatalf("horizon %d step %d: %d keys, want %d", horizon, i, d.len(), len(fifo))
			}
		}
		// The table holds exactly the ring's keys.
		n := 0
		for _, k := range d.table {
			if k != 0 {
				n++
			}
		}
		if n != len(fifo) {
			t.Fatalf("horizon %d: table holds %d keys, ring %d", horizon, n, len(fifo))
		}
	}
}

func TestDedupStateRoundTrip(t *testing.T) {
	d := newDedupSet(100)
	for k := uint64(1); k <= 250; k++ {
		d.seen(k * 7919)
	}
	snap := d.appendState(nil)
	for _, horizon := range []int{100, 300, 10} {
		r := newDedupSet(horizon)
		r.seen(5) // replaced by the load
		if err := r.loadState(snap); err != nil {
			t.Fatal(err)
		}
		keep := min(horizon, 100)
		if r.len() != keep {
			t.Fatalf("horizon %d: %d keys after load, want %d", horizon, r.len(), keep)
		}
		// The newest keys are kept; older ones and the pre-load key are not.
		if !r.seen(250*7919) || r.seen(5) {
			t.Fatalf("horizon %d: wrong keys after load", horizon)
		}
	}
	bad := append([]byte(nil), snap...)
	copy(bad[8:], make([]byte, 8)) // a zero key
	if err := newDedupSet(100).loadState(bad); err == nil {
		t.Fatal("a zero key was accepted")
	}
	if err := newDedupSet(100).loadState(snap[:len(snap)-1]); err == nil {
		t.Fatal("a truncated state was accepted")
	}
}

func TestDedupSeenDoesNotAllocate(t *testing.T) {
	d := newDedupSet(1 << 10)
	k := uint64(1)
	if n := testing.AllocsPerRun(10_000, func() { d.seen(dedupKey(3, k)); k++ }); n != 0 {
		t.Fatalf("seen allocates %.1f times per call", n)
	}
}

func BenchmarkDedupSeen(b *testing.B) {
	d := newDedupSet(1 << 16)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d.seen(dedupKey(1, uint64(i)))
	}
}
