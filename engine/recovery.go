package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"qstream/checkpoint"
	"qstream/codec"
	"qstream/wal"
)

// Recovery after a crash (or a clean stop) of a durable engine:
//
//  1. Load the newest valid checkpoint (newer damaged ones are skipped and
//     reported): the symbol table, every shard's state (watermark, dedup
//     set, operators), the sink's high-water mark (CheckpointedOutput
//     rewinds to it) and the publishers' cut LSNs, offsets and watermarks.
//  2. Start the shards and replay the WAL after the checkpoint's LSN through
//     them, on event time: one recovery publisher per source name publishes
//     the logged events and sends the logged watermarks at the same points,
//     so every operator decision (late or not, which window fires when) is
//     the one the crashed process made. Records a checkpointed publisher
//     made before its cut are skipped: their effects are in the state.
//  3. Wait until the shards have processed the replay (a cut), take a
//     checkpoint (so the next recovery starts here), and report each
//     source's offset: the largest Seq it logged. A feed resumes after it
//     (Engine.SourceOffset); the Publisher it creates under the same name
//     continues the source's watermark.
//
// The result is the state an uninterrupted run would have after the last
// durable record, and the sink holds each output once.

// RecoveryReport says what Recover found and did.
type RecoveryReport struct {
	Checkpoint *checkpoint.Info  // the checkpoint loaded; nil if none
	Skipped    []checkpoint.Info // newer checkpoints that could not be loaded, with why
	WAL        wal.Recovery      // what opening the WAL found (torn tail truncated...)
	FromLSN    uint64            // the first LSN replayed
	ToLSN      uint64            // the last LSN in the WAL
	Events     int64             // event records replayed
	Watermarks int64             // watermark records replayed
	Filtered   int64             // records skipped as already in the checkpoint
	Symbols    int               // symbols known after recovery
	Sources    map[string]uint64 // source offsets by name
	Took       time.Duration
	// PostCheckpoint is the checkpoint taken after the replay (zero
	// without Config.Checkpoints).
	PostCheckpoint checkpoint.Info
}

// SourceOffset returns the offset Recover found for a source: the largest
// Seq it published that is durable. A feed that can resume starts after it.
func (e *Engine) SourceOffset(name string) (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.restored[name]
	return st.offset, ok
}

