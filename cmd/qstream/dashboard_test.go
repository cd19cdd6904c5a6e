package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// dashStats is window.qstreamDashboard.stats().
type dashStats struct {
	Indicators        int    `json:"indicators"`
	Windows           int    `json:"windows"`
	Patterns          int    `json:"patterns"`
	Metrics           int    `json:"metrics"`
	Polls             int    `json:"polls"`
	WS                bool   `json:"ws"`
	State             string `json:"state"`
	Symbols           int    `json:"symbols"`
	Points            int    `json:"points"`
	ThroughputSamples int    `json:"throughputSamples"`
	LatencySamples    int    `json:"latencySamples"`
	Errors            int    `json:"errors"`
}

// TestDashboardInChromium opens the dashboard of `qstream run` on the
// synthetic feed in headless Chromium (Debian's package): the charts get
// live data (indicator points, window rows, pattern alerts, throughput and
// latency samples, pixels drawn), the page's Pause button pauses the stream
// (the API says paused and the live outputs stop) and Resume resumes it;
// a screenshot is saved (QSTREAM_SCREENSHOT names the file, else the test's
// temporary directory).
func TestDashboardInChromium(t *testing.T) {
	dir := t.TempDir()
	pats := filepath.Join(dir, "patterns.json")
	if err := os.WriteFile(pats, []byte(`[{"id":"up","type":"price_breakout","threshold":0.001,"timeframe":"2s"},
		{"id":"golden","type":"technical_signal","signal":"sma_cross","fast":3,"slow":8}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, "--feed", "synthetic", "--symbols", "8", "--rate", "2000", "--http", "127.0.0.1:0",
		"--indicators", "sma:5,ema:12,rsi:14,vwap", "--windows", "tumbling:1s:ohlcv", "--patterns", pats)
	addr := r.addr(t, "http")
	c := startChromium(t)
	c.navigate(t, "http://"+addr+"/")
	c.waitFor(t, "the page's script", `!!window.qstreamDashboard`, 15*time.Second)
	c.waitFor(t, "live data in every chart", `(() => { const s = window.qstreamDashboard.stats();
		return s.ws && s.state === "running" && s.indicators > 200 && s.points > 20 && s.windows > 0 && s.patterns > 0 &&
			s.throughputSamples >= 2 && s.latencySamples >= 1; })()`, 30*time.Second)
	// The charts are drawn: the price and throughput canvases have pixels.
	var drawn bool
	c.eval(t, `["price", "rsi", "throughput", "latency"].every((id) => {
		const cv = document.getElementById(id), d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
		let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
		return n > 500; })`, &drawn)
	if !drawn {
		t.Fatal("a chart canvas is (nearly) empty")
	}
	var rows int
	c.eval(t, `document.querySelectorAll("#windows tbody tr").length + document.querySelectorAll("#patterns li").length`, &rows)
	if rows == 0 {
		t.Fatal("no window rows or pattern alerts on the page")
	}
	var streamRows int
	c.eval(t, `document.querySelectorAll("#streams tbody tr[data-stream] .stream-pause").length`, &streamRows)
	if streamRows < 1 {
		t.Fatal("no stream rows with their buttons in the streams table")
	}
	shot := os.Getenv("QSTREAM_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	c.screenshot(t, shot)
	t.Logf("screenshot: %s", shot)

	stats := func() dashStats {
		var s dashStats
		c.eval(t, "window.qstreamDashboard.stats()", &s)
		return s
	}
	apiState := func() string {
		resp, err := http.Get("http://" + addr + "/api/streams/default")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct{ State string }
		json.NewDecoder(resp.Body).Decode(&s)
		return s.State
	}

	// Pause from the page.
	c.eval(t, `document.getElementById("pause").click(), true`, nil)
	c.waitFor(t, "the page to show paused", `window.qstreamDashboard.stats().state === "paused" && document.getElementById("resume").disabled === false`, 10*time.Second)
	if st := apiState(); st != "paused" {
		t.Fatalf("the API says %q after Pause on the page", st)
	}
	time.Sleep(500 * time.Millisecond) // outputs already on their way
	before := stats().Indicators
	time.Sleep(1500 * time.Millisecond)
	if after := stats().Indicators; after != before {
		t.Fatalf("paused, the page still got %d indicator lines", after-before)
	}
	// Resume from the page.
	c.eval(t, `document.getElementById("resume").click(), true`, nil)
	c.waitFor(t, "the page to show running", `window.qstreamDashboard.stats().state === "running"`, 10*time.Second)
	if st := apiState(); st != "running" {
		t.Fatalf("the API says %q after Resume on the page", st)
	}
	c.waitFor(t, "live data again", `window.qstreamDashboard.stats().indicators > `+itoa(before+100), 20*time.Second)
	if s := stats(); s.Errors != 0 {
		t.Fatalf("the page reported %d errors: %+v", s.Errors, s)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
