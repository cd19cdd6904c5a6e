package feeds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"qstream/codec"
)

// pcapFuzzMaxSeed bounds the size of a FuzzPcapReader seed. Every input the
// fuzzer finds interesting is minimised before fuzzing goes on, and Go's
// minimiser tries removing every sub-slice: about n²/2 runs for an input of
// n bytes, for up to -fuzzminimizetime (60 s by default), with no execution
// counted meanwhile. Inputs grown from 6 KB seeds kept both workers
// minimising for the whole minute ("execs: N (0/sec)"), which looked like a
// hung reader. 1 KiB still holds a capture of several packets.
const pcapFuzzMaxSeed = 1 << 10

// pcapFuzzSymbols is the capacity of the symbol table of each fuzz run: a
// fresh table per run keeps runs independent, and a small one keeps them
// cheap (the default table preallocates 4,096 entries, ~0.5 MB, which was
// most of a run's cost).
const pcapFuzzSymbols = 256

// pcapFuzzSnaplen is the snap length in the headers of the classic seeds:
// pcapgo allocates a packet buffer of the snap length per reader, so a
// 64 KiB one doubled the cost of a run.
const pcapFuzzSnaplen = 1500

// pcapFuzzRun is the body of FuzzPcapReader: it reads data as a capture to
// the end and checks that Event.Seq increases and that the reader ends.
func pcapFuzzRun(t testing.TB, data []byte, log *slog.Logger) {
	r, err := NewPcapReader(bytes.NewReader(data), PcapOptions{Logger: log, Symbols: codec.NewSymbolTable(pcapFuzzSymbols)})
	if err != nil {
		return
	}
	var ev codec.Event
	var lastSeq uint64
	events := 0
	for i := 0; i < 1<<16; i++ {
		err := r.Next(&ev)
		if err == io.EOF {
			return
		}
		if err == nil {
			if events > 0 && ev.Seq <= lastSeq {
				t.Fatalf("event %d: Seq %d after %d", events, ev.Seq, lastSeq)
			}
			lastSeq = ev.Seq
			events++
		}
		var rec *RecordError
		if err != nil && !errors.As(err, &rec) {
			return // the input cannot be read further
		}
	}
	t.Fatal("no end after 65536 calls")
}

// pcapFuzzSeeds returns the seeds of FuzzPcapReader, each at most
// pcapFuzzMaxSeed bytes: three small packets of the sample (a heartbeat, a
// trade, a quote) as pcap and pcapng, gzipped, and cut inside the last
// record; a hand-built raw-IPv4 stream with a gap, duplicates, a reset and
// an overlap; and a bare header. Larger captures are the unit tests'.
func pcapFuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	if _, err := os.Stat(pcapSamplePath); err == nil {
		var some []pcapTestPacket
		var hb, trade, quote bool
		for _, p := range pcapSamplePackets(tb) {
			switch n := pcapEventsOf([]pcapTestPacket{p}); {
			case n == 0 && !hb:
				hb = true
			case n == 1 && len(p.data) < 160 && !trade && p.data[14+20+8+codec.IEXHeaderLen+2] == codec.IEXTradeReport:
				trade = true
			case n == 1 && len(p.data) < 160 && !quote && p.data[14+20+8+codec.IEXHeaderLen+2] == codec.IEXQuoteUpdate:
				quote = true
			default:
				continue
			}
			some = append(some, p)
			if len(some) == 3 {
				break
			}
		}
		classic := pcapWrite(tb, "", false, some)
		// A snap length of 64 KiB made pcapgo allocate that much per run.
		binary.LittleEndian.PutUint32(classic[16:], pcapFuzzSnaplen)
		seeds = append(seeds, classic, pcapWrite(tb, "", true, some), pcapGzip(classic), classic[:len(classic)-7])
	}
	return append(seeds, pcapFuzzStream(tb), []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0})
}

