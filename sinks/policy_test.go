package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/wal"
)

// flakySink fails on command: transient errors for the next `transient`
// calls, a system error while down, and a poison error for any output whose
// Price is negative.
type flakySink struct {
	mu        sync.Mutex
	transient int
	down      atomic.Bool
	calls     atomic.Int64
	got       map[uint64]int
}

func (f *flakySink) HandleOutputs(outs []ops.Output) error {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.transient > 0 {
		f.transient--
		return fmt.Errorf("sink: timeout: %w", ErrTransient)
	}
	if f.down.Load() {
		return errors.New("sink: connection refused, schema mismatch")
	}
	for i := range outs {
		if outs[i].Price < 0 {
			return &PoisonError{Index: i, Reason: codec.ReasonBadPrice, Err: errors.New("sink: negative price")}
		}
		if f.got == nil {
			f.got = map[uint64]int{}
		}
		f.got[outs[i].Seq]++
	}
	return nil
}

func (f *flakySink) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

type dlKeep struct {
	mu   sync.Mutex
	outs []ops.Output
}

func (d *dlKeep) HandleDeadLetter(dl *engine.DeadLetter) {
	if dl.Output != nil {
		d.mu.Lock()
		d.outs = append(d.outs, *dl.Output)
		d.mu.Unlock()
	}
}

// echoPrice outputs every event with its price, so a negative price makes
// a poison output.
type echoPrice struct{}

func (echoPrice) OnEvent(ev *codec.Event, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	return append(dst, ops.Output{Kind: ops.OutIndicators, Symbol: ev.Symbol, Seq: ev.Seq, Price: ev.Price}), codec.ReasonNone
}
func (echoPrice) OnWatermark(_ int64, _ uint64, dst []ops.Output) []ops.Output { return dst }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func trade(seq uint64, sym codec.Symbol, ts int64) codec.Event {
	return codec.Event{Kind: codec.KindTrade, Seq: seq, Symbol: sym, TsNs: ts, Price: 100, Volume: 1}
}

// newGuarded builds an engine whose output is cfg.Output under a Guard with
// pol, wired as `qstream run` wires it: the guard's Output is the engine's,
// and the guard is bound to the engine before it starts.
func newGuarded(t *testing.T, cfg engine.Config, pol GuardPolicy) (*engine.Engine, *Guard) {
	t.Helper()
	pol.Logger = quietLogger()
	g := NewGuard(cfg.Output, pol)
	cfg.Output = g.Output()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.Bind(e)
	return e, g
}

