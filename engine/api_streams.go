package engine

import (
	"errors"
	"fmt"
	"math"
	"time"

	"qstream/codec"
	"qstream/internal/rate"
	"qstream/ops"
)

// newThroughputRing is the ring ThroughputStats reads.
func newThroughputRing() *rate.Ring {
	return rate.NewRing(int(MaxThroughputTimeframe/ThroughputInterval)+1, ThroughputInterval)
}

// StreamID names a stream of the engine (streams.go).
type StreamID string

// DefaultStream names the engine's first stream, whatever its
// Config.StreamName.
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
	st, err := e.lookup(id)
	if err != nil {
		return err
	}
	if st.idx != 0 {
		d.Stream = st.id
	}
	commit := e.lockDefs()
	err = e.applyStream(st, d)
	if err == nil {
		e.addDef(d)
	}
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	return err
}

func (e *Engine) applyStream(st *stream, d definition) error {
	return e.onStream(st, func(_ int, p Processor) error {
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

// StreamMetrics returns the stream's counters. For the first stream of an
// engine that runs one, it is Stats. Otherwise Messages (events),
// Outputs and DeadLetters (operator-time rejections) count the stream's
// processing on every shard, Published, Rejected and Errors its
// publishers, Delivered its output handler; Shards gives each shard's
// watermark of the stream and the occupancy of its rings (shared by the
// streams); Durability is the engine's.
func (e *Engine) StreamMetrics(id StreamID) (Stats, error) {
	st, err := e.lookup(id)
	if err != nil {
		return Stats{}, err
	}
	all := e.Stats()
	if st.idx == 0 && len(e.streamList()) == 1 {
		return all, nil
	}
	m := Stats{ByKind: map[string]uint64{}, Rejected: map[string]uint64{}, Symbols: all.Symbols, Durability: all.Durability,
		Delivered: st.delivered.Load()}
	var rejected [codec.ReasonCount]uint64
	for i, s := range e.shards {
		sh := all.Shards[i]
		sh.Messages, sh.WatermarkNs = 0, math.MinInt64
		if ss := s.strPub[st.idx].Load(); ss != nil {
			sh.Messages = ss.processed.Load()
			sh.WatermarkNs = ss.wmPub.Load()
			m.Outputs += ss.outputs.Load()
			for r := range ss.dead {
				rejected[r] += ss.dead[r].Load()
			}
		}
		m.Messages += sh.Messages
		m.Shards = append(m.Shards, sh)
	}
	for _, p := range *e.pubs.Load() {
		if p.stream != st {
			continue
		}
		m.Published += p.published.Load()
		for r := range p.rejected {
			rejected[r] += p.rejected[r].Load()
		}
	}
	for r, n := range rejected {
		m.addRejected(codec.Reason(r), n)
	}
	return m, nil
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
	// EventTime is now − the newest event time a live source of the
	// stream has flushed; valid when HasEvents.
	EventTime     time.Duration
	NewestEventNs int64
	HasEvents     bool
}

// ProcessingLag returns the stream's event-time and watermark lag at now.
func (e *Engine) ProcessingLag(id StreamID, now time.Time) (Lag, error) {
	st, err := e.lookup(id)
	if err != nil {
		return Lag{}, err
	}
	var l Lag
	l.WatermarkNs = math.MaxInt64
	for _, s := range e.shards {
		ss := s.strPub[st.idx].Load()
		if ss == nil {
			continue
		}
		if wm := ss.wmPub.Load(); wm != math.MinInt64 && wm != math.MaxInt64 {
			l.WatermarkNs, l.HasWatermark = min(l.WatermarkNs, wm), true
		}
	}
	if l.HasWatermark {
		l.Watermark = now.Sub(time.Unix(0, l.WatermarkNs))
	} else {
		l.WatermarkNs = 0
	}
	l.NewestEventNs = math.MinInt64
	for _, p := range *e.pubs.Load() {
		if p.stream != st || p.ended.Load() || p.replay {
			continue
		}
		if ts := p.maxTsPub.Load(); ts != math.MinInt64 {
			l.NewestEventNs, l.HasEvents = max(l.NewestEventNs, ts), true
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
	st, err := e.lookup(id)
	if err != nil {
		return t, false, err
	}
	if timeframe < ThroughputInterval || timeframe > MaxThroughputTimeframe {
		return t, false, fmt.Errorf("engine: timeframe %s outside %s..%s", timeframe, ThroughputInterval, MaxThroughputTimeframe)
	}
	n, secs, ok := st.tput.Rate(timeframe)
	t = Throughput{Timeframe: timeframe, Seconds: secs, Messages: n}
	if ok && secs > 0 {
		t.PerSecond = float64(n) / secs
	}
	return t, ok, nil
}

// streamProcessed returns the events the shards processed for st.
func (e *Engine) streamProcessed(st *stream) uint64 {
	var n uint64
	for _, s := range e.shards {
		if ss := s.strPub[st.idx].Load(); ss != nil {
			n += ss.processed.Load()
		}
	}
	return n
}

// sampleThroughput records each stream's message count once per interval
// until stop is closed.
func (e *Engine) sampleThroughput(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	sample := func(now time.Time) {
		for _, st := range e.streamList() {
			st.tput.Add(now, e.streamProcessed(st))
		}
	}
	sample(time.Now())
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			sample(now)
		}
	}
}