// Recover restores the engine from its checkpoint and WAL (see above) and
// starts it. Call it instead of Start, before any feed publishes, on a fresh
// engine whose Config.Durability is a *WAL and whose symbol table holds no
// names the checkpoint does not. On error the engine must be discarded (it
// may be partly restored and running): Stop it and exit.
func (e *Engine) Recover(ctx context.Context) (*RecoveryReport, error) {
	if e.wal == nil {
		return nil, fmt.Errorf("%w: Recover needs Config.Durability to be a *engine.WAL", ErrConfig)
	}
	if e.started.Load() {
		return nil, errors.New("engine: Recover after Start")
	}
	start := time.Now()
	rep := &RecoveryReport{WAL: e.wal.w.Recovered(), Sources: map[string]uint64{}}
	c := e.cut
	c.mu.Lock()
	defer c.mu.Unlock()

	r := &replayer{e: e, rep: rep, names: map[int]string{}, offsetIDs: map[int]bool{}, filter: map[int]uint64{},
		pubs: map[string]*Publisher{}, state: map[string]sourceState{}}
	var ck *checkpoint.Checkpoint
	if c.store != nil {
		var err error
		ck, rep.Skipped, err = c.store.LoadLatest()
		if err != nil && !errors.Is(err, checkpoint.ErrNoCheckpoint) {
			return rep, fmt.Errorf("engine: recover: %w", err)
		}
	}
	last := e.wal.LastLSN()
	if ck == nil && e.wal.w.FirstLSN() > 1 {
		return rep, fmt.Errorf("engine: recover: the WAL starts at LSN %d and no valid checkpoint covers the records before it", e.wal.w.FirstLSN())
	}
	if ck != nil {
		if err := r.loadCheckpoint(ck, last); err != nil {
			return rep, fmt.Errorf("engine: recover from checkpoint %d: %w", ck.ID, err)
		}
		info := checkpoint.Info{ID: ck.ID, LSN: ck.LSN, CreatedNs: ck.CreatedNs, Sections: len(ck.Sections)}
		rep.Checkpoint = &info
		rep.FromLSN = ck.LSN + 1
	}
	if c.output != nil {
		hwm, ok := []byte(nil), ck == nil
		if ck != nil {
			hwm, ok = ck.Get(sectionOutput)
		}
		if ok {
			if err := c.output.RestoreOutput(hwm); err != nil {
				return rep, fmt.Errorf("engine: recover: restore output: %w", err)
			}
		} else {
			e.cfg.Logger.Warn("engine: recover: the checkpoint holds no output mark; the output may repeat outputs after it", "checkpoint", ck.ID)
		}
	}
	for _, st := range e.streamOutputs() {
		var hwm []byte
		ok := ck == nil
		if ck != nil {
			hwm, ok = ck.Get(streamOutputSection(st.id))
		}
		if !ok {
			e.cfg.Logger.Warn("engine: recover: the checkpoint holds no output mark for the stream; its output may repeat outputs after it", "stream", st.id)
			continue
		}
		if err := st.output.(CheckpointedOutput).RestoreOutput(hwm); err != nil {
			return rep, fmt.Errorf("engine: recover: restore the output of stream %q: %w", st.id, err)
		}
	}
	e.wal.bind(e.symbols, codec.Symbol(e.symbols.Len()))

	e.recovering = true
	if err := e.Start(); err != nil {
		return rep, err
	}
	e.recovering = false
	if err := r.holdRestored(); err != nil {
		r.detachAll()
		return rep, err
	}
	if err := r.replay(ctx, rep.FromLSN); err != nil {
		r.detachAll()
		return rep, err
	}
	r.detachAll()
	rep.ToLSN = e.wal.LastLSN()
	rep.Symbols = e.symbols.Len()
	e.wal.bind(e.symbols, codec.Symbol(max(r.maxSymbol, e.symbols.Len())))

	e.mu.Lock()
	e.restored = r.state
	for name, st := range r.state {
		rep.Sources[name] = st.offset
	}
	e.mu.Unlock()

	// Wait for the shards to process the replay, and start the next
	// recovery here.
	if c.store != nil {
		info, err := c.checkpointLocked()
		if err != nil {
			return rep, fmt.Errorf("engine: recover: checkpoint after replay: %w", err)
		}
		rep.PostCheckpoint = info
	} else if _, err := c.cut(false); err != nil {
		return rep, err
	}
	c.startTicker()
	rep.Took = time.Since(start)
	return rep, nil
}

// replayer is Recover's state.
type replayer struct {
	e         *Engine
	rep       *RecoveryReport
	names     map[int]string         // publisher id in the WAL's process → source name
	offsetIDs map[int]bool           // publisher id → its message ids are its offsets (its registration's flag)
	filter    map[int]uint64         // publisher id → its cut LSN in the checkpoint
	pubs      map[string]*Publisher  // recovery publisher per source name
	state     map[string]sourceState // per source: offset and watermark state
	maxSymbol int
	ev        codec.Event
	batch     EventBatch
	last      *Publisher // the recovery publisher of the previous record
	// holds are the sources whose watermarks the shards held at the
	// checkpoint's cut, in the checkpoint's order (holdRestored).
	holds []heldWatermark
}

// heldWatermark is a source's watermark that the shards held at a cut.
type heldWatermark struct {
	name string
	wmNs int64
}

