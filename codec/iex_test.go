package codec

import (
	"qstream/internal/testvectors"

	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// iexSamplePath is IEX's published TOPS 1.6 sample capture, read from the
// shared third-party test data beside the repository (never copied into it).
var iexSamplePath = filepath.Join(testvectors.Dir(), "pcap", "iex_tops16_sample.pcap.gz")

// iexSampleSegments returns the UDP payloads of the sample capture, parsed
// here by hand (classic pcap, Ethernet/IPv4/UDP) independently of feeds.
func iexSampleSegments(tb testing.TB) [][]byte {
	tb.Helper()
	f, err := os.Open(iexSamplePath)
	if err != nil {
		tb.Fatalf("IEX sample capture missing: %v (the shared third-party test data is expected at %s; see ../shared/testdata/SOURCES.md)", err, iexSamplePath)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	if len(raw) < 24 || binary.LittleEndian.Uint32(raw) != 0xa1b2c3d4 {
		tb.Fatal("sample is not a little-endian microsecond pcap")
	}
	var segs [][]byte
	for p := 24; p+16 <= len(raw); {
		incl := int(binary.LittleEndian.Uint32(raw[p+8:]))
		pkt := raw[p+16 : p+16+incl]
		p += 16 + incl
		if len(pkt) < 14+20+8 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 {
			continue
		}
		udp := ip[ihl:]
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		segs = append(segs, udp[8:ulen])
	}
	return segs
}

// The per-type counts of the sample, from SOURCES.md.
var iexSampleCounts = map[byte]uint64{
	'Q': 27217, 'T': 6390, 'P': 7802, 'O': 7801, 'H': 7803, 'A': 642, 'D': 10, 'S': 6, 'B': 3,
}

func TestIEXSampleCounts(t *testing.T) {
	segs := iexSampleSegments(t)
	if len(segs) != 13022 {
		t.Fatalf("sample has %d UDP packets, SOURCES.md says 13,022", len(segs))
	}
	d := NewIEXDecoder(IEXOptions{})
	var ev Event
	var events, trades uint64
	var lastSeq uint64
	for i, seg := range segs {
		h, err := d.Reset(seg)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if h.ProtocolID != IEXProtocolTOPS {
			t.Fatalf("segment %d: protocol %#x", i, h.ProtocolID)
		}
		for {
			ok, err := d.Next(&ev)
			if err != nil {
				t.Fatalf("segment %d: %v", i, err)
			}
			if !ok {
				break
			}
			events++
			if ev.Seq <= lastSeq {
				t.Fatalf("segment %d: sequence %d after %d", i, ev.Seq, lastSeq)
			}
			lastSeq = ev.Seq
			if ev.Kind == KindTrade {
				trades++
				if !(ev.Price > 0) || ev.Volume <= 0 || ev.Symbol == 0 || ev.IDHash == 0 {
					t.Fatalf("segment %d: implausible trade %+v", i, ev)
				}
			}
		}
	}
	st := d.Stats()
	if st.Messages != 57674 || events != 57674 {
		t.Errorf("messages %d, events %d; want 57,674", st.Messages, events)
	}
	for typ, want := range iexSampleCounts {
		if got := d.Count(typ); got != want {
			t.Errorf("type %c: %d messages, want %d", typ, got, want)
		}
	}
	if st.Unknown != 0 || st.Errors != 0 {
		t.Errorf("unknown %d, errors %d", st.Unknown, st.Errors)
	}
	if trades != iexSampleCounts['T'] {
		t.Errorf("trades %d", trades)
	}
	if st.Segments != 13022 {
		t.Errorf("segments %d", st.Segments)
	}
}

// iexMsg builds a message: type, first byte, timestamp, symbol (omitted for
// S when sym == ""), then fields encoded little-endian by Go type.
func iexMsg(typ, first byte, ts int64, sym string, fields ...any) []byte {
	b := []byte{typ, first}
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	if typ != IEXSystemEvent {
		s := []byte("        ")
		copy(s, sym)
		b = append(b, s...)
	}
	for _, f := range fields {
		switch v := f.(type) {
		case uint8:
			b = append(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case int64:
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		case string:
			b = append(b, v...)
		default:
			panic(fmt.Sprintf("iexMsg: %T", f))
		}
	}
	return b
}

// iexSeg builds a segment around msgs.
func iexSeg(proto uint16, channel, session uint32, off, seq uint64, send int64, msgs ...[]byte) []byte {
	var payload []byte
	for _, m := range msgs {
		payload = binary.LittleEndian.AppendUint16(payload, uint16(len(m)))
		payload = append(payload, m...)
	}
	b := []byte{IEXVersion, 0}
	b = binary.LittleEndian.AppendUint16(b, proto)
	b = binary.LittleEndian.AppendUint32(b, channel)
	b = binary.LittleEndian.AppendUint32(b, session)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(payload)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(msgs)))
	b = binary.LittleEndian.AppendUint64(b, off)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(send))
	return append(b, payload...)
}