func TestGuardRetriesPoisonsAndBreaks(t *testing.T) {
	sink := &flakySink{transient: 3}
	dl := &dlKeep{}
	e, g := newGuarded(t, engine.Config{Shards: 1, Processors: func(int) (engine.Processor, error) { return echoPrice{}, nil },
		Output: sink, DeadLetters: dl},
		GuardPolicy{MaxRetries: 5, BreakerFailures: 2, BreakerTimeout: 40 * time.Millisecond,
			RetryDelay: func(int) time.Duration { return time.Millisecond }})
	e.Start()
	sym, _ := e.Symbols().InternString("X")
	p, _ := e.NewPublisher("feed")
	publish := func(from, to int, poisonAt int) {
		for i := from; i <= to; i++ {
			ev := trade(uint64(i), sym, int64(i))
			if i == poisonAt {
				ev.Price = -1
			}
			p.Publish(&ev)
		}
		p.Flush()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10s for %s; stats %+v", what, g.Stats())
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Transient errors: retried, nothing lost, breaker stays closed.
	publish(1, 100, 50)
	waitFor("100 outputs less the poison one", func() bool { return sink.count() == 99 })
	st := g.Stats()
	if st.Retries != 3 || st.Poisoned != 1 || st.Breaker != "closed" || st.Halted {
		t.Fatalf("after transient errors and a poison output: %+v", st)
	}
	dl.mu.Lock()
	if len(dl.outs) != 1 || dl.outs[0].Seq != 50 {
		t.Fatalf("dead-lettered outputs %+v, want seq 50", dl.outs)
	}
	dl.mu.Unlock()
	if e.Stats().Rejected["bad_price"] != 1 {
		t.Fatalf("rejections %v", e.Stats().Rejected)
	}
	// System errors open the breaker and halt the stream; nothing is
	// dropped; the stream resumes when the sink is back.
	sink.down.Store(true)
	publish(101, 200, 0)
	waitFor("the breaker to open", func() bool { s := g.Stats(); return s.Breaker == "open" && s.Halted })
	if s := g.Stats(); !s.Halted || s.SystemErrors < 2 || s.LastError == "" {
		t.Fatalf("guard stats while halted: %+v", s)
	}
	calls := sink.calls.Load()
	time.Sleep(20 * time.Millisecond) // open: no calls reach the sink
	if sink.calls.Load() > calls+1 {
		t.Fatalf("the open breaker let %d calls through", sink.calls.Load()-calls)
	}
	sink.down.Store(false)
	waitFor("all 199 outputs", func() bool { return sink.count() == 199 })
	// The sink has the outputs before the guard, back from the call, marks
	// the stream running again: wait for that too.
	waitFor("the breaker closed and the stream running", func() bool { s := g.Stats(); return s.Breaker == "closed" && !s.Halted })
	if s := g.Stats(); s.Breaker != "closed" || s.Halted || sink.count() != 199 {
		t.Fatalf("after the sink came back: %+v, %d outputs", s, sink.count())
	}
	// Stopping while halted ends with the error instead of hanging.
	sink.down.Store(true)
	publish(201, 210, 0)
	waitFor("the breaker to open again", func() bool { return g.Stats().Halted })
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err == nil {
		t.Fatal("Stop while halted returned no error")
	}
}

// fullDisk fails every write as a file on a full disk does.
type fullDisk struct{ calls atomic.Int64 }

func (f *fullDisk) HandleOutputs([]ops.Output) error {
	f.calls.Add(1)
	return fmt.Errorf("output /data/out.jsonl: %w", &os.PathError{Op: "write", Path: "/data/out.jsonl", Err: syscall.ENOSPC})
}

// A full disk does not heal by waiting: the policy does not retry it or
// wait on a breaker, it fails the engine at once with the error wrapped
// (path and ENOSPC), and no checkpoint is taken after it.
func TestGuardPermanentErrorFailsAtOnce(t *testing.T) {
	sink := &fullDisk{}
	e, g := newGuarded(t, engine.Config{Shards: 1, Processors: func(int) (engine.Processor, error) { return echoPrice{}, nil },
		Output: sink},
		GuardPolicy{MaxRetries: 5, BreakerFailures: 3, BreakerTimeout: time.Minute,
			RetryDelay: func(int) time.Duration { return time.Millisecond }})
	e.Start()
	sym, _ := e.Symbols().InternString("X")
	p, _ := e.NewPublisher("feed")
	for i := 1; i <= 10; i++ {
		ev := trade(uint64(i), sym, int64(i))
		p.Publish(&ev)
	}
	p.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for e.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no engine error 5s after ENOSPC; output stats %+v, %d sink calls", g.Stats(), sink.calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	err := e.Err()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/data/out.jsonl") {
		t.Fatalf("engine error %v: want it to wrap ENOSPC and name the file", err)
	}
	if n := sink.calls.Load(); n != 1 {
		t.Fatalf("the sink was called %d times: a full disk was retried", n)
	}
	if st := g.Stats(); st.Retries != 0 || st.Halted {
		t.Fatalf("output stats %+v: want no retries and no halt", st)
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Stop = %v, want the ENOSPC error", err)
	}
}

