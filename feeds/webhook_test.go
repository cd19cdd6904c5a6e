package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
)

var whSecret = []byte("test-secret-0123456789abcdef")

// whClock is the webhook's injectable clock, in Unix seconds.
type whClock struct{ sec atomic.Int64 }

func (c *whClock) now() time.Time { return time.Unix(c.sec.Load(), 0) }

type whEnv struct {
	t     *testing.T
	wh    *Webhook
	rec   *netRecorder
	clock *whClock
	url   string
	stop  func() error
}

func startWebhook(t *testing.T, cfg WebhookConfig, rec *netRecorder) *whEnv {
	t.Helper()
	clock := &whClock{}
	clock.sec.Store(1_700_000_000)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Secret == nil {
		cfg.Secret = whSecret
	}
	cfg.Now = clock.now
	cfg.Logger = tcpQuietLogger()
	wh, err := NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wh.Run(ctx, rec) }()
	select {
	case <-wh.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("webhook not ready")
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return &whEnv{t: t, wh: wh, rec: rec, clock: clock, url: fmt.Sprintf("http://%s%s", wh.Addr(), wh.cfg.Path), stop: stop}
}

type whResp struct {
	code  int
	Error string `json:"error"`
	Index *int   `json:"index"`
	N     int    `json:"accepted"`
}

// post sends body signed at the clock's time (or as edit changes it).
func (e *whEnv) post(delivery, body string, edit func(h http.Header)) whResp {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	SetWebhookHeaders(req.Header, whSecret, e.clock.now(), delivery, []byte(body))
	if edit != nil {
		edit(req.Header)
	}
	return e.do(req)
}

func (e *whEnv) do(req *http.Request) whResp {
	e.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := whResp{code: res.StatusCode}
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatalf("status %d, body %q: %v", res.StatusCode, b, err)
	}
	return r
}

