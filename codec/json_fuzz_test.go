package codec

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// jsonFuzzSeeds are realistic messages of every shape (our own literals,
// shaped after DESIGN.md and the recorded exchange feeds) plus near misses.
var jsonFuzzSeeds = []string{
	jsonTick,
	jsonStreamMD,
	`{"type":"trade","symbol":"BTC-USD","ts":"2021-04-17T16:43:37.123456Z","price":"61234.5","volume":"0.00250000","side":"buy","id":"163429871"}`,
	`{"type":"quote","symbol":"ETH-USD","ts":1618677817061845000,"bid":2401.12,"ask":2401.55,"bid_size":1.5,"ask_size":0.2}`,
	`{"type":"bar","symbol":"BTCUSDT","ts":1582329600000000000,"open":9682,"high":9690.5,"low":9670,"close":9685.25,"volume":123.456}`,
	`{"type":"news","id":"n1","ts":1700000000000000000,"source":"reuters","headline":"Apple beats","body":"Q4 revenue \u2191","symbols":["AAPL","MSFT"]}`,
	`{"message_id":"m2","stream_id":"s1","timestamp":"2024-01-02T14:30:00.123Z","source":"x","message_type":"news","payload":{"NewsData":{"headline":"H","content":"C","source":"bbg","symbols":["AAPL"],"sentiment":0.4}},"metadata":{"k":"v"}}`,
	`{"message_id":"m3","timestamp":"2024-01-02T14:30:00.123Z","payload":{"TradingSignal":{"symbol":"AAPL","signal_type":"StrongBuy","strength":0.9,"price":190.1}}}`,
	`{"message_id":"m4","timestamp":"2024-01-02T14:30:00+01:00","payload":{"SystemEvent":{"event_type":"Halt","symbol":"AAPL","message":"LULD"}}}`,
	`{"message_id":"m5","timestamp":1,"payload":{"CustomEvent":{"event_type":"x","data":[1,{"a":null}]}}}`,
	`{"message_id":"m6","timestamp":1,"payload":{"MarketData":{"symbol":"AAPL","price":0,"volume":0,"bid":1.5,"ask":null,"market_status":"Closed"}}}`,
	`{"type":"trade","symbol":"AAPL","ts":1,"price":NaN,"volume":1}`,
	`{"type":"trade","symbol":"AAPL","ts":1,"price":"-Infinity","volume":1}`,
	`{"type":"trade","symbol":"AAPL","ts":1,"price":1,"volume":1,"price":2}`,
	`{"type":"trade","symbol":"A\"B\\C","ts":1,"price":1e-320,"volume":-0}`,
	`{"type":"trade",`,
	`[{"type":"trade"}]`,
	`{"payload":{"X":1}}`,
	``,
	// Invalid UTF-8 and control characters in names, ids and text.
	"{\"type\":\"trade\",\"symbol\":\"A\xff\",\"ts\":1,\"price\":1,\"volume\":1}",
	"{\"type\":\"trade\",\"symbol\":\"AAPL\",\"ts\":1,\"price\":1,\"volume\":1,\"id\":\"\xc3\"}",
	`{"type":"trade","symbol":"A\u0000","ts":1,"price":1,"volume":1}`,
	"{\"type\":\"news\",\"id\":\"n\",\"ts\":1,\"headline\":\"\xed\xa0\x80\",\"symbols\":[\"\x01\"]}",
	"{\"message_id\":\"m\xfe\",\"timestamp\":1,\"payload\":{\"MarketData\":{\"symbol\":\"\u00e9\",\"price\":1,\"volume\":1}}}",
	// The plain trade (ParseJSON's shortcut, plainTrade) and its near misses.
	`{"type":"trade","symbol":"S042","ts":1700000000000500000,"price":100.25,"volume":2}`,
	`{"volume":2.5,"price":0.0001,"ts":0,"symbol":"S1","type":"trade"}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":0,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":-3.5,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":-2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":-0}`,
	`{"type":"trade","symbol":"","ts":1,"price":3,"volume":2}`,
	"{\"type\":\"trade\",\"symbol\":\"S\x01\",\"ts\":1,\"price\":3,\"volume\":-2}",
	`{"type":"trade","symbol":"S042","ts":-1,"price":3,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1.5,"price":3,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":99999999999999999999,"price":3,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":1e2,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":"3","volume":2}`,
	`{"type":"trade","symbol":"S042","ts":"1","price":3,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":2,"bid":null}`,
	`{"type":"quote","symbol":"S042","ts":1,"price":3,"volume":2}`,
	`{"type":"trade","symbol":7,"ts":1,"price":3,"volume":2}`,
	`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":2,"volume":3}`,
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range jsonFuzzSeeds {
		f.Add([]byte(s))
	}
	tab := NewSymbolTable(1 << 12)
	p := NewParser(ParserOptions{Symbols: tab, Source: 1})
	ref := NewParser(ParserOptions{Symbols: tab, Source: 1})
	ref.noFlat = true // the fastjson-only path: the oracle for the flat fast path
	var jp fastjson.Parser
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := string(msg)
		ev := Event{Seq: 5, IngestNs: 6}
		err := p.ParseJSON(msg, &ev)
		if string(msg) != orig {
			t.Fatal("ParseJSON modified its input")
		}
		jsonSamePaths(t, msg, p, ref, &ev, err)
		if ev.Seq != 5 || ev.IngestNs != 6 {
			t.Fatalf("Seq/IngestNs changed: %+v", ev)
		}

		// The malformed-offset scanner agrees with fastjson on what parses.
		_, ferr := jp.ParseBytes(msg)
		off := jsonErrorOffset(msg)
		if (ferr != nil) != (off >= 0) || off > len(msg) {
			t.Fatalf("fastjson error %v but scanner offset %d (len %d)", ferr, off, len(msg))
		}

		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Reason == ReasonNone || int(ce.Reason) >= ReasonCount {
				t.Fatalf("error %v is not a codec.Error with a reason", err)
			}
			if (ce.Reason == ReasonMalformed && ce.Field == "") != (ferr != nil) {
				t.Fatalf("reason %s field %q, fastjson error %v", ce.Reason, ce.Field, ferr)
			}
			if p.News() != nil {
				t.Fatal("News() after an error")
			}
			return
		}
		jsonCheckEvent(t, &ev)
		// Nothing accepted can make JSON output invalid: interned names
		// are valid UTF-8 without control characters, article text is
		// valid UTF-8.
		if ev.Symbol != 0 && !ValidSymbolName([]byte(tab.Name(ev.Symbol))) {
			t.Fatalf("accepted symbol %q", tab.Name(ev.Symbol))
		}
		if a := p.News(); a != nil {
			for _, s := range [][]byte{a.ID, a.Source, a.Headline, a.Body} {
				if !utf8.Valid(s) {
					t.Fatalf("accepted article text %q", s)
				}
			}
		}
		if (ev.Kind == KindNews) != (p.News() != nil) {
			t.Fatalf("kind %s but News() = %v", ev.Kind, p.News())
		}
		if a := p.News(); a != nil && len(a.Symbols) > MaxNewsSymbols {
			t.Fatalf("%d news symbols", len(a.Symbols))
		}
		// The event survives the binary frame exactly.
		var back Event
		if _, err := DecodeFrame(AppendFrame(nil, &ev), &back); err != nil || !frameSameEvent(&ev, &back) {
			t.Fatalf("frame round trip: %v\n%+v\n%+v", err, ev, back)
		}
	})
}

