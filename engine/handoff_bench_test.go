package engine

import (
	"context"
	"fmt"
	"testing"

	"qstream/codec"
	"qstream/ops"
	"qstream/ring"
)

// The engine's hand-off (BENCHMARKS.md, issue 12: at least 10x a buffered
// channel of the same events): 128-byte codec.Events from one producer
// goroutine through an engine.Publisher into a shard whose processor only
// counts them, beside a buffered Go channel of the same events, in one run.
// One op is one event. Each sub-benchmark checks at its end that every event
// arrived and nothing was rejected.
//
// The shard reads, where the event lies in the ring, the fields an operator
// reads of a trade (Seq, Symbol, Price): all in the event's first cache
// line (codec.Event's layout), as a trade's are; the quote rows fill and
// read the second line too (Bid), as quotes, bars and IEX trades with sale
// conditions need. The channel's receiver reads the same fields of its copy.
//
//   - batch: the producer claims publishBatchMax slots at once
//     (Publisher.ClaimBatch), what a feed does with a socket read of frames,
//     fills each in place and commits them.
//   - quote: batch with quotes (both cache lines).
//   - claim: the producer fills each event in the ring slot (Publisher.Claim,
//     Commit), writing the fields a JSON tick parser writes.
//   - publish: the same fields written into an event of the producer's, which
//     Publisher.Publish copies into the ring (the path before Claim).
//   - chan: a buffered channel of codec.Event of the ring's capacity, the
//     same fields written into the sent value, a receiving goroutine that
//     reads both cache lines of each event.
func BenchmarkEngineHandOff(b *testing.B) {
	for _, size := range []int{1024, 8192} { // 8192 is Config's default RingSize
		for _, w := range []ring.Strategy{ring.Park, ring.Yield, ring.Spin} {
			for _, path := range []string{"batch", "quote", "claim", "publish"} {
				b.Run(fmt.Sprintf("%s/ring%d/%v", path, size, w), func(b *testing.B) {
					benchEngineHandOff(b, size, w, path, false)
				})
			}
		}
		// Config.Chain: the producer runs a parked shard's round itself.
		b.Run(fmt.Sprintf("batch/ring%d/park-chain", size), func(b *testing.B) {
			benchEngineHandOff(b, size, ring.Park, "batch", true)
		})
		b.Run(fmt.Sprintf("chan/cap%d", size), func(b *testing.B) { benchChanHandOff(b, size) })
	}
}

// handOffBatch is how many events the batch path claims at once: a whole
// claim of the Publisher's.
const handOffBatch = publishBatchMax

// countProc counts the events a shard gives it and closes done when the
// count reaches want. It produces no outputs. It is a BatchProcessor: the
// shard hands it each run of plain events in one OnEvents call (every path
// of the benchmark; OnEvent only for events that end a run). Owned by the
// shard goroutine.
type countProc struct {
	n, want uint64
	sum     uint64 // Seq + Symbol + Price (+ Bid of a quote) of every event
	done    chan struct{}
}

// eventSum is what countProc adds up of ev: a trade's fields (first cache
// line), and a quote's Bid (second line).
func eventSum(ev *codec.Event) uint64 {
	s := ev.Seq + uint64(ev.Symbol) + uint64(ev.Price)
	if ev.Kind == codec.KindQuote {
		s += uint64(ev.Bid)
	}
	return s
}

func (c *countProc) OnEvent(ev *codec.Event, _ int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	c.n++
	c.sum += eventSum(ev)
	if c.n == c.want {
		close(c.done)
	}
	return dst, codec.ReasonNone
}

// OnEvents is OnEvent for a run (BatchProcessor): the shard's path in the
// benchmark.
func (c *countProc) OnEvents(evs []codec.Event, _ int64, dst []ops.Output) ([]ops.Output, int, codec.Reason) {
	n, sum := c.n, c.sum
	for i := range evs {
		sum += eventSum(&evs[i])
	}
	n += uint64(len(evs))
	c.n, c.sum = n, sum
	if n >= c.want && n-uint64(len(evs)) < c.want {
		close(c.done)
	}
	return dst, len(evs), codec.ReasonNone
}

func (c *countProc) OnWatermark(int64, uint64, []ops.Output) []ops.Output { return nil }

// fillTick writes what codec.Parser writes for a compact JSON trade.
func fillTick(ev *codec.Event, i int, sym codec.Symbol) {
	ev.TsNs = 1_700_000_000_000_000_000 + int64(i)
	ev.Price, ev.Volume = 189.23, 300
	ev.Symbol, ev.Kind = sym, codec.KindTrade
}

