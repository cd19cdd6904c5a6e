package codec

import (
	"errors"
	"strings"
	"testing"
)

// jsonTick is the compact tick of DESIGN.md.
const jsonTick = `{"type":"trade","symbol":"AAPL","ts":1700000000123456789,"price":189.23,"volume":300,"bid":189.22,"ask":189.24,"status":"open","id":"t-1"}`

// jsonStreamMD is a StreamMessage with a MarketData payload, as serde writes it.
const jsonStreamMD = `{"message_id":"m1","stream_id":"s1","timestamp":"2024-01-02T14:30:00.123Z","source":"polygon","message_type":"market_data","payload":{"MarketData":{"symbol":"AAPL","timestamp":"2024-01-02T14:30:00.120Z","price":189.23,"volume":10,"bid":null,"ask":null,"market_status":"Open"}},"metadata":{}}`

// jsonParse parses msg with a fresh parser whose table already holds AAPL=1,
// MSFT=2.
func jsonParse(t *testing.T, msg string) (Event, *Parser, error) {
	t.Helper()
	tab := NewSymbolTable(0)
	for _, s := range []string{"AAPL", "MSFT"} {
		if _, err := tab.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	p := NewParser(ParserOptions{Symbols: tab, Source: 9})
	ev := Event{Seq: 77, IngestNs: 55, Aux: 123, Low: 4} // Seq and IngestNs survive; the rest is overwritten
	err := p.ParseJSON([]byte(msg), &ev)
	return ev, p, err
}

func TestParseJSONShapes(t *testing.T) {
	const ts = 1700000000123456789
	const t0 = 1704205800123000000 // 2024-01-02T14:30:00.123Z
	base := func(kind Kind) Event { return Event{Kind: kind, Seq: 77, IngestNs: 55, Source: 9, Symbol: 1, TsNs: ts} }
	with := func(e Event, f func(*Event)) Event { f(&e); return e }
	for _, tc := range []struct {
		name string
		msg  string
		want Event
	}{
		{"design tick", jsonTick, with(base(KindTrade), func(e *Event) {
			e.Price, e.Volume, e.Bid, e.Ask = 189.23, 300, 189.22, 189.24
			e.Flags = FlagHasBid | FlagHasAsk
			e.Status = StatusOpen
			e.IDHash = HashID([]byte("t-1"))
		})},
		{"minimal trade", `{"type":"trade","symbol":"MSFT","ts":1700000000123456789,"price":1,"volume":0}`,
			with(base(KindTrade), func(e *Event) { e.Symbol, e.Price = 2, 1 })},
		{"fractional volume, rfc3339 ts, side, numeric id", `{"type":"trade","symbol":"AAPL","ts":"2024-01-02T14:30:00.123Z","price":"43109.52","volume":0.00250000,"side":"SELL","id":42}`,
			with(base(KindTrade), func(e *Event) {
				e.TsNs, e.Price, e.Volume, e.Flags, e.IDHash = t0, 43109.52, 0.0025, FlagSell, HashID([]byte("42"))
			})},
		{"ts as digit string", `{"type":"trade","symbol":"AAPL","ts":"1700000000123456789","price":1,"volume":1}`,
			with(base(KindTrade), func(e *Event) { e.Price, e.Volume = 1, 1 })},
		{"quote with sizes", `{"type":"quote","symbol":"AAPL","ts":1700000000123456789,"bid":189.22,"ask":189.24,"bid_size":100,"ask_size":"200","status":"pre_market"}`,
			with(base(KindQuote), func(e *Event) {
				e.Bid, e.Ask, e.BidSize, e.AskSize = 189.22, 189.24, 100, 200
				e.Flags, e.Status = FlagHasBid|FlagHasAsk, StatusPreMarket
			})},
		{"one-sided quote with last price", `{"type":"quote","symbol":"AAPL","ts":1700000000123456789,"ask":10.5,"price":10.4}`,
			with(base(KindQuote), func(e *Event) { e.Ask, e.Price, e.Flags = 10.5, 10.4, FlagHasAsk })},
		{"bar", `{"type":"bar","symbol":"AAPL","ts":1700000000123456789,"open":10,"high":12,"low":9.5,"close":11,"volume":1234.5,"status":"AfterHours"}`,
			with(base(KindBar), func(e *Event) {
				e.Open, e.High, e.Low, e.Price, e.Volume, e.Status = 10, 12, 9.5, 11, 1234.5, StatusAfterHours
			})},
		{"unknown keys and whitespace", " {\"extra\":{\"x\":[1,2]},\"type\":\"trade\" ,\"symbol\":\"AAPL\",\"ts\":1700000000123456789,\"price\":2,\"volume\":3}\n",
			with(base(KindTrade), func(e *Event) { e.Price, e.Volume = 2, 3 })},
		{"stream market data trade", jsonStreamMD, with(base(KindTrade), func(e *Event) {
			e.TsNs = t0 - 3e6 // the payload's own timestamp
			e.Price, e.Volume, e.Status = 189.23, 10, StatusOpen
			e.IDHash = HashID([]byte("m1"))
		})},
		{"stream market data quote", `{"message_id":"m2","stream_id":"s","timestamp":"2024-01-02T14:30:00.123Z","payload":{"MarketData":{"symbol":"MSFT","price":0.0,"volume":0,"bid":370.1,"ask":null,"market_status":"Halted"}},"metadata":{}}`,
			with(base(KindQuote), func(e *Event) {
				e.Symbol, e.TsNs, e.Bid, e.Flags, e.Status = 2, t0, 370.1, FlagHasBid, StatusHalted
				e.IDHash = HashID([]byte("m2"))
			})},
		{"stream market data trade with book", `{"message_id":"m3","timestamp":1700000000123456789,"payload":{"MarketData":{"symbol":"AAPL","price":5,"volume":1,"bid":4.9,"ask":5.1,"market_status":"PreMarket"}}}`,
			with(base(KindTrade), func(e *Event) {
				e.Price, e.Volume, e.Bid, e.Ask, e.Flags, e.Status = 5, 1, 4.9, 5.1, FlagHasBid|FlagHasAsk, StatusPreMarket
				e.IDHash = HashID([]byte("m3"))
			})},
		{"stream trading signal", `{"message_id":"m4","timestamp":"2024-01-02T14:30:00.123Z","payload":{"TradingSignal":{"symbol":"MSFT","signal_type":"StrongSell","strength":0.8,"price":371.5}}}`,
			with(base(KindSignal), func(e *Event) {
				e.Symbol, e.TsNs, e.Aux, e.Flags, e.Volume, e.Price = 2, t0, uint64(SignalStrongSell), FlagSell, 0.8, 371.5
				e.IDHash = HashID([]byte("m4"))
			})},
		{"stream hold signal", `{"message_id":"m5","timestamp":"2024-01-02T14:30:00.123Z","payload":{"TradingSignal":{"symbol":"AAPL","signal_type":"Hold"}}}`,
			with(base(KindSignal), func(e *Event) {
				e.TsNs, e.Aux, e.IDHash = t0, uint64(SignalHold), HashID([]byte("m5"))
			})},
		{"stream system event", `{"message_id":"m6","timestamp":"2024-01-02T14:30:00.123Z","payload":{"SystemEvent":{"event_type":"MarketOpen","message":"bell","severity":"Info"}}}`,
			with(base(KindSystem), func(e *Event) {
				e.Symbol, e.TsNs, e.Aux, e.IDHash = 0, t0, HashID([]byte("MarketOpen")), HashID([]byte("m6"))
			})},
		{"stream custom event object", `{"message_id":"m7","timestamp":"2024-01-02T14:30:00.123Z","payload":{"CustomEvent":{"event_type":"rebalance","symbol":"MSFT","data":{"w":0.1}}}}`,
			with(base(KindCustom), func(e *Event) {
				e.Symbol, e.TsNs, e.Aux, e.IDHash = 2, t0, HashID([]byte("rebalance")), HashID([]byte("m7"))
			})},
		{"stream custom event any value", `{"message_id":"m8","timestamp":"2024-01-02T14:30:00.123Z","payload":{"CustomEvent":[1,"two",null]}}`,
			with(base(KindCustom), func(e *Event) { e.Symbol, e.TsNs, e.IDHash = 0, t0, HashID([]byte("m8")) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, p, err := jsonParse(t, tc.msg)
			if err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			// The text is tested in text_test.go; here only that its
			// length is the event's and that news is broadcast.
			if int(ev.TextLen) != len(p.Text()) {
				t.Fatalf("TextLen %d, text %d bytes", ev.TextLen, len(p.Text()))
			}
			if hasText := ev.Kind == KindNews || ev.Kind == KindSignal || ev.Kind == KindSystem || ev.Kind == KindCustom; hasText != (ev.TextLen > 0) {
				t.Fatalf("%v event with TextLen %d", ev.Kind, ev.TextLen)
			}
			if (ev.Kind == KindNews) != (ev.Flags&FlagBroadcast != 0) {
				t.Fatalf("%v event with flags %b", ev.Kind, ev.Flags)
			}
			ev.TextLen, ev.Flags = 0, ev.Flags&^FlagBroadcast
			if ev != tc.want {
				t.Fatalf("got  %+v\nwant %+v", ev, tc.want)
			}
		})
	}
}

func TestParseJSONNews(t *testing.T) {
	for _, tc := range []struct {
		name, msg                  string
		id, source, headline, body string
		symbols                    []Symbol
		dropped                    int
		sentiment                  float64
		hasSentiment               bool
		wantSymbol                 Symbol
		wantTs                     int64
		wantIDHash                 string
	}{
		{name: "compact", msg: `{"type":"news","id":"n1","ts":1700000000000000000,"source":"reuters","headline":"Apple \"beats\"\u00e9","body":"line1\nline2","symbols":["MSFT","AAPL","MSFT"]}`,
			id: "n1", source: "reuters", headline: `Apple "beats"é`, body: "line1\nline2", symbols: []Symbol{2, 1}, wantSymbol: 2, wantTs: 1700000000000000000, wantIDHash: "n1"},
		{name: "compact no symbols", msg: `{"type":"news","id":"n2","ts":"2024-01-02T14:30:00.123Z","headline":"Fed holds"}`,
			id: "n2", headline: "Fed holds", wantTs: 1704205800123000000, wantIDHash: "n2"},
		{name: "news data", msg: `{"message_id":"m1","timestamp":"2024-01-02T14:30:00.123Z","source":"feedX","payload":{"NewsData":{"headline":"H","content":"C","symbols":["AAPL"],"sentiment":-0.25}}}`,
			id: "m1", source: "feedX", headline: "H", body: "C", symbols: []Symbol{1}, sentiment: -0.25, hasSentiment: true, wantSymbol: 1, wantTs: 1704205800123000000, wantIDHash: "m1"},
		{name: "news data own id, source, time", msg: `{"message_id":"m1","timestamp":"2024-01-02T14:30:00.123Z","source":"feedX","payload":{"NewsData":{"id":"a9","headline":"H","source":"bbg","timestamp":5,"symbols":[]}}}`,
			id: "a9", source: "bbg", headline: "H", wantTs: 5, wantIDHash: "m1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, p, err := jsonParse(t, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			a := p.News()
			if a == nil || ev.Kind != KindNews {
				t.Fatalf("kind %s, article %v", ev.Kind, a)
			}
			if string(a.ID) != tc.id || string(a.Source) != tc.source || string(a.Headline) != tc.headline || string(a.Body) != tc.body {
				t.Fatalf("article id %q source %q headline %q body %q", a.ID, a.Source, a.Headline, a.Body)
			}
			if len(a.Symbols) != len(tc.symbols) || a.SymbolsDropped != tc.dropped {
				t.Fatalf("symbols %v dropped %d, want %v dropped %d", a.Symbols, a.SymbolsDropped, tc.symbols, tc.dropped)
			}
			for i := range a.Symbols {
				if a.Symbols[i] != tc.symbols[i] {
					t.Fatalf("symbols %v, want %v", a.Symbols, tc.symbols)
				}
			}
			if a.HasSentiment != tc.hasSentiment || a.Sentiment != tc.sentiment {
				t.Fatalf("sentiment %v %v", a.Sentiment, a.HasSentiment)
			}
			if ev.Symbol != tc.wantSymbol || ev.TsNs != tc.wantTs || ev.IDHash != HashID([]byte(tc.wantIDHash)) || ev.Seq != 77 {
				t.Fatalf("event %+v", ev)
			}
			c := a.Clone()
			var other Event
			if err := p.ParseJSON([]byte(jsonTick), &other); err != nil {
				t.Fatal(err)
			}
			if p.News() != nil {
				t.Fatal("News() must be nil after a non-news message")
			}
			if string(c.Headline) != tc.headline {
				t.Fatalf("clone changed: %q", c.Headline)
			}
		})
	}
}

func TestParseJSONNewsSymbolLimits(t *testing.T) {
	tab := NewSymbolTable(0)
	p := NewParser(ParserOptions{Symbols: tab})
	var sb strings.Builder
	sb.WriteString(`{"type":"news","id":"n","ts":1,"headline":"h","symbols":[`)
	for i := range MaxNewsSymbols + 4 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"S` + string(rune('A'+i)) + `"`)
	}
	sb.WriteString(`,""]}`)
	var ev Event
	if err := p.ParseJSON([]byte(sb.String()), &ev); err != nil {
		t.Fatal(err)
	}
	a := p.News()
	if len(a.Symbols) != MaxNewsSymbols || a.SymbolsDropped != 5 {
		t.Fatalf("kept %d dropped %d, want %d and 5", len(a.Symbols), a.SymbolsDropped, MaxNewsSymbols)
	}
	tab.Freeze()
	if err := p.ParseJSON([]byte(`{"type":"news","id":"n","ts":1,"headline":"h","symbols":["ZZZ","SB"]}`), &ev); err != nil {
		t.Fatal(err)
	}
	a = p.News()
	if len(a.Symbols) != 1 || a.SymbolsDropped != 1 || ev.Symbol != a.Symbols[0] || tab.Name(ev.Symbol) != "SB" {
		t.Fatalf("frozen universe: symbols %v dropped %d event symbol %d", a.Symbols, a.SymbolsDropped, ev.Symbol)
	}
}

func TestParseJSONRejections(t *testing.T) {
	trade := func(kv string) string {
		return `{"type":"trade","symbol":"AAPL","ts":1700000000123456789,` + kv + `}`
	}
	env := func(payload string) string {
		return `{"message_id":"m1","timestamp":"2024-01-02T14:30:00.123Z","payload":` + payload + `}`
	}
	for _, tc := range []struct {
		msg    string
		reason Reason
		field  string
	}{
		// missing fields
		{`{"symbol":"AAPL"}`, ReasonMissingField, "type"},
		{`{"type":"trade","ts":1,"price":1,"volume":1}`, ReasonMissingField, "symbol"},
		{`{"type":"trade","symbol":"AAPL","price":1,"volume":1}`, ReasonMissingField, "ts"},
		{trade(`"volume":1`), ReasonMissingField, "price"},
		{trade(`"price":1`), ReasonMissingField, "volume"},
		{trade(`"price":null,"volume":1`), ReasonMissingField, "price"},
		{`{"type":"quote","symbol":"AAPL","ts":1,"price":1}`, ReasonMissingField, "bid"},
		{`{"type":"bar","symbol":"AAPL","ts":1,"open":1,"high":1,"low":1,"volume":1}`, ReasonMissingField, "close"},
		{`{"type":"news","ts":1,"headline":"h"}`, ReasonMissingField, "id"},
		{`{"type":"news","id":"n","ts":1}`, ReasonMissingField, "headline"},
		{`{"message_id":"m1","payload":{"MarketData":{}}}`, ReasonMissingField, "timestamp"},
		{`{"message_id":"m1","timestamp":1}`, ReasonMissingField, "payload"},
		{`{"timestamp":1,"payload":{"MarketData":{}}}`, ReasonMissingField, "message_id"},
		{env(`{"MarketData":{"price":1,"volume":1}}`), ReasonMissingField, "symbol"},
		{env(`{"MarketData":{"symbol":"AAPL","volume":1}}`), ReasonMissingField, "price"},
		{env(`{"MarketData":{"symbol":"AAPL","price":1}}`), ReasonMissingField, "volume"},
		{env(`{"NewsData":{"content":"c"}}`), ReasonMissingField, "headline"},
		{env(`{"TradingSignal":{"symbol":"AAPL"}}`), ReasonMissingField, "signal_type"},
		{env(`{"SystemEvent":{"message":"m"}}`), ReasonMissingField, "event_type"},
		// wrong JSON types
		{`[1,2]`, ReasonBadType, ""},
		{`"trade"`, ReasonBadType, ""},
		{`{"type":1}`, ReasonBadType, "type"},
		{`{"type":"trade","symbol":7,"ts":1,"price":1,"volume":1}`, ReasonBadType, "symbol"},
		{trade(`"price":true,"volume":1`), ReasonBadType, "price"},
		{trade(`"price":[1],"volume":1`), ReasonBadType, "price"},
		{trade(`"price":1,"volume":{}`), ReasonBadType, "volume"},
		{`{"type":"trade","symbol":"AAPL","ts":{},"price":1,"volume":1}`, ReasonBadType, "ts"},
		{trade(`"price":1,"volume":1,"id":true`), ReasonBadType, "id"},
		{trade(`"price":1,"volume":1,"status":1`), ReasonBadType, "status"},
		{`{"type":"news","id":"n","ts":1,"headline":"h","symbols":"AAPL"}`, ReasonBadType, "symbols"},
		{`{"type":"news","id":"n","ts":1,"headline":"h","symbols":[1]}`, ReasonBadType, "symbols"},
		{env(`"MarketData"`), ReasonBadType, "payload"},
		{env(`{"MarketData":[1]}`), ReasonBadType, "payload"},
		// bad numbers
		{trade(`"price":NaN,"volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":"NaN","volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":-Inf,"volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":"Infinity","volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":1,"volume":"inf"`), ReasonBadNumber, "volume"},
		{trade(`"price":1e999,"volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":1-2,"volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":"","volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":"12abc","volume":1`), ReasonBadNumber, "price"},
		{trade(`"price":1,"volume":1,"bid":"nan"`), ReasonBadNumber, "bid"},
		{env(`{"NewsData":{"headline":"h","sentiment":"NaN"}}`), ReasonBadNumber, "sentiment"},
		// prices and volumes
		{trade(`"price":0,"volume":1`), ReasonBadPrice, "price"},
		{trade(`"price":-1.5,"volume":1`), ReasonBadPrice, "price"},
		{trade(`"price":"-0","volume":1`), ReasonBadPrice, "price"},
		{trade(`"price":1,"volume":1,"bid":0`), ReasonBadPrice, "bid"},
		{trade(`"price":1,"volume":1,"ask":-1`), ReasonBadPrice, "ask"},
		{`{"type":"quote","symbol":"AAPL","ts":1,"bid":-1}`, ReasonBadPrice, "bid"},
		{`{"type":"bar","symbol":"AAPL","ts":1,"open":1,"high":2,"low":1.5,"close":2,"volume":1}`, ReasonBadPrice, ""},
		{`{"type":"bar","symbol":"AAPL","ts":1,"open":0,"high":2,"low":1,"close":2,"volume":1}`, ReasonBadPrice, "open"},
		{env(`{"MarketData":{"symbol":"AAPL","price":0,"volume":5}}`), ReasonBadPrice, "price"},
		{env(`{"TradingSignal":{"symbol":"AAPL","signal_type":"Buy","price":0}}`), ReasonBadPrice, "price"},
		{trade(`"price":1,"volume":-1`), ReasonBadVolume, "volume"},
		{trade(`"price":1,"volume":"-0.001"`), ReasonBadVolume, "volume"},
		{`{"type":"quote","symbol":"AAPL","ts":1,"bid":1,"bid_size":-5}`, ReasonBadVolume, "bid_size"},
		{`{"type":"bar","symbol":"AAPL","ts":1,"open":1,"high":2,"low":1,"close":2,"volume":-1}`, ReasonBadVolume, "volume"},
		// timestamps
		{`{"type":"trade","symbol":"AAPL","ts":-1,"price":1,"volume":1}`, ReasonBadTimestamp, "ts"},
		{`{"type":"trade","symbol":"AAPL","ts":1.7e18,"price":1,"volume":1}`, ReasonBadTimestamp, "ts"},
		{`{"type":"trade","symbol":"AAPL","ts":"yesterday","price":1,"volume":1}`, ReasonBadTimestamp, "ts"},
		{`{"type":"trade","symbol":"AAPL","ts":"2024-02-30T00:00:00Z","price":1,"volume":1}`, ReasonBadTimestamp, "ts"},
		{`{"type":"trade","symbol":"AAPL","ts":99999999999999999999,"price":1,"volume":1}`, ReasonBadTimestamp, "ts"},
		{`{"message_id":"m","timestamp":"2024-01-02T14:30:00","payload":{"MarketData":{}}}`, ReasonBadTimestamp, "timestamp"},
		{env(`{"MarketData":{"symbol":"AAPL","timestamp":"x","price":1,"volume":1}}`), ReasonBadTimestamp, "timestamp"},
		// unknown kinds
		{`{"type":"trades","symbol":"AAPL"}`, ReasonUnknownKind, "type"},
		{trade(`"price":1,"volume":1,"status":"lunch"`), ReasonUnknownKind, "status"},
		{trade(`"price":1,"volume":1,"side":"short"`), ReasonUnknownKind, "side"},
		{env(`{"OrderBook":{}}`), ReasonUnknownKind, "payload"},
		{env(`{"MarketData":{"symbol":"AAPL","price":1,"volume":1,"market_status":"Lunch"}}`), ReasonUnknownKind, "market_status"},
		{env(`{"TradingSignal":{"symbol":"AAPL","signal_type":"Maybe"}}`), ReasonUnknownKind, "signal_type"},
		// structure (symbol rejections: TestParseJSONFrozenUniverse, TestParserSymbolRejections)
		{trade(`"price":1,"volume":1,"symbol":"AAPL"`), ReasonMalformed, "symbol"}, // duplicate key
		{`{"type":"trade",}`, ReasonMalformed, ""},
		{``, ReasonMalformed, ""},
		{env(`{}`), ReasonMalformed, "payload"},
		{env(`{"MarketData":{},"NewsData":{}}`), ReasonMalformed, "payload"},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			ev, p, err := jsonParse(t, tc.msg)
			e := parserWantErr(t, err, tc.reason, tc.field)
			if ev.Seq != 77 || ev.IngestNs != 55 {
				t.Fatalf("Seq/IngestNs not preserved on error: %+v", ev)
			}
			if p.News() != nil {
				t.Fatal("News() must be nil after an error")
			}
			if !strings.HasPrefix(e.Error(), "codec: ") {
				t.Fatalf("error string %q lacks the package prefix", e.Error())
			}
		})
	}
}

func TestParseJSONFrozenUniverse(t *testing.T) {
	tab := NewSymbolTable(0)
	tab.InternString("AAPL")
	tab.Freeze()
	p := NewParser(ParserOptions{Symbols: tab})
	var ev Event
	parserWantErr(t, p.ParseJSON([]byte(`{"type":"trade","symbol":"TSLA","ts":1,"price":1,"volume":1}`), &ev), ReasonUnknownSymbol, "symbol")
	parserWantErr(t, p.ParseJSON([]byte(`{"message_id":"m","timestamp":1,"payload":{"SystemEvent":{"event_type":"Halt","symbol":"TSLA"}}}`), &ev), ReasonUnknownSymbol, "symbol")
	if err := p.ParseJSON([]byte(jsonTick), &ev); err != nil {
		t.Fatal(err)
	}
}

func TestParseJSONOversize(t *testing.T) {
	p := NewParser(ParserOptions{MaxMessageSize: len(jsonTick)})
	var ev Event
	if err := p.ParseJSON([]byte(jsonTick), &ev); err != nil {
		t.Fatalf("message of exactly MaxMessageSize: %v", err)
	}
	big := []byte(jsonTick + " ")
	parserWantErr(t, p.ParseJSON(big, &ev), ReasonOversize, "")
	// Checked before parsing: even invalid JSON over the limit is oversize.
	parserWantErr(t, p.ParseJSON([]byte(strings.Repeat("{", len(jsonTick)+1)), &ev), ReasonOversize, "")
}

func TestParseJSONMalformedOffset(t *testing.T) {
	for _, tc := range []struct {
		msg    string
		offset int
	}{
		{``, 0},
		{`   `, 3},
		{`{"type":"trade",}`, 16},
		{`{"type":"trade"`, 15},
		{`{"type" "trade"}`, 8},
		{`{"type":"trade"} x`, 17},
		{`{"type":"tr`, 11},
		{`{"a":[1,2,}`, 10},
		{`{"a":tru}`, 5},
		{`{"a":xyz}`, 5},
		{`{"a":1]`, 6},
		{`{'a':1}`, 1},
		{strings.Repeat("[", 301) + strings.Repeat("]", 301), 300},
	} {
		_, _, err := jsonParse(t, tc.msg)
		e := parserWantErr(t, err, ReasonMalformed, "")
		if e.Offset != tc.offset {
			t.Errorf("%q: offset %d, want %d", tc.msg, e.Offset, tc.offset)
		}
	}
}

