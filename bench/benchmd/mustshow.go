package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"qstream/bench"
)

// Issue 12's must-show figures, each a ratio against a baseline measured in
// the same run, with its target. They are read from the result files of one
// `make bench`: the JSON reports of `qstream bench throughput` and `qstream
// bench e2e`, and the go test -bench output. None is read from Markdown.

// target is a bound on a ratio: at least or at most bound.
type target struct {
	atLeast bool
	bound   float64
}

func (t target) String() string {
	if t.atLeast {
		return ">= " + strconv.FormatFloat(t.bound, 'g', -1, 64) + "x"
	}
	return "<= " + strconv.FormatFloat(t.bound, 'g', -1, 64) + "x"
}

func (t target) met(ratio float64) bool {
	if t.atLeast {
		return ratio >= t.bound
	}
	return ratio <= t.bound
}

// Targets of issue 12.
var (
	durableTarget = target{atLeast: true, bound: 0.7}  // durable run / no-WAL run
	replayTarget  = target{atLeast: true, bound: 2}    // replay / single loop
	e2eTarget     = target{atLeast: false, bound: 1.5} // engine latency / reference latency
	handOffTarget = target{atLeast: true, bound: 10}   // channel ns / engine ns
)

// The e2e rates and the wait strategy issue 12 names.
var (
	mustShowRates = []int{50000, 100000}
	mustShowWait  = "park"
)

// The engine hand-off rows: the fastest engine row of this ring size against
// the channel of the same capacity (engine/handoff_bench_test.go).
const (
	handOffPrefix  = "engine.EngineHandOff/"
	handOffRing    = "/ring8192/"
	handOffChannel = "engine.EngineHandOff/chan/cap8192"
	handOffFloor   = "ring.SPSCInPlace/cap8192/park" // the ring alone at the same size
)

// Statuses of a must-show row.
const (
	statusMet         = "met"
	statusMissed      = "**missed**"
	statusNotMeasured = "not measured"
)

// claim is one row of the must-show table. ratio is meaningful only when
// measured is true; status is then met or missed (or invalid, with why).
type claim struct {
	what     string // the figure issue 12 asks for
	measured bool
	detail   string // the figures the ratio is made of, or why there is none
	ratio    float64
	target   target
	status   string
}

func (c *claim) set(ratio float64, detail string) {
	c.measured, c.ratio, c.detail = true, ratio, detail
	c.status = statusMissed
	if c.target.met(ratio) {
		c.status = statusMet
	}
}

func (c *claim) absent(why string) {
	c.measured, c.detail, c.status = false, why, statusNotMeasured
}

// mustShow computes the rows from the three reports.
func mustShow(run *rawRun, e2e *bench.E2EReport, tp *bench.ThroughputReport) []claim {
	var out []claim
	out = append(out, durableClaim(tp), replayClaim(tp))
	out = append(out, e2eClaims(e2e)...)
	out = append(out, handOffClaim(run))
	return out
}

func throughputResult(tp *bench.ThroughputReport, key string) *bench.ThroughputResult {
	for i := range tp.Results {
		if tp.Results[i].Key() == key {
			return &tp.Results[i]
		}
	}
	return nil
}

// usable says why r cannot give a figure ("" if it can).
func usable(r *bench.ThroughputResult, key string) string {
	switch {
	case r == nil:
		return "no " + key + " row"
	case r.Error != "":
		return key + " failed: " + firstLine(r.Error)
	case r.Rate <= 0:
		return key + " has no rate"
	}
	return ""
}

func durableClaim(tp *bench.ThroughputReport) claim {
	c := claim{what: "durable `qstream run` (WAL, group commit) ÷ the same run without the WAL, 1 shard", target: durableTarget}
	wal, nowal := throughputResult(tp, "run/shards=1/wal"), throughputResult(tp, "run/shards=1/nowal")
	for _, why := range []string{usable(wal, "run/shards=1/wal"), usable(nowal, "run/shards=1/nowal")} {
		if why != "" {
			c.absent(why + " in the throughput report")
			return c
		}
	}
	c.set(wal.Rate/nowal.Rate, fmt.Sprintf("%s vs %s msgs/s, %s messages a run (runs %s vs %s)",
		rateText(wal.Rate), rateText(nowal.Rate), rateText(float64(wal.Messages)), spread(wal.Rates), spread(nowal.Rates)))
	return c
}

