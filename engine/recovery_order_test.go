package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

// BenchmarkRecoveryReplaySources: Recover's records/s for a WAL whose
// events alternate between two sources every `run` events (two TCP event
// loops), through a processor that does nothing. Recovery hands each
// source's run to the shards and waits for them before the next source's
// (WAL order across sources); compare with BenchmarkRecoveryReplay/nop, one
// source.
func BenchmarkRecoveryReplaySources(b *testing.B) {
	n := benchRecordsEnv()
	for _, run := range []int{64, 1024} {
		b.Run(fmt.Sprintf("run=%d", run), func(b *testing.B) {
			dir := b.TempDir()
			w, err := OpenWAL(dir, wal.Options{Sync: wal.SyncNone})
			if err != nil {
				b.Fatal(err)
			}
			e, err := New(Config{Shards: 1, Durability: w, Logger: quietLogger(), Processors: func(int) (Processor, error) { return nopProc{}, nil }})
			if err != nil {
				b.Fatal(err)
			}
			e.Start()
			for i := 1; i <= 100; i++ {
				e.Symbols().InternString(fmt.Sprintf("S%03d", i))
			}
			pa, _ := e.NewPublisher("tcp/loop0")
			pb, _ := e.NewPublisher("tcp/loop1")
			evs := testEvents(1<<16, 100, 3)
			for i := 0; i < n; i++ {
				p := pa
				if (i/run)&1 == 1 {
					p = pb
				}
				ev := evs[i&(len(evs)-1)]
				ev.Seq = 0
				ev.TsNs = 1_700_000_000_000_000_000 + int64(i)*1000
				if err := p.Publish(&ev); err != nil {
					b.Fatal(err)
				}
				if (i+1)%run == 0 {
					p.Flush()
				}
			}
			pa.Detach()
			pb.Detach()
			e.Stop(context.Background())
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var replayed int64
			var el time.Duration
			for i := 0; i < b.N; i++ {
				w, err := OpenWAL(dir, wal.Options{})
				if err != nil {
					b.Fatal(err)
				}
				e, err := New(Config{Shards: 1, Durability: w, Logger: quietLogger(), Processors: func(int) (Processor, error) { return nopProc{}, nil }})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				rep, err := e.Recover(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				el += time.Since(start)
				replayed += rep.Events
				e.Stop(context.Background())
				w.Close()
			}
			if replayed != int64(n)*int64(b.N) {
				b.Fatalf("replayed %d events, want %d", replayed, n*b.N)
			}
			b.ReportMetric(float64(replayed)/el.Seconds(), "records/s")
		})
	}
}

// Recovery replays several sources in WAL order: the live run below
// interleaves two sources chunk by chunk, each processed before the next,
// with no event late; a recovery replay of its WAL must decide the same
// (no late event, the same outputs). Handing each source's whole stream to
// the shards at once instead let one source's watermarks run ahead and
// made the other's events late.
func TestRecoveryReplaysSourcesInWALOrder(t *testing.T) {
	dir := t.TempDir()
	out := &memOutput{}
	r := openRig(t, dir, 1, out, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, 2)
	pa, _ := r.e.NewPublisher("tcp/loop0")
	pb, _ := r.e.NewPublisher("tcp/loop1")
	const base = int64(1_700_000_000_000_000_000)
	trades := 0
	publish := func(p *Publisher, sym int, from, to int) {
		for k := from; k <= to; k++ {
			ev := trade(0, codec.Symbol(sym), base+int64(k)*100_000) // 100 µs apart
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
			trades++
		}
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for countKind(out.all(), ops.OutIndicators) < trades {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d trades processed", countKind(out.all(), ops.OutIndicators), trades)
			}
			time.Sleep(time.Millisecond)
		}
	}
	publish(pa, 1, 0, 0) // both sources have a watermark before the chunks
	publish(pb, 2, 0, 0)
	for k := 1; k <= 200; k += 10 {
		publish(pa, 1, k, k+9)
		publish(pb, 2, k, k+9)
	}
	r.dl.mu.Lock()
	liveLate := r.dl.n[codec.ReasonLate]
	r.dl.mu.Unlock()
	if liveLate != 0 {
		t.Fatalf("live run: %d late events", liveLate)
	}
	pa.Detach()
	pb.Detach()
	r.e.StopCheckpoints() // like a crash: recovery replays the whole WAL
	stop(t, r.e)
	r.w.Close()
	live := out.all() // after Stop: the firings of the last watermarks too

	out2 := &memOutput{}
	r2 := openRig(t, dir, 1, out2, 0)
	rep, err := r2.e.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != int64(trades) {
		t.Fatalf("replayed %d events, want %d", rep.Events, trades)
	}
	r2.dl.mu.Lock()
	late := r2.dl.n[codec.ReasonLate]
	r2.dl.mu.Unlock()
	if late != 0 {
		t.Errorf("recovery replay: %d late events, the live run had none", late)
	}
	sameAsLive(t, live, out2.all(), r.dl, r2.dl)
	stop(t, r2.e)
	r2.w.Close()
}

func countKind(outs []ops.Output, kind ops.OutKind) int {
	n := 0
	for _, o := range outs {
		if o.Kind == kind {
			n++
		}
	}
	return n
}

// publishWait publishes trades k = from..to of sym on p (100 µs apart from
// base), makes them durable and waits until the shards have processed all
// *trades of them (one indicator output each).
func publishWait(t *testing.T, p *Publisher, out *memOutput, sym, from, to int, trades *int) {
	t.Helper()
	const base = int64(1_700_000_000_000_000_000)
	for k := from; k <= to; k++ {
		ev := trade(0, codec.Symbol(sym), base+int64(k)*100_000)
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
		*trades++
	}
	if err := p.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countKind(out.all(), ops.OutIndicators) < *trades {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d trades processed", countKind(out.all(), ops.OutIndicators), *trades)
		}
		time.Sleep(time.Millisecond)
	}
}

