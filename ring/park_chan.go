//go:build !linux || !qstream_futex

package ring

import "time"

// parker is what a Park Waiter sleeps on where there is no futex: a one-slot
// token channel and a timer reused for every timed sleep.
type parker struct {
	wake  chan struct{}
	timer *time.Timer
}

func (w *Waiter) initPark() {
	w.pk.wake = make(chan struct{}, 1)
	w.pk.timer = time.NewTimer(time.Hour)
	w.pk.timer.Stop()
}

// sleep blocks until a token arrives or d has passed (d <= 0: no limit).
func (w *Waiter) sleep(d time.Duration) {
	if d <= 0 {
		<-w.pk.wake
		return
	}
	w.pk.timer.Reset(d)
	select {
	case <-w.pk.wake:
		// Since Go 1.23 Stop guarantees no stale tick is received later;
		// the drain keeps that true under asynctimerchan=1.
		if !w.pk.timer.Stop() {
			select {
			case <-w.pk.timer.C:
			default:
			}
		}
	case <-w.pk.timer.C:
	}
}

// wakeSleeper sends the token, unless one is already pending (the sleeper
// will see it).
func (w *Waiter) wakeSleeper() {
	select {
	case w.pk.wake <- struct{}{}:
	default:
	}
}

// pendingWake reports whether a token is waiting for the next sleep (tests).
func (w *Waiter) pendingWake() bool { return len(w.pk.wake) != 0 }
