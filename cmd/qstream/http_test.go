package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain turns the control endpoint off by default in every run the
// tests start, in process or as the built binary ($QSTREAM_HTTP is --http's
// default): parallel runs on the default port would collide. Tests of the
// endpoint pass --http 127.0.0.1:0.
func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv("QSTREAM_HTTP"); !ok {
		os.Setenv("QSTREAM_HTTP", "")
	}
	os.Exit(m.Run())
}

// binRun is the built binary running `qstream run`, its stderr collected
// line by line.
type binRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	more   chan struct{} // signalled on every line
	exited chan struct{} // closed once the process has exited
	err    error         // Wait's, after exited
}

func startBinary(t *testing.T, args ...string) *binRun {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(qstreamBinary(t), append([]string{"run", "--wal-dir", filepath.Join(dir, "wal"),
		"--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq")}, args...)...)
	cmd.Dir = dir
	return startCmd(t, cmd)
}

// startCmd starts cmd and collects its stderr; the cleanup kills it.
func startCmd(t *testing.T, cmd *exec.Cmd) *binRun {
	t.Helper()
	b := &binRun{t: t, cmd: cmd, more: make(chan struct{}, 1), exited: make(chan struct{})}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
			select {
			case b.more <- struct{}{}:
			default:
			}
		}
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.exited
	})
	return b
}

func (b *binRun) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// waitLine waits for a stderr line containing s and returns it.
func (b *binRun) waitLine(s string, d time.Duration) string {
	b.t.Helper()
	deadline := time.After(d)
	for {
		b.mu.Lock()
		for _, l := range b.lines {
			if strings.Contains(l, s) {
				b.mu.Unlock()
				return l
			}
		}
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-b.exited:
			b.t.Fatalf("exited (%v) without a line %q:\n%s", b.err, s, b.stderr())
		case <-deadline:
			b.t.Fatalf("no line %q within %s:\n%s", s, d, b.stderr())
		}
	}
}

// wait waits for the exit and returns its status.
func (b *binRun) wait(d time.Duration) int {
	b.t.Helper()
	select {
	case <-b.exited:
	case <-time.After(d):
		b.t.Fatalf("still running after %s:\n%s", d, b.stderr())
	}
	var ee *exec.ExitError
	if errors.As(b.err, &ee) {
		return ee.ExitCode()
	} else if b.err != nil {
		b.t.Fatal(b.err)
	}
	return 0
}

// httpAddr waits for the control endpoint's address.
func (b *binRun) httpAddr() string {
	b.t.Helper()
	line := b.waitLine("qstream: http: listening on ", 30*time.Second)
	return strings.TrimSpace(line[strings.Index(line, "listening on ")+len("listening on "):])
}

func httpDo(t *testing.T, method, url string) (int, []byte) {
	t.Helper()
	return httpJSON(t, method, url, "")
}

