package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"qstream/codec"
	"qstream/ops"
)

// Writer is one destination of an asynchronous sink (Redis, ClickHouse,
// NATS, WebSocket clients). The framework (see Sink) owns the bounded queue,
// batching, retries with capped backoff and jitter, the circuit breaker, the
// full-queue policy and the high-water mark in checkpoints; a Writer only
// writes. Its methods are called from the sink's own goroutine, never
// concurrently, so a Writer needs no locking of its own for them.
//
// Writes must be idempotent by output key (ops.Output.Key): the framework
// retries a failed batch whole, and recovery after a crash hands over again
// the outputs the sink had not acknowledged in the last checkpoint, some of
// which the destination may already hold.
type Writer interface {
	// Open connects to the destination and prepares it (creates tables,
	// binds a listener). A failed Open is retried like a failed write
	// (transient and system errors with backoff, through the breaker), so
	// a server that is down at start does not refuse the start: the sink
	// queues, and writes once the server is up.
	Open(ctx context.Context) error
	// WriteBatch writes outs, in order, and returns once the destination
	// has them (acknowledged: a pipeline's replies read, an insert's
	// response received). On an error some outputs may have been written;
	// the framework retries the whole batch. A *PoisonError names one
	// output that can never be written: it goes to the dead letters and the
	// rest of the batch is retried. ctx is cancelled when the sink stops.
	WriteBatch(ctx context.Context, outs []ops.Output) error
	// Close releases connections and listeners. It is called once, after
	// the last WriteBatch.
	Close() error
}

// StatusWriter is an optional interface of a Writer with counters of its own
// (conflated updates, connected clients): AppendStatus appends them to the
// sink's status as " name=value" pairs. It is called from other goroutines
// while WriteBatch runs: keep the counters in atomics.
type StatusWriter interface {
	AppendStatus(dst []byte) []byte
}

// Env is what every Writer constructor gets: how outputs are named (symbol
// names, indicator keys, window specs; the same configuration as the JSON
// Lines output, so a sink's JSON equals the --output line) and where to log.
type Env struct {
	JSONL  JSONLConfig
	Logger *slog.Logger
	// Gate, if set, fences every write (see Gate): a scale-out group's
	// partition writes only while it holds its lease.
	Gate Gate
}

// Channel returns the name of an output kind as sinks publish it: the NATS
// subject's <kind>, the WebSocket channel, the Redis channel prefix.
func Channel(k ops.OutKind) string {
	switch k {
	case ops.OutIndicators:
		return "indicators"
	case ops.OutWindow:
		return "windows"
	case ops.OutPattern:
		return "patterns"
	case ops.OutNews:
		return "news"
	case ops.OutEvent:
		return "events"
	case ops.OutMovement:
		return "movements"
	}
	return "unknown"
}

// Error classes of the recovery policy (see Guard and Sink):
//
//   - transient errors (ErrTransient, or an error with Temporary() true) are
//     retried with capped exponential backoff and full jitter, a bounded
//     number of times, then count as system errors;
//   - a poison output (*PoisonError) goes to the dead letters with its
//     reason, and the rest of the batch is delivered;
//   - a permanent error (ErrPermanent, or a full or read-only file system:
//     ENOSPC, EDQUOT, EFBIG, EROFS) is not retried;
//   - system errors (anything else) count towards the circuit breaker.

// ErrTransient marks an error worth retrying: wrap it (fmt.Errorf("...: %w",
// sinks.ErrTransient)). Errors with a Temporary() bool method that returns
// true count as transient too.
var ErrTransient = errors.New("sinks: transient error")

// ErrPermanent marks an error that waiting will not heal; see Permanent.
var ErrPermanent = errors.New("sinks: permanent output error")

// Permanent marks err as permanent: it is not retried. The result's message
// is err's, and errors.Is sees both ErrPermanent and everything err wraps.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (p permanentError) Error() string        { return p.err.Error() }
func (p permanentError) Unwrap() error        { return p.err }
func (p permanentError) Is(target error) bool { return target == ErrPermanent }

// IsPermanent reports whether err will not heal by retrying.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EROFS)
}

// IsTransient reports whether err is worth retrying as it is.
func IsTransient(err error) bool {
	if errors.Is(err, ErrTransient) {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// PoisonError is what a writer returns for an output it can never write.
// Index is the position in the slice passed to that call; outputs before
// it count as written.
type PoisonError struct {
	Index  int
	Reason codec.Reason
	Err    error
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("sinks: poison output %d (%s): %v", e.Index, e.Reason, e.Err)
}

func (e *PoisonError) Unwrap() error { return e.Err }
