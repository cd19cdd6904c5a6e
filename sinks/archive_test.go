package sinks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/ops"
	"qstream/wal"
)

var archiveSymbols = []string{"AAPL", "BRK.B", "BTC-USD", "Ä-1"}

// archiveEvent is the i-th test event (i from 1), on symbol id 1+i%4.
func archiveEvent(i int) codec.Event {
	ev := codec.Event{TsNs: 1_700_000_000_000_000_000 + int64(i)*1_000_003, IngestNs: int64(i) * 7, Seq: uint64(i), IDHash: uint64(i) * 0x9e3779b97f4a7c15,
		Price: 100 + float64(i%97)/16, Volume: float64(i%13) + 0.25, Symbol: codec.Symbol(1 + i%len(archiveSymbols)), Source: 2, Kind: codec.KindTrade}
	if i%5 == 0 {
		ev.Kind, ev.Bid, ev.Ask, ev.Flags = codec.KindQuote, ev.Price-0.5, ev.Price+0.5, codec.FlagHasBid|codec.FlagHasAsk
	}
	return ev
}

func archiveTable(t testing.TB) *codec.SymbolTable {
	t.Helper()
	tab := codec.NewSymbolTable(64)
	for _, s := range archiveSymbols {
		if _, err := tab.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	return tab
}

func quietArchiveLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openArchiveReader opens path (an archive directory or one file) with a
// new symbol table.
func openArchiveReader(t *testing.T, path string) (*feeds.ArchiveReader, *codec.SymbolTable) {
	t.Helper()
	tab := codec.NewSymbolTable(64)
	r, err := feeds.OpenArchiveReader(path, feeds.ArchiveReaderOptions{Symbols: tab})
	if err != nil {
		t.Fatal(err)
	}
	return r, tab
}

// readArchive reads the n events of path (an archive directory or one of
// its files) back, as `replay --format archive` does, checking each (see
// readArchiveEvents).
func readArchive(t *testing.T, path string, first, n int) {
	t.Helper()
	if got := readArchiveEvents(t, path, first); got != n {
		t.Fatalf("%s: read %d events, want %d", path, got, n)
	}
}

// readArchiveEvents reads path to its end and returns how many events it
// read, checking event i (from first) against archiveEvent(i): every field
// equal but IngestNs (0), Flags (+FlagReplay) and the symbol (by name).
func readArchiveEvents(t *testing.T, path string, first int) int {
	t.Helper()
	r, tab := openArchiveReader(t, path)
	defer r.Close()
	var ev codec.Event
	got := 0
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("event %d: %v", first+got, err)
		}
		want := archiveEvent(first + got)
		if tab.Name(ev.Symbol) != archiveSymbols[want.Symbol-1] {
			t.Fatalf("event %d: symbol %q, want %q", first+got, tab.Name(ev.Symbol), archiveSymbols[want.Symbol-1])
		}
		want.Symbol, want.IngestNs, want.Flags = ev.Symbol, 0, want.Flags|codec.FlagReplay
		if ev != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", first+got, ev, want)
		}
		got++
	}
	return got
}

// checkContiguous checks that the complete files of dir cover 1..last
// without gap or overlap, and returns them.
func checkContiguous(t *testing.T, dir string, last uint64) []feeds.ArchiveFile {
	t.Helper()
	files, err := feeds.ListArchive(dir)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	for _, f := range files {
		if f.Partial {
			t.Fatalf("partial file %s left after Close", f.Path)
		}
		if f.First != next {
			t.Fatalf("%s starts at %d, want %d", f.Path, f.First, next)
		}
		next = f.Last + 1
	}
	if next-1 != last {
		t.Fatalf("files end at %d, want %d", next-1, last)
	}
	return files
}

// appendArchiveEvents appends archiveEvent(from) .. archiveEvent(to) to a.
func appendArchiveEvents(t *testing.T, a *Archive, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		ev := archiveEvent(i)
		if err := a.Append(&ev); err != nil {
			t.Fatal(err)
		}
	}
}

