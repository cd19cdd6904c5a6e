package feeds

import (
	"sync"

	"qstream/internal/idset"
)

// IDWindow remembers the most recent message ids (64-bit hashes) up to a
// fixed capacity, forgetting the oldest first: the bounded dedup window of a
// feed whose source redelivers (NATS JetStream after a consumer failed to
// ack). It is the engine's id set (internal/idset: no allocation after
// NewIDWindow) behind a mutex, so one window can be shared by the feeds of
// an engine; the engine-wide dedup that survives restarts belongs to the
// engine (it keys on Event.IDHash). The id 0 means "no id": it is never
// stored nor found.
type IDWindow struct {
	mu  sync.Mutex
	set *idset.Set
}

// NewIDWindow returns a window of capacity ids (at least 1, at most
// idset.MaxCap).
func NewIDWindow(capacity int) *IDWindow {
	return &IDWindow{set: idset.New(capacity)}
}

// Cap returns the capacity.
func (w *IDWindow) Cap() int { return w.set.Cap() }

// Len returns the number of ids held.
func (w *IDWindow) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.Len()
}

// Contains reports whether id is in the window.
func (w *IDWindow) Contains(id uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.Contains(id)
}

// Add inserts id, evicting the oldest id when the window is full. It
// returns false if id was already present (it then keeps its place) or is 0.
func (w *IDWindow) Add(id uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.Add(id)
}
