package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"qstream/bench"
)

// ratio is a claim of the form "A is R× faster than B, measured in the same run".
type ratio struct {
	name, fast, slow, metric, budget string
	higherIsBetter                   bool
}

// ratios lists the comparisons BENCHMARKS.md reports. A pair whose
// benchmarks are absent from the input is skipped.
var ratios = []ratio{
	{name: "ring batched hand-off vs buffered channel (128-byte events, cap 1024, park)", fast: "ring.SPSC/cap1024/park", slow: "ring.ChannelBaseline/cap1024", metric: "ns/op", budget: ">= 5x, <= 5 ns"},
	{name: "ring batched hand-off vs buffered channel (128-byte events, cap 128, park)", fast: "ring.SPSC/cap128/park", slow: "ring.ChannelBaseline/cap128", metric: "ns/op", budget: ">= 5x, <= 5 ns"},
	{name: "ring batched hand-off, 128-byte events filled in place, vs buffered channel (cap 1024, park)", fast: "ring.SPSCInPlace/cap1024/park", slow: "ring.ChannelBaseline/cap1024", metric: "ns/op", budget: ">= 5x, <= 5 ns"},
	{name: "ring batched hand-off vs buffered channel (8-byte values, cap 1024, park)", fast: "ring.SPSCWord/cap1024/park", slow: "ring.ChannelWordBaseline", metric: "ns/op", budget: ">= 5x, <= 5 ns"},
	{name: "engine hand-off (Publisher.ClaimBatch, filled in place, into a counting shard) vs buffered channel of codec.Event (ring/cap 8192, park)", fast: "engine.EngineHandOff/batch/ring8192/park", slow: "engine.EngineHandOff/chan/cap8192", metric: "ns/op", budget: ">= 10x (issue 12)"},
	{name: "engine hand-off (Publisher.Claim, one event at a time) vs buffered channel (ring/cap 8192, park)", fast: "engine.EngineHandOff/claim/ring8192/park", slow: "engine.EngineHandOff/chan/cap8192", metric: "ns/op", budget: ">= 10x (issue 12)"},
	{name: "engine hand-off (Publisher.Publish, a copy per event) vs buffered channel (ring/cap 8192, park)", fast: "engine.EngineHandOff/publish/ring8192/park", slow: "engine.EngineHandOff/chan/cap8192", metric: "ns/op"},
	{name: "JSON tick parse vs encoding/json", fast: "codec.ParseTick", slow: "codec.ParseTickStdlib", metric: "ns/op", budget: ">= 4x"},
	{name: "default indicators vs naive recompute", fast: "ops.IndicatorsDefault", slow: "ops.IndicatorsNaive", metric: "ns/op"},
	{name: "hopping 5m/1s avg window vs naive (slice per window)", fast: "ops.Hopping5m1s/avg", slow: "ops.Hopping5m1sNaive/avg", metric: "ns/op", budget: ">= 50x"},
	{name: "hopping 5m/1s max window vs naive", fast: "ops.Hopping5m1s/max", slow: "ops.Hopping5m1sNaive/max", metric: "ns/op", budget: ">= 50x"},
	{name: "hopping 5m/1s stddev window vs naive", fast: "ops.Hopping5m1s/stddev", slow: "ops.Hopping5m1sNaive/stddev", metric: "ns/op", budget: ">= 50x"},
	{name: "TCP ingest (gnet) vs net package, parse only", fast: "feeds.TCPIngest", slow: "feeds.TCPIngestNetBaseline", metric: "ns/op"},
	{name: "TCP ingest through the engine (gnet) vs net package, 2 connections", fast: "bench.TCPIngestEngine/conns=2", slow: "bench.TCPIngestEngineNetBaseline/conns=2", metric: "ns/op"},
	{name: "Coinbase match adapter vs encoding/json", fast: "codec.CoinbaseMatch", slow: "codec.CoinbaseMatchEncodingJSON", metric: "ns/op"},
	{name: "exact decimal parse vs strconv.ParseFloat", fast: "codec.ParseDecimal", slow: "codec.ParseDecimalStrconv", metric: "ns/op"},
	{name: "WAL group-commit append vs raw write+fdatasync of the same bytes", fast: "wal.Append/group", slow: "wal.BaselineWriteSync", metric: "ns/op"},
	{name: "durable publish through the engine (group commit) vs no WAL", fast: "engine.DurablePublish/group", slow: "engine.DurablePublish/nowal", metric: "ns/op"},
	{name: "sink hand-off (Set -> sink queue -> writer goroutine, batches of 256) vs buffered channel", fast: "sinks.SinkHandOff/set", slow: "sinks.SinkHandOff/baseline-chan", metric: "ns/op"},
	{name: "ClickHouse writer (native, 10k rows per insert) vs bare clickhouse-go insert of the same rows", fast: "sinks.ClickHouse/native/Writer", slow: "sinks.ClickHouse/native/Baseline", metric: "ns/op"},
	{name: "ClickHouse writer (HTTP RowBinary, 10k rows per insert) vs bare HTTP POST of the same rows", fast: "sinks.ClickHouse/http/Writer", slow: "sinks.ClickHouse/http/Baseline", metric: "ns/op"},
	{name: "NATS writer (core, flushed per batch) vs bare nc.Publish + Flush", fast: "sinks.NATSWriter/Core", slow: "sinks.NATSWriter/Baseline", metric: "ns/op"},
	{name: "WebSocket fan-out to 100 clients vs 100 buffered channels", fast: "sinks.WSFanout/ws_100_clients", slow: "sinks.WSFanout/Baseline_chan_100", metric: "ns/op"},
	{name: "archive append (zstd default) vs uncompressed write of the same records", fast: "sinks.ArchiveAppend/Archive/default", slow: "sinks.ArchiveAppend/Baseline", metric: "ns/op"},
	{name: "archive WAL follower vs bare WAL read", fast: "sinks.FollowWAL/Follow", slow: "sinks.FollowWAL/Baseline", metric: "ns/op"},
}

