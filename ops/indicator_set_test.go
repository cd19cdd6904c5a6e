package ops

import (
	"qstream/internal/testvectors"

	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// indTrade is one input of the tests.
type indTrade struct {
	ts            int64
	price, volume float64
}

// ---- Oracles: each indicator recomputed from the whole history, written
// the plain textbook way, independent of the incremental code. ----

// indNaive returns the value of spec after each trade of hist (NaN = null).
func indNaive(spec IndicatorSpec, opts IndicatorOptions, hist []indTrade) []float64 {
	out := make([]float64, len(hist))
	for i := range out {
		out[i] = math.NaN()
	}
	n := spec.Period
	switch spec.Kind {
	case IndSMA:
		for i := n - 1; i < len(hist); i++ {
			sum := 0.0
			for _, tr := range hist[i-n+1 : i+1] {
				sum += tr.price
			}
			out[i] = sum / float64(n)
		}
	case IndEMA:
		k := 2 / float64(n+1)
		var ema float64
		for i, tr := range hist {
			switch {
			case opts.EMASeed == EMASeedFirst && i == 0:
				ema = tr.price
			case opts.EMASeed == EMASeedFirst || i >= n:
				ema = ema + k*(tr.price-ema)
			case i == n-1:
				sum := 0.0
				for _, t := range hist[:n] {
					sum += t.price
				}
				ema = sum / float64(n)
			default:
				continue
			}
			out[i] = ema
		}
	case IndRSI:
		gains := make([]float64, len(hist))
		losses := make([]float64, len(hist))
		for i := 1; i < len(hist); i++ {
			gains[i] = math.Max(hist[i].price-hist[i-1].price, 0)
			losses[i] = math.Max(hist[i-1].price-hist[i].price, 0)
		}
		var ag, al float64
		for i := n; i < len(hist); i++ {
			if i == n {
				for j := 1; j <= n; j++ {
					ag += gains[j]
					al += losses[j]
				}
				ag, al = ag/float64(n), al/float64(n)
			} else {
				ag = (ag*float64(n-1) + gains[i]) / float64(n)
				al = (al*float64(n-1) + losses[i]) / float64(n)
			}
			if ag+al == 0 {
				out[i] = 0
			} else {
				out[i] = 100 * ag / (ag + al)
			}
		}
	case IndVWAP:
		o, _ := opts.normalize()
		sessionOf := func(ts int64) int64 { // floor((ts − offset) / length)
			q := (ts - o.SessionOffsetNs) / o.SessionLengthNs
			if (ts-o.SessionOffsetNs)%o.SessionLengthNs < 0 {
				q--
			}
			return q
		}
		// A trade belongs to the latest session seen so far (sessions only
		// move forward); the trades of one session are contiguous.
		cur := make([]int64, len(hist))
		for i, tr := range hist {
			cur[i] = sessionOf(tr.ts)
			if i > 0 && cur[i-1] > cur[i] {
				cur[i] = cur[i-1]
			}
		}
		for i := range hist {
			var pv, v float64
			for j := i; j >= 0 && cur[j] == cur[i]; j-- {
				pv += hist[j].price * hist[j].volume
				v += hist[j].volume
			}
			if v > 0 {
				out[i] = pv / v
			}
		}
	case IndVWAPN:
		for i := n - 1; i < len(hist); i++ {
			var pv, v float64
			for _, tr := range hist[i-n+1 : i+1] {
				pv += tr.price * tr.volume
				v += tr.volume
			}
			if v > 0 {
				out[i] = pv / v
			}
		}
	}
	return out
}

// indClose reports whether got is want up to a relative tolerance, with
// NaN equal only to NaN.
func indClose(got, want, rel float64) bool {
	if math.IsNaN(got) || math.IsNaN(want) {
		return math.IsNaN(got) && math.IsNaN(want)
	}
	return math.Abs(got-want) <= rel*math.Max(1, math.Abs(want))
}

// indRandomTrades returns a random series: a price random walk with flat
// stretches and jumps, volumes that are often 0, and timestamps that mostly
// advance, sometimes step back (out of order) and sometimes jump over
// several sessions.
func indRandomTrades(rng *rand.Rand, n int, sessionNs int64) []indTrade {
	out := make([]indTrade, n)
	price := 100 * (0.01 + rng.Float64())
	ts := rng.Int64N(1<<50) - 1<<49
	for i := range out {
		switch r := rng.IntN(10); {
		case r < 3: // flat
		case r < 4:
			price *= math.Exp(rng.NormFloat64() * 0.2)
		default:
			price *= math.Exp(rng.NormFloat64() * 0.01)
		}
		vol := 0.0
		if rng.IntN(4) > 0 {
			vol = math.Round(rng.ExpFloat64()*1000) / 100
		}
		switch r := rng.IntN(50); {
		case r == 0:
			ts += sessionNs * rng.Int64N(3)
		case r == 1:
			ts -= rng.Int64N(sessionNs/3 + 1)
		default:
			ts += rng.Int64N(sessionNs/20 + 1)
		}
		out[i] = indTrade{ts, price, vol}
	}
	return out
}

// TestIndicatorSetVersusNaive runs random series through random indicator
// sets and compares every output with the oracle.
func TestIndicatorSetVersusNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rounds := 200
	if testing.Short() {
		rounds = 30
	}
	for round := 0; round < rounds; round++ {
		var specs []IndicatorSpec
		small := 1 + rng.IntN(3)
		for _, k := range []IndicatorKind{IndSMA, IndEMA, IndRSI, IndVWAPN} {
			specs = append(specs, IndicatorSpec{k, small}, IndicatorSpec{k, small + 3 + rng.IntN(40)})
		}
		specs = append(specs, IndicatorSpec{Kind: IndVWAP})
		opts := IndicatorOptions{
			EMASeed:         EMASeed(round % 2),
			SessionLengthNs: []int64{0, 1e9, 3600e9, 7}[rng.IntN(4)],
			SessionOffsetNs: rng.Int64N(1<<40) - 1<<39,
		}
		set, err := NewIndicatorSet(specs, opts, 3)
		if err != nil {
			t.Fatal(err)
		}
		o := set.Options()
		hist := indRandomTrades(rng, 300+rng.IntN(500), o.SessionLengthNs)
		want := make([][]float64, len(specs))
		for i, sp := range specs {
			want[i] = indNaive(sp, opts, hist)
		}
		slot := rng.IntN(3)
		out := make([]float64, len(specs)+2) // longer than needed is fine
		for j, tr := range hist {
			set.Update(slot, tr.ts, tr.price, tr.volume, out)
			for i, sp := range specs {
				if !indClose(out[i], want[i][j], 1e-9) {
					t.Fatalf("round %d %s opts %+v: trade %d %+v: got %v, oracle %v", round, sp, o, j, tr, out[i], want[i][j])
				}
			}
		}
	}
}

