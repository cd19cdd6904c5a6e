package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
)

// streamDef is what the test's StartStream hook and engine factory take:
// a stream id and its window specs.
type streamDef struct {
	Name    string `json:"name"`
	Windows string `json:"windows"`
}

// newStreamsFixture is newFixture with a stream factory and the
// StartStream and StopStream hooks: the body of POST /api/streams is a
// streamDef (unknown fields refused, as the configuration's decoder does).
func newStreamsFixture(t *testing.T) *fixture {
	t.Helper()
	symbols := codec.NewSymbolTable(64)
	pipeline := func(windows string) (engine.ProcessorFactory, error) {
		w, err := ops.ParseWindowSpecs(windows)
		if err != nil {
			return nil, err
		}
		return func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Windows: w, SymbolNames: symbols, MaxSymbolID: 64, MaxSlots: 64})
		}, nil
	}
	first, err := pipeline("tumbling:1m:avg")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{
		Shards:     2,
		Symbols:    symbols,
		StreamName: testName,
		Processors: first,
		StreamFactory: func(cfg engine.StreamConfig) (engine.StreamParts, error) {
			var d streamDef
			if err := json.Unmarshal(cfg.Spec, &d); err != nil {
				return engine.StreamParts{}, err
			}
			p, err := pipeline(d.Windows)
			return engine.StreamParts{Processors: p}, err
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
	opts := Options{Engine: eng, StreamName: testName, Now: func() time.Time { return time.Unix(0, f.now.Load()) },
		StartStream: func(_ context.Context, body []byte) (engine.StreamID, error) {
			var d streamDef
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&d); err != nil {
				return "", &ConfigError{Err: fmt.Errorf("stream: %w", err)}
			}
			if _, err := ops.ParseWindowSpecs(d.Windows); err != nil {
				return "", &ConfigError{Err: err}
			}
			return eng.StartStream(engine.StreamConfig{ID: engine.StreamID(d.Name), Spec: body})
		},
		StopStream: func(id engine.StreamID) error { return eng.StopStream(context.Background(), id) },
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

// Two streams over HTTP: created by POST, listed, paused one while the
// other runs, windows per stream, bad requests as clear 4xx, and a stop of
// the second that leaves the first running.
func TestTwoStreamsOverHTTP(t *testing.T) {
	f := newStreamsFixture(t)
	f.do("POST", "/api/streams", `{"name":"bars","windows":"tumbling:1s:count"}`, "").want(t, 201, nil)
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"name":"bars","windows":"tumbling:1s:count"}`, 409, "stream_exists"},
		{`{"name":"x","windows":"tumbling:1s:count",`, 400, "invalid_stream"},
		{`{"name":"x","windows":"tumbling:1s:count","extra":1}`, 400, "invalid_stream"},
		{`{"name":"x","windows":"tumbling:soon:count"}`, 400, "invalid_stream"},
		{`{"name":"a b","windows":"tumbling:1s:count"}`, 400, "invalid_stream"},
		{`{"name":"default","windows":"tumbling:1s:count"}`, 400, "invalid_stream"},
	} {
		f.do("POST", "/api/streams", c.body, "").wantError(t, c.status, c.code)
	}
	var list []streamJSON
	f.do("GET", "/api/streams", "", "").want(t, 200, &list)
	if len(list) != 2 || list[0].ID != StreamID || list[0].Name != testName || list[1].ID != "bars" || list[1].State != "running" {
		t.Fatalf("streams: %+v", list)
	}
	// The first stream answers to its name as well as to "default".
	f.do("GET", "/api/streams/"+testName, "", "").want(t, 200, nil)

	bars, err := f.eng.NewStreamPublisher("bars", "trades/0")
	if err != nil {
		t.Fatal(err)
	}
	defer bars.Close()
	var st streamJSON
	f.do("POST", "/api/streams/bars/pause", "", "").want(t, 200, &st)
	if st.State != "paused" || !f.eng.StreamPaused("bars") || f.eng.StreamPaused("default") {
		t.Fatalf("after pausing bars: %+v", st)
	}
	f.do("POST", "/api/streams/bars/pause", "", "").want(t, 200, nil) // idempotent
	held := make(chan struct{})
	go func() {
		defer close(held)
		for i := range 50 {
			ev := codec.Event{Kind: codec.KindTrade, TsNs: base.UnixNano() + int64(i)*1000, Symbol: 1, Price: 100, Volume: 1}
			if err := bars.Publish(&ev); err != nil {
				t.Error(err)
				return
			}
		}
		_ = bars.Flush()
	}()
	f.trades(100) // the first stream runs
	f.waitProcessed(100)
	var m metricsJSON
	f.do("GET", "/api/streams/bars/metrics", "", "").want(t, 200, &m)
	if m.Messages != 0 {
		t.Fatalf("the paused stream processed %d events", m.Messages)
	}
	select {
	case <-held:
		t.Fatal("the paused stream's publisher was not held")
	default:
	}
	f.do("POST", "/api/streams/bars/resume", "", "").want(t, 200, &st)
	<-held
	deadline := time.Now().Add(10 * time.Second)
	for m.Messages != 50 && time.Now().Before(deadline) {
		f.do("GET", "/api/streams/bars/metrics", "", "").want(t, 200, &m)
		time.Sleep(5 * time.Millisecond)
	}
	if m.Messages != 50 || m.ByFeed["trades"] != 50 {
		t.Fatalf("bars' metrics after resume: %+v", m)
	}
	var mf metricsJSON
	f.do("GET", "/api/streams/default/metrics", "", "").want(t, 200, &mf)
	if mf.Messages != 100 || mf.ByFeed["trades"] != 100 {
		t.Fatalf("the first stream's metrics: %+v", mf)
	}

	// Windows per stream.
	var ws []windowJSON
	f.do("POST", "/api/streams/bars/windows", `{"spec":"sliding:10s:max"}`, "").want(t, 201, nil)
	f.do("GET", "/api/streams/bars/windows", "", "").want(t, 200, &ws)
	if len(ws) != 2 || ws[0].Spec != "tumbling:1s:count" || ws[1].Spec != "sliding:10s:max" {
		t.Fatalf("bars' windows: %+v", ws)
	}
	f.do("GET", "/api/streams/default/windows", "", "").want(t, 200, &ws)
	if len(ws) != 1 || ws[0].Spec != "tumbling:1m:avg" {
		t.Fatalf("the first stream's windows: %+v", ws)
	}
	f.do("GET", "/api/streams/bars/windows/1", "", "").want(t, 200, nil)
	f.do("GET", "/api/streams/bars/windows/2", "", "").wantError(t, 404, "unknown_window")
	f.do("POST", "/api/streams/bars/windows", `{"spec":"tumbling:x:max"}`, "").wantError(t, 400, "invalid_spec")
	f.do("PUT", "/api/streams/bars/filter", `{"filter":"price > 10"}`, "").want(t, 200, nil)
	f.do("PUT", "/api/streams/bars/filter", `{"filter":"price >"}`, "").wantError(t, 400, "invalid_spec")
	// Patterns per stream: bars numbers its own.
	var pat patternJSON
	f.do("POST", "/api/streams/bars/patterns", `{"id":"spike","type":"volume_spike","multiplier":3,"baseline":"200us"}`, "").want(t, 201, &pat)
	if pat.ID != 0 || pat.Name != "spike" {
		t.Fatalf("bars' first pattern: %+v", pat)
	}
	var pats []patternJSON
	f.do("GET", "/api/streams/default/patterns", "", "").want(t, 200, &pats)
	if len(pats) != 0 {
		t.Fatalf("the first stream got bars' pattern: %+v", pats)
	}
	f.do("GET", "/api/streams/bars/patterns/0/matches", "", "").want(t, 200, nil)
	f.do("POST", "/api/streams/bars/patterns", `{"id":"spike","type":"volume_spike","multiplier":3,"baseline":"200us"}`, "").wantError(t, 409, "duplicate_pattern")
	f.do("DELETE", "/api/streams/bars/patterns/0", "", "").want(t, 204, nil)
	f.do("DELETE", "/api/streams/bars/patterns/0", "", "").wantError(t, 404, "unknown_pattern")
	f.do("GET", "/api/streams/bars/lag", "", "").want(t, 200, nil)
	f.do("GET", "/api/streams/bars/throughput?timeframe=1m", "", "").want(t, 200, nil)
	f.do("GET", "/api/streams/nope/metrics", "", "").wantError(t, 404, "unknown_stream")

	// Stop bars: its publisher closes first (the run command closes its
	// feeds); the first stream keeps running.
	bars.Close()
	f.do("POST", "/api/streams/bars/stop", "", "").want(t, 202, nil)
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if info := f.eng.Streams(); info[1].State == engine.StreamStopped {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.do("GET", "/api/streams/bars", "", "").wantError(t, 404, "unknown_stream")
	f.trades(10)
	f.waitProcessed(110)
	// A stopped stream's id can be used again.
	f.do("POST", "/api/streams", `{"name":"bars","windows":"tumbling:1s:count"}`, "").want(t, 201, nil)
}
