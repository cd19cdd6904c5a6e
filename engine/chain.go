package engine

import (
	"sync/atomic"

	"qstream/codec"
	"qstream/ring"
)

// Operator chaining (Flink's term; Config.Chain).
//
// A parked shard costs each message a wake-up and a switch from the
// publishing thread to the shard's: on a machine with a CPU or two, most of
// the end-to-end latency of a message that arrives alone. With chaining, a
// Publisher that makes a few events visible to a shard whose thread sleeps
// runs the shard's processing round itself, on its own goroutine: it takes
// what the shard's rings hold, runs the operators, pushes and delivers the
// outputs (the inline delivery of collectIdle), and leaves the shard thread
// asleep.
//
// # The role token
//
// A shard's state (everything the shard struct says its goroutine owns) is
// owned by whoever holds its role token, chainState.role: 1 while held. The
// shard thread holds it from the start, and gives it back only while it
// waits for input (wait): a shard that sleeps holds nothing. Its wait
// condition (readyChained) takes the token before it looks at the shard's
// state and gives it back unless there is work, so the shard thread returns
// from its wait holding the token, or keeps waiting while a publisher holds
// it. A publisher that made events visible (chainPublished) takes the token
// with a CompareAndSwap and, if it got it, runs at most chainRoundsMax
// rounds of the shard loop (chainRounds); if not (the shard thread runs, or
// another publisher chains), it wakes the shard as without chaining. The
// CompareAndSwap that takes the token and the Store that gives it back
// order one holder's work before the next's, as the collector's role does.
//
// # No wake-up lost
//
// Whoever fails to take the token sets kick (a publisher, after its events
// are visible; the shard thread, woken for something: a control function,
// a stop, a checkpoint, its timeout) and a publisher that gives the token
// back wakes the shard if kick is set or if the shard has work it must do
// itself or that is left (inputReady, read while it still holds the
// token). Whoever takes the token clears kick before it looks at the rings.
// In sync/atomic's single order, a kicker's failed CompareAndSwap comes
// before the holder's giving back; either the holder's load of kick comes
// after the kicker's store (and it wakes the shard), or the kicker's Wake
// comes after the giving back, when the token is free for the shard to
// take. The Waiter's own handshake (ring.Waiter) does the rest.
//
// # Bounded, never waiting
//
// A chained round must not make the publishing thread wait for anything
// but its own work and the inline delivery. It does not start (it hands
// back: handBack, and wakes the shard) while a control function is
// pending, the engine is paused or stopping, a checkpoint cut is wanted or
// being aligned, an earlier chained round handed back, or the output or
// dead-letter ring is more than half full; it chains only while the ring it
// published to holds at most chainMaxEvents events (a burst is the shard
// thread's, in parallel with the publisher). During the round, an output
// ring that stays full after an inline collection step makes flushOutputs
// keep the outputs in outBuf and set chainBail; a full dead-letter ring
// keeps the dead letters in dlqBacklog. The round then stops at once, hands
// back, and the shard thread pushes both first thing (takeBack) with its
// usual blocking policy. Progress (the ordered collector's argument) does
// not move past outputs kept back. A cut event met in the round begins the
// alignment, which the shard thread completes: after the round, a pending
// cut hands back.
//
// Chaining applies only with the Park strategy and not in micro-batch
// mode (withDefaults), so a spinning, pinned shard never gives its state
// away; a recovery replay's publishers do not chain (a replay publishes
// as fast as it reads, where the shard's own thread is worth more). Nor
// with Config.Ordered: a chained round runs inside the Publisher's commit
// of one ring and delivers at once, and the ordered merge's progress
// argument does not hold against that. A Publisher's Close puts its
// end-of-source watermark with the Seq of its last flush's watermark, so
// a shard whose progress is that Seq may still produce outputs of it; with
// shards woken by Close, the race needs one shard to run late, and the
// chained rounds of the others deliver theirs at once
// (TestOrderedWatermarkOutputsInShardOrder failed with chaining forced on).
//
// A chained Publisher delivers outputs (collectIdle), so an OutputHandler
// that blocks holds back that Publisher's Publish or Flush, as it holds
// back a shard that delivers its own outputs: a handler that waits for
// Engine.Stopping while the publishing goroutine is the one that would
// call Stop (engine's TestStopWithHaltedOutputIsBounded) never returns
// with Chain. That is why Config.Chain is off unless asked for.
// Outputs are the same as without chaining: the chained round is the
// shard loop's round, run at a moment the woken shard could have run it.

// chainMaxEvents is the most events the ring a publisher just published
// to may hold for it to chain: more is a burst for the shard thread.
const chainMaxEvents = 64

// chainRoundsMax bounds a chained call: rounds that found events, then the
// one that finds none (the shard loop's idle tail).
const chainRoundsMax = 4

// chainState is a shard's part of chaining. role, kick and handBack are
// atomics; the rest belongs to the token's holder.
type chainState struct {
	role     atomic.Uint32 // 1 while the shard thread or a chaining publisher owns the shard
	kick     atomic.Bool   // someone failed to take the token: the giver must wake the shard
	handBack atomic.Bool   // a chained round left work for the shard thread (part of inputReady)
	// chained: the holder is a publisher in chainRounds; chainBail: its
	// round could not push (outputs kept in outBuf, dead letters in
	// dlqBacklog) and stopped; outCarried: outputs at the start of outBuf
	// counted already (flushOutputs).
	chained    bool
	chainBail  bool
	outCarried int
	dlqBacklog []deadLetter
	rounds     atomic.Uint64 // chained calls that ran at least one round (Stats)
	bails      atomic.Uint64 // chained rounds that stopped with outputs or dead letters kept (tests)
}

