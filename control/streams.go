package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"qstream/engine"
	"qstream/ops"
)

// streamJSON is a stream in GET /api/streams and the control calls' replies.
type streamJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     string `json:"state"` // running, paused or stopped
	Ready     bool   `json:"ready"`
	Shards    int    `json:"shards"`
	Messages  uint64 `json:"messages"`  // processed by the shards
	Published uint64 `json:"published"` // accepted from the feeds
	UptimeS   int64  `json:"uptime_s"`
}

func (s *Server) state(info engine.StreamInfo) string {
	if info.Index == 0 && s.stopped.Load() {
		return "stopped"
	}
	return info.State.String()
}

func (s *Server) streamJSON(info engine.StreamInfo) streamJSON {
	st, _ := s.eng.StreamMetrics(info.ID)
	out := streamJSON{ID: string(info.ID), Name: string(info.ID), State: s.state(info), Ready: s.ready.Load(), Shards: s.eng.Shards(),
		Messages: st.Messages, Published: st.Published, UptimeS: int64(s.opts.Now().Sub(info.Started) / time.Second)}
	if info.Index == 0 {
		out.ID, out.Name = StreamID, s.opts.StreamName
		out.UptimeS = int64(s.opts.Now().Sub(s.started) / time.Second)
	}
	return out
}

// streams serves /api/streams: the list (GET), and POST, which starts a
// stream from its definition (a stream of the configuration file, as JSON
// or YAML) through Options.StartStream: 201 with the stream.
func (s *Server) streams(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		list := s.eng.Streams()
		out := make([]streamJSON, 0, len(list))
		for _, info := range list {
			out = append(out, s.streamJSON(info))
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodPost:
		if s.opts.StartStream == nil {
			writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot start streams")
			return
		}
		body, ok := s.readBody(w, r)
		if !ok || !s.live(w) {
			return
		}
		id, err := s.opts.StartStream(r.Context(), body)
		if err != nil {
			var ce *ConfigError
			switch {
			case errors.As(err, &ce):
				writeError(w, http.StatusBadRequest, "invalid_stream", ce.Error())
			case errors.Is(err, engine.ErrStreamExists):
				writeError(w, http.StatusConflict, "stream_exists", err.Error())
			case errors.Is(err, engine.ErrStreamID):
				writeError(w, http.StatusBadRequest, "invalid_stream", err.Error())
			case errors.Is(err, engine.ErrStreamLimit):
				writeError(w, http.StatusConflict, "stream_limit", err.Error())
			default:
				engineError(w, err)
			}
			return
		}
		info, err := s.eng.StreamInfo(id)
		if err != nil {
			engineError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, s.streamJSON(info))
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodHead, http.MethodPost)
	}
}

// ConfigError is what Options.StartStream returns for a definition that
// does not parse or validate: the request's fault (400).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

type streamKey struct{}

// stream wraps a handler of /api/streams/{id}/...: an unknown id is 404;
// the handler finds the stream with streamOf.
func (s *Server) stream(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		info, err := s.eng.StreamInfo(engine.StreamID(id))
		if err != nil {
			var ids []string
			for _, st := range s.eng.Streams() {
				if st.Index == 0 {
					ids = append(ids, StreamID)
				} else if st.State != engine.StreamStopped {
					ids = append(ids, string(st.ID))
				}
			}
			writeError(w, http.StatusNotFound, "unknown_stream", fmt.Sprintf("no stream %q (the engine runs %q)", id, ids))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), streamKey{}, info)))
	}
}

// streamOf returns the stream a handler wrapped by stream serves.
func streamOf(r *http.Request) engine.StreamInfo {
	info, _ := r.Context().Value(streamKey{}).(engine.StreamInfo)
	return info
}

// live checks that the stream can take a control call: ready and not
// stopped. It writes the error response and returns false otherwise.
func (s *Server) live(w http.ResponseWriter) bool {
	switch {
	case s.stopped.Load():
		writeError(w, http.StatusConflict, "stopped", "the stream stops")
	case !s.ready.Load():
		writeError(w, http.StatusServiceUnavailable, "not_ready", "recovery or the feeds' start is not done")
	default:
		return true
	}
	return false
}

