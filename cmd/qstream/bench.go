package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"qstream/bench"
)

// `qstream bench` is the front of the benchmark harness (package bench):
// flags and files only. Its hidden subcommands (load, ref, ref-vwap) are the
// other processes of the measured paths.

func cmdBench(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: qstream bench <e2e|throughput|micro> [flags]

  e2e         latency over loopback TCP from an open-loop load generator through
              qstream run to a receiver, per rate and wait strategy, beside the
              same path through a minimal reference program
  throughput  qstream run --rate 0 (with and without the WAL) and qstream replay
              of JSON trades with a tumbling VWAP, at 1..N shards, beside a
              single-loop reference program
  micro       the package benchmarks (go test -bench) with their same-run ratios

Each prints a table; --json prints the result as JSON instead.
Run 'qstream bench <subcommand> --help' for its flags.
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "e2e":
		return benchE2E(args[1:], stdout, stderr)
	case "throughput":
		return benchThroughput(args[1:], stdout, stderr)
	case "micro":
		return benchMicro(args[1:], stdout, stderr)
	case "load":
		return benchLoad(args[1:], stdout, stderr)
	case "ref":
		return benchRef(args[1:], stdout, stderr)
	case "ref-vwap":
		return benchRefVWAP(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "qstream bench: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return 2
}

// intList is a comma-separated list of integers with k and M suffixes.
type intList []int

func (l *intList) String() string {
	var s []string
	for _, v := range *l {
		s = append(s, strconv.Itoa(v))
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, f = 1_000_000, strings.TrimSuffix(f, "M")
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		*l = append(*l, n*mult)
	}
	return nil
}

// parseBenchFlags parses fs, returning the exit status to use when the
// command must not go on (ok false).
func parseBenchFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "qstream bench %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	return 0, true
}

// selfBinary is the qstream binary the harness runs as its other processes.
func selfBinary() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("qstream bench: cannot find its own binary: %w (pass --bin)", err)
	}
	return p, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeFile writes what fill writes to path, creating its directory.
func writeFile(path string, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func benchE2E(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rates := intList{10_000, 50_000, 100_000, 500_000}
	fs.Var(&rates, "rates", "messages per second, comma-separated (k and M suffixes)")
	waits := fs.String("waits", "park,yield", "engine wait strategies, comma-separated (park, yield, spin)")
	duration := fs.Duration("duration", 5*time.Second, "measured time per run")
	warmup := fs.Duration("warmup", time.Second, "time sent before the measured time of each run, not recorded")
	pace := fs.String("pace", "spin", "load generator pacing: spin (sends on time; keeps a CPU busy), nanosleep (late by the kernel's wake-up, tens of µs; for shared machines) or sleep (late by Go's timer, up to a millisecond; for tests)")
	symbols := fs.Int("symbols", 100, "symbols of the trades (1..1000)")
	shards := fs.Int("shards", 1, "engine shards")
	repeats := fs.Int("repeats", 1, "runs of each target per rate, in turn (reference, each wait, then again), merged into one histogram per target: a noisy moment is shared out")
	noRef := fs.Bool("no-reference", false, "skip the reference program")
	probe, probeTrips := probeFlags(fs)
	drain := fs.Duration("drain", 3*time.Second, "after the generator is done, how long without a new output before the missing ones are drops")
	bin := fs.String("bin", "", "qstream binary to run as the engine, the generator and the reference (default: this one)")
	engineArgs := fs.String("engine-args", "", "more flags for the engine's qstream run, space-separated; they override the harness's (e.g. \"--wal-dir wal --checkpoint-dir ckpt\" for the WAL, in a temporary directory)")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of the table")
	md := fs.String("md", "", "also write the report as Markdown to this file (BENCHMARKS.md-ready)")
	svg := fs.String("svg", "", "also write the latency percentile plot to this SVG file")
	jsonFile := fs.String("json-file", "", "also write the report as JSON to this file (for --from-json)")
	in := fs.String("from-json", "", "do not measure: read a report written by --json or --json-file and print or write it")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: qstream bench e2e [flags]\n\n%s.\n\nFlags:\n", bench.E2EPath)
		fs.PrintDefaults()
	}
	if code, ok := parseBenchFlags(fs, args); !ok {
		return code
	}
	var rep *bench.E2EReport
	if *in != "" {
		b, err := os.ReadFile(*in)
		if err == nil {
			rep = new(bench.E2EReport)
			err = json.Unmarshal(b, rep)
		}
		if err != nil {
			fmt.Fprintf(stderr, "qstream bench e2e: %v\n", err)
			return 1
		}
	} else {
		pacing, err := bench.ParsePacing(*pace)
		if err != nil {
			fmt.Fprintf(stderr, "qstream bench e2e: --pace: %v\n", err)
			return 2
		}
		if *bin == "" {
			if *bin, err = selfBinary(); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
		cfg := bench.E2EConfig{
			Bin: *bin, Rates: rates, Duration: *duration, Warmup: *warmup, Pacing: pacing, Symbols: *symbols,
			Shards: *shards, Repeats: *repeats, NoReference: *noRef, Drain: *drain, Progress: stderr, EngineArgs: strings.Fields(*engineArgs),
			ProbeCores: *probe, ProbeTrips: *probeTrips,
		}
		for _, w := range strings.Split(*waits, ",") {
			if w = strings.TrimSpace(w); w != "" {
				cfg.Waits = append(cfg.Waits, w)
			}
		}
		rep, err = bench.RunE2E(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "qstream bench e2e: %v\n", err)
			return 2
		}
		rep.Command = "qstream bench " + strings.Join(append([]string{"e2e"}, args...), " ")
	}
	if *jsonFile != "" {
		if err := writeFile(*jsonFile, func(w io.Writer) error { return writeJSON(w, rep) }); err != nil {
			fmt.Fprintf(stderr, "qstream bench e2e: %v\n", err)
			return 1
		}
	}
	if *svg != "" {
		if err := writeFile(*svg, func(w io.Writer) error { return bench.WriteE2ESVG(w, rep) }); err != nil {
			fmt.Fprintf(stderr, "qstream bench e2e: %v\n", err)
			return 1
		}
	}
	if *md != "" {
		rel := ""
		if *svg != "" {
			rel = *svg
			if r, err := filepath.Rel(filepath.Dir(*md), *svg); err == nil {
				rel = r
			}
		}
		if err := writeFile(*md, func(w io.Writer) error { bench.WriteE2EMarkdown(w, rep, rel); return nil }); err != nil {
			fmt.Fprintf(stderr, "qstream bench e2e: %v\n", err)
			return 1
		}
	}
	if *jsonOut {
		if err := writeJSON(stdout, rep); err != nil {
			return 1
		}
	} else {
		bench.WriteE2ETable(stdout, rep)
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			return 1
		}
	}
	return 0
}

