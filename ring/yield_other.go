//go:build !linux

package ring

import "runtime"

// osYield is runtime.Gosched where sched_yield(2) is not used.
func osYield() { runtime.Gosched() }
