package ring

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"

	"qstream/internal/clock"
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
	// busy loop before it starts yielding the CPU between checks.
	YieldSpinChecks = 64
	// YieldsPerGosched: Yield on a locked thread gives the thread's CPU to
	// other threads (sched_yield) between checks, and every
	// YieldsPerGosched-th time its P to other goroutines (runtime.Gosched)
	// instead, so that a yielding side holds a P for at most a few hundred
	// microseconds while others wait for one.
	YieldsPerGosched = 256
	// ParkSpinChecks is how many times Park evaluates the condition in a busy
	// loop before it starts yielding. Short: on a shared machine the other
	// side may not be running at all.
	ParkSpinChecks = 32
	// ParkYieldChecks is the most times Park yields (as Yield does:
	// runtime.Gosched, or sched_yield on a locked thread) and evaluates the
	// condition again between its busy loop and its sleep: about 2 µs on
	// an idle machine (a Gosched with nothing else to run took 130 ns
	// here), less than the sleep and wake-up it may save (5-50 µs). How
	// many it takes adapts (see Waiter.yields): a waiter that gave up after
	// the busy loop slept about once every 7,000 events of the engine's
	// hand-off benchmark, and the ring filled behind it meanwhile.
	ParkYieldChecks = 16
)

// parkQuickNs is the least time after going to sleep within which a wake-up
// counts as quick (see Waiter.yields); a variable for tests.
var parkQuickNs int64 = 1000

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
// runtime.Gosched between evaluations, or for a goroutine locked to its
// thread (SetThreadLocked) sched_yield(2), and runtime.Gosched every
// YieldsPerGosched-th time. Park: ParkSpinChecks busy evaluations, up to
// ParkYieldChecks more with a yield before each (Yield's, see below), then
// sleep until Wake or the timeout (the phased back-off of the Disruptor's
// PhasedBackoffWaitStrategy and Aeron's BackoffIdleStrategy, with an
// adaptive yield phase: see the yields field): on a channel (park_chan.go) or,
// in a Linux build with -tags qstream_futex, in the kernel on a futex
// (park_futex.go).
//
// Why Yield on a locked thread does not call runtime.Gosched every time:
// Gosched on a thread locked to its goroutine (a shard that pins or
// busy-waits: engine.locksThread) hands the thread's P to another thread
// (waking it), parks the locked thread, and has the other thread hand the
// P back and wake it again when the goroutine's turn comes: two futex
// wake-ups and two context switches per yield. A locked shard waiting for
// input did that in a loop: 10% of a hand-off benchmark's CPU in futex
// calls, and on a machine with no CPU to spare each round trip waited for
// one, so the end-to-end benchmark's median under Yield was over a
// millisecond (20-30x Park's). sched_yield keeps the thread and its P,
// lets another thread run if one is waiting for this CPU, and returns. An
// unlocked goroutine's Gosched is cheap and lets the goroutines waiting
// for a P run; sched_yield would hold the P.
//
// Why a futex: a goroutine blocked on a channel is made runnable by the Go
// scheduler, which must find it a P and, for a goroutine locked to its OS
// thread (a shard that pins or busy-waits), hand that P over to the locked
// thread: two or three thread wake-ups (and context switches, on a machine
// with a CPU or two free) per hand-off. A futex wakes the sleeping thread
// directly, once; it comes back from its system call and takes its P back.
// It is not the default yet: its faster hand-offs make
// engine.TestPublisherIdle's recovery replay, which publishes two sources'
// records into two rings with nothing ordering one ring's against the
// other's, process a watermark before the other source's rejoin (3
// failures in 40 runs under -race, none with the channel).
//
// Park's handshake cannot lose a wake-up. The sleeper stores "sleeping" and
// then evaluates the condition once more before it blocks; the waker first
// makes the condition true (an atomic store: publishing a ring index) and
// then loads "sleeping". sync/atomic operations are sequentially consistent,
// so in their single total order either the waker's load comes after the
// sleeper's store (the waker sees "sleeping", flips it back to 0 and wakes
// the sleeper: the futex wait only blocks while the word is still 1, checked
// by the kernel atomically with queueing the sleeper, and the channel's
// token stays in its one slot until the sleeper takes it) or it comes
// before, and then the waker's earlier store precedes the sleeper's
// re-check, which sees the condition true and does not block. A wake-up
// left over from a race is a spurious one: Wait re-checks the condition and
// sleeps again.
//
// So the condition must read state that wakers write with sync/atomic, and
// whoever makes it true must call Wake afterwards.
type Waiter struct {
	strategy Strategy
	locked   bool // the waiting goroutine is locked to its thread (SetThreadLocked)
	// yields is how many times Park yields before it sleeps, 0 to
	// ParkYieldChecks; the waiting goroutine's. It adapts, as a mutex's
	// adaptive spinning does, to how soon the condition comes true once
	// Park gives up: a sleep whose Wake came within the time the yields took
	// (at least parkQuickNs; the waker tells, see quickBy) doubles it, since
	// a longer yield phase would have saved the sleep and its wake-up; any
	// other sleep halves it, since the yields it made were wasted. So a
	// saturated stream, whose waits end within microseconds, rarely sleeps,
	// and a sparse one (a message every 10-20 µs) soon stops yielding:
	// yields are busy time to the OS (Gosched gives the CPU to goroutines,
	// not to other processes), up to 2 µs a wait, and on a two-core machine
	// an end-to-end run at 100k messages/s lost latency to them.
	yields int
	pk     parker // Park's sleeping place (park_chan.go, park_futex.go)
	_      cpu.CacheLinePad
	// sleeping is 1 while the Park sleeper is (about to be) blocked; with
	// the futex park it is the futex word. It is on its own cache line: every
	// Publish/Release of every ring sharing the Waiter loads it, and only a
	// parking sleeper and the waker that flips it write it.
	sleeping atomic.Uint32
	// quickBy is the sleeper's: MonoNs before which a wake-up is quick
	// (stored before sleeping); quick is the waker's answer (set by the
	// waker that flips sleeping, if it did so before quickBy).
	quickBy atomic.Int64
	quick   atomic.Bool
	_       cpu.CacheLinePad
	sleeps  atomic.Uint64 // times the Waiter went to sleep
	inWait  atomic.Int32  // invariants builds: goroutines inside Wait
}

