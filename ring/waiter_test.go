package ring

import (
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"qstream/internal/invariants"
)

var strategies = []Strategy{Spin, Yield, Park}

func TestWaiterStrategy(t *testing.T) {
	for _, s := range strategies {
		if got := NewWaiter(s).Strategy(); got != s {
			t.Errorf("NewWaiter(%v).Strategy() = %v", s, got)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewWaiter(Strategy(7)) did not panic")
		}
	}()
	NewWaiter(Strategy(7))
}

func TestWaiterReadyAtOnce(t *testing.T) {
	for _, s := range strategies {
		w := NewWaiter(s)
		calls := 0
		if !w.Wait(func() bool { calls++; return true }, time.Millisecond) || calls != 1 {
			t.Errorf("%v: Wait(true) returned false or evaluated ready %d times", s, calls)
		}
	}
}

// TestWaiterTimeout: Wait gives up no earlier than the timeout, for every
// strategy, and a Park Waiter's reused timer still works after a wake-up
// cancelled it. (Only lower bounds on time: upper bounds would be timing
// assertions on a shared machine.)
func TestWaiterTimeout(t *testing.T) {
	never := func() bool { return false }
	for _, s := range strategies {
		w := NewWaiter(s)
		d := 5 * time.Millisecond
		if s == Spin {
			d = time.Millisecond // burns a core for d
		}
		for round := 0; round < 3; round++ {
			start := time.Now()
			if w.Wait(never, d) {
				t.Fatalf("%v: Wait(never, %v) = true", s, d)
			}
			if el := time.Since(start); el < d {
				t.Fatalf("%v: Wait(never, %v) returned after %v", s, d, el)
			}
			if s == Park {
				// A wake-up that stops the timer, then time out again.
				var flag atomic.Bool
				go func() {
					parked(w)
					flag.Store(true)
					w.Wake()
				}()
				if !w.Wait(flag.Load, time.Minute) {
					t.Fatalf("park: woken Wait returned false")
				}
			}
		}
	}
}

// TestWaiterWokenBeforeTimeout: a condition made true by another goroutine,
// which then calls Wake, ends the wait with true long before the timeout.
func TestWaiterWokenBeforeTimeout(t *testing.T) {
	for _, s := range []Strategy{Yield, Park} {
		w := NewWaiter(s)
		var flag atomic.Bool
		go func() {
			if s == Park {
				parked(w)
			} else {
				time.Sleep(time.Millisecond)
			}
			flag.Store(true)
			w.Wake()
		}()
		if !w.Wait(flag.Load, time.Minute) {
			t.Errorf("%v: Wait returned false", s)
		}
	}
}

func TestWakeWithoutSleeperLeavesNoToken(t *testing.T) {
	w := NewWaiter(Park)
	for range 3 {
		w.Wake()
	}
	if w.pendingWake() || w.sleeping.Load() != 0 {
		t.Fatalf("Wake with nobody sleeping left a token (%v) or flag (%d)", w.pendingWake(), w.sleeping.Load())
	}
	if w.Wait(func() bool { return false }, time.Millisecond) {
		t.Fatal("Wait(never) = true")
	}
}

// TestWaiterNoLostWakeup plays ping-pong between two goroutines through two
// Park Waiters for many rounds: each side makes the other's condition true,
// wakes it, and parks until answered. A lost wake-up would leave both asleep;
// the generous timeout turns that hang into a failure.
func TestWaiterNoLostWakeup(t *testing.T) {
	rounds := 20000
	if stress() {
		rounds = 1000000
	} else if testing.Short() {
		rounds = 2000
	}
	const watchdog = 30 * time.Second
	ping, pong := NewWaiter(Park), NewWaiter(Park)
	var pings, pongs atomic.Int64
	errc := make(chan string, 1)
	go func() {
		d := newJitter(1)
		for i := int64(1); i <= int64(rounds); i++ {
			if !ping.Wait(func() bool { return pings.Load() >= i }, watchdog) {
				errc <- "ponger: lost wake-up"
				return
			}
			d.delay()
			pongs.Store(i)
			pong.Wake()
		}
		errc <- ""
	}()
	d := newJitter(2)
	for i := int64(1); i <= int64(rounds); i++ {
		d.delay()
		pings.Store(i)
		ping.Wake()
		if !pong.Wait(func() bool { return pongs.Load() >= i }, watchdog) {
			t.Fatalf("round %d: pinger: lost wake-up", i)
		}
	}
	if msg := <-errc; msg != "" {
		t.Fatal(msg)
	}
	checkParked(t, rounds, ping, pong)
}

