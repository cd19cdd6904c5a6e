package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// twoStreamConfig is a configuration of two streams with different
// operators on the synthetic feed (different seeds), each with its own
// --output, the WAL and checkpoints under dir, and the control endpoint on
// a free port.
func twoStreamConfig(t *testing.T, dir string, count, rate int) string {
	t.Helper()
	cfg := fmt.Sprintf(`wal:
  dir: %[1]s/wal
checkpoint:
  dir: %[1]s/ckpt
  final: true
status_interval: 1h
http:
  addr: 127.0.0.1:0
  dashboard: false
streams:
  - name: ticks
    source:
      synthetic: {symbols: 40, rate: %[3]d, seed: 7, count: %[2]d, flush_every: 256}
    parallelism: 2
    checkpoint_interval: 50ms
    error_handling: {dead_letter_dir: %[1]s/dlq}
    indicators: [sma:5, rsi:14]
    output: %[1]s/ticks.jsonl
  - name: bars
    source:
      synthetic: {symbols: 30, rate: %[3]d, seed: 8, count: %[2]d, flush_every: 256}
    parallelism: 2
    checkpoint_interval: 50ms
    error_handling: {dead_letter_dir: %[1]s/dlq}
    indicators: []
    windows: [tumbling:1ms:vwap, session:50us:count]
    output: %[1]s/bars.jsonl
`, dir, count, rate)
	path := filepath.Join(dir, "streams.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lateStream is the stream the tests start through POST /api/streams.
func lateStream(dir string, count, rate int) string {
	return fmt.Sprintf(`{"name":"late","source":{"synthetic":{"symbols":20,"rate":%d,"seed":9,"count":%d}},
"parallelism":2,"checkpoint_interval":"50ms","error_handling":{"dead_letter_dir":%q},
"indicators":["ema:3"],"output":%q}`, rate, count, filepath.Join(dir, "dlq"), filepath.Join(dir, "late.jsonl"))
}

func httpJSON(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %d, reading the body: %v (after %d bytes)", method, url, resp.StatusCode, err, len(b))
	}
	return resp.StatusCode, b
}

type apiStream struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Messages uint64 `json:"messages"`
}

func listStreams(t *testing.T, base string) map[string]apiStream {
	t.Helper()
	code, body := httpJSON(t, "GET", base+"/api/streams", "")
	if code != 200 {
		t.Fatalf("GET /api/streams: %d %s", code, body)
	}
	var list []apiStream
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]apiStream{}
	for _, s := range list {
		out[s.ID] = s
	}
	return out
}

