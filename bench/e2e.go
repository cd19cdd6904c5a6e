package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The end-to-end latency benchmark (`qstream bench e2e`): for each rate, an
// open-loop load generator in a process of its own (`qstream bench load`)
// sends timestamped JSON trades over one loopback TCP connection to
// `qstream run --feed tcp --tcp-format lines --output -`, once per wait
// strategy, and to the reference program (`qstream bench ref`); this
// process reads the server's standard output, as a user piping the engine
// into a program of theirs would, and records for each output line the
// latency from the trade's intended send time (its "ts", which the engine
// carries to the output of the trade) to the read that brought the line.
//
// Latency is measured from the intended send time of the open-loop
// schedule, not from the actual send: a stall anywhere (the engine, the
// generator, the receiver) counts against every message it delayed. That
// is the coordinated-omission correction (recording the intended-time
// latency needs no after-the-fact RecordCorrectedValue; doing both would
// count the stalls twice).

// E2EConfig configures RunE2E.
type E2EConfig struct {
	// Bin is the qstream binary: the engine, the load generator and the
	// reference program are its subcommands.
	Bin      string
	Rates    []int         // messages per second
	Waits    []string      // engine wait strategies (park, yield, spin)
	Duration time.Duration // measured time per run
	Warmup   time.Duration // sent before the measured time, not recorded
	Pacing   Pacing        // the generator's
	Symbols  int           // 1..1000
	Shards   int           // engine shards
	// Repeats runs each target this many times per rate, in turn (reference,
	// each wait strategy, then again), into one histogram per target.
	Repeats int
	// NoReference skips the reference program (its ratios are then absent).
	NoReference bool
	// Drain is how long the receiver waits for more outputs after the
	// generator is done and before the missing ones count as drops.
	Drain time.Duration
	// EngineArgs are added to the engine's `qstream run` flags.
	EngineArgs []string
	// Progress, if set, gets a line per run.
	Progress io.Writer
	// ProbeCores records the cache-line round trip between two CPUs at the
	// start and the end (Machine.ProbeStart): 20-100 ms of two busy threads
	// with ProbeTrips 0 (ProbeTrips a sample; ProbeSamples samples).
	ProbeCores bool
	ProbeTrips int
}

// Targets of the end-to-end runs.
const (
	TargetEngine    = "engine"
	TargetReference = "reference"
)

// E2EResult is one run: one rate, one target (and wait strategy).
type E2EResult struct {
	Target string `json:"target"`
	Wait   string `json:"wait"` // the engine's wait strategy; "block" for the reference
	Rate   int    `json:"rate"` // intended messages per second
	Runs   int    `json:"runs"` // the figures are over this many runs (E2EConfig.Repeats)
	Sent   int64  `json:"sent"`
	// Warmup messages were sent and received but not recorded.
	Warmup     int64 `json:"warmup"`
	Received   int64 `json:"received"`   // distinct messages whose output arrived
	Drops      int64 `json:"drops"`      // sent but never output (Sent - Received)
	Duplicates int64 `json:"duplicates"` // outputs of a message already received
	Unknown    int64 `json:"unknown"`    // output lines of no message sent
	// SendRate is the generator's achieved rate, RecvRate the outputs'
	// (messages per second, first to last output).
	SendRate float64 `json:"send_rate"`
	RecvRate float64 `json:"recv_rate"`
	// Latency is from the intended send time to receipt, over the
	// measured messages (Latency.Count of them).
	Latency Percentiles `json:"latency"`
	// Lateness is the generator's own: actual minus intended send time.
	Lateness Percentiles  `json:"generator_lateness"`
	Curve    []CurvePoint `json:"curve"`
	Error    string       `json:"error,omitempty"`
}

// E2ERatio is the engine's latency over the reference program's at the
// same rate, percentile by percentile (1.5 = the engine's is 1.5x).
type E2ERatio struct {
	Rate  int       `json:"rate"`
	Wait  string    `json:"wait"`
	Ratio []float64 `json:"ratio"` // in PercentileNames order
}

