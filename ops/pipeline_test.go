package ops

import (
	"math"
	"testing"

	"qstream/codec"
)

func newTestPipeline(t *testing.T, maxSlots int) *Pipeline {
	t.Helper()
	specs, err := ParseIndicators("sma:2,vwap")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 100, MaxSlots: maxSlots})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPipelineTradesQuotesAndSlots(t *testing.T) {
	p := newTestPipeline(t, 2)
	var out []Output
	var r codec.Reason
	ev := codec.Event{Kind: codec.KindTrade, Symbol: 7, Seq: 1, TsNs: 10, Price: 10, Volume: 1}
	out, r = p.OnEvent(&ev, 0, out)
	if r != codec.ReasonNone || len(out) != 1 {
		t.Fatalf("first trade: reason %v, %d outputs", r, len(out))
	}
	if o := out[0]; o.Kind != OutIndicators || o.Seq != 1 || o.Symbol != 7 || o.NValues != 2 || !math.IsNaN(o.Values[0]) || o.Values[1] != 10 {
		t.Fatalf("first output %+v", o)
	}
	// A quote updates top of book and produces nothing.
	q := codec.Event{Kind: codec.KindQuote, Symbol: 7, Seq: 2, TsNs: 11, Bid: 9.9, Ask: 10.1, Flags: codec.FlagHasBid | codec.FlagHasAsk}
	out, r = p.OnEvent(&q, 0, out[:0])
	if r != codec.ReasonNone || len(out) != 0 {
		t.Fatalf("quote: reason %v, %d outputs", r, len(out))
	}
	if p.quotes[0].bid != 9.9 || p.quotes[0].ask != 10.1 {
		t.Fatalf("quote state %+v", p.quotes[0])
	}
	ev = codec.Event{Kind: codec.KindTrade, Symbol: 7, Seq: 3, TsNs: 12, Price: 12, Volume: 3}
	out, _ = p.OnEvent(&ev, 0, out[:0])
	if o := out[0]; o.Values[0] != 11 || o.Values[1] != (10*1+12*3)/4.0 {
		t.Fatalf("second trade values %v", o.Values[:2])
	}
	// Second symbol takes the second slot; a third is beyond MaxSlots.
	ev = codec.Event{Kind: codec.KindTrade, Symbol: 8, Seq: 4, TsNs: 13, Price: 1, Volume: 1}
	if _, r = p.OnEvent(&ev, 0, out[:0]); r != codec.ReasonNone {
		t.Fatalf("second symbol rejected: %v", r)
	}
	ev.Symbol = 9
	if _, r = p.OnEvent(&ev, 0, out[:0]); r != codec.ReasonUnknownSymbol {
		t.Fatalf("third symbol: reason %v, want unknown_symbol", r)
	}
	ev.Symbol = 101 // beyond MaxSymbolID
	if _, r = p.OnEvent(&ev, 0, out[:0]); r != codec.ReasonUnknownSymbol {
		t.Fatalf("symbol beyond MaxSymbolID: reason %v", r)
	}
	if p.Symbols() != 2 {
		t.Fatalf("Symbols() = %d", p.Symbols())
	}
}

func TestPipelineOnEventDoesNotAllocate(t *testing.T) {
	specs, _ := ParseIndicators(DefaultIndicators)
	p, err := NewPipeline(PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Output, 0, 16)
	var i int64
	allocs := testing.AllocsPerRun(10000, func() {
		i++
		ev := codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(1 + i%50), Seq: uint64(i), TsNs: i, Price: 100 + float64(i%7), Volume: 1}
		out, _ = p.OnEvent(&ev, 0, out[:0])
	})
	if allocs != 0 {
		t.Fatalf("OnEvent allocated %.2f times per trade", allocs)
	}
}

func TestOutputKeyStable(t *testing.T) {
	// The key is part of the sink contract: it must never change for the same inputs.
	if got := OutputKey(OutIndicators, 0, 1, 1, 0); got != OutputKey(OutIndicators, 0, 1, 1, 0) {
		t.Fatal("OutputKey not deterministic")
	}
	seen := map[uint64]bool{}
	for sym := codec.Symbol(1); sym < 50; sym++ {
		for seq := uint64(1); seq < 200; seq++ {
			k := OutputKey(OutIndicators, 0, sym, seq, 0)
			if seen[k] {
				t.Fatalf("key collision at symbol %d seq %d", sym, seq)
			}
			seen[k] = true
		}
	}
}

func TestPipelineAddWindowAndStats(t *testing.T) {
	p, err := NewPipeline(PipelineConfig{MaxSymbolID: 16})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ParseWindowSpec("tumbling:1s:sum")
	if err != nil {
		t.Fatal(err)
	}
	op, err := p.AddWindow(spec)
	if err != nil || op != 0 {
		t.Fatalf("AddWindow = %d, %v", op, err)
	}
	var out []Output
	for i, sym := range []codec.Symbol{3, 4, 3} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: sym, Seq: uint64(i + 1), TsNs: int64(i) * 1e8, Price: float64(10 * (i + 1)), Volume: 1}
		out, _ = p.OnEvent(&ev, 0, out[:0])
	}
	st, err := p.AppendWindowStats(op, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Symbol != 3 || st[0].Count != 2 || st[0].Value(AggSum) != 40 || st[1].Symbol != 4 || st[1].Value(AggSum) != 20 {
		t.Fatalf("stats %+v", st)
	}
	if st[0].StartNs != 0 || st[0].EndNs != 1e9 {
		t.Fatalf("window bounds %d..%d", st[0].StartNs, st[0].EndNs)
	}
	if _, err := p.AppendWindowStats(1, nil); err == nil {
		t.Fatal("stats of a window that does not exist")
	}
}
