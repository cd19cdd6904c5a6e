package feeds

import (
	"context"
	"fmt"
	"math"
	"time"

	"qstream/codec"
)

// SyntheticOptions configures the built-in synthetic market.
type SyntheticOptions struct {
	Name       string
	Seed       uint64  // same seed, same sequence of events
	Symbols    int     // number of instruments (default 100, max 100000)
	Rate       int     // events per second of processing time (0: as fast as possible)
	QuoteEvery int     // one quote per this many events (default 4: 25% quotes); 0 disables quotes
	Count      int64   // stop after this many events (0: run until cancelled)
	StartNs    int64   // event time of the first event (default 2024-01-02T14:30:00Z)
	StepNs     int64   // event-time step between events (default 1e9/Rate, or 1µs)
	Volatility float64 // per-trade relative step of the random walk (default 0.0005)
}

// Synthetic is a seeded random walk over a set of symbols producing trades
// and quotes. Event time is synthetic (StartNs + i·StepNs), never the wall
// clock, so the same options give the same events; only the pacing (Rate)
// uses processing time.
//
// The walk is kept in whole cents: each event picks a symbol and multiplies
// its price by one of walkSteps factors spread evenly over
// [exp(-Volatility), exp(+Volatility)] (precomputed: no math.Exp per
// event), rounds to the cent and keeps at least one cent. Symbol and step
// come from one draw of the generator, volume and side from another; a
// Fill costs a few nanoseconds, so the generator is not what bounds a
// `qstream run --rate 0` (BENCHMARKS.md).
type Synthetic struct {
	opts      SyntheticOptions
	rng       uint64
	cents     []int64 // price of each symbol in cents, at least 1
	ids       []codec.Symbol
	steps     *[walkSteps]float64
	i         int64
	quoteLeft int // events until the next quote (QuoteEvery)
}

// walkSteps is how many step factors the random walk draws from.
const walkSteps = 4096

