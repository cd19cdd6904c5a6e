package sinks

import (
	"context"
	"sync/atomic"
	"testing"

	"qstream/ops"
)

// countingSink counts what it is given.
type countingSink struct{ n atomic.Int64 }

func (w *countingSink) Open(context.Context) error { return nil }
func (w *countingSink) WriteBatch(_ context.Context, outs []ops.Output) error {
	w.n.Add(int64(len(outs)))
	return nil
}
func (w *countingSink) Close() error { return nil }

// The hand-off from the engine's collector to an asynchronous sink: a
// batch of 256 outputs pushed into the sink's queue and taken by its writer
// goroutine, against the same outputs sent one by one over a buffered Go
// channel to a consumer goroutine (the baseline, in the same run).
func BenchmarkSinkHandOff(b *testing.B) {
	const batch = 256
	outs := outputs(0, batch)
	b.Run("set", func(b *testing.B) {
		w := &countingSink{}
		s, err := NewSink("count", w, Policy{Buffer: 1 << 16, Full: FullBlock, BatchMax: 4096, Linger: -1}, "", nil, quietLogger())
		if err != nil {
			b.Fatal(err)
		}
		set := NewSet(nil, []*Sink{s})
		set.Start()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := set.HandleOutputs(outs); err != nil {
				b.Fatal(err)
			}
		}
		if err := set.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got, want := w.n.Load(), int64(b.N)*batch; got != want {
			b.Fatalf("writer got %d outputs, want %d", got, want)
		}
		b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "outputs/s")
	})
	b.Run("baseline-chan", func(b *testing.B) {
		ch := make(chan ops.Output, 1<<16)
		var n atomic.Int64
		done := make(chan struct{})
		go func() {
			for range ch {
				n.Add(1)
			}
			close(done)
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for j := range outs {
				ch <- outs[j]
			}
		}
		close(ch)
		<-done
		b.StopTimer()
		if got, want := n.Load(), int64(b.N)*batch; got != want {
			b.Fatalf("consumer got %d outputs, want %d", got, want)
		}
		b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "outputs/s")
	})
}

// The steady state of the hand-off allocates nothing: push, take, ack.
func TestSinkQueueAllocs(t *testing.T) {
	q := newQueue(1024, FullBlock, nil)
	outs := outputs(0, 256)
	var ord uint64
	allocs := testing.AllocsPerRun(100, func() {
		if err := q.push(ord, outs, nil); err != nil {
			t.Fatal(err)
		}
		ord += uint64(len(outs))
		got, err := q.take(4096)
		if err != nil || len(got) != len(outs) {
			t.Fatalf("take: %d, %v", len(got), err)
		}
		q.ack(len(got))
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per push/take/ack, want 0", allocs)
	}
}
