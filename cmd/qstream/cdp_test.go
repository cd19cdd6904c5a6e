package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// chromium is a headless Debian Chromium driven over the DevTools protocol
// (CDP): enough to open a page, evaluate JavaScript in it and take a
// screenshot, for the dashboard's browser test. The test set-up
// (scripts/services.sh) installs Debian's chromium package.
type chromium struct {
	cmd  *exec.Cmd
	conn *websocket.Conn
	mu   sync.Mutex
	next int
}

const chromiumPath = "/usr/bin/chromium"

func startChromium(t *testing.T) *chromium {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: install Debian's chromium package (make services does, as root): %v", chromiumPath, err)
	}
	dir := t.TempDir()
	// The flags of a closed network: without the background-networking
	// ones Chromium keeps trying (and failing) to reach Google's hosts.
	cmd := exec.Command(chromiumPath, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--window-size=1280,1400", "--user-data-dir="+dir, "--remote-debugging-port=0", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helper processes go with it
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	c := &chromium{cmd: cmd}
	t.Cleanup(func() {
		if c.conn != nil {
			c.conn.CloseNow()
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		time.Sleep(100 * time.Millisecond) // the group's last writes to the profile
	})
	// Chromium writes its DevTools port into the profile directory.
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if err == nil && strings.Contains(string(b), "\n") {
			port = strings.SplitN(string(b), "\n", 2)[0]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if port == "" {
		t.Fatal("chromium did not open its DevTools port within 30s")
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	for time.Now().Before(deadline) {
		r, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err == nil {
			err = json.NewDecoder(r.Body).Decode(&targets)
			r.Body.Close()
		}
		if err == nil && len(targets) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			conn, _, err := websocket.Dial(context.Background(), tg.WebSocketDebuggerURL, nil)
			if err != nil {
				t.Fatalf("DevTools: %v", err)
			}
			conn.SetReadLimit(64 << 20) // screenshots
			c.conn = conn
			return c
		}
	}
	t.Fatalf("chromium has no page target: %+v", targets)
	return nil
}

// call sends one CDP command and returns its result, skipping the events
// that arrive meanwhile.
func (c *chromium) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	id := c.next
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		var r struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &r) != nil || r.ID != id {
			continue
		}
		if r.Error != nil {
			t.Fatalf("%s: %s", method, r.Error.Message)
		}
		return r.Result
	}
}

func (c *chromium) navigate(t *testing.T, url string) {
	c.call(t, "Page.navigate", map[string]any{"url": url})
}

// eval evaluates expr in the page (awaiting a promise) into out.
func (c *chromium) eval(t *testing.T, expr string, out any) {
	t.Helper()
	res := c.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if e := r.ExceptionDetails; e != nil {
		d := e.Text
		if e.Exception != nil {
			d = e.Exception.Description
		}
		t.Fatalf("%s: %s", expr, d)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			t.Fatalf("%s: %v (%s)", expr, err, r.Result.Value)
		}
	}
}

// screenshot saves a PNG of the page.
func (c *chromium) screenshot(t *testing.T, path string) {
	t.Helper()
	res := c.call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var r struct{ Data string }
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(b) < 1000 {
		t.Fatalf("screenshot: %d bytes, %v", len(b), err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor evaluates expr (a boolean) until it is true.
func (c *chromium) waitFor(t *testing.T, what, expr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ok bool
		c.eval(t, expr, &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var stats any
			c.eval(t, "window.qstreamDashboard ? window.qstreamDashboard.stats() : null", &stats)
			t.Fatalf("%s: not within %s (dashboard stats %v)", what, d, fmt.Sprint(stats))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
