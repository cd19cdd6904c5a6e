package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The throughput benchmark (`qstream bench throughput`), each figure beside
// its baseline in the same run:
//
//   - run: `qstream run --rate 0 --count N` (the synthetic feed as fast as
//     it goes through the in-process pipeline: ring, shards, default
//     indicators, collector), with and without the WAL (group commit), at
//     1..N shards; msgs/s as the run's summary reports it. Its baseline is
//     the same run without the WAL (the cost of durability). The WAL run is
//     run's default: the dedup horizon on, events logged as batches (one
//     record per run of events made visible together; --wal-batches);
//     issue 12 asks for at least 0.7 of the baseline. engine's
//     BenchmarkDurableRunRatio measures the same in-process.
//   - replay: `qstream replay` of generated JSON trades with a tumbling VWAP
//     window (--emit windows) at 1..N shards, msgs/s over the process's
//     wall time. Its baseline is the single-loop reference program
//     (RefVWAP: bufio, fastjson and a map, `qstream bench ref-vwap`) on the
//     same file, which must write as many windows.
//
// Repeats are interleaved (every target once, then again), so a noisy
// moment of a shared machine does not fall on one target only; the figure
// is the median.

// ThroughputConfig configures RunThroughput.
type ThroughputConfig struct {
	Bin          string // the qstream binary
	Shards       []int
	RunMessages  int64  // per `qstream run`
	ReplayTrades int64  // in the generated file
	Symbols      int    // 1..1000
	Window       string // the replay's --windows spec, tumbling:SIZE:vwap
	Repeats      int
	NoWAL        bool // skip the WAL runs
	Progress     io.Writer
	ProbeCores   bool // as E2EConfig's
	ProbeTrips   int  // as E2EConfig's
}