func (s *Server) streamInfo(w http.ResponseWriter, r *http.Request) {
	s.get(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.streamJSON(streamOf(r)))
	})(w, r)
}

// current re-reads a stream's description after a change.
func (s *Server) current(info engine.StreamInfo) engine.StreamInfo {
	if now, err := s.eng.StreamInfo(info.ID); err == nil {
		return now
	}
	return info
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return
	}
	if !s.live(w) {
		return
	}
	info := streamOf(r)
	if err := s.eng.PauseStream(info.ID); err != nil {
		streamStateError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.streamJSON(s.current(info)))
}

// streamStateError answers a lifecycle call the stream's state refuses
// (409) or another engine error.
func streamStateError(w http.ResponseWriter, err error) {
	if errors.Is(err, engine.ErrStreamState) {
		writeError(w, http.StatusConflict, "stream_state", err.Error())
		return
	}
	engineError(w, err)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return
	}
	if !s.live(w) {
		return
	}
	info := streamOf(r)
	if err := s.eng.ResumeStream(info.ID); err != nil {
		streamStateError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.streamJSON(s.current(info)))
}

// stop asks for the stop SIGTERM makes: the reply (202) comes at once, the
// stop (drain, final checkpoint) follows.
func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return
	}
	info := streamOf(r)
	if info.Index != 0 {
		// Another stream: its feeds close, its windows fire, its sinks
		// flush; the engine and the other streams run on.
		if s.opts.StopStream == nil {
			writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot stop a stream")
			return
		}
		if info.State == engine.StreamStopping || info.State == engine.StreamStopped {
			writeError(w, http.StatusConflict, "stream_state", "the stream already stops")
			return
		}
		go func() {
			if err := s.opts.StopStream(info.ID); err != nil && s.opts.Logger != nil {
				s.opts.Logger.Warn("control: stop stream", "stream", info.ID, "err", err)
			}
		}()
		writeJSON(w, http.StatusAccepted, s.streamJSON(info))
		return
	}
	if s.opts.Stop == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot stop its stream")
		return
	}
	if s.stopped.Swap(true) {
		writeError(w, http.StatusConflict, "stopped", "the stream already stops")
		return
	}
	s.eng.Resume() // a paused stream drains before it stops
	s.opts.Stop()
	writeJSON(w, http.StatusAccepted, s.streamJSON(info))
}

// metricsJSON is GET /api/streams/{id}/metrics.
type metricsJSON struct {
	Messages    uint64                     `json:"messages"`
	Published   uint64                     `json:"published"`
	ByKind      map[string]uint64          `json:"by_kind"`
	ByFeed      map[string]uint64          `json:"by_feed"`
	Outputs     uint64                     `json:"outputs"`
	Delivered   uint64                     `json:"delivered"`
	Errors      uint64                     `json:"errors"`
	DeadLetters uint64                     `json:"dead_letters"`
	Rejected    map[string]uint64          `json:"rejected"`
	Symbols     int                        `json:"symbols"`
	Latency     map[string]latencyJSON     `json:"latency"`
	Rings       map[string]ringJSON        `json:"rings"`
	Durability  *engine.DurabilityStats    `json:"durability,omitempty"`
	Sinks       map[string]sinkSummaryJSON `json:"sinks,omitempty"`
}

