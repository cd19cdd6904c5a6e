package sinks

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGate is a lease that ends at a deadline set by the test.
type fakeGate struct{ deadline atomic.Int64 }

func (g *fakeGate) Remaining() time.Duration {
	return max(0, time.Until(time.Unix(0, g.deadline.Load())))
}

func (g *fakeGate) until(t time.Time) { g.deadline.Store(t.UnixNano()) }

// A gated sink writes while the lease holds; once it has passed, nothing
// reaches the destination (the batches are retried, never written, never
// dead-lettered), and a write in flight is cut at the deadline.
func TestGateFencesWrites(t *testing.T) {
	g := &fakeGate{}
	g.until(time.Now().Add(time.Hour))
	w := &recWriter{}
	s, err := NewSink("gated", &gatedWriter{Writer: w, gate: g}, fastPolicy(FullBlock, 1000), "", nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet(nil, []*Sink{s})
	set.Start()
	if err := set.HandleOutputs(outputs(0, 100)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first 100 written", func() bool { return len(w.written()) == 100 })
	if !set.Delivered(100) || set.Delivered(101) {
		t.Fatal("Delivered does not match the acknowledged outputs")
	}

	g.until(time.Now().Add(-time.Millisecond)) // the lease is gone
	calls := w.calls.Load()
	if err := set.HandleOutputs(outputs(100, 50)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the fenced batch retried", func() bool { return s.Stats().Retries+s.Stats().Errors > 0 })
	time.Sleep(50 * time.Millisecond)
	if n := len(w.written()); n != 100 || w.calls.Load() != calls {
		t.Fatalf("after the lease: %d written, %d writer calls (was %d): a fenced write reached the writer", n, w.calls.Load(), calls)
	}
	if set.Delivered(150) {
		t.Fatal("fenced outputs count as delivered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := set.Close(ctx); err == nil {
		t.Fatal("Close reports nothing left undelivered")
	}
	if st := s.Stats(); st.Poisoned != 0 || st.Written != 100 {
		t.Fatalf("stats %+v", st)
	}
}

// A write in flight when the lease ends is cut at the deadline.
func TestGateCutsWriteAtDeadline(t *testing.T) {
	g := &fakeGate{}
	g.until(time.Now().Add(80 * time.Millisecond))
	w := &recWriter{block: make(chan struct{})} // never unblocks: a slow server
	gw := &gatedWriter{Writer: w, gate: g}
	start := time.Now()
	err := gw.WriteBatch(context.Background(), outputs(0, 1))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("WriteBatch = %v after %s, want the deadline at the lease's end", err, time.Since(start))
	}
	if err := gw.WriteBatch(context.Background(), outputs(1, 1)); !errors.Is(err, ErrFenced) || !IsTransient(err) {
		t.Fatalf("after the lease: %v, want ErrFenced (transient)", err)
	}
}
