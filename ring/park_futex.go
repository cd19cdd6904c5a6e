//go:build linux && qstream_futex

package ring

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux futex operations on a word private to this process (linux/futex.h:
// FUTEX_WAIT 0, FUTEX_WAKE 1, FUTEX_PRIVATE_FLAG 128; x/sys/unix does not
// export them).
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// parker is what a Park Waiter sleeps on: the Waiter's sleeping word itself,
// as a futex. ts is the timeout of the sleep in progress, kept here (on the
// heap, owned by the one sleeper) rather than on the goroutine's stack.
type parker struct {
	ts unix.Timespec
}

func (w *Waiter) initPark() {}

// sleep blocks the calling thread in the kernel while w.sleeping is 1, for at
// most d (d <= 0: no limit). It returns on a wake-up, at the timeout, at once
// if the word is no longer 1 (a waker got there first), or spuriously (a
// signal: the Go runtime's preemption); Wait re-checks in every case.
//
// It is a blocking system call to the Go scheduler (entersyscall): the
// goroutine keeps its thread, and its P is handed to other goroutines if
// the sleep lasts; on return the thread takes its P back if it is still
// free, without a scheduler round trip.
func (w *Waiter) sleep(d time.Duration) {
	var ts uintptr
	if d > 0 {
		w.pk.ts = unix.NsecToTimespec(int64(d))
		ts = uintptr(unsafe.Pointer(&w.pk.ts))
	}
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&w.sleeping)), futexWaitPrivate, 1, ts, 0, 0)
}

// wakeSleeper wakes the thread sleeping on w.sleeping, if it is in the
// kernel yet (if not, its futex wait finds the word 0 and returns at once).
// FUTEX_WAKE never blocks, so it is a raw system call: no scheduler
// bookkeeping on the waker's hot path.
func (w *Waiter) wakeSleeper() {
	_, _, _ = unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&w.sleeping)), futexWakePrivate, 1, 0, 0, 0)
}

// pendingWake reports whether a wake-up is waiting for the next sleep: never
// on Linux, where a wake-up is the word's value (tests).
func (w *Waiter) pendingWake() bool { return false }