// TestIndicatorWarmup pins where the first value of each kind lands.
func TestIndicatorWarmup(t *testing.T) {
	tests := []struct {
		spec  IndicatorSpec
		seed  EMASeed
		first int // index of the first non-null output
	}{
		{IndicatorSpec{IndSMA, 1}, 0, 0},
		{IndicatorSpec{IndSMA, 5}, 0, 4},
		{IndicatorSpec{IndEMA, 1}, EMASeedSMA, 0},
		{IndicatorSpec{IndEMA, 12}, EMASeedSMA, 11},
		{IndicatorSpec{IndEMA, 12}, EMASeedFirst, 0},
		{IndicatorSpec{IndRSI, 1}, 0, 1},
		{IndicatorSpec{IndRSI, 14}, 0, 14},
		{IndicatorSpec{IndVWAP, 0}, 0, 0},
		{IndicatorSpec{IndVWAPN, 1}, 0, 0},
		{IndicatorSpec{IndVWAPN, 14}, 0, 13},
	}
	for _, tc := range tests {
		set, err := NewIndicatorSet([]IndicatorSpec{tc.spec}, IndicatorOptions{EMASeed: tc.seed}, 1)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, 1)
		for i := 0; i < 40; i++ {
			set.Update(0, int64(i), 100+float64(i%7), 1, out)
			if isNull := math.IsNaN(out[0]); isNull != (i < tc.first) {
				t.Errorf("%s seed %s: trade %d: value %v, want the first value at trade %d", tc.spec, tc.seed, i, out[0], tc.first)
				break
			}
		}
	}
}

