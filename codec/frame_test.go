package codec

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"testing"
)

// frameRandomEvent returns a valid event with every field random, floats
// including -0, NaN payloads, infinities and subnormals.
func frameRandomEvent(r *rand.Rand) Event {
	f := func() float64 {
		switch r.IntN(8) {
		case 0:
			return math.Copysign(0, -1)
		case 1:
			return math.Float64frombits(0x7ff8000000000000 | r.Uint64()&0xfffffffffffff) // NaN with a payload
		case 2:
			return math.Inf(1 - 2*r.IntN(2))
		case 3:
			return math.Float64frombits(r.Uint64() & 0xfffffffffffff) // subnormal
		}
		return math.Float64frombits(r.Uint64())
	}
	return Event{
		TsNs: int64(r.Uint64()), IngestNs: int64(r.Uint64()), Seq: r.Uint64(), IDHash: r.Uint64(),
		Price: f(), Volume: f(), Bid: f(), Ask: f(), BidSize: f(), AskSize: f(), Open: f(), High: f(), Low: f(),
		Aux: r.Uint64(), Symbol: Symbol(r.Uint32()), Source: uint16(r.Uint32()),
		Kind: Kind(1 + r.IntN(int(kindCount)-1)), Status: Status(r.IntN(int(statusCount))), Flags: Flags(r.Uint32()),
	}
}

func TestFrameLayout(t *testing.T) {
	ev := Event{TsNs: 0x0102030405060708, IngestNs: -2, Seq: 3, IDHash: 4, Price: 1.5, Volume: 2.5, Bid: 3.5, Ask: 4.5,
		BidSize: 5.5, AskSize: 6.5, Open: 7.5, High: 8.5, Low: 9.5, Aux: 10, Symbol: 0x11223344, Source: 0x5566,
		Kind: KindQuote, Status: StatusHalted, Flags: FlagHasBid | FlagLast}
	b := AppendFrame([]byte("prefix"), &ev)
	if len(b) != 6+FrameSize || string(b[:6]) != "prefix" {
		t.Fatalf("AppendFrame did not append: len %d", len(b))
	}
	b = b[6:]
	le := binary.LittleEndian
	want := []struct {
		off  int
		got  uint64
		want uint64
	}{
		{0, uint64(b[0]), FrameMagic},
		{1, uint64(b[1]), FrameVersion},
		{2, uint64(le.Uint16(b[2:])), FrameSize},
		{4, uint64(le.Uint32(b[4:])), uint64(crc32.Checksum(b[8:], crc32.MakeTable(crc32.Castagnoli)))},
		{8, le.Uint64(b[8:]), 0x0102030405060708},
		{16, le.Uint64(b[16:]), math.MaxUint64 - 1},
		{40, le.Uint64(b[40:]), math.Float64bits(1.5)},
		{104, le.Uint64(b[104:]), math.Float64bits(9.5)},
		{112, le.Uint64(b[112:]), 10},
		{120, uint64(le.Uint32(b[120:])), 0x11223344},
		{124, uint64(le.Uint16(b[124:])), 0x5566},
		{126, uint64(b[126]), uint64(KindQuote)},
		{127, uint64(b[127]), uint64(StatusHalted)},
		{128, uint64(b[128]), uint64(FlagHasBid | FlagLast)},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("offset %d: %#x, want %#x", w.off, w.got, w.want)
		}
	}
	if !bytes.Equal(b[129:132], make([]byte, 3)) || le.Uint32(b[132:]) != 0 {
		t.Errorf("reserved bytes and TextLen %x", b[129:])
	}
}

// TestFrameRoundTrip is the property: decode(encode(ev)) == ev bit for bit
// for random valid events, and re-encoding gives the same bytes.
func TestFrameRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	buf := make([]byte, 0, 4*FrameSize)
	for range 20_000 {
		ev := frameRandomEvent(r)
		buf = AppendFrame(buf[:0], &ev)
		var back Event
		n, err := DecodeFrame(buf, &back)
		if err != nil || n != FrameSize {
			t.Fatalf("DecodeFrame: %d, %v", n, err)
		}
		if !frameSameEvent(&ev, &back) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, back)
		}
		if !hasNaN(&ev) && back != ev {
			t.Fatalf("round trip not == :\n%+v\n%+v", ev, back)
		}
	}
}

// frameSameEvent compares events field by field, floats by their bits (so
// NaN equals the same NaN).
func frameSameEvent(a, b *Event) bool {
	fa := [...]float64{a.Price, a.Volume, a.Bid, a.Ask, a.BidSize, a.AskSize, a.Open, a.High, a.Low}
	fb := [...]float64{b.Price, b.Volume, b.Bid, b.Ask, b.BidSize, b.AskSize, b.Open, b.High, b.Low}
	for i := range fa {
		if math.Float64bits(fa[i]) != math.Float64bits(fb[i]) {
			return false
		}
	}
	return a.TsNs == b.TsNs && a.IngestNs == b.IngestNs && a.Seq == b.Seq && a.IDHash == b.IDHash &&
		a.Aux == b.Aux && a.Symbol == b.Symbol && a.Source == b.Source && a.Kind == b.Kind &&
		a.Status == b.Status && a.Flags == b.Flags
}

