package bench

import (
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/internal/clock"
	"qstream/ops"
)

func TestOpenLoopSchedule(t *testing.T) {
	o := NewOpenLoop(100_000, 1_000)
	for _, tc := range []struct {
		i, due int64
	}{{0, 1_000}, {1, 11_000}, {99_999, 1_000 + 99_999*10_000}} {
		if got := o.Due(tc.i); got != tc.due {
			t.Errorf("Due(%d) = %d, want %d", tc.i, got, tc.due)
		}
	}
	for _, tc := range []struct {
		now, n int64
	}{{0, 0}, {999, 0}, {1_000, 1}, {10_999, 1}, {11_000, 2}, {1_000 + 5*10_000 + 1, 6}} {
		if got := o.DueBy(tc.now); got != tc.n {
			t.Errorf("DueBy(%d) = %d, want %d", tc.now, got, tc.n)
		}
	}
	// DueBy agrees with Due: message DueBy(now)-1 is due, the next is not.
	for now := int64(1_000); now < 200_000; now += 777 {
		n := o.DueBy(now)
		if o.Due(n-1) > now || o.Due(n) <= now {
			t.Fatalf("DueBy(%d) = %d: Due(n-1) = %d, Due(n) = %d", now, n, o.Due(n-1), o.Due(n))
		}
	}
	if o := NewOpenLoop(3_000_000_000, 0); o.IntervalNs != 1 {
		t.Errorf("interval at 3G/s = %d, want the 1 ns floor", o.IntervalNs)
	}
}

func TestWaitUntil(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 0, 50 * time.Microsecond, 2 * time.Millisecond} {
		deadline := clock.MonoNs() + int64(d)
		got := WaitUntil(deadline)
		if got < deadline {
			t.Errorf("WaitUntil(now%+v) returned at %d, before the deadline %d", d, got, deadline)
		}
		if now := clock.MonoNs(); now < deadline {
			t.Errorf("WaitUntil(now%+v) returned before the deadline", d)
		}
	}
}

// TestEnginePublishers: events published through the adapter reach the
// engine, and CloseAll lets Stop finish.
func TestEnginePublishers(t *testing.T) {
	eng, err := engine.New(engine.Config{Shards: 1, MaxSymbols: 16,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{MaxSymbolID: 16})
		}})
	if err != nil {
		t.Fatal(err)
	}
	pubs := &EnginePublishers{E: eng}
	if pubs.Symbols() != eng.Symbols() {
		t.Fatal("Symbols is not the engine's table")
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	sym, _ := eng.Symbols().InternString("X")
	for range 2 {
		pub, err := pubs.NewPublisher("p")
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 10; i++ {
			ev := codec.Event{Kind: codec.KindTrade, Symbol: sym, TsNs: int64(i), Price: 1, Volume: 1, Seq: uint64(i)}
			if err := pub.Publish(&ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	pubs.CloseAll()
	if err := eng.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := eng.Stats(); st.Messages != 20 {
		t.Errorf("engine processed %d messages, want 20", st.Messages)
	}
}
