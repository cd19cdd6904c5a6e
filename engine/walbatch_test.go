package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/codec"
	"qstream/wal"
)

func randomBatchEvent(rng *rand.Rand) codec.Event {
	ev := codec.Event{Kind: codec.KindTrade + codec.Kind(rng.IntN(3)), Status: codec.Status(rng.IntN(3)), Flags: codec.Flags(rng.Uint32()),
		Symbol: codec.Symbol(rng.IntN(1 << 20))}
	if rng.IntN(4) == 0 {
		ev.TextLen = uint32(1 + rng.IntN(1<<20))
	}
	for i := range codec.EventWords(&ev) {
		switch rng.IntN(6) {
		case 0:
			codec.EventWords(&ev)[i] = rng.Uint64()
		case 1:
			codec.EventWords(&ev)[i] = math.Float64bits(math.Copysign(0, -1))
		case 2:
			codec.EventWords(&ev)[i] = uint64(1_700_000_000_000_000_000 + rng.Int64N(1e12))
		case 3:
			codec.EventWords(&ev)[i] = math.Float64bits(randomDecimal(rng))
		}
	}
	if rng.IntN(3) == 0 { // the id of a feed whose ids are its offsets
		ev.IDHash = codec.HashID(strconv.AppendUint(nil, ev.Seq, 10))
	}
	return ev
}

// randomDecimal is a price or size as a feed quotes it: up to 8 places,
// of any magnitude a float64 holds exactly enough, sometimes a neighbour
// of one (no short decimal reads back as it).
func randomDecimal(rng *rand.Rand) float64 {
	m := rng.Uint64N(1 << (1 + rng.IntN(53)))
	f := float64(m) / pow10[rng.IntN(decimalMaxExp+1)]
	switch rng.IntN(8) {
	case 0:
		f = math.Nextafter(f, math.Inf(1))
	case 1:
		f = math.Nextafter(f, 0)
	}
	return f
}

// decimalOf agrees with its definition (decimalRef: strconv's shortest
// representation) on prices and sizes of every magnitude and places,
// their float neighbours, the bounds and the floats that are no decimal.
func TestDecimalOf(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	vals := []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), -1, -189.23, 5e-324, 1e-8, 1.5e-8, 1e-9,
		189.23, 300, 0.1, 0.3, 1.0 / 3, 0.00012345, 0.000123456789, 99999999.99999999, 123456789.5,
		decimalMax, math.Nextafter(decimalMax, 0), math.Nextafter(decimalMax, math.Inf(1)), math.Trunc(decimalMax) + 1,
		0x1p53, 0x1p53 - 1, 0x1p53 + 2, math.MaxFloat64}
	for range 200000 {
		vals = append(vals, randomDecimal(rng), math.Float64frombits(rng.Uint64()), rng.Float64()*1000)
	}
	decimals := 0
	for _, f := range vals {
		m, e, ok := decimalOf(f)
		rm, re, rok := decimalRef(f)
		if m != rm || e != re || ok != rok {
			t.Fatalf("decimalOf(%v = %#x) = %d, %d, %v; want %d, %d, %v", f, math.Float64bits(f), m, e, ok, rm, re, rok)
		}
		if ok {
			decimals++
			if got := float64(m) / pow10[e]; math.Float64bits(got) != math.Float64bits(f) {
				t.Fatalf("decimalOf(%v) = %d/10^%d, which is %v", f, m, e, got)
			}
		}
	}
	if decimals < len(vals)/6 { // a third of them are randomDecimal, and half of those
		t.Fatalf("only %d of %d values were decimals: the test does not reach the decimal path", decimals, len(vals))
	}
	// What a synthetic trade and quote take, and a raw float.
	var b [batchEventMax]byte
	for _, c := range []struct {
		f    float64
		size int
	}{{189.23, 3}, {300, 2}, {0.00012345, 3}, {1.0 / 3, 9}} {
		if n := putDecimal(&b, 0, math.Float64bits(c.f)); n != c.size {
			t.Errorf("%v takes %d bytes, want %d", c.f, n, c.size)
		}
	}
}

