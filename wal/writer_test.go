package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRoundTripProperty appends random-size payloads across many segments
// and several reopenings and checks the reader returns exactly what Append
// was given, with dense LSNs, from the start and from random LSNs.
func TestRoundTripProperty(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		dir := t.TempDir()
		o := smallOpts(t)
		o.Sync = SyncPolicy(seed % 3)
		var want [][]byte
		for round := 0; round < 3; round++ {
			w := mustOpen(t, dir, o)
			if got := w.LastLSN(); got != uint64(len(want)) {
				t.Fatalf("seed %d round %d: LastLSN after reopen = %d, want %d", seed, round, got, len(want))
			}
			n := 200 + rng.IntN(300)
			for i := 0; i < n; i++ {
				var size int
				switch rng.IntN(10) {
				case 0:
					size = o.MaxRecordSize - rng.IntN(16) // near the limit
				case 1:
					size = 0
				default:
					size = rng.IntN(200)
				}
				p := randPayload(rng, size)
				lsn := mustAppend(t, w, p)
				want = append(want, p)
				if lsn != uint64(len(want)) {
					t.Fatalf("Append returned LSN %d, want %d", lsn, len(want))
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		if len(segs) < 5 {
			t.Fatalf("seed %d: only %d segments; the test wants many boundaries", seed, len(segs))
		}
		for _, from := range []uint64{0, 1, uint64(1 + rng.IntN(len(want))), uint64(len(want)), uint64(len(want) + 1)} {
			lsns, ps, err := readAll(t, dir, from)
			if err != nil {
				t.Fatalf("seed %d from %d: %v", seed, from, err)
			}
			start := max(from, 1)
			if wantN := len(want) - int(start) + 1; len(lsns) != max(wantN, 0) {
				t.Fatalf("seed %d from %d: read %d records, want %d", seed, from, len(lsns), wantN)
			}
			for i, lsn := range lsns {
				if lsn != start+uint64(i) {
					t.Fatalf("seed %d: record %d has LSN %d, want %d", seed, i, lsn, start+uint64(i))
				}
				if !bytes.Equal(ps[i], want[lsn-1]) {
					t.Fatalf("seed %d: payload of LSN %d differs", seed, lsn)
				}
			}
		}
	}
}

// TestConcurrentProducers checks that LSNs returned to concurrent producers
// name exactly the records that carry their payloads.
func TestConcurrentProducers(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(t)
	o.GroupRecords = 7
	w := mustOpen(t, dir, o)
	const producers, each = 4, 500
	got := make([][]uint64, producers)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [16]byte
			for i := 0; i < each; i++ {
				binary.LittleEndian.PutUint64(buf[0:], uint64(p))
				binary.LittleEndian.PutUint64(buf[8:], uint64(i))
				lsn, err := w.Append(TypeData, buf[:8+p*2]) // sizes differ per producer
				if err != nil {
					t.Error(err)
					return
				}
				got[p] = append(got[p], lsn)
			}
		}()
	}
	wg.Wait()
	if err := w.WaitDurable(context.Background(), producers*each); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lsns, ps, err := readAll(t, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(lsns) != producers*each {
		t.Fatalf("read %d records, want %d", len(lsns), producers*each)
	}
	for p := 0; p < producers; p++ {
		for i, lsn := range got[p] {
			pl := ps[lsn-1]
			if len(pl) != 8+p*2 || binary.LittleEndian.Uint64(pl) != uint64(p) {
				t.Fatalf("LSN %d returned to producer %d holds another producer's record", lsn, p)
			}
			if i > 0 && lsn <= got[p][i-1] {
				t.Fatalf("producer %d: LSNs not increasing: %d after %d", p, lsn, got[p][i-1])
			}
		}
	}
}

// recordEnd is the file offset just past record lsn in a single-segment WAL
// of fixed-size payloads.
func recordEnd(lsn uint64, payload int) int64 {
	return segHeaderSize + int64(lsn)*int64(frameSize(payload))
}

// TestSyncPolicyContracts asserts, through the file-system seam, that a
// record is reported durable only after a sync covering it was issued.
func TestSyncPolicyContracts(t *testing.T) {
	const size = 100
	payload := bytes.Repeat([]byte{7}, size)
	seg := func(dir string) string { return filepath.Join(dir, segmentName(1)) }

	t.Run("always", func(t *testing.T) {
		dir, fs := t.TempDir(), newFaultFS()
		o := smallOpts(t)
		o.Sync, o.FS, o.SegmentSize = SyncAlways, fs, 1<<20
		w := mustOpen(t, dir, o)
		defer w.Close()
		for i := 0; i < 20; i++ {
			lsn := mustAppend(t, w, payload)
			st := fs.snapshot(seg(dir))
			if st.syncedEnd < recordEnd(lsn, size) {
				t.Fatalf("Append(%d) returned with synced extent %d < record end %d", lsn, st.syncedEnd, recordEnd(lsn, size))
			}
			if w.DurableLSN() < lsn {
				t.Fatalf("DurableLSN %d < %d after Append under always", w.DurableLSN(), lsn)
			}
		}
	})

	t.Run("group-records", func(t *testing.T) {
		dir, fs := t.TempDir(), newFaultFS()
		o := smallOpts(t)
		o.FS, o.SegmentSize, o.GroupRecords, o.GroupDelay = fs, 1<<20, 10, time.Hour
		w := mustOpen(t, dir, o)
		defer w.Close()
		var lsn uint64
		for i := 0; i < 9; i++ {
			lsn = mustAppend(t, w, payload)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := w.WaitDurable(ctx, lsn)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("9 of 10 group records: WaitDurable = %v, want a deadline error", err)
		}
		if st := fs.snapshot(seg(dir)); st.datasyncs != 0 || w.DurableLSN() != 0 {
			t.Fatalf("synced before the group was full: %d datasyncs, DurableLSN %d", st.datasyncs, w.DurableLSN())
		}
		lsn = mustAppend(t, w, payload)
		if err := w.WaitDurable(context.Background(), lsn); err != nil {
			t.Fatal(err)
		}
		if st := fs.snapshot(seg(dir)); st.syncedEnd < recordEnd(lsn, size) || st.datasyncs < 1 {
			t.Fatalf("WaitDurable(%d) returned with synced extent %d < %d (%d datasyncs)", lsn, st.syncedEnd, recordEnd(lsn, size), st.datasyncs)
		}
	})

	t.Run("group-delay", func(t *testing.T) {
		dir, fs := t.TempDir(), newFaultFS()
		o := smallOpts(t)
		o.FS, o.SegmentSize, o.GroupRecords, o.GroupDelay = fs, 1<<20, 1<<30, time.Millisecond
		var seen atomic.Uint64
		o.OnDurable = func(lsn uint64) {
			if lsn <= seen.Load() {
				t.Errorf("OnDurable not increasing: %d after %d", lsn, seen.Load())
			}
			if st := fs.snapshot(seg(dir)); st.syncedEnd < recordEnd(lsn, size) {
				t.Errorf("OnDurable(%d) before its sync: synced extent %d", lsn, st.syncedEnd)
			}
			seen.Store(lsn)
		}
		w := mustOpen(t, dir, o)
		defer w.Close()
		var lsn uint64
		for i := 0; i < 5; i++ {
			lsn = mustAppend(t, w, payload)
		}
		// Far fewer than GroupRecords: only the delay can commit them.
		if err := w.WaitDurable(context.Background(), lsn); err != nil {
			t.Fatal(err)
		}
		if st := fs.snapshot(seg(dir)); st.syncedEnd < recordEnd(lsn, size) {
			t.Fatalf("WaitDurable(%d) returned with synced extent %d < %d", lsn, st.syncedEnd, recordEnd(lsn, size))
		}
		if seen.Load() != lsn {
			t.Fatalf("OnDurable last reported %d, want %d", seen.Load(), lsn)
		}
	})

	t.Run("none", func(t *testing.T) {
		dir, fs := t.TempDir(), newFaultFS()
		o := smallOpts(t)
		o.Sync, o.FS, o.SegmentSize = SyncNone, fs, 1<<20
		w := mustOpen(t, dir, o)
		var lsn uint64
		for i := 0; i < 30; i++ {
			lsn = mustAppend(t, w, payload)
		}
		if err := w.WaitDurable(context.Background(), lsn); err != nil {
			t.Fatal(err)
		}
		st := fs.snapshot(seg(dir))
		if st.writtenEnd < recordEnd(lsn, size) {
			t.Fatalf("none: WaitDurable returned before the write: written extent %d < %d", st.writtenEnd, recordEnd(lsn, size))
		}
		if st.datasyncs != 0 {
			t.Fatalf("none: %d datasyncs without Sync", st.datasyncs)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		if st := fs.snapshot(seg(dir)); st.datasyncs != 1 || st.syncedEnd < recordEnd(lsn, size) {
			t.Fatalf("none: after Sync %d datasyncs, synced extent %d", st.datasyncs, st.syncedEnd)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStickyFsyncFailure: a failed fdatasync is never retried; every waiter
// and later call gets the error; OnFatal runs once.
func TestStickyFsyncFailure(t *testing.T) {
	for _, pol := range []SyncPolicy{SyncGroup, SyncAlways} {
		t.Run(pol.String(), func(t *testing.T) {
			dir, fs := t.TempDir(), newFaultFS()
			fs.failDatasyncAt = 3
			var fatals atomic.Int32
			var fatalErr atomic.Pointer[error]
			o := smallOpts(t)
			o.FS, o.Sync, o.SegmentSize, o.GroupRecords = fs, pol, 1<<20, 4
			o.OnFatal = func(err error) { fatals.Add(1); fatalErr.Store(&err) }
			w := mustOpen(t, dir, o)
			ctx := context.Background()
			var lastOK uint64
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				var lsn uint64
				lsn, err = w.Append(TypeData, []byte("tick"))
				if err == nil && pol == SyncGroup {
					err = w.WaitDurable(ctx, lsn)
				}
				if err == nil {
					lastOK = lsn
				}
			}
			if !errors.Is(err, ErrFailed) || !errors.Is(err, fs.failErr) {
				t.Fatalf("error = %v, want ErrFailed wrapping the injected error", err)
			}
			// One fdatasync per record here: the third one fails.
			if lastOK != 2 {
				t.Fatalf("last durable LSN before the failure = %d, want 2", lastOK)
			}
			d := w.DurableLSN()
			if d != lastOK {
				t.Fatalf("DurableLSN %d, want %d (the last LSN synced before the failure)", d, lastOK)
			}
			// Everything afterwards fails the same way, and nothing syncs again.
			if _, err := w.Append(TypeData, []byte("x")); !errors.Is(err, ErrFailed) {
				t.Fatalf("Append after failure = %v", err)
			}
			if err := w.Sync(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Sync after failure = %v", err)
			}
			if err := w.WaitDurable(ctx, d+1); !errors.Is(err, ErrFailed) {
				t.Fatalf("WaitDurable after failure = %v", err)
			}
			if err := w.WaitDurable(ctx, d); err != nil {
				t.Fatalf("WaitDurable of a durable LSN after failure = %v, want nil", err)
			}
			if err := w.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close after failure = %v", err)
			}
			if n := fatals.Load(); n != 1 {
				t.Fatalf("OnFatal called %d times, want 1", n)
			}
			if !errors.Is(*fatalErr.Load(), fs.failErr) {
				t.Fatalf("OnFatal got %v", *fatalErr.Load())
			}
			fs.mu.Lock()
			after := fs.datasyncsAfterF
			fs.mu.Unlock()
			if after != 0 {
				t.Fatalf("fdatasync retried %d times after the failure", after)
			}
			if w.DurableLSN() != d {
				t.Fatalf("DurableLSN moved after the failure")
			}
		})
	}
}

// TestWriteFailureIsFatal: a failed write is sticky too.
func TestWriteFailureIsFatal(t *testing.T) {
	dir, fs := t.TempDir(), newFaultFS()
	fs.failWriteAt = 2
	var fatals atomic.Int32
	o := smallOpts(t)
	o.FS, o.SegmentSize = fs, 1<<20
	o.OnFatal = func(error) { fatals.Add(1) }
	w := mustOpen(t, dir, o)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		var lsn uint64
		if lsn, err = w.Append(TypeData, []byte("x")); err == nil {
			err = w.WaitDurable(context.Background(), lsn)
		}
	}
	if !errors.Is(err, ErrFailed) || !errors.Is(err, fs.failErr) {
		t.Fatalf("error = %v", err)
	}
	w.Close()
	if fatals.Load() != 1 {
		t.Fatalf("OnFatal called %d times", fatals.Load())
	}
}

// TestBackpressure: with the flusher stuck in fdatasync, Append blocks once
// both buffers are full and resumes when the sync completes.
func TestBackpressure(t *testing.T) {
	dir, fs := t.TempDir(), newFaultFS()
	block := make(chan struct{})
	fs.blockDatasync = block
	o := smallOpts(t)
	o.FS, o.SegmentSize, o.GroupRecords = fs, 1<<20, 1
	w := mustOpen(t, dir, o)
	payload := make([]byte, 1000)
	perBuffer := o.BufferSize / frameSize(len(payload))
	var appended atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 4*perBuffer; i++ {
			if _, err := w.Append(TypeData, payload); err != nil {
				t.Error(err)
				return
			}
			appended.Add(1)
		}
	}()
	select {
	case <-done:
		t.Fatal("Append never blocked with the flusher stuck")
	case <-time.After(200 * time.Millisecond):
	}
	if n := appended.Load(); n > int64(2*perBuffer+1) {
		t.Fatalf("%d records appended with both buffers (%d records each) full", n, perBuffer)
	}
	close(block)
	<-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lsns, _, err := readAll(t, dir, 0)
	if err != nil || len(lsns) != 4*perBuffer {
		t.Fatalf("read %d records (%v), want %d", len(lsns), err, 4*perBuffer)
	}
}

func TestAppendRejects(t *testing.T) {
	w := mustOpen(t, t.TempDir(), smallOpts(t))
	defer w.Close()
	if _, err := w.Append(TypeData, make([]byte, w.opts.MaxRecordSize+1)); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	for _, typ := range []RecordType{0, TypeUserMax + 1, typeSeal} {
		if _, err := w.Append(typ, nil); !errors.Is(err, ErrBadType) {
			t.Fatalf("type %d: %v", typ, err)
		}
	}
	if lsn, err := w.Append(TypeUserMax, make([]byte, w.opts.MaxRecordSize)); err != nil || lsn != 1 {
		t.Fatalf("max-size record: %d, %v", lsn, err)
	}
}

func TestCloseThenUse(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, smallOpts(t))
	mustAppend(t, w, []byte("a"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(TypeData, []byte("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := w.WaitDurable(context.Background(), 1); err != nil {
		t.Fatalf("WaitDurable(1) after Close: %v", err)
	}
	if err := w.WaitDurable(context.Background(), 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDurable(2) after Close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, smallOpts(t))
	defer w.Close()
	if _, err := Open(dir, smallOpts(t)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{MaxRecordSize: MaxRecordSizeLimit + 1},
		{SegmentSize: 4096},
		{BufferSize: 100},
		{Sync: 9},
		{GroupRecords: -1},
	} {
		if _, err := Open(t.TempDir(), o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: %v, want ErrBadOptions", o, err)
		}
	}
	for _, s := range []string{"always", "group", "none"} {
		p, err := ParseSyncPolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); !errors.Is(err, ErrBadOptions) {
		t.Errorf("ParseSyncPolicy(sometimes) = %v", err)
	}
}

// TestDeleteBefore removes exactly the segments entirely below the LSN.
func TestDeleteBefore(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, smallOpts(t))
	p := make([]byte, 1000)
	for i := 0; i < 100; i++ {
		mustAppend(t, w, p)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := w.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	firsts := make([]uint64, len(segs))
	for i, s := range segs {
		firsts[i], _ = parseSegmentName(filepath.Base(s))
	}
	// An LSN inside segment 2 frees segments 0 and 1 only.
	cut := firsts[2] + 1
	n, err := w.DeleteBefore(cut)
	if err != nil || n != 2 {
		t.Fatalf("DeleteBefore(%d) = %d, %v; want 2", cut, n, err)
	}
	if w.FirstLSN() != firsts[2] {
		t.Fatalf("FirstLSN %d, want %d", w.FirstLSN(), firsts[2])
	}
	if _, err := os.Stat(segs[1]); !os.IsNotExist(err) {
		t.Fatalf("segment %s still there", segs[1])
	}
	if _, err := OpenReader(dir, firsts[2]-1); !errors.Is(err, ErrTruncated) {
		t.Fatalf("reader before the oldest segment: %v", err)
	}
	// The active segment is never deleted.
	if n, err := w.DeleteBefore(1 << 60); err != nil || len(w.Segments()) != 1 {
		t.Fatalf("DeleteBefore(max) = %d, %v; %d segments left", n, err, len(w.Segments()))
	}
	last := w.LastLSN()
	w.Close()
	w = mustOpen(t, dir, smallOpts(t))
	if w.LastLSN() != last || w.FirstLSN() > last+1 {
		t.Fatalf("after reopen LastLSN %d FirstLSN %d", w.LastLSN(), w.FirstLSN())
	}
	lsn := mustAppend(t, w, []byte("after"))
	w.Close()
	lsns, _, err := readAll(t, dir, 0)
	if err != nil || len(lsns) == 0 || lsns[len(lsns)-1] != lsn {
		t.Fatalf("read after delete: %v %v", lsns, err)
	}
}

// TestAppendAllocs: Append under the group policy allocates nothing,
// including on the flusher goroutine.
func TestAppendAllocs(t *testing.T) {
	o := Options{SegmentSize: 64 << 20, GroupRecords: 64, OnFatal: func(err error) { t.Error(err) }}
	w := mustOpen(t, t.TempDir(), o)
	defer w.Close()
	p := make([]byte, 128)
	for i := 0; i < 1000; i++ { // warm up: the flusher's timer, the first syncs
		mustAppend(t, w, p)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(5000, func() {
		if _, err := w.Append(TypeData, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("Append allocates %.2f times per call", allocs)
	}
	lsn := w.LastLSN()
	if err := w.WaitDurable(context.Background(), lsn); err != nil {
		t.Fatal(err)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		if err := w.WaitDurable(context.Background(), lsn); err != nil {
			t.Fatal(err)
		}
		_ = w.DurableLSN()
	})
	if allocs > 0 {
		t.Fatalf("WaitDurable on a durable LSN allocates %.2f times", allocs)
	}
}

// TestFailureWakesAllWaiters: waiters blocked on a sync that fails all get
// the error.
func TestFailureWakesAllWaiters(t *testing.T) {
	dir, fs := t.TempDir(), newFaultFS()
	block := make(chan struct{})
	fs.blockDatasync, fs.failDatasyncAt = block, 1
	o := smallOpts(t)
	o.FS, o.SegmentSize, o.GroupRecords = fs, 1<<20, 1
	o.OnFatal = func(error) {}
	w := mustOpen(t, dir, o)
	lsn := mustAppend(t, w, []byte("x"))
	errs := make(chan error, 6)
	for i := 0; i < 5; i++ {
		go func() { errs <- w.WaitDurable(context.Background(), lsn) }()
	}
	go func() { errs <- w.Sync() }()
	close(block) // the pending fdatasync now fails
	for i := 0; i < 6; i++ {
		if err := <-errs; !errors.Is(err, ErrFailed) {
			t.Fatalf("waiter %d got %v, want ErrFailed", i, err)
		}
	}
	w.Close()
}

// TestFirstRecordWakesIdleFlusher: under the group policy, with nothing
// else to wake the flusher (no Sync, GroupRecords out of reach), a record
// appended while the flusher is idle, waiting out GroupDelay or writing
// becomes durable within GroupDelay and a margin: Append's kick of an idle
// flusher is never lost.
func TestFirstRecordWakesIdleFlusher(t *testing.T) {
	o := smallOpts(t)
	o.GroupRecords, o.GroupDelay = 1<<30, 100*time.Microsecond
	w := mustOpen(t, t.TempDir(), o)
	defer w.Close()
	rng := rand.New(rand.NewPCG(21, 22))
	p := make([]byte, 64)
	for i := range 300 {
		var lsn uint64
		for range 1 + rng.IntN(3) {
			lsn = mustAppend(t, w, p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := w.WaitDurable(ctx, lsn)
		cancel()
		if err != nil {
			t.Fatalf("record %d (round %d) not durable without a Sync: %v", lsn, i, err)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond) // idle, or not yet
	}
}
