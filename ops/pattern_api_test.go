package ops

import (
	"math/rand/v2"
	"testing"

	"qstream/codec"
)

// The pattern detector's keys, with their per-input parts computed once,
// are OutputKey's (a key must never change: sinks upsert on it).
func TestPatKeyerIsOutputKey(t *testing.T) {
	p, err := NewPipeline(PipelineConfig{MaxSymbolID: 8})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 1000 {
		p.SetSourceKey(rng.Uint64(), rng.Uint64())
		ev := codec.Event{Symbol: codec.Symbol(1 + rng.IntN(1<<20)), Seq: rng.Uint64()}
		if i%2 == 0 {
			ev.IDHash = rng.Uint64()
		}
		var k patKeyer
		for range 3 {
			op := uint16(rng.IntN(MaxPatterns))
			if got, want := k.key(p, op, &ev), p.inputKey(OutPattern, op, &ev); got != want {
				t.Fatalf("event %+v op %d: key %x, want %x", ev, op, got, want)
			}
		}
	}
}