// An interrupt while the breaker is open and every ring is full: the
// publisher is blocked on backpressure, so it cannot see the interrupt by
// itself. Fail gives up on the halted output: the backlog drains (counted,
// not delivered), the publisher returns, and Stop completes in bounded time
// with the error.
func TestFailWhileHaltedReleasesBackpressure(t *testing.T) {
	sink := &flakySink{}
	sink.down.Store(true)
	e, g := newGuarded(t, engine.Config{Shards: 1, RingSize: 64, OutRingSize: 64, Processors: func(int) (engine.Processor, error) { return echoPrice{}, nil },
		Output: sink},
		GuardPolicy{BreakerFailures: 1, BreakerTimeout: time.Hour, RetryDelay: func(int) time.Duration { return time.Millisecond }})
	e.Start()
	sym, _ := e.Symbols().InternString("X")
	p, _ := e.NewPublisher("feed")
	const n = 10_000
	done := make(chan struct{})
	var stop atomic.Bool
	go func() {
		defer close(done)
		for i := 1; i <= n && !stop.Load(); i++ {
			ev := trade(uint64(i), sym, int64(i))
			if p.Publish(&ev) != nil {
				return
			}
		}
		p.Flush()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !g.Stats().Halted {
		if time.Now().After(deadline) {
			t.Fatalf("the output did not halt: %+v", g.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true) // the interrupt: the feed would stop, were it not blocked
	select {
	case <-done:
		t.Fatalf("the publisher was not blocked by the halted output (%d published)", p.Published())
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	e.Fail(errors.New("interrupted"))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the publisher is still blocked 5s after Fail (%d published)", p.Published())
	}
	select {
	case <-e.Failed():
	default:
		t.Fatal("Failed() not closed after Fail")
	}
	p.Detach()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Stop = %v, want the Fail error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("stopping took %s", took)
	}
}

// markedOutput is an engine.CheckpointedOutput in memory: its mark is the
// number of outputs it holds. While down it fails every write with a
// system error.
type markedOutput struct {
	mu       sync.Mutex
	n        int
	restores []int // the marks RestoreOutput got (-1: nil)
	down     atomic.Bool
}

func (m *markedOutput) HandleOutputs(outs []ops.Output) error {
	if m.down.Load() {
		return errors.New("sink: connection refused")
	}
	m.mu.Lock()
	m.n += len(outs)
	m.mu.Unlock()
	return nil
}

func (m *markedOutput) CheckpointOutput() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return []byte{byte(m.n), byte(m.n >> 8), byte(m.n >> 16)}, nil
}

func (m *markedOutput) RestoreOutput(hwm []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hwm == nil {
		m.restores = append(m.restores, -1)
		m.n = 0
		return nil
	}
	m.n = int(hwm[0]) | int(hwm[1])<<8 | int(hwm[2])<<16
	m.restores = append(m.restores, m.n)
	return nil
}

// The guard's Output is an engine.CheckpointedOutput exactly when the
// guarded output is one, and passes checkpoints through to it.
func TestGuardOutputCheckpointedExactlyWhenInner(t *testing.T) {
	if _, ok := NewGuard(&fullDisk{}, GuardPolicy{}).Output().(engine.CheckpointedOutput); ok {
		t.Fatal("a guard over a plain output claims checkpoints")
	}
	m := &markedOutput{n: 7}
	co, ok := NewGuard(m, GuardPolicy{}).Output().(engine.CheckpointedOutput)
	if !ok {
		t.Fatal("a guard over a checkpointed output hides its checkpoints")
	}
	if hwm, err := co.CheckpointOutput(); err != nil || len(hwm) != 3 || hwm[0] != 7 {
		t.Fatalf("CheckpointOutput = %v, %v; want the inner mark 7", hwm, err)
	}
	if err := co.RestoreOutput([]byte{5, 0, 0}); err != nil || m.n != 5 || len(m.restores) != 1 {
		t.Fatalf("RestoreOutput: %v, inner at %d after %v", err, m.n, m.restores)
	}
}

// A durable engine whose checkpointed output is guarded: recovery restores
// the output through the guard, and a Stop after the end of input while the
// output is halted is bounded: the final checkpoint cannot be taken (the
// output never takes the end-of-input results), and Stop still returns when
// its context ends, with an error.
func TestGuardStopWithHaltedOutputIsBounded(t *testing.T) {
	dir := t.TempDir()
	w, err := engine.OpenWAL(filepath.Join(dir, "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	specs, err := ops.ParseIndicators(ops.DefaultIndicators)
	if err != nil {
		t.Fatal(err)
	}
	out := &markedOutput{}
	out.down.Store(true)
	e, g := newGuarded(t, engine.Config{Shards: 2, Output: out, Durability: w,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 64, MaxSlots: 64})
		},
		Checkpoints: &engine.CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}},
		GuardPolicy{BreakerFailures: 1, BreakerTimeout: time.Hour, RetryDelay: func(int) time.Duration { return time.Millisecond }})
	if _, err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(out.restores) != 1 || out.restores[0] != -1 {
		t.Fatalf("recovery restored the output %v, want once without a mark", out.restores)
	}
	sym, _ := e.Symbols().InternString("X")
	p, _ := e.NewPublisher("feed")
	for i := 1; i <= 2000; i++ {
		ev := trade(uint64(i), sym, int64(i))
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = e.Stop(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %s with a 1s context", took)
	}
	if err == nil {
		t.Fatal("Stop with a halted output returned no error")
	}
	if st := g.Stats(); !st.Halted || st.Breaker != "open" {
		t.Fatalf("guard stats %+v: want the breaker open and the output halted", st)
	}
	if st := e.CheckpointStats(); st.Taken != 1 { // the one after recovery
		t.Fatalf("%d checkpoints taken, want only recovery's: a checkpoint covered outputs the sink never took", st.Taken)
	}
}
