package feeds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"qstream/codec"
)

// wsTestServer is a WebSocket server on 127.0.0.1 (coder/websocket's server
// side) that records subscriptions and runs a script per connection.
type wsTestServer struct {
	t      *testing.T
	srv    *httptest.Server
	script func(ctx context.Context, n int, c *websocket.Conn) // n: connection number from 1

	mu    sync.Mutex
	subs  []string
	conns int
}

func newWSTestServer(t *testing.T, script func(ctx context.Context, n int, c *websocket.Conn)) *wsTestServer {
	s := &wsTestServer{t: t, script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *wsTestServer) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

func (s *wsTestServer) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.t.Errorf("accept: %v", err)
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	_, sub, err := c.Read(ctx) // the subscription comes first
	if err != nil {
		return
	}
	s.mu.Lock()
	s.subs = append(s.subs, string(sub))
	s.conns++
	n := s.conns
	s.mu.Unlock()
	s.script(ctx, n, c)
}

func (s *wsTestServer) subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subs...)
}

func cbMatch(tradeID, sequence int, last bool) string {
	typ := "match"
	if last {
		typ = "last_match"
	}
	return fmt.Sprintf(`{"type":%q,"trade_id":%d,"maker_order_id":"m-%d","taker_order_id":"t-%d","side":"sell","size":"0.5","price":"%d.25","product_id":"BTC-USD","sequence":%d,"time":"2024-01-02T14:30:00.%06dZ"}`,
		typ, tradeID, tradeID, tradeID, 40000+tradeID, sequence, tradeID)
}

const wsTestSub = `{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches"]}`

func wsCoinbaseAdapter(syms *codec.SymbolTable) (WSAdapter, error) {
	return codec.NewCoinbase(codec.CoinbaseOptions{Symbols: codec.NewSymbolCache(syms)}), nil
}

// runWSFeed runs f until the returned stop is called; stop returns Run's
// error.
func runWSFeed(t *testing.T, f *WSFeed, pubs Publishers) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, pubs) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return 10s after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func wsTestConfig(url string) WSConfig {
	return WSConfig{
		URL:        url,
		Subscribe:  [][]byte{[]byte(wsTestSub)},
		NewAdapter: wsCoinbaseAdapter,
		Backoff:    Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond, Min: 5 * time.Millisecond},
		JitterSeed: 1,
		Logger:     tcpQuietLogger(),
	}
}

