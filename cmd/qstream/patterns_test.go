package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// patternFile writes a pattern file with one pattern of each built-in type
// (and a breakdown) and returns its path.
func patternFile(t *testing.T, body string) string {
	t.Helper()
	if body == "" {
		body = `[
 {"id":"up","type":"price_breakout","threshold":0.001,"timeframe":"1m"},
 {"id":"dn","type":"price_breakout","direction":"down","threshold":0.001,"timeframe":"1m"},
 {"id":"vol","type":"volume_spike","multiplier":5,"baseline":"30s"},
 {"id":"fb_vol","type":"volume_spike","multiplier":2,"baseline":"30s","symbols":["FB"]},
 {"id":"vwap","type":"technical_signal","signal":"vwap_cross"},
 {"id":"ema","type":"technical_signal","signal":"ema_cross","fast":3,"slow":10}]`
	}
	path := filepath.Join(t.TempDir(), "patterns.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type matchLine struct {
	Pattern    string             `json:"pattern"`
	Type       string             `json:"type"`
	Symbol     string             `json:"symbol"`
	Ts         int64              `json:"ts"`
	Confidence float64            `json:"confidence"`
	Details    map[string]any     `json:"details"`
	Other      map[string]float64 `json:"-"`
}

// TestReplayPatterns: --emit patterns over the IEX sample writes match
// lines of every type, byte-identical run to run, the same set of lines with
// 1 and 2 shards, per symbol in event-time order, and --emit all includes
// them.
func TestReplayPatterns(t *testing.T) {
	input := sharedTestdata(t, "pcap/iex_tops16_sample.pcap.gz")
	pats := patternFile(t, "")
	run := func(args ...string) string {
		t.Helper()
		out, stderr, rc := qstream(t, append([]string{"replay", "--input", input, "--patterns", pats}, args...)...)
		if rc != 0 {
			t.Fatalf("%v: exit %d: %s", args, rc, stderr)
		}
		return out
	}
	one := run("--emit", "patterns")
	if again := run("--emit", "patterns"); again != one {
		t.Fatal("two replays of the same input differ")
	}
	lines := strings.Split(strings.TrimSuffix(one, "\n"), "\n")
	two := strings.Split(strings.TrimSuffix(run("--emit", "patterns", "--shards", "2"), "\n"), "\n")
	if !slices.Equal(slices.Sorted(slices.Values(lines)), slices.Sorted(slices.Values(two))) {
		t.Fatalf("--shards 2 gives another set of lines (%d vs %d)", len(two), len(lines))
	}
	byPattern := map[string]int{}
	lastTs := map[string]int64{}
	for _, l := range lines {
		var m matchLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if m.Symbol == "" || m.Ts == 0 || m.Confidence <= 0 || m.Confidence > 1 || len(m.Details) < 3 {
			t.Fatalf("incomplete match line %s", l)
		}
		if m.Pattern == "fb_vol" && m.Symbol != "FB" {
			t.Fatalf("fb_vol matched %s", m.Symbol)
		}
		if m.Ts < lastTs[m.Symbol] {
			t.Fatalf("%s: matches of %s go back in event time", l, m.Symbol)
		}
		lastTs[m.Symbol] = m.Ts
		byPattern[m.Pattern]++
		if m.Type == "price_breakout" {
			if _, ok := m.Details["current_price"]; !ok {
				t.Fatalf("breakout details %v", m.Details)
			}
		}
	}
	for _, id := range []string{"up", "dn", "vol", "fb_vol", "vwap", "ema"} {
		if byPattern[id] == 0 {
			t.Errorf("pattern %s never matched (%v)", id, byPattern)
		}
	}
	all := run("--emit", "all")
	if n := strings.Count(all, `{"pattern":`); n != len(lines) {
		t.Fatalf("--emit all has %d match lines, --emit patterns %d", n, len(lines))
	}
	t.Logf("%d matches: %v", len(lines), byPattern)
}

// TestPatternsFileErrors: a bad pattern file is a usage error naming the
// pattern and the field.
func TestPatternsFileErrors(t *testing.T) {
	input := "testdata/ticks.jsonl"
	for _, tc := range []struct{ body, want string }{
		{`[{"id":"up","type":"price_breakout","timeframe":"1m"}]`, `pattern "up" (#1): threshold: missing`},
		{`[{"id":"a","type":"volume_spike","multiplier":2,"baseline":"1m"},{"id":"b","type":"volume_spike","multiplier":2,"baseline":"often"}]`, `pattern "b" (#2): baseline: "often"`},
		{`[{"id":"n","type":"news_impact"}]`, `timeframe: missing`},
		{`id: up`, `JSON array`},
	} {
		_, stderr, rc := qstream(t, "replay", "--input", input, "--patterns", patternFile(t, tc.body), "--emit", "patterns")
		if rc != 2 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--patterns") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.body, rc, stderr, tc.want)
		}
	}
	_, stderr, rc := qstream(t, "replay", "--input", input, "--patterns", "testdata/none.json")
	if rc != 2 || !strings.Contains(stderr, "--patterns") {
		t.Errorf("missing file: exit %d %s", rc, stderr)
	}
}

