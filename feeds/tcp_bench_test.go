package feeds

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
)

// The TCP ingest benchmarks send codec frames over loopback in large
// (64 KiB) writes from tcpBenchConns connections and time until the server
// side has decoded and published all b.N of them. BenchmarkTCPIngest runs
// the gnet server; BenchmarkTCPIngestNetBaseline does the same work (same
// splitter, same frame decoding, same Publisher calls) with Go's net package:
// a goroutine per connection reading into the same size of buffer. Compare
// their msgs/s in one run (goal: gnet >= 1M msgs/s).

const (
	tcpBenchConns     = 2
	tcpBenchWriteSize = 64 << 10
)

// tcpBenchPubs counts published events. Each Publisher counts privately and
// adds to the shared total on Flush (once per read), so counting costs the
// hot path almost nothing.
type tcpBenchPubs struct {
	syms     *codec.SymbolTable
	total    atomic.Int64
	rejected atomic.Int64 // frames the feed refused: the benchmark fails on any
	mu       sync.Mutex
	target   int64
	done     chan struct{}
}

type tcpBenchPub struct {
	p        *tcpBenchPubs
	n, added int64
}

func (b *tcpBenchPubs) NewPublisher(string) (Publisher, error) { return &tcpBenchPub{p: b}, nil }
func (b *tcpBenchPubs) Symbols() *codec.SymbolTable            { return b.syms }

// expect arms the counter for n more events and returns the channel closed
// when they have arrived.
func (b *tcpBenchPubs) expect(n int64) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.target = b.total.Load() + n
	b.done = make(chan struct{})
	return b.done
}

func (p *tcpBenchPub) Publish(*codec.Event) error { p.n++; return nil }
func (p *tcpBenchPub) Flush() error {
	if d := p.n - p.added; d > 0 {
		p.added = p.n
		if t := p.p.total.Add(d); t >= p.p.target {
			p.p.mu.Lock()
			if t >= p.p.target && p.p.done != nil {
				close(p.p.done)
				p.p.done = nil
			}
			p.p.mu.Unlock()
		}
	}
	return nil
}
func (p *tcpBenchPub) Barrier(context.Context) error                { return p.Flush() }
func (p *tcpBenchPub) Reject([]byte, codec.Reason, Position, error) { p.p.rejected.Add(1) }

// tcpBenchStream is one connection's worth of frames, cut into writes.
func tcpBenchStream() []byte {
	const frames = 1 << 14 // 2.2 MB
	buf := make([]byte, 0, frames*codec.FrameSize)
	for i := 1; i <= frames; i++ {
		ev := tcpFrameEvent(1, i)
		buf = codec.AppendFrame(buf, &ev)
	}
	return buf
}

// tcpBenchSend writes n frames from stream (repeated) to c in writes of
// tcpBenchWriteSize bytes.
func tcpBenchSend(c net.Conn, stream []byte, n int) error {
	left := n * codec.FrameSize
	for left > 0 {
		for off := 0; off < len(stream) && left > 0; {
			w := min(tcpBenchWriteSize, len(stream)-off, left)
			if _, err := c.Write(stream[off : off+w]); err != nil {
				return err
			}
			off += w
			left -= w
		}
	}
	return nil
}

// runTCPIngest sends b.N frames over conns and waits for pubs to count them.
func runTCPIngest(b *testing.B, pubs *tcpBenchPubs, conns []net.Conn) {
	stream := tcpBenchStream()
	b.SetBytes(codec.FrameSize)
	b.ReportAllocs()
	b.ResetTimer()
	done := pubs.expect(int64(b.N))
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N / len(conns)
	for i, c := range conns {
		n := per
		if i == 0 {
			n += b.N - per*len(conns)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tcpBenchSend(c, stream, n); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d frames arrived (%d rejected)", pubs.total.Load(), pubs.target, pubs.rejected.Load())
	}
	if r := pubs.rejected.Load(); r != 0 {
		b.Fatalf("%d frames rejected", r)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

func BenchmarkTCPIngest(b *testing.B) {
	pubs := &tcpBenchPubs{syms: codec.NewSymbolTable(0)}
	internFrameSymbols(b, pubs.syms) // the feed refuses a frame whose symbol id the table lacks
	s, _ := startTCPServer(b, TCPConfig{Format: TCPFrames, EventLoops: tcpBenchConns}, pubs)
	conns := make([]net.Conn, tcpBenchConns)
	for i := range conns {
		conns[i] = dialTCP(b, s)
	}
	runTCPIngest(b, pubs, conns)
}

func BenchmarkTCPIngestNetBaseline(b *testing.B) {
	pubs := &tcpBenchPubs{syms: codec.NewSymbolTable(0)}
	internFrameSymbols(b, pubs.syms)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tcpNetBaselineConn(c, pubs)
			}()
		}
	}()
	conns := make([]net.Conn, tcpBenchConns)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	runTCPIngest(b, pubs, conns)
}

// tcpNetBaselineConn is the TCP server's read path on a plain net.Conn.
func tcpNetBaselineConn(c net.Conn, pubs *tcpBenchPubs) {
	pub, _ := pubs.NewPublisher("net")
	sp := newTCPSplitter(TCPFrames, DefaultTCPMaxMessageSize)
	buf := make([]byte, DefaultTCPReadBufferSize)
	var ev codec.Event
	for {
		n, err := c.Read(buf)
		if n > 0 {
			sp.Begin(buf[:n])
			for {
				msg, ok, err := sp.Next()
				if err != nil || !ok {
					break
				}
				if decodeCodecFrame(msg, &ev) == nil && checkFrameSymbol(pubs.syms, &ev) == nil {
					_ = pub.Publish(&ev)
				} else {
					pub.Reject(msg, codec.ReasonMalformed, Position{}, nil)
				}
			}
			_ = pub.Flush()
		}
		if err != nil {
			return // io.EOF when the client is done, or the listener closed
		}
	}
}

// PublishText publishes ev; the fake keeps no text.
func (p *tcpBenchPub) PublishText(ev *codec.Event, _ []byte) error { return p.Publish(ev) }
