package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qstream/internal/testvectors"
)

// TestReplayConformance runs every SMA, EMA and RSI reference vector of
// ../shared/testdata/indicators through `qstream replay` end to end: the
// TA-Lib-convention file with --ema-seed sma, the Tulip file with
// --ema-seed first. Each vector becomes a CSV of trades.
func TestReplayConformance(t *testing.T) {
	for _, src := range []struct {
		file  string
		parse func([]byte) ([]testvectors.Case, map[string]int, error)
		seed  string
	}{
		{"indicators/talib_netcore_atoz.json", testvectors.TALib, "sma"},
		{"indicators/tulip_atoz.txt", testvectors.Tulip, "first"},
	} {
		raw, err := testvectors.Read(src.file)
		if err != nil {
			t.Fatal(err)
		}
		cases, present, err := src.parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		checked := map[string]int{}
		for _, c := range cases {
			replayCase(t, c, src.seed)
			checked[c.Name]++
		}
		if err := testvectors.CheckCounts(src.file, present, checked); err != nil {
			t.Error(err)
		}
	}
}

func replayCase(t *testing.T, c testvectors.Case, seed string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("ts,symbol,price,volume\n")
	for i, x := range c.Input {
		fmt.Fprintf(&b, "%d,REF,%v,1\n", 1_700_000_000_000_000_000+int64(i)*1_000_000_000, x)
	}
	in := filepath.Join(t.TempDir(), "ref.csv")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s_%d", c.Name, c.Period)
	out, stderr, rc := qstream(t, "replay", "--input", in, "--indicators", fmt.Sprintf("%s:%d", c.Name, c.Period), "--ema-seed", seed, "--emit", "indicators")
	if rc != 0 {
		t.Fatalf("%s %s: exit %d: %s", c.Source, key, rc, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(c.Input) {
		t.Fatalf("%s %s: %d output lines for %d trades", c.Source, key, len(lines), len(c.Input))
	}
	want, err := c.Wanted()
	if err != nil {
		t.Fatal(err)
	}
	tol := c.Tolerance()
	for i, line := range lines {
		var obj map[string]*float64
		if err := json.Unmarshal([]byte(strings.Replace(line, `"symbol":"REF",`, "", 1)), &obj); err != nil {
			t.Fatalf("%s %s: line %d: %v: %s", c.Source, key, i+1, err, line)
		}
		got, ok := obj[key]
		if !ok {
			t.Fatalf("%s %s: line %d lacks %q: %s", c.Source, key, i+1, key, line)
		}
		if i < c.First {
			if got != nil {
				t.Errorf("%s %s seed=%s: trade %d: got %v, want null", c.Source, key, seed, i+1, *got)
			}
			continue
		}
		if w := want[i-c.First]; got == nil || !(math.Abs(*got-w) <= tol) {
			t.Errorf("%s %s seed=%s: trade %d: got %v, want %s (±%g)", c.Source, key, seed, i+1, got, c.Want[i-c.First], tol)
		}
	}
}
