package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sony/gobreaker/v2"

	"qstream/codec"
	"qstream/ops"
)

// The recovery strategies of the specification's StreamRecoveryManager, for
// output delivery:
//
//   - transient errors (ErrTransient, or an error with Temporary() true) are
//     retried with capped exponential backoff and full jitter, up to
//     ErrorPolicy.MaxRetries times per batch;
//   - a poison output (*PoisonError: a value the sink can never take) goes to
//     the dead-letter handler with its reason and the rest of the batch is
//     delivered;
//   - a permanent error (ErrPermanent, or a full or read-only file system:
//     ENOSPC, EDQUOT, EFBIG, EROFS) is not retried: waiting does not free a
//     disk, and a file sink that failed in the middle of a batch holds a torn
//     line a retry would bury. It is logged and becomes the engine's sticky
//     error at once (Engine.Failed): outputs stop, no checkpoint is taken
//     any more, and recovery from the last checkpoint, once the cause is
//     fixed, produces the rest from the WAL;
//   - system errors (anything else, and transient errors past their retries)
//     count towards a circuit breaker (github.com/sony/gobreaker/v2). While
//     it is open the stream halts: the collector holds the batch and probes
//     the sink once per BreakerTimeout, outputs back up into the shards and
//     the feeds feel backpressure; nothing is dropped. Opening is logged with
//     the error. Stats().Output shows the breaker and whether the stream is
//     halted. When the engine stops or fails (Engine.Fail) while halted, the
//     guard gives up within 50 ms and the error becomes the engine's sticky
//     error.
//
// Retries can repeat outputs a sink already took before failing; outputs
// carry deterministic keys (ops.Output.Key) so sinks absorb them.

// ErrTransient marks an error worth retrying: wrap it (fmt.Errorf("...: %w",
// engine.ErrTransient)). Errors with a Temporary() bool method that returns
// true count as transient too.
var ErrTransient = errors.New("engine: transient error")

// PoisonError is what an OutputHandler returns for an output it can never
// write. Index is the position in the slice passed to that HandleOutputs
// call; outputs before it count as written.
type PoisonError struct {
	Index  int
	Reason codec.Reason
	Err    error
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("engine: poison output %d (%s): %v", e.Index, e.Reason, e.Err)
}

func (e *PoisonError) Unwrap() error { return e.Err }

// ErrorPolicy configures the recovery strategies. Zero fields take the
// defaults.
type ErrorPolicy struct {
	// MaxRetries bounds the retries of a transient error per batch (default
	// 5); past it the error counts as a system error.
	MaxRetries int
	// RetryDelay returns the wait before retry attempt (1-based). Default:
	// full jitter over [1ms, min(2s, 10ms·2^(attempt-1))].
	RetryDelay func(attempt int) time.Duration
	// BreakerFailures is how many consecutive system errors open the
	// breaker (default 3).
	BreakerFailures uint32
	// BreakerTimeout is how long the breaker stays open before a probe
	// (default 5s).
	BreakerTimeout time.Duration
}

// OutputStats describe output delivery under an ErrorPolicy.
type OutputStats struct {
	Retries      uint64 // transient errors retried
	Poisoned     uint64 // outputs sent to the dead-letter handler
	SystemErrors uint64
	Breaker      string // "closed", "half-open" or "open"; "" without an ErrorPolicy
	Halted       bool   // the breaker is open and the stream waits for the sink
	LastError    string
}

// ErrPermanent marks an output error that waiting will not heal; see
// Permanent.
var ErrPermanent = errors.New("engine: permanent output error")

// Permanent marks err as permanent for the ErrorPolicy: it is not retried
// and fails the engine. The result's message is err's, and errors.Is sees
// both ErrPermanent and everything err wraps.
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

// isPermanent reports whether err will not heal by retrying.
func isPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EROFS)
}

