package ops

import (
	"math"
	"testing"
	"time"

	"qstream/codec"
)

// winBenchStream produces an in-order trade stream: nsyms symbols
// round-robin, one trade every stepNs, prices from a small table, and the
// watermark = trade time − 1 ms.
type winBenchStream struct {
	ts     int64
	stepNs int64
	nsyms  int
	i, sym int
}

var winBenchPrices = [16]float64{100, 100.5, 99.75, 101, 100.25, 99.5, 100.75, 101.25, 99.25, 100, 100.5, 98.75, 101.5, 100.25, 99.75, 100}

// next updates ev in place (as a feed parser would fill a ring slot).
func (s *winBenchStream) next(ev *codec.Event) (slot int, wm int64) {
	s.i++
	s.ts += s.stepNs
	slot = s.sym
	if s.sym++; s.sym == s.nsyms {
		s.sym = 0
	}
	ev.TsNs, ev.Seq, ev.Kind = s.ts, uint64(s.i), codec.KindTrade
	ev.Price, ev.Volume = winBenchPrices[s.i&15]+float64(slot), float64(1+s.i&7)
	ev.Symbol = codec.Symbol(slot + 1)
	return slot, s.ts - int64(time.Millisecond)
}

// BenchmarkWindow: ns per trade per window type (64 symbols, 1000 trades/s
// of event time, watermark advanced and windows fired on every trade).
func BenchmarkWindow(b *testing.B) {
	for _, c := range []struct{ name, spec string }{
		{"tumbling", "tumbling:1s:avg"},
		{"tumbling_p99", "tumbling:1s:p99"},
		{"tumbling_twap", "tumbling:1s:twap"},
		{"tumbling_ohlcv", "tumbling:1m:ohlcv"},
		{"hopping", "hopping:10s/1s:avg"},
		{"hopping_max", "hopping:10s/1s:max"},
		{"sliding", "sliding:1s:avg"},
		{"sliding_max", "sliding:1s:max"},
		{"session", "session:50ms:avg"},
		{"count", "count:100:avg"},
	} {
		b.Run(c.name, func(b *testing.B) {
			op, err := NewWindowOperator(0, winMustSpec(b, c.spec), WindowOptions{}, 64)
			if err != nil {
				b.Fatal(err)
			}
			st := winBenchStream{ts: 1_700_000_000 * winSec, stepNs: winMs, nsyms: 64}
			dst := make([]Output, 0, 1024)
			var ev codec.Event
			var fired int
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				slot, wm := st.next(&ev)
				dst, _ = op.OnEvent(slot, ev.Symbol, &ev, wm, dst[:0])
				dst = op.OnWatermark(wm, ev.Seq, dst)
				fired += len(dst)
			}
			b.ReportMetric(float64(fired)/b.Elapsed().Seconds(), "results/s")
		})
	}
}

// BenchmarkWindowTumblingResults: result throughput of tumbling windows
// when results are frequent: 4096 symbols each trading once per 1 ms
// window, so every trade ends up in one result.
func BenchmarkWindowTumblingResults(b *testing.B) {
	const nsyms = 4096
	op, err := NewWindowOperator(0, winMustSpec(b, "tumbling:1ms:sum"), WindowOptions{}, nsyms)
	if err != nil {
		b.Fatal(err)
	}
	// 4096 trades per ms of event time: step = 1ms/4096 ≈ 244 ns.
	st := winBenchStream{ts: 1_700_000_000 * winSec, stepNs: winMs / nsyms, nsyms: nsyms}
	dst := make([]Output, 0, 2*nsyms)
	var ev codec.Event
	var fired int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		slot, _ := st.next(&ev)
		dst, _ = op.OnEvent(slot, ev.Symbol, &ev, ev.TsNs, dst[:0])
		if i%nsyms == nsyms-1 { // the shard's watermark moves once per round
			dst = op.OnWatermark(ev.TsNs, ev.Seq, dst)
		}
		fired += len(dst)
	}
	b.ReportMetric(float64(fired)/b.Elapsed().Seconds(), "results/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/math.Max(float64(fired), 1), "ns/result")
}

