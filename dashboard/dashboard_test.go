package dashboard

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

func TestHandlerServesThePage(t *testing.T) {
	srv := httptest.NewServer(Handler("/", func() Config {
		return Config{WS: "ws://127.0.0.1:9/stream", API: "/api", Metrics: "/metrics", Stream: "default"}
	}))
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		r, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r, string(b)
	}
	r, body := get("/")
	if r.StatusCode != 200 || !strings.Contains(body, `<script src="app.js">`) || !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %q", r.StatusCode, body[:min(len(body), 200)])
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("no CSP: %q", csp)
	}
	for _, f := range []string{"/app.js", "/style.css"} {
		if r, body := get(f); r.StatusCode != 200 || len(body) < 100 {
			t.Fatalf("%s: %d, %d bytes", f, r.StatusCode, len(body))
		}
	}
	r, body = get("/config.json")
	var c Config
	if err := json.Unmarshal([]byte(body), &c); err != nil || c.Stream != "default" || c.WS == "" {
		t.Fatalf("config.json: %d %s %v", r.StatusCode, body, err)
	}
	if r, _ := get("/nothing.js"); r.StatusCode != 404 {
		t.Fatalf("a missing asset: %d", r.StatusCode)
	}
}

// TestScriptParses checks app.js with node --check, when node is there
// (the browser test in cmd/qstream runs it for real).
func TestScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to check the dashboard's script (Debian's nodejs package): %v", err)
	}
	if out, err := exec.Command(node, "--check", "static/app.js").CombinedOutput(); err != nil {
		t.Fatalf("app.js: %v\n%s", err, out)
	}
}
