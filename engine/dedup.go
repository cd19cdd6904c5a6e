package engine

import (
	"encoding/binary"
	"fmt"

	"qstream/codec"
	"qstream/internal/idset"
)

// MaxDedupHorizon bounds Config.DedupHorizon.
const MaxDedupHorizon = 1 << 24

// dedupSet is one shard's dedup horizon: the keys of the last `horizon`
// messages that carried a message id, held in an idset.Set (FIFO eviction,
// fixed memory of 24 bytes per entry, no allocation per message; its
// encoding, count u32, horizon u32, keys oldest first, is the checkpoint's).
// A message whose key is in the set is a duplicate. Owned by the shard
// goroutine.
//
// The key is a 64-bit mix of the source's name and the message id hash, so
// the same message id from two sources is not a duplicate, and the decision
// is the same in a replay (the recovery publisher carries the source's name).
type dedupSet struct {
	set *idset.Set
}

func newDedupSet(horizon int) *dedupSet { return &dedupSet{set: idset.New(horizon)} }

// dedupKey mixes a dedup scope hash (codec.HashID of dedupScope of the
// publisher's name: the same message id resent through any publisher of one
// feed is a duplicate, from two feeds it is not) and a message id hash;
// never 0:
//
//	k = Mix64(scopeHash ^ Mix64(idHash + 0x9E3779B97F4A7C15)), 0 → 1
//
// Checkpoints hold these keys: the function must not change.
func dedupKey(scopeHash, idHash uint64) uint64 {
	k := codec.Mix64(scopeHash ^ codec.Mix64(idHash+0x9E3779B97F4A7C15))
	if k == 0 {
		k = 1
	}
	return k
}

// seen reports whether key is in the horizon and, if not, adds it. It does
// not allocate. Precondition: key != 0 (dedupKey never returns 0).
func (d *dedupSet) seen(key uint64) bool { return !d.set.Add(key) }

// len returns the number of keys held.
func (d *dedupSet) len() int { return d.set.Len() }

// appendState appends the keys oldest first: count u32, horizon u32, keys.
func (d *dedupSet) appendState(dst []byte) []byte { return d.set.AppendState(dst) }

// loadState replaces the set with the keys of a snapshot (appendState's
// encoding, exactly). A snapshot from a larger horizon keeps its newest
// keys. It checks the keys (non-zero, no repeats) before changing d.
func (d *dedupSet) loadState(src []byte) error {
	if len(src) >= 4 {
		if n := binary.LittleEndian.Uint32(src); n > MaxDedupHorizon {
			return fmt.Errorf("%w: dedup state of %d keys, at most %d", ErrCheckpointState, n, MaxDedupHorizon)
		}
	}
	if err := d.set.LoadState(src); err != nil {
		return fmt.Errorf("%w: dedup: %w", ErrCheckpointState, err)
	}
	return nil
}

// reset empties the set.
func (d *dedupSet) reset() { d.set.Reset() }

// PublisherOptions are properties of a source that its Publisher declares
// when it is created (Engine.NewPublisherWith, NewStreamPublisherWith).
type PublisherOptions struct {
	// OffsetIDs declares that the source's message ids are its offsets:
	// the feed sets every event's Seq, strictly increasing, and a message
	// it sends again carries the Seq it had (a synthetic index, a log
	// whose position is the message: Kafka's idempotent producer's
	// sequence numbers). With Config.DedupHorizon > 0 an event of the
	// source is then a duplicate exactly when its Seq is not above the
	// largest Seq processed from the source (by Publisher name) before it;
	// the event's IDHash is not looked up and does not enter the dedup
	// horizon (it still names the event in output keys). A feed whose ids
	// are not exactly its offsets (two messages with one id, or one
	// message under two offsets) must not declare it: its duplicates
	// would be judged by offset, not by id.
	OffsetIDs bool
}

