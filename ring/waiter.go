package ring

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"

	"qstream/internal/invariants"
)

// Spin bounds. Every busy loop in this package is bounded by one of these
// constants; between bounded rounds a Waiter re-checks its timeout (Spin),
// yields the processor (Yield) or goes to sleep (Park).
const (
	// SpinChecks is how many times Spin evaluates the condition between two
	// reads of the clock (only read when a timeout is set).
	SpinChecks = 256
	// YieldSpinChecks is how many times Yield evaluates the condition in a
	// busy loop before it starts calling runtime.Gosched between checks.
	YieldSpinChecks = 64
	// ParkSpinChecks is how many times Park evaluates the condition in a busy
	// loop before it sleeps. Short: on a shared machine the other side may
	// not be running at all.
	ParkSpinChecks = 32
)

// Waiter blocks one side of one or more rings — the consumer side or the
// producer side — until a condition holds. Several rings may share one
// Waiter for the same side: a shard consumes from one ring per feed and sleeps
// on a single Waiter that every one of those rings wakes.
//
// At most one goroutine may be inside Wait at a time (the side's goroutine;
// checked in invariants builds); any number of goroutines may call Wake
// concurrently. Never use one Waiter for both sides of a ring.
//
// Spin: a busy loop on the condition, re-checking the timeout every
// SpinChecks evaluations. Yield: YieldSpinChecks busy evaluations, then
// runtime.Gosched between evaluations. Park: ParkSpinChecks busy evaluations,
// then sleep on a channel until Wake or the timeout.
//
// Park's handshake cannot lose a wake-up. The sleeper stores "sleeping" and
// then evaluates the condition once more before it blocks; the waker first
// makes the condition true (an atomic store: publishing a ring index) and
// then loads "sleeping". sync/atomic operations are sequentially consistent,
// so in their single total order either the waker's load comes after the
// sleeper's store (the waker sees "sleeping" and sends a token into a
// one-slot channel, which stays there until the sleeper takes it even if the
// sleeper has not reached its receive yet) or it comes before, and then the
// waker's earlier store precedes the sleeper's re-check, which sees the
// condition true and does not block. A token left over from a race is a
// spurious wake-up: Wait re-checks the condition and sleeps again.
//
// So the condition must read state that wakers write with sync/atomic, and
// whoever makes it true must call Wake afterwards.
type Waiter struct {
	strategy Strategy
	wake     chan struct{} // Park: one-slot token channel
	timer    *time.Timer   // Park: reused for every timed sleep
	_        cpu.CacheLinePad
	// sleeping is 1 while the Park sleeper is (about to be) blocked. It is
	// on its own cache line: every Publish/Release of every ring sharing the
	// Waiter loads it, and only a parking sleeper writes it.
	sleeping atomic.Uint32
	_        cpu.CacheLinePad
	sleeps   atomic.Uint64 // times the Waiter went to sleep
	inWait   atomic.Int32  // invariants builds: goroutines inside Wait
}

// NewWaiter returns a Waiter with strategy s. It panics if s is not one of
// Spin, Yield, Park (a programming error: names from configuration go
// through ParseStrategy).
func NewWaiter(s Strategy) *Waiter {
	if s >= strategyCount {
		panic("ring: NewWaiter with invalid " + s.String())
	}
	w := &Waiter{strategy: s}
	if s == Park {
		w.wake = make(chan struct{}, 1)
		w.timer = time.NewTimer(time.Hour)
		w.timer.Stop()
	}
	return w
}

// Strategy returns the Waiter's strategy.
func (w *Waiter) Strategy() Strategy { return w.strategy }

// Sleeps returns how many times a Park Waiter has gone to sleep (blocked on
// its channel); a metric for tuning, safe from any goroutine. Always 0 for
// Spin and Yield.
func (w *Waiter) Sleeps() uint64 { return w.sleeps.Load() }

// Wait returns true as soon as ready() is true and false once timeout has
// passed without it (timeout <= 0 waits for ever). ready is evaluated in the
// waiting goroutine, possibly many times; build it once (a method value or a
// closure made at start-up) so that Wait does not allocate. Wait itself does
// not allocate: Park reuses one timer per Waiter.
func (w *Waiter) Wait(ready func() bool, timeout time.Duration) bool {
	if ready() {
		return true
	}
	if invariants.Enabled {
		return w.waitTracked(ready, timeout)
	}
	return w.waitSlow(ready, timeout)
}

// waitTracked checks that only one goroutine waits on w at a time.
func (w *Waiter) waitTracked(ready func() bool, timeout time.Duration) bool {
	if n := w.inWait.Add(1); n != 1 {
		w.inWait.Add(-1)
		invariants.Failf("ring: %d goroutines in Wait on one Waiter", n)
	}
	ok := w.waitSlow(ready, timeout)
	w.inWait.Add(-1)
	return ok
}

func (w *Waiter) waitSlow(ready func() bool, timeout time.Duration) bool {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	switch w.strategy {
	case Spin:
		for {
			for range SpinChecks {
				if ready() {
					return true
				}
			}
			if timeout > 0 && !time.Now().Before(deadline) {
				return ready()
			}
		}
	case Yield:
		for range YieldSpinChecks {
			if ready() {
				return true
			}
		}
		for {
			runtime.Gosched()
			if ready() {
				return true
			}
			if timeout > 0 && !time.Now().Before(deadline) {
				return false
			}
		}
	default:
		for range ParkSpinChecks {
			if ready() {
				return true
			}
		}
		return w.park(ready, timeout, deadline)
	}
}

// park sleeps until ready() holds or the deadline passes (no deadline when
// timeout <= 0).
func (w *Waiter) park(ready func() bool, timeout time.Duration, deadline time.Time) bool {
	for {
		w.sleeping.Store(1)
		if ready() {
			w.sleeping.Store(0)
			return true
		}
		if timeout <= 0 {
			w.sleeps.Add(1)
			<-w.wake
		} else {
			d := time.Until(deadline)
			if d <= 0 {
				w.sleeping.Store(0)
				return ready()
			}
			w.sleeps.Add(1)
			w.timer.Reset(d)
			select {
			case <-w.wake:
				// Since Go 1.23 Stop guarantees no stale tick is received
				// later; the drain keeps that true under asynctimerchan=1.
				if !w.timer.Stop() {
					select {
					case <-w.timer.C:
					default:
					}
				}
			case <-w.timer.C:
			}
		}
		w.sleeping.Store(0)
		if ready() {
			return true
		}
		if timeout > 0 && !time.Now().Before(deadline) {
			return false
		}
	}
}

// Wake wakes the goroutine sleeping in Wait, if any. Call it after making the
// condition true. When nobody sleeps it costs one atomic load.
func (w *Waiter) Wake() {
	if w.sleeping.Load() != 0 {
		w.wakeSlow()
	}
}

func (w *Waiter) wakeSlow() {
	// Only the waker that flips the flag sends, so a crowd of producers
	// sharing the Waiter sends one token per sleep.
	if w.sleeping.CompareAndSwap(1, 0) {
		select {
		case w.wake <- struct{}{}:
		default: // a token is already pending; the sleeper will see it
		}
	}
}