// writeTestArchive writes events 1..n to a new archive in dir with the
// options o and closes it.
func writeTestArchive(t *testing.T, dir string, o ArchiveOptions, n int) *Archive {
	t.Helper()
	a, err := OpenArchive(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	appendArchiveEvents(t, a, 1, n)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestArchiveRoundTripRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	const n = 1000
	a := writeTestArchive(t, dir, ArchiveOptions{MaxFileBytes: 8 << 10, Symbols: archiveTable(t), Logger: quietArchiveLog()}, n)
	st := a.Stats()
	files := checkContiguous(t, dir, n)
	// A record is 16 + 136 + len(name) bytes: 8 KiB holds about 50.
	if len(files) < n/60 || st.Files != uint64(len(files)) || st.Events != n || st.Last != n {
		t.Fatalf("%d files, stats %+v", len(files), st)
	}
	var onDisk int64
	for _, f := range files {
		fi, _ := os.Stat(f.Path)
		onDisk += fi.Size()
	}
	if uint64(onDisk) != st.Bytes {
		t.Fatalf("stats say %d bytes, the files hold %d", st.Bytes, onDisk)
	}
	t.Logf("%d events in %d files, %d bytes compressed (%.1f bytes/event)", n, len(files), onDisk, float64(onDisk)/n)
	readArchive(t, dir, 1, n)
	if s := string(a.AppendStatus(nil)); s != fmt.Sprintf(" events=%d files=%d bytes=%d", n, len(files), onDisk) {
		t.Fatalf("status %q", s)
	}
	// One file alone reads too.
	readArchive(t, files[1].Path, int(files[1].First), int(files[1].Last-files[1].First+1))
	// Reopening resumes after the last position.
	a, err := OpenArchive(dir, ArchiveOptions{Symbols: archiveTable(t), Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Last() != n {
		t.Fatalf("reopened at %d, want %d", a.Last(), n)
	}
	ev := archiveEvent(1)
	if err := a.AppendAt(n, &ev, nil); !errors.Is(err, ErrArchiveOrder) {
		t.Fatalf("AppendAt(last): %v, want ErrArchiveOrder", err)
	}
	if _, err := OpenArchive(dir, ArchiveOptions{}); err == nil {
		t.Fatal("a second writer opened the locked archive")
	}
}

func TestArchiveRotatesByAge(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenArchive(dir, ArchiveOptions{MaxFileAge: 100 * time.Millisecond, Symbols: archiveTable(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	appendArchiveEvents(t, a, 1, 10)
	if err := a.Sync(); err != nil || a.Stats().Files != 0 || a.Durable() != 10 {
		t.Fatalf("Sync before the age: %v, stats %+v", err, a.Stats())
	}
	time.Sleep(120 * time.Millisecond)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	files, _ := feeds.ListArchive(dir)
	if len(files) != 1 || files[0].Partial || files[0].First != 1 || files[0].Last != 10 {
		t.Fatalf("after MaxFileAge: %+v", files)
	}
}

func TestArchiveOptionsBounds(t *testing.T) {
	for _, o := range []ArchiveOptions{{MaxFileBytes: 100}, {MaxFileBytes: 8 << 30}, {MaxFileAge: time.Millisecond}, {MaxFileAge: 30 * 24 * time.Hour}} {
		if _, err := OpenArchive(t.TempDir(), o); err == nil {
			t.Errorf("OpenArchive accepted %+v", o)
		}
	}
	for raw, want := range map[string]string{
		"archive://data/arc?max_file_bytes=65536&max_file_age=1m&level=fastest": "data/arc",
		"archive:///var/arc": "/var/arc",
	} {
		u, _ := url.Parse(raw)
		dir, _, err := ArchiveURL(u)
		if err != nil || dir != want {
			t.Errorf("ArchiveURL(%s) = %q, %v; want %q", raw, dir, err, want)
		}
	}
	for _, raw := range []string{"archive://d?bogus=1", "archive://d?max_file_bytes=1", "archive://d?level=max", "archive://", "file://d"} {
		u, _ := url.Parse(raw)
		if _, _, err := ArchiveURL(u); err == nil {
			t.Errorf("ArchiveURL(%s) accepted it", raw)
		}
	}
}

// crash abandons a without finishing its file, as a killed process does.
func (a *Archive) crash() {
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	a.lock.Close()
	a.lock = nil
}

// TestArchiveCrashMidFile: a partial file cut at a random byte recovers
// every record that a Sync had made readable before the cut, and resuming
// from Last()+1 (as FollowWAL does from the WAL) leaves every position
// exactly once.
func TestArchiveCrashMidFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for iter := range 8 {
		dir := t.TempDir()
		open := func() (*Archive, error) {
			return OpenArchive(dir, ArchiveOptions{MaxFileBytes: 64 << 10, Symbols: archiveTable(t), Logger: quietArchiveLog()})
		}
		a, err := open()
		if err != nil {
			t.Fatal(err)
		}
		const n = 1500 // 64 KiB of records is ~400: three complete files and a partial
		type syncPoint struct {
			size int64
			last uint64
		}
		var syncs []syncPoint
		for i := 1; i <= n; i++ {
			ev := archiveEvent(i)
			if err := a.Append(&ev); err != nil {
				t.Fatal(err)
			}
			if i%37 == 0 {
				if err := a.Sync(); err != nil {
					t.Fatal(err)
				}
				if a.f != nil {
					fi, _ := a.f.Stat()
					syncs = append(syncs, syncPoint{fi.Size(), a.Last()})
				} else {
					syncs = nil // rotated: a new partial file
				}
			}
			if a.f == nil {
				syncs = nil
			}
		}
		partial := a.f.Name()
		complete := a.first - 1
		a.crash()
		fi, err := os.Stat(partial)
		if err != nil {
			t.Fatal(err)
		}
		cut := rng.Int64N(fi.Size() + 1)
		if err := os.Truncate(partial, cut); err != nil {
			t.Fatal(err)
		}
		want := complete // what a Sync made readable before the cut
		for _, s := range syncs {
			if s.size <= cut {
				want = max(want, s.last)
			}
		}
		// Before the restart, a reader reads the archive up to the cut,
		// quietly.
		readable := readArchiveEvents(t, dir, 1)
		if readable < int(want) {
			t.Fatalf("iteration %d: a reader of the crashed archive read %d events, want at least %d", iter, readable, want)
		}
		saved, _ := os.ReadFile(partial)
		a, err = open()
		if err != nil {
			t.Fatalf("iteration %d (cut %d of %d): %v", iter, cut, fi.Size(), err)
		}
		if iter%2 == 1 {
			// A crash during that recovery, after the rename and before the
			// partial file was removed: the next open finds both.
			a.crash()
			os.WriteFile(partial, saved, 0o644)
			if a, err = open(); err != nil {
				t.Fatal(err)
			}
		}
		if a.Last() < want || a.Last() > n {
			t.Fatalf("iteration %d: cut at %d of %d bytes: recovered up to %d, want at least %d", iter, cut, fi.Size(), a.Last(), want)
		}
		recovered := a.Last()
		appendArchiveEvents(t, a, int(a.Last())+1, n) // the source resends what followed
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		checkContiguous(t, dir, n)
		readArchive(t, dir, 1, n)
		t.Logf("iteration %d: cut at %d of %d bytes: recovered up to %d (at least %d), %d complete before", iter, cut, fi.Size(), recovered, want, complete)
	}
}

// rewriteArchiveFile decompresses path, lets edit change the stream, and
// compresses it back.
func rewriteArchiveFile(t *testing.T, path string, edit func([]byte)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(raw, nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	edit(plain)
	enc, _ := zstd.NewWriter(nil)
	if err := os.WriteFile(path, enc.EncodeAll(plain, nil), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveDamage: a record whose bytes changed is reported with its file
// and offset and the reading goes on; damaged compressed data ends the
// reading with the file named.
func TestArchiveDamage(t *testing.T) {
	dir := t.TempDir()
	const n = 200
	writeTestArchive(t, dir, ArchiveOptions{MaxFileBytes: 8 << 10, Symbols: archiveTable(t)}, n)
	files := checkContiguous(t, dir, n)
	// The third record of the second file: records are 16+136+len(name).
	f := files[1]
	off := int64(feeds.ArchiveHeaderSize)
	for p := f.First; p < f.First+2; p++ {
		ev := archiveEvent(int(p))
		off += int64(feeds.ArchiveRecordHeader + codec.FrameSize + len(archiveSymbols[ev.Symbol-1]))
	}
	rewriteArchiveFile(t, f.Path, func(b []byte) { b[off+60] ^= 0x10 }) // inside the frame's price
	r, _ := openArchiveReader(t, dir)
	var ev codec.Event
	good, bad := 0, 0
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		var re *feeds.RecordError
		if errors.As(err, &re) {
			bad++
			wantMsg := fmt.Sprintf("archive %s: offset %d: record checksum mismatch", f.Path, off)
			if re.Pos.Offset != off || !strings.Contains(err.Error(), wantMsg) || re.Reason() != codec.ReasonChecksum {
				t.Fatalf("damaged record reported as %v (offset %d, reason %s), want %q", err, re.Pos.Offset, re.Reason(), wantMsg)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		good++
	}
	r.Close()
	if good != n-1 || bad != 1 || r.Stats().Damaged != 1 {
		t.Fatalf("read %d good, %d bad; want %d and 1", good, bad, n-1)
	}

	// Damaged compressed bytes of a complete file: the reading stops there
	// with the file named.
	raw, _ := os.ReadFile(files[2].Path)
	raw[len(raw)/2] ^= 0xff
	os.WriteFile(files[2].Path, raw, 0o644)
	r, _ = openArchiveReader(t, dir)
	defer r.Close()
	for {
		err := r.Next(&ev)
		var re *feeds.RecordError
		if errors.As(err, &re) {
			continue // the first damage, or garbage decoded from the second
		}
		var ae *feeds.ArchiveError
		if errors.As(err, &ae) {
			if ae.File != files[2].Path {
				t.Fatalf("error names %s, want %s", ae.File, files[2].Path)
			}
			break
		}
		if err == io.EOF {
			t.Fatal("damaged compressed data read to the end without an error")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func benchArchiveAppend(b *testing.B, level zstd.EncoderLevel, evs []codec.Event) {
	a, err := OpenArchive(b.TempDir(), ArchiveOptions{Level: level, Symbols: archiveTable(b), Logger: quietArchiveLog()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := a.Append(&evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if a.Stats().Events != uint64(b.N) {
		b.Fatalf("%d events archived, want %d", a.Stats().Events, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(a.Stats().Bytes)/float64(b.N), "bytes/event")
}

// walWriter writes a WAL the way the engine does: a symbol record before
// the first event of each symbol, then event frames.
type walWriter struct {
	w      *wal.Writer
	logged map[codec.Symbol]bool
	buf    []byte
	lsnOf  map[int]uint64 // event index → LSN
}

func openTestWAL(t *testing.T, dir string) *walWriter {
	t.Helper()
	w, err := wal.Open(dir, wal.Options{SegmentSize: 64 << 10, MaxRecordSize: 4 << 10, BufferSize: 16 << 10, GroupRecords: 1 << 20, GroupDelay: time.Hour, OnFatal: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	return newWALWriter(w)
}

func newWALWriter(w *wal.Writer) *walWriter {
	return &walWriter{w: w, logged: map[codec.Symbol]bool{}, lsnOf: map[int]uint64{}}
}

func (ww *walWriter) event(t testing.TB, i int) {
	ev := archiveEvent(i)
	if !ww.logged[ev.Symbol] {
		if _, err := ww.w.Append(engine.RecordSymbol, engine.AppendSymbolRecord(nil, ev.Symbol, archiveSymbols[ev.Symbol-1])); err != nil {
			t.Fatal(err)
		}
		ww.logged[ev.Symbol] = true
	}
	if i%50 == 0 {
		if _, err := ww.w.Append(engine.RecordWatermark, engine.AppendWatermarkRecord(nil, 1, ev.TsNs, ev.Seq)); err != nil {
			t.Fatal(err)
		}
	}
	ww.buf = codec.AppendFrame(ww.buf[:0], &ev)
	lsn, err := ww.w.Append(engine.RecordEvent, ww.buf)
	if err != nil {
		t.Fatal(err)
	}
	ww.lsnOf[i] = lsn
}

// archiveByLSN reads dir and returns, per event index (by Seq), the
// position it was archived at; a duplicate fails the test.
func archiveByLSN(t *testing.T, dir string) map[int]uint64 {
	t.Helper()
	sc, err := feeds.NewArchiveScanner()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	files, _ := feeds.ListArchive(dir)
	got := map[int]uint64{}
	for _, f := range files {
		if err := sc.Reset(f.Path, f.First); err != nil {
			t.Fatal(err)
		}
		for {
			r, err := sc.Next()
			if err == io.EOF {
				break
			}
			var ae *feeds.ArchiveError
			if errors.As(err, &ae) && ae.Torn && f.Partial {
				break // the end of what the open file has flushed
			}
			if err != nil {
				t.Fatal(err)
			}
			var ev codec.Event
			if _, err := codec.DecodeFrame(r.Frame, &ev); err != nil {
				t.Fatal(err)
			}
			i := int(ev.Seq)
			if _, dup := got[i]; dup {
				t.Fatalf("event %d archived twice", i)
			}
			if want := archiveSymbols[archiveEvent(i).Symbol-1]; string(r.Name) != want {
				t.Fatalf("event %d archived with symbol %q, want %q", i, r.Name, want)
			}
			got[i] = r.Pos
		}
	}
	return got
}

// TestFollowWAL: the follower archives exactly the durable events, at their
// LSNs; after a crash of the archive (its partial file cut) and a restart
// it resumes from the WAL with every event archived once.
func TestFollowWAL(t *testing.T) {
	walDir, arcDir := t.TempDir(), t.TempDir()
	ww := openTestWAL(t, walDir)
	defer ww.w.Close()
	a, err := OpenArchive(arcDir, ArchiveOptions{MaxFileBytes: 16 << 10, Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	// The durable LSN as the follower sees it, held back by the test: the
	// WAL's own group commits would make everything durable at once.
	var limit atomic.Uint64
	f, err := NewWALFollower(walDir, a, FollowOptions{Durable: limit.Load, Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	for i := 1; i <= n; i++ {
		ww.event(t, i)
	}
	if err := ww.w.Sync(); err != nil {
		t.Fatal(err)
	}
	durable := ww.lsnOf[n/2]
	limit.Store(durable)
	if err := f.CatchUp(); err != nil {
		t.Fatal(err)
	}
	if a.Last() != durable || f.Events() != n/2 {
		t.Fatalf("archived %d events up to LSN %d, want the %d durable ones up to %d", f.Events(), a.Last(), n/2, durable)
	}
	limit.Store(ww.w.DurableLSN())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for a.Last() < ww.lsnOf[n] && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Events() != n || a.Durable() != ww.lsnOf[n] || f.RetainLSN() != ww.lsnOf[n]+1 {
		t.Fatalf("archived %d events up to %d (durable %d, retain %d), want %d up to %d", f.Events(), a.Last(), a.Durable(), f.RetainLSN(), n, ww.lsnOf[n])
	}
	// Crash: cut the partial file in the middle, then restart.
	partial := a.f.Name()
	a.crash()
	fi, _ := os.Stat(partial)
	os.Truncate(partial, fi.Size()/2)
	a, err = OpenArchive(arcDir, ArchiveOptions{MaxFileBytes: 16 << 10, Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	lost := ww.lsnOf[n] - a.Last()
	if err := FollowWAL(canceled(), walDir, a, FollowOptions{Durable: ww.w.DurableLSN, Logger: quietArchiveLog()}); err != nil {
		t.Fatal(err)
	}
	got := archiveByLSN(t, arcDir)
	if len(got) != n {
		t.Fatalf("%d events archived, want %d", len(got), n)
	}
	for i := 1; i <= n; i++ {
		if got[i] != ww.lsnOf[i] {
			t.Fatalf("event %d archived at %d, its LSN is %d", i, got[i], ww.lsnOf[i])
		}
	}
	t.Logf("crash lost the archive's last %d LSNs; the restart re-read them from the WAL", lost)
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestFollowWALGap: segments deleted before the follower read them are
// reported and counted, and the follower goes on from the oldest segment.
func TestFollowWALGap(t *testing.T) {
	walDir, arcDir := t.TempDir(), t.TempDir()
	ww := openTestWAL(t, walDir)
	defer ww.w.Close()
	const n = 2000 // 64 KiB segments: several
	for i := 1; i <= n; i++ {
		ww.event(t, i)
	}
	if err := ww.w.Sync(); err != nil {
		t.Fatal(err)
	}
	cut := ww.lsnOf[n/2]
	if _, err := ww.w.DeleteBefore(cut); err != nil {
		t.Fatal(err)
	}
	rep, err := wal.Inspect(walDir)
	if err != nil || rep.FirstLSN <= 1 {
		t.Fatalf("nothing deleted: %v %+v", err, rep)
	}
	a, err := OpenArchive(arcDir, ArchiveOptions{Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var logBuf bytes.Buffer
	f, err := NewWALFollower(walDir, a, FollowOptions{Durable: ww.w.DurableLSN, Symbols: archiveTable(t), Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CatchUp(); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if f.Gaps() != 1 || f.GapLSNs() != rep.FirstLSN-1 || !strings.Contains(logBuf.String(), "NOT archived") {
		t.Fatalf("gaps %d of %d LSNs (want 1 of %d); log %q", f.Gaps(), f.GapLSNs(), rep.FirstLSN-1, logBuf.String())
	}
	got := archiveByLSN(t, arcDir)
	for i := 1; i <= n; i++ {
		if lsn := ww.lsnOf[i]; (lsn >= rep.FirstLSN) != (got[i] == lsn) {
			t.Fatalf("event %d (LSN %d, WAL from %d): archived at %d", i, lsn, rep.FirstLSN, got[i])
		}
	}
	// The symbols of the deleted segments came from the table.
	if a.Last() != ww.lsnOf[n] {
		t.Fatalf("archived up to %d, want %d", a.Last(), ww.lsnOf[n])
	}
	// An archive ahead of its WAL is refused.
	if _, err := NewWALFollower(walDir, a, FollowOptions{Durable: func() uint64 { return 3 }}); err == nil {
		t.Fatal("a follower started with the archive ahead of the WAL")
	}
}

// BenchmarkArchiveAppend: events/s into the archive (zstd default level,
// one encoder goroutine), beside a Baseline of the same records written
// uncompressed to a buffered file.
func BenchmarkArchiveAppend(b *testing.B) {
	evs := make([]codec.Event, 4096)
	for i := range evs {
		evs[i] = archiveEvent(i + 1)
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run("Archive/"+level.String(), func(b *testing.B) { benchArchiveAppend(b, level, evs) })
	}
	b.Run("Baseline", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		bw := bufio.NewWriterSize(f, 64<<10)
		var rec []byte
		name := []byte("AAPL")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rec = feeds.AppendArchiveRecord(rec[:0], uint64(i+1), &evs[i%len(evs)], name)
			if _, err := bw.Write(rec); err != nil {
				b.Fatal(err)
			}
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		fi, _ := f.Stat()
		if fi.Size() < int64(b.N)*int64(len(rec)) {
			b.Fatalf("%d bytes written for %d records", fi.Size(), b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

type nopProcessor struct{}

func (nopProcessor) OnEvent(_ *codec.Event, _ int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	return dst, codec.ReasonNone
}
func (nopProcessor) OnWatermark(_ int64, _ uint64, dst []ops.Output) []ops.Output { return dst }
func (nopProcessor) AppendState(dst []byte) []byte                                { return dst }
func (nopProcessor) LoadState([]byte) error                                       { return nil }

// TestFollowWALRetainsSegments: with the follower's RetainLSN as the
// checkpoints' RetainWAL, a checkpoint deletes no segment the archive has
// not synced; once it has, the next checkpoint deletes them, and the
// archive holds every event without a gap.
func TestFollowWALRetainsSegments(t *testing.T) {
	dir := t.TempDir()
	w, err := engine.OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 64 << 10, MaxRecordSize: 4 << 10, BufferSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, err := OpenArchive(filepath.Join(dir, "archive"), ArchiveOptions{Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var fp atomic.Pointer[WALFollower] // set after Recover: until then keep every segment
	retain := func() uint64 {
		if f := fp.Load(); f != nil {
			return f.RetainLSN()
		}
		return 0
	}
	e, err := engine.New(engine.Config{Shards: 1, Durability: w, Logger: quietArchiveLog(),
		Processors:  func(int) (engine.Processor, error) { return nopProcessor{}, nil },
		Checkpoints: &engine.CheckpointConfig{Dir: filepath.Join(dir, "ckpt"), Keep: 1, RetainWAL: retain}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := NewWALFollower(filepath.Join(dir, "wal"), a, FollowOptions{Durable: w.DurableLSN, Symbols: e.Symbols(), Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	fp.Store(f)
	for _, s := range archiveSymbols {
		if _, err := e.Symbols().InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := e.NewPublisher("feed")
	const n = 3000 // ~160 bytes a record: several 64 KiB segments
	for i := 1; i <= n; i++ {
		ev := archiveEvent(i)
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	segs := len(w.Writer().Segments())
	if _, err := e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(w.Writer().Segments()); got != segs || segs < 3 {
		t.Fatalf("a checkpoint deleted segments the archive had not read: %d of %d left", got, segs)
	}
	if err := f.CatchUp(); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	f.durable.Store(a.Durable())
	if _, err := e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(w.Writer().Segments()); got >= segs {
		t.Fatalf("no segment deleted once archived: %d of %d left", got, segs)
	}
	p.Close()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.CatchUp(); err != nil {
		t.Fatal(err)
	}
	if f.Gaps() != 0 || f.Events() != n {
		t.Fatalf("%d gaps, %d events archived, want 0 and %d", f.Gaps(), f.Events(), n)
	}
}

// TestArchiveAppendAllocs: appending allocates nothing once a file is open.
func TestArchiveAppendAllocs(t *testing.T) {
	a, err := OpenArchive(t.TempDir(), ArchiveOptions{Symbols: archiveTable(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ev := archiveEvent(1)
	a.Append(&ev)
	if n := testing.AllocsPerRun(10000, func() {
		if err := a.Append(&ev); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Append", n)
	}
}

// BenchmarkFollowWAL: events/s archived by the follower catching up on a
// WAL (the engine's record mix: symbol records, a watermark every 50
// events), beside a Baseline that only reads the same WAL.
func BenchmarkFollowWAL(b *testing.B) {
	const n = 200_000
	walDir := b.TempDir()
	w, err := wal.Open(walDir, wal.Options{SegmentSize: 16 << 20, MaxRecordSize: 4 << 10, OnFatal: func(err error) { panic(err) }})
	if err != nil {
		b.Fatal(err)
	}
	ww := newWALWriter(w)
	for i := 1; i <= n; i++ {
		ww.event(b, i)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.Run("Follow", func(b *testing.B) {
		b.ReportAllocs()
		var events uint64
		for i := 0; i < b.N; i++ {
			a, err := OpenArchive(b.TempDir(), ArchiveOptions{Logger: quietArchiveLog()})
			if err != nil {
				b.Fatal(err)
			}
			f, err := NewWALFollower(walDir, a, FollowOptions{Logger: quietArchiveLog()})
			if err != nil {
				b.Fatal(err)
			}
			if err := f.CatchUp(); err != nil {
				b.Fatal(err)
			}
			if err := a.Close(); err != nil {
				b.Fatal(err)
			}
			if f.Events() != n {
				b.Fatalf("%d of %d events archived", f.Events(), n)
			}
			events += f.Events()
		}
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("Baseline", func(b *testing.B) {
		var events uint64
		for i := 0; i < b.N; i++ {
			r, err := wal.OpenReader(walDir, 0)
			if err != nil {
				b.Fatal(err)
			}
			for {
				rec, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if rec.Type == engine.RecordEvent {
					events++
				}
			}
			r.Close()
		}
		if events != uint64(b.N)*n {
			b.Fatalf("read %d events, want %d", events, uint64(b.N)*n)
		}
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	})
}
