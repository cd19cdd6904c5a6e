package idset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// oracle is the obvious model of a Set: a FIFO slice of the last cap
// distinct ids and a map over it.
type oracle struct {
	cap  int
	fifo []uint64
	set  map[uint64]bool
}

func (o *oracle) add(id uint64) bool {
	if id == 0 || o.set[id] {
		return false
	}
	if len(o.fifo) == o.cap {
		delete(o.set, o.fifo[0])
		o.fifo = o.fifo[1:]
	}
	o.fifo = append(o.fifo, id)
	o.set[id] = true
	return true
}

// checkTable asserts that the table holds exactly the oracle's ids, each
// reachable from its home slot.
func checkTable(t *testing.T, s *Set, o *oracle) {
	t.Helper()
	n := 0
	for _, id := range s.table {
		if id == 0 {
			continue
		}
		n++
		if !o.set[id] {
			t.Fatalf("table holds %d, which the oracle does not", id)
		}
		if _, ok := s.find(id); !ok {
			t.Fatalf("id %d in the table is not found from its home slot", id)
		}
	}
	if n != len(o.fifo) {
		t.Fatalf("table holds %d ids, oracle %d", n, len(o.fifo))
	}
}

// Property: a Set behaves like the oracle under random Adds and Contains,
// with ids drawn from a small universe (repeats, evictions and re-insertions
// after eviction all happen), some of them sharing their low or high bits,
// and tables small enough that probe runs collide and wrap.
func TestSetMatchesOracle(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 300; trial++ {
		capacity := 1 + rnd.IntN(40)
		if trial%50 == 0 {
			capacity = 1000
		}
		s := New(capacity)
		o := &oracle{cap: capacity, set: map[uint64]bool{}}
		universe := uint64(1 + rnd.IntN(3*capacity+5))
		for op := 0; op < 3000; op++ {
			id := rnd.Uint64N(universe + 1) // 0 included: never stored
			switch rnd.IntN(4) {
			case 0:
				id = id<<40 | id // ids that share their low bits
			case 1:
				id <<= 48 // ids that differ in their high bits only
			}
			if rnd.IntN(3) == 0 {
				if got := s.Contains(id); got != o.set[id] {
					t.Fatalf("trial %d op %d: Contains(%#x) = %v, want %v", trial, op, id, got, o.set[id])
				}
				continue
			}
			want := o.add(id)
			if got := s.Add(id); got != want {
				t.Fatalf("trial %d op %d: Add(%#x) = %v, want %v", trial, op, id, got, want)
			}
			if s.Len() != len(o.fifo) {
				t.Fatalf("trial %d op %d: Len %d, want %d", trial, op, s.Len(), len(o.fifo))
			}
		}
		checkTable(t, s, o)
		// The encoding lists the oracle's ids oldest first.
		st := s.AppendState(nil)
		if len(st) != 8+8*len(o.fifo) {
			t.Fatalf("trial %d: state of %d bytes for %d ids", trial, len(st), len(o.fifo))
		}
		for i, id := range o.fifo {
			if got := binary.LittleEndian.Uint64(st[8+8*i:]); got != id {
				t.Fatalf("trial %d: encoded id %d is %#x, want %#x", trial, i, got, id)
			}
		}
		r := New(capacity)
		if err := r.LoadState(st); err != nil {
			t.Fatal(err)
		}
		checkTable(t, r, o)
	}
}

func TestSetZeroAndCap(t *testing.T) {
	s := New(0)
	if s.Cap() != 1 || s.Add(0) || s.Contains(0) || s.Len() != 0 {
		t.Fatalf("cap %d; id 0 must never be stored", s.Cap())
	}
	if !s.Add(7) || s.Add(7) || !s.Add(8) || s.Contains(7) || !s.Contains(8) {
		t.Fatal("a set of 1 must keep only the newest id")
	}
	if New(MaxCap+1).Cap() != MaxCap {
		t.Fatal("capacity not clamped to MaxCap")
	}
	s = New(4)
	s.Add(1)
	s.Add(2)
	s.Reset()
	if s.Len() != 0 || s.Contains(1) || !s.Add(1) || s.Len() != 1 {
		t.Fatal("Reset")
	}
}