// jsonCheckEvent asserts the invariants every accepted message satisfies.
func jsonCheckEvent(t *testing.T, ev *Event) {
	t.Helper()
	for _, x := range []float64{ev.Price, ev.Volume, ev.Bid, ev.Ask, ev.BidSize, ev.AskSize, ev.Open, ev.High, ev.Low} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			t.Fatalf("non-finite value in %+v", ev)
		}
	}
	if ev.TsNs < 0 || ev.Kind == KindInvalid || ev.Kind >= kindCount || ev.Status >= statusCount {
		t.Fatalf("bad time, kind or status: %+v", ev)
	}
	if ev.HasBid() && ev.Bid <= 0 || ev.HasAsk() && ev.Ask <= 0 || ev.Volume < 0 || ev.BidSize < 0 || ev.AskSize < 0 {
		t.Fatalf("bad book or volume: %+v", ev)
	}
	switch ev.Kind {
	case KindTrade:
		if ev.Price <= 0 || ev.Symbol == 0 {
			t.Fatalf("bad trade: %+v", ev)
		}
	case KindQuote:
		if !ev.HasBid() && !ev.HasAsk() || ev.Symbol == 0 {
			t.Fatalf("quote without a side: %+v", ev)
		}
	case KindBar:
		if !(ev.Low <= ev.Open && ev.Open <= ev.High && ev.Low <= ev.Price && ev.Price <= ev.High && ev.Low > 0) {
			t.Fatalf("inconsistent bar: %+v", ev)
		}
	}
}

