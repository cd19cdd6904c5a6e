package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"qstream/checkpoint"
	"qstream/codec"
	"qstream/internal/clock"
	"qstream/internal/failpoint"
	"qstream/wal"
)

// Checkpoints are consistent cuts across every shard, taken with aligned
// barriers as in Flink (Carbone et al., "Lightweight Asynchronous Snapshots
// for Distributed Dataflows", 2015):
//
//  1. The coordinator bumps the cut epoch E and notes H, the WAL's last LSN,
//     under the engine's lock, so that any Publisher created afterwards is
//     past the cut (its records all have LSNs > H).
//  2. For every Publisher, holding that Publisher's lock (taken by Publish,
//     Flush, Barrier and Close of a durable engine), it makes the written
//     slots visible and puts a cut event (a KindWatermark event whose Aux is
//     E) into each of its rings, and records the Publisher's cut LSN: the
//     WAL's last LSN at that moment. Every record the Publisher appended
//     before has an LSN at or below it; every later one is above. Idle
//     publishers take part without their feed's help. A Publisher whose
//     in-place claim (ClaimBatch) is outstanding does this itself when the
//     claim ends, and the coordinator waits for it, within
//     CheckpointConfig.ClaimWait (injectCut, awaitClaims).
//  3. A shard aligns: once it has read E from a ring it stops reading that
//     ring (and the rings of publishers created after step 1) until E has
//     arrived on every other ring, or that ring's publisher closed before
//     step 2 reached it and the ring is drained. Then it snapshots its state
//     (watermark, dedup set, processor) and reports to the coordinator.
//  4. With a CheckpointedOutput, each shard first waits until the collector
//     has delivered all its outputs and holds still until the coordinator
//     has taken the sink's high-water mark; so the mark separates exactly
//     the outputs of events before the cut from those after.
//
// The checkpoint then holds the shard states, the sink mark, the symbol
// table and, per publisher, its cut LSN, name, source offset and watermark
// state. Its LSN is H. Recovery replays the WAL from H+1 and skips the
// records of a publisher at or below that publisher's cut LSN: exactly the
// records whose effects the state already holds.
//
// Before the file is written the WAL is made durable up to every cut LSN, so
// a checkpoint never refers to records a crash could lose. Then checkpoints
// beyond CheckpointConfig.Keep are pruned and WAL segments older than the
// oldest kept checkpoint deleted.

// StatefulProcessor is a Processor whose state a checkpoint can hold; every
// Processor of an engine with checkpoints must implement it
// (ops.Pipeline does).
type StatefulProcessor interface {
	Processor
	// AppendState appends a snapshot of the whole state to dst.
	AppendState(dst []byte) []byte
	// LoadState replaces the state with a snapshot taken by a processor
	// built the same way; on error the processor is unchanged.
	LoadState(src []byte) error
}

// CheckpointedOutput is an OutputHandler whose position is part of every
// checkpoint, so that replay after a crash writes each output once: the
// sink rewinds to the mark of the checkpoint recovery starts from.
type CheckpointedOutput interface {
	OutputHandler
	// CheckpointOutput is called at a cut, when every output of the events
	// before the cut has been handed to HandleOutputs and none after. It
	// makes what was written durable and returns the sink's high-water mark
	// (opaque to the engine, at most 64 KiB).
	CheckpointOutput() (hwm []byte, err error)
	// RestoreOutput is called by Recover before the WAL is replayed with the
	// mark of the checkpoint it loaded, or nil when there is none (replay
	// then starts from the first record: the sink starts empty).
	RestoreOutput(hwm []byte) error
}

