package wal

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// Benchmarks write to QSTREAM_WAL_BENCH_DIR if set, else to b.TempDir()
// (under $TMPDIR). Durability figures mean something only on a real disk:
// check `df` / `stat -f` for the directory used.

const benchPayload = 128 // about one codec frame

func benchDir(b *testing.B) string {
	if d := os.Getenv("QSTREAM_WAL_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "walbench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

func benchRecords(def int) int {
	if v, err := strconv.Atoi(os.Getenv("QSTREAM_WAL_BENCH_RECORDS")); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkAppend measures durable records per second for one producer per
// policy: b.N Appends and a final Sync, so every record is on disk (under
// none: written, then one fsync) when the clock stops.
func BenchmarkAppend(b *testing.B) {
	for _, pol := range []SyncPolicy{SyncAlways, SyncGroup, SyncNone} {
		b.Run(pol.String(), func(b *testing.B) {
			w, err := Open(benchDir(b), Options{Sync: pol})
			if err != nil {
				b.Fatal(err)
			}
			p := make([]byte, benchPayload)
			b.SetBytes(int64(frameSize(benchPayload)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := w.Append(TypeData, p); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			w.Close()
		})
	}
}

// BenchmarkAppendCallerCPU: the appending goroutine's own CPU time per
// Append of an engine-sized event batch (256 events of about 36 bytes),
// read from its locked thread's rusage, so that neither the flusher's work
// nor the machine's other load counts: what the engine's feed goroutine
// pays for the WAL per batch (caller-ns/op) and per event (caller-ns/event).
func BenchmarkAppendCallerCPU(b *testing.B) {
	const events, eventBytes = 256, 36
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, err := Open(benchDir(b), Options{Sync: SyncGroup})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	p := make([]byte, events*eventBytes)
	for i := range p {
		p[i] = byte(i * 7)
	}
	threadNs := func() int64 {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	b.SetBytes(int64(frameSize(len(p))))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadNs()
	var lsn uint64
	for i := 0; i < b.N; i++ {
		if lsn, err = w.Append(TypeData, p); err != nil {
			b.Fatal(err)
		}
	}
	cpu := threadNs() - cpu0
	b.StopTimer()
	if err := w.Sync(); err != nil || w.DurableLSN() < lsn {
		b.Fatalf("durable %d of %d: %v", w.DurableLSN(), lsn, err)
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "caller-ns/op")
	b.ReportMetric(float64(cpu)/float64(b.N)/events, "caller-ns/event")
}

// BenchmarkAppendParallel: four producers on the machine's cores; under
// always, concurrent producers share syncs.
func BenchmarkAppendParallel(b *testing.B) {
	for _, pol := range []SyncPolicy{SyncAlways, SyncGroup} {
		b.Run(pol.String(), func(b *testing.B) {
			w, err := Open(benchDir(b), Options{Sync: pol})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(frameSize(benchPayload)))
			b.ReportAllocs()
			b.SetParallelism(2)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				p := make([]byte, benchPayload)
				for pb.Next() {
					if _, err := w.Append(TypeData, p); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			w.Close()
		})
	}
}

// BenchmarkBaselineWriteSync is the same bytes written straight to a
// preallocated file in 256 KiB chunks with an fdatasync after each: the
// device's cost without the WAL, to compare BenchmarkAppend/group with.
func BenchmarkBaselineWriteSync(b *testing.B) {
	dir := benchDir(b)
	f, err := os.OpenFile(filepath.Join(dir, "raw"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const fsz = 64 << 20
	if err := unix.Fallocate(int(f.Fd()), 0, 0, fsz); err != nil {
		b.Fatal(err)
	}
	rec := frameSize(benchPayload)
	chunk := make([]byte, (256<<10)/rec*rec)
	per := len(chunk) / rec
	b.SetBytes(int64(rec))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	off := int64(0)
	for done := 0; done < b.N; done += per {
		if off+int64(len(chunk)) > fsz {
			off = 0
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		off += int64(len(chunk))
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkCommitLatency measures the time from Append to the sync that
// covers the record, under group commit, into an HdrHistogram. "max" appends
// as fast as possible; "rate=100k" paces 100k records/s open-loop and
// measures from each record's intended send time (no coordinated omission).
func BenchmarkCommitLatency(b *testing.B) {
	for _, rate := range []int{0, 100_000} {
		name := "max"
		if rate > 0 {
			name = "rate=" + strconv.Itoa(rate/1000) + "k"
		}
		b.Run(name, func(b *testing.B) {
			const ringSize = 1 << 20
			var sent [ringSize]atomic.Int64 // intended or actual append time by LSN
			hist := hdrhistogram.New(1, int64(10*time.Second), 3)
			base := time.Now()
			var seen uint64
			o := Options{OnDurable: func(d uint64) {
				now := int64(time.Since(base))
				for l := seen + 1; l <= d; l++ {
					if l%4 == 0 { // sample
						hist.RecordValue(max(1, now-sent[l%ringSize].Load()))
					}
				}
				seen = d
			}}
			w, err := Open(benchDir(b), o)
			if err != nil {
				b.Fatal(err)
			}
			p := make([]byte, benchPayload)
			b.ReportAllocs()
			b.ResetTimer()
			base = time.Now()
			var interval int64
			if rate > 0 {
				interval = int64(time.Second) / int64(rate)
			}
			next := w.LastLSN() + 1
			for i := 0; i < b.N; i++ {
				t := int64(time.Since(base))
				if rate > 0 {
					due := int64(i) * interval
					if ahead := due - t; ahead > int64(200*time.Microsecond) {
						time.Sleep(time.Duration(ahead))
					}
					t = due
				}
				sent[next%ringSize].Store(t)
				lsn, err := w.Append(TypeData, p)
				if err != nil || lsn != next {
					b.Fatalf("Append = %d, %v; want %d", lsn, err, next)
				}
				next++
			}
			if err := w.WaitDurable(context.Background(), next-1); err != nil {
				b.Fatal(err)
			}
			el := time.Since(base)
			b.StopTimer()
			w.Close() // the flusher has stopped: hist is ours
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			b.ReportMetric(float64(hist.ValueAtQuantile(50))/1e3, "p50-µs")
			b.ReportMetric(float64(hist.ValueAtQuantile(99))/1e3, "p99-µs")
			b.ReportMetric(float64(hist.Max())/1e3, "max-µs")
		})
	}
}

var fixtures struct {
	sync.Mutex
	dirs map[int]string
}

// TestMain removes the benchmark fixtures shared between runs.
func TestMain(m *testing.M) {
	code := m.Run()
	fixtures.Lock()
	for _, d := range fixtures.dirs {
		os.RemoveAll(d)
	}
	fixtures.Unlock()
	os.Exit(code)
}

// replayFixture returns a WAL of n records of benchPayload bytes, written
// once per process (the benchmark function runs several times).
func replayFixture(b *testing.B, n int) string {
	fixtures.Lock()
	defer fixtures.Unlock()
	if d, ok := fixtures.dirs[n]; ok {
		return d
	}
	parent := os.Getenv("QSTREAM_WAL_BENCH_DIR")
	dir, err := os.MkdirTemp(parent, "walfixture")
	if err != nil {
		b.Fatal(err)
	}
	if fixtures.dirs == nil {
		fixtures.dirs = map[int]string{}
	}
	fixtures.dirs[n] = dir
	w, err := Open(dir, Options{Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, benchPayload)
	for i := 0; i < n; i++ {
		p[0] = byte(i)
		if _, err := w.Append(TypeData, p); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkReplay measures Reader throughput over a WAL in the page cache,
// checksums verified: b.N records, reopening at the end of the log.
func BenchmarkReplay(b *testing.B) {
	n := benchRecords(500_000)
	dir := replayFixture(b, n)
	b.SetBytes(int64(frameSize(benchPayload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var r *Reader
	var sum byte
	for i := 0; i < b.N; i++ {
		if r == nil {
			var err error
			if r, err = OpenReader(dir, 0); err != nil {
				b.Fatal(err)
			}
		}
		rec, err := r.Next()
		if err == io.EOF {
			r.Close()
			r = nil
			i--
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		sum += rec.Payload[0]
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	if r != nil {
		r.Close()
	}
	_ = sum
}

// BenchmarkReplayBaselineRead reads the same files with the same buffer
// size and no decoding: the I/O floor for BenchmarkReplay.
func BenchmarkReplayBaselineRead(b *testing.B) {
	n := benchRecords(500_000)
	dir := replayFixture(b, n)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	buf := make([]byte, readBufBytes)
	rec := frameSize(benchPayload)
	b.SetBytes(int64(rec))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	remaining := b.N
	for remaining > 0 {
		for _, s := range segs {
			f, err := os.Open(s)
			if err != nil {
				b.Fatal(err)
			}
			for off := int64(segHeaderSize); remaining > 0; {
				k, _ := f.ReadAt(buf, off)
				if k == 0 {
					break
				}
				off += int64(k)
				remaining -= k / rec
			}
			f.Close()
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkRestart measures restart-to-live on a WAL of
// QSTREAM_WAL_BENCH_RECORDS records (default 1M; 10M for BENCHMARKS.md):
// Open (verify every segment, recover) plus a replay of every record.
func BenchmarkRestart(b *testing.B) {
	n := benchRecords(1_000_000)
	dir := replayFixture(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		w, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if w.LastLSN() != uint64(n) {
			b.Fatalf("recovered %d of %d", w.LastLSN(), n)
		}
		r, err := OpenReader(dir, 0)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			got++
		}
		r.Close()
		w.Close()
		if got != n {
			b.Fatalf("replayed %d of %d", got, n)
		}
	}
	el := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(el)/1e6, "ms/restart")
	b.ReportMetric(float64(n)/el.Seconds(), "records/s")
}
