package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/ops"
	"qstream/sinks"
)

// sinkFlags are the --sink flags of run and replay.
type sinkFlags struct {
	uris  stringList
	dir   string
	drain time.Duration
}

func (s *sinkFlags) register(fs *flag.FlagSet, drainDefault time.Duration, withDir bool) {
	fs.Var(&s.uris, "sink", "also write every output to this sink, asynchronously and once per output key (repeatable): "+
		"redis://HOST:PORT[/DB][?ttl=60s], clickhouse://HOST:9000/DB, clickhouse+http://HOST:8123/DB, nats://HOST:4222, "+
		"ws://HOST:PORT/PATH[?token=T], archive://DIR (the raw input events); every sink also takes "+
		"full=spill|block|shed, buffer=N, spill_max=SIZE, batch=N, linger=DUR, retries=N, breaker_timeout=DUR (see README)")
	if withDir {
		fs.StringVar(&s.dir, "sink-dir", "", "where sinks keep their spill and checkpointed queues (default: sinks/ beside --wal-dir; without a WAL a temporary directory)")
	}
	fs.DurationVar(&s.drain, "sink-drain", drainDefault, "at stop, how long the sinks may take to deliver what they queued (what is left stays in their spill for the next start when the WAL is on)")
}

// outputSinks is the wiring of the --sink flags: the asynchronous sinks
// in a sinks.Set with the primary output, and the archive of input events.
type outputSinks struct {
	set     *sinks.Set
	tmpDir  string   // removed at close
	archive []string // archive:// URIs
}

// openSinks builds the sinks of uris (not connected yet: a server that is
// down at start is retried by its sink). stateDir "" takes a temporary
// directory, removed at close. poison gets the outputs a writer refuses.
func openSinks(uris []string, jcfg sinks.JSONLConfig, stateDir string, primary engine.OutputHandler, poison sinks.PoisonFunc, log *slog.Logger) (*outputSinks, error) {
	return openSinksGated(uris, jcfg, stateDir, primary, poison, log, nil)
}

// openSinksGated is openSinks with every write fenced by gate (nil: none):
// a scale-out group's partition (group.go).
func openSinksGated(uris []string, jcfg sinks.JSONLConfig, stateDir string, primary engine.OutputHandler, poison sinks.PoisonFunc, log *slog.Logger, gate sinks.Gate) (*outputSinks, error) {
	o := &outputSinks{}
	if len(uris) == 0 {
		return o, nil
	}
	if stateDir == "" {
		d, err := os.MkdirTemp("", "qstream-sinks-")
		if err != nil {
			return nil, fmt.Errorf("--sink: %w", err)
		}
		stateDir, o.tmpDir = d, d
	}
	only := jcfg.Kinds // the sinks get what --output gets (the Set filters)
	jcfg.Kinds = nil
	env := sinks.Env{JSONL: jcfg, Logger: log, Gate: gate}
	var list []*sinks.Sink
	seen := map[string]bool{}
	for _, u := range uris {
		if strings.HasPrefix(u, "archive://") {
			o.archive = append(o.archive, u)
			continue
		}
		s, err := sinks.OpenSink(u, env, stateDir, poison)
		if err != nil {
			o.removeTmp()
			return nil, usageError{err}
		}
		if seen[s.Name()] {
			o.removeTmp()
			return nil, usageError{fmt.Errorf("--sink %s given twice", s.Name())}
		}
		seen[s.Name()] = true
		list = append(list, s)
	}
	if len(list) > 0 {
		o.set = sinks.NewSet(primary, list)
		if only != nil {
			o.set.OnlyKinds(only)
		}
	}
	return o, nil
}

func (o *outputSinks) removeTmp() {
	if o.tmpDir != "" {
		os.RemoveAll(o.tmpDir)
	}
}

// output returns the engine's output: the Set when there are sinks, else
// primary.
func (o *outputSinks) output(primary engine.OutputHandler) engine.OutputHandler {
	if o.set != nil {
		return o.set
	}
	return primary
}

// start starts the sinks' writers; before recovery, whose replay feeds them.
func (o *outputSinks) start() {
	if o.set != nil {
		o.set.Start()
	}
}