// metricValue returns the value of the first sample of name in /metrics,
// and whether there is one.
func metricValue(t *testing.T, base, name string) (float64, bool) {
	t.Helper()
	code, body := httpDo(t, "GET", base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// hasMetric reports whether /metrics has a sample of name.
func hasMetric(t *testing.T, base, name string) bool {
	t.Helper()
	_, ok := metricValue(t, base, name)
	return ok
}

// scrapeValue returns the value of the first sample of name in /metrics.
func scrapeValue(t *testing.T, base, name string) float64 {
	t.Helper()
	v, ok := metricValue(t, base, name)
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	return v
}

// TestHTTPEndToEnd runs the binary on the synthetic feed with the control
// endpoint, sees the message counter grow between two scrapes, pauses the
// stream (the processed count stops), resumes it (it grows again) and stops
// it through the API: the process stops cleanly with status 0.
func TestHTTPEndToEnd(t *testing.T) {
	b := startBinary(t, "--feed", "synthetic", "--rate", "20000", "--symbols", "20", "--shards", "1",
		"--http", "127.0.0.1:0", "--stream-name", "e2e", "--status-interval", "100ms")
	base := "http://" + b.httpAddr()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := httpDo(t, "GET", base+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after 30s:\n%s", code, b.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := httpDo(t, "GET", base+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	// /readyz says the feeds were started; the synthetic feed's publisher,
	// which the per-feed counters are of, may come a moment later (seen on a
	// loaded machine): wait for it.
	for !hasMetric(t, base, "qstream_messages_total") {
		if time.Now().After(deadline) {
			t.Fatalf("no qstream_messages_total in /metrics 30s after the start:\n%s", b.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m1 := scrapeValue(t, base, "qstream_messages_total")
	time.Sleep(300 * time.Millisecond)
	m2 := scrapeValue(t, base, "qstream_messages_total")
	if !(m2 > m1) {
		t.Fatalf("qstream_messages_total did not grow: %v then %v", m1, m2)
	}
	var streams []struct{ ID, Name, State string }
	code, body := httpDo(t, "GET", base+"/api/streams")
	if code != 200 || json.Unmarshal(body, &streams) != nil || len(streams) != 1 || streams[0].ID != "default" || streams[0].Name != "e2e" || streams[0].State != "running" {
		t.Fatalf("/api/streams: %d %s", code, body)
	}

	if code, body := httpDo(t, "POST", base+"/api/streams/default/pause"); code != 200 || !strings.Contains(string(body), `"state":"paused"`) {
		t.Fatalf("pause: %d %s", code, body)
	}
	time.Sleep(200 * time.Millisecond) // a batch in flight completes
	p1 := scrapeValue(t, base, "qstream_processed_total")
	time.Sleep(500 * time.Millisecond)
	p2 := scrapeValue(t, base, "qstream_processed_total")
	if p2 != p1 {
		t.Fatalf("paused, yet qstream_processed_total moved from %v to %v", p1, p2)
	}
	if v := scrapeValue(t, base, "qstream_paused"); v != 1 {
		t.Fatalf("qstream_paused %v while paused", v)
	}
	b.waitLine("PAUSED (control API)", 10*time.Second) // the status line says so
	if code, body := httpDo(t, "POST", base+"/api/streams/default/resume"); code != 200 || !strings.Contains(string(body), `"state":"running"`) {
		t.Fatalf("resume: %d %s", code, body)
	}
	deadline = time.Now().Add(10 * time.Second)
	for scrapeValue(t, base, "qstream_processed_total") <= p2 {
		if time.Now().After(deadline) {
			t.Fatalf("resumed, yet nothing processed in 10s:\n%s", b.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}

	if code, body := httpDo(t, "POST", base+"/api/streams/default/stop"); code != 202 || !strings.Contains(string(body), `"state":"stopped"`) {
		t.Fatalf("stop: %d %s", code, body)
	}
	if rc := b.wait(30 * time.Second); rc != 0 {
		t.Fatalf("exit status %d after the API's stop, want 0:\n%s", rc, b.stderr())
	}
	if !strings.Contains(b.stderr(), "stopped after") || !strings.Contains(b.stderr(), "checkpoint") {
		t.Fatalf("no clean stop (summary, checkpoint):\n%s", b.stderr())
	}
}

// TestHTTPBusyAddress: a busy --http address fails the start at once with
// an error that names the flag.
func TestHTTPBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := startRun(t, "--count", "1000", "--http", ln.Addr().String())
	s, err := r.wait(t, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "--http "+ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run with a busy --http: %v\n%s", err, s)
	}
}

// blockedOutputRun starts the binary with its output into a pipe nobody
// reads: the write blocks, so a clean stop cannot complete.
func blockedOutputRun(t *testing.T, args ...string) (*binRun, func()) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	dir := t.TempDir()
	cmd := exec.Command(qstreamBinary(t), append(outputRunArgs(dir, "--rate", "0", "--symbols", "10", "--output", "-"), args...)...)
	cmd.Dir = dir
	cmd.Stdout = pw
	b := startCmd(t, cmd)
	pw.Close()
	return b, func() {
		b.waitLine("qstream: running:", 30*time.Second)
		time.Sleep(time.Second) // the pipe and the rings fill
	}
}

// TestStopSecondSignal: a second signal during a stop that cannot complete
// exits at once with 128+signal.
func TestStopSecondSignal(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			b, running := blockedOutputRun(t) // --stop-timeout 30s
			running()
			b.cmd.Process.Signal(c.sig)
			time.Sleep(500 * time.Millisecond)
			select {
			case <-b.exited:
				t.Fatalf("stopped before the second signal (%v): the output was meant to block\n%s", b.err, b.stderr())
			default:
			}
			sent := time.Now()
			b.cmd.Process.Signal(c.sig)
			rc := b.wait(10 * time.Second)
			if rc != c.want || !strings.Contains(b.stderr(), "during the stop: exiting at once with status "+strconv.Itoa(c.want)) {
				t.Fatalf("exit status %d after a second %s, want %d and a message:\n%s", rc, c.sig, c.want, b.stderr())
			}
			if took := time.Since(sent); took > 5*time.Second {
				t.Fatalf("exited %s after the second signal, want at once", took)
			}
		})
	}
}

// TestStopTimeout: a stop that cannot complete ends after --stop-timeout
// with status 1, whether a signal or the control API began it.
func TestStopTimeout(t *testing.T) {
	for _, via := range []string{"signal", "api"} {
		t.Run(via, func(t *testing.T) {
			args := []string{"--stop-timeout", "2s"}
			if via == "api" {
				args = append(args, "--http", "127.0.0.1:0")
			}
			b, running := blockedOutputRun(t, args...)
			var addr string
			if via == "api" {
				addr = b.httpAddr()
			}
			running()
			sent := time.Now()
			if via == "api" {
				deadline := time.Now().Add(20 * time.Second)
				for {
					code, body := httpDo(t, "POST", "http://"+addr+"/api/streams/default/stop")
					if code == 202 {
						break
					}
					if time.Now().After(deadline) { // 503 until ready
						t.Fatalf("stop: %d %s", code, body)
					}
					time.Sleep(50 * time.Millisecond)
				}
			} else {
				b.cmd.Process.Signal(syscall.SIGTERM)
			}
			rc := b.wait(30 * time.Second)
			took := time.Since(sent)
			if rc != 1 || !strings.Contains(b.stderr(), "not stopped 2s after the stop began (--stop-timeout)") {
				t.Fatalf("exit status %d, want 1 and the --stop-timeout message:\n%s", rc, b.stderr())
			}
			if took < 2*time.Second || took > 10*time.Second {
				t.Fatalf("exited %s after the stop began, want about 2s", took)
			}
		})
	}
}
