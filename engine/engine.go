// Package engine owns qstream's shards: pinned worker loops that consume one
// SPSC ring per producer, run each shard's operator chain on event time and
// hand outputs to a collector that delivers them to the sinks.
//
// Data flow and ownership:
//
//	Publisher (one per producing goroutine) ──ring──▶ shard loop (LockOSThread unless it parks; optional CPU pin)
//	                                                    │ Processor: indicators, windows, patterns
//	                                                    ▼
//	                                             output ring ──▶ collector ──▶ OutputHandler
//
// A shard's state is owned by the holder of its role token: the shard loop
// (shard.go), which gives it up only while it waits for input, or, with
// Config.Chain, a Publisher that made a few events visible to a parked shard
// and runs the shard loop's round itself instead of waking its thread
// (operator chaining, chain.go). An idle shard (or a chained Publisher)
// delivers its outputs itself while the collector role is free
// (collector.go).
//
// Every symbol is owned by exactly one shard (a hash of its interned id), so
// operator state needs no locks. Every queue is bounded and full queues block
// (backpressure up to the feeds); nothing is dropped silently.
//
// Lifecycle: New, NewPublisher (any time before Stop), Start, then feeds
// publish; Pause/Resume stop and restart consumption (rings fill and
// backpressure the feeds); Stop waits for the publishers to close, drains
// every ring and returns the first sticky error.
//
// Durability: with Config.Durability a *WAL (OpenWAL) every event is logged
// before a shard sees it and Publisher.Barrier waits for its sync; with
// Config.Checkpoints the engine takes consistent checkpoints with aligned
// barriers (checkpoint.go); Recover replaces Start and restores the newest
// checkpoint and the WAL after it (recovery.go); Config.DedupHorizon drops
// redelivered messages (dedup.go). The engine keeps no output policy: an
// output error is sticky. Retries, dead-lettering of poison outputs and a
// circuit breaker wrap the output from outside (sinks.Guard), through the
// hooks Stopping and DeadLetterOutput.
package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ring"
)

// Engine is a set of shards with their rings, processors and collector.
type Engine struct {
	cfg     Config
	symbols *codec.SymbolTable
	shards  []*shard

	mu         sync.Mutex
	publishers []*Publisher
	pubs       atomic.Pointer[[]*Publisher] // copy-on-write view for shards and stats

	started  atomic.Bool
	stopping atomic.Bool
	paused   atomic.Bool
	pauseMu  sync.Mutex
	pauseCv  *sync.Cond

	collector *collector
	wg        sync.WaitGroup
	err       error         // the first sticky error; guarded by mu
	failed    chan struct{} // closed when err is set
	hasErr    atomic.Bool   // err != nil, for loops that poll

	rejected [codec.ReasonCount]atomic.Uint64
	pinOnce  sync.Once

	// Durability (durability.go, checkpoint.go, recovery.go).
	wal        *WAL          // Config.Durability when it is a *WAL
	cut        *cutCoord     // cuts and checkpoints; nil without a *WAL
	tputStop   chan struct{} // closed by Stop: ends the sampler
	defsMu     sync.Mutex
	defs       []definition           // run-time definitions, in order (defs.go)
	cutEpoch   uint64                 // guarded by mu
	restored   map[string]sourceState // source states recovered by name; guarded by mu
	recovering bool                   // Recover runs: Start leaves the periodic checkpoints to it

	strms    atomic.Pointer[[]*stream] // streams.go: copy-on-write, index = stream index
	streamMu sync.Mutex                // serialises stream starts

	latTotal latencyTotals // latency.go: what Latency(true) cleared
}

