package engine

import (
	"math"
	"testing"

	"qstream/codec"
)

// BenchmarkAppendBatchEvent: encoding one event into a WAL batch, the
// publisher's share of the WAL's cost per event, and the bytes it writes
// (bytes/event: what the WAL's disk throughput is spent on), on a mix of
// trades and quotes (one in five) with prices in cents as feeds quote them:
//
//   - engine: the version 2 format (decimal prices and sizes);
//   - v1: the plain transcription of version 1 (every price and size 8
//     bytes), the format before;
//   - engine-raw: version 2 on prices that are no short decimal (a random
//     walk in float64): every price stored raw, its worst case.
func BenchmarkAppendBatchEvent(b *testing.B) {
	cents := testEvents(1<<12, 100, 4)
	for i := range cents {
		ev := &cents[i]
		ev.Price, ev.Bid, ev.Ask = math.Round(ev.Price*100)/100, math.Round(ev.Bid*100)/100, math.Round(ev.Ask*100)/100
	}
	v1 := func(dst []byte, prev *batchPrev, ev *codec.Event) []byte {
		return appendBatchEventRefV(dst, prev, ev, batchVersionV1)
	}
	for _, c := range []struct {
		name string
		enc  func([]byte, *batchPrev, *codec.Event) []byte
		evs  []codec.Event
	}{{"v1", v1, cents}, {"engine", appendBatchEvent, cents}, {"engine-raw", appendBatchEvent, testEvents(1<<12, 100, 4)}} {
		b.Run(c.name, func(b *testing.B) {
			evs := c.evs
			buf := make([]byte, 0, batchBytesMax+batchEventMax)
			var prev batchPrev
			events, bytes := 0, 0
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if len(buf) > batchBytesMax {
					bytes += len(buf) - batchHeader
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
			bytes += len(buf) - batchHeader
			b.ReportMetric(float64(bytes)/float64(events), "bytes/event")
		})
	}
}
