package engine

import (
	"encoding/binary"
	"fmt"

	"qstream/codec"
)

// MaxDedupHorizon bounds Config.DedupHorizon.
const MaxDedupHorizon = 1 << 24

// dedupSet remembers the keys of the last `horizon` messages that carried a
// message id, for one shard: a FIFO ring of keys (the horizon, in arrival
// order) and an open-addressing hash set over it (linear probing, twice the
// horizon rounded up to a power of two, 0 = empty slot). A message whose key
// is in the set is a duplicate; otherwise its key goes in and, when the ring
// is full, the oldest key leaves the set (backward-shift deletion, so no
// tombstones accumulate). Memory is fixed at construction: 24 bytes per
// entry of the horizon. Owned by the shard goroutine.
//
// The key is a 64-bit mix of the source's name and the message id hash, so
// the same message id from two sources is not a duplicate, and the decision
// is the same in a replay (the recovery publisher carries the source's name).
type dedupSet struct {
	ring  []uint64
	head  int // oldest entry
	n     int
	table []uint64
	mask  uint64
}

func newDedupSet(horizon int) *dedupSet {
	size := 2
	for size < 2*horizon {
		size <<= 1
	}
	return &dedupSet{ring: make([]uint64, horizon), table: make([]uint64, size), mask: uint64(size - 1)}
}

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
// not allocate.
func (d *dedupSet) seen(key uint64) bool {
	i := key & d.mask
	for {
		switch d.table[i] {
		case key:
			return true
		case 0:
			d.add(i, key)
			return false
		}
		i = (i + 1) & d.mask
	}
}

func (d *dedupSet) add(slot, key uint64) {
	if d.n == len(d.ring) {
		d.remove(d.ring[d.head])
		d.ring[d.head] = key
		d.head++
		if d.head == len(d.ring) {
			d.head = 0
		}
		// remove may have shifted key's probe run: find its slot again.
		slot = key & d.mask
		for d.table[slot] != 0 {
			slot = (slot + 1) & d.mask
		}
	} else {
		d.ring[(d.head+d.n)%len(d.ring)] = key
		d.n++
	}
	d.table[slot] = key
}

// remove deletes key from the table with backward-shift deletion.
func (d *dedupSet) remove(key uint64) {
	i := key & d.mask
	for d.table[i] != key {
		if d.table[i] == 0 {
			return // not present: a bug, but harmless
		}
		i = (i + 1) & d.mask
	}
	for {
		d.table[i] = 0
		j := i
		for {
			j = (j + 1) & d.mask
			k := d.table[j]
			if k == 0 {
				return
			}
			home := k & d.mask
			// k may move to i if its home is not in the cyclic range (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				d.table[i] = k
				i = j
				break
			}
		}
	}
}

// len returns the number of keys held.
func (d *dedupSet) len() int { return d.n }

// appendState appends the keys oldest first: count u32, horizon u32, keys.
func (d *dedupSet) appendState(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(d.n))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(d.ring)))
	for i := 0; i < d.n; i++ {
		dst = binary.LittleEndian.AppendUint64(dst, d.ring[(d.head+i)%len(d.ring)])
	}
	return dst
}

// loadState replaces the set with the keys of a snapshot (appendState's
// encoding, exactly). A snapshot from a larger horizon keeps its newest
// keys. It checks the keys (non-zero, no repeats) before changing d.
func (d *dedupSet) loadState(src []byte) error {
	if len(src) < 8 {
		return fmt.Errorf("%w: dedup state truncated", ErrCheckpointState)
	}
	n := int(binary.LittleEndian.Uint32(src))
	if n > MaxDedupHorizon || len(src) != 8+8*n {
		return fmt.Errorf("%w: dedup state of %d keys in %d bytes", ErrCheckpointState, n, len(src))
	}
	keys := src[8:]
	skip := max(0, n-len(d.ring))
	fresh := newDedupSet(len(d.ring))
	for i := skip; i < n; i++ {
		k := binary.LittleEndian.Uint64(keys[8*i:])
		if k == 0 || fresh.seen(k) {
			return fmt.Errorf("%w: dedup state has a zero or repeated key", ErrCheckpointState)
		}
	}
	*d = *fresh
	return nil
}

// reset empties the set.
func (d *dedupSet) reset() {
	clear(d.table)
	d.head, d.n = 0, 0
}