// benchLoad is the load generator process of `bench e2e`: it prints its
// bench.LoadSummary as JSON.
func benchLoad(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.LoadConfig
	fs.StringVar(&cfg.Addr, "addr", "", "TCP feed address")
	fs.IntVar(&cfg.Rate, "rate", 10_000, "messages per second")
	fs.Int64Var(&cfg.Messages, "count", 10_000, "messages to send")
	fs.Int64Var(&cfg.StartNs, "start-ns", 0, "intended send time of the first message, Unix ns (0: now)")
	pace := fs.String("pace", "spin", "spin, nanosleep or sleep")
	fs.IntVar(&cfg.Symbols, "symbols", 100, "symbols (1..1000)")
	if code, ok := parseBenchFlags(fs, args); !ok {
		return code
	}
	var err error
	if cfg.Pacing, err = bench.ParsePacing(*pace); err != nil {
		fmt.Fprintf(stderr, "qstream bench load: %v\n", err)
		return 2
	}
	if cfg.StartNs == 0 {
		cfg.StartNs = bench.NowNs()
	}
	sum, err := bench.RunLoad(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "qstream bench load: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(sum); err != nil {
		return 1
	}
	return 0
}

// benchRef is the reference program of `bench e2e`: it serves until
// SIGINT or SIGTERM.
func benchRef(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ref", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if code, ok := parseBenchFlags(fs, args); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := bench.RunReference(ctx, *addr, stdout, func(a net.Addr) {
		fmt.Fprintf(stderr, "qstream bench ref: listening on %s\n", a)
	})
	if err != nil {
		fmt.Fprintf(stderr, "qstream bench ref: %v\n", err)
		return 1
	}
	return 0
}

