package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
)

const (
	testSyms = 4
	testName = "test-stream"
)

// base is a minute-aligned event time: every trade of a test falls in one
// open tumbling:1m window.
var base = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// fixture is a running two-shard engine over ops pipelines (a configured
// tumbling:1m:avg window and a volume_spike pattern), one publisher feeding
// trades, and the control server over httptest.
type fixture struct {
	t      testing.TB
	eng    *engine.Engine
	pub    *engine.Publisher
	srv    *Server
	http   *httptest.Server
	seq    uint64
	prices map[string][]float64 // per symbol, every price published
	now    atomic.Int64         // the server's clock (Options.Now), Unix ns
}

func newFixture(t testing.TB, mod func(*Options)) *fixture {
	t.Helper()
	symbols := codec.NewSymbolTable(64)
	windows, err := ops.ParseWindowSpecs("tumbling:1m:avg")
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ops.ParsePatterns([]byte(`[{"id":"spike","type":"volume_spike","multiplier":3,"baseline":"200us"}]`))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{
		Shards:  2,
		Symbols: symbols,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Windows: windows, Patterns: patterns, SymbolNames: symbols, MaxSymbolID: 64, MaxSlots: 64})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= testSyms; i++ {
		if _, err := symbols.InternString(fmt.Sprintf("S%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := eng.NewPublisher("trades/0")
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, eng: eng, pub: pub, prices: map[string][]float64{}}
	f.now.Store(base.Add(2 * time.Second).UnixNano())
	opts := Options{Engine: eng, StreamName: testName, Now: func() time.Time { return time.Unix(0, f.now.Load()) }}
	if mod != nil {
		mod(&opts)
	}
	f.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetReady()
	f.http = httptest.NewServer(f.srv.Handler())
	t.Cleanup(func() {
		f.http.Close()
		f.pub.Close()
		eng.Resume()
		if err := eng.Stop(t.Context()); err != nil {
			t.Errorf("engine stop: %v", err)
		}
	})
	return f
}

// trades publishes n trades round-robin over the symbols, 1 µs apart in
// event time, prices rising, and flushes. It does not wait for them.
func (f *fixture) trades(n int) {
	f.t.Helper()
	for range n {
		f.seq++
		sym := codec.Symbol(1 + f.seq%testSyms)
		price := 100 + float64(f.seq)*0.1
		ev := codec.Event{Kind: codec.KindTrade, TsNs: base.UnixNano() + int64(f.seq)*1000, Seq: f.seq, Symbol: sym, Price: price, Volume: 10}
		if err := f.pub.Publish(&ev); err != nil {
			f.t.Fatal(err)
		}
		name := f.eng.Symbols().Name(sym)
		f.prices[name] = append(f.prices[name], price)
	}
	if err := f.pub.Flush(); err != nil {
		f.t.Fatal(err)
	}
}

// waitProcessed waits until the shards processed n events.
func (f *fixture) waitProcessed(n uint64) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.eng.Stats().Messages < n {
		if time.Now().After(deadline) {
			f.t.Fatalf("waited 10s for %d processed events, have %d", n, f.eng.Stats().Messages)
		}
		time.Sleep(time.Millisecond)
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; token "" sends no Authorization header.
func (f *fixture) do(method, path, body, token string) reply {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// want checks the status and decodes the JSON body into v (when not nil).
func (r reply) want(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
	}
}

// wantError checks an error reply: the status, a JSON body with the code
// and a message.
func (r reply) wantError(t *testing.T, status int, code string) {
	t.Helper()
	var e apiError
	r.want(t, status, &e)
	if e.Error != code || e.Message == "" {
		t.Fatalf("error %+v, want code %q and a message (body %s)", e, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.ready.Store(false)
	f.do("GET", "/healthz", "", "").want(t, 200, nil)
	f.do("GET", "/readyz", "", "").wantError(t, 503, "not_ready")
	// Control calls wait for readiness; reads do not.
	f.do("POST", "/api/streams/default/pause", "", "").wantError(t, 503, "not_ready")
	f.do("GET", "/api/streams", "", "").want(t, 200, nil)
	f.srv.SetReady()
	f.do("GET", "/readyz", "", "").want(t, 200, nil)
	f.do("POST", "/healthz", "", "").wantError(t, 405, "method_not_allowed")
	f.srv.SetStopped()
	f.do("GET", "/readyz", "", "").wantError(t, 503, "stopping")
	f.do("GET", "/healthz", "", "").want(t, 200, nil)
	f.do("GET", "/nothing/here", "", "").wantError(t, 404, "not_found")
}

// metricLine returns the value of the sample of name whose labels include
// every k="v" of labels, and whether there is one.
func metricLine(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		head := line[:sp]
		n := head
		if i := strings.IndexByte(head, '{'); i >= 0 {
			n = head[:i]
		}
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(head, l) {
				ok = false
			}
		}
		if ok {
			v, err := strconv.ParseFloat(line[sp+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func (f *fixture) scrape() string {
	f.t.Helper()
	r := f.do("GET", "/metrics", "", "")
	if r.status != 200 {
		f.t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	return string(r.body)
}

func wantMetric(t *testing.T, text, name string, want float64, labels ...string) {
	t.Helper()
	got, ok := metricLine(text, name, labels...)
	if !ok {
		t.Fatalf("no %s%v in:\n%s", name, labels, text)
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestMetrics(t *testing.T) {
	feedBytes := atomic.Uint64{}
	f := newFixture(t, func(o *Options) {
		o.Feeds = func() []FeedStats { return []FeedStats{{Name: "trades", Bytes: feedBytes.Load()}} }
	})
	const n = 400
	f.trades(n)
	f.waitProcessed(n)
	feedBytes.Store(12345)
	// A trade far behind the watermark: the window refuses it as late (a
	// dead letter, not an error).
	late := codec.Event{Kind: codec.KindTrade, TsNs: base.Add(-5 * time.Minute).UnixNano(), Seq: f.seq + 1, Symbol: 1, Price: 1, Volume: 1}
	f.seq++
	if err := f.pub.Publish(&late); err != nil {
		t.Fatal(err)
	}
	if err := f.pub.Flush(); err != nil {
		t.Fatal(err)
	}
	f.waitProcessed(n + 1)
	// The status line's interval reset must not take counts from the
	// histogram Prometheus sees.
	f.eng.Latency(true)

	text := f.scrape()
	wantMetric(t, text, "qstream_messages_total", n+1, `stream="test-stream"`, `feed="trades"`)
	wantMetric(t, text, "qstream_processed_total", n+1, `stream="test-stream"`)
	wantMetric(t, text, "qstream_dead_letters_total", 1, `reason="late"`)
	if _, ok := metricLine(text, "qstream_errors_total", `reason="late"`); ok {
		t.Fatalf("a late event counted as an error:\n%s", text)
	}
	wantMetric(t, text, "qstream_feed_bytes_total", 12345, `feed="trades"`)
	for _, stage := range engine.StageNames[:1] {
		wantMetric(t, text, "qstream_latency_seconds_count", n+1, `stage="`+stage+`"`)
		wantMetric(t, text, "qstream_latency_seconds_bucket", n+1, `stage="`+stage+`"`, `le="+Inf"`)
		wantMetric(t, text, "qstream_latency_seconds_bucket", n+1, `stage="`+stage+`"`, `le="10"`)
		if v, _ := metricLine(text, "qstream_latency_seconds_bucket", `stage="`+stage+`"`, `le="1e-06"`); v > n+1 {
			t.Fatalf("bucket 1µs %v > count", v)
		}
	}
	// The watermark is the newest trade's time (no out-of-orderness) and
	// the server's clock is base+2s.
	wantLag := base.Add(2 * time.Second).Sub(base.Add(time.Duration(n) * time.Microsecond)).Seconds()
	if got, ok := metricLine(text, "qstream_watermark_lag_seconds", `stream="test-stream"`); !ok || math.Abs(got-wantLag) > 1e-9 {
		t.Fatalf("watermark lag %v (%v), want %v", got, ok, wantLag)
	}
	wantMetric(t, text, "qstream_event_time_lag_seconds", wantLag, `stream="test-stream"`)
	wantMetric(t, text, "qstream_paused", 0, `stream="test-stream"`)
	wantMetric(t, text, "qstream_ready", 1, `stream="test-stream"`)
	wantMetric(t, text, "qstream_symbols", testSyms, `stream="test-stream"`)
	if _, ok := metricLine(text, "qstream_ring_occupancy_ratio", `ring="input"`); !ok {
		t.Fatalf("no ring occupancy:\n%s", text)
	}
	if _, ok := metricLine(text, "go_goroutines"); !ok {
		t.Fatalf("no Go collector:\n%s", text)
	}

	// The counter grows with the input.
	f.trades(100)
	f.waitProcessed(n + 101)
	wantMetric(t, f.scrape(), "qstream_messages_total", n+101, `feed="trades"`)
}

func TestLatencyBounds(t *testing.T) {
	if latencyBoundsNs[0] != 1000 || latencyBoundsNs[len(latencyBoundsNs)-1] != 10_000_000_000 {
		t.Fatalf("bounds %v", latencyBoundsNs)
	}
	for i := 1; i < len(latencyBoundsNs); i++ {
		if latencyBoundsNs[i] <= latencyBoundsNs[i-1] {
			t.Fatalf("bounds not ascending: %v", latencyBoundsNs)
		}
	}
}

func TestStreamsListAndCreate(t *testing.T) {
	f := newFixture(t, nil)
	var list []streamJSON
	f.do("GET", "/api/streams", "", "").want(t, 200, &list)
	if len(list) != 1 || list[0].ID != "default" || list[0].Name != testName || list[0].State != "running" || !list[0].Ready || list[0].Shards != 2 {
		t.Fatalf("streams %+v", list)
	}
	f.do("POST", "/api/streams", `{"name":"other"}`, "").wantError(t, 501, "not_implemented")
	f.do("DELETE", "/api/streams", "", "").wantError(t, 405, "method_not_allowed")
	f.do("GET", "/api/streams/other", "", "").wantError(t, 404, "unknown_stream")
	for _, p := range []string{"pause", "resume", "stop", "metrics", "lag", "throughput", "windows", "windows/0", "patterns", "patterns/0", "patterns/0/matches"} {
		f.do("GET", "/api/streams/other/"+p, "", "").wantError(t, 404, "unknown_stream")
	}
	var one streamJSON
	f.do("GET", "/api/streams/default", "", "").want(t, 200, &one)
	if one.Name != testName {
		t.Fatalf("stream %+v", one)
	}
}

func TestPauseResume(t *testing.T) {
	f := newFixture(t, nil)
	f.trades(100)
	f.waitProcessed(100)
	f.do("GET", "/api/streams/default/pause", "", "").wantError(t, 405, "method_not_allowed")
	var st streamJSON
	f.do("POST", "/api/streams/default/pause", "", "").want(t, 200, &st)
	if st.State != "paused" || !f.eng.StreamPaused("default") {
		t.Fatalf("after pause: %+v, engine paused %v", st, f.eng.StreamPaused("default"))
	}
	// A paused stream's publisher blocks at its next event.
	published := make(chan struct{})
	go func() {
		defer close(published)
		f.trades(200)
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-published:
		t.Fatal("the paused stream's publisher was not held")
	default:
	}
	if got := f.eng.Stats().Messages; got > 100+pollSlack {
		t.Fatalf("paused engine processed %d events, want at most %d", got, 100+pollSlack)
	}
	wantMetric(t, f.scrape(), "qstream_paused", 1)
	// The window and pattern API answers while the shards are paused.
	var ws []windowJSON
	f.do("GET", "/api/streams/default/windows", "", "").want(t, 200, &ws)
	f.do("POST", "/api/streams/default/windows", `{"spec":"sliding:10s:max"}`, "").want(t, 201, nil)
	f.do("GET", "/api/streams/default/windows/0", "", "").want(t, 200, nil)
	if got := f.eng.Stats().Messages; got > 100+pollSlack {
		t.Fatalf("the API calls made a paused engine process: %d events", got)
	}
	f.do("POST", "/api/streams/default/resume", "", "").want(t, 200, &st)
	if st.State != "running" || f.eng.StreamPaused("default") {
		t.Fatalf("after resume: %+v", st)
	}
	<-published
	f.waitProcessed(300)
}

// pollSlack: a shard may finish the batch it polled before it saw the pause.
const pollSlack = 0

func TestStop(t *testing.T) {
	var stops atomic.Int32
	f := newFixture(t, func(o *Options) { o.Stop = func() { stops.Add(1) } })
	f.do("POST", "/api/streams/default/pause", "", "").want(t, 200, nil)
	f.do("GET", "/api/streams/default/stop", "", "").wantError(t, 405, "method_not_allowed")
	var st streamJSON
	f.do("POST", "/api/streams/default/stop", "", "").want(t, 202, &st)
	if st.State != "stopped" || stops.Load() != 1 {
		t.Fatalf("after stop: %+v, %d stop calls", st, stops.Load())
	}
	if f.eng.StreamPaused("default") {
		t.Fatal("a paused stream must resume to drain at stop")
	}
	f.do("POST", "/api/streams/default/stop", "", "").wantError(t, 409, "stopped")
	f.do("POST", "/api/streams/default/pause", "", "").wantError(t, 409, "stopped")
	f.do("GET", "/readyz", "", "").wantError(t, 503, "stopping")
	if stops.Load() != 1 {
		t.Fatalf("%d stop calls, want 1", stops.Load())
	}

	g := newFixture(t, nil) // no Stop callback
	g.do("POST", "/api/streams/default/stop", "", "").wantError(t, 501, "not_implemented")
}

func TestStreamMetricsAndLag(t *testing.T) {
	f := newFixture(t, nil)
	var l lagJSON
	f.do("GET", "/api/streams/default/lag", "", "").want(t, 200, &l)
	if l.WatermarkLagMs != nil || l.EventTimeLagMs != nil {
		t.Fatalf("lag before any event: %+v", l)
	}
	f.trades(50)
	f.waitProcessed(50)
	f.do("GET", "/api/streams/default/lag", "", "").want(t, 200, &l)
	want := float64(2*time.Second-50*time.Microsecond) / 1e6
	if l.WatermarkLagMs == nil || *l.WatermarkLagMs != want || l.EventTimeLagMs == nil || *l.EventTimeLagMs != want {
		t.Fatalf("lag %+v, want %v ms", l, want)
	}
	if l.Watermark == nil || *l.Watermark != base.Add(50*time.Microsecond).Format(time.RFC3339Nano) {
		t.Fatalf("watermark %v", l.Watermark)
	}
	var m metricsJSON
	f.do("GET", "/api/streams/default/metrics", "", "").want(t, 200, &m)
	if m.Messages != 50 || m.ByFeed["trades"] != 50 || m.ByKind["trade"] != 50 || m.Symbols != testSyms || m.Latency["shard"].Count != 50 {
		t.Fatalf("metrics %+v", m)
	}
	f.do("POST", "/api/streams/default/metrics", "", "").wantError(t, 405, "method_not_allowed")
	f.do("PUT", "/api/streams/default/lag", "", "").wantError(t, 405, "method_not_allowed")
}

func TestThroughputEndpoint(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 11 {
		f.srv.tp.Add(base.Add(time.Duration(i)*time.Second), uint64(i)*1000)
	}
	var tp throughputJSON
	f.do("GET", "/api/streams/default/throughput?timeframe=5s", "", "").want(t, 200, &tp)
	if tp.Messages != 5000 || tp.Seconds != 5 || tp.MessagesPerSecond != 1000 || tp.Timeframe != "5s" {
		t.Fatalf("throughput %+v", tp)
	}
	f.do("GET", "/api/streams/default/throughput", "", "").want(t, 200, &tp) // default 1m: what there is
	if tp.Messages != 10000 || tp.Seconds != 10 || tp.Timeframe != "1m0s" {
		t.Fatalf("throughput %+v", tp)
	}
	for _, bad := range []string{"0s", "500ms", "2h", "abc", "-1m"} {
		f.do("GET", "/api/streams/default/throughput?timeframe="+bad, "", "").wantError(t, 400, "invalid_timeframe")
	}
}

func TestWindows(t *testing.T) {
	f := newFixture(t, nil)
	var list []windowJSON
	f.do("GET", "/api/streams/default/windows", "", "").want(t, 200, &list)
	if len(list) != 1 || list[0].ID != 0 || list[0].Spec != "tumbling:1m:avg" {
		t.Fatalf("windows %+v", list)
	}
	var created windowJSON
	f.do("POST", "/api/streams/default/windows", `{"spec":"tumbling:1m:vwap"}`, "").want(t, 201, &created)
	if created.ID != 1 || created.Spec != "tumbling:1m:vwap" || created.Aggregation != "vwap" {
		t.Fatalf("created %+v", created)
	}
	f.do("GET", "/api/streams/default/windows", "", "").want(t, 200, &list)
	if len(list) != 2 || list[1].Spec != "tumbling:1m:vwap" {
		t.Fatalf("windows %+v", list)
	}
	f.trades(200)
	f.waitProcessed(200)

	type aggReply struct {
		Window      windowJSON      `json:"window"`
		Aggregation string          `json:"aggregation"`
		Open        []windowAggJSON `json:"open"`
	}
	check := func(path, agg string, oracle func([]float64) float64) { // oracle nil: null values
		t.Helper()
		var r aggReply
		f.do("GET", path, "", "").want(t, 200, &r)
		if r.Aggregation != agg || len(r.Open) != testSyms {
			t.Fatalf("%s: %+v", path, r)
		}
		for _, w := range r.Open {
			prices := f.prices[w.Symbol]
			if oracle == nil {
				if w.Value != nil || w.Count != int64(len(prices)) {
					t.Fatalf("%s %s: %+v, want a null value", path, w.Symbol, w)
				}
				continue
			}
			want := oracle(prices)
			if w.Value == nil || math.Abs(*w.Value-want) > 1e-9*math.Abs(want) || w.Count != int64(len(prices)) || w.Start != base.Format(time.RFC3339Nano) {
				t.Fatalf("%s %s: %+v (value %v), want %v over %d trades", path, w.Symbol, w, w.Value, want, len(prices))
			}
		}
	}
	avg := func(p []float64) float64 {
		s := 0.0
		for _, x := range p {
			s += x
		}
		return s / float64(len(p))
	}
	check("/api/streams/default/windows/0", "avg", avg)
	check("/api/streams/default/windows/0?agg=sum", "sum", func(p []float64) float64 { return avg(p) * float64(len(p)) })
	// An avg window keeps no maximum: the value is null (NaN in the engine).
	check("/api/streams/default/windows/0?agg=max", "max", nil)
	check("/api/streams/default/windows/0?agg=count", "count", func(p []float64) float64 { return float64(len(p)) })
	check("/api/streams/default/windows/1", "vwap", avg) // equal volumes: the VWAP is the mean

	f.do("GET", "/api/streams/default/windows/0?agg=bogus", "", "").wantError(t, 400, "invalid_aggregation")
	f.do("GET", "/api/streams/default/windows/7", "", "").wantError(t, 404, "unknown_window")
	f.do("GET", "/api/streams/default/windows/abc", "", "").wantError(t, 404, "unknown_window")
	f.do("DELETE", "/api/streams/default/windows/0", "", "").wantError(t, 405, "method_not_allowed")
	f.do("DELETE", "/api/streams/default/windows", "", "").wantError(t, 405, "method_not_allowed")

	f.do("POST", "/api/streams/default/windows", `{"spec":"tumbling:xx:vwap"}`, "").wantError(t, 400, "invalid_spec")
	f.do("POST", "/api/streams/default/windows", `{"spec":""}`, "").wantError(t, 400, "invalid_spec")
	f.do("POST", "/api/streams/default/windows", `{"spec":"tumbling:1m:vwap"`, "").wantError(t, 400, "malformed_json")
	f.do("POST", "/api/streams/default/windows", `{"spec":"tumbling:1m:vwap"} {}`, "").wantError(t, 400, "malformed_json")
	f.do("POST", "/api/streams/default/windows", `{"spec":"tumbling:1m:vwap","size":3}`, "").wantError(t, 400, "unknown_field")
	big := `{"spec":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	f.do("POST", "/api/streams/default/windows", big, "").wantError(t, 413, "body_too_large")
	f.do("GET", "/api/streams/default/windows", "", "").want(t, 200, &list)
	if len(list) != 2 {
		t.Fatalf("a refused window was added: %+v", list)
	}
}

func TestPatterns(t *testing.T) {
	f := newFixture(t, nil)
	var list []patternJSON
	f.do("GET", "/api/streams/default/patterns", "", "").want(t, 200, &list)
	if len(list) != 1 || list[0].Name != "spike" || list[0].Type != "volume_spike" || !list[0].Active {
		t.Fatalf("patterns %+v", list)
	}
	const brk = `{"id":"brk","type":"price_breakout","threshold":0.001,"timeframe":"100us"}`
	var p patternJSON
	f.do("POST", "/api/streams/default/patterns", brk, "").want(t, 201, &p)
	if p.ID != 1 || p.Name != "brk" || p.Type != "price_breakout" || !p.Active || p.Timeframe != "100µs" {
		t.Fatalf("registered %+v", p)
	}
	f.do("POST", "/api/streams/default/patterns", brk, "").wantError(t, 409, "duplicate_pattern")
	f.do("POST", "/api/streams/default/patterns", `{"id":"x","type":"bogus"}`, "").wantError(t, 400, "invalid_spec")
	f.do("POST", "/api/streams/default/patterns", `{"id":"x","type":"price_breakout","threshold":0.01,"timeframe":"1m","colour":"red"}`, "").wantError(t, 400, "invalid_spec")
	f.do("POST", "/api/streams/default/patterns", `[`+brk+`]`, "").wantError(t, 400, "malformed_json")
	f.do("POST", "/api/streams/default/patterns", `{"id":"x",`, "").wantError(t, 400, "malformed_json")
	f.do("POST", "/api/streams/default/patterns", `{"id":"x"}],[{"id":"y"}`, "").wantError(t, 400, "malformed_json")
	f.do("POST", "/api/streams/default/patterns", `{"id":"`+strings.Repeat("x", DefaultMaxBodyBytes)+`"}`, "").wantError(t, 413, "body_too_large")

	// Rising prices break out of every 100 µs range.
	f.trades(400)
	f.waitProcessed(400)
	var ms []matchJSON
	deadline := time.Now().Add(10 * time.Second)
	for len(ms) == 0 && time.Now().Before(deadline) {
		f.do("GET", "/api/streams/default/patterns/1/matches", "", "").want(t, 200, &ms)
		time.Sleep(5 * time.Millisecond)
	}
	if len(ms) == 0 {
		t.Fatal("no breakout matches")
	}
	for _, m := range ms {
		if _, ok := f.prices[m.Symbol]; !ok || m.Details["current_price"] == nil || m.Confidence == nil {
			t.Fatalf("match %+v", m)
		}
	}
	f.do("GET", "/api/streams/default/patterns/1", "", "").want(t, 200, &p)
	if p.Matches < uint64(len(ms)) {
		t.Fatalf("pattern %+v counts fewer matches than the %d listed", p, len(ms))
	}

	f.do("DELETE", "/api/streams/default/patterns/1", "", "").want(t, 204, nil)
	f.do("DELETE", "/api/streams/default/patterns/1", "", "").wantError(t, 404, "unknown_pattern")
	f.do("DELETE", "/api/streams/default/patterns/99", "", "").wantError(t, 404, "unknown_pattern")
	f.do("DELETE", "/api/streams/default/patterns/x", "", "").wantError(t, 404, "unknown_pattern")
	f.do("GET", "/api/streams/default/patterns/99", "", "").wantError(t, 404, "unknown_pattern")
	f.do("GET", "/api/streams/default/patterns/99/matches", "", "").wantError(t, 404, "unknown_pattern")
	f.do("PUT", "/api/streams/default/patterns/0", "", "").wantError(t, 405, "method_not_allowed")
	f.do("PUT", "/api/streams/default/patterns", "", "").wantError(t, 405, "method_not_allowed")
	f.do("GET", "/api/streams/default/patterns", "", "").want(t, 200, &list)
	if len(list) != 2 || list[1].Active {
		t.Fatalf("after removal: %+v", list)
	}
	// Matches stay readable after the removal.
	f.do("GET", "/api/streams/default/patterns/1/matches", "", "").want(t, 200, &ms)
	if len(ms) == 0 {
		t.Fatal("matches gone after removal")
	}
}

func TestToken(t *testing.T) {
	const token = "s3cret"
	f := newFixture(t, func(o *Options) { o.Token = token })
	f.do("GET", "/healthz", "", "").want(t, 200, nil)
	f.do("GET", "/readyz", "", "").want(t, 200, nil)
	for _, p := range []string{"/metrics", "/api/streams", "/api/streams/default/lag", "/debug/pprof/", "/nothing"} {
		f.do("GET", p, "", "").wantError(t, 401, "unauthorized")
		f.do("GET", p, "", "wrong").wantError(t, 401, "unauthorized")
		f.do("GET", p, "", token+"x").wantError(t, 401, "unauthorized")
	}
	r := f.do("GET", "/metrics", "", "")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	f.do("POST", "/api/streams/default/pause", "", "").wantError(t, 401, "unauthorized")
	if f.eng.StreamPaused("default") {
		t.Fatal("paused without the token")
	}
	f.do("GET", "/metrics", "", token).want(t, 200, nil)
	f.do("GET", "/api/streams", "", token).want(t, 200, nil)
	f.do("POST", "/api/streams/default/pause", "", token).want(t, 200, nil)
	if !f.eng.StreamPaused("default") {
		t.Fatal("not paused with the token")
	}
	f.do("GET", "/nothing", "", token).wantError(t, 404, "not_found")
}

func TestPprof(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do("GET", "/debug/pprof/", "", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte("goroutine")) {
		t.Fatalf("/debug/pprof/: %d %s", r.status, r.body)
	}
	r = f.do("GET", "/debug/pprof/goroutine?debug=1", "", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte("goroutine profile")) {
		t.Fatalf("/debug/pprof/goroutine: %d %.200s", r.status, r.body)
	}
	r = f.do("GET", "/debug/pprof/cmdline", "", "")
	if r.status != 200 {
		t.Fatalf("/debug/pprof/cmdline: %d", r.status)
	}
}

// TestRunSamples checks that Run fills the throughput ring from the
// engine's count.
func TestRunSamples(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.SampleInterval = 10 * time.Millisecond; o.Now = time.Now })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.srv.Run(ctx); close(done) }()
	for { // the first sample (0) before the trades
		n := f.srv.tp.Samples()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	f.trades(300)
	f.waitProcessed(300)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _, ok := f.srv.tp.Rate(time.Hour)
		if ok && n == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring counts %d (%v), want 300", n, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// BenchmarkScrape measures one /metrics scrape of a two-shard engine that
// has processed trades (the cost is paid per scrape, never per event), and
// checks that the scrape holds the message counter.
func BenchmarkScrape(b *testing.B) {
	f := newFixture(b, nil)
	f.trades(1000)
	f.waitProcessed(1000)
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	var body string
	for b.Loop() {
		w := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(w, req)
		body = w.Body.String()
	}
	if v, ok := metricLine(body, "qstream_messages_total", `feed="trades"`); !ok || v != 1000 {
		b.Fatalf("scrape: qstream_messages_total %v (%v), want 1000", v, ok)
	}
}

// TestFilterAndTransform: PUT .../filter and .../transform set the
// stream's filter and transform (the engine's FilterStream and
// TransformStream); bad expressions, a missing field and an unknown
// stream are clear 4xx.
func TestFilterAndTransform(t *testing.T) {
	f := newFixture(t, nil)
	var got map[string]string
	f.do("PUT", "/api/streams/default/filter", `{"filter":"kind == trade and price > 0"}`, "").want(t, 200, &got)
	if got["filter"] != "kind == trade and price > 0" {
		t.Fatalf("filter reply %v", got)
	}
	f.do("PUT", "/api/streams/default/transform", `{"transform":"price = price * 2"}`, "").want(t, 200, &got)
	f.do("PUT", "/api/streams/default/filter", `{"filter":"price >"}`, "").wantError(t, 400, "invalid_spec")
	f.do("PUT", "/api/streams/default/transform", `{"transform":"colour = 1"}`, "").wantError(t, 400, "invalid_spec")
	f.do("PUT", "/api/streams/default/filter", `{}`, "").wantError(t, 400, "invalid_spec")
	f.do("PUT", "/api/streams/default/filter", `{"filter":"price > 1","colour":1}`, "").wantError(t, 400, "unknown_field")
	f.do("PUT", "/api/streams/default/filter", `{"filter":`, "").wantError(t, 400, "malformed_json")
	f.do("GET", "/api/streams/default/filter", "", "").wantError(t, 405, "method_not_allowed")
	f.do("PUT", "/api/streams/other/filter", `{"filter":"price > 1"}`, "").wantError(t, 404, "unknown_stream")
	f.do("PUT", "/api/streams/default/filter", `{"filter":""}`, "").want(t, 200, &got)
}
