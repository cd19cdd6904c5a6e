package feeds

// Tests of the network feeds against the real engine (WAL, checkpoints,
// dedup, the operator pipeline): what issue 8 found broken only shows with
// the engine's Publishers, which number events, keep watermarks and dedup.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/wal"
)

// engPubs hands the engine's Publishers to a feed (as internal/feedhost
// does for the binary, which this package cannot import) and detaches them
// when the feed has returned.
type engPubs struct {
	e    *engine.Engine
	mu   sync.Mutex
	pubs []*engine.Publisher
}

func (p *engPubs) NewPublisher(name string) (Publisher, error) {
	pub, err := p.e.NewPublisher(name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pubs = append(p.pubs, pub)
	p.mu.Unlock()
	return pub, nil
}

func (p *engPubs) Symbols() *codec.SymbolTable { return p.e.Symbols() }

func (p *engPubs) detachAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.pubs {
		_ = pub.Detach()
	}
}

// engSink is the external sink of the engine tests: a CheckpointedOutput in
// memory whose mark is its length, kept across engine restarts.
type engSink struct {
	mu   sync.Mutex
	outs []ops.Output
}

func (m *engSink) HandleOutputs(outs []ops.Output) error {
	m.mu.Lock()
	m.outs = append(m.outs, outs...)
	m.mu.Unlock()
	return nil
}

func (m *engSink) CheckpointOutput() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return binary.LittleEndian.AppendUint64(nil, uint64(len(m.outs))), nil
}

func (m *engSink) RestoreOutput(hwm []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := uint64(0)
	if hwm != nil {
		n = binary.LittleEndian.Uint64(hwm)
	}
	if n > uint64(len(m.outs)) {
		return fmt.Errorf("mark %d beyond %d outputs", n, len(m.outs))
	}
	m.outs = m.outs[:n]
	return nil
}

func (m *engSink) all() []ops.Output {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ops.Output(nil), m.outs...)
}

// of returns the outputs of one kind (and symbol, if sym != 0).
func (m *engSink) of(kind ops.OutKind, sym codec.Symbol) []ops.Output {
	var r []ops.Output
	for _, o := range m.all() {
		if o.Kind == kind && (sym == 0 || o.Symbol == sym) {
			r = append(r, o)
		}
	}
	return r
}

// engDL counts dead letters by reason.
type engDL struct {
	mu sync.Mutex
	n  map[codec.Reason]int
}

func (d *engDL) HandleDeadLetter(dl *engine.DeadLetter) {
	d.mu.Lock()
	if d.n == nil {
		d.n = map[codec.Reason]int{}
	}
	d.n[dl.Reason]++
	d.mu.Unlock()
}

func (d *engDL) count(r codec.Reason) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[r]
}

// engRig is one life of a durable engine over dir: WAL, checkpoints, dedup,
// 1 s out-of-orderness, indicators (sma:2) and a tumbling 1 s count window
// with at most 4 open windows per symbol.
type engRig struct {
	e    *engine.Engine
	w    *engine.WAL
	pubs *engPubs
	dl   *engDL
	rep  *engine.RecoveryReport
}

const engTsBase = int64(1_700_000_000) * int64(time.Second)

func quietSlog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openEngRig opens dir's WAL and checkpoints and recovers an engine from
// them (a fresh one when dir is empty), writing to out.
func openEngRig(t *testing.T, dir string, out *engSink) *engRig {
	t.Helper()
	w, err := engine.OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ops.ParseIndicators("sma:2")
	if err != nil {
		t.Fatal(err)
	}
	wins, err := ops.ParseWindowSpecs("tumbling:1s:count")
	if err != nil {
		t.Fatal(err)
	}
	r := &engRig{w: w, dl: &engDL{}}
	r.e, err = engine.New(engine.Config{
		Shards:  2,
		Symbols: codec.NewSymbolTable(64),
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: wins,
				WindowOptions: ops.WindowOptions{MaxOpenWindowsPerSymbol: 4}, MaxSymbolID: 64, MaxSlots: 64})
		},
		Output:         out,
		DeadLetters:    r.dl,
		Durability:     w,
		Checkpoints:    &engine.CheckpointConfig{Dir: filepath.Join(dir, "ckpt")},
		DedupHorizon:   1 << 14,
		OutOfOrderness: time.Second,
		MaxProducers:   32,
		Logger:         quietSlog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.rep, err = r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.pubs = &engPubs{e: r.e}
	return r
}