// TestPatternsRun: qstream run --patterns writes match lines to --output
// next to the indicator lines.
func TestPatternsRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	// A synthetic step moves a price by at most 0.05% (Volatility), so a
	// breakout of 0.05% over the trailing second comes from two or more
	// steps up in a row: dozens in 20000 events.
	pats := patternFile(t, `[{"id":"up","type":"price_breakout","threshold":0.0005,"timeframe":"1s"},
		{"id":"x","type":"technical_signal","signal":"sma_cross","fast":2,"slow":5,"symbols":["SYN00003"]}]`)
	_, stderr, rc := qstream(t, "run", "--count", "20000", "--rate", "0", "--symbols", "10", "--shards", "2", "--status-interval", "1h",
		"--patterns", pats, "--output", out,
		"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"))
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if !strings.HasPrefix(l, `{"pattern":`) {
			continue
		}
		var m matchLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if m.Pattern == "x" && m.Symbol != "SYN00003" {
			t.Fatalf("x matched %s", m.Symbol)
		}
		n[m.Pattern]++
	}
	if n["up"] == 0 || n["x"] == 0 {
		t.Fatalf("matches %v in %d bytes of output; want both patterns", n, len(data))
	}
}

// TestPatternsSinks: the sinks get the match lines --output gets: NATS one
// message per line on qstream.patterns.<symbol>, ClickHouse one
// qstream_patterns row per line with the line as payload, Redis one publish
// per line on patterns:<symbol>.
func TestPatternsSinks(t *testing.T) {
	ns := startNATS(t)
	ns.stream(t, "PATTERNS")
	db := chDatabase(t)
	rdb := redisClient(t, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := rdb.PSubscribe(ctx, "patterns:*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is in place
		t.Fatal(err)
	}
	stdout, stderr, rc := qstream(t, "replay", "--input", sharedTestdata(t, "pcap/iex_tops16_sample.pcap.gz"),
		"--patterns", patternFile(t, ""), "--emit", "patterns",
		"--sink", "redis://"+redisAddr+"/12", "--sink", "clickhouse+http://"+chHTTPAddr+"/"+db, "--sink", ns.url())
	if rc != 0 {
		t.Fatalf("replay exit %d:\n%s", rc, tail(stderr, 20))
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) < 100 {
		t.Fatalf("only %d match lines", len(lines))
	}
	var payloads []string
	for _, m := range ns.messages(t, "PATTERNS") {
		if !strings.HasPrefix(m.subject, "qstream.patterns.") {
			t.Fatalf("message on %s", m.subject)
		}
		payloads = append(payloads, m.data)
	}
	if d := diffMultiset(payloads, lines); d != "" {
		t.Fatalf("NATS: %d messages are not the %d lines:\n%s", len(payloads), len(lines), d)
	}
	var rows []string
	for _, r := range chRows(t, "SELECT payload FROM "+db+".qstream_patterns FINAL") {
		rows = append(rows, r["payload"].(string))
	}
	if d := diffMultiset(rows, lines); d != "" {
		t.Fatalf("ClickHouse: %d rows are not the %d lines:\n%s", len(rows), len(lines), d)
	}
	var pubs []string
	ch := sub.Channel()
	for len(pubs) < len(lines) {
		select {
		case m := <-ch:
			var ml matchLine
			if err := json.Unmarshal([]byte(m.Payload), &ml); err != nil || m.Channel != "patterns:"+ml.Symbol {
				t.Fatalf("publish on %s: %s (%v)", m.Channel, m.Payload, err)
			}
			pubs = append(pubs, m.Payload)
		case <-ctx.Done():
			t.Fatalf("Redis: %d of %d publishes", len(pubs), len(lines))
		}
	}
	if d := diffMultiset(pubs, lines); d != "" {
		t.Fatalf("Redis: the publishes are not the lines:\n%s", d)
	}
	t.Logf("%d match lines in NATS, ClickHouse and Redis", len(lines))
}
