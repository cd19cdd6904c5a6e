package sinks

import (
	"context"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

// Fan-out benchmarks: b.N outputs (batches of wsBenchBatch over ten symbols)
// to clients subscribed to everything. The producer keeps at most
// wsBenchWindow outputs ahead of the slowest client, below the queue bound,
// so nothing is conflated: the figure is messages delivered, and the
// benchmark fails unless every client received every output, in order.
//
//	ws_100_clients     100 WebSocket clients over loopback (the figure)
//	ws_1_client        one WebSocket client: the per-connection ceiling
//	Baseline_chan_100  the same encoded messages to 100 goroutines over
//	                   buffered channels: the in-process ceiling of the fan-out
const (
	wsBenchBatch  = 100
	wsBenchWindow = 512
)

func BenchmarkWSFanout(b *testing.B) {
	b.Run("ws_100_clients", func(b *testing.B) { benchWSFanout(b, 100) })
	b.Run("ws_1_client", func(b *testing.B) { benchWSFanout(b, 1) })
	b.Run("Baseline_chan_100", func(b *testing.B) { benchChanFanout(b, 100) })
}

// wsBenchOutputs fills outs with the outputs of seq first, first+1, ...
func wsBenchOutputs(outs []ops.Output, first uint64) {
	for i := range outs {
		seq := first + uint64(i)
		outs[i] = wsInd(codec.Symbol(1+seq%uint64(len(wsSyms))), seq, 100+float64(seq%1000)/8)
	}
}

// wsBenchCounter is what each consumer reports: how many outputs it has,
// and the first out-of-order seq it saw.
type wsBenchCounter struct {
	n   atomic.Uint64
	bad atomic.Uint64
	_   [48]byte // keep consumers' counters on their own cache lines
}

// see checks that b carries the next seq and counts it.
func (c *wsBenchCounter) see(b []byte) {
	seq, ok := wsSeqOf(b)
	if n := c.n.Load(); !ok || seq != n+1 {
		if c.bad.Load() == 0 {
			c.bad.Store(max(seq, 1))
		}
	}
	c.n.Add(1)
}

// waitWindow blocks until the slowest consumer is within window of sent;
// false after 10 s without progress. timer is the caller's, reused.
func waitWindow(counters []wsBenchCounter, progress <-chan struct{}, timer *time.Timer, sent, window uint64) bool {
	for {
		lo := sent
		for i := range counters {
			lo = min(lo, counters[i].n.Load())
		}
		if sent-lo <= window {
			return true
		}
		timer.Reset(10 * time.Second)
		select {
		case <-progress:
			timer.Stop()
		case <-timer.C:
			return false
		}
	}
}

func poke(progress chan<- struct{}) {
	select {
	case progress <- struct{}{}:
	default:
	}
}

func benchWSFanout(b *testing.B, clients int) {
	s := newTestWS(b, "stall=1m&max_clients=200")
	defer s.Close()
	counters := make([]wsBenchCounter, clients)
	progress := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for i := range clients {
		c := wsDial(b, s, nil)
		defer c.CloseNow()
		wsSubscribeAll(b, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			ctr := &counters[i]
			for {
				m, err := wsReadMsg(context.Background(), c, buf)
				if err != nil {
					return
				}
				ctr.see(m)
				if ctr.n.Load()%32 == 0 {
					poke(progress)
				}
			}
		}()
	}
	start := wsBenchDrive(b, counters, progress, func(outs []ops.Output) error {
		return s.WriteBatch(context.Background(), outs)
	})
	for i := range counters { // the last ones may not poke: poll
		for deadline := time.Now().Add(10 * time.Second); counters[i].n.Load() < uint64(b.N); {
			if time.Now().After(deadline) {
				b.Fatalf("client %d received %d of %d outputs", i, counters[i].n.Load(), b.N)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	want := uint64(clients) * uint64(b.N)
	// A writer counts its round once written; its client may have read it first.
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Sent < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	st := s.Stats()
	wsBenchReport(b, counters, "client", elapsed)
	if st.Sent != want || st.Conflated != 0 || st.ClosedSlow != 0 {
		b.Fatalf("server %+v: want %d sent and nothing conflated or closed", st, want)
	}
	s.Close()
	wg.Wait()
}

// benchChanFanout encodes each output once, as the server does (its encoder,
// its pooled reference-counted messages), and hands it to each
// consumer over a buffered channel of the server's default queue bound.
func benchChanFanout(b *testing.B, consumers int) {
	u, _ := url.Parse("ws://127.0.0.1:0/")
	s, err := NewWSServer(u, wsTestEnv(b)) // not opened: its encoder only
	if err != nil {
		b.Fatal(err)
	}
	counters := make([]wsBenchCounter, consumers)
	chans := make([]chan *wsMsg, consumers)
	progress := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan *wsMsg, wsQueueDefault)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctr := &counters[i]
			for m := range chans[i] {
				ctr.see(m.payload())
				m.release()
				if ctr.n.Load()%32 == 0 {
					poke(progress)
				}
			}
		}()
	}
	start := wsBenchDrive(b, counters, progress, func(outs []ops.Output) error {
		for i := range outs {
			m := s.encode(outs[i:], 0)
			m.refs.Store(int32(consumers))
			for _, ch := range chans {
				ch <- m
			}
		}
		return nil
	})
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	wsBenchReport(b, counters, "consumer", elapsed)
}

// wsBenchDrive hands b.N outputs to deliver in batches of wsBenchBatch,
// keeping at most wsBenchWindow ahead of the slowest reader, and returns when
// it started (the timer reset).
func wsBenchDrive(b *testing.B, counters []wsBenchCounter, progress <-chan struct{}, deliver func([]ops.Output) error) time.Time {
	outs := make([]ops.Output, wsBenchBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		k := min(wsBenchBatch, b.N-sent)
		if !waitWindow(counters, progress, timer, uint64(sent), wsBenchWindow-wsBenchBatch) {
			b.Fatalf("readers stopped reading at %d of %d outputs", counters[0].n.Load(), sent)
		}
		wsBenchOutputs(outs[:k], uint64(sent)+1)
		if err := deliver(outs[:k]); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	return start
}

// wsBenchReport fails unless every reader (a client or a consumer) got all
// b.N outputs in order, and reports the rates.
func wsBenchReport(b *testing.B, counters []wsBenchCounter, reader string, elapsed time.Duration) {
	for i := range counters {
		if n, bad := counters[i].n.Load(), counters[i].bad.Load(); n != uint64(b.N) || bad != 0 {
			b.Fatalf("%s %d: %d outputs of %d, first out of order at seq %d", reader, i, n, b.N, bad)
		}
	}
	b.ReportMetric(float64(len(counters))*float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "outputs/s")
}
