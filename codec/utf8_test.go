package codec

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidSymbolName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"AAPL", true},
		{"BTC-USD", true},
		{"XBT/USD", true},
		{"BRK A", true},
		{"Ä-EUR", true},
		{"株式", true},
		{"", true}, // empty is the table's verdict (unknown_symbol), not an encoding problem
		{"A\xffB", false},
		{"\xc3", false},         // truncated sequence
		{"\xed\xa0\x80", false}, // an encoded surrogate
		{"\xc0\xaf", false},     // overlong
		{"A\x00", false},
		{"A\nB", false},
		{"\x1b[31m", false},
		{"A\x7f", false},
		{"A\u0085", false}, // C1 control (NEL)
	} {
		if got := ValidSymbolName([]byte(tc.name)); got != tc.ok {
			t.Errorf("ValidSymbolName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// Invalid UTF-8 (or a control character) in a symbol or an id is bad input
// in every parser that takes names or ids from the wire: ReasonMalformed,
// naming the field, and the name never reaches the symbol table.
func TestParsersRejectInvalidUTF8(t *testing.T) {
	const bad = "A\xff\xfeB"
	tab := NewSymbolTable(64)
	p := NewParser(ParserOptions{Symbols: tab})
	for _, tc := range []struct {
		msg   string
		field string
	}{
		{`{"type":"trade","symbol":"` + bad + `","ts":1,"price":2,"volume":3}`, "symbol"},
		{`{"type":"trade","symbol":"A\u0001B","ts":1,"price":2,"volume":3}`, "symbol"}, // escaped control: fastjson path
		{`{"type":"trade","symbol":"A` + "\x01" + `B","ts":1,"price":2,"volume":3}`, "symbol"},
		{`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"id":"t-` + bad + `"}`, "id"},
		{`{"type":"quote","symbol":"` + bad + `","ts":1,"bid":2}`, "symbol"},
		{`{"type":"bar","symbol":"` + bad + `","ts":1,"open":1,"high":1,"low":1,"close":1,"volume":1}`, "symbol"},
		{`{"type":"news","id":"` + bad + `","ts":1,"headline":"h"}`, "id"},
		{`{"type":"news","id":"n1","ts":1,"headline":"` + bad + `"}`, "headline"},
		{`{"type":"news","id":"n1","ts":1,"headline":"h","body":"` + bad + `"}`, "body"},
		{`{"type":"news","id":"n1","ts":1,"headline":"h","source":"` + bad + `"}`, "source"},
		{`{"type":"news","id":"n1","ts":1,"headline":"h","symbols":["AAPL","` + bad + `"]}`, "symbols"},
		{`{"message_id":"` + bad + `","timestamp":1,"payload":{"MarketData":{"symbol":"AAPL","price":1,"volume":1}}}`, "message_id"},
		{`{"message_id":"m1","timestamp":1,"payload":{"MarketData":{"symbol":"` + bad + `","price":1,"volume":1}}}`, "symbol"},
		{`{"message_id":"m1","timestamp":1,"payload":{"NewsData":{"headline":"` + bad + `"}}}`, "headline"},
		{`{"message_id":"m1","timestamp":1,"payload":{"NewsData":{"headline":"h","id":"` + bad + `"}}}`, "id"},
		{`{"message_id":"m1","timestamp":1,"payload":{"NewsData":{"headline":"h","content":"` + bad + `"}}}`, "content"},
		{`{"message_id":"m1","timestamp":1,"payload":{"TradingSignal":{"symbol":"` + bad + `","signal_type":"Buy"}}}`, "symbol"},
		{`{"message_id":"m1","timestamp":1,"payload":{"SystemEvent":{"event_type":"` + bad + `"}}}`, "event_type"},
		{`{"message_id":"m1","timestamp":1,"payload":{"SystemEvent":{"event_type":"Halt","symbol":"` + bad + `"}}}`, "symbol"},
		{`{"message_id":"m1","timestamp":1,"payload":{"CustomEvent":{"event_type":"x","symbol":"` + bad + `"}}}`, "symbol"},
	} {
		for _, flat := range []bool{true, false} {
			p.noFlat = !flat
			var ev Event
			e := parserWantErr(t, p.ParseJSON([]byte(tc.msg), &ev), ReasonMalformed, tc.field)
			if e.Detail == "" || !strings.Contains(e.Error(), tc.field) {
				t.Errorf("%q: error %q does not say why", tc.msg, e.Error())
			}
		}
	}
	p.noFlat = false
	for _, name := range tab.Names() {
		if !ValidSymbolName([]byte(name)) {
			t.Fatalf("the table holds %q", name)
		}
	}
	// Valid non-ASCII names and ids are accepted as they are.
	var ev Event
	if err := p.ParseJSON([]byte(`{"type":"trade","symbol":"Ä-EUR","ts":1,"price":2,"volume":3,"id":"ü-1"}`), &ev); err != nil || tab.Name(ev.Symbol) != "Ä-EUR" {
		t.Fatalf("valid UTF-8: %v, %q", err, tab.Name(ev.Symbol))
	}
}

func TestCSVRejectsInvalidUTF8(t *testing.T) {
	c := csvParser(t, "ts,symbol,price,volume,id")
	var ev Event
	e := parserWantErr(t, c.ParseRow([]byte("1,A\xffB,2,3,x"), &ev), ReasonMalformed, "symbol")
	if e.Offset != 2 {
		t.Fatalf("offset %d, want 2", e.Offset)
	}
	e = parserWantErr(t, c.ParseRow([]byte("1,AAPL,2,3,i\xc3"), &ev), ReasonMalformed, "id")
	if e.Offset != 11 {
		t.Fatalf("offset %d, want 11", e.Offset)
	}
	parserWantErr(t, c.ParseRow([]byte("1,A\x01B,2,3,x"), &ev), ReasonMalformed, "symbol")
	if err := c.ParseRow([]byte("1,AAPL,2,3,ü"), &ev); err != nil {
		t.Fatal(err)
	}
}

func TestAdaptersRejectInvalidUTF8(t *testing.T) {
	const bad = "SKL\xff-BTC"
	for _, tc := range []struct {
		a     Adapter
		msg   string
		field string
	}{
		{NewCoinbase(CoinbaseOptions{}), strings.Replace(cbMatchMsg, "SKL-BTC", bad, 1), "product_id"},
		{NewCoinbase(CoinbaseOptions{}), strings.Replace(cbTickerMsg, "BAND-GBP", "BAND\x7f", 1), "product_id"},
		{NewBinance(BinanceOptions{}), strings.Replace(bnAggTradeMsg, "BNBBTC", bad, 1), "s"},
		{NewBinance(BinanceOptions{}), strings.Replace(bnBookTickerMsg, "BNBUSDT", `BNB\u0000`, 1), "s"},
		{NewBinance(BinanceOptions{}), strings.Replace(bnKlineMsg, `"s":"BNBBTC","k"`, `"s":"`+bad+`","k"`, 1), "s"},
		{NewKraken(KrakenOptions{}), strings.Replace(krTradesMsg, "XMR/USD", bad, 1), "pair"},
	} {
		out, err := tc.a.Decode([]byte(tc.msg), nil)
		if len(out) != 0 {
			t.Errorf("%q: %d events", tc.msg, len(out))
		}
		e := parserWantErr(t, err, ReasonMalformed, tc.field)
		if !strings.Contains(e.Detail, "UTF-8") {
			t.Errorf("%q: detail %q", tc.msg, e.Detail)
		}
	}
}

func TestIEXRejectsNonPrintableSymbol(t *testing.T) {
	tr := func(sym string) []byte { return iexMsg('T', 0, tsBase, sym, uint32(100), px("1.5"), uint64(7)) }
	for _, sym := range []string{"ZI\xffXT", "ZI\x01XT", "ZIEXT\x7f", "Ä"} {
		d := NewIEXDecoder(IEXOptions{})
		evs, err := d.DecodeSegment(iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, tsBase, tr(sym), tr("ZIEXT")), nil)
		e := parserWantErr(t, err, ReasonMalformed, "symbol")
		if !strings.Contains(e.Detail, "printable") || len(evs) != 0 {
			t.Errorf("%q: %v, %d events", sym, e, len(evs))
		}
		// The next message of the segment still decodes.
		d2 := NewIEXDecoder(IEXOptions{})
		if _, err := d2.Reset(iexSeg(IEXProtocolTOPS, 1, 1, 0, 1, tsBase, tr(sym), tr("ZIEXT"))); err != nil {
			t.Fatal(err)
		}
		var ev Event
		if _, err := d2.Next(&ev); err == nil {
			t.Fatalf("%q accepted", sym)
		}
		if ok, err := d2.Next(&ev); !ok || err != nil || ev.Kind != KindTrade {
			t.Fatalf("after the bad symbol: %v %v", ok, err)
		}
	}
}

// The check costs nothing measurable and allocates nothing: rejecting a bad
// name and parsing a tick with an id both stay at zero allocations.
func TestInvalidUTF8RejectionAllocs(t *testing.T) {
	p := NewParser(ParserOptions{})
	good := []byte(`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"id":"t-1"}`)
	bad := []byte(`{"type":"trade","symbol":"A` + "\xff" + `","ts":1,"price":2,"volume":3}`)
	badID := []byte(`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"id":"` + "\xff" + `"}`)
	var ev Event
	if err := p.ParseJSON(good, &ev); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() {
		_ = p.ParseJSON(good, &ev)
		_ = p.ParseJSON(bad, &ev)
		_ = p.ParseJSON(badID, &ev)
	}); n != 0 {
		t.Fatalf("%v allocs per run", n)
	}
	if !utf8.Valid(good) {
		t.Fatal("test input")
	}
}
