package engine

import (
	"errors"
	"fmt"

	"qstream/codec"
)

// In-place publication: a producer that parses its input fills the events in
// the ring slots they are handed over in (as a Disruptor's producer fills its
// entries) instead of filling an event of its own that Publish then copies
// into the ring. Copying a 128-byte event per message costs more than the
// hand-off itself (BENCHMARKS.md: the ring rows).
//
//	evs, err := p.ClaimBatch(n)    // zeroed events, in a shard's ring
//	... fill evs[:k] (a parse error: leave the event out, reuse its slot) ...
//	err = p.CommitBatch(k)         // what Publish does for each, in order
//
// Claim and Commit are the same for one event.

// ErrNoClaim is returned by Commit and CommitBatch when no claim is
// outstanding: none was made, or a method of the Publisher called after it
// abandoned it. Nothing is published then.
var ErrNoClaim = errors.New("engine: commit without an outstanding claim")

// inPlaceClaim is a Publisher's state for Claim and ClaimBatch.
type inPlaceClaim struct {
	// evs is the outstanding claim, nil when there is none: slots of the
	// ring of shard guess (from claim[guess][fill[guess]]).
	evs []codec.Event
	// guess is the shard whose ring the next claim takes its slots from:
	// where the last committed event went. A symbol routed elsewhere costs
	// a copy (what Publish does for every event).
	guess int
	// one is the place a claimed event that has to be copied anyway (a
	// broadcast, text) is moved to.
	one [1]codec.Event
	// A locked (durable) Publisher's claim, under mu: out says a claim is
	// outstanding (from ClaimBatch to CommitBatch or the next method that
	// ends it, lock), cut is the checkpoint cut that waits for its end
	// (injectCut leaves it here rather than write into the rings while
	// the caller fills their slots; endClaim places it).
	out bool
	cut *cutTicket
}

// ClaimBatch returns between 1 and n zeroed events for the caller to fill
// in place (a parser parses straight into them) and publish with
// CommitBatch: what Publish does, without a copy of each event, when they
// are filled in the ring's slots themselves. CommitBatch does everything
// Publish does for each event (routing by the symbol the caller wrote, the
// WAL append before an event becomes visible, the source offset, the ingest
// stamp, the watermark bookkeeping); ClaimBatch waits at the pause gate of
// a paused stream, blocks while the ring is full (backpressure) and returns
// ErrStopped once the Publisher is closed. Fewer than n events come back
// at the end of the ring's buffer or of the Publisher's claim in it (at
// most 256); n < 1 is taken as 1.
//
// The events are valid until CommitBatch or the next call of any other
// method of the Publisher but Reject, which may abandon the claim
// (CommitBatch then returns ErrNoClaim); the caller must not touch them
// after either. An
// abandoned claim, or the events after the k committed ones, leave nothing
// behind: nothing is visible, numbered or logged before CommitBatch, and
// the next claim hands out the same slots again. So a caller that cannot
// parse an input into the next event rejects the input (Reject) and parses
// the next one into the same event; it never commits a half-filled one.
//
// Where the events live: the slots are the next ones of the ring of the
// shard that the last committed event went to (the only ring with one
// shard). An event whose symbol routes to another shard is copied into that
// shard's ring at CommitBatch, as Publish copies every event, and the
// in-place events after it move down to keep the ring's slots contiguous;
// broadcast events are copied too.
//
// A durable engine's Publisher (one with a WAL) hands out ring slots too,
// and CommitBatch logs the events from there (their WAL batch is encoded
// from the slots). The checkpoint coordinator, which writes cut events into
// the rings from another goroutine (injectCut), does not write while a
// claim is outstanding: it leaves the cut to the Publisher, which places it
// when the claim ends - behind the committed events at CommitBatch, or
// before anything else when another method of the Publisher abandons the
// claim - and waits for that (see cutCoord.awaitClaims). So the caller of a
// durable Publisher must not wait for anything but the Publisher (input, a
// lock of its own) between ClaimBatch and CommitBatch: a checkpoint waits
// for the claim to end, and the shards' alignment on the cut holds the
// other publishers back meanwhile. A checkpoint that waits longer than
// CheckpointConfig.ClaimWait fails (counted in CheckpointStats.Failed, its
// error naming the Publisher; periodic checkpoints try again at their next
// tick); its cut is completed when the claim ends.
func (p *Publisher) ClaimBatch(n int) ([]codec.Event, error) {
	c := &p.inPlace
	c.evs = nil
	if p.stream.paused.Load() {
		p.waitGate()
	}
	n = min(max(n, 1), publishBatchMax)
	if p.locked {
		p.lock() // ends a claim still outstanding
		defer p.mu.Unlock()
	}
	if p.closed {
		return nil, ErrStopped
	}
	g := c.guess
	if p.fill[g] == len(p.claim[g]) {
		if err := p.reclaim(g); err != nil {
			return nil, err
		}
	}
	free := p.claim[g][p.fill[g]:]
	k := min(n, len(free))
	evs := free[:k:k]
	if k == 1 {
		evs[0] = codec.Event{} // inline stores, not a call of memclr
	} else {
		clear(evs)
	}
	c.evs = evs
	c.out = p.locked
	return evs, nil
}

