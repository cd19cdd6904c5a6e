package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"qstream/feeds"
)

func TestParsePartitions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []int
		err  string
	}{
		{"", 4, []int{0, 1, 2, 3}, ""},
		{"0-7", 16, []int{0, 1, 2, 3, 4, 5, 6, 7}, ""},
		{"0,2,4", 8, []int{0, 2, 4}, ""},
		{" 8-9 , 0-1,5 ", 10, []int{0, 1, 5, 8, 9}, ""},
		{"3", 4, []int{3}, ""},
		{"4", 4, nil, "outside 0..3"},
		{"-1", 4, nil, "not a partition"},
		{"3-1", 4, nil, "lo <= hi"},
		{"0-2,2", 4, nil, "listed twice"},
		{"a", 4, nil, "not a partition"},
		{"1-x", 4, nil, "not a range"},
		{"0,,1", 4, nil, "not a partition"},
	} {
		got, err := parsePartitions(tc.in, tc.n)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePartitions(%q, %d) = %v, %v; want error with %q", tc.in, tc.n, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parsePartitions(%q, %d) = %v, %v; want %v", tc.in, tc.n, got, err, tc.want)
		}
	}
}

// parseRunFlags parses run's flags as the command does.
func parseRunFlags(t *testing.T, args ...string) *runFlags {
	t.Helper()
	var f runFlags
	fs := runFlagSet(&f, io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return &f
}

func noEnv(string) string { return "" }

func TestBuildFeedsErrors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--feed", "kafka"}, `unknown feed "kafka"`},
		{[]string{"--feed", "tcp,tcp", "--tcp-addr", ":0"}, "listed twice"},
		{[]string{"--feed", " , "}, "no feed selected"},
		{[]string{"--feed", "tcp"}, "needs --tcp-addr"},
		{[]string{"--feed", "tcp", "--tcp-addr", ":0", "--tcp-format", "xml"}, "--tcp-format"},
		{[]string{"--feed", "tcp", "--tcp-addr", ":0", "--tcp-loops", "-1"}, "--tcp-loops"},
		{[]string{"--tcp-addr", "127.0.0.1:0"}, "--tcp-addr configures the tcp feed"},
		{[]string{"--feed", "tcp", "--tcp-addr", ":0", "--count", "5"}, "--count configures the synthetic feed"},
		{[]string{"--feed", "ws", "--ws-exchange", "coinbase"}, "needs --ws-url"},
		{[]string{"--feed", "ws", "--ws-url", "http://x", "--ws-exchange", "coinbase"}, "not a ws://"},
		{[]string{"--feed", "ws", "--ws-url", "ws://x"}, "needs --ws-exchange"},
		{[]string{"--feed", "ws", "--ws-url", "ws://x", "--ws-exchange", "ftx"}, "unknown exchange"},
		{[]string{"--feed", "ws", "--ws-url", "ws://x", "--ws-exchange", "kraken", "--ws-subscribe", "{nope"}, "not a JSON message"},
		{[]string{"--feed", "ws", "--ws-url", "ws://x", "--ws-exchange", "kraken", "--ws-subscribe", "@/does/not/exist"}, "no such file"},
		{[]string{"--feed", "webhook"}, "needs --webhook-addr"},
		{[]string{"--feed", "webhook", "--webhook-addr", ":0"}, "needs a secret"},
		{[]string{"--feed", "webhook", "--webhook-addr", ":0", "--webhook-secret-file", "/does/not/exist"}, "--webhook-secret-file"},
		{[]string{"--feed", "webhook", "--webhook-addr", ":0", "--webhook-secret-file", secret, "--webhook-path", "hook"}, "does not start with /"},
		{[]string{"--feed", "jetstream", "--js-stream", "S"}, "needs --js-stream, --js-subject-prefix and --js-partitions"},
		{[]string{"--feed", "jetstream", "--js-stream", "S", "--js-subject-prefix", "t", "--js-partitions", "5000"}, "--js-partitions"},
		{[]string{"--feed", "jetstream", "--js-stream", "S", "--js-subject-prefix", "t", "--js-partitions", "4", "--js-owned", "2-5"}, "--js-owned"},
		{[]string{"--feed", "pcap"}, "needs --pcap"},
		{[]string{"--feed", "pcap", "--pcap", "/does/not/exist.pcap"}, "no such file"},
		{[]string{"--feed", "pcap", "--pcap", secret, "--pcap-speed", "-1"}, "negative"},
	} {
		f := parseRunFlags(t, tc.args...)
		set, err := buildFeeds(f, noEnv)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: buildFeeds = %v, %v; want an error with %q", tc.args, set, err, tc.err)
		}
	}
}