// pcapFuzzStream is a compact capture (raw IPv4, 10-byte system events) of
// one IEX-TP stream that goes through every continuity case: a gap, a
// duplicate segment, a sequence reset, an overlap and a late heartbeat.
func pcapFuzzStream(tb testing.TB) []byte {
	ts := int64(1_700_000_000_000_000_000)
	msg := func() []byte {
		ts += 1000
		m := make([]byte, 10)
		m[0], m[1] = codec.IEXSystemEvent, 'R'
		binary.LittleEndian.PutUint64(m[2:], uint64(ts))
		return m
	}
	seg := func(seq, off uint64, msgs ...[]byte) []byte { return iexTestSegment(1, 7, seq, off, msgs) }
	a, b, c, _, e := msg(), msg(), msg(), msg(), msg()
	s1 := seg(1, 0, a)
	s2 := seg(2, 12, b, c)
	s4 := seg(5, 48, e) // message 4 lost: a gap
	f, g := msg(), msg()
	return pcapRawIPv4(tb, [][]byte{s1, s2, s4, s2, seg(1, 0, f), seg(1, 0, f, g), seg(2, 12)})
}

// pcapRawIPv4 writes segments as a classic nanosecond pcap of link type
// IPv4 (no Ethernet header), UDP to port 10378, 1 µs apart.
func pcapRawIPv4(tb testing.TB, segs [][]byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(pcapFuzzSnaplen, layers.LinkTypeIPv4); err != nil {
		tb.Fatal(err)
	}
	for i, seg := range segs {
		ip := pcapUDP(seg, 10378)[14:]
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1_700_000_000, int64(i)*1000), CaptureLength: len(ip), Length: len(ip)}
		if err := w.WritePacket(ci, ip); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// The fuzz seeds stay small, so that minimising what grows from them takes
// seconds, not the whole -fuzzminimizetime; and the hand-built stream really
// goes through the continuity cases it is there for.
func TestPcapFuzzSeeds(t *testing.T) {
	pcapNeedSample(t)
	seeds := pcapFuzzSeeds(t)
	if len(seeds) != 6 {
		t.Fatalf("%d seeds, want 6", len(seeds))
	}
	for i, s := range seeds {
		if len(s) > pcapFuzzMaxSeed {
			t.Errorf("seed %d: %d bytes, over %d", i, len(s), pcapFuzzMaxSeed)
		}
		pcapFuzzRun(t, s, pcapQuietLogger())
	}
	for i, s := range seeds[:3] {
		evs, recs := pcapDrain(t, pcapMustReader(t, s))
		if len(evs) != 2 || len(recs) != 0 {
			t.Errorf("sample seed %d: %d events, %d record errors; want 2, 0", i, len(evs), len(recs))
		}
	}
	r := pcapMustReader(t, pcapFuzzStream(t))
	evs, recs := pcapDrain(t, r)
	st := r.Stats()
	// a, b, c, e; then the reset to f, and g from the overlap.
	if len(evs) != 6 || len(recs) != 0 || st.Gaps != 1 || st.DuplicateSegments != 1 || st.Resets != 1 || st.Overlaps != 1 {
		t.Errorf("stream seed: %d events, %d record errors, stats %+v; want 6 events, 0 errors, 1 gap, duplicate, reset and overlap",
			len(evs), len(recs), st)
	}
}