const tsBase = int64(1_500_000_000_000_000_000) // 2017-07-14T02:40:00Z

// px is a price in IEX fixed point.
func px(s string) int64 {
	f, _ := strconv.ParseFloat(s, 64)
	return int64(math.Round(f * 1e4))
}

func TestIEXDecodeEveryType(t *testing.T) {
	regular := tsBase + 14*3600e9 // 16:40 UTC
	pre := tsBase + 10*3600e9     // 12:40 UTC
	post := tsBase + 21*3600e9    // 23:40 UTC
	type want struct {
		kind   Kind
		status Status
		flags  Flags
		aux    uint64
		sym    string
		ev     Event // numeric fields compared: Price Volume Bid Ask BidSize AskSize Open High Low IDHash
	}
	cases := []struct {
		name string
		msg  []byte
		want want
	}{
		{"system event R", iexMsg('S', 'R', tsBase, ""),
			want{kind: KindSystem, status: StatusOpen, aux: 'S' | 'R'<<8}},
		{"system event E", iexMsg('S', 'E', tsBase, ""),
			want{kind: KindSystem, status: StatusClosed, aux: 'S' | 'E'<<8}},
		{"security directory", iexMsg('D', IEXSecurityTest|IEXSecurityETP, tsBase, "ZIEXT", uint32(100), px("10.25"), uint8(1)),
			want{kind: KindSystem, sym: "ZIEXT", aux: 'D' | 0xa0<<8 | 1<<16, ev: Event{Price: 10.25, Volume: 100}}},
		{"trading status halted", iexMsg('H', 'H', tsBase, "AAPL", "T1  "),
			want{kind: KindStatus, status: StatusHalted, sym: "AAPL",
				aux: 'H' | 'H'<<8 | uint64(binary.LittleEndian.Uint32([]byte("T1  ")))<<16}},
		{"trading status trading", iexMsg('H', 'T', tsBase, "AAPL", "    "),
			want{kind: KindStatus, status: StatusOpen, sym: "AAPL",
				aux: 'H' | 'T'<<8 | uint64(binary.LittleEndian.Uint32([]byte("    ")))<<16}},
		{"operational halt", iexMsg('O', 'O', tsBase, "AAPL"),
			want{kind: KindStatus, status: StatusHalted, sym: "AAPL", aux: 'O' | 'O'<<8}},
		{"operational halt released", iexMsg('O', 'N', tsBase, "AAPL"),
			want{kind: KindStatus, status: StatusUnknown, sym: "AAPL", aux: 'O' | 'N'<<8}},
		{"short sale test", iexMsg('P', 1, tsBase, "AAPL", "A"),
			want{kind: KindStatus, sym: "AAPL", aux: 'P' | 1<<8 | 'A'<<16}},
		{"security event", iexMsg('E', 'O', tsBase, "AAPL"),
			want{kind: KindSystem, sym: "AAPL", aux: 'E' | 'O'<<8}},
		{"quote regular", iexMsg('Q', 0, regular, "AAPL", uint32(300), px("189.22"), px("189.24"), uint32(200)),
			want{kind: KindQuote, status: StatusOpen, flags: FlagHasBid | FlagHasAsk, sym: "AAPL", aux: 'Q',
				ev: Event{Bid: 189.22, Ask: 189.24, BidSize: 300, AskSize: 200}}},
		{"quote one-sided pre-market", iexMsg('Q', IEXQuotePrePostMarket, pre, "AAPL", uint32(0), int64(0), px("189.24"), uint32(200)),
			want{kind: KindQuote, status: StatusPreMarket, flags: FlagHasAsk, sym: "AAPL", aux: 'Q' | 0x40<<8,
				ev: Event{Ask: 189.24, AskSize: 200}}},
		{"quote post-market", iexMsg('Q', IEXQuotePrePostMarket, post, "AAPL", uint32(1), px("1"), px("2"), uint32(1)),
			want{kind: KindQuote, status: StatusAfterHours, flags: FlagHasBid | FlagHasAsk, sym: "AAPL", aux: 'Q' | 0x40<<8,
				ev: Event{Bid: 1, Ask: 2, BidSize: 1, AskSize: 1}}},
		{"quote halted", iexMsg('Q', IEXQuoteSymbolUnavailable, regular, "AAPL", uint32(0), int64(0), int64(0), uint32(0)),
			want{kind: KindQuote, status: StatusHalted, sym: "AAPL", aux: 'Q' | 0x80<<8}},
		{"trade report", iexMsg('T', IEXSaleOddLot|IEXSaleIntermarketSweep, tsBase, "AAPL", uint32(50), px("189.2301"), uint64(429974)),
			want{kind: KindTrade, sym: "AAPL", aux: 'T' | 0xa0<<8, ev: Event{Price: 189.2301, Volume: 50, IDHash: 429974}}},
		{"official price", iexMsg('X', 'Q', tsBase, "AAPL", px("188.5")),
			want{kind: KindSystem, sym: "AAPL", aux: 'X' | 'Q'<<8, ev: Event{Price: 188.5}}},
		{"trade break", iexMsg('B', 0, tsBase, "AAPL", uint32(50), px("189.2301"), uint64(429974)),
			want{kind: KindCustom, sym: "AAPL", aux: 'B', ev: Event{Price: 189.2301, Volume: 50, IDHash: 429974}}},
		{"auction information", iexMsg('A', 'C', tsBase, "AAPL", uint32(1000), px("100"), px("100.5"), uint32(250), "B", "1",
			uint32(1500000600), px("100.25"), px("100"), px("90"), px("110")),
			want{kind: KindSystem, sym: "AAPL", aux: 'A' | 'C'<<8 | 'B'<<16 | '1'<<24 | 1500000600<<32,
				ev: Event{Volume: 1000, Price: 100, Open: 100.5, BidSize: 250, High: 100.25, Low: 100, Bid: 90, Ask: 110}}},
		{"price level buy", iexMsg('8', IEXEventProcessingComplete, tsBase, "AAPL", uint32(400), px("25.1")),
			want{kind: KindBook, flags: FlagBuy, sym: "AAPL", aux: '8' | 1<<8, ev: Event{Price: 25.1, Volume: 400}}},
		{"price level sell removed", iexMsg('5', 0, tsBase, "AAPL", uint32(0), px("25.2")),
			want{kind: KindBook, flags: FlagSell, sym: "AAPL", aux: '5', ev: Event{Price: 25.2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proto := uint16(IEXProtocolTOPS)
			if tc.msg[0] == '8' || tc.msg[0] == '5' {
				proto = IEXProtocolDEEP
			}
			tab := NewSymbolTable(0)
			d := NewIEXDecoder(IEXOptions{Symbols: NewSymbolCache(tab), Source: 7, Flags: FlagReplay})
			seg := iexSeg(proto, 1, 42, 1000, 77, tsBase, tc.msg)
			evs, err := d.DecodeSegment(seg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d events", len(evs))
			}
			ev := evs[0]
			w := tc.want
			ts := int64(binary.LittleEndian.Uint64(tc.msg[2:]))
			if ev.Kind != w.kind || ev.Status != w.status || ev.Aux != w.aux || ev.TsNs != ts || ev.Seq != 77 || ev.Source != 7 {
				t.Errorf("got kind %v status %v aux %#x ts %d seq %d src %d; want %v %v %#x %d 77 7",
					ev.Kind, ev.Status, ev.Aux, ev.TsNs, ev.Seq, ev.Source, w.kind, w.status, w.aux, ts)
			}
			if want := w.flags | FlagReplay | FlagLast; ev.Flags != want {
				t.Errorf("flags %08b, want %08b", ev.Flags, want)
			}
			if got := tab.Name(ev.Symbol); got != w.sym {
				t.Errorf("symbol %q, want %q", got, w.sym)
			}
			type nums struct{ P, V, B, A, BS, AS, O, H, L float64 }
			g := nums{ev.Price, ev.Volume, ev.Bid, ev.Ask, ev.BidSize, ev.AskSize, ev.Open, ev.High, ev.Low}
			e := nums{w.ev.Price, w.ev.Volume, w.ev.Bid, w.ev.Ask, w.ev.BidSize, w.ev.AskSize, w.ev.Open, w.ev.High, w.ev.Low}
			if g != e || ev.IDHash != w.ev.IDHash {
				t.Errorf("values %+v id %d, want %+v id %d", g, ev.IDHash, e, w.ev.IDHash)
			}
			if IEXMessageTypeOf(ev.Aux) != tc.msg[0] {
				t.Errorf("IEXMessageTypeOf = %c", IEXMessageTypeOf(ev.Aux))
			}
		})
	}
}

func TestIEXPriceIsNearestFloat(t *testing.T) {
	// The fixed-point conversion must agree with parsing the decimal text.
	for _, v := range []int64{1, 9999, 10000, 1892301, 123456789, 999999999999, -5000, 1<<53 - 1} {
		b := binary.LittleEndian.AppendUint64(nil, uint64(v))
		neg := v < 0
		a := v
		if neg {
			a = -a
		}
		s := fmt.Sprintf("%d.%04d", a/1e4, a%1e4)
		if neg {
			s = "-" + s
		}
		want, _ := strconv.ParseFloat(s, 64)
		if got := iexPrice(b); got != want {
			t.Errorf("%d: %v, want %v (%s)", v, got, want, s)
		}
	}
}

func TestIEXSegmentStructure(t *testing.T) {
	q := iexMsg('Q', 0, tsBase, "AAPL", uint32(1), px("1"), px("2"), uint32(1))
	tr := iexMsg('T', 0, tsBase+1, "MSFT", uint32(5), px("3"), uint64(9))
	unknown := []byte{'Z', 1, 2, 3}
	d := NewIEXDecoder(IEXOptions{})

	// Three messages: the unknown one is counted and passed over; the last
	// delivered event carries FlagLast only if it is the segment's last.
	seg := iexSeg(IEXProtocolTOPS, 1, 1, 0, 10, tsBase, q, unknown, tr)
	evs, err := d.DecodeSegment(seg, nil)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events %d err %v", len(evs), err)
	}
	if evs[0].Seq != 10 || evs[1].Seq != 12 || evs[0].Flags&FlagLast != 0 || evs[1].Flags&FlagLast == 0 {
		t.Errorf("seqs %d %d flags %b %b", evs[0].Seq, evs[1].Seq, evs[0].Flags, evs[1].Flags)
	}
	if st := d.Stats(); st.Unknown != 1 || st.ByType['Z'] != 1 || st.Messages != 3 || st.Events != 2 {
		t.Errorf("stats %+v", st)
	}
	h := d.Header()
	if h.NextOffset() != uint64(len(seg)-IEXHeaderLen) || h.NextSeq() != 13 || h.ChannelID != 1 || h.SendTimeNs != tsBase {
		t.Errorf("header %+v", h)
	}

	// Heartbeat.
	hb := iexSeg(IEXProtocolTOPS, 1, 1, 500, 13, tsBase)
	if evs, err := d.DecodeSegment(hb, nil); err != nil || len(evs) != 0 {
		t.Errorf("heartbeat: %d events, %v", len(evs), err)
	}
	if d.Stats().Heartbeats != 1 {
		t.Errorf("heartbeats %d", d.Stats().Heartbeats)
	}

	// Errors.
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), seg...)) }
	bad := []struct {
		name   string
		seg    []byte
		reason Reason
		events int
	}{
		{"short", seg[:39], ReasonMalformed, 0},
		{"version", mut(func(b []byte) []byte { b[0] = 2; return b }), ReasonMalformed, 0},
		{"protocol", mut(func(b []byte) []byte { b[2] = 0x05; return b }), ReasonUnknownKind, 0},
		{"payload length", mut(func(b []byte) []byte { return b[:len(b)-1] }), ReasonMalformed, 0},
		{"count without payload", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[12:], 0)
			return b[:IEXHeaderLen]
		}), ReasonMalformed, 0},
		{"count too high", mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[14:], 4); return b }), ReasonMalformed, 2},
		{"count too low", mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[14:], 2); return b }), ReasonMalformed, 1},
		{"message overruns", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[IEXHeaderLen:], 200)
			return b
		}), ReasonMalformed, 0},
		{"zero-length message", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[IEXHeaderLen:], 0)
			return b
		}), ReasonMalformed, 0},
		{"short quote", iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, 0, q[:41], tr), ReasonMalformed, 0},
		{"blank symbol", iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, 0, iexMsg('T', 0, 1, "", uint32(1), px("1"), uint64(1))), ReasonUnknownSymbol, 0},
	}
	for _, tc := range bad {
		d := NewIEXDecoder(IEXOptions{})
		evs, err := d.DecodeSegment(tc.seg, nil)
		var ce *Error
		if !errors.As(err, &ce) || ce.Reason != tc.reason {
			t.Errorf("%s: err %v, want reason %v", tc.name, err, tc.reason)
			continue
		}
		if len(evs) != tc.events {
			t.Errorf("%s: %d events before the error, want %d", tc.name, len(evs), tc.events)
		}
	}

	// After a short (but framed) message Next goes on with the next one.
	d = NewIEXDecoder(IEXOptions{})
	if _, err := d.Reset(iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, 0, q[:41], tr)); err != nil {
		t.Fatal(err)
	}
	var ev Event
	if _, err := d.Next(&ev); err == nil || !bytes.Equal(d.Raw(), q[:41]) {
		t.Fatalf("want an error on the short quote, raw %x", d.Raw())
	}
	if ok, err := d.Next(&ev); !ok || err != nil || ev.Kind != KindTrade || ev.Seq != 2 {
		t.Fatalf("after the bad message: ok %v err %v ev %+v", ok, err, ev)
	}
	if ok, err := d.Next(&ev); ok || err != nil {
		t.Fatalf("end: ok %v err %v", ok, err)
	}

	// Framing lost at the second message: Framed points at it.
	lostSeg := iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, 0, q, tr)
	binary.LittleEndian.PutUint16(lostSeg[IEXHeaderLen+2+len(q):], 500)
	d = NewIEXDecoder(IEXOptions{})
	if _, err := d.Reset(lostSeg); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.Next(&ev); !ok || err != nil || d.FramingLost() {
		t.Fatalf("first message: %v %v", ok, err)
	}
	if _, err := d.Next(&ev); err == nil || !d.FramingLost() || d.Remaining() != 0 {
		t.Fatalf("want framing lost, got %v", err)
	}
	if msgs, n := d.Framed(); msgs != 1 || n != 2+len(q) {
		t.Errorf("Framed() = %d, %d; want 1, %d", msgs, n, 2+len(q))
	}
	if ok, err := d.Next(&ev); ok || err != nil {
		t.Errorf("after framing lost: %v %v", ok, err)
	}

	// Skip passes over messages without counting them.
	d = NewIEXDecoder(IEXOptions{})
	if _, err := d.Reset(seg); err != nil {
		t.Fatal(err)
	}
	if err := d.Skip(2); err != nil || d.Remaining() != 1 {
		t.Fatalf("skip: %v, remaining %d", err, d.Remaining())
	}
	if ok, _ := d.Next(&ev); !ok || ev.Seq != 12 || d.Stats().Messages != 1 {
		t.Fatalf("after skip: %+v, stats %+v", ev, d.Stats())
	}
}

