package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ring"
)

// echo is a test Processor: every trade produces one output carrying the
// event's Seq, symbol and the shard that saw it (in Op); every watermark
// advance produces one OutWindow output with EndNs = watermark. Events whose
// Price is negative are dead-lettered as late.
type echo struct {
	shard      int
	watermarks []int64
	lastSeq    map[codec.Symbol]uint64
	outOfOrder int
}

func newEcho(shard int) *echo { return &echo{shard: shard, lastSeq: map[codec.Symbol]uint64{}} }

func (p *echo) OnEvent(ev *codec.Event, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	if ev.Price < 0 {
		return dst, codec.ReasonLate
	}
	if ev.Seq <= p.lastSeq[ev.Symbol] {
		p.outOfOrder++
	}
	p.lastSeq[ev.Symbol] = ev.Seq
	return append(dst, ops.Output{Kind: ops.OutIndicators, Op: uint16(p.shard), Symbol: ev.Symbol, Seq: ev.Seq,
		TsNs: ev.TsNs, Price: ev.Price, IngestNs: ev.IngestNs}), codec.ReasonNone
}

func (p *echo) OnWatermark(wm int64, seq uint64, dst []ops.Output) []ops.Output {
	p.watermarks = append(p.watermarks, wm)
	return append(dst, ops.Output{Kind: ops.OutWindow, Op: uint16(p.shard), Seq: seq, EndNs: wm})
}

// collect is a test OutputHandler that keeps copies of everything.
type collect struct {
	mu   sync.Mutex
	outs []ops.Output
}

func (c *collect) HandleOutputs(outs []ops.Output) error {
	c.mu.Lock()
	c.outs = append(c.outs, outs...)
	c.mu.Unlock()
	return nil
}

func (c *collect) all() []ops.Output {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ops.Output(nil), c.outs...)
}

type dlCollect struct {
	mu sync.Mutex
	n  map[codec.Reason]int
}

func (d *dlCollect) HandleDeadLetter(dl *DeadLetter) {
	d.mu.Lock()
	if d.n == nil {
		d.n = map[codec.Reason]int{}
	}
	d.n[dl.Reason]++
	d.mu.Unlock()
}

type testEngine struct {
	*Engine
	out   *collect
	dl    *dlCollect
	procs []*echo
}

func newTestEngine(t *testing.T, cfg Config) *testEngine {
	t.Helper()
	te := &testEngine{out: &collect{}, dl: &dlCollect{}}
	if cfg.Processors == nil {
		cfg.Processors = func(i int) (Processor, error) {
			p := newEcho(i)
			te.procs = append(te.procs, p)
			return p, nil
		}
	}
	cfg.Output = te.out
	cfg.DeadLetters = te.dl
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	te.Engine = e
	return te
}

func (te *testEngine) waitOutputs(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(te.out.all()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %d outputs, have %d", n, len(te.out.all()))
		}
		time.Sleep(time.Millisecond)
	}
}