// E2EReport is the result of RunE2E.
type E2EReport struct {
	Machine  Machine `json:"machine"`
	Command  string  `json:"command"`
	Path     string  `json:"path"`
	Duration string  `json:"duration"`
	Warmup   string  `json:"warmup"`
	Pacing   string  `json:"pacing"`
	Symbols  int     `json:"symbols"`
	Shards   int     `json:"shards"`
	Repeats  int     `json:"repeats"`
	// EngineArgs are the flags added to the engine's (E2EConfig.EngineArgs).
	EngineArgs []string `json:"engine_args,omitempty"`
	// Percentiles names the entries of each ratio.
	Percentiles []string    `json:"percentiles"`
	Results     []E2EResult `json:"results"`
	Ratios      []E2ERatio  `json:"ratios"`
}

// E2EPath describes the measured path for the report.
const E2EPath = "load generator (own process) -> loopback TCP, JSON lines -> `qstream run --feed tcp --tcp-format lines --output -` " +
	"(default indicators, no WAL) -> stdout pipe, one JSON line per trade -> receiver (this process); " +
	"reference: the same with `qstream bench ref` (read a line, fastjson parse, write a line)"

// ErrE2EConfig reports an invalid E2EConfig.
var ErrE2EConfig = errors.New("bench: invalid e2e config")

