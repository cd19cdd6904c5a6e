package main

import (
	"qstream/internal/feedhost"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"qstream/codec"
	"qstream/control"
	"qstream/engine"
	"qstream/internal/cpu"
	"qstream/ops"
	"qstream/ring"
	"qstream/sinks"
)

type runFlags struct {
	symbols, rate, shards, maxSymbols int
	seed                              uint64
	count                             int64
	wait, mode, pin                   string
	chain                             bool
	ops                               operatorFlags // indicators and windows (operators.go)
	batchSize                         int
	batchTimeout, duration, interval  time.Duration
	outOfOrderness, idleTimeout       time.Duration
	feeds                             feedFlags    // --feed and each feed's flags (feeds.go)
	durable                           durableFlags // WAL, checkpoints, dedup, DLQ (wal.go)
	sinks                             sinkFlags    // --sink (sinks.go)
	emit                              string
	dashboard                         bool
	http                              httpFlags     // --http, --http-token, --stream-name (http.go)
	stopTimeout                       time.Duration // --stop-timeout
	// onStop, when set (cmdRun), is called when the stop begins, by a
	// signal or the control API: it starts the --stop-timeout watchdog.
	onStop func()
	// streams are the configuration's streams after the first (--config;
	// streams.go).
	streams []engine.StreamConfig
	group   groupFlags // --group (group.go)
}