func stop(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func trade(seq uint64, sym codec.Symbol, ts int64) codec.Event {
	return codec.Event{Kind: codec.KindTrade, Seq: seq, Symbol: sym, TsNs: ts, Price: 100, Volume: 1}
}

// TestEveryEventOnceInOrderPerSymbol publishes from several producers into
// several shards and checks every event produces exactly one output, by the
// shard that owns its symbol, in publication order per symbol.
func TestEveryEventOnceInOrderPerSymbol(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards int
		mode   Mode
		wait   ring.Strategy
	}{
		{"event-driven/1", 1, ModeEventDriven, ring.Park},
		{"event-driven/3", 3, ModeEventDriven, ring.Park},
		{"micro-batch/2", 2, ModeMicroBatch, ring.Park},
		{"real-time-yield/2", 2, ModeRealTime, ring.Yield},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEngine(t, Config{Shards: tc.shards, Mode: tc.mode, Wait: tc.wait, RingSize: 512, BatchSize: 64, BatchTimeout: 200 * time.Microsecond})
			const producers, perProducer, symbols = 3, 20000, 50
			pubs := make([]*Publisher, producers)
			for i := range pubs {
				p, err := te.NewPublisher(fmt.Sprintf("p%d", i))
				if err != nil {
					t.Fatal(err)
				}
				pubs[i] = p
			}
			if err := te.Start(); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i, p := range pubs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 1; n <= perProducer; n++ {
						// Each producer owns its own symbols so per-symbol order is defined.
						sym := codec.Symbol(1 + i*symbols + n%symbols)
						ev := trade(uint64(n), sym, int64(n))
						if err := p.Publish(&ev); err != nil {
							t.Error(err)
							return
						}
						if n%100 == 0 {
							p.Flush()
						}
					}
					p.Close()
				}()
			}
			wg.Wait()
			stop(t, te.Engine)

			seen := map[[2]uint64]int{}
			lastSeq := map[codec.Symbol]uint64{}
			trades := 0
			for _, o := range te.out.all() {
				if o.Kind != ops.OutIndicators {
					continue
				}
				trades++
				if want := te.ShardOf(o.Symbol); int(o.Op) != want {
					t.Fatalf("symbol %d processed by shard %d, want %d", o.Symbol, o.Op, want)
				}
				seen[[2]uint64{uint64(o.Symbol), o.Seq}]++
				if o.Seq <= lastSeq[o.Symbol] {
					t.Fatalf("symbol %d: seq %d after %d", o.Symbol, o.Seq, lastSeq[o.Symbol])
				}
				lastSeq[o.Symbol] = o.Seq
			}
			if trades != producers*perProducer {
				t.Fatalf("got %d trade outputs, want %d", trades, producers*perProducer)
			}
			for k, n := range seen {
				if n != 1 {
					t.Fatalf("event %v delivered %d times", k, n)
				}
			}
			st := te.Stats()
			if st.Messages != producers*perProducer || st.Published != producers*perProducer {
				t.Fatalf("stats messages=%d published=%d, want %d", st.Messages, st.Published, producers*perProducer)
			}
			if st.ByKind["trade"] != producers*perProducer {
				t.Fatalf("by kind %v", st.ByKind)
			}
		})
	}
}

// TestOrderedOutputIsInputOrder: with Ordered, outputs come out sorted by
// Seq whatever the number of shards, and the stream is identical on every run.
func TestOrderedOutputIsInputOrder(t *testing.T) {
	var first []ops.Output
	for run := 0; run < 3; run++ {
		for _, shards := range []int{1, 2, 4} {
			te := newTestEngine(t, Config{Shards: shards, Ordered: true, RingSize: 256, OutRingSize: 64})
			p, _ := te.NewPublisher("replay")
			te.Start()
			rng := rand.New(rand.NewPCG(7, 7))
			const n = 30000
			for i := 1; i <= n; i++ {
				ev := trade(uint64(i), codec.Symbol(1+rng.IntN(40)), int64(i)*1000)
				p.Publish(&ev)
				if i%256 == 0 {
					p.Flush()
				}
			}
			p.Close()
			stop(t, te.Engine)
			outs := te.out.all()
			var trades []ops.Output
			last := uint64(0)
			for _, o := range outs {
				if o.Seq < last {
					t.Fatalf("shards=%d: output seq %d after %d", shards, o.Seq, last)
				}
				last = o.Seq
				if o.Kind == ops.OutIndicators {
					o.Op, o.IngestNs = 0, 0
					trades = append(trades, o)
				}
			}
			if len(trades) != n {
				t.Fatalf("shards=%d: %d trade outputs, want %d", shards, len(trades), n)
			}
			for i, o := range trades {
				if o.Seq != uint64(i+1) {
					t.Fatalf("shards=%d: trade output %d has seq %d", shards, i, o.Seq)
				}
			}
			if first == nil {
				first = trades
			} else {
				for i := range trades {
					if trades[i] != first[i] {
						t.Fatalf("shards=%d run %d: output %d differs: %+v vs %+v", shards, run, i, trades[i], first[i])
					}
				}
			}
		}
	}
}

