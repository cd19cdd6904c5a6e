package control

import (
	"context"
	"sync"
	"time"
)

// Bounds of GET /api/streams/{id}/throughput?timeframe=D.
const (
	minTimeframe     = time.Second
	maxTimeframe     = time.Hour
	defaultTimeframe = time.Minute
)

// throughput is a ring of cumulative message counts, one sample per
// interval, written by one goroutine (Run) and read by the API: the rate
// over a timeframe is the difference of two samples over their distance.
// Capacity is fixed at construction (maxTimeframe / interval + 1 samples).
type throughput struct {
	mu       sync.Mutex
	interval time.Duration
	counts   []uint64
	times    []time.Time
	n        int // samples written, ever; the newest is at (n-1) % len
}

func newThroughput(size int, interval time.Duration) *throughput {
	return &throughput{interval: interval, counts: make([]uint64, size), times: make([]time.Time, size)}
}

// add records the cumulative count at t.
func (tp *throughput) add(t time.Time, count uint64) {
	tp.mu.Lock()
	at := tp.n % len(tp.counts)
	tp.counts[at], tp.times[at] = count, t
	tp.n++
	tp.mu.Unlock()
}

// rate returns the messages and the seconds between the newest sample and
// the oldest one at most timeframe older (fewer seconds while the ring has
// not yet been filled that far). ok is false with fewer than two samples.
func (tp *throughput) rate(timeframe time.Duration) (messages uint64, seconds float64, ok bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.n < 2 {
		return 0, 0, false
	}
	kept := min(tp.n, len(tp.counts))
	newest := (tp.n - 1) % len(tp.counts)
	back := min(kept-1, int((timeframe+tp.interval/2)/tp.interval)) // samples back
	oldest := (tp.n - 1 - back) % len(tp.counts)
	// Samples older than the timeframe (a late sampler tick) are skipped.
	for back > 1 && tp.times[newest].Sub(tp.times[oldest]) > timeframe+tp.interval/2 {
		back--
		oldest = (tp.n - 1 - back) % len(tp.counts)
	}
	return tp.counts[newest] - tp.counts[oldest], tp.times[newest].Sub(tp.times[oldest]).Seconds(), true
}

// Run samples the engine's processed message count every SampleInterval
// until ctx is done. Run it in its own goroutine.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.SampleInterval)
	defer t.Stop()
	s.tp.add(s.opts.Now(), s.eng.Stats().Messages)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.tp.add(s.opts.Now(), s.eng.Stats().Messages)
		}
	}
}
