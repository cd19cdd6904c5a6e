package wal

import (
	"qstream/internal/testvectors"

	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testdataDir is the shared third-party data beside the repository
// (/work/main/wal -> /work/shared/testdata).
var testdataDir = testvectors.Dir()

// realLines returns the lines of a shared test data file, failing clearly
// when the data is absent.
func realLines(t testing.TB, rel string) [][]byte {
	t.Helper()
	path := filepath.Join(testdataDir, rel)
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("shared test data %s is missing (expected beside the repository, see ../shared/testdata/SOURCES.md): %v", path, err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRealDataReplayFromTime writes the 9,999 real Binance trades as
// payloads, reads them back, and replays from an event time with SkipUntil,
// decoding the time from the payload as a caller would.
func TestRealDataReplayFromTime(t *testing.T) {
	lines := realLines(t, "trades/binance_futures_btcusdt_trades.csv")[1:] // skip the CSV header
	dir := t.TempDir()
	o := smallOpts(t)
	o.SegmentSize = 256 << 10
	w := mustOpen(t, dir, o)
	for _, l := range lines {
		mustAppend(t, w, l)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, ps, err := readAll(t, dir, 0)
	if err != nil || len(ps) != len(lines) {
		t.Fatalf("read %d of %d (%v)", len(ps), len(lines), err)
	}
	for i := range ps {
		if !bytes.Equal(ps[i], lines[i]) {
			t.Fatalf("record %d differs", i+1)
		}
	}
	tsOf := func(p []byte) int64 { // field 3: exchange timestamp in µs
		f := strings.Split(string(p), ",")
		v, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("bad timestamp in %q", p)
		}
		return v
	}
	for _, frac := range []int{0, 1, 2, 5, 9} {
		from := tsOf(lines[frac*(len(lines)-1)/9])
		want := -1
		for i, l := range lines {
			if tsOf(l) >= from {
				want = i
				break
			}
		}
		r, err := OpenReader(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SkipUntil(func(rec Record) bool { return tsOf(rec.Payload) >= from }); err != nil {
			t.Fatal(err)
		}
		rec, err := r.Next()
		if err != nil || rec.LSN != uint64(want+1) || !bytes.Equal(rec.Payload, lines[want]) {
			t.Fatalf("replay from %d: got LSN %d (%v), want %d", from, rec.LSN, err, want+1)
		}
		n := 1
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != len(lines)-want {
			t.Fatalf("replay from %d returned %d records, want %d", from, n, len(lines)-want)
		}
		r.Close()
	}
	r, _ := OpenReader(dir, 0)
	if err := r.SkipUntil(func(Record) bool { return false }); err != io.EOF {
		t.Fatalf("SkipUntil without a match = %v, want io.EOF", err)
	}
}

// TestReaderFromLSNAtBoundaries opens readers at every LSN around segment
// boundaries.
func TestReaderFromLSNAtBoundaries(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(t)
	var payloads [][]byte
	for i := 0; i < 120; i++ {
		payloads = append(payloads, bytes.Repeat([]byte{byte(i)}, 300+i))
	}
	spans := buildWAL(t, dir, o, payloads)
	for i := 1; i < len(spans); i++ {
		if spans[i].seg == spans[i-1].seg {
			continue
		}
		for _, from := range []uint64{spans[i].lsn - 1, spans[i].lsn, spans[i].lsn + 1} {
			lsns, ps, err := readAll(t, dir, from)
			if err != nil || len(lsns) == 0 || lsns[0] != from || !bytes.Equal(ps[0], payloads[from-1]) {
				t.Fatalf("from %d: first LSN %v (%v)", from, lsns[:min(1, len(lsns))], err)
			}
			if lsns[len(lsns)-1] != uint64(len(payloads)) {
				t.Fatalf("from %d: last LSN %d", from, lsns[len(lsns)-1])
			}
		}
	}
	r, err := OpenReader(dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := r.Next()
	seg, off := r.Position()
	if rec.LSN != 7 || filepath.Base(seg) != spans[6].seg || off != spans[6].off {
		t.Fatalf("Position = %s:%d, want %s:%d", seg, off, spans[6].seg, spans[6].off)
	}
	r.Close()
	if _, err := r.Next(); err == nil {
		t.Fatal("Next after Close succeeded")
	}
	if _, err := OpenReader(filepath.Join(dir, "nope"), 0); err == nil {
		t.Fatal("OpenReader on a missing directory succeeded")
	}
}

// TestReaderNextAllocs: Next allocates nothing per record.
func TestReaderNextAllocs(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, Options{SegmentSize: 8 << 20, OnFatal: func(err error) { t.Error(err) }})
	p := make([]byte, 128)
	for i := 0; i < 20000; i++ {
		mustAppend(t, w, p)
	}
	w.Close()
	r, err := OpenReader(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil { // opens the segment
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(10000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("Reader.Next allocates %.2f times per record", allocs)
	}
}

func TestInspectReport(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(t)
	var payloads [][]byte
	for i := 0; i < 50; i++ {
		payloads = append(payloads, bytes.Repeat([]byte{1}, 900))
	}
	spans := buildWAL(t, dir, o, payloads)
	rep, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.FirstLSN != 1 || rep.LastLSN != 50 || rep.Records != 50 || rep.Corruption != nil || rep.Torn != nil {
		t.Fatalf("report %+v", rep)
	}
	var sum int64
	for i, s := range rep.Segments {
		sum += s.Records
		if s.Sealed != (i < len(rep.Segments)-1) || s.Size != o.SegmentSize || s.Capacity != o.SegmentSize {
			t.Fatalf("segment %d: %+v", i, s)
		}
		if i > 0 && s.FirstLSN != rep.Segments[i-1].LastLSN+1 {
			t.Fatalf("segment %d starts at %d after %d", i, s.FirstLSN, rep.Segments[i-1].LastLSN)
		}
	}
	if last := spans[len(spans)-1]; rep.Segments[len(rep.Segments)-1].Used != last.off+last.size || sum != 50 {
		t.Fatalf("used %d, want %d; records %d", rep.Segments[len(rep.Segments)-1].Used, last.off+last.size, sum)
	}
	// Damage a middle segment: the text report names it.
	flip(t, filepath.Join(dir, spans[10].seg), spans[10].off+40, 1)
	rep, _ = Inspect(dir)
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"LSN 1..50", "CORRUPT", spans[10].seg, "offset " + strconv.FormatInt(spans[10].off, 10), "status: CORRUPT"} {
		if !strings.Contains(out, want) {
			t.Fatalf("report lacks %q:\n%s", want, out)
		}
	}
	var ce *CorruptionError
	if !errors.As(error(rep.Corruption), &ce) || ce.Offset != spans[10].off {
		t.Fatalf("corruption %+v", rep.Corruption)
	}
}
