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
// records a whole batch under one uncontended lock; Snapshot merges on demand.
type latencyRecorder struct {
	mu sync.Mutex
	h  [stageCount]*hdr.Histogram
}

func newLatencyRecorder() *latencyRecorder {
	r := &latencyRecorder{}
	for i := range r.h {
		r.h[i] = hdr.New(latencyMinNs, latencyMaxNs, latencySigFigs)
	}
	return r
}

// recordBatch records now−ingest for every ingest stamp. It does not allocate.
func (r *latencyRecorder) recordBatch(st Stage, nowNs int64, ingestNs []int64) {
	r.mu.Lock()
	h := r.h[st]
	for _, in := range ingestNs {
		d := nowNs - in
		if d < latencyMinNs {
			d = latencyMinNs
		} else if d > latencyMaxNs {
			d = latencyMaxNs
		}
		_ = h.RecordValue(d)
	}
	r.mu.Unlock()
}

// mergeInto adds this recorder's histograms to dst and, if reset, clears them.
func (r *latencyRecorder) mergeInto(dst *[stageCount]*hdr.Histogram, reset bool) {
	r.mu.Lock()
	for i, h := range r.h {
		dst[i].Merge(h)
		if reset {
			h.Reset()
		}
	}
	r.mu.Unlock()
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
	var merged [stageCount]*hdr.Histogram
	for i := range merged {
		merged[i] = hdr.New(latencyMinNs, latencyMaxNs, latencySigFigs)
	}
	for _, s := range e.shards {
		s.lat.mergeInto(&merged, reset)
	}
	e.collector.lat.mergeInto(&merged, reset)
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
