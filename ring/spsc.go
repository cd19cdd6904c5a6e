package ring

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/cpu"

	"qstream/internal/invariants"
)

// Capacity limits of an SPSC ring.
const (
	MinCapacity = 2
	MaxCapacity = 1 << 30
)

// Errors returned by New.
var (
	// ErrCapacity: the capacity is not a power of two in
	// [MinCapacity, MaxCapacity].
	ErrCapacity = errors.New("ring: capacity must be a power of two in [2, 1<<30]")
	// ErrSameWaiter: one Waiter was given for both sides of a ring; a Waiter
	// has a single sleeper, and the two sides would steal each other's
	// wake-ups.
	ErrSameWaiter = errors.New("ring: consumer and producer need different Waiters")
)

// SPSC is a bounded lock-free ring of values of type T for exactly one
// producer goroutine and one consumer goroutine. T should be fixed-size and
// pointer-free (codec.Event is): slots are reused in place, nothing is
// allocated after New, and the garbage collector has nothing to scan.
//
// # Sides and slot ownership
//
// Two monotonically increasing uint64 sequence numbers split the slots: head
// (the next value to read, advanced only by the consumer) and tail (the next
// slot to write, advanced only by the producer), with head <= tail <=
// head+Cap. Slot i lives at buf[i & (Cap-1)]. Slots [head, tail) belong to the
// consumer; slots [tail, head+Cap) belong to the producer. A side hands slots
// over only by advancing its own index, so no slot is ever touched by both
// sides at once. At 1e9 values a second a uint64 wraps after 584 years, so
// indices never wrap in practice.
//
// Producer side (one goroutine): Claim, ClaimWait, Publish, PublishQuiet,
// Offer, Put, Close. Claim(n) returns up to n contiguous free slots — fewer at the end of
// the buffer or when nearly full — for the producer to fill in place;
// Publish(k) then hands the first k of them to the consumer by advancing
// tail. Offer and Put copy a single value.
//
// Consumer side (one goroutine): Poll, PollWait, Release, Ready, Drained.
// Poll(max) returns up to max contiguous readable values; the slice aliases
// the ring and stays valid until Release (like bufio.Reader.Peek). Polling
// again without Release returns the same values (plus any newly published).
// Release(k) frees the first k polled slots by advancing head; the producer
// may overwrite them at once.
//
// Either side, approximate from the side that does not own the index: Len,
// Cap, Closed. Close may also be called by the consumer side, or by a third
// goroutine, to tell the producer nobody will read any more: ClaimWait then
// returns an empty slice and Put returns without storing instead of waiting
// for ever.
//
// # Layout and cached indices
//
// head with the consumer's private state and tail with the producer's
// private state live on separate cache lines (padding from
// golang.org/x/sys/cpu.CacheLinePad), apart from the read-only fields. Each
// side keeps a private copy of the other side's index (the producer's limit
// is the head it last loaded plus Cap; the consumer's tailCache is the tail
// it last loaded) and reloads the shared atomic only when that copy says
// there is not enough room (producer) or data (consumer). So in steady state
// a batched hand-off touches the other side's cache line once per batch, not
// once per value.
//
// # Memory ordering
//
// Go's sync/atomic operations are sequentially consistent (the Go memory
// model: an atomic store is synchronized before the atomic load that observes
// it). The producer writes slot values with plain stores and then stores
// tail; a consumer that loads that tail therefore sees the values. The
// consumer reads the values and then stores head; a producer that loads that
// head may overwrite them. Private cached indices are stale only in the safe
// direction: they undercount the room or data available.
//
// Waking: Publish stores tail and then calls the consumer Waiter's Wake, which
// loads its "sleeping" flag; a consumer going to sleep stores that flag and
// then re-checks the ring (loads tail). By sequential consistency one of the
// two sees the other, so a wake-up cannot be lost (see Waiter). Release and
// the producer Waiter are symmetric. When nobody sleeps a wake costs one
// atomic load.
//
// # Why a power of two
//
// With Cap a power of two the slot of sequence i is i & (Cap-1): one AND
// instead of a division, and the mapping stays correct as the free-running
// uint64 indices pass any multiple of Cap (2^64 is a multiple of Cap, so even
// the wrap of uint64 itself would be harmless). Free space is
// head+Cap-tail and available data tail-head, in plain modular arithmetic.
type SPSC[T any] struct {
	// Read-only after New (closed is written once), read by both sides.
	buf      []T
	mask     uint64 // Cap-1
	size     uint64 // Cap
	consumer *Waiter
	producer *Waiter
	canPoll  func() bool // consumer's wait condition, built once
	canClaim func() bool // producer's wait condition, built once
	closed   atomic.Bool
	_        cpu.CacheLinePad

	// Consumer-owned line: head is written by the consumer, read by the
	// producer only when its limit runs out.
	head      atomic.Uint64
	chead     uint64 // consumer's copy of head (== head.Load())
	tailCache uint64 // last tail the consumer loaded
	polled    int    // invariants builds: slots returned by the last Poll
	_         cpu.CacheLinePad

	// Producer-owned line: tail is written by the producer, read by the
	// consumer only when its tailCache runs out.
	tail    atomic.Uint64
	ptail   uint64 // producer's copy of tail (== tail.Load())
	limit   uint64 // last head the producer loaded + Cap: it may fill below
	claimed int    // invariants builds: slots returned by the last Claim
	_       cpu.CacheLinePad
}

