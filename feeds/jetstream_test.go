package feeds

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qstream/codec"
)

// The JetStream tests talk to the real nats-server with JetStream on
// 127.0.0.1:4222 (`make services` starts it). They fail, never skip, when it
// is not there.
const jsTestURL = "nats://127.0.0.1:4222"

var jsTestSeq atomic.Int64

type jsEnv struct {
	t      *testing.T
	js     jetstream.JetStream
	stream string
	prefix string
	parts  int
}

func newJSEnv(t *testing.T, partitions int) *jsEnv {
	t.Helper()
	nc, err := nats.Connect(jsTestURL, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server with JetStream is not reachable at %s (%v): start it with `make services` (scripts/services.sh) or `nats-server -js -a 127.0.0.1 -p 4222`", jsTestURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := jsTestSeq.Add(1)
	id := fmt.Sprintf("%d_%d", time.Now().UnixNano()%1_000_000_000, n)
	e := &jsEnv{t: t, js: js, stream: "QSTEST_" + id, prefix: "qstest_" + id, parts: partitions}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := EnsureJetStreamStream(ctx, js, e.stream, e.prefix); err != nil {
		t.Fatalf("%v (is JetStream enabled? nats-server needs -js)", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, e.stream); err != nil {
			t.Errorf("deleting stream %s: %v", e.stream, err)
		}
	})
	return e
}

// publish sends a tick for sym on its partition's subject with a
// Nats-Msg-Id, as a producer would.
func (e *jsEnv) publish(sym string, seq int) {
	e.t.Helper()
	subj := string(AppendJetStreamSubject(nil, e.prefix, []byte(sym), e.parts))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, subj, []byte(tcpTick(sym, seq, float64(seq))), jetstream.WithMsgID(fmt.Sprintf("m-%d", seq))); err != nil {
		e.t.Fatal(err)
	}
}

func (e *jsEnv) config(owned ...int) JetStreamConfig {
	return JetStreamConfig{
		URL: jsTestURL, Stream: e.stream, SubjectPrefix: e.prefix, Partitions: e.parts, Owned: owned,
		Durable: "eng", BatchMax: 50, FetchWait: 100 * time.Millisecond, AckWait: time.Second,
		Logger: tcpQuietLogger(),
	}
}

