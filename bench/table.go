package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// table is a small text table written either aligned (the terminal) or as
// Markdown (the results files).
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// text writes t with columns aligned, right-justified but for the first.
func (t *table) text(w io.Writer) {
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range append([][]string{t.head}, t.rows...) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// markdown writes t as a Markdown table.
func (t *table) markdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.head, " | "), strings.Repeat("---|", len(t.head)))
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// num formats a count or a rate with thousands kept readable (12.3k, 1.25M).
func num(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// us formats microseconds with three significant digits or so.
func us(v float64) string { return FormatMicros(v) }

// FormatMicros formats microseconds as the tables of qstream bench do:
// three significant digits or so (benchmd's must-show table uses it too).
func FormatMicros(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

// e2eTable is the report as one table: per rate, the reference (the floor),
// then each engine run and its ratio to the floor.
func e2eTable(rep *E2EReport) *table {
	t := &table{head: []string{"rate msg/s", "target", "wait", "sent", "drops", "sent/s", "out/s", "gen late p99 µs", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "p99.99 µs", "max µs"}}
	for _, r := range rep.Results {
		row := []string{itoa(r.Rate), r.Target, r.Wait, num(float64(r.Sent)), strconv.FormatInt(r.Drops, 10), num(r.SendRate), num(r.RecvRate), us(r.Lateness.P99Us)}
		if r.Error != "" {
			row = append(row, "FAILED (see JSON)", "", "", "", "", "")
		} else {
			for _, v := range r.Latency.values() {
				row = append(row, us(v))
			}
		}
		t.add(row...)
		if r.Target != TargetEngine {
			continue
		}
		for _, q := range rep.Ratios {
			if q.Rate == r.Rate && q.Wait == r.Wait {
				row := []string{"", "÷ reference", r.Wait, "", "", "", "", ""}
				for _, v := range q.Ratio {
					row = append(row, ratio(v))
				}
				t.add(row...)
			}
		}
	}
	return t
}

// WriteE2ETable writes the report as an aligned table.
func WriteE2ETable(w io.Writer, rep *E2EReport) {
	fmt.Fprintf(w, "End to end over loopback TCP: latency from the intended send time (open loop, %s measured after %s warm-up per run, %d run(s) per target in turn, generator pacing %s, %d symbols, %d shard(s))\n",
		rep.Duration, rep.Warmup, max(1, rep.Repeats), rep.Pacing, rep.Symbols, rep.Shards)
	if len(rep.EngineArgs) > 0 {
		fmt.Fprintf(w, "engine flags added: %s\n", strings.Join(rep.EngineArgs, " "))
	}
	e2eTable(rep).text(w)
	writeCoresLine(w, rep.Machine)
}

// writeCoresLine is the machine's core probes under a table, if it was
// probed.
func writeCoresLine(w io.Writer, m Machine) {
	if t := m.CoresText(); t != "" {
		fmt.Fprintf(w, "cache-line round trip between two CPUs %s\n", t)
	}
}

// WriteE2EMarkdown writes the report for BENCHMARKS.md: the machine, the
// command, the path, the table, and the plot (svg, a file name beside the
// Markdown file; empty: none).
func WriteE2EMarkdown(w io.Writer, rep *E2EReport, svg string) {
	fmt.Fprintf(w, "## End-to-end latency (`qstream bench e2e`)\n\n")
	fmt.Fprintf(w, "Command: `%s`\n\n", rep.Command)
	fmt.Fprint(w, rep.Machine.Markdown())
	fmt.Fprintf(w, "\nPath: %s.", rep.Path)
	if len(rep.EngineArgs) > 0 {
		fmt.Fprintf(w, " Engine flags added: `%s`.", strings.Join(rep.EngineArgs, " "))
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintf(w, "Latency is from each message's intended send time on the open-loop schedule to the read that brought its output line "+
		"(coordinated omission corrected: a stall counts against every message it delayed), HdrHistogram, 3 significant digits; "+
		"%s measured per run after %s of warm-up at the same rate, %d run(s) of each target per rate taken in turn (reference, each wait strategy, again) "+
		"and merged into one histogram per target; generator pacing `%s`; %d symbols; %d shard(s). "+
		"\"÷ reference\" rows are the engine's figure over the reference program's at the same rate, in the same run. "+
		"Drops are messages sent whose output never arrived. \"gen late p99\" is how late the generator itself sent (p99 of actual minus intended send time): "+
		"where it is large the machine, not the path, set the tail.\n\n",
		rep.Duration, rep.Warmup, max(1, rep.Repeats), rep.Pacing, rep.Symbols, rep.Shards)
	e2eTable(rep).markdown(w)
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "\nFailed: %d msg/s %s %s: `%s`\n", r.Rate, r.Target, r.Wait, firstLine(r.Error))
		}
	}
	if svg != "" {
		fmt.Fprintf(w, "\n![latency by percentile, per rate](%s)\n", svg)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func throughputTable(rep *ThroughputReport) *table {
	t := &table{head: []string{"target", "shards", "WAL", "messages", "windows", "msgs/s (median)", "runs", "baseline", "ratio", "÷ single loop"}}
	for _, r := range rep.Results {
		wal := "no"
		if r.WAL {
			wal = "yes"
		}
		if r.Target == TargetReference {
			wal = "-"
		}
		outs := "-"
		if r.Target != TargetRun {
			outs = strconv.FormatInt(r.Outputs, 10)
		}
		rate := num(r.Rate)
		if r.Error != "" {
			rate = "FAILED"
		}
		var runs []string
		for _, v := range r.Rates {
			runs = append(runs, num(v))
		}
		t.add(r.Target, itoa(r.Shards), wal, num(float64(r.Messages)), outs, rate, strings.Join(runs, " "), r.Baseline, ratio(r.Ratio), ratio(r.VsReference))
	}
	return t
}

// WriteThroughputTable writes the report as an aligned table.
func WriteThroughputTable(w io.Writer, rep *ThroughputReport) {
	fmt.Fprintf(w, "Throughput (median of %d interleaved runs; ratio = msgs/s over the baseline's in the same run)\n", rep.Repeats)
	throughputTable(rep).text(w)
	writeCoresLine(w, rep.Machine)
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "FAILED %s: %s\n", r.Key(), r.Error)
		}
	}
}

