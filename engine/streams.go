package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"qstream/codec"
	"qstream/internal/rate"
	"qstream/ops"
)

// Streams. An engine runs one or more named streams on the same shards.
// Each stream has its own operator chain in every shard (its processors),
// its own sources (the Publishers created for it), its own watermark (the
// minimum over its own sources only, so a slow or paused stream holds back
// no other) and its own output handler; it is paused, resumed and stopped on
// its own. What the streams share: the shards and their rings, the symbol
// table, the WAL and the checkpoints.
//
// The first stream (index 0) is the one Config.Processors and Config.Output
// describe, named Config.StreamName ("default" when empty; the id "default"
// always names it too). More come from Config.Streams at New (static: the
// configuration brings them back at each start) or from StartStream while
// the engine runs (dynamic: recorded in checkpoints with their definition,
// so recovery starts them again before it loads their state). Both are
// built by Config.StreamFactory from a StreamConfig's Spec, a declarative
// definition the engine stores but does not read.
//
// A Publisher belongs to the stream its name names: NewStreamPublisher(id,
// name) creates "<id>:<name>", and a name without a known stream prefix
// belongs to the first stream. The name is what the WAL logs, so recovery
// gives each replayed source back to its stream.

// MaxStreams bounds the streams an engine runs in its lifetime (stopped
// ones included).
const MaxStreams = 64

// MaxStreamIDLen bounds a stream id.
const MaxStreamIDLen = 64

// StreamConfig defines a stream for StartStream or Config.Streams.
type StreamConfig struct {
	// ID names the stream: 1..MaxStreamIDLen of [A-Za-z0-9_.-], unique
	// among the engine's live streams, not "default".
	ID StreamID
	// Spec is the stream's declarative definition (JSON): its sources,
	// operators and sinks as Config.StreamFactory reads them. StartStream
	// records it in checkpoints.
	Spec json.RawMessage
}

// StreamParts are what Config.StreamFactory builds for a stream.
type StreamParts struct {
	Processors ProcessorFactory // required: each shard's operator chain for the stream
	Output     OutputHandler    // the stream's outputs; nil discards them (counted)
}

// StreamFactory builds a stream's parts from its definition: at New for
// Config.Streams, at StartStream, and again at recovery for the streams a
// checkpoint records.
type StreamFactory func(cfg StreamConfig) (StreamParts, error)

// Errors of the stream API (wrapped).
var (
	ErrStreamExists  = errors.New("engine: a stream with this id runs")
	ErrStreamID      = errors.New("engine: invalid stream id")
	ErrStreamState   = errors.New("engine: the stream cannot do this in its state")
	ErrNoFactory     = errors.New("engine: no Config.StreamFactory to build streams with")
	ErrStreamLimit   = errors.New("engine: stream limit reached")
	ErrStreamTimeout = errors.New("engine: the stream did not process the message in time")
)

// StreamState is a stream's lifecycle state.
type StreamState uint32

// Stream states.
const (
	StreamRunning  StreamState = iota
	StreamPaused               // its publishers block; its rings drain
	StreamStopping             // StopStream waits for its publishers and outputs
	StreamStopped              // ended: every window fired, outputs delivered
)

func (s StreamState) String() string {
	switch s {
	case StreamPaused:
		return "paused"
	case StreamStopping:
		return "stopping"
	case StreamStopped:
		return "stopped"
	}
	return "running"
}

// stream is the engine's record of one stream.
type stream struct {
	id      StreamID
	idx     int
	spec    json.RawMessage
	dynamic bool // started through StartStream: recorded in the defs
	output  OutputHandler
	state   atomic.Uint32 // StreamState
	// paused is the gate every Publisher of the stream checks before it
	// publishes (one atomic load); gate wakes them on resume.
	paused    atomic.Bool
	gateMu    sync.Mutex
	gate      *sync.Cond
	delivered atomic.Uint64 // outputs handed to its handler (text chunks not counted)
	tput      *rate.Ring    // processed counts once a second (ThroughputStats)
	startedAt time.Time

	patterns *patternRegistry // api_patterns.go; nil when its processors cannot host patterns

	apiMu sync.Mutex // ProcessMessage: one at a time per stream
	api   *Publisher // its API publisher, created by the first ProcessMessage
}