// TestIndicatorRSIExtremes: only gains give 100, only losses 0, a flat
// series 0 (TA-Lib's convention), and flat steps keep the value.
func TestIndicatorRSIExtremes(t *testing.T) {
	tests := []struct {
		name   string
		prices []float64
		want   []float64 // outputs from index n (= 3) on
	}{
		{"gains only", []float64{1, 2, 3, 4, 5, 5.5}, []float64{100, 100, 100}},
		{"losses only", []float64{5, 4, 3, 2, 1.5, 1}, []float64{0, 0, 0}},
		{"flat", []float64{7, 7, 7, 7, 7, 7}, []float64{0, 0, 0}},
		{"tiny prices", []float64{1e-9, 2e-9, 3e-9, 4e-9, 3e-9}, []float64{100, 200.0 / 3}},
		{"flat steps keep it", []float64{1, 2, 1, 2, 2, 2}, []float64{200.0 / 3, 200.0 / 3, 200.0 / 3}},
		{"flat then a loss", []float64{3, 3, 3, 3, 2}, []float64{0, 0}},
		{"flat then a gain", []float64{3, 3, 3, 3, 4}, []float64{0, 100}},
	}
	for _, tc := range tests {
		set, _ := NewIndicatorSet([]IndicatorSpec{{IndRSI, 3}}, IndicatorOptions{}, 1)
		out := make([]float64, 1)
		for i, p := range tc.prices {
			set.Update(0, 0, p, 1, out)
			if i < 3 {
				continue
			}
			if w := tc.want[i-3]; !(math.Abs(out[0]-w) <= 1e-9) {
				t.Errorf("%s: trade %d: rsi %v, want %v", tc.name, i, out[0], w)
			}
		}
	}
}

// TestIndicatorSessionVWAP walks a symbol across session boundaries.
func TestIndicatorSessionVWAP(t *testing.T) {
	const h = int64(3600e9)
	day := int64(DefaultSessionLengthNs)
	d0 := int64(1_700_000_000e9) / day * day // a UTC midnight
	tests := []struct {
		name   string
		opts   IndicatorOptions
		trades []indTrade
		want   []float64
	}{
		{"daily from UTC midnight", IndicatorOptions{}, []indTrade{
			{d0 + 10*h, 10, 1},
			{d0 + 23*h, 20, 3},        // same day: (10+60)/4
			{d0 + day - 1, 30, 0},     // last ns of the day, zero volume
			{d0 + day, 40, 2},         // midnight: a new session
			{d0 + day + 1, 50, 2},     // (80+100)/4
			{d0 + day - 5, 100, 2},    // stamped yesterday: counted today (380/6)
			{d0 + 3*day + h, 60, 0},   // two days later, no volume yet
			{d0 + 3*day + 2*h, 70, 1}, //
		}, []float64{10, 17.5, 17.5, 40, 45, 380.0 / 6, math.NaN(), 70}},
		{"sessions at 13:30 UTC", IndicatorOptions{SessionOffsetNs: 13*h + h/2}, []indTrade{
			{d0 + 12*h, 10, 1},
			{d0 + 13*h + h/2 - 1, 20, 1},
			{d0 + 13*h + h/2, 30, 1},
			{d0 + day + 13*h, 40, 1},
			{d0 + day + 14*h, 50, 1},
		}, []float64{10, 15, 30, 35, 50}},
		{"hourly sessions before the epoch", IndicatorOptions{SessionLengthNs: h}, []indTrade{
			{-h - 1, 1, 1},
			{-h, 2, 1},
			{-1, 3, 1},
			{0, 4, 1},
		}, []float64{1, 2, 2.5, 4}},
	}
	for _, tc := range tests {
		set, err := NewIndicatorSet([]IndicatorSpec{{Kind: IndVWAP}}, tc.opts, 1)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, 1)
		for i, tr := range tc.trades {
			set.Update(0, tr.ts, tr.price, tr.volume, out)
			if !indClose(out[0], tc.want[i], 1e-12) {
				t.Errorf("%s: trade %d: vwap %v, want %v", tc.name, i, out[0], tc.want[i])
			}
		}
	}
}

