package engine

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ring"
)

// goid returns the calling goroutine's id (from its stack header).
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

// gidProc is an echo processor that records the goroutine it runs on: the
// shard's.
type gidProc struct {
	echo
	gid atomic.Uint64
}

func (p *gidProc) OnEvent(ev *codec.Event, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	p.gid.Store(goid())
	return p.echo.OnEvent(ev, wm, dst)
}

// gidOutput records, per delivered trade output, the goroutine that
// delivered it.
type gidOutput struct {
	mu   sync.Mutex
	gids []uint64
}

func (o *gidOutput) HandleOutputs(outs []ops.Output) error {
	g := goid()
	o.mu.Lock()
	for i := range outs {
		if outs[i].Kind == ops.OutIndicators {
			o.gids = append(o.gids, g)
		}
	}
	o.mu.Unlock()
	return nil
}

func (o *gidOutput) delivered() []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]uint64(nil), o.gids...)
}

// TestIdleShardDeliversItsOutputs: a trade that arrives at an idle engine
// (one shard, park) is delivered by the shard itself, on its own goroutine,
// as soon as it is processed: no hand-off to the collector goroutine, no
// waiting for more. Before, every output went through the collector
// goroutine. (A collector goroutine that happens to take the role at that
// moment delivers instead; hence "most", not "all".)
func TestIdleShardDeliversItsOutputs(t *testing.T) {
	proc := &gidProc{echo: *newEcho(0)}
	out := &gidOutput{}
	e, err := New(Config{Shards: 1, Wait: ring.Park, Output: out,
		Processors: func(int) (Processor, error) { return proc, nil }})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.NewPublisher("p")
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	const rounds = 20
	for i := 1; i <= rounds; i++ {
		ev := trade(uint64(i), 1, int64(i))
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(out.delivered()) < i {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the output was not delivered in 10s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	p.Close()
	stop(t, e)
	shardGid, onShard := proc.gid.Load(), 0
	for _, g := range out.delivered() {
		if g == shardGid {
			onShard++
		}
	}
	t.Logf("%d of %d outputs delivered on the shard's goroutine; %d inline steps", onShard, rounds, e.collector.inlineSteps.Load())
	if onShard < rounds*3/4 {
		t.Fatalf("%d of %d outputs of an idle shard were delivered on its goroutine, want most", onShard, rounds)
	}
}

// TestInlineDeliveryThroughFullOutputRing: with the smallest output ring, a
// batch's outputs fill it many times over; outputs pushed without waking the
// collector (PublishQuiet) must still be taken, by the shard or the woken
// collector, or the shard waits for room for ever.
func TestInlineDeliveryThroughFullOutputRing(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		te := newTestEngine(t, Config{Shards: 2, OutRingSize: 2, Wait: ring.Park, Ordered: ordered})
		p, _ := te.NewPublisher("p")
		te.Start()
		const n = 5000
		for i := 1; i <= n; i++ {
			ev := trade(uint64(i), codec.Symbol(1+i%7), int64(i))
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		te.waitOutputs(t, n)
		p.Close()
		stop(t, te.Engine)
		trades := 0
		for _, o := range te.out.all() {
			if o.Kind == ops.OutIndicators {
				trades++
			}
		}
		if trades != n {
			t.Fatalf("ordered=%v: %d trade outputs, want %d", ordered, trades, n)
		}
	}
}

// TestOrderedWatermarkOutputsInShardOrder: in ordered mode the outputs of a
// watermark carry the Seq of the last event before it, on every shard, so
// they must come out in shard order after that event's output. A shard that
// processed the events of a flush before its watermark was in the ring
// reported progress up to that Seq before the watermark's output existed,
// and another shard's output of that Seq went first. The flush (and Close)
// now publish each ring's events and watermark at once. (The race needs a
// shard to poll between the two publishes; cmd/qstream's
// TestReplayParseThreads showed it in 1 run in 4 with the futex park, and
// this test checks the same order over many small flushes.)
func TestOrderedWatermarkOutputsInShardOrder(t *testing.T) {
	for round := 0; round < 5; round++ {
		te := newTestEngine(t, Config{Shards: 3, Wait: ring.Park, Ordered: true})
		p, _ := te.NewPublisher("p")
		te.Start()
		const n = 600
		for i := 1; i <= n; i++ {
			ev := trade(uint64(i), codec.Symbol(1+i%5), int64(i)*1000)
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		p.Close()
		stop(t, te.Engine)
		outs := te.out.all()
		for i := 1; i < len(outs); i++ {
			a, b := outs[i-1], outs[i]
			if b.Seq < a.Seq || (b.Seq == a.Seq && b.Op < a.Op) {
				t.Fatalf("round %d: output %d (seq %d, shard %d, kind %d) after (seq %d, shard %d, kind %d)",
					round, i, b.Seq, b.Op, b.Kind, a.Seq, a.Op, a.Kind)
			}
		}
		if want := n + 3*n + 3; len(outs) < n+3 || len(outs) > want {
			t.Fatalf("round %d: %d outputs, want between %d and %d", round, len(outs), n+3, want)
		}
	}
}