func TestParseJSONZeroAlloc(t *testing.T) {
	p := NewParser(ParserOptions{})
	var ev Event
	for _, tc := range []struct{ name, msg string }{
		{"compact tick", jsonTick},
		{"stream message", jsonStreamMD},
		{"quote", `{"type":"quote","symbol":"AAPL","ts":"2024-01-02T14:30:00.123Z","bid":"189.22","ask":"189.24","bid_size":1,"ask_size":2}`},
		{"bar", `{"type":"bar","symbol":"AAPL","ts":1,"open":10,"high":12,"low":9.5,"close":11,"volume":1234.5}`},
		{"news", `{"type":"news","id":"n1","ts":1,"source":"r","headline":"h\u00e9","body":"b","symbols":["AAPL","MSFT"]}`},
		{"news data", `{"message_id":"m1","timestamp":1,"payload":{"NewsData":{"headline":"H","content":"C","symbols":["AAPL"],"sentiment":0.5}}}`},
		{"signal", `{"message_id":"m4","timestamp":1,"payload":{"TradingSignal":{"symbol":"MSFT","signal_type":"Buy","strength":0.8}}}`},
		{"reject bad price", `{"type":"trade","symbol":"AAPL","ts":1,"price":-1,"volume":1}`},
		{"reject NaN string", `{"type":"trade","symbol":"AAPL","ts":1,"price":"NaN","volume":1}`},
		{"reject missing", `{"type":"trade","symbol":"AAPL","ts":1}`},
		{"reject bad type", `{"type":"trade","symbol":"AAPL","ts":1,"price":true,"volume":1}`},
		{"reject oversize", strings.Repeat(" ", DefaultMaxMessageSize+1)},
	} {
		msg := []byte(tc.msg)
		_ = p.ParseJSON(msg, &ev) // first sight of symbols
		if n := testing.AllocsPerRun(200, func() { _ = p.ParseJSON(msg, &ev) }); n != 0 {
			t.Errorf("%s: ParseJSON allocates %v per message", tc.name, n)
		}
	}
}