func TestBuildFeedsSelected(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := parseRunFlags(t, "--feed", "jetstream, synthetic,tcp,webhook,pcap,ws",
		"--tcp-addr", "127.0.0.1:0", "--tcp-loops", "3",
		"--ws-url", "wss://example.com/ws", "--ws-exchange", "Binance", "--ws-subscribe", `{"method":"SUBSCRIBE"}`,
		"--webhook-addr", "127.0.0.1:0", "--webhook-secret-file", secret,
		"--js-stream", "S", "--js-subject-prefix", "ticks", "--js-partitions", "16", "--js-owned", "0-7,9",
		"--pcap", secret, "--count", "10")
	set, err := buildFeeds(f, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fd := range set.feeds {
		names = append(names, fd.Name())
	}
	if want := []string{"jetstream", "synthetic", "tcp", "webhook", "pcap", "ws"}; !slices.Equal(names, want) {
		t.Errorf("feeds %v, want %v (in --feed order)", names, want)
	}
	// 9 partitions + 3 loops + one each for synthetic, webhook, pcap, ws.
	if set.producers != 16 {
		t.Errorf("producers = %d, want 16", set.producers)
	}
	d := set.describe(f)
	for _, want := range []string{"jetstream feed S partitions 0-7,9 of 16", "tcp feed on 127.0.0.1:0", "Binance WebSocket feed wss://example.com/ws", "pcap replay of"} {
		if !strings.Contains(d, want) {
			t.Errorf("describe = %q, lacks %q", d, want)
		}
	}
}

func TestReadSubscriptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "subs")
	if err := os.WriteFile(file, []byte("{\"a\":1}\n\n  [\"b\"]  \r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("{\"a\":1}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readSubscriptions([]string{`{"x":"y"}`, "@" + file})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"x":"y"}`, `{"a":1}`, `["b"]`}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("message %d = %q, want %q", i, got[i], want[i])
		}
	}
	if _, err := readSubscriptions([]string{"@" + bad}); err == nil || !strings.Contains(err.Error(), "bad line 2") {
		t.Errorf("bad file: %v; want the file and line named", err)
	}
	big := `{"k":"` + strings.Repeat("x", maxWSSubscriptionSize) + `"}`
	if _, err := readSubscriptions([]string{big}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversize message: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writers of a run
// (status line, feeds announcing their address).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runInProcess is `qstream run args...` in this process, stopped by the
// returned function (as Ctrl-C would) or by its feeds ending.
type runInProcess struct {
	stderr syncBuffer
	done   chan error
	cancel context.CancelFunc
}

func startRun(t *testing.T, args ...string) *runInProcess {
	t.Helper()
	f := parseRunFlags(t, append(append([]string{"--status-interval", "100ms"}, localStateArgs(t)...), args...)...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runInProcess{done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- run(ctx, f, io.Discard, &r.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("run did not stop 30s after cancel")
		}
	})
	return r
}

// localStateArgs points the run's local state (WAL, checkpoints, dead
// letters), where its flags exist, into a temporary directory, so that a
// test neither writes into the package directory nor recovers another
// test's state.
func localStateArgs(t *testing.T) []string {
	t.Helper()
	var f runFlags
	fs := runFlagSet(&f, io.Discard)
	dir := t.TempDir()
	var args []string
	for _, d := range []struct{ flag, sub string }{{"wal-dir", "wal"}, {"checkpoint-dir", "checkpoints"}, {"dlq-dir", "dlq"}} {
		if fs.Lookup(d.flag) != nil {
			args = append(args, "--"+d.flag, filepath.Join(dir, d.sub))
		}
	}
	if fs.Lookup("http") != nil {
		args = append(args, "--http", "") // no control endpoint unless a test asks (a later --http)
	}
	return args
}

// stop cancels the run and returns its error and stderr.
func (r *runInProcess) stop(t *testing.T) (string, error) {
	t.Helper()
	r.cancel()
	return r.wait(t, 30*time.Second)
}

// wait waits for the run to end by itself.
func (r *runInProcess) wait(t *testing.T, d time.Duration) (string, error) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return r.stderr.String(), err
	case <-time.After(d):
		t.Fatalf("run did not end within %s:\n%s", d, r.stderr.String())
	}
	return "", nil
}