// CommitBatch publishes the first k events of the last ClaimBatch, in
// order, as Publish would publish copies of them, and ends the claim; the
// others are dropped (their slots are handed out again). It returns
// ErrNoClaim when the claim was abandoned (see ClaimBatch), without
// publishing anything, and the first error of Publish otherwise (the events
// after the one that failed are not published). k is at most the number
// of events claimed.
func (p *Publisher) CommitBatch(k int) error {
	evs, ok := p.takeClaim()
	if p.locked {
		p.mu.Lock()
		defer p.unlockClaim() // a cut that waited for the claim goes behind its events
	}
	if !ok {
		return ErrNoClaim
	}
	if k < 0 || k > len(evs) {
		return fmt.Errorf("engine: CommitBatch(%d) of %d events claimed", k, len(evs))
	}
	evs = evs[:k]
	c := &p.inPlace
	i, err := p.commitInPlace(evs)
	if err != nil {
		return err
	}
	for ; i < len(evs); i++ {
		ev := &evs[i]
		if ev.Flags&codec.FlagBroadcast != 0 {
			// Copies go into every ring, and the slot's own ring may be
			// made visible before the last copy is taken from it.
			c.one[0] = *ev
			ev = &c.one[0]
		}
		sym := ev.Symbol
		if err := p.publish(ev); err != nil {
			return err
		}
		c.guess = p.e.route(sym)
	}
	return nil
}

// lock takes a locked Publisher's mu for one of its own methods and ends
// the claim outstanding, if any: the method may write the claimed slots
// (a put, a marker) or drop the ring's claim, and the cut waiting for the
// claim goes in first, where it would have gone had the claim not been made.
// The checkpoint coordinator takes mu itself (injectCut).
func (p *Publisher) lock() {
	p.mu.Lock()
	if p.inPlace.out {
		p.endClaim()
	}
}

// unlockClaim ends CommitBatch: the claim ends, a cut waiting for it is
// placed behind its events, and mu is released.
func (p *Publisher) unlockClaim() {
	if p.inPlace.out {
		p.endClaim()
	}
	p.mu.Unlock()
}

// endClaim ends a locked Publisher's outstanding claim (under mu) and
// places the cut that waited for it, if any, handing the coordinator its
// state.
func (p *Publisher) endClaim() {
	c := &p.inPlace
	c.out, c.evs = false, nil
	if t := c.cut; t != nil {
		c.cut = nil
		t.st = p.placeCut(t.epoch, t.w)
		close(t.done)
	}
}

// commitInPlace publishes the leading events of evs, the claim at
// claim[guess][fill[guess]:], that stay where they are: events of symbols
// that the guessed shard owns, not broadcast. It does for each what
// publish does (stamp, the WAL batch of a durable Publisher, account) and
// returns how many it took; publish takes the rest (put moves an event that
// routes to the guessed shard after one that did not down to the next free
// slot). A durable Publisher that logs a record per event (no WALBatches,
// another Durability) leaves them all to publish, which writes them in
// place too.
func (p *Publisher) commitInPlace(evs []codec.Event) (int, error) {
	if p.closed {
		return 0, nil
	}
	if p.e.cfg.Durability != nil && !p.replay {
		if p.e.wal == nil || !p.e.cfg.WALBatches || p.walErr != nil {
			return 0, nil
		}
		return p.commitInPlaceWAL(evs)
	}
	g := p.inPlace.guess
	if p.nowNs == 0 {
		p.readClock()
	}
	run := evs
	if len(p.rings) > 1 {
		run = evs[:p.routedTo(evs, g)]
	}
	n, m := stampInPlace(run, p.nowNs, uint16(p.id), p.marks())
	p.setMarks(m)
	p.fill[g] += n
	return n, nil
}