func (r *replayer) loadCheckpoint(ck *checkpoint.Checkpoint, walLast uint64) error {
	e := r.e
	data, ok := ck.Get(sectionEngine)
	if !ok {
		return stateErr("no engine section")
	}
	st, err := decodeEngineState(data)
	if err != nil {
		return err
	}
	if st.shards != len(e.shards) {
		return stateErr("the checkpoint was taken with %d shards, this engine has %d: start with the same number of shards", st.shards, len(e.shards))
	}
	for i, name := range st.symbols {
		id, err := e.symbols.InternString(name)
		if err != nil || id != codec.Symbol(i+1) {
			return stateErr("symbol %q is id %d in the checkpoint but %d here (%v): recover into an empty symbol table", name, i+1, id, err)
		}
	}
	r.maxSymbol = len(st.symbols)
	if ck.LSN > walLast {
		return stateErr("the checkpoint covers LSN %d but the WAL ends at %d: the WAL lost acknowledged records", ck.LSN, walLast)
	}
	for _, s := range st.sources {
		if s.lsn > walLast {
			return stateErr("source %q is checkpointed at LSN %d but the WAL ends at %d", s.name, s.lsn, walLast)
		}
		r.names[s.id] = s.name
		r.offsetIDs[s.id] = s.offsetIDs
		if s.lsn > ck.LSN {
			r.filter[s.id] = s.lsn
		}
		if old, ok := r.state[s.name]; !ok || s.offset >= old.offset {
			r.state[s.name] = s
		}
		if s.holds && !s.closed {
			r.hold(s.name, s.sentWmNs)
		}
	}
	if defs, ok := ck.Get(sectionDefs); ok {
		if err := e.restoreDefs(defs); err != nil {
			return err
		}
	}
	for i, s := range e.shards {
		sec, ok := ck.Get(shardSection(i))
		if !ok {
			return stateErr("no section for shard %d", i)
		}
		if err := s.restore(sec); err != nil {
			return err
		}
	}
	return r.loadStreams(ck)
}

// loadStreams loads the state of every stream but the first (their
// sections; a stream without is new: it starts empty) and refuses a
// checkpoint that holds the state of a stream this engine does not run.
func (r *replayer) loadStreams(ck *checkpoint.Checkpoint) error {
	e := r.e
	for _, sec := range ck.Sections {
		id, ok := isStreamSection(sec.Name)
		if !ok {
			continue
		}
		if st, err := e.lookup(id); err != nil || st.idx == 0 {
			return stateErr("the checkpoint holds the state of stream %q, which neither the configuration nor the checkpoint's definitions start: start it (the same configuration) to recover", id)
		}
	}
	for _, st := range e.streamList()[1:] {
		for i, s := range e.shards {
			sec, ok := ck.Get(streamSection(st.id, i))
			if !ok {
				continue
			}
			if err := s.restoreStream(sec, s.strs[st.idx], false); err != nil {
				return fmt.Errorf("stream %q: %w", st.id, err)
			}
		}
	}
	return nil
}

// hold records that the shards held source name's watermark at wmNs (the
// lowest, should two publishers of one name have held one).
func (r *replayer) hold(name string, wmNs int64) {
	for i := range r.holds {
		if r.holds[i].name == name {
			r.holds[i].wmNs = min(r.holds[i].wmNs, wmNs)
			return
		}
	}
	r.holds = append(r.holds, heldWatermark{name: name, wmNs: wmNs})
}

// holdRestored gives every source that held the shards' watermark at the
// checkpoint's cut its recovery publisher and sends that watermark again,
// before any record after the cut is replayed. A checkpoint keeps the
// shards' combined watermark, not each source's: without this the first
// source replayed would set the watermark alone, and another source's
// events after the cut, which the live run processed behind that source's
// own watermark, would be late (TestRecoveryFromCheckpointKeepsSourceWatermarks).
// The watermark sent is one the shards had already combined, so it fires
// nothing; a source that then replays nothing stops holding at detachAll,
// as a live source does at a stop.
func (r *replayer) holdRestored() error {
	for _, h := range r.holds {
		if _, known := r.e.streamOfName(h.name); !known {
			continue // its stream is not running: nothing of it is replayed either
		}
		p, err := r.publisherNamed(h.name)
		if err != nil {
			return err
		}
		p.commitRings()
		p.broadcastWatermark(h.wmNs)
		p.committedSeq.Store(p.lastSeq) // after the watermark
	}
	return nil
}

