package bench

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"

	"qstream/internal/cpu"
)

// TestProbeCores takes a short probe (three samples of 2,000 round trips:
// about a millisecond of two busy threads) and checks what it says of
// itself, and that the CPUs it pinned are given back: no thread the runtime
// runs goroutines on afterwards keeps a one-CPU affinity.
func TestProbeCores(t *testing.T) {
	allowed := cpu.Allowed()
	if len(allowed) < 2 {
		if _, err := ProbeCores(3, 2000); !errors.Is(err, errOneCPU) {
			t.Fatalf("one CPU: err = %v, want errOneCPU", err)
		}
		return
	}
	p, err := ProbeCores(3, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if p.CPUs != [2]int{allowed[0], allowed[1]} || p.Samples != 3 || p.Trips != 2000 {
		t.Fatalf("probe %+v: want CPUs %v, 3 samples of 2000", p, allowed[:2])
	}
	// A round trip is two cache-line transfers: more than a nanosecond, and
	// far less than the millisecond a descheduled thread would cost each.
	if !(p.MinNs > 1 && p.MinNs <= p.MedianNs && p.MedianNs <= p.MaxNs && p.MedianNs < 1e6) {
		t.Fatalf("probe %+v: want 1 ns < min <= median <= max, median < 1 ms", p)
	}
	if q, err := ProbeCores(0, 0); err != nil || q.Samples != 1 || q.Trips != 1 {
		t.Fatalf("ProbeCores(0, 0) = %+v, %v: want one sample of one trip", q, err)
	}

	// Every thread a goroutine gets now may run on every allowed CPU.
	done := make(chan []int)
	for range 2 * runtime.GOMAXPROCS(0) {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			got, err := cpu.CurrentThreadCPUs()
			if err != nil {
				got = nil
			}
			done <- got
		}()
	}
	for range 2 * runtime.GOMAXPROCS(0) {
		if got := <-done; !slices.Equal(got, allowed) {
			t.Fatalf("a thread after the probe may run on %v, want %v", got, allowed)
		}
	}
}

// TestMachineProbe: SetEnd probes only when the start was probed, and the
// Markdown names both probes.
func TestMachineProbe(t *testing.T) {
	m := ThisMachine()
	if m.SetEnd(); m.Cores != nil || m.CoresEnd != nil || strings.Contains(m.Markdown(), "round trip") {
		t.Fatalf("an unprobed machine: %+v\n%s", m, m.Markdown())
	}
	m.Cores = &CoreProbe{CPUs: [2]int{0, 1}, Samples: 7, Trips: 20000, MedianNs: 95, MinNs: 89, MaxNs: 171}
	m.CoresEnd = &CoreProbe{CPUs: [2]int{0, 1}, Samples: 7, Trips: 20000, MedianNs: 480, MinNs: 470, MaxNs: 530}
	want := "- Cache-line round trip between two CPUs at the start: 95 ns (89-171 ns over 7 samples of 20000 round trips, CPUs 0 and 1); " +
		"at the end: 480 ns (470-530 ns over 7 samples of 20000 round trips, CPUs 0 and 1)\n"
	if md := m.Markdown(); !strings.Contains(md, want) {
		t.Fatalf("Markdown:\n%s\nwant the line\n%s", md, want)
	}
	m.Cores, m.CoresEnd, m.CoresNote = nil, nil, errOneCPU.Error()
	if md := m.Markdown(); !strings.Contains(md, "at the start: not measured (bench: core probe: fewer than two CPUs allowed)") {
		t.Fatalf("Markdown of a failed probe:\n%s", md)
	}
}