// close lets the sinks deliver what they queued, for at most drain, and
// reports what they could not.
func (o *outputSinks) close(drain time.Duration, stderr io.Writer) error {
	defer o.removeTmp()
	if o.set == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := o.set.Close(ctx)
	for _, st := range o.set.Stats() {
		fmt.Fprintf(stderr, "qstream: sink %s: %d delivered in %d batches, %d retries, %d errors, %d shed, %d poisoned, deepest queue %d%s\n",
			st.Name, st.Written, st.Batches, st.Retries, st.Errors, st.Shed, st.Poisoned, st.MaxDepth, st.Writer)
	}
	return err
}

// status appends the sinks' part of the status line.
func (o *outputSinks) status(b *strings.Builder) {
	if o.set != nil {
		b.Write(o.set.AppendStatus(nil))
	}
}

// sinkStateDir is where run's sinks keep their state: --sink-dir, else
// sinks/ beside the WAL directory ("" without a WAL: a temporary one).
func sinkStateDir(f *sinkFlags, walDir string) string {
	if f.dir != "" || walDir == "" {
		return f.dir
	}
	return filepath.Join(filepath.Dir(filepath.Clean(walDir)), "sinks")
}

// poisonTo returns the PoisonFunc that hands refused outputs to the
// engine's dead letters once *eng is set.
func poisonTo(eng **engine.Engine) sinks.PoisonFunc {
	return func(o *ops.Output, reason codec.Reason, err error) {
		if e := *eng; e != nil {
			e.DeadLetterOutput(o, reason, err)
		}
	}
}

// archives are the archive:// sinks: the raw input events in rotating
// compressed files. In run they follow the WAL (every acknowledged event,
// once, at its LSN, across crashes); in replay they take the events read.
type archives struct {
	list      []*sinks.Archive
	uploaders []*sinks.S3Uploader // per archive with s3=: nil for the others
	upCancel  context.CancelFunc
	upDone    chan error
	followers []*sinks.WALFollower
	started   atomic.Bool
	cancel    context.CancelFunc
	done      chan error
}

// openArchives opens the archives of uris (none: an empty set).
func openArchives(uris []string, symbols *codec.SymbolTable, log *slog.Logger) (*archives, error) {
	a := &archives{}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			a.close(io.Discard)
			return nil, usageError{fmt.Errorf("--sink %s: %w", raw, err)}
		}
		loc, deleteLocal, err := archiveS3(u)
		if err != nil {
			a.close(io.Discard)
			return nil, usageError{fmt.Errorf("--sink %s: %w", raw, err)}
		}
		dir, opts, err := sinks.ArchiveURL(u)
		if err != nil {
			a.close(io.Discard)
			return nil, usageError{fmt.Errorf("--sink %s: %w", raw, err)}
		}
		var up *sinks.S3Uploader
		if loc != "" {
			if up, err = sinks.NewS3Uploader(dir, loc, sinks.S3UploaderOptions{DeleteLocal: deleteLocal, Logger: log}); err != nil {
				a.close(io.Discard)
				return nil, usageError{fmt.Errorf("--sink %s: %w", raw, err)}
			}
		}
		opts.Symbols, opts.Logger = symbols, log
		ar, err := sinks.OpenArchive(dir, opts)
		if err != nil {
			a.close(io.Discard)
			return nil, fmt.Errorf("--sink %s: %w", raw, err)
		}
		a.list = append(a.list, ar)
		a.uploaders = append(a.uploaders, up)
	}
	return a, nil
}

