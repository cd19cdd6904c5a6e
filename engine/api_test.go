package engine

import (
	"math"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

// TestWindowAPI creates windows through the API on a running two-shard
// engine, reads partial aggregates on demand, and checks that the created
// windows fire at the end of input with their id as Op.
func TestWindowAPI(t *testing.T) {
	out := &collect{}
	e, err := New(Config{
		Shards: 2,
		Processors: func(int) (Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{MaxSymbolID: 64})
		},
		Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Before Start, the call runs directly; after Start, on the shard goroutines.
	tumbling, err := e.CreateTumblingWindow(time.Second, "sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	sliding, err := e.CreateSlidingWindow(10*time.Second, 0, "max")
	if err != nil {
		t.Fatal(err)
	}
	hopping, err := e.CreateHoppingWindow(2*time.Second, time.Second, "count")
	if err != nil {
		t.Fatal(err)
	}
	session, err := e.CreateSessionWindow(time.Second, "avg")
	if err != nil {
		t.Fatal(err)
	}
	if tumbling != 0 || sliding != 1 || hopping != 2 || session != 3 {
		t.Fatalf("ids %d %d %d %d, want 0 1 2 3", tumbling, sliding, hopping, session)
	}
	if _, err := e.CreateTumblingWindow(time.Second, "median-ish"); err == nil {
		t.Fatal("an unknown aggregation was accepted")
	}
	a, _ := e.Symbols().InternString("AAA")
	b, _ := e.Symbols().InternString("BBB")
	p, _ := e.NewPublisher("api")
	for i, tr := range []struct {
		sym   codec.Symbol
		ts    int64
		price float64
	}{{a, 100e6, 10}, {b, 200e6, 5}, {a, 300e6, 12}, {a, 400e6, 11}} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: tr.sym, Seq: uint64(i + 1), TsNs: tr.ts, Price: tr.price, Volume: 1}
		p.Publish(&ev)
	}
	p.Flush()
	// Wait until the shards processed the four trades.
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Messages < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got, err := e.AggregateWindow(tumbling, ops.AggSum)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Symbol != "AAA" || got[0].Value != 33 || got[0].Count != 3 || got[1].Symbol != "BBB" || got[1].Value != 5 {
		t.Fatalf("AggregateWindow(sum) = %+v", got)
	}
	if got[0].StartNs != 0 || got[0].EndNs != 1e9 {
		t.Fatalf("window bounds %+v", got[0])
	}
	avg, _ := e.AggregateWindow(tumbling, ops.AggAvg)
	if avg[0].Value != 11 {
		t.Fatalf("AggregateWindow(avg) = %+v", avg)
	}
	if _, err := e.AggregateWindow(99, ops.AggSum); err == nil {
		t.Fatal("AggregateWindow of an unknown window succeeded")
	}
	p.Close()
	stop(t, e)
	fired := map[uint16]int{}
	for _, o := range out.all() {
		if o.Kind == ops.OutWindow {
			fired[o.Op]++
			if o.Op == uint16(tumbling) && o.Symbol == a && o.Value != 33 {
				t.Errorf("tumbling result for AAA = %v, want 33", o.Value)
			}
			if math.IsNaN(o.Value) {
				t.Errorf("window %d fired a null value: %+v", o.Op, o)
			}
		}
	}
	if fired[uint16(tumbling)] != 2 || fired[uint16(sliding)] != 4 || fired[uint16(session)] != 2 || fired[uint16(hopping)] == 0 {
		t.Fatalf("firings per window %v", fired)
	}
}

func TestWindowAPINeedsAHost(t *testing.T) {
	e, err := New(Config{Processors: func(int) (Processor, error) { return nopProc{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTumblingWindow(time.Second, "sum"); err != ErrNoWindowHost {
		t.Fatalf("err = %v, want ErrNoWindowHost", err)
	}
}

// TestProcessingTimeEarlyFirings: a window with an early trigger on
// processing time fires early results while its window is open, driven by
// the shard's ProcessingTimeTick.
func TestProcessingTimeEarlyFirings(t *testing.T) {
	spec, err := ops.ParseWindowSpec("tumbling:1h:sum")
	if err != nil {
		t.Fatal(err)
	}
	out := &collect{}
	e, err := New(Config{
		Shards:             1,
		ProcessingTimeTick: time.Millisecond,
		Processors: func(int) (Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{MaxSymbolID: 8, Windows: []ops.WindowSpec{spec},
				WindowOptions: ops.WindowOptions{WindowTrigger: ops.WindowTrigger{EarlyEveryNs: int64(5 * time.Millisecond)}}})
		},
		Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	p, _ := e.NewPublisher("pt")
	ev := codec.Event{Kind: codec.KindTrade, Symbol: 1, Seq: 1, TsNs: 1e9, Price: 2, Volume: 1}
	p.Publish(&ev)
	p.Flush()
	deadline := time.Now().Add(10 * time.Second)
	early := 0
	for early == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		for _, o := range out.all() {
			if o.Kind == ops.OutWindow && o.Timing == ops.TimingEarly && o.Value == 2 {
				early++
			}
		}
	}
	p.Close()
	stop(t, e)
	if early == 0 {
		t.Fatalf("no early firing on processing time; outputs %+v", out.all())
	}
	last := out.all()[len(out.all())-1]
	if last.Timing != ops.TimingOnTime || last.Value != 2 {
		t.Fatalf("final firing %+v, want on_time 2", last)
	}
}