var listenRE = regexp.MustCompile(`qstream: (\S+): listening on (\S+)`)

// addr waits for the named feed to announce its address.
func (r *runInProcess) addr(t *testing.T, feed string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range listenRE.FindAllStringSubmatch(r.stderr.String(), -1) {
			if m[1] == feed {
				return m[2]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not announce its address:\n%s", feed, r.stderr.String())
	return ""
}

// outputLine is the part of an indicator output line the tests check.
type outputLine struct {
	Seq    uint64  `json:"seq"`
	Symbol string  `json:"symbol"`
	Ts     int64   `json:"ts"`
	Price  float64 `json:"price"`
}

// readOutputs parses an --output file; a torn last line (a killed process)
// is ignored and reported.
func readOutputs(t *testing.T, path string) (lines []outputLine, raw []string, torn bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var o outputLine
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			if !bytes.HasSuffix(b, []byte("\n")) && len(sc.Bytes()) > 0 && strings.HasSuffix(string(b), sc.Text()) {
				return lines, raw, true
			}
			t.Fatalf("%s: bad output line %q: %v", path, sc.Text(), err)
		}
		lines = append(lines, o)
		raw = append(raw, sc.Text())
	}
	return lines, raw, false
}

// waitLines waits until path holds at least n lines.
func waitLines(t *testing.T, path string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	got := 0
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if got = bytes.Count(b, []byte("\n")); got >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %d lines after %s, want %d", path, got, d, n)
}

