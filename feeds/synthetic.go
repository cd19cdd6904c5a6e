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
type Synthetic struct {
	opts   SyntheticOptions
	rng    uint64
	prices []float64
	ids    []codec.Symbol
	i      int64
}

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
	s := &Synthetic{opts: opts, rng: opts.Seed, prices: make([]float64, opts.Symbols)}
	for i := range s.prices {
		s.prices[i] = 20 + float64(s.next()%48000)/100 // 20.00 .. 500.00
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

func (s *Synthetic) uniform() float64 { return float64(s.next()>>11) / (1 << 53) }

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
	k := int(s.next() % uint64(len(s.prices)))
	p := s.prices[k]
	// Random walk in log space, kept away from zero.
	p *= math.Exp(s.opts.Volatility * (2*s.uniform() - 1))
	p = math.Max(0.01, math.Round(p*100)/100)
	s.prices[k] = p
	ev.Reset()
	s.i++
	ev.Seq = uint64(s.i)
	ev.TsNs = s.opts.StartNs + s.i*s.opts.StepNs
	ev.Symbol = s.ids[k]
	ev.Status = codec.StatusOpen
	spread := math.Max(0.01, math.Round(p*0.0002*100)/100)
	if s.i%int64(s.opts.QuoteEvery) == 0 {
		ev.Kind = codec.KindQuote
		ev.Bid, ev.Ask = p-spread/2, p+spread/2
		ev.BidSize = float64(1 + s.next()%50*100)
		ev.AskSize = float64(1 + s.next()%50*100)
		ev.Flags = codec.FlagHasBid | codec.FlagHasAsk
		return true
	}
	ev.Kind = codec.KindTrade
	ev.Price = p
	ev.Volume = float64(1 + s.next()%20*50)
	if s.next()&1 == 0 {
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
