// Package control is qstream's control and observability endpoint: an
// http.Handler with the health and readiness probes, Prometheus metrics,
// pprof and the stream API (pause, resume and stop the stream; its metrics,
// lag and throughput; windows and patterns at run time).
//
// An engine runs one or more streams (engine.StreamInfo): the handler
// serves the first under the id "default" (StreamID) and its name, the
// others by their ids; POST /api/streams starts one (Options.StartStream).
//
// Nothing here touches the hot path: metrics are read from the engine's and
// the sinks' counters when Prometheus scrapes (a custom Collector), and the
// throughput ring is filled by one goroutine once per second (Run).
//
// Every error is JSON, {"error":"code","message":"..."}, with its status:
// 400 for a malformed body, an unknown field or an invalid spec, 401 without
// the bearer token (when one is configured), 404 for an unknown stream,
// window or pattern, 405 for a wrong method, 413 for a body over
// Options.MaxBodyBytes, 409 for a stream that stops, 501 for what is not
// built, 503 before the stream is ready.
package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"qstream/internal/rate"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"qstream/engine"
	"qstream/sinks"
)

// StreamID is the id under which the API serves the engine's first stream
// (engine.DefaultStream; its configured name works too).
const StreamID = "default"

// DefaultMaxBodyBytes is Options.MaxBodyBytes when it is 0.
const DefaultMaxBodyBytes = 1 << 20

// Options configure a Server.
type Options struct {
	// Engine runs the stream. Required.
	Engine *engine.Engine
	// StreamName is the stream's name ("default" when empty).
	StreamName string
	// Token, when not empty, is the bearer token every endpoint but
	// /healthz and /readyz requires (Authorization: Bearer <token>).
	Token string
	// Dashboard serves the dashboard's page and assets (package
	// dashboard) at /, /app.js, /style.css and /config.json, without the
	// bearer token (the page holds no data; its API calls need the token
	// like any other). nil: / is a 404.
	Dashboard http.Handler
	// Stop asks the stream to stop as SIGTERM does: drain, final
	// checkpoint, exit. It must not block. nil: the stop endpoint answers
	// 501.
	Stop func()
	// StartStream starts a stream from the body of POST /api/streams (one
	// stream of the configuration file, YAML or JSON): its operators,
	// sinks and feeds. A *ConfigError is the request's fault (400). nil:
	// the endpoint answers 501.
	StartStream func(ctx context.Context, def []byte) (engine.StreamID, error)
	// StopStream stops a stream other than the first (its feeds close,
	// its windows fire, its sinks flush). It may block. nil: 501.
	StopStream func(id engine.StreamID) error
	// ProcessMessage processes one message (the body of POST
	// /api/streams/{id}/messages: a JSON message of the feeds' format)
	// synchronously on the stream and returns the JSON list of the output
	// lines it made (engine.ProcessMessage). A *MessageError is the
	// message's fault. nil: the endpoint answers 501.
	ProcessMessage func(ctx context.Context, id engine.StreamID, body []byte) (json.RawMessage, error)
	// Logger for what an asynchronous call could not answer. nil: none.
	Logger *slog.Logger
	// Feeds returns per-feed counters the engine does not keep (bytes
	// read). nil: none.
	Feeds func() []FeedStats
	// Sinks returns the asynchronous sinks' counters. nil: none.
	Sinks func() []sinks.SinkStats
	// Output returns the --output guard's counters and whether there is
	// one. nil: none.
	Output func() (sinks.GuardStats, bool)
	// SampleInterval is the throughput ring's resolution (default 1s).
	SampleInterval time.Duration
	// MaxBodyBytes bounds a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Now is the wall clock (lag); nil: time.Now.
	Now func() time.Time
}

// FeedStats are a feed's counters beyond what its engine Publishers count.
type FeedStats struct {
	Name  string
	Bytes uint64 // bytes read from the source
}

// Server serves the control API of one engine. Create it with New, serve
// Handler, run Run for the throughput samples, and call SetReady once
// recovery is done and the feeds are up.
type Server struct {
	opts    Options
	eng     *engine.Engine
	mux     *http.ServeMux
	reg     *prometheus.Registry
	tp      *rate.Ring
	ready   atomic.Bool
	stopped atomic.Bool
	started time.Time
}

