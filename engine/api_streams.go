package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"qstream/internal/rate"
	"qstream/ops"
)

// newThroughputRing is the ring ThroughputStats reads.
func newThroughputRing() *rate.Ring {
	return rate.NewRing(int(MaxThroughputTimeframe/ThroughputInterval)+1, ThroughputInterval)
}

// StreamID names a stream of the engine. An engine runs one stream today,
// DefaultStream; the API takes the id so that it reads as the
// specification's (filter_stream, transform_stream) and stays when several
// streams share the shards.
type StreamID string

// DefaultStream is the id of the engine's stream.
const DefaultStream StreamID = "default"

// ErrUnknownStream is returned for a stream id the engine does not run.
var ErrUnknownStream = errors.New("engine: unknown stream")

// StreamHost is a Processor whose stream can be filtered and transformed
// at run time. *ops.Pipeline implements it.
type StreamHost interface {
	SetFilter(src string) error
	SetTransform(src string) error
}

// ErrNoStreamHost: the shards' processors cannot filter or transform.
var ErrNoStreamHost = errors.New("engine: processors cannot filter or transform their stream")

// FilterStream sets the stream's filter, a declarative predicate compiled
// once (ops.ParseFilter: "kind == trade and symbol in (AAPL, MSFT) and
// price > 100"): events that do not pass reach no operator. "" removes
// it. It applies on every shard between batches and is recorded in
// checkpoints like every run-time definition (defs.go). Errors wrap
// ops.ErrFilterSpec, ErrUnknownStream or ErrNoStreamHost.
func (e *Engine) FilterStream(id StreamID, filter string) error {
	if filter != "" {
		if _, err := ops.ParseFilter(filter); err != nil {
			return err
		}
	}
	return e.setStream(id, definition{Kind: "filter", Expr: filter})
}

// TransformStream sets the stream's transform (ops.ParseTransform:
// "price = price * 100; volume = volume / 1000"), run after the filter and
// before every operator. "" removes it. Recorded in checkpoints.
func (e *Engine) TransformStream(id StreamID, transform string) error {
	if transform != "" {
		if _, err := ops.ParseTransform(transform); err != nil {
			return err
		}
	}
	return e.setStream(id, definition{Kind: "transform", Expr: transform})
}

func (e *Engine) setStream(id StreamID, d definition) error {
	if id != DefaultStream {
		return fmt.Errorf("%w: %q (this engine runs %q)", ErrUnknownStream, id, DefaultStream)
	}
	commit := e.lockDefs()
	err := e.applyStream(d)
	if err == nil {
		e.addDef(d)
	}
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	return err
}

func (e *Engine) applyStream(d definition) error {
	return e.onShards(func(_ int, p Processor) error {
		h, ok := p.(StreamHost)
		if !ok {
			return ErrNoStreamHost
		}
		if d.Kind == "filter" {
			return h.SetFilter(d.Expr)
		}
		return h.SetTransform(d.Expr)
	})
}

// StreamMetrics returns the stream's counters: messages, outputs, errors
// and dead letters by reason, per-shard ring occupancy and watermarks,
// durability (the engine's Stats).
func (e *Engine) StreamMetrics(id StreamID) (Stats, error) {
	if id != DefaultStream {
		return Stats{}, fmt.Errorf("%w: %q", ErrUnknownStream, id)
	}
	return e.Stats(), nil
}

// Lag is how far a stream is behind in event time, measured against a
// wall-clock time (operators never read the clock; this is for operators of
// the process).
type Lag struct {
	// Watermark is now − the stream's watermark (the lowest of the
	// shards'); valid when HasWatermark.
	Watermark    time.Duration
	WatermarkNs  int64
	HasWatermark bool
	// EventTime is now − the newest event time a live source has flushed;
	// valid when HasEvents.
	EventTime     time.Duration
	NewestEventNs int64
	HasEvents     bool
}

