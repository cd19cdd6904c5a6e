package ops

import (
	"qstream/internal/testvectors"

	"bufio"
	"bytes"
	"cmp"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

// winSharedTestdata is ../shared/testdata seen from the repository root,
// i.e. two levels up from this package directory.
var winSharedTestdata = testvectors.Dir()

// winLoadTrades reads the Tardis CSV of real Binance futures trades
// (exchange,symbol,timestamp,local_timestamp,id,side,price,amount; times in
// microseconds) into trades of symbol 1.
func winLoadTrades(t testing.TB) []codec.Event {
	t.Helper()
	path := filepath.Join(winSharedTestdata, "trades", "binance_futures_btcusdt_trades.csv")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("real trade data missing: %v (the tests read ../shared/testdata beside the repository; see shared/testdata/SOURCES.md)", err)
	}
	var evs []codec.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			if !strings.HasPrefix(sc.Text(), "exchange,symbol,timestamp,") {
				t.Fatalf("%s: unexpected header %q", path, sc.Text())
			}
			continue
		}
		f := strings.Split(sc.Text(), ",")
		if len(f) != 8 {
			t.Fatalf("%s:%d: %d fields", path, line+1, len(f))
		}
		us, err1 := strconv.ParseInt(f[2], 10, 64)
		price, err2 := strconv.ParseFloat(f[6], 64)
		amount, err3 := strconv.ParseFloat(f[7], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("%s:%d: bad row %q", path, line+1, sc.Text())
		}
		evs = append(evs, codec.Event{TsNs: us * 1000, Seq: uint64(line), Price: price, Volume: amount,
			Symbol: 1, Kind: codec.KindTrade})
	}
	if len(evs) != 9999 {
		t.Fatalf("%s: %d trades, want 9999", path, len(evs))
	}
	return evs
}

type winBar struct {
	start                  int64
	open, high, low, close float64
	volume, vwap           float64
	n                      int64
}

// winDirectBars computes 1-minute bars straight from the trades: open and
// close are the first and last trade by (time, arrival).
func winDirectBars(evs []codec.Event) []winBar {
	sorted := slices.Clone(evs)
	slices.SortStableFunc(sorted, func(a, b codec.Event) int { return cmp.Compare(a.TsNs, b.TsNs) })
	minute := int64(time.Minute)
	var bars []winBar
	var pv float64
	for _, e := range sorted {
		st := e.TsNs / minute * minute
		if len(bars) == 0 || bars[len(bars)-1].start != st {
			if len(bars) > 0 {
				b := &bars[len(bars)-1]
				b.vwap = pv / b.volume
			}
			bars = append(bars, winBar{start: st, open: e.Price, high: e.Price, low: e.Price})
			pv = 0
		}
		b := &bars[len(bars)-1]
		b.high, b.low, b.close = max(b.high, e.Price), min(b.low, e.Price), e.Price
		b.volume += e.Volume
		pv += e.Price * e.Volume
		b.n++
	}
	b := &bars[len(bars)-1]
	b.vwap = pv / b.volume
	return bars
}

// TestWindowRealTrades: 1-minute OHLCV bars and VWAP over 9,999 real
// Binance futures trades equal a direct computation, in file order and with
// the trades locally shuffled (bounded disorder within the out-of-orderness).
func TestWindowRealTrades(t *testing.T) {
	trades := winLoadTrades(t)
	shuffled := slices.Clone(trades)
	rng := rand.New(rand.NewPCG(42, 42))
	for i := 0; i+20 <= len(shuffled); i += 20 { // shuffle blocks of 20 trades (a few seconds)
		rng.Shuffle(20, func(a, b int) { shuffled[i+a], shuffled[i+b] = shuffled[i+b], shuffled[i+a] })
	}
	for _, c := range []struct {
		name  string
		evs   []codec.Event
		oooNs int64
	}{{"in order", trades, 0}, {"shuffled", shuffled, int64(5 * time.Minute)}} {
		want := winDirectBars(c.evs)
		if len(want) != 126 {
			t.Fatalf("%s: %d minutes with trades, want 126", c.name, len(want))
		}
		ohlcv, _ := NewWindowOperator(0, winMustSpec(t, "tumbling:1m:ohlcv"), WindowOptions{}, 1)
		vwap, _ := NewWindowOperator(1, winMustSpec(t, "tumbling:1m:vwap"), WindowOptions{}, 1)
		bars, reasons := winRun(t, ohlcv, c.evs, c.oooNs)
		vw, _ := winRun(t, vwap, c.evs, c.oooNs)
		for i, r := range reasons {
			if r != codec.ReasonNone {
				t.Fatalf("%s: trade %d refused: %v", c.name, i, r)
			}
		}
		if len(bars) != len(want) || len(vw) != len(want) {
			t.Fatalf("%s: %d bars and %d vwaps, want %d", c.name, len(bars), len(vw), len(want))
		}
		for i, w := range want {
			b, v := bars[i], vw[i]
			if b.StartNs != w.start || b.EndNs != w.start+int64(time.Minute) || b.Count != w.n || b.NValues != 5 ||
				b.Timing != TimingOnTime || v.StartNs != w.start || v.Count != w.n {
				t.Fatalf("%s: bar %d: [%d,%d) n=%d, want [%d, +1m) n=%d", c.name, i, b.StartNs, b.EndNs, b.Count, w.start, w.n)
			}
			got := b.Values[:5]
			if got[0] != w.open || got[1] != w.high || got[2] != w.low || got[3] != w.close ||
				math.Abs(got[4]-w.volume) > 1e-12*w.volume || math.Abs(v.Value-w.vwap) > 1e-12*w.vwap {
				t.Fatalf("%s: bar %d at %d: ohlcv %v vwap %v, want %v %v %v %v %v vwap %v", c.name, i, w.start,
					got, v.Value, w.open, w.high, w.low, w.close, w.volume, w.vwap)
			}
		}
	}
}