func replayClaim(tp *bench.ThroughputReport) claim {
	c := claim{what: "`qstream replay` of JSON trades with a tumbling VWAP window ÷ the single loop (`qstream bench ref-vwap`: bufio, fastjson, a map)", target: replayTarget}
	ref := throughputResult(tp, bench.TargetReference)
	if why := usable(ref, "reference"); why != "" {
		c.absent(why + " in the throughput report")
		return c
	}
	// The fastest replay row, whatever its shards; the row says which.
	var best *bench.ThroughputResult
	rows := 0
	for i := range tp.Results {
		r := &tp.Results[i]
		if r.Target != bench.TargetReplay || usable(r, r.Key()) != "" {
			continue
		}
		rows++
		if best == nil || r.Rate > best.Rate {
			best = r
		}
	}
	if best == nil {
		c.absent("no replay row in the throughput report")
		return c
	}
	which := fmt.Sprintf("the fastest of %d replay rows", rows)
	if rows == 1 {
		which = "the only replay row"
	}
	c.set(best.Rate/ref.Rate, fmt.Sprintf("%s (%s): %s vs %s msgs/s, %s trades, %d windows each (runs %s vs %s)",
		best.Key(), which, rateText(best.Rate), rateText(ref.Rate), rateText(float64(best.Messages)), best.Outputs, spread(best.Rates), spread(ref.Rates)))
	if best.Outputs != ref.Outputs {
		c.status = fmt.Sprintf("invalid: %d windows vs the reference's %d", best.Outputs, ref.Outputs)
	}
	return c
}

func e2eResult(rep *bench.E2EReport, target, wait string, rate int) *bench.E2EResult {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Target == target && r.Rate == rate && (wait == "" || r.Wait == wait) {
			return r
		}
	}
	return nil
}

func e2eClaims(rep *bench.E2EReport) []claim {
	var out []claim
	for _, rate := range mustShowRates {
		eng := e2eResult(rep, bench.TargetEngine, mustShowWait, rate)
		ref := e2eResult(rep, bench.TargetReference, "", rate)
		for _, pct := range []string{"p50", "p99"} {
			c := claim{what: fmt.Sprintf("end to end at %s msg/s, wait %s: %s latency ÷ the reference program's (read, fastjson, write)", rateText(float64(rate)), mustShowWait, pct), target: e2eTarget}
			switch {
			case eng == nil:
				c.absent(fmt.Sprintf("no engine %s row at %d msg/s in the e2e report", mustShowWait, rate))
			case ref == nil:
				c.absent(fmt.Sprintf("no reference row at %d msg/s in the e2e report", rate))
			case eng.Error != "":
				c.absent("the engine's run failed: " + firstLine(eng.Error))
			case ref.Error != "":
				c.absent("the reference's run failed: " + firstLine(ref.Error))
			default:
				e, r := eng.Latency.P50Us, ref.Latency.P50Us
				if pct == "p99" {
					e, r = eng.Latency.P99Us, ref.Latency.P99Us
				}
				if r <= 0 {
					c.absent("the reference's " + pct + " is 0")
					break
				}
				c.set(e/r, fmt.Sprintf("%s vs %s µs; %s + %s messages measured, drops %d and %d; %d run(s) each merged",
					bench.FormatMicros(e), bench.FormatMicros(r), rateText(float64(eng.Latency.Count)), rateText(float64(ref.Latency.Count)), eng.Drops, ref.Drops, eng.Runs))
				if eng.Drops > 0 || ref.Drops > 0 {
					c.status = fmt.Sprintf("invalid: %d drops", eng.Drops+ref.Drops)
				}
			}
			out = append(out, c)
		}
	}
	return out
}