// TestWatermarkIsMinOverSources: two sources, the shard's watermark follows
// the slower one, and closing both takes it to +inf.
func TestWatermarkIsMinOverSources(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 1, OutOfOrderness: 10})
	a, _ := te.NewPublisher("a")
	b, _ := te.NewPublisher("b")
	te.Start()
	// Each step waits for its outputs so the shard sees the steps in order.
	ev := trade(1, 1, 1000)
	a.Publish(&ev)
	a.Flush() // a at 990; b has sent nothing and does not hold back
	te.waitOutputs(t, 2)
	ev = trade(1, 2, 500)
	b.Publish(&ev)
	b.Flush() // b at 490: min is 490 — but watermarks never go back
	te.waitOutputs(t, 3)
	ev = trade(2, 2, 2000)
	b.Publish(&ev)
	b.Flush() // b at 1990, a at 990: min 990, already reached
	te.waitOutputs(t, 4)
	ev = trade(2, 1, 3000)
	a.Publish(&ev)
	a.Flush() // a 2990, b 1990: 1990
	te.waitOutputs(t, 6)
	a.Close()
	b.Close()
	stop(t, te.Engine)
	got := te.procs[0].watermarks
	want := []int64{990, 1990, math.MaxInt64}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watermarks %v, want %v", got, want)
	}
}

// TestIdleSourceDoesNotStall: a source that stops publishing stops holding
// the watermark back after the idle timeout.
func TestIdleSourceDoesNotStall(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 1, IdleTimeout: 20 * time.Millisecond})
	a, _ := te.NewPublisher("a")
	b, _ := te.NewPublisher("b")
	te.Start()
	ev := trade(1, 2, 100)
	b.Publish(&ev)
	b.Flush() // b at 100, then silent
	deadline := time.Now().Add(10 * time.Second)
	var i uint64
	for time.Now().Before(deadline) {
		i++
		ev = trade(i, 1, int64(1000*i))
		a.Publish(&ev)
		a.Flush()
		time.Sleep(2 * time.Millisecond)
		if i > 50 {
			break
		}
	}
	a.Close()
	b.Close()
	stop(t, te.Engine)
	wms := te.procs[0].watermarks
	advancedPastIdle := false
	for _, w := range wms {
		if w > 100 && w != math.MaxInt64 {
			advancedPastIdle = true
		}
	}
	if !advancedPastIdle {
		t.Fatalf("watermark stuck at the idle source's 100: %v", wms)
	}
}

// TestDeadLettersCounted: operator rejections reach the handler and the stats.
func TestDeadLettersCounted(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 2})
	p, _ := te.NewPublisher("p")
	te.Start()
	for i := 1; i <= 1000; i++ {
		ev := trade(uint64(i), codec.Symbol(1+i%7), int64(i))
		if i%10 == 0 {
			ev.Price = -1
		}
		p.Publish(&ev)
	}
	p.Reject([]byte("{bad"), codec.ReasonMalformed, codec.Position{Line: 3}, nil)
	p.Close()
	stop(t, te.Engine)
	st := te.Stats()
	if st.Rejected["late"] != 100 || st.Rejected["malformed"] != 1 || st.DeadLetters != 101 || st.Errors != 1 {
		t.Fatalf("stats %+v", st)
	}
	if te.dl.n[codec.ReasonLate] != 100 || te.dl.n[codec.ReasonMalformed] != 1 {
		t.Fatalf("dead letters %v", te.dl.n)
	}
}

