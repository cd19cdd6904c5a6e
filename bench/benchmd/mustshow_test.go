package main

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"qstream/bench"
)

// fixture holds the figures the must-show rows are made of; the files are
// written from it by the tests (fixtureResults, fixtureE2E,
// fixtureThroughput), never copied from a real run.
type fixture struct {
	walRate, nowalRate      float64 // run/shards=1, msgs/s
	replay1, replay2, refTP float64 // replay shards 1 and 2, the single loop
	e2eRates                []int
	engP50, engP99          float64 // engine park, µs, at every rate
	refP50, refP99          float64 // reference, µs
	handOffNs, chan8192Ns   float64 // the fastest ring8192 row, the channel
	dropHandOffChannel      bool
	engineDrops             int64
}

// met: every ratio on the right side of its target; missed: every one on
// the wrong side.
var (
	fixtureMet = fixture{
		walRate: 8e6, nowalRate: 10e6, // 0.8x >= 0.7x
		replay1: 4e6, replay2: 5e6, refTP: 2e6, // fastest 2.5x >= 2x
		e2eRates: []int{10000, 50000, 100000},
		engP50:   60, engP99: 1400, refP50: 50, refP99: 1000, // 1.2x, 1.4x <= 1.5x
		handOffNs: 5, chan8192Ns: 60, // 12x >= 10x
	}
	fixtureMissed = fixture{
		walRate: 5e6, nowalRate: 10e6, // 0.5x
		replay1: 3e6, replay2: 2e6, refTP: 2e6, // fastest 1.5x
		e2eRates: []int{50000, 100000},
		engP50:   100, engP99: 1600, refP50: 50, refP99: 1000, // 2x, 1.6x
		handOffNs: 12, chan8192Ns: 60, // 5x
	}
)

// fixtureResults is go test -bench output with the hand-off rows: the
// ring8192 rows at handOffNs and slower, with three repeats each (the
// median is the middle one), and rows that must not count: a faster
// ring1024 row and a faster channel of another capacity.
func fixtureResults(f fixture) string {
	var b strings.Builder
	b.WriteString("goos: linux\ngoarch: amd64\npkg: qstream/engine\ncpu: Fixture CPU @ 1.00GHz\n")
	row := func(name string, ns ...float64) {
		for _, v := range ns {
			fmt.Fprintf(&b, "BenchmarkEngineHandOff/%s-2 \t 1000000\t %.2f ns/op\t 1000 MB/s\t 0 B/op\t 0 allocs/op\n", name, v)
		}
	}
	row("batch/ring1024/park", 1, 1, 1)
	row("batch/ring8192/park", f.handOffNs+3, f.handOffNs+1, f.handOffNs+2) // median handOffNs+2
	row("batch/ring8192/yield", f.handOffNs-1, f.handOffNs, f.handOffNs+9)  // median handOffNs: the fastest
	row("claim/ring8192/spin", f.handOffNs+1, f.handOffNs+1, f.handOffNs+1)
	row("chan/cap1024", 2, 2, 2)
	if !f.dropHandOffChannel {
		row("chan/cap8192", f.chan8192Ns-1, f.chan8192Ns, f.chan8192Ns+1)
	}
	b.WriteString("PASS\nok  \tqstream/engine\t12.3s\n")
	// The ring alone at the same size (the hand-off row's floor), and a
	// faster ring row that is not it.
	b.WriteString("pkg: qstream/ring\n")
	for _, r := range []struct {
		name string
		ns   float64
	}{{"cap1024/park", 1}, {"cap8192/park", f.handOffNs / 3}} {
		for range 3 {
			fmt.Fprintf(&b, "BenchmarkSPSCInPlace/%s-2 \t 1000000\t %.2f ns/op\t 1000 MB/s\t 0 B/op\t 0 allocs/op\n", r.name, r.ns)
		}
	}
	b.WriteString("PASS\nok  \tqstream/ring\t1.2s\n")
	return b.String()
}

// fixtureCores is a core probe of median ns.
func fixtureCores(ns float64) *bench.CoreProbe {
	return &bench.CoreProbe{CPUs: [2]int{0, 1}, Samples: 7, Trips: 20000, MedianNs: ns, MinNs: ns - 5, MaxNs: ns + 50}
}