// Two streams from one configuration file in one engine, a third started
// over HTTP; one paused while the others run; each stream's output equals
// the output of a run of that stream alone.
func TestRunSeveralStreams(t *testing.T) {
	dir := t.TempDir()
	cfg := twoStreamConfig(t, dir, 0, 20000) // until stopped
	cmd := exec.Command(qstreamBinary(t), "run", "--config", cfg)
	cmd.Dir = dir
	b := startCmd(t, cmd)
	base := "http://" + b.httpAddr()
	b.waitLine("qstream: stream bars: running", 30*time.Second)
	waitReady(t, base)

	// late also writes to Redis: its sink is in the control API's metrics.
	withSink := strings.Replace(lateStream(dir, 0, 20000), `"indicators"`, `"sinks":["redis://`+redisAddr+`/13"],"indicators"`, 1)
	code, body := httpJSON(t, "POST", base+"/api/streams", withSink)
	if code != 201 {
		t.Fatalf("POST /api/streams: %d %s", code, body)
	}
	for _, bad := range []struct {
		body string
		code int
	}{
		{lateStream(dir, 0, 1), 409},                                    // the same name
		{`{"name":"x","windows":["tumbling:soon:vwap"]}`, 400},          // invalid window
		{`{"name":"x","parallelism":1}`, 400},                           // the engine has 2 shards
		{`{"name":"x","frobnicate":1}`, 400},                            // unknown field
		{`{"name":"x",`, 400},                                           // malformed
		{`{"name":"x","sinks":["archive:///tmp/x"]}`, 400},              // the first stream's
		{`{"name":"x","source":{"synthetic":{"rate":-1}}}`, 400},        // invalid value
		{`{"name":"bad name","source":{"synthetic":{"count":1}}}`, 400}, // invalid id
	} {
		if code, body := httpJSON(t, "POST", base+"/api/streams", bad.body); code != bad.code {
			t.Fatalf("POST %s: %d %s, want %d", bad.body, code, body, bad.code)
		}
	}
	waitFor(t, 20*time.Second, "three streams processing", func() bool {
		s := listStreams(t, base)
		return len(s) == 3 && s["default"].Messages > 0 && s["bars"].Messages > 0 && s["late"].Messages > 0
	})
	if s := listStreams(t, base); s["default"].Name != "ticks" {
		t.Fatalf("the first stream: %+v", s["default"])
	}
	waitFor(t, 20*time.Second, "late's sink in /metrics", func() bool {
		_, m := httpJSON(t, "GET", base+"/metrics", "")
		return bytes.Contains(m, []byte(`qstream_sink_written_total{sink="late:redis`)) && !bytes.Contains(m, []byte(`qstream_sink_written_total{sink="late:redis://`+redisAddr+`/13"} 0`))
	})

	// Pause bars; the others run on.
	if code, body := httpJSON(t, "POST", base+"/api/streams/bars/pause", ""); code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	time.Sleep(100 * time.Millisecond) // what was in its rings drains
	before := listStreams(t, base)
	time.Sleep(400 * time.Millisecond)
	after := listStreams(t, base)
	if after["bars"].Messages != before["bars"].Messages || after["bars"].State != "paused" {
		t.Fatalf("paused bars went on: %+v then %+v", before["bars"], after["bars"])
	}
	if after["default"].Messages <= before["default"].Messages || after["late"].Messages <= before["late"].Messages {
		t.Fatalf("the other streams stopped while bars was paused: %+v then %+v", before, after)
	}
	if code, body := httpJSON(t, "POST", base+"/api/streams/bars/resume", ""); code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "bars going on", func() bool { return listStreams(t, base)["bars"].Messages > after["bars"].Messages })

	// Windows on the stream started at run time.
	if code, body := httpJSON(t, "POST", base+"/api/streams/late/windows", `{"spec":"tumbling:1ms:count"}`); code != 201 {
		t.Fatalf("POST window: %d %s", code, body)
	}
	// One message processed synchronously on late: its ema_3 line comes back.
	code, body = httpJSON(t, "POST", base+"/api/streams/late/messages",
		`{"type":"trade","symbol":"MSG1","ts":4000000000000000000,"price":12.5,"volume":3}`)
	var reply struct {
		Outputs []map[string]any `json:"outputs"`
	}
	if code != 200 || json.Unmarshal(body, &reply) != nil || len(reply.Outputs) != 1 || reply.Outputs[0]["symbol"] != "MSG1" ||
		reply.Outputs[0]["price"] != 12.5 {
		t.Fatalf("POST messages: %d %s", code, body)
	}
	if _, ok := reply.Outputs[0]["ema_3"]; !ok {
		t.Fatalf("POST messages: no ema_3 in %s", body)
	}
	for _, bad := range []struct {
		body, code string
		status     int
	}{
		{`{"type":"trade","symbol":"MSG1","ts":4000000000000000001,"price":-1,"volume":3}`, "invalid_message", 400},
		{`{"type":"trade",`, "invalid_message", 400},
	} {
		code, body := httpJSON(t, "POST", base+"/api/streams/late/messages", bad.body)
		if code != bad.status || !bytes.Contains(body, []byte(bad.code)) {
			t.Fatalf("POST messages %s: %d %s", bad.body, code, body)
		}
	}
	// bars' windows are past this event time: late, a 422 with the reason.
	if code, body := httpJSON(t, "POST", base+"/api/streams/bars/messages", `{"type":"trade","symbol":"SYN00001","ts":1000,"price":10,"volume":1}`); code != 422 ||
		!bytes.Contains(body, []byte(`"reason":"late"`)) {
		t.Fatalf("a late message: %d %s", code, body)
	}
	if code, _ := httpJSON(t, "POST", base+"/api/streams/nope/messages", `{}`); code != 404 {
		t.Fatalf("messages to an unknown stream: %d", code)
	}
	// Stop late alone: its feed ends, the others run on.
	if code, body := httpJSON(t, "POST", base+"/api/streams/late/stop", ""); code != 202 {
		t.Fatalf("stop late: %d %s", code, body)
	}
	b.waitLine("qstream: stream late: stopped", 30*time.Second)
	if code, _ := httpJSON(t, "GET", base+"/api/streams/late", ""); code != 404 {
		t.Fatalf("a stopped stream: %d", code)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	if code := b.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, b.stderr())
	}
	for _, name := range []string{"ticks", "bars", "late"} {
		got, dups := readCrashOutputs(t, filepath.Join(dir, name+".jsonl"))
		if len(got) == 0 || dups != 0 {
			t.Fatalf("%s: %d outputs, %d duplicates", name, len(got), dups)
		}
	}
	// The streams' outputs are their own: ticks has indicator lines only,
	// bars window lines only.
	for name, want := range map[string]string{"ticks": `{"seq":`, "bars": `{"window":`} {
		data, err := os.ReadFile(filepath.Join(dir, name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			if !bytes.HasPrefix(l, []byte(want)) {
				t.Fatalf("%s holds %s", name, l)
			}
		}
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	waitFor(t, 30*time.Second, "/readyz", func() bool { code, _ := httpJSON(t, "GET", base+"/readyz", ""); return code == 200 })
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two streams of the configuration and one started over HTTP, with a window
// created over HTTP, killed with SIGKILL at random moments and restarted
// on the same directories until they complete: both configured streams and
// the run-time one come back after every kill (the run-time one with its
// window), and each stream's output equals an uninterrupted run's: nothing
// lost, nothing twice. QSTREAM_CRASH_KILLS sets the kills (make test: 3).
func TestStreamsCrashRecovery(t *testing.T) {
	kills := envInt(t, "QSTREAM_CRASH_KILLS", 5)
	kills = max(3, kills*3/5)
	const count = 120_000
	seed := uint64(envInt(t, "QSTREAM_CRASH_SEED", int(time.Now().UnixNano()&0xFFFFFFF)))
	t.Logf("%d kills, QSTREAM_CRASH_SEED=%d", kills, seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	bin := qstreamBinary(t)

	// run starts an incarnation; on the first it starts late and its window.
	run := func(dir string, first bool, killAfter time.Duration) (*binRun, bool) {
		cmd := exec.Command(bin, "run", "--config", twoStreamConfig(t, dir, count, 60_000))
		cmd.Dir = dir
		b := startCmd(t, cmd)
		base := "http://" + b.httpAddr()
		if first {
			waitReady(t, base)
			if code, body := httpJSON(t, "POST", base+"/api/streams", lateStream(dir, count, 60_000)); code != 201 {
				t.Fatalf("POST /api/streams: %d %s", code, body)
			}
			if code, body := httpJSON(t, "POST", base+"/api/streams/late/windows", `{"spec":"tumbling:1ms:count"}`); code != 201 {
				t.Fatalf("POST window: %d %s", code, body)
			}
		} else {
			// Killed before its recovery finished or not, the run-time
			// stream is back once the process is ready.
			select {
			case <-b.exited:
				return b, false
			default:
			}
		}
		if killAfter > 0 {
			time.AfterFunc(killAfter, func() { b.cmd.Process.Signal(syscall.SIGKILL) })
		}
		if !first && killAfter == 0 || !first && killAfter > 300*time.Millisecond {
			ready := func() bool { code, _ := httpJSON(t, "GET", base+"/readyz", ""); return code == 200 }
			deadline := time.Now().Add(20 * time.Second)
			for !ready() && time.Now().Before(deadline) {
				select {
				case <-b.exited:
					return b, false
				case <-time.After(10 * time.Millisecond):
				}
			}
			if ready() {
				s := listStreams(t, base)
				if len(s) != 3 || s["late"].ID != "late" || s["bars"].ID != "bars" {
					t.Fatalf("after recovery: streams %+v", s)
				}
				code, body := httpJSON(t, "GET", base+"/api/streams/late/windows", "")
				if code != 200 || !bytes.Contains(body, []byte("tumbling:1ms:count")) {
					t.Fatalf("late's run-time window after recovery: %d %s", code, body)
				}
				return b, true
			}
		}
		return b, false
	}

	refDir := t.TempDir()
	began := time.Now()
	ref, _ := run(refDir, true, 0)
	if code := ref.wait(3 * time.Minute); code != 0 {
		t.Fatalf("reference run: exit %d:\n%s", code, ref.stderr())
	}
	refTook := time.Since(began)
	t.Logf("reference run: %s", refTook.Round(time.Millisecond))
	checked, done := 0, 0
	for cycle := 0; done < kills; cycle++ {
		dir := t.TempDir()
		for inc := 0; ; inc++ {
			if inc > 3*kills+10 {
				t.Fatalf("cycle %d: no completion after %d incarnations", cycle, inc)
			}
			var killAfter time.Duration
			if done < kills {
				killAfter = time.Duration(100+rng.IntN(int(refTook.Milliseconds()))) * time.Millisecond
			}
			b, ok := run(dir, inc == 0, killAfter)
			if ok {
				checked++
			}
			code := b.wait(3 * time.Minute)
			if code == 0 {
				break
			}
			var ee *exec.ExitError
			if killAfter == 0 || b.err == nil || !asExit(b.err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
				t.Fatalf("cycle %d incarnation %d: exit %d, not a kill:\n%s", cycle, inc, code, b.stderr())
			}
			done++
		}
		for _, name := range []string{"ticks", "bars", "late"} {
			want, _ := readCrashOutputs(t, filepath.Join(refDir, name+".jsonl"))
			got, dups := readCrashOutputs(t, filepath.Join(dir, name+".jsonl"))
			if name == "late" {
				// The run-time window's results depend on when it was
				// created: compare the indicator lines.
				want, got = indicatorKeys(t, filepath.Join(refDir, name+".jsonl")), indicatorKeys(t, filepath.Join(dir, name+".jsonl"))
			}
			if dups != 0 {
				t.Fatalf("cycle %d: %s: %d duplicate outputs", cycle, name, dups)
			}
			if len(got) != len(want) {
				t.Fatalf("cycle %d: %s: %d outputs after %d kills, want %d", cycle, name, len(got), done, len(want))
			}
			for k, h := range want {
				if got[k] != h {
					t.Fatalf("cycle %d: %s: an output differs from the uninterrupted run's or is missing", cycle, name)
				}
			}
			t.Logf("cycle %d: %s: %d outputs, equal to the uninterrupted run", cycle, name, len(want))
		}
	}
	if checked == 0 {
		t.Fatal("no incarnation was seen with its streams recovered")
	}
	t.Logf("%d kills, %d incarnations checked after recovery", done, checked)
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// indicatorKeys keys the indicator lines of an output file as
// readCrashOutputs does.
func indicatorKeys(t *testing.T, path string) map[uint64]uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]uint64{}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if i := bytes.Index(l, []byte(`,"ts":`)); bytes.HasPrefix(l, []byte(`{"seq":`)) && i > 0 {
			out[hash64(l[:i])] = hash64(l)
		}
	}
	return out
}
