package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"qstream/codec"
	"qstream/config"
	"qstream/control"
	"qstream/engine"
	"qstream/feeds"
	"qstream/internal/feedhost"
	"qstream/ops"
	"qstream/sinks"
)

// Several streams in one `qstream run`. The first stream is the one run's
// flags (or the configuration's first stream) describe; the engine names it
// after --stream-name. Every other stream, from the configuration file or
// from POST /api/streams, is defined by the flags of its own `run` (its
// feeds, operators, sinks, --output), the configuration's StreamArgs: that
// list, with the stream's inline patterns, is its engine.StreamConfig.Spec,
// which the engine records in checkpoints for the streams started at run
// time. streamHost builds a stream's parts from it (the engine's
// StreamFactory), starts its feeds once recovery is done and stops it.
//
// The engine-wide settings stay the first stream's: a later stream may not
// ask for another number of shards, processing mode, batch, checkpoint
// interval, out-of-orderness, idle timeout or dead-letter output (its
// definition is refused, naming the field). archive:// sinks follow the
// whole WAL and belong to the first stream.

// streamSpec is a stream's engine.StreamConfig.Spec.
type streamSpec struct {
	Args     []string        `json:"args"`               // run's flags of the stream
	Patterns json.RawMessage `json:"patterns,omitempty"` // its inline patterns (a --patterns file's JSON list)
}

// streamRun is one stream after the first: its parts and its feeds.
type streamRun struct {
	id          engine.StreamID
	f           runFlags
	output      engine.OutputHandler // --output, or nil
	jsonl       sinks.JSONLConfig    // its outputs as lines (ProcessMessage's replies)
	closeOutput func() error
	sinks       *outputSinks
	feeds       *feedSet
	pubs        *feedhost.Publishers
	cancel      context.CancelFunc // ends its feeds
	done        chan struct{}      // closed when its feeds have returned and their publishers are closed or detached
	ended       bool               // its feeds completed: end of input (set before done closes)
}

// streamHost is run's side of the streams after the first.
type streamHost struct {
	base    *runFlags // the first stream's flags: the engine-wide settings
	symbols *codec.SymbolTable
	stdout  io.Writer
	stderr  io.Writer
	logger  *slog.Logger
	eng     **engine.Engine
	dur     *durable

	mu    sync.Mutex
	runs  map[engine.StreamID]*streamRun
	order []engine.StreamID
	ctx   context.Context // the feeds' context once started; nil before
	// jsonl is the first stream's line encoding (ProcessMessage's replies);
	// the others' is their streamRun's.
	jsonl sinks.JSONLConfig
	msgMu sync.Mutex // ProcessMessage's parser
	msgP  *codec.Parser
}

func newStreamHost(base *runFlags, symbols *codec.SymbolTable, eng **engine.Engine, stdout, stderr io.Writer, logger *slog.Logger) *streamHost {
	return &streamHost{base: base, symbols: symbols, eng: eng, stdout: stdout, stderr: stderr, logger: logger, runs: map[engine.StreamID]*streamRun{}}
}

// configStreams returns the engine definitions of the configuration's
// streams after the first.
func configStreams(c *config.Config) ([]engine.StreamConfig, error) {
	var out []engine.StreamConfig
	for i := 1; i < len(c.Streams); i++ {
		spec, err := streamSpecOf(c, i)
		if err != nil {
			return nil, err
		}
		out = append(out, engine.StreamConfig{ID: engine.StreamID(c.Streams[i].Name), Spec: spec})
	}
	return out, nil
}

func streamSpecOf(c *config.Config, i int) (json.RawMessage, error) {
	args, patterns, err := c.StreamArgs(i)
	if err != nil {
		return nil, err
	}
	return json.Marshal(streamSpec{Args: args, Patterns: patterns})
}