func TestIndicatorSessionStartExtremes(t *testing.T) {
	tests := []struct{ ts, length, off, want int64 }{
		{0, 10, 0, 0},
		{9, 10, 0, 0},
		{-1, 10, 0, -10},
		{-10, 10, 0, -10},
		{-11, 10, 3, -17},
		{2, 10, 3, -7},
		{3, 10, 3, 3},
		{math.MaxInt64, MaxSessionLengthNs, MaxSessionLengthNs - 1, math.MaxInt64}, // a session starts at the last ns
		{math.MaxInt64 - 1, MaxSessionLengthNs, MaxSessionLengthNs - 1, math.MaxInt64 - MaxSessionLengthNs},
		{math.MinInt64, 7, 0, math.MinInt64},
		{math.MinInt64, 10, 3, math.MinInt64}, // the true start is before MinInt64: clamped
		{math.MinInt64 + 5, MaxSessionLengthNs, 1, math.MinInt64 + 1},
	}
	for _, tc := range tests {
		if got := indSessionStart(tc.ts, tc.length, tc.off); got != tc.want {
			t.Errorf("indSessionStart(%d, %d, %d) = %d, want %d", tc.ts, tc.length, tc.off, got, tc.want)
		}
	}
	// A huge timestamp in a short session: the next trade one session
	// later still starts a new session, with no overflow.
	set, _ := NewIndicatorSet([]IndicatorSpec{{Kind: IndVWAP}}, IndicatorOptions{SessionLengthNs: 10}, 1)
	out := make([]float64, 1)
	set.Update(0, math.MinInt64, 1, 1, out)
	set.Update(0, math.MaxInt64-3, 2, 1, out)
	set.Update(0, math.MaxInt64, 4, 1, out)
	if out[0] != 3 {
		t.Errorf("vwap at the end of time = %v, want 3", out[0])
	}
}

// TestIndicatorRollingVWAPZeroVolume: a window whose volumes are all 0 is
// null, and the value comes back exactly when volume returns.
func TestIndicatorRollingVWAPZeroVolume(t *testing.T) {
	set, _ := NewIndicatorSet([]IndicatorSpec{{IndVWAPN, 3}}, IndicatorOptions{}, 1)
	trades := []indTrade{{0, 10, 0.1}, {0, 11, 0.2}, {0, 12, 0.3}, {0, 13, 0}, {0, 14, 0}, {0, 15, 0}, {0, 16, 0}, {0, 17, 2}, {0, 18, 0}}
	want := []float64{math.NaN(), math.NaN(), (1 + 2.2 + 3.6) / 0.6, (2.2 + 3.6) / 0.5, 12, math.NaN(), math.NaN(), 17, 17}
	out := make([]float64, 1)
	for i, tr := range trades {
		set.Update(0, tr.ts, tr.price, tr.volume, out)
		if !indClose(out[0], want[i], 1e-12) {
			t.Errorf("trade %d: vwap:3 = %v, want %v", i, out[0], want[i])
		}
	}
	// After an all-zero window the sums restart from exact zeros: 17 exactly.
	if out[0] != 17 {
		t.Errorf("vwap:3 after a zero window = %v, want exactly 17", out[0])
	}
}

// TestIndicatorSlotIsolation: interleaving symbols in one set gives exactly
// (bit for bit) what each symbol gives alone, and ResetSlot makes a slot new.
func TestIndicatorSlotIsolation(t *testing.T) {
	specs, _ := ParseIndicators("sma:5,sma:20,ema:12,rsi:14,vwap,vwap:14,vwap:1")
	opts := IndicatorOptions{SessionLengthNs: 60e9}
	const slots = 5
	rng := rand.New(rand.NewPCG(3, 4))
	hists := make([][]indTrade, slots)
	for i := range hists {
		hists[i] = indRandomTrades(rng, 400+i*37, 60e9)
	}
	// Alone.
	alone := make([][][]float64, slots)
	for s, hist := range hists {
		set, _ := NewIndicatorSet(specs, opts, 1)
		for _, tr := range hist {
			out := make([]float64, len(specs))
			set.Update(0, tr.ts, tr.price, tr.volume, out)
			alone[s] = append(alone[s], out)
		}
	}
	// Interleaved at random, one set.
	set, _ := NewIndicatorSet(specs, opts, slots)
	next := make([]int, slots)
	out := make([]float64, len(specs))
	for left := true; left; {
		left = false
		s := rng.IntN(slots)
		for k := 0; k < slots; k++ {
			if q := (s + k) % slots; next[q] < len(hists[q]) {
				s, left = q, true
				break
			}
		}
		if !left {
			break
		}
		tr := hists[s][next[s]]
		set.Update(s, tr.ts, tr.price, tr.volume, out)
		for i := range specs {
			if w := alone[s][next[s]][i]; math.Float64bits(out[i]) != math.Float64bits(w) && !(math.IsNaN(w) && math.IsNaN(out[i])) {
				t.Fatalf("slot %d trade %d %s: interleaved %v, alone %v", s, next[s], specs[i], out[i], w)
			}
		}
		next[s]++
	}
	// Reset slot 2 and replay its history: identical to a fresh run.
	set.ResetSlot(2)
	for j, tr := range hists[2] {
		set.Update(2, tr.ts, tr.price, tr.volume, out)
		if got, want := fmt.Sprint(out), fmt.Sprint(alone[2][j]); got != want {
			t.Fatalf("after ResetSlot, trade %d: %s, want %s", j, got, want)
		}
	}
}