// New returns an empty ring of capacity values (a power of two in
// [MinCapacity, MaxCapacity]), allocating its whole buffer now. consumer and
// producer are the Waiters the consumer side (PollWait) and the producer side
// (ClaimWait, Put) sleep on; Publish wakes consumer and Release wakes producer.
// A nil Waiter gets a Park Waiter of its own.
func New[T any](capacity int, consumer, producer *Waiter) (*SPSC[T], error) {
	if capacity < MinCapacity || capacity > MaxCapacity || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("%w: got %d", ErrCapacity, capacity)
	}
	if consumer != nil && consumer == producer {
		return nil, ErrSameWaiter
	}
	if consumer == nil {
		consumer = NewWaiter(Park)
	}
	if producer == nil {
		producer = NewWaiter(Park)
	}
	r := &SPSC[T]{
		buf:      make([]T, capacity),
		mask:     uint64(capacity - 1),
		size:     uint64(capacity),
		consumer: consumer,
		producer: producer,
	}
	r.canPoll = r.pollable
	r.canClaim = r.claimable
	return r, nil
}

// Cap returns the capacity.
func (r *SPSC[T]) Cap() int { return int(r.size) }

// Len returns the number of published, unreleased values. Exact on neither
// side while the other side runs; never more than Cap.
func (r *SPSC[T]) Len() int {
	h := r.head.Load() // before tail: head only grows and never passes tail
	n := r.tail.Load() - h
	return int(min(n, r.size))
}

// Closed reports whether Close has been called (by either side).
func (r *SPSC[T]) Closed() bool { return r.closed.Load() }

// Close marks the ring closed and wakes both sides. Called by the producer it
// means "no more values": the consumer drains what was published and then
// sees Drained (PollWait returns empty). Called by the consumer side it means
// "nobody reads any more": the producer's ClaimWait returns empty and Put
// drops its value instead of waiting. Offer and Claim do not look at Closed.
// Close is idempotent and safe from any goroutine.
func (r *SPSC[T]) Close() {
	r.closed.Store(true)
	r.consumer.Wake()
	r.producer.Wake()
}

// ---- producer side ----

// Claim returns up to n contiguous free slots for the producer to fill, fewer
// at the end of the buffer or when nearly full, and an empty slice when the
// ring is full (or n <= 0). It never blocks. The slots hold stale values;
// nothing is visible to the consumer until Publish. Each Claim replaces the
// previous unpublished claim.
func (r *SPSC[T]) Claim(n int) []T {
	if n <= 0 {
		if invariants.Enabled {
			r.claimed = 0
		}
		return nil
	}
	t := r.ptail
	free := r.limit - t
	if uint64(n) > free {
		r.limit = r.head.Load() + r.size
		free = r.limit - t
		if free == 0 {
			if invariants.Enabled {
				r.claimed = 0
			}
			return nil
		}
	}
	i := t & r.mask
	k := min(uint64(n), free, r.size-i)
	if invariants.Enabled {
		if free > r.size {
			invariants.Failf("ring: head %d ahead of tail %d", r.limit-r.size, t)
		}
		r.claimed = int(k)
	}
	return r.buf[i : i+k : i+k]
}

// ClaimWait is Claim, but when the ring is full it waits on the producer
// Waiter until at least one slot is free. It returns an empty slice only when
// the ring is closed (see Close) or n <= 0.
func (r *SPSC[T]) ClaimWait(n int) []T {
	if n <= 0 {
		return r.Claim(0)
	}
	for {
		if r.closed.Load() {
			return r.Claim(0)
		}
		if s := r.Claim(n); len(s) > 0 {
			return s
		}
		r.producer.Wait(r.canClaim, 0)
	}
}

// claimable is the producer's wait condition: a slot is free or the ring is
// closed. It runs on the producer goroutine.
func (r *SPSC[T]) claimable() bool {
	return r.head.Load()+r.size != r.ptail || r.closed.Load()
}

// Publish makes the first k slots of the last Claim visible to the consumer
// and wakes the consumer Waiter if it sleeps. 0 <= k <= len(claimed slice)
// (checked in invariants builds); the rest of the claim is dropped.
func (r *SPSC[T]) Publish(k int) {
	if r.publish(k) {
		r.consumer.Wake()
	}
}

