package bench

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"qstream/internal/cpu"
)

// The cache-line round trip between two CPUs: what one core's store costs
// another core to see and answer. Every cross-thread figure of the suite (the
// engine's ring hand-off above all: 128-byte events written on one core and
// read on another) is bounded by it, and on a shared VM it is the host's, not
// the guest's: the same guest measured 45-120 ns one minute and 500-560 ns the
// next (BENCHMARKS.md, History). So every report records it at its start and
// its end, beside the load average, to say which machine its ratios were
// measured on.

// CoreProbe is a measured cache-line round trip between two CPUs.
type CoreProbe struct {
	CPUs     [2]int  `json:"cpus"`      // the two CPUs the threads were pinned to
	Samples  int     `json:"samples"`   // samples taken
	Trips    int     `json:"trips"`     // round trips a sample
	MedianNs float64 `json:"median_ns"` // a round trip, the median of the samples
	MinNs    float64 `json:"min_ns"`
	MaxNs    float64 `json:"max_ns"`
}

// ProbeSamples and ProbeTrips are the probe of a report: 7 samples of 20,000
// round trips, 20-100 ms of two busy threads on a machine like this one.
const (
	ProbeSamples = 7
	ProbeTrips   = 20_000
)

// errOneCPU is ProbeCores's answer on a machine (or CPU set) of one CPU.
var errOneCPU = errors.New("bench: core probe: fewer than two CPUs allowed")

// ProbeCores measures the cache-line round trip between the first two CPUs
// the process may use: two goroutines, each locked to its thread and the
// thread pinned to its CPU, take turns to write a counter the other spins on
// (a ping-pong of one cache line each way). It busy-waits: it is for the
// benchmark commands, at their start and end, never for the engine. Samples
// and trips below 1 are taken as 1.
func ProbeCores(samples, trips int) (CoreProbe, error) {
	allowed := cpu.Allowed()
	if len(allowed) < 2 {
		return CoreProbe{}, errOneCPU
	}
	p := CoreProbe{CPUs: [2]int{allowed[0], allowed[1]}, Samples: max(samples, 1), Trips: max(trips, 1)}
	ns := make([]float64, 0, p.Samples)
	for range p.Samples {
		d, err := pingPong(p.CPUs, p.Trips)
		if err != nil {
			return CoreProbe{}, err
		}
		ns = append(ns, float64(d.Nanoseconds())/float64(p.Trips))
	}
	slices.Sort(ns)
	p.MedianNs, p.MinNs, p.MaxNs = ns[len(ns)/2], ns[0], ns[len(ns)-1]
	return p, nil
}

// pingLine is a counter alone on its cache lines (128 bytes: the adjacent-line
// prefetcher pairs lines).
type pingLine struct {
	_ [64]byte
	v atomic.Uint64
	_ [56]byte
}

// probeStallSpins is how long a side spins without an answer before it
// yields its thread: the other side's thread is not running (the host took
// its CPU). The sample is then slow, as the host made it, but it ends.
const probeStallSpins = 1 << 20

// pingPong times trips round trips between a thread on cpus[0] (the
// pinger: it writes n, waits for the answer n) and one on cpus[1]. Both
// sides run on goroutines of their own that stay locked to their threads
// to the end, so the runtime ends the pinned threads with them instead of
// handing them (and their one CPU each) to other goroutines.
func pingPong(cpus [2]int, trips int) (time.Duration, error) {
	var ping, pong pingLine
	var errs [2]error
	var pinned, done sync.WaitGroup
	var elapsed time.Duration
	pinned.Add(2)
	done.Add(2)
	start := make(chan struct{}) // closed once both sides are pinned (or failed to be)
	var good bool                // both pinned: set before start is closed
	side := func(i int, run func()) {
		defer done.Done()
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine
		errs[i] = cpu.PinThread(cpus[i])
		pinned.Done()
		if <-start; good {
			run()
		}
	}
	go side(0, func() {
		t0 := time.Now()
		for n := uint64(1); n <= uint64(trips); n++ {
			ping.v.Store(n)
			waitFor(&pong.v, n)
		}
		elapsed = time.Since(t0)
	})
	go side(1, func() {
		for n := uint64(1); n <= uint64(trips); n++ {
			waitFor(&ping.v, n)
			pong.v.Store(n)
		}
	})
	pinned.Wait()
	good = errs[0] == nil && errs[1] == nil
	close(start)
	done.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return 0, fmt.Errorf("bench: core probe: %w", err)
	}
	return elapsed, nil
}

// waitFor spins until v holds at least n.
func waitFor(v *atomic.Uint64, n uint64) {
	for spins := 0; v.Load() < n; spins++ {
		if spins == probeStallSpins {
			spins = 0
			runtime.Gosched()
		}
	}
}
