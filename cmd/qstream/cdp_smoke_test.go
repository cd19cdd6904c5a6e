package main

import (
	"net/http/httptest"
	"testing"
	"time"

	"qstream/dashboard"
)

// TestDashboardPageStandalone: the page loads in headless Chromium without
// an engine behind it, runs its script (window.qstreamDashboard) and says
// what it cannot reach instead of failing silently.
func TestDashboardPageStandalone(t *testing.T) {
	srv := httptest.NewServer(dashboard.Handler("/", func() dashboard.Config {
		return dashboard.Config{API: "/api", Metrics: "/metrics", Stream: "default"}
	}))
	defer srv.Close()
	c := startChromium(t)
	c.navigate(t, srv.URL+"/")
	c.waitFor(t, "the page's script", `document.title === "qstream dashboard" && !!window.qstreamDashboard`, 10*time.Second)
	c.waitFor(t, "an error shown for the missing API", `document.getElementById("error").textContent.length > 0`, 10*time.Second)
	var s struct {
		WS     bool   `json:"ws"`
		Polls  int    `json:"polls"`
		Errors int    `json:"errors"`
		State  string `json:"state"`
	}
	c.eval(t, "window.qstreamDashboard.stats()", &s)
	if s.WS || s.Polls != 0 || s.Errors == 0 {
		t.Fatalf("stats without an engine: %+v", s)
	}
}
