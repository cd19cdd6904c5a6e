package feeds

import (
	"math/rand/v2"
	"testing"
)

// Property: IDWindow behaves like the obvious oracle, a FIFO slice of ids
// plus a set, under random adds and lookups with many collisions.
func TestIDWindowOracle(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 200; trial++ {
		capacity := 1 + rnd.IntN(40)
		w := NewIDWindow(capacity)
		var fifo []uint64
		set := map[uint64]bool{}
		universe := uint64(1 + rnd.IntN(3*capacity))
		for op := 0; op < 2000; op++ {
			id := 1 + rnd.Uint64N(universe)
			if rnd.IntN(3) == 0 {
				if got := w.Contains(id); got != set[id] {
					t.Fatalf("trial %d op %d: Contains(%d) = %v, want %v", trial, op, id, got, set[id])
				}
				continue
			}
			want := !set[id]
			if want {
				if len(fifo) == capacity {
					delete(set, fifo[0])
					fifo = fifo[1:]
				}
				fifo = append(fifo, id)
				set[id] = true
			}
			if got := w.Add(id); got != want {
				t.Fatalf("trial %d op %d: Add(%d) = %v, want %v", trial, op, id, got, want)
			}
			if w.Len() != len(fifo) {
				t.Fatalf("trial %d op %d: Len %d, want %d", trial, op, w.Len(), len(fifo))
			}
		}
		for id := uint64(1); id <= universe; id++ {
			if w.Contains(id) != set[id] {
				t.Fatalf("trial %d: final Contains(%d) = %v, want %v", trial, id, w.Contains(id), set[id])
			}
		}
	}
}

func TestIDWindowZeroAndCap(t *testing.T) {
	w := NewIDWindow(0)
	if w.Cap() != 1 || w.Add(0) || w.Contains(0) {
		t.Fatalf("cap %d; id 0 must never be stored", w.Cap())
	}
	if !w.Add(7) || w.Add(7) || !w.Add(8) || w.Contains(7) || !w.Contains(8) {
		t.Fatal("a window of 1 must keep only the newest id")
	}
}

func TestIDWindowNoAlloc(t *testing.T) {
	w := NewIDWindow(1024)
	id := uint64(0)
	if a := testing.AllocsPerRun(10000, func() {
		id++
		w.Add(id * 0x9e3779b97f4a7c15)
		w.Contains(id)
	}); a != 0 {
		t.Fatalf("%v allocs per Add+Contains, want 0", a)
	}
}