// The 5-minute window hopping by 1 second: 4 symbols, 40 trades per second
// in total, so each window holds 3,000 trades of its symbol and each trade
// belongs to 300 windows. Both benchmarks first run 2×5m10s of event time so
// that every window is full and the naive slices have reached their size.
const (
	winHop5mSyms   = 4
	winHop5mStep   = 25 * int64(time.Millisecond)
	winHop5mWarmup = int(2 * (5*time.Minute + 10*time.Second) / (25 * time.Millisecond))
)

func BenchmarkHopping5m1s(b *testing.B) {
	for _, agg := range []string{"avg", "max", "stddev"} {
		b.Run(agg, func(b *testing.B) {
			op, err := NewWindowOperator(0, winMustSpec(b, "hopping:5m/1s:"+agg), WindowOptions{}, winHop5mSyms)
			if err != nil {
				b.Fatal(err)
			}
			st := winBenchStream{ts: 1_700_000_000 * winSec, stepNs: winHop5mStep, nsyms: winHop5mSyms}
			dst := make([]Output, 0, 64)
			var ev codec.Event
			var fired int
			for i := 0; i < winHop5mWarmup; i++ {
				slot, wm := st.next(&ev)
				dst, _ = op.OnEvent(slot, ev.Symbol, &ev, wm, dst[:0])
				dst = op.OnWatermark(wm, ev.Seq, dst)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				slot, wm := st.next(&ev)
				dst, _ = op.OnEvent(slot, ev.Symbol, &ev, wm, dst[:0])
				dst = op.OnWatermark(wm, ev.Seq, dst)
				fired += len(dst)
			}
			b.ReportMetric(float64(fired)/b.Elapsed().Seconds(), "results/s")
		})
	}
}

func BenchmarkHopping5m1sNaive(b *testing.B) {
	for _, agg := range []AggregationKind{AggAvg, AggMax, AggStdDev} {
		b.Run(agg.String(), func(b *testing.B) {
			nv := newWinNaiveHopping(int64(5*time.Minute), winSec, agg, winHop5mSyms)
			st := winBenchStream{ts: 1_700_000_000 * winSec, stepNs: winHop5mStep, nsyms: winHop5mSyms}
			var ev codec.Event
			var fired int
			for i := 0; i < winHop5mWarmup; i++ {
				slot, wm := st.next(&ev)
				nv.onEvent(slot, &ev)
				nv.onWatermark(wm)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				slot, wm := st.next(&ev)
				nv.onEvent(slot, &ev)
				fired += nv.onWatermark(wm)
			}
			b.ReportMetric(float64(fired)/b.Elapsed().Seconds(), "results/s")
		})
	}
}

// winNaiveHopping is the naive design the issue measures against: every
// open window keeps a slice of its messages (each trade is copied into all
// SIZE/HOP windows that contain it) and a window's value is recomputed from
// its slice when the watermark closes it. To keep the baseline generous,
// messages are stored compactly (time, price, volume: 24 bytes rather than
// a 128-byte codec.Event) and slices are reused, so the comparison is about
// work, not memory traffic or garbage collection.
type winNaiveHopping struct {
	size, hop int64
	agg       AggregationKind
	nwin      int64
	syms      []winNaiveSym
	last      []winNaiveResult // results of the last onWatermark (for the agreement test)
}

type winNaiveSym struct {
	wins  []winNaiveWindow // ring of open windows by k
	nextK int64
	init  bool
}

type winNaiveWindow struct {
	k    int64
	sym  codec.Symbol
	msgs []winNaiveMsg
}

type winNaiveMsg struct {
	ts         int64
	price, vol float64
}

type winNaiveResult struct {
	sym        codec.Symbol
	start, end int64
	n          int64
	v          float64
}

func newWinNaiveHopping(size, hop int64, agg AggregationKind, nsyms int) *winNaiveHopping {
	nv := &winNaiveHopping{size: size, hop: hop, agg: agg, nwin: size/hop + 2, syms: make([]winNaiveSym, nsyms)}
	for i := range nv.syms {
		nv.syms[i].wins = make([]winNaiveWindow, nv.nwin)
		for j := range nv.syms[i].wins {
			nv.syms[i].wins[j].k = math.MinInt64
		}
	}
	return nv
}

