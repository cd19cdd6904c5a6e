package engine

import (
	"bytes"
	"errors"
	"testing"
)

// The set itself (the oracle property, eviction, the encoding's constant
// vector) is tested in internal/idset; these tests pin what the engine adds:
// its checkpoint bytes, the horizon bound and its error.

// TestDedupStateStable pins the dedup part of a shard checkpoint: count
// u32, horizon u32, keys oldest first, little-endian, as written by every
// checkpoint so far. The bytes are written down, not computed.
func TestDedupStateStable(t *testing.T) {
	d := newDedupSet(2)
	for _, k := range []uint64{0x1111, 0x2222, 0x1111, 0x0102030405060708} {
		d.seen(k)
	}
	want := []byte{2, 0, 0, 0, 2, 0, 0, 0, 0x22, 0x22, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1}
	if got := d.appendState(nil); !bytes.Equal(got, want) {
		t.Fatalf("dedup state %v, want %v", got, want)
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
	if err := newDedupSet(100).loadState(bad); !errors.Is(err, ErrCheckpointState) {
		t.Fatalf("a zero key: %v, want ErrCheckpointState", err)
	}
	if err := newDedupSet(100).loadState(snap[:len(snap)-1]); !errors.Is(err, ErrCheckpointState) {
		t.Fatalf("a truncated state: %v, want ErrCheckpointState", err)
	}
	huge := []byte{0, 0, 0, 2, 0, 0, 0, 2} // 1<<25 keys: above MaxDedupHorizon
	if err := newDedupSet(100).loadState(huge); !errors.Is(err, ErrCheckpointState) {
		t.Fatalf("a state above MaxDedupHorizon: %v, want ErrCheckpointState", err)
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
