package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"qstream/checkpoint"
	"qstream/cluster"
	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/internal/feedhost"
	"qstream/ops"
	"qstream/ring"
	"qstream/sinks"
	"qstream/wal"
)

// `qstream run --group NAME`: one member of a scale-out group over the
// partitions of a JetStream stream (--feed jetstream). Package cluster does
// membership, assignment, leases and fencing; this file runs the partitions
// the member owns. Each owned partition is a task, as in Kafka Streams: its
// own engine (its shards, its WAL and checkpoints in a scratch folder), its
// own sinks, fenced by the partition's lease, and an ordered consumer of the
// partition from the floor of its newest checkpoint in the group's object
// store. Every --checkpoint-interval the task checkpoints its engine, waits
// until its sinks have acknowledged every output of the events before the
// cut, and saves the checkpoint with its floor (cluster.State.Save, fenced
// by epoch). A new owner loads it (engine.RestoreFrom) and consumes from
// floor+1: the outputs after the floor come again with the same keys, and
// the idempotent sinks absorb them.

// groupFlags are run's --group flags.
type groupFlags struct {
	name, instance string
	lease          time.Duration
	replicas       int
}

func (g *groupFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.name, "group", "", "run as a member of this scale-out group (1..32 of [A-Za-z0-9_-]) over the partitions of --feed jetstream: partitions are claimed in a JetStream key-value bucket with leases, move to the survivors when a member dies, and carry their operator state through the JetStream object store (README \"Scale-out\")")
	fs.StringVar(&g.instance, "group-instance", "", "this member's name in --group, unique and stable across restarts (default: the host name and process id)")
	fs.DurationVar(&g.lease, "group-lease", cluster.DefaultLease, "--group: lease of a member and its partitions; a dead member's partitions are taken over after it, and a member that cannot renew stops publishing before it ends")
	fs.IntVar(&g.replicas, "group-replicas", 1, "--group: replicas of the group's buckets (3 on a three-server NATS cluster)")
}

// groupHost runs the tasks of the partitions a member owns.
type groupHost struct {
	f      *runFlags
	opers  *operators
	emit   map[ops.OutKind]bool
	log    *slog.Logger
	stderr io.Writer
	inst   string
	state  *cluster.State
	dlq    *countingDLQ
	member *cluster.Member
	base   string // scratch folder of the tasks

	mu    sync.Mutex
	tasks map[int]*partTask
	done  groupTotals // counters of ended tasks

	saves, saveErrors, fencedSaves atomic.Uint64
	lastLoad                       atomic.Int64 // ns the last task took from its claim to consuming
}

type groupTotals struct{ messages, outputs uint64 }

// partTask is one owned partition.
type partTask struct {
	h     *groupHost
	p     int
	epoch uint64
	fence *cluster.Fence
	dir   string

	stop    chan bool // true: release (a last checkpoint), false: revoke
	stopped chan struct{}
	prev    *partTask // the task of an earlier claim of p, maybe still stopping

	mu       sync.Mutex
	eng      *engine.Engine
	floor    uint64 // of the newest saved checkpoint
	restored uint64 // the floor it started from
}