func hasNaN(e *Event) bool {
	for _, x := range []float64{e.Price, e.Volume, e.Bid, e.Ask, e.BidSize, e.AskSize, e.Open, e.High, e.Low} {
		if x != x {
			return true
		}
	}
	return false
}

// TestFrameDetectsCorruption flips every bit of a frame in turn: each flip is
// rejected (never decoded into a different event).
func TestFrameDetectsCorruption(t *testing.T) {
	ev := frameRandomEvent(rand.New(rand.NewPCG(9, 9)))
	good := AppendFrame(nil, &ev)
	b := make([]byte, FrameSize)
	for bit := range FrameSize * 8 {
		copy(b, good)
		b[bit/8] ^= 1 << (bit % 8)
		out := Event{Seq: 12345}
		n, err := DecodeFrame(b, &out)
		if err == nil || n != 0 || out.Seq != 12345 {
			t.Fatalf("bit %d: flip not detected (n %d, err %v)", bit, n, err)
		}
		switch off := bit / 8; {
		case off < 4:
			if err != ErrFrameHeader {
				t.Fatalf("bit %d: %v, want ErrFrameHeader", bit, err)
			}
		default:
			if err != ErrFrameChecksum || ReasonOf(err) != ReasonChecksum {
				t.Fatalf("bit %d: %v, want ErrFrameChecksum", bit, err)
			}
		}
	}
}

func TestFrameErrors(t *testing.T) {
	ev := Event{Kind: KindTrade, Price: 1}
	good := AppendFrame(nil, &ev)
	var out Event
	for i := range FrameSize {
		if n, err := DecodeFrame(good[:i], &out); n != 0 || err != ErrFrameShort || ReasonOf(err) != ReasonMalformed {
			t.Fatalf("len %d: %d, %v", i, n, err)
		}
	}
	// Valid checksum, invalid content: a writer bug is still caught.
	reseal := func(mut func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		mut(b)
		binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], frameCRCTable))
		return b
	}
	for name, b := range map[string][]byte{
		"kind invalid": reseal(func(b []byte) { b[126] = 0 }),
		"kind unknown": reseal(func(b []byte) { b[126] = byte(kindCount) }),
		"status":       reseal(func(b []byte) { b[127] = byte(statusCount) }),
		"reserved":     reseal(func(b []byte) { b[131] = 1 }),
	} {
		if n, err := DecodeFrame(b, &out); n != 0 || err != ErrFrameContent {
			t.Errorf("%s: %d, %v", name, n, err)
		}
	}
	// A longer buffer decodes its first frame only.
	two := AppendFrame(append([]byte(nil), good...), &Event{Kind: KindQuote})
	if n, err := DecodeFrame(two, &out); n != FrameSize || err != nil || out.Kind != KindTrade {
		t.Fatalf("first of two: %d, %v, %s", n, err, out.Kind)
	}
}

