package sinks

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
)

// Guard is the recovery policy of a synchronous output (the --output file,
// standard output): the specification's StreamRecoveryManager strategies,
// applied around an engine.OutputHandler on the engine's collector
// goroutine. With the error classes of sink.go:
//
//   - transient errors are retried with capped exponential backoff and full
//     jitter (FullJitter), up to GuardPolicy.MaxRetries times per batch;
//   - a poison output (*PoisonError) goes to the engine's dead letters
//     (GuardHost.DeadLetterOutput) with its reason and the rest of the batch
//     is delivered;
//   - a permanent error (IsPermanent) is not retried: waiting does not free a
//     disk, and a file that failed in the middle of a batch holds a torn line
//     a retry would bury. It is logged and returned, so it becomes the
//     engine's sticky error at once (engine.Engine.Failed): outputs stop, no
//     checkpoint is taken any more, and recovery from the last checkpoint,
//     once the cause is fixed, produces the rest from the WAL;
//   - system errors (anything else, and transient errors past their retries)
//     count towards a circuit breaker (github.com/sony/gobreaker/v2). While
//     it is open the stream halts: the collector holds the batch and probes
//     the output once per GuardPolicy.BreakerTimeout, outputs back up into the
//     shards and the feeds feel backpressure; nothing is dropped. Opening is
//     logged with the error. Stats shows the breaker and whether the stream
//     is halted. When the engine stops or fails (GuardHost.Stopping) while
//     halted, the guard gives up within 50 ms and returns the error, which
//     becomes the engine's sticky error.
//
// Retries can repeat outputs the output already took before failing;
// outputs carry deterministic keys (ops.Output.Key) so outputs absorb them.
//
// Construction: the guard wraps the output the engine is configured with,
// and needs the engine itself, which does not exist yet at that point. So
// NewGuard takes no host; the engine's Config.Output is set to Output(),
// and Bind(eng) is called once engine.New has returned, before Start or
// Recover:
//
//	g := sinks.NewGuard(out, sinks.GuardPolicy{})
//	cfg.Output = g.Output()
//	eng, err := engine.New(cfg)
//	...
//	g.Bind(eng)
//	eng.Start()
type Guard struct {
	host      GuardHost
	inner     engine.OutputHandler
	pol       GuardPolicy
	log       *slog.Logger
	cb        *gobreaker.CircuitBreaker[struct{}]
	rnd       *rand.Rand // the default delay's; collector goroutine only
	escalated bool       // the current error counts against the breaker even if transient

	retries, poisoned, systemErrs atomic.Uint64
	halted                        atomic.Bool
	lastErr                       atomic.Pointer[string]

	// sleep waits d and reports false if the host is stopping; tests
	// replace it.
	sleep func(d time.Duration) bool
}

// GuardHost is what a Guard needs from the engine it delivers for;
// *engine.Engine implements it.
type GuardHost interface {
	// Stopping reports whether the engine stops or has failed: a halted
	// guard gives up waiting.
	Stopping() bool
	// DeadLetterOutput counts a poison output as rejected and hands it to
	// the engine's dead letters. Called on the collector goroutine.
	DeadLetterOutput(o *ops.Output, reason codec.Reason, err error)
}

// GuardPolicy configures a Guard. Zero fields take the defaults, which are
// `qstream run`'s policy for its output.
type GuardPolicy struct {
	// MaxRetries bounds the retries of a transient error per batch (default
	// 5); past it the error counts as a system error.
	MaxRetries int
	// RetryDelay returns the wait before retry attempt (1-based). Default:
	// FullJitter, over [1ms, min(2s, 10ms·2^(attempt-1))].
	RetryDelay func(attempt int) time.Duration
	// BreakerFailures is how many consecutive system errors open the
	// breaker (default 3).
	BreakerFailures uint32
	// BreakerTimeout is how long the breaker stays open before a probe
	// (default 5s).
	BreakerTimeout time.Duration
	// Logger for the breaker's state changes and permanent errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// GuardPolicy defaults.
const (
	DefaultMaxRetries      = 5
	DefaultBreakerFailures = 3
	DefaultBreakerTimeout  = 5 * time.Second
)

// GuardStats describe output delivery under a Guard.
type GuardStats struct {
	Retries      uint64 // transient errors retried
	Poisoned     uint64 // outputs sent to the dead letters
	SystemErrors uint64
	Breaker      string // "closed", "half-open" or "open"
	Halted       bool   // the breaker is open and the stream waits for the output
	LastError    string
}

// NewGuard returns a guard of inner under pol. Bind it to its engine before
// the engine starts.
func NewGuard(inner engine.OutputHandler, pol GuardPolicy) *Guard {
	if pol.MaxRetries <= 0 {
		pol.MaxRetries = DefaultMaxRetries
	}
	if pol.BreakerFailures == 0 {
		pol.BreakerFailures = DefaultBreakerFailures
	}
	if pol.BreakerTimeout <= 0 {
		pol.BreakerTimeout = DefaultBreakerTimeout
	}
	g := &Guard{inner: inner, pol: pol, log: pol.Logger, rnd: rand.New(rand.NewPCG(rand.Uint64(), 2))}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.pol.RetryDelay == nil {
		g.pol.RetryDelay = func(attempt int) time.Duration { return FullJitter(g.rnd, attempt) }
	}
	failures := pol.BreakerFailures
	g.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "output",
		MaxRequests: 1,
		Timeout:     pol.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded: func(err error) bool {
			var pe *PoisonError
			return errors.As(err, &pe) || (IsTransient(err) && !g.escalated)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					g.log.Error("sinks: output circuit breaker open: the stream halts until the output takes outputs again",
						"err", g.lastError(), "probe_every", pol.BreakerTimeout)
				}
			case gobreaker.StateClosed:
				g.log.Info("sinks: output recovered: circuit breaker closed")
			}
		},
	})
	g.sleep = g.sleepUnlessStopping
	return g
}