// TestStateStable pins the encoding, part of the engine's checkpoint
// format: count u32, capacity u32, ids oldest first, little-endian. The
// bytes are written down here, never produced by the code under test.
func TestStateStable(t *testing.T) {
	s := New(3)
	for _, id := range []uint64{5, 0x0102030405060708, 9, 5, 11} { // 5 repeats; 5 leaves when 11 arrives
		s.Add(id)
	}
	want := []byte{
		3, 0, 0, 0, // count
		3, 0, 0, 0, // capacity
		8, 7, 6, 5, 4, 3, 2, 1,
		9, 0, 0, 0, 0, 0, 0, 0,
		11, 0, 0, 0, 0, 0, 0, 0,
	}
	if got := s.AppendState([]byte("x")); !bytes.Equal(got[1:], want) || got[0] != 'x' {
		t.Fatalf("AppendState = %v, want x then %v", got, want)
	}
	if got := New(8).AppendState(nil); !bytes.Equal(got, []byte{0, 0, 0, 0, 8, 0, 0, 0}) {
		t.Fatalf("empty state %v", got)
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := New(100)
	for k := uint64(1); k <= 250; k++ {
		s.Add(k * 7919)
	}
	snap := s.AppendState(nil)
	for _, capacity := range []int{100, 300, 10} {
		r := New(capacity)
		r.Add(5) // replaced by the load
		if err := r.LoadState(snap); err != nil {
			t.Fatal(err)
		}
		keep := min(capacity, 100)
		if r.Len() != keep {
			t.Fatalf("cap %d: %d ids after load, want %d", capacity, r.Len(), keep)
		}
		// The newest ids are kept; older ones and the pre-load id are not.
		if !r.Contains(250*7919) || r.Contains(5) || r.Contains((250-uint64(keep))*7919) {
			t.Fatalf("cap %d: wrong ids after load", capacity)
		}
		if capacity == 100 && !bytes.Equal(r.AppendState(nil), snap) {
			t.Fatal("load then append does not give the same state")
		}
		// Eviction order survives the load: the next Add evicts the oldest kept.
		if keep == capacity {
			oldest := (250 - uint64(keep) + 1) * 7919
			r.Add(1)
			if r.Contains(oldest) || !r.Contains(oldest+7919) {
				t.Fatalf("cap %d: eviction order lost in the load", capacity)
			}
		}
	}
	for name, bad := range map[string][]byte{
		"zero id":   append(append([]byte(nil), snap[:8]...), append(make([]byte, 8), snap[16:]...)...),
		"repeat":    append(append([]byte(nil), snap[:16]...), append(snap[8:16:16], snap[24:]...)...),
		"truncated": snap[:len(snap)-1],
		"short":     snap[:7],
		"too long":  append(append([]byte(nil), snap...), 0),
	} {
		r := New(100)
		r.Add(42)
		if err := r.LoadState(bad); !errors.Is(err, ErrState) {
			t.Fatalf("%s: LoadState = %v, want ErrState", name, err)
		}
		if r.Len() != 1 || !r.Contains(42) {
			t.Fatalf("%s: a refused state changed the set", name)
		}
	}
}

func TestAddContainsDoNotAllocate(t *testing.T) {
	s := New(1024)
	id := uint64(0)
	if a := testing.AllocsPerRun(10_000, func() {
		id++
		s.Add(id * 0x9e3779b97f4a7c15)
		s.Contains(id)
	}); a != 0 {
		t.Fatalf("%v allocs per Add+Contains, want 0", a)
	}
}

func BenchmarkAdd(b *testing.B) {
	s := New(1 << 16)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Add(uint64(i) + 1)
	}
}
