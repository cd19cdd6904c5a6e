package ops

import (
	"errors"
	"math"
	"strings"
	"testing"

	"qstream/codec"
)

func filterEvents(t *testing.T) (*codec.SymbolTable, []codec.Event) {
	t.Helper()
	syms := codec.NewSymbolTable(16)
	for _, s := range []string{"AAPL", "MSFT", "BTC-USD"} {
		if _, err := syms.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	return syms, []codec.Event{
		{Kind: codec.KindTrade, Symbol: 1, Price: 190, Volume: 100},
		{Kind: codec.KindTrade, Symbol: 2, Price: 370, Volume: 5},
		{Kind: codec.KindQuote, Symbol: 1, Bid: 189.9, Ask: 190.1, Flags: codec.FlagHasBid | codec.FlagHasAsk},
		{Kind: codec.KindTrade, Symbol: 3, Price: 42000, Volume: 0.5},
		{Kind: codec.KindNews, Symbol: 1},
		{Kind: codec.KindQuote, Symbol: 2, Bid: 369, Flags: codec.FlagHasBid},
	}
}

func TestFilter(t *testing.T) {
	syms, evs := filterEvents(t)
	for _, tc := range []struct {
		src  string
		want string // which of evs pass, as 0/1
	}{
		{"price > 200", "010100"},
		{"kind == trade", "110100"},
		{"kind in (quote, news)", "001011"},
		{"kind not in (trade)", "001011"},
		{"symbol == BTC-USD", "000100"},
		{"symbol in (AAPL, MSFT) and kind == trade", "110000"},
		{"symbol != AAPL", "010101"},
		{"spread < 0.5", "001000"}, // a quote without an ask has no spread: NaN is false
		{"bid != 0", "001001"},     // only set bids compare
		{"mid >= 190", "001000"},
		{"volume >= 100 or price > 40000", "100100"},
		{"kind == trade and volume < 10 or kind == news", "010110"},
		{"price > volume", "110100"},
		{"PRICE > 200 AND KIND == trade", "010100"},
	} {
		f, err := ParseFilter(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		var got strings.Builder
		for i := range evs {
			if f.Pass(&evs[i], syms) {
				got.WriteByte('1')
			} else {
				got.WriteByte('0')
			}
		}
		if got.String() != tc.want {
			t.Errorf("%s: %s, want %s", tc.src, got.String(), tc.want)
		}
	}
	for _, bad := range []string{"", "price", "price >", "price >> 1", "colour == red", "price > NaN", "kind == trades",
		"symbol in AAPL", "symbol in (", "symbol in ()", "price > 1 and", "price > 1 xor volume > 1"} {
		if _, err := ParseFilter(bad); !errors.Is(err, ErrFilterSpec) {
			t.Errorf("%q: %v, want ErrFilterSpec", bad, err)
		}
	}
}

func TestTransform(t *testing.T) {
	_, evs := filterEvents(t)
	x, err := ParseTransform("price = price * 100; volume = volume / 2; bid = bid - 1; ask = 7")
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0]
	x.Apply(&e)
	if e.Price != 19000 || e.Volume != 50 {
		t.Fatalf("trade: %+v", e)
	}
	q := evs[5] // a bid, no ask: the ask stays unset
	x.Apply(&q)
	if q.Bid != 368 || q.Ask != 0 || q.HasAsk() {
		t.Fatalf("quote: %+v", q)
	}
	for _, bad := range []string{"", "price", "price = ", "colour = 1", "price = price ^ 2", "price = 1 +", "kind = 2"} {
		if _, err := ParseTransform(bad); !errors.Is(err, ErrFilterSpec) {
			t.Errorf("%q: %v, want ErrFilterSpec", bad, err)
		}
	}
}

// In a pipeline: filtered events reach no operator and are counted; a
// transform runs before the indicators; a transform that makes a price
// invalid is a dead letter; nothing allocates.
func TestPipelineFilterTransform(t *testing.T) {
	syms, _ := filterEvents(t)
	specs, _ := ParseIndicators("sma:2")
	p, err := NewPipeline(PipelineConfig{Indicators: specs, EmitIndicators: true, SymbolNames: syms, MaxSymbolID: 16,
		Filter: "symbol != MSFT", Transform: "price = price * 2"})
	if err != nil {
		t.Fatal(err)
	}
	var out []Output
	run := func(sym codec.Symbol, price float64) ([]Output, codec.Reason) {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: sym, Price: price, Volume: 1, TsNs: 1}
		return p.OnEvent(&ev, math.MinInt64, out[:0])
	}
	if o, _ := run(2, 10); len(o) != 0 || p.Filtered() != 1 {
		t.Fatalf("MSFT: %d outputs, filtered %d", len(o), p.Filtered())
	}
	if o, _ := run(1, 10); len(o) != 1 || o[0].Price != 20 {
		t.Fatalf("AAPL: %+v", o)
	}
	if err := p.SetTransform("price = price - 100"); err != nil {
		t.Fatal(err)
	}
	if _, r := run(1, 10); r != codec.ReasonBadPrice {
		t.Fatalf("a transformed price of -90: %v", r)
	}
	if err := p.SetFilter(""); err != nil {
		t.Fatal(err)
	}
	if err := p.SetTransform(""); err != nil {
		t.Fatal(err)
	}
	if o, _ := run(2, 10); len(o) != 1 || o[0].Price != 10 {
		t.Fatalf("without filter and transform: %+v", o)
	}
	if err := p.SetFilter("price >"); !errors.Is(err, ErrFilterSpec) {
		t.Fatalf("a bad filter: %v", err)
	}
	p.SetFilter("symbol in (AAPL, MSFT) and price > 1")
	p.SetTransform("price = price * 1.5; volume = volume + 1")
	out = make([]Output, 0, 8)
	ev := codec.Event{Kind: codec.KindTrade, Symbol: 1, Price: 10, Volume: 1, TsNs: 2}
	if n := testing.AllocsPerRun(200, func() { out, _ = p.OnEvent(&ev, math.MinInt64, out[:0]) }); n != 0 {
		t.Fatalf("%v allocations per event with a filter and a transform", n)
	}
}

func TestFilterOnSymbolNeedsNames(t *testing.T) {
	p, err := NewPipeline(PipelineConfig{MaxSymbolID: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetFilter("symbol == AAPL"); !errors.Is(err, ErrFilterSpec) {
		t.Fatalf("a symbol filter without SymbolNames: %v", err)
	}
	if err := p.SetFilter("price > 1"); err != nil {
		t.Fatal(err)
	}
}