// PublishQuiet is Publish without the wake-up: for a producer that will
// consume what it published itself or else call WakeConsumer (a shard that
// delivers its own outputs when the collector is idle). A consumer asleep
// in PollWait stays asleep until then.
func (r *SPSC[T]) PublishQuiet(k int) { r.publish(k) }

// WakeConsumer wakes the consumer Waiter if it sleeps; it costs one atomic
// load if not. Safe from any goroutine.
func (r *SPSC[T]) WakeConsumer() { r.consumer.Wake() }

// publish advances tail by k and reports whether it did (k > 0).
func (r *SPSC[T]) publish(k int) bool {
	if invariants.Enabled {
		if k < 0 || k > r.claimed {
			invariants.Failf("ring: Publish(%d) with %d slots claimed", k, r.claimed)
		}
		r.claimed = 0
	}
	if k <= 0 {
		return false
	}
	r.ptail += uint64(k)
	r.tail.Store(r.ptail)
	return true
}

// Offer copies *v into the ring and publishes it, or returns false at once
// when the ring is full. It must not be called between Claim and Publish.
func (r *SPSC[T]) Offer(v *T) bool {
	if invariants.Enabled && r.claimed != 0 {
		invariants.Failf("ring: Offer with %d slots claimed and unpublished", r.claimed)
	}
	t := r.ptail
	if r.limit == t {
		r.limit = r.head.Load() + r.size
		if r.limit == t {
			return false
		}
	}
	r.buf[t&r.mask] = *v
	r.ptail = t + 1
	r.tail.Store(t + 1)
	r.consumer.Wake()
	return true
}

// Put copies *v into the ring, waiting on the producer Waiter while the ring
// is full. On a closed ring (see Close) it returns without storing v.
func (r *SPSC[T]) Put(v *T) {
	s := r.ClaimWait(1)
	if len(s) == 0 {
		return
	}
	s[0] = *v
	r.Publish(1)
}

// ---- consumer side ----

// Poll returns up to max contiguous published values, fewer at the end of the
// buffer, and an empty slice when there are none (or max <= 0). It never
// blocks. The slice aliases the ring: it is valid until Release, and the
// consumer may modify the values in place.
func (r *SPSC[T]) Poll(max int) []T {
	if max <= 0 {
		if invariants.Enabled {
			r.polled = 0
		}
		return nil
	}
	h := r.chead
	avail := r.tailCache - h
	if uint64(max) > avail {
		r.tailCache = r.tail.Load()
		avail = r.tailCache - h
		if avail == 0 {
			if invariants.Enabled {
				r.polled = 0
			}
			return nil
		}
	}
	i := h & r.mask
	k := min(uint64(max), avail, r.size-i)
	if invariants.Enabled {
		if avail > r.size {
			invariants.Failf("ring: tail %d more than Cap ahead of head %d", r.tailCache, h)
		}
		r.polled = int(k)
	}
	return r.buf[i : i+k : i+k]
}

// PollWait is Poll, but when the ring is empty it waits on the consumer
// Waiter until a value is published. It returns an empty slice only when the
// ring is Drained or max <= 0.
func (r *SPSC[T]) PollWait(max int) []T {
	for {
		if s := r.Poll(max); len(s) > 0 || max <= 0 {
			return s
		}
		if r.Drained() {
			return nil
		}
		r.consumer.Wait(r.canPoll, 0)
	}
}

// pollable is the consumer's wait condition: a value is published or the
// ring is closed. It runs on the consumer goroutine.
func (r *SPSC[T]) pollable() bool {
	return r.tail.Load() != r.chead || r.closed.Load()
}

// Release frees the first k values of the last Poll, which must no longer be
// used, and wakes the producer Waiter if it sleeps. 0 <= k <= len(polled
// slice) (checked in invariants builds).
func (r *SPSC[T]) Release(k int) {
	if invariants.Enabled {
		if k < 0 || k > r.polled {
			invariants.Failf("ring: Release(%d) with %d values polled", k, r.polled)
		}
		r.polled = 0
	}
	if k <= 0 {
		return
	}
	r.chead += uint64(k)
	r.head.Store(r.chead)
	r.producer.Wake()
}

// Ready reports whether a value is available to Poll. Consumer side; cheap
// when the cached tail already shows data. A shard waiting on one Waiter for
// several rings builds its condition from the rings' Ready (and Drained).
func (r *SPSC[T]) Ready() bool {
	return r.tailCache != r.chead || r.tail.Load() != r.chead
}

// Drained reports whether the ring is closed and every published value has
// been released. Consumer side.
func (r *SPSC[T]) Drained() bool {
	// closed first: a producer stores tail before it closes, so a consumer
	// that sees closed then sees the final tail.
	return r.closed.Load() && r.tail.Load() == r.chead
}
