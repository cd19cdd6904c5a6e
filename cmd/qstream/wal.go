package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"qstream/checkpoint"
	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/internal/failpoint"
	"qstream/sinks"
	"qstream/wal"
)

// The wal and dlq commands are registered here rather than in main.go's
// list; this file's init runs after main.go's.
// Default locations of `qstream run`'s durable state.
const (
	defaultDataDir       = "qstream-data"
	defaultWALDir        = defaultDataDir + "/wal"
	defaultCheckpointDir = defaultDataDir + "/checkpoints"
	defaultDLQDir        = defaultDataDir + "/dlq"
)

// siblingCheckpoints is where the checkpoints of a WAL directory live by
// default: <parent>/checkpoints, when it exists.
func siblingCheckpoints(walDir string) string {
	d := filepath.Join(filepath.Dir(filepath.Clean(walDir)), "checkpoints")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

func cmdWAL(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "inspect" {
		fmt.Fprintf(stderr, "Usage: qstream wal inspect [--checkpoint-dir DIR] [--records] DIR\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return 0
		}
		return 2
	}
	fs := flag.NewFlagSet("wal inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ckDir := fs.String("checkpoint-dir", "", "checkpoint directory to list (default: the WAL directory's sibling \"checkpoints\", if any)")
	records := fs.Bool("records", false, "also read every record: counts by type, event-time range")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: qstream wal inspect [flags] DIR

Reports a WAL directory without changing it: each segment with its LSN
range, record count and state (sealed, open, torn tail, CORRUPT), a torn
tail that opening the WAL would truncate, corruption that would refuse the
start (segment and byte offset), leftover files, and the checkpoints with
the LSN each covers. The last line is the verdict: "status: ok", or the
status with the reason why a start would fail: the WAL is corrupt, a
checkpoint is ahead of the WAL, or no usable checkpoint covers the records
before the WAL's first LSN (or the records or checkpoints cannot be read).
The exit status is 0 exactly when the status is ok, and 1 otherwise.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	dir := fs.Arg(0)
	rep, err := wal.Inspect(dir)
	if err != nil {
		fmt.Fprintf(stderr, "qstream wal inspect: %v\n", err)
		return 1
	}
	if err := rep.WriteDetails(stdout); err != nil {
		fmt.Fprintf(stderr, "qstream wal inspect: %v\n", err)
		return 1
	}
	var problems []string
	if c := rep.Corruption; c != nil {
		problems = append(problems, fmt.Sprintf("CORRUPT: Open refuses to start (%v)", c))
	}
	if *records {
		if err := writeRecordCounts(stdout, dir); err != nil {
			fmt.Fprintf(stdout, "records: %v\n", err)
			problems = append(problems, fmt.Sprintf("records unreadable (%v)", err))
		}
	}
	if *ckDir == "" {
		*ckDir = siblingCheckpoints(dir)
	}
	if *ckDir != "" {
		problems = append(problems, writeCheckpoints(stdout, *ckDir, rep)...)
	} else {
		fmt.Fprintln(stdout, "checkpoints: none found (give --checkpoint-dir)")
	}
	// One verdict for the WAL and the checkpoints together, agreeing
	// with the exit status.
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "status: %s\n", strings.Join(problems, "; "))
		return 1
	}
	fmt.Fprintln(stdout, "status: ok")
	return 0
}

// writeCheckpoints lists the checkpoints and whether the WAL still holds
// what each needs, and returns what would make a start fail (nil if
// nothing): a checkpoint ahead of the WAL, or no usable checkpoint while the
// WAL no longer starts at LSN 1. A damaged checkpoint with a usable one
// before it is only listed: recovery skips it.
func writeCheckpoints(w io.Writer, dir string, rep *wal.Report) []string {
	var problems []string
	infos, err := checkpoint.List(dir)
	if err != nil {
		fmt.Fprintf(w, "checkpoints %s: %v\n", dir, err)
		return []string{fmt.Sprintf("checkpoints unreadable (%v)", err)}
	}
	fmt.Fprintf(w, "checkpoints %s: %d\n", dir, len(infos))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tlsn\tbytes\tsections\tcreated\tstate")
	newestValid := -1
	for i, in := range infos {
		state := "ok"
		switch {
		case in.Err != nil:
			state = "UNUSABLE: " + in.Err.Error()
		case rep.LastLSN < in.LSN:
			state = fmt.Sprintf("AHEAD OF THE WAL (ends at %d)", rep.LastLSN)
			problems = append(problems, fmt.Sprintf("checkpoint %d is ahead of the WAL (it covers LSN %d, the WAL ends at %d): recovery refuses to start", in.ID, in.LSN, rep.LastLSN))
		case in.LSN+1 < rep.FirstLSN:
			state = fmt.Sprintf("WAL pruned past it (starts at %d)", rep.FirstLSN)
		default:
			newestValid = i
		}
		created := "-"
		if in.CreatedNs > 0 {
			created = time.Unix(0, in.CreatedNs).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\n", in.ID, in.LSN, in.Size, in.Sections, created, state)
	}
	tw.Flush()
	switch {
	case newestValid >= 0:
		in := infos[newestValid]
		fmt.Fprintf(w, "recovery would load checkpoint %d and replay LSN %d..%d\n", in.ID, in.LSN+1, rep.LastLSN)
	case len(infos) > 0 && rep.FirstLSN > 1:
		fmt.Fprintln(w, "recovery: no usable checkpoint")
		problems = append(problems, fmt.Sprintf("no usable checkpoint (of %d, none is valid and within the WAL, which starts at LSN %d; the records before it are only in a checkpoint): recovery refuses to start", len(infos), rep.FirstLSN))
	case len(infos) > 0:
		fmt.Fprintf(w, "recovery: no usable checkpoint; it would replay the whole WAL (LSN 1..%d)\n", rep.LastLSN)
	}
	return problems
}

// writeRecordCounts reads every record and prints counts by type and the
// event-time range.
func writeRecordCounts(w io.Writer, dir string) error {
	r, err := wal.OpenReader(dir, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	var n [5]int64
	other, batches, inBatches, badBatches := int64(0), int64(0), int64(0), int64(0)
	minTs, maxTs := int64(0), int64(0)
	var ev codec.Event
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch rec.Type {
		case engine.RecordEvent:
			if _, err := codec.DecodeStoredFrame(rec.Payload, &ev); err == nil {
				if n[1] == 0 || ev.TsNs < minTs {
					minTs = ev.TsNs
				}
				maxTs = max(maxTs, ev.TsNs)
			}
			n[1]++
		case engine.RecordEventBatch:
			batches++
			if err := engine.DecodeEventBatch(rec.Payload, func(ev *codec.Event) error {
				if n[1] == 0 || ev.TsNs < minTs {
					minTs = ev.TsNs
				}
				maxTs = max(maxTs, ev.TsNs)
				n[1]++
				inBatches++
				return nil
			}); err != nil {
				badBatches++
			}
		case engine.RecordSymbol, engine.RecordWatermark, engine.RecordSource:
			n[rec.Type]++
		default:
			other++
		}
	}
	fmt.Fprintf(w, "records: %d events, %d symbols, %d watermarks, %d publishers, %d other\n", n[1], n[2], n[3], n[4], other)
	if batches > 0 {
		fmt.Fprintf(w, "event batches: %d records holding %d of the events\n", batches, inBatches)
	}
	if badBatches > 0 {
		fmt.Fprintf(w, "damaged batch records: %d\n", badBatches)
	}
	if n[1] > 0 {
		fmt.Fprintf(w, "event time: %s .. %s\n", time.Unix(0, minTs).UTC().Format(time.RFC3339Nano), time.Unix(0, maxTs).UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// walFrom is where `qstream replay --format wal` starts.
type walFrom struct {
	lsn     uint64
	timeNs  int64
	hasTime bool
}

func parseWALFrom(lsn uint64, t string) (walFrom, error) {
	f := walFrom{lsn: lsn}
	if t == "" {
		return f, nil
	}
	if lsn != 0 {
		return f, usageError{errors.New("--from-lsn and --from-time exclude each other")}
	}
	ns, err := codec.ParseTimestamp([]byte(t))
	if err != nil {
		return f, usageError{fmt.Errorf("--from-time %q: want RFC 3339 or integer nanoseconds: %w", t, err)}
	}
	f.timeNs, f.hasTime = ns, true
	return f, nil
}

// walReader adapts engine.WALEvents to feeds.Reader: a record it cannot
// replay becomes a *feeds.RecordError (counted, dead-lettered) and the
// replay goes on.
type walReader struct {
	w *engine.WALEvents
}

func openWALReader(dir string, symbols *codec.SymbolTable, from walFrom) (feeds.Reader, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("input: --format wal needs a WAL directory: %s", dir)
	}
	w, err := engine.OpenWALEvents(dir, engine.WALEventsOptions{Symbols: symbols, FromLSN: from.lsn,
		FromTimeNs: from.timeNs, HasFromTime: from.hasTime, CheckpointDir: siblingCheckpoints(dir)})
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return walReader{w}, nil
}

func (r walReader) Next(ev *codec.Event) error {
	err := r.w.Next(ev)
	var re *engine.WALRecordError
	if errors.As(err, &re) {
		return &feeds.RecordError{Pos: codec.Position{Offset: int64(re.LSN)}, Raw: re.Raw, Err: re.Err}
	}
	return err
}

func (r walReader) Close() error { return r.w.Close() }

// isWALDir reports whether path is a directory holding WAL segments.
func isWALDir(path string) bool {
	ents, err := os.ReadDir(path)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n := e.Name(); len(n) == 20 && filepath.Ext(n) == ".wal" {
			if _, err := strconv.ParseUint(n[:16], 16, 64); err == nil {
				return true
			}
		}
	}
	return false
}

// durableFlags are run's flags for the WAL, checkpoints, dedup and the DLQ,
// and the synthetic feed's resume and acknowledgement options.
type durableFlags struct {
	walDir, sync, checkpointDir  string
	groupRecords                 int
	groupInterval, ckptInterval  time.Duration
	dedupHorizon                 int
	dlqDir, dlqNATSURL, dlqNATSS string
	ackFile                      string
	ackEvery, resend, flushEvery uint64
	finalCheckpoint              bool
	walBatches                   bool
}

func (d *durableFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.walDir, "wal-dir", defaultWALDir, "write-ahead log directory; every event is logged before processing, and recovery replays it after a crash (\"\" turns the WAL, checkpoints and recovery off)")
	fs.StringVar(&d.sync, "sync", "group", "WAL sync policy: group (fdatasync every --group-records records or --group-interval, whichever first), always (every append waits for its sync), none (the OS decides)")
	fs.IntVar(&d.groupRecords, "group-records", wal.DefaultGroupRecords, "WAL group commit: records per fdatasync at most")
	fs.DurationVar(&d.groupInterval, "group-interval", wal.DefaultGroupDelay, "WAL group commit: longest wait of a record for its fdatasync")
	fs.StringVar(&d.checkpointDir, "checkpoint-dir", defaultCheckpointDir, "checkpoint directory (with --wal-dir)")
	fs.DurationVar(&d.ckptInterval, "checkpoint-interval", 10*time.Second, "time between checkpoints of all operator state; WAL segments older than the kept checkpoints are deleted (0: only after recovery and at --final-checkpoint)")
	fs.IntVar(&d.dedupHorizon, "dedup-horizon", 1<<16, "per shard, how many recent message ids (per feed: a resend on any connection of a feed is a duplicate) are remembered to drop redelivered duplicates (0: off; with --wal-dir)")
	fs.StringVar(&d.dlqDir, "dlq-dir", defaultDLQDir, "dead-letter segments: every rejected input with its reason, source and offset (\"\": stderr only); see `qstream dlq`")
	fs.StringVar(&d.dlqNATSURL, "dlq-nats-url", "", "also publish every dead letter as JSON to NATS at this URL (needs --dlq-nats-subject)")
	fs.StringVar(&d.dlqNATSS, "dlq-nats-subject", "", "NATS subject of the dead letters")
	fs.StringVar(&d.ackFile, "ack-file", "", "synthetic feed: append each acknowledged offset (a line per --ack-every messages, written once they are durable) to this file")
	fs.Uint64Var(&d.ackEvery, "ack-every", 0, "synthetic feed: wait for durability (Barrier) and acknowledge every this many messages (0: never)")
	fs.Uint64Var(&d.resend, "resend", 0, "synthetic feed: after recovery, resume this many messages before the durable offset, as an at-least-once upstream re-sending unacknowledged messages does; dedup drops them")
	fs.Uint64Var(&d.flushEvery, "flush-every", 256, "synthetic feed: make events visible and advance the watermark every this many messages (at fixed offsets, so runs are reproducible)")
	fs.BoolVar(&d.finalCheckpoint, "final-checkpoint", false, "when a finite feed (--count) completes, take a checkpoint before ending the input")
	fs.BoolVar(&d.walBatches, "wal-batches", true, "log the events a feed makes visible together as one WAL record (about 39 bytes an event instead of 100; off with an archive sink); --wal-batches=false logs a record per event")
}

// durable is run's WAL, DLQ and their reporting.
type durable struct {
	f     *durableFlags
	wal   *engine.WAL
	dlq   *sinks.DeadLetters
	nc    *nats.Conn
	acks  *os.File
	synth *durableSynthetic
}

// openDurable opens the DLQ (always, unless --dlq-dir is empty) and the WAL
// (unless --wal-dir is empty) and fills in cfg. A failed write or fsync of
// the WAL later ends the process with status 1: recovery runs on the next
// start.
func openDurable(f *durableFlags, cfg *engine.Config, symbols *codec.SymbolTable, stderr io.Writer) (*durable, error) {
	// Dead letters: the first ones on stderr, every one into the DLQ
	// segments, and optionally to NATS.
	d := &durable{f: f, dlq: &sinks.DeadLetters{Stderr: stderr, MaxShown: maxStderrErrors, Prefix: "qstream: dead letter: ",
		More: "qstream: further dead letters are counted and stored but not shown"}}
	cfg.DeadLetters = d.dlq
	if f.dlqDir != "" {
		store, err := sinks.OpenDLQ(f.dlqDir, sinks.DLQOptions{}, symbols)
		if err != nil {
			return nil, err
		}
		d.dlq.Store = store
	}
	if f.dlqNATSURL != "" || f.dlqNATSS != "" {
		if f.dlqNATSURL == "" || f.dlqNATSS == "" {
			d.close(stderr)
			return nil, usageError{errors.New("--dlq-nats-url and --dlq-nats-subject go together")}
		}
		nc, err := nats.Connect(f.dlqNATSURL, nats.Timeout(5*time.Second), nats.MaxReconnects(-1))
		if err != nil {
			d.close(stderr)
			return nil, fmt.Errorf("--dlq-nats-url: %w", err)
		}
		d.nc = nc
		d.dlq.NATS, _ = sinks.NewDLQNATS(nc, f.dlqNATSS, symbols)
	}
	if f.walDir == "" {
		return d, nil
	}
	pol, err := wal.ParseSyncPolicy(f.sync)
	if err != nil {
		d.close(stderr)
		return nil, usageError{fmt.Errorf("--sync: %w", err)}
	}
	if f.groupRecords < 1 || f.groupInterval <= 0 {
		d.close(stderr)
		return nil, usageError{errors.New("--group-records and --group-interval must be positive")}
	}
	w, err := engine.OpenWAL(f.walDir, wal.Options{Sync: pol, GroupRecords: f.groupRecords, GroupDelay: f.groupInterval,
		OnFatal: func(err error) {
			fmt.Fprintf(stderr, "qstream: %v\nqstream: a failed WAL write or fsync is never retried; exiting with status 1: recovery runs on the next start\n", err)
			os.Exit(1)
		}})
	if err != nil {
		d.close(stderr)
		return nil, fmt.Errorf("--wal-dir: %w", err)
	}
	d.wal = w
	cfg.Durability = w
	cfg.Checkpoints = &engine.CheckpointConfig{Dir: f.checkpointDir, Interval: f.ckptInterval}
	cfg.DedupHorizon = f.dedupHorizon
	if f.ackFile != "" {
		if d.acks, err = os.OpenFile(f.ackFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			d.close(stderr)
			return nil, fmt.Errorf("--ack-file: %w", err)
		}
	}
	return d, nil
}

// describe is the start-up line's part about durability.
func (d *durable) describe() string {
	if d.wal == nil {
		return "no WAL"
	}
	f := d.f
	s := fmt.Sprintf("WAL %s (sync %s", f.walDir, f.sync)
	if f.sync == "group" {
		s += fmt.Sprintf(": %d records or %s", f.groupRecords, f.groupInterval)
	}
	s += fmt.Sprintf("), checkpoints %s every %s", f.checkpointDir, f.ckptInterval)
	if f.dlqDir != "" {
		s += ", dead letters " + f.dlqDir
	}
	return s
}

// recover replaces Engine.Start for a durable run and reports what it did.
func (d *durable) recover(ctx context.Context, eng *engine.Engine, stderr io.Writer) error {
	if d.wal == nil {
		return eng.Start()
	}
	rep, err := eng.Recover(ctx)
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(stopCtx)
		return err
	}
	for _, sk := range rep.Skipped {
		fmt.Fprintf(stderr, "qstream: recovery skipped checkpoint %d: %v\n", sk.ID, sk.Err)
	}
	if t := rep.WAL.Torn; t != nil {
		fmt.Fprintf(stderr, "qstream: WAL: torn tail of %s at offset %d (%d bytes) truncated; copy kept in %s\n", t.Segment, t.Offset, t.Length, t.CopyPath)
	}
	from := "the start"
	if rep.Checkpoint != nil {
		from = fmt.Sprintf("checkpoint %d (LSN %d)", rep.Checkpoint.ID, rep.Checkpoint.LSN)
	}
	fmt.Fprintf(stderr, "qstream: recovered from %s: replayed %d events and %d watermarks up to LSN %d (%d already in the checkpoint) in %s\n",
		from, rep.Events, rep.Watermarks, rep.ToLSN, rep.Filtered, rep.Took.Round(time.Millisecond))
	names := make([]string, 0, len(rep.Sources))
	for n := range rep.Sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stderr, "qstream: resume %s after offset %d\n", n, rep.Sources[n])
	}
	return nil
}

