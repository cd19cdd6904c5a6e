package feeds

import (
	"sync"
	"testing"
)

// The set behind IDWindow is tested against an oracle in internal/idset;
// these tests pin IDWindow's own contract: id 0, the capacity, sharing
// between goroutines, no allocation.

func TestIDWindowZeroAndCap(t *testing.T) {
	w := NewIDWindow(0)
	if w.Cap() != 1 || w.Add(0) || w.Contains(0) {
		t.Fatalf("cap %d; id 0 must never be stored", w.Cap())
	}
	if !w.Add(7) || w.Add(7) || !w.Add(8) || w.Contains(7) || !w.Contains(8) {
		t.Fatal("a window of 1 must keep only the newest id")
	}
}

// Shared by several partitions' goroutines: every id is admitted exactly
// once however the Adds interleave (run under -race too).
func TestIDWindowShared(t *testing.T) {
	const ids, workers = 5000, 4
	w := NewIDWindow(2 * ids)
	var mu sync.Mutex
	admitted := map[uint64]int{}
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := uint64(1); id <= ids; id++ {
				if w.Add(id) {
					mu.Lock()
					admitted[id]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(admitted) != ids || w.Len() != ids {
		t.Fatalf("%d ids admitted, window holds %d, want %d", len(admitted), w.Len(), ids)
	}
	for id, n := range admitted {
		if n != 1 {
			t.Fatalf("id %d admitted %d times", id, n)
		}
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