// parseSpec reads a stream's spec into run's flags, with its inline
// patterns in a temporary file for the length of the parse.
func (h *streamHost) parseSpec(id engine.StreamID, raw json.RawMessage) (*streamRun, *operators, error) {
	var spec streamSpec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, nil, fmt.Errorf("stream %q: its definition: %w", id, err)
	}
	args := spec.Args
	if len(spec.Patterns) > 0 {
		tmp, err := os.CreateTemp("", "qstream-stream-patterns-*.json")
		if err != nil {
			return nil, nil, err
		}
		defer os.Remove(tmp.Name())
		_, err = tmp.Write(spec.Patterns)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, nil, err
		}
		args = append(slices.Clip(args), "--patterns="+tmp.Name())
	}
	r := &streamRun{id: id}
	fs := runFlagSet(&r.f, io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, nil, fmt.Errorf("stream %q: %w", id, err)
	}
	if err := h.sameEngine(&r.f); err != nil {
		return nil, nil, fmt.Errorf("stream %q: %w", id, err)
	}
	emit, err := parseEmit(r.f.emit)
	if err != nil || (emit.stats && r.f.emit != "all") {
		return nil, nil, fmt.Errorf("stream %q: emit %q: want a list of indicators, windows, patterns, news, events (or all)", id, r.f.emit)
	}
	opers, err := r.f.ops.parse(h.base.maxSymbols, true)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %q: %w", id, err)
	}
	opers.withText(emit.kinds[ops.OutNews], emit.kinds[ops.OutEvent])
	return r, opers, nil
}

// checkStreams checks the definitions of the configuration's streams
// after the first (f.streams) against the first's flags.
func checkStreams(f *runFlags) error {
	h := &streamHost{base: f}
	seen := map[engine.StreamID]bool{}
	for _, sc := range f.streams {
		if seen[sc.ID] {
			return fmt.Errorf("two streams named %q", sc.ID)
		}
		seen[sc.ID] = true
		if _, _, err := h.parseSpec(sc.ID, sc.Spec); err != nil {
			return err
		}
	}
	return nil
}

// sameEngine refuses a stream whose engine-wide settings differ from the
// first stream's.
func (h *streamHost) sameEngine(f *runFlags) error {
	b := h.base
	for _, c := range []struct {
		field     string
		same      bool
		got, want any
	}{
		{"parallelism (--shards)", f.shards == b.shards, f.shards, b.shards},
		{"processing_mode (--mode)", f.mode == b.mode, f.mode, b.mode},
		{"batch_size (--batch-size)", f.batchSize == b.batchSize, f.batchSize, b.batchSize},
		{"max_latency (--batch-timeout)", f.batchTimeout == b.batchTimeout, f.batchTimeout, b.batchTimeout},
		{"checkpoint_interval (--checkpoint-interval)", f.durable.ckptInterval == b.durable.ckptInterval, f.durable.ckptInterval, b.durable.ckptInterval},
		{"event_time.out_of_orderness (--out-of-orderness)", f.outOfOrderness == b.outOfOrderness, f.outOfOrderness, b.outOfOrderness},
		{"event_time.idle_timeout (--idle-timeout)", f.idleTimeout == b.idleTimeout, f.idleTimeout, b.idleTimeout},
		{"error_handling (--dlq-dir)", f.durable.dlqDir == b.durable.dlqDir, f.durable.dlqDir, b.durable.dlqDir},
	} {
		if !c.same {
			return fmt.Errorf("%s is %v, but the streams share the engine of the first stream, which has %v", c.field, c.got, c.want)
		}
	}
	for _, u := range f.sinks.uris {
		if strings.HasPrefix(u, "archive:") {
			return errors.New("archive:// sinks follow the whole WAL: give them to the first stream")
		}
	}
	return nil
}