// chainPublished is called by a Publisher of a chaining engine after it
// made events visible in r, its ring into shard s, without waking the
// shard (PublishQuiet): it runs the shard's round itself if the shard's
// thread is parked and no one else holds the token, and otherwise wakes
// the shard as Publish would have.
func (s *shard) chainPublished(r *ring.SPSC[codec.Event]) {
	if r.Len() <= chainMaxEvents && s.role.CompareAndSwap(0, 1) {
		s.kick.Store(false)
		s.chainRounds()
		wake := s.inputReady() // with the token: the shard's state is ours to read
		s.role.Store(0)
		if wake || s.kick.Load() {
			s.waiter.Wake()
		}
		return
	}
	s.kick.Store(true)
	s.waiter.Wake()
}

// mustHandBack reports whether a chained round may not start: the shard
// thread has something only it does, or could have to wait.
func (s *shard) mustHandBack() bool {
	return s.ctlFlag.Load() || s.e.paused.Load() || s.e.stopping.Load() || s.handBack.Load() ||
		s.e.cut != nil && s.cutPending() ||
		s.out.Len() > s.out.Cap()/2 || s.dlq.Len() > s.dlq.Cap()/2
}

// chainRounds runs the shard loop's rounds on the publisher's goroutine,
// holding the token: until a round finds nothing (then the loop's idle
// tail: progress, idle sources, delivery), at most chainRoundsMax, and
// hands back (handBack, for the caller's inputReady) when it cannot go on.
func (s *shard) chainRounds() {
	if s.mustHandBack() {
		s.handBack.Store(true)
		return
	}
	s.rounds.Add(1)
	s.chained = true
	defer func() { s.chained = false }()
	for range chainRoundsMax {
		if len(*s.e.pubs.Load()) != len(s.inputs) {
			s.refreshInputs()
		}
		var committed uint64
		if s.e.cfg.Ordered {
			committed = s.committedSeq()
		}
		n := s.pollInputs()
		if !s.chainBail {
			s.deliverOutputs()
			if s.e.cfg.ProcessingTimeTick > 0 {
				s.processingTime()
			}
		}
		if s.chainBail || s.e.cut != nil && s.cutPending() {
			break // the shard thread takes over (takeBack, checkCut)
		}
		if n > 0 {
			continue
		}
		s.caughtUp(committed)
		if s.e.cfg.IdleTimeout > 0 {
			s.checkIdle()
		}
		if !s.chainBail {
			s.deliverNow()
			return
		}
		break
	}
	if s.chainBail {
		s.bails.Add(1)
	}
	s.deliverNow()
	s.handBack.Store(true)
}

// chainedDeadLetter puts a dead letter of a chained round into the
// dead-letter ring, or keeps it for the shard thread if the ring is full
// (or earlier ones are kept: their order stays), and then stops the round.
func (s *shard) chainedDeadLetter(d *deadLetter) {
	if len(s.dlqBacklog) == 0 && s.dlq.Offer(d) {
		return
	}
	s.dlqBacklog = append(s.dlqBacklog, *d)
	s.chainBail = true
}

// readyChained is the wait condition of a chaining shard (Config.Chain):
// it takes the token and keeps it if there is work (inputReady), and
// otherwise gives it back. It never reads the shard's state without the
// token. A token held by a publisher makes it false; the kick it leaves
// has the publisher wake the shard when it gives the token back.
func (s *shard) readyChained() bool {
	if !s.role.CompareAndSwap(0, 1) {
		s.kick.Store(true)
		return false
	}
	s.kick.Store(false)
	if s.inputReady() {
		return true
	}
	s.role.Store(0)
	return false
}

// wait is the shard thread's wait for work at the end of the loop. With
// chaining it gives the token back for the time of the wait and returns
// holding it again: from readyChained, or taken after a timeout (the idle
// checks) if no publisher holds it. Then it does what a chained round
// left to it (takeBack).
func (s *shard) wait() {
	if !s.e.cfg.Chain {
		s.waiter.Wait(s.ready, s.waitTimeout)
		return
	}
	s.role.Store(0)
	for {
		if s.waiter.Wait(s.ready, s.waitTimeout) {
			break // readyChained took the token
		}
		if s.role.CompareAndSwap(0, 1) {
			s.kick.Store(false)
			break
		}
		// A publisher runs the round: its giving back wakes the shard
		// if anything is left (the kick readyChained left).
	}
	s.takeBack()
}

// takeBack pushes what a chained round that handed back could not push:
// first the dead letters, then the outputs (which may wait: this is the
// shard thread).
func (s *shard) takeBack() {
	if !s.handBack.Load() {
		return
	}
	s.handBack.Store(false)
	if !s.chainBail {
		return
	}
	s.chainBail = false
	for i := range s.dlqBacklog {
		s.dlq.Put(&s.dlqBacklog[i])
	}
	clear(s.dlqBacklog)
	s.dlqBacklog = s.dlqBacklog[:0]
	s.flushOutputs()
}