func runFlagSet(f *runFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&f.symbols, "symbols", 100, "number of instruments of the synthetic feed")
	fs.IntVar(&f.rate, "rate", 100_000, "synthetic messages per second (0: as fast as possible)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the synthetic feed: the same seed gives the same messages")
	fs.Int64Var(&f.count, "count", 0, "stop after this many synthetic messages (0: until interrupted)")
	fs.IntVar(&f.shards, "shards", 0, "number of shards (0: usable CPUs minus one, at least one)")
	fs.StringVar(&f.wait, "wait", "park", "shard wait strategy: park (sleep until work; for shared machines), yield, or spin (dedicated cores only)")
	fs.BoolVar(&f.chain, "chain", true, "operator chaining: a feed that hands a few events to a parked shard runs the shard's processing round itself, without waking its thread (park wait, not micro-batch; --chain=false: always wake the shard)")
	fs.StringVar(&f.mode, "mode", "event-driven", "processing mode: event-driven (park until a message arrives), real-time (each message as it arrives, with --wait), micro-batch (--batch-size / --batch-timeout)")
	fs.IntVar(&f.batchSize, "batch-size", 256, "micro-batch: messages per batch")
	fs.DurationVar(&f.batchTimeout, "batch-timeout", time.Millisecond, "micro-batch: longest wait for a batch to fill")
	fs.StringVar(&f.pin, "pin", "", "pin shards to CPUs: a list like 2,3 or 'auto' (allowed CPUs after the first); refusal is logged, not fatal")
	fs.IntVar(&f.maxSymbols, "max-symbols", 1<<16, "capacity of the symbol table")
	f.ops.register(fs, true)
	fs.StringVar(&f.emit, "emit", "all", "what --output gets: a comma-separated list of indicators, windows, patterns, news (the analysis of each article), events (signal, system and custom events), or all")
	fs.DurationVar(&f.outOfOrderness, "out-of-orderness", 0, "bounded out-of-orderness of event time")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 0, "a source silent this long stops holding the watermark back (0: never)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fs.DurationVar(&f.interval, "status-interval", time.Second, "how often to print the status line")
	f.feeds.register(fs)
	f.durable.register(fs)
	f.sinks.register(fs, 10*time.Second, true)
	fs.String("config", "", "configuration file (qstream config example prints one): its stream's settings take the place of --config, so flags after it override them (README \"Configuration file\")")
	f.http.register(fs)
	f.group.register(fs)
	registerDashboard(fs, &f.dashboard)
	fs.DurationVar(&f.stopTimeout, "stop-timeout", defaultStopTimeout, "longest clean stop after Ctrl-C, SIGTERM or the control API's stop; past it the process exits with status 1 (a second signal during the stop exits at once with 128+signal: 130 for SIGINT, 143 for SIGTERM)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: qstream run [flags]

Runs the engine on its feeds (--feed; default the built-in synthetic market,
a seeded random walk of trades and quotes; also tcp, ws, webhook, jetstream
and pcap) and prints a status line every second: messages per second,
latency percentiles per stage, ring occupancy, errors and per-feed counters.
Ctrl-C stops it cleanly: the rings are drained and a summary is printed.

The WAL is on by default (--wal-dir, in ./qstream-data): every event is
logged before it is processed, acknowledgements wait for its fdatasync,
operator state is checkpointed every --checkpoint-interval, and the next
start recovers: it loads the newest checkpoint, replays the WAL after it and
resumes the feeds (the synthetic feed after its last durable offset). Ctrl-C
then suspends the stream rather than ending it: open windows stay open for
the next start. A finite feed that completes (--count) ends its input: every
window fires, and the stop checkpoints that state, so a restart neither
rewinds --output nor writes those results again (more input from that
source is late). Rejected inputs go to the dead-letter segments (--dlq-dir;
see qstream dlq).

--output is changed only once the start has succeeded (a refused start
leaves it as it was). An output that fails for good (a full disk) stops the
run with status 1 and the error; its input stays in the WAL, and the next
start, once there is space, completes the output.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	args, extras, cleanup, err := expandRunConfig(args) // --config FILE (config.go)
	if err != nil {
		fmt.Fprintf(stderr, "qstream run: %v\n", err)
		return 2
	}
	defer cleanup()
	f := runFlags{streams: extras}
	fs := runFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.stopTimeout <= 0 {
		fmt.Fprintf(stderr, "qstream run: --stop-timeout %s: want a positive duration\n", f.stopTimeout)
		return 2
	}
	ctx, requestStop := context.WithCancel(context.Background())
	defer requestStop()
	done := make(chan struct{})
	defer close(done)
	stopBegan := make(chan struct{})
	var stopOnce sync.Once
	f.onStop = func() { stopOnce.Do(func() { close(stopBegan) }) }
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go stopWatchdog(sigs, requestStop, stopBegan, done, f.stopTimeout, stderr, os.Exit)
	if err := run(ctx, &f, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "qstream run: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func parsePins(s string) ([]int, error) {
	switch s {
	case "":
		return nil, nil
	case "auto":
		allowed := cpu.Allowed()
		if len(allowed) > 1 {
			return allowed[1:], nil
		}
		return allowed, nil
	}
	var pins []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--pin: %q is not a CPU number", p)
		}
		pins = append(pins, n)
	}
	return pins, nil
}