// jsonSamePaths parses msg again with ref (fastjson only) and checks that the
// result equals what p (flat fast path where it applies) gave: the same
// event, article and error, down to the error's detail and offset.
func jsonSamePaths(t *testing.T, msg []byte, p, ref *Parser, ev *Event, err error) {
	t.Helper()
	ev2 := Event{Seq: 5, IngestNs: 6}
	err2 := ref.ParseJSON(msg, &ev2)
	if (err == nil) != (err2 == nil) {
		t.Fatalf("flat path error %v, fastjson path error %v", err, err2)
	}
	if err != nil {
		if *err.(*Error) != *err2.(*Error) {
			t.Fatalf("flat path %+v, fastjson path %+v", *err.(*Error), *err2.(*Error))
		}
		return
	}
	if !frameSameEvent(ev, &ev2) {
		t.Fatalf("flat path %+v\nfastjson path %+v", *ev, ev2)
	}
	a, b := p.News(), ref.News()
	if (a == nil) != (b == nil) {
		t.Fatalf("news %v vs %v", a, b)
	}
	if a != nil && (string(a.ID) != string(b.ID) || string(a.Source) != string(b.Source) ||
		string(a.Headline) != string(b.Headline) || string(a.Body) != string(b.Body) ||
		len(a.Symbols) != len(b.Symbols) || a.SymbolsDropped != b.SymbolsDropped ||
		a.HasSentiment != b.HasSentiment || a.Sentiment != b.Sentiment) {
		t.Fatalf("news differs:\n%+v\n%+v", a, b)
	}
}