func runGroup(ctx context.Context, f *runFlags, opers *operators, emit map[ops.OutKind]bool, stderr io.Writer) error {
	g := &f.group
	ff := &f.feeds
	if strings.TrimSpace(strings.ToLower(ff.list)) != "jetstream" {
		return usageError{fmt.Errorf("--group runs over the partitions of a JetStream stream: it needs --feed jetstream (not %q)", ff.list)}
	}
	if ff.jsStream == "" || ff.jsPrefix == "" || ff.jsPartitions < 1 || ff.jsPartitions > feeds.MaxJetStreamPartitions {
		return usageError{errors.New("--group needs --js-stream, --js-subject-prefix and --js-partitions (1..4096)")}
	}
	if ff.jsOwned != "" {
		return usageError{errors.New("--group assigns the partitions: --js-owned does not go with it")}
	}
	if ff.output != "" {
		return usageError{errors.New("--group: a member's outputs go to its --sink URIs (idempotent by output key), not to --output")}
	}
	if len(f.streams) > 0 {
		return usageError{errors.New("--group runs one stream: a configuration with several streams does not go with it")}
	}
	if f.durable.walDir == "" {
		return usageError{errors.New("--group needs --wal-dir: each partition's engine checkpoints through a WAL in a scratch folder under it")}
	}
	if f.durable.ckptInterval <= 0 {
		return usageError{errors.New("--group needs a positive --checkpoint-interval: it is how often a partition's state is saved to the object store")}
	}
	inst := g.instance
	if inst == "" {
		host, _ := os.Hostname()
		inst = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '-'
		}, host) + "-" + strconv.Itoa(os.Getpid())
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	nc, err := nats.Connect(ff.jsURL, nats.Name("qstream group "+g.name+" "+inst), nats.MaxReconnects(-1),
		nats.PingInterval(max(100*time.Millisecond, g.lease/4)), nats.MaxPingsOutstanding(2), nats.Timeout(g.lease))
	if err != nil {
		return fmt.Errorf("--group: connect %s: %w (is NATS with JetStream running? make services)", ff.jsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	state, err := cluster.OpenState(octx, js, g.name, g.replicas)
	if err != nil {
		return err
	}
	h := &groupHost{f: f, opers: opers, emit: emit, log: logger, stderr: stderr, inst: inst, state: state,
		tasks: map[int]*partTask{}, base: filepath.Join(f.durable.walDir, "group-"+g.name+"-"+inst),
		dlq: &countingDLQ{d: &sinks.DeadLetters{Stderr: stderr, MaxShown: maxStderrErrors, Prefix: "qstream: dead letter: ",
			More: "qstream: further dead letters are counted but not shown"}}}
	if err := os.RemoveAll(h.base); err != nil {
		return fmt.Errorf("--group: scratch folder: %w", err)
	}
	member, err := cluster.Join(octx, js, cluster.Config{Group: g.name, Instance: inst, Partitions: ff.jsPartitions,
		Lease: g.lease, Replicas: g.replicas, Logger: logger}, h)
	if err != nil {
		return err
	}
	h.member = member
	cancel()
	srv := h.serveHTTP(stderr)
	defer srv.close()
	fmt.Fprintf(stderr, "qstream: group %s: member %s over %d partitions of %s (lease %s, checkpoints every %s); Ctrl-C leaves the group\n",
		g.name, inst, ff.jsPartitions, ff.jsStream, g.lease, f.durable.ckptInterval)

	runCtx := ctx
	if f.duration > 0 {
		var c context.CancelFunc
		runCtx, c = context.WithTimeout(ctx, f.duration)
		defer c()
	}
	memberDone := make(chan error, 1)
	go func() { memberDone <- member.Run(runCtx) }()
	start := time.Now()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	var last groupTotals
	lastT := start
	for {
		select {
		case <-tick.C:
			last, lastT = h.printStatus(last, lastT)
		case err := <-memberDone:
			t := h.totals()
			fmt.Fprintf(stderr, "qstream: group %s: member %s left after %s: %d messages, %d outputs, %d checkpoints saved (%d failed, %d fenced)\n",
				g.name, inst, time.Since(start).Round(time.Millisecond), t.messages, t.outputs, h.saves.Load(), h.saveErrors.Load(), h.fencedSaves.Load())
			os.RemoveAll(h.base)
			return err
		}
	}
}

// Acquire implements cluster.Tasks: the task starts in the background.
func (h *groupHost) Acquire(p int, epoch uint64, fence *cluster.Fence) error {
	t := &partTask{h: h, p: p, epoch: epoch, fence: fence, dir: filepath.Join(h.base, "p"+strconv.Itoa(p)),
		stop: make(chan bool, 1), stopped: make(chan struct{})}
	h.mu.Lock()
	t.prev = h.tasks[p] // the new task waits for it to stop
	h.tasks[p] = t
	h.mu.Unlock()
	go t.run()
	return nil
}

// Release implements cluster.Tasks: it returns once the task has stopped
// (the member renews the claim meanwhile).
func (h *groupHost) Release(p int) {
	if t := h.end(p, true); t != nil {
		<-t.stopped
	}
}

// Revoke implements cluster.Tasks. It does not wait for the task to stop:
// the fence is already revoked, so the task publishes nothing more, and a
// slow stop must not hold up the renewal of the member's other claims.
func (h *groupHost) Revoke(p int) { h.end(p, false) }

func (h *groupHost) end(p int, release bool) *partTask {
	h.mu.Lock()
	t := h.tasks[p]
	h.mu.Unlock()
	if t == nil {
		return nil
	}
	select {
	case t.stop <- release:
	default:
	}
	go func() {
		<-t.stopped
		h.mu.Lock()
		if h.tasks[p] == t {
			delete(h.tasks, p)
		}
		h.mu.Unlock()
	}()
	return t
}

func (t *partTask) pubName() string { return "jetstream/p" + strconv.Itoa(t.p) }

// run is the task's life: load, consume and checkpoint, stop.
func (t *partTask) run() {
	defer close(t.stopped)
	if t.prev != nil {
		<-t.prev.stopped
		t.prev = nil
	}
	h := t.h
	log := h.log.With("partition", t.p, "epoch", t.epoch)
	claimed := time.Now()
	err := t.serve(log, claimed)
	if err != nil {
		log.Error("group: the partition's task failed; its claim is given up", "err", err)
		t.fence.Revoke()
		h.member.Drop(t.p)
	}
}

func (t *partTask) serve(log *slog.Logger, claimed time.Time) (err error) {
	h, f := t.h, t.h.f
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := os.RemoveAll(t.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(t.dir)

	// The newest checkpoint of the partition, if any.
	lctx, lcancel := context.WithTimeout(ctx, max(5*time.Second, f.group.lease))
	ref, data, found, err := h.state.Load(lctx, t.p)
	lcancel()
	if err != nil {
		return err
	}
	var ck *checkpoint.Checkpoint
	if found {
		if ck, err = checkpoint.Decode(data); err != nil {
			return fmt.Errorf("checkpoint %s: %w", ref.Object, err)
		}
	}

	symbols := codec.NewSymbolTable(f.maxSymbols)
	w, err := engine.OpenWAL(filepath.Join(t.dir, "wal"), wal.Options{Sync: wal.SyncGroup, GroupRecords: f.durable.groupRecords, GroupDelay: f.durable.groupInterval,
		OnFatal: func(err error) { h.member.Drop(t.p); log.Error("group: WAL failed", "err", err) }})
	if err != nil {
		return err
	}
	defer w.Close()
	var eng *engine.Engine
	sinkJSONL := h.opers.jsonl()
	sinkJSONL.Symbols = symbols
	sinkJSONL.Kinds = h.emit
	outs, err := openSinksGated(f.sinks.uris, sinkJSONL, filepath.Join(t.dir, "sinks"), nil, poisonTo(&eng), log, t.fence)
	if err != nil {
		return err
	}
	if len(outs.archive) > 0 {
		return usageError{errors.New("--group: archive:// sinks are per host; they do not go with a group")}
	}
	pipeCfg := h.opers.pipeline(symbols)
	shards := f.shards
	if shards <= 0 {
		shards = 1 // partitions are the unit of parallelism in a group
	}
	wait, _ := ring.ParseStrategy(f.wait)
	var output engine.OutputHandler
	if outs.set != nil {
		output = &saltedOutput{set: outs.set, salt: codec.Mix64(0x9E3779B97F4A7C15 ^ uint64(t.p+1))}
	}
	eng, err = engine.New(engine.Config{
		Shards: shards, Wait: wait, Symbols: symbols, OutOfOrderness: f.outOfOrderness, IdleTimeout: f.idleTimeout,
		Processors:  func(int) (engine.Processor, error) { return ops.NewPipeline(pipeCfg) },
		Output:      output,
		DeadLetters: h.dlq,
		Durability:  w,
		Checkpoints: &engine.CheckpointConfig{Dir: filepath.Join(t.dir, "checkpoints")},
		Logger:      log,
	})
	if err != nil {
		return err
	}
	outs.start()
	floor := uint64(0)
	if ck != nil {
		if _, err := eng.RestoreFrom(ctx, ck); err != nil {
			return err
		}
		srcs, err := engine.CheckpointSources(ck)
		if err != nil {
			return err
		}
		floor = srcs[t.pubName()]
	} else if err := eng.Start(); err != nil {
		return err
	}
	t.mu.Lock()
	t.eng, t.floor, t.restored = eng, floor, floor
	t.mu.Unlock()
	feed, err := feeds.NewJetStreamFeed(feeds.JetStreamConfig{
		Name: "jetstream", URL: f.feeds.jsURL, Stream: f.feeds.jsStream, SubjectPrefix: f.feeds.jsPrefix,
		Partitions: f.feeds.jsPartitions, Owned: []int{t.p}, Ordered: true, StartSeq: floor + 1, Logger: log,
		NATSOptions: []nats.Option{nats.Name("qstream " + h.inst + " p" + strconv.Itoa(t.p)), nats.MaxReconnects(-1)},
	})
	if err != nil {
		return err
	}
	pubs := feedhost.New(eng)
	fctx, fcancel := context.WithCancel(ctx)
	feedErr := make(chan error, 1)
	go func() { feedErr <- feed.Run(fctx, pubs) }()
	h.lastLoad.Store(int64(time.Since(claimed)))
	log.Info("group: partition running", "floor", floor, "checkpoint", ref.Object, "took", time.Since(claimed).Round(time.Microsecond))

	release := false
	tick := time.NewTicker(f.durable.ckptInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case release = <-t.stop:
			break loop
		case err = <-feedErr:
			feedErr = nil
			if err == nil {
				err = errors.New("the feed ended")
			}
			break loop
		case <-tick.C:
			if serr := t.save(ctx, eng, outs.set); serr != nil {
				log.Warn("group: checkpoint not saved", "err", serr)
			}
		}
	}
	fcancel()
	if feedErr != nil {
		if ferr := <-feedErr; ferr != nil && err == nil {
			log.Warn("group: feed", "err", ferr)
		}
	}
	pubs.DetachAll() // suspended, not ended: no window fires
	if release && err == nil && t.fence.Valid() {
		if serr := t.save(ctx, eng, outs.set); serr != nil {
			log.Warn("group: the last checkpoint before the handover was not saved; the next owner starts from the one before", "err", serr)
		}
	}
	t.fence.Revoke() // nothing more leaves this task
	// The sinks close first: a full queue of fenced writes must not hold
	// the collector, and with it the engine's stop.
	if outs.set != nil {
		for _, st := range outs.set.Stats() {
			log.Info("group: sink", "sink", st.Name, "state", st.State, "written", st.Written, "queued", st.Queued, "retries", st.Retries,
				"errors", st.Errors, "last_error", st.LastError, "writer", st.Writer)
		}
	}
	if cerr := outs.close(0, io.Discard); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		log.Debug("group: sinks", "err", cerr)
	}
	eng.StopCheckpoints()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	serr := eng.Stop(sctx)
	st := eng.Stats()
	h.mu.Lock()
	h.done.messages += st.Messages
	h.done.outputs += st.Outputs
	h.mu.Unlock()
	t.mu.Lock()
	t.eng = nil
	t.mu.Unlock()
	if err == nil && serr != nil && !errors.Is(serr, engine.ErrStopped) {
		log.Warn("group: engine stop", "err", serr)
	}
	fst := feed.Stats()
	log.Info("group: partition stopped", "release", release, "floor", t.savedFloor(), "fetched", fst.Fetched, "published", fst.Published,
		"rejected", fst.Rejected, "messages", st.Messages, "dead_letters", st.DeadLetters)
	return err
}

