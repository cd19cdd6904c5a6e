package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"qstream/codec"
	"qstream/internal/clock"
	"qstream/ring"
)

// ErrStopped is returned by Publisher methods after the engine stopped or
// the Publisher was closed.
var ErrStopped = errors.New("engine: stopped")

// publishBatchMax bounds how many slots a Publisher claims at once in a
// shard's ring: events become visible at the latest when that many are
// written, or at Flush.
const publishBatchMax = 256

// Publisher hands one producer goroutine's events to the shards. It owns the
// producer side of one SPSC ring into every shard, so it must only be used by
// one goroutine. Events are routed by symbol (all events of a symbol reach
// the same shard, in publication order) and published in batches: they
// become visible to the shards when a batch fills or at Flush.
//
// # Source offsets
//
// Event.Seq is the source offset of an event: per Publisher name, strictly
// increasing, continuing across restarts (recovery restores the largest one
// logged: Engine.SourceOffset). A feed with resumable offsets of its own
// (the synthetic index, a JetStream stream sequence) sets Seq itself and
// resumes after the restored offset; a feed without (TCP, webhook,
// WebSocket) leaves Seq 0 and Publish assigns the next offset, one more
// than the largest so far. The keys of per-input outputs are built from the
// message id within the feed (see dedupScope) or, for a message without
// one, from the Publisher's name and this offset (SourceKeyedProcessor), so
// they are unique per input message and the same in a WAL replay.
//
// # Offsets as message ids
//
// A source whose message ids are its offsets - every message has one Seq,
// set by the feed, strictly increasing, and a resent message comes back
// with the Seq it had - declares it when its Publisher is created
// (PublisherOptions.OffsetIDs). With Config.DedupHorizon > 0 its events are
// then de-duplicated as Kafka's idempotent producer's are, by sequence
// number: an event whose Seq is not above the largest Seq already processed
// from the source (by name) is a duplicate, at no cost per event, and its
// ids do not take room in the dedup horizon (see offsetDedup). The
// declaration is logged with the Publisher's WAL registration and kept in
// checkpoints, so a recovery replay decides as the live run did.
//
// The Publisher is also a watermark source: it tracks the largest event time
// it has published and, at each Flush where that moved, sends every shard a
// KindWatermark event of (largest − out-of-orderness). Close sends +∞: the
// source has ended.
type Publisher struct {
	e      *Engine
	id     int
	name   string
	stream *stream // the stream it belongs to (streams.go)
	// api: the stream's ProcessMessage publisher; capture is the request
	// the shards fill while its message is processed.
	api     bool
	capture atomic.Pointer[captureReq]
	rings   []*ring.SPSC[codec.Event]
	claim   [][]codec.Event // claimed, unpublished slots per shard
	fill    []int           // how many of claim[s] are written
	waiter  *ring.Waiter
	inPlace inPlaceClaim // Claim, ClaimBatch (publisher_claim.go)

	frame []byte // WAL frame buffer, reused
	// The WAL batch being built (walbatch.go): appended as one record
	// before its events become visible (flushWAL); walErr is sticky.
	walBuf     []byte
	walN       int
	walPrev    batchPrev
	walLimit   int
	walErr     error
	nowNs      int64 // ingest stamp for the current batch; 0 = read the clock on next Publish
	maxTsNs    int64
	maxTsPub   atomic.Int64 // maxTsNs for readers (Engine.Publishers), stored when the watermark moves
	sentWmNs   int64
	lastSeq    uint64
	lastLSN    uint64
	closed     bool
	ooNs       int64
	published  atomic.Uint64 // events accepted and made visible
	pubPending uint64        // accepted, not yet added to published
	rejected   [codec.ReasonCount]atomic.Uint64
	// lastActiveNs is the processing time of the last Flush; shards read it
	// to decide whether the source is idle.
	lastActiveNs atomic.Int64
	ended        atomic.Bool
	// committedSeq is the Seq of the last event known visible in every ring:
	// a shard whose rings from this Publisher are empty has seen every event
	// up to it (the ordered collector's progress argument).
	committedSeq atomic.Uint64

	// Durable engines: mu is held by Publish, Flush, Barrier (its flush),
	// Close, ClaimBatch and CommitBatch (not in between: see lock), and by
	// the checkpoint coordinator while it puts a cut event into the rings
	// (see checkpoint.go); locked says whether to take it.
	mu         sync.Mutex
	locked     bool
	replay     bool          // a recovery publisher: its events are already in the WAL
	detached   atomic.Bool   // ended without an end-of-source watermark (Detach)
	firstEpoch uint64        // the first cut epoch this Publisher takes part in
	injected   atomic.Uint64 // the last cut epoch injected into its rings
	srcHash    uint64        // codec.HashID of the name: the source identity in output keys
	scopeHash  uint64        // codec.HashID of dedupScope(name): the source part of dedup keys
	// offsetIDs: the source's message ids are its offsets (PublisherOptions;
	// a recovery publisher follows the WAL's and checkpoint's registrations,
	// setOffsetIDs). offsetBase is maxSeq when it was last set, written
	// before it: every event of the source up to offsetBase is processed
	// before any the Publisher publishes from then on (offsetDedup).
	offsetIDs  atomic.Bool
	offsetBase uint64
	maxSeq     uint64 // the largest Seq published: the source offset
	// resumeSeq is the offset a recovered source resumes after: while an
	// at-least-once upstream re-sends events up to it (duplicates), Flush
	// sends no watermark, so the restored one is not sent ahead of the
	// position where the uninterrupted run would have sent it.
	resumeSeq uint64
	// idle: Idle was called and the source has not rejoined since (see
	// Idle); idleAt is published at that call.
	idle   bool
	idleAt uint64
	// wmHeld: a watermark this Publisher sent holds the shards' watermark
	// back (sent, not idle since); checkpoints record it (checkpoint.go).
	wmHeld bool
}