// stop ends this life once the feeds have returned: the publishers are
// detached (the sources are suspended, as `qstream run` does on Ctrl-C);
// clean takes a checkpoint first, otherwise it is a crash as far as the
// state goes (recovery replays the WAL after the last checkpoint).
func (r *engRig) stop(t *testing.T, clean bool) {
	t.Helper()
	r.pubs.detachAll()
	if clean {
		if _, err := r.e.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	} else {
		r.e.StopCheckpoints() // a crash: no checkpoint at Stop either
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.w.Close(); err != nil {
		t.Fatal(err)
	}
}

// runFeed runs f on pubs until the returned stop is called.
func runFeed(t *testing.T, f Feed, pubs Publishers, ready <-chan struct{}) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, pubs) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("%s: Run: %v", f.Name(), err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("%s not ready after 10s", f.Name())
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: Run = %v", f.Name(), err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s: Run did not return", f.Name())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// startEngTCP runs an acknowledging TCP lines server with two event loops
// on addr.
func startEngTCP(t *testing.T, addr string, pubs Publishers) (*TCPServer, func()) {
	t.Helper()
	s, err := NewTCPServer(TCPConfig{Addr: addr, Format: TCPLines, EventLoops: 2, Ack: true, Logger: tcpQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return s, runFeed(t, s, pubs, s.Ready())
}

// tcpClient is one connection that sends lines and reads the server's
// cumulative acks.
type tcpClient struct {
	t    *testing.T
	c    net.Conn
	acks *bufio.Reader
	sent uint64
}

func dialEngTCP(t *testing.T, addr string) *tcpClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tcpClient{t: t, c: c, acks: bufio.NewReader(c)}
}

// engTrade is a trade line: symbol sym at engTsBase + k·step, id "<sym>-k".
func engTrade(sym string, k int, step time.Duration) string {
	return fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%d.5,"volume":1,"id":"%s-%d"}`,
		sym, engTsBase+int64(k)*int64(step), 100+k%50, sym, k) + "\n"
}

// send writes trades k = from..to of sym and waits for their ack.
func (c *tcpClient) send(sym string, from, to int, step time.Duration) {
	c.t.Helper()
	var b strings.Builder
	for k := from; k <= to; k++ {
		b.WriteString(engTrade(sym, k, step))
	}
	if _, err := c.c.Write([]byte(b.String())); err != nil {
		c.t.Fatal(err)
	}
	c.sent += uint64(to - from + 1)
	_ = c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		line, err := c.acks.ReadString('\n')
		if err != nil {
			c.t.Fatalf("waiting for ack %d: %v", c.sent, err)
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(line, `{"ack":`), "}\n"), 10, 64)
		if err != nil {
			c.t.Fatalf("ack line %q: %v", line, err)
		}
		if n == c.sent {
			return
		}
	}
}

// loopOf returns the event loop serving client c.
func loopOf(t *testing.T, s *TCPServer, c *tcpClient) int {
	t.Helper()
	for _, cs := range s.Stats().Conns {
		if cs.Remote == c.c.LocalAddr().String() {
			return cs.Loop
		}
	}
	t.Fatalf("connection %s not open", c.c.LocalAddr())
	return -1
}

func waitEng(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	netWaitFor(t, timeout, what, cond)
}

// Item 1 of issue 8: after a restart (a crash, or a clean stop with a
// checkpoint) the TCP feed's windows keep firing at once. Before, each loop
// numbered events by line on its connection and sent no watermark until a
// new connection's line numbers passed the old offset: no window fired, and
// open windows piled up until trades were dead-lettered as oversize.
func TestTCPRestartWindowsKeepFiring(t *testing.T) {
	for _, clean := range []bool{false, true} {
		name := "crash"
		if clean {
			name = "clean stop"
		}
		t.Run(name, func(t *testing.T) {
			dir, out := t.TempDir(), &engSink{}
			const step = 100 * time.Millisecond

			// Life 1: two connections, one per loop, 150 trades each
			// (15 s of event time), a second at a time.
			r1 := openEngRig(t, dir, out)
			s1, stop1 := startEngTCP(t, "127.0.0.1:0", r1.pubs)
			addr := s1.Addr().String()
			a, b := dialEngTCP(t, addr), dialEngTCP(t, addr)
			for k := 1; k <= 150; k += 10 {
				a.send("AAPL", k, k+9, step)
				b.send("MSFT", k, k+9, step)
			}
			if la, lb := loopOf(t, s1, a), loopOf(t, s1, b); la == lb {
				t.Fatalf("both connections on loop %d: the test needs one per loop", la)
			}
			stop1()
			r1.stop(t, clean)
			aapl, ok := r1.e.Symbols().Lookup([]byte("AAPL"))
			if !ok {
				t.Fatal("AAPL not interned")
			}

			// Life 2: the same address at once, one connection, 100 more
			// trades (10 s); one restored loop never comes back.
			r2 := openEngRig(t, dir, out)
			_, stop2 := startEngTCP(t, addr, r2.pubs)
			c := dialEngTCP(t, addr)
			for k := 151; k <= 250; k += 10 {
				c.send("AAPL", k, k+9, step)
			}
			// The watermark reaches 25 s − 1 s: AAPL's windows [0 s, 24 s)
			// have all fired.
			waitEng(t, 10*time.Second, "AAPL's 24 windows before 24 s to fire", func() bool {
				return len(out.of(ops.OutWindow, aapl)) >= 24
			})
			stop2()
			r2.stop(t, true)

			for _, r := range []codec.Reason{codec.ReasonOversize, codec.ReasonLate} {
				if n := r1.dl.count(r) + r2.dl.count(r); n != 0 {
					t.Errorf("%d trades dead-lettered as %s", n, r)
				}
			}
			wins := out.of(ops.OutWindow, aapl)
			if len(wins) != 24 {
				t.Fatalf("%d AAPL window results, want 24", len(wins))
			}
			for i, w := range wins {
				start := engTsBase + int64(i)*int64(time.Second)
				want := int64(10)
				if i == 0 {
					want = 9 // trades from k = 1
				}
				if w.StartNs != start || w.Count != want || w.Timing != ops.TimingOnTime {
					t.Errorf("window %d: start %d count %d timing %v, want start %d count %d on time", i, w.StartNs, w.Count, w.Timing, start, want)
				}
			}
			inds := out.of(ops.OutIndicators, 0)
			keys := map[uint64]bool{}
			for _, o := range inds {
				keys[o.Key] = true
			}
			if len(inds) != 400 || len(keys) != 400 {
				t.Errorf("%d indicator outputs with %d keys, want 400 trades with 400 keys", len(inds), len(keys))
			}
		})
	}
}

// Item 2: a client that reconnects and resends ids 2001..3000 gets them
// dead-lettered as duplicates although the new connection is on the other
// event loop (the dedup scope is the feed, not the loop's Publisher), and a
// WAL recovery replay decides the same and gives the same output keys.
func TestTCPResendOnOtherLoopIsDuplicate(t *testing.T) {
	dir, out := t.TempDir(), &engSink{}
	r1 := openEngRig(t, dir, out)
	s, stop := startEngTCP(t, "127.0.0.1:0", r1.pubs)
	addr := s.Addr().String()
	c1 := dialEngTCP(t, addr)
	c1.send("AAPL", 1, 3000, time.Millisecond)
	loop1 := loopOf(t, s, c1)
	c1.c.Close()
	c2 := dialOtherLoop(t, s, addr, loop1)
	// The copies may still be in loop 1's ring: the shard and a recovery
	// replay may process either copy of an id first, with the same key.
	c2.send("AAPL", 2001, 3000, time.Millisecond)
	waitEng(t, 10*time.Second, "1000 duplicates", func() bool { return r1.dl.count(codec.ReasonDuplicate) >= 1000 })
	stop()
	r1.stop(t, false) // a crash: recovery replays the whole WAL
	if n := r1.dl.count(codec.ReasonDuplicate); n != 1000 {
		t.Errorf("%d duplicates, want 1000", n)
	}
	keys1 := indicatorKeys(t, out.of(ops.OutIndicators, 0))
	if len(keys1) != 3000 {
		t.Fatalf("%d indicator outputs, want 3000 (each id once)", len(keys1))
	}

	r2 := openEngRig(t, dir, out)
	if r2.rep.Events != 4000 {
		t.Errorf("recovery replayed %d events, want 4000", r2.rep.Events)
	}
	if n := r2.dl.count(codec.ReasonDuplicate); n != 1000 {
		t.Errorf("recovery replay: %d duplicates, want 1000", n)
	}
	keys2 := indicatorKeys(t, out.of(ops.OutIndicators, 0))
	if len(keys2) != len(keys1) {
		t.Errorf("after recovery %d indicator outputs, want %d", len(keys2), len(keys1))
	}
	for k, seq := range keys1 {
		if _, ok := keys2[k]; !ok {
			t.Fatalf("output key %#x (seq %d) not reproduced by the recovery replay", k, seq)
		}
	}
	r2.stop(t, true)
}

// indicatorKeys maps the outputs' keys to their Seq and fails on a key
// shared by two outputs.
func indicatorKeys(t *testing.T, outs []ops.Output) map[uint64]uint64 {
	t.Helper()
	m := make(map[uint64]uint64, len(outs))
	for _, o := range outs {
		if prev, ok := m[o.Key]; ok {
			t.Fatalf("key %#x shared by the outputs of seq %d and %d", o.Key, prev, o.Seq)
		}
		m[o.Key] = o.Seq
	}
	return m
}

// A client that reconnects and lands on the other event loop: the loop it
// left has no connection and goes idle (Publisher.Idle), so its watermark
// no longer holds the engine's back; windows keep firing on the new loop's
// watermark, with no trade dead-lettered as oversize.
func TestTCPReconnectOnOtherLoopWindowsFire(t *testing.T) {
	const step = 100 * time.Millisecond
	out := &engSink{}
	r := openEngRig(t, t.TempDir(), out)
	s, stop := startEngTCP(t, "127.0.0.1:0", r.pubs)
	addr := s.Addr().String()
	c1 := dialEngTCP(t, addr)
	for k := 1; k <= 100; k += 10 {
		c1.send("AAPL", k, k+9, step)
	}
	loop1 := loopOf(t, s, c1)
	c1.c.Close()
	waitEng(t, 10*time.Second, "the first connection to close", func() bool { return s.Stats().Open == 0 })
	c2 := dialOtherLoop(t, s, addr, loop1)
	for k := 101; k <= 200; k += 10 {
		c2.send("AAPL", k, k+9, step)
	}
	aapl, _ := r.e.Symbols().Lookup([]byte("AAPL"))
	// The new loop's watermark is 20 s − 1 s: windows [0 s, 19 s) fired.
	waitEng(t, 10*time.Second, "AAPL's windows before 19 s to fire", func() bool { return len(out.of(ops.OutWindow, aapl)) >= 19 })
	stop()
	r.stop(t, true)
	if n := r.dl.count(codec.ReasonOversize); n != 0 {
		t.Errorf("%d trades dead-lettered as oversize", n)
	}
}

// dialOtherLoop dials until a connection lands on an event loop other than
// loop (gnet hands connections out round robin), closing the ones that do
// not, and returns it.
func dialOtherLoop(t *testing.T, s *TCPServer, addr string, loop int) *tcpClient {
	t.Helper()
	for range 4 {
		c := dialEngTCP(t, addr)
		waitEng(t, 10*time.Second, "the connection to open", func() bool {
			for _, cs := range s.Stats().Conns {
				if cs.Remote == c.c.LocalAddr().String() {
					return true
				}
			}
			return false
		})
		if loopOf(t, s, c) != loop {
			return c
		}
		c.c.Close()
	}
	t.Fatalf("no connection landed on the loop other than %d", loop)
	return nil
}
