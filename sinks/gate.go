package sinks

import (
	"context"
	"errors"
	"time"

	"qstream/ops"
)

// Gate fences a sink's writes: a member of a scale-out group (package
// cluster) may write the outputs of a partition only while it holds the
// partition's lease. Remaining is how long it may still write (0: not at
// all).
type Gate interface {
	Remaining() time.Duration
}

// ErrFenced is a write the Gate refused: the lease is gone. It is retried
// like a transient error (so nothing queued is dropped or dead-lettered)
// until the sink is closed, and never reaches the destination.
var ErrFenced = errors.New("sinks: fenced: the lease for these outputs is no longer held")

// gatedWriter checks the Gate before each batch and bounds the write by
// what is left of the lease, so no write starts after the lease and none
// outlives it.
type gatedWriter struct {
	Writer
	gate Gate
}

func (g *gatedWriter) WriteBatch(ctx context.Context, outs []ops.Output) error {
	rem := g.gate.Remaining()
	if rem <= 0 {
		return errors.Join(ErrFenced, ErrTransient)
	}
	ctx, cancel := context.WithTimeout(ctx, rem)
	defer cancel()
	return g.Writer.WriteBatch(ctx, outs)
}

// AppendStatus keeps the wrapped writer's counters.
func (g *gatedWriter) AppendStatus(dst []byte) []byte {
	if sw, ok := g.Writer.(StatusWriter); ok {
		return sw.AppendStatus(dst)
	}
	return dst
}

// LastCut is the ordinal of the first output after the last checkpoint cut
// (CheckpointOutput): the outputs before it are those of the events the
// checkpoint holds.
func (s *Set) LastCut() uint64 { return s.lastCut.Load() }

// Delivered reports whether every sink has handled (written, shed or
// dead-lettered) every output before ordinal through.
func (s *Set) Delivered(through uint64) bool {
	for _, k := range s.sinks {
		q := k.q
		q.mu.Lock()
		h := q.hwmLocked(q.next)
		q.mu.Unlock()
		if h < through {
			return false
		}
	}
	return true
}

// WaitDelivered waits until Delivered(through), polling, or ctx ends.
func (s *Set) WaitDelivered(ctx context.Context, through uint64) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !s.Delivered(through) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