func whTick(sym string, seq int, price float64) string {
	return fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%g,"volume":1,"id":"w-%d"}`, sym, 1700000000000000000+seq, price, seq)
}

func TestWebhookAccepts(t *testing.T) {
	e := startWebhook(t, WebhookConfig{Source: 4}, newNetRecorder(t, true))
	if r := e.post("d1", whTick("AAPL", 1, 10), nil); r.code != http.StatusAccepted || r.N != 1 {
		t.Fatalf("single event: %+v, want 202 accepted 1", r)
	}
	arr := "[\n " + whTick("AAPL", 2, 11) + ",\n" + whTick("MSFT", 3, 12) + " , " + whTick("AAPL", 4, 13) + "]\n"
	if r := e.post("d2", arr, nil); r.code != http.StatusAccepted || r.N != 3 {
		t.Fatalf("array: %+v, want 202 accepted 3", r)
	}
	sn := e.rec.snapshot()
	if sn.published != 4 || sn.barriers < 2 {
		t.Fatalf("published %d, barriers %d: want 4 events made durable before each 202", sn.published, sn.barriers)
	}
	for i, ev := range sn.events {
		if ev.Price != float64(10+i) || ev.Source != 4 || ev.Kind != codec.KindTrade || ev.IDHash != codec.HashID([]byte(fmt.Sprintf("w-%d", i+1))) {
			t.Errorf("event %d = %+v", i, ev)
		}
	}
	if st := e.wh.Stats(); st.Requests != 2 || st.Accepted != 2 || st.Events != 4 {
		t.Errorf("stats %+v", st)
	}
}

// 202 is sent only once Barrier returned: the events are durable.
func TestWebhookWaitsForDurability(t *testing.T) {
	rec := newNetRecorder(t, true)
	rec.barrierGate = make(chan struct{})
	e := startWebhook(t, WebhookConfig{}, rec)
	got := make(chan whResp, 1)
	go func() { got <- e.post("d1", whTick("AAPL", 1, 10), nil) }()
	netWaitFor(t, 10*time.Second, "the event to be published", func() bool { return rec.snapshot().published == 1 })
	select {
	case r := <-got:
		t.Fatalf("answered %+v before the barrier returned", r)
	case <-time.After(200 * time.Millisecond):
	}
	close(rec.barrierGate)
	if r := <-got; r.code != http.StatusAccepted {
		t.Fatalf("%+v, want 202", r)
	}
}

func TestWebhookRejects(t *testing.T) {
	e := startWebhook(t, WebhookConfig{MaxEvents: 3, MaxBodyBytes: 2048}, newNetRecorder(t, true))
	good := whTick("AAPL", 1, 10)
	now := e.clock.now()
	resign := func(body string) func(http.Header) {
		return func(h http.Header) { h.Set(WebhookSignatureHeader, SignWebhook(whSecret, now.Unix(), []byte(body))) }
	}
	tests := []struct {
		name   string
		body   string
		edit   func(h http.Header)
		code   int
		reason string
		index  int
	}{
		{"wrong secret", good, func(h http.Header) {
			h.Set(WebhookSignatureHeader, SignWebhook([]byte("other"), now.Unix(), []byte(good)))
		}, 401, "bad_signature", -1},
		{"no signature", good, func(h http.Header) { h.Del(WebhookSignatureHeader) }, 401, "bad_signature", -1},
		{"not hex", good, func(h http.Header) { h.Set(WebhookSignatureHeader, "sha256="+strings.Repeat("zz", 32)) }, 401, "bad_signature", -1},
		{"no prefix", good, func(h http.Header) {
			h.Set(WebhookSignatureHeader, SignWebhook(whSecret, now.Unix(), []byte(good))[7:])
		}, 401, "bad_signature", -1},
		{"timestamp changed", good, func(h http.Header) { h.Set(WebhookTimestampHeader, fmt.Sprint(now.Unix()+1)) }, 401, "bad_signature", -1},
		{"body changed", good, func(h http.Header) {
			h.Set(WebhookSignatureHeader, SignWebhook(whSecret, now.Unix(), []byte(good+" ")))
		}, 401, "bad_signature", -1},
		{"stale", good, func(h http.Header) {
			SetWebhookHeaders(h, whSecret, now.Add(-301*time.Second), h.Get(WebhookDeliveryHeader), []byte(good))
		}, 401, "stale_timestamp", -1},
		{"future", good, func(h http.Header) {
			SetWebhookHeaders(h, whSecret, now.Add(301*time.Second), h.Get(WebhookDeliveryHeader), []byte(good))
		}, 401, "stale_timestamp", -1},
		{"no timestamp", good, func(h http.Header) { h.Del(WebhookTimestampHeader) }, 400, "bad_timestamp", -1},
		{"rfc3339 timestamp", good, func(h http.Header) { h.Set(WebhookTimestampHeader, now.Format(time.RFC3339)) }, 400, "bad_timestamp", -1},
		{"no delivery", good, func(h http.Header) { h.Del(WebhookDeliveryHeader) }, 400, "bad_delivery_id", -1},
		{"long delivery", good, func(h http.Header) { h.Set(WebhookDeliveryHeader, strings.Repeat("d", 129)) }, 400, "bad_delivery_id", -1},
		{"not json", "hello", resign("hello"), 400, "malformed_json", -1},
		{"array of numbers", "[1,2]", resign("[1,2]"), 400, "malformed_json", -1},
		{"trailing data", good + "{}", resign(good + "{}"), 400, "malformed_json", -1},
		{"unclosed array", "[" + good, resign("[" + good), 400, "malformed_json", -1},
		{"missing comma", "[" + good + good + "]", resign("[" + good + good + "]"), 400, "malformed_json", -1},
		{"empty array", "[ ]", resign("[ ]"), 422, "no_events", -1},
		{"too many", "[" + good + "," + good + "," + good + "," + good + "]", resign("[" + good + "," + good + "," + good + "," + good + "]"), 413, "too_many_events", -1},
		{"oversize", "[" + strings.Repeat(good+",", 40) + good + "]", resign("[" + strings.Repeat(good+",", 40) + good + "]"), 413, "body_too_large", -1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(fmt.Sprintf("rej-%d", i), tc.body, tc.edit)
			idx := -1
			if r.Index != nil {
				idx = *r.Index
			}
			if r.code != tc.code || r.Error != tc.reason || idx != tc.index {
				t.Errorf("got %d %q index %d, want %d %q index %d", r.code, r.Error, idx, tc.code, tc.reason, tc.index)
			}
		})
	}
	if sn := e.rec.snapshot(); sn.published != 0 {
		t.Errorf("%d events published by rejected requests", sn.published)
	}
	// An invalid event fails the whole request and goes to the dead-letter
	// output.
	bad := `{"type":"trade","symbol":"AAPL","ts":1,"price":-5,"volume":1}`
	body := "[" + good + ", " + bad + "]"
	r := e.post("invalid", body, nil)
	if r.code != 422 || r.Error != "bad_price" || r.Index == nil || *r.Index != 1 {
		t.Fatalf("invalid event: %+v, want 422 bad_price index 1", r)
	}
	sn := e.rec.snapshot()
	if sn.published != 0 || len(sn.rejects) != 1 || sn.rejects[0].Raw != bad || sn.rejects[0].Reason != codec.ReasonBadPrice ||
		sn.rejects[0].Pos.Offset != int64(strings.Index(body, bad)) {
		t.Fatalf("published %d, rejects %+v: want none published and the bad event rejected at its offset", sn.published, sn.rejects)
	}
	// GET is not allowed.
	res, err := http.Get(e.url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", res.StatusCode)
	}
	st := e.wh.Stats()
	if st.BadSignature != 6 || st.Stale != 2 || st.Oversize != 2 || st.Invalid != 2 || st.Accepted != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A chunked body over the limit is cut off by http.MaxBytesReader.
func TestWebhookOversizeChunked(t *testing.T) {
	e := startWebhook(t, WebhookConfig{MaxBodyBytes: 1024}, newNetRecorder(t, true))
	body := "[" + strings.Repeat(whTick("AAPL", 1, 1)+",", 30) + whTick("AAPL", 1, 1) + "]"
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(body); i += 100 {
			if _, err := pw.Write([]byte(body[i:min(i+100, len(body))])); err != nil {
				break
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, e.url, pr) // no Content-Length: chunked
	SetWebhookHeaders(req.Header, whSecret, e.clock.now(), "chunked", []byte(body))
	if r := e.do(req); r.code != http.StatusRequestEntityTooLarge || r.Error != "body_too_large" {
		t.Fatalf("%+v, want 413 body_too_large", r)
	}
}

func TestWebhookReplay(t *testing.T) {
	e := startWebhook(t, WebhookConfig{ReplayCapacity: 3}, newNetRecorder(t, true))
	body := whTick("AAPL", 1, 10)
	if r := e.post("d1", body, nil); r.code != 202 {
		t.Fatalf("first delivery: %+v", r)
	}
	// The same delivery again, freshly signed: a replay.
	e.clock.sec.Add(10)
	if r := e.post("d1", body, nil); r.code != http.StatusConflict || r.Error != "replayed_delivery" {
		t.Fatalf("replay: %+v, want 409 replayed_delivery", r)
	}
	// A delivery that failed may be retried with the same id.
	if r := e.post("d2", `{"type":"trade"}`, nil); r.code != 422 {
		t.Fatalf("invalid delivery: %+v, want 422", r)
	}
	if r := e.post("d2", body, nil); r.code != 202 {
		t.Fatalf("retried delivery: %+v, want 202", r)
	}
	if r := e.post("d3", body, nil); r.code != 202 {
		t.Fatalf("d3: %+v", r)
	}
	// Three ids held within the window: the cache is full.
	if r := e.post("d4", body, nil); r.code != http.StatusServiceUnavailable || r.Error != "replay_cache_full" {
		t.Fatalf("d4 with a full cache: %+v, want 503 replay_cache_full", r)
	}
	// Past the tolerance, the old ids expire, and their replays are stale.
	old := e.clock.now()
	e.clock.sec.Add(int64(DefaultWebhookTolerance/time.Second) + 2)
	if r := e.post("d1", body, func(h http.Header) { SetWebhookHeaders(h, whSecret, old, "d1", []byte(body)) }); r.code != 401 || r.Error != "stale_timestamp" {
		t.Fatalf("old replay: %+v, want 401 stale_timestamp", r)
	}
	if r := e.post("d4", body, nil); r.code != 202 {
		t.Fatalf("d4 after expiry: %+v, want 202", r)
	}
	if sn := e.rec.snapshot(); sn.published != 4 {
		t.Errorf("published %d, want 4 (d1, d2, d3, d4 once each)", sn.published)
	}
	if st := e.wh.Stats(); st.Replays != 1 || st.Unavailable != 1 {
		t.Errorf("stats %+v", st)
	}
}

// If the events cannot be made durable, the request gets 503 and the
// delivery id stays free for a retry.
func TestWebhookNotDurable(t *testing.T) {
	rec := newNetRecorder(t, true)
	e := startWebhook(t, WebhookConfig{}, rec)
	bad := errNetTestBarrier
	rec.barrierErr.Store(&bad)
	body := whTick("AAPL", 1, 10)
	if r := e.post("d1", body, nil); r.code != http.StatusServiceUnavailable || r.Error != "unavailable" {
		t.Fatalf("%+v, want 503 unavailable", r)
	}
	rec.barrierErr.Store(nil)
	if r := e.post("d1", body, nil); r.code != 202 {
		t.Fatalf("retry: %+v, want 202", r)
	}
}

// Concurrent requests all get through one publishing goroutine; the
// recorder fails the test if its Publisher is used concurrently.
func TestWebhookConcurrent(t *testing.T) {
	rec := newNetRecorder(t, true)
	rec.barrierSleep = 2 * time.Millisecond // a WAL sync: requests queue up behind it
	e := startWebhook(t, WebhookConfig{Concurrency: 4}, rec)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq := w*each + i + 1
				body := "[" + whTick("AAPL", seq, float64(seq)) + "," + whTick("MSFT", seq, float64(seq)) + "]"
				if r := e.post(fmt.Sprintf("c-%d", seq), body, nil); r.code != 202 || r.N != 2 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	sn := rec.snapshot()
	if bad.Load() != 0 || sn.published != 2*workers*each {
		t.Fatalf("%d failed requests, %d events published; want all %d", bad.Load(), sn.published, 2*workers*each)
	}
	st := e.wh.Stats()
	if st.Barriers == 0 || st.Barriers >= workers*each {
		t.Errorf("%d barriers for %d requests: want requests to share barriers (group commit)", st.Barriers, workers*each)
	}
	t.Logf("%d requests made durable by %d barriers", workers*each, st.Barriers)
}

// A client that dribbles its headers is cut off by ReadHeaderTimeout.
func TestWebhookSlowHeaders(t *testing.T) {
	e := startWebhook(t, WebhookConfig{ReadHeaderTimeout: 200 * time.Millisecond}, newNetRecorder(t, true))
	c, err := net.Dial("tcp", e.wh.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan struct{})
	go func() { // the server's answer, if any, then EOF
		_, _ = io.Copy(io.Discard, c)
		close(closed)
	}()
	if _, err := c.Write([]byte("POST /webhook HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ { // would take 10s to finish
		select {
		case <-closed:
			if st := e.wh.Stats(); st.Requests != 0 {
				t.Errorf("stats %+v: the request reached the handler", st)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.Write([]byte(fmt.Sprintf("X-Slow-%d: y\r\n", i))); err != nil {
			return // reset by the server: cut off
		}
	}
	t.Fatal("the server kept reading headers for 10s")
}

// A client that dribbles its body gets 408 once ReadTimeout passes.
func TestWebhookSlowBody(t *testing.T) {
	e := startWebhook(t, WebhookConfig{ReadTimeout: 300 * time.Millisecond}, newNetRecorder(t, true))
	c, err := net.Dial("tcp", e.wh.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := whTick("AAPL", 1, 1)
	var h bytes.Buffer
	hdr := http.Header{}
	SetWebhookHeaders(hdr, whSecret, e.clock.now(), "slow", []byte(body))
	fmt.Fprintf(&h, "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", len(body))
	_ = hdr.Write(&h)
	h.WriteString("\r\n")
	h.WriteString(body[:10])
	if _, err := c.Write(h.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, _ := io.ReadAll(c)
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 408")) || !bytes.Contains(resp, []byte(`"request_timeout"`)) {
		t.Fatalf("response %q, want 408 request_timeout", resp)
	}
	if st := e.wh.Stats(); st.Timeouts != 1 || e.rec.snapshot().published != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, cfg := range []WebhookConfig{
		{Secret: whSecret},
		{Addr: "127.0.0.1:0"},
		{Addr: "127.0.0.1:0", Secret: whSecret, Path: "webhook"},
		{Addr: "127.0.0.1:0", Secret: whSecret, MaxBodyBytes: 1 << 30},
	} {
		if _, err := NewWebhook(cfg); !errors.Is(err, ErrWebhookConfig) {
			t.Errorf("NewWebhook(%+v) = %v, want ErrWebhookConfig", cfg, err)
		}
	}
}

func TestJSONArrayIter(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{`{"a":1}`, []string{`{"a":1}`}, nil},
		{" \n{\"a\":\"}\"}\n", []string{`{"a":"}"}`}, nil},
		{`[{"a":1},{"b":[1,{"c":2}]}]`, []string{`{"a":1}`, `{"b":[1,{"c":2}]}`}, nil},
		{`[ ]`, nil, nil},
		{`[{"a":"\"]"} , {"b":2}]`, []string{`{"a":"\"]"}`, `{"b":2}`}, nil},
		{``, nil, errJSONNotObject},
		{`"x"`, nil, errJSONNotObject},
		{`[1]`, nil, errJSONNotObject},
		{`[{"a":1}`, []string{`{"a":1}`}, errJSONUnclosed},
		{`[{"a":1}{"b":2}]`, []string{`{"a":1}`}, errJSONSeparator},
		{`{"a":1}x`, nil, errJSONTrailing},
		{`[{"a":1}] x`, []string{`{"a":1}`}, errJSONTrailing},
		{`{"a":"unterminated}`, nil, errJSONUnclosed},
		{`{]`, nil, errJSONUnbalanced},
		{`[{"a":[1}]}]`, nil, errJSONUnbalanced},
		{strings.Repeat("[", 300), nil, errJSONNotObject},
		{"{" + strings.Repeat(`"a":[`, 300), nil, errJSONDepth},
	}
	for _, tc := range tests {
		it := jsonArrayIter{b: []byte(tc.in)}
		var got []string
		err := it.start()
		for err == nil {
			var elem []byte
			var off int
			elem, off, err = it.next()
			if elem == nil {
				break
			}
			if string(elem) != tc.in[off:off+len(elem)] {
				t.Errorf("%q: element %q not at offset %d", tc.in, elem, off)
			}
			got = append(got, string(elem))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || err != tc.err {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzWebhookBody: any body is split without panics, and every element the
// iterator returns is a balanced object at its stated offset.
func FuzzWebhookBody(f *testing.F) {
	f.Add([]byte(`[{"type":"trade","symbol":"AAPL","ts":1,"price":1.5,"volume":2},{"type":"quote","symbol":"MSFT","ts":2,"bid":1,"ask":2}]`))
	f.Add([]byte(`{"message_id":"m1","payload":{"MarketData":{"symbol":"AAPL"}}}`))
	f.Add([]byte(`[{"a":"\\\"}"}, {}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		it := jsonArrayIter{b: body}
		if it.start() != nil {
			return
		}
		for i := 0; i < len(body)+1; i++ {
			elem, off, err := it.next()
			if err != nil || elem == nil {
				return
			}
			if !bytes.Equal(body[off:off+len(elem)], elem) || elem[0] != '{' || elem[len(elem)-1] != '}' {
				t.Fatalf("bad element %q at %d", elem, off)
			}
		}
		t.Fatal("iterator did not end")
	})
}

func ExampleSignWebhook() {
	body := []byte(`{"type":"trade","symbol":"AAPL","ts":1700000000000000000,"price":189.23,"volume":300}`)
	// The sender sets X-Qstream-Timestamp: 1700000000 and this signature.
	fmt.Println(SignWebhook([]byte("s3cret"), 1700000000, body))
	// Output: sha256=4cb89507acba2d350426f5d05e07de71934634daf4f877ed3625e730386db895
}
