package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"

	"qstream/dashboard"
	"qstream/engine"
	"qstream/ops"
	"qstream/sinks"
)

// The dashboard (package dashboard) is served at / of the control endpoint
// and fed by a WebSocket server of its own (the WebSocket sink's server, on
// the control endpoint's host and a free port), which gets every output as
// the engine hands it over. It is a view: it is not a sink of the run (no
// queue, spill or checkpoint mark), and a slow browser is conflated and
// closed as the sink does with any client.

// registerDashboard adds --dashboard.
func registerDashboard(fs *flag.FlagSet, on *bool) {
	fs.BoolVar(on, "dashboard", true, `serve the live dashboard at / of --http (README "Dashboard"); it needs --http`)
}

// dashboardWS is the dashboard's WebSocket server.
type dashboardWS struct {
	ws *sinks.WSServer
}

// openDashboard starts the dashboard's WebSocket server on host (the
// control endpoint's), or returns nil when the dashboard is off.
func openDashboard(on bool, ctl *controlHTTP, jcfg sinks.JSONLConfig, log *slog.Logger, stderr io.Writer) (*dashboardWS, error) {
	if !on || ctl == nil {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(ctl.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	// The page's origin is the control endpoint's address; bound to all
	// interfaces, the browser's host name is not known here.
	origin := ctl.ln.Addr().String()
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		origin = "*"
	}
	u, err := url.Parse("ws://" + net.JoinHostPort(host, "0") + "/stream?origin=" + url.QueryEscape(origin))
	if err != nil {
		return nil, err
	}
	jcfg.Kinds = nil
	ws, err := sinks.NewWSServer(u, sinks.Env{JSONL: jcfg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	if err := ws.Open(context.Background()); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	fmt.Fprintf(stderr, "qstream: dashboard: http://%s/ (live outputs on ws://%s/stream)\n", ctl.ln.Addr(), ws.Addr())
	return &dashboardWS{ws: ws}, nil
}

// page is the page's handler for the control endpoint; nil without the
// dashboard. The page shows the stream by its id, "default".
func (d *dashboardWS) page(string) http.Handler {
	if d == nil {
		return nil
	}
	return dashboard.Handler("/", func() dashboard.Config {
		return dashboard.Config{WS: "ws://" + d.ws.Addr().String() + "/stream", API: "/api", Metrics: "/metrics", Stream: string(engine.DefaultStream)}
	})
}

func (d *dashboardWS) close() {
	if d != nil {
		d.ws.Close()
	}
}

// tee returns next with the dashboard's server fed too, after next (a
// CheckpointedOutput stays one).
func (d *dashboardWS) tee(next engine.OutputHandler) engine.OutputHandler {
	if d == nil {
		return next
	}
	t := &dashTee{next: next, ws: d.ws}
	if ck, ok := next.(engine.CheckpointedOutput); ok {
		return &dashTeeCk{dashTee: t, ck: ck}
	}
	return t
}

type dashTee struct {
	next engine.OutputHandler
	ws   *sinks.WSServer
}

func (t *dashTee) HandleOutputs(outs []ops.Output) error {
	var err error
	if t.next != nil {
		err = t.next.HandleOutputs(outs)
	}
	_ = t.ws.WriteBatch(context.Background(), outs) // a view: never holds the engine back
	return err
}

type dashTeeCk struct {
	*dashTee
	ck engine.CheckpointedOutput
}

func (t *dashTeeCk) CheckpointOutput() ([]byte, error) { return t.ck.CheckpointOutput() }
func (t *dashTeeCk) RestoreOutput(hwm []byte) error    { return t.ck.RestoreOutput(hwm) }