func TestIEXDecodeAllocs(t *testing.T) {
	seg := iexSeg(IEXProtocolDEEP, 1, 1, 0, 1, tsBase,
		iexMsg('Q', 0, tsBase, "AAPL", uint32(1), px("1"), px("2"), uint32(1)),
		iexMsg('T', 0, tsBase, "AAPL", uint32(5), px("3"), uint64(9)),
		iexMsg('8', 1, tsBase, "MSFT", uint32(5), px("3")),
		iexMsg('H', 'T', tsBase, "MSFT", "    "),
		iexMsg('S', 'R', tsBase, ""),
	)
	d := NewIEXDecoder(IEXOptions{})
	dst := make([]Event, 0, 16)
	if _, err := d.DecodeSegment(seg, dst); err != nil {
		t.Fatal(err)
	}
	allocs := totalAllocs(1000, func() {
		evs, err := d.DecodeSegment(seg, dst[:0])
		if err != nil || len(evs) != 5 {
			t.Fatalf("%d events, %v", len(evs), err)
		}
	})
	if allocs > 0 {
		t.Fatalf("DecodeSegment allocates %.0f times in 1000 segments", allocs)
	}
	bad := seg[:len(seg)-1]
	allocs = totalAllocs(1000, func() { _, _ = d.DecodeSegment(bad, dst[:0]) })
	if allocs > 0 {
		t.Fatalf("rejecting 1000 bad segments allocates %.0f times", allocs)
	}
}

