package engine

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ring"
)

// chainPipeline is a real operator chain: the default indicators and a
// tumbling window, whose firings come from watermarks.
func chainPipeline(t *testing.T) ProcessorFactory {
	t.Helper()
	specs, err := ops.ParseIndicators(ops.DefaultIndicators)
	if err != nil {
		t.Fatal(err)
	}
	win, err := ops.ParseWindowSpecs("tumbling:10ns:vwap,count:3:sum")
	if err != nil {
		t.Fatal(err)
	}
	return func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: win,
			MaxSymbolID: 64, MaxSlots: 64})
	}
}

// chainRun publishes n trades one at a time, each made visible (Flush) and
// then left alone until the shard would have parked, and returns the
// outputs without their ingest stamps (processing time) and the engine's
// chained rounds.
func chainRun(t *testing.T, chain bool, shards, n int, outRing int) ([]string, uint64) {
	t.Helper()
	out := &collect{}
	e, err := New(Config{Shards: shards, Wait: ring.Park, Chain: chain, Output: out, OutRingSize: outRing,
		Processors: chainPipeline(t), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.NewPublisher("p")
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		ev := trade(uint64(i), codec.Symbol(1+i%5), int64(i))
		ev.Price = float64(100 + i%17)
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			time.Sleep(300 * time.Microsecond) // the shard parks
		}
	}
	p.Close()
	stop(t, e)
	var chained uint64
	for _, s := range e.Stats().Shards {
		chained += s.Chained
	}
	var outs []string // as text: NaN (an indicator in warm-up) equals itself there
	for _, o := range out.all() {
		o.IngestNs = 0
		outs = append(outs, fmt.Sprintf("%+v", o))
	}
	return outs, chained
}

// bySymbol splits outputs per symbol: their order across shards is not
// determined, their order per symbol is.
func bySymbol(outs []string) map[string][]string {
	m := map[string][]string{}
	for _, o := range outs {
		sym := o[strings.Index(o, "Symbol:"):]
		sym = sym[:strings.IndexByte(sym, ' ')]
		m[sym] = append(m[sym], o)
	}
	return m
}

// TestChainRunsParkedShardsRound: with Chain, a publisher that hands a
// trade to a parked shard runs the shard's round itself (the shard's
// Chained counter moves), and the outputs are the ones the same input
// gives without chaining, also with an output ring small enough for
// chained rounds to hand back.
func TestChainRunsParkedShardsRound(t *testing.T) {
	for _, tc := range []struct {
		shards, outRing int
	}{{1, 0}, {2, 0}, {1, 4}} {
		t.Run(fmt.Sprintf("shards%d-out%d", tc.shards, tc.outRing), func(t *testing.T) {
			const n = 400
			want, wantChained := chainRun(t, false, tc.shards, n, tc.outRing)
			got, chained := chainRun(t, true, tc.shards, n, tc.outRing)
			t.Logf("%d outputs; %d chained rounds (%d without Chain)", len(got), chained, wantChained)
			if wantChained != 0 {
				t.Fatalf("%d chained rounds without Config.Chain", wantChained)
			}
			if chained == 0 {
				t.Fatal("no chained round with a parked shard")
			}
			if len(want) < n {
				t.Fatalf("%d outputs for %d trades", len(want), n)
			}
			if tc.shards == 1 {
				if !reflect.DeepEqual(got, want) {
					for i := range min(len(got), len(want)) {
						if got[i] != want[i] {
							t.Fatalf("output %d differs with Chain:\n%+v\n%+v", i, got[i], want[i])
						}
					}
					t.Fatalf("outputs differ with Chain: %d vs %d", len(got), len(want))
				}
				return
			}
			if g, w := bySymbol(got), bySymbol(want); !reflect.DeepEqual(g, w) {
				t.Fatalf("outputs per symbol differ with Chain: %d vs %d", len(got), len(want))
			}
		})
	}
}

// TestChainConfigOnlyWithPark: chaining is for parked shards: spin, yield
// and micro-batch engines do not chain.
func TestChainConfigOnlyWithPark(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want bool
	}{
		{Config{Mode: ModeEventDriven, Wait: ring.Spin}, true},
		{Config{Mode: ModeRealTime, Wait: ring.Park}, true},
		{Config{Mode: ModeRealTime, Wait: ring.Spin}, false},
		{Config{Mode: ModeRealTime, Wait: ring.Yield}, false},
		{Config{Mode: ModeMicroBatch, Wait: ring.Park}, false},
	} {
		c.cfg.Chain = true
		c.cfg.Processors = func(int) (Processor, error) { return newEcho(0), nil }
		got, err := c.cfg.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if got.Chain != c.want {
			t.Errorf("mode %v wait %v: Chain %v, want %v", c.cfg.Mode, c.cfg.Wait, got.Chain, c.want)
		}
	}
}