func benchThroughput(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("throughput", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shards := intList{}
	for n := 1; n <= max(1, runtime.NumCPU()); n++ {
		shards = append(shards, n)
	}
	fs.Var(&shards, "shards", "shard counts, comma-separated (default 1..number of CPUs)")
	runN := fs.Int64("run-count", 3_000_000, "messages per qstream run --rate 0")
	trades := fs.Int64("trades", 2_000_000, "JSON trades replayed")
	symbols := fs.Int("symbols", 100, "symbols (1..1000)")
	window := fs.String("window", "tumbling:1s:vwap", "replay window: tumbling:SIZE:vwap")
	repeats := fs.Int("repeats", 3, "runs of each target (interleaved); the figure is the median")
	noWAL := fs.Bool("no-wal", false, "skip the runs with the WAL")
	probe, probeTrips := probeFlags(fs)
	bin := fs.String("bin", "", "qstream binary (default: this one)")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of the table")
	md := fs.String("md", "", "also write the report as Markdown to this file")
	jsonFile := fs.String("json-file", "", "also write the report as JSON to this file")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: qstream bench throughput [flags]

qstream run --rate 0 --count N (the in-process pipeline) with and without the
WAL, and qstream replay of generated JSON trades with a tumbling VWAP window,
at each shard count, beside a single-loop reference program (bufio, fastjson,
a map) on the same trades, all in one run.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseBenchFlags(fs, args); !ok {
		return code
	}
	if *bin == "" {
		var err error
		if *bin, err = selfBinary(); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	rep, err := bench.RunThroughput(bench.ThroughputConfig{
		Bin: *bin, Shards: shards, RunMessages: *runN, ReplayTrades: *trades, Symbols: *symbols, Window: *window,
		Repeats: *repeats, NoWAL: *noWAL, Progress: stderr, ProbeCores: *probe, ProbeTrips: *probeTrips,
	})
	if err != nil {
		fmt.Fprintf(stderr, "qstream bench throughput: %v\n", err)
		return 2
	}
	rep.Command = "qstream bench " + strings.Join(append([]string{"throughput"}, args...), " ")
	if *jsonFile != "" {
		if err := writeFile(*jsonFile, func(w io.Writer) error { return writeJSON(w, rep) }); err != nil {
			fmt.Fprintf(stderr, "qstream bench throughput: %v\n", err)
			return 1
		}
	}
	if *md != "" {
		if err := writeFile(*md, func(w io.Writer) error { bench.WriteThroughputMarkdown(w, rep); return nil }); err != nil {
			fmt.Fprintf(stderr, "qstream bench throughput: %v\n", err)
			return 1
		}
	}
	if *jsonOut {
		if err := writeJSON(stdout, rep); err != nil {
			return 1
		}
	} else {
		bench.WriteThroughputTable(stdout, rep)
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			return 1
		}
	}
	return 0
}

// benchRefVWAP is the single-loop reference of `bench throughput`.
func benchRefVWAP(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ref-vwap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	input := fs.String("input", "-", "JSON trades, one per line (- for standard input)")
	window := fs.String("window", "tumbling:1s:vwap", "tumbling:SIZE:vwap")
	output := fs.String("output", "-", "windows as JSON lines (- for standard output)")
	if code, ok := parseBenchFlags(fs, args); !ok {
		return code
	}
	parts := strings.Split(*window, ":")
	var size time.Duration
	var err error
	if len(parts) == 3 {
		size, err = time.ParseDuration(parts[1])
	}
	if len(parts) != 3 || parts[0] != "tumbling" || parts[2] != "vwap" || err != nil || size <= 0 {
		fmt.Fprintf(stderr, "qstream bench ref-vwap: --window %q: want tumbling:SIZE:vwap\n", *window)
		return 2
	}
	var in io.Reader = os.Stdin
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			fmt.Fprintf(stderr, "qstream bench ref-vwap: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	var out io.Writer = stdout
	var f *os.File
	if *output != "-" {
		if f, err = os.Create(*output); err != nil {
			fmt.Fprintf(stderr, "qstream bench ref-vwap: %v\n", err)
			return 1
		}
		out = f
	}
	trades, windows, err := bench.RefVWAP(in, out, int64(size), *window)
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "qstream bench ref-vwap: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "qstream bench ref-vwap: %d trades, %d windows\n", trades, windows)
	return 0
}

// probeFlags defines --probe-cores and --probe-trips, the core probe of
// e2e, throughput and micro (bench.ProbeCores).
func probeFlags(fs *flag.FlagSet) (probe *bool, trips *int) {
	probe = fs.Bool("probe-cores", true, "record the cache-line round trip between two CPUs at the start and the end "+
		"(two busy threads for 20-100 ms each time): every cross-thread figure is bounded by it, and on a shared VM it is the host's")
	trips = fs.Int("probe-trips", bench.ProbeTrips, "round trips in each of the core probe's 7 samples")
	return probe, trips
}

// benchMicro runs the package benchmarks of a qstream checkout with `go
// test -bench` and turns the output into tables with their same-run ratios
// against the baselines (bench/benchmd).
func benchMicro(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("micro", flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", ".", "the qstream checkout whose benchmarks run (go test needs the source)")
	pkgs := fs.String("pkgs", "./...", "packages, space-separated")
	pattern := fs.String("bench", ".", "go test -bench pattern")
	benchtime := fs.String("benchtime", "1s", "go test -benchtime")
	count := fs.Int("count", 3, "go test -count: runs of each benchmark (the tables show medians)")
	raw := fs.String("raw", "", "also keep go test's output in this file (relative to --repo)")
	md := fs.String("md", "", "also write the Markdown tables to this file (relative to --repo)")
	jsonOut := fs.Bool("json", false, "print medians and ratios as JSON instead of the tables")
	probe, probeTrips := probeFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: qstream bench micro [flags]

Runs go test -run '^$' -bench PATTERN -benchmem in a qstream checkout and
prints the median of each benchmark and the ratios against the baselines
measured in the same run (ring vs channel, codec vs encoding/json,
indicators vs naive recompute, gnet vs the net package, ...), by
bench/benchmd. go test's own output goes to standard error as it runs.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseBenchFlags(fs, args); !ok {
		return code
	}
	if _, err := os.Stat(filepath.Join(*repo, "bench", "benchmd", "main.go")); err != nil {
		fmt.Fprintf(stderr, "qstream bench micro: %s is not a qstream checkout (no bench/benchmd): pass --repo\n", *repo)
		return 2
	}
	rawPath := *raw
	if rawPath == "" {
		f, err := os.CreateTemp("", "qstream-bench-micro-*.txt")
		if err != nil {
			fmt.Fprintf(stderr, "qstream bench micro: %v\n", err)
			return 1
		}
		f.Close()
		rawPath = f.Name()
		defer os.Remove(rawPath)
	} else if !filepath.IsAbs(rawPath) {
		rawPath = filepath.Join(*repo, rawPath)
	}
	rawFile, err := os.Create(rawPath)
	if err != nil {
		fmt.Fprintf(stderr, "qstream bench micro: %v\n", err)
		return 1
	}
	goArgs := append([]string{"test", "-run", "^$", "-bench", *pattern, "-benchmem", "-benchtime", *benchtime,
		"-count", strconv.Itoa(*count)}, strings.Fields(*pkgs)...)
	cmdLine := "go " + strings.Join(goArgs, " ")
	fmt.Fprintf(stderr, "qstream bench micro: %s\n", cmdLine)
	// The stamps around go test's output, as make bench writes them: the
	// machine, the command, the load and the cores' round trip at the start
	// and the end (benchmd prints them with the tables).
	if err := bench.WriteStamp(rawFile, "start", cmdLine, *probe, *probeTrips); err != nil {
		rawFile.Close()
		fmt.Fprintf(stderr, "qstream bench micro: %v\n", err)
		return 1
	}
	gt := exec.Command("go", goArgs...)
	gt.Dir = *repo
	gt.Stdout = io.MultiWriter(rawFile, stderr)
	gt.Stderr = stderr
	testErr := gt.Run()
	if err := bench.WriteStamp(rawFile, "end", "", *probe, *probeTrips); err != nil && testErr == nil {
		testErr = err
	}
	if err := rawFile.Close(); err != nil && testErr == nil {
		testErr = err
	}
	benchmd := func(extra ...string) ([]byte, error) {
		c := exec.Command("go", append([]string{"run", "./bench/benchmd", "-in", rawPath, "-cmd", cmdLine}, extra...)...)
		c.Dir = *repo
		c.Stderr = stderr
		return c.Output()
	}
	tables, err := benchmd()
	if err != nil {
		fmt.Fprintf(stderr, "qstream bench micro: benchmd: %v\n", err)
		return 1
	}
	if *md != "" {
		path := *md
		if !filepath.IsAbs(path) {
			path = filepath.Join(*repo, path)
		}
		if err := os.WriteFile(path, tables, 0o644); err != nil {
			fmt.Fprintf(stderr, "qstream bench micro: %v\n", err)
			return 1
		}
	}
	if *jsonOut {
		out, err := benchmd("-json")
		if err != nil {
			fmt.Fprintf(stderr, "qstream bench micro: benchmd: %v\n", err)
			return 1
		}
		stdout.Write(out)
	} else {
		stdout.Write(tables)
	}
	if testErr != nil {
		fmt.Fprintf(stderr, "qstream bench micro: go test: %v (the tables hold what ran)\n", testErr)
		return 1
	}
	return 0
}
