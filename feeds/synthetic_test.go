package feeds

import (
	"math"
	"testing"

	"qstream/codec"
)

func newTestSynthetic(t testing.TB, opts SyntheticOptions) *Synthetic {
	t.Helper()
	s, err := NewSynthetic(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Intern(codec.NewSymbolTable(max(opts.Symbols, 100))); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSyntheticSameSeedSameEvents: the feed is a function of its options.
func TestSyntheticSameSeedSameEvents(t *testing.T) {
	a := newTestSynthetic(t, SyntheticOptions{Seed: 7, Count: 5000})
	b := newTestSynthetic(t, SyntheticOptions{Seed: 7, Count: 5000})
	c := newTestSynthetic(t, SyntheticOptions{Seed: 8, Count: 5000})
	var ea, eb, ec codec.Event
	differ := 0
	n := 0
	for a.Fill(&ea) {
		if !b.Fill(&eb) || !c.Fill(&ec) {
			t.Fatalf("event %d: the feeds of the same count ended apart", n)
		}
		if ea != eb {
			t.Fatalf("event %d: same seed, different events:\n%+v\n%+v", n, ea, eb)
		}
		if ea != ec {
			differ++
		}
		n++
	}
	if n != 5000 || b.Fill(&eb) {
		t.Fatalf("Fill gave %d events of Count 5000", n)
	}
	if differ < 4900 {
		t.Fatalf("seeds 7 and 8 gave %d different events of 5000", differ)
	}
}

// TestSyntheticWalk: prices are whole cents, at least one cent, and each
// trade or quote moves its symbol's price by at most the volatility (plus
// the rounding to the cent); quotes come every QuoteEvery events, with bid
// below ask; the symbols are drawn about evenly; steps go both ways.
func TestSyntheticWalk(t *testing.T) {
	const symbols, count, every = 50, 400_000, 5
	const vol = 0.002
	s := newTestSynthetic(t, SyntheticOptions{Seed: 3, Symbols: symbols, Count: count, QuoteEvery: every, Volatility: vol})
	last := make(map[codec.Symbol]float64)
	hits := make(map[codec.Symbol]int)
	var ev codec.Event
	up, down := 0, 0
	for i := 1; s.Fill(&ev); i++ {
		if ev.Seq != uint64(i) || ev.TsNs != s.opts.StartNs+int64(i)*s.opts.StepNs {
			t.Fatalf("event %d: seq %d ts %d", i, ev.Seq, ev.TsNs)
		}
		var p float64
		switch ev.Kind {
		case codec.KindQuote:
			if i%every != 0 {
				t.Fatalf("event %d is a quote; want one every %d", i, every)
			}
			if !(ev.Bid < ev.Ask) || ev.Bid <= 0 || ev.BidSize < 1 || ev.AskSize < 1 || ev.Flags != codec.FlagHasBid|codec.FlagHasAsk {
				t.Fatalf("event %d: bad quote %+v", i, ev)
			}
			for _, q := range []float64{ev.Bid, ev.Ask} {
				if c := q * 100; math.Abs(c-math.Round(c)) > 1e-6 {
					t.Fatalf("event %d: quote %v/%v is not in whole cents", i, ev.Bid, ev.Ask)
				}
			}
			// The walk's price: the mid, less the half cent of an odd spread.
			p = math.Floor((ev.Bid+ev.Ask)*50+1e-6) / 100
		case codec.KindTrade:
			if i%every == 0 {
				t.Fatalf("event %d is a trade; want a quote every %d", i, every)
			}
			if ev.Volume < 1 || ev.Flags != codec.FlagBuy && ev.Flags != codec.FlagSell {
				t.Fatalf("event %d: bad trade %+v", i, ev)
			}
			p = ev.Price
		default:
			t.Fatalf("event %d: kind %v", i, ev.Kind)
		}
		cents := p * 100
		if p < 0.01 || math.Abs(cents-math.Round(cents)) > 1e-6 {
			t.Fatalf("event %d: price %v is not a whole number of cents >= 1", i, p)
		}
		if q, ok := last[ev.Symbol]; ok {
			if lim := q*(math.Exp(vol)-1) + 0.005 + 1e-9; math.Abs(p-q) > lim {
				t.Fatalf("event %d: %v -> %v moves more than %v", i, q, p, lim)
			}
			switch {
			case p > q:
				up++
			case p < q:
				down++
			}
		}
		last[ev.Symbol], hits[ev.Symbol] = p, hits[ev.Symbol]+1
	}
	if len(hits) != symbols {
		t.Fatalf("%d symbols drawn, want %d", len(hits), symbols)
	}
	for sym, n := range hits {
		if want := count / symbols; n < want*9/10 || n > want*11/10 {
			t.Fatalf("symbol %d drawn %d times, want about %d", sym, n, want)
		}
	}
	if up == 0 || down == 0 || math.Abs(float64(up-down)) > 0.05*float64(up+down) {
		t.Fatalf("steps up %d, down %d: want both, about as many", up, down)
	}
}

// TestSyntheticFillDoesNotAllocate: Fill is on the synthetic feed's hot path.
func TestSyntheticFillDoesNotAllocate(t *testing.T) {
	s := newTestSynthetic(t, SyntheticOptions{Seed: 1})
	var ev codec.Event
	if n := testing.AllocsPerRun(1000, func() { s.Fill(&ev) }); n != 0 {
		t.Fatalf("Fill allocates %v times", n)
	}
}

// expWalk is the generator before the step table (the baseline of
// BenchmarkSyntheticFill): math.Exp of a uniform draw per event, a modulo
// to pick the symbol and the quote, math.Round and math.Max on floats.
type expWalk struct {
	rng    uint64
	prices []float64
	ids    []codec.Symbol
	i      int64
	vol    float64
}

func (s *expWalk) next() uint64 {
	s.rng ^= s.rng >> 12
	s.rng ^= s.rng << 25
	s.rng ^= s.rng >> 27
	return s.rng * 2685821657736338717
}

func (s *expWalk) fill(ev *codec.Event, quoteEvery int64) {
	k := int(s.next() % uint64(len(s.prices)))
	p := s.prices[k] * math.Exp(s.vol*(2*float64(s.next()>>11)/(1<<53)-1))
	p = math.Max(0.01, math.Round(p*100)/100)
	s.prices[k] = p
	ev.Reset()
	s.i++
	ev.Seq, ev.TsNs, ev.Symbol, ev.Status = uint64(s.i), 1_700_000_000_000_000_000+s.i*1000, s.ids[k], codec.StatusOpen
	spread := math.Max(0.01, math.Round(p*0.0002*100)/100)
	if s.i%quoteEvery == 0 {
		ev.Kind, ev.Bid, ev.Ask = codec.KindQuote, p-spread/2, p+spread/2
		ev.BidSize, ev.AskSize = float64(1+s.next()%50*100), float64(1+s.next()%50*100)
		ev.Flags = codec.FlagHasBid | codec.FlagHasAsk
		return
	}
	ev.Kind, ev.Price, ev.Volume = codec.KindTrade, p, float64(1+s.next()%20*50)
	ev.Flags = codec.FlagBuy
	if s.next()&1 != 0 {
		ev.Flags = codec.FlagSell
	}
}

// BenchmarkSyntheticFill: one op is one event of 100 symbols. "table" is
// Fill; "exp" the per-event math.Exp walk it replaced, in the same run.
// Both check at the end that they made b.N events with positive prices.
func BenchmarkSyntheticFill(b *testing.B) {
	b.Run("table", func(b *testing.B) {
		s := newTestSynthetic(b, SyntheticOptions{Seed: 1})
		var ev codec.Event
		sum := 0.0
		b.ReportAllocs()
		for b.Loop() {
			if !s.Fill(&ev) {
				b.Fatal("Fill ended without a Count")
			}
			sum += ev.Price + ev.Bid
		}
		if s.i != int64(b.N) || !(sum > 0) {
			b.Fatalf("made %d events of %d (price sum %v)", s.i, b.N, sum)
		}
	})
	b.Run("exp", func(b *testing.B) {
		s := &expWalk{rng: 1, prices: make([]float64, 100), ids: make([]codec.Symbol, 100), vol: 0.0005}
		for i := range s.prices {
			s.prices[i], s.ids[i] = 20+float64(s.next()%48000)/100, codec.Symbol(i+1)
		}
		var ev codec.Event
		sum := 0.0
		b.ReportAllocs()
		for b.Loop() {
			s.fill(&ev, 4)
			sum += ev.Price + ev.Bid
		}
		if s.i != int64(b.N) || !(sum > 0) {
			b.Fatalf("made %d events of %d (price sum %v)", s.i, b.N, sum)
		}
	})
}