// TestRunFeedTCP: `run --feed tcp` takes newline-delimited JSON ticks from
// several connections; every trade reaches the output, in order per
// connection (one symbol each); acks count what the engine took; a bad line
// is rejected and counted, not fatal.
func TestRunFeedTCP(t *testing.T) {
	const conns, perConn = 3, 20_000
	out := filepath.Join(t.TempDir(), "out.jsonl")
	r := startRun(t, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "lines", "--tcp-ack", "--tcp-loops", "2",
		"--shards", "2", "--output", out)
	addr := r.addr(t, "tcp")
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			var buf bytes.Buffer
			for i := 1; i <= perConn; i++ {
				fmt.Fprintf(&buf, `{"type":"trade","symbol":"C%d","ts":%d,"price":%d.25,"volume":1}`+"\n", c, 1_700_000_000_000_000_000+int64(i), 100+i%13)
				if i == perConn/2 {
					buf.WriteString("{not json\n")
				}
			}
			if _, err := nc.Write(buf.Bytes()); err != nil {
				t.Error(err)
				return
			}
			// The acks are cumulative: wait for the one covering every line.
			want := fmt.Sprintf(`{"ack":%d}`, perConn+1)
			sc := bufio.NewScanner(nc)
			_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
			for sc.Scan() {
				if sc.Text() == want {
					return
				}
			}
			t.Errorf("connection %d: no %s: %v", c, want, sc.Err())
		}()
	}
	wg.Wait()
	waitLines(t, out, conns*perConn, 30*time.Second)
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	lines, _, _ := readOutputs(t, out)
	if len(lines) != conns*perConn {
		t.Fatalf("%d outputs, want %d", len(lines), conns*perConn)
	}
	next := map[string]int64{}
	lastSeq := map[string]uint64{}
	for _, o := range lines {
		// ts numbers a connection's trades; Seq is the source offset of
		// the connection's event loop: increasing, shared by the loop's
		// connections.
		want := next[o.Symbol] + 1
		if o.Ts != 1_700_000_000_000_000_000+want || o.Seq <= lastSeq[o.Symbol] {
			t.Fatalf("%s: output ts %d seq %d after trade %d seq %d: not in connection order", o.Symbol, o.Ts, o.Seq, next[o.Symbol], lastSeq[o.Symbol])
		}
		next[o.Symbol], lastSeq[o.Symbol] = want, o.Seq
	}
	for _, want := range []string{
		fmt.Sprintf(": %d messages", conns*perConn),
		fmt.Sprintf("qstream: feed tcp: accepted=%d refused=0 messages=%d", conns, conns*perConn),
		fmt.Sprintf("rejects=%d errors=0", conns),
		"| tcp conns ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestRunFeedWebhook: a signed POST is accepted (202) and its events reach
// the output; a bad signature gets 401 and nothing; the secret comes from a
// file, its trailing newline ignored.
func TestRunFeedWebhook(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	secret := []byte("a webhook secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	r := startRun(t, "--feed", "webhook", "--webhook-addr", "127.0.0.1:0", "--webhook-path", "/in",
		"--webhook-secret-file", secretFile, "--output", out)
	url := "http://" + r.addr(t, "webhook") + "/in"
	post := func(body string, key []byte, delivery string) int {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		feeds.SetWebhookHeaders(req.Header, key, time.Now(), delivery, []byte(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	body := `[{"type":"trade","symbol":"W","ts":1700000000000000001,"price":10,"volume":1},` +
		`{"type":"trade","symbol":"W","ts":1700000000000000002,"price":11,"volume":2}]`
	if code := post(body, []byte("wrong"), "d-1"); code != http.StatusUnauthorized {
		t.Errorf("bad signature: %d, want 401", code)
	}
	if code := post(body, secret, "d-1"); code != http.StatusAccepted {
		t.Errorf("good signature: %d, want 202", code)
	}
	if code := post(body, secret, "d-1"); code != http.StatusConflict {
		t.Errorf("replayed delivery: %d, want 409", code)
	}
	waitLines(t, out, 2, 10*time.Second)
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	lines, _, _ := readOutputs(t, out)
	if len(lines) != 2 || lines[0].Price != 10 || lines[1].Price != 11 {
		t.Errorf("outputs %+v, want the two trades", lines)
	}
	if want := "qstream: feed webhook: requests=3 accepted=1 events=2 bad_signature=1 stale=0 replays=1"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}

// TestRunFeedWebhookSecretFromEnv: without --webhook-secret-file the secret
// is read from QSTREAM_WEBHOOK_SECRET.
func TestRunFeedWebhookSecretFromEnv(t *testing.T) {
	f := parseRunFlags(t, "--feed", "webhook", "--webhook-addr", "127.0.0.1:0")
	set, err := buildFeeds(f, func(k string) string {
		if k == webhookSecretEnv {
			return "from-env"
		}
		return ""
	})
	if err != nil || len(set.feeds) != 1 {
		t.Fatalf("buildFeeds = %v, %v", set, err)
	}
}

// TestRunFeedPcap: the IEX sample replays through `run --feed pcap`, which
// ends by itself at the end of the capture with every message processed;
// together with a finite synthetic feed both are counted.
func TestRunFeedPcap(t *testing.T) {
	path := sharedTestdata(t, "pcap/iex_tops16_sample.pcap.gz")
	r := startRun(t, "--feed", "pcap,synthetic", "--pcap", path, "--count", "5000", "--rate", "0")
	stderr, err := r.wait(t, 60*time.Second)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		fmt.Sprintf(": %d messages", 57_674+5_000),
		"qstream: feed pcap: packets=13022 ",
		" events=57674 errors=0 ",
		"truncated=false",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestRunFeedFailureStopsRun: a feed that fails ends the run with its error
// (and the other feeds are stopped).
func TestRunFeedFailureStopsRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := ln.Addr().String()
	defer ln.Close()
	r := startRun(t, "--feed", "synthetic,tcp", "--tcp-addr", busy, "--rate", "1000")
	stderr, err := r.wait(t, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "feed tcp:") {
		t.Fatalf("run = %v, want the tcp feed's listen error\n%s", err, stderr)
	}
}

// TestRunFeedWS: `run --feed ws` against a local server that replays the
// recorded Coinbase feed: the subscription messages (from a file) are sent,
// the server drops the connection mid-stream, the client reconnects and
// resubscribes, the server resends from a point before the drop, and every
// trade of the recording reaches the output exactly once (the adapter
// recognises the resent trade ids).
func TestRunFeedWS(t *testing.T) {
	sent, received := coinbaseCapture(t)
	dir := t.TempDir()
	subFile := filepath.Join(dir, "subs")
	if err := os.WriteFile(subFile, []byte(strings.Join(sent, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var subs []string
	var conns int
	cut := len(received) / 2
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		mu.Lock()
		conns++
		n := conns
		mu.Unlock()
		ctx := req.Context()
		for range sent {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			subs = append(subs, string(msg))
			mu.Unlock()
		}
		from, to := 0, cut
		if n > 1 {
			from, to = cut-200, len(received) // resend some of what was sent before the drop
		}
		for _, m := range received[from:to] {
			if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		if n == 1 {
			return // drop mid-stream: no close frame
		}
		_, _, _ = c.Read(ctx) // hold the connection until the client leaves
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	out := filepath.Join(dir, "out.jsonl")
	r := startRun(t, "--feed", "ws", "--ws-url", "ws://"+ln.Addr().String()+"/", "--ws-exchange", "coinbase",
		"--ws-subscribe", "@"+subFile, "--output", out)
	waitLines(t, out, 107, 30*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate would have arrived by now
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	lines, _, _ := readOutputs(t, out)
	if len(lines) != 107 {
		t.Errorf("%d trades in the output, want the recording's 107 (97 match + 10 last_match)", len(lines))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(subs) != 2*len(sent) || subs[0] != sent[0] || subs[len(sent)] != sent[0] {
		t.Errorf("server saw %d subscription messages, want the %d of the recording twice", len(subs), len(sent))
	}
	if !strings.Contains(stderr, "qstream: feed ws: dials=2 connects=2 ") {
		t.Errorf("stderr lacks the reconnect in the feed's counters:\n%s", stderr)
	}
}

// coinbaseCapture splits the shared Coinbase recording into the messages the
// client sent (subscriptions) and those it received, in order.
func coinbaseCapture(t *testing.T) (sent, received []string) {
	t.Helper()
	b, err := os.ReadFile(sharedTestdata(t, "exchange/coinbase_ws_capture.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		head, msg, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(msg, "{") {
			continue
		}
		if strings.Contains(head, " <- ") {
			sent = append(sent, msg)
		} else if !strings.Contains(head, " ") {
			received = append(received, msg)
		}
	}
	if len(sent) == 0 || len(received) < 1000 {
		t.Fatalf("recording: %d sent, %d received messages", len(sent), len(received))
	}
	return sent, received
}