// The must-show test: the server drops the connection mid-stream; the client
// reconnects, resubscribes (the server sees the subscription twice) and
// reports the trades lost in between as a gap.
func TestWSReconnectResubscribeGap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		detector func(WSAdapter) GapDetector
		seqStep  int // step of `sequence` between trades
		last     uint64
		next     uint64
	}{
		// matches channel: `sequence` skips by design, trade_id does not.
		{"coinbase trade_id", AdapterGapDetector, 3, 0, 0},
		// a feed whose sequence counts every message.
		{"strict sequence", SeqGapDetector(codec.SeqStrict), 1, 1050, 1061},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
				send := func(id int, last bool) {
					if err := c.Write(ctx, websocket.MessageText, []byte(cbMatch(id, 1000+id*tc.seqStep, last))); err != nil {
						t.Errorf("server write: %v", err)
					}
				}
				switch n {
				case 1:
					for id := 1; id <= 50; id++ {
						send(id, false)
					}
					c.CloseNow() // drop mid-stream: no close frame
				case 2:
					// Coinbase re-sends the last trade before the subscription
					// as last_match; trades 51..60 happened while we were away.
					send(50, true)
					for id := 61; id <= 100; id++ {
						send(id, false)
					}
					_, _, _ = c.Read(ctx) // hold the connection until the client leaves
				default:
					t.Errorf("unexpected connection %d", n)
				}
			})
			rec := newNetRecorder(t, true)
			var gaps []SeqGap
			var gapMu sync.Mutex
			cfg := wsTestConfig(srv.url())
			cfg.Source = 3
			cfg.NewGapDetector = tc.detector
			cfg.OnGap = func(g SeqGap) { gapMu.Lock(); gaps = append(gaps, g); gapMu.Unlock() }
			f, err := NewWSFeed(cfg)
			if err != nil {
				t.Fatal(err)
			}
			stop := runWSFeed(t, f, rec)
			netWaitFor(t, 10*time.Second, "90 trades", func() bool { return rec.snapshot().published == 90 })
			if err := stop(); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if subs := srv.subscriptions(); len(subs) != 2 || subs[0] != wsTestSub || subs[1] != wsTestSub {
				t.Errorf("server saw subscriptions %q, want the subscription twice", subs)
			}
			sn := rec.snapshot()
			for i, ev := range sn.events {
				id := i + 1
				if i >= 50 {
					id = i + 11
				}
				if ev.Kind != codec.KindTrade || ev.Price != float64(40000+id)+0.25 || ev.Volume != 0.5 ||
					ev.Seq != 0 || ev.Source != 3 || rec.syms.Name(ev.Symbol) != "BTC-USD" {
					t.Fatalf("event %d = %+v, want trade %d", i, ev, id)
				}
			}
			sym, _ := rec.syms.Lookup([]byte("BTC-USD"))
			want := SeqGap{Symbol: sym, Last: tc.last, Next: tc.next, Missing: 10, Msg: 52}
			gapMu.Lock()
			if len(gaps) != 1 || gaps[0] != want {
				t.Errorf("gaps %+v, want [%+v]", gaps, want)
			}
			gapMu.Unlock()
			if len(sn.rejects) != 1 || sn.rejects[0].Reason != codec.ReasonSequenceGap ||
				sn.rejects[0].Raw != cbMatch(61, 1000+61*tc.seqStep, false) || sn.rejects[0].Pos.Line != 52 {
				t.Errorf("rejects %+v, want one sequence_gap with trade 61's message (message 52)", sn.rejects)
			}
			st := f.Stats()
			if st.Connects != 2 || st.Subscribes != 2 || st.Gaps != 1 || st.Missing != 10 || st.Events != 90 || st.Messages != 91 {
				t.Errorf("stats %+v, want 2 connects and subscribes, 1 gap of 10, 90 events of 91 messages", st)
			}
			if tc.detector != nil && tc.seqStep == 3 && st.Skipped != 1 {
				t.Errorf("skipped %d, want 1 (the re-sent last_match)", st.Skipped)
			}
		})
	}
}

// No message for StaleAfter: the client reconnects and resubscribes.
func TestWSStale(t *testing.T) {
	srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		for id := 1; id <= 3; id++ {
			_ = c.Write(ctx, websocket.MessageText, []byte(cbMatch(n*10+id, n*10+id, false)))
		}
		_, _, _ = c.Read(ctx) // then silence (the connection stays open)
	})
	rec := newNetRecorder(t, true)
	cfg := wsTestConfig(srv.url())
	cfg.StaleAfter = 150 * time.Millisecond
	cfg.PingInterval = -1
	f, err := NewWSFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWSFeed(t, f, rec)
	netWaitFor(t, 10*time.Second, "two stale sessions and a third", func() bool {
		st := f.Stats()
		return st.Stale >= 2 && st.Connects >= 3
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if st.Connects < 3 || len(srv.subscriptions()) < 3 || st.Events < 6 {
		t.Errorf("stats %+v, subscriptions %d: want >= 3 sessions, each subscribed, >= 6 events", st, len(srv.subscriptions()))
	}
}

// While the read loop waits in Publish (backpressure), the silence is not
// staleness and pings are not sent.
func TestWSNoStaleWhilePublishBlocks(t *testing.T) {
	srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		for id := 1; id <= 5; id++ {
			_ = c.Write(ctx, websocket.MessageText, []byte(cbMatch(id, id, false)))
		}
		_, _, _ = c.Read(ctx)
	})
	rec := newNetRecorder(t, false)
	rec.gate = make(chan struct{})
	rec.blockAfter = 1
	cfg := wsTestConfig(srv.url())
	cfg.StaleAfter = 50 * time.Millisecond
	cfg.PingInterval = 30 * time.Millisecond
	cfg.PongTimeout = 30 * time.Millisecond
	f, err := NewWSFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runWSFeed(t, f, rec)
	netWaitFor(t, 10*time.Second, "Publish to block", func() bool { return rec.blocked.Load() == 1 })
	time.Sleep(400 * time.Millisecond) // 8 staleness periods
	if st := f.Stats(); st.Stale != 0 || st.PingFailures != 0 || st.Connects != 1 {
		t.Errorf("stats %+v: a blocked Publish was taken for a dead server", st)
	}
	close(rec.gate)
	netWaitFor(t, 10*time.Second, "5 events", func() bool { return rec.total.Load() == 5 })
}

