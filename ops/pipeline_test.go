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
	// The key is part of the sink contract: these values are written down
	// once (computed outside the code under test) and must never change.
	const (
		srcTCPLoop0 = 0xaf09c93a28206789 // codec.HashID("tcp/loop0")
		srcTCPLoop1 = 0xaf09c83a282065d6 // codec.HashID("tcp/loop1")
	)
	for _, tc := range []struct {
		kind OutKind
		op   uint16
		sym  codec.Symbol
		a, b uint64
		want uint64
	}{
		{OutIndicators, 0, 1, 1, 0, 0x5017e818ef243db4},
		{OutIndicators, 0, 7, 42, srcTCPLoop0, 0x3f87d9307c4d43c5},
		{OutIndicators, 0, 7, 42, srcTCPLoop1, 0x12b6797bb3275ae6},
		{OutWindow, 3, 0xFFFFFFFF, math.MaxUint64, math.MaxUint64, 0x3307c4492b32f5ff},
	} {
		if got := OutputKey(tc.kind, tc.op, tc.sym, tc.a, tc.b); got != tc.want {
			t.Errorf("OutputKey(%d, %d, %d, %#x, %#x) = %#x, want %#x", tc.kind, tc.op, tc.sym, tc.a, tc.b, got, tc.want)
		}
	}
	seen := map[uint64]bool{}
	for src := uint64(0); src < 3; src++ {
		for sym := codec.Symbol(1); sym < 50; sym++ {
			for seq := uint64(1); seq < 200; seq++ {
				k := OutputKey(OutIndicators, 0, sym, seq, codec.HashID([]byte{'s', byte(src)}))
				if seen[k] {
					t.Fatalf("key collision at source %d symbol %d seq %d", src, sym, seq)
				}
				seen[k] = true
			}
		}
	}
}

// TestPipelineKeysNameTheSource: an input without an id is keyed by its
// source and offset (two sources' offset 5 are two keys); an input with an
// id by its dedup scope and id (the same message through two loops of one
// feed is one key, through two feeds two). Vectors written down once.
func TestPipelineKeysNameTheSource(t *testing.T) {
	const (
		loop0 = 0xaf09c93a28206789 // codec.HashID("tcp/loop0")
		loop1 = 0xaf09c83a282065d6 // codec.HashID("tcp/loop1")
		tcp   = 0x56d0b41944429590 // codec.HashID("tcp")
		ws    = 0x08cb4507b56d0adf // codec.HashID("ws")
	)
	p, err := NewPipeline(PipelineConfig{MaxSymbolID: 4, EmitIndicators: true,
		Indicators: []IndicatorSpec{{Kind: IndSMA, Period: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	noID := codec.Event{Kind: codec.KindTrade, Symbol: 1, TsNs: 1, Seq: 5, Price: 10, Volume: 1}
	withID := noID
	withID.IDHash = codec.HashID([]byte("t-1"))
	for _, tc := range []struct {
		src, scope uint64
		ev         codec.Event
		want       uint64
	}{
		{loop0, tcp, noID, 0x37c5faf223136914},
		{loop1, tcp, noID, 0x68379a8b889cef1f},
		{loop0, tcp, withID, 0xf06298f4999cbd7f},
		{loop1, tcp, withID, 0xf06298f4999cbd7f},
		{ws, ws, withID, 0xc904bfc9a1be3584},
	} {
		p.SetSourceKey(tc.src, tc.scope)
		out, _ := p.OnEvent(&tc.ev, 0, nil)
		if len(out) != 1 || out[0].Key != tc.want || out[0].Seq != 5 {
			t.Errorf("source %#x scope %#x id %#x: outputs %+v, want one with key %#x", tc.src, tc.scope, tc.ev.IDHash, out, tc.want)
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
