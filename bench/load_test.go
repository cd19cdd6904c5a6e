package bench

import (
	"qstream/internal/feedhost"

	"encoding/binary"
	"errors"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
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
		deadline := NowNs() + int64(d)
		got := WaitUntil(deadline, PaceSleep)
		if got < deadline || NowNs() < deadline {
			t.Errorf("WaitUntil(now%+v) returned at %d, before the deadline %d", d, got, deadline)
		}
	}
	// Spinning is for benchmarks; here only with a deadline already passed.
	if deadline := NowNs() - 1; WaitUntil(deadline, PaceSpin) < deadline {
		t.Error("WaitUntil(past, PaceSpin) returned a time before the deadline")
	}
}

// TestRunTCPLoad: every message is written once, in order, no earlier than
// its intended time; overdue ones share a write.
func TestRunTCPLoad(t *testing.T) {
	const n, rate = 500, 50_000
	var w countingWrites
	start := NowNs() + int64(time.Millisecond)
	sent, err := RunTCPLoad(&w, TCPLoad{Rate: rate, Messages: n, StartNs: start, Pacing: PaceSleep,
		Append: func(dst []byte, i, dueNs int64) []byte {
			dst = binary.LittleEndian.AppendUint64(dst, uint64(i))
			return binary.LittleEndian.AppendUint64(dst, uint64(dueNs))
		}})
	if err != nil {
		t.Fatal(err)
	}
	sched := NewOpenLoop(rate, start)
	if len(w.buf) != 16*n {
		t.Fatalf("%d bytes written, want %d", len(w.buf), 16*n)
	}
	for i := range int64(n) {
		gotI, gotDue := binary.LittleEndian.Uint64(w.buf[16*i:]), int64(binary.LittleEndian.Uint64(w.buf[16*i+8:]))
		if gotI != uint64(i) || gotDue != sched.Due(i) || sent[i] < gotDue {
			t.Fatalf("message %d: wrote index %d due %d, sent at %d; want due %d, sent no earlier", i, gotI, gotDue, sent[i], sched.Due(i))
		}
	}
	if w.writes >= n {
		t.Errorf("%d writes for %d messages: sleep pacing at 50k/s should batch overdue messages", w.writes, n)
	}
	if _, err := RunTCPLoad(&w, TCPLoad{Rate: 0, Messages: 1, Append: func(d []byte, _, _ int64) []byte { return d }}); !errors.Is(err, ErrTCPLoadConfig) {
		t.Errorf("rate 0: %v", err)
	}
}

type countingWrites struct {
	buf    []byte
	writes int
}

func (c *countingWrites) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	c.writes++
	return len(p), nil
}

// TestFeedhostPublishers: events published through the adapter reach the
// engine, and CloseAll lets Stop finish.
func TestFeedhostPublishers(t *testing.T) {
	eng, err := engine.New(engine.Config{Shards: 1, MaxSymbols: 16,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{MaxSymbolID: 16})
		}})
	if err != nil {
		t.Fatal(err)
	}
	pubs := feedhost.New(eng)
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