// Name returns the name the Publisher was created with.
func (p *Publisher) Name() string { return p.name }

// Publish copies ev into the ring of the shard that owns ev.Symbol. It
// stamps IngestNs (once per batch) when the caller left it zero, and sets
// ev.Seq to the next source offset when the caller left it zero. It blocks
// while that ring is full (backpressure); it returns ErrStopped once the
// Publisher is closed. With a WAL configured the event is appended first.
func (p *Publisher) Publish(ev *codec.Event) error {
	if p.stream.paused.Load() {
		p.waitGate()
	}
	if p.locked {
		p.lock()
		err := p.publish(ev)
		p.mu.Unlock()
		return err
	}
	return p.publish(ev)
}

// PublishText publishes ev followed by the KindText events that carry its
// text (see codec/text.go), as one group: a checkpoint never falls inside
// it, and the WAL holds the event and its chunks in order, so recovery
// replays the same group. ev.TextLen is set to len(text), which must be at
// most codec.MaxText. With no text it is Publish (ev.TextLen is left alone:
// a WAL replay publishes chunks as the events that follow).
func (p *Publisher) PublishText(ev *codec.Event, text []byte) error {
	if len(text) == 0 {
		return p.Publish(ev) // its chunks, if it has any (a WAL replay), follow as events
	}
	if len(text) > codec.MaxText {
		return fmt.Errorf("engine: event text of %d bytes, the limit is %d", len(text), codec.MaxText)
	}
	if p.stream.paused.Load() {
		p.waitGate()
	}
	if p.locked {
		p.lock()
		defer p.mu.Unlock()
	}
	ev.TextLen = uint32(len(text))
	if err := p.publish(ev); err != nil {
		return err
	}
	var c codec.Event
	for off := 0; off < len(text); {
		off += codec.SetTextChunk(&c, ev, text, off)
		if err := p.publish(&c); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) publish(ev *codec.Event) error {
	if p.closed {
		return ErrStopped
	}
	if ev.IngestNs == 0 && p.nowNs == 0 {
		p.readClock()
	}
	p.stamp(ev)
	s := p.e.route(ev.Symbol)
	if ev.Flags&codec.FlagBroadcast == 0 && p.fill[s] == len(p.claim[s]) {
		// A new claim before the event's WAL append (put would take it
		// after): the events of the last claim, made visible now, are one
		// batch without it, as when they are claimed in place (ClaimBatch
		// takes the new claim before the events are filled).
		if err := p.reclaim(s); err != nil {
			return err
		}
	}
	if d := p.e.cfg.Durability; d != nil && !p.replay {
		if w := p.e.wal; w != nil && p.e.cfg.WALBatches {
			if p.walErr != nil {
				return p.walErr
			}
			if err := p.logBatchEvent(w, ev); err != nil {
				return err
			}
		} else {
			// A record per event (another Durability, or no WALBatches).
			if w := p.e.wal; w != nil && w.needSymbol(ev.Symbol) {
				if err := w.logSymbols(ev.Symbol); err != nil {
					return err
				}
			}
			p.frame = codec.AppendCompactFrame(p.frame[:0], ev)
			lsn, err := d.Append(p.frame)
			if err != nil {
				return err
			}
			p.lastLSN = lsn
		}
	}
	if ev.Flags&codec.FlagBroadcast == 0 {
		if err := p.put(s, ev); err != nil {
			return err
		}
	} else {
		// Every shard gets a copy; the owner's is the primary one.
		for r := range p.rings {
			if err := p.put(r, ev); err != nil {
				return err
			}
			if r == s {
				p.claim[r][p.fill[r]-1].Flags |= codec.FlagPrimary
			}
		}
	}
	p.account(ev)
	return nil
}

// stamp sets what the Publisher owns in an event it is about to log and
// publish: the flags the engine sets, the ingest stamp and the source
// offset when the caller left them zero, and the source. The batch's ingest
// stamp is read first (readClock) when the event needs it.
func (p *Publisher) stamp(ev *codec.Event) { stampEvent(ev, p.nowNs, uint16(p.id), p.maxSeq) }

// stampEvent is stamp with the Publisher's fields as values (commitInPlace
// keeps them in registers over a batch): it returns the event's offset.
func stampEvent(ev *codec.Event, nowNs int64, src uint16, maxSeq uint64) uint64 {
	ev.Flags &^= codec.FlagPrimary // the engine's to set (route)
	if ev.IngestNs == 0 {
		ev.IngestNs = nowNs
	}
	ev.Source = src
	seq := ev.Seq // a local: not reloaded after the stores into ev
	if seq == 0 {
		seq = maxSeq + 1 // before the WAL append: a replay sees the same offset
		ev.Seq = seq
	}
	return seq
}

// readClock takes the ingest stamp of the events published until the next
// Flush (once per batch); out of line, so that its callers inline.
//
//go:noinline
func (p *Publisher) readClock() { p.nowNs = clock.MonoNs() }

// account records an event written into its ring's claim: the largest event
// time (the watermark), the last and largest offsets, the published count.
func (p *Publisher) account(ev *codec.Event) {
	m := p.marks().add(ev.TsNs, ev.Seq, ev.Kind)
	p.setMarks(m)
}

// pubMarks is what account records of the events a Publisher writes, as a
// value: the largest event time, the last and largest offsets, the count
// not yet published. Small enough for the compiler to keep in registers
// over a loop (commitInPlace).
type pubMarks struct {
	maxTsNs                  int64
	lastSeq, maxSeq, pending uint64
}

func (p *Publisher) marks() pubMarks {
	return pubMarks{p.maxTsNs, p.lastSeq, p.maxSeq, p.pubPending}
}

func (p *Publisher) setMarks(m pubMarks) {
	p.maxTsNs, p.lastSeq, p.maxSeq, p.pubPending = m.maxTsNs, m.lastSeq, m.maxSeq, m.pending
}

// add returns m with an event of time tsNs, offset seq and kind kind
// recorded. A value method: its callers' marks stay in registers (a pointer
// method takes their address, and the compiler kept them on the stack, each
// event waiting for the last one's stores).
func (m pubMarks) add(tsNs int64, seq uint64, kind codec.Kind) pubMarks {
	m.maxTsNs = max(m.maxTsNs, tsNs)
	m.lastSeq = seq
	m.maxSeq = max(m.maxSeq, seq)
	if kind != codec.KindText {
		m.pending++ // into published when the events become visible (commit): no atomic per event
	}
	return m
}

// put writes ev into the claim of shard s's ring.
func (p *Publisher) put(s int, ev *codec.Event) error {
	if p.fill[s] == len(p.claim[s]) {
		if err := p.reclaim(s); err != nil {
			return err
		}
	}
	if slot := &p.claim[s][p.fill[s]]; slot != ev { // ev is the slot itself when it was claimed in place
		*slot = *ev
	}
	p.fill[s]++
	return nil
}

// reclaim publishes what is written in shard s's claim and claims a new
// batch. Before it waits for space it makes everything visible, so that no
// shard (and no ordered collector) waits on events this Publisher holds.
func (p *Publisher) reclaim(s int) error {
	r := p.rings[s]
	if err := p.flushWAL(); err != nil {
		return err
	}
	p.commit(s)
	if c := r.Claim(publishBatchMax); len(c) > 0 {
		p.claim[s] = c
		return nil
	}
	p.commitAll()
	p.claim[s] = r.ClaimWait(publishBatchMax)
	if len(p.claim[s]) == 0 {
		return ErrStopped
	}
	return nil
}

// commitAll publishes every shard's written slots and records that every
// event up to lastSeq is visible.
func (p *Publisher) commitAll() {
	p.commitRings()
	p.committedSeq.Store(p.lastSeq)
}

// commitRings publishes every shard's written slots without recording it:
// a caller that puts a watermark (or a cut, idle or detach marker, all with
// Seq lastSeq) into the rings next records it only after those puts, or a
// shard could read the committed Seq, find its rings empty and report
// progress past the marker's outputs before it processed the marker (the
// ordered collector would then let another shard's outputs of that Seq go
// first).
//
// The events' WAL batch is appended first (flushWAL); if that fails they
// stay invisible, and the error is the Publisher's from then on.
func (p *Publisher) commitRings() {
	if p.flushWAL() != nil {
		return
	}
	for s := range p.rings {
		p.commit(s)
	}
}

// logBatchEvent puts ev into the Publisher's WAL event batch (its symbol's
// record first, when the WAL has not logged the symbol yet) and appends the
// batch once it is full: the WAL step of publish and of the in-place
// commit (commitInPlaceWAL).
func (p *Publisher) logBatchEvent(w *WAL, ev *codec.Event) error {
	if w.needSymbol(ev.Symbol) {
		if err := w.logSymbols(ev.Symbol); err != nil {
			return err
		}
	}
	if p.walN == 0 {
		p.walBuf = beginBatch(p.walBuf[:0], p.id)
		p.walPrev.reset()
	}
	p.walBuf = appendBatchEvent(p.walBuf, &p.walPrev, ev)
	p.walN++
	if len(p.walBuf) > p.walLimit-batchEventMax {
		return p.flushWAL()
	}
	return nil
}

// flushWAL appends the events published since the last flush as one WAL
// record (an event batch), before they become visible to the shards.
func (p *Publisher) flushWAL() error {
	if p.walErr != nil {
		return p.walErr
	}
	if p.walN == 0 {
		return nil
	}
	finishBatch(p.walBuf, p.walN)
	lsn, err := p.e.wal.w.Append(RecordEventBatch, p.walBuf)
	p.walN = 0
	if err != nil {
		p.walErr = err
		return err
	}
	p.lastLSN = lsn
	return nil
}

// commit publishes the written slots of shard s's claim and drops the rest
// of the claim (a ring holds one claim at a time, and Put claims too).
func (p *Publisher) commit(s int) {
	k := p.fill[s]
	chain := k > 0 && p.e.cfg.Chain && !p.replay
	if chain {
		p.rings[s].PublishQuiet(k) // chainPublished wakes the shard or runs its round
	} else if k > 0 {
		p.rings[s].Publish(k)
	}
	if p.pubPending > 0 {
		p.published.Add(p.pubPending)
		p.pubPending = 0
	}
	p.claim[s] = nil
	p.fill[s] = 0
	if chain {
		p.e.shards[s].chainPublished(p.rings[s]) // operator chaining (chain.go)
	}
}

// Flush makes every published event visible and, when the largest event time
// moved, sends the new watermark to every shard.
func (p *Publisher) Flush() error {
	if p.locked {
		p.lock()
		err := p.flush()
		p.mu.Unlock()
		return err
	}
	return p.flush()
}

func (p *Publisher) flush() error {
	if p.closed {
		return ErrStopped
	}
	// The events' WAL batch goes before the watermark's record; if it
	// fails the events stay invisible (commitRings).
	if p.flushWAL() != nil {
		return p.walErr
	}
	defer p.committedSeq.Store(p.lastSeq) // after the watermark (commitRings)
	if p.maxTsNs != math.MinInt64 && p.lastSeq >= p.resumeSeq {
		wm := p.maxTsNs - p.ooNs
		// An idle source that published again rejoins with its
		// watermark, moved or not (never behind what it sent).
		// (pubPending: this flush's events, counted at commitRings below)
		rejoin := p.idle && p.published.Load()+p.pubPending > p.idleAt
		if rejoin {
			wm = max(wm, p.sentWmNs)
		}
		if wm > p.sentWmNs || rejoin {
			if err := p.logWatermark(wm); err != nil {
				p.commitRings()
				return err
			}
			// Written behind the events in the same claims, and made
			// visible with them by one Publish per ring: a shard woken by
			// the events finds the watermark with them, rather than
			// finishing a batch that ends with event Seq N (its progress
			// N, for the ordered collector) before the watermark with Seq
			// N, whose window outputs then come after that progress.
			p.putWatermark(wm)
			p.maxTsPub.Store(p.maxTsNs)
			p.idle = false
		}
	}
	p.commitRings()
	p.nowNs = 0
	p.lastActiveNs.Store(clock.MonoNs())
	return nil
}

// putWatermark writes watermark wm into every shard's claim, behind the
// events written there, for the next commitRings to publish.
func (p *Publisher) putWatermark(wm int64) {
	p.sentWmNs, p.wmHeld = wm, true
	ev := codec.Event{Kind: codec.KindWatermark, TsNs: wm, Seq: p.lastSeq, Source: uint16(p.id)}
	for s, r := range p.rings {
		if p.fill[s] < len(p.claim[s]) {
			p.claim[s][p.fill[s]] = ev
			p.fill[s]++
			continue
		}
		p.commit(s)
		if c := r.Claim(publishBatchMax); len(c) > 0 {
			c[0] = ev
			p.claim[s], p.fill[s] = c, 1
			continue
		}
		// Full: what is written becomes visible before the wait (as in
		// reclaim), but the committed Seq stays behind until the
		// watermark is in every ring (see commitRings).
		p.commitRings()
		r.Put(&ev) // a closed ring drops it: nobody reads it any more
	}
}

func (p *Publisher) broadcastWatermark(wm int64) {
	p.sentWmNs, p.wmHeld = wm, true
	ev := codec.Event{Kind: codec.KindWatermark, TsNs: wm, Seq: p.lastSeq, Source: uint16(p.id)}
	for _, r := range p.rings {
		r.Put(&ev)
	}
}

// Idle says the source has nothing to send for now (a TCP event loop
// without connections): what it published is made visible and the shards
// stop counting its watermark, which would otherwise hold theirs back for
// as long as it stays silent. Once it publishes again, its next Flush sends
// its watermark (never one behind what it sent before) and from there on it
// counts again; events it publishes meanwhile are processed at the shards'
// watermark (late if behind it, as for any source). A WAL record makes a
// recovery replay do the same. Idle is for the Publisher's goroutine, like
// Publish.
func (p *Publisher) Idle() error {
	if p.locked {
		p.lock()
		defer p.mu.Unlock()
	}
	if p.closed {
		return ErrStopped
	}
	if p.idle {
		return nil
	}
	p.commitRings()
	defer p.committedSeq.Store(p.lastSeq) // after the idle marker (commitRings)
	if err := p.logWatermark(idleWatermark); err != nil {
		return err
	}
	p.putIdle()
	p.idleAt = p.published.Load()
	return nil
}

// idleWatermark is the watermark of the WAL record Idle logs: no real
// watermark takes this value.
const idleWatermark = math.MinInt64

// putIdle puts the idle marker into every ring and marks p idle.
func (p *Publisher) putIdle() {
	p.idle, p.wmHeld = true, false
	ev := codec.Event{Kind: codec.KindWatermark, Aux: idleAux, TsNs: p.sentWmNs, Seq: p.lastSeq, Source: uint16(p.id)}
	for _, r := range p.rings {
		r.Put(&ev)
	}
}

// idleAux marks the watermark event Idle puts into each ring: from there on
// the shard does not count the source's watermark until the next one it
// sends. (Cut epochs never reach this value; detachAux is MaxUint64.)
const idleAux = math.MaxUint64 - 1

// Barrier flushes, then waits until every event published so far is durable.
// Mark makes every event published so far visible (Flush) and returns the
// WAL position that Barrier would wait for: WaitLSN(lsn) returns once they
// are all durable. A feed that acknowledges from another goroutine than
// the one that publishes (the TCP feed's ackers) marks here and waits there,
// so publishing goes on during the sync. lsn 0: nothing to wait for.
func (p *Publisher) Mark() (uint64, error) {
	if err := p.Flush(); err != nil {
		return 0, err
	}
	if p.e.cfg.Durability == nil {
		return 0, nil
	}
	if p.locked {
		p.lock()
		defer p.mu.Unlock()
	}
	return p.lastLSN, nil
}

// WaitLSN returns once lsn (from Mark) is durable. Unlike the other
// methods it may be called from any goroutine.
func (p *Publisher) WaitLSN(ctx context.Context, lsn uint64) error {
	d := p.e.cfg.Durability
	if d == nil || lsn == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.WaitDurable(lsn)
}

func (p *Publisher) Barrier(ctx context.Context) error {
	if err := p.Flush(); err != nil {
		return err
	}
	d := p.e.cfg.Durability
	if d == nil || p.lastLSN == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.WaitDurable(p.lastLSN)
}

// Reject counts a rejected input and hands it to the dead-letter handler.
func (p *Publisher) Reject(raw []byte, reason codec.Reason, pos codec.Position, err error) {
	if int(reason) >= codec.ReasonCount {
		reason = codec.ReasonMalformed
	}
	p.rejected[reason].Add(1)
	p.e.rejected[reason].Add(1)
	if h := p.e.cfg.DeadLetters; h != nil {
		h.HandleDeadLetter(&DeadLetter{Reason: reason, Feed: p.name, Pos: pos, Raw: raw, Err: err})
	}
}

// Close flushes, sends the end-of-source watermark (+∞) and closes the
// rings. The shards drain what was published. Close is idempotent.
func (p *Publisher) Close() error {
	if p.locked {
		p.lock()
		defer p.mu.Unlock()
	}
	if p.closed {
		return nil
	}
	// The end-of-source watermark goes into the rings with the last
	// events, in one Publish per ring (see putWatermark in flush);
	// committedSeq goes to MaxUint64 after it, below.
	if p.flushWAL() == nil {
		p.putWatermark(math.MaxInt64)
		p.commitRings()
	} else {
		p.broadcastWatermark(math.MaxInt64) // the events stay invisible (commitRings)
	}
	p.closed = true
	p.ended.Store(true)
	for _, r := range p.rings {
		r.Close()
	}
	p.committedSeq.Store(math.MaxUint64)
	p.lastActiveNs.Store(clock.MonoNs())
	return nil
}

// Published returns the number of events published.
func (p *Publisher) Published() uint64 { return p.published.Load() }

// dedupScope returns the part of a publisher name that scopes its message
// ids: the name up to its first '/'. A feed that runs several publishers
// names them "<feed>/<member>" (TCP event loops "tcp/loop0", JetStream
// partitions "js/p1"), so one message id resent through any of them is one
// message; publishers of different feeds never share ids.
func dedupScope(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return name
}