// TestChainRaceManyPublishers: several publishers race for the token of
// the same shards, which wake concurrently (their idle timeouts, control
// functions from the API, the collector), with dead letters and a small
// output ring in the mix. Every event is processed exactly once, in order
// per symbol and publisher, and nothing is lost. For -race. (Park: no
// goroutine spins.)
func TestChainRaceManyPublishers(t *testing.T) {
	const pubs, per = 4, 3000
	te := newTestEngine(t, Config{Shards: 2, Wait: ring.Park, Chain: true, OutRingSize: 64, IdleTimeout: time.Millisecond})
	ps := make([]*Publisher, pubs)
	for i := range ps {
		ps[i], _ = te.NewPublisher(fmt.Sprintf("p%d", i))
	}
	te.Start()
	var wg sync.WaitGroup
	for k, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= per; i++ {
				// Each publisher its own symbols: order per symbol is
				// publication order.
				ev := trade(uint64(i), codec.Symbol(1+k*4+i%4), int64(i))
				if i%50 == 0 {
					ev.Price = -1 // the echo rejects it: a dead letter
				}
				if err := p.Publish(&ev); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if err := p.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
				if i%97 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			p.Flush()
		}()
	}
	// The shards' own wake-ups: control functions through the API.
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = te.Stats()
			_, _ = te.StreamMetrics(DefaultStream)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	wg.Wait()
	close(done)
	const rejected = pubs * (per / 50)
	for _, p := range ps {
		p.Close()
	}
	stop(t, te.Engine)
	var outs []ops.Output
	for _, o := range te.out.all() {
		if o.Kind == ops.OutIndicators { // not the echo's watermark outputs
			outs = append(outs, o)
		}
	}
	if len(outs) != pubs*per-rejected {
		t.Fatalf("%d outputs, want %d", len(outs), pubs*per-rejected)
	}
	last := map[codec.Symbol]uint64{}
	for _, o := range outs {
		if o.Seq <= last[o.Symbol] {
			t.Fatalf("symbol %d: seq %d after %d", o.Symbol, o.Seq, last[o.Symbol])
		}
		last[o.Symbol] = o.Seq
	}
	te.dl.mu.Lock()
	n := te.dl.n[codec.ReasonLate]
	te.dl.mu.Unlock()
	if n != rejected {
		t.Fatalf("%d dead letters, want %d", n, rejected)
	}
	var chained uint64
	for _, s := range te.Stats().Shards {
		chained += s.Chained
	}
	t.Logf("%d chained rounds", chained)
}

// TestChainHandsBackOnFullOutputRing: a chained round that cannot push its
// outputs (the output ring full and the collector role held elsewhere)
// keeps them, stops and hands back, and the shard thread pushes them first
// when it takes the token back: nothing lost, nothing reordered. White-box:
// the test plays the parked shard (its token free) and the busy collector.
func TestChainHandsBackOnFullOutputRing(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 1, Wait: ring.Park, Chain: true, OutRingSize: 4})
	s := te.shards[0]
	p, _ := te.NewPublisher("p")
	// Half the output ring taken (not more: a round would not start).
	dst := s.out.Claim(2)
	dst[0] = ops.Output{Kind: ops.OutIndicators, Symbol: 9, Seq: 100}
	dst[1] = ops.Output{Kind: ops.OutIndicators, Symbol: 9, Seq: 101}
	s.out.PublishQuiet(2)
	te.collector.role.Store(1) // the collector is busy
	s.role.Store(0)            // the shard is parked
	for i := 1; i <= 3; i++ {
		ev := trade(uint64(i), 1, int64(i))
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil { // 3 trades and a watermark: 4 outputs, room for 2
		t.Fatal(err)
	}
	if got := s.rounds.Load(); got != 1 {
		t.Fatalf("%d chained rounds, want 1", got)
	}
	if s.bails.Load() != 1 || !s.handBack.Load() || !s.chainBail || len(s.outBuf) != 2 {
		t.Fatalf("bails %d handBack %v chainBail %v kept %d: want a hand-back with 2 outputs kept",
			s.bails.Load(), s.handBack.Load(), s.chainBail, len(s.outBuf))
	}
	if s.role.Load() != 0 {
		t.Fatal("the token was not given back")
	}
	if pr := s.progress.Load(); pr >= 3 {
		t.Fatalf("progress %d past outputs kept back", pr)
	}
	// The shard thread takes over: the token is its own when it starts.
	te.collector.role.Store(0)
	s.role.Store(1)
	te.Start()
	te.waitOutputs(t, 2+4)
	p.Close()
	stop(t, te.Engine)
	var seqs []uint64
	for _, o := range te.out.all() {
		seqs = append(seqs, o.Seq)
	}
	if want := []uint64{100, 101, 1, 2, 3, 3}; !reflect.DeepEqual(seqs[:6], want) {
		t.Fatalf("outputs by seq %v, want %v first", seqs, want)
	}
	if st := te.Stats(); st.Outputs != uint64(len(seqs))-2 {
		t.Fatalf("%d outputs counted, %d delivered (2 not the shard's)", st.Outputs, len(seqs))
	}
}
