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
	live := out.all()
	pa.Detach()
	pb.Detach()
	stop(t, r.e)
	r.w.Close()

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
	want, _ := byKey(t, live)
	got, _ := byKey(t, out2.all())
	if len(got) != len(want) {
		t.Errorf("recovery replay: %d outputs, the live run %d", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameOutput(g, w) {
			t.Fatalf("output %#x: replay %+v, live %+v", k, g, w)
		}
	}
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