// TestIndicatorBadTradeIgnored: a trade that validation should have caught
// gives nulls and leaves the state as it was.
func TestIndicatorBadTradeIgnored(t *testing.T) {
	specs, _ := ParseIndicators("sma:2,ema:2,rsi:2,vwap,vwap:2")
	a, _ := NewIndicatorSet(specs, IndicatorOptions{}, 1)
	b, _ := NewIndicatorSet(specs, IndicatorOptions{}, 1)
	outA := make([]float64, len(specs))
	outB := make([]float64, len(specs))
	good := []indTrade{{1, 10, 1}, {2, 11, 2}, {3, 12, 3}, {4, 11, 1}}
	bad := []indTrade{{5, math.NaN(), 1}, {5, math.Inf(1), 1}, {5, 10, -1}, {5, 10, math.NaN()}, {5, 10, math.Inf(1)}, {5, 1e300, 1e300}}
	for i, tr := range good {
		a.Update(0, tr.ts, tr.price, tr.volume, outA)
		b.Update(0, tr.ts, tr.price, tr.volume, outB)
		if i == 1 {
			for _, x := range bad {
				b.Update(0, x.ts, x.price, x.volume, outB)
				for j, v := range outB {
					if !math.IsNaN(v) {
						t.Errorf("bad trade %+v: output %s = %v, want null", x, specs[j], v)
					}
				}
			}
		}
	}
	if fmt.Sprint(outA) != fmt.Sprint(outB) {
		t.Errorf("after bad trades: %v, without them: %v", outB, outA)
	}
}

// indDriftSeries is hostile to running sums: long stretches of huge values
// (1e9) alternate with long stretches of small ones (1e-3), so that once the
// huge ones leave the window, the rounding residue they left in an
// uncompensated sum dwarfs the small values.
func indDriftSeries(rng *rand.Rand, n int) []indTrade {
	out := make([]indTrade, n)
	for i := range out {
		scale := 1e-3
		if (i/500)%2 == 0 {
			scale = 1e9
		}
		out[i] = indTrade{int64(i), scale * (1 + rng.Float64()), scale * rng.Float64()}
	}
	return out
}