// ThroughputResult is one target's figures.
type ThroughputResult struct {
	Target   string    `json:"target"` // run, replay, reference
	Shards   int       `json:"shards"`
	WAL      bool      `json:"wal"`
	Messages int64     `json:"messages"`
	Outputs  int64     `json:"outputs"` // windows written (replay, reference)
	Rates    []float64 `json:"rates"`   // msgs/s of each repeat
	Rate     float64   `json:"rate"`    // the median
	// Baseline names the result this one is compared with; Ratio is
	// Rate / that Rate (2.0: twice as fast).
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	// VsReference is Rate over the single-loop reference program's.
	VsReference float64 `json:"vs_reference,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// ThroughputReport is the result of RunThroughput.
type ThroughputReport struct {
	Machine      Machine            `json:"machine"`
	Command      string             `json:"command"`
	RunMessages  int64              `json:"run_messages"`
	ReplayTrades int64              `json:"replay_trades"`
	Symbols      int                `json:"symbols"`
	Window       string             `json:"window"`
	Repeats      int                `json:"repeats"`
	Results      []ThroughputResult `json:"results"`
}

// Targets of the throughput runs.
const (
	TargetRun    = "run"
	TargetReplay = "replay"
)

func (r *ThroughputResult) key() string {
	switch {
	case r.Target == TargetReference:
		return r.Target
	case r.Target != TargetRun:
		return fmt.Sprintf("%s/shards=%d", r.Target, r.Shards)
	case r.WAL:
		return fmt.Sprintf("%s/shards=%d/wal", r.Target, r.Shards)
	}
	return fmt.Sprintf("%s/shards=%d/nowal", r.Target, r.Shards)
}

// Key names the result as Baseline does: run/shards=N/wal|nowal,
// replay/shards=N, reference.
func (r *ThroughputResult) Key() string { return r.key() }

var summaryRe = regexp.MustCompile(`stopped after [^:]+: (\d+) messages \((\d+) msg/s\)`)

// RunThroughput runs the benchmark. Failed runs are reported in their
// results' Error.
func RunThroughput(cfg ThroughputConfig) (*ThroughputReport, error) {
	if cfg.Bin == "" || len(cfg.Shards) == 0 || cfg.RunMessages <= 0 || cfg.ReplayTrades <= 0 || cfg.Symbols < 1 || cfg.Symbols > maxBenchSymbols {
		return nil, fmt.Errorf("bench: invalid throughput config %+v", cfg)
	}
	cfg.Repeats = max(1, cfg.Repeats)
	if cfg.Window == "" {
		cfg.Window = "tumbling:1s:vwap"
	}
	size, err := tumblingSize(cfg.Window)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "qstream-bench-throughput-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	input := filepath.Join(dir, "trades.jsonl")
	if err := writeTrades(input, cfg.ReplayTrades, cfg.Symbols); err != nil {
		return nil, err
	}
	rep := &ThroughputReport{Machine: ThisMachine(), RunMessages: cfg.RunMessages, ReplayTrades: cfg.ReplayTrades,
		Symbols: cfg.Symbols, Window: cfg.Window, Repeats: cfg.Repeats}
	if cfg.ProbeCores {
		rep.Machine.ProbeStart(0, cfg.ProbeTrips)
	}
	ref := &ThroughputResult{Target: TargetReference, Shards: 1, Messages: cfg.ReplayTrades}
	var list []*ThroughputResult
	for _, n := range cfg.Shards {
		list = append(list, &ThroughputResult{Target: TargetRun, Shards: n, Messages: cfg.RunMessages})
		if !cfg.NoWAL {
			list = append(list, &ThroughputResult{Target: TargetRun, Shards: n, WAL: true, Messages: cfg.RunMessages})
		}
	}
	for _, n := range cfg.Shards {
		list = append(list, &ThroughputResult{Target: TargetReplay, Shards: n, Messages: cfg.ReplayTrades})
	}
	list = append(list, ref)
	for i := 0; i < cfg.Repeats; i++ {
		for j, r := range list {
			if r.Error != "" {
				continue
			}
			var rate float64
			var outputs int64
			var err error
			run := filepath.Join(dir, fmt.Sprintf("run-%d-%d", i, j))
			switch r.Target {
			case TargetRun:
				rate, err = timeRun(cfg.Bin, run, r.Shards, r.WAL, r.Messages)
			case TargetReplay:
				rate, outputs, err = timeReplay(cfg.Bin, run, input, cfg.Window, r.Shards, r.Messages)
			case TargetReference:
				rate, outputs, err = timeRefVWAP(cfg.Bin, run, input, size, cfg.Window, r.Messages)
			}
			os.RemoveAll(run)
			if err == nil && r.Target != TargetRun && i > 0 && outputs != r.Outputs {
				err = fmt.Errorf("bench: %s wrote %d windows, %d the time before", r.key(), outputs, r.Outputs)
			}
			if err != nil {
				r.Error = err.Error()
			}
			r.Outputs = outputs
			r.Rates = append(r.Rates, rate)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "bench throughput: %-24s %10.0f msg/s", r.key(), rate)
				if r.Error != "" {
					fmt.Fprintf(cfg.Progress, " FAILED: %s", firstLine(r.Error))
				}
				fmt.Fprintln(cfg.Progress)
			}
		}
	}
	byKey := map[string]*ThroughputResult{}
	for _, r := range list {
		r.Rate = medianOf(r.Rates)
		byKey[r.key()] = r
	}
	for _, r := range list {
		var base *ThroughputResult
		switch {
		case r.Target == TargetRun && r.WAL:
			base = byKey[fmt.Sprintf("%s/shards=%d/nowal", TargetRun, r.Shards)]
		case r.Target == TargetRun:
			base = byKey[fmt.Sprintf("%s/shards=1/nowal", TargetRun)]
			if base == r {
				base = nil
			}
		case r.Target == TargetReplay:
			base = ref
			if r.Error == "" && ref.Error == "" && r.Outputs != ref.Outputs {
				r.Error = fmt.Sprintf("bench: replay wrote %d windows, the reference %d: not the same work", r.Outputs, ref.Outputs)
			}
		}
		if r != ref && ref.Rate > 0 {
			r.VsReference = r.Rate / ref.Rate
		}
		if base != nil {
			r.Baseline = base.key()
			if base.Rate > 0 {
				r.Ratio = r.Rate / base.Rate
			}
		}
		rep.Results = append(rep.Results, *r)
	}
	rep.Machine.SetEnd()
	return rep, nil
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// tumblingSize returns the size of a tumbling:SIZE:vwap spec.
func tumblingSize(spec string) (int64, error) {
	parts := strings.Split(spec, ":")
	if len(parts) != 3 || parts[0] != "tumbling" || parts[2] != "vwap" {
		return 0, fmt.Errorf("bench: window %q: want tumbling:SIZE:vwap", spec)
	}
	d, err := time.ParseDuration(parts[1])
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bench: window %q: bad size", spec)
	}
	return int64(d), nil
}

// replayTradeStepNs is the event-time step between generated trades.
const replayTradeStepNs = 500_000

// writeTrades writes n JSON trades (AppendTrade) over symbols, 0.5 ms of
// event time apart.
func writeTrades(path string, n int64, symbols int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	for i := int64(0); i < n; i++ {
		buf = AppendTrade(buf[:0], i, 1_700_000_000_000_000_000+i*replayTradeStepNs, symbols)
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func timeRun(bin, dir string, shards int, wal bool, n int64) (float64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	args := []string{"run", "--feed", "synthetic", "--rate", "0", "--count", strconv.FormatInt(n, 10),
		"--shards", strconv.Itoa(shards), "--http", "", "--dashboard=false", "--status-interval", "1h", "--dlq-dir", ""}
	if wal {
		args = append(args, "--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"))
	} else {
		args = append(args, "--wal-dir", "")
	}
	_, stderr, err := runChild(bin, args, dir)
	if err != nil {
		return 0, err
	}
	m := summaryRe.FindSubmatch(stderr)
	if m == nil {
		return 0, fmt.Errorf("bench: no summary line in qstream run's output:\n%s", stderr)
	}
	got, _ := strconv.ParseInt(string(m[1]), 10, 64)
	if got != n {
		return 0, fmt.Errorf("bench: qstream run processed %d messages, want %d", got, n)
	}
	rate, _ := strconv.ParseFloat(string(m[2]), 64)
	return rate, nil
}

func timeReplay(bin, dir, input, window string, shards int, n int64) (float64, int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	out := filepath.Join(dir, "windows.jsonl")
	start := time.Now()
	_, _, err := runChild(bin, []string{"replay", "--input", input, "--format", "jsonl", "--windows", window,
		"--emit", "windows", "--output", out, "--shards", strconv.Itoa(shards)}, dir)
	el := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	lines, err := countLines(out)
	return float64(n) / el.Seconds(), lines, err
}

func timeRefVWAP(bin, dir, input string, size int64, window string, n int64) (float64, int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	out := filepath.Join(dir, "windows.jsonl")
	start := time.Now()
	_, _, err := runChild(bin, []string{"bench", "ref-vwap", "--input", input, "--window", window, "--output", out}, dir)
	el := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	lines, err := countLines(out)
	return float64(n) / el.Seconds(), lines, err
}

func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