// replay runs the WAL from fromLSN through recovery publishers.
func (r *replayer) replay(ctx context.Context, fromLSN uint64) error {
	rd, err := wal.OpenReader(r.e.wal.w.Dir(), fromLSN)
	if err != nil {
		return fmt.Errorf("engine: recover: %w", err)
	}
	defer rd.Close()
	for n := 0; ; n++ {
		rec, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("engine: recover: %w", err)
		}
		if n&4095 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := r.record(rec); err != nil {
			seg, off := rd.Position()
			return fmt.Errorf("engine: recover: record %d (segment %s, offset %d): %w", rec.LSN, seg, off, err)
		}
	}
}

func (r *replayer) record(rec wal.Record) error {
	switch rec.Type {
	case RecordEvent:
		if _, err := codec.DecodeStoredFrame(rec.Payload, &r.ev); err != nil {
			return err
		}
		return r.event(rec.LSN)
	case RecordEventBatch:
		if err := r.batch.Reset(rec.Payload); err != nil {
			return err
		}
		for {
			ok, err := r.batch.Next(&r.ev)
			if err != nil || !ok {
				return err
			}
			if err := r.event(rec.LSN); err != nil {
				return err
			}
		}
	case RecordWatermark:
		src, wm, seq, err := DecodeWatermarkRecord(rec.Payload)
		if err != nil {
			return err
		}
		if lsn, ok := r.filter[src]; ok && rec.LSN <= lsn {
			r.rep.Filtered++
			return nil
		}
		p, err := r.publisher(src)
		if err != nil {
			return err
		}
		p.replayWatermark(wm, seq)
		r.rep.Watermarks++
	case RecordSymbol:
		sym, name, err := DecodeSymbolRecord(rec.Payload)
		if err != nil {
			return err
		}
		if have := r.e.symbols.Name(sym); have != "" {
			if have != string(name) {
				return stateErr("symbol %d is %q in the WAL but %q in the table", sym, name, have)
			}
			return nil
		}
		id, err := r.e.symbols.Intern(name)
		if err != nil || id != sym {
			return stateErr("symbol %q is id %d in the WAL but %d here (%v)", name, sym, id, err)
		}
		r.maxSymbol = max(r.maxSymbol, int(sym))
	case RecordSource:
		id, flags, name, err := decodeSourceRecord(rec.Payload)
		if err != nil {
			return err
		}
		r.names[id] = string(name)
		r.offsetIDs[id] = flags&sourceOffsetIDs != 0
		delete(r.filter, id) // a later process reuses the id: its records are all new
	default:
		return &codec.Error{Reason: codec.ReasonUnknownKind, Detail: "unknown WAL record type", Offset: -1}
	}
	return nil
}

// event replays r.ev, logged in the record at lsn.
func (r *replayer) event(lsn uint64) error {
	src := int(r.ev.Source)
	if cut, ok := r.filter[src]; ok && lsn <= cut {
		r.rep.Filtered++
		return nil
	}
	p, err := r.publisher(src)
	if err != nil {
		return err
	}
	r.ev.IngestNs = 0
	r.ev.Flags |= codec.FlagReplay
	if err := p.publish(&r.ev); err != nil {
		return err
	}
	p.lastLSN = lsn
	r.rep.Events++
	return nil
}

// publisher returns the recovery publisher of the source that logged src,
// after the shards have processed everything the previous record's
// publisher handed them (see inOrder), with src's registration's
// PublisherOptions.OffsetIDs: one recovery publisher replays every process's
// publishers of a name, and should they differ (a feed that declared it
// from some version on), it switches at the first record of the other,
// after the shards have processed what it published before, so that each
// event is judged as it was in the live run.
func (r *replayer) publisher(src int) (*Publisher, error) {
	name, ok := r.names[src]
	if !ok {
		return nil, stateErr("an event of publisher %d precedes its registration", src)
	}
	p, err := r.publisherNamed(name)
	if err != nil {
		return nil, err
	}
	if on := r.offsetIDs[src]; on != p.offsetIDs.Load() {
		r.drain(p)
		p.setOffsetIDs(on)
	}
	return p, nil
}

