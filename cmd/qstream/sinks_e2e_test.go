package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
)

// TestReplaySinksWriteWhatIsComputed replays real captures (Coinbase's
// WebSocket trades, IEX TOPS in a pcap) with every server sink at once and
// compares what each server holds with the lines `qstream replay` computed:
// ClickHouse (over HTTP and over the native protocol) one row per output with
// the same values, NaN as NULL, OHLCV as JSON; NATS one message per line with
// the line as payload; Redis the newest features per symbol, with their
// expiry, and the newest result per window spec and symbol. The same replay a
// second time (the outputs written twice) leaves one row per key under FINAL,
// the stream unchanged (JetStream drops the repeated Nats-Msg-Id) and Redis
// unchanged.
func TestReplaySinksWriteWhatIsComputed(t *testing.T) {
	for _, c := range []struct{ name, input, format string }{
		{"coinbase", "exchange/coinbase_ws_capture.txt", "coinbase"},
		{"iex", "pcap/iex_tops16_sample.pcap.gz", "pcap"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := startNATS(t)
			ns.stream(t, "REPLAY")
			dbHTTP, dbNative := chDatabase(t), chDatabase(t)
			rdb := redisClient(t, 11)
			rdb.FlushDB(t.Context())
			args := []string{"replay", "--input", sharedTestdata(t, c.input), "--format", c.format, "--emit", "indicators,windows",
				"--windows", "tumbling:1s:ohlcv,tumbling:10s:vwap,hopping:2s/1s:count",
				"--sink", "redis://" + redisAddr + "/11",
				"--sink", "clickhouse+http://" + chHTTPAddr + "/" + dbHTTP,
				"--sink", "clickhouse://" + chNativeURL + "/" + dbNative,
				"--sink", ns.url()}
			stdout, stderr, rc := qstream(t, args...)
			if rc != 0 {
				t.Fatalf("replay exit %d:\n%s", rc, tail(stderr, 20))
			}
			raw := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
			ind := indicatorLines(t, raw)
			if len(ind) == 0 || countKind(raw, `{"window":`) == 0 {
				t.Fatalf("replay gave %d indicator and %d window lines", len(ind), countKind(raw, `{"window":`))
			}
			check := func(round string) {
				for _, db := range []string{dbHTTP, dbNative} {
					checkClickHouse(t, db, raw, ind)
				}
				msgs := ns.messages(t, "REPLAY")
				payloads := make([]string, len(msgs))
				for i, m := range msgs {
					payloads[i] = m.data
					if want := "qstream." + map[bool]string{true: "windows", false: "indicators"}[strings.HasPrefix(m.data, `{"window":`)] + "."; !strings.HasPrefix(m.subject, want) {
						t.Fatalf("message on %s, want %s<symbol>", m.subject, want)
					}
				}
				if d := diffMultiset(payloads, raw); d != "" {
					t.Fatalf("%s: the stream's %d messages are not the %d lines once each:\n%s", round, len(payloads), len(raw), d)
				}
				checkRedisFeatures(t, rdb, ind, 60*time.Second) // the default ttl
				checkRedisWindows(t, rdb, raw)
			}
			check("first replay")
			if _, stderr, rc := qstream(t, args...); rc != 0 {
				t.Fatalf("second replay exit %d:\n%s", rc, tail(stderr, 20))
			}
			check("second replay")
			t.Logf("%s: %d lines (%d indicator) in ClickHouse ×2, NATS and Redis, twice", c.name, len(raw), len(ind))
		})
	}
}

// indicatorLines parses the indicator lines, by "symbol/seq".
func indicatorLines(t *testing.T, raw []string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, l := range raw {
		if !strings.HasPrefix(l, `{"seq":`) {
			continue
		}
		m := parseLine(t, l)
		k := fmt.Sprint(m["symbol"], "/", m["seq"])
		if _, dup := out[k]; dup {
			t.Fatalf("two indicator lines for %s", k)
		}
		out[k] = m
	}
	return out
}

func parseLine(t *testing.T, l string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(l))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("line %q: %v", l, err)
	}
	return m
}

