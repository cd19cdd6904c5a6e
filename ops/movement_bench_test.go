package ops

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"qstream/codec"
)

// The benchmark's stream: movBenchSymbols symbols in turn, one trade every
// movBenchStepNs of event time (each symbol trades every 100 ms), two
// horizons of 5 s and 30 s (50 and 300 trades per symbol within them), a
// random walk of prices. Both implementations run the same stream in the
// same process.
const (
	movBenchSymbols = 1000
	movBenchStepNs  = int64(100 * time.Microsecond)
	movBenchSpecs   = "5s:0.05%,30s:0.1%"
	movBenchWarm    = 400_000 // 40 s of event time: every deque is in steady state
)

// movBenchPrices is a random walk per symbol, indexed by the trade's turn.
func movBenchPrices() []float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	p := make([]float64, 1<<16)
	x := 100.0
	for i := range p {
		x *= 1 + 0.0003*rng.NormFloat64()
		p[i] = x
	}
	return p
}

func movBenchEvent(ev *codec.Event, i int, prices []float64) {
	ev.Kind = codec.KindTrade
	ev.Symbol = codec.Symbol(1 + i%movBenchSymbols)
	ev.Seq = uint64(i + 1)
	ev.TsNs = int64(i) * movBenchStepNs
	// Each symbol walks its own stretch of the table.
	ev.Price = prices[(i/movBenchSymbols+(i%movBenchSymbols)*61)&(len(prices)-1)]
	ev.Volume = 1
}

// movNaive is the baseline: each symbol's whole history (a ring of the last
// 4096 trades, more than the longest horizon holds), rescanned backwards
// from the newest trade on every trade for the reference; same hysteresis.
type movNaive struct {
	specs []MovementSpec
	ts    [][]int64
	px    [][]float64
	n     []int
	dir   [][]int8
	ev    uint64
}

const movNaiveHist = 4096

func newMovNaive(specs []MovementSpec, symbols int) *movNaive {
	m := &movNaive{specs: specs, n: make([]int, symbols)}
	for s := 0; s < symbols; s++ {
		m.ts = append(m.ts, make([]int64, movNaiveHist))
		m.px = append(m.px, make([]float64, movNaiveHist))
		m.dir = append(m.dir, make([]int8, len(specs)))
	}
	return m
}

func (m *movNaive) onTrade(slot int, ev *codec.Event, dst []Output) []Output {
	ts, px, n := m.ts[slot], m.px[slot], m.n[slot]
	for k := range m.specs {
		s := &m.specs[k]
		cut := ev.TsNs - s.Horizon
		ref := -1
		for j := n - 1; j >= max(0, n-movNaiveHist); j-- { // newest first: the first at or before cut
			if ts[j&(movNaiveHist-1)] <= cut {
				ref = j & (movNaiveHist - 1)
				break
			}
		}
		if ref < 0 {
			continue
		}
		mv := (ev.Price - px[ref]) / px[ref]
		d := &m.dir[slot][k]
		if *d > 0 && mv < s.Threshold/2 || *d < 0 && mv > -s.Threshold/2 {
			*d = 0
		}
		if *d == 0 && math.Abs(mv) >= s.Threshold {
			*d = 1
			if mv < 0 {
				*d = -1
			}
			m.ev++
			dst = append(dst, Output{Kind: OutMovement, Op: uint16(k), Symbol: ev.Symbol, Seq: ev.Seq, TsNs: ev.TsNs, Price: ev.Price, Value: mv})
		}
	}
	ts[n&(movNaiveHist-1)], px[n&(movNaiveHist-1)] = ev.TsNs, ev.Price
	m.n[slot] = n + 1
	return dst
}

// The baseline and the operator agree on the benchmark's stream (so the
// benchmark compares two implementations of the same thing).
func TestMovementNaiveBaselineAgrees(t *testing.T) {
	specs, _ := ParseMovements(movBenchSpecs)
	op, err := newMovementSet(specs, MovementOptions{}, movBenchSymbols)
	if err != nil {
		t.Fatal(err)
	}
	naive := newMovNaive(specs, movBenchSymbols)
	prices := movBenchPrices()
	var ev codec.Event
	var a, b []Output
	for i := 0; i < movBenchWarm; i++ {
		movBenchEvent(&ev, i, prices)
		a = op.onTrade(i%movBenchSymbols, &ev, a[:0])
		b = naive.onTrade(i%movBenchSymbols, &ev, b[:0])
		if len(a) != len(b) {
			t.Fatalf("trade %d: %d events, the baseline %d", i, len(a), len(b))
		}
		for k := range a {
			if a[k].Op != b[k].Op || a[k].Value != b[k].Value {
				t.Fatalf("trade %d: %+v, the baseline %+v", i, a[k], b[k])
			}
		}
	}
	if op.stats.Events < 1000 || op.stats.Thinned != 0 {
		t.Fatalf("stats %+v", op.stats)
	}
}

func BenchmarkMovement(b *testing.B) {
	specs, _ := ParseMovements(movBenchSpecs)
	prices := movBenchPrices()
	run := func(b *testing.B, onTrade func(int, *codec.Event, []Output) []Output, events func() uint64) {
		var ev codec.Event
		out := make([]Output, 0, 16)
		for i := 0; i < movBenchWarm; i++ {
			movBenchEvent(&ev, i, prices)
			out = onTrade(i%movBenchSymbols, &ev, out[:0])
		}
		before := events()
		b.ReportAllocs()
		b.ResetTimer()
		for i := movBenchWarm; i < movBenchWarm+b.N; i++ {
			movBenchEvent(&ev, i, prices)
			out = onTrade(i%movBenchSymbols, &ev, out[:0])
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		if b.N >= 100_000 && events() == before {
			b.Fatal("no movement events: the benchmark measured nothing")
		}
	}
	b.Run("operator", func(b *testing.B) {
		op, err := newMovementSet(specs, MovementOptions{}, movBenchSymbols)
		if err != nil {
			b.Fatal(err)
		}
		run(b, op.onTrade, func() uint64 { return op.stats.Events })
		if op.stats.Late != 0 || op.stats.Thinned != 0 || op.stats.Invalid != 0 {
			b.Fatalf("stats %+v: late, thinned or invalid trades", op.stats)
		}
	})
	b.Run("naive_rescan", func(b *testing.B) {
		naive := newMovNaive(specs, movBenchSymbols)
		run(b, naive.onTrade, func() uint64 { return naive.ev })
	})
}
