package codec

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func csvParser(t testing.TB, header string) *CSVParser {
	t.Helper()
	tab := NewSymbolTable(0)
	tab.InternString("AAPL")
	tab.InternString("MSFT")
	c := NewCSVParser(ParserOptions{Symbols: tab, Source: 2})
	if err := c.ParseHeader([]byte(header)); err != nil {
		t.Fatalf("ParseHeader(%q): %v", header, err)
	}
	return c
}

func TestCSVRows(t *testing.T) {
	const ts = 1700000000123456789
	for _, tc := range []struct {
		name, header, row string
		want              Event
	}{
		{"design columns", "ts,symbol,price,volume,bid,ask", "1700000000123456789,AAPL,189.23,300,189.22,189.24",
			Event{Kind: KindTrade, TsNs: ts, Symbol: 1, Price: 189.23, Volume: 300, Bid: 189.22, Ask: 189.24, Flags: FlagHasBid | FlagHasAsk}},
		{"no book columns", "ts,symbol,price,volume", "1700000000123456789,MSFT,370.5,0.25\n",
			Event{Kind: KindTrade, TsNs: ts, Symbol: 2, Price: 370.5, Volume: 0.25}},
		{"empty book fields, rfc3339, crlf", "ts,symbol,price,volume,bid,ask\r\n", "2024-01-02T14:30:00.123Z,AAPL,1,2,,\r\n",
			Event{Kind: KindTrade, TsNs: 1704205800123000000, Symbol: 1, Price: 1, Volume: 2}},
		{"columns in another order, aliases, case, spaces, extras", "\xef\xbb\xbfExchange, Volume ,Symbol,TIME,side,Price,id",
			"nasdaq, 300 , AAPL ,1700000000123456789,buy,189.23,t-1",
			Event{Kind: KindTrade, TsNs: ts, Symbol: 1, Price: 189.23, Volume: 300, IDHash: HashID([]byte("t-1"))}},
		{"quote row", "ts,symbol,price,volume,bid,ask,bid_size,ask_size", "1700000000123456789,AAPL,,,189.22,189.24,100,200",
			Event{Kind: KindQuote, TsNs: ts, Symbol: 1, Bid: 189.22, Ask: 189.24, BidSize: 100, AskSize: 200, Flags: FlagHasBid | FlagHasAsk}},
		{"quote row with zeros", "ts,symbol,price,volume,bid,ask", "1700000000123456789,AAPL,0,0,,189.24",
			Event{Kind: KindQuote, TsNs: ts, Symbol: 1, Ask: 189.24, Flags: FlagHasAsk}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := csvParser(t, tc.header)
			ev := Event{Seq: 3, IngestNs: 4, Aux: 99}
			if err := c.ParseRow([]byte(tc.row), &ev); err != nil {
				t.Fatalf("ParseRow: %v", err)
			}
			tc.want.Seq, tc.want.IngestNs, tc.want.Source = 3, 4, 2
			if ev != tc.want {
				t.Fatalf("got  %+v\nwant %+v", ev, tc.want)
			}
		})
	}
}

func TestCSVOptionsDefaults(t *testing.T) {
	if c := NewCSVParser(ParserOptions{MaxMessageSize: -5}); c.maxSize != DefaultMaxMessageSize || c.Symbols() == nil {
		t.Fatalf("maxSize %d, want %d; table %v", c.maxSize, DefaultMaxMessageSize, c.Symbols())
	}
}

func TestCSVHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		header string
		reason Reason
		field  string
	}{
		{"ts,symbol,price", ReasonMissingField, "volume"},
		{"symbol,price,volume", ReasonMissingField, "ts"},
		{"ts,price,volume", ReasonMissingField, "symbol"},
		{"", ReasonMalformed, ""},
		{"ts,symbol,,price,volume", ReasonMalformed, ""},
		{"ts,symbol,price,volume,", ReasonMalformed, ""},
		{"ts,symbol,price,volume,timestamp", ReasonMalformed, "ts"},
		{`ts,"symbol",price,volume`, ReasonMalformed, ""},
		{strings.Repeat("x,", CSVMaxColumns) + "ts,symbol,price,volume", ReasonOversize, ""},
	} {
		c := NewCSVParser(ParserOptions{})
		parserWantErr(t, c.ParseHeader([]byte(tc.header)), tc.reason, tc.field)
		var ev Event
		parserWantErr(t, c.ParseRow([]byte("1,AAPL,1,1"), &ev), ReasonMalformed, "")
	}
}