func newStream(id StreamID, idx int, spec json.RawMessage, output OutputHandler) *stream {
	st := &stream{id: id, idx: idx, spec: spec, output: output, tput: newThroughputRing(), startedAt: time.Now()}
	st.gate = sync.NewCond(&st.gateMu)
	return st
}

func (st *stream) State() StreamState { return StreamState(st.state.Load()) }

// setPaused opens or closes the gate.
func (st *stream) setPaused(p bool) {
	st.gateMu.Lock()
	st.paused.Store(p)
	st.gate.Broadcast()
	st.gateMu.Unlock()
}

// ValidStreamID checks a stream id for StartStream and Config.Streams:
// 1..MaxStreamIDLen of [A-Za-z0-9_.-], not "default".
func ValidStreamID(id StreamID) error {
	if len(id) == 0 || len(id) > MaxStreamIDLen || id == DefaultStream {
		return fmt.Errorf("%w: %q (1..%d characters, not %q)", ErrStreamID, id, MaxStreamIDLen, DefaultStream)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: %q has %q (letters, digits, '_', '-', '.')", ErrStreamID, id, c)
		}
	}
	return nil
}

// streamList returns the streams, index = stream index.
func (e *Engine) streamList() []*stream { return *e.strms.Load() }

// lookup returns the live (not stopped) stream id names.
func (e *Engine) lookup(id StreamID) (*stream, error) {
	list := e.streamList()
	if id == "" || id == DefaultStream || id == list[0].id {
		return list[0], nil
	}
	for i := len(list) - 1; i > 0; i-- {
		if list[i].id == id && list[i].State() != StreamStopped {
			return list[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownStream, id)
}

// streamOfName returns the stream a Publisher name belongs to (see above).
// A name whose prefix is a valid stream id but no live stream's is an error
// for recovery (its stream is gone) and the first stream otherwise.
func (e *Engine) streamOfName(name string) (*stream, bool) {
	list := e.streamList()
	i := strings.IndexByte(name, ':')
	if i <= 0 || strings.IndexByte(name[:i], '/') >= 0 {
		return list[0], true
	}
	id := StreamID(name[:i])
	if ValidStreamID(id) != nil {
		return list[0], true
	}
	for k := len(list) - 1; k > 0; k-- {
		if list[k].id == id && list[k].State() != StreamStopped {
			return list[k], true
		}
	}
	return list[0], false
}

// StreamInfo describes a stream.
type StreamInfo struct {
	ID      StreamID
	Index   int
	State   StreamState
	Dynamic bool            // started through StartStream (recorded in checkpoints)
	Spec    json.RawMessage // its definition; nil for the first stream
	Started time.Time
}

// Streams lists the engine's streams, the first stream first, stopped ones
// included.
func (e *Engine) Streams() []StreamInfo {
	list := e.streamList()
	out := make([]StreamInfo, len(list))
	for i, st := range list {
		out[i] = StreamInfo{ID: st.id, Index: st.idx, State: st.State(), Dynamic: st.dynamic, Spec: st.spec, Started: st.startedAt}
	}
	return out
}

// StreamInfo returns one stream's description.
func (e *Engine) StreamInfo(id StreamID) (StreamInfo, error) {
	st, err := e.lookup(id)
	if err != nil {
		return StreamInfo{}, err
	}
	return StreamInfo{ID: st.id, Index: st.idx, State: st.State(), Dynamic: st.dynamic, Spec: st.spec, Started: st.startedAt}, nil
}

// StartStream builds a stream from cfg with Config.StreamFactory, gives
// every shard its processor and starts it: its Publishers
// (NewStreamPublisher) can publish once it returns. The definition is
// recorded in checkpoints (a checkpoint is taken before it returns when
// checkpoints are configured), so recovery starts it again. Errors wrap
// ErrStreamID, ErrStreamExists, ErrNoFactory, ErrStreamLimit, ErrStopped or
// the factory's error.
func (e *Engine) StartStream(cfg StreamConfig) (StreamID, error) {
	if e.stopping.Load() {
		return "", ErrStopped
	}
	commit := e.lockDefs()
	err := e.startStream(cfg, true)
	if err == nil {
		e.addDef(definition{Kind: "stream", Stream: cfg.ID, Spec: cfg.Spec})
	}
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return cfg.ID, nil
}

// startStream builds and registers a stream. Serialised by e.streamMu.
func (e *Engine) startStream(cfg StreamConfig, dynamic bool) error {
	if err := ValidStreamID(cfg.ID); err != nil {
		return err
	}
	if e.cfg.StreamFactory == nil {
		return ErrNoFactory
	}
	e.streamMu.Lock()
	defer e.streamMu.Unlock()
	if _, err := e.lookup(cfg.ID); err == nil {
		return fmt.Errorf("%w: %q", ErrStreamExists, cfg.ID)
	}
	list := e.streamList()
	if len(list) >= MaxStreams {
		return fmt.Errorf("%w: %d", ErrStreamLimit, MaxStreams)
	}
	parts, err := e.cfg.StreamFactory(cfg)
	if err != nil {
		return fmt.Errorf("engine: stream %q: %w", cfg.ID, err)
	}
	if parts.Processors == nil {
		return fmt.Errorf("engine: stream %q: the factory gave no processors", cfg.ID)
	}
	idx := len(list)
	parts2 := make([]*shardStream, len(e.shards))
	for i := range e.shards {
		proc, err := parts.Processors(i)
		if err != nil {
			return fmt.Errorf("engine: stream %q: shard %d processor: %w", cfg.ID, i, err)
		}
		if e.cfg.Checkpoints != nil {
			if _, ok := proc.(StatefulProcessor); !ok {
				return fmt.Errorf("%w: stream %q: checkpoints need every processor to implement engine.StatefulProcessor (shard %d's is %T)", ErrConfig, cfg.ID, i, proc)
			}
		}
		parts2[i] = newShardStream(e, idx, proc)
	}
	if err := e.onShardsRaw(func(s *shard) error { s.addStream(parts2[s.id]); return nil }); err != nil {
		return err
	}
	st := newStream(cfg.ID, idx, slices.Clone(cfg.Spec), parts.Output)
	st.dynamic = dynamic
	st.patterns = newPatternRegistry(e, parts2[0].proc)
	next := append(slices.Clip(list), st)
	e.strms.Store(&next)
	return nil
}

// NewStreamPublisher returns a Publisher of stream id for one producing
// goroutine, named "<id>:<name>" (just name for the first stream).
func (e *Engine) NewStreamPublisher(id StreamID, name string) (*Publisher, error) {
	return e.NewStreamPublisherWith(id, name, PublisherOptions{})
}

// NewStreamPublisherWith is NewStreamPublisher for a source with the given
// properties (PublisherOptions).
func (e *Engine) NewStreamPublisherWith(id StreamID, name string, opts PublisherOptions) (*Publisher, error) {
	st, err := e.lookup(id)
	if err != nil {
		return nil, err
	}
	if s := st.State(); s == StreamStopping || s == StreamStopped {
		return nil, fmt.Errorf("%w: stream %q is %s", ErrStreamState, id, s)
	}
	if st.idx != 0 {
		name = string(st.id) + ":" + name
	}
	return e.newPublisherWith(name, false, false, opts)
}

// PauseStream stops the stream's intake: each of its Publishers blocks at
// its next Publish (after making visible what it had published) until
// ResumeStream, so its rings drain and its operators see nothing new;
// nothing is dropped, and the other streams run on. Backpressure reaches
// its feeds as with full rings. Checkpoints go on. Paused is not recorded:
// a restart runs the stream.
func (e *Engine) PauseStream(id StreamID) error {
	st, err := e.lookup(id)
	if err != nil {
		return err
	}
	if !st.state.CompareAndSwap(uint32(StreamRunning), uint32(StreamPaused)) && st.State() != StreamPaused {
		return fmt.Errorf("%w: stream %q is %s", ErrStreamState, id, st.State())
	}
	st.setPaused(true)
	return nil
}

// ResumeStream undoes PauseStream.
func (e *Engine) ResumeStream(id StreamID) error {
	st, err := e.lookup(id)
	if err != nil {
		return err
	}
	if !st.state.CompareAndSwap(uint32(StreamPaused), uint32(StreamRunning)) && st.State() != StreamRunning {
		return fmt.Errorf("%w: stream %q is %s", ErrStreamState, id, st.State())
	}
	st.setPaused(false)
	return nil
}

// StreamPaused reports whether the stream is paused.
func (e *Engine) StreamPaused(id StreamID) bool {
	st, err := e.lookup(id)
	return err == nil && st.paused.Load()
}

// resumeAllStreams opens every gate (Stop, Resume).
func (e *Engine) resumeAllStreams() {
	for _, st := range e.streamList() {
		st.state.CompareAndSwap(uint32(StreamPaused), uint32(StreamRunning))
		st.setPaused(false)
	}
}

// waitGate blocks a Publisher of a paused stream until it is resumed, the
// engine stops or the Publisher closes. It first makes visible what the
// Publisher has published, so that the stream's rings drain.
func (p *Publisher) waitGate() {
	if p.replay {
		return
	}
	_ = p.Flush()
	st := p.stream
	st.gateMu.Lock()
	for st.paused.Load() && !p.e.stopping.Load() && !p.ended.Load() {
		st.gate.Wait()
	}
	st.gateMu.Unlock()
}

// StopStream ends a stream: it stops taking Publishers, waits for its
// Publishers to end (close them first: a feed's Close sends the end of
// input; ctx bounds the wait), fires every open window of the stream (the
// end of its input) and returns once its outputs are delivered. Its
// definition leaves the checkpoints (one is taken), so a restart does not
// start it again; a stream of Config.Streams comes back with the
// configuration. Stopping the first stream stops the engine (Stop).
func (e *Engine) StopStream(ctx context.Context, id StreamID) error {
	st, err := e.lookup(id)
	if err != nil {
		return err
	}
	if st.idx == 0 {
		return e.Stop(ctx)
	}
	for {
		s := st.State()
		if s == StreamStopping || s == StreamStopped {
			return fmt.Errorf("%w: stream %q is %s", ErrStreamState, id, s)
		}
		if st.state.CompareAndSwap(uint32(s), uint32(StreamStopping)) {
			break
		}
	}
	st.setPaused(false)
	st.apiMu.Lock()
	if st.api != nil {
		st.api.Close() // ProcessMessage's publisher: the stream's end is its end
	}
	st.apiMu.Unlock()
	// Its publishers end, then the shards take what they published (the
	// end of a closed one's input included) before the end fires.
	for !e.streamPublishersEnded(st) || !e.streamInputsDrained(st) {
		select {
		case <-ctx.Done():
			st.state.Store(uint32(StreamRunning))
			return fmt.Errorf("engine: stop stream %q: its publishers are still open or not drained: %w", id, ctx.Err())
		default:
			waitBriefly()
		}
	}
	commit := e.lockDefs()
	err = e.onShardsRaw(func(s *shard) error {
		s.endStream(s.strs[st.idx])
		return nil
	})
	if err == nil {
		e.removeDefs(st.id)
	}
	// The outputs the end fired are in the shards' rings: wait for the
	// collector to deliver them.
	for err == nil && !e.streamDelivered(st) {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("engine: stop stream %q: outputs not delivered: %w", id, ctx.Err())
		case <-e.failed:
			err = e.Err()
		default:
			waitBriefly()
		}
	}
	st.state.Store(uint32(StreamStopped))
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	return err
}

// detachAPIPublishers ends the ProcessMessage publishers at Stop without
// an end of input: like a feed interrupted, they suspend their stream.
func (e *Engine) detachAPIPublishers() {
	for _, st := range e.streamList() {
		st.apiMu.Lock()
		if st.api != nil {
			_ = st.api.Detach()
		}
		st.apiMu.Unlock()
	}
}

func (e *Engine) streamPublishersEnded(st *stream) bool {
	for _, p := range *e.pubs.Load() {
		if p.stream == st && !p.ended.Load() {
			return false
		}
	}
	return true
}

// streamInputsDrained reports whether the shards have taken everything
// st's publishers put into their rings.
func (e *Engine) streamInputsDrained(st *stream) bool {
	for _, p := range *e.pubs.Load() {
		if p.stream == st && !p.ringsEmpty() {
			return false
		}
	}
	return true
}

// streamDelivered reports whether the collector has delivered every output
// the shards pushed for st.
func (e *Engine) streamDelivered(st *stream) bool {
	var pushed uint64
	for _, s := range e.shards {
		if ss := s.strPub[st.idx].Load(); ss != nil {
			pushed += ss.outputs.Load()
		}
	}
	return st.delivered.Load() >= pushed
}

// endStream fires the end of ss's input on this shard and retires it: its
// sources' watermarks go to +∞ (a detached one stays detached, as at Stop).
func (s *shard) endStream(ss *shardStream) {
	if ss == nil || ss.ended {
		return
	}
	s.use(ss)
	for i := range s.inputs {
		if s.inStream[i] == ss.idx && !ss.wm.Detached(i) {
			ss.wm.Advance(i, math.MaxInt64)
		}
	}
	ss.wm.EndOfInput()
	if ss.wmNs != math.MaxInt64 {
		ss.wmNs = math.MaxInt64
		ss.wmPub.Store(math.MaxInt64)
		s.outBuf = ss.proc.OnWatermark(math.MaxInt64, s.progress.Load(), s.outBuf)
	}
	s.flushOutputs()
	ss.ended = true
}

// onShardsRaw runs fn on every shard goroutine (directly when the engine
// does not run) and returns the first error.
func (e *Engine) onShardsRaw(fn func(s *shard) error) error {
	if !e.started.Load() || e.stopping.Load() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range e.shards {
			if err := fn(s); err != nil {
				return err
			}
		}
		return nil
	}
	dones := make([]chan error, len(e.shards))
	for i, s := range e.shards {
		dones[i] = make(chan error, 1)
		s.post(control{fn: fn, done: dones[i]})
	}
	var first error
	for _, d := range dones {
		if err := <-d; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// onStream runs fn with each shard's processor of stream st.
func (e *Engine) onStream(st *stream, fn func(shard int, p Processor) error) error {
	return e.onShardsRaw(func(s *shard) error {
		ss := s.strs[st.idx]
		if ss == nil || ss.ended {
			return fmt.Errorf("%w: stream %q has ended", ErrStreamState, st.id)
		}
		return fn(s.id, ss.proc)
	})
}

// ProcessMessage publishes ev (and its text, if any; see PublishText) to
// the stream through the stream's API publisher, waits until the shards
// have processed it, and returns the outputs its processing made: its
// indicator lines, pattern matches, news analysis. Window results fire on
// watermarks and reach the stream's output handler as usual; so do these
// outputs (ProcessMessage returns copies). With a WAL the message is
// durable before ProcessMessage waits for it (Barrier). A message the
// operators reject returns its outputs (none) and a *RejectedError. The
// stream must be running; calls on one stream are serialised.
func (e *Engine) ProcessMessage(ctx context.Context, id StreamID, ev *codec.Event, text []byte) ([]ops.Output, error) {
	st, err := e.lookup(id)
	if err != nil {
		return nil, err
	}
	if s := st.State(); s != StreamRunning {
		return nil, fmt.Errorf("%w: stream %q is %s", ErrStreamState, id, s)
	}
	if ev.Kind == codec.KindWatermark || ev.Kind == codec.KindText {
		return nil, fmt.Errorf("engine: ProcessMessage takes a message, not a %s event", ev.Kind)
	}
	if len(text) > codec.MaxText {
		return nil, fmt.Errorf("engine: event text of %d bytes, the limit is %d", len(text), codec.MaxText)
	}
	st.apiMu.Lock()
	defer st.apiMu.Unlock()
	if st.api == nil {
		name := "api"
		if st.idx != 0 {
			name = string(st.id) + ":api"
		}
		p, err := e.newPublisherOpts(name, false, true)
		if err != nil {
			return nil, err
		}
		st.api = p
	}
	p := st.api
	want := 1
	if ev.Flags&codec.FlagBroadcast != 0 {
		want = len(e.shards)
	}
	req := &captureReq{want: want, done: make(chan struct{})}
	// The event is not visible to the shards before the Flush below, so
	// the request is in place before any shard can take it.
	if p.locked {
		p.mu.Lock()
	}
	if ev.Seq == 0 {
		ev.Seq = p.maxSeq + 1
	}
	req.seq = ev.Seq
	p.capture.Store(req)
	if p.locked {
		p.mu.Unlock()
	}
	defer p.capture.Store(nil)
	if err := p.PublishText(ev, text); err != nil {
		return nil, err
	}
	if e.wal != nil {
		if err := p.Barrier(ctx); err != nil {
			return nil, err
		}
	} else if err := p.Flush(); err != nil {
		return nil, err
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrStreamTimeout, ctx.Err())
	case <-e.failed:
		return nil, e.Err()
	}
	req.mu.Lock()
	defer req.mu.Unlock()
	outs := req.outs
	for i := range outs {
		outs[i].Stream = uint8(st.idx)
	}
	if req.reason != codec.ReasonNone {
		return outs, &RejectedError{Reason: req.reason}
	}
	return outs, nil
}

// RejectedError is ProcessMessage's error for a message the operators
// rejected (it went to the dead letters with Reason).
type RejectedError struct{ Reason codec.Reason }

func (e *RejectedError) Error() string { return "engine: message rejected: " + e.Reason.String() }

// captureReq collects the outputs of one ProcessMessage event from the
// shards that process it (every shard for a broadcast event).
type captureReq struct {
	seq    uint64
	mu     sync.Mutex
	want   int
	outs   []ops.Output
	reason codec.Reason
	done   chan struct{}
}

// add records one shard's processing of the event. On the shard goroutine.
func (r *captureReq) add(_ *shard, outs []ops.Output, reason codec.Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.want == 0 {
		return
	}
	r.outs = append(r.outs, outs...)
	if reason != codec.ReasonNone && r.reason == codec.ReasonNone {
		r.reason = reason
	}
	if r.want--; r.want == 0 {
		close(r.done)
	}
}

// streamSections: the checkpoint section of stream idx > 0 on shard i. The
// first stream's state is in the shard section itself (shardSection), as
// before streams existed.
func streamSection(id StreamID, shard int) string {
	return fmt.Sprintf("stream/%s/shard/%03d", id, shard)
}

// streamOutputSection: the mark of stream id's CheckpointedOutput.
func streamOutputSection(id StreamID) string { return "stream/" + string(id) + "/output" }

// isStreamSection reports whether a section name is a stream's, and whose.
func isStreamSection(name string) (StreamID, bool) {
	rest, ok := strings.CutPrefix(name, "stream/")
	if !ok {
		return "", false
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	return StreamID(rest[:i]), true
}