// jitter delays the waker by a random few hundred nanoseconds, so that its
// store lands anywhere in the sleeper's spin-then-park sequence, including
// the window between "sleeping" and the re-check. A bounded computation,
// not a wait on anything.
type jitter struct {
	rng  *rand.Rand
	sink uint64
}

func newJitter(seed uint64) *jitter { return &jitter{rng: rand.New(rand.NewPCG(seed, 9))} }

func (j *jitter) delay() {
	n := j.rng.IntN(1024)
	for i := 0; i < n; i++ {
		j.sink = j.sink*31 + uint64(i)
	}
}

// checkParked fails if the Waiters never actually slept: then a ping-pong
// test proved nothing about the sleep/wake handshake.
func checkParked(t *testing.T, rounds int, ws ...*Waiter) {
	t.Helper()
	var sleeps uint64
	for _, w := range ws {
		sleeps += w.Sleeps()
	}
	t.Logf("%d of %d hand-offs parked the receiver", sleeps, 2*rounds)
	if sleeps == 0 {
		t.Fatal("no hand-off ever parked: the wake-up path was not exercised")
	}
}

func TestWaiterSingleSleeper(t *testing.T) {
	if !invariants.Enabled {
		t.Skip("invariants are off")
	}
	w := NewWaiter(Park)
	var flag atomic.Bool
	done := make(chan bool)
	go func() { done <- w.Wait(flag.Load, time.Minute) }()
	waitSleeping(t, w)
	mustViolate(t, "second goroutine in Wait", func() { w.Wait(flag.Load, time.Millisecond) })
	flag.Store(true)
	w.Wake()
	if !<-done {
		t.Fatal("first waiter returned false")
	}
}

// TestParkSleepsInsteadOfSpinning: a Park Waiter whose condition stays false
// evaluates it ParkSpinChecks + ParkYieldChecks times, plus a few re-checks
// around each sleep, and then sleeps until the timeout: its bounded spin and
// yields give up and it parks
// (on a channel, or on a futex with -tags qstream_futex). An unbounded spin would evaluate the
// condition millions of times in 20 ms.
func TestParkSleepsInsteadOfSpinning(t *testing.T) {
	w := NewWaiter(Park)
	calls := 0
	never := func() bool { calls++; return false }
	if w.Wait(never, 20*time.Millisecond) {
		t.Fatal("Wait(never) = true")
	}
	// Each sleep costs two evaluations (before and after it); a sleep may
	// end early (a signal), so allow a few.
	if max := 1 + ParkSpinChecks + ParkYieldChecks + 2*10; calls > max || w.Sleeps() == 0 {
		t.Fatalf("condition evaluated %d times (want at most %d), %d sleeps (want some)", calls, max, w.Sleeps())
	}
}

// TestParkYieldsBeforeSleeping: a Park Waiter yields the CPU between its
// busy loop and its sleep, so a goroutine that makes the condition true
// without a Wake (it needs the only P, which the waiter holds) runs in the
// yield phase and the Waiter returns without sleeping; with the sleep right
// after the busy loop it would sleep until the timeout. Locked to its
// thread, the Waiter yields with sched_yield, which keeps its P; the P goes
// to the other goroutine only when the runtime preempts the waiter or it
// sleeps, so only the unlocked case is checked for no sleep.
func TestParkYieldsBeforeSleeping(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for range 20 {
		var flag atomic.Bool
		w := NewWaiter(Park)
		evals := 0
		ok := w.Wait(func() bool {
			if evals++; evals == 1 {
				go flag.Store(true) // needs the only P, which this goroutine holds
			}
			return flag.Load()
		}, 2*time.Second) // without the yields: asleep until then
		if !ok {
			t.Fatalf("Park: Wait returned false after %d evaluations and %d sleeps", evals, w.Sleeps())
		}
		if max := 1 + ParkSpinChecks + ParkYieldChecks; evals > max || w.Sleeps() != 0 {
			t.Fatalf("Park: %d evaluations (want at most %d) and %d sleeps (want none) before another goroutine ran", evals, max, w.Sleeps())
		}
	}
}

