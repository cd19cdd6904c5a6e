// Package cpu pins OS threads to CPUs and reports which CPUs the process may
// use. Pinning is best effort: an environment that refuses it (containers,
// cgroups, CPU sets) is logged once by the caller, never fatal.
package cpu

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Allowed returns the CPUs the calling thread may run on, in ascending order.
func Allowed() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		n := runtime.NumCPU()
		cpus := make([]int, n)
		for i := range cpus {
			cpus[i] = i
		}
		return cpus
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// PinThread binds the calling OS thread to cpu. The caller must have called
// runtime.LockOSThread, or the pin applies to a thread the goroutine may leave.
func PinThread(cpu int) error {
	var set unix.CPUSet
	set.Zero()
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("cpu: pin to %d: %w", cpu, err)
	}
	return nil
}

// CurrentThreadCPUs returns the affinity of the calling thread (for tests and
// the status line).
func CurrentThreadCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("cpu: get affinity: %w", err)
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}