// New builds an engine: its symbol table, its shards with their processors
// and output rings. Nothing runs until Start.
func New(cfg Config) (*Engine, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: c, symbols: c.Symbols, failed: make(chan struct{})}
	if e.symbols == nil {
		e.symbols = codec.NewSymbolTable(c.MaxSymbols)
	}
	if err := e.setupDurability(); err != nil {
		return nil, err
	}
	e.pauseCv = sync.NewCond(&e.pauseMu)
	empty := []*Publisher{}
	e.pubs.Store(&empty)
	outWaiter := ring.NewWaiter(c.Wait)
	if c.Wait == ring.Spin {
		// The collector is not pinned: let it yield rather than spin.
		outWaiter = ring.NewWaiter(ring.Yield)
	}
	for i := 0; i < c.Shards; i++ {
		proc, err := c.Processors(i)
		if err != nil {
			return nil, fmt.Errorf("engine: shard %d processor: %w", i, err)
		}
		s, err := newShard(e, i, proc, outWaiter)
		if err != nil {
			return nil, err
		}
		e.shards = append(e.shards, s)
	}
	if err := e.setupShardDurability(); err != nil {
		return nil, err
	}
	name := c.StreamName
	if name == "" {
		name = DefaultStream
	} else if err := ValidStreamID(name); err != nil && name != DefaultStream {
		return nil, fmt.Errorf("%w: stream name: %w", ErrConfig, err)
	}
	first := []*stream{newStream(name, 0, nil, c.Output)}
	first[0].patterns = newPatternRegistry(e, e.shards[0].strs[0].proc)
	e.strms.Store(&first)
	e.collector = newCollector(e, outWaiter)
	for _, sc := range c.Streams {
		if err := e.startStream(sc, false); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Symbols returns the engine's symbol table, shared by every feed.
func (e *Engine) Symbols() *codec.SymbolTable { return e.symbols }

// Shards returns the number of shards.
func (e *Engine) Shards() int { return len(e.shards) }

// Config returns the configuration with defaults applied.
func (e *Engine) Config() Config { return e.cfg }

// route maps a symbol to its shard: a Fibonacci hash of the id, so that
// consecutive ids spread evenly.
func (e *Engine) route(sym codec.Symbol) int {
	n := len(e.shards)
	if n == 1 {
		return 0
	}
	h := uint64(sym) * 0x9E3779B97F4A7C15
	return int((h >> 32) % uint64(n))
}

// ShardOf returns the shard that owns sym.
func (e *Engine) ShardOf(sym codec.Symbol) int { return e.route(sym) }

// NewPublisher returns a Publisher for one producing goroutine. It creates
// one ring per shard; shards discover it on their next loop.
func (e *Engine) NewPublisher(name string) (*Publisher, error) {
	return e.newPublisher(name, false)
}

// NewPublisherWith is NewPublisher for a source with the given properties
// (PublisherOptions).
func (e *Engine) NewPublisherWith(name string, opts PublisherOptions) (*Publisher, error) {
	return e.newPublisherWith(name, false, false, opts)
}

func (e *Engine) newPublisher(name string, replay bool) (*Publisher, error) {
	return e.newPublisherOpts(name, replay, false)
}

func (e *Engine) newPublisherOpts(name string, replay, api bool) (*Publisher, error) {
	return e.newPublisherWith(name, replay, api, PublisherOptions{})
}

func (e *Engine) newPublisherWith(name string, replay, api bool, opts PublisherOptions) (*Publisher, error) {
	if e.stopping.Load() {
		return nil, ErrStopped
	}
	st, known := e.streamOfName(name)
	if !known && replay {
		return nil, stateErr("source %q belongs to a stream that neither the configuration nor the checkpoint defines", name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.publishers) >= e.cfg.MaxProducers {
		return nil, fmt.Errorf("engine: publisher limit %d reached", e.cfg.MaxProducers)
	}
	p := &Publisher{
		e:        e,
		id:       len(e.publishers),
		name:     name,
		stream:   st,
		api:      api,
		rings:    make([]*ring.SPSC[codec.Event], len(e.shards)),
		claim:    make([][]codec.Event, len(e.shards)),
		fill:     make([]int, len(e.shards)),
		waiter:   ring.NewWaiter(producerStrategy(e.cfg.Wait)),
		maxTsNs:  minInt64,
		sentWmNs: minInt64,
		ooNs:     int64(e.cfg.OutOfOrderness),
	}
	p.maxTsPub.Store(minInt64)
	if err := e.initPublisher(p, replay, opts); err != nil {
		return nil, err
	}
	for i, s := range e.shards {
		r, err := ring.New[codec.Event](e.cfg.RingSize, s.waiter, p.waiter)
		if err != nil {
			return nil, fmt.Errorf("engine: ring: %w", err)
		}
		p.rings[i] = r
	}
	e.publishers = append(e.publishers, p)
	view := append([]*Publisher(nil), e.publishers...)
	e.pubs.Store(&view)
	for _, s := range e.shards {
		s.waiter.Wake()
	}
	return p, nil
}

// producerStrategy: producers are feed goroutines that are not pinned; they
// never spin at full speed against a full ring.
func producerStrategy(s ring.Strategy) ring.Strategy {
	if s == ring.Spin {
		return ring.Yield
	}
	return s
}

// Start launches the shard loops and the collector.
func (e *Engine) Start() error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("engine: already started")
	}
	e.wg.Add(len(e.shards))
	for _, s := range e.shards {
		go func() {
			defer e.wg.Done()
			s.run()
		}()
	}
	e.collector.start()
	if e.cut != nil && !e.recovering {
		e.cut.startTicker()
	}
	e.tputStop = make(chan struct{})
	go e.sampleThroughput(e.tputStop, ThroughputInterval)
	return nil
}

