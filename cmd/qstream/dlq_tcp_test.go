package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/codec"
	"qstream/sinks"
)

// dlqOfTrades writes n dead letters whose raw inputs are valid, distinct
// trade lines (as after a fix upstream), and returns the DLQ directory.
func dlqOfTrades(t *testing.T, n int, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dlq")
	store, err := sinks.OpenDLQ(dir, sinks.DLQOptions{}, codec.NewSymbolTable(16))
	if err != nil {
		t.Fatal(err)
	}
	var rec sinks.DeadLetterRecord
	for i := 1; i <= n; i++ {
		raw := fmt.Sprintf(`{"type":"trade","symbol":"R%d","ts":%d,"price":%d.5,"volume":1}`, i%8, 1_700_000_000_000_000_000+int64(i)*1000, 100+i%17)
		rec = sinks.DeadLetterRecord{Reason: codec.ReasonUnknownSymbol, Feed: "tcp", Pos: codec.Position{Line: int64(i), Offset: -1}, Raw: []byte(raw)}
		if err := store.Write(&rec); err != nil {
			t.Fatal(err)
		}
	}
	for i, raw := range extra {
		rec = sinks.DeadLetterRecord{Reason: codec.ReasonMalformed, Feed: "webhook", Pos: codec.Position{Line: int64(n + 1 + i), Offset: -1}, Raw: []byte(raw)}
		if err := store.Write(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var feedCountsRE = regexp.MustCompile(`feed tcp: accepted=\d+ refused=\d+ messages=(\d+)`)

// serverReceived stops the run and returns how many messages its TCP feed
// received (published; none of these lines is rejected).
func serverReceived(t *testing.T, r *runInProcess) int {
	t.Helper()
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	m := feedCountsRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no feed summary in:\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Item 9 of issue 8: `dlq replay --tcp` against a feed with acks waits for
// them: every line sent is acknowledged and received, and the command says
// so. Before, it closed with acks unread, the connection was reset and the
// server lost the lines it had not read yet, while the command reported
// them all re-injected and exited 0. One dead letter holds two lines (a
// multi-line body): the feed counts two messages, and so does the sender.
func TestDLQReplayTCPAcked(t *testing.T) {
	const n = 60_000
	twoLines := `{"type":"trade","symbol":"R1","ts":1800000000000000000,"price":1.5,"volume":1}` + "\r\n" +
		`{"type":"trade","symbol":"R2","ts":1800000000000000000,"price":1.5,"volume":1}`
	dir := dlqOfTrades(t, n, twoLines)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	r := startRun(t, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "lines", "--tcp-ack", "--output", out)
	addr := r.addr(t, "tcp")
	_, stderr, rc := qstream(t, "dlq", "replay", "--dir", dir, "--tcp", addr)
	if rc != 0 || !strings.Contains(stderr, fmt.Sprintf("re-injected %d,", n+1)) ||
		!strings.Contains(stderr, fmt.Sprintf("acknowledged %d of %d lines sent", n+2, n+2)) {
		t.Fatalf("dlq replay: exit %d\n%s", rc, stderr)
	}
	waitLines(t, out, n+2, 60*time.Second)
	if got := serverReceived(t, r); got != n+2 {
		t.Fatalf("the server received %d messages; %d were sent and acknowledged", got, n+2)
	}
}

// Against a feed without acks the default is to fail, saying how many were
// sent and acknowledged (none) and why; --no-ack sends, waits until the feed
// has read everything, and says delivery is unconfirmed.
func TestDLQReplayTCPWithoutAcks(t *testing.T) {
	const n = 20_000
	dir := dlqOfTrades(t, n)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	r := startRun(t, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "lines", "--output", out)
	addr := r.addr(t, "tcp")
	start := time.Now()
	_, stderr, rc := qstream(t, "dlq", "replay", "--dir", dir, "--tcp", addr, "--ack-timeout", "300ms")
	if rc != 1 || !strings.Contains(stderr, fmt.Sprintf("FAILED: 0 of %d lines sent to %s were acknowledged", n, addr)) ||
		!strings.Contains(stderr, "--tcp-ack") {
		t.Fatalf("dlq replay to a feed without acks: exit %d\n%s", rc, stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("gave up after %s with a 300ms ack timeout", d)
	}
	waitLines(t, out, n, 60*time.Second)
	_, stderr, rc = qstream(t, "dlq", "replay", "--dir", dir, "--tcp", addr, "--no-ack")
	if rc != 0 || !strings.Contains(stderr, fmt.Sprintf("sent %d lines to %s, which read them all; delivery unconfirmed", n, addr)) {
		t.Fatalf("dlq replay --no-ack: exit %d\n%s", rc, stderr)
	}
	waitLines(t, out, 2*n, 60*time.Second)
	if got := serverReceived(t, r); got != 2*n {
		t.Fatalf("the server received %d messages, want %d", got, 2*n)
	}
	// A feed that is not there: a clear error, exit 1.
	if _, stderr, rc := qstream(t, "dlq", "replay", "--dir", dir, "--tcp", addr, "--ack-timeout", "1s"); rc != 1 || !strings.Contains(stderr, "refused") {
		t.Fatalf("dlq replay to a closed port: exit %d\n%s", rc, stderr)
	}
}

// A feed that drops the connection part-way (here: the first line starts
// with the frame magic byte, so an auto-format feed reads a frame stream,
// finds it misaligned and closes) fails the re-injection: exit 1, with how
// many lines were sent and acknowledged.
func TestDLQReplayTCPConnectionLost(t *testing.T) {
	const n = 5_000
	dir := filepath.Join(t.TempDir(), "dlq")
	store, err := sinks.OpenDLQ(dir, sinks.DLQOptions{}, codec.NewSymbolTable(16))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= n; i++ {
		raw := fmt.Sprintf(`{"type":"trade","symbol":"R","ts":%d,"price":1.5,"volume":1}`, i+1)
		if i == 0 {
			raw = "\xf5" + raw
		}
		rec := sinks.DeadLetterRecord{Reason: codec.ReasonMalformed, Feed: "tcp", Pos: codec.Position{Line: int64(i + 1), Offset: -1}, Raw: []byte(raw)}
		if err := store.Write(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "auto", "--tcp-ack", "--output", filepath.Join(t.TempDir(), "out.jsonl"))
	addr := r.addr(t, "tcp")
	_, stderr, rc := qstream(t, "dlq", "replay", "--dir", dir, "--tcp", addr, "--ack-timeout", "5s")
	if rc != 1 || !regexp.MustCompile(`FAILED: 0 of \d+ lines sent to \S+ were acknowledged`).MatchString(stderr) {
		t.Fatalf("dlq replay to a feed that closes: exit %d\n%s", rc, stderr)
	}
}