func TestWSPing(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
			_, _, _ = c.Read(ctx) // reading answers pings
		})
		cfg := wsTestConfig(srv.url())
		cfg.PingInterval, cfg.PongTimeout, cfg.StaleAfter = 20*time.Millisecond, time.Second, -1
		f, err := NewWSFeed(cfg)
		if err != nil {
			t.Fatal(err)
		}
		runWSFeed(t, f, newNetRecorder(t, false))
		netWaitFor(t, 10*time.Second, "3 pongs", func() bool { return f.Stats().Pings >= 3 })
		if st := f.Stats(); st.PingFailures != 0 || st.Connects != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("unanswered", func(t *testing.T) {
		srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
			<-ctx.Done() // never reads: pings go unanswered
		})
		cfg := wsTestConfig(srv.url())
		cfg.PingInterval, cfg.PongTimeout, cfg.StaleAfter = 20*time.Millisecond, 50*time.Millisecond, -1
		f, err := NewWSFeed(cfg)
		if err != nil {
			t.Fatal(err)
		}
		runWSFeed(t, f, newNetRecorder(t, false))
		// The server records the second subscription after the feed counts
		// its second connect: wait for both.
		netWaitFor(t, 10*time.Second, "a ping failure, a reconnect and a resubscription", func() bool {
			st := f.Stats()
			return st.PingFailures >= 1 && st.Connects >= 2 && len(srv.subscriptions()) >= 2
		})
	})
}

func TestWSOversize(t *testing.T) {
	big := `{"type":"heartbeat","pad":"` + strings.Repeat("x", 1000) + `"}`
	srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		if n == 1 {
			_ = c.Write(ctx, websocket.MessageText, []byte(cbMatch(1, 1, false)))
			_ = c.Write(ctx, websocket.MessageText, []byte(big))
		}
		_ = c.Write(ctx, websocket.MessageText, []byte(cbMatch(n+1, n+1, false)))
		_, _, _ = c.Read(ctx)
	})
	rec := newNetRecorder(t, true)
	cfg := wsTestConfig(srv.url())
	cfg.MaxMessageSize = len(cbMatch(1, 1, false)) // exactly one match fits
	f, err := NewWSFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runWSFeed(t, f, rec)
	netWaitFor(t, 10*time.Second, "the trade after the reconnect", func() bool { return rec.snapshot().published == 2 })
	sn, st := rec.snapshot(), f.Stats()
	if st.Oversize != 1 || st.Connects != 2 {
		t.Errorf("stats %+v, want 1 oversize and a reconnect", st)
	}
	if len(sn.rejects) != 1 || sn.rejects[0].Reason != codec.ReasonOversize || !strings.HasPrefix(big, sn.rejects[0].Raw) {
		t.Errorf("rejects %+v, want one oversize with the message's start", sn.rejects)
	}
}