// fillQuote writes what codec.Parser writes for a JSON quote with a last
// price.
func fillQuote(ev *codec.Event, i int, sym codec.Symbol) {
	ev.TsNs = 1_700_000_000_000_000_000 + int64(i)
	ev.Price, ev.Bid, ev.Ask, ev.BidSize, ev.AskSize = 189.23, 189.22, 189.24, 500, 400
	ev.Symbol, ev.Kind, ev.Flags = sym, codec.KindQuote, codec.FlagHasBid|codec.FlagHasAsk
}

// handOffSum is countProc's sum over events 0..n-1 (Seq 1..n) of path.
func handOffSum(n int, sym codec.Symbol, path string) uint64 {
	per := uint64(sym) + 189 // Symbol + Price
	if path == "quote" {
		per += 189 // Bid
	}
	return uint64(n)*uint64(n+1)/2 + per*uint64(n)
}

func benchEngineHandOff(b *testing.B, ringSize int, w ring.Strategy, path string, chain bool) {
	n := b.N
	cp := &countProc{want: uint64(n), done: make(chan struct{})}
	mode := ModeRealTime // ModeEventDriven would force Park
	if w == ring.Park {
		mode = ModeEventDriven
	}
	e, err := New(Config{Shards: 1, RingSize: ringSize, Wait: w, Mode: mode, Chain: chain, Logger: quietLogger(),
		Processors: func(int) (Processor, error) { return cp, nil }})
	if err != nil {
		b.Fatal(err)
	}
	sym, _ := e.Symbols().InternString("AAPL")
	p, err := e.NewPublisher("bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	var local codec.Event
	b.SetBytes(int64(codec.EventSize))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < n; i++ {
		switch path {
		case "batch", "quote":
			evs, err := p.ClaimBatch(min(handOffBatch, n-i))
			if err != nil {
				b.Fatal(err)
			}
			if path == "quote" {
				for j := range evs {
					fillQuote(&evs[j], i+j, sym)
				}
			} else {
				for j := range evs {
					fillTick(&evs[j], i+j, sym)
				}
			}
			if err := p.CommitBatch(len(evs)); err != nil {
				b.Fatal(err)
			}
			i += len(evs) - 1
		case "claim":
			ev, err := p.Claim()
			if err != nil {
				b.Fatal(err)
			}
			fillTick(ev, i, sym)
			if err := p.Commit(); err != nil {
				b.Fatal(err)
			}
		default:
			local.Seq, local.IngestNs = 0, 0
			fillTick(&local, i, sym)
			if err := p.Publish(&local); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := p.Flush(); err != nil {
		b.Fatal(err)
	}
	<-cp.done
	b.StopTimer()
	// How often each side went to sleep (Park): a wake-up costs microseconds.
	b.ReportMetric(float64(p.waiter.Sleeps())*1000/float64(n), "producer-sleeps/kop")
	b.ReportMetric(float64(e.shards[0].waiter.Sleeps())*1000/float64(n), "shard-sleeps/kop")
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	if err := e.Stop(context.Background()); err != nil {
		b.Fatal(err)
	}
	// Seq runs 1..n (the Publisher numbers the events).
	if want := handOffSum(n, sym, path); cp.n != uint64(n) || cp.sum != want {
		b.Fatalf("shard took %d events (checksum %d), want %d (%d)", cp.n, cp.sum, n, want)
	}
	if st := e.Stats(); st.DeadLetters != 0 || p.Published() != uint64(n) {
		b.Fatalf("published %d of %d, %d dead letters (%v)", p.Published(), n, st.DeadLetters, st.Rejected)
	}
}

func benchChanHandOff(b *testing.B, capacity int) {
	n := b.N
	ch := make(chan codec.Event, capacity)
	done := make(chan struct{})
	var got, sum uint64
	go func() {
		for ev := range ch {
			got++
			sum += eventSum(&ev)
		}
		close(done)
	}()
	const sym = codec.Symbol(1)
	var ev codec.Event
	b.SetBytes(int64(codec.EventSize))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		ev.Seq = uint64(i + 1)
		fillTick(&ev, i, sym)
		ch <- ev
	}
	close(ch)
	<-done
	b.StopTimer()
	if want := handOffSum(n, sym, "batch"); got != uint64(n) || sum != want {
		b.Fatalf("received %d events (checksum %d), want %d (%d)", got, sum, n, want)
	}
}