type result struct {
	pkg, name string
	metrics   map[string][]float64
	order     []string
}

// rawRun is what parse reads from `go test -bench` output: the results in
// input order, the header lines go test writes, and the stamps of
// `benchmd -stamp` around the run (absent in output written without them).
type rawRun struct {
	results           []*result
	cpu, goos, goarch string
	stamp             *stamp // nil: no start stamp
}

func parse(r io.Reader) (*rawRun, error) {
	run := &rawRun{}
	byKey := map[string]*result{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(strings.TrimPrefix(line, "pkg: "), "qstream/")
			continue
		case strings.HasPrefix(line, "cpu: "):
			run.cpu = strings.TrimPrefix(line, "cpu: ")
			continue
		case strings.HasPrefix(line, "goos: "):
			run.goos = strings.TrimPrefix(line, "goos: ")
			continue
		case strings.HasPrefix(line, "goarch: "):
			run.goarch = strings.TrimPrefix(line, "goarch: ")
			continue
		case strings.HasPrefix(line, stampPrefix), strings.HasPrefix(line, stampEndPrefix):
			if err := run.readStamp(line); err != nil {
				return nil, err
			}
			continue
		case !strings.HasPrefix(line, "Benchmark"):
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // strip -GOMAXPROCS
			}
		}
		key := pkg + "." + name
		res := byKey[key]
		if res == nil {
			res = &result{pkg: pkg, name: name, metrics: map[string][]float64{}}
			byKey[key] = res
			run.results = append(run.results, res)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := res.metrics[unit]; !seen {
				res.order = append(res.order, unit)
			}
			res.metrics[unit] = append(res.metrics[unit], v)
		}
	}
	return run, sc.Err()
}

// byKey indexes the results by pkg.Name (Name without "Benchmark").
func (run *rawRun) byKey() map[string]*result {
	m := make(map[string]*result, len(run.results))
	for _, r := range run.results {
		m[r.pkg+"."+r.name] = r
	}
	return m
}

// medianOf is the median of r's metric, false when r or the metric is absent.
func medianOf(r *result, metric string) (float64, bool) {
	if r == nil || len(r.metrics[metric]) == 0 {
		return 0, false
	}
	return median(r.metrics[metric]), true
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func machine(cpu string) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "- CPU: %s, %d logical CPUs (GOMAXPROCS %d)\n", cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "- Go: %s %s/%s; host %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, host)
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		fmt.Fprintf(&b, "- Kernel: %s", out)
	}
	if out, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(&b, "- Load average when the tables were written: %s", out)
	}
	return b.String()
}

