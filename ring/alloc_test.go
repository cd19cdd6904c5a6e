package ring

import (
	"sync/atomic"
	"testing"
	"time"
)

// checkNoAllocs fails if f allocates on average per run.
func checkNoAllocs(t *testing.T, what string, runs int, f func()) {
	t.Helper()
	if a := testing.AllocsPerRun(runs, f); a != 0 {
		t.Errorf("%s allocates %.2f times per run, want 0", what, a)
	}
}

func TestRingHotPathDoesNotAllocate(t *testing.T) {
	r, err := New[event128](64, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := event128{Seq: 1}
	checkNoAllocs(t, "Offer+Poll+Release", 1000, func() {
		if !r.Offer(&ev) {
			t.Fatal("Offer failed")
		}
		s := r.Poll(8)
		r.Release(len(s))
	})
	checkNoAllocs(t, "Claim+Publish+Poll+Release", 1000, func() {
		s := r.Claim(16)
		for i := range s {
			s[i].Seq = uint64(i)
		}
		r.Publish(len(s))
		for r.Ready() {
			r.Release(len(r.Poll(16)))
		}
	})
	checkNoAllocs(t, "Put+ClaimWait+PollWait+Release", 1000, func() {
		r.Put(&ev)
		r.Publish(len(r.ClaimWait(4)))
		for r.Len() > 0 {
			r.Release(len(r.PollWait(64)))
		}
	})
	checkNoAllocs(t, "Len+Cap+Ready+Drained+Closed", 1000, func() {
		_ = r.Len() + r.Cap()
		_ = r.Ready() || r.Drained() || r.Closed()
	})
}

func TestWaiterDoesNotAllocate(t *testing.T) {
	never := func() bool { return false }
	for _, s := range strategies {
		w := NewWaiter(s)
		d := 50 * time.Microsecond
		checkNoAllocs(t, s.String()+" Wait with a timeout", 20, func() {
			if w.Wait(never, d) {
				t.Fatal("Wait(never) = true")
			}
		})
		checkNoAllocs(t, s.String()+" Wake without a sleeper", 1000, w.Wake)
	}

	// A parked Wait that a helper goroutine (started outside the measured
	// runs) wakes, so the timer is reset and stopped every round.
	w := NewWaiter(Park)
	var round, woken atomic.Int64
	ready := func() bool { return woken.Load() >= round.Load() }
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		for {
			select {
			case <-quit:
				return
			default:
			}
			if w.sleeping.Load() != 0 {
				woken.Store(round.Load())
				w.Wake()
			}
			time.Sleep(20 * time.Microsecond)
		}
	}()
	checkNoAllocs(t, "park Wait woken before its timeout", 50, func() {
		round.Add(1)
		if !w.Wait(ready, time.Minute) {
			t.Fatal("Wait timed out")
		}
	})
	if w.Sleeps() == 0 {
		t.Fatal("the Waiter never parked")
	}
}
