package codec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Every valid event survives the compact frame bit for bit, zero words and
// odd floats (-0, NaN payloads) included; the fixed frame reads through
// DecodeStoredFrame too; a trade's compact frame is about half the fixed.
func TestCompactFrameRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := 0; i < 20000; i++ {
		ev := Event{Kind: Kind(1 + rng.IntN(int(kindCount)-1)), Status: Status(rng.IntN(int(statusCount))), Flags: Flags(rng.Uint32()),
			Symbol: Symbol(rng.Uint32()), Source: uint16(rng.Uint32()), TextLen: uint32(rng.IntN(3)) * rng.Uint32()}
		for j, w := range eventWords(&ev) {
			_ = w
			switch rng.IntN(4) {
			case 0:
				eventWords(&ev)[j] = rng.Uint64()
			case 1:
				eventWords(&ev)[j] = math.Float64bits(math.Copysign(0, -1))
			case 2:
				eventWords(&ev)[j] = 0x7ff8_0000_dead_beef // a NaN payload
			}
		}
		buf = AppendCompactFrame(buf[:0], &ev)
		var got Event
		n, err := DecodeStoredFrame(append(buf, 0xAA, 0xBB), &got)
		same := func() bool { return string(AppendFrame(nil, &got)) == string(AppendFrame(nil, &ev)) } // bit for bit: NaN != NaN
		if err != nil || n != len(buf) || !same() {
			t.Fatalf("event %d: %+v -> %d %v %+v", i, ev, n, err, got)
		}
		fixed := AppendFrame(nil, &ev)
		if _, err := DecodeStoredFrame(fixed, &got); err != nil || !same() {
			t.Fatalf("event %d: the fixed frame through DecodeStoredFrame: %v", i, err)
		}
	}
	trade := Event{Kind: KindTrade, TsNs: 1_700_000_000_123_456_789, IngestNs: 99, Seq: 7, IDHash: 0xabc, Price: 101.25, Volume: 3, Symbol: 4, Source: 1}
	if n := len(AppendCompactFrame(nil, &trade)); n != compactHeader+6*8 || n*2 > FrameSize+8 {
		t.Fatalf("a trade's compact frame: %d bytes (the fixed: %d)", n, FrameSize)
	}
	if a := testing.AllocsPerRun(100, func() { buf = AppendCompactFrame(buf[:0], &trade) }); a != 0 {
		t.Fatalf("AppendCompactFrame allocates: %v", a)
	}
}

// Damage is refused: every bit flip and every truncation of a compact frame
// fails to decode, and the event is left as it was.
func TestCompactFrameRejectsDamage(t *testing.T) {
	ev := Event{Kind: KindQuote, TsNs: 5, Seq: 9, Bid: 1.5, Ask: 1.75, Flags: FlagHasBid | FlagHasAsk, Symbol: 3, TextLen: 0}
	b := AppendCompactFrame(nil, &ev)
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			c := append([]byte(nil), b...)
			c[i] ^= 1 << bit
			var got Event
			got.Seq = 12345
			if _, err := DecodeStoredFrame(c, &got); err == nil {
				if i == 1 && c[1] == FrameVersion {
					continue // now reads as a (short) fixed frame: refused there
				}
				t.Fatalf("flip of bit %d of byte %d accepted", bit, i)
			} else if got.Seq != 12345 {
				t.Fatal("a refused frame changed the event")
			}
		}
	}
	for n := 0; n < len(b); n++ {
		var got Event
		if _, err := DecodeStoredFrame(b[:n], &got); err == nil {
			t.Fatalf("truncation to %d bytes accepted", n)
		}
	}
}

func FuzzDecodeStoredFrame(f *testing.F) {
	ev := Event{Kind: KindTrade, TsNs: 1, Price: 2, Volume: 3, Symbol: 1}
	f.Add(AppendCompactFrame(nil, &ev))
	f.Add(AppendFrame(nil, &ev))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got Event
		n, err := DecodeStoredFrame(b, &got)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes in its own format.
		var again []byte
		if b[1] == FrameVersion {
			again = AppendFrame(nil, &got)
		} else {
			again = AppendCompactFrame(nil, &got)
		}
		if string(again) != string(b[:n]) {
			t.Fatalf("%x decoded to %+v, which encodes as %x", b[:n], got, again)
		}
	})
}

func BenchmarkFrameEncode(b *testing.B) {
	trade := Event{Kind: KindTrade, TsNs: 1_700_000_000_123_456_789, IngestNs: 99, Seq: 7, IDHash: 0xabc, Price: 101.25, Volume: 3, Symbol: 4, Source: 1}
	buf := make([]byte, 0, 256)
	b.Run("fixed", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(FrameSize)
		for b.Loop() {
			buf = AppendFrame(buf[:0], &trade)
		}
	})
	b.Run("compact", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(AppendCompactFrame(nil, &trade))))
		for b.Loop() {
			buf = AppendCompactFrame(buf[:0], &trade)
		}
		if len(buf) >= FrameSize {
			b.Fatal("not compact")
		}
	})
}