// archiveS3 takes an archive URL's S3 parameters out of it: s3=BUCKET[/PREFIX]
// ships the archive's complete files there (sinks.S3Uploader) with
// s3_region, s3_endpoint, s3_profile (the standard chain otherwise) and
// s3_delete_local=true to remove shipped files. loc is "" without s3=.
func archiveS3(u *url.URL) (loc string, deleteLocal bool, err error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", false, err
	}
	target := q.Get("s3")
	s3q := url.Values{}
	for _, k := range []string{"region", "endpoint", "profile"} {
		if v := q.Get("s3_" + k); v != "" {
			s3q.Set(k, v)
		}
		q.Del("s3_" + k)
	}
	if v := q.Get("s3_delete_local"); v != "" {
		if deleteLocal, err = strconv.ParseBool(v); err != nil {
			return "", false, fmt.Errorf("s3_delete_local=%q: want true or false", v)
		}
	}
	q.Del("s3_delete_local")
	q.Del("s3")
	u.RawQuery = q.Encode()
	if target == "" {
		if len(s3q) > 0 || deleteLocal {
			return "", false, errors.New("s3_* parameters without s3=BUCKET[/PREFIX]")
		}
		return "", false, nil
	}
	loc = "s3://" + strings.Trim(target, "/")
	if len(s3q) > 0 {
		loc += "?" + s3q.Encode()
	}
	if _, err := feeds.ParseS3URL(loc); err != nil {
		return "", false, err
	}
	return loc, deleteLocal, nil
}

// retain is engine.CheckpointConfig.RetainWAL: the WAL keeps what the
// followers have not archived (everything until they started).
func (a *archives) retain() uint64 {
	if !a.started.Load() {
		return 0
	}
	lsn := ^uint64(0)
	for _, f := range a.followers {
		lsn = min(lsn, f.RetainLSN())
	}
	return lsn
}

// follow starts following the WAL, after recovery.
func (a *archives) follow(walDir string, durable func() uint64, symbols *codec.SymbolTable, log *slog.Logger) error {
	if len(a.list) == 0 {
		return nil
	}
	for _, ar := range a.list {
		f, err := sinks.NewWALFollower(walDir, ar, sinks.FollowOptions{Durable: durable, Symbols: symbols, Logger: log})
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		a.followers = append(a.followers, f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan error, len(a.followers))
	for _, f := range a.followers {
		go func() { a.done <- f.Run(ctx) }()
	}
	a.started.Store(true)
	// s3=: the complete files go to S3 as they rotate (and at close).
	uctx, ucancel := context.WithCancel(context.Background())
	a.upCancel, a.upDone = ucancel, make(chan error, len(a.uploaders))
	for _, up := range a.uploaders {
		if up != nil {
			go func() { a.upDone <- up.Run(uctx, 0) }()
		}
	}
	return nil
}

// appendEvent archives one event read by replay.
func (a *archives) appendEvent(ev *codec.Event) error {
	for _, ar := range a.list {
		if err := ar.Append(ev); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	return nil
}

// close stops the followers (each catches up with the durable WAL first)
// and closes the archives.
func (a *archives) close(stderr io.Writer) error {
	var errs []error
	if a.cancel != nil {
		a.cancel()
		for range a.followers {
			if err := <-a.done; err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
		a.cancel = nil
	}
	if a.upCancel != nil {
		a.upCancel()
		for _, up := range a.uploaders {
			if up != nil {
				<-a.upDone // its last Sync's error is logged by Run; the one below reports
			}
		}
		a.upCancel = nil
	}
	for i, ar := range a.list {
		if err := ar.Close(); err != nil {
			errs = append(errs, err)
		}
		st := ar.Stats()
		fmt.Fprintf(stderr, "qstream: archive: %d events in %d files, %d bytes\n", st.Events, st.Files, st.Bytes)
		if up := a.uploaders[i]; up != nil {
			// Close completed the last file: ship it too.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := up.Sync(ctx); err != nil {
				errs = append(errs, fmt.Errorf("archive upload to %s: %w (the next start uploads what the manifest lacks)", up.Location(), err))
			}
			cancel()
			us := up.Stats()
			fmt.Fprintf(stderr, "qstream: archive: %d files (%d bytes) in %s\n", us.Files, us.Bytes, up.Location())
		}
	}
	a.list, a.uploaders = nil, nil
	return errors.Join(errs...)
}

// status appends the archives' part of the status line.
func (a *archives) status(b *strings.Builder) {
	for _, ar := range a.list {
		b.WriteString(" | archive")
		b.Write(ar.AppendStatus(nil))
	}
}