func TestCSVRowErrors(t *testing.T) {
	const hdr = "ts,symbol,price,volume,bid,ask"
	for _, tc := range []struct {
		row    string
		reason Reason
		field  string
		offset int
	}{
		{"", ReasonMalformed, "", 0},
		{"\r\n", ReasonMalformed, "", 0},
		{"1,AAPL,1,1,1", ReasonMalformed, "", 12},
		{"1,AAPL,1,1,1,1,1", ReasonMalformed, "", 15},
		{`1,"AAPL",1,1,,`, ReasonMalformed, "", 2},
		{",AAPL,1,1,,", ReasonMissingField, "ts", -1},
		{"1,,1,1,,", ReasonMissingField, "symbol", -1},
		{"1,AAPL,,1,,", ReasonMissingField, "price", -1},
		{"1,AAPL,1,,,", ReasonMissingField, "volume", -1},
		{"1,AAPL,,,,", ReasonMissingField, "price", -1},
		{"x,AAPL,1,1,,", ReasonBadTimestamp, "ts", 0},
		{"-5,AAPL,1,1,,", ReasonBadTimestamp, "ts", 0},
		{"2024-02-30T00:00:00Z,AAPL,1,1,,", ReasonBadTimestamp, "ts", 0},
		{"1,AAPL,NaN,1,,", ReasonBadNumber, "price", 7},
		{"1,AAPL,1,inf,,", ReasonBadNumber, "volume", 9},
		{"1,AAPL,1.2.3,1,,", ReasonBadNumber, "price", 7},
		{"1,AAPL,1,1,abc,", ReasonBadNumber, "bid", 11},
		{"1,AAPL,0,1,,", ReasonBadPrice, "price", 7},
		{"1,AAPL,-1,1,,", ReasonBadPrice, "price", 7},
		{"1,AAPL,1,1,0,", ReasonBadPrice, "bid", 11},
		{"1,AAPL,1,1,,-2", ReasonBadPrice, "ask", 12},
		{"1,AAPL,1,-1,,", ReasonBadVolume, "volume", 9},
		{"1,TSLA,1,1,,", ReasonUnknownSymbol, "symbol", 2},
		{strings.Repeat("9", DefaultMaxMessageSize+1), ReasonOversize, "", -1},
	} {
		t.Run(tc.row, func(t *testing.T) {
			c := csvParser(t, hdr)
			c.syms.Table().Freeze()
			ev := Event{Seq: 8}
			e := parserWantErr(t, c.ParseRow([]byte(tc.row), &ev), tc.reason, tc.field)
			if e.Offset != tc.offset {
				t.Fatalf("offset %d, want %d", e.Offset, tc.offset)
			}
			if ev.Seq != 8 {
				t.Fatal("Seq not preserved")
			}
		})
	}
}

func TestCSVZeroAlloc(t *testing.T) {
	c := csvParser(t, "ts,symbol,price,volume,bid,ask")
	var ev Event
	for _, row := range []string{
		"1700000000123456789,AAPL,189.23,300,189.22,189.24",
		"2024-01-02T14:30:00.123Z,MSFT,370.5,0.25,,",
		"1700000000123456789,AAPL,-1,300,,",          // rejection
		"1700000000123456789,AAPL,NaN,300,,",         // rejection
		"1700000000123456789,AAPL,189.23,300,189.22", // rejection
	} {
		b := []byte(row)
		if n := testing.AllocsPerRun(200, func() { _ = c.ParseRow(b, &ev) }); n != 0 {
			t.Errorf("ParseRow(%q) allocates %v", row, n)
		}
	}
}

// TestCSVBinanceTrades converts the 9,999 real Binance futures trades of
// ../shared/testdata (Tardis CSV, microsecond timestamps) into qstream's CSV
// layout and checks every row against an independent strconv decoding.
func TestCSVBinanceTrades(t *testing.T) {
	c := NewCSVParser(ParserOptions{})
	if err := c.ParseHeader([]byte("symbol,ts,side,price,volume,id")); err != nil {
		t.Fatal(err)
	}
	n := 0
	var row []byte
	var ev Event
	parserEachLine(t, parserSharedTestdata(t, "trades/binance_futures_btcusdt_trades.csv"), func(line []byte) {
		f := bytes.Split(line, []byte(","))
		if len(f) != 8 || string(f[0]) == "exchange" {
			return
		}
		us, err := strconv.ParseInt(string(f[2]), 10, 64)
		if err != nil {
			t.Fatalf("capture timestamp %q: %v", f[2], err)
		}
		row = append(row[:0], f[1]...)
		row = append(row, ',')
		row = strconv.AppendInt(row, us*1000, 10)
		for _, x := range [][]byte{f[5], f[6], f[7], f[4]} {
			row = append(row, ',')
			row = append(row, x...)
		}
		if err := c.ParseRow(row, &ev); err != nil {
			t.Fatalf("row %q: %v", row, err)
		}
		price, _ := strconv.ParseFloat(string(f[6]), 64)
		amount, _ := strconv.ParseFloat(string(f[7]), 64)
		if ev.Kind != KindTrade || ev.TsNs != us*1000 || ev.Price != price || ev.Volume != amount ||
			ev.IDHash != HashID(f[4]) || c.Symbols().Name(ev.Symbol) != "BTCUSDT" {
			t.Fatalf("row %q gave %+v", row, ev)
		}
		n++
	})
	if n != 9999 {
		t.Fatalf("%d trades parsed, want 9999", n)
	}
}