// Pause stops the shards from consuming. Rings fill and publishers block:
// nothing is dropped. Resume restarts them.
func (e *Engine) Pause() { e.paused.Store(true) }

// Resume undoes Pause.
func (e *Engine) Resume() {
	e.resumeAllStreams()
	e.pauseMu.Lock()
	e.paused.Store(false)
	e.pauseCv.Broadcast()
	e.pauseMu.Unlock()
	for _, s := range e.shards {
		s.waiter.Wake()
	}
}

// Paused reports whether the engine is paused.
func (e *Engine) Paused() bool { return e.paused.Load() }

// Stop drains the engine: once every publisher has been closed (or ctx is
// done), the shards consume what is left in their rings, fire what their
// processors fire at end of input, and the collector delivers everything.
// It returns the first sticky error of an output handler.
//
// A durable engine with checkpoints that stops cleanly (every publisher
// ended before ctx was done, no sticky error, StopCheckpoints not called)
// takes a last checkpoint once the shards have processed everything and the
// output holds every result, the end-of-input firings of closed sources
// included. What the output took is then behind the checkpoint's
// high-water mark: a restart neither rewinds the output over it nor fires
// it again. A failed final checkpoint becomes the sticky error; the previous
// checkpoint and the WAL still recover everything. If ctx ends while the
// final checkpoint waits for a halted output, the output is given up (as
// with Fail) and the checkpoint is not taken.
func (e *Engine) Stop(ctx context.Context) error {
	if !e.started.Load() {
		return errors.New("engine: not started")
	}
	e.resumeAllStreams() // a paused stream's feeds drain and can close
	e.detachAPIPublishers()
	if e.cut != nil {
		// No new periodic or requested checkpoints; one in flight completes
		// below (the shards finish a cut before they stop, also when the
		// engine was paused).
		e.cut.closed.Store(true)
	}
	// Wait for the feeds to close their publishers so that nothing they
	// acknowledged is left behind.
	clean := true
	for clean && !e.allPublishersEnded() {
		select {
		case <-ctx.Done():
			e.setErr(fmt.Errorf("engine: stop: publishers still open: %w", ctx.Err()))
			clean = false
		default:
			waitBriefly()
		}
	}
	if clean && e.cut != nil {
		e.Resume() // a cut needs running shards
		// The cut waits for the output to take everything; a halted
		// output is given up when ctx ends (the sticky error makes
		// Stopping true, so a retrying output stops waiting, and the cut
		// refuse).
		unwatch := context.AfterFunc(ctx, func() {
			e.setErr(fmt.Errorf("engine: stop: final checkpoint: %w", ctx.Err()))
		})
		err := e.cut.final()
		unwatch()
		if err != nil {
			e.setErr(fmt.Errorf("engine: stop: final checkpoint: %w", err))
		}
	}
	e.stopping.Store(true)
	if e.tputStop != nil {
		close(e.tputStop)
		e.tputStop = nil
	}
	e.Resume()
	for _, s := range e.shards {
		s.waiter.Wake()
	}
	e.wg.Wait()
	e.collector.wait()
	if e.cut != nil {
		e.cut.close()
	}
	return e.Err()
}