// NewSynthetic validates opts and returns the feed.
func NewSynthetic(opts SyntheticOptions) (*Synthetic, error) {
	if opts.Name == "" {
		opts.Name = "synthetic"
	}
	if opts.Symbols == 0 {
		opts.Symbols = 100
	}
	if opts.Symbols < 1 || opts.Symbols > 100000 {
		return nil, fmt.Errorf("feeds: synthetic: symbols %d outside 1..100000", opts.Symbols)
	}
	if opts.Rate < 0 || opts.Count < 0 || opts.QuoteEvery < 0 {
		return nil, fmt.Errorf("feeds: synthetic: negative rate, count or quote interval")
	}
	if opts.QuoteEvery == 0 {
		opts.QuoteEvery = 4
	}
	if opts.StartNs == 0 {
		opts.StartNs = time.Date(2024, 1, 2, 14, 30, 0, 0, time.UTC).UnixNano()
	}
	if opts.StepNs == 0 {
		opts.StepNs = 1000
		if opts.Rate > 0 {
			opts.StepNs = max(1, int64(time.Second)/int64(opts.Rate))
		}
	}
	if opts.Volatility == 0 {
		opts.Volatility = 0.0005
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	s := &Synthetic{opts: opts, rng: opts.Seed, cents: make([]int64, opts.Symbols),
		steps: new([walkSteps]float64), quoteLeft: opts.QuoteEvery}
	for i := range s.cents {
		s.cents[i] = 2000 + int64(s.next()%48000) // 20.00 .. 499.99
	}
	for i := range s.steps {
		// The midpoints of walkSteps equal slices of [-1, 1].
		s.steps[i] = math.Exp(opts.Volatility * ((2*float64(i)+1)/walkSteps - 1))
	}
	return s, nil
}

// Name implements Feed.
func (s *Synthetic) Name() string { return s.opts.Name }

// SymbolName returns the name of the i-th synthetic instrument.
func SymbolName(i int) string { return fmt.Sprintf("SYN%05d", i) }

// next is xorshift64*: fast, seeded, deterministic.
func (s *Synthetic) next() uint64 {
	s.rng ^= s.rng >> 12
	s.rng ^= s.rng << 25
	s.rng ^= s.rng >> 27
	return s.rng * 2685821657736338717
}

// Intern registers the instruments with the table; Fill needs it first.
func (s *Synthetic) Intern(t *codec.SymbolTable) error {
	s.ids = make([]codec.Symbol, s.opts.Symbols)
	for i := range s.ids {
		id, err := t.InternString(SymbolName(i))
		if err != nil {
			return fmt.Errorf("feeds: synthetic: %w", err)
		}
		s.ids[i] = id
	}
	return nil
}

// Fill writes the next event into ev and reports false once Count events
// were produced. Precondition: Intern was called.
func (s *Synthetic) Fill(ev *codec.Event) bool {
	if s.opts.Count > 0 && s.i >= s.opts.Count {
		return false
	}
	r := s.next()
	// Symbol from the high 32 bits (Lemire's multiply-shift: no division),
	// step from the 12 bits below them.
	k := int((r >> 32) * uint64(len(s.cents)) >> 32)
	c := int64(float64(s.cents[k])*s.steps[r>>20&(walkSteps-1)] + 0.5) // round half up: c > 0
	c = max(c, 1)
	s.cents[k] = c
	p := float64(c) / 100
	ev.Reset()
	s.i++
	ev.Seq = uint64(s.i)
	ev.TsNs = s.opts.StartNs + s.i*s.opts.StepNs
	ev.Symbol = s.ids[k]
	ev.Status = codec.StatusOpen
	r = s.next()
	if s.quoteLeft--; s.quoteLeft == 0 {
		s.quoteLeft = s.opts.QuoteEvery
		// 0.02% of the price, to the cent, at least one; bid and ask whole
		// cents around the last price, as a venue quotes them.
		spread := max(1, (c+2500)/5000)
		bid := max(c-spread/2, 1)
		ev.Kind = codec.KindQuote
		ev.Bid, ev.Ask = float64(bid)/100, float64(bid+spread)/100
		ev.BidSize = float64(1 + r%50*100)
		ev.AskSize = float64(1 + (r>>32)%50*100)
		ev.Flags = codec.FlagHasBid | codec.FlagHasAsk
		return true
	}
	ev.Kind = codec.KindTrade
	ev.Price = p
	ev.Volume = float64(1 + r%20*50)
	if r>>63 == 0 {
		ev.Flags = codec.FlagBuy
	} else {
		ev.Flags = codec.FlagSell
	}
	return true
}

// syntheticBatch is how many events are published between flushes.
const syntheticBatch = 256

// Run implements Feed: it publishes events at Rate (paced in 1 ms steps) until
// Count is reached or ctx is done.
func (s *Synthetic) Run(ctx context.Context, pubs Publishers) error {
	if err := s.Intern(pubs.Symbols()); err != nil {
		return err
	}
	pub, err := pubs.NewPublisher(s.opts.Name)
	if err != nil {
		return err
	}
	var ev codec.Event
	var tick *time.Ticker
	perTick := syntheticBatch
	if s.opts.Rate > 0 {
		tick = time.NewTicker(time.Millisecond)
		defer tick.Stop()
	}
	var owed float64
	for {
		if tick != nil {
			select {
			case <-ctx.Done():
				return pub.Flush()
			case <-tick.C:
			}
			owed += float64(s.opts.Rate) / 1000
			perTick = int(owed)
			owed -= float64(perTick)
		} else if ctx.Err() != nil {
			return pub.Flush()
		}
		for j := 0; j < perTick; j++ {
			if !s.Fill(&ev) {
				return pub.Flush()
			}
			if err := pub.Publish(&ev); err != nil {
				return err
			}
			if (j+1)%syntheticBatch == 0 {
				if err := pub.Flush(); err != nil {
					return err
				}
			}
		}
		if err := pub.Flush(); err != nil {
			return err
		}
	}
}