// sameNumber compares a line's value (a number or null) with a stored one.
func sameNumber(t *testing.T, got, want any) bool {
	t.Helper()
	if want == nil || got == nil {
		return want == nil && got == nil
	}
	g, w := num(t, got), num(t, want)
	return g == w || math.Abs(g-w) <= 1e-12*math.Max(math.Abs(g), math.Abs(w))
}

// checkClickHouse: one row per line under FINAL, every column equal.
func checkClickHouse(t *testing.T, db string, raw []string, ind map[string]map[string]any) {
	t.Helper()
	rows := chRows(t, "SELECT * FROM "+db+".qstream_indicators FINAL")
	if len(rows) != len(ind) {
		t.Fatalf("%s: %d indicator rows under FINAL, %d lines", db, len(rows), len(ind))
	}
	for _, r := range rows {
		l, ok := ind[fmt.Sprint(r["symbol"], "/", r["seq"])]
		if !ok {
			t.Fatalf("%s: row %v is no output line", db, r)
		}
		for k, v := range l {
			if k == "symbol" {
				continue
			}
			if !sameNumber(t, r[k], v) {
				t.Fatalf("%s: column %s: row %v, line %v", db, k, r, l)
			}
		}
	}
	wins := map[string]map[string]any{}
	for _, l := range raw {
		if strings.HasPrefix(l, `{"window":`) {
			m := parseLine(t, l)
			wins[fmt.Sprint(m["window"], m["symbol"], m["start"], m["end"], m["timing"])] = m
		}
	}
	rows = chRows(t, "SELECT * FROM "+db+".qstream_windows FINAL")
	if len(rows) != countKind(raw, `{"window":`) {
		t.Fatalf("%s: %d window rows under FINAL, %d lines", db, len(rows), countKind(raw, `{"window":`))
	}
	for _, r := range rows {
		l := wins[fmt.Sprint(r["window"], r["symbol"], r["start"], r["end"], r["timing"])]
		if l == nil {
			t.Fatalf("%s: window row %v is no output line", db, r)
		}
		if num(t, r["count"]) != num(t, l["count"]) {
			t.Fatalf("%s: count: row %v, line %v", db, r, l)
		}
		if obj, ok := l["value"].(map[string]any); ok {
			var got map[string]any
			d := json.NewDecoder(strings.NewReader(fmt.Sprint(r["value_json"])))
			d.UseNumber()
			if err := d.Decode(&got); err != nil {
				t.Fatalf("%s: value_json of %v: %v", db, r, err)
			}
			for f, v := range obj {
				if !sameNumber(t, got[f], v) {
					t.Fatalf("%s: ohlcv %s: row %v, line %v", db, f, r, l)
				}
			}
		} else if !sameNumber(t, r["value"], l["value"]) {
			t.Fatalf("%s: value: row %v, line %v", db, r, l)
		}
	}
}

// checkRedisFeatures: features:{symbol}:realtime is the symbol's newest
// indicator line (largest ts, then seq) as the feature object, with the
// 60 s expiry.
func checkRedisFeatures(t *testing.T, rdb *redis.Client, ind map[string]map[string]any, ttlMax time.Duration) {
	t.Helper()
	newest := map[string]map[string]any{}
	for _, l := range ind {
		sym := fmt.Sprint(l["symbol"])
		if n, ok := newest[sym]; !ok || num(t, l["ts"]) > num(t, n["ts"]) || num(t, l["ts"]) == num(t, n["ts"]) && num(t, l["seq"]) > num(t, n["seq"]) {
			newest[sym] = l
		}
	}
	ctx := t.Context()
	for sym, want := range newest {
		key := "features:" + sym + ":realtime"
		v, err := rdb.Get(ctx, key).Result()
		if err != nil {
			t.Fatalf("GET %s: %v", key, err)
		}
		got := parseLine(t, v)
		if len(got) != len(want) {
			t.Fatalf("%s = %s, want the fields of %v", key, v, want)
		}
		for k, w := range want {
			if k == "symbol" {
				if got[k] != w {
					t.Fatalf("%s: symbol %v", key, got[k])
				}
				continue
			}
			if !sameNumber(t, got[k], w) {
				t.Fatalf("%s = %s, want %v (field %s)", key, v, want, k)
			}
		}
		ttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > ttlMax {
			t.Fatalf("PTTL %s = %v (%v), want in (0, %s]", key, ttl, err, ttlMax)
		}
	}
}

