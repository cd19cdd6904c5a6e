package sinks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qstream/codec"
	"qstream/ops"
)

const testNATS = "nats://127.0.0.1:4222"

// natsConn connects to url or fails the test with how to start the server.
func natsConn(t testing.TB, u string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(u, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server with JetStream is not reachable at %s: %v (start it with `make services`)", u, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsUnique returns a name unique to this test run.
func natsUnique(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e12)
}

// natsEnv returns an Env with the given symbols interned (ids 1..n).
func natsEnv(t testing.TB, symbols ...string) Env {
	t.Helper()
	tab := codec.NewSymbolTable(1 << 10)
	for _, s := range symbols {
		if _, err := tab.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	return Env{JSONL: JSONLConfig{Symbols: tab, Indicators: []string{"sma_5", "vwap"}}}
}

// natsOutputs returns n indicator outputs spread over symbol ids 1..nsym,
// with keys base+i.
func natsOutputs(n, nsym int, base uint64) []ops.Output {
	outs := make([]ops.Output, n)
	for i := range outs {
		o := &outs[i]
		o.Kind = ops.OutIndicators
		o.Symbol = codec.Symbol(1 + i%nsym)
		o.Seq = uint64(i + 1)
		o.Key = base + uint64(i)
		o.TsNs = 1_700_000_000_000_000_000 + int64(i)*1000
		o.Price = 100 + float64(i)/8
		o.Volume = float64(i%7) + 0.5
		o.NValues = 2
		o.Values[0] = math.NaN()
		if i >= 4 {
			o.Values[0] = 100 + float64(i-2)/8
		}
		o.Values[1] = 101.25
	}
	return outs
}

func newTestNATS(t testing.TB, raw string, env Env) *NATSWriter {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewNATS(u, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// natsStream creates a memory stream over subjects, deleted in t.Cleanup.
func natsStream(t testing.TB, nc *nats.Conn, subjects ...string) jetstream.Stream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := natsUnique("QSTEST")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects,
		Storage: jetstream.MemoryStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatalf("create stream %s over %v: %v", name, subjects, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Errorf("delete stream %s: %v", name, err)
		}
	})
	return s
}

// natsStreamMsgs returns how many messages st holds.
func natsStreamMsgs(t testing.TB, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestNewNATSValidates(t *testing.T) {
	env := natsEnv(t, "A")
	for _, bad := range []string{
		"redis://127.0.0.1:4222", "nats://127.0.0.1", "nats://127.0.0.1:4222/x", "nats://127.0.0.1:4222?bogus=1",
		"nats://127.0.0.1:4222?jetstream=maybe", "nats://127.0.0.1:4222?timeout=0s", "nats://127.0.0.1:4222?timeout=1h",
		"nats://127.0.0.1:4222?max_pending=0", "nats://127.0.0.1:4222?max_pending=70000", "nats://127.0.0.1:4222?timeout=1s&timeout=2s",
		"nats://127.0.0.1:4222?origin=", "nats://127.0.0.1:4222?origin=a%20b", "nats://127.0.0.1:4222?origin=a%0D%0AX:1",
		"nats://127.0.0.1:4222?origin=" + strings.Repeat("x", MaxNATSOriginLen+1), "nats://127.0.0.1:4222?origin=a&origin=b",
	} {
		u, err := url.Parse(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewNATS(u, env); err == nil {
			t.Errorf("NewNATS(%s) accepted it", bad)
		}
	}
	// Valid URLs are accepted without a server (port 1 has none).
	u, _ := url.Parse("nats://127.0.0.1:1?jetstream=off&timeout=250ms&max_pending=8&origin=host-a/inst.1")
	w, err := NewNATS(u, env)
	if err != nil {
		t.Fatal(err)
	}
	if w.mode != natsJSOff || w.timeout != 250*time.Millisecond || w.maxPending != 8 || len(w.origin) != 1 || w.origin[0] != "host-a/inst.1" {
		t.Fatalf("parsed %+v", w)
	}
	// The option wins over the parameter, and is validated the same way.
	if w2, err := NewNATS(u, env, WithNATSOrigin("b")); err != nil || len(w2.origin) != 1 || w2.origin[0] != "b" {
		t.Fatalf("WithNATSOrigin(b) over origin=host-a/inst.1: %v, %v", w2, err)
	}
	if w2, err := NewNATS(u, env, WithNATSOrigin("")); err != nil || w2.origin != nil {
		t.Fatalf("WithNATSOrigin(\"\"): %v, %v", w2, err)
	}
	if _, err := NewNATS(u, env, WithNATSOrigin("a b")); err == nil {
		t.Fatal(`WithNATSOrigin("a b") accepted`)
	}
	if err := w.Open(context.Background()); err == nil || !IsTransient(err) {
		t.Fatalf("Open without a server: %v, want a transient error", err)
	}
}

func TestNATSSubjectEscapes(t *testing.T) {
	for _, tc := range []struct {
		kind      ops.OutKind
		sym, want string
	}{
		{ops.OutIndicators, "AAPL", "qstream.indicators.AAPL"},
		{ops.OutWindow, "BRK.B", "qstream.windows.BRK%2EB"},
		{ops.OutPattern, "A*B>C D%", "qstream.patterns.A%2AB%3EC%20D%25"},
		{ops.OutNews, "BTC-USD", "qstream.news.BTC-USD"},
		{ops.OutIndicators, "Ä\t", "qstream.indicators.%C3%84%09"},
	} {
		if got := NATSSubject(tc.kind, tc.sym); got != tc.want {
			t.Errorf("NATSSubject(%v, %q) = %q, want %q", tc.kind, tc.sym, got, tc.want)
		}
	}
}

// TestNATSJetStreamPayloadHeaderDedup: in a stream capturing the subjects,
// each message's payload is the JSON line, its Nats-Msg-Id the key, and a
// batch written twice leaves one message per key.
func TestNATSJetStreamPayloadHeaderDedup(t *testing.T) {
	nc := natsConn(t, testNATS)
	a, b := natsUnique("JSA"), natsUnique("JSB")+".X" // the second needs escaping
	env := natsEnv(t, a, b)
	sa, sb := NATSSubject(ops.OutIndicators, a), NATSSubject(ops.OutIndicators, b)
	st := natsStream(t, nc, sa, sb)
	w := newTestNATS(t, testNATS+"?max_pending=64&timeout=5s", env) // 200 outputs: 4 chunks
	outs := natsOutputs(200, 2, 1<<40)
	ctx := context.Background()
	for range 2 {
		mustWriteBatch(t, w, outs)
	}
	if msgs := natsStreamMsgs(t, st); msgs != uint64(len(outs)) {
		t.Fatalf("stream holds %d messages, want %d (one per key)", msgs, len(outs))
	}
	if w.acked.Load() != 2*uint64(len(outs)) || w.duplicates.Load() != uint64(len(outs)) || w.coreMsgs.Load() != 0 {
		t.Fatalf("acked %d duplicates %d core %d, want %d, %d, 0", w.acked.Load(), w.duplicates.Load(), w.coreMsgs.Load(), 2*len(outs), len(outs))
	}
	enc := NewJSONLWriter(nil, env.JSONL)
	for i := range outs {
		m, err := st.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		want := string(enc.AppendOutput(nil, &outs[i]))
		if string(m.Data) != want {
			t.Fatalf("message %d: payload\n%s\nwant\n%s", i+1, m.Data, want)
		}
		if id := m.Header.Get("Nats-Msg-Id"); id != strconv.FormatUint(outs[i].Key, 10) {
			t.Fatalf("message %d: Nats-Msg-Id %q, want %d", i+1, id, outs[i].Key)
		}
		if wantSub := []string{sa, sb}[i%2]; m.Subject != wantSub {
			t.Fatalf("message %d: subject %s, want %s", i+1, m.Subject, wantSub)
		}
	}
	if s := string(w.AppendStatus(nil)); !strings.Contains(s, " duplicates=200") {
		t.Fatalf("status %q", s)
	}
}

// TestNATSCoreSubscribers: without a stream, core subscribers get every
// message, with the same payload and header.
func TestNATSCoreSubscribers(t *testing.T) {
	nc := natsConn(t, testNATS)
	syms := []string{natsUnique("CA"), natsUnique("CB"), natsUnique("CC")}
	env := natsEnv(t, syms...)
	outs := natsOutputs(1000, len(syms), 7)
	var got atomic.Int64
	errc := make(chan error, 1)
	enc := NewJSONLWriter(nil, env.JSONL)
	want := map[string]string{}
	for i := range outs {
		want[strconv.FormatUint(outs[i].Key, 10)] = string(enc.AppendOutput(nil, &outs[i]))
	}
	for _, s := range syms {
		_, err := nc.Subscribe(NATSSubject(ops.OutIndicators, s), func(m *nats.Msg) {
			if w, ok := want[m.Header.Get("Nats-Msg-Id")]; !ok || w != string(m.Data) {
				select {
				case errc <- fmt.Errorf("message %q with id %q unexpected", m.Data, m.Header.Get("Nats-Msg-Id")):
				default:
				}
			}
			got.Add(1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	w := newTestNATS(t, testNATS+"?max_pending=300", env)
	mustWriteBatch(t, w, outs)
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < int64(len(outs)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	if got.Load() != int64(len(outs)) || w.coreMsgs.Load() != uint64(len(outs)) || w.acked.Load() != 0 {
		t.Fatalf("subscribers got %d, core %d, acked %d; want %d core", got.Load(), w.coreMsgs.Load(), w.acked.Load(), len(outs))
	}
}

// TestNATSOriginHeader: the origin parameter (or WithNATSOrigin) puts a
// Qstream-Origin header on every message beside Nats-Msg-Id, through
// JetStream and core NATS alike; without it there is no such header.
func TestNATSOriginHeader(t *testing.T) {
	nc := natsConn(t, testNATS)
	a, b := natsUnique("OA"), natsUnique("OB")
	env := natsEnv(t, a, b)
	sa, sb := NATSSubject(ops.OutIndicators, a), NATSSubject(ops.OutIndicators, b)
	st := natsStream(t, nc, sa) // b is not captured: core NATS
	core, err := nc.SubscribeSync(sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query string
		opts        []NATSOption
		want        string
	}{
		{"parameter", "?origin=inst-a", nil, "inst-a"},
		{"option", "?origin=ignored", []NATSOption{WithNATSOrigin("host-2/inst.b")}, "host-2/inst.b"},
		{"none", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(testNATS + tc.query)
			w, err := NewNATS(u, env, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			before := natsStreamMsgs(t, st)
			outs := natsOutputs(10, 2, uint64(time.Now().UnixNano())) // even: a (JetStream), odd: b (core)
			mustWriteBatch(t, w, outs)
			check := func(via string, i int, h nats.Header) {
				t.Helper()
				if got, ok := h[NATSOriginHeader]; tc.want == "" && ok || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
					t.Fatalf("%s message %d: %s %q, want %q", via, i, NATSOriginHeader, got, tc.want)
				}
				if id := h.Get("Nats-Msg-Id"); id != strconv.FormatUint(outs[i].Key, 10) {
					t.Fatalf("%s message %d: Nats-Msg-Id %q, want %d", via, i, id, outs[i].Key)
				}
			}
			for i := 0; i < len(outs); i += 2 {
				m, err := st.GetMsg(context.Background(), before+uint64(i/2+1))
				if err != nil {
					t.Fatal(err)
				}
				check("stream", i, m.Header)
			}
			for i := 1; i < len(outs); i += 2 {
				m, err := core.NextMsg(2 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				check("core", i, m.Header)
			}
		})
	}
}

// TestNATSOriginAddsNoAllocation: a batch written with an origin header
// costs the same allocations as one without (the header's value is built
// once, in NewNATS).
func TestNATSOriginAddsNoAllocation(t *testing.T) {
	natsConn(t, testNATS)
	env := natsEnv(t, natsUnique("OZ"))
	outs := natsOutputs(64, 1, 1)
	allocs := func(query string) float64 {
		w := newTestNATS(t, testNATS+"?jetstream=off"+query, env)
		mustWriteBatch(t, w, outs) // the message slots are made here
		return testing.AllocsPerRun(20, func() {
			if err := w.WriteBatch(context.Background(), outs); err != nil {
				t.Fatal(err)
			}
		})
	}
	without, with := allocs(""), allocs("&origin=inst-a")
	if with > without {
		t.Fatalf("WriteBatch of %d outputs: %.1f allocations with origin, %.1f without", len(outs), with, without)
	}
	t.Logf("WriteBatch of %d outputs (core NATS): %.1f allocations with origin, %.1f without", len(outs), with, without)
}

func TestNATSUnknownSymbolIsPoison(t *testing.T) {
	natsConn(t, testNATS)
	env := natsEnv(t, natsUnique("P"))
	w := newTestNATS(t, testNATS+"?jetstream=off", env)
	outs := natsOutputs(5, 1, 1)
	outs[3].Symbol = 7 // not in the table
	err := w.WriteBatch(context.Background(), outs)
	var pe *PoisonError
	if !errors.As(err, &pe) || pe.Index != 3 || pe.Reason != codec.ReasonUnknownSymbol {
		t.Fatalf("err %v, want a PoisonError at 3 (unknown_symbol)", err)
	}
	if w.coreMsgs.Load() != 3 {
		t.Fatalf("%d published before the poison, want 3", w.coreMsgs.Load())
	}
}

// natsServer is a nats-server process of the test's own.
type natsServer struct {
	cmd        *exec.Cmd
	port       int
	storeDir   string
	t          testing.TB
	stoppedErr chan error
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))) }

func startNATSServer(t testing.TB, port int, storeDir string) *natsServer {
	t.Helper()
	return startNATSServerJS(t, port, storeDir, true)
}

// startNATSServerJS starts a private nats-server, with JetStream or without.
func startNATSServerJS(t testing.TB, port int, storeDir string, js bool) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server binary not found: %v (install it, or run `make services`)", err)
	}
	s := &natsServer{port: port, storeDir: storeDir, t: t}
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", storeDir}
	if js {
		args = append(args, "-js")
	}
	s.cmd = exec.Command(bin, args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.stoppedErr = make(chan error, 1)
	go func() { s.stoppedErr <- s.cmd.Wait() }()
	t.Cleanup(s.kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("own nats-server on %s did not start: %v", s.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *natsServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *natsServer) kill() {
	if s.cmd.ProcessState != nil || s.stoppedErr == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.stoppedErr
	s.stoppedErr = nil
}

// TestNATSNoRespondersAfterJetStreamIsTransient: in auto mode, once
// JetStream has answered the writer, its API giving no response (here a
// restart without JetStream; in a cluster, a leader election) is a
// transient error: the batch is retried, not published through core NATS
// where no stream would store it while the sink counted it written.
func TestNATSNoRespondersAfterJetStreamIsTransient(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	srv := startNATSServer(t, port, dir)
	u := "nats://" + srv.addr()
	nc := natsConn(t, u)
	sym := natsUnique("NR")
	env := natsEnv(t, sym)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NORESP", Subjects: []string{"qstream.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	w := newTestNATS(t, u+"?timeout=1s", env)
	mustWriteBatch(t, w, natsOutputs(10, 1, 1000))
	if got := w.acked.Load(); got != 10 {
		t.Fatalf("%d outputs acknowledged by JetStream, want 10", got)
	}
	srv.kill()
	startNATSServerJS(t, port, t.TempDir(), false)
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		// Reconnected (or not yet): either way nothing may count as written.
		if err = w.WriteBatch(ctx, natsOutputs(10, 1, 2000)); err == nil {
			t.Fatalf("WriteBatch succeeded with no JetStream to store it (core published %d)", w.coreMsgs.Load())
		}
		if !IsTransient(err) {
			t.Fatalf("WriteBatch: %v, want a transient error", err)
		}
		if w.nc.IsConnected() && errors.Is(err, nats.ErrNoResponders) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("after the restart: %v, want no responders (transient)", err)
	}
	if n := w.coreMsgs.Load(); n != 0 {
		t.Fatalf("%d outputs went through core NATS", n)
	}
}

// TestNATSServerGoesAway: with the server killed, WriteBatch fails within a
// bounded time with a transient error; after a restart on the same port,
// writes succeed again over the same writer (nats.go reconnects), and the
// stream (on disk) holds every key once.
func TestNATSServerGoesAway(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	srv := startNATSServer(t, port, dir)
	u := "nats://" + srv.addr()
	nc := natsConn(t, u)
	sym := natsUnique("GA")
	env := natsEnv(t, sym)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "GONE", Subjects: []string{"qstream.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w := newTestNATS(t, u+"?timeout=1s", env)
	first, second := natsOutputs(50, 1, 1000), natsOutputs(50, 1, 2000)
	mustWriteBatch(t, w, first)
	srv.kill()
	start := time.Now()
	err = w.WriteBatch(ctx, second)
	took := time.Since(start)
	if err == nil || !IsTransient(err) {
		t.Fatalf("WriteBatch with the server gone: %v, want a transient error", err)
	}
	if took > 3*time.Second {
		t.Fatalf("WriteBatch took %s to fail, want about the 1s timeout at most", took)
	}
	t.Logf("server gone: failed after %s: %v", took.Round(time.Millisecond), err)

	startNATSServer(t, port, dir)
	deadline := time.Now().Add(15 * time.Second)
	retries := 0
	for {
		err := w.WriteBatch(ctx, second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still fail 15s after the restart: %v", err)
		}
		retries++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes succeed again after %d failed retries", retries)
	// Written again as a retry would: absorbed by the stream.
	mustWriteBatch(t, w, first)
	if msgs := natsStreamMsgs(t, st); msgs != uint64(len(first)+len(second)) {
		t.Fatalf("stream holds %d messages, want %d", msgs, len(first)+len(second))
	}
}

// BenchmarkNATSWriter: outputs/s published by the writer in batches of 512
// (core NATS with a subscriber counting arrivals, and JetStream with every
// publish acknowledged), beside a Baseline of bare nc.Publish of the same
// payloads and a flush per batch.
func BenchmarkNATSWriter(b *testing.B) {
	const batch = 512
	run := func(b *testing.B, mode string, publish func(*NATSWriter, *nats.Conn, Env, []ops.Output) error, count func(*nats.Conn, string) func() uint64) {
		nc := natsConn(b, testNATS)
		sym := natsUnique("BN")
		env := natsEnv(b, sym)
		subject := NATSSubject(ops.OutIndicators, sym)
		arrived := count(nc, subject)
		w := newTestNATS(b, testNATS+"?jetstream="+mode, env)
		outs := natsOutputs(batch, 1, 0)
		b.ReportAllocs()
		b.ResetTimer()
		var n uint64
		for i := 0; i < b.N; i += batch {
			for j := range outs {
				outs[j].Key = uint64(i + j)
			}
			if err := publish(w, nc, env, outs); err != nil {
				b.Fatal(err)
			}
			n += batch
		}
		b.StopTimer()
		deadline := time.Now().Add(10 * time.Second)
		for arrived() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := arrived(); got != n {
			b.Fatalf("%d of %d messages arrived", got, n)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	}
	subscriber := func(nc *nats.Conn, subject string) func() uint64 {
		var got atomic.Uint64
		sub, err := nc.Subscribe(subject, func(*nats.Msg) { got.Add(1) })
		if err != nil {
			b.Fatal(err)
		}
		sub.SetPendingLimits(-1, -1)
		nc.Flush()
		return got.Load
	}
	writer := func(w *NATSWriter, _ *nats.Conn, _ Env, outs []ops.Output) error {
		return w.WriteBatch(context.Background(), outs)
	}
	b.Run("Core", func(b *testing.B) { run(b, "off", writer, subscriber) })
	b.Run("JetStream", func(b *testing.B) {
		run(b, "auto", writer, func(nc *nats.Conn, subject string) func() uint64 {
			st := natsStream(b, nc, subject)
			return func() uint64 { return natsStreamMsgs(b, st) }
		})
	})
	b.Run("Baseline", func(b *testing.B) {
		var buf []byte
		var enc *JSONLWriter
		var subject string
		run(b, "off", func(_ *NATSWriter, nc *nats.Conn, env Env, outs []ops.Output) error {
			if enc == nil {
				enc = NewJSONLWriter(nil, env.JSONL)
				subject = NATSSubject(ops.OutIndicators, env.JSONL.Symbols.Name(1))
			}
			for i := range outs {
				buf = enc.AppendOutput(buf[:0], &outs[i])
				if err := nc.Publish(subject, buf); err != nil {
					return err
				}
			}
			return nc.FlushTimeout(5 * time.Second)
		}, subscriber)
	})
}
