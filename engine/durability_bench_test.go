package engine

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

// Durability benchmarks (BENCHMARKS.md), end to end through the engine:
// events published by a Publisher, logged in the WAL, processed by a shard
// running the default indicators. Directories are under
// QSTREAM_BENCH_DIR if set, else $TMPDIR: durability figures mean something
// only on a real disk. QSTREAM_BENCH_RECORDS sets the size of the recovery
// fixtures (default 1,000,000; BENCHMARKS.md uses 10,000,000).

func benchDurableDir(b *testing.B) string {
	if d := os.Getenv("QSTREAM_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "enginebench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

func benchRecordsEnv() int {
	if v, err := strconv.Atoi(os.Getenv("QSTREAM_BENCH_RECORDS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// benchEngine is one shard over the default indicators, with the WAL in dir
// under pol (no WAL when dir is "").
func benchEngine(b *testing.B, dir string, pol wal.SyncPolicy, onDurable func(uint64)) (*Engine, *WAL) {
	b.Helper()
	var w *WAL
	cfg := Config{Shards: 1, Processors: pipelineFactoryIndicators(b), Logger: quietLogger()}
	if dir != "" {
		var err error
		w, err = OpenWAL(dir, wal.Options{Sync: pol, OnDurable: onDurable})
		if err != nil {
			b.Fatal(err)
		}
		cfg.Durability = w
	}
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return e, w
}

func pipelineFactoryIndicators(tb testing.TB) ProcessorFactory {
	specs, err := ops.ParseIndicators(ops.DefaultIndicators)
	if err != nil {
		tb.Fatal(err)
	}
	return func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 256, MaxSlots: 256})
	}
}

// BenchmarkDurablePublish: durable records per second per sync policy, one
// producer, end to end: b.N events published (a watermark every 256, a
// Barrier - the acknowledgement point of a feed - every 4096) and a final
// Barrier, so every event is durable and acknowledged when the clock
// stops. "nowal" is the same engine without a WAL: the baseline.
func BenchmarkDurablePublish(b *testing.B) {
	evs := testEvents(1<<16, 100, 1)
	for _, c := range []struct {
		name string
		wal  bool
		pol  wal.SyncPolicy
	}{{"nowal", false, 0}, {"none", true, wal.SyncNone}, {"group", true, wal.SyncGroup}, {"always", true, wal.SyncAlways}} {
		b.Run(c.name, func(b *testing.B) {
			dir := ""
			if c.wal {
				dir = benchDurableDir(b)
			}
			e, w := benchEngine(b, dir, c.pol, nil)
			e.Start()
			for i := 1; i <= 100; i++ {
				e.Symbols().InternString(fmt.Sprintf("S%03d", i))
			}
			p, _ := e.NewPublisher("bench")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				ev := evs[i&(len(evs)-1)]
				ev.Seq = uint64(i + 1)
				if err := p.Publish(&ev); err != nil {
					b.Fatal(err)
				}
				if ev.Seq&255 == 0 {
					p.Flush()
				}
				if ev.Seq&4095 == 0 {
					if err := p.Barrier(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := p.Barrier(ctx); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "durable-rec/s")
			p.Close()
			e.Stop(ctx)
			if w != nil {
				w.Close()
			}
		})
	}
}

// BenchmarkDurableCommitLatency: the time from Publish to the sync that
// covers the event (when a Barrier waiting for it may acknowledge), under
// group commit, into an HdrHistogram. "max" publishes as fast as possible;
// "rate=100k" paces 100k events/s open-loop and measures from each event's
// intended time (no coordinated omission).
func BenchmarkDurableCommitLatency(b *testing.B) {
	evs := testEvents(1<<16, 100, 2)
	for _, rate := range []int{0, 100_000} {
		name := "max"
		if rate > 0 {
			name = "rate=" + strconv.Itoa(rate/1000) + "k"
		}
		b.Run(name, func(b *testing.B) {
			const ringSize = 1 << 20
			var sent [ringSize]int64 // intended publish time by LSN; 0: not an event
			var mu sync.Mutex        // sent is written by the producer, read by the flusher
			hist := hdrhistogram.New(1, int64(10*time.Second), 3)
			base := time.Now()
			var seen uint64
			e, w := benchEngine(b, benchDurableDir(b), wal.SyncGroup, func(d uint64) {
				now := int64(time.Since(base))
				mu.Lock()
				for l := seen + 1; l <= d; l++ {
					if t := sent[l%ringSize]; t != 0 {
						hist.RecordValue(max(1, now-t))
						sent[l%ringSize] = 0
					}
				}
				mu.Unlock()
				seen = d
			})
			e.Start()
			for i := 1; i <= 100; i++ {
				e.Symbols().InternString(fmt.Sprintf("S%03d", i))
			}
			p, _ := e.NewPublisher("bench")
			var interval int64
			if rate > 0 {
				interval = int64(time.Second) / int64(rate)
			}
			b.ReportAllocs()
			b.ResetTimer()
			base = time.Now()
			for i := 0; i < b.N; i++ {
				t := int64(time.Since(base))
				if rate > 0 {
					due := int64(i) * interval
					if ahead := due - t; ahead > int64(200*time.Microsecond) {
						time.Sleep(time.Duration(ahead))
					}
					t = due
				}
				ev := evs[i&(len(evs)-1)]
				ev.Seq = uint64(i + 1)
				if err := p.Publish(&ev); err != nil {
					b.Fatal(err)
				}
				mu.Lock()
				if p.lastLSN > seen {
					sent[p.lastLSN%ringSize] = max(1, t)
				}
				mu.Unlock()
				if ev.Seq&255 == 0 {
					p.Flush()
				}
			}
			if err := p.Barrier(context.Background()); err != nil {
				b.Fatal(err)
			}
			el := time.Since(base)
			b.StopTimer()
			p.Close()
			e.Stop(context.Background())
			w.Close() // the flusher has stopped: hist is ours
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			b.ReportMetric(float64(hist.ValueAtQuantile(50))/1e3, "p50-µs")
			b.ReportMetric(float64(hist.ValueAtQuantile(99))/1e3, "p99-µs")
			b.ReportMetric(float64(hist.Max())/1e3, "max-µs")
		})
	}
}

var recoveryFixtures struct {
	sync.Mutex
	dirs map[int]string
}

// recoveryFixture is a WAL of n events (100 symbols, a watermark every 256)
// written once per process, as a crashed run leaves it: no checkpoint.
func recoveryFixture(b *testing.B, n int) string {
	recoveryFixtures.Lock()
	defer recoveryFixtures.Unlock()
	if d, ok := recoveryFixtures.dirs[n]; ok {
		return d
	}
	root := os.Getenv("QSTREAM_BENCH_DIR")
	dir, err := os.MkdirTemp(root, "recoverybench")
	if err != nil {
		b.Fatal(err)
	}
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
	p, _ := e.NewPublisher("feed")
	evs := testEvents(1<<16, 100, 3)
	for i := 0; i < n; i++ {
		ev := evs[i&(len(evs)-1)]
		ev.Seq = uint64(i + 1)
		ev.TsNs = 1_700_000_000_000_000_000 + int64(i)*1000
		if err := p.Publish(&ev); err != nil {
			b.Fatal(err)
		}
		if ev.Seq&255 == 0 {
			p.Flush()
		}
	}
	p.Detach()
	e.Stop(context.Background())
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if recoveryFixtures.dirs == nil {
		recoveryFixtures.dirs = map[int]string{}
	}
	recoveryFixtures.dirs[n] = dir
	return dir
}

// TestMain removes the recovery fixtures.
func TestMain(m *testing.M) {
	code := m.Run()
	recoveryFixtures.Lock()
	for _, d := range recoveryFixtures.dirs {
		os.RemoveAll(d)
	}
	recoveryFixtures.Unlock()
	os.Exit(code)
}

// BenchmarkRecoveryReplay: WAL records replayed per second by Recover,
// from the first record of a WAL of QSTREAM_BENCH_RECORDS events (no
// checkpoint) until every shard has processed them: "nop" through a
// processor that does nothing (the engine's replay path: read, verify,
// decode, route, shard loop), "indicators" through the default indicators.
// The raw WAL read is wal's BenchmarkReplay.
func BenchmarkRecoveryReplay(b *testing.B) {
	n := benchRecordsEnv()
	dir := recoveryFixture(b, n)
	for _, c := range []struct {
		name  string
		procs func(testing.TB) ProcessorFactory
	}{
		{"nop", func(testing.TB) ProcessorFactory { return func(int) (Processor, error) { return nopProc{}, nil } }},
		{"indicators", pipelineFactoryIndicators},
	} {
		b.Run(c.name, func(b *testing.B) {
			var replayed int64
			var el time.Duration
			for i := 0; i < b.N; i++ {
				w, err := OpenWAL(dir, wal.Options{})
				if err != nil {
					b.Fatal(err)
				}
				e, err := New(Config{Shards: 1, Durability: w, Logger: quietLogger(), Processors: c.procs(b)})
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

// BenchmarkRestartToLive: from opening the WAL directory (which scans and
// verifies every segment) to Recover returning with the default indicators
// restored - the engine live, feeds free to start - for a WAL of
// QSTREAM_BENCH_RECORDS events after the last checkpoint (none here: the
// worst case). Run with QSTREAM_BENCH_RECORDS=10000000 for BENCHMARKS.md.
func BenchmarkRestartToLive(b *testing.B) {
	n := benchRecordsEnv()
	dir := recoveryFixture(b, n)
	var el time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		w, err := OpenWAL(dir, wal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		e, err := New(Config{Shards: 1, Durability: w, Logger: quietLogger(), Processors: pipelineFactoryIndicators(b)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Recover(context.Background()); err != nil {
			b.Fatal(err)
		}
		el += time.Since(start)
		e.Stop(context.Background())
		w.Close()
	}
	b.ReportMetric(float64(el.Milliseconds())/float64(b.N), "restart-ms")
	b.ReportMetric(float64(n)*float64(b.N)/el.Seconds(), "records/s")
}

// BenchmarkDurableRunRatio is issue 12's durability figure in one run: the
// same stream through the same engine (one shard, the default indicators,
// a Flush every 256 events as `qstream run`'s synthetic feed does) without
// a WAL and with the durable defaults of `qstream run` (group commit, the
// dedup horizon of 65,536 ids per shard, a message id on every event), with
// records per event and with batches (Config.WALBatches), batches with a
// source that declares its ids to be its offsets (as `qstream run`'s
// durable synthetic feed does: de-duplicated by Seq, not in the horizon),
// and batches without the dedup horizon (to show what it costs). Each
// iteration runs the five interleaved, durableRunEvents events each, and every
// durable run ends with a Barrier, so its events are all durable when its
// clock stops. It reports each configuration's events/s (the median of the
// iterations) and the ratios to the no-WAL run; it fails unless every run
// processed every event. Use -benchtime 5x or more.
func BenchmarkDurableRunRatio(b *testing.B) {
	const durableRunEvents = 1 << 20
	evs := testEvents(1<<16, 100, 3)
	type config struct {
		name    string
		wal     bool
		batches bool
		noDedup bool // what the dedup horizon costs (not a durable default)
		offIDs  bool // the source's ids are its offsets (PublisherOptions.OffsetIDs)
		rates   []float64
	}
	cfgs := []*config{{name: "nowal"}, {name: "records", wal: true}, {name: "batches", wal: true, batches: true},
		{name: "batches-offsetids", wal: true, batches: true, offIDs: true},
		{name: "batches-nodedup", wal: true, batches: true, noDedup: true}}
	run := func(c *config) float64 {
		cfg := Config{Shards: 1, Processors: pipelineFactoryIndicators(b), Logger: quietLogger()}
		var w *WAL
		if c.wal {
			var err error
			if w, err = OpenWAL(benchDurableDir(b), wal.Options{}); err != nil {
				b.Fatal(err)
			}
			cfg.Durability, cfg.WALBatches, cfg.DedupHorizon = w, c.batches, 1<<16
			if c.noDedup {
				cfg.DedupHorizon = 0
			}
		}
		e, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		for i := 1; i <= 100; i++ {
			e.Symbols().InternString(fmt.Sprintf("S%03d", i))
		}
		e.Start()
		p, err := e.NewPublisherWith("bench", PublisherOptions{OffsetIDs: c.offIDs})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		var idBuf []byte
		start := time.Now()
		for i := 0; i < durableRunEvents; i++ {
			ev := evs[i&(len(evs)-1)]
			ev.Seq = uint64(i + 1)
			ev.TsNs = 1_700_000_000_000_000_000 + int64(i)*1000
			idBuf = strconv.AppendUint(idBuf[:0], ev.Seq, 10)
			ev.IDHash = codec.HashID(idBuf)
			if err := p.Publish(&ev); err != nil {
				b.Fatal(err)
			}
			if ev.Seq&255 == 0 {
				if err := p.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := p.Barrier(ctx); err != nil {
			b.Fatal(err)
		}
		p.Close()
		if err := e.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		st := e.Stats()
		if w != nil {
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		if st.Published != durableRunEvents || st.Messages != durableRunEvents || st.DeadLetters != 0 || st.Outputs == 0 {
			b.Fatalf("%s: published %d, processed %d, dead letters %d, outputs %d of %d events", c.name, st.Published, st.Messages, st.DeadLetters, st.Outputs, durableRunEvents)
		}
		return durableRunEvents / el.Seconds()
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for k := range cfgs {
			c := cfgs[(k+i)%len(cfgs)] // a different configuration first each iteration
			c.rates = append(c.rates, run(c))
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	base := median(cfgs[0].rates)
	for _, c := range cfgs {
		b.ReportMetric(median(c.rates), c.name+"-ev/s")
		if c.wal {
			b.ReportMetric(median(c.rates)/base, c.name+"/nowal")
		}
	}
	b.ReportMetric(0, "ns/op")
}
