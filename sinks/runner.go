package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"qstream/codec"
	"qstream/ops"
)

// Policy configures one asynchronous sink. Zero fields take the defaults;
// every field has an upper bound (checked by Validate).
type Policy struct {
	// Buffer is the memory queue's length in outputs (default 16384, at
	// most 1<<22).
	Buffer int
	// Full is what happens when the memory queue is full (default spill).
	Full FullPolicy
	// SpillMax bounds the spill file in bytes (default 1 GiB); a full
	// spill blocks.
	SpillMax int64
	// BatchMax is the most outputs per write (default 1024, at most 65536).
	BatchMax int
	// Linger is how long the writer waits for a batch to fill once it has
	// one output (default 2ms; 0 takes the default, negative writes at
	// once).
	Linger time.Duration
	// MaxRetries bounds the retries of a transient error per batch
	// (default 5); past it the error counts against the breaker.
	MaxRetries int
	// BreakerFailures consecutive system errors open the breaker (default 3).
	BreakerFailures uint32
	// BreakerTimeout is how long the breaker stays open before a probe
	// (default 5s).
	BreakerTimeout time.Duration
	// WriteTimeout bounds one WriteBatch or Open call (default 10s).
	WriteTimeout time.Duration
}

// Bounds of Policy.
const (
	maxBuffer   = 1 << 22
	maxBatch    = 1 << 16
	maxSpill    = 1 << 40
	maxRetries  = 100
	maxBreakerT = time.Hour
)

func (p *Policy) defaults() {
	if p.Buffer <= 0 {
		p.Buffer = 16384
	}
	if p.SpillMax <= 0 {
		p.SpillMax = 1 << 30
	}
	if p.BatchMax <= 0 {
		p.BatchMax = 1024
	}
	if p.Linger == 0 {
		p.Linger = 2 * time.Millisecond
	}
	if p.MaxRetries <= 0 {
		p.MaxRetries = 5
	}
	if p.BreakerFailures == 0 {
		p.BreakerFailures = 3
	}
	if p.BreakerTimeout <= 0 {
		p.BreakerTimeout = 5 * time.Second
	}
	if p.WriteTimeout <= 0 {
		p.WriteTimeout = 10 * time.Second
	}
}

// Validate checks the bounds.
func (p *Policy) Validate() error {
	switch {
	case p.Buffer > maxBuffer:
		return fmt.Errorf("buffer=%d: at most %d", p.Buffer, maxBuffer)
	case p.BatchMax > maxBatch:
		return fmt.Errorf("batch=%d: at most %d", p.BatchMax, maxBatch)
	case p.SpillMax > maxSpill:
		return fmt.Errorf("spill_max=%d: at most %d", p.SpillMax, int64(maxSpill))
	case p.MaxRetries > maxRetries:
		return fmt.Errorf("retries=%d: at most %d", p.MaxRetries, maxRetries)
	case p.BreakerTimeout > maxBreakerT:
		return fmt.Errorf("breaker_timeout=%s: at most %s", p.BreakerTimeout, maxBreakerT)
	}
	return nil
}

// SinkStats describe one sink.
type SinkStats struct {
	Name       string
	State      string // starting, ok, retrying, open (breaker open: waiting for the server), closed
	Full       string // the full-queue policy
	Queued     int    // in memory (in flight and waiting)
	Spilled    int    // in the spill file
	SpillBytes int64
	MaxDepth   int    // the deepest the queue (memory and spill) has been
	Written    uint64 // outputs the destination acknowledged
	Batches    uint64
	Retries    uint64 // transient errors retried
	Errors     uint64 // system errors (counted by the breaker)
	Poisoned   uint64 // outputs sent to the dead letters
	Shed       uint64 // outputs dropped by FullShed
	Breaker    string // closed, half-open, open
	LastError  string
	HWM        uint64 // the lowest output ordinal not yet acknowledged
	Writer     string // the writer's own counters (StatusWriter)
}

// PoisonFunc receives an output a writer can never write (the dead
// letters). It is called from sink goroutines, concurrently.
type PoisonFunc func(o *ops.Output, reason codec.Reason, err error)

// Sink is one asynchronous destination: a Writer fed by its own goroutine
// from a bounded queue (see FullPolicy), with batching by size and time,
// retries with capped backoff and full jitter, and a circuit breaker
// (github.com/sony/gobreaker/v2). A slow or dead sink never stalls the
// engine or the other sinks unless its policy is FullBlock: its breaker
// opens, it queues (and spills), and it probes the server once per
// BreakerTimeout; when the server is back it catches up in order.
type Sink struct {
	name   string
	w      Writer
	pol    Policy
	q      *queue
	dir    string // state: spill and carry files ("" without checkpoints and spill)
	poison PoisonFunc
	log    *slog.Logger
	cb     *gobreaker.CircuitBreaker[struct{}]
	rnd    *rand.Rand

	ctx    context.Context // cancelled by Close's deadline: in-flight writes give up
	cancel context.CancelFunc
	drain  chan struct{} // closed by Close: write what is queued, then stop
	done   chan struct{}
	opened bool

	state                                        atomic.Pointer[string]
	written, batches, retries, errs, poisonedOut atomic.Uint64
	lastErr                                      atomic.Pointer[string]
}

