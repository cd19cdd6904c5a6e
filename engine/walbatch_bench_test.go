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

// BenchmarkDecodeEventBatch: reading one event back from a WAL batch, what
// recovery and WAL replay pay per event, in the two versions a WAL may
// hold: version 1 (every price and size 8 bytes) and version 2 (decimals,
// each a division on decode; the offset's id recomputed), on the trades
// and quotes of BenchmarkAppendBatchEvent in batches of the Publisher's
// size. Each run checks that every event of every batch came back.
func BenchmarkDecodeEventBatch(b *testing.B) {
	evs := testEvents(1<<12, 100, 4)
	for i := range evs {
		ev := &evs[i]
		ev.Price, ev.Bid, ev.Ask = math.Round(ev.Price*100)/100, math.Round(ev.Bid*100)/100, math.Round(ev.Ask*100)/100
		ev.IngestNs = 1
	}
	for _, c := range []struct {
		name string
		enc  func([]byte, *batchPrev, *codec.Event) []byte
	}{
		{"v1", func(dst []byte, prev *batchPrev, ev *codec.Event) []byte {
			return appendBatchEventRefV(dst, prev, ev, batchVersionV1)
		}},
		{"v2", appendBatchEvent},
	} {
		// The batches, as a Publisher cuts them (batchBytesMax).
		var batches [][]byte
		var counts []int
		for i := 0; i < len(evs); {
			buf := beginBatch(nil, 1)
			if c.name == "v1" {
				buf[0] = batchVersionV1
			}
			var prev batchPrev
			n := 0
			for ; i < len(evs) && len(buf) <= batchBytesMax-batchEventMax; i++ {
				buf = c.enc(buf, &prev, &evs[i])
				n++
			}
			finishBatch(buf, n)
			batches, counts = append(batches, buf), append(counts, n)
		}
		b.Run(c.name, func(b *testing.B) {
			var ev codec.Event
			var r EventBatch
			got := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; got < b.N; i++ {
				k := i % len(batches)
				if err := r.Reset(batches[k]); err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					ok, err := r.Next(&ev)
					if err != nil {
						b.Fatal(err)
					}
					if !ok {
						break
					}
					n++
				}
				if n != counts[k] {
					b.Fatalf("batch %d: %d events decoded of %d", k, n, counts[k])
				}
				got += n
			}
			b.StopTimer()
			if got < b.N || ev.Symbol == 0 {
				b.Fatalf("%d events decoded for b.N %d (last symbol %d)", got, b.N, ev.Symbol)
			}
			// Whole batches: got is b.N rounded up to a batch, so ns/op
			// is only about per event; report per event exactly.
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(got), "ns/event")
		})
	}
}