type latencyJSON struct {
	Count  int64   `json:"count"`
	P50Us  float64 `json:"p50_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

type ringJSON struct {
	Len       int     `json:"len"`
	Cap       int     `json:"cap"`
	Occupancy float64 `json:"occupancy"`
}

type sinkSummaryJSON struct {
	State   string `json:"state"`
	Queued  int    `json:"queued"`
	Spilled int    `json:"spilled"`
	Written uint64 `json:"written"`
	Breaker string `json:"breaker"`
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.get(func(w http.ResponseWriter, r *http.Request) {
		info := streamOf(r)
		st, err := s.eng.StreamMetrics(info.ID)
		if err != nil {
			engineError(w, err)
			return
		}
		m := metricsJSON{Messages: st.Messages, Published: st.Published, ByKind: st.ByKind, ByFeed: map[string]uint64{},
			Outputs: st.Outputs, Delivered: st.Delivered, Errors: st.Errors, DeadLetters: st.DeadLetters,
			Rejected: st.Rejected, Symbols: st.Symbols, Latency: map[string]latencyJSON{}}
		for _, p := range s.eng.Publishers() {
			if name, ok := ofStream(info, p.Name); ok {
				m.ByFeed[feedOf(name)] += p.Published
			}
		}
		// Latency since the start: Latency(true) belongs to the status line.
		lat := s.eng.Latency(false)
		for i, q := range lat.Stages {
			m.Latency[engine.StageNames[i]] = latencyJSON{Count: q.Count, P50Us: us(q.P50), P99Us: us(q.P99), P999Us: us(q.P999), MaxUs: us(q.Max)}
		}
		rt := rings(st)
		m.Rings = map[string]ringJSON{
			"input":  {rt.inLen, rt.inCap, ratio(rt.inLen, rt.inCap)},
			"output": {rt.outLen, rt.outCap, ratio(rt.outLen, rt.outCap)},
		}
		if st.Durability.LastLSN > 0 || st.Durability.Checkpoints.Taken > 0 {
			m.Durability = &st.Durability
		}
		if s.opts.Sinks != nil {
			m.Sinks = map[string]sinkSummaryJSON{}
			for _, k := range s.opts.Sinks() {
				m.Sinks[k.Name] = sinkSummaryJSON{State: k.State, Queued: k.Queued, Spilled: k.Spilled, Written: k.Written, Breaker: k.Breaker}
			}
		}
		writeJSON(w, http.StatusOK, m)
	})(w, r)
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// lagJSON is GET /api/streams/{id}/lag. A null lag is not known yet (no
// watermark, no event).
type lagJSON struct {
	WatermarkLagMs *float64 `json:"watermark_lag_ms"`
	EventTimeLagMs *float64 `json:"event_time_lag_ms"`
	Watermark      *string  `json:"watermark"`    // RFC 3339, nanoseconds
	NewestEvent    *string  `json:"newest_event"` // RFC 3339, nanoseconds
}

func (s *Server) lag(w http.ResponseWriter, r *http.Request) {
	s.get(func(w http.ResponseWriter, r *http.Request) {
		now := s.opts.Now()
		var l lagJSON
		lag, err := s.eng.ProcessingLag(streamOf(r).ID, now)
		if err != nil {
			engineError(w, err)
			return
		}
		if lag.HasWatermark {
			t := time.Unix(0, lag.WatermarkNs).UTC()
			l.WatermarkLagMs, l.Watermark = ms(lag.Watermark), str(t.Format(time.RFC3339Nano))
		}
		if lag.HasEvents {
			t := time.Unix(0, lag.NewestEventNs).UTC()
			l.EventTimeLagMs, l.NewestEvent = ms(lag.EventTime), str(t.Format(time.RFC3339Nano))
		}
		writeJSON(w, http.StatusOK, l)
	})(w, r)
}

func ms(d time.Duration) *float64 { v := float64(d) / 1e6; return &v }
func str(s string) *string        { return &s }

// throughputJSON is GET /api/streams/{id}/throughput.
type throughputJSON struct {
	Timeframe         string  `json:"timeframe"`
	Seconds           float64 `json:"seconds"` // covered by the samples (less than the timeframe early on)
	Messages          uint64  `json:"messages"`
	MessagesPerSecond float64 `json:"messages_per_second"`
}

func (s *Server) throughputHandler(w http.ResponseWriter, r *http.Request) {
	s.get(func(w http.ResponseWriter, r *http.Request) {
		tf := defaultTimeframe
		if v := r.URL.Query().Get("timeframe"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < minTimeframe || d > maxTimeframe {
				writeError(w, http.StatusBadRequest, "invalid_timeframe", "timeframe "+strconv.Quote(v)+": want a duration from "+minTimeframe.String()+" to "+maxTimeframe.String()+" (e.g. 1m)")
				return
			}
			tf = d
		}
		out := throughputJSON{Timeframe: tf.String()}
		if info := streamOf(r); info.Index == 0 {
			n, secs, ok := s.tp.Rate(tf)
			out.Seconds, out.Messages = secs, n
			if ok && secs > 0 {
				out.MessagesPerSecond = float64(n) / secs
			}
		} else {
			t, _, err := s.eng.ThroughputStats(info.ID, max(tf, engine.ThroughputInterval))
			if err != nil {
				engineError(w, err)
				return
			}
			out.Seconds, out.Messages, out.MessagesPerSecond = t.Seconds, t.Messages, t.PerSecond
		}
		writeJSON(w, http.StatusOK, out)
	})(w, r)
}

// windowJSON describes one window operator.
type windowJSON struct {
	ID          engine.WindowID `json:"id"`
	Spec        string          `json:"spec"`
	Type        string          `json:"type"`
	Aggregation string          `json:"aggregation"`
	Field       string          `json:"field"`
}

func windowOf(wi engine.WindowInfo) windowJSON {
	return windowJSON{ID: wi.ID, Spec: wi.Spec.String(), Type: wi.Spec.Type.String(), Aggregation: wi.Spec.Agg.String(), Field: wi.Spec.Field.String()}
}

// windows serves GET (the list) and POST {"spec":"tumbling:1m:vwap"}.
func (s *Server) windows(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !s.ready.Load() {
			writeError(w, http.StatusServiceUnavailable, "not_ready", "recovery or the feeds' start is not done")
			return
		}
		list, err := s.eng.ListStreamWindows(streamOf(r).ID)
		if err != nil {
			engineError(w, err)
			return
		}
		out := make([]windowJSON, len(list))
		for i, wi := range list {
			out[i] = windowOf(wi)
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var req struct {
			Spec string `json:"spec"`
		}
		if !s.decodeBody(w, r, &req) || !s.live(w) {
			return
		}
		spec, err := ops.ParseWindowSpec(req.Spec)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_spec", err.Error())
			return
		}
		id, err := s.eng.CreateStreamWindow(streamOf(r).ID, spec)
		if err != nil {
			engineError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, windowOf(engine.WindowInfo{ID: id, Spec: spec}))
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodHead, http.MethodPost)
	}
}

// windowAggJSON is one symbol's open window in GET .../windows/{wid}.
type windowAggJSON struct {
	Symbol string   `json:"symbol"`
	Start  string   `json:"start"`
	End    string   `json:"end"`
	Count  int64    `json:"count"`
	Value  *float64 `json:"value"` // null: no trades, or the aggregation does not apply
}

// window serves GET .../windows/{wid}?agg=FN: the partial aggregate of
// every open window (AggregateWindow); FN defaults to the window's own.
func (s *Server) window(w http.ResponseWriter, r *http.Request) {
	s.get(func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeError(w, http.StatusServiceUnavailable, "not_ready", "recovery or the feeds' start is not done")
			return
		}
		wid, ok := parseID(r.PathValue("wid"))
		if !ok {
			writeError(w, http.StatusNotFound, "unknown_window", "no window "+strconv.Quote(r.PathValue("wid")))
			return
		}
		sid := streamOf(r).ID
		list, err := s.eng.ListStreamWindows(sid)
		if err != nil {
			engineError(w, err)
			return
		}
		if int(wid) >= len(list) {
			writeError(w, http.StatusNotFound, "unknown_window", "no window "+strconv.Itoa(int(wid))+" (the stream has "+strconv.Itoa(len(list))+")")
			return
		}
		fn := list[wid].Spec.Agg.Kind
		if v := r.URL.Query().Get("agg"); v != "" {
			a, err := ops.ParseAggregation(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_aggregation", err.Error())
				return
			}
			fn = a.Kind
		}
		aggs, err := s.eng.AggregateStreamWindow(sid, engine.WindowID(wid), fn)
		if err != nil {
			engineError(w, err)
			return
		}
		out := struct {
			Window      windowJSON      `json:"window"`
			Aggregation string          `json:"aggregation"`
			Open        []windowAggJSON `json:"open"`
		}{windowOf(list[wid]), fn.String(), make([]windowAggJSON, len(aggs))}
		for i, a := range aggs {
			out.Open[i] = windowAggJSON{Symbol: a.Symbol, Start: nsTime(a.StartNs), End: nsTime(a.EndNs), Count: a.Count, Value: num(a.Value)}
		}
		writeJSON(w, http.StatusOK, out)
	})(w, r)
}

// patternJSON describes one pattern.
type patternJSON struct {
	ID        engine.PatternID `json:"id"`
	Name      string           `json:"name"` // the spec's "id"
	Type      string           `json:"type"`
	Symbols   []string         `json:"symbols,omitempty"`
	Timeframe string           `json:"timeframe,omitempty"`
	Active    bool             `json:"active"`
	Matches   uint64           `json:"matches"`
	Dropped   uint64           `json:"dropped"`
}

func patternOf(p engine.PatternInfo) patternJSON {
	out := patternJSON{ID: p.ID, Name: p.Spec.ID, Type: p.Spec.Type.String(), Symbols: p.Spec.Symbols, Active: p.Active, Matches: p.Matches, Dropped: p.Dropped}
	if p.Spec.TimeframeNs > 0 {
		out.Timeframe = time.Duration(p.Spec.TimeframeNs).String()
	}
	return out
}

// patterns serves GET (ListPatterns) and POST (one pattern object of the
// --patterns file format).
func (s *Server) patterns(w http.ResponseWriter, r *http.Request) {
	sid := streamOf(r).ID
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		list, err := s.eng.ListStreamPatterns(sid)
		if err != nil {
			engineError(w, err)
			return
		}
		out := make([]patternJSON, len(list))
		for i, p := range list {
			out[i] = patternOf(p)
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodPost:
		body, ok := s.readBody(w, r)
		if !ok {
			return
		}
		body = bytes.TrimSpace(body)
		if !json.Valid(body) {
			writeError(w, http.StatusBadRequest, "malformed_json", "the body is not valid JSON")
			return
		}
		if len(body) == 0 || body[0] != '{' {
			writeError(w, http.StatusBadRequest, "malformed_json", "the body must be one pattern object, as in the --patterns file")
			return
		}
		if !s.live(w) {
			return
		}
		specs, err := ops.ParsePatterns(append(append([]byte{'['}, body...), ']'))
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_spec", err.Error())
			return
		}
		id, err := s.eng.RegisterStreamPattern(sid, specs[0])
		if err != nil {
			engineError(w, err)
			return
		}
		list, _ := s.eng.ListStreamPatterns(sid)
		for _, p := range list {
			if p.ID == id {
				writeJSON(w, http.StatusCreated, patternOf(p))
				return
			}
		}
		writeJSON(w, http.StatusCreated, map[string]any{"id": id})
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodHead, http.MethodPost)
	}
}

// pattern serves GET (one pattern) and DELETE (RemovePattern).
func (s *Server) pattern(w http.ResponseWriter, r *http.Request) {
	sid := streamOf(r).ID
	pid, ok := parseID(r.PathValue("pid"))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_pattern", "no pattern "+strconv.Quote(r.PathValue("pid")))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		list, _ := s.eng.ListStreamPatterns(sid)
		for _, p := range list {
			if p.ID == engine.PatternID(pid) {
				writeJSON(w, http.StatusOK, patternOf(p))
				return
			}
		}
		writeError(w, http.StatusNotFound, "unknown_pattern", "no pattern "+strconv.Itoa(int(pid)))
	case http.MethodDelete:
		if !s.live(w) {
			return
		}
		if err := s.eng.RemoveStreamPattern(sid, engine.PatternID(pid)); err != nil {
			engineError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, r, http.MethodGet, http.MethodHead, http.MethodDelete)
	}
}

// matchJSON is one match in GET .../patterns/{pid}/matches.
type matchJSON struct {
	Symbol     string              `json:"symbol"`
	Time       string              `json:"time"`
	Confidence *float64            `json:"confidence"`
	Details    map[string]*float64 `json:"details"`
}

func (s *Server) patternMatches(w http.ResponseWriter, r *http.Request) {
	s.get(func(w http.ResponseWriter, r *http.Request) {
		pid, ok := parseID(r.PathValue("pid"))
		if !ok {
			writeError(w, http.StatusNotFound, "unknown_pattern", "no pattern "+strconv.Quote(r.PathValue("pid")))
			return
		}
		ms, err := s.eng.DetectStreamPatternMatches(streamOf(r).ID, engine.PatternID(pid))
		if err != nil {
			engineError(w, err)
			return
		}
		out := make([]matchJSON, len(ms))
		for i, m := range ms {
			d := make(map[string]*float64, len(m.Details))
			for _, x := range m.Details {
				d[x.Name] = num(x.Value)
			}
			out[i] = matchJSON{Symbol: m.Symbol, Time: nsTime(m.TsNs), Confidence: num(m.Confidence), Details: d}
		}
		writeJSON(w, http.StatusOK, out)
	})(w, r)
}

// MessageError is Options.ProcessMessage's error for a message that does
// not parse (400 invalid_message) or that the operators reject (422
// rejected, with the dead letter's reason).
type MessageError struct {
	Rejected bool   // the operators rejected it (late, unknown symbol...); else it did not parse
	Reason   string // the dead-letter reason
	Err      error
}

func (e *MessageError) Error() string { return e.Err.Error() }
func (e *MessageError) Unwrap() error { return e.Err }

// messages serves POST .../messages: one message processed synchronously;
// 200 {"outputs":[the output lines]}.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return
	}
	if s.opts.ProcessMessage == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server cannot process messages")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok || !s.live(w) {
		return
	}
	outs, err := s.opts.ProcessMessage(r.Context(), streamOf(r).ID, body)
	if err != nil {
		var me *MessageError
		switch {
		case errors.As(err, &me) && me.Rejected:
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "rejected", "reason": me.Reason, "message": me.Error()})
		case errors.As(err, &me):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_message", "reason": me.Reason, "message": me.Error()})
		default:
			streamStateError(w, err)
		}
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{"outputs": outs})
}

// ofStream reports whether a publisher name is one of the stream's and
// returns it without the stream's prefix.
func ofStream(info engine.StreamInfo, name string) (string, bool) {
	if info.Index == 0 {
		if i := strings.IndexByte(name, ':'); i > 0 && !strings.ContainsRune(name[:i], '/') {
			return "", false // another stream's (engine.NewStreamPublisher)
		}
		return name, true
	}
	return strings.CutPrefix(name, string(info.ID)+":")
}

// engineError maps an engine API error to its status.
func engineError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, engine.ErrUnknownPattern):
		writeError(w, http.StatusNotFound, "unknown_pattern", err.Error())
	case errors.Is(err, engine.ErrInvalidPattern), errors.Is(err, ops.ErrPatternSpec), errors.Is(err, ops.ErrBadWindowSpec), errors.Is(err, ops.ErrPipelineConfig),
		errors.Is(err, ops.ErrFilterSpec):
		writeError(w, http.StatusBadRequest, "invalid_spec", err.Error())
	case errors.Is(err, engine.ErrDuplicatePattern):
		writeError(w, http.StatusConflict, "duplicate_pattern", err.Error())
	case errors.Is(err, engine.ErrUnknownStream):
		writeError(w, http.StatusNotFound, "unknown_stream", err.Error())
	case errors.Is(err, engine.ErrStreamState):
		writeError(w, http.StatusConflict, "stream_state", err.Error())
	case errors.Is(err, engine.ErrNoPatternHost), errors.Is(err, engine.ErrNoWindowHost), errors.Is(err, engine.ErrNoStreamHost):
		writeError(w, http.StatusNotImplemented, "not_supported", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// parseID parses a window or pattern id (a uint16).
func parseID(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// num is v for JSON: nil (null) for NaN and infinities.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func nsTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// filterHandler serves PUT (and POST) .../filter {"filter":"kind == trade
// and price > 100"} and .../transform {"transform":"price = price * 100"}:
// the stream's filter or transform (engine FilterStream, TransformStream;
// "" removes it), 200 with what is set.
func (s *Server) filterHandler(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			methodNotAllowed(w, r, http.MethodPut, http.MethodPost)
			return
		}
		var req struct {
			Filter    *string `json:"filter"`
			Transform *string `json:"transform"`
		}
		if !s.decodeBody(w, r, &req) || !s.live(w) {
			return
		}
		val := req.Filter
		if kind == "transform" {
			val = req.Transform
		}
		if val == nil || (kind == "filter" && req.Transform != nil) || (kind == "transform" && req.Filter != nil) {
			writeError(w, http.StatusBadRequest, "invalid_spec", fmt.Sprintf("want {%q:\"...\"} (\"\" removes it)", kind))
			return
		}
		var err error
		if sid := streamOf(r).ID; kind == "filter" {
			err = s.eng.FilterStream(sid, *val)
		} else {
			err = s.eng.TransformStream(sid, *val)
		}
		if err != nil {
			engineError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{kind: *val})
	}
}