// routedTo returns how many leading events of evs route to shard g.
func (p *Publisher) routedTo(evs []codec.Event, g int) int {
	for i := range evs {
		if p.e.route(evs[i].Symbol) != g {
			return i
		}
	}
	return len(evs)
}

// stampInPlace stamps the leading events of evs up to the first broadcast one
// (stampEvent), adds them to m and returns how many it took and the marks.
// Its loop has nothing else in it, so the compiler keeps the marks in
// registers: with the routing of commitInPlace in the same loop (and
// pubMarks.add a pointer method) it kept them on the stack, and each event
// waited for the last one's store of the largest offset and time (a chain
// through memory of some 6 cycles an event).
func stampInPlace(evs []codec.Event, nowNs int64, src uint16, m pubMarks) (int, pubMarks) {
	n := 0
	for ; n < len(evs); n++ {
		ev := &evs[n]
		if ev.Flags&codec.FlagBroadcast != 0 {
			break
		}
		seq := stampEvent(ev, nowNs, src, m.maxSeq)
		m = m.add(ev.TsNs, seq, ev.Kind)
	}
	return n, m
}

// commitInPlaceWAL is commitInPlace for a Publisher that logs event
// batches: publish's steps for each event, in its order (stamp, the WAL
// batch: logBatchEvent, account), with the marks in locals. An error
// leaves the event it failed on out, as publish does.
func (p *Publisher) commitInPlaceWAL(evs []codec.Event) (int, error) {
	w := p.e.wal
	g := p.inPlace.guess
	multi := len(p.rings) > 1
	if p.nowNs == 0 {
		p.readClock()
	}
	nowNs, src := p.nowNs, uint16(p.id)
	m := p.marks()
	n := 0
	var err error
	for i := range evs {
		ev := &evs[i]
		if ev.Flags&codec.FlagBroadcast != 0 || multi && p.e.route(ev.Symbol) != g {
			break
		}
		seq := stampEvent(ev, nowNs, src, m.maxSeq)
		if err = p.logBatchEvent(w, ev); err != nil {
			break
		}
		m = m.add(ev.TsNs, seq, ev.Kind)
		n++
	}
	p.setMarks(m)
	p.fill[g] += n
	return n, err
}

// Claim is ClaimBatch(1): one zeroed event to fill in place and publish
// with Commit (or CommitText). See ClaimBatch for its life and where it
// lives.
func (p *Publisher) Claim() (*codec.Event, error) {
	evs, err := p.ClaimBatch(1)
	if err != nil {
		return nil, err
	}
	return &evs[0], nil
}

// Commit is CommitBatch(1): it publishes the event of the last Claim.
func (p *Publisher) Commit() error { return p.CommitBatch(1) }

// CommitText publishes the event of the last Claim with its text, as
// PublishText does (the event is copied: the text's chunk events follow it
// in its ring). With no text it is Commit.
func (p *Publisher) CommitText(text []byte) error {
	if len(text) == 0 {
		return p.Commit()
	}
	evs, ok := p.takeClaim()
	if !ok || len(evs) != 1 {
		return ErrNoClaim
	}
	c := &p.inPlace
	if &evs[0] != &c.one[0] {
		c.one[0] = evs[0]
	}
	return p.PublishText(&c.one[0], text)
}

// takeClaim ends the outstanding claim and returns its events, or false
// when there is none or it was abandoned: a method called since it was
// made published or dropped the ring's claim (commit), wrote the first slot
// (put) or put a marker into it (a watermark). (A locked Publisher's
// methods end its claim when they take the lock: lock.)
func (p *Publisher) takeClaim() ([]codec.Event, bool) {
	c := &p.inPlace
	evs := c.evs
	c.evs = nil
	if len(evs) == 0 {
		return nil, false
	}
	cl, f := p.claim[c.guess], p.fill[c.guess]
	return evs, f+len(evs) <= len(cl) && &cl[f] == &evs[0]
}
