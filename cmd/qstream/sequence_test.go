package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seqOracleTrade is one trade of --emit indicators, the oracle's input.
type seqOracleTrade struct {
	sym                      string
	ts                       int64
	price, sma5, rsi14, vwap float64
}

func seqNum(v any) float64 {
	if v == nil {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(string(v.(json.Number)), 64)
	if err != nil {
		panic(err)
	}
	return f
}

func seqFmt(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// TestReplayPatternsSequence: sequence patterns over the real IEX capture
// are byte-identical run to run, give the same set of lines with 2 shards,
// and equal a brute-force oracle over the capture's trades (their
// indicators from --emit indicators): a followed-by pattern with indicator
// conditions (relaxed, skip_past_last_event) and an absence (no_skip).
func TestReplayPatternsSequence(t *testing.T) {
	input := sharedTestdata(t, "pcap/iex_tops16_sample.pcap.gz")
	const withinFB, withinAbs = 30 * time.Second, 2 * time.Second
	pats := patternFile(t, `[
 {"id":"dip","type":"sequence","within":"30s","max_partial":65536,"steps":[
   {"name":"dip","where":["price < vwap","rsi_14 < 45"]},{"name":"back","where":["price > vwap"]}]},
 {"id":"stall","type":"sequence","within":"2s","skip":"no_skip","max_partial":65536,"steps":[
   {"name":"up","where":["price > sma_5"]},{"name":"down","absent":true,"where":["price < sma_5"]}]}]`)
	run := func(args ...string) string {
		t.Helper()
		out, stderr, rc := qstream(t, append([]string{"replay", "--input", input}, args...)...)
		if rc != 0 {
			t.Fatalf("%v: exit %d: %s", args, rc, stderr)
		}
		return out
	}
	got := run("--patterns", pats, "--emit", "patterns")
	if again := run("--patterns", pats, "--emit", "patterns"); again != got {
		t.Fatal("two replays of the same input differ")
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	two := strings.Split(strings.TrimSuffix(run("--patterns", pats, "--emit", "patterns", "--shards", "2"), "\n"), "\n")
	if !slices.Equal(slices.Sorted(slices.Values(lines)), slices.Sorted(slices.Values(two))) {
		t.Fatalf("--shards 2 gives another set of lines (%d vs %d)", len(two), len(lines))
	}

	// The oracle's input: every trade with its indicators.
	var trades []seqOracleTrade
	lastTs := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(run("--emit", "indicators")), "\n") {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		tr := seqOracleTrade{sym: m["symbol"].(string), price: seqNum(m["price"]), sma5: seqNum(m["sma_5"]), rsi14: seqNum(m["rsi_14"]), vwap: seqNum(m["vwap"])}
		tr.ts, _ = strconv.ParseInt(string(m["ts"].(json.Number)), 10, 64)
		if tr.ts < lastTs[tr.sym] {
			t.Fatalf("%s goes back in event time: the oracle assumes it does not", tr.sym)
		}
		lastTs[tr.sym] = tr.ts
		trades = append(trades, tr)
	}
	bySym := map[string][]seqOracleTrade{}
	for _, tr := range trades {
		bySym[tr.sym] = append(bySym[tr.sym], tr)
	}
	var want []string
	for sym, ts := range bySym {
		// dip: at every trade j that is "back", the oldest "dip" i after the
		// last match's end, within 30 s, matches; j then ends the match.
		cut := -1
		for j, b := range ts {
			if !(b.price > b.vwap) {
				continue
			}
			for i := cut + 1; i < j; i++ {
				a := ts[i]
				if a.price < a.vwap && a.rsi14 < 45 && b.ts-a.ts <= int64(withinFB) {
					want = append(want, fmt.Sprintf("dip|%s|%d|%d|%s|%d|%s", sym, b.ts, a.ts, seqFmt(a.price), b.ts, seqFmt(b.price)))
					cut = j
					break
				}
			}
		}
		// stall: every "up" without a "down" in the 2 s after it.
		for i, a := range ts {
			if !(a.price > a.sma5) {
				continue
			}
			d := a.ts + int64(withinAbs)
			cancelled := false
			for _, b := range ts[i+1:] {
				if b.ts > d {
					break
				}
				if b.price < b.sma5 {
					cancelled = true
					break
				}
			}
			if !cancelled {
				want = append(want, fmt.Sprintf("stall|%s|%d|%d|%s|%d", sym, d, a.ts, seqFmt(a.price), d))
			}
		}
	}
	var have []string
	perSym := map[string]int64{}
	count := map[string]int{}
	for _, l := range lines {
		dec := json.NewDecoder(bytes.NewReader([]byte(l)))
		dec.UseNumber()
		var m struct {
			Pattern    string         `json:"pattern"`
			Type       string         `json:"type"`
			Symbol     string         `json:"symbol"`
			Ts         int64          `json:"ts"`
			Confidence float64        `json:"confidence"`
			Details    map[string]any `json:"details"`
		}
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if m.Type != "sequence" || m.Confidence < 0.5 || m.Confidence > 1 {
			t.Fatalf("line %s", l)
		}
		if m.Ts < perSym[m.Symbol] {
			t.Fatalf("%s: matches of %s go back in event time", l, m.Symbol)
		}
		perSym[m.Symbol] = m.Ts
		count[m.Pattern]++
		d := m.Details
		switch m.Pattern {
		case "dip":
			have = append(have, fmt.Sprintf("dip|%s|%d|%s|%s|%s|%s", m.Symbol, m.Ts, d["dip_ts"], seqFmt(seqNum(d["dip_price"])), d["back_ts"], seqFmt(seqNum(d["back_price"]))))
		case "stall":
			if m.Confidence != 1 {
				t.Fatalf("absence confidence %v", m.Confidence)
			}
			have = append(have, fmt.Sprintf("stall|%s|%d|%s|%s|%s", m.Symbol, m.Ts, d["up_ts"], seqFmt(seqNum(d["up_price"])), d["deadline"]))
		}
	}
	slices.Sort(have)
	slices.Sort(want)
	if count["dip"] < 5 || count["stall"] < 5 {
		t.Fatalf("too few matches to show anything: %v", count)
	}
	if !slices.Equal(have, want) {
		for i := 0; i < max(len(have), len(want)); i++ {
			var h, w string
			if i < len(have) {
				h = have[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if h != w {
				t.Fatalf("%d matches, the oracle %d; first difference at %d:\n have %s\n want %s", len(have), len(want), i, h, w)
			}
		}
	}
	t.Logf("%d matches equal to the oracle's (%v) over %d trades of %d symbols", len(have), count, len(trades), len(bySym))
}