// TestPauseBackpressures: while paused nothing is consumed, the producer
// blocks on the full ring instead of dropping, and Resume delivers it all.
func TestPauseBackpressures(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 1, RingSize: 64})
	p, _ := te.NewPublisher("p")
	te.Start()
	te.Pause()
	var published atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 1000; i++ {
			ev := trade(uint64(i), 1, int64(i))
			p.Publish(&ev)
			published.Add(1)
		}
		p.Close()
	}()
	time.Sleep(50 * time.Millisecond)
	if n := published.Load(); n >= 1000 {
		t.Fatalf("producer published %d events into a paused engine with a 64-slot ring", n)
	}
	if te.Stats().Messages != 0 {
		t.Fatalf("paused engine consumed %d messages", te.Stats().Messages)
	}
	te.Resume()
	<-done
	stop(t, te.Engine)
	if n := len(te.out.all()); n < 1000 {
		t.Fatalf("%d outputs after resume, want >= 1000", n)
	}
}

// TestPinRefusalIsNotFatal: an impossible CPU is logged once and ignored.
func TestPinRefusalIsNotFatal(t *testing.T) {
	var logBuf bytes.Buffer
	var mu sync.Mutex
	te := newTestEngine(t, Config{Shards: 2, PinCPUs: []int{1000}, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &mu}, nil))})
	p, _ := te.NewPublisher("p")
	te.Start()
	ev := trade(1, 1, 1)
	p.Publish(&ev)
	p.Close()
	stop(t, te.Engine)
	mu.Lock()
	defer mu.Unlock()
	if n := bytes.Count(logBuf.Bytes(), []byte("pinning refused")); n != 1 {
		t.Fatalf("pin refusal logged %d times, want once:\n%s", n, logBuf.String())
	}
	if len(te.out.all()) == 0 {
		t.Fatal("no output from unpinned shards")
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestConfigValidation(t *testing.T) {
	mk := func(int) (Processor, error) { return newEcho(0), nil }
	for _, cfg := range []Config{
		{Processors: mk, RingSize: 1000},
		{Processors: mk, Shards: -1},
		{Processors: mk, Shards: MaxShards + 1},
		{Processors: mk, Mode: ModeMicroBatch, BatchSize: 1 << 20},
		{},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded, want a configuration error", cfg)
		}
	}
}

// TestHandOffDoesNotAllocate: publishing and flushing a batch, and the
// shards and collector processing it, allocate nothing in steady state.
func TestHandOffDoesNotAllocate(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 2, Processors: func(int) (Processor, error) { return nopProc{}, nil }})
	p, _ := te.NewPublisher("p")
	te.Start()
	var seq uint64
	batch := func() {
		for i := 0; i < 256; i++ {
			seq++
			ev := trade(seq, codec.Symbol(1+seq%16), int64(seq))
			p.Publish(&ev)
		}
		p.Flush()
	}
	allocs := allocsPerBatch(t, te, p, batch)
	if allocs > 0 {
		t.Fatalf("publish+flush of 256 events allocated %.1f times per batch", allocs)
	}
}

type nopProc struct{}

func (nopProc) OnEvent(ev *codec.Event, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	return append(dst, ops.Output{Kind: ops.OutIndicators, Seq: ev.Seq, Symbol: ev.Symbol, IngestNs: ev.IngestNs}), codec.ReasonNone
}
func (nopProc) OnWatermark(wm int64, seq uint64, dst []ops.Output) []ops.Output { return dst }

// rejectingOutput dead-letters every trade's output it gets through the engine's
// hook, with the reasons in turn, as a retrying output does with a poison
// output.
type rejectingOutput struct {
	e       *Engine
	reasons []codec.Reason
	n       int
}

func (r *rejectingOutput) HandleOutputs(outs []ops.Output) error {
	for i := range outs {
		if outs[i].Kind != ops.OutIndicators {
			continue // the echo's watermark outputs
		}
		r.e.DeadLetterOutput(&outs[i], r.reasons[r.n%len(r.reasons)], errors.New("sink: rejected"))
		r.n++
	}
	return nil
}

type dlOutputs struct {
	mu   sync.Mutex
	outs []ops.Output
	bad  []string
}

func (d *dlOutputs) HandleDeadLetter(dl *DeadLetter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dl.Output == nil || dl.Feed != "output" || dl.Pos.Offset != -1 || dl.Err == nil || dl.Err.Error() != "sink: rejected" {
		d.bad = append(d.bad, fmt.Sprintf("%+v", *dl))
		return
	}
	d.outs = append(d.outs, *dl.Output)
}

