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
	// ring of shard guess (from claim[guess][fill[guess]]), or stage.
	evs []codec.Event
	// guess is the shard whose ring the next claim takes its slots from:
	// where the last committed event went. A symbol routed elsewhere costs
	// a copy (what Publish does for every event).
	guess int
	// one is a locked Publisher's single claim and the place a claimed
	// event that has to be copied anyway (a broadcast, text) is moved to.
	one [1]codec.Event
	// stage holds a locked Publisher's batch claims (made at the first).
	stage []codec.Event
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
// broadcast events are copied too. A durable engine's Publisher (one with a
// WAL) hands out events of its own instead of slots and copies them at
// CommitBatch: the checkpoint coordinator writes cut events into its rings
// from another goroutine under its lock (injectCut) and could write a slot
// the caller is filling, and holding that lock from claim to commit would
// stall every checkpoint behind a caller that abandons a claim and then
// waits for input.
func (p *Publisher) ClaimBatch(n int) ([]codec.Event, error) {
	c := &p.inPlace
	c.evs = nil
	if p.stream.paused.Load() {
		p.waitGate()
	}
	n = min(max(n, 1), publishBatchMax)
	if p.locked {
		// closed is read under mu by CommitBatch; the staged events are
		// the Publisher's own, so nothing here needs the lock.
		if n == 1 {
			c.evs = c.one[:]
		} else {
			if c.stage == nil {
				c.stage = make([]codec.Event, publishBatchMax)
			}
			c.evs = c.stage[:n]
		}
		clear(c.evs)
		return c.evs, nil
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
	if !ok {
		return ErrNoClaim
	}
	if k < 0 || k > len(evs) {
		return fmt.Errorf("engine: CommitBatch(%d) of %d events claimed", k, len(evs))
	}
	evs = evs[:k]
	if p.locked {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i := range evs {
			if err := p.publish(&evs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	c := &p.inPlace
	i := p.commitInPlace(evs)
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

// commitInPlace publishes the leading events of evs, the claim at
// claim[guess][fill[guess]:], that stay where they are: events of symbols
// that the guessed shard owns, not broadcast, of a Publisher that logs
// nothing (no Durability). It does for each what publish does (stamp,
// account) and returns how many it took; publish takes the rest (put moves
// an event that routes to the guessed shard after one that did not down to
// the next free slot).
func (p *Publisher) commitInPlace(evs []codec.Event) int {
	if p.closed || p.e.cfg.Durability != nil {
		return 0
	}
	g := p.inPlace.guess
	multi := len(p.rings) > 1
	if p.nowNs == 0 {
		p.readClock()
	}
	// stamp and account for each event, with the Publisher's fields in
	// registers: through p, every store into an event would reload them.
	nowNs, src := p.nowNs, uint16(p.id)
	m := p.marks()
	n := 0
	for i := range evs {
		ev := &evs[i]
		if ev.Flags&codec.FlagBroadcast != 0 || multi && p.e.route(ev.Symbol) != g {
			break
		}
		seq := stampEvent(ev, nowNs, src, m.maxSeq)
		m.add(ev.TsNs, seq, ev.Kind)
		n++
	}
	p.setMarks(m)
	p.fill[g] += n
	return n
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
// (put) or put a marker into it (a watermark). A locked Publisher's staged
// events stay its own until the next claim.
func (p *Publisher) takeClaim() ([]codec.Event, bool) {
	c := &p.inPlace
	evs := c.evs
	c.evs = nil
	if len(evs) == 0 {
		return nil, false
	}
	if p.locked {
		return evs, true
	}
	cl, f := p.claim[c.guess], p.fill[c.guess]
	return evs, f+len(evs) <= len(cl) && &cl[f] == &evs[0]
}
