// Package idset is qstream's one bounded set of message ids: the dedup
// horizon of the engine's shards and the redelivery window of the JetStream
// feed. It remembers the last Cap() distinct ids added, forgets the oldest
// first, allocates nothing after New, and encodes its ids for checkpoints.
package idset

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxCap bounds the capacity of a Set (and the ids of an encoded state).
const MaxCap = 1 << 26

// ErrState is wrapped by LoadState's errors: the encoded state is damaged.
var ErrState = errors.New("idset: bad encoded state")

// Set holds the ids (non-zero uint64s) of the last Cap() distinct Adds.
//
// It is a FIFO ring of ids in insertion order (the horizon; the oldest
// leaves first) and an open-addressing hash table over it: linear probing
// in a table of at least twice the capacity, rounded up to a power of two,
// with 0 marking an empty slot; an evicted id is removed by backward-shift
// deletion, so no tombstones accumulate and a lookup never probes more than
// the run it starts in. An id's home slot is the top bits of id·φ (Fibonacci
// hashing): ids that are already hashes and ids that are small counters both
// spread over the table. Memory is fixed at New: 24 bytes per id of
// capacity. The id 0 means "no id": it is never stored nor found.
//
// A Set is not safe for concurrent use; a caller that shares one wraps it
// in a lock (feeds.IDWindow).
type Set struct {
	ring  []uint64 // ids in insertion order; ring[head] is the oldest
	head  int
	n     int
	table []uint64 // 0 = empty slot
	mask  uint64
	shift uint // 64 − log2(len(table))
}

// New returns an empty set of capacity ids, clamped to 1..MaxCap.
func New(capacity int) *Set {
	capacity = min(max(capacity, 1), MaxCap)
	size, shift := 2, uint(63)
	for size < 2*capacity {
		size <<= 1
		shift--
	}
	return &Set{ring: make([]uint64, capacity), table: make([]uint64, size), mask: uint64(size - 1), shift: shift}
}

// Cap returns the capacity: how many ids the set remembers.
func (s *Set) Cap() int { return len(s.ring) }

// Len returns the number of ids held (at most Cap).
func (s *Set) Len() int { return s.n }

// home is id's first probe slot.
func (s *Set) home(id uint64) uint64 { return (id * 0x9E3779B97F4A7C15) >> s.shift }

// find returns the slot holding id, or the empty slot where it would go.
func (s *Set) find(id uint64) (uint64, bool) {
	i := s.home(id)
	for {
		switch s.table[i] {
		case id:
			return i, true
		case 0:
			return i, false
		}
		i = (i + 1) & s.mask
	}
}

// Contains reports whether id is held. It does not allocate.
func (s *Set) Contains(id uint64) bool {
	if id == 0 {
		return false
	}
	_, ok := s.find(id)
	return ok
}

// Add inserts id and reports true, evicting the oldest id when the set is
// full; if id is already held it reports false and id keeps its place in
// the eviction order. Add(0) stores nothing and reports false. It does not
// allocate.
func (s *Set) Add(id uint64) bool {
	if id == 0 {
		return false
	}
	full := s.n == len(s.ring)
	var old, oldHome, oldFirst uint64
	if full {
		// The slot that eviction will probe first is loaded before id's
		// probe: the two cache misses (the table is larger than a core's
		// cache at a shard's horizon) overlap instead of following each
		// other.
		old = s.ring[s.head]
		oldHome = s.home(old)
		oldFirst = s.table[oldHome]
	}
	i, ok := s.find(id)
	if ok {
		return false
	}
	if full {
		hole, removed := s.removeFrom(old, oldHome, oldFirst)
		s.head++
		if s.head == len(s.ring) {
			s.head = 0
		}
		s.n--
		// The removal left one new empty slot, hole: if it is on id's
		// probe run before i, id goes there (a lookup would stop at it).
		if h := s.home(id); removed && (hole-h)&s.mask < (i-h)&s.mask {
			i = hole
		}
	}
	s.table[i] = id
	j := s.head + s.n
	if j >= len(s.ring) {
		j -= len(s.ring)
	}
	s.ring[j] = id
	s.n++
	return true
}

// removeFrom deletes id, whose home slot is home and held first when
// loaded, from the table and returns the slot its deletion left empty;
// false if id is not held (the ring and the table disagree: a bug).
func (s *Set) removeFrom(id, home, first uint64) (uint64, bool) {
	i := home
	if first != id {
		var ok bool
		if i, ok = s.find(id); !ok {
			return 0, false
		}
	}
	return s.deleteAt(i), true
}

// deleteAt empties slot i, shifting later entries of its probe run back,
// and returns the slot left empty at the end.
func (s *Set) deleteAt(i uint64) uint64 {
	for {
		s.table[i] = 0
		j := i
		for {
			j = (j + 1) & s.mask
			v := s.table[j]
			if v == 0 {
				return i
			}
			h := s.home(v)
			// v may move to i if its home is not cyclically in (i, j].
			if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
				s.table[i] = v
				i = j
				break
			}
		}
	}
}

// Reset empties the set, keeping its capacity.
func (s *Set) Reset() {
	clear(s.table)
	s.head, s.n = 0, 0
}

// AppendState appends the set's encoding to dst and returns the extended
// slice: count u32, capacity u32, then the ids oldest first, each u64, all
// little-endian. The encoding is part of the engine's checkpoint format: it
// must never change.
func (s *Set) AppendState(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(s.n))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s.ring)))
	for i := 0; i < s.n; i++ {
		j := s.head + i
		if j >= len(s.ring) {
			j -= len(s.ring)
		}
		dst = binary.LittleEndian.AppendUint64(dst, s.ring[j])
	}
	return dst
}

// LoadState replaces the set's ids with those of src (AppendState's
// encoding, exactly). The encoded capacity is informational: a state of
// more ids than Cap keeps its newest Cap ids. It checks the whole state
// (length, non-zero ids, no repeats) before changing s; its errors wrap
// ErrState. It allocates a table of the set's size.
func (s *Set) LoadState(src []byte) error {
	if len(src) < 8 {
		return fmt.Errorf("%w: %d bytes, want at least 8", ErrState, len(src))
	}
	n := int(binary.LittleEndian.Uint32(src))
	if n > MaxCap || len(src) != 8+8*n {
		return fmt.Errorf("%w: %d ids in %d bytes", ErrState, n, len(src))
	}
	ids := src[8:]
	fresh := New(len(s.ring))
	for i := max(0, n-len(s.ring)); i < n; i++ {
		id := binary.LittleEndian.Uint64(ids[8*i:])
		if !fresh.Add(id) {
			return fmt.Errorf("%w: a zero or repeated id", ErrState)
		}
	}
	*s = *fresh
	return nil
}
