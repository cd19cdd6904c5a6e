package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// utf8MixInput writes n JSON lines of which every tenth is bad in one of
// several ways (invalid UTF-8 or a control character in a symbol or an id),
// and returns the path and the line numbers of the bad ones.
func utf8MixInput(t *testing.T, n int) (string, map[int64]bool) {
	t.Helper()
	var b bytes.Buffer
	bad := map[int64]bool{}
	badShapes := []string{
		`{"type":"trade","symbol":"S%d` + "\xff" + `","ts":%d,"price":10.5,"volume":1}`,
		`{"type":"trade","symbol":"S%d","ts":%d,"price":10.5,"volume":1,"id":"` + "\xc3\x28" + `"}`,
		`{"type":"trade","symbol":"S%d\u0001","ts":%d,"price":10.5,"volume":1}`,
		`{"type":"trade","symbol":"S%d` + "\x1b" + `","ts":%d,"price":10.5,"volume":1}`,
		`{"message_id":"m","timestamp":%[2]d,"payload":{"MarketData":{"symbol":"S%[1]d` + "\xed\xa0\x80" + `","price":1,"volume":1}}}`,
	}
	for i := 1; i <= n; i++ {
		sym, ts := i%7, int64(1_700_000_000_000_000_000)+int64(i)*1_000_000
		if i%10 == 0 {
			fmt.Fprintf(&b, badShapes[(i/10)%len(badShapes)]+"\n", sym, ts)
			bad[int64(i)] = true
			continue
		}
		fmt.Fprintf(&b, `{"type":"trade","symbol":"S%d","ts":%d,"price":%d.25,"volume":2,"id":"ü-%d"}`+"\n", sym, ts, 100+i%13, i)
	}
	path := filepath.Join(t.TempDir(), "mix.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, bad
}

// validJSONLines asserts that every line of b is valid UTF-8 and valid JSON
// and returns them.
func validJSONLines(t *testing.T, what string, b []byte) [][]byte {
	t.Helper()
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Bytes()
		if !utf8.Valid(l) || !json.Valid(l) {
			t.Fatalf("%s: line %d is not valid UTF-8 JSON: %q", what, len(lines)+1, l)
		}
		lines = append(lines, append([]byte(nil), l...))
	}
	return lines
}

// Item 8 of issue 8: a replay of lines with invalid UTF-8 in symbols and ids
// writes only valid UTF-8 JSON; the bad lines are dead-lettered as malformed
// with a reason that says why and their line number, and counted in stats.
func TestReplayInvalidUTF8(t *testing.T) {
	const n = 20_000
	input, bad := utf8MixInput(t, n)
	dir := t.TempDir()
	outPath, dlqPath := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "dlq.jsonl")
	_, stderr, rc := qstream(t, "replay", "--input", input, "--format", "jsonl", "--emit", "indicators,windows,stats",
		"--windows", "tumbling:1s:ohlcv", "--output", outPath, "--dlq", dlqPath)
	if rc != 0 {
		t.Fatalf("exit %d\n%s", rc, stderr)
	}
	out, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := validJSONLines(t, "output", out)
	var indicators int
	var stats struct {
		Messages, Errors, DLQ uint64
		Rejected              map[string]uint64
	}
	for _, l := range lines {
		var o map[string]any
		if err := json.Unmarshal(l, &o); err != nil {
			t.Fatal(err)
		}
		switch {
		case o["seq"] != nil:
			indicators++
			if s, _ := o["symbol"].(string); !strings.HasPrefix(s, "S") || len(s) != 2 {
				t.Fatalf("output symbol %q", s)
			}
		case o["messages"] != nil:
			if err := json.Unmarshal(l, &stats); err != nil {
				t.Fatal(err)
			}
		}
	}
	if indicators != n-len(bad) {
		t.Fatalf("%d indicator lines, want %d", indicators, n-len(bad))
	}
	if stats.Messages != uint64(n-len(bad)) || stats.Errors != uint64(len(bad)) || stats.DLQ != uint64(len(bad)) {
		t.Fatalf("stats %+v, want messages %d, errors and dlq %d", stats, n-len(bad), len(bad))
	}

	dl, err := os.ReadFile(dlqPath)
	if err != nil {
		t.Fatal(err)
	}
	dlines := validJSONLines(t, "dead letters", dl)
	if len(dlines) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dlines), len(bad))
	}
	for _, l := range dlines {
		var d struct {
			Reason, Error, Raw, RawB64 string
			Line                       int64
		}
		if err := json.Unmarshal(l, &d); err != nil {
			t.Fatal(err)
		}
		if d.Reason != "malformed" || !bad[d.Line] ||
			!(strings.Contains(d.Error, "not valid UTF-8") || strings.Contains(d.Error, "control character")) {
			t.Fatalf("dead letter %s", l)
		}
	}
	if !strings.Contains(stderr, "line 10: codec: malformed: field \"id\": not valid UTF-8") || !strings.Contains(stderr, "line 20: codec: malformed: field \"symbol\": symbol is not valid UTF-8") {
		t.Fatalf("stderr does not name the first bad line:\n%s", stderr)
	}
}

// The same through `qstream run`: lines over the TCP feed, the output file
// and the dead letters as `qstream dlq show` prints them are all valid UTF-8
// JSON, and the bad lines are dead-lettered and counted.
func TestRunInvalidUTF8(t *testing.T) {
	const n = 5_000
	input, bad := utf8MixInput(t, n)
	data, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, dlqDir := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "dlq")
	r := startRun(t, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "lines", "--tcp-ack",
		"--output", out, "--dlq-dir", dlqDir)
	addr := r.addr(t, "tcp")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(data); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"ack":%d}`, n)
	sc := bufio.NewScanner(nc)
	_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	for sc.Scan() && sc.Text() != want {
	}
	if sc.Text() != want {
		t.Fatalf("no %s: %v", want, sc.Err())
	}
	waitLines(t, out, n-len(bad), 30*time.Second)
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(validJSONLines(t, "run output", b)); got != n-len(bad) {
		t.Fatalf("%d output lines, want %d", got, n-len(bad))
	}
	if !strings.Contains(stderr, fmt.Sprintf("%d dead letters", len(bad))) {
		t.Fatalf("stderr does not count %d dead letters:\n%s", len(bad), stderr)
	}
	shown, errs, rc := qstream(t, "dlq", "show", "--dir", dlqDir)
	if rc != 0 {
		t.Fatalf("dlq show: exit %d\n%s", rc, errs)
	}
	lines := validJSONLines(t, "dlq show", []byte(shown))
	if len(lines) != len(bad) {
		t.Fatalf("dlq show: %d dead letters, want %d", len(lines), len(bad))
	}
	for _, l := range lines {
		if !bytes.Contains(l, []byte(`"reason":"malformed"`)) || !bytes.Contains(l, []byte(`"raw`)) {
			t.Fatalf("dlq show: %s", l)
		}
	}
}