// setOffsetIDs sets the Publisher's PublisherOptions.OffsetIDs. The shards
// take it at their next batch from the Publisher, so it is set before the
// Publisher is visible to them, or (a recovery publisher) after they have
// consumed all it published (replayer.drain).
func (p *Publisher) setOffsetIDs(on bool) {
	p.offsetBase = p.maxSeq
	p.offsetIDs.Store(on)
}

// offsetDedup is one shard's duplicate filter for sources whose message ids
// are their offsets (PublisherOptions.OffsetIDs): per source name, the
// largest Seq processed from it on this shard (its floor), and an event of
// such a source is a duplicate iff its Seq is not above the floor. That is
// exact for such a source: its events reach the shard that owns their
// symbol in Seq order, and a resent message, which has its first Seq and
// symbol, reaches the same shard after the first copy. There is no lookup
// and no memory per message, so the horizon holds only other sources' ids.
//
// The floors are not part of checkpoints: a Publisher starts its source's
// floor at its offset when it is created (offsetBase: the restored offset
// of a live one, which recovery has replayed and the shards processed to
// the end; the checkpoint's offset of a recovery publisher), and every
// event up to the offset was processed before any it publishes. Owned by
// the shard goroutine.
type offsetDedup struct {
	in    []offsetInput // per input, grown as inputs publish
	names []uint64      // per slot: the source's name hash (srcHash)
	floor []uint64      // per slot: the largest Seq processed from the source
}

// offsetInput is what the shard took from one input's Publisher: whether
// its ids are offsets, and its source's floor slot.
type offsetInput struct {
	on   bool
	slot int32
}

// offsetFloor returns the floor of input src's source for the batch being
// processed when dedup is on and src's message ids are its offsets, else
// nil. Called once per batch; the pointer is valid until the next call.
func (s *shard) offsetFloor(src int) *uint64 {
	if s.dedup == nil {
		return nil
	}
	d := &s.offsets
	p := (*s.e.pubs.Load())[src]
	on := p.offsetIDs.Load()
	if src < len(d.in) && d.in[src].on == on {
		if !on {
			return nil
		}
		return &d.floor[d.in[src].slot]
	}
	return s.offsetSwitch(src, p, on)
}

// offsetSwitch is offsetFloor's slow path: a new input, or one whose
// Publisher changed its OffsetIDs (at a recovery publisher's switch).
//
//go:noinline
func (s *shard) offsetSwitch(src int, p *Publisher, on bool) *uint64 {
	d := &s.offsets
	for len(d.in) <= src {
		d.in = append(d.in, offsetInput{slot: -1})
	}
	in := &d.in[src]
	in.on = on
	if !on {
		return nil
	}
	if in.slot < 0 {
		in.slot = int32(len(d.names))
		for i, h := range d.names {
			if h == s.srcHash[src] {
				in.slot = int32(i)
			}
		}
		if int(in.slot) == len(d.names) {
			d.names = append(d.names, s.srcHash[src])
			d.floor = append(d.floor, 0)
		}
	}
	f := &d.floor[in.slot]
	*f = max(*f, p.offsetBase)
	return f
}

// seqDuplicate reports whether an event with Seq seq of a source whose ids
// are its offsets is a duplicate: seq is not above the source's floor (from
// offsetFloor); if it is above, the floor becomes seq. It inlines.
func seqDuplicate(floor *uint64, seq uint64) bool {
	if seq <= *floor {
		return true
	}
	*floor = seq
	return false
}

// idDuplicate reports whether ev from input src (of a source whose ids are
// not its offsets) is a duplicate: its message id is in the horizon (if it
// is not, it is added). An event without an id (IDHash 0) is never one.
// Precondition: dedup is on.
func (s *shard) idDuplicate(src int, ev *codec.Event) bool {
	return ev.IDHash != 0 && s.dedup.seen(dedupKey(s.scopeHash[src], ev.IDHash))
}
