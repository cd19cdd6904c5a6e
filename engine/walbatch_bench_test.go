package engine

import (
	"testing"

	"qstream/codec"
)

// BenchmarkAppendBatchEvent: encoding one event into a WAL batch, the
// publisher's share of the WAL's cost per event under Config.WALBatches,
// beside the plain transcription of the format (appendBatchEventRef, the
// baseline).
func BenchmarkAppendBatchEvent(b *testing.B) {
	for _, c := range []struct {
		name string
		enc  func([]byte, *batchPrev, *codec.Event) []byte
	}{{"ref", appendBatchEventRef}, {"engine", appendBatchEvent}} {
		b.Run(c.name, func(b *testing.B) {
			evs := testEvents(1<<12, 100, 4)
			buf := make([]byte, 0, batchBytesMax+batchEventMax)
			var prev batchPrev
			events := 0
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if len(buf) > batchBytesMax {
					buf, prev = beginBatch(buf[:0], 1), batchPrev{}
				}
				ev := &evs[i&(len(evs)-1)]
				ev.IngestNs = 1
				buf = c.enc(buf, &prev, ev)
				events++
			}
			if events != b.N || (b.N > 0 && len(buf) <= batchHeader) {
				b.Fatalf("%d events encoded of %d", events, b.N)
			}
		})
	}
}