// NewSink returns a sink writing through w. dir holds its spill and
// checkpoint files (it may be "" only when the policy is not FullSpill and
// no checkpoints are taken). Start starts it.
func NewSink(name string, w Writer, pol Policy, dir string, poison PoisonFunc, log *slog.Logger) (*Sink, error) {
	pol.defaults()
	if err := pol.Validate(); err != nil {
		return nil, fmt.Errorf("sink %s: %w", name, err)
	}
	if log == nil {
		log = slog.Default()
	}
	var sp *spill
	if pol.Full == FullSpill {
		if dir == "" {
			return nil, fmt.Errorf("sink %s: full=spill needs a directory", name)
		}
		sp = newSpill(dir, pol.SpillMax)
	}
	s := &Sink{
		name:   name,
		w:      w,
		pol:    pol,
		q:      newQueue(pol.Buffer, pol.Full, sp),
		dir:    dir,
		poison: poison,
		log:    log,
		rnd:    rand.New(rand.NewPCG(rand.Uint64(), 2)),
		drain:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.setState("starting")
	failures := pol.BreakerFailures
	s.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     pol.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded: func(err error) bool {
			var pe *PoisonError
			return errors.As(err, &pe) || errors.Is(err, errRetryable)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					s.log.Error("sink: circuit breaker open: outputs queue until the destination takes them again",
						"sink", name, "err", s.lastError(), "probe_every", pol.BreakerTimeout, "full", pol.Full.String())
				}
			case gobreaker.StateClosed:
				s.log.Info("sink: recovered: circuit breaker closed", "sink", name)
			}
		},
	})
	return s, nil
}

// errRetryable wraps a transient error still within its retries: the
// breaker does not count it.
var errRetryable = errors.New("retryable")

type retryable struct{ err error }

func (r retryable) Error() string        { return r.err.Error() }
func (r retryable) Unwrap() error        { return r.err }
func (r retryable) Is(target error) bool { return target == errRetryable }

// Name returns the sink's name (its URI without credentials).
func (s *Sink) Name() string { return s.name }

func (s *Sink) setState(st string) { s.state.Store(&st) }

func (s *Sink) setLast(err error) {
	m := err.Error()
	s.lastErr.Store(&m)
}

func (s *Sink) lastError() string {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Start starts the writer goroutine.
func (s *Sink) Start() { go s.run() }

// push queues outputs with ordinals first, first+1, ...; see FullPolicy.
func (s *Sink) push(first uint64, outs []ops.Output, stop <-chan struct{}) error {
	return s.q.push(first, outs, stop)
}

func (s *Sink) run() {
	defer close(s.done)
	if !s.openLoop() {
		return
	}
	for {
		outs, err := s.q.take(s.pol.BatchMax)
		if err != nil {
			s.setLast(err)
			s.log.Error("sink: reading the spill failed; the sink stops (its outputs stay in the spill for the next start)", "sink", s.name, "err", err)
			s.setState("failed")
			<-s.drain
			return
		}
		if len(outs) == 0 {
			select {
			case <-s.q.data:
				if s.pol.Linger > 0 {
					s.lingerWait()
				}
				continue
			case <-s.drain:
				// Closing: deliver what arrived since the last take, then stop.
				if in, r, sp := s.q.depth(); in+r+sp > 0 {
					continue
				}
				return
			}
		}
		if !s.deliver(outs) {
			return
		}
	}
}

// openLoop opens the writer at start (a listener binds, a connection is
// made, tables exist before the first output), retrying through the breaker
// with backoff like a write. It gives up (false) when Close's deadline
// passes, or at Close when nothing is queued.
func (s *Sink) openLoop() bool {
	attempt := 0
	for !s.opened {
		_, err := s.cb.Execute(func() (struct{}, error) {
			ctx, cancel := context.WithTimeout(s.ctx, s.pol.WriteTimeout)
			defer cancel()
			err := s.w.Open(ctx)
			if err != nil {
				s.setLast(fmt.Errorf("open: %w", err))
				return struct{}{}, err
			}
			s.opened = true
			return struct{}{}, nil
		})
		if err == nil {
			s.setState("ok")
			return true
		}
		wait := s.pol.BreakerTimeout / 4
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			s.setState("open")
		} else {
			attempt++
			s.errs.Add(1)
			s.setState("retrying")
			wait = FullJitter(s.rnd, min(attempt, 30))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return false
		case <-s.drain:
			t.Stop()
			if in, r, sp := s.q.depth(); in+r+sp == 0 {
				return false
			}
			// Closing with outputs queued: keep trying until the deadline.
			select {
			case <-time.After(wait):
			case <-s.ctx.Done():
				return false
			}
		}
	}
	return true
}