// wrapFeeds makes the synthetic feed resumable when the WAL is on.
func (d *durable) wrapFeeds(set *feedSet, eng *engine.Engine, rate int) {
	if d.wal == nil {
		return
	}
	for i, fd := range set.feeds {
		if syn, ok := fd.(*feeds.Synthetic); ok {
			from, _ := eng.SourceOffset(syn.Name())
			d.synth = &durableSynthetic{syn: syn, from: from, rate: rate, f: d.f, acks: d.acks}
			set.feeds[i] = d.synth
		}
	}
}

// status is the status line's part about durability.
func (d *durable) status(st engine.Stats) string {
	var b []byte
	if d.wal != nil {
		c := st.Durability.Checkpoints
		b = fmt.Appendf(b, " | wal lsn %d durable %d | ckpt", st.Durability.LastLSN, st.Durability.DurableLSN)
		if c.Taken == 0 {
			b = append(b, " none"...)
		} else {
			b = fmt.Appendf(b, " #%d %s ago", c.LastID, time.Since(time.Unix(0, c.LastUnixNs)).Round(100*time.Millisecond))
		}
		if c.Failed > 0 {
			b = fmt.Appendf(b, " (%d failed)", c.Failed)
		}
	}
	return string(b)
}

// close flushes and closes the DLQ, the NATS connection, the ack file and
// the WAL. Call it after the engine has stopped.
func (d *durable) close(stderr io.Writer) {
	if d.dlq != nil && d.dlq.Store != nil {
		if err := d.dlq.Store.Close(); err != nil {
			fmt.Fprintf(stderr, "qstream: %v\n", err)
		}
		fmt.Fprintf(stderr, "qstream: %d dead letters written to %s\n", d.dlq.Store.Count(), d.f.dlqDir)
	}
	if d.nc != nil {
		d.dlq.NATS.Flush()
		d.nc.Close()
	}
	if d.acks != nil {
		d.acks.Close()
	}
	if d.wal != nil {
		if err := d.wal.Close(); err != nil {
			fmt.Fprintf(stderr, "qstream: WAL: %v\n", err)
		}
	}
}