func run(ctx context.Context, f *runFlags, stdout, stderr io.Writer) error {
	wait, err := ring.ParseStrategy(f.wait)
	if err != nil {
		return usageError{fmt.Errorf("--wait: %w", err)}
	}
	mode, err := engine.ParseMode(f.mode)
	if err != nil {
		return usageError{fmt.Errorf("--mode: %w", err)}
	}
	pins, err := parsePins(f.pin)
	if err != nil {
		return usageError{err}
	}
	emit, err := parseEmit(f.emit)
	if err != nil || (emit.stats && f.emit != "all") {
		return usageError{fmt.Errorf("--emit: %q: want a list of indicators, windows, patterns, news, events (or all)", f.emit)}
	}
	opers, err := f.ops.parse(f.maxSymbols, true)
	if err != nil {
		return err
	}
	opers.withText(emit.kinds[ops.OutNews], emit.kinds[ops.OutEvent])
	if err := checkStreams(f); err != nil {
		return usageError{err} // before anything is opened
	}
	if f.emit == "all" {
		emit.kinds = nil // everything the operators produce
	}
	if f.group.name != "" {
		return runGroup(ctx, f, opers, emit.kinds, stderr)
	}
	feedSet, err := buildFeeds(f, os.Getenv)
	if err != nil {
		return err
	}
	// The control endpoint is bound first: a busy address fails the start
	// before anything is opened. It serves once the engine exists.
	ctlHTTP, err := listenHTTP(&f.http, stderr)
	if err != nil {
		return err
	}
	defer ctlHTTP.close(stderr)
	ctx, apiStop := context.WithCancel(ctx) // the control API's stop: the same as SIGTERM
	defer apiStop()
	if mode == engine.ModeEventDriven && wait != ring.Park {
		mode = engine.ModeRealTime // an explicit --wait asks for a polling loop
	}
	symbols := codec.NewSymbolTable(f.maxSymbols)
	outJSONL := opers.jsonl()
	outJSONL.Kinds = emit.kinds
	output, closeOutput, err := openRunOutput(f.feeds.output, symbols, outJSONL, stdout)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeOutput(); err != nil {
			fmt.Fprintf(stderr, "qstream: output: %v\n", err)
		}
	}()
	// The output's recovery policy (sinks.Guard, the default sinks.GuardPolicy):
	// its Output is the engine's, and it is bound to the engine below,
	// before the engine starts.
	var guard *sinks.Guard
	engOutput := output
	if output != nil {
		guard = sinks.NewGuard(output, sinks.GuardPolicy{})
		engOutput = guard.Output()
	}
	var eng *engine.Engine
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})) // sinks and archives
	sinkJSONL := opers.jsonl()
	sinkJSONL.Symbols = symbols
	outSinks, err := openSinks(f.sinks.uris, sinkJSONL, sinkStateDir(&f.sinks, f.durable.walDir), engOutput, poisonTo(&eng),
		logger)
	if err != nil {
		return err
	}
	sinksClosed := false
	closeSinks := func() error {
		if sinksClosed {
			return nil
		}
		sinksClosed = true
		return outSinks.close(f.sinks.drain, stderr)
	}
	defer closeSinks()
	dash, err := openDashboard(f.dashboard, ctlHTTP, sinkJSONL, logger, stderr)
	if err != nil {
		return err
	}
	defer dash.close()
	pipeCfg := opers.pipeline(symbols)
	var ptTick time.Duration
	if e := f.ops.earlyEvery; e > 0 {
		ptTick = max(time.Millisecond, e/4) // the window operators fire at most once per e themselves
	}
	host := newStreamHost(f, symbols, &eng, stdout, stderr, logger)
	host.jsonl = sinkJSONL
	cfg := engine.Config{
		StreamName:         firstStreamName(f.http.streamName),
		Streams:            f.streams,
		StreamFactory:      host.factory,
		Shards:             f.shards,
		PinCPUs:            pins,
		Wait:               wait,
		Mode:               mode,
		Chain:              f.chain,
		BatchSize:          f.batchSize,
		BatchTimeout:       f.batchTimeout,
		Symbols:            symbols,
		OutOfOrderness:     f.outOfOrderness,
		IdleTimeout:        f.idleTimeout,
		Processors:         func(int) (engine.Processor, error) { return ops.NewPipeline(pipeCfg) },
		ProcessingTimeTick: ptTick,
		Output:             dash.tee(outSinks.output(engOutput)),
		MaxProducers:       2 * max(32, feedSet.producers), // and recovery's, one per source name; the other streams' feeds
	}
	cfg.WALBatches = f.durable.walBatches
	dur, err := openDurable(&f.durable, &cfg, symbols, stderr)
	if err != nil {
		return err
	}
	defer dur.close(stderr)
	host.dur = dur
	defer host.close()
	arch, err := openArchives(outSinks.archive, symbols, logger)
	if err != nil {
		return err
	}
	defer arch.close(stderr)
	if len(outSinks.archive) > 0 {
		if dur.wal == nil || cfg.Checkpoints == nil {
			return usageError{errors.New("--sink archive:// follows the WAL: it needs --wal-dir")}
		}
		cfg.Checkpoints.RetainWAL = arch.retain // the WAL keeps what the archive has not synced
		cfg.WALBatches = false                  // the archive positions events by LSN
	}
	eng, err = engine.New(cfg)
	if err != nil {
		return err
	}
	if guard != nil {
		guard.Bind(eng)
	}
	if err := ctlHTTP.serve(control.Options{
		Engine: eng, StreamName: f.http.streamName, Token: httpToken(&f.http, os.Getenv),
		Stop: apiStop, Feeds: host.feedStats(feedSet.byteStats), Sinks: host.sinkStats(outSinks.sinkStats), Output: guardStats(guard),
		Dashboard: dash.page(f.http.streamName), StartStream: host.startDynamic, StopStream: host.stop, ProcessMessage: host.processMessage, Logger: logger,
	}, stderr); err != nil {
		return err
	}
	outSinks.start() // recovery's replay goes through the sinks
	if err := dur.recover(ctx, eng, stderr); err != nil {
		return err
	}
	if len(outSinks.archive) > 0 {
		if err := arch.follow(f.durable.walDir, dur.wal.DurableLSN, eng.Symbols(), logger); err != nil {
			return err
		}
	}
	if fo, ok := output.(*sinks.FileOutput); ok {
		if err := fo.Begin(); err != nil {
			return err
		}
	}
	dur.wrapFeeds(feedSet, eng, f.rate)
	fmt.Fprintf(stderr, "qstream: running: %d shards, %s mode, %s wait, %s; %s; Ctrl-C stops\n",
		eng.Shards(), mode, eng.Config().Wait, feedSet.describe(f), dur.describe())

	runCtx, cancelRun := context.WithCancel(ctx) // also cancelled when the engine fails
	defer cancelRun()
	if f.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(runCtx, f.duration)
		defer cancel()
	}
	if err := host.startAll(runCtx); err != nil {
		return err
	}
	pubs := feedhost.New(eng)
	feedErr := make(chan error, 1)
	go func() {
		err := feedSet.run(runCtx, pubs, stderr)
		ended := err == nil && runCtx.Err() == nil // the input is complete
		if ended {
			ended = host.waitEnded(runCtx) // and the other streams' inputs
		}
		if ended {
			eng.StopPeriodicCheckpoints() // Stop's checkpoint follows the end
		}
		if ended && dur.wal != nil && f.durable.finalCheckpoint {
			if info, cerr := eng.Checkpoint(context.Background()); cerr != nil {
				err = fmt.Errorf("final checkpoint: %w", cerr)
			} else {
				fmt.Fprintf(stderr, "qstream: final checkpoint %d at LSN %d\n", info.ID, info.LSN)
			}
		}
		if ended || dur.wal == nil {
			// End of input (+∞: every window fires). Stop checkpoints the
			// state after it, so a restart neither rewinds the output over
			// the end-of-input results nor fires them again.
			pubs.CloseAll()
		} else {
			// Interrupted, failed or out of time: suspended, not ended. The
			// next start resumes; Stop checkpoints the drained state.
			pubs.DetachAll()
		}
		feedErr <- err
	}()
	ctlHTTP.readyWhenFeedsUp(runCtx, feedSet)

	start := time.Now()
	status := newStatus(eng, stderr)
	status.feeds = feedSet
	status.durable = dur
	status.guard = guard
	status.sinks = outSinks
	status.archives = arch
	status.streams = host
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	var ferr error
	interrupt, failed := ctx.Done(), eng.Failed()
	var halted <-chan time.Time // after an interrupt: polls whether the output is halted