// write writes the tables of bench/results.md: a header with the command and
// this machine, then writeTables.
func write(w io.Writer, run *rawRun, cmd string) {
	fmt.Fprintf(w, "## Measured run (%s)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "Command: `%s`; tables by `go run ./bench/benchmd` (median of the runs of each benchmark).\n\n", cmd)
	if run.stamp != nil {
		fmt.Fprint(w, run.stamp.Machine.Markdown()) // where and when the run was made, its cores' round trip
	} else {
		fmt.Fprint(w, machine(run.cpu))
	}
	fmt.Fprint(w, "\n")
	writeTables(w, run)
}

// writeTables writes the same-run ratios, then a table per package of every
// benchmark's medians. It depends on the input alone.
func writeTables(w io.Writer, run *rawRun) {
	byKey := run.byKey()
	fmt.Fprintf(w, "### Ratios against baselines measured in the same run\n\n| comparison | fast | baseline | ratio | budget |\n|---|---|---|---|---|\n")
	for _, q := range ratios {
		fa, okA := medianOf(byKey[q.fast], q.metric)
		fb, okB := medianOf(byKey[q.slow], q.metric)
		if !okA || !okB {
			continue
		}
		ratio := fb / fa
		if q.higherIsBetter {
			ratio = fa / fb
		}
		fmt.Fprintf(w, "| %s | %s %s | %s %s | %.1fx | %s |\n", q.name, format(fa), q.metric, format(fb), q.metric, ratio, q.budget)
	}
	pkgs := []string{}
	seen := map[string]bool{}
	for _, r := range run.results {
		if !seen[r.pkg] {
			seen[r.pkg] = true
			pkgs = append(pkgs, r.pkg)
		}
	}
	for _, p := range pkgs {
		fmt.Fprintf(w, "\n### %s\n\n| benchmark | runs | metrics (median) |\n|---|---|---|\n", p)
		for _, r := range run.results {
			if r.pkg != p {
				continue
			}
			var parts []string
			runs := 0
			for _, u := range r.order {
				parts = append(parts, format(median(r.metrics[u]))+" "+u)
				runs = max(runs, len(r.metrics[u]))
			}
			fmt.Fprintf(w, "| %s | %d | %s |\n", r.name, runs, strings.Join(parts, ", "))
		}
	}
}

// writeJSON writes what write writes, for programs (`qstream bench micro
// --json`): the medians of every benchmark and the same-run ratios.
func writeJSON(w io.Writer, run *rawRun, cmd string) error {
	type ratioJSON struct {
		Name      string  `json:"name"`
		Fast      string  `json:"fast"`
		Baseline  string  `json:"baseline"`
		Metric    string  `json:"metric"`
		FastValue float64 `json:"fast_value"`
		BaseValue float64 `json:"baseline_value"`
		Ratio     float64 `json:"ratio"`
		Budget    string  `json:"budget,omitempty"`
	}
	type benchJSON struct {
		Name    string             `json:"name"` // pkg.Benchmark (without the Benchmark prefix)
		Runs    int                `json:"runs"`
		Medians map[string]float64 `json:"medians"` // by unit
	}
	out := struct {
		Command    string      `json:"command"`
		CPU        string      `json:"cpu"`
		CPUs       int         `json:"cpus"`
		Go         string      `json:"go"`
		Ratios     []ratioJSON `json:"ratios"`
		Benchmarks []benchJSON `json:"benchmarks"`
		// Machine is the stamps' (absent without them): load averages,
		// the cores' round trip at the start and the end.
		Machine *bench.Machine `json:"machine,omitempty"`
	}{Command: cmd, CPU: run.cpu, CPUs: runtime.NumCPU(), Go: runtime.Version(), Ratios: []ratioJSON{}, Benchmarks: []benchJSON{}}
	if run.stamp != nil {
		out.Machine = &run.stamp.Machine
	}
	byKey := run.byKey()
	for _, r := range run.results {
		b := benchJSON{Name: r.pkg + "." + r.name, Medians: map[string]float64{}}
		for _, u := range r.order {
			b.Medians[u] = median(r.metrics[u])
			b.Runs = max(b.Runs, len(r.metrics[u]))
		}
		out.Benchmarks = append(out.Benchmarks, b)
	}
	for _, q := range ratios {
		a, b := byKey[q.fast], byKey[q.slow]
		if a == nil || b == nil || len(a.metrics[q.metric]) == 0 || len(b.metrics[q.metric]) == 0 {
			continue
		}
		fa, fb := median(a.metrics[q.metric]), median(b.metrics[q.metric])
		r := fb / fa
		if q.higherIsBetter {
			r = fa / fb
		}
		out.Ratios = append(out.Ratios, ratioJSON{Name: q.name, Fast: q.fast, Baseline: q.slow, Metric: q.metric, FastValue: fa, BaseValue: fb, Ratio: r, Budget: q.budget})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