func FuzzIEXDecode(f *testing.F) {
	f.Add(iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, tsBase,
		iexMsg('Q', 0, tsBase, "AAPL", uint32(1), px("1"), px("2"), uint32(1)),
		iexMsg('A', 'C', tsBase, "AAPL", uint32(1000), px("100"), px("100.5"), uint32(250), "B", "1",
			uint32(1500000600), px("100.25"), px("100"), px("90"), px("110"))))
	f.Add(iexSeg(IEXProtocolDEEP, 1, 1, 0, 1, tsBase, iexMsg('5', 0, tsBase, "ZZ", uint32(1), px("1"))))
	f.Add(iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, tsBase))
	f.Add(iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, tsBase, iexMsg('T', 0, tsBase, "ZI\xffXT", uint32(1), px("1"), uint64(1))))
	if _, err := os.Stat(iexSamplePath); err == nil {
		// Real segments: the first of each message-type mix, a few dozen.
		seen := map[string]bool{}
		for _, seg := range iexSampleSegments(f) {
			var key []byte
			for p := IEXHeaderLen; p+3 <= len(seg); p += 2 + int(binary.LittleEndian.Uint16(seg[p:])) {
				key = append(key, seg[p+2])
			}
			if !seen[string(key)] && len(seen) < 64 {
				seen[string(key)] = true
				f.Add(seg)
			}
		}
	}
	syms := NewSymbolTable(0)
	d := NewIEXDecoder(IEXOptions{Symbols: NewSymbolCache(syms)})
	f.Fuzz(func(t *testing.T, seg []byte) {
		h, err := d.Reset(seg)
		if err != nil {
			return
		}
		var ev Event
		n := 0
		for i := 0; i < 70000; i++ {
			ok, err := d.Next(&ev)
			if err != nil {
				if ReasonOf(err) == ReasonNone {
					t.Fatal("error without a reason")
				}
				continue
			}
			if !ok {
				break
			}
			n++
			if ev.Kind == KindInvalid || ev.Seq < h.FirstSeq || ev.Seq >= h.NextSeq() {
				t.Fatalf("bad event %+v for header %+v", ev, h)
			}
			if name := syms.Name(ev.Symbol); ev.Symbol != 0 && !iexPrintable(name) {
				t.Fatalf("accepted the symbol %q", name)
			}
		}
		if n > int(h.MessageCount) {
			t.Fatalf("%d events from %d messages", n, h.MessageCount)
		}
	})
}

func iexPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func BenchmarkIEXDecode(b *testing.B) {
	segs := iexSampleSegments(b)
	d := NewIEXDecoder(IEXOptions{})
	var ev Event
	var msgs int
	decodeAll := func() {
		for _, seg := range segs {
			if _, err := d.Reset(seg); err != nil {
				b.Fatal(err)
			}
			for {
				ok, err := d.Next(&ev)
				if err != nil {
					b.Fatal(err)
				}
				if !ok {
					break
				}
				msgs++
			}
		}
	}
	decodeAll() // warm the symbol cache
	msgs = 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		decodeAll()
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(msgs), "ns/msg")
}
