package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

const (
	patBenchSymbols = 1000
	patBenchStepNs  = int64(100 * time.Microsecond) // one trade per 100 µs overall: each symbol every 100 ms
)

// patBenchSpecs is the benchmark's 100 patterns: 30 breakouts up and 30
// down (3 timeframes × 10 thresholds), 24 volume spikes (3 baselines × 8
// multipliers), 16 technical signals; every fifth pattern is restricted to
// 100 of the symbols.
func patBenchSpecs(t testing.TB) []PatternSpec {
	var b strings.Builder
	b.WriteString("[")
	n := 0
	sep := func() string {
		n++
		if n%5 != 0 {
			return ""
		}
		var syms []string
		for i := 0; i < 100; i++ {
			syms = append(syms, fmt.Sprintf("%q", patNames{}.Name(codec.Symbol(1+(i*7+n)%patBenchSymbols))))
		}
		return `,"symbols":[` + strings.Join(syms, ",") + `]`
	}
	tfs := []string{"1s", "10s", "1m"}
	for _, tf := range tfs {
		for k := 1; k <= 10; k++ {
			th := float64(k) * 0.0005
			fmt.Fprintf(&b, `{"id":"up%d","type":"price_breakout","threshold":%g,"timeframe":%q%s},`, n, th, tf, sep())
			fmt.Fprintf(&b, `{"id":"dn%d","type":"price_breakout","direction":"down","threshold":%g,"timeframe":%q%s},`, n, th, tf, sep())
		}
		for k := 0; k < 8; k++ {
			fmt.Fprintf(&b, `{"id":"v%d","type":"volume_spike","multiplier":%g,"baseline":%q%s},`, n, 1.5+float64(k)*0.5, tf, sep())
		}
	}
	for _, sig := range []string{
		`"signal":"sma_cross","fast":5,"slow":20`, `"signal":"sma_cross","fast":10,"slow":50`,
		`"signal":"ema_cross","fast":12,"slow":26`, `"signal":"ema_cross","fast":5,"slow":20`,
		`"signal":"rsi_cross"`, `"signal":"rsi_cross","overbought":80,"oversold":20`,
		`"signal":"vwap_cross"`, `"signal":"sma_cross","fast":5,"slow":50`,
	} {
		for k := 0; k < 2; k++ {
			fmt.Fprintf(&b, `{"id":"t%d","type":"technical_signal",%s%s},`, n, sig, sep())
		}
	}
	specs := mustParsePatterns(t, strings.TrimSuffix(b.String(), ",")+"]")
	if len(specs) != 100 {
		t.Fatalf("%d patterns", len(specs))
	}
	return specs
}

// patBenchTrades is a seeded random walk of 1<<16 trades over 1000 symbols
// (time stamps are set when replayed), the symbols drawn uniformly or, with
// zipf, with Zipf's law (s = 1.1: a few symbols trade most, as on a real
// market).
func patBenchTrades(zipf bool) []codec.Event {
	rng := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(rng, 1.1, 1, patBenchSymbols-1)
	px := make([]float64, patBenchSymbols+1)
	for i := range px {
		px[i] = 50 + float64(i%200)
	}
	evs := make([]codec.Event, 1<<16)
	for i := range evs {
		s := 1 + rng.IntN(patBenchSymbols)
		if zipf {
			s = 1 + int(z.Uint64())
		}
		px[s] *= 1 + (rng.Float64()-0.5)*0.004
		vol := float64(1 + rng.IntN(100))
		if rng.IntN(50) == 0 {
			vol *= 20
		}
		evs[i] = codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(s), Price: math.Round(px[s]*100) / 100, Volume: vol}
	}
	return evs
}

// BenchmarkPatterns: events/s of the pattern detector (through
// Pipeline.OnEvent) with 100 patterns over 1,000 symbols, against Naive:
// every applicable pattern checked on every event by rescanning the
// symbol's trades within its timeframe (and its own indicators), as a
// detector without shared state and index would. Both must produce matches.
// Symbols are drawn uniformly (every symbol's state equally cold: the worst
// case for caches) and, in the Zipf pair, skewed as markets are.
func BenchmarkPatterns(b *testing.B) {
	specs := patBenchSpecs(b)
	for _, dist := range []string{"", "Zipf"} {
		evs := patBenchTrades(dist == "Zipf")
		patBenchIndexed(b, "Indexed"+dist, specs, evs)
		patBenchNaive(b, "Naive"+dist, specs, evs)
	}
}

func patBenchIndexed(b *testing.B, name string, specs []PatternSpec, evs []codec.Event) {
	b.Run(name, func(b *testing.B) {
		p, err := NewPipeline(PipelineConfig{Patterns: specs, SymbolNames: patNames{}, MaxSymbolID: patBenchSymbols + 1})
		if err != nil {
			b.Fatal(err)
		}
		out := make([]Output, 0, 256)
		var ts int64
		// Warm up: every ring grown to its working size. Every kind of
		// pattern (type, direction, timeframe, signal) must match in it:
		// the figure is of all of them at work. (Not every pattern: a
		// 0.5% breakout of a 1m high does not happen in this walk; its
		// test still runs on every trade unless a lower threshold failed.)
		perOp := make([]int, len(specs))
		for range 12 { // past the 1m timeframe (600 trades per symbol)
			for i := range evs {
				ev := evs[i]
				ts += patBenchStepNs
				ev.TsNs = ts
				out, _ = p.OnEvent(&ev, 0, out[:0])
				for _, o := range out {
					perOp[o.Op]++
				}
			}
		}
		kinds := map[string]int{}
		for op, s := range specs {
			kinds[fmt.Sprint(s.Type, s.Down, s.TimeframeNs, s.Signal)] += perOp[op]
		}
		for k, n := range kinds {
			if n == 0 {
				b.Fatalf("no pattern of kind %s matched in the warm-up: %v", k, perOp)
			}
		}
		matches := 0
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ev := evs[i&(len(evs)-1)]
			ts += patBenchStepNs
			ev.TsNs = ts
			out, _ = p.OnEvent(&ev, 0, out[:0])
			matches += len(out)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(matches)/float64(b.N), "matches/event")
		if matches == 0 && b.N > 1000 {
			b.Fatal("no matches: the benchmark measured nothing")
		}
	})
}