func (e *Engine) allPublishersEnded() bool {
	for _, p := range *e.pubs.Load() {
		if !p.ended.Load() {
			return false
		}
	}
	return true
}

func (e *Engine) setErr(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
		e.hasErr.Store(true)
		close(e.failed)
	}
	e.mu.Unlock()
}

// Err returns the engine's first sticky error.
func (e *Engine) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// Failed returns a channel that is closed when the engine gets its sticky
// error (Err): an output that failed for good, a Fail, a Stop that timed
// out. The engine keeps running its shards after it, but delivers no more
// outputs and takes no more checkpoints; the caller should stop the feeds
// and Stop it.
func (e *Engine) Failed() <-chan struct{} { return e.failed }

// Fail makes err the engine's sticky error unless it has one: from here on
// outputs are counted but not delivered, an output halted by its circuit
// breaker gives up waiting, and no checkpoint is taken. So the backlog
// drains, feeds blocked on backpressure can return, and Stop completes
// within its deadline. What was not delivered is not lost: the WAL holds
// its input and recovery from the last checkpoint, whose output mark
// precedes it, produces it again. Stop returns the sticky error.
func (e *Engine) Fail(err error) {
	e.setErr(err)
	e.wakeShards()
}

// Stopping reports whether the engine stops (Stop was called and waits for
// the shards) or has its sticky error (Fail, a failed output). An output
// that waits and retries inside HandleOutputs (sinks.Guard) polls it and
// gives up when it turns true, so that Stop and Fail complete in bounded
// time and feeds blocked on backpressure can return.
func (e *Engine) Stopping() bool { return e.stopping.Load() || e.hasErr.Load() }

// DeadLetterOutput rejects o, an output the sink can never take (a poison
// output): it is counted under reason (ReasonMalformed when reason is
// ReasonNone or unknown) like every rejection, and handed to
// Config.DeadLetters with Feed "output". Call it from inside HandleOutputs,
// on the collector goroutine; o need only be valid during the call.
func (e *Engine) DeadLetterOutput(o *ops.Output, reason codec.Reason, err error) {
	if reason == codec.ReasonNone || int(reason) >= codec.ReasonCount {
		reason = codec.ReasonMalformed
	}
	e.rejected[reason].Add(1)
	if h := e.cfg.DeadLetters; h != nil {
		h.HandleDeadLetter(&DeadLetter{Reason: reason, Feed: "output", Pos: codec.Position{Offset: -1}, Output: o, Err: err})
	}
}

// waitForResume blocks a shard while the engine is paused. It returns
// early when ctl is set (the shard's control mailbox has work: the window
// and pattern API answer while the engine is paused); the shard runs it and
// waits again.
func (e *Engine) waitForResume(ctl *atomic.Bool) {
	e.pauseMu.Lock()
	for e.paused.Load() && !e.stopping.Load() && !ctl.Load() {
		e.pauseCv.Wait()
	}
	e.pauseMu.Unlock()
}

func waitBriefly() { time.Sleep(time.Millisecond) }
