package ops

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

// patNames names symbol ids for tests: 1 AAA, 2 BBB, 3 CCC, others S<id>.
type patNames struct{}

func (patNames) Name(id codec.Symbol) string {
	switch id {
	case 1:
		return "AAA"
	case 2:
		return "BBB"
	case 3:
		return "CCC"
	}
	return fmt.Sprintf("S%d", id)
}

func patPipeline(t testing.TB, specs []PatternSpec, opts PatternOptions) *Pipeline {
	t.Helper()
	p, err := NewPipeline(PipelineConfig{Patterns: specs, PatternOptions: opts, SymbolNames: patNames{}, MaxSymbolID: 4096, MaxSlots: 2048})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParsePatterns(t testing.TB, js string) []PatternSpec {
	t.Helper()
	specs, err := ParsePatterns([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// tr is a trade of symbol sym at second-offset sec (with ms), price, volume.
func tr(sym codec.Symbol, ms int64, price, vol float64) codec.Event {
	return codec.Event{Kind: codec.KindTrade, Symbol: sym, TsNs: ms * int64(time.Millisecond), Price: price, Volume: vol}
}

// patRun numbers evs and returns the pattern matches.
func patRun(p *Pipeline, evs []codec.Event) []Output {
	var out []Output
	for i := range evs {
		evs[i].Seq = uint64(i + 1)
		out, _ = p.OnEvent(&evs[i], 0, out)
	}
	return out
}

// matchSeqs lists the matches as "op@seq".
func matchSeqs(outs []Output) []string {
	var s []string
	for _, o := range outs {
		if o.Kind == OutPattern {
			s = append(s, fmt.Sprintf("%d@%d", o.Op, o.Seq))
		}
	}
	return s
}

func TestPatternBreakoutFiresAndNot(t *testing.T) {
	specs := mustParsePatterns(t, `[
		{"id":"up","type":"price_breakout","threshold":0.02,"timeframe":"5s","symbols":["AAA"]},
		{"id":"dn","type":"price_breakout","direction":"down","threshold":0.02,"timeframe":"5s","symbols":["AAA"]}]`)
	for _, tc := range []struct {
		name string
		evs  []codec.Event
		want []string
	}{
		// H = 101: the bar is 101·1.02 = 103.02.
		{"fires above", []codec.Event{tr(1, 0, 100, 1), tr(1, 1000, 101, 1), tr(1, 2000, 103.1, 1)}, []string{"0@3"}},
		{"just below", []codec.Event{tr(1, 0, 100, 1), tr(1, 1000, 101, 1), tr(1, 2000, 103.01, 1)}, nil},
		{"at the bar", []codec.Event{tr(1, 1000, 101, 1), tr(1, 2000, 101*1.02, 1)}, nil},
		// (t−5s, t]: a trade exactly 5 s earlier is outside.
		{"outside the timeframe", []codec.Event{tr(1, 0, 100, 1), tr(1, 5000, 200, 1)}, nil},
		{"inside the timeframe", []codec.Event{tr(1, 0, 100, 1), tr(1, 4999, 200, 1)}, []string{"0@2"}},
		{"first trade", []codec.Event{tr(1, 0, 100, 1)}, nil},
		{"wrong symbol", []codec.Event{tr(2, 0, 100, 1), tr(2, 1000, 200, 1), tr(2, 2000, 50, 1)}, nil},
		// L = 100: the bar is 100·0.98 = 98.
		{"breakdown", []codec.Event{tr(1, 0, 100, 1), tr(1, 1000, 101, 1), tr(1, 2000, 97.9, 1)}, []string{"1@3"}},
		{"breakdown just above", []codec.Event{tr(1, 0, 100, 1), tr(1, 1000, 101, 1), tr(1, 2000, 98.01, 1)}, nil},
		// The high left the timeframe: H is the later, lower trade.
		{"high expires", []codec.Event{tr(1, 0, 200, 1), tr(1, 3000, 100, 1), tr(1, 5500, 103, 1)}, []string{"1@2", "0@3"}},
	} {
		p := patPipeline(t, specs, PatternOptions{})
		out := patRun(p, tc.evs)
		if got := matchSeqs(out); !slices.Equal(got, tc.want) {
			t.Errorf("%s: matches %v, want %v", tc.name, got, tc.want)
		}
	}
	p := patPipeline(t, specs, PatternOptions{})
	out := patRun(p, []codec.Event{tr(1, 0, 100, 1), tr(1, 1000, 101, 1), tr(1, 2000, 104.03, 7)})
	o := out[0]
	if o.Op != 0 || o.NValues != 3 || o.Values[0] != 104.03 || o.Values[1] != 101 ||
		math.Abs(o.Values[2]-3) > 1e-12 || math.Abs(o.Value-0.75) > 1e-12 || o.TsNs != 2e9 || o.Symbol != 1 || o.Volume != 7 {
		t.Fatalf("match %+v: want current 104.03, high 101, 3 %%, confidence 0.75", o)
	}
	if o.Key != OutputKey(OutPattern, 0, 1, 3, 0) {
		t.Fatalf("key %x is not the input key of pattern 0", o.Key)
	}
}

func TestPatternVolumeSpikeFiresAndNot(t *testing.T) {
	specs := mustParsePatterns(t, `[{"id":"v","type":"volume_spike","multiplier":3,"baseline":"10s"}]`)
	for _, tc := range []struct {
		name string
		evs  []codec.Event
		want []string
	}{
		{"fires", []codec.Event{tr(1, 0, 1, 10), tr(1, 1, 1, 20), tr(1, 2, 1, 45.5)}, []string{"0@3"}},
		{"at the bar", []codec.Event{tr(1, 0, 1, 10), tr(1, 1, 1, 20), tr(1, 2, 1, 45)}, nil},
		{"just below", []codec.Event{tr(1, 0, 1, 10), tr(1, 1, 1, 20), tr(1, 2, 1, 44.99)}, nil},
		{"baseline expired", []codec.Event{tr(1, 0, 1, 10), tr(1, 10000, 1, 100)}, nil},
		{"only the recent baseline", []codec.Event{tr(1, 0, 1, 1), tr(1, 9000, 1, 100), tr(1, 10000, 1, 301)}, []string{"0@2", "0@3"}},
		{"each symbol its own", []codec.Event{tr(1, 0, 1, 100), tr(2, 1, 1, 1), tr(2, 2, 1, 50), tr(1, 3, 1, 250)}, []string{"0@3"}},
		{"zero baseline", []codec.Event{tr(1, 0, 1, 0), tr(1, 1, 1, 0.5)}, []string{"0@2"}},
	} {
		p := patPipeline(t, specs, PatternOptions{})
		if got := matchSeqs(patRun(p, tc.evs)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: matches %v, want %v", tc.name, got, tc.want)
		}
	}
	p := patPipeline(t, specs, PatternOptions{})
	o := patRun(p, []codec.Event{tr(1, 0, 1, 10), tr(1, 1, 1, 20), tr(1, 2, 1, 60)})[0]
	if o.Values[0] != 60 || o.Values[1] != 15 || o.Values[2] != 4 || math.Abs(o.Value-4.0/6) > 1e-12 {
		t.Fatalf("details %v confidence %v: want 60, 15, 4 and 2/3", o.Values[:3], o.Value)
	}
	p = patPipeline(t, specs, PatternOptions{})
	o = patRun(p, []codec.Event{tr(1, 0, 1, 0), tr(1, 1, 1, 0.5)})[0]
	if !math.IsInf(o.Values[2], 1) || o.Value != 1 {
		t.Fatalf("zero baseline: ratio %v confidence %v, want +Inf (null) and 1", o.Values[2], o.Value)
	}
}

// Trades going back in event time are skipped by patterns and counted; the
// trailing set is then the in-order trades only.
func TestPatternLateTradesAndCap(t *testing.T) {
	specs := mustParsePatterns(t, `[{"id":"up","type":"price_breakout","threshold":0,"timeframe":"1m"}]`)
	p := patPipeline(t, specs, PatternOptions{})
	out := patRun(p, []codec.Event{tr(1, 1000, 100, 1), tr(1, 500, 300, 1), tr(1, 2000, 150, 1), tr(1, 2000, 160, 1)})
	if got := matchSeqs(out); !slices.Equal(got, []string{"0@3", "0@4"}) {
		t.Fatalf("matches %v: the late trade at 500 ms (price 300) must neither match nor raise the high", got)
	}
	if st := p.PatternStats(); st.Late != 1 || st.Capped != 0 {
		t.Fatalf("stats %+v, want 1 late", st)
	}
	// With a cap of 2 the set is the last 2 trades within the timeframe.
	p = patPipeline(t, specs, PatternOptions{MaxTradesPerSymbol: 2})
	out = patRun(p, []codec.Event{tr(1, 0, 200, 1), tr(1, 1, 100, 1), tr(1, 2, 100, 1), tr(1, 3, 150, 1)})
	if got := matchSeqs(out); !slices.Equal(got, []string{"0@4"}) {
		t.Fatalf("capped: matches %v, want the 4th (200 left the set of 2)", got)
	}
	if st := p.PatternStats(); st.Capped != 2 {
		t.Fatalf("capped: stats %+v, want 2", st)
	}
}

func TestPatternTechnicalSignals(t *testing.T) {
	specs := mustParsePatterns(t, `[
		{"id":"sma","type":"technical_signal","signal":"sma_cross","fast":2,"slow":3},
		{"id":"sma_again","type":"technical_signal","signal":"sma_cross","fast":2,"slow":3,"symbols":["AAA"]},
		{"id":"vwap","type":"technical_signal","signal":"vwap_cross"},
		{"id":"rsi","type":"technical_signal","signal":"rsi_cross","period":2,"overbought":70,"oversold":30}]`)
	p := patPipeline(t, specs, PatternOptions{})
	// Prices 10, 9, 8, 12: SMA2 = -, 9.5, 8.5, 10; SMA3 = -, -, 9, 29/3.
	// At trade 4 SMA2 (10) crosses above SMA3 (9.667) from 8.5 <= 9.
	prices := []float64{10, 9, 8, 12}
	var evs []codec.Event
	for i, px := range prices {
		evs = append(evs, tr(1, int64(i)*1000, px, 1))
	}
	out := patRun(p, evs)
	var sma []Output
	for _, o := range out {
		if o.Op <= 1 {
			sma = append(sma, o)
		}
	}
	if len(sma) != 2 || sma[0].Seq != 4 || sma[1].Seq != 4 || sma[0].Op != 0 || sma[1].Op != 1 {
		t.Fatalf("sma crosses %v, want patterns 0 and 1 at trade 4", matchSeqs(sma))
	}
	o := sma[0]
	if o.Values[0] != 1 || o.Values[1] != 10 || math.Abs(o.Values[2]-29.0/3) > 1e-12 || o.Values[3] != 8.5 || o.Values[4] != 9 || o.NValues != 5 {
		t.Fatalf("sma details %v, want up, 10, 9.667, 8.5, 9", o.Values[:5])
	}
	// vwap (volumes 1): 10, 9.5, 9, 9.75; price 9 vs 9.5 at 2 (below, from equal at 1: down), 12 > 9.75 from 8 < 9 (up).
	var vw []string
	for _, o := range out {
		if o.Op == 2 {
			vw = append(vw, fmt.Sprintf("%d:%v", o.Seq, o.Values[0]))
		}
	}
	if !slices.Equal(vw, []string{"2:-1", "4:1"}) {
		t.Fatalf("vwap crosses %v, want down at 2 and up at 4", vw)
	}
	// RSI(2): first value at trade 3 (0: only losses), at trade 4 gains 4 and
	// losses 1+1: avg gain (0·1+4)/2 = 2, avg loss (1·1+0)/2 = 0.5: 80: up through 70.
	var rsi []string
	for _, o := range out {
		if o.Op == 3 {
			rsi = append(rsi, fmt.Sprintf("%d:%v:%v:%v:%v", o.Seq, o.Values[0], o.Values[1], o.Values[2], o.Values[3]))
		}
	}
	if !slices.Equal(rsi, []string{"4:1:80:0:70"}) {
		t.Fatalf("rsi crosses %v, want up through 70 at trade 4 from 0 to 80", rsi)
	}
	// On BBB only the unrestricted sma pattern fires.
	p = patPipeline(t, specs, PatternOptions{})
	for i := range evs {
		evs[i].Symbol = 2
	}
	got := 0
	for _, o := range patRun(p, evs) {
		if o.Op == 1 {
			t.Fatalf("pattern restricted to AAA fired on BBB")
		}
		if o.Op == 0 {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("sma on BBB: %d matches, want 1", got)
	}
}

// patOracle is the brute-force definition: per symbol, drop trades going
// back in event time; for each kept trade rescan the earlier kept trades
// with event time in (t − tf, t] (the last capN of them) for the highest and
// lowest price and the mean volume (of the exact sum, rounded once), and
// test every pattern.
func patOracle(specs []PatternSpec, evs []codec.Event, capN int) []Output {
	hist := map[codec.Symbol][]codec.Event{}
	var out []Output
	for i := range evs {
		ev := &evs[i]
		if ev.Kind != codec.KindTrade {
			continue
		}
		h := hist[ev.Symbol]
		if len(h) > 0 && ev.TsNs < h[len(h)-1].TsNs {
			continue
		}
		for op, s := range specs {
			if s.Type == PatTechnical || (len(s.Symbols) > 0 && !slices.Contains(s.Symbols, patNames{}.Name(ev.Symbol))) {
				continue
			}
			var set []codec.Event
			for j := len(h) - 1; j >= 0 && h[j].TsNs > ev.TsNs-s.TimeframeNs && len(set) < capN; j-- {
				set = append(set, h[j])
			}
			if len(set) == 0 {
				continue
			}
			hi, lo := math.Inf(-1), math.Inf(1)
			exact := new(big.Float).SetPrec(2200)
			for _, e := range set {
				hi, lo = max(hi, e.Price), min(lo, e.Price)
				exact.Add(exact, big.NewFloat(e.Volume))
			}
			sum, _ := exact.Float64() // the exact sum, rounded once
			mean := sum / float64(len(set))
			o := Output{Kind: OutPattern, Op: uint16(op), Symbol: ev.Symbol, Seq: ev.Seq, TsNs: ev.TsNs}
			switch {
			case s.Type == PatVolumeSpike && ev.Volume > s.Multiplier*mean:
				o.Values[0], o.Values[1] = ev.Volume, mean
			case s.Type == PatBreakout && !s.Down && ev.Price > hi*(1+s.Threshold):
				o.Values[0], o.Values[1] = ev.Price, hi
			case s.Type == PatBreakout && s.Down && ev.Price < lo*(1-s.Threshold):
				o.Values[0], o.Values[1] = ev.Price, lo
			default:
				continue
			}
			out = append(out, o)
		}
		hist[ev.Symbol] = append(h, *ev)
	}
	return out
}

// patOracleSpecs: breakouts both ways and spikes over three timeframes and
// several thresholds, some restricted to symbols.
func patOracleSpecs(t testing.TB) []PatternSpec {
	var b strings.Builder
	b.WriteString("[")
	n := 0
	for _, tf := range []string{"1s", "10s", "1m"} {
		for _, th := range []string{"0", "0.00005", "0.0001", "0.0002", "0.0005"} {
			for _, dir := range []string{"up", "down"} {
				fmt.Fprintf(&b, `{"id":"b%d","type":"price_breakout","threshold":%s,"timeframe":%q,"direction":%q},`, n, th, tf, dir)
				n++
			}
		}
		for _, m := range []string{"1.5", "3", "10"} {
			fmt.Fprintf(&b, `{"id":"v%d","type":"volume_spike","multiplier":%s,"baseline":%q},`, n, m, tf)
			n++
		}
		fmt.Fprintf(&b, `{"id":"s%d","type":"price_breakout","threshold":0.0002,"timeframe":%q,"symbols":["AAA","S4"]},`, n, tf)
		n++
		fmt.Fprintf(&b, `{"id":"w%d","type":"volume_spike","multiplier":2,"baseline":%q,"symbols":["BBB"]},`, n, tf)
		n++
	}
	s := strings.TrimSuffix(b.String(), ",") + "]"
	return mustParsePatterns(t, s)
}

// The incremental detector equals the brute-force oracle match for match
// over the real trades, in order and out of order, with and without a cap.
func TestPatternOracleRealTrades(t *testing.T) {
	specs := patOracleSpecs(t)
	base := realTradeEvents(t)
	shuffled := slices.Clone(base)
	for i := range shuffled {
		if i%97 == 50 {
			shuffled[i].TsNs -= int64(2 * time.Second) // late for its symbol
		}
	}
	for _, tc := range []struct {
		name string
		evs  []codec.Event
		capN int
	}{{"in order", base, DefaultMaxPatternTradesPerSymbol}, {"out of order", shuffled, DefaultMaxPatternTradesPerSymbol}, {"capped at 25", base, 25}} {
		p := patPipeline(t, specs, PatternOptions{MaxTradesPerSymbol: tc.capN})
		var got []Output
		for i := range tc.evs {
			got, _ = p.OnEvent(&tc.evs[i], 0, got)
		}
		want := patOracle(specs, tc.evs, tc.capN)
		if len(got) != len(want) {
			for i := range min(len(got), len(want)) {
				if got[i].Op != want[i].Op || got[i].Seq != want[i].Seq {
					t.Logf("first difference at %d: op %d seq %d %v, oracle op %d seq %d %v", i, got[i].Op, got[i].Seq, got[i].Values[:3], want[i].Op, want[i].Seq, want[i].Values[:2])
					break
				}
			}
			t.Fatalf("%s: %d matches, the oracle %d", tc.name, len(got), len(want))
		}
		perOp := make([]int, len(specs))
		for i := range got {
			g, w := got[i], want[i]
			if g.Op != w.Op || g.Seq != w.Seq || g.Symbol != w.Symbol || g.TsNs != w.TsNs || g.Values[0] != w.Values[0] || g.Values[1] != w.Values[1] {
				t.Fatalf("%s: match %d: op %d seq %d %v, oracle op %d seq %d %v", tc.name, i, g.Op, g.Seq, g.Values[:2], w.Op, w.Seq, w.Values[:2])
			}
			if !(g.Value > 0 && g.Value <= 1) {
				t.Fatalf("%s: confidence %v outside (0, 1]", tc.name, g.Value)
			}
			perOp[g.Op]++
		}
		for op, n := range perOp {
			if n == 0 && specs[op].Threshold < 0.0005 && specs[op].Multiplier < 10 {
				t.Errorf("%s: pattern %s never matched: the comparison proves little for it", tc.name, specs[op].ID)
			}
		}
		if tc.name == "out of order" && p.PatternStats().Late == 0 {
			t.Fatalf("out of order: no late trades counted")
		}
		if tc.name == "capped at 25" && p.PatternStats().Capped == 0 {
			t.Fatalf("capped: nothing counted")
		}
		t.Logf("%s: %d matches over %d events, %+v", tc.name, len(got), len(tc.evs), p.PatternStats())
	}
}

// A pipeline restored from a snapshot mid-stream continues exactly as the
// uninterrupted one, patterns included.
func TestPatternStateRestoreContinuesIdentically(t *testing.T) {
	specs := append(patOracleSpecs(t), mustParsePatterns(t, `[
		{"id":"t1","type":"technical_signal","signal":"ema_cross","fast":3,"slow":8},
		{"id":"t2","type":"technical_signal","signal":"rsi_cross","period":5},
		{"id":"t3","type":"technical_signal","signal":"vwap_cross","symbols":["BBB","CCC"]}]`)...)
	evs := realTradeEvents(t)
	for i := range evs {
		if i%89 == 3 {
			evs[i].TsNs -= int64(time.Second)
		}
	}
	mk := func() *Pipeline {
		ind, _ := ParseIndicators("sma:5,rsi:14")
		wins, _ := ParseWindowSpecs("tumbling:1m:ohlcv")
		p, err := NewPipeline(PipelineConfig{Indicators: ind, EmitIndicators: true, Windows: wins, Patterns: specs,
			PatternOptions: PatternOptions{MaxTradesPerSymbol: 300}, SymbolNames: patNames{}, MaxSymbolID: 64, MaxSlots: 8})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	whole := runEvents(mk(), slices.Clone(evs))
	if n := len(matchSeqs(whole)); n < 100 {
		t.Fatalf("only %d matches", n)
	}
	for _, cut := range []int{0, 1, 777, len(evs) / 2, len(evs) - 3} {
		orig := mk()
		first := runEvents(orig, evs[:cut])
		snap := orig.AppendState(nil)
		restored := mk()
		runEvents(restored, evs[len(evs)-40:]) // other state first: LoadState replaces it
		if err := restored.LoadState(snap); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if string(restored.AppendState(nil)) != string(snap) {
			t.Fatalf("cut %d: snapshot of the restored pipeline differs", cut)
		}
		rest := runEvents(restored, evs[cut:])
		sameOutputs(t, append(first, rest...), whole)
	}
	// Another pattern list refuses the snapshot.
	p := mk()
	runEvents(p, evs[:100])
	other, err := NewPipeline(PipelineConfig{Patterns: specs[:3], SymbolNames: patNames{}, MaxSymbolID: 64, MaxSlots: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.LoadState(p.AppendState(nil)); err == nil {
		t.Fatal("a snapshot of other operators loaded")
	}
}

func TestParsePatternsErrors(t *testing.T) {
	for _, tc := range []struct{ js, want string }{
		{`{}`, "JSON array"},
		{`[{"type":"price_breakout","threshold":0.1,"timeframe":"1m"}]`, `#1: id: missing`},
		{`[{"id":"a","type":"price_breakout","timeframe":"1m"}]`, `"a" (#1): threshold: missing`},
		{`[{"id":"a","type":"price_breakout","threshold":-1,"timeframe":"1m"}]`, `"a" (#1): threshold: -1`},
		{`[{"id":"a","type":"price_breakout","threshold":0.1,"timeframe":"soon"}]`, `"a" (#1): timeframe: "soon"`},
		{`[{"id":"a","type":"price_breakout","threshold":0.1,"timeframe":"-1m"}]`, `timeframe: -1m must be positive`},
		{`[{"id":"a","type":"price_breakout","threshold":0.1,"timeframe":"1m","direction":"left"}]`, `direction: "left"`},
		{`[{"id":"a","type":"price_breakout","threshold":0.1,"timeframe":"1m","multiplier":2}]`, `multiplier: not a parameter of price_breakout`},
		{`[{"id":"a","type":"price_breakout","threshold":0.1,"timeframe":"1m","colour":2}]`, `"a" (#1): json: unknown field "colour"`},
		{`[{"id":"a","type":"volume_spike","multiplier":0,"baseline":"1m"}]`, `"a" (#1): multiplier: 0`},
		{`[{"id":"a","type":"volume_spike","multiplier":2}]`, `baseline: missing`},
		{`[{"id":"a","type":"technical_signal","signal":"sma_cross","fast":20,"slow":5}]`, `"a" (#1): slow: 5 must be greater`},
		{`[{"id":"a","type":"technical_signal","signal":"macd"}]`, `signal: "macd"`},
		{`[{"id":"a","type":"technical_signal","signal":"rsi_cross","overbought":20,"oversold":30}]`, `oversold: 30 must be in`},
		{`[{"id":"a","type":"news_impact","keywords":["x"]}]`, `timeframe: missing`},
		{`[{"id":"a","type":"teleport"}]`, `type: "teleport"`},
		{`[{"id":"a","type":"volume_spike","multiplier":2,"baseline":"1m","symbols":[]}]`, `symbols: empty list`},
		{`[{"id":"a","type":"volume_spike","multiplier":2,"baseline":"1m"},{"id":"a","type":"volume_spike","multiplier":3,"baseline":"1m"}]`, `"a" (#2): id: already used by pattern #1`},
	} {
		_, err := ParsePatterns([]byte(tc.js))
		if err == nil || !errors.Is(err, ErrPatternSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.js, err, tc.want)
		}
	}
	specs := mustParsePatterns(t, `[{"id":"r","type":"technical_signal","signal":"rsi_cross"}]`)
	if s := specs[0]; s.Period != 14 || s.Overbought != 70 || s.Oversold != 30 {
		t.Fatalf("rsi defaults %+v", s)
	}
}

// The detector allocates nothing per trade once each symbol's rings have
// grown to their working size.
func TestPatternOnEventDoesNotAllocate(t *testing.T) {
	specs := append(patOracleSpecs(t), mustParsePatterns(t, `[{"id":"t1","type":"technical_signal","signal":"sma_cross","fast":3,"slow":8}]`)...)
	p := patPipeline(t, specs, PatternOptions{})
	evs := realTradeEvents(t)
	out := make([]Output, 0, 4096)
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out[:0])
	}
	i := 0
	allocs := testing.AllocsPerRun(2000, func() {
		ev := evs[len(evs)-1-i%50]
		ev.TsNs = evs[len(evs)-1].TsNs + int64(i)
		i++
		out, _ = p.OnEvent(&ev, 0, out[:0])
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per trade", allocs)
	}
}