// firedUpTo returns how many tumbling:1ms windows (op 0) of sym fired.
func firedUpTo(outs []ops.Output, sym codec.Symbol) int {
	n := 0
	for _, o := range outs {
		if o.Kind == ops.OutWindow && o.Op == 0 && o.Symbol == sym {
			n++
		}
	}
	return n
}

// An idle source (Publisher.Idle: a TCP loop whose connections all closed)
// stops holding the shard's watermark back until it publishes again, then
// counts again from its own watermark; a recovery replay does the same.
func TestPublisherIdle(t *testing.T) {
	dir := t.TempDir()
	out := &memOutput{}
	r := openRig(t, dir, 1, out, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, 2)
	pa, _ := r.e.NewPublisher("tcp/loop0")
	pb, _ := r.e.NewPublisher("tcp/loop1")
	trades := 0
	publishWait(t, pa, out, 1, 0, 0, &trades)
	publishWait(t, pb, out, 2, 0, 0, &trades)
	publishWait(t, pa, out, 1, 1, 100, &trades) // to 10 ms
	publishWait(t, pb, out, 2, 1, 100, &trades)
	waitFired(t, out, 1, 10, "at 10 ms")
	if err := pb.Idle(); err != nil {
		t.Fatal(err)
	}
	publishWait(t, pa, out, 1, 101, 300, &trades) // to 30 ms: b no longer holds it at 10
	waitFired(t, out, 1, 30, "with b idle and a at 30 ms")
	publishWait(t, pb, out, 2, 301, 350, &trades) // b is back, at 35 ms
	publishWait(t, pa, out, 1, 301, 400, &trades) // a at 40 ms: b holds the shard at 35
	waitFired(t, out, 1, 35, "with b back at 35 ms and a at 40")
	pa.Detach()
	pb.Detach()
	r.e.StopCheckpoints() // like a crash: recovery replays the whole WAL
	stop(t, r.e)
	r.w.Close()
	live := out.all() // after Stop: the firings of the last watermarks too

	out2 := &memOutput{}
	r2 := openRig(t, dir, 1, out2, 0)
	if _, err := r2.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	sameAsLive(t, live, out2.all(), r.dl, r2.dl)
	stop(t, r2.e)
	r2.w.Close()
}

// waitFired waits until exactly want tumbling:1ms windows of sym have fired
// (the watermark follows the trades' outputs), and fails if more do.
func waitFired(t *testing.T, out *memOutput, sym codec.Symbol, want int, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := firedUpTo(out.all(), sym)
		if n > want || (n < want && time.Now().After(deadline)) {
			t.Fatalf("%d windows fired %s, want %d", n, when, want)
		}
		if n == want {
			time.Sleep(20 * time.Millisecond) // and no more
			if n = firedUpTo(out.all(), sym); n != want {
				t.Fatalf("%d windows fired %s, want %d", n, when, want)
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// sameResult is sameOutput, except for the Seq of a window result: the
// input that advanced the watermark, which with several sources is the one
// whose ring the shard happened to read first (a window result's JSON line
// carries no seq).
func sameResult(a, b ops.Output) bool {
	if a.Kind == ops.OutWindow {
		a.Seq, b.Seq = 0, 0
	}
	return sameOutput(a, b)
}

// Detaching sources (a stop, the end of a recovery replay) fires nothing,
// whatever the order: the first source leaving does not let the others'
// watermarks run ahead of where the stream was.
func TestDetachFiresNothing(t *testing.T) {
	out := &memOutput{}
	r := openRig(t, t.TempDir(), 1, out, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, 2)
	pa, _ := r.e.NewPublisher("a")
	pb, _ := r.e.NewPublisher("b")
	trades := 0
	publishWait(t, pa, out, 1, 0, 0, &trades)
	publishWait(t, pb, out, 2, 0, 0, &trades)
	publishWait(t, pa, out, 1, 1, 400, &trades) // a at 40 ms
	publishWait(t, pb, out, 2, 1, 200, &trades) // b at 20 ms holds the shard
	waitFired(t, out, 1, 20, "with a at 40 ms and b at 20")
	pb.Detach() // b first: a alone would be at 40
	pa.Detach()
	stop(t, r.e)
	r.w.Close()
	if n := firedUpTo(out.all(), 1); n != 20 {
		t.Errorf("%d windows fired after the detaches, want still 20", n)
	}
}

// sameAsLive fails unless a recovery replay's outputs equal the live run's,
// key by key; on a count mismatch it says which kinds differ.
func sameAsLive(t *testing.T, live, replay []ops.Output, liveDL, replayDL *dlCollect) {
	t.Helper()
	want, _ := byKey(t, live)
	got, _ := byKey(t, replay)
	if len(got) != len(want) {
		cnt := func(m map[uint64]ops.Output) map[string]int {
			c := map[string]int{}
			for _, o := range m {
				c[fmt.Sprintf("k%d/op%d/s%d/%v", o.Kind, o.Op, o.Symbol, o.Timing)]++
			}
			return c
		}
		t.Errorf("recovery replay: %d outputs, the live run %d: %v vs %v; dl live %v replay %v", len(got), len(want), cnt(got), cnt(want), liveDL.n, replayDL.n)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameResult(g, w) {
			t.Fatalf("output %#x: replay %+v, live %+v", k, g, w)
		}
	}
}