// TestIndicatorRollingDrift feeds a long hostile series and checks SMA(n)
// and vwap:n against a naive recompute of the window at every trade: the
// error must stay at the level of a fresh sum, however long the series.
// It also shows that the check has teeth: a plain running sum fails it.
// Whenever the ring wraps (every n trades) the value must be exactly
// (bit for bit) a fresh compensated sum of the window: that is what keeps
// the error from carrying over.
func TestIndicatorRollingDrift(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 200_000
	}
	if os.Getenv("QSTREAM_STRESS") != "" {
		n = 20_000_000
	}
	const period = 50
	const rel = 1e-12 // a fresh 50-term sum is good to ~50·2⁻⁵³ ≈ 6e-15
	rng := rand.New(rand.NewPCG(5, 6))
	series := indDriftSeries(rng, n)
	set, _ := NewIndicatorSet([]IndicatorSpec{{IndSMA, period}, {IndVWAPN, period}}, IndicatorOptions{}, 1)
	out := make([]float64, 2)
	var plain float64 // an uncompensated running sum, to prove the test can fail
	var worstSMA, worstVWAP, worstPlain float64
	for i, tr := range series {
		set.Update(0, tr.ts, tr.price, tr.volume, out)
		plain += tr.price
		if i >= period {
			plain -= series[i-period].price
		}
		if i < period-1 {
			continue
		}
		var sum, pv, v float64
		for _, w := range series[i-period+1 : i+1] {
			sum += w.price
			pv += w.price * w.volume
			v += w.volume
		}
		sma, vwap := sum/period, pv/v
		if (i+1)%period == 0 {
			var fs, fc, fpv, fpvc, fv, fvc float64
			for _, w := range series[i-period+1 : i+1] {
				fs, fc = indTwoSum(fs, fc, w.price)
				fpv, fpvc = indTwoSum(fpv, fpvc, w.price*w.volume)
				fv, fvc = indTwoSum(fv, fvc, w.volume)
			}
			if out[0] != (fs+fc)/period || out[1] != (fpv+fpvc)/(fv+fvc) {
				t.Fatalf("trade %d: the ring wrapped but sma %v, vwap %v are not the fresh sums' %v, %v",
					i, out[0], out[1], (fs+fc)/period, (fpv+fpvc)/(fv+fvc))
			}
		}
		worstSMA = max(worstSMA, math.Abs(out[0]-sma)/sma)
		worstVWAP = max(worstVWAP, math.Abs(out[1]-vwap)/vwap)
		worstPlain = max(worstPlain, math.Abs(plain/period-sma)/sma)
		if worstSMA > rel || worstVWAP > rel {
			t.Fatalf("trade %d: sma %v (naive %v), vwap %v (naive %v): relative error over %g", i, out[0], sma, out[1], vwap, rel)
		}
	}
	t.Logf("%d trades: worst relative error sma:%d %.2g, vwap:%d %.2g; an uncompensated running sum %.2g", n, period, worstSMA, period, worstVWAP, worstPlain)
	if worstPlain <= rel {
		t.Errorf("the hostile series did not hurt a plain running sum (%.2g): the test proves nothing", worstPlain)
	}
}

// TestIndicatorRealTrades runs the session and rolling VWAP over 9,999 real
// Binance BTCUSDT trades with hourly sessions (the data spans 00:00–02:05
// UTC, so two session boundaries) against the oracle.
func TestIndicatorRealTrades(t *testing.T) {
	raw, err := testvectors.Read("trades/binance_futures_btcusdt_trades.csv")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	var hist []indTrade
	for line := 0; sc.Scan(); line++ {
		f := strings.Split(sc.Text(), ",")
		if line == 0 {
			if len(f) < 8 || f[2] != "timestamp" || f[6] != "price" || f[7] != "amount" {
				t.Fatalf("unexpected header %q", sc.Text())
			}
			continue
		}
		us, err1 := strconv.ParseInt(f[2], 10, 64)
		p, err2 := strconv.ParseFloat(f[6], 64)
		v, err3 := strconv.ParseFloat(f[7], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("line %d: %q", line+1, sc.Text())
		}
		hist = append(hist, indTrade{us * 1000, p, v})
	}
	if len(hist) != 9999 {
		t.Fatalf("read %d trades, SOURCES.md says 9,999", len(hist))
	}
	specs := []IndicatorSpec{{Kind: IndVWAP}, {IndVWAPN, 100}, {IndSMA, 20}, {IndEMA, 12}, {IndRSI, 14}}
	opts := IndicatorOptions{SessionLengthNs: 3600e9}
	set, _ := NewIndicatorSet(specs, opts, 1)
	want := make([][]float64, len(specs))
	for i, sp := range specs {
		want[i] = indNaive(sp, opts, hist)
	}
	out := make([]float64, len(specs))
	resets := 0
	for j, tr := range hist {
		set.Update(0, tr.ts, tr.price, tr.volume, out)
		if j > 0 && tr.ts/3600e9 != hist[j-1].ts/3600e9 {
			resets++
			if out[0] != tr.price {
				t.Errorf("trade %d opens a session: vwap %v, want its price %v", j, out[0], tr.price)
			}
		}
		for i, sp := range specs {
			if !indClose(out[i], want[i][j], 1e-10) {
				t.Fatalf("trade %d %s: %v, oracle %v", j, sp, out[i], want[i][j])
			}
		}
	}
	if resets != 2 {
		t.Errorf("%d session boundaries crossed, want 2", resets)
	}
}