// CheckpointConfig turns on checkpoints. They need Config.Durability to be
// a *WAL.
type CheckpointConfig struct {
	// Dir is the checkpoint directory (required).
	Dir string
	// Interval between periodic checkpoints; 0 takes them only on request
	// (Engine.Checkpoint) and after Recover.
	Interval time.Duration
	// Keep is how many valid checkpoints are kept (default 2). WAL segments
	// are deleted once no kept checkpoint needs them.
	Keep int
	// FS is the file system (default wal.OSFS; wrapped for crash points
	// when they are armed).
	FS wal.FS
	// RetainWAL, if set, returns the lowest LSN that another reader of the
	// WAL still needs (sinks.WALFollower.RetainLSN: the archive): segments
	// holding it or later records are kept even when no checkpoint needs
	// them. It is called from the checkpointing goroutine.
	RetainWAL func() uint64
	// ClaimWait bounds how long a checkpoint waits for a Publisher's
	// in-place claim (ClaimBatch to CommitBatch) to end before it fails
	// (default DefaultClaimWait). See Publisher.ClaimBatch.
	ClaimWait time.Duration
}

// DefaultCheckpointKeep is CheckpointConfig.Keep's default.
const DefaultCheckpointKeep = 2

// DefaultClaimWait is CheckpointConfig.ClaimWait's default: far above any
// claim of the feeds in this repository (they fill their claims from
// memory: microseconds), far below a checkpoint interval.
const DefaultClaimWait = 2 * time.Second

// maxOutputMark bounds a CheckpointedOutput's high-water mark.
const maxOutputMark = 64 << 10

// ErrNoCheckpoints is returned by Engine.Checkpoint without
// Config.Checkpoints.
var ErrNoCheckpoints = errors.New("engine: checkpoints are not configured")

// CheckpointStats describe the checkpoints an engine took.
type CheckpointStats struct {
	Taken, Failed   uint64
	LastID          uint64
	LastLSN         uint64
	LastBytes       int64
	LastTook        time.Duration
	LastUnixNs      int64 // wall clock when the last one was written
	LastError       string
	SegmentsDeleted uint64
}

// cutReq is one cut as the shards see it.
type cutReq struct {
	epoch        uint64
	snapshot     bool // shards snapshot their state
	alignOutputs bool // shards wait for the sink mark before going on
	release      chan struct{}
}

// cutCoord runs cuts and writes checkpoints.
type cutCoord struct {
	e      *Engine
	wal    *WAL
	store  *checkpoint.Store // nil: cuts only (recovery's drain)
	cfg    CheckpointConfig
	output CheckpointedOutput

	mu        sync.Mutex // one cut at a time
	claimWait time.Duration
	// lagging is closed when the cut of a checkpoint that gave up waiting
	// for a claim (awaitClaims) has completed; nil when there is none.
	lagging   chan struct{}
	closed    atomic.Bool
	live      atomic.Bool // Start or a successful Recover started the checkpoints
	noFinal   atomic.Bool // StopCheckpoints: Stop takes no final checkpoint
	cur       atomic.Pointer[cutReq]
	shardDone chan int

	statsMu sync.Mutex
	stats   CheckpointStats

	tickStop    chan struct{}
	tickDone    chan struct{}
	tickOnce    sync.Once
	tickStopped atomic.Bool // stopTicker ran: startTicker starts none
}

func newCutCoord(e *Engine, w *WAL) *cutCoord {
	c := &cutCoord{e: e, wal: w, shardDone: make(chan int, len(e.shards)), claimWait: DefaultClaimWait}
	if cc := e.cfg.Checkpoints; cc != nil {
		c.cfg = *cc
		if c.cfg.Keep <= 0 {
			c.cfg.Keep = DefaultCheckpointKeep
		}
		if c.cfg.ClaimWait > 0 {
			c.claimWait = c.cfg.ClaimWait
		}
		fs := c.cfg.FS
		if fs == nil {
			fs = wal.OSFS{}
		}
		if failpoint.Any() {
			fs = failpoint.FS(fs)
		}
		c.store = &checkpoint.Store{Dir: c.cfg.Dir, FS: fs}
	}
	c.output, _ = e.cfg.Output.(CheckpointedOutput)
	return c
}

