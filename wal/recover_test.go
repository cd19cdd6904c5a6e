package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"qstream/codec"
)

// span is where a record lies on disk.
type span struct {
	lsn     uint64
	seg     string
	off     int64
	size    int64
	payload []byte
}

// buildWAL writes payloads with o, closes, and returns each record's span
// (from the Reader's Position) in LSN order.
func buildWAL(t testing.TB, dir string, o Options, payloads [][]byte) []span {
	t.Helper()
	w := mustOpen(t, dir, o)
	for _, p := range payloads {
		mustAppend(t, w, p)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []span
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seg, off := r.Position()
		out = append(out, span{lsn: rec.LSN, seg: filepath.Base(seg), off: off, size: int64(frameSize(len(rec.Payload))), payload: append([]byte(nil), rec.Payload...)})
	}
	if len(out) != len(payloads) {
		t.Fatalf("built %d records, read back %d", len(payloads), len(out))
	}
	return out
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkRecovered opens dir, checks it recovered exactly the first n records
// of spans, then appends one more and reads everything back.
func checkRecovered(t *testing.T, dir string, o Options, spans []span, n int) *Writer {
	t.Helper()
	w, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := w.LastLSN(); got != uint64(n) {
		w.Close()
		t.Fatalf("recovered to LSN %d, want %d", got, n)
	}
	return w
}

// TestTruncateEveryOffset cuts the WAL at every byte offset of its last
// three records (removing later segment files) and checks Open recovers to
// the last complete record, keeps a copy of the torn bytes, and appends
// correctly afterwards. One layout has all three records in the last
// segment, the other puts the last record alone in a new segment so that
// cuts also go through a sealed segment.
func TestTruncateEveryOffset(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	o := smallOpts(t)
	o.FS = noSyncFS{} // ~1,500 recoveries: the syncs are tested elsewhere
	layouts := map[string][][]byte{}
	var a [][]byte
	for i := 0; i < 40; i++ {
		a = append(a, randPayload(rng, 20+rng.IntN(180)))
	}
	layouts["same-segment"] = a
	// Fill segment 1 so that the last payload does not fit.
	var b [][]byte
	used := int64(segHeaderSize)
	for {
		p := randPayload(rng, 150+rng.IntN(100))
		if used+int64(frameSize(len(p)))+sealFrameSize > o.SegmentSize {
			break
		}
		b = append(b, p)
		used += int64(frameSize(len(p)))
	}
	b = append(b, randPayload(rng, 300))
	layouts["across-seal"] = b

	for name, payloads := range layouts {
		t.Run(name, func(t *testing.T) {
			pristine := t.TempDir()
			spans := buildWAL(t, pristine, o, payloads)
			segNames := []string{}
			for _, s := range spans {
				if !slices.Contains(segNames, s.seg) {
					segNames = append(segNames, s.seg)
				}
			}
			if name == "across-seal" && spans[len(spans)-1].seg == spans[len(spans)-2].seg {
				t.Fatal("layout did not put the last record in a new segment")
			}
			files := map[string][]byte{}
			for _, s := range segNames {
				files[s] = readFile(t, filepath.Join(pristine, s))
			}
			cuts := 0
			tail := spans[len(spans)-3:]
			for si, seg := range segNames {
				var lo, hi int64 = -1, 0
				for _, sp := range tail {
					if sp.seg == seg {
						if lo < 0 {
							lo = sp.off
						}
						hi = sp.off + sp.size
					}
				}
				if lo < 0 {
					continue
				}
				if si < len(segNames)-1 {
					hi += sealFrameSize // cuts through the seal too
				}
				for cut := lo; cut <= hi; cut++ {
					cuts++
					dir := copyDir(t, pristine)
					// Cut the stream: truncate this segment, remove later ones.
					if err := os.Truncate(filepath.Join(dir, seg), cut); err != nil {
						t.Fatal(err)
					}
					for _, s := range segNames[si+1:] {
						os.Remove(filepath.Join(dir, s))
					}
					complete, goodEnd := 0, int64(segHeaderSize)
					for _, sp := range spans {
						if slices.Index(segNames, sp.seg) < si || (sp.seg == seg && sp.off+sp.size <= cut) {
							complete++
							if sp.seg == seg {
								goodEnd = sp.off + sp.size
							}
						}
					}
					w := checkRecovered(t, dir, o, spans, complete)
					rec := w.Recovered()
					torn := files[seg][goodEnd:cut]
					if si < len(segNames)-1 && cut == hi {
						torn = nil // a whole seal: a crash before the next segment existed
					}
					if allZero(torn) {
						if rec.Torn != nil {
							t.Fatalf("cut %d: unexpected torn tail %+v", cut, rec.Torn)
						}
					} else {
						if rec.Torn == nil || rec.Torn.Offset != goodEnd {
							t.Fatalf("cut %s:%d: torn = %+v, want it at %d", seg, cut, rec.Torn, goodEnd)
						}
						kept := readFile(t, rec.Torn.CopyPath)
						if !bytes.Equal(kept, torn[:len(kept)]) || !allZero(torn[len(kept):]) || int64(len(kept)) != rec.Torn.Length {
							t.Fatalf("cut %d: torn copy of %d bytes does not match the cut bytes", cut, len(kept))
						}
						if !allZero(readFile(t, filepath.Join(dir, seg))[goodEnd:]) {
							t.Fatalf("cut %d: torn bytes still in the segment", cut)
						}
					}
					lsn, err := w.Append(TypeData, []byte("next"))
					if err != nil || lsn != uint64(complete+1) {
						t.Fatalf("cut %d: Append after recovery = %d, %v", cut, lsn, err)
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					lsns, ps, err := readAll(t, dir, 0)
					if err != nil || len(lsns) != complete+1 {
						t.Fatalf("cut %d: read %d records, %v; want %d", cut, len(lsns), err, complete+1)
					}
					for i := 0; i < complete; i++ {
						if !bytes.Equal(ps[i], spans[i].payload) {
							t.Fatalf("cut %d: payload %d differs after recovery", cut, i+1)
						}
					}
					if string(ps[complete]) != "next" {
						t.Fatalf("cut %d: appended record reads back as %q", cut, ps[complete])
					}
					os.RemoveAll(dir)
				}
			}
			t.Logf("%d cuts", cuts)
		})
	}
}

// TestTornTailVariants damages only the end of the log in the ways a crash
// can, and checks each is truncated with a copy kept, while damage that a
// crash cannot explain is refused.
func TestTornTailVariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	o := smallOpts(t)
	var payloads [][]byte
	for i := 0; i < 30; i++ {
		payloads = append(payloads, randPayload(rng, 50+rng.IntN(100)))
	}
	pristine := t.TempDir()
	spans := buildWAL(t, pristine, o, payloads)
	last := spans[len(spans)-1]
	prev := spans[len(spans)-2]
	end := last.off + last.size
	// forge returns a checksum-valid frame with the given LSN.
	forge := func(lsn uint64, p []byte) []byte {
		f := make([]byte, frameSize(len(p)))
		putFrame(f, lsn, TypeData, p)
		return f
	}
	type edit struct {
		off  int64
		data []byte
	}
	cases := []struct {
		name     string
		edits    []edit
		wantTorn int64 // offset of the torn tail; -1: refuse; 0: clean
		wantLSN  uint64
	}{
		{"garbage payload", []edit{{last.off + 30, []byte{1, 2, 3, 4}}}, last.off, last.lsn - 1},
		{"zeroed payload", []edit{{last.off + frameHeaderSize, make([]byte, last.size-frameHeaderSize)}}, last.off, last.lsn - 1},
		{"partial header", []edit{{last.off + 10, make([]byte, last.size-10)}}, last.off, last.lsn - 1},
		{"zero header then bytes", []edit{{last.off, make([]byte, frameHeaderSize)}}, last.off, last.lsn - 1},
		{"garbage after the last record", []edit{{end + 40, []byte("garbage")}}, end, last.lsn},
		{"half of a next record", []edit{{end, forge(last.lsn+1, []byte("0123456789abcdef"))[:30]}}, end, last.lsn},
		{"two bad records at the end", []edit{{prev.off + 5, []byte{0xff}}, {last.off + 5, []byte{0xff}}}, prev.off, prev.lsn - 1},
		{"valid record with a wrong LSN after the end", []edit{{end, forge(last.lsn+5, []byte("x"))}}, -1, 0},
		{"duplicate LSN after the end", []edit{{end, forge(last.lsn, []byte("x"))}}, -1, 0},
		{"bad record followed by a valid one", []edit{{prev.off + 30, []byte{9}}}, -1, 0},
		{"hole then a valid next record", []edit{{end + 64, forge(last.lsn+1, []byte("late"))}}, -1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, pristine)
			path := filepath.Join(dir, last.seg)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.edits {
				if _, err := f.WriteAt(e.data, e.off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			before := readFile(t, path)
			rep, err := Inspect(dir)
			if err != nil {
				t.Fatal(err)
			}
			w, err := Open(dir, o)
			if c.wantTorn < 0 {
				var ce *CorruptionError
				if !errors.As(err, &ce) || ce.Segment != path {
					t.Fatalf("Open = %v, want a *CorruptionError for %s", err, path)
				}
				if rep.Corruption == nil || *rep.Corruption != *ce {
					t.Fatalf("Inspect reported %v, Open %v", rep.Corruption, ce)
				}
				if !bytes.Equal(before, readFile(t, path)) {
					t.Fatal("a refused Open modified the segment")
				}
				// The Reader stops at the first zero header of the last
				// segment without looking further (documented); other
				// damage it refuses like Open.
				_, _, rerr := readAll(t, dir, 0)
				if c.name == "hole then a valid next record" {
					if rerr != nil {
						t.Fatalf("Reader = %v, want a clean end at the zero header", rerr)
					}
				} else if !errors.As(rerr, &ce) {
					t.Fatalf("Reader = %v, want corruption", rerr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer w.Close()
			rec := w.Recovered()
			if w.LastLSN() != c.wantLSN {
				t.Fatalf("recovered to %d, want %d", w.LastLSN(), c.wantLSN)
			}
			if rec.Torn == nil || rec.Torn.Offset != c.wantTorn || rep.Torn == nil || rep.Torn.Offset != c.wantTorn {
				t.Fatalf("torn = %+v (Inspect %+v), want offset %d", rec.Torn, rep.Torn, c.wantTorn)
			}
			kept := readFile(t, rec.Torn.CopyPath)
			if !bytes.Equal(kept, before[c.wantTorn:c.wantTorn+int64(len(kept))]) || kept[len(kept)-1] == 0 {
				t.Fatal("torn copy differs from the bytes cut")
			}
			if !allZero(readFile(t, path)[c.wantTorn:]) {
				t.Fatal("segment not cut back")
			}
			if rep2, _ := Inspect(dir); len(rep2.TornCopies) != 1 || rep2.Torn != nil || rep2.Corruption != nil {
				t.Fatalf("Inspect after recovery: %+v", rep2)
			}
		})
	}
}

// flipTarget classifies a byte that a bit flip may hit and the offset Open
// must name for it.
type flipTarget struct {
	seg    string
	pos    int64
	report int64 // the offset the CorruptionError must carry
	kind   string
}

// TestBitFlipsDetected flips 1,000 random bits outside the tail (every byte
// of sealed segments - headers, records, padding, seals, the zeros after the
// seal - and the last segment's header and all but its last record) and
// checks that Open, Inspect and the Reader all refuse, naming the segment
// and the offset of the damaged record. Damage to the last record of the
// last segment is indistinguishable from a torn write and is tested in
// TestTornTailVariants.
func TestBitFlipsDetected(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	o := smallOpts(t)
	var payloads [][]byte
	for i := 0; i < 400; i++ {
		n := rng.IntN(240)
		if i%50 == 0 {
			n = 1000 + rng.IntN(1000)
		}
		payloads = append(payloads, randPayload(rng, n))
	}
	dir := t.TempDir()
	spans := buildWAL(t, dir, o, payloads)
	var segs []string
	bySeg := map[string][]span{}
	for _, s := range spans {
		if len(bySeg[s.seg]) == 0 {
			segs = append(segs, s.seg)
		}
		bySeg[s.seg] = append(bySeg[s.seg], s)
	}
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	var targets, special []flipTarget
	for i, seg := range segs {
		isLast := i == len(segs)-1
		size := int64(len(readFile(t, filepath.Join(dir, seg))))
		for p := int64(0); p < segHeaderSize; p++ {
			ft := flipTarget{seg, p, 0, "segment header"}
			targets = append(targets, ft)
			special = append(special, ft)
		}
		recs := bySeg[seg]
		if isLast {
			recs = recs[:len(recs)-1]
		}
		for _, r := range recs {
			for p := r.off; p < r.off+r.size; p++ {
				kind := "record header"
				switch {
				case p >= r.off+frameHeaderSize+int64(len(r.payload)):
					kind = "padding"
				case p >= r.off+frameHeaderSize:
					kind = "payload"
				}
				ft := flipTarget{seg, p, r.off, kind}
				targets = append(targets, ft)
				if kind == "padding" {
					special = append(special, ft)
				}
			}
		}
		if !isLast {
			lr := recs[len(recs)-1]
			seal := lr.off + lr.size
			for p := seal; p < seal+sealFrameSize; p++ {
				ft := flipTarget{seg, p, seal, "seal"}
				targets = append(targets, ft)
				special = append(special, ft)
			}
			for p := seal + sealFrameSize; p < size; p++ {
				ft := flipTarget{seg, p, p, "zeros after seal"}
				targets = append(targets, ft)
				special = append(special, ft)
			}
		}
	}
	const flips = 1000
	counts := map[string]int{}
	for i := 0; i < flips; i++ {
		var ft flipTarget
		if i%4 == 0 { // a quarter aimed at headers, seals, padding and zeros
			ft = special[rng.IntN(len(special))]
		} else {
			ft = targets[rng.IntN(len(targets))]
		}
		counts[ft.kind]++
		path := filepath.Join(dir, ft.seg)
		bit := byte(1) << rng.IntN(8)
		flip(t, path, ft.pos, bit)
		_, err := Open(dir, o)
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.Segment != path || ce.Offset != ft.report || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip %d (%s, %s byte %d bit %#x): Open = %v; want corruption in %s at %d", i, ft.kind, ft.seg, ft.pos, bit, err, path, ft.report)
		}
		var cerr *codec.Error
		if !errors.As(err, &cerr) || cerr.Reason == codec.ReasonNone {
			t.Fatalf("flip %d: no codec.Reason in %v", i, err)
		}
		rep, err := Inspect(dir)
		if err != nil || rep.Corruption == nil || *rep.Corruption != *ce {
			t.Fatalf("flip %d: Inspect = %+v, %v; Open said %v", i, rep.Corruption, err, ce)
		}
		if _, _, err := readAll(t, dir, 0); !errors.As(err, &ce) || ce.Segment != path || ce.Offset != ft.report {
			t.Fatalf("flip %d (%s): Reader = %v", i, ft.kind, err)
		}
		flip(t, path, ft.pos, bit)
	}
	t.Logf("flips by target: %v", counts)
	// Restored: everything reads and opens again.
	w := mustOpen(t, dir, o)
	if w.LastLSN() != uint64(len(payloads)) || w.Recovered().Torn != nil {
		t.Fatalf("after restoring: LastLSN %d, torn %+v", w.LastLSN(), w.Recovered().Torn)
	}
	w.Close()
}

func flip(t testing.TB, path string, pos int64, bit byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= bit
	if _, err := f.WriteAt(b[:], pos); err != nil {
		t.Fatal(err)
	}
}

// TestOpenStructure covers directory-level damage and crash states.
func TestOpenStructure(t *testing.T) {
	o := smallOpts(t)
	mk := func(t *testing.T) (string, []span) {
		dir := t.TempDir()
		var ps [][]byte
		for i := 0; i < 60; i++ {
			ps = append(ps, bytes.Repeat([]byte{byte(i + 1)}, 700))
		}
		return dir, buildWAL(t, dir, o, ps)
	}
	t.Run("missing middle segment", func(t *testing.T) {
		dir, spans := mk(t)
		segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		if len(segs) < 3 {
			t.Fatalf("%d segments", len(segs))
		}
		os.Remove(segs[1])
		_, err := Open(dir, o)
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.Segment != segs[2] || ce.Offset != 0 || ce.Reason != codec.ReasonSequenceGap {
			t.Fatalf("Open = %v", err)
		}
		if _, _, err := readAll(t, dir, 0); !errors.As(err, &ce) {
			t.Fatalf("Reader = %v", err)
		}
		_ = spans
	})
	t.Run("misnamed segment", func(t *testing.T) {
		dir, _ := mk(t)
		segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		last := segs[len(segs)-1]
		first, _ := parseSegmentName(filepath.Base(last))
		os.Rename(last, filepath.Join(dir, segmentName(first+1)))
		var ce *CorruptionError
		if _, err := Open(dir, o); !errors.As(err, &ce) || ce.Reason != codec.ReasonSequenceGap {
			t.Fatalf("Open = %v", err)
		}
	})
	t.Run("unfinished segment creation", func(t *testing.T) {
		dir, spans := mk(t)
		tmp := filepath.Join(dir, segmentName(999)+".tmp")
		os.WriteFile(tmp, []byte("partial"), 0o644)
		w := mustOpen(t, dir, o)
		defer w.Close()
		if _, err := os.Stat(tmp); !os.IsNotExist(err) || len(w.Recovered().RemovedTemp) != 1 {
			t.Fatalf("temp file not removed: %v", w.Recovered())
		}
		if w.LastLSN() != uint64(len(spans)) {
			t.Fatalf("LastLSN %d", w.LastLSN())
		}
	})
	t.Run("crash between seal and next segment", func(t *testing.T) {
		dir, spans := mk(t)
		// Remove the newest segment and restore its predecessor's tail: it
		// is then sealed with no successor, as after a crash in rotate.
		segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		last := segs[len(segs)-1]
		first, _ := parseSegmentName(filepath.Base(last))
		os.Remove(last)
		w := mustOpen(t, dir, o)
		if w.LastLSN() != first-1 {
			t.Fatalf("LastLSN %d, want %d", w.LastLSN(), first-1)
		}
		if _, err := os.Stat(last); err != nil {
			t.Fatalf("next segment not recreated: %v", err)
		}
		lsn := mustAppend(t, w, []byte("after"))
		w.Close()
		lsns, _, err := readAll(t, dir, 0)
		if err != nil || lsns[len(lsns)-1] != lsn || lsn != first {
			t.Fatalf("read %v (%v); appended %d", len(lsns), err, lsn)
		}
		_ = spans
	})
	t.Run("larger MaxRecordSize starts a new segment", func(t *testing.T) {
		dir, spans := mk(t)
		o2 := o
		o2.MaxRecordSize = 4 << 10
		w := mustOpen(t, dir, o2)
		before := len(w.Segments())
		big := bytes.Repeat([]byte{1}, 3000)
		lsn := mustAppend(t, w, big)
		w.Close()
		w = mustOpen(t, dir, o2)
		if len(w.Segments()) != before+1 || w.LastLSN() != lsn {
			t.Fatalf("segments %d -> %d, LastLSN %d", before, len(w.Segments()), w.LastLSN())
		}
		w.Close()
		_, ps, err := readAll(t, dir, uint64(len(spans)))
		if err != nil || len(ps) != 2 || !bytes.Equal(ps[1], big) {
			t.Fatalf("read %d, %v", len(ps), err)
		}
	})
	t.Run("empty directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new", "wal")
		w := mustOpen(t, dir, o)
		if w.LastLSN() != 0 || w.FirstLSN() != 1 || w.DurableLSN() != 0 {
			t.Fatalf("fresh WAL: last %d first %d durable %d", w.LastLSN(), w.FirstLSN(), w.DurableLSN())
		}
		w.Close()
		lsns, _, err := readAll(t, dir, 0)
		if err != nil || len(lsns) != 0 {
			t.Fatalf("%v %v", lsns, err)
		}
	})
}

func ExampleInspect() {
	dir, err := os.MkdirTemp("", "wal-inspect")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := Open(dir, Options{SegmentSize: 1 << 20, MaxRecordSize: 64 << 10})
	if err != nil {
		panic(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := w.Append(TypeData, fmt.Appendf(nil, "tick %d", i)); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	rep, err := Inspect(dir)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(rep.Segments), rep.FirstLSN, rep.LastLSN, rep.Records, rep.Corruption == nil)
	// Output: 1 1 3 3 true
}