// TestFrameSyncStream recovers every intact frame of a stream damaged with
// garbage between frames and corrupted frames, using FrameSync.
func TestFrameSyncStream(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 2))
	var stream []byte
	var want []Event
	for i := range 200 {
		ev := frameRandomEvent(r)
		ev.Seq = uint64(i)
		switch r.IntN(4) {
		case 0: // garbage, sometimes containing the magic byte
			for range r.IntN(50) {
				stream = append(stream, byte(r.UintN(256)), FrameMagic)
			}
		case 1: // a corrupted frame
			start := len(stream)
			stream = AppendFrame(stream, &ev)
			stream[start+8+r.IntN(FrameSize-8)] ^= 0x10
			continue
		}
		stream = AppendFrame(stream, &ev)
		want = append(want, ev)
	}
	var got []Event
	src := stream
	for len(src) > 0 {
		var ev Event
		n, err := DecodeFrame(src, &ev)
		switch {
		case err == nil:
			got = append(got, ev)
			src = src[n:]
		case err == ErrFrameShort:
			src = nil
		default:
			src = src[1+FrameSync(src[1:]):]
		}
	}
	if len(got) != len(want) {
		t.Fatalf("recovered %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !frameSameEvent(&got[i], &want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestFrameSync(t *testing.T) {
	h := []byte{FrameMagic, FrameVersion, FrameSize, 0}
	for _, tc := range []struct {
		in   []byte
		want int
	}{
		{nil, 0},
		{[]byte("abc"), 3},
		{append([]byte("ab"), h...), 2},
		{[]byte{'x', FrameMagic, 9, FrameMagic, FrameVersion}, 3}, // partial header at the end
		{[]byte{'x', FrameMagic}, 1},
		{[]byte{FrameMagic, FrameVersion, 0, 0, 1}, 5},
	} {
		if got := FrameSync(tc.in); got != tc.want {
			t.Errorf("FrameSync(%x) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestFrameZeroAlloc(t *testing.T) {
	ev := frameRandomEvent(rand.New(rand.NewPCG(5, 5)))
	buf := make([]byte, 0, FrameSize)
	var out Event
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendFrame(buf[:0], &ev)
		_, _ = DecodeFrame(buf, &out)
		_, _ = DecodeFrame(buf[:10], &out)
	}); n != 0 {
		t.Fatalf("frame encode/decode allocates %v", n)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	r := rand.New(rand.NewPCG(6, 6))
	for range 4 {
		ev := frameRandomEvent(r)
		f.Add(AppendFrame(nil, &ev))
	}
	tick := Event{Kind: KindTrade, TsNs: 1700000000123456789, Symbol: 1, Price: 189.23, Volume: 300,
		Bid: 189.22, Ask: 189.24, Flags: FlagHasBid | FlagHasAsk, Status: StatusOpen, IDHash: HashID([]byte("t-1"))}
	f.Add(AppendFrame(nil, &tick))
	f.Add(append(AppendFrame(nil, &tick), 1, 2, 3))
	f.Add([]byte{FrameMagic, FrameVersion, FrameSize, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev := Event{Seq: 42}
		n, err := DecodeFrame(b, &ev)
		if err != nil {
			if n != 0 || ev.Seq != 42 {
				t.Fatalf("error %v with n %d / modified event", err, n)
			}
			if r := ReasonOf(err); r != ReasonMalformed && r != ReasonChecksum {
				t.Fatalf("reason %s", r)
			}
			if s := FrameSync(b); s < 0 || s > len(b) {
				t.Fatalf("FrameSync = %d", s)
			}
			return
		}
		// A frame that decodes is canonical: re-encoding gives its exact bytes.
		if n != FrameSize || !bytes.Equal(AppendFrame(nil, &ev), b[:FrameSize]) {
			t.Fatalf("decoded frame does not re-encode to its bytes")
		}
	})
}

// BenchmarkFrameRoundTrip encodes and decodes one event.
func BenchmarkFrameRoundTrip(b *testing.B) {
	ev := frameRandomEvent(rand.New(rand.NewPCG(5, 5)))
	buf := make([]byte, 0, FrameSize)
	var out Event
	b.SetBytes(FrameSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], &ev)
		if _, err := DecodeFrame(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzFrameRoundTrip: decode(encode(ev)) == ev, bit for bit, for any valid
// event the fuzzer builds (floats are given as raw IEEE bits so that NaN
// payloads, -0 and subnormals occur).
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add(int64(1700000000123456789), int64(0), uint64(1), HashID([]byte("t-1")),
		math.Float64bits(189.23), math.Float64bits(300), math.Float64bits(189.22), math.Float64bits(189.24),
		uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint32(1), uint16(0), uint8(KindTrade), uint8(StatusOpen), uint8(FlagHasBid|FlagHasAsk))
	f.Add(int64(-1), int64(math.MaxInt64), uint64(math.MaxUint64), uint64(0),
		uint64(0x8000000000000000), uint64(0x7ff8000000000001), uint64(0xfff0000000000000), uint64(1),
		uint64(2), uint64(3), uint64(4), uint64(5), uint64(6), uint64(7), uint32(math.MaxUint32), uint16(65535), uint8(255), uint8(255), uint8(255))
	f.Fuzz(func(t *testing.T, ts, ingest int64, seq, idHash, price, volume, bid, ask, bidSize, askSize, open, high, low, aux uint64,
		symbol uint32, source uint16, kind, status, flags uint8) {
		ev := Event{
			TsNs: ts, IngestNs: ingest, Seq: seq, IDHash: idHash,
			Price: math.Float64frombits(price), Volume: math.Float64frombits(volume),
			Bid: math.Float64frombits(bid), Ask: math.Float64frombits(ask),
			BidSize: math.Float64frombits(bidSize), AskSize: math.Float64frombits(askSize),
			Open: math.Float64frombits(open), High: math.Float64frombits(high), Low: math.Float64frombits(low),
			Aux: aux, Symbol: Symbol(symbol), Source: source,
			Kind:   Kind(1 + int(kind)%(KindCount-1)), // valid kinds only
			Status: Status(int(status) % int(statusCount)),
			Flags:  Flags(flags),
		}
		b := AppendFrame(nil, &ev)
		var back Event
		n, err := DecodeFrame(b, &back)
		if err != nil || n != FrameSize || !frameSameEvent(&ev, &back) {
			t.Fatalf("round trip: n %d, %v\n%+v\n%+v", n, err, ev, back)
		}
		if !hasNaN(&ev) && back != ev {
			t.Fatalf("round trip not ==:\n%+v\n%+v", ev, back)
		}
	})
}