// durableSynthetic runs the synthetic market as a resumable source: it
// starts after the offset recovery reports (less --resend), numbers its
// events by offset (Seq, and the message id, the offset's decimal, hashed
// into IDHash for output keys), makes them visible at fixed offsets, and
// acknowledges every --ack-every messages once they are durable. Its ids
// are its offsets, so its Publisher says so (feeds.OffsetIDPublishers): the
// engine drops the resent events by Seq, not by looking their ids up.
type durableSynthetic struct {
	syn  *feeds.Synthetic
	from uint64
	rate int
	f    *durableFlags
	acks *os.File
}

func (d *durableSynthetic) Name() string { return d.syn.Name() }

func (d *durableSynthetic) Run(ctx context.Context, pubs feeds.Publishers) error {
	if err := d.syn.Intern(pubs.Symbols()); err != nil {
		return err
	}
	var pub feeds.Publisher
	var err error
	if op, ok := pubs.(feeds.OffsetIDPublishers); ok {
		pub, err = op.NewOffsetIDPublisher(d.syn.Name())
	} else {
		pub, err = pubs.NewPublisher(d.syn.Name())
	}
	if err != nil {
		return err
	}
	var ev codec.Event
	start := d.from - min(d.from, d.f.resend)
	for i := uint64(0); i < start && d.syn.Fill(&ev); i++ {
	}
	flushEvery := max(1, d.f.flushEvery)
	rate := d.rate
	var tick *time.Ticker
	perTick := int(flushEvery)
	if rate > 0 {
		tick = time.NewTicker(time.Millisecond)
		defer tick.Stop()
	}
	var owed float64
	var ackBuf []byte
	var ids codec.DecimalIDHasher // HashID of the decimal offset, one multiply per event
	claims, ok := pub.(batchClaimer)
	if !ok {
		claims = &publishClaimer{pub: pub}
	}
	seq := ev.Seq // the last offset filled
	for {
		if tick != nil {
			select {
			case <-ctx.Done():
				return pub.Flush()
			case <-tick.C:
			}
			owed += float64(rate) / 1000
			perTick = int(owed)
			owed -= float64(perTick)
		} else if ctx.Err() != nil {
			return pub.Flush()
		}
		// The events are filled in batches that end where an event is
		// followed by a flush or an acknowledgement (fixed offsets), and
		// published with one call (one lock of a durable Publisher).
		for j := 0; j < perTick; {
			n := min(perTick-j, int(flushEvery-seq%flushEvery))
			if d.f.ackEvery > 0 {
				n = min(n, int(d.f.ackEvery-seq%d.f.ackEvery))
			}
			evs, err := claims.ClaimBatch(n)
			if err != nil {
				return err
			}
			k := 0
			for ; k < len(evs) && d.syn.Fill(&evs[k]); k++ {
				evs[k].IDHash = ids.Hash(evs[k].Seq)
			}
			if k > 0 {
				seq = evs[k-1].Seq
			}
			if err := claims.CommitBatch(k); err != nil {
				return err
			}
			if k < len(evs) {
				return d.finish(ctx, pub, seq, &ackBuf)
			}
			j += k
			if seq%flushEvery == 0 {
				if err := pub.Flush(); err != nil {
					return err
				}
			}
			if d.f.ackEvery > 0 && seq%d.f.ackEvery == 0 {
				if err := d.ack(ctx, pub, seq, &ackBuf); err != nil {
					return err
				}
			}
		}
		if tick != nil {
			if err := pub.Flush(); err != nil {
				return err
			}
		}
	}
}

