package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

// recWriter is a Writer that keeps what it was given, for the framework's
// own tests (the writers of real servers have integration tests of their
// own). down makes every call fail; transient marks the failures so.
type recWriter struct {
	mu        sync.Mutex
	keys      []uint64
	opens     int
	down      atomic.Bool
	transient atomic.Bool
	poisonKey uint64 // an output with this key is poison
	calls     atomic.Int64
	block     chan struct{} // when set, WriteBatch waits for it (or ctx)
}

var errDown = errors.New("connection refused")

func (w *recWriter) Open(ctx context.Context) error {
	if w.down.Load() {
		return errDown
	}
	w.mu.Lock()
	w.opens++
	w.mu.Unlock()
	return nil
}

func (w *recWriter) WriteBatch(ctx context.Context, outs []ops.Output) error {
	w.calls.Add(1)
	if w.block != nil {
		select {
		case <-w.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if w.down.Load() {
		if w.transient.Load() {
			return fmt.Errorf("timeout: %w", ErrTransient)
		}
		return errDown
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range outs {
		if w.poisonKey != 0 && outs[i].Key == w.poisonKey {
			return &PoisonError{Index: i, Reason: codec.ReasonMalformed, Err: errors.New("value out of range")}
		}
		w.keys = append(w.keys, outs[i].Key)
	}
	return nil
}

func (w *recWriter) Close() error { return nil }

func (w *recWriter) written() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint64(nil), w.keys...)
}

// outputs returns n outputs keyed from+1 .. from+n.
func outputs(from, n int) []ops.Output {
	outs := make([]ops.Output, n)
	for i := range outs {
		outs[i] = ops.Output{Kind: ops.OutIndicators, Key: uint64(from + i + 1), Seq: uint64(from + i + 1)}
	}
	return outs
}

// checkExactlyInOrder asserts keys are 1..n, each once, in order.
func checkExactlyInOrder(t *testing.T, keys []uint64, n int) {
	t.Helper()
	if len(keys) != n {
		t.Fatalf("%d outputs written, want %d", len(keys), n)
	}
	for i, k := range keys {
		if k != uint64(i+1) {
			t.Fatalf("output %d has key %d, want %d (order or duplicates)", i, k, i+1)
		}
	}
}

func fastPolicy(full FullPolicy, buffer int) Policy {
	return Policy{Buffer: buffer, Full: full, BatchMax: 64, Linger: -1, MaxRetries: 2,
		BreakerFailures: 2, BreakerTimeout: 40 * time.Millisecond, WriteTimeout: time.Second}
}

// A sink that is down while outputs keep coming spills what its memory
// queue cannot hold, opens its breaker, and after the server returns
// delivers every output once, in order; the other sink and the producer
// never wait for it.
func TestSinkDownSpillsAndCatchesUp(t *testing.T) {
	dead, healthy := &recWriter{}, &recWriter{}
	dead.down.Store(true)
	dir := t.TempDir()
	ds, err := NewSink("dead", dead, fastPolicy(FullSpill, 100), SinkDir(dir, "dead"), nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := NewSink("healthy", healthy, fastPolicy(FullSpill, 100), SinkDir(dir, "healthy"), nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet(nil, []*Sink{ds, hs})
	set.Start()
	const n = 5000
	for i := 0; i < n; i += 50 {
		done := make(chan error, 1)
		go func() { done <- set.HandleOutputs(outputs(i, 50)) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("HandleOutputs blocked on a dead sink with full=spill")
		}
	}
	waitFor(t, 10*time.Second, "the healthy sink", func() bool { return len(healthy.written()) == n })
	waitFor(t, 10*time.Second, "the breaker to open", func() bool { return ds.Stats().Breaker == "open" })
	st := ds.Stats()
	if st.Spilled == 0 || st.Queued > 100+64 || st.MaxDepth < n-100-64 {
		t.Fatalf("dead sink: spilled %d queued %d max depth %d: want the overflow in the spill", st.Spilled, st.Queued, st.MaxDepth)
	}
	dead.down.Store(false)
	waitFor(t, 10*time.Second, "the dead sink to catch up", func() bool { return len(dead.written()) == n })
	checkExactlyInOrder(t, dead.written(), n)
	checkExactlyInOrder(t, healthy.written(), n)
	if err := set.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = ds.Stats()
	if st.Breaker != "closed" || st.Errors == 0 || st.Written != n {
		t.Fatalf("after recovery: %+v", st)
	}
}

// FullShed drops and counts; FullBlock holds the producer until there is
// room and gives up at Close.
func TestSinkShedAndBlock(t *testing.T) {
	w := &recWriter{block: make(chan struct{})}
	s, err := NewSink("shed", w, fastPolicy(FullShed, 10), "", nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet(nil, []*Sink{s})
	set.Start()
	if err := set.HandleOutputs(outputs(0, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first batch in flight", func() bool { return w.calls.Load() == 1 })
	if err := set.HandleOutputs(outputs(1, 25)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Shed != 15 || st.Queued != 11 {
		t.Fatalf("shed %d queued %d, want 15 and 11", st.Shed, st.Queued)
	}
	close(w.block)
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(w.written()) == 11 })
	set.Close(context.Background())

	bw := &recWriter{block: make(chan struct{})}
	bs, err := NewSink("block", bw, fastPolicy(FullBlock, 10), "", nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	bset := NewSet(nil, []*Sink{bs})
	bset.Start()
	bset.HandleOutputs(outputs(0, 1))
	waitFor(t, 10*time.Second, "the first batch in flight", func() bool { return bw.calls.Load() == 1 })
	done := make(chan error, 1)
	go func() { done <- bset.HandleOutputs(outputs(1, 30)) }()
	select {
	case err := <-done:
		t.Fatalf("HandleOutputs returned %v with a full queue under full=block", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(bw.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(bw.written()) == 31 })
	checkExactlyInOrder(t, bw.written(), 31)
	bset.Close(context.Background())
}

// Transient errors are retried without opening the breaker; a poison
// output goes to the dead letters and the rest is delivered.
func TestSinkRetriesAndPoison(t *testing.T) {
	w := &recWriter{poisonKey: 7}
	var poisoned []uint64
	var mu sync.Mutex
	s, err := NewSink("p", w, fastPolicy(FullBlock, 100), "", func(o *ops.Output, r codec.Reason, err error) {
		mu.Lock()
		poisoned = append(poisoned, o.Key)
		mu.Unlock()
	}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet(nil, []*Sink{s})
	set.Start()
	set.HandleOutputs(outputs(0, 20))
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(w.written()) == 19 })
	mu.Lock()
	if len(poisoned) != 1 || poisoned[0] != 7 {
		t.Fatalf("poisoned %v, want [7]", poisoned)
	}
	mu.Unlock()
	w.down.Store(true)
	w.transient.Store(true)
	set.HandleOutputs(outputs(20, 5))
	waitFor(t, 10*time.Second, "a retry", func() bool { return s.Stats().Retries >= 1 })
	w.down.Store(false)
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(w.written()) == 24 })
	if st := s.Stats(); st.Breaker != "closed" || st.Poisoned != 1 || st.Written != 24 || st.HWM != 25 {
		t.Fatalf("%+v", st)
	}
	set.Close(context.Background())
}

// A crash while a sink is down: the checkpoint's mark keeps what the sink
// had not acknowledged (in flight, in memory, in the spill), the restarted
// set gets it back before the WAL replay's outputs, and the sink ends with
// every output.
func TestSinkCheckpointRestoreAfterCrash(t *testing.T) {
	dir := t.TempDir()
	w := &recWriter{}
	pol := fastPolicy(FullSpill, 50)
	s, _ := NewSink("redis://x", w, pol, SinkDir(dir, "redis://x"), nil, quietLogger())
	set := NewSet(nil, []*Sink{s})
	set.Start()
	set.HandleOutputs(outputs(0, 100))
	waitFor(t, 10*time.Second, "delivery", func() bool { return len(w.written()) == 100 })
	w.down.Store(true)
	set.HandleOutputs(outputs(100, 300)) // 50 in memory (some in flight), the rest spilled
	waitFor(t, 10*time.Second, "a failed write", func() bool { return s.Stats().Errors >= 1 })
	mark, err := set.CheckpointOutput()
	if err != nil {
		t.Fatal(err)
	}
	set.HandleOutputs(outputs(400, 10)) // after the cut: the replay produces them again
	// Crash: nothing is closed; the process's memory is gone.
	s.cancel()
	<-s.done

	w2 := &recWriter{}
	w2.keys = w.written()
	s2, _ := NewSink("redis://x", w2, pol, SinkDir(dir, "redis://x"), nil, quietLogger())
	other := &recWriter{}
	o2, _ := NewSink("nats://y", other, pol, SinkDir(dir, "nats://y"), nil, quietLogger()) // added after the checkpoint
	set2 := NewSet(nil, []*Sink{s2, o2})
	set2.Start()
	if err := set2.RestoreOutput(mark); err != nil {
		t.Fatal(err)
	}
	if set2.next != 400 {
		t.Fatalf("restored ordinal %d, want 400", set2.next)
	}
	set2.HandleOutputs(outputs(400, 10)) // the replay
	waitFor(t, 10*time.Second, "catch-up", func() bool { return len(w2.written()) == 410 })
	checkExactlyInOrder(t, w2.written(), 410)
	waitFor(t, 10*time.Second, "the new sink", func() bool { return len(other.written()) == 10 })
	if err := set2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A mark from no checkpoint (nil): everything again from ordinal 0, old
	// spill files gone.
	s3, _ := NewSink("redis://x", &recWriter{}, pol, SinkDir(dir, "redis://x"), nil, quietLogger())
	set3 := NewSet(nil, []*Sink{s3})
	if err := set3.RestoreOutput(nil); err != nil || set3.next != 0 {
		t.Fatalf("restore(nil): %v, next %d", err, set3.next)
	}
	if st := s3.Stats(); st.Queued != 0 || st.Spilled != 0 {
		t.Fatalf("restore(nil) left %+v", st)
	}
}

// Close with a dead sink returns within its deadline and says how many
// outputs it left.
func TestSinkCloseDeadlineWithDeadServer(t *testing.T) {
	w := &recWriter{}
	w.down.Store(true)
	s, _ := NewSink("dead", w, fastPolicy(FullSpill, 10), SinkDir(t.TempDir(), "dead"), nil, quietLogger())
	set := NewSet(nil, []*Sink{s})
	set.Start()
	set.HandleOutputs(outputs(0, 100))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := set.Close(ctx)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("Close: %v after %s", err, time.Since(start))
	}
	if want := "100 outputs not delivered"; !strings.Contains(err.Error(), want) {
		t.Fatalf("Close: %v, want %q", err, want)
	}
}

// The spill and carry records survive a round trip and detect damage.
func TestRecordRoundTrip(t *testing.T) {
	e := entry{ord: 42, out: ops.Output{Kind: ops.OutWindow, Key: 7, Value: 1.5, Count: 3}}
	var b [recordSize]byte
	putRecord(b[:], &e)
	var got entry
	if err := getRecord(b[:], &got); err != nil || got != e {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	b[20] ^= 1
	if err := getRecord(b[:], &got); err == nil {
		t.Fatal("a flipped bit was not detected")
	}
}