loop:
	for {
		select {
		case <-tick.C:
			status.print(false)
		case ferr = <-feedErr:
			break loop
		case <-failed:
			// The output failed for good (or was given up): nothing more
			// can be delivered, so stop the feeds; the WAL keeps their input.
			failed = nil
			fmt.Fprintf(stderr, "qstream: stopping: %v\n", eng.Err())
			cancelRun()
		case <-interrupt:
			ctlHTTP.stopping()
			if f.onStop != nil {
				f.onStop() // --stop-timeout runs from here
			}
			eng.Resume() // a paused stream drains: its feeds, blocked on full rings, can return
			// Feeds blocked on the backpressure of a halted output would
			// never see the interrupt: give the output up while it is
			// halted (now or later), so that they can return.
			interrupt = nil
			haltCheck := time.NewTicker(250 * time.Millisecond)
			defer haltCheck.Stop()
			halted = haltCheck.C
			if failIfHalted(eng, guard) {
				halted = nil
			}
		case <-halted:
			if failIfHalted(eng, guard) {
				halted = nil
			}
		}
	}
	host.stopFeeds()
	ckBefore := eng.CheckpointStats().Taken
	ctlHTTP.stopping()
	stopCtx, cancel := context.WithTimeout(context.Background(), min(hardStopAfter, f.stopTimeout))
	defer cancel()
	serr := eng.Stop(stopCtx)
	if ck := eng.CheckpointStats(); ck.Taken > ckBefore && serr == nil {
		fmt.Fprintf(stderr, "qstream: checkpoint %d at stop (LSN %d)\n", ck.LastID, ck.LastLSN)
	}
	if err := arch.close(stderr); err != nil && serr == nil {
		serr = err
	}
	if err := closeSinks(); err != nil {
		if dur.wal == nil && serr == nil {
			serr = fmt.Errorf("sinks: %w (no WAL: they are lost)", err)
		} else {
			// Left in their spill and the checkpoint: the next start delivers them.
			fmt.Fprintf(stderr, "qstream: %v; the next start delivers them\n", err)
		}
	}
	if err := host.close(); err != nil && serr == nil {
		serr = err
	}
	status.summary(time.Since(start))
	feedSet.summary(stderr)
	if ferr != nil && !errors.Is(ferr, context.Canceled) {
		return ferr
	}
	return serr
}