func TestIndicatorUpdateAllocs(t *testing.T) {
	specs, _ := ParseIndicators(DefaultIndicators + ",vwap:14")
	const slots = 8
	set, _ := NewIndicatorSet(specs, IndicatorOptions{}, slots)
	trades := indRandomTrades(rand.New(rand.NewPCG(7, 8)), 1024, 3600e9)
	out := make([]float64, len(specs))
	i := 0
	allocs := testing.AllocsPerRun(5000, func() {
		tr := trades[i%len(trades)]
		set.Update(i%slots, tr.ts, tr.price, tr.volume, out)
		i++
	})
	if allocs > 0 {
		t.Fatalf("Update allocates %v times per trade, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() { set.ResetSlot(i % slots); i++ })
	if allocs > 0 {
		t.Fatalf("ResetSlot allocates %v times, want 0", allocs)
	}
}

// ---- Benchmarks ----

const indBenchSymbols = 64

func indBenchTrades() []indTrade {
	return indRandomTrades(rand.New(rand.NewPCG(9, 10)), 4096, 3600e9)
}

// BenchmarkIndicatorsDefault: the default indicators for one trade,
// rotating over 64 symbols. Budget (DESIGN.md): <= 100 ns/op, 0 allocs.
func BenchmarkIndicatorsDefault(b *testing.B) {
	specs, _ := ParseIndicators(DefaultIndicators)
	set, _ := NewIndicatorSet(specs, IndicatorOptions{}, indBenchSymbols)
	trades := indBenchTrades()
	out := make([]float64, len(specs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tr := &trades[i&(len(trades)-1)]
		set.Update(i&(indBenchSymbols-1), tr.ts, tr.price, tr.volume, out)
	}
}

// indNaiveHistory is how many trades per symbol the naive baseline keeps and
// recomputes over: enough for the EMA(12) and RSI(14) recurrences to have
// settled, which any recompute-from-history design has to pay for.
const indNaiveHistory = 128

// BenchmarkIndicatorsNaive is the baseline for BenchmarkIndicatorsDefault:
// the same indicators recomputed for every trade from a per-symbol slice of
// the last indNaiveHistory trades (preallocated, so it does not allocate
// either). Its session VWAP only sees the kept history.
func BenchmarkIndicatorsNaive(b *testing.B) {
	trades := indBenchTrades()
	hist := make([][]indTrade, indBenchSymbols)
	for i := range hist {
		hist[i] = make([]indTrade, 0, 2*indNaiveHistory)
	}
	var out [5]float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tr := trades[i&(len(trades)-1)]
		s := i & (indBenchSymbols - 1)
		h := hist[s]
		if len(h) == cap(h) {
			h = h[:copy(h, h[len(h)-indNaiveHistory+1:])]
		}
		h = append(h, tr)
		hist[s] = h
		if len(h) > indNaiveHistory {
			h = h[len(h)-indNaiveHistory:]
		}
		out = indNaiveDefault(h)
	}
	_ = out
}

// indNaiveDefault computes sma:5, sma:20, ema:12, rsi:14 and the VWAP of
// h from scratch; the last trade of h is the current one.
func indNaiveDefault(h []indTrade) (out [5]float64) {
	for i := range out {
		out[i] = math.NaN()
	}
	n := len(h)
	for j, p := range []int{5, 20} {
		if n >= p {
			s := 0.0
			for _, t := range h[n-p:] {
				s += t.price
			}
			out[j] = s / float64(p)
		}
	}
	if n >= 12 {
		ema := 0.0
		for _, t := range h[:12] {
			ema += t.price
		}
		ema /= 12
		for _, t := range h[12:] {
			ema += (t.price - ema) * (2.0 / 13)
		}
		out[2] = ema
	}
	if n > 14 {
		var g, l float64
		for j := 1; j < n; j++ {
			d := h[j].price - h[j-1].price
			gain, loss := math.Max(d, 0), math.Max(-d, 0)
			if j <= 14 {
				g, l = g+gain/14, l+loss/14
			} else {
				g, l = (g*13+gain)/14, (l*13+loss)/14
			}
		}
		if g+l > 0 {
			out[3] = 100 * g / (g + l)
		} else {
			out[3] = 0
		}
	}
	var pv, v float64
	for _, t := range h {
		pv += t.price * t.volume
		v += t.volume
	}
	if v > 0 {
		out[4] = pv / v
	}
	return out
}