// Version 1 batches (every fixed word 8 bytes), which WALs written before
// version 2 hold, decode to the events they were written from.
func TestEventBatchReadsVersion1(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	b := beginBatch(nil, 9)
	b[0] = batchVersionV1
	var prev batchPrev
	var evs []codec.Event
	for range 500 {
		ev := randomBatchEvent(rng)
		evs = append(evs, ev)
		b = appendBatchEventRefV(b, &prev, &ev, batchVersionV1)
	}
	finishBatch(b, len(evs))
	k := 0
	if err := DecodeEventBatch(b, func(ev *codec.Event) error {
		want := evs[k]
		want.Source = 9
		if *ev != want {
			t.Fatalf("event %d: got %+v, want %+v", k, *ev, want)
		}
		k++
		return nil
	}); err != nil || k != len(evs) {
		t.Fatalf("%d of %d decoded: %v", k, len(evs), err)
	}
}

// A batch of events survives encoding bit for bit (zero words, -0, NaN
// payloads, times and offsets going backwards), with the batch's source.
func TestEventBatchRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 500 {
		n := 1 + rng.IntN(300)
		evs := make([]codec.Event, n)
		b := beginBatch(nil, 7)
		var prev batchPrev
		for i := range evs {
			evs[i] = randomBatchEvent(rng)
			b = appendBatchEvent(b, &prev, &evs[i])
		}
		finishBatch(b, n)
		k := 0
		err := DecodeEventBatch(b, func(ev *codec.Event) error {
			want := evs[k]
			want.Source = 7
			if string(codec.AppendFrame(nil, ev)) != string(codec.AppendFrame(nil, &want)) {
				t.Fatalf("round %d event %d: got %+v, want %+v", round, k, *ev, want)
			}
			k++
			return nil
		})
		if err != nil || k != n {
			t.Fatalf("round %d: %d of %d decoded: %v", round, k, n, err)
		}
	}
	trade := codec.Event{Kind: codec.KindTrade, TsNs: 1_700_000_000_000_000_000, IngestNs: 55, Seq: 1, IDHash: 99, Price: 101.5, Volume: 2, Symbol: 3}
	b := beginBatch(nil, 1)
	var prev batchPrev
	for i := range 100 {
		ev := trade
		ev.TsNs += int64(i) * 1000
		ev.Seq += uint64(i)
		b = appendBatchEvent(b, &prev, &ev)
	}
	if per := (len(b) - batchHeader) / 100; per > 22 { // 8 of them the id
		t.Fatalf("a trade takes %d bytes in a batch", per)
	}
	// With its offset as its id (the durable synthetic feed, JetStream's
	// stream sequences), the id takes no bytes.
	b = beginBatch(b[:0], 1)
	prev = batchPrev{}
	for i := range 100 {
		ev := trade
		ev.TsNs += int64(i) * 1000
		ev.Seq += uint64(i)
		ev.IDHash = codec.HashID(strconv.AppendUint(nil, ev.Seq, 10))
		b = appendBatchEvent(b, &prev, &ev)
	}
	if per := (len(b) - batchHeader) / 100; per > 13 {
		t.Fatalf("a trade with its offset as id takes %d bytes in a batch", per)
	}
	buf := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(100, func() {
		buf = beginBatch(buf[:0], 1)
		prev = batchPrev{}
		buf = appendBatchEvent(buf, &prev, &trade)
	}); a != 0 {
		t.Fatalf("appendBatchEvent allocates: %v", a)
	}
}

// A batch that is cut short or carries garbage is refused, never half read
// as something else.
func TestEventBatchRejectsDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	b := beginBatch(nil, 2)
	var prev batchPrev
	for range 20 {
		ev := randomBatchEvent(rng)
		b = appendBatchEvent(b, &prev, &ev)
	}
	finishBatch(b, 20)
	for n := 0; n < len(b); n++ {
		if err := DecodeEventBatch(b[:n], func(*codec.Event) error { return nil }); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("cut to %d bytes: %v", n, err)
		}
	}
	if err := DecodeEventBatch(append(bytes.Clone(b), 0), func(*codec.Event) error { return nil }); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("a trailing byte: %v", err)
	}
}

func FuzzEventBatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	b := beginBatch(nil, 3)
	var prev batchPrev
	for range 5 {
		ev := randomBatchEvent(rng)
		b = appendBatchEvent(b, &prev, &ev)
	}
	finishBatch(b, 5)
	f.Add(b)
	f.Fuzz(func(t *testing.T, p []byte) {
		var evs []codec.Event
		if err := DecodeEventBatch(p, func(ev *codec.Event) error { evs = append(evs, *ev); return nil }); err != nil {
			return
		}
		// What decodes re-encodes to the same bytes (a version 1 batch by
		// the version 1 transcription).
		again := beginBatch(nil, int(p[2])|int(p[3])<<8)
		again[0] = p[0]
		var prev batchPrev
		for i := range evs {
			if p[0] == batchVersionV1 {
				again = appendBatchEventRefV(again, &prev, &evs[i], batchVersionV1)
			} else {
				again = appendBatchEvent(again, &prev, &evs[i])
			}
		}
		finishBatch(again, len(evs))
		if !bytes.Equal(again, p) {
			t.Fatalf("%x decodes to %d events that encode as %x", p, len(evs), again)
		}
	})
}

// A WAL written partly one record per event (an older build, or
// no WALBatches) and partly in batches recovers to the uninterrupted
// run's outputs.
func TestRecoverMixedEventRecords(t *testing.T) {
	evs := testEvents(64*60, 16, 12)
	want, _ := referenceRun(t, evs)
	dir := t.TempDir()
	out := &memOutput{}
	for inc, perEvent := range []bool{true, false, true, false} {
		w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(Config{Shards: 2, Symbols: codec.NewSymbolTable(64), Processors: pipelineFactory(t), Output: out, Durability: w,
			Checkpoints: &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}, DedupHorizon: 4096, WALBatches: !perEvent,
			Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Recover(context.Background()); err != nil {
			t.Fatalf("incarnation %d: %v", inc, err)
		}
		internSymbols(t, e, 16)
		off, _ := e.SourceOffset("feed")
		p, _ := e.NewPublisher("feed")
		to := min(len(evs), int(off)+64*15)
		publishRange(t, p, evs, int(off), to)
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		if to == len(evs) {
			p.Close()
			stop(t, e)
			w.Close()
			break
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = e.Stop(ctx) // a crash: no final checkpoint
		w.Close()
	}
	got, dups := byKey(t, out.all())
	if dups != 0 || len(got) != len(want) {
		t.Fatalf("%d outputs (%d duplicates), want %d", len(got), dups, len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameOutput(g, w) {
			t.Fatalf("output %x: got %+v, want %+v", k, g, w)
		}
	}
}

// appendBatchEventRef is the batch event encoding (version 2) transcribed
// plainly from the format (walbatch.go): the oracle of appendBatchEvent.
// Its decimals come from strconv's shortest representation, not from
// decimalOf's arithmetic.
func appendBatchEventRef(dst []byte, prev *batchPrev, ev *codec.Event) []byte {
	return appendBatchEventRefV(dst, prev, ev, batchVersion)
}

func appendBatchEventRefV(dst []byte, prev *batchPrev, ev *codec.Event, version int) []byte {
	words := codec.EventWords(ev)
	var mask uint16
	for i, w := range words {
		if w != 0 {
			mask |= 1 << i
		}
	}
	if ev.TextLen != 0 {
		mask |= 1 << 14
	}
	offsetID := version != batchVersionV1 && words[3] != 0 &&
		words[3] == codec.HashID(strconv.AppendUint(nil, words[2], 10))
	if offsetID {
		mask = mask&^(1<<3) | 1<<15
	}
	dst = append(dst, byte(mask), byte(mask>>8), byte(ev.Kind), byte(ev.Status), byte(ev.Flags))
	dst = binary.AppendUvarint(dst, uint64(ev.Symbol))
	for i, p := range prev.deltas() {
		if w := words[i]; w != 0 {
			dst = binary.AppendUvarint(dst, zig(w-*p))
		}
		*p = words[i]
	}
	for i, w := range words[3:] {
		switch {
		case w == 0, i == 0 && offsetID:
		case version == batchVersionV1 || i == 0: // v1, or IDHash
			dst = binary.LittleEndian.AppendUint64(dst, w)
		case i == 10: // Aux
			dst = binary.AppendUvarint(dst, w)
		default:
			if m, e, ok := decimalRef(math.Float64frombits(w)); ok {
				dst = binary.AppendUvarint(dst, m<<4|e)
			} else {
				dst = append(dst, decimalRaw)
				dst = binary.LittleEndian.AppendUint64(dst, w)
			}
		}
	}
	if ev.TextLen != 0 {
		dst = binary.AppendUvarint(dst, uint64(ev.TextLen))
	}
	return dst
}

// decimalRef is decimalOf by its definition: the shortest decimal that
// reads back as f (strconv), when it has at most 8 places and f is
// positive and below decimalMax, or f is a whole number below 2^53.
func decimalRef(f float64) (m, e uint64, ok bool) {
	if !(f > 0) || f >= 0x1p53 || (f >= decimalMax && f != math.Trunc(f)) {
		return 0, 0, false
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i >= 0 {
		e = uint64(len(s) - i - 1)
		s = s[:i] + s[i+1:]
	}
	if e > decimalMaxExp {
		return 0, 0, false
	}
	m, err := strconv.ParseUint(s, 10, 64)
	if err != nil || m >= 1<<53 {
		return 0, 0, false
	}
	return m, e, true
}

// TestAppendBatchEventMatchesRef: the encoder writes exactly the bytes of
// the plain transcription, whatever room dst has left (the growth path).
func TestAppendBatchEventMatchesRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for round := range 300 {
		n := 1 + rng.IntN(200)
		got := make([]byte, 0, rng.IntN(64)) // small: grows often
		want := []byte(nil)
		var pg, pw batchPrev
		for i := 0; i < n; i++ {
			ev := randomBatchEvent(rng)
			if rng.IntN(4) == 0 {
				ev.TextLen = uint32(rng.Uint64N(1 << 32))
			}
			got = appendBatchEvent(got, &pg, &ev)
			want = appendBatchEventRef(want, &pw, &ev)
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d event %d: %x, want %x", round, i, got, want)
			}
		}
		if pg.ts != pw.ts || pg.ingest != pw.ingest || pg.seq != pw.seq {
			t.Fatalf("round %d: delta state %+v, want %+v", round, pg, pw)
		}
	}
}

// varintEdges are the values around every varint length boundary (and the
// ends of uint64): where a fast path of putUvarint would hand over to the
// general case.
func varintEdges() []uint64 {
	e := []uint64{0, 1, 2, math.MaxUint64, math.MaxUint64 - 1, math.MaxInt64, math.MaxInt64 + 1}
	for k := 7; k < 64; k += 7 {
		e = append(e, 1<<k-1, 1<<k, 1<<k+1)
	}
	return e
}

// TestAppendBatchEventEdges: every presence mask (the 14 words and
// TextLen), with the delta-coded words placed so that their zigzag deltas
// (forward and backward) fall on every varint length boundary and the
// symbol, TextLen and fixed words take edge values, encodes to the bytes of
// the plain transcription and decodes back to the event.
func TestAppendBatchEventEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	edges := varintEdges()
	pick := func() uint64 { return edges[rng.IntN(len(edges))] }
	var got, want []byte
	var pg, pw batchPrev
	var evs []codec.Event
	check := func(what string) {
		t.Helper()
		finishBatch(got, len(evs))
		k := 0
		err := DecodeEventBatch(got, func(ev *codec.Event) error {
			w := evs[k]
			w.Source = 5
			if string(codec.AppendFrame(nil, ev)) != string(codec.AppendFrame(nil, &w)) {
				t.Fatalf("%s: event %d decodes to %+v, want %+v", what, k, *ev, w)
			}
			k++
			return nil
		})
		if err != nil || k != len(evs) {
			t.Fatalf("%s: %d of %d decoded: %v", what, k, len(evs), err)
		}
	}
	for mask := range 1 << 15 {
		if mask%64 == 0 { // a new batch, in a dst of little spare room
			if len(evs) > 0 {
				check("batch")
			}
			got = beginBatch(make([]byte, 0, rng.IntN(2*batchEventMax)), 5)
			want = beginBatch(nil, 5)
			pg, pw, evs = batchPrev{}, batchPrev{}, evs[:0]
		}
		ev := codec.Event{Kind: codec.KindTrade, Status: codec.StatusOpen, Flags: codec.Flags(rng.Uint32()),
			Symbol: codec.Symbol(uint32(pick()))}
		words := codec.EventWords(&ev)
		prevs := [3]uint64{pg.ts, pg.ingest, pg.seq}
		for i := range words {
			if mask&(1<<i) == 0 {
				continue
			}
			w := pick()
			if i < 3 { // a delta of edge zigzag value from the previous word
				w = prevs[i] + unzig(pick())
			}
			if w == 0 {
				w = 1
			}
			words[i] = w
		}
		if mask&(1<<14) != 0 {
			ev.TextLen = max(1, uint32(pick()))
		}
		got = appendBatchEvent(got, &pg, &ev)
		want = appendBatchEventRef(want, &pw, &ev)
		if !bytes.Equal(got, want) {
			t.Fatalf("mask %#x, event %+v: %x, want %x", mask, ev, got, want)
		}
		if pg.ts != pw.ts || pg.ingest != pw.ingest || pg.seq != pw.seq {
			t.Fatalf("mask %#x: delta state %+v, want %+v", mask, pg, pw)
		}
		evs = append(evs, ev)
	}
	check("last batch")
}

// TestShortCanonical: the decoder's shortcut never accepts a decimal that
// decimalOf would not give its float (it only skips the call): whole
// numbers up to 2^53, one and two places around decimalMax and with
// trailing zeros, and random ones.
func TestShortCanonical(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	type dec struct{ m, e uint64 }
	max1, max2 := uint64(math.Trunc(decimalMax*10)), uint64(math.Trunc(decimalMax*100)) // the largest m of one and two places below decimalMax
	var ds []dec
	for _, m := range []uint64{1, 9, 10, 11, 99, 100, 101, 1 << 52, 1<<53 - 1, max2 - 1, max2, max2 + 1, max1 - 1, max1, max1 + 1} {
		for e := range uint64(3) {
			ds = append(ds, dec{m, e})
		}
	}
	for range 300000 {
		e := rng.Uint64N(3)
		ds = append(ds, dec{1 + rng.Uint64N(1<<53-1), e}, dec{1 + rng.Uint64N(max2), e}, dec{1 + rng.Uint64N(1e6), e})
	}
	short := 0
	for _, d := range ds {
		f := float64(d.m) / pow10[d.e]
		if !shortCanonical(d.m, d.e, f) {
			continue
		}
		short++
		if m, e, ok := decimalOf(f); !ok || m != d.m || e != d.e {
			t.Fatalf("shortCanonical(%d, %d) for %v, but decimalOf gives %d, %d, %v", d.m, d.e, f, m, e, ok)
		}
	}
	if short < len(ds)/2 {
		t.Fatalf("only %d of %d decimals took the shortcut: the test does not reach it", short, len(ds))
	}
	for _, d := range []dec{{10, 1}, {100, 2}, {120, 2}, {max2 + 1, 2}} {
		if shortCanonical(d.m, d.e, float64(d.m)/pow10[d.e]) {
			t.Errorf("shortCanonical(%d, %d) = true: not the shortest, or a fraction above decimalMax", d.m, d.e)
		}
	}
}