func patBenchNaive(b *testing.B, name string, specs []PatternSpec, evs []codec.Event) {
	b.Run(name, func(b *testing.B) {
		nv := newPatNaive(specs)
		var ts int64
		for i := range evs[:1<<14] {
			ev := evs[i]
			ts += patBenchStepNs
			ev.TsNs = ts
			nv.onTrade(&ev)
		}
		nv.matches = 0
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ev := evs[i&(len(evs)-1)]
			ts += patBenchStepNs
			ev.TsNs = ts
			nv.onTrade(&ev)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(nv.matches)/float64(b.N), "matches/event")
		if nv.matches == 0 && b.N > 1000 {
			b.Fatal("no matches: the benchmark measured nothing")
		}
	})
}

// patNaiveEnt is a trade the naive detector keeps.
type patNaiveEnt struct {
	ts            int64
	price, volume float64
}

// patNaive checks every pattern on every trade of its symbols by rescanning.
type patNaive struct {
	specs   []PatternSpec
	hist    map[codec.Symbol][]patNaiveEnt
	ind     []*IndicatorSet // per pattern, its own indicators
	prev    map[[2]int][3]float64
	maxTf   int64
	matches int
	vals    [4]float64
}

func newPatNaive(specs []PatternSpec) *patNaive {
	nv := &patNaive{specs: specs, hist: map[codec.Symbol][]patNaiveEnt{}, prev: map[[2]int][3]float64{}}
	for _, s := range specs {
		nv.maxTf = max(nv.maxTf, s.TimeframeNs)
		var is []IndicatorSpec
		switch s.Signal {
		case SigSMACross:
			is = []IndicatorSpec{{IndSMA, s.Fast}, {IndSMA, s.Slow}}
		case SigEMACross:
			is = []IndicatorSpec{{IndEMA, s.Fast}, {IndEMA, s.Slow}}
		case SigRSICross:
			is = []IndicatorSpec{{IndRSI, s.Period}}
		case SigVWAPCross:
			is = []IndicatorSpec{{Kind: IndVWAP}}
		}
		var set *IndicatorSet
		if is != nil {
			set, _ = NewIndicatorSet(is, IndicatorOptions{}, patBenchSymbols+1)
		}
		nv.ind = append(nv.ind, set)
	}
	return nv
}

func (nv *patNaive) onTrade(ev *codec.Event) {
	h := nv.hist[ev.Symbol]
	name := patNames{}.Name(ev.Symbol)
	for op := range nv.specs {
		s := &nv.specs[op]
		if len(s.Symbols) > 0 && !slices.Contains(s.Symbols, name) {
			continue
		}
		if s.Type == PatTechnical {
			v := nv.vals[:len(nv.ind[op].specs)]
			nv.ind[op].Update(int(ev.Symbol), ev.TsNs, ev.Price, ev.Volume, v)
			k := [2]int{op, int(ev.Symbol)}
			pv := nv.prev[k]
			var x, y, px, py float64
			switch s.Signal {
			case SigSMACross, SigEMACross:
				x, y, px, py = v[0], v[1], pv[0], pv[1]
			case SigRSICross:
				x, y, px, py = v[0], s.Overbought, pv[0], s.Overbought
			case SigVWAPCross:
				x, y, px, py = ev.Price, v[0], pv[2], pv[0]
			}
			if patCross(px, py, x, y) != 0 {
				nv.matches++
			}
			nv.prev[k] = [3]float64{v[0], v[len(v)-1], ev.Price}
			continue
		}
		hi, lo, sum, n := math.Inf(-1), math.Inf(1), 0.0, 0
		for j := len(h) - 1; j >= 0 && h[j].ts > ev.TsNs-s.TimeframeNs; j-- {
			hi, lo, sum, n = max(hi, h[j].price), min(lo, h[j].price), sum+h[j].volume, n+1
		}
		if n == 0 {
			continue
		}
		switch {
		case s.Type == PatVolumeSpike && ev.Volume > s.Multiplier*sum/float64(n),
			s.Type == PatBreakout && !s.Down && ev.Price > hi*(1+s.Threshold),
			s.Type == PatBreakout && s.Down && ev.Price < lo*(1-s.Threshold):
			nv.matches++
		}
	}
	// Keep the history within the longest timeframe.
	cut := 0
	for cut < len(h) && h[cut].ts <= ev.TsNs-nv.maxTf {
		cut++
	}
	if cut > 0 {
		h = append(h[:0], h[cut:]...)
	}
	nv.hist[ev.Symbol] = append(h, patNaiveEnt{ts: ev.TsNs, price: ev.Price, volume: ev.Volume})
}