func isTransient(err error) bool {
	if errors.Is(err, ErrTransient) {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// outputGuard wraps Config.Output with the policy. HandleOutputs runs on the
// collector goroutine only.
type outputGuard struct {
	e         *Engine
	inner     OutputHandler
	pol       ErrorPolicy
	cb        *gobreaker.CircuitBreaker[struct{}]
	rnd       *rand.Rand
	escalated bool // the current error counts against the breaker even if transient

	retries, poisoned, systemErrs atomic.Uint64
	halted                        atomic.Bool
	lastErr                       atomic.Pointer[string]

	// sleep waits d and reports false if the engine is stopping or has
	// failed; tests replace it.
	sleep func(d time.Duration) bool
}

func newOutputGuard(e *Engine, inner OutputHandler, pol ErrorPolicy) *outputGuard {
	if pol.MaxRetries <= 0 {
		pol.MaxRetries = 5
	}
	if pol.BreakerFailures == 0 {
		pol.BreakerFailures = 3
	}
	if pol.BreakerTimeout <= 0 {
		pol.BreakerTimeout = 5 * time.Second
	}
	g := &outputGuard{e: e, inner: inner, pol: pol, rnd: rand.New(rand.NewPCG(rand.Uint64(), 1))}
	if g.pol.RetryDelay == nil {
		g.pol.RetryDelay = g.defaultDelay
	}
	failures := pol.BreakerFailures
	g.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "output",
		MaxRequests: 1,
		Timeout:     pol.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded: func(err error) bool {
			var pe *PoisonError
			return errors.As(err, &pe) || (isTransient(err) && !g.escalated)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					e.cfg.Logger.Error("engine: output circuit breaker open: the stream halts until the output takes outputs again",
						"err", g.lastError(), "probe_every", pol.BreakerTimeout)
				}
			case gobreaker.StateClosed:
				e.cfg.Logger.Info("engine: output recovered: circuit breaker closed")
			}
		},
	})
	g.sleep = g.sleepUnlessStopping
	return g
}

// defaultDelay is capped exponential backoff with full jitter.
func (g *outputGuard) defaultDelay(attempt int) time.Duration {
	ceil := 10 * time.Millisecond
	for i := 1; i < attempt && ceil < 2*time.Second; i++ {
		ceil *= 2
	}
	ceil = min(ceil, 2*time.Second)
	return time.Millisecond + time.Duration(g.rnd.Int64N(int64(ceil-time.Millisecond)+1))
}

func (g *outputGuard) sleepUnlessStopping(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if g.e.stopping.Load() || g.e.hasErr.Load() {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		time.Sleep(min(left, 50*time.Millisecond))
	}
}

func (g *outputGuard) setLast(err error) {
	s := err.Error()
	g.lastErr.Store(&s)
}

// HandleOutputs implements OutputHandler.
func (g *outputGuard) HandleOutputs(outs []ops.Output) error {
	attempt := 0
	g.escalated = false
	for len(outs) > 0 {
		var herr error
		_, err := g.cb.Execute(func() (struct{}, error) {
			herr = g.inner.HandleOutputs(outs)
			if herr != nil {
				g.setLast(herr) // before the breaker's state change logs it
			}
			return struct{}{}, herr
		})
		if err == nil {
			g.halted.Store(false)
			return nil
		}
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			g.halted.Store(true)
			if !g.sleep(g.pol.BreakerTimeout / 4) {
				return fmt.Errorf("engine: output halted by an open circuit breaker, given up at stop: %s", g.lastError())
			}
			continue
		}
		var pe *PoisonError
		if errors.As(herr, &pe) && pe.Index >= 0 && pe.Index < len(outs) {
			g.poison(&outs[pe.Index], pe)
			outs = outs[pe.Index+1:]
			attempt = 0
			continue
		}
		if isPermanent(herr) {
			g.systemErrs.Add(1)
			g.e.cfg.Logger.Error("engine: output failed and will not heal by retrying; stopping the stream (the WAL keeps the input for recovery)", "err", herr)
			return fmt.Errorf("engine: output failed: %w", herr)
		}
		attempt++
		if isTransient(herr) && !g.escalated && attempt <= g.pol.MaxRetries {
			g.retries.Add(1)
		} else {
			g.escalated = true
			g.systemErrs.Add(1)
		}
		if !g.sleep(g.pol.RetryDelay(min(attempt, 30))) {
			return fmt.Errorf("engine: output failed at stop: %w", herr)
		}
	}
	g.halted.Store(false)
	return nil
}

func (g *outputGuard) lastError() string {
	if s := g.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

func (g *outputGuard) poison(o *ops.Output, pe *PoisonError) {
	g.poisoned.Add(1)
	reason := pe.Reason
	if reason == codec.ReasonNone || int(reason) >= codec.ReasonCount {
		reason = codec.ReasonMalformed
	}
	g.e.rejected[reason].Add(1)
	if h := g.e.cfg.DeadLetters; h != nil {
		h.HandleDeadLetter(&DeadLetter{Reason: reason, Feed: "output", Pos: codec.Position{Offset: -1}, Output: o, Err: pe.Err})
	}
}

func (g *outputGuard) stats() OutputStats {
	return OutputStats{
		Retries:      g.retries.Load(),
		Poisoned:     g.poisoned.Load(),
		SystemErrors: g.systemErrs.Load(),
		Breaker:      g.cb.State().String(),
		Halted:       g.halted.Load(),
		LastError:    g.lastError(),
	}
}

// OutputStats returns the delivery counters (zero without an ErrorPolicy).
func (e *Engine) OutputStats() OutputStats {
	if e.guard == nil {
		return OutputStats{}
	}
	return e.guard.stats()
}
