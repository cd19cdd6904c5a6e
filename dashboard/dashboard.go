// Package dashboard is qstream's live dashboard: a page served by `qstream
// run` that shows the stream's state (with pause and resume), throughput and
// latency percentiles over time from the Prometheus endpoint, a per-symbol
// price chart with its SMA, EMA and VWAP and an RSI panel, window results,
// pattern alerts and the news feed with sentiment, fed live through the
// WebSocket sink. Its assets are embedded in the binary: plain HTML, CSS and
// JavaScript drawing on canvas, no library and no network access beyond the
// engine's own endpoints.
package dashboard

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Config tells the page where its data comes from.
type Config struct {
	// WS is the WebSocket sink's URL (ws://127.0.0.1:8090/stream); a host
	// of 0.0.0.0, [::] or 127.0.0.1 is replaced by the host the browser
	// loaded the page from, so a dashboard opened from another machine
	// reaches the sink on the same host. Empty: no live outputs.
	WS string `json:"ws"`
	// API is the control API's base path on the page's own origin ("/api").
	API string `json:"api"`
	// Metrics is the Prometheus endpoint's path ("/metrics").
	Metrics string `json:"metrics"`
	// Stream is the id of the stream the page shows ("default").
	Stream string `json:"stream"`
	// Token is the WebSocket sink's token, if it has one.
	Token string `json:"token,omitempty"`
}

// Handler serves the page and its assets at the paths under prefix (which
// ends in "/": "/" for the root) and the page's configuration, which cfg
// gives when the page asks (the WebSocket sink's port is known only once it
// listens), at prefix+"config.json".
func Handler(prefix string, cfg func() Config) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"config.json", func(w http.ResponseWriter, _ *http.Request) {
		conf, err := json.Marshal(cfg())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(conf)
	})
	mux.Handle("GET "+prefix, http.StripPrefix(prefix[:len(prefix)-1], headers(files)))
	return mux
}

// headers sets the page's security headers: nothing loads from elsewhere
// but the engine's WebSocket.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