// lingerWait waits up to Linger for a batch to fill.
func (s *Sink) lingerWait() {
	_, r, sp := s.q.depth()
	if r+sp >= s.pol.BatchMax {
		return
	}
	t := time.NewTimer(s.pol.Linger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.drain:
	}
}

// deliver writes one batch until it is acknowledged; false when the sink
// is told to give up (Close's deadline passed).
func (s *Sink) deliver(outs []ops.Output) bool {
	base := 0 // outs[:base] are handled
	attempt := 0
	for base < len(outs) {
		if s.ctx.Err() != nil {
			return false
		}
		var werr error
		_, err := s.cb.Execute(func() (struct{}, error) {
			werr = s.write(outs[base:])
			if werr != nil {
				s.setLast(werr)
				var pe *PoisonError
				if !errors.As(werr, &pe) && IsTransient(werr) && attempt < s.pol.MaxRetries {
					return struct{}{}, retryable{werr}
				}
			}
			return struct{}{}, werr
		})
		if err == nil {
			s.written.Add(uint64(len(outs) - base))
			s.batches.Add(1)
			s.q.ack(len(outs))
			s.setState("ok")
			return true
		}
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			s.setState("open")
			if !s.sleep(s.pol.BreakerTimeout / 4) {
				return false
			}
			continue
		}
		var pe *PoisonError
		if errors.As(werr, &pe) && pe.Index >= 0 && base+pe.Index < len(outs) {
			i := base + pe.Index
			s.written.Add(uint64(pe.Index))
			s.poisonedOut.Add(1)
			reason := pe.Reason
			if reason == codec.ReasonNone || int(reason) >= codec.ReasonCount {
				reason = codec.ReasonMalformed
			}
			if s.poison != nil {
				s.poison(&outs[i], reason, fmt.Errorf("sink %s: %w", s.name, pe.Err))
			}
			base = i + 1
			s.q.ack(base)
			attempt = 0
			continue
		}
		attempt++
		if errors.Is(err, errRetryable) {
			s.retries.Add(1)
		} else {
			s.errs.Add(1)
		}
		s.setState("retrying")
		if !s.sleep(FullJitter(s.rnd, min(attempt, 30))) {
			return false
		}
	}
	s.q.ack(len(outs))
	s.setState("ok")
	return true
}

// write opens the writer if needed, then writes, each bounded by
// WriteTimeout.
func (s *Sink) write(outs []ops.Output) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.pol.WriteTimeout)
	defer cancel()
	if !s.opened {
		if err := s.w.Open(ctx); err != nil {
			return fmt.Errorf("open: %w", err)
		}
		s.opened = true
	}
	return s.w.WriteBatch(ctx, outs)
}

// sleep waits d; false when the sink must give up (Close's deadline).
func (s *Sink) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// Close asks the sink to deliver what is queued, waits until it did or ctx
// ends (then the in-flight write is cancelled), and closes the writer. It
// returns how many outputs were left undelivered: they stay in the spill
// and the last checkpoint for the next start (with FullSpill and
// checkpoints), or are lost.
func (s *Sink) Close(ctx context.Context) (undelivered int, err error) {
	select {
	case <-s.drain:
	default:
		close(s.drain)
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	s.q.close()
	in, r, sp := s.q.depth()
	s.q.mu.Lock()
	if s.q.sp != nil {
		if err := s.q.sp.sync(); err != nil {
			s.log.Error("sink: syncing the spill at close", "sink", s.name, "err", err)
		}
		s.q.sp.close()
	}
	s.q.mu.Unlock()
	s.setState("closed")
	return in + r + sp, s.w.Close()
}

// Stats returns the sink's counters.
func (s *Sink) Stats() SinkStats {
	st := SinkStats{
		Name:      s.name,
		Full:      s.pol.Full.String(),
		Written:   s.written.Load(),
		Batches:   s.batches.Load(),
		Retries:   s.retries.Load(),
		Errors:    s.errs.Load(),
		Poisoned:  s.poisonedOut.Load(),
		Breaker:   s.cb.State().String(),
		LastError: s.lastError(),
	}
	if p := s.state.Load(); p != nil {
		st.State = *p
	}
	s.q.mu.Lock()
	st.Queued = len(s.q.inflightOrd) - s.q.done + s.q.n
	if s.q.sp != nil {
		st.Spilled = s.q.sp.n
		st.SpillBytes = s.q.sp.bytes()
	}
	st.MaxDepth = s.q.maxDepth
	st.Shed = s.q.shed
	st.HWM = s.q.hwmLocked(s.q.next)
	s.q.mu.Unlock()
	if sw, ok := s.w.(StatusWriter); ok {
		st.Writer = string(sw.AppendStatus(nil))
	}
	return st
}