func (e *jsEnv) consumerInfo(durable string) *jetstream.ConsumerInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, e.stream, durable)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// runJS runs f in the background; the returned stop cancels it and returns
// Run's error.
func runJS(t *testing.T, f *JetStreamFeed, pubs Publishers) (stop func() error, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- f.Run(ctx, pubs) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-ch:
			case <-time.After(20 * time.Second):
				err = errors.New("Run did not return 20s after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ch
}

func TestJetStreamPartitionHelpers(t *testing.T) {
	// Oracle: the standard library's FNV-1a.
	for _, sym := range []string{"AAPL", "MSFT", "BTC-USD", "X", "a-much-longer-symbol-name"} {
		for _, p := range []int{1, 2, 3, 16, 4096} {
			h := fnv.New64a()
			h.Write([]byte(sym))
			want := int(h.Sum64() % uint64(p))
			if got := JetStreamPartition([]byte(sym), p); got != want {
				t.Errorf("JetStreamPartition(%q, %d) = %d, want %d", sym, p, got, want)
			}
			subj := string(AppendJetStreamSubject(nil, "ticks", []byte(sym), p))
			if subj != JetStreamSubject("ticks", want) || subj != fmt.Sprintf("ticks.%d", want) {
				t.Errorf("subject %q, want ticks.%d", subj, want)
			}
		}
	}
	buf := make([]byte, 0, 64)
	if a := testing.AllocsPerRun(100, func() { buf = AppendJetStreamSubject(buf[:0], "ticks", []byte("AAPL"), 16) }); a != 0 {
		t.Errorf("AppendJetStreamSubject: %v allocs, want 0", a)
	}
}

func TestJetStreamConsume(t *testing.T) {
	e := newJSEnv(t, 4)
	syms := []string{"AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "IBM"}
	for i := 1; i <= 200; i++ {
		e.publish(syms[i%len(syms)], i)
	}
	rec := newNetRecorder(t, true)
	f, err := NewJetStreamFeed(e.config(0, 1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runJS(t, f, rec)
	netWaitFor(t, 20*time.Second, "200 events acknowledged", func() bool {
		st := f.Stats()
		var acked uint64
		for _, s := range st.AckedSeq {
			acked = max(acked, s)
		}
		return rec.snapshot().published == 200 && st.Published == 200 && acked == 200
	})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	sn := rec.snapshot()
	seen := map[uint64]bool{}
	lastSeq := map[string]uint64{} // per partition, via the symbol
	for _, ev := range sn.events {
		sym := rec.syms.Name(ev.Symbol)
		p := JetStreamSubject(e.prefix, JetStreamPartition([]byte(sym), 4))
		if ev.Seq <= lastSeq[p] {
			t.Fatalf("partition %s: stream seq %d after %d", p, ev.Seq, lastSeq[p])
		}
		lastSeq[p] = ev.Seq
		// The event's own id wins over Nats-Msg-Id for Event.IDHash.
		if seen[ev.IDHash] || ev.IDHash != codec.HashID([]byte(fmt.Sprintf("t-%d", int(ev.Price)))) {
			t.Fatalf("event %+v: duplicate or wrong IDHash", ev)
		}
		seen[ev.IDHash] = true
	}
	if sn.pubs != 4 {
		t.Errorf("%d publishers, want one per partition", sn.pubs)
	}
	for p := 0; p < 4; p++ {
		info := e.consumerInfo(fmt.Sprintf("eng-p%d", p))
		if info.NumAckPending != 0 || info.NumPending != 0 || info.Config.FilterSubject != JetStreamSubject(e.prefix, p) ||
			info.Config.AckPolicy != jetstream.AckExplicitPolicy {
			t.Errorf("consumer p%d: %d ack pending, %d pending, filter %q, ack policy %v", p, info.NumAckPending, info.NumPending, info.Config.FilterSubject, info.Config.AckPolicy)
		}
	}
	if st := f.Stats(); st.Redelivered != 0 || st.Duplicates != 0 || st.Rejected != 0 {
		t.Errorf("stats %+v", st)
	}
}

// The must-show test at library level: an instance crashes after making a
// batch durable but before acknowledging it. A new instance with the same
// durable consumers gets the batch redelivered and processes every message
// once: with the engine's dedup window shared (as the engine keeps it), the
// redelivered ones are recognised and skipped; without it, they come again
// with the same IDHash for the engine's dedup to absorb.
func TestJetStreamRedeliveryAfterCrash(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared window %v", shared), func(t *testing.T) {
			e := newJSEnv(t, 1)
			for i := 1; i <= 20; i++ {
				e.publish("AAPL", i)
			}
			rec := newNetRecorder(t, true) // the engine, across both instances
			window := NewIDWindow(1024)
			cfg := e.config(0)
			cfg.BatchMax = 10
			cfg.Dedup = window

			crash := errors.New("crash before ack")
			a, err := NewJetStreamFeed(cfg)
			if err != nil {
				t.Fatal(err)
			}
			a.beforeAck = func(int, int) error { return crash }
			if err := a.Run(context.Background(), rec); !errors.Is(err, crash) {
				t.Fatalf("instance A: Run = %v, want the crash", err)
			}
			if got := rec.snapshot().published; got != 10 {
				t.Fatalf("instance A published %d before crashing, want 10", got)
			}
			if info := e.consumerInfo("eng-p0"); info.AckFloor.Stream != 0 || info.NumAckPending != 10 {
				t.Fatalf("after the crash: ack floor %d, %d pending acks; want 0 and 10", info.AckFloor.Stream, info.NumAckPending)
			}

			if !shared {
				cfg.Dedup = nil // a restarted process: empty window
			}
			b, err := NewJetStreamFeed(cfg)
			if err != nil {
				t.Fatal(err)
			}
			stop, _ := runJS(t, b, rec)
			// B acknowledges 11..20 and then, after AckWait, the redelivered 1..10.
			netWaitFor(t, 20*time.Second, "20 acknowledged by B", func() bool { return b.Stats().Acked == 20 })
			if err := stop(); err != nil {
				t.Fatalf("instance B: Run = %v", err)
			}
			st := b.Stats()
			if st.Redelivered != 10 {
				t.Errorf("B saw %d redeliveries, want 10", st.Redelivered)
			}
			sn := rec.snapshot()
			ids := map[uint64]int{}
			for _, ev := range sn.events {
				ids[ev.IDHash]++
			}
			if len(ids) != 20 {
				t.Errorf("%d distinct ids, want 20", len(ids))
			}
			if shared {
				if st.Duplicates != 10 || st.Published != 10 || sn.published != 20 {
					t.Errorf("B: %d duplicates, %d published; engine got %d: want 10, 10, 20 (each message once)", st.Duplicates, st.Published, sn.published)
				}
				for id, n := range ids {
					if n != 1 {
						t.Errorf("id %x published %d times", id, n)
					}
				}
			} else if st.Duplicates != 0 || sn.published != 30 {
				t.Errorf("B without the window: %d duplicates, engine got %d; want 0 and 30 (10 again, same ids)", st.Duplicates, sn.published)
			}
			if info := e.consumerInfo("eng-p0"); info.AckFloor.Stream != 20 || info.NumAckPending != 0 {
				t.Errorf("ack floor %d, %d pending acks; want 20 and 0", info.AckFloor.Stream, info.NumAckPending)
			}
		})
	}
}

// An instance dies after fetching a batch and before publishing it (its
// engine stopped): nothing is lost, the next instance processes all 20.
func TestJetStreamCrashBeforePublish(t *testing.T) {
	e := newJSEnv(t, 1)
	for i := 1; i <= 20; i++ {
		e.publish("AAPL", i)
	}
	cfg := e.config(0)
	cfg.BatchMax = 10
	a, err := NewJetStreamFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dead := newNetRecorder(t, true)
	dead.stop() // Publish fails: the batch is fetched but never made durable
	if err := a.Run(context.Background(), dead); !errors.Is(err, ErrStopped) {
		t.Fatalf("instance A: Run = %v, want ErrStopped", err)
	}
	rec := newNetRecorder(t, true)
	b, err := NewJetStreamFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runJS(t, b, rec)
	netWaitFor(t, 20*time.Second, "20 acknowledged", func() bool { return b.Stats().Acked == 20 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	sn := rec.snapshot()
	ids := map[uint64]bool{}
	for _, ev := range sn.events {
		ids[ev.IDHash] = true
	}
	if sn.published != 20 || len(ids) != 20 || b.Stats().Redelivered != 10 {
		t.Errorf("published %d (%d distinct), %d redelivered; want 20, 20, 10", sn.published, len(ids), b.Stats().Redelivered)
	}
}

// Two instances own disjoint halves of the partitions: together they see
// every message once. One stopped and restarted resumes from its
// acknowledged position.
func TestJetStreamPartitionedInstances(t *testing.T) {
	e := newJSEnv(t, 4)
	syms := make([]string, 16)
	for i := range syms {
		syms[i] = fmt.Sprintf("SYM%02d", i)
	}
	for i := 1; i <= 400; i++ {
		e.publish(syms[i%16], i)
	}
	owned := [2][]int{{0, 2}, {1, 3}}
	recs := [2]*netRecorder{newNetRecorder(t, true), newNetRecorder(t, true)}
	feeds := [2]*JetStreamFeed{}
	stops := [2]func() error{}
	for k := range 2 {
		f, err := NewJetStreamFeed(e.config(owned[k]...))
		if err != nil {
			t.Fatal(err)
		}
		feeds[k] = f
		stops[k], _ = runJS(t, f, recs[k])
	}
	total := func() int64 { return recs[0].snapshot().published + recs[1].snapshot().published }
	netWaitFor(t, 20*time.Second, "400 events", func() bool { return total() == 400 })
	check := func(k int, sn netRecSnapshot) {
		for _, ev := range sn.events {
			p := JetStreamPartition([]byte(recs[k].syms.Name(ev.Symbol)), 4)
			if p != owned[k][0] && p != owned[k][1] {
				t.Fatalf("instance %d got partition %d, owns %v", k, p, owned[k])
			}
		}
	}
	check(0, recs[0].snapshot())
	check(1, recs[1].snapshot())

	// Instance 1 stops (its acks are in), more messages arrive, it restarts.
	netWaitFor(t, 20*time.Second, "instance 1's acks", func() bool {
		var n int64
		for _, s := range feeds[1].Stats().AckedSeq {
			n = max(n, int64(s))
		}
		return n > 0 && feeds[1].Stats().Batches > 0 && feeds[1].Stats().Published == uint64(recs[1].snapshot().published)
	})
	if err := stops[1](); err != nil {
		t.Fatal(err)
	}
	before := recs[1].snapshot().published
	for i := 401; i <= 500; i++ {
		e.publish(syms[i%16], i)
	}
	f, err := NewJetStreamFeed(e.config(owned[1]...))
	if err != nil {
		t.Fatal(err)
	}
	runJS(t, f, recs[1])
	netWaitFor(t, 20*time.Second, "500 events", func() bool { return total() == 500 })
	time.Sleep(300 * time.Millisecond) // a few more fetches: nothing old must come back
	if total() != 500 {
		t.Fatalf("%d events, want 500", total())
	}
	if st := f.Stats(); st.Redelivered != 0 || st.Published != uint64(recs[1].snapshot().published-before) {
		t.Errorf("restarted instance: %+v; want only the new messages, no redelivery", st)
	}
	seen := map[uint64]bool{}
	for k := range 2 {
		for _, ev := range recs[k].snapshot().events {
			if seen[ev.IDHash] {
				t.Fatalf("message %x processed twice", ev.IDHash)
			}
			seen[ev.IDHash] = true
		}
	}
}

// Undecodable messages are rejected, acknowledged and not redelivered;
// binary frames decode.
func TestJetStreamFramesAndRejects(t *testing.T) {
	e := newJSEnv(t, 1)
	ctx := context.Background()
	subj := JetStreamSubject(e.prefix, 0)
	for i := 1; i <= 5; i++ {
		ev := tcpFrameEvent(1, i)
		if _, err := e.js.Publish(ctx, subj, codec.AppendFrame(nil, &ev)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.js.Publish(ctx, subj, []byte("not a frame")); err != nil {
		t.Fatal(err)
	}
	rec := newNetRecorder(t, true)
	cfg := e.config(0)
	cfg.Format = JetStreamFrames
	f, err := NewJetStreamFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runJS(t, f, rec)
	netWaitFor(t, 20*time.Second, "6 messages acknowledged", func() bool { return f.Stats().AckedSeq[0] == 6 })
	time.Sleep(1200 * time.Millisecond) // past AckWait: nothing may come back
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	sn, st := rec.snapshot(), f.Stats()
	if sn.published != 5 || len(sn.rejects) != 1 || sn.rejects[0].Reason != codec.ReasonMalformed || sn.rejects[0].Pos.Offset != 6 {
		t.Errorf("published %d, rejects %+v; want 5 and one malformed at stream seq 6", sn.published, sn.rejects)
	}
	for i, ev := range sn.events {
		want := tcpFrameEvent(1, i+1)
		want.Seq = uint64(i + 1) // the stream sequence
		if ev != want {
			t.Errorf("event %d = %+v, want %+v", i, ev, want)
		}
	}
	if st.Redelivered != 0 || st.Rejected != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestJetStreamConfigErrors(t *testing.T) {
	ok := JetStreamConfig{Stream: "S", SubjectPrefix: "p", Partitions: 4, Owned: []int{0}}
	for _, edit := range []func(c *JetStreamConfig){
		func(c *JetStreamConfig) { c.Stream = "" },
		func(c *JetStreamConfig) { c.SubjectPrefix = "" },
		func(c *JetStreamConfig) { c.Partitions = 0 },
		func(c *JetStreamConfig) { c.Partitions = MaxJetStreamPartitions + 1 },
		func(c *JetStreamConfig) { c.Owned = nil },
		func(c *JetStreamConfig) { c.Owned = []int{4} },
		func(c *JetStreamConfig) { c.Owned = []int{1, 1} },
	} {
		cfg := ok
		edit(&cfg)
		if _, err := NewJetStreamFeed(cfg); !errors.Is(err, ErrJetStreamConfig) {
			t.Errorf("NewJetStreamFeed(%+v) = %v, want ErrJetStreamConfig", cfg, err)
		}
	}
	f, err := NewJetStreamFeed(JetStreamConfig{URL: "nats://127.0.0.1:1", Stream: "S", SubjectPrefix: "p", Partitions: 1, Owned: []int{0},
		NATSOptions: []nats.Option{nats.Timeout(500 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background(), newNetRecorder(t, false)); err == nil || !strings.HasPrefix(err.Error(), "jetstream: connect") {
		t.Errorf("Run against no server = %v, want a connect error", err)
	}
}

// A producer publishes each tick on its symbol's partition subject.
func ExampleAppendJetStreamSubject() {
	var subj []byte
	for _, sym := range []string{"AAPL", "MSFT", "BTC-USD"} {
		subj = AppendJetStreamSubject(subj[:0], "ticks", []byte(sym), 16)
		fmt.Println(sym, string(subj))
	}
	// Output:
	// AAPL ticks.11
	// MSFT ticks.3
	// BTC-USD ticks.1
}

// TestJetStreamOrderedFromStartSeq: a member of a scale-out group consumes
// one partition in stream order from a start sequence, without acks, and
// keeps getting messages after a quiet spell.
func TestJetStreamOrderedFromStartSeq(t *testing.T) {
	e := newJSEnv(t, 2)
	syms := []string{"AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA"}
	for i := 1; i <= 300; i++ {
		e.publish(syms[i%len(syms)], i)
	}
	// Partition 0's messages and their stream sequences (= i here).
	var mine []uint64
	for i := 1; i <= 300; i++ {
		if JetStreamPartition([]byte(syms[i%len(syms)]), 2) == 0 {
			mine = append(mine, uint64(i))
		}
	}
	start := mine[len(mine)/3]
	cfg := e.config(0)
	cfg.Ordered, cfg.StartSeq = true, start
	rec := newNetRecorder(t, true)
	f, err := NewJetStreamFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runJS(t, f, rec)
	var want []uint64
	for _, s := range mine {
		if s >= start {
			want = append(want, s)
		}
	}
	netWaitFor(t, 20*time.Second, "the partition's messages from the start sequence", func() bool {
		return rec.snapshot().published == int64(len(want))
	})
	// A quiet spell, then one more message: it arrives.
	time.Sleep(1500 * time.Millisecond)
	var late string
	for _, s := range syms {
		if JetStreamPartition([]byte(s), 2) == 0 {
			late = s
			break
		}
	}
	e.publish(late, 301)
	want = append(want, 301)
	netWaitFor(t, 20*time.Second, "the message after the quiet spell", func() bool {
		return rec.snapshot().published == int64(len(want))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	sn := rec.snapshot()
	for i, ev := range sn.events {
		if ev.Seq != want[i] {
			t.Fatalf("event %d: stream seq %d, want %d (in order from %d)", i, ev.Seq, want[i], start)
		}
	}
	if _, err := e.js.Consumer(context.Background(), e.stream, "eng-p0"); err == nil {
		t.Error("an ordered feed created a durable consumer")
	}
}