func fixtureMachine(date string) bench.Machine {
	return bench.Machine{CPU: "Fixture CPU @ 1.00GHz", CPUs: 2, GOMAXPROCS: 2, Go: "go1.99", OS: "linux/amd64",
		Kernel: "Linux 1.2.3", LoadAvg: "0.10 0.20 0.30", LoadAvgEnd: "1.10 1.20 1.30", Date: date,
		Cores: fixtureCores(95), CoresEnd: fixtureCores(480)}
}

func fixtureE2E(f fixture) *bench.E2EReport {
	rep := &bench.E2EReport{Machine: fixtureMachine("2030-01-02T03:04:05Z"), Command: "qstream bench e2e --fixture",
		Path: "fixture path", Duration: "2s", Warmup: "1s", Pacing: "spin", Symbols: 100, Shards: 1, Repeats: 3,
		Percentiles: bench.PercentileNames}
	res := func(target, wait string, rate int, p50, p99 float64, drops int64) bench.E2EResult {
		n := int64(rate) * 6
		return bench.E2EResult{Target: target, Wait: wait, Rate: rate, Runs: 3, Sent: n + int64(rate)*3, Warmup: int64(rate) * 3,
			Received: n + int64(rate)*3 - drops, Drops: drops, SendRate: float64(rate), RecvRate: float64(rate),
			Latency:  bench.Percentiles{Count: n, MeanUs: p50, P50Us: p50, P90Us: p50 * 2, P99Us: p99, P999Us: p99 * 2, P9999: p99 * 3, MaxUs: p99 * 4},
			Lateness: bench.Percentiles{Count: n, P50Us: 0.3, P99Us: 60}}
	}
	for _, rate := range f.e2eRates {
		ref := res(bench.TargetReference, "block", rate, f.refP50, f.refP99, 0)
		park := res(bench.TargetEngine, "park", rate, f.engP50, f.engP99, f.engineDrops)
		yield := res(bench.TargetEngine, "yield", rate, f.refP50/2, f.refP99/2, 0) // better, but not the wait issue 12 names
		rep.Results = append(rep.Results, ref, park, yield)
		rep.Ratios = append(rep.Ratios,
			bench.E2ERatio{Rate: rate, Wait: "park", Ratio: []float64{f.engP50 / f.refP50, 2, f.engP99 / f.refP99, 2, 3, 4}},
			bench.E2ERatio{Rate: rate, Wait: "yield", Ratio: []float64{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}})
	}
	return rep
}

func fixtureThroughput(f fixture) *bench.ThroughputReport {
	rep := &bench.ThroughputReport{Machine: fixtureMachine("2030-01-02T03:10:00Z"), Command: "qstream bench throughput --fixture",
		RunMessages: 3000000, ReplayTrades: 2000000, Symbols: 100, Window: "tumbling:1s:vwap", Repeats: 3}
	three := func(v float64) []float64 { return []float64{v * 0.9, v, v * 1.1} }
	rep.Results = []bench.ThroughputResult{
		{Target: bench.TargetRun, Shards: 1, Messages: 3000000, Rates: three(f.nowalRate), Rate: f.nowalRate, VsReference: f.nowalRate / f.refTP},
		{Target: bench.TargetRun, Shards: 1, WAL: true, Messages: 3000000, Rates: three(f.walRate), Rate: f.walRate,
			Baseline: "run/shards=1/nowal", Ratio: f.walRate / f.nowalRate, VsReference: f.walRate / f.refTP},
		{Target: bench.TargetReplay, Shards: 1, Messages: 2000000, Outputs: 100000, Rates: three(f.replay1), Rate: f.replay1,
			Baseline: "reference", Ratio: f.replay1 / f.refTP, VsReference: f.replay1 / f.refTP},
		{Target: bench.TargetReplay, Shards: 2, Messages: 2000000, Outputs: 100000, Rates: three(f.replay2), Rate: f.replay2,
			Baseline: "reference", Ratio: f.replay2 / f.refTP, VsReference: f.replay2 / f.refTP},
		{Target: bench.TargetReference, Shards: 1, Messages: 2000000, Outputs: 100000, Rates: three(f.refTP), Rate: f.refTP},
	}
	return rep
}

func fixtureClaims(t *testing.T, f fixture) []claim {
	t.Helper()
	run, err := parse(strings.NewReader(fixtureResults(f)))
	if err != nil {
		t.Fatal(err)
	}
	return mustShow(run, fixtureE2E(f), fixtureThroughput(f))
}

// want is a row's expected ratio and status (ratio 0: not measured).
type want struct {
	ratio  float64
	status string
}