// batchClaimer is the engine's Publisher as a feed fills events in place
// and publishes them together (engine.Publisher.ClaimBatch, CommitBatch).
type batchClaimer interface {
	ClaimBatch(n int) ([]codec.Event, error)
	CommitBatch(k int) error
}

// publishClaimer is a batchClaimer over Publish, for a Publisher that is
// not the engine's.
type publishClaimer struct {
	pub feeds.Publisher
	evs [256]codec.Event
}

func (c *publishClaimer) ClaimBatch(n int) ([]codec.Event, error) {
	return c.evs[:min(max(n, 1), len(c.evs))], nil
}

func (c *publishClaimer) CommitBatch(k int) error {
	for i := range c.evs[:k] {
		if err := c.pub.Publish(&c.evs[i]); err != nil {
			return err
		}
	}
	return nil
}

// ack waits until everything published is durable, then records offset as
// acknowledged: what an upstream may forget.
func (d *durableSynthetic) ack(ctx context.Context, pub feeds.Publisher, offset uint64, buf *[]byte) error {
	if err := pub.Barrier(ctx); err != nil {
		return err
	}
	failpoint.AckAfterSync.Hit()
	if d.acks != nil {
		*buf = strconv.AppendUint((*buf)[:0], offset, 10)
		*buf = append(*buf, '\n')
		if _, err := d.acks.Write(*buf); err != nil {
			return fmt.Errorf("ack file: %w", err)
		}
	}
	return nil
}

// finish acknowledges the last messages of a finite feed.
func (d *durableSynthetic) finish(ctx context.Context, pub feeds.Publisher, last uint64, buf *[]byte) error {
	if err := pub.Flush(); err != nil {
		return err
	}
	if d.f.ackEvery > 0 && last > 0 {
		return d.ack(ctx, pub, last, buf)
	}
	return nil
}
