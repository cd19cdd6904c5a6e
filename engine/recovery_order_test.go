package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

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