// factory is the engine's StreamFactory: it builds a stream's operators,
// --output and sinks (not its feeds: start does, after recovery).
func (h *streamHost) factory(cfg engine.StreamConfig) (engine.StreamParts, error) {
	r, opers, err := h.parseSpec(cfg.ID, cfg.Spec)
	if err != nil {
		return engine.StreamParts{}, err
	}
	if r.feeds, err = buildFeeds(&r.f, os.Getenv); err != nil {
		return engine.StreamParts{}, fmt.Errorf("stream %q: %w", cfg.ID, err)
	}
	emit, _ := parseEmit(r.f.emit)
	outJSONL := opers.jsonl()
	outJSONL.Kinds = emit.kinds
	if r.f.emit == "all" {
		outJSONL.Kinds = nil
	}
	r.output, r.closeOutput, err = openRunOutput(r.f.feeds.output, h.symbols, outJSONL, h.stdout)
	if err != nil {
		return engine.StreamParts{}, fmt.Errorf("stream %q: %w", cfg.ID, err)
	}
	sinkJSONL := opers.jsonl()
	sinkJSONL.Symbols = h.symbols
	r.jsonl = sinkJSONL
	stateDir := sinkStateDir(&r.f.sinks, h.base.durable.walDir)
	if stateDir != "" {
		stateDir = filepath.Join(stateDir, "stream-"+string(cfg.ID))
	}
	r.sinks, err = openSinks(r.f.sinks.uris, sinkJSONL, stateDir, r.output, poisonTo(h.eng), h.logger)
	if err != nil {
		r.closeOutput()
		return engine.StreamParts{}, fmt.Errorf("stream %q: %w", cfg.ID, err)
	}
	r.sinks.start()
	pipe := opers.pipeline(h.symbols)
	h.mu.Lock()
	if old := h.runs[cfg.ID]; old != nil {
		h.mu.Unlock()
		r.sinks.close(h.base.sinks.drain, h.stderr)
		r.closeOutput()
		return engine.StreamParts{}, fmt.Errorf("%w: %q", engine.ErrStreamExists, cfg.ID)
	}
	h.runs[cfg.ID] = r
	h.order = append(h.order, cfg.ID)
	h.mu.Unlock()
	return engine.StreamParts{
		Processors: func(int) (engine.Processor, error) { return ops.NewPipeline(pipe) },
		Output:     r.sinks.output(r.output),
	}, nil
}

// forget drops a stream whose start failed after the factory built it.
func (h *streamHost) forget(id engine.StreamID) {
	h.mu.Lock()
	r := h.runs[id]
	delete(h.runs, id)
	h.order = slices.DeleteFunc(h.order, func(x engine.StreamID) bool { return x == id })
	h.mu.Unlock()
	if r != nil {
		r.sinks.close(h.base.sinks.drain, h.stderr)
		r.closeOutput()
	}
}

// startAll starts the feeds of every stream built so far (the
// configuration's and the recovered ones); streams started later start
// theirs at once. ctx ends them.
func (h *streamHost) startAll(ctx context.Context) error {
	h.mu.Lock()
	h.ctx = ctx
	ids := slices.Clone(h.order)
	h.mu.Unlock()
	for _, id := range ids {
		if err := h.start(id); err != nil {
			return err
		}
	}
	return nil
}

// start begins a built stream's output and feeds.
func (h *streamHost) start(id engine.StreamID) error {
	h.mu.Lock()
	r, ctx := h.runs[id], h.ctx
	h.mu.Unlock()
	if r == nil || ctx == nil || r.done != nil {
		return nil
	}
	if fo, ok := r.output.(*sinks.FileOutput); ok {
		if err := fo.Begin(); err != nil {
			return fmt.Errorf("stream %q: %w", id, err)
		}
	}
	eng := *h.eng
	if h.dur.wal != nil {
		for i, fd := range r.feeds.feeds {
			if syn, ok := fd.(*feeds.Synthetic); ok {
				from, _ := eng.SourceOffset(string(id) + ":" + syn.Name())
				r.feeds.feeds[i] = &durableSynthetic{syn: syn, from: from, rate: r.f.rate, f: &r.f.durable}
			}
		}
	}
	r.pubs = &feedhost.Publishers{E: eng, Stream: id}
	fctx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		err := r.feeds.run(fctx, r.pubs, h.stderr)
		if err == nil && fctx.Err() == nil {
			r.ended = true
			r.pubs.CloseAll() // the end of its input: every window fires
			fmt.Fprintf(h.stderr, "qstream: stream %s: its feeds completed\n", id)
			return
		}
		if err != nil {
			fmt.Fprintf(h.stderr, "qstream: stream %s: %v\n", id, err)
		}
		r.pubs.DetachAll() // suspended: the next start resumes it
	}()
	fmt.Fprintf(h.stderr, "qstream: stream %s: running: %s\n", id, r.feeds.describe(&r.f))
	return nil
}