// TestParseJSONFlatPath checks which messages take the flat fast path and
// that, for the fuzz seeds and the golden inputs, both paths agree.
func TestParseJSONFlatPath(t *testing.T) {
	var f jsonFields
	p := NewParser(ParserOptions{})
	for _, tc := range []struct {
		msg  string
		flat bool
	}{
		{jsonTick, true},
		{" {\"type\":\"trade\", \"x\":true,\"y\":false,\"z\":null} \r\n", true},
		{`{}`, true},
		{jsonStreamMD, false},                       // nested payload
		{`{"type":"tr\u0061de"}`, false},            // escape
		{`{"type":"trade","price":NaN}`, false},     // fastjson-only token
		{`{"type":"trade","symbols":["A"]}`, false}, // array
		{`{"type":"trade",}`, false},                // malformed
		{`{"type":"trade"} x`, false},
		{`[1]`, false},
	} {
		if got := p.scanFlat([]byte(tc.msg), &f); got != tc.flat {
			t.Errorf("scanFlat(%s) = %v, want %v", tc.msg, got, tc.flat)
		}
	}

	golden, err := os.ReadFile(filepath.Join("testdata", "json_cases.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := bytes.Split(golden, []byte("\n"))
	for _, s := range jsonFuzzSeeds {
		msgs = append(msgs, []byte(s))
	}
	tab := NewSymbolTable(0)
	fast := NewParser(ParserOptions{Symbols: tab})
	ref := NewParser(ParserOptions{Symbols: tab})
	ref.noFlat = true
	for _, m := range msgs {
		ev := Event{Seq: 5, IngestNs: 6}
		err := fast.ParseJSON(m, &ev)
		jsonSamePaths(t, m, fast, ref, &ev, err)
	}
}

// TestParseJSONPlainTrade checks which messages take ParseJSON's plain
// trade shortcut (plainTrade) and that each gives the event or the error of
// the general path.
func TestParseJSONPlainTrade(t *testing.T) {
	tab := NewSymbolTable(0)
	fast := NewParser(ParserOptions{Symbols: tab, Source: 3})
	ref := NewParser(ParserOptions{Symbols: tab, Source: 3})
	ref.noFlat = true
	for _, tc := range []struct {
		msg   string
		plain bool
	}{
		{`{"type":"trade","symbol":"S042","ts":1700000000000500000,"price":100.25,"volume":2}`, true},
		{` { "volume" : 0 , "price":1e-3,"ts":0,"symbol":"A","type":"trade"} `, false}, // an exponent: ParseDecimal reads it
		{`{"volume":0,"price":0.001,"ts":0,"symbol":"A","type":"trade"}`, true},
		{`{"type":"trade","symbol":"S042","ts":1,"price":0,"volume":2}`, true},    // rejected: price
		{`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":-2}`, true},   // rejected: volume
		{`{"type":"trade","symbol":"","ts":1,"price":3,"volume":2}`, true},        // rejected: symbol
		{`{"type":"trade","symbol":"S042","ts":1,"price":"3","volume":2}`, false}, // a string price
		{`{"type":"trade","symbol":"S042","ts":-1,"price":3,"volume":2}`, false},  // ts not an integer ParseTimestamp takes whole
		{`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":2,"bid":null}`, false},
		{`{"type":"trade","symbol":"S042","ts":1,"price":3,"volume":2,"id":"x"}`, false},
		{`{"type":"quote","symbol":"S042","ts":1,"price":3,"volume":2}`, false},
		{`{"type":"trade","symbol":7,"ts":1,"price":3,"volume":2}`, false},
		{`{"type":"trade","symbol":"S042","ts":1,"price":3}`, false},
	} {
		msg := []byte(tc.msg)
		if !fast.scanFlat(msg, &fast.top) {
			if tc.plain {
				t.Fatalf("%s: not flat", tc.msg)
			}
		} else if got := fast.top.seen == jsonPlainTradeKeys && jsonPlainTrade(&fast.top); got != tc.plain {
			t.Errorf("%s: plain trade %v, want %v", tc.msg, got, tc.plain)
		}
		ev := Event{Seq: 5, IngestNs: 6}
		err := fast.ParseJSON(msg, &ev)
		jsonSamePaths(t, msg, fast, ref, &ev, err)
		if ev.Seq != 5 || ev.IngestNs != 6 {
			t.Fatalf("%s: Seq/IngestNs changed: %+v", tc.msg, ev)
		}
		if err == nil && (ev.Source != 3 || ev.Kind != KindTrade) {
			t.Fatalf("%s: %+v", tc.msg, ev)
		}
	}
}

// TestParseJSONShape: after a flat message, a message with the same bytes
// between its values is read by scanShape, and every message, whatever its
// layout, gives what the fastjson path gives and fills the field table as
// scanFlat alone does.
func TestParseJSONShape(t *testing.T) {
	const learnt = ` {"type":"trade", "symbol":"S042","ts":1700000000000500000,"price":100.25,"volume":2,"id":"t-1"}`
	for _, tc := range []struct {
		msg   string
		shape bool
	}{
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1234567"}`, true},
		{` {"type":"quote", "symbol":"","ts":-5,"price":1e3,"volume":1.5.5,"id":""}`, true},            // values of any content
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"} `, false},       // a longer tail
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"`, false},         // no tail
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"` + "\n}", false}, // the tail past the end
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"vol` + "\n" + `ume":2000,"id":"t-1"}`, false},
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"}` + "\n{", true},
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"}x`, false},
		{`{"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"}`, false},    // no leading space
		{` {"type":"trade","symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1"}`, false},    // one space less
		{` {"type":"trade", "symbol":"S\"7","ts":1,"price":0.5,"volume":2000,"id":"t-1"}`, false}, // an escape
		{` {"type":"trade", "symbol":"S7","ts":"1","price":0.5,"volume":2000,"id":"t-1"}`, false}, // a string for a number
		{` {"type":"trade", "symbol":"S7","ts":-,"price":0.5,"volume":2000,"id":"t-1"}`, false},   // a bare sign
		{` {"type":"trade", "symbol":"S7","ts":1,"price":null,"volume":2000,"id":"t-1"}`, false},
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"id":"t-1","x":1}`, false}, // one more key
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000}`, false},                  // one less
		{` {"type":"trade", "symbol":"S7","ts":1,"price":0.5,"volume":2000,"ID":"t-1"}`, false},
	} {
		tab := NewSymbolTable(0)
		p := NewParser(ParserOptions{Symbols: tab})
		ref := NewParser(ParserOptions{Symbols: tab})
		ref.noFlat = true
		flat := NewParser(ParserOptions{Symbols: tab})
		var ev Event
		if err := p.ParseJSON([]byte(learnt), &ev); err != nil || p.shape.n != 6 {
			t.Fatalf("learning %s: %v, shape of %d values", learnt, err, p.shape.n)
		}
		msg := []byte(tc.msg)
		if i := strings.Index(tc.msg, "\n"); i >= 0 {
			msg = msg[:i] // the rest lies in its capacity, which scanShape must not read
		}
		var f jsonFields
		if got := p.scanShape(msg, &f); got != tc.shape {
			t.Errorf("scanShape(%s) = %v, want %v", tc.msg, got, tc.shape)
		}
		var g jsonFields
		if tc.shape && (!flat.scanFlat(msg, &g) || f.present != g.present || f.seen != g.seen) {
			t.Fatalf("%s: scanShape and scanFlat disagree", tc.msg)
		}
		for k := range jkCount {
			if tc.shape && g.has(k) && (string(f.vals[k].raw) != string(g.vals[k].raw) || f.vals[k].t != g.vals[k].t || f.vals[k].num != g.vals[k].num) {
				t.Fatalf("%s: key %s: scanShape %+v, scanFlat %+v", tc.msg, jsonKeyNames[k], f.vals[k], g.vals[k])
			}
		}
		ev = Event{Seq: 5, IngestNs: 6}
		err := p.ParseJSON(msg, &ev)
		jsonSamePaths(t, msg, p, ref, &ev, err)
	}
}

// TestJSONLitMatch: a literal of any length matches msg[i:] exactly when
// bytes.HasPrefix says so, wherever it lies in msg, the end included (the
// word compares read only within msg: the bytes past its length, in its
// capacity, differ from the literal's).
func TestJSONLitMatch(t *testing.T) {
	var buf [jsonShapeBytes]byte
	for n := 0; n <= 20; n++ {
		lit := []byte(`{"type":"trade","sym`)[:n]
		var l jsonLit
		l.set(buf[:], 7, lit)
		for size := 0; size <= 40; size++ {
			for i := 0; i <= size; i++ {
				for _, pad := range []byte{'x', '"'} {
					store := bytes.Repeat([]byte{pad}, size+16)
					msg := store[:size]
					if i+n <= size {
						copy(msg[i:], lit)
						if n > 0 && (i+n)%3 == 0 {
							msg[i+n-1] ^= 1 // a last byte that differs
						}
					} else {
						copy(store[i:], lit) // only in the capacity
					}
					if got, want := l.match(msg, i, &buf), bytes.HasPrefix(msg[i:], lit); got != want {
						t.Fatalf("literal %q, len(msg) %d, at %d: match %v, want %v", lit, size, i, got, want)
					}
				}
			}
		}
	}
}
