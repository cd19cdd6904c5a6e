package engine

import (
	"sync"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Stage names a point of the pipeline that latency is measured to, always
// from the event's ingest stamp.
type Stage int

// Latency stages.
const (
	stageShard Stage = iota // ingest → the shard's operators have produced their outputs
	stageSink               // ingest → the output handler has accepted the outputs
	stageCount
)

// StageNames are the stage names used in status lines and JSON stats.
var StageNames = [stageCount]string{"shard", "sink"}

const (
	latencyMinNs   = 1
	latencyMaxNs   = 10_000_000_000 // 10 s; slower is clamped and counted as 10 s
	latencySigFigs = 3
)

// latencyRecorder holds one HdrHistogram per stage. The owning goroutine
// records a whole batch under one lock; a reader (Latency,
// LatencyHistograms, serialised by Engine.latTotal.mu) swaps the live
// histograms with empty spares under that lock and merges outside it, so
// the owner never waits for a merge (a shard used to stall for one on
// every status tick).
type latencyRecorder struct {
	mu sync.Mutex
	h  [stageCount]*hdr.Histogram // live: the owner records here, under mu

	// The reader's, under Engine.latTotal.mu: spare takes h's place at the
	// next swap; acc holds what was swapped out since the last reset.
	spare, acc [stageCount]*hdr.Histogram
}

func newLatencyRecorder() *latencyRecorder {
	return &latencyRecorder{h: newStageHistograms(), spare: newStageHistograms(), acc: newStageHistograms()}
}

// recordBatch records now−ingest for every ingest stamp. It does not allocate.
// A Publisher stamps its events once per batch, so runs of equal stamps are
// common: each run is recorded at once (RecordValues).
func (r *latencyRecorder) recordBatch(st Stage, nowNs int64, ingestNs []int64) {
	r.mu.Lock()
	h := r.h[st]
	for len(ingestNs) > 0 {
		in, n := ingestNs[0], 1
		for n < len(ingestNs) && ingestNs[n] == in {
			n++
		}
		ingestNs = ingestNs[n:]
		_ = h.RecordValues(latencyClamp(nowNs-in), int64(n))
	}
	r.mu.Unlock()
}

// recordRuns is recordBatch for runs of equal stamps (a shard's batchBuf).
// It does not allocate.
func (r *latencyRecorder) recordRuns(st Stage, nowNs int64, runs []stampRun) {
	r.mu.Lock()
	h := r.h[st]
	for _, run := range runs {
		_ = h.RecordValues(latencyClamp(nowNs-run.ingestNs), run.n)
	}
	r.mu.Unlock()
}

// latencyClamp bounds a latency to what the histograms hold.
func latencyClamp(d int64) int64 {
	return min(max(d, latencyMinNs), latencyMaxNs)
}

// mergeInto adds this recorder's histograms to dst and, if reset, clears
// them. The caller holds Engine.latTotal.mu.
func (r *latencyRecorder) mergeInto(dst *[stageCount]*hdr.Histogram, reset bool) {
	r.mu.Lock()
	old := r.h
	r.h = r.spare
	r.mu.Unlock()
	for i, h := range old {
		r.acc[i].Merge(h)
		h.Reset()
		dst[i].Merge(r.acc[i])
		if reset {
			r.acc[i].Reset()
		}
	}
	r.spare = old
}

// Quantiles are latency percentiles in nanoseconds.
type Quantiles struct {
	Count          int64
	P50, P99, P999 int64
	Max            int64
}

// LatencySnapshot is the merged latency of every shard, per stage.
type LatencySnapshot struct {
	Stages [stageCount]Quantiles
}

// Latency merges every shard's histograms. With reset it clears them, for
// interval reporting (the status line).
func (e *Engine) Latency(reset bool) LatencySnapshot {
	merged := newStageHistograms()
	e.latTotal.mu.Lock()
	for _, s := range e.shards {
		s.lat.mergeInto(&merged, reset)
	}
	e.collector.lat.mergeInto(&merged, reset)
	if reset {
		// What the reset clears stays in the totals (LatencyHistograms).
		e.latTotal.fold(&merged)
	}
	e.latTotal.mu.Unlock()
	var snap LatencySnapshot
	for i, h := range merged {
		snap.Stages[i] = Quantiles{
			Count: h.TotalCount(),
			P50:   h.ValueAtQuantile(50),
			P99:   h.ValueAtQuantile(99),
			P999:  h.ValueAtQuantile(99.9),
			Max:   h.Max(),
		}
	}
	return snap
}

func newStageHistograms() [stageCount]*hdr.Histogram {
	var h [stageCount]*hdr.Histogram
	for i := range h {
		h[i] = hdr.New(latencyMinNs, latencyMaxNs, latencySigFigs)
	}
	return h
}

// latencyTotals keep what Latency(true) cleared from the recorders, so that
// LatencyHistograms can report the latency since the engine was built while
// the status line reports it per interval. mu also orders a reset against a
// reader, so that nothing is counted twice or missed.
type latencyTotals struct {
	mu sync.Mutex
	h  [stageCount]*hdr.Histogram // nil until the first reset
}

// fold adds merged to the totals. The caller holds mu.
func (t *latencyTotals) fold(merged *[stageCount]*hdr.Histogram) {
	if t.h[0] == nil {
		t.h = newStageHistograms()
	}
	for i, h := range merged {
		t.h[i].Merge(h)
	}
}

// LatencyBuckets is the cumulative latency distribution of one stage since
// the engine was built, in the shape of a Prometheus histogram.
type LatencyBuckets struct {
	Count int64
	SumNs float64 // estimated from the recorded values (mean × count), at the histogram's precision
	// Cumulative[i] counts the latencies ≤ the i-th bound given to
	// LatencyHistograms (at the recorder's precision, 3 significant digits).
	Cumulative []uint64
}

// LatencyHistograms returns, per stage (StageNames), the latency recorded
// since the engine was built, counted into the upper bounds boundsNs
// (ascending). Unlike Latency it never resets anything, so it can be
// scraped while the status line takes interval snapshots. It allocates
// (a merged histogram per stage): call it per scrape, not per event.
func (e *Engine) LatencyHistograms(boundsNs []int64) [stageCount]LatencyBuckets {
	merged := newStageHistograms()
	e.latTotal.mu.Lock()
	for _, s := range e.shards {
		s.lat.mergeInto(&merged, false)
	}
	e.collector.lat.mergeInto(&merged, false)
	if e.latTotal.h[0] != nil {
		for i, h := range e.latTotal.h {
			merged[i].Merge(h)
		}
	}
	e.latTotal.mu.Unlock()
	var out [stageCount]LatencyBuckets
	for i, h := range merged {
		lb := LatencyBuckets{Count: h.TotalCount(), Cumulative: make([]uint64, len(boundsNs))}
		lb.SumNs = h.Mean() * float64(lb.Count)
		for _, bar := range h.Distribution() {
			if bar.Count == 0 {
				continue
			}
			// A bar holds the values of [From, To]: it counts under every
			// bound at or above its highest equivalent value.
			for j := len(boundsNs) - 1; j >= 0 && boundsNs[j] >= bar.To; j-- {
				lb.Cumulative[j] += uint64(bar.Count)
			}
		}
		out[i] = lb
	}
	return out
}