// firstStreamName is the engine's name of the first stream: --stream-name
// when it is a valid stream id, "default" otherwise (the control API and
// the metrics use --stream-name as given).
func firstStreamName(name string) engine.StreamID {
	if engine.ValidStreamID(engine.StreamID(name)) != nil {
		return engine.DefaultStream
	}
	return engine.StreamID(name)
}

// defaultStopTimeout is --stop-timeout's default: the longest clean stop
// after Ctrl-C, SIGTERM or the control API's stop. Past it the process
// exits with status 1. A halted output is given up at once (Engine.Fail),
// so only a stop blocked elsewhere (an output stuck in a write) gets there.
const defaultStopTimeout = 30 * time.Second

// hardStopAfter bounds the engine's drain at a stop (Engine.Stop's
// context), within --stop-timeout.
const hardStopAfter = 10 * time.Second

// stopWatchdog turns the first SIGINT or SIGTERM into requestStop (the
// clean stop: drain, final checkpoint). Once the stop has begun (that
// signal, or the control API's stop through stopBegan) a further signal
// exits at once with status 128+signal (130 for SIGINT, 143 for SIGTERM)
// and a stop that lasts timeout exits with status 1. Exiting either way is
// as safe as a crash: the WAL holds what was acknowledged and the next
// start recovers. It returns when done is closed.
func stopWatchdog(sigs <-chan os.Signal, requestStop func(), stopBegan, done <-chan struct{}, timeout time.Duration, stderr io.Writer, exit func(int)) {
	select {
	case <-done:
		return
	case <-sigs:
		requestStop()
	case <-stopBegan:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
	case sig := <-sigs:
		code := 128 + int(sig.(syscall.Signal))
		fmt.Fprintf(stderr, "qstream run: %s during the stop: exiting at once with status %d without a clean stop (the next start recovers from the WAL)\n", sig, code)
		exit(code)
	case <-timer.C:
		// Something blocks the clean stop (an output stuck in a write).
		fmt.Fprintf(stderr, "qstream run: not stopped %s after the stop began (--stop-timeout); exiting with status 1 without a clean stop (the next start recovers from the WAL)\n", timeout)
		exit(1)
	}
}