// Undecodable messages are rejected and the session goes on.
func TestWSRejects(t *testing.T) {
	srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		for _, m := range []string{cbMatch(1, 1, false), `{"type":"match","trade_id":2`, `{"type":"heartbeat","sequence":1}`, `{"type":"nonsense"}`, cbMatch(2, 2, false)} {
			_ = c.Write(ctx, websocket.MessageText, []byte(m))
		}
		_, _, _ = c.Read(ctx)
	})
	rec := newNetRecorder(t, true)
	f, err := NewWSFeed(wsTestConfig(srv.url()))
	if err != nil {
		t.Fatal(err)
	}
	runWSFeed(t, f, rec)
	netWaitFor(t, 10*time.Second, "2 trades", func() bool { return rec.snapshot().published == 2 })
	sn, st := rec.snapshot(), f.Stats()
	if len(sn.rejects) != 2 || sn.rejects[0].Reason != codec.ReasonMalformed || sn.rejects[0].Pos.Line != 2 ||
		sn.rejects[1].Reason != codec.ReasonUnknownKind || sn.rejects[1].Pos.Line != 4 {
		t.Errorf("rejects %+v, want malformed at message 2 and unknown_kind at message 4", sn.rejects)
	}
	if st.Rejects != 2 || st.Skipped != 1 || st.Connects != 1 {
		t.Errorf("stats %+v", st)
	}
}

// With MaxAttempts, Run gives up after that many consecutive failures.
func TestWSRetriesExhausted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	cfg := wsTestConfig("ws://" + addr + "/feed")
	cfg.Backoff.MaxAttempts = 3
	f, err := NewWSFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Run(context.Background(), newNetRecorder(t, false))
	if !errors.Is(err, ErrRetriesExhausted) || !strings.HasPrefix(err.Error(), "ws: ") {
		t.Fatalf("Run = %v, want ErrRetriesExhausted", err)
	}
	if st := f.Stats(); st.Dials != 3 || st.DialErrors != 3 || st.Connects != 0 {
		t.Errorf("stats %+v, want 3 failed dials", st)
	}
}

func TestWSEngineStopped(t *testing.T) {
	srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		_ = c.Write(ctx, websocket.MessageText, []byte(cbMatch(1, 1, false)))
		_, _, _ = c.Read(ctx)
	})
	rec := newNetRecorder(t, false)
	rec.stop()
	f, err := NewWSFeed(wsTestConfig(srv.url()))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background(), rec); !errors.Is(err, ErrStopped) {
		t.Fatalf("Run = %v, want ErrStopped", err)
	}
}

func TestWSConfigErrors(t *testing.T) {
	for _, cfg := range []WSConfig{
		{NewAdapter: wsCoinbaseAdapter},
		{URL: "ws://127.0.0.1:1"},
		{URL: "ws://127.0.0.1:1", NewAdapter: wsCoinbaseAdapter, MaxMessageSize: 1 << 30},
	} {
		if _, err := NewWSFeed(cfg); !errors.Is(err, ErrWSConfig) {
			t.Errorf("NewWSFeed(%+v) = %v, want ErrWSConfig", cfg, err)
		}
	}
}

// Decoding and publishing a message allocates nothing in the feed.
func TestWSHandleNoAlloc(t *testing.T) {
	syms := codec.NewSymbolTable(0)
	a, _ := wsCoinbaseAdapter(syms)
	f, err := NewWSFeed(wsTestConfig("ws://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	f.pub, f.adapter = &tcpNullPub{}, a
	f.gaps = SeqGapDetector(codec.SeqMonotonic)(a)
	f.dst = make([]codec.Event, 0, DefaultWSMaxEvents)
	msgs := make([][]byte, 1200) // increasing trade ids: no duplicate is skipped
	for i := range msgs {
		msgs[i] = []byte(cbMatch(i+1, i+1, false))
	}
	i := 0
	run := func() {
		f.msgNo++
		if err := f.handle(msgs[i]); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 100 {
		run() // warm up: intern the symbol, grow the trackers
	}
	if n := testing.AllocsPerRun(1000, run); n != 0 {
		t.Errorf("%v allocs per message, want 0", n)
	}
	if st := f.Stats(); st.Events != 1101 || st.Skipped != 0 {
		t.Errorf("stats %+v, want 1101 events", st)
	}
}