// publisherNamed is publisher for the source's name.
func (r *replayer) publisherNamed(name string) (*Publisher, error) {
	if p := r.pubs[name]; p != nil {
		r.inOrder(p)
		return p, nil
	}
	r.inOrder(nil)
	p, err := r.e.newPublisher(name, true)
	if err != nil {
		return nil, err
	}
	if st, ok := r.state[name]; ok {
		p.maxTsNs, p.sentWmNs, p.maxSeq, p.lastSeq = st.maxTsNs, st.sentWmNs, st.offset, st.offset
		p.setOffsetIDs(st.offsetIDs)
	}
	r.pubs[name] = p
	r.last = p
	return p, nil
}

// inOrder keeps the shards processing the replay in WAL order across
// sources: when the records switch to another source's publisher (next;
// nil for a new one), it makes the previous publisher's events visible and
// waits until the shards have consumed them. Without it each recovery
// publisher's ring would be drained in its own bursts (all of one source,
// then all of the next), so a shard's watermark (the minimum over the
// sources) would run ahead of sources not yet replayed and mark their
// events late, decisions the live run did not make. The live run's order
// across sources is the WAL's up to the shards' lag; a switch costs one
// hand-off to the shards, per batch of a source in the WAL.
func (r *replayer) inOrder(next *Publisher) {
	prev := r.last
	r.last = next
	if prev == nil || prev == next {
		return
	}
	r.drain(prev)
}

// drain makes p's events visible and waits until the shards have consumed
// them (or the engine stops).
func (r *replayer) drain(p *Publisher) {
	p.commitAll()
	for !p.waiter.Wait(p.ringsEmpty, 100*time.Millisecond) {
		if r.e.stopping.Load() {
			return
		}
	}
}

// ringsEmpty reports whether the shards have released every event of p.
func (p *Publisher) ringsEmpty() bool {
	for _, rg := range p.rings {
		if rg.Len() > 0 {
			return false
		}
	}
	return true
}

// detachAll ends the recovery publishers without ending their sources and
// records their state for the live publishers of the same names.
func (r *replayer) detachAll() {
	// The shards first consume what the last publisher replayed (the
	// others were drained at each switch, inOrder): a detach marker in one
	// ring could otherwise be processed before the last watermark in
	// another, and that watermark would then move the shard's alone,
	// firing windows the live run had not (detaching does not advance the
	// watermark, onDetach; a watermark after it does).
	if r.last != nil {
		r.drain(r.last)
	}
	for name, p := range r.pubs {
		p.Detach()
		st := r.state[name]
		st.name = name
		st.offset = max(st.offset, p.maxSeq)
		st.maxTsNs = max(st.maxTsNs, p.maxTsNs)
		st.sentWmNs = max(st.sentWmNs, p.sentWmNs)
		r.state[name] = st
	}
}

// replayWatermark sends a logged watermark from a recovery publisher, or
// marks the source idle (Idle's record).
func (p *Publisher) replayWatermark(wm int64, seq uint64) {
	p.commitRings()
	defer p.committedSeq.Store(p.lastSeq) // after the watermark (commitRings)
	if wm == idleWatermark {
		if !p.idle {
			p.putIdle()
		}
		return
	}
	if wm <= p.sentWmNs && !p.idle {
		return
	}
	p.sentWmNs, p.idle, p.wmHeld = wm, false, true
	ev := codec.Event{Kind: codec.KindWatermark, TsNs: wm, Seq: seq, Source: uint16(p.id)}
	for _, rg := range p.rings {
		rg.Put(&ev)
	}
}