// startTicker starts the periodic checkpoints. Start calls it, and Recover
// once it has succeeded: from then on the engine's state is one a
// checkpoint may hold (Stop's final checkpoint needs that too).
func (c *cutCoord) startTicker() {
	c.live.Store(true)
	if c.store == nil || c.cfg.Interval <= 0 || c.tickStop != nil || c.closed.Load() || c.tickStopped.Load() {
		return
	}
	c.tickStop, c.tickDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.tickDone)
		t := time.NewTicker(c.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-c.tickStop:
				return
			case <-t.C:
				if c.closed.Load() {
					return
				}
				if c.e.hasErr.Load() {
					continue // no checkpoint after a failure (see cut); said once by whoever failed
				}
				if _, err := c.e.Checkpoint(context.Background()); err != nil && !errors.Is(err, ErrStopped) {
					c.e.cfg.Logger.Warn("engine: checkpoint failed; the WAL keeps everything since the last one", "err", err)
				}
			}
		}
	}()
}

// close stops the periodic checkpoints and waits for one in flight. It is
// idempotent.
func (c *cutCoord) close() {
	c.closed.Store(true) // Checkpoint refuses from here on
	c.stopTicker()
	// Taking the lock is how close waits for a cut in flight.
	c.mu.Lock()
	//lint:ignore SA2001 the critical section is empty on purpose
	c.mu.Unlock()
}

type cutResult struct {
	lsn     uint64 // H
	maxLSN  uint64 // the largest cut LSN
	sources []sourceState
	hwm     []byte
	hasHWM  bool
	// streams: the marks of the other streams' CheckpointedOutputs, by
	// stream id.
	streams map[StreamID][]byte
}

// streamOutputs returns the streams after the first whose outputs are
// CheckpointedOutputs and have not ended.
func (e *Engine) streamOutputs() []*stream {
	var out []*stream
	for _, st := range e.streamList()[1:] {
		if _, ok := st.output.(CheckpointedOutput); ok && st.State() != StreamStopped {
			out = append(out, st)
		}
	}
	return out
}

// cut runs one cut (steps 1-4 of the comment above). Precondition: c.mu is
// held and the engine is started and not stopped.
func (c *cutCoord) cut(snapshot bool) (cutResult, error) {
	e := c.e
	var res cutResult
	if err := c.awaitLagging(); err != nil {
		return res, err
	}
	e.mu.Lock()
	e.cutEpoch++
	others := e.streamOutputs()
	req := &cutReq{epoch: e.cutEpoch, snapshot: snapshot, alignOutputs: snapshot && (c.output != nil || len(others) > 0), release: make(chan struct{})}
	res.lsn = c.wal.LastLSN()
	pubs := append([]*Publisher(nil), e.publishers...)
	c.cur.Store(req)
	e.mu.Unlock()
	e.wakeShards()
	res.maxLSN = res.lsn
	sources := make([]sourceState, len(pubs))
	var pending []pendingCut
	for i, p := range pubs {
		st, t := p.injectCut(req.epoch, c.wal)
		if t != nil {
			pending = append(pending, pendingCut{i, t})
		}
		sources[i] = st
	}
	e.wakeShards()
	if len(pending) > 0 {
		if err := c.awaitClaims(pubs, pending, sources); err != nil {
			c.completeLate(req, pending)
			return res, err
		}
		e.wakeShards()
	}
	for i, p := range pubs {
		if p.replay {
			continue // recovery publishers never append: nothing to filter or resume
		}
		res.sources = append(res.sources, sources[i])
		res.maxLSN = max(res.maxLSN, sources[i].lsn)
	}
	for range e.shards {
		<-c.shardDone
	}
	var err error
	if ferr := e.Err(); ferr != nil && snapshot {
		// The collector drops outputs after a sticky error: a checkpoint
		// now would hold the effects of events whose outputs the sink
		// never took, and recovery would not produce them again.
		err = fmt.Errorf("engine: no checkpoint after a failure: %w", ferr)
	} else if req.alignOutputs {
		if c.output != nil {
			res.hwm, err = c.output.CheckpointOutput()
			res.hasHWM = true
			if err == nil && len(res.hwm) > maxOutputMark {
				err = fmt.Errorf("engine: output high-water mark of %d bytes (max %d)", len(res.hwm), maxOutputMark)
			}
		}
		for _, st := range others {
			if err != nil {
				break
			}
			var hwm []byte
			hwm, err = st.output.(CheckpointedOutput).CheckpointOutput()
			if err == nil && len(hwm) > maxOutputMark {
				err = fmt.Errorf("engine: stream %q: output high-water mark of %d bytes (max %d)", st.id, len(hwm), maxOutputMark)
			}
			if res.streams == nil {
				res.streams = map[StreamID][]byte{}
			}
			res.streams[st.id] = hwm
		}
	}
	close(req.release)
	return res, err
}