// NewWaiter returns a Waiter with strategy s. It panics if s is not one of
// Spin, Yield, Park (a programming error: names from configuration go
// through ParseStrategy).
func NewWaiter(s Strategy) *Waiter {
	if s >= strategyCount {
		panic("ring: NewWaiter with invalid " + s.String())
	}
	w := &Waiter{strategy: s, yields: ParkYieldChecks}
	if s == Park {
		w.initPark()
	}
	return w
}

// SetThreadLocked tells a Yield Waiter whether the goroutine that waits on
// it is locked to its OS thread (runtime.LockOSThread): then it yields the
// CPU with sched_yield and its P only every YieldsPerGosched-th time;
// otherwise with runtime.Gosched, which for an unlocked goroutine is cheap
// and lets the goroutines that wait for a P run. Call it before the first
// Wait, from the waiting goroutine.
func (w *Waiter) SetThreadLocked(locked bool) { w.locked = locked }

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
		for n := 1; ; n++ {
			w.yield(n)
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
		var yieldStart int64
		if w.yields > 0 {
			yieldStart = clock.MonoNs()
		}
		for n := 1; n <= w.yields; n++ { // fewer than YieldsPerGosched
			w.yield(n)
			if ready() {
				return true
			}
		}
		return w.park(ready, timeout, deadline, yieldStart)
	}
}

// yield gives the CPU up for the n-th time of a wait (n from 1): with
// runtime.Gosched, or on a locked thread with sched_yield and every
// YieldsPerGosched-th time with Gosched (see Waiter).
func (w *Waiter) yield(n int) {
	if !w.locked || n%YieldsPerGosched == 0 {
		runtime.Gosched()
	} else {
		osYield()
	}
}

// park sleeps until ready() holds or the deadline passes (no deadline when
// timeout <= 0). yieldStart is when the yield phase began (0: no yields).
func (w *Waiter) park(ready func() bool, timeout time.Duration, deadline time.Time, yieldStart int64) bool {
	for {
		now := clock.MonoNs()
		window := parkQuickNs
		if yieldStart != 0 {
			window = max(window, now-yieldStart)
			yieldStart = 0 // a second sleep of this wait: the yields were before the first
		}
		w.quickBy.Store(now + window)
		w.quick.Store(false)
		w.sleeping.Store(1)
		if ready() {
			w.sleeping.Store(0)
			return true
		}
		var d time.Duration // 0: no deadline
		if timeout > 0 {
			if d = time.Until(deadline); d <= 0 {
				w.sleeping.Store(0)
				return ready()
			}
		}
		w.sleeps.Add(1)
		w.sleep(d)
		w.sleeping.Store(0)
		if w.quick.Load() {
			w.yields = min(max(2*w.yields, 1), ParkYieldChecks)
		} else {
			w.yields /= 2
		}
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
	// Only the waker that flips the flag wakes, so a crowd of producers
	// sharing the Waiter wakes the sleeper once per sleep.
	if w.sleeping.CompareAndSwap(1, 0) {
		if clock.MonoNs() < w.quickBy.Load() {
			w.quick.Store(true)
		}
		w.wakeSleeper()
	}
}