// checkRedisWindows: window:{spec}:{symbol} is the newest result of the
// spec and symbol (largest end, then timing, then count) as its line.
func checkRedisWindows(t *testing.T, rdb *redis.Client, raw []string) {
	t.Helper()
	rank := map[string]int{"early": 0, "on_time": 1, "late": 2}
	newest := map[string]string{}
	newer := func(a, b map[string]any) bool {
		if num(t, a["end"]) != num(t, b["end"]) {
			return num(t, a["end"]) > num(t, b["end"])
		}
		if rank[fmt.Sprint(a["timing"])] != rank[fmt.Sprint(b["timing"])] {
			return rank[fmt.Sprint(a["timing"])] > rank[fmt.Sprint(b["timing"])]
		}
		return num(t, a["count"]) >= num(t, b["count"])
	}
	for _, l := range raw {
		if !strings.HasPrefix(l, `{"window":`) {
			continue
		}
		m := parseLine(t, l)
		k := fmt.Sprint("window:", m["window"], ":", m["symbol"])
		if cur, ok := newest[k]; !ok || newer(m, parseLine(t, cur)) {
			newest[k] = l
		}
	}
	for k, want := range newest {
		got, err := rdb.Get(t.Context(), k).Result()
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		if got != want {
			t.Fatalf("%s = %s, want %s", k, got, want)
		}
	}
}

// TestRunWebSocketSink: `qstream run --sink ws://...` serves WebSocket
// clients: one without the token is refused, one with it subscribes to the
// indicators of two symbols and receives their --output lines with
// "channel":"indicators" added, and nothing else.
func TestRunWebSocketSink(t *testing.T) {
	addr := freeLoopbackAddr(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	r := startRun(t, "--rate", "2000", "--symbols", "10", "--output", out, "--sink", "ws://"+addr+"/stream?token=s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c *websocket.Conn
	waitUntil(t, "the WebSocket server", 10*time.Second, func() bool {
		_, resp, err := websocket.Dial(ctx, "ws://"+addr+"/stream", nil)
		return err != nil && resp != nil && resp.StatusCode == http.StatusUnauthorized
	})
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/stream", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"op":"subscribe","channels":["indicators"],"symbols":["SYN00001","SYN00002"]}`)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 200 {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		m := parseLine(t, string(b))
		if _, isReply := m["op"]; isReply {
			continue
		}
		if m["channel"] != "indicators" || (m["symbol"] != "SYN00001" && m["symbol"] != "SYN00002") {
			t.Fatalf("unexpected message %s", b)
		}
		got = append(got, strings.Replace(string(b), `,"channel":"indicators"`, "", 1))
	}
	c.Close(websocket.StatusNormalClosure, "")
	if _, err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	_, raw, _ := readOutputs(t, out)
	have := map[string]bool{}
	for _, l := range raw {
		have[l] = true
	}
	for _, g := range got {
		if !have[g] {
			t.Fatalf("WebSocket message %s (without its channel) is no --output line", g)
		}
	}
}

// A --sink that cannot be built refuses the start, naming the sink and the
// parameter, before anything is written: the --output file keeps its
// content and replay writes no line.
func TestSinkRefusedStart(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	if err := os.WriteFile(out, []byte("previous content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"redis://127.0.0.1:6379/0?ttl=forever", "clickhouse+http://127.0.0.1:8123/db?full=maybe", "kafka://127.0.0.1:9092", "ws://127.0.0.1:0/x?queue=0"} {
		s, rc := runBinary(t, dir, time.Minute, outputRunArgs(dir, "--count", "1000", "--output", out, "--sink", bad)...)
		if rc != 2 || !strings.Contains(s, "--sink") {
			t.Fatalf("--sink %s: exit %d, want 2 with an error naming --sink:\n%s", bad, rc, s)
		}
		if b, _ := os.ReadFile(out); string(b) != "previous content\n" {
			t.Fatalf("--sink %s: the refused start changed --output to %q", bad, b)
		}
		stdout, stderr, rc := qstream(t, "replay", "--input", "testdata/ticks.jsonl", "--sink", bad)
		if rc != 2 || stdout != "" {
			t.Fatalf("replay --sink %s: exit %d, %d bytes written:\n%s", bad, rc, len(stdout), stderr)
		}
	}
}
