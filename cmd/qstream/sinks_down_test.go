package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunSinkDownThirtySeconds: a sink whose server is down for 30 s while
// `qstream run` goes on at 2,000 messages/s. Its breaker opens (the status
// line says so), the shards and the other sinks (the --output file and
// ClickHouse) go on during the outage, its queue spills to disk past its
// memory buffer, and after the server returns every output arrives exactly
// once: the JetStream stream capturing the subjects holds one message per
// output line, with the line as payload.
func TestRunSinkDownThirtySeconds(t *testing.T) {
	outage := 30 * time.Second
	if s := os.Getenv("QSTREAM_SINK_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		outage = d
	}
	ns := startNATS(t)
	ns.stream(t, "DOWN")
	db := chDatabase(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	r := startRun(t, "--rate", "2000", "--symbols", "20", "--shards", "1", "--output", out, "--checkpoint-interval", "300ms", "--windows", "tumbling:1s:ohlcv",
		"--sink", ns.url()+"?buffer=4096&breaker_timeout=1s&linger=5ms",
		"--sink", "clickhouse+http://"+chHTTPAddr+"/"+db+"?linger=20ms")
	waitLines(t, out, 2000, 20*time.Second)
	waitUntil(t, "the first outputs in the stream", 20*time.Second, func() bool { return ns.count(t, "DOWN") > 1000 })

	ns.stop()
	outageStart := time.Now()
	linesAtStop := countLines(t, out)
	rowsAtStop := chCount(t, "SELECT count() FROM "+db+".qstream_indicators")
	natsRE := regexp.MustCompile(regexp.QuoteMeta(ns.url()) + ` (\w+)`)
	waitUntil(t, "the NATS sink's breaker to open", 20*time.Second, func() bool {
		m := natsRE.FindAllStringSubmatch(r.stderr.String(), -1)
		return len(m) > 0 && m[len(m)-1][1] == "open"
	})
	time.Sleep(time.Until(outageStart.Add(outage)))
	linesAtRestart := countLines(t, out)
	rowsAtRestart := chCount(t, "SELECT count() FROM "+db+".qstream_indicators")
	// 2,000 messages/s for the outage: the shards and the other sinks went
	// on (at least a third of that, on a loaded machine).
	if min := int(outage.Seconds() * 2000 / 3); linesAtRestart-linesAtStop < min || rowsAtRestart-rowsAtStop < min {
		t.Fatalf("during the outage the output grew by %d lines and ClickHouse by %d rows, want ≥ %d each: the dead sink held back the stream",
			linesAtRestart-linesAtStop, rowsAtRestart-rowsAtStop, min)
	}
	ns.start()
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, tail(stderr, 20))
	}
	_, raw, torn := readOutputs(t, out)
	if torn {
		t.Fatal("torn output after a clean stop")
	}
	msgs := ns.messages(t, "DOWN")
	payloads := make([]string, len(msgs))
	ids := map[string]bool{}
	for i, m := range msgs {
		payloads[i] = m.data
		if ids[m.id] {
			t.Fatalf("Nats-Msg-Id %s twice in the stream", m.id)
		}
		ids[m.id] = true
	}
	if d := diffMultiset(payloads, raw); d != "" {
		t.Fatalf("the stream's %d messages are not the %d output lines once each:\n%s", len(payloads), len(raw), d)
	}
	// The summary of the NATS sink: it spilled past its 4,096 outputs of
	// memory, it failed while the server was down, and wrote everything.
	sum := regexp.MustCompile(`qstream: sink ` + regexp.QuoteMeta(ns.url()) + `: (\d+) delivered in \d+ batches, \d+ retries, (\d+) errors, (\d+) shed, \d+ poisoned, deepest queue (\d+)`).
		FindStringSubmatch(stderr)
	if sum == nil {
		t.Fatalf("no summary of the NATS sink:\n%s", tail(stderr, 20))
	}
	written, _ := strconv.Atoi(sum[1])
	errs, _ := strconv.Atoi(sum[2])
	deepest, _ := strconv.Atoi(sum[4])
	if written < len(raw) || errs == 0 || sum[3] != "0" || deepest <= 4096 {
		t.Fatalf("NATS sink summary %q: want ≥ %d written, errors > 0, none shed, deepest queue > 4096 (spilled)", sum[0], len(raw))
	}
	if n := chCount(t, "SELECT count() FROM "+db+".qstream_indicators FINAL"); n != countKind(raw, `{"seq":`) {
		t.Fatalf("ClickHouse holds %d indicator rows under FINAL, the output %d lines", n, countKind(raw, `{"seq":`))
	}
	t.Logf("outage %s: output +%d lines, ClickHouse +%d rows meanwhile; NATS: %d messages = %d lines, deepest queue %d, %d errors",
		outage, linesAtRestart-linesAtStop, rowsAtRestart-rowsAtStop, len(msgs), len(raw), deepest, errs)
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func countKind(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