// Detach ends the Publisher without ending its source: what it published
// is made visible and the rings are closed, but no end-of-source watermark
// is sent, so windows stay open and the shards stop counting this
// Publisher's watermark. A durable engine stopped this way (Ctrl-C of
// `qstream run`) resumes the source after a restart exactly where it was;
// Close instead says the source has ended (+∞: every window fires).
func (p *Publisher) Detach() error {
	if p.locked {
		p.lock()
		defer p.mu.Unlock()
	}
	if p.closed {
		return nil
	}
	p.commitRings() // committedSeq goes to MaxUint64 after the marker, below
	ev := codec.Event{Kind: codec.KindWatermark, Aux: detachAux, TsNs: p.sentWmNs, Seq: p.lastSeq, Source: uint16(p.id)}
	for _, r := range p.rings {
		r.Put(&ev)
	}
	p.closed = true
	p.detached.Store(true)
	p.ended.Store(true)
	for _, r := range p.rings {
		r.Close()
	}
	p.committedSeq.Store(math.MaxUint64)
	return nil
}

// detachAux marks the watermark event Detach puts into each ring after the
// Publisher's last event: from there on the shard stops counting the
// source's watermark. (Cut events carry their epoch in Aux; epochs never
// reach this value.)
const detachAux = math.MaxUint64

// onDetach handles a Publisher's detach event: its watermarks up to here
// have been applied; it no longer holds the shard's watermark back, from
// the next watermark of another source on. Detaching does not advance the
// watermark by itself: sources are detached together (a stop, the end of a
// recovery replay) in an order of no meaning, and the first ones leaving
// must not let the others' watermarks fire windows (and make later events
// late) that the running stream had not fired.
func (s *shard) onDetach(ss *shardStream, src int, seq uint64) {
	ss.wm.Detach(src)
}

// setupDurability wires the durable parts that do not need the shards.
func (e *Engine) setupDurability() error {
	if w, ok := e.cfg.Durability.(*WAL); ok {
		e.wal = w
		w.bind(e.symbols, 0)
	}
	if cc := e.cfg.Checkpoints; cc != nil {
		if e.wal == nil {
			return fmt.Errorf("%w: checkpoints need Durability to be a *engine.WAL", ErrConfig)
		}
		if cc.Dir == "" {
			return fmt.Errorf("%w: checkpoint directory is empty", ErrConfig)
		}
	}
	return nil
}

// setupShardDurability gives the shards their dedup sets and checks that
// checkpoints can snapshot every processor.
func (e *Engine) setupShardDurability() error {
	for _, s := range e.shards {
		if e.cfg.DedupHorizon > 0 {
			s.dedup = newDedupSet(e.cfg.DedupHorizon)
		}
		if e.cfg.Checkpoints != nil {
			if _, ok := s.strs[0].proc.(StatefulProcessor); !ok {
				return fmt.Errorf("%w: checkpoints need every processor to implement engine.StatefulProcessor (shard %d's is %T)", ErrConfig, s.id, s.strs[0].proc)
			}
		}
	}
	if e.wal != nil {
		e.cut = newCutCoord(e, e.wal)
	}
	return nil
}

// initPublisher sets up a new Publisher's durable parts and its options.
// Called by newPublisher under e.mu.
func (e *Engine) initPublisher(p *Publisher, replay bool, opts PublisherOptions) error {
	p.replay = replay
	p.firstEpoch = e.cutEpoch + 1
	p.srcHash = codec.HashID([]byte(p.name))
	p.scopeHash = codec.HashID([]byte(dedupScope(p.name)))
	p.locked = e.wal != nil
	if e.wal != nil {
		p.walLimit = min(batchBytesMax, e.wal.w.MaxRecordSize())
	}
	if e.wal == nil || replay {
		p.setOffsetIDs(opts.OffsetIDs && !replay) // a recovery publisher's follow the WAL (replayer.publisher)
		return nil
	}
	if st, ok := e.restored[p.name]; ok {
		p.maxTsNs, p.sentWmNs, p.maxSeq, p.lastSeq = st.maxTsNs, st.sentWmNs, st.offset, st.offset
		p.resumeSeq = st.offset
	}
	p.setOffsetIDs(opts.OffsetIDs) // after the restored offset: every event up to it is processed
	var flags uint16
	if opts.OffsetIDs {
		flags |= sourceOffsetIDs
	}
	return e.wal.logSource(p.id, p.name, flags)
}