// startDynamic is POST /api/streams: body is one stream of the
// configuration file (YAML or JSON).
func (h *streamHost) startDynamic(_ context.Context, body []byte) (engine.StreamID, error) {
	dir, _ := os.Getwd()
	c, err := config.ParseStreamConfig("POST /api/streams", dir, body)
	if err != nil {
		return "", &control.ConfigError{Err: err}
	}
	spec, err := streamSpecOf(c, 0)
	if err != nil {
		return "", &control.ConfigError{Err: err}
	}
	id := engine.StreamID(c.Streams[0].Name)
	// Check the definition before the engine records it.
	if _, _, err := h.parseSpec(id, spec); err != nil {
		return "", &control.ConfigError{Err: err}
	}
	if _, err := (*h.eng).StartStream(engine.StreamConfig{ID: id, Spec: spec}); err != nil {
		if !errors.Is(err, engine.ErrStreamExists) {
			h.forget(id)
		}
		return "", err
	}
	return id, h.start(id)
}

// processMessage is POST /api/streams/{id}/messages: body is one JSON
// message of the feeds' format; the reply is the JSON list of the lines of
// the outputs its processing made (engine.ProcessMessage).
func (h *streamHost) processMessage(ctx context.Context, id engine.StreamID, body []byte) (json.RawMessage, error) {
	eng := *h.eng
	info, err := eng.StreamInfo(id)
	if err != nil {
		return nil, err
	}
	jcfg := h.jsonl
	if info.Index != 0 {
		h.mu.Lock()
		r := h.runs[info.ID]
		h.mu.Unlock()
		if r == nil {
			return nil, fmt.Errorf("%w: %q", engine.ErrUnknownStream, id)
		}
		jcfg = r.jsonl
	}
	h.msgMu.Lock()
	if h.msgP == nil {
		h.msgP = codec.NewParser(codec.ParserOptions{Symbols: h.symbols})
	}
	var ev codec.Event
	err = h.msgP.ParseJSON(bytes.TrimSpace(body), &ev)
	text := slices.Clone(h.msgP.Text())
	h.msgMu.Unlock()
	if err != nil {
		reason := codec.ReasonMalformed
		var ce *codec.Error
		if errors.As(err, &ce) {
			reason = ce.Reason
		}
		return nil, &control.MessageError{Reason: reason.String(), Err: err}
	}
	outs, err := eng.ProcessMessage(ctx, info.ID, &ev, text)
	var rej *engine.RejectedError
	if errors.As(err, &rej) {
		return nil, &control.MessageError{Rejected: true, Reason: rej.Reason.String(), Err: err}
	}
	if err != nil {
		return nil, err
	}
	w := sinks.NewJSONLWriter(nil, jcfg)
	b := []byte{'['}
	for i := 0; i < len(outs); i += ops.GroupLen(&outs[i]) {
		n := len(b)
		if n > 1 {
			b = append(b, ',')
		}
		if line := bytes.TrimSpace(w.AppendGroup(nil, outs[i:])); len(line) > 0 {
			b = append(b, line...)
		} else {
			b = b[:n]
		}
	}
	return append(b, ']'), nil
}

// stop ends a stream: its feeds stop and close (the end of its input), the
// engine fires its windows and delivers its outputs, its sinks drain.
func (h *streamHost) stop(id engine.StreamID) error {
	h.mu.Lock()
	r := h.runs[id]
	h.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%w: %q", engine.ErrUnknownStream, id)
	}
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.pubs.CloseAll()
	}
	ctx, cancel := context.WithTimeout(context.Background(), hardStopAfter)
	defer cancel()
	err := (*h.eng).StopStream(ctx, id)
	h.mu.Lock()
	delete(h.runs, id)
	h.order = slices.DeleteFunc(h.order, func(x engine.StreamID) bool { return x == id })
	h.mu.Unlock()
	if cerr := r.sinks.close(h.base.sinks.drain, h.stderr); err == nil {
		err = cerr
	}
	if cerr := r.closeOutput(); err == nil {
		err = cerr
	}
	fmt.Fprintf(h.stderr, "qstream: stream %s: stopped\n", id)
	return err
}

