package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayPatternsYAML: a YAML pattern file gives the same matches as its
// JSON twin; a broken one is a usage error naming the file and line; a
// sequence step on movements matches over the real trades.
func TestReplayPatternsYAML(t *testing.T) {
	input := sharedTestdata(t, "pcap/iex_tops16_sample.pcap.gz")
	jsonPats := patternFile(t, "")
	yamlPats := filepath.Join(t.TempDir(), "patterns.yaml")
	yml := `- {id: up, type: price_breakout, threshold: 0.001, timeframe: 1m}
- id: dn
  type: price_breakout
  direction: down
  threshold: 0.001
  timeframe: 1m
- {id: vol, type: volume_spike, multiplier: 5, baseline: 30s}
- {id: fb_vol, type: volume_spike, multiplier: 2, baseline: 30s, symbols: [FB]}
- {id: vwap, type: technical_signal, signal: vwap_cross}
- id: ema
  type: technical_signal
  signal: ema_cross
  fast: 3
  slow: 10
`
	if err := os.WriteFile(yamlPats, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(pats string) string {
		t.Helper()
		out, stderr, rc := qstream(t, "replay", "--input", input, "--patterns", pats, "--emit", "patterns")
		if rc != 0 {
			t.Fatalf("%s: exit %d: %s", pats, rc, stderr)
		}
		return out
	}
	fromJSON, fromYAML := run(jsonPats), run(yamlPats)
	if fromJSON != fromYAML || strings.Count(fromYAML, "\n") < 10 {
		t.Fatalf("YAML patterns give %d lines, JSON %d (or too few)", strings.Count(fromYAML, "\n"), strings.Count(fromJSON, "\n"))
	}

	broken := filepath.Join(t.TempDir(), "broken.yml")
	if err := os.WriteFile(broken, []byte("- id: up\n  type: price_breakout\n  timeframe: 1m\n  threshold: lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, rc := qstream(t, "replay", "--input", input, "--patterns", broken, "--emit", "patterns")
	if rc != 2 || !strings.Contains(stderr, broken+`:4: field "threshold"`) {
		t.Fatalf("broken YAML: exit %d, stderr %s", rc, stderr)
	}

	// Movements in a sequence: a move down followed by a move up within 10m.
	_, trades := movTrades(t)
	seq := filepath.Join(t.TempDir(), "seq.yaml")
	if err := os.WriteFile(seq, []byte(`- id: down_up
  type: sequence
  within: 10m
  steps:
    - {name: down, kind: movement, where: ["change_pct <= -0.05"]}
    - {name: up, kind: movement, where: ["change_pct >= 0.05"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, rc := qstream(t, "replay", "--input", trades, "--patterns", seq, "--movements", "30s:0.05%", "--emit", "patterns,movements")
	if rc != 0 || !strings.Contains(out, `{"pattern":"down_up","type":"sequence","symbol":"BTCUSDT"`) || !strings.Contains(out, `"direction":"down"`) {
		t.Fatalf("movement sequence: exit %d, %s\n%s", rc, stderr, out)
	}
	if _, stderr, rc := qstream(t, "replay", "--input", trades, "--patterns", seq, "--emit", "patterns"); rc != 2 || !strings.Contains(stderr, "movement") {
		t.Fatalf("movement steps without --movements: exit %d, %s", rc, stderr)
	}
}