// RunE2E runs the benchmark. A run that fails is reported in its result's
// Error and the others go on; the error is for what stops them all.
func RunE2E(cfg E2EConfig) (*E2EReport, error) {
	if cfg.Bin == "" || len(cfg.Rates) == 0 || cfg.Duration <= 0 || cfg.Symbols < 1 || cfg.Symbols > maxBenchSymbols {
		return nil, fmt.Errorf("%w: %+v", ErrE2EConfig, cfg)
	}
	for _, r := range cfg.Rates {
		if r <= 0 || r > 1e9 {
			return nil, fmt.Errorf("%w: rate %d", ErrE2EConfig, r)
		}
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 3 * time.Second
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 1
	}
	rep := &E2EReport{
		Machine: ThisMachine(), Path: E2EPath, Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(),
		Pacing: cfg.Pacing.String(), Symbols: cfg.Symbols, Shards: cfg.Shards, EngineArgs: cfg.EngineArgs, Percentiles: PercentileNames,
	}
	if cfg.ProbeCores {
		rep.Machine.ProbeStart(0, cfg.ProbeTrips)
	}
	dir, err := os.MkdirTemp("", "qstream-bench-e2e-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	repeats := max(1, cfg.Repeats)
	rep.Repeats = repeats
	for _, rate := range cfg.Rates {
		// The targets of one rate, run in turn repeats times, so that a
		// noisy moment of the machine is shared out between them.
		var accs []*e2eAcc
		if !cfg.NoReference {
			accs = append(accs, newE2EAcc(TargetReference, "block", rate))
		}
		for _, wait := range cfg.Waits {
			accs = append(accs, newE2EAcc(TargetEngine, wait, rate))
		}
		for i := 0; i < repeats; i++ {
			for _, a := range accs {
				a.add(runE2E(cfg, dir, rate, a.res.Target, a.res.Wait))
			}
		}
		var ref *E2EResult
		for k, a := range accs {
			rep.Results = append(rep.Results, a.result())
			r := &rep.Results[len(rep.Results)-1]
			if k == 0 && !cfg.NoReference {
				ref = r
				continue
			}
			if ref != nil && ref.Error == "" && r.Error == "" {
				rep.Ratios = append(rep.Ratios, E2ERatio{Rate: rate, Wait: r.Wait, Ratio: ratios(r.Latency.values(), ref.Latency.values())})
			}
		}
	}
	rep.Machine.SetEnd()
	return rep, nil
}

func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		if b[i] > 0 {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

func (p Pacing) String() string {
	switch p {
	case PaceSleep:
		return "sleep"
	case PaceNanosleep:
		return "nanosleep"
	}
	return "spin"
}

// ParsePacing parses "spin", "nanosleep" or "sleep".
func ParsePacing(s string) (Pacing, error) {
	switch s {
	case "spin":
		return PaceSpin, nil
	case "nanosleep":
		return PaceNanosleep, nil
	case "sleep":
		return PaceSleep, nil
	}
	return 0, fmt.Errorf("bench: pacing %q is not spin, nanosleep or sleep", s)
}

// loadLead is how long after the start of the generator process its first
// message is due: time for it to start and connect.
const loadLead = 300 * time.Millisecond

// runE2E is one run of one target at one rate. It returns the run's
// result, its latency histogram and the generator's lateness histogram
// (nil if the generator did not report one).
func runE2E(cfg E2EConfig, dir string, rate int, target, wait string) (res E2EResult, hist, late *hdrhistogram.Histogram) {
	res = E2EResult{Target: target, Wait: wait, Rate: rate, Runs: 1}
	defer func() {
		if cfg.Progress != nil {
			status := "ok"
			if res.Error != "" {
				status = "FAILED: " + res.Error
			}
			fmt.Fprintf(cfg.Progress, "bench e2e: %7d msg/s %-9s %-5s sent %d recv %d drops %d p50 %.1fµs p99 %.1fµs: %s\n",
				rate, target, wait, res.Sent, res.Received, res.Drops, res.Latency.P50Us, res.Latency.P99Us, status)
		}
	}()
	var args []string
	if target == TargetReference {
		args = []string{"bench", "ref", "--addr", "127.0.0.1:0"}
	} else {
		args = append([]string{"run", "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "lines", "--tcp-loops", "1",
			"--output", "-", "--wal-dir", "", "--dlq-dir", "", "--http", "", "--dashboard=false", "--status-interval", "1h",
			"--wait", wait, "--shards", strconv.Itoa(cfg.Shards)}, cfg.EngineArgs...)
	}
	srv, err := startServer(cfg.Bin, args, dir)
	if err != nil {
		res.Error = err.Error()
		return res, NewLatencyHistogram(), nil
	}
	warm := int64(cfg.Warmup.Seconds() * float64(rate))
	n := warm + max(1, int64(cfg.Duration.Seconds()*float64(rate)))
	start := NowNs() + int64(loadLead)
	rc := newReceiver(NewOpenLoop(rate, start), n, warm)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		rc.run(srv.stdout)
	}()
	out, _, lerr := runChild(cfg.Bin, []string{"bench", "load", "--addr", srv.addr, "--rate", strconv.Itoa(rate),
		"--count", strconv.FormatInt(n, 10), "--start-ns", strconv.FormatInt(start, 10), "--pace", cfg.Pacing.String(),
		"--symbols", strconv.Itoa(cfg.Symbols)}, dir)
	var sum LoadSummary
	if lerr == nil {
		lerr = json.Unmarshal(out, &sum)
	}
	if lerr == nil {
		rc.drain(sum.Sent, cfg.Drain)
	}
	serr := srv.stop(20 * time.Second)
	select {
	case <-recvDone:
	case <-time.After(10 * time.Second):
		lerr = errors.Join(lerr, errors.New("bench: the server's output did not end"))
	}
	res.Sent, res.SendRate, res.Lateness = sum.Sent, sum.SendRate, sum.Lateness
	rc.fill(&res)
	if err := errors.Join(lerr, serr); err != nil {
		res.Error = err.Error()
	}
	if sum.LatenessHist != nil {
		late = hdrhistogram.Import(sum.LatenessHist)
	}
	return res, rc.hist, late
}

// e2eAcc sums the runs of one target at one rate.
type e2eAcc struct {
	res                E2EResult
	hist, late         *hdrhistogram.Histogram
	sendRate, recvRate float64
}

func newE2EAcc(target, wait string, rate int) *e2eAcc {
	return &e2eAcc{res: E2EResult{Target: target, Wait: wait, Rate: rate}, hist: NewLatencyHistogram(), late: NewLatencyHistogram()}
}

func (a *e2eAcc) add(r E2EResult, hist, late *hdrhistogram.Histogram) {
	a.res.Runs++
	a.res.Sent += r.Sent
	a.res.Warmup += r.Warmup
	a.res.Received += r.Received
	a.res.Drops += r.Drops
	a.res.Duplicates += r.Duplicates
	a.res.Unknown += r.Unknown
	a.sendRate += r.SendRate
	a.recvRate += r.RecvRate
	a.hist.Merge(hist)
	if late != nil {
		a.late.Merge(late)
	}
	if r.Error != "" && a.res.Error == "" {
		a.res.Error = r.Error
	}
}

// result is the target's figures over its runs: counts summed, rates
// averaged, percentiles of the merged histograms.
func (a *e2eAcc) result() E2EResult {
	r := a.res
	if r.Runs > 0 {
		r.SendRate, r.RecvRate = a.sendRate/float64(r.Runs), a.recvRate/float64(r.Runs)
	}
	r.Latency, r.Curve, r.Lateness = PercentilesOf(a.hist), Curve(a.hist), PercentilesOf(a.late)
	return r
}

// receiver reads a server's output lines and records each message's
// latency from its intended send time (the line's "ts").
type receiver struct {
	sched      OpenLoop
	n, warm    int64
	seen       []uint64 // bit per message
	hist       *hdrhistogram.Histogram
	received   atomic.Int64
	mu         sync.Mutex // guards the rest, for fill after run
	dups, unkn int64
	firstNs    int64
	lastNs     int64
}

func newReceiver(sched OpenLoop, n, warm int64) *receiver {
	return &receiver{sched: sched, n: n, warm: warm, seen: make([]uint64, (n+63)/64), hist: NewLatencyHistogram()}
}

// receiverBuffer is the receiver's read size.
const receiverBuffer = 1 << 20

// run reads r to its end. Each read is timestamped once: the lines it
// brings arrived together.
func (rc *receiver) run(r io.Reader) {
	buf := make([]byte, receiverBuffer)
	have := 0
	for {
		k, err := r.Read(buf[have:])
		now := NowNs()
		if k > 0 {
			have += k
			data := buf[:have]
			rc.mu.Lock()
			for {
				i := indexNL(data)
				if i < 0 {
					break
				}
				rc.line(data[:i], now)
				data = data[i+1:]
			}
			have = copy(buf, data)
			if have == len(buf) {
				have = 0 // a line longer than the buffer: dropped, counted as unknown
				rc.unkn++
			}
			rc.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func (rc *receiver) line(line []byte, now int64) {
	ts, ok := lineTs(line)
	off := ts - rc.sched.StartNs
	if !ok || off < 0 || off%rc.sched.IntervalNs != 0 || off/rc.sched.IntervalNs >= rc.n {
		rc.unkn++
		return
	}
	i := off / rc.sched.IntervalNs
	if rc.seen[i/64]&(1<<(i%64)) != 0 {
		rc.dups++
		return
	}
	rc.seen[i/64] |= 1 << (i % 64)
	if rc.firstNs == 0 {
		rc.firstNs = now
	}
	rc.lastNs = now
	if i >= rc.warm {
		RecordLatency(rc.hist, now-ts)
	}
	rc.received.Add(1)
}

// drain waits until sent messages have been received, or for idle without
// a new one.
func (rc *receiver) drain(sent int64, idle time.Duration) {
	last, lastChange := rc.received.Load(), time.Now()
	for {
		got := rc.received.Load()
		if got >= sent {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > idle {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (rc *receiver) fill(res *E2EResult) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	res.Warmup = rc.warm
	res.Received = rc.received.Load()
	res.Drops = max(0, res.Sent-res.Received)
	res.Duplicates, res.Unknown = rc.dups, rc.unkn
	if res.Received > 1 && rc.lastNs > rc.firstNs {
		res.RecvRate = float64(res.Received-1) / (float64(rc.lastNs-rc.firstNs) / 1e9)
	}
	res.Latency = PercentilesOf(rc.hist)
	res.Curve = Curve(rc.hist)
}

// WriteE2EJSON writes rep as indented JSON.
func WriteE2EJSON(w io.Writer, rep *E2EReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