// failIfHalted gives up the output (Engine.Fail) if its circuit breaker
// halts the stream, and reports whether it did.
func failIfHalted(eng *engine.Engine, guard *sinks.Guard) bool {
	if guard == nil {
		return false
	}
	o := guard.Stats()
	if !o.Halted {
		return false
	}
	eng.Fail(fmt.Errorf("interrupted while the output was halted (circuit breaker %s): %s", o.Breaker, o.LastError))
	return true
}

func rateString(r int) string {
	if r == 0 {
		return "max"
	}
	return strconv.Itoa(r)
}

// status prints the periodic status line and the final summary.
type status struct {
	e        *engine.Engine
	w        io.Writer
	last     engine.Stats
	lastTime time.Time
	feeds    *feedSet     // per-feed counters; nil: none
	durable  *durable     // WAL, checkpoints; nil: none
	guard    *sinks.Guard // the output's breaker; nil: none
	sinks    *outputSinks // --sink; nil: none
	archives *archives    // --sink archive://; nil: none
	streams  *streamHost  // the streams after the first; nil: none
}

func newStatus(e *engine.Engine, w io.Writer) *status {
	return &status{e: e, w: w, lastTime: time.Now(), last: e.Stats()}
}

func (s *status) print(final bool) {
	now := time.Now()
	st := s.e.Stats()
	lat := s.e.Latency(true)
	dt := now.Sub(s.lastTime).Seconds()
	rate := float64(st.Messages-s.last.Messages) / dt
	var inLen, inCap, outLen, outCap int
	for _, sh := range st.Shards {
		inLen += sh.InputLen
		inCap += sh.InputCap
		outLen += sh.OutputLen
		outCap += sh.OutputCap
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %9.0f msg/s", now.Format("15:04:05"), rate)
	for i, q := range lat.Stages {
		fmt.Fprintf(&b, " | %s p50 %s p99 %s p99.9 %s", engine.StageNames[i], dur(q.P50), dur(q.P99), dur(q.P999))
	}
	fmt.Fprintf(&b, " | rings in %.1f%% out %.1f%% | errors %d dlq %d | symbols %d",
		pct(inLen, inCap), pct(outLen, outCap), st.Errors, st.DeadLetters, st.Symbols)
	if s.feeds != nil {
		b.WriteString(s.feeds.status())
	}
	if s.durable != nil {
		b.WriteString(s.durable.status(st))
	}
	if s.guard != nil {
		o := s.guard.Stats()
		fmt.Fprintf(&b, " | out breaker %s", o.Breaker)
		if o.Halted {
			b.WriteString(" HALTED")
		}
		if o.Retries > 0 || o.SystemErrors > 0 {
			fmt.Fprintf(&b, " retries %d errors %d", o.Retries, o.SystemErrors)
		}
	}
	if s.sinks != nil {
		s.sinks.status(&b)
	}
	if s.archives != nil {
		s.archives.status(&b)
	}
	if s.e.Paused() || s.e.StreamPaused(engine.DefaultStream) {
		b.WriteString(" | PAUSED (control API)")
	}
	if s.streams != nil {
		s.streams.status(&b, s.e)
	}
	fmt.Fprintln(s.w, b.String())
	s.last, s.lastTime = st, now
}

func (s *status) summary(elapsed time.Duration) {
	st := s.e.Stats()
	fmt.Fprintf(s.w, "qstream: stopped after %s: %d messages (%.0f msg/s), %d outputs, %d errors, %d dead letters, %d symbols, by type %v\n",
		elapsed.Round(time.Millisecond), st.Messages, float64(st.Messages)/elapsed.Seconds(), st.Outputs, st.Errors, st.DeadLetters, st.Symbols, st.ByKind)
}

func pct(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return 100 * float64(n) / float64(d)
}

func dur(ns int64) string {
	switch {
	case ns == 0:
		return "-"
	case ns < 10_000:
		return fmt.Sprintf("%.1fµs", float64(ns)/1e3)
	case ns < 10_000_000:
		return fmt.Sprintf("%.0fµs", float64(ns)/1e3)
	default:
		return fmt.Sprintf("%.1fms", float64(ns)/1e6)
	}
}