// New returns the server of opts.Engine.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("control: no engine")
	}
	if opts.StreamName == "" {
		opts.StreamName = StreamID
	}
	if opts.SampleInterval <= 0 {
		opts.SampleInterval = time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, eng: opts.Engine, mux: http.NewServeMux(), started: opts.Now()}
	s.tp = rate.NewRing(int(maxTimeframe/opts.SampleInterval)+1, opts.SampleInterval)
	s.reg = prometheus.NewRegistry()
	if err := s.reg.Register(newCollector(s)); err != nil {
		return nil, fmt.Errorf("control: metrics: %w", err)
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.routes()
	return s, nil
}

// SetReady marks the stream ready: recovery is done and the feeds are up.
func (s *Server) SetReady() { s.ready.Store(true) }

// SetStopped marks the stream stopped (it stops or has stopped): /readyz
// answers 503 and pause and resume 409.
func (s *Server) SetStopped() { s.stopped.Store(true) }

// Handler returns the server's handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Registry returns the Prometheus registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

func (s *Server) routes() {
	s.mux.HandleFunc("/healthz", s.get(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	s.mux.HandleFunc("/readyz", s.get(s.readyz))
	s.handle("/metrics", s.get(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP))
	// pprof on this mux only, never on http.DefaultServeMux.
	s.handle("/debug/pprof/", pprof.Index)
	s.handle("/debug/pprof/cmdline", pprof.Cmdline)
	s.handle("/debug/pprof/profile", pprof.Profile)
	s.handle("/debug/pprof/symbol", pprof.Symbol)
	s.handle("/debug/pprof/trace", pprof.Trace)

	s.handle("/api/streams", s.streams)
	s.handle("/api/streams/{id}", s.stream(s.streamInfo))
	s.handle("/api/streams/{id}/pause", s.stream(s.pause))
	s.handle("/api/streams/{id}/resume", s.stream(s.resume))
	s.handle("/api/streams/{id}/stop", s.stream(s.stop))
	s.handle("/api/streams/{id}/metrics", s.stream(s.metrics))
	s.handle("/api/streams/{id}/lag", s.stream(s.lag))
	s.handle("/api/streams/{id}/throughput", s.stream(s.throughputHandler))
	s.handle("/api/streams/{id}/windows", s.stream(s.windows))
	s.handle("/api/streams/{id}/windows/{wid}", s.stream(s.window))
	s.handle("/api/streams/{id}/patterns", s.stream(s.patterns))
	s.handle("/api/streams/{id}/patterns/{pid}", s.stream(s.pattern))
	s.handle("/api/streams/{id}/patterns/{pid}/matches", s.stream(s.patternMatches))
	s.handle("/api/streams/{id}/filter", s.stream(s.filterHandler("filter")))
	s.handle("/api/streams/{id}/transform", s.stream(s.filterHandler("transform")))
	s.handle("/api/streams/{id}/messages", s.stream(s.messages))
	if d := s.opts.Dashboard; d != nil {
		for _, p := range []string{"/{$}", "/app.js", "/style.css", "/config.json"} {
			s.mux.Handle("GET "+p, d)
		}
	}
	s.handle("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no endpoint "+r.URL.Path)
	})
}

// handle registers h behind the bearer token check.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, s.auth(h))
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.opts.Token == "" {
		return h
	}
	// Hashes of equal length: the comparison's time tells nothing, not even
	// the token's length.
	want := sha256.Sum256([]byte("Bearer " + s.opts.Token))
	return func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="qstream"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "this endpoint needs Authorization: Bearer <token>")
			return
		}
		h(w, r)
	}
}

// get allows GET and HEAD only.
func (s *Server) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r, http.MethodGet, http.MethodHead)
			return
		}
		h(w, r)
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.stopped.Load():
		writeError(w, http.StatusServiceUnavailable, "stopping", "the stream stops")
	case !s.ready.Load():
		writeError(w, http.StatusServiceUnavailable, "not_ready", "recovery or the feeds' start is not done")
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// apiError is the body of every error.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" "+r.URL.Path+": allowed "+strings.Join(allowed, ", "))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(apiError{Error: "internal", Message: "control: encoding the response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decodeBody decodes the request's JSON body into v: at most MaxBodyBytes
// (413 beyond), no unknown fields, one value. It writes the error response
// and returns false on failure.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.bodyError(w, err)
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "malformed_json", "the body holds more than one JSON value")
		return false
	}
	return true
}

// readBody reads the whole body, at most MaxBodyBytes. It writes the error
// response and returns false on failure.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		s.bodyError(w, err)
		return nil, false
	}
	return b, true
}

func (s *Server) bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", tooBig.Limit))
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		writeError(w, http.StatusBadRequest, "unknown_field", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "malformed_json", err.Error())
	}
}