// waitEnded waits until the feeds of every stream have returned (their
// input ended, or they failed) and reports whether they did before ctx
// ended. A run whose first stream's input is complete ends when every
// stream's is.
func (h *streamHost) waitEnded(ctx context.Context) bool {
	for {
		h.mu.Lock()
		var wait chan struct{}
		for _, r := range h.runs {
			if r.done == nil {
				continue
			}
			select {
			case <-r.done:
			default:
				wait = r.done
			}
		}
		h.mu.Unlock()
		if wait == nil {
			return ctx.Err() == nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-wait:
		case <-time.After(50 * time.Millisecond): // streams started meanwhile
		}
	}
}

// stopFeeds ends every stream's feeds (interrupt or the end of the run)
// and waits for them; their publishers are detached (or closed when their
// input ended).
func (h *streamHost) stopFeeds() {
	h.mu.Lock()
	runs := make([]*streamRun, 0, len(h.runs))
	for _, r := range h.runs {
		runs = append(runs, r)
	}
	h.mu.Unlock()
	for _, r := range runs {
		if r.cancel != nil {
			r.cancel()
			<-r.done
		}
	}
}

// close drains every stream's sinks and closes its output, after the
// engine stopped.
func (h *streamHost) close() error {
	h.mu.Lock()
	runs := h.runs
	h.runs = map[engine.StreamID]*streamRun{}
	h.mu.Unlock()
	ids := make([]string, 0, len(runs))
	for id := range runs {
		ids = append(ids, string(id))
	}
	sort.Strings(ids)
	var first error
	for _, id := range ids {
		r := runs[engine.StreamID(id)]
		if err := r.sinks.close(h.base.sinks.drain, h.stderr); err != nil && first == nil {
			first = fmt.Errorf("stream %s: sinks: %w", id, err)
		}
		if err := r.closeOutput(); err != nil && first == nil {
			first = fmt.Errorf("stream %s: output: %w", id, err)
		}
	}
	return first
}

// sinkStats adds the sinks of the streams after the first, named
// "<stream>:<sink>", to the first stream's (first): the control API's
// sinks and /metrics' qstream_sink_* cover every stream.
func (h *streamHost) sinkStats(first func() []sinks.SinkStats) func() []sinks.SinkStats {
	return func() []sinks.SinkStats {
		out := first()
		h.each(func(r *streamRun) {
			for _, st := range r.sinks.sinkStats() {
				st.Name = string(r.id) + ":" + st.Name
				out = append(out, st)
			}
		})
		return out
	}
}

// feedStats is sinkStats for the feeds' byte counters.
func (h *streamHost) feedStats(first func() []control.FeedStats) func() []control.FeedStats {
	return func() []control.FeedStats {
		out := first()
		h.each(func(r *streamRun) {
			for _, st := range r.feeds.byteStats() {
				st.Name = string(r.id) + ":" + st.Name
				out = append(out, st)
			}
		})
		return out
	}
}

// each calls fn with every running stream after the first, in start order.
func (h *streamHost) each(fn func(r *streamRun)) {
	h.mu.Lock()
	runs := make([]*streamRun, 0, len(h.order))
	for _, id := range h.order {
		if r := h.runs[id]; r != nil {
			runs = append(runs, r)
		}
	}
	h.mu.Unlock()
	for _, r := range runs {
		fn(r)
	}
}

// status is the status line's part about the streams after the first.
func (h *streamHost) status(b *strings.Builder, e *engine.Engine) {
	list := e.Streams()
	if len(list) < 2 {
		return
	}
	b.WriteString(" | streams")
	for _, s := range list {
		if s.State == engine.StreamStopped {
			continue
		}
		m, err := e.StreamMetrics(s.ID)
		if err != nil {
			continue
		}
		fmt.Fprintf(b, " %s %d", s.ID, m.Messages)
		if s.State != engine.StreamRunning {
			fmt.Fprintf(b, " (%s)", s.State)
		}
	}
}
