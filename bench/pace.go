package bench

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// LockForNanosleep prepares the calling goroutine for PaceNanosleep: it
// locks it to its OS thread and sets that thread's timer slack to 1 ns
// (the default 50 µs would add itself to every wake-up). The thread stays
// locked until the goroutine exits.
func LockForNanosleep() {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // refused: the default slack, later sends
}

func nanosleep(ns int64) {
	ts := unix.NsecToTimespec(ns)
	_ = unix.Nanosleep(&ts, nil) // interrupted: the caller reads the clock and waits again
}
