package engine

import (
	"math/rand/v2"
	"testing"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// TestLatencyRecordBatchRuns: recordBatch, which records runs of equal
// ingest stamps at once, gives the histogram that recording every stamp
// on its own gives (the oracle), clamping included.
func TestLatencyRecordBatchRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const nowNs = 20_000_000_000
	r := newLatencyRecorder()
	want := newStageHistograms()[stageShard]
	for range 200 {
		var stamps []int64
		for len(stamps) < 256 {
			in := nowNs - rng.Int64N(12_000_000_000) // some beyond latencyMaxNs
			if rng.IntN(8) == 0 {
				in = nowNs + 5 // a stamp after now: clamped to latencyMinNs
			}
			for n := 1 + rng.IntN(40); n > 0 && len(stamps) < 256; n-- {
				stamps = append(stamps, in)
			}
		}
		r.recordBatch(stageShard, nowNs, stamps)
		for _, in := range stamps {
			_ = want.RecordValue(min(max(nowNs-in, latencyMinNs), latencyMaxNs))
		}
	}
	got := newStageHistograms()
	r.mergeInto(&got, false)
	if !hdr.Import(got[stageShard].Export()).Equals(want) {
		t.Fatalf("runs recorded at once: count %d, p50 %d, max %d; one by one: count %d, p50 %d, max %d",
			got[stageShard].TotalCount(), got[stageShard].ValueAtQuantile(50), got[stageShard].Max(),
			want.TotalCount(), want.ValueAtQuantile(50), want.Max())
	}
}
