package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// movTrade is one trade of the shared Binance capture.
type movTrade struct {
	ts    int64
	price float64
	text  string // the price as written
}

// movTrades reads the real trades from ../shared/testdata (never copied
// into the repository) and writes them, converted to generic JSON ticks,
// to a temporary input file: the capture's CSV columns are not --format
// csv's.
func movTrades(t *testing.T) ([]movTrade, string) {
	t.Helper()
	f, err := os.Open(sharedTestdata(t, "trades/binance_futures_btcusdt_trades.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var trades []movTrade
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Scan() // exchange,symbol,timestamp,local_timestamp,id,side,price,amount
	for sc.Scan() {
		c := strings.Split(sc.Text(), ",")
		us, err1 := strconv.ParseInt(c[2], 10, 64)
		px, err2 := strconv.ParseFloat(c[6], 64)
		if len(c) != 8 || err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		trades = append(trades, movTrade{us * 1000, px, c[6]})
		fmt.Fprintf(&b, `{"type":"trade","symbol":"%s","ts":%d,"price":%s,"volume":%s}`+"\n", c[1], us*1000, c[6], c[7])
	}
	if len(trades) < 9999 {
		t.Fatalf("%d trades", len(trades))
	}
	path := filepath.Join(t.TempDir(), "trades.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return trades, path
}

type movLine struct {
	Movement  string  `json:"movement"`
	Symbol    string  `json:"symbol"`
	Ts        int64   `json:"ts"`
	Price     float64 `json:"price"`
	RefPrice  float64 `json:"reference_price"`
	RefTs     int64   `json:"reference_ts"`
	ChangePct float64 `json:"change_pct"`
	Direction string  `json:"direction"`
}

type movSpec struct {
	name      string
	horizon   int64
	threshold float64
}

// movOracleLines recomputes the movements by brute force: for every trade,
// scan all earlier trades for the latest at or before t − horizon, then the
// documented hysteresis (fire at |m| ≥ θ, re-arm below θ/2 in the fired
// direction). The capture is in event-time order (no late trades).
func movOracleLines(trades []movTrade, specs []movSpec) []movLine {
	var out []movLine
	dir := make([]int, len(specs))
	for i, tr := range trades {
		for k, s := range specs {
			ref := -1
			for j := 0; j < i; j++ {
				if trades[j].ts <= tr.ts-s.horizon {
					ref = j
				}
			}
			if ref < 0 {
				continue
			}
			m := (tr.price - trades[ref].price) / trades[ref].price
			if dir[k] > 0 && m < s.threshold/2 || dir[k] < 0 && m > -s.threshold/2 {
				dir[k] = 0
			}
			if dir[k] != 0 || math.Abs(m) < s.threshold {
				continue
			}
			d := "up"
			dir[k] = 1
			if m < 0 {
				d, dir[k] = "down", -1
			}
			out = append(out, movLine{s.name, "BTCUSDT", tr.ts, tr.price, trades[ref].price, trades[ref].ts, m * 100, d})
		}
	}
	return out
}

// movMaxMove is the largest |move| of any trade against its reference.
func movMaxMove(trades []movTrade, horizon int64) float64 {
	best, ref := 0.0, -1
	for i, tr := range trades {
		for ref+1 < i && trades[ref+1].ts <= tr.ts-horizon {
			ref++
		}
		if ref >= 0 && trades[ref].ts <= tr.ts-horizon {
			best = max(best, math.Abs((tr.price-trades[ref].price)/trades[ref].price))
		}
	}
	return best
}

func movReplay(t *testing.T, input string, args ...string) []movLine {
	t.Helper()
	out, stderr, rc := qstream(t, append([]string{"replay", "--input", input, "--emit", "movements"}, args...)...)
	if rc != 0 {
		t.Fatalf("%v: exit %d: %s", args, rc, stderr)
	}
	var lines []movLine
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		var m movLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestReplayMovements: over the real trades, --emit movements equals the
// brute-force oracle line for line, byte-identical run to run; a threshold
// just above the largest move gives nothing, just below it one event;
// a sustained move gives one event.
func TestReplayMovements(t *testing.T) {
	trades, input := movTrades(t)
	specs := []movSpec{
		{"30s:0.05%", 30e9, 0.0005},
		{"1m:0.1%", 60e9, 0.001},
		{"5m:0.2%", 300e9, 0.002},
	}
	arg := "30s:0.05%,1m:0.1%,5m:0.2%"
	got := movReplay(t, input, "--movements", arg)
	want := movOracleLines(trades, specs)
	if len(got) != len(want) {
		t.Fatalf("%d movement lines, the oracle has %d", len(got), len(want))
	}
	per := map[string]int{}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("line %d: %+v, oracle %+v", i, got[i], want[i])
		}
		per[got[i].Movement]++
	}
	for _, s := range specs {
		if per[s.name] < 2 {
			t.Errorf("%s: %d events, the comparison proves little", s.name, per[s.name])
		}
	}
	one, _, _ := qstream(t, "replay", "--input", input, "--emit", "movements", "--movements", arg)
	two, _, _ := qstream(t, "replay", "--input", input, "--emit", "movements", "--movements", arg)
	if one != two || one == "" {
		t.Fatal("two replays of the same input differ")
	}
	all, _, rc := qstream(t, "replay", "--input", input, "--emit", "all", "--movements", arg, "--indicators", "sma:5")
	if rc != 0 || strings.Count(all, `{"movement":`) != len(want) || !strings.Contains(all, `"sma_5":`) {
		t.Fatalf("--emit all: exit %d, %d movement lines, want %d", rc, strings.Count(all, `{"movement":`), len(want))
	}

	// The threshold edge: the largest 1m move, as a percentage, ±1e-9
	// relative.
	mx := movMaxMove(trades, 60e9) * 100
	above := fmt.Sprintf("1m:%s%%", strconv.FormatFloat(mx*(1+1e-9), 'g', -1, 64))
	below := fmt.Sprintf("1m:%s%%", strconv.FormatFloat(mx*(1-1e-9), 'g', -1, 64))
	if n := len(movReplay(t, input, "--movements", above)); n != 0 {
		t.Fatalf("--movements %s (just above the largest move): %d events", above, n)
	}
	edge := movReplay(t, input, "--movements", below)
	if len(edge) != 1 || math.Abs(math.Abs(edge[0].ChangePct)-mx) > 1e-9*mx {
		t.Fatalf("--movements %s (just below the largest move): %+v, want one event of %v %%", below, edge, mx)
	}

	// Hysteresis on the real data: trades at or beyond the threshold far
	// outnumber events, and runs of them give one event each.
	s := specs[1]
	beyond := 0
	for i, tr := range trades {
		ref := -1
		for j := 0; j < i; j++ {
			if trades[j].ts <= tr.ts-s.horizon {
				ref = j
			}
		}
		if ref >= 0 && math.Abs(tr.price-trades[ref].price)/trades[ref].price >= s.threshold {
			beyond++
		}
	}
	if beyond < 3*per[s.name] {
		t.Fatalf("%d trades beyond %s but %d events: hysteresis proves little", beyond, s.name, per[s.name])
	}
}

// A sustained move is one event; it fires again only after falling back
// below half the threshold.
func TestReplayMovementsSustained(t *testing.T) {
	var b strings.Builder
	line := func(sec int, px float64) {
		fmt.Fprintf(&b, `{"type":"trade","symbol":"X","ts":%d,"price":%v,"volume":1}`+"\n", int64(sec)*int64(time.Second), px)
	}
	line(0, 100)
	for i := 0; i < 20; i++ {
		line(60+i, 102) // +2 % for 20 trades: one event
	}
	line(80, 100.9) // +0.9 %: not re-armed
	line(81, 102)
	line(82, 100.4) // +0.4 %: re-armed
	line(83, 101)   // +1 %: fires
	line(84, 100.99)
	path := filepath.Join(t.TempDir(), "sustained.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := movReplay(t, path, "--movements", "1m:1%")
	if len(got) != 2 || got[0].Ts != 60e9 || got[0].ChangePct != 2 || got[0].Direction != "up" || got[1].Ts != 83e9 || got[1].ChangePct != 1 {
		t.Fatalf("events %+v", got)
	}
	for _, args := range [][]string{
		{"--emit", "movements"},                          // no --movements
		{"--emit", "movements", "--movements", "1m"},     // no threshold
		{"--emit", "movements", "--movements", "1m:-1%"}, // negative
		{"--emit", "movements", "--movements", "x:1%"},   // bad horizon
		{"--emit", "movements", "--movements", "1m:1%,1m:1%"},
	} {
		if _, _, rc := qstream(t, append([]string{"replay", "--input", path}, args...)...); rc != 2 {
			t.Errorf("%v: exit %d, want 2", args, rc)
		}
	}
}