// Checkpoint takes a checkpoint now: a cut, then the file (see the comment
// at the top of checkpoint.go). It returns the written file's Info. It
// blocks while the engine is paused, and waits for a Publisher's
// outstanding in-place claim to end (at most CheckpointConfig.ClaimWait:
// then it fails; see Publisher.ClaimBatch). Periodic checkpoints call it
// too.
func (e *Engine) Checkpoint(ctx context.Context) (checkpoint.Info, error) {
	c := e.cut
	if c == nil || c.store == nil {
		return checkpoint.Info{}, ErrNoCheckpoints
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() || !e.started.Load() || e.stopping.Load() {
		return checkpoint.Info{}, ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return checkpoint.Info{}, err
	}
	info, err := c.checkpointLocked()
	c.statsMu.Lock()
	if err != nil {
		c.stats.Failed++
		c.stats.LastError = err.Error()
	}
	c.statsMu.Unlock()
	return info, err
}

func (c *cutCoord) checkpointLocked() (checkpoint.Info, error) {
	e := c.e
	start := time.Now()
	res, err := c.cut(true)
	if err != nil {
		return checkpoint.Info{}, fmt.Errorf("engine: checkpoint: %w", err)
	}
	st := &engineState{shards: len(e.shards), sources: e.carryRestored(res.sources)}
	if names := e.symbols.Names(); len(names) > 1 {
		st.symbols = names[1:]
	}
	// Filter entries matter only above H; offsets and watermark state
	// matter for every source, so every publisher is kept.
	ck := &checkpoint.Checkpoint{LSN: res.lsn}
	ck.Set(sectionEngine, appendEngineState(nil, st))
	streams := e.streamList()
	for i, s := range e.shards {
		ck.Set(shardSection(i), s.cut.snap)
		for k, sec := range s.cut.streams {
			if sec != nil && k < len(streams) {
				ck.Set(streamSection(streams[k].id, i), sec)
			}
		}
	}
	if res.hasHWM {
		ck.Set(sectionOutput, res.hwm)
	}
	for id, hwm := range res.streams {
		ck.Set(streamOutputSection(id), hwm)
	}
	if defs, err := e.defsSection(); err != nil {
		return checkpoint.Info{}, fmt.Errorf("engine: checkpoint: %w", err)
	} else if defs != nil {
		ck.Set(sectionDefs, defs)
	}
	// Never let a checkpoint refer to records a crash could still lose.
	if err := c.wal.WaitDurable(res.maxLSN); err != nil {
		return checkpoint.Info{}, fmt.Errorf("engine: checkpoint: %w", err)
	}
	info, err := c.store.Write(ck)
	if err != nil {
		return info, err
	}
	failpoint.CheckpointPrune.Hit()
	kept, _, err := c.store.Prune(c.cfg.Keep)
	var deleted int
	if err == nil && len(kept) > 0 {
		below := kept[0].LSN + 1
		if c.cfg.RetainWAL != nil {
			below = min(below, c.cfg.RetainWAL())
		}
		deleted, err = c.wal.Writer().DeleteBefore(below)
	}
	c.statsMu.Lock()
	c.stats.Taken++
	c.stats.LastID, c.stats.LastLSN, c.stats.LastBytes = info.ID, info.LSN, info.Size
	c.stats.LastTook, c.stats.LastUnixNs = time.Since(start), time.Now().UnixNano()
	c.stats.SegmentsDeleted += uint64(deleted)
	c.statsMu.Unlock()
	if err != nil {
		return info, fmt.Errorf("engine: checkpoint %d written; retention failed: %w", info.ID, err)
	}
	return info, nil
}

// stopTicker stops the periodic checkpoints and waits for one in flight.
// It is idempotent.
func (c *cutCoord) stopTicker() {
	c.tickStopped.Store(true)
	c.tickOnce.Do(func() {
		if c.tickStop != nil {
			close(c.tickStop)
			<-c.tickDone
		}
	})
}

// StopPeriodicCheckpoints stops the periodic checkpoints for the rest of the
// engine's life and waits for one in flight; Checkpoint and Stop's final
// checkpoint still work. A run whose input is complete calls it: Stop's
// checkpoint follows, and none in between is needed.
func (e *Engine) StopPeriodicCheckpoints() {
	if e.cut != nil {
		e.cut.stopTicker()
	}
}

// StopCheckpoints ends checkpoints for the rest of the engine's life:
// periodic ones stop, Checkpoint returns ErrStopped and Stop takes no final
// checkpoint, so the last checkpoint holds the state of this moment. A
// restart then recovers to it: the output is rewound to its mark and what
// came after is produced again only as far as the WAL and the restarted
// sources reproduce it (end-of-input firings only if the source ends
// again). Without it, Stop checkpoints the drained state.
func (e *Engine) StopCheckpoints() {
	if e.cut != nil {
		e.cut.noFinal.Store(true)
		e.cut.close()
	}
}

// final is Stop's last checkpoint (see Stop). The caller has set closed,
// so no periodic checkpoint starts; one in flight is waited for.
func (c *cutCoord) final() error {
	e := c.e
	if c.store == nil || !c.live.Load() || c.noFinal.Load() || e.Err() != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.checkpointLocked()
	if err != nil {
		c.statsMu.Lock()
		c.stats.Failed++
		c.stats.LastError = err.Error()
		c.statsMu.Unlock()
	}
	return err
}

// CheckpointStats returns the checkpoint counters (zero without
// checkpoints).
func (e *Engine) CheckpointStats() CheckpointStats {
	if e.cut == nil {
		return CheckpointStats{}
	}
	e.cut.statsMu.Lock()
	defer e.cut.statsMu.Unlock()
	return e.cut.stats
}

// carryRestored adds the recovered state of every source that has no
// publisher in this process yet, so that a checkpoint taken before a feed
// reconnects still knows where it was.
func (e *Engine) carryRestored(sources []sourceState) []sourceState {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, st := range e.restored {
		live := false
		for _, s := range sources {
			live = live || s.name == name
		}
		if !live {
			st.id, st.lsn, st.closed, st.holds = math.MaxUint16, 0, true, false
			sources = append(sources, st)
		}
	}
	return sources
}

func (e *Engine) wakeShards() {
	for _, s := range e.shards {
		s.waiter.Wake()
	}
}

// holdsWatermark reports whether the shards hold p's watermark as the
// tracker sees it (ops.WatermarkTracker): p sent one and is neither idle,
// closed, nor silent for longer than Config.IdleTimeout. Called under p.mu.
func (p *Publisher) holdsWatermark() bool {
	if !p.wmHeld || p.closed {
		return false
	}
	idle := int64(p.e.cfg.IdleTimeout)
	return idle <= 0 || p.sentWmNs == math.MaxInt64 || clock.MonoNs()-p.lastActiveNs.Load() <= idle
}

// cutTicket is a cut left to a Publisher whose in-place claim was
// outstanding when the coordinator came (injectCut): the Publisher places
// it when the claim ends (endClaim), sets st and closes done.
type cutTicket struct {
	epoch uint64
	w     *WAL
	st    sourceState
	done  chan struct{}
}

// pendingCut is a cut the coordinator waits for: the ticket of pubs[i].
type pendingCut struct {
	i int
	t *cutTicket
}

// awaitClaims waits until every pending cut is placed, and records the
// sources' states; it gives up after claimWait. The wait is for claims
// that callers fill: a caller that blocks between ClaimBatch and
// CommitBatch holds the cut (see Publisher.ClaimBatch).
func (c *cutCoord) awaitClaims(pubs []*Publisher, pending []pendingCut, sources []sourceState) error {
	timer := time.NewTimer(c.claimWait)
	defer timer.Stop()
	for _, pc := range pending {
		select {
		case <-pc.t.done:
			sources[pc.i] = pc.t.st
		case <-timer.C:
			return fmt.Errorf("engine: cut: publisher %q held an in-place claim (ClaimBatch without CommitBatch) for more than %v; the cut is completed when the claim ends",
				pubs[pc.i].name, c.claimWait)
		}
	}
	return nil
}

// completeLate completes a cut that gave up on pending claims: once they
// have ended, it collects the shards' reports and releases them, and the
// next cut, which waits for that (awaitLagging), can begin. The shards'
// snapshots are not used.
func (c *cutCoord) completeLate(req *cutReq, pending []pendingCut) {
	done := make(chan struct{})
	c.lagging = done
	shards := len(c.e.shards)
	go func() {
		for _, pc := range pending {
			<-pc.t.done
		}
		c.e.wakeShards()
		for range shards {
			<-c.shardDone
		}
		close(req.release)
		close(done)
	}()
}

// awaitLagging waits (at most claimWait) for a cut given up earlier to
// complete (completeLate); it fails when that cut still waits for a claim.
func (c *cutCoord) awaitLagging() error {
	if c.lagging == nil {
		return nil
	}
	timer := time.NewTimer(c.claimWait)
	defer timer.Stop()
	select {
	case <-c.lagging:
		c.lagging = nil
		return nil
	case <-timer.C:
		return errors.New("engine: cut: the previous cut still waits for a publisher's in-place claim to end (ClaimBatch without CommitBatch)")
	}
}

// injectCut is step 2 for one Publisher: under its lock, make everything it
// wrote visible, put the cut event into each of its rings and record its
// state (placeCut). A Publisher with an in-place claim outstanding gets a
// ticket instead: the caller may be writing the slots that the cut event
// would go into, so the Publisher places the cut when the claim ends
// (endClaim). A closed Publisher gets no cut event; its records are all
// before the cut.
func (p *Publisher) injectCut(epoch uint64, w *WAL) (sourceState, *cutTicket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inPlace.out && !p.closed {
		t := &cutTicket{epoch: epoch, w: w, done: make(chan struct{})}
		p.inPlace.cut = t
		return sourceState{}, t
	}
	return p.placeCut(epoch, w), nil
}

// placeCut is injectCut's work, under p.mu with no claim outstanding.
func (p *Publisher) placeCut(epoch uint64, w *WAL) sourceState {
	st := sourceState{id: p.id, name: p.name, closed: p.closed, lsn: p.lastLSN,
		offset: p.maxSeq, maxTsNs: p.maxTsNs, sentWmNs: p.sentWmNs, holds: p.holdsWatermark(), offsetIDs: p.offsetIDs.Load()}
	if p.closed {
		return st
	}
	p.commitRings()
	st.lsn = w.LastLSN()
	ev := codec.Event{Kind: codec.KindWatermark, Aux: epoch, TsNs: p.sentWmNs, Seq: p.lastSeq, Source: uint16(p.id)}
	for _, r := range p.rings {
		r.Put(&ev)
	}
	p.committedSeq.Store(p.lastSeq) // after the cut event (commitRings)
	p.injected.Store(epoch)
	return st
}