// A segment whose sequence numbers or stream offset run past IEX-TP's
// signed 64-bit range is a record error, and Event.Seq does not wrap. (The
// fuzzer found a segment at sequence 2^64-3 with three messages: Event.Seq
// went ..., 2^64-1, 0.)
func TestPcapSeqRange(t *testing.T) {
	ts := int64(1_700_000_000_000_000_000)
	msg := func() []byte {
		ts += 1000
		return iexTestTrade(ts, uint64(ts))
	}
	seg := func(seq, off uint64, n int) []byte {
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = msg()
		}
		return iexTestSegment(1, 7, seq, off, msgs)
	}
	capture := pcapWrite(t, "", false, iexTestCapture(
		seg(1, 0, 2),
		seg(math.MaxUint64-2, 80, 3), // 2^64-3, -2, -1, then 0: past 2^63-1
		seg(math.MaxInt64-2, 80, 3),  // ends at 2^63: past 2^63-1
		seg(3, math.MaxInt64-10, 1),  // offset past 2^63-1 at its end
		seg(3, 80, 1),                // continues the stream
		seg(math.MaxInt64-1, 120, 1), // the last valid sequence number: a gap
	))
	r := pcapMustReader(t, capture)
	evs, recs := pcapDrain(t, r)
	if len(evs) != 4 {
		t.Fatalf("%d events, want 4 (2 + 1 + 1)", len(evs))
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			t.Errorf("event %d: Seq %d after %d", i, evs[i].Seq, evs[i-1].Seq)
		}
	}
	if got := evs[3].Seq; got != math.MaxInt64-1 {
		t.Errorf("last event Seq %d, want %d", got, uint64(math.MaxInt64-1))
	}
	want := []error{errIEXSeqRange, errIEXSeqRange, errIEXOffsetRange}
	if len(recs) != len(want) {
		t.Fatalf("%d record errors (%v), want %d", len(recs), recs, len(want))
	}
	for i, rec := range recs {
		var ce *codec.Error
		if !errors.As(rec.Err, &ce) || *ce != *want[i].(*codec.Error) || rec.Pos.Offset != int64(i+1) {
			t.Errorf("record error %d: %v at packet %d, want %v at packet %d", i, rec.Err, rec.Pos.Offset, want[i], i+1)
		}
	}
	if st := r.Stats(); st.Errors != 3 || st.Segments != 3 {
		t.Errorf("stats: %d errors, %d segments; want 3, 3", st.Errors, st.Segments)
	}
}

// Sequence resets from near 2^63 can use up Event.Seq's 64 bits; the reader
// then ends with an error instead of wrapping Event.Seq to 0.
func TestPcapSeqSpaceExhausted(t *testing.T) {
	ts := int64(1_700_000_000_000_000_000)
	seg := func(seq, off uint64) []byte {
		ts += 1000
		return iexTestSegment(1, 7, seq, off, [][]byte{iexTestTrade(ts, uint64(ts))})
	}
	capture := pcapWrite(t, "", false, iexTestCapture(
		seg(math.MaxInt64-1, 0), // Event.Seq 2^63-2
		seg(1, 0),               // a reset: 2^63-1
		seg(math.MaxInt64-1, 0), // a gap: 2^64-4
		seg(1, 0),               // a reset: 2^64-3
		seg(2, 40),              // 2^64-2
		seg(3, 80),              // 2^64-1
		seg(4, 120),             // would be 2^64
		seg(5, 160),
	))
	r := pcapMustReader(t, capture)
	var ev codec.Event
	var seqs []uint64
	var err error
	for i := 0; i < 20; i++ {
		if err = r.Next(&ev); err != nil {
			break
		}
		seqs = append(seqs, ev.Seq)
	}
	want := []uint64{math.MaxInt64 - 1, math.MaxInt64, math.MaxUint64 - 3, math.MaxUint64 - 2, math.MaxUint64 - 1, math.MaxUint64}
	if !errors.Is(err, errPcapSeqSpace) || len(seqs) != len(want) {
		t.Fatalf("Event.Seq %v then %v; want %v then %v", seqs, err, want, errPcapSeqSpace)
	}
	for i := range want {
		if seqs[i] != want[i] {
			t.Errorf("event %d: Seq %d, want %d", i, seqs[i], want[i])
		}
	}
	if err := r.Next(&ev); err != io.EOF {
		t.Errorf("after the error: %v, want io.EOF", err)
	}
}