// ProcessingLag returns the stream's event-time and watermark lag at now.
func (e *Engine) ProcessingLag(id StreamID, now time.Time) (Lag, error) {
	if id != DefaultStream {
		return Lag{}, fmt.Errorf("%w: %q", ErrUnknownStream, id)
	}
	var l Lag
	st := e.Stats()
	l.WatermarkNs = math.MaxInt64
	for _, sh := range st.Shards {
		if sh.WatermarkNs != math.MinInt64 && sh.WatermarkNs != math.MaxInt64 {
			l.WatermarkNs, l.HasWatermark = min(l.WatermarkNs, sh.WatermarkNs), true
		}
	}
	if l.HasWatermark {
		l.Watermark = now.Sub(time.Unix(0, l.WatermarkNs))
	} else {
		l.WatermarkNs = 0
	}
	l.NewestEventNs = math.MinInt64
	for _, p := range e.Publishers() {
		if !p.Ended && !p.Replay && p.MaxEventNs != math.MinInt64 {
			l.NewestEventNs, l.HasEvents = max(l.NewestEventNs, p.MaxEventNs), true
		}
	}
	if l.HasEvents {
		l.EventTime = now.Sub(time.Unix(0, l.NewestEventNs))
	} else {
		l.NewestEventNs = 0
	}
	return l, nil
}

// Throughput is the message rate over a timeframe.
type Throughput struct {
	Timeframe time.Duration
	Seconds   float64 // the span the samples cover (less than Timeframe early on)
	Messages  uint64
	PerSecond float64
}

// Bounds of ThroughputStats' timeframe: the engine samples its message
// count once per ThroughputInterval and keeps MaxThroughputTimeframe.
const (
	ThroughputInterval     = time.Second
	MaxThroughputTimeframe = time.Hour
)

// ThroughputStats returns the messages the stream processed over the last
// timeframe (ThroughputInterval..MaxThroughputTimeframe) and their rate,
// from the samples the running engine takes once a second. ok is false
// before two samples exist.
func (e *Engine) ThroughputStats(id StreamID, timeframe time.Duration) (t Throughput, ok bool, err error) {
	if id != DefaultStream {
		return t, false, fmt.Errorf("%w: %q", ErrUnknownStream, id)
	}
	if timeframe < ThroughputInterval || timeframe > MaxThroughputTimeframe {
		return t, false, fmt.Errorf("engine: timeframe %s outside %s..%s", timeframe, ThroughputInterval, MaxThroughputTimeframe)
	}
	n, secs, ok := e.tput.Rate(timeframe)
	t = Throughput{Timeframe: timeframe, Seconds: secs, Messages: n}
	if ok && secs > 0 {
		t.PerSecond = float64(n) / secs
	}
	return t, ok, nil
}

// sampleThroughput records the message count once per interval until
// stop is closed.
func (e *Engine) sampleThroughput(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	e.tput.Add(time.Now(), e.Stats().Messages)
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			e.tput.Add(now, e.Stats().Messages)
		}
	}
}

// PauseStream stops the stream's consumption (Pause): its rings fill and its
// publishers block; nothing is dropped.
func (e *Engine) PauseStream(id StreamID) error {
	if id != DefaultStream {
		return fmt.Errorf("%w: %q", ErrUnknownStream, id)
	}
	e.Pause()
	return nil
}

// ResumeStream undoes PauseStream.
func (e *Engine) ResumeStream(id StreamID) error {
	if id != DefaultStream {
		return fmt.Errorf("%w: %q", ErrUnknownStream, id)
	}
	e.Resume()
	return nil
}

// StopStream stops the stream as Stop does: once its publishers are closed
// every open window fires, the final checkpoint is taken and the output
// holds every result.
func (e *Engine) StopStream(ctx context.Context, id StreamID) error {
	if id != DefaultStream {
		return fmt.Errorf("%w: %q", ErrUnknownStream, id)
	}
	return e.Stop(ctx)
}
