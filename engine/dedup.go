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