func handOffClaim(run *rawRun) claim {
	c := claim{what: "engine hand-off (`BenchmarkEngineHandOff`, 128-byte events into a counting shard, ring 8192) ÷ a buffered channel of the same events (cap 8192), ns/op", target: handOffTarget}
	byKey := run.byKey()
	ch, ok := medianOf(byKey[handOffChannel], "ns/op")
	if !ok || ch <= 0 {
		c.absent("no " + strings.TrimPrefix(handOffChannel, "engine.") + " row in the go test -bench output")
		return c
	}
	var best *result
	bestNs, rows := 0.0, 0
	for _, r := range run.results {
		key := r.pkg + "." + r.name
		if !strings.HasPrefix(key, handOffPrefix) || !strings.Contains(key, handOffRing) {
			continue
		}
		ns, ok := medianOf(r, "ns/op")
		if !ok || ns <= 0 {
			continue
		}
		rows++
		if best == nil || ns < bestNs {
			best, bestNs = r, ns
		}
	}
	if best == nil {
		c.absent("no engine ring8192 row in the go test -bench output")
		return c
	}
	detail := fmt.Sprintf("%s (the fastest of %d engine ring8192 rows) %s ns vs %s %s ns, medians of %d and %d runs (runs %s vs %s ns)",
		strings.TrimPrefix(best.name, "EngineHandOff/"), rows, format(bestNs), strings.TrimPrefix(handOffChannel, handOffPrefix), format(ch),
		len(best.metrics["ns/op"]), len(byKey[handOffChannel].metrics["ns/op"]), nsSpread(best.metrics["ns/op"]), nsSpread(byKey[handOffChannel].metrics["ns/op"]))
	// What bounds it on this machine: the ring alone, and the cores' round trip.
	if floor, ok := medianOf(byKey[handOffFloor], "ns/op"); ok && floor > 0 {
		detail += fmt.Sprintf("; the ring alone, filled in place (%s) %s ns, %s the channel", strings.TrimPrefix(handOffFloor, "ring."), format(floor), ratioText(ch/floor))
	}
	if s := run.stamp; s != nil && s.Machine.Cores != nil {
		detail += "; cache-line round trip between the vCPUs " + coresText(s.Machine)
	}
	c.set(ch/bestNs, detail)
	return c
}

// coresText is a machine's cache-line round trips, at the start and the
// end of its run: "95 ns at the start, 480 ns at the end".
func coresText(m bench.Machine) string {
	if m.Cores == nil {
		return "not measured"
	}
	t := fmt.Sprintf("%.0f ns at the start", m.Cores.MedianNs)
	if m.CoresEnd != nil {
		t += fmt.Sprintf(", %.0f ns at the end", m.CoresEnd.MedianNs)
	}
	return t
}

// writeMustShow writes the must-show table and how many rows met their target.
func writeMustShow(w io.Writer, claims []claim) {
	fmt.Fprint(w, "| issue 12 must show | this run (medians) | ratio | target | status |\n|---|---|---|---|---|\n")
	met, measured := 0, 0
	for _, c := range claims {
		ratio := "-"
		if c.measured {
			ratio = ratioText(c.ratio)
			measured++
			if c.status == statusMet {
				met++
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", c.what, c.detail, ratio, c.target, c.status)
	}
	fmt.Fprintf(w, "\n%d of %d met", met, len(claims))
	if measured < len(claims) {
		fmt.Fprintf(w, " (%d not measured)", len(claims)-measured)
	}
	fmt.Fprint(w, ".\n")
}

// ratioText shows a ratio with two decimals, or three significant digits
// below 0.1.
func ratioText(v float64) string {
	if math.Abs(v) < 0.1 {
		return strconv.FormatFloat(v, 'g', 3, 64) + "x"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

// rateText shows a rate as 14.59M, 50k, 950.
func rateText(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3 && v == math.Trunc(v/1e3)*1e3:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// spread is the range of a run's repeats, "7.07M-7.89M".
func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return rateText(lo) + "-" + rateText(hi)
}

// nsSpread is the range of a benchmark's repeats, "16.8-19.5".
func nsSpread(v []float64) string {
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return format(lo) + "-" + format(hi)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
