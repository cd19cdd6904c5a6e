// Package rate keeps a ring of cumulative counts sampled at a fixed
// interval, for rates over a timeframe (messages per second over the last
// minute): the engine's ThroughputStats and the control API's throughput
// endpoint.
package rate

import (
	"sync"
	"time"
)

// Ring is a ring of cumulative counts, one sample per interval, written by
// one goroutine and read by others: the rate over a timeframe is the
// difference of two samples over their distance. Its capacity is fixed at
// construction.
type Ring struct {
	mu       sync.Mutex
	interval time.Duration
	counts   []uint64
	times    []time.Time
	n        int // samples written, ever; the newest is at (n-1) % len
}

// NewRing returns a ring of size samples taken every interval.
func NewRing(size int, interval time.Duration) *Ring {
	return &Ring{interval: interval, counts: make([]uint64, size), times: make([]time.Time, size)}
}

// Add records the cumulative count at t.
func (r *Ring) Add(t time.Time, count uint64) {
	r.mu.Lock()
	at := r.n % len(r.counts)
	r.counts[at], r.times[at] = count, t
	r.n++
	r.mu.Unlock()
}

// Rate returns the count and the seconds between the newest sample and the
// oldest one at most timeframe older (fewer seconds while the ring has not
// yet been filled that far). ok is false with fewer than two samples.
func (r *Ring) Rate(timeframe time.Duration) (count uint64, seconds float64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n < 2 {
		return 0, 0, false
	}
	kept := min(r.n, len(r.counts))
	newest := (r.n - 1) % len(r.counts)
	back := min(kept-1, int((timeframe+r.interval/2)/r.interval)) // samples back
	oldest := (r.n - 1 - back) % len(r.counts)
	// Samples older than the timeframe (a late sampler tick) are skipped.
	for back > 1 && r.times[newest].Sub(r.times[oldest]) > timeframe+r.interval/2 {
		back--
		oldest = (r.n - 1 - back) % len(r.counts)
	}
	return r.counts[newest] - r.counts[oldest], r.times[newest].Sub(r.times[oldest]).Seconds(), true
}

// Samples returns how many samples were written.
func (r *Ring) Samples() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