// DeadLetterOutput counts a poison output under its reason (malformed when
// the reason is none or unknown) and hands it to the dead letters as an
// output; Stopping turns true with the engine's sticky error.
func TestDeadLetterOutputAndStopping(t *testing.T) {
	out := &rejectingOutput{reasons: []codec.Reason{codec.ReasonBadPrice, codec.ReasonNone, codec.Reason(codec.ReasonCount + 3)}}
	dl := &dlOutputs{}
	e, err := New(Config{Shards: 1, Processors: func(i int) (Processor, error) { return newEcho(i), nil },
		Output: out, DeadLetters: dl, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	out.e = e
	e.Start()
	if e.Stopping() {
		t.Fatal("Stopping before Stop or Fail")
	}
	sym, _ := e.Symbols().InternString("X")
	p, _ := e.NewPublisher("feed")
	for i := 1; i <= 30; i++ {
		ev := trade(uint64(i), sym, int64(i))
		p.Publish(&ev)
	}
	p.Close()
	stop(t, e)
	if !e.Stopping() {
		t.Fatal("not Stopping after Stop")
	}
	st := e.Stats()
	if st.Rejected["bad_price"] != 10 || st.Rejected["malformed"] != 20 || st.DeadLetters != 30 {
		t.Fatalf("rejections %v (%d dead letters), want bad_price 10, malformed 20", st.Rejected, st.DeadLetters)
	}
	if len(dl.bad) > 0 || len(dl.outs) != 30 {
		t.Fatalf("dead letters: %d outputs, malformed ones %v", len(dl.outs), dl.bad)
	}
	for i, o := range dl.outs {
		if o.Seq != uint64(i+1) {
			t.Fatalf("dead letter %d is output seq %d", i, o.Seq)
		}
	}

	f, err := New(Config{Shards: 1, Processors: func(i int) (Processor, error) { return newEcho(i), nil }})
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	f.Fail(errors.New("interrupted"))
	if !f.Stopping() {
		t.Fatal("not Stopping after Fail")
	}
	f.Stop(context.Background())
}

// allocsPerBatch warms batch up (100 calls), returns its allocations per
// call over 200 more, then closes p and stops the engine: the end of every
// no-allocation test of a publishing path.
func allocsPerBatch(t *testing.T, te *testEngine, p *Publisher, batch func()) float64 {
	t.Helper()
	for range 100 {
		batch()
	}
	allocs := testing.AllocsPerRun(200, batch)
	p.Close()
	stop(t, te.Engine)
	return allocs
}

// TestShardLocksThreadUnlessParking: a shard runs on an OS thread of its
// own when it needs one: pinned to a CPU, or busy-waiting (spin, yield).
// A parking shard stays unlocked, so that waking it costs the scheduler no
// thread hand-off (engine.locksThread).
func TestShardLocksThreadUnlessParking(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want bool
	}{
		{Config{Wait: ring.Park}, false},
		{Config{Wait: ring.Yield}, true},
		{Config{Wait: ring.Spin}, true},
		{Config{Wait: ring.Park, PinCPUs: []int{0}}, true},
		{Config{Wait: ring.Yield, PinCPUs: []int{1, 0}}, true},
	} {
		if got := locksThread(&c.cfg); got != c.want {
			t.Errorf("locksThread(Wait %v, PinCPUs %v) = %v, want %v", c.cfg.Wait, c.cfg.PinCPUs, got, c.want)
		}
	}
	// What a shard runs with is the normalized configuration: event-driven
	// mode makes it park, whatever Wait said, and so unlocked.
	e, err := New(Config{Shards: 1, Wait: ring.Spin, Mode: ModeEventDriven, Logger: quietLogger(),
		Processors: func(int) (Processor, error) { return &countProc{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if locksThread(&e.cfg) {
		t.Errorf("an event-driven engine's shards (Wait %v) lock their threads", e.cfg.Wait)
	}
}