func FuzzCSVParseRow(f *testing.F) {
	for _, s := range []string{
		"1700000000123456789,AAPL,189.23,300,189.22,189.24",
		"2024-01-02T14:30:00.123Z,MSFT,370.5,0.25,,",
		"1582329602111000000,BTCUSDT,9682,0.132,,",
		"1700000000123456789,AAPL,,,189.22,189.24\r\n",
		"1,AAPL,0,-1,,",
		`1,"AAPL",1,1,,`,
		"1,AAPL,1,1,1,1,1",
		"",
		"1,A\xffB,1,1,,",
		"1,A\x00,1,1,,",
	} {
		f.Add(s)
	}
	c := csvParser(f, "ts,symbol,price,volume,bid,ask")
	f.Fuzz(func(t *testing.T, row string) {
		var ev Event
		err := c.ParseRow([]byte(row), &ev)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Reason == ReasonNone || ce.Offset > len(row) {
				t.Fatalf("ParseRow(%q): %v", row, err)
			}
			return
		}
		if ev.Kind != KindTrade && ev.Kind != KindQuote || ev.Symbol == 0 || ev.TsNs < 0 {
			t.Fatalf("ParseRow(%q) = %+v", row, ev)
		}
		if name := c.Symbols().Name(ev.Symbol); !ValidSymbolName([]byte(name)) {
			t.Fatalf("ParseRow(%q) accepted the symbol %q", row, name)
		}
		for _, x := range []float64{ev.Price, ev.Volume, ev.Bid, ev.Ask} {
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				t.Fatalf("ParseRow(%q) = %+v", row, ev)
			}
		}
		if ev.Kind == KindTrade && ev.Price <= 0 {
			t.Fatalf("ParseRow(%q) = %+v", row, ev)
		}
		// Oracle: a plain split gives the same fields.
		line := strings.TrimSuffix(strings.TrimSuffix(row, "\n"), "\r")
		fields := strings.Split(line, ",")
		if len(fields) != 6 || strings.Contains(row, `"`) {
			t.Fatalf("ParseRow accepted %q with %d fields", row, len(fields))
		}
		if p := strings.TrimSpace(fields[2]); p != "" {
			want, err := strconv.ParseFloat(p, 64)
			if err != nil || want != ev.Price {
				t.Fatalf("price %q: got %v, strconv %v %v", p, ev.Price, want, err)
			}
		}
	})
}

func BenchmarkParseCSVRow(b *testing.B) {
	c := csvParser(b, "ts,symbol,price,volume,bid,ask")
	row := []byte("1700000000123456789,AAPL,189.23,300,189.22,189.24")
	var ev Event
	b.SetBytes(int64(len(row)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.ParseRow(row, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCSVSharesSymbolTableWithParser(t *testing.T) {
	tab := NewSymbolTable(0)
	p1 := NewParser(ParserOptions{Symbols: tab, Source: 3})
	p2 := NewCSVParser(ParserOptions{Symbols: tab, Source: 4})
	var ev1, ev2 Event
	if err := p1.ParseJSON([]byte(`{"type":"trade","symbol":"MSFT","ts":1,"price":2,"volume":3}`), &ev1); err != nil {
		t.Fatal(err)
	}
	if err := p2.ParseHeader([]byte("ts,symbol,price,volume")); err != nil {
		t.Fatal(err)
	}
	if err := p2.ParseRow([]byte("1,MSFT,2,3"), &ev2); err != nil {
		t.Fatal(err)
	}
	if ev1.Symbol != ev2.Symbol || tab.Name(ev1.Symbol) != "MSFT" {
		t.Fatalf("symbols %d and %d (%q), want one shared id for MSFT", ev1.Symbol, ev2.Symbol, tab.Name(ev1.Symbol))
	}
	if ev1.Source != 3 || ev2.Source != 4 {
		t.Fatalf("sources %d, %d; want 3, 4", ev1.Source, ev2.Source)
	}
}