// TestParkYieldsAdapt: a Park Waiter's yield phase halves after each sleep
// that no quick Wake ended (here: timeouts) down to none, and doubles back
// to ParkYieldChecks after sleeps that a Wake ended quickly (within a
// window widened to a second, so that a slow machine cannot make the
// wake-ups late).
func TestParkYieldsAdapt(t *testing.T) {
	w := NewWaiter(Park)
	never := func() bool { return false }
	for want := ParkYieldChecks / 2; ; want /= 2 {
		if w.Wait(never, 20*time.Millisecond) { // long enough that the yields end well before it
			t.Fatal("Wait(never) = true")
		}
		if w.yields != want {
			t.Fatalf("after a sleep that timed out: %d yields, want %d", w.yields, want)
		}
		if want == 0 {
			break
		}
	}
	defer func(q int64) { parkQuickNs = q }(parkQuickNs)
	parkQuickNs = int64(time.Second)
	for want := 1; want <= 2*ParkYieldChecks; want *= 2 {
		var flag atomic.Bool
		go func() {
			for w.sleeping.Load() == 0 {
				runtime.Gosched()
			}
			flag.Store(true)
			w.Wake()
		}()
		if !w.Wait(flag.Load, time.Minute) {
			t.Fatal("Wait returned false")
		}
		if got := min(want, ParkYieldChecks); w.yields != got {
			t.Fatalf("after a quick wake-up: %d yields, want %d", w.yields, got)
		}
	}
}

// TestWakeReachesParkedSleeper: a sleeper parked with no timeout is woken
// by Wake from another goroutine, many times in a row, and each Wake
// clears the sleeping word (the futex word of the futex park) it found set.
func TestWakeReachesParkedSleeper(t *testing.T) {
	w := NewWaiter(Park)
	var turn atomic.Int64
	done := make(chan bool)
	for i := int64(1); i <= 50; i++ {
		go func() { done <- w.Wait(func() bool { return turn.Load() >= i }, 0) }()
		waitSleeping(t, w)
		turn.Store(i)
		w.Wake()
		if w.sleeping.Load() != 0 {
			t.Fatalf("round %d: Wake left the sleeping word set", i)
		}
		if !<-done {
			t.Fatalf("round %d: Wait without a timeout returned false", i)
		}
	}
}

// TestYieldLetsGoroutinesRun: a Yield waiter with one P lets the goroutine
// that makes its condition true run. Unlocked, it calls runtime.Gosched
// between checks: the condition holds within a few checks after the busy
// ones. On a thread of its own (locked, as a pinned shard's) it yields its
// CPU with sched_yield, which keeps its P, so the other goroutine can only
// run every YieldsPerGosched-th round, when the waiter gives the P up (the
// first or second time);
// without that it would wait for the runtime's preemption (10 ms:
// thousands of rounds).
func TestYieldLetsGoroutinesRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, locked := range []bool{false, true} {
		max := 1 + YieldSpinChecks + 4 // a Gosched may run the waiter again first (the scheduler's fairness check of its global queue)
		if locked {
			max += 2 * YieldsPerGosched // the first Gosched's hand-off may run the waiter again first
		}
		for range 20 {
			var flag atomic.Bool
			evals := 0
			done := make(chan bool)
			go func() {
				w := NewWaiter(Yield)
				if locked {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					w.SetThreadLocked(true)
				}
				done <- w.Wait(func() bool {
					if evals++; evals == 1 {
						go flag.Store(true) // needs the only P, which this goroutine holds
					}
					return flag.Load()
				}, time.Minute)
			}()
			if !<-done {
				t.Fatal("Yield: Wait returned false")
			}
			if evals > max {
				t.Fatalf("Yield (locked %v): the condition was evaluated %d times before another goroutine ran, want at most %d", locked, evals, max)
			}
		}
	}
}