// WriteThroughputMarkdown writes the report for BENCHMARKS.md.
func WriteThroughputMarkdown(w io.Writer, rep *ThroughputReport) {
	fmt.Fprintf(w, "## Throughput (`qstream bench throughput`)\n\n")
	fmt.Fprintf(w, "Command: `%s`\n\n", rep.Command)
	fmt.Fprint(w, rep.Machine.Markdown())
	fmt.Fprintf(w, "\n- `run`: `qstream run --feed synthetic --rate 0 --count %d --shards N` (synthetic trades and quotes through the in-process "+
		"pipeline: rings, shards, default indicators, collector; outputs counted), without the WAL (`--wal-dir \"\"`) and with it "+
		"(group commit); msgs/s as the run's summary line reports it. Baseline of a WAL run: the same shards without the WAL; "+
		"of the other runs: 1 shard without the WAL.\n", rep.RunMessages)
	fmt.Fprintf(w, "- `replay`: `qstream replay --format jsonl --windows %s --emit windows --shards N` of %d generated JSON trades "+
		"(%d symbols, 0.5 ms apart), msgs/s over the process's wall time. Baseline: `reference`, the single-loop program "+
		"(`qstream bench ref-vwap`: bufio, fastjson and a map, one goroutine) on the same file, which must write as many windows.\n",
		rep.Window, rep.ReplayTrades, rep.Symbols)
	fmt.Fprintf(w, "- Every figure is the median of %d runs, interleaved (each target once, then again), in one invocation; "+
		"ratio = msgs/s over the baseline's msgs/s (above 1: faster than the baseline); \"÷ single loop\" = msgs/s over the reference program's.\n\n", rep.Repeats)
	throughputTable(rep).markdown(w)
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "\nFailed: %s: `%s`\n", r.Key(), firstLine(r.Error))
		}
	}
}
