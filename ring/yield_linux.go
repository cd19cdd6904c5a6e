//go:build linux

package ring

import "syscall"

// osYield gives the calling thread's CPU to another runnable thread, if
// the kernel has one for it, and returns (sched_yield(2)). Through
// syscall.Syscall, so that the runtime may hand the thread's P to another
// goroutine should the kernel keep the thread off the CPU for long.
func osYield() { syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