func (t *partTask) savedFloor() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.floor
}

// save checkpoints the engine and, once the sinks have every output of the
// events before the cut, saves it as the partition's newest (fenced).
func (t *partTask) save(ctx context.Context, eng *engine.Engine, set *sinks.Set) error {
	h := t.h
	if !t.fence.Valid() {
		h.fencedSaves.Add(1)
		return cluster.ErrFenced
	}
	info, err := eng.Checkpoint(ctx)
	if err != nil {
		h.saveErrors.Add(1)
		return err
	}
	data, err := os.ReadFile(info.Path)
	if err != nil {
		h.saveErrors.Add(1)
		return err
	}
	ck, err := checkpoint.Decode(data)
	if err != nil {
		h.saveErrors.Add(1)
		return err
	}
	srcs, err := engine.CheckpointSources(ck)
	if err != nil {
		h.saveErrors.Add(1)
		return err
	}
	floor := srcs[t.pubName()]
	t.mu.Lock()
	same := floor == t.floor
	t.mu.Unlock()
	if same {
		return nil // nothing new since the last one
	}
	if set != nil {
		wctx, cancel := context.WithTimeout(ctx, t.fence.Remaining())
		err := set.WaitDelivered(wctx, set.LastCut())
		cancel()
		if err != nil {
			h.saveErrors.Add(1)
			return fmt.Errorf("the sinks did not acknowledge the outputs before the cut within the lease: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, max(time.Second, t.fence.Remaining()))
	defer cancel()
	if _, err := h.state.Save(sctx, t.p, t.epoch, floor, h.inst, data, t.fence); err != nil {
		if errors.Is(err, cluster.ErrFenced) {
			h.fencedSaves.Add(1)
		} else {
			h.saveErrors.Add(1)
		}
		return err
	}
	h.saves.Add(1)
	t.mu.Lock()
	t.floor = floor
	t.mu.Unlock()
	return nil
}

// saltedOutput makes a partition's output keys its own: a window key hashes
// the symbol's id, which each partition's engine numbers from 1, so two
// partitions' keys would collide in a shared sink. The salt is the
// partition's, so every owner of the partition gives the same keys.
type saltedOutput struct {
	set  *sinks.Set
	salt uint64
}

func (s *saltedOutput) HandleOutputs(outs []ops.Output) error {
	for i := range outs {
		outs[i].Key = codec.Mix64(outs[i].Key ^ s.salt)
	}
	return s.set.HandleOutputs(outs)
}

func (s *saltedOutput) CheckpointOutput() ([]byte, error) { return s.set.CheckpointOutput() }
func (s *saltedOutput) RestoreOutput(hwm []byte) error    { return s.set.RestoreOutput(hwm) }

// totals sums the counters of running and ended tasks.
func (h *groupHost) totals() groupTotals {
	h.mu.Lock()
	t := h.done
	tasks := make([]*partTask, 0, len(h.tasks))
	for _, pt := range h.tasks {
		tasks = append(tasks, pt)
	}
	h.mu.Unlock()
	for _, pt := range tasks {
		pt.mu.Lock()
		if pt.eng != nil {
			st := pt.eng.Stats()
			t.messages += st.Messages
			t.outputs += st.Outputs
		}
		pt.mu.Unlock()
	}
	return t
}

func (h *groupHost) printStatus(last groupTotals, lastT time.Time) (groupTotals, time.Time) {
	now := time.Now()
	t := h.totals()
	ms := h.member.Stats()
	rate := float64(t.messages-last.messages) / now.Sub(lastT).Seconds()
	fmt.Fprintf(h.stderr, "%s %9.0f msg/s | group %s member %s | members %d | partitions %d %v | rebalances %d acquired %d released %d revoked %d | checkpoints saved %d failed %d fenced %d | outputs %d | dlq %d\n",
		now.Format("15:04:05"), rate, h.f.group.name, h.inst, len(ms.Members), len(ms.Owned), ms.Owned, ms.Rebalances,
		ms.Acquired, ms.Released, ms.Revoked, h.saves.Load(), h.saveErrors.Load(), h.fencedSaves.Load(), t.outputs, h.dlq.n.Load())
	return t, now
}

// groupHTTP serves /metrics, /healthz and /api/group for a member.
type groupHTTP struct{ srv *http.Server }

func (s *groupHTTP) close() {
	if s != nil && s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
	}
}

func (h *groupHost) serveHTTP(stderr io.Writer) *groupHTTP {
	ctl, err := listenHTTP(&h.f.http, stderr)
	if err != nil || ctl == nil {
		if err != nil {
			fmt.Fprintf(stderr, "qstream: group: %v\n", err)
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"group": h.f.group.name, "instance": h.inst}
	gauge := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, fn))
	}
	counter := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, fn))
	}
	gauge("qstream_group_partitions_owned", "Partitions this member holds.", func() float64 { return float64(len(h.member.Stats().Owned)) })
	gauge("qstream_group_members", "Live members this member sees.", func() float64 { return float64(len(h.member.Stats().Members)) })
	counter("qstream_group_rebalances_total", "Changes of the member list seen.", func() float64 { return float64(h.member.Stats().Rebalances) })
	counter("qstream_group_acquired_total", "Partitions claimed.", func() float64 { return float64(h.member.Stats().Acquired) })
	counter("qstream_group_released_total", "Partitions handed over cleanly.", func() float64 { return float64(h.member.Stats().Released) })
	counter("qstream_group_revoked_total", "Claims lost (lease passed or taken).", func() float64 { return float64(h.member.Stats().Revoked) })
	counter("qstream_group_checkpoints_saved_total", "Partition checkpoints saved to the object store.", func() float64 { return float64(h.saves.Load()) })
	counter("qstream_group_checkpoints_fenced_total", "Checkpoints refused by the fence.", func() float64 { return float64(h.fencedSaves.Load()) })
	counter("qstream_group_messages_total", "Messages processed by this member's partitions.", func() float64 { return float64(h.totals().messages) })
	gauge("qstream_group_last_takeover_seconds", "Time from a claim to consuming, of the last partition taken.", func() float64 { return time.Duration(h.lastLoad.Load()).Seconds() })
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/group", func(w http.ResponseWriter, _ *http.Request) {
		ms := h.member.Stats()
		type part struct {
			Partition int    `json:"partition"`
			Epoch     uint64 `json:"epoch"`
			Floor     uint64 `json:"floor"`
			Restored  uint64 `json:"restored_floor"`
		}
		var parts []part
		h.mu.Lock()
		for _, t := range h.tasks {
			t.mu.Lock()
			parts = append(parts, part{t.p, t.epoch, t.floor, t.restored})
			t.mu.Unlock()
		}
		h.mu.Unlock()
		slices.SortFunc(parts, func(a, b part) int { return a.Partition - b.Partition })
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"group": h.f.group.name, "instance": h.inst, "members": ms.Members, "owned": ms.Owned,
			"partitions": parts, "rebalances": ms.Rebalances, "acquired": ms.Acquired, "released": ms.Released, "revoked": ms.Revoked})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout, WriteTimeout: httpWriteTimeout}
	go srv.Serve(ctl.ln)
	return &groupHTTP{srv: srv}
}

// countingDLQ shows the first dead letters of every partition on stderr and
// counts them all.
type countingDLQ struct {
	d *sinks.DeadLetters
	n atomic.Uint64
}

func (c *countingDLQ) HandleDeadLetter(dl *engine.DeadLetter) {
	c.n.Add(1)
	c.d.HandleDeadLetter(dl)
}