func (nv *winNaiveHopping) onEvent(slot int, ev *codec.Event) {
	s := &nv.syms[slot]
	kHi := winFloorDiv(ev.TsNs, nv.hop)
	kLo := winCeilDiv(ev.TsNs-nv.size+1, nv.hop)
	if !s.init {
		s.nextK, s.init = kLo, true
	}
	for k := max(kLo, s.nextK); k <= kHi; k++ {
		w := &s.wins[winMod(k, nv.nwin)]
		if w.k != k {
			w.k, w.sym, w.msgs = k, ev.Symbol, w.msgs[:0]
		}
		w.msgs = append(w.msgs, winNaiveMsg{ev.TsNs, ev.Price, ev.Volume})
	}
}

func (nv *winNaiveHopping) onWatermark(wm int64) int {
	fired := 0
	nv.last = nv.last[:0]
	for i := range nv.syms {
		s := &nv.syms[i]
		for s.init && s.nextK*nv.hop+nv.size <= wm {
			w := &s.wins[winMod(s.nextK, nv.nwin)]
			if w.k == s.nextK && len(w.msgs) > 0 {
				v := nv.value(w.msgs)
				nv.last = append(nv.last, winNaiveResult{w.sym, w.k * nv.hop, w.k*nv.hop + nv.size, int64(len(w.msgs)), v})
				fired++
				w.msgs = w.msgs[:0]
			}
			s.nextK++
		}
	}
	return fired
}

func (nv *winNaiveHopping) value(msgs []winNaiveMsg) float64 {
	n := float64(len(msgs))
	switch nv.agg {
	case AggMax:
		m := math.Inf(-1)
		for i := range msgs {
			m = max(m, msgs[i].price)
		}
		return m
	case AggStdDev:
		var sum float64
		for i := range msgs {
			sum += msgs[i].price
		}
		mean := sum / n
		var ss float64
		for i := range msgs {
			d := msgs[i].price - mean
			ss += d * d
		}
		return math.Sqrt(ss / n)
	}
	var sum float64
	for i := range msgs {
		sum += msgs[i].price
	}
	return sum / n
}

// TestHoppingNaiveAgrees: the naive baseline of the benchmark computes the
// same windows as the operator (so the speed ratio compares equal work).
func TestHoppingNaiveAgrees(t *testing.T) {
	for _, agg := range []AggregationKind{AggAvg, AggMax, AggStdDev} {
		op, _ := NewWindowOperator(0, winMustSpec(t, "hopping:30s/1s:"+agg.String()), WindowOptions{}, winHop5mSyms)
		nv := newWinNaiveHopping(30*winSec, winSec, agg, winHop5mSyms)
		st := winBenchStream{ts: 1_700_000_000 * winSec, stepNs: 37 * winMs, nsyms: winHop5mSyms}
		var ev codec.Event
		var dst []Output
		total := 0
		for i := 0; i < 20000; i++ {
			slot, wm := st.next(&ev)
			dst, _ = op.OnEvent(slot, ev.Symbol, &ev, wm, dst[:0])
			dst = op.OnWatermark(wm, 0, dst)
			nv.onEvent(slot, &ev)
			nv.onWatermark(wm)
			// Same set of windows per watermark; the operator orders by
			// (end, symbol), the naive one by symbol: compare as sets.
			if len(dst) != len(nv.last) {
				t.Fatalf("%s: trade %d: %d windows, naive %d", agg, i, len(dst), len(nv.last))
			}
			for _, o := range dst {
				found := false
				for _, r := range nv.last {
					if r.sym == o.Symbol && r.start == o.StartNs && r.end == o.EndNs && r.n == o.Count &&
						math.Abs(r.v-o.Value) <= 1e-9*math.Abs(r.v) {
						found = true
					}
				}
				if !found {
					t.Fatalf("%s: window sym=%d [%d,%d) n=%d v=%v not computed by the naive design", agg, o.Symbol, o.StartNs, o.EndNs, o.Count, o.Value)
				}
			}
			total += len(dst)
		}
		if total < 1000 {
			t.Fatalf("%s: only %d windows compared", agg, total)
		}
	}
}