// Bind sets the engine the guard delivers for. Call it once engine.New has
// returned and before the engine starts (Start or Recover); a guard used
// unbound panics.
func (g *Guard) Bind(host GuardHost) { g.host = host }

// Output returns the handler to configure as engine.Config.Output. It
// implements engine.CheckpointedOutput exactly when the guarded output
// does, delegating CheckpointOutput and RestoreOutput to it unguarded (a
// failed checkpoint fails the cut, not the delivery), so the engine's type
// assertion sees through the guard.
func (g *Guard) Output() engine.OutputHandler {
	if co, ok := g.inner.(engine.CheckpointedOutput); ok {
		return checkpointedGuardOutput{guardOutput{g}, co}
	}
	return guardOutput{g}
}

// guardOutput is a Guard as an engine.OutputHandler. The Guard itself has
// no HandleOutputs, so that it cannot be configured in place of Output()
// and hide its output's checkpoints.
type guardOutput struct{ g *Guard }

func (o guardOutput) HandleOutputs(outs []ops.Output) error { return o.g.handleOutputs(outs) }

// checkpointedGuardOutput is the Output of a guard over an
// engine.CheckpointedOutput.
type checkpointedGuardOutput struct {
	guardOutput
	co engine.CheckpointedOutput
}

func (o checkpointedGuardOutput) CheckpointOutput() ([]byte, error) { return o.co.CheckpointOutput() }
func (o checkpointedGuardOutput) RestoreOutput(hwm []byte) error    { return o.co.RestoreOutput(hwm) }

func (g *Guard) sleepUnlessStopping(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if g.host.Stopping() {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		time.Sleep(min(left, 50*time.Millisecond))
	}
}

func (g *Guard) setLast(err error) {
	s := err.Error()
	g.lastErr.Store(&s)
}

// handleOutputs delivers outs under the policy; collector goroutine only.
func (g *Guard) handleOutputs(outs []ops.Output) error {
	if g.host == nil {
		panic("sinks: Guard used before Bind")
	}
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
				return fmt.Errorf("sinks: output halted by an open circuit breaker, given up at stop: %s", g.lastError())
			}
			continue
		}
		var pe *PoisonError
		if errors.As(herr, &pe) && pe.Index >= 0 && pe.Index < len(outs) {
			g.poisoned.Add(1)
			g.host.DeadLetterOutput(&outs[pe.Index], pe.Reason, pe.Err)
			outs = outs[pe.Index+1:]
			attempt = 0
			continue
		}
		if IsPermanent(herr) {
			g.systemErrs.Add(1)
			g.log.Error("sinks: output failed and will not heal by retrying; stopping the stream (the WAL keeps the input for recovery)", "err", herr)
			return fmt.Errorf("sinks: output failed: %w", herr)
		}
		attempt++
		if IsTransient(herr) && !g.escalated && attempt <= g.pol.MaxRetries {
			g.retries.Add(1)
		} else {
			g.escalated = true
			g.systemErrs.Add(1)
		}
		if !g.sleep(g.pol.RetryDelay(min(attempt, 30))) {
			return fmt.Errorf("sinks: output failed at stop: %w", herr)
		}
	}
	g.halted.Store(false)
	return nil
}

func (g *Guard) lastError() string {
	if s := g.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Stats returns the delivery counters. Safe for concurrent use.
func (g *Guard) Stats() GuardStats {
	return GuardStats{
		Retries:      g.retries.Load(),
		Poisoned:     g.poisoned.Load(),
		SystemErrors: g.systemErrs.Load(),
		Breaker:      g.cb.State().String(),
		Halted:       g.halted.Load(),
		LastError:    g.lastError(),
	}
}