// TestParseJSONTickFrameRoundTrip: a parsed tick survives the binary frame.
func TestParseJSONTickFrameRoundTrip(t *testing.T) {
	ev, _, err := jsonParse(t, jsonTick)
	if err != nil {
		t.Fatal(err)
	}
	var back Event
	if _, err := DecodeFrame(AppendFrame(nil, &ev), &back); err != nil || back != ev {
		t.Fatalf("frame round trip: %v\n%+v\n%+v", err, back, ev)
	}
}

func TestParseJSONErrorsAreParserOwned(t *testing.T) {
	_, _, err := jsonParse(t, `{"type":"trade","symbol":"AAPL","ts":1,"price":"NaN","volume":1}`)
	e := parserWantErr(t, err, ReasonBadNumber, "price")
	if e == ErrDecimalNonFinite || ErrDecimalNonFinite.Field != "" {
		t.Fatal("the shared sentinel must not be handed out or modified")
	}
	if !errors.Is(err, ErrDecimalNonFinite) { // same reason
		t.Fatal("errors.Is by reason")
	}
}

// TestParseJSONNewsOwnsText: the article stays intact when the caller reuses
// its message buffer, on the flat path (no escapes, no arrays) and on the
// fastjson path, for articles larger than the news buffer's first size.
func TestParseJSONNewsOwnsText(t *testing.T) {
	body := strings.Repeat("lorem ipsum ", 1000)
	for _, msg := range []string{
		`{"type":"news","id":"n1","ts":1,"source":"wire","headline":"H1","body":"` + body + `"}`,
		`{"type":"news","id":"n2","ts":1,"source":"wire","headline":"H\u0032","body":"` + body + `","symbols":["AAPL"]}`,
	} {
		p := NewParser(ParserOptions{})
		buf := []byte(msg)
		var ev Event
		if err := p.ParseJSON(buf, &ev); err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 'X'
		}
		a := p.News()
		if string(a.Source) != "wire" || string(a.Headline[:1]) != "H" || string(a.Body) != body {
			t.Fatalf("article changed with the caller's buffer: %q %q", a.Source, a.Headline)
		}
	}
}
