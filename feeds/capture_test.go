package feeds

import (
	"qstream/internal/testvectors"

	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

// The cryptofeed recordings, from the shared third-party test data beside the
// repository (../shared/testdata from the repository root).
var captureDir = filepath.Join(testvectors.Dir(), "exchange")

func captureNeed(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(captureDir, name)
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("exchange capture missing: %v (the shared third-party test data is expected at %s, "+
			"../shared/testdata from the repository root; see SOURCES.md there)", err, captureDir)
	}
	return path
}

// captureOracleTrade is a trade as an independent decoder (encoding/json,
// strconv, time.Parse) reads it from the recording.
type captureOracleTrade struct {
	sym    string
	price  float64
	volume float64
	tsNs   int64
	seq    uint64
	buy    bool
}

// captureReceived returns the received JSON payloads of a recording.
func captureReceived(tb testing.TB, path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	var out [][]byte
	for sc.Scan() {
		line := sc.Text()
		ts, msg, ok := strings.Cut(line, ": ")
		if !ok || strings.Contains(ts, " ") {
			continue // connected / sent lines
		}
		out = append(out, []byte(msg))
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func captureDrain(tb testing.TB, r *CaptureReader) (evs []codec.Event, recs []RecordError) {
	tb.Helper()
	for {
		var ev codec.Event
		err := r.Next(&ev)
		if err == io.EOF {
			return evs, recs
		}
		var rec *RecordError
		if errors.As(err, &rec) {
			recs = append(recs, snapshotRecordError(rec))
			continue
		}
		if err != nil {
			tb.Fatalf("Next: %v", err)
		}
		evs = append(evs, ev)
	}
}

func TestCaptureCoinbaseEveryTrade(t *testing.T) {
	path := captureNeed(t, "coinbase_ws_capture.txt")

	// Oracle: every match and last_match, in order, by encoding/json.
	var want []captureOracleTrade
	var tickers int
	for _, msg := range captureReceived(t, path) {
		var m struct {
			Type, ProductID, Price, Size, Side, Time string
			Sequence                                 uint64
		}
		var raw map[string]any
		if err := json.Unmarshal(msg, &raw); err != nil {
			t.Fatal(err)
		}
		m.Type, _ = raw["type"].(string)
		switch m.Type {
		case "ticker":
			tickers++
			continue
		case "match", "last_match":
		default:
			continue
		}
		if err := json.Unmarshal(msg, &struct {
			ProductID *string `json:"product_id"`
			Price     *string `json:"price"`
			Size      *string `json:"size"`
			Side      *string `json:"side"`
			Time      *string `json:"time"`
			Sequence  *uint64 `json:"sequence"`
		}{&m.ProductID, &m.Price, &m.Size, &m.Side, &m.Time, &m.Sequence}); err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.ParseFloat(m.Price, 64)
		s, _ := strconv.ParseFloat(m.Size, 64)
		tm, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, captureOracleTrade{m.ProductID, p, s, tm.UnixNano(), m.Sequence, m.Side == "sell"})
	}
	if len(want) != 107 || tickers != 107 {
		t.Fatalf("oracle: %d trades, %d tickers; SOURCES.md says 97+10 and 107", len(want), tickers)
	}

	tab := codec.NewSymbolTable(0)
	r, err := OpenCapture(path, CaptureOptions{Exchange: "auto", Symbols: tab, Source: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	evs, recs := captureDrain(t, r)
	if len(recs) != 0 {
		t.Fatalf("record errors: %v", &recs[0])
	}
	if r.Exchange() != codec.ExchangeCoinbase {
		t.Errorf("detected %q", r.Exchange())
	}
	var got []captureOracleTrade
	var quotes int
	for _, ev := range evs {
		if ev.Flags&codec.FlagReplay == 0 || ev.Source != 2 {
			t.Fatalf("event %+v", ev)
		}
		switch ev.Kind {
		case codec.KindTrade:
			got = append(got, captureOracleTrade{tab.Name(ev.Symbol), ev.Price, ev.Volume, ev.TsNs, ev.Seq, ev.Flags&codec.FlagBuy != 0})
		case codec.KindQuote:
			quotes++
			if !ev.HasBid() || !ev.HasAsk() || !(ev.Bid <= ev.Ask) {
				t.Errorf("quote %+v", ev)
			}
		default:
			t.Errorf("unexpected kind %v", ev.Kind)
		}
	}
	if len(got) != len(want) || quotes != tickers {
		t.Fatalf("%d trades, %d quotes; want %d, %d", len(got), quotes, len(want), tickers)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("trade %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	st := r.Stats()
	wantTypes := map[string]uint64{"match": 97, "last_match": 10, "ticker": 107, "l2update": 9719, "snapshot": 10, "subscriptions": 3}
	for typ, n := range wantTypes {
		if st.ByType[typ] != n {
			t.Errorf("%s: %d messages, want %d", typ, st.ByType[typ], n)
		}
	}
	if len(st.ByType) != len(wantTypes) {
		t.Errorf("types %v", st.ByType)
	}
	if st.Trades != 107 || st.Quotes != 107 || st.Skipped != 9719+10+3 || st.Connects != 1 || st.Sent != 3 ||
		st.Errors != 0 || st.Events != 214 || st.Adapter.Duplicates != 0 || st.Lines != 9952 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("trade-id gaps %d (%d trades missing) across the 30 s recording", st.Adapter.Gaps, st.Adapter.Missing)
}

func TestCaptureKrakenEveryTrade(t *testing.T) {
	path := captureNeed(t, "kraken_trades_ws_capture.txt")
	var want []captureOracleTrade
	var heartbeats int
	for _, msg := range captureReceived(t, path) {
		var arr []json.RawMessage
		if json.Unmarshal(msg, &arr) != nil {
			var obj map[string]any
			if err := json.Unmarshal(msg, &obj); err != nil {
				t.Fatal(err)
			}
			if obj["event"] == "heartbeat" {
				heartbeats++
			}
			continue
		}
		var channel, pair string
		var trades [][]string
		if json.Unmarshal(arr[len(arr)-2], &channel) != nil || channel != "trade" {
			continue
		}
		if err := json.Unmarshal(arr[len(arr)-1], &pair); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(arr[1], &trades); err != nil {
			t.Fatal(err)
		}
		for _, tr := range trades {
			p, _ := strconv.ParseFloat(tr[0], 64)
			v, _ := strconv.ParseFloat(tr[1], 64)
			sec, frac, _ := strings.Cut(tr[2], ".")
			s, _ := strconv.ParseInt(sec, 10, 64)
			f, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			want = append(want, captureOracleTrade{pair, p, v, s*1e9 + f, 0, tr[3] == "b"})
		}
	}
	if len(want) < 5 {
		t.Fatalf("oracle found only %d trades", len(want))
	}

	tab := codec.NewSymbolTable(0)
	r, err := OpenCapture(path, CaptureOptions{Symbols: tab})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	evs, recs := captureDrain(t, r)
	if len(recs) != 0 {
		t.Fatalf("record errors: %v", &recs[0])
	}
	if r.Exchange() != codec.ExchangeKraken {
		t.Errorf("detected %q", r.Exchange())
	}
	if len(evs) != len(want) {
		t.Fatalf("%d trades, the file holds %d", len(evs), len(want))
	}
	for i, ev := range evs {
		got := captureOracleTrade{tab.Name(ev.Symbol), ev.Price, ev.Volume, ev.TsNs, ev.Seq, ev.Flags&codec.FlagBuy != 0}
		if ev.Kind != codec.KindTrade || got != want[i] {
			t.Errorf("trade %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	st := r.Stats()
	if st.ByType["heartbeat"] != uint64(heartbeats) || st.ByType["subscriptionStatus"] != 10 || st.ByType["systemStatus"] != 1 ||
		st.Trades != uint64(len(want)) || st.Sent != 1 || st.Connects != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCaptureLinesAndErrors(t *testing.T) {
	const (
		match  = `{"type":"match","trade_id":1,"side":"sell","size":"2","price":"10.5","product_id":"BTC-USD","sequence":7,"time":"2021-04-17T16:43:37.089723Z"}`
		ticker = `{"type":"ticker","sequence":8,"product_id":"BTC-USD","price":"10.5","best_bid":"10.4","best_ask":"10.6","time":"2021-04-17T16:43:38Z"}`
	)
	long := `{"type":"l2update","pad":"` + strings.Repeat("x", 300) + `"}`
	lines := []string{
		"wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298", // 1
		"1618677817.1: " + match,                                // 2
		"",                                                      // 3
		"garbage",                                               // 4
		"1618677817.2: " + strings.Replace(match, `"price":"10.5"`, `"price":"abc"`, 1), // 5
		ticker,                  // 6: a raw line amid cryptofeed ones
		"1618677817.3: " + long, // 7: over MaxLine
		`[993,[["354.1","0.5","1618678142.5","s","l",""]],"trade","XMR/USD"]`, // 8: not Coinbase
		"12345 no colon", // 9
		"wss://ws-feed.pro.coinbase.com <- 1618677817.02: {\"type\":\"subscribe\"}",  // 10
		"1618677817.4: " + strings.Replace(match, `"trade_id":1`, `"trade_id":2`, 1), // 11, no newline at the end
	}
	input := strings.Join(lines, "\n")
	check := func(t *testing.T, r *CaptureReader) {
		evs, recs := captureDrain(t, r)
		if len(evs) != 3 || evs[0].Kind != codec.KindTrade || evs[1].Kind != codec.KindQuote || evs[2].Kind != codec.KindTrade {
			t.Fatalf("events %+v", evs)
		}
		want := []struct {
			line   int64
			reason codec.Reason
		}{{4, codec.ReasonMalformed}, {5, codec.ReasonBadNumber}, {7, codec.ReasonOversize}, {8, codec.ReasonMalformed}, {9, codec.ReasonMalformed}}
		if len(recs) != len(want) {
			t.Fatalf("%d record errors: %v", len(recs), recs)
		}
		for i, w := range want {
			if recs[i].Pos.Line != w.line || recs[i].Reason() != w.reason {
				t.Errorf("error %d: %v (reason %v), want line %d %v", i, &recs[i], recs[i].Reason(), w.line, w.reason)
			}
		}
		if !bytes.Contains(recs[1].Raw, []byte(`"price":"abc"`)) {
			t.Errorf("raw %q", recs[1].Raw)
		}
		st := r.Stats()
		if st.Errors != 5 || st.Connects != 1 || st.Sent != 1 || st.Lines != 11 || st.Exchange != codec.ExchangeCoinbase {
			t.Errorf("stats %+v", st)
		}
	}
	r, err := NewCaptureReader(strings.NewReader(input), CaptureOptions{Exchange: codec.ExchangeCoinbase, MaxLine: 256})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r)

	// The same, gzip-compressed, with the exchange detected from the URL.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(input))
	zw.Close()
	path := filepath.Join(t.TempDir(), "cap.txt.gz")
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = OpenCapture(path, CaptureOptions{MaxLine: 256})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r)
	if err := r.Close(); err != nil {
		t.Error(err)
	}

	if _, err := NewCaptureReader(strings.NewReader(""), CaptureOptions{Exchange: "nyse"}); !errors.Is(err, ErrCaptureExchange) {
		t.Errorf("unknown exchange: %v", err)
	}
	if _, err := OpenCapture(filepath.Join(t.TempDir(), "missing"), CaptureOptions{}); err == nil {
		t.Error("missing file opened")
	}
}

func TestCaptureAutoDetectFromMessages(t *testing.T) {
	input := strings.Join([]string{
		`{"foo":1}`, // undetectable: an error, then detection goes on
		`{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":5,"p":"100.5","q":"0.25","f":1,"l":1,"T":1672515782136,"m":false}}`,
		`{"result":null,"id":1}`,
		`{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1672515780000,"T":1672515839999,"i":"1m","o":"1","c":"2","h":"3","l":"0.5","v":"10","x":true}}`,
	}, "\n")
	r, err := NewCaptureReader(strings.NewReader(input), CaptureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs, recs := captureDrain(t, r)
	if len(recs) != 1 || recs[0].Pos.Line != 1 || recs[0].Reason() != codec.ReasonUnknownKind {
		t.Fatalf("errors %v", recs)
	}
	if r.Exchange() != codec.ExchangeBinance || len(evs) != 2 || evs[0].Kind != codec.KindTrade || evs[1].Kind != codec.KindBar {
		t.Fatalf("%q: events %+v", r.Exchange(), evs)
	}
	if st := r.Stats(); st.Skipped != 1 || st.ByType["result"] != 1 || st.Bars != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCaptureReaderAllocs(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, "1618677817.%d: {\"type\":\"match\",\"trade_id\":%d,\"side\":\"sell\",\"size\":\"2\",\"price\":\"10.5\",\"product_id\":\"BTC-USD\",\"sequence\":%d,\"time\":\"2021-04-17T16:43:37.089723Z\"}\n", i, i+1, i+1)
		fmt.Fprintf(&b, "1618677817.%d: {\"type\":\"l2update\",\"product_id\":\"BTC-USD\",\"changes\":[[\"sell\",\"10.6\",\"1\"]],\"time\":\"2021-04-17T16:43:37.075687Z\"}\n", i)
		fmt.Fprintf(&b, "[1,[[\"1.5\",\"2\",\"1618678142.5\",\"b\",\"l\",\"\"],[\"1.6\",\"2\",\"1618678142.6\",\"s\",\"l\",\"\"]],\"trade\",\"X/Y\"]\n")
	}
	// The Kraken lines are errors for the Coinbase adapter: the error path
	// is measured too.
	r, err := NewCaptureReader(strings.NewReader(b.String()), CaptureOptions{Exchange: codec.ExchangeCoinbase})
	if err != nil {
		t.Fatal(err)
	}
	var ev codec.Event
	for i := 0; i < 100; i++ {
		_ = r.Next(&ev)
	}
	allocs := totalAllocs(2000, func() { _ = r.Next(&ev) })
	if allocs > 0 {
		t.Fatalf("2000 calls of Next allocate %.0f times", allocs)
	}

	// Several events per line (Kraken) come out one per Next.
	k, _ := NewCaptureReader(strings.NewReader(strings.Repeat("[1,[[\"1.5\",\"2\",\"1618678142.5\",\"b\",\"l\",\"\"],[\"1.6\",\"2\",\"1618678142.6\",\"s\",\"l\",\"\"]],\"trade\",\"X/Y\"]\n", 2000)), CaptureOptions{Exchange: codec.ExchangeKraken})
	for i := 0; i < 100; i++ {
		_ = k.Next(&ev)
	}
	if allocs := totalAllocs(1500, func() {
		if err := k.Next(&ev); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Fatalf("1500 Kraken events allocate %.0f times", allocs)
	}
}

// Replaying the real Coinbase recording (snapshots, level2 updates, matches,
// tickers: messages of every shape and size) a third time through the same
// reader allocates nothing: the parser's caches have reached their sizes.
func TestCaptureSteadyStateAllocs(t *testing.T) {
	data, err := os.ReadFile(captureNeed(t, "coinbase_ws_capture.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewCaptureReader(bytes.NewReader(bytes.Repeat(data, 3)), CaptureOptions{
		Adapter: codec.NewCoinbase(codec.CoinbaseOptions{KeepDuplicates: true}), MaxLine: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	lines := int64(bytes.Count(data, []byte("\n")))
	var ev codec.Event
	pass := func(n int64) {
		for r.Line() < n {
			if err := r.Next(&ev); err == io.EOF {
				return
			}
		}
	}
	pass(lines) // first sight of every symbol and shape
	target := lines
	allocs := testing.AllocsPerRun(1, func() { target += lines; pass(target) })
	if allocs > 0 {
		t.Fatalf("a pass over the warm recording allocates %.0f times", allocs)
	}
	if r.Line() != 3*lines {
		t.Fatalf("read %d lines of %d", r.Line(), 3*lines)
	}
}

func BenchmarkCaptureCoinbase(b *testing.B) {
	path := captureNeed(b, "coinbase_ws_capture.txt")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	syms := codec.NewSymbolTable(0)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	msgs := 0
	for i := 0; i < b.N; i++ {
		r, err := NewCaptureReader(bytes.NewReader(data), CaptureOptions{Exchange: codec.ExchangeCoinbase, Symbols: syms})
		if err != nil {
			b.Fatal(err)
		}
		var ev codec.Event
		for r.Next(&ev) != io.EOF {
		}
		msgs += int(r.Stats().Messages)
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}

// captureFuzzMaxSeed bounds a FuzzCaptureReader seed. The fuzzer minimises
// every new interesting input before it fuzzes on, in about n²/2 runs for n
// bytes, for up to -fuzzminimizetime (60 s) with no execution reported: a
// 14 KB seed (a Coinbase snapshot line) stalled the run for the whole
// minute. A few short messages are enough to grow from.
const captureFuzzMaxSeed = 512

// captureFuzzSeeds returns FuzzCaptureReader's seeds: windows of lines of
// the real recordings, lines over the bound left out, each seed at most
// captureFuzzMaxSeed bytes; and a cryptofeed connection and message line.
func captureFuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, name := range []string{"coinbase_ws_capture.txt", "kraken_trades_ws_capture.txt"} {
		path := filepath.Join(captureDir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Logf("no capture seeds: %v", err)
			continue
		}
		lines := bytes.Split(data, []byte("\n"))
		for i := 0; i+5 <= len(lines) && i < 200; i += 20 {
			var seed []byte
			for _, l := range lines[i : i+5] {
				if len(seed)+len(l)+1 <= captureFuzzMaxSeed {
					seed = append(append(seed, l...), '\n')
				}
			}
			if len(seed) > 0 {
				seeds = append(seeds, seed)
			}
		}
	}
	return append(seeds, []byte("wss://x <-> 1\n1.5: {\"type\":\"match\"}\n"))
}

// FuzzCaptureReader feeds arbitrary recordings to the reader: no panic, and
// every record error carries a line number. Seeded with lines of the real
// recordings (captureFuzzSeeds); each run gets a fresh, small symbol table
// (the default one preallocates 4,096 entries, most of a run's cost).
func FuzzCaptureReader(f *testing.F) {
	for _, seed := range captureFuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewCaptureReader(bytes.NewReader(data), CaptureOptions{MaxLine: 4096, Symbols: codec.NewSymbolTable(256)})
		if err != nil {
			return
		}
		var ev codec.Event
		for i := 0; i < 1<<16; i++ {
			err := r.Next(&ev)
			if err == io.EOF {
				return
			}
			var rec *RecordError
			if errors.As(err, &rec) {
				if rec.Pos.Line <= 0 {
					t.Fatalf("record error without a line: %v", rec)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if ev.Kind == codec.KindInvalid || ev.Flags&codec.FlagReplay == 0 {
				t.Fatalf("event %+v", ev)
			}
		}
		t.Fatal("no end after 65536 calls")
	})
}
