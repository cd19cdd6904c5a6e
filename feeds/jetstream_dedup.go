package feeds

import "sync"

// IDWindow remembers the most recent message ids (64-bit hashes) up to a
// fixed capacity, forgetting the oldest first: the bounded dedup window of a
// feed whose source redelivers (NATS JetStream after a consumer failed to
// ack). It is safe for concurrent use, so one window can be shared by the
// feeds of an engine; the engine-wide dedup that survives restarts belongs to
// the engine (it keys on Event.IDHash).
//
// It is an open-addressing hash set with linear probing and backward-shift
// deletion over a table of at least twice the capacity, plus a ring of the
// ids in insertion order for eviction: no allocation after NewIDWindow. The
// id 0 means "no id": it is never stored nor found.
type IDWindow struct {
	mu    sync.Mutex
	table []uint64 // 0 = empty slot
	mask  uint64
	ring  []uint64 // ids in insertion order
	head  int      // oldest id in ring
	n     int
}

// NewIDWindow returns a window of capacity ids (at least 1).
func NewIDWindow(capacity int) *IDWindow {
	capacity = max(capacity, 1)
	size := 2
	for size < 2*capacity {
		size <<= 1
	}
	return &IDWindow{table: make([]uint64, size), mask: uint64(size - 1), ring: make([]uint64, capacity)}
}

// Cap returns the capacity.
func (w *IDWindow) Cap() int { return len(w.ring) }

// Len returns the number of ids held.
func (w *IDWindow) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Contains reports whether id is in the window.
func (w *IDWindow) Contains(id uint64) bool {
	if id == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.find(id)
	return ok
}

// Add inserts id, evicting the oldest id when the window is full. It
// returns false if id was already present (it then keeps its place).
func (w *IDWindow) Add(id uint64) bool {
	if id == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	i, ok := w.find(id)
	if ok {
		return false
	}
	if w.n == len(w.ring) {
		w.remove(w.ring[w.head])
		w.head = (w.head + 1) % len(w.ring)
		w.n--
		i, _ = w.find(id) // the removal may have moved the free slot
	}
	w.table[i] = id
	w.ring[(w.head+w.n)%len(w.ring)] = id
	w.n++
	return true
}

// find returns the slot holding id, or the empty slot where it would go.
func (w *IDWindow) find(id uint64) (uint64, bool) {
	i := mix64(id) & w.mask
	for {
		switch w.table[i] {
		case id:
			return i, true
		case 0:
			return i, false
		}
		i = (i + 1) & w.mask
	}
}

// remove deletes id from the table, shifting later entries of its probe run
// back so that lookups never stop at a hole they should have passed.
func (w *IDWindow) remove(id uint64) {
	i, ok := w.find(id)
	if !ok {
		return
	}
	for {
		w.table[i] = 0
		j := i
		for {
			j = (j + 1) & w.mask
			v := w.table[j]
			if v == 0 {
				return
			}
			home := mix64(v) & w.mask
			// v may move to i if its home is not cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				w.table[i] = v
				i = j
				break
			}
		}
	}
}

// mix64 is a 64-bit finalizer (splitmix64's), so ids that are already
// hashes and ids that are small counters both spread over the table.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