func checkClaims(t *testing.T, got []claim, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("%d rows, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		c := got[i]
		if c.status != w.status {
			t.Errorf("row %d (%s): status %q, want %q (%s)", i, c.what, c.status, w.status, c.detail)
		}
		if w.ratio == 0 {
			if c.measured {
				t.Errorf("row %d (%s): measured %.3f, want none", i, c.what, c.ratio)
			}
			continue
		}
		if !c.measured || math.Abs(c.ratio-w.ratio) > 1e-9 {
			t.Errorf("row %d (%s): ratio %.6f (measured %v), want %.6f", i, c.what, c.ratio, c.measured, w.ratio)
		}
	}
}

func TestMustShowMet(t *testing.T) {
	checkClaims(t, fixtureClaims(t, fixtureMet), []want{
		{0.8, statusMet},      // durable
		{2.5, statusMet},      // replay, 2 shards the fastest
		{1.2, statusMet},      // 50k p50
		{1.4, statusMet},      // 50k p99
		{1.2, statusMet},      // 100k p50
		{1.4, statusMet},      // 100k p99
		{60.0 / 5, statusMet}, // hand-off: batch/ring8192/yield's median 5 ns
	})
}

func TestMustShowMissed(t *testing.T) {
	checkClaims(t, fixtureClaims(t, fixtureMissed), []want{
		{0.5, statusMissed},
		{1.5, statusMissed},
		{2, statusMissed},
		{1.6, statusMissed},
		{2, statusMissed},
		{1.6, statusMissed},
		{5, statusMissed},
	})
}

func TestMustShowHandOffRow(t *testing.T) {
	c := fixtureClaims(t, fixtureMet)[6]
	for _, s := range []string{"batch/ring8192/yield", "fastest of 3 engine ring8192 rows", "chan/cap8192 60.0 ns",
		"the ring alone, filled in place (SPSCInPlace/cap8192/park) 1.67 ns, 35.93x the channel"} {
		if !strings.Contains(c.detail, s) {
			t.Errorf("hand-off row %q does not say %q", c.detail, s)
		}
	}
	// Unstamped go test output has no core probe: the row says nothing of it.
	if strings.Contains(c.detail, "round trip") {
		t.Errorf("hand-off row %q names a round trip no stamp recorded", c.detail)
	}
	// A stamped run: the row says the cores' round trip at the start and the end.
	run, err := parse(strings.NewReader(fixtureResults(fixtureMet)))
	if err != nil {
		t.Fatal(err)
	}
	run.stamp = &stamp{Machine: fixtureMachine("2030-01-02T02:00:00Z")}
	c = handOffClaim(run)
	if want := "cache-line round trip between the vCPUs 95 ns at the start, 480 ns at the end"; !strings.Contains(c.detail, want) {
		t.Errorf("hand-off row %q does not say %q", c.detail, want)
	}
	if c.ratio != 12 {
		t.Errorf("ratio %v, want 12: the floor and the probe are context, not the figure", c.ratio)
	}
}

func TestMustShowNotMeasured(t *testing.T) {
	f := fixtureMet
	f.e2eRates = []int{50000} // no 100k rows
	f.dropHandOffChannel = true
	checkClaims(t, fixtureClaims(t, f), []want{
		{0.8, statusMet},
		{2.5, statusMet},
		{1.2, statusMet},
		{1.4, statusMet},
		{0, statusNotMeasured},
		{0, statusNotMeasured},
		{0, statusNotMeasured},
	})
}

func TestMustShowDropsInvalidate(t *testing.T) {
	f := fixtureMet
	f.engineDrops = 7
	c := fixtureClaims(t, f)[2]
	if !c.measured || !strings.HasPrefix(c.status, "invalid") {
		t.Fatalf("a latency with drops: status %q, want invalid", c.status)
	}
}

func TestTargetBoundary(t *testing.T) {
	for _, tc := range []struct {
		t     target
		ratio float64
		met   bool
	}{
		{durableTarget, 0.7, true}, {durableTarget, 0.6999, false},
		{e2eTarget, 1.5, true}, {e2eTarget, 1.5001, false},
		{handOffTarget, 10, true}, {handOffTarget, 9.99, false},
	} {
		if got := tc.t.met(tc.ratio); got != tc.met {
			t.Errorf("%s met(%v) = %v, want %v", tc.t, tc.ratio, got, tc.met)
		}
	}
}
