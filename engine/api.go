package engine

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"qstream/ops"
)

// The Go API of the specification's stream processor: windows created at run
// time and their partial aggregates on demand. Shard state is owned by the
// shard goroutines, so these calls run a function on every shard (or the
// owning one) through a small control mailbox and wait for it.

// WindowID identifies a window created through the API: its operator index
// (ops.Output.Op of its results) in every shard's pipeline.
type WindowID uint16

// WindowHost is a Processor that can add windows at run time and report the
// running state of their open windows. *ops.Pipeline implements it.
type WindowHost interface {
	AddWindow(spec ops.WindowSpec) (uint16, error)
	AppendWindowStats(op uint16, dst []ops.SymbolWindowStats) ([]ops.SymbolWindowStats, error)
}

// ErrNoWindowHost is returned by the window API when the shards' processors
// do not implement WindowHost.
var ErrNoWindowHost = errors.New("engine: processors cannot host windows")

// control is one function to run on a shard goroutine.
type control struct {
	fn   func(s *shard) error
	done chan error
}

// mailbox holds a shard's pending control functions. The shard checks the
// flag (one atomic load per loop) and runs them between batches.
type mailbox struct {
	mu      sync.Mutex
	pending []control
}

func (s *shard) post(c control) {
	s.ctl.mu.Lock()
	s.ctl.pending = append(s.ctl.pending, c)
	s.ctlFlag.Store(true)
	s.ctl.mu.Unlock()
	s.waiter.Wake()
	// A paused shard waits on the pause condition, not on its waiter.
	s.e.pauseMu.Lock()
	s.e.pauseCv.Broadcast()
	s.e.pauseMu.Unlock()
}

// runControl runs the pending control functions on the shard goroutine.
func (s *shard) runControl() {
	s.ctl.mu.Lock()
	pending := s.ctl.pending
	s.ctl.pending = nil
	s.ctlFlag.Store(false)
	s.ctl.mu.Unlock()
	for _, c := range pending {
		c.done <- c.fn(s)
	}
}

// drainControl answers control functions still pending when the shard
// exits, so that no caller waits forever.
func (s *shard) drainControl() {
	s.runControl()
}

// CreateWindow adds a window operator with the given spec to every shard and
// returns its id. The windows fire like configured ones: their results reach
// the OutputHandler with Op = the id. The window is recorded in checkpoints
// (see defs.go): recovery creates it again before loading its state.
func (e *Engine) CreateWindow(spec ops.WindowSpec) (WindowID, error) {
	return e.CreateStreamWindow(DefaultStream, spec)
}

// CreateStreamWindow is CreateWindow on one stream's operators.
func (e *Engine) CreateStreamWindow(stream StreamID, spec ops.WindowSpec) (WindowID, error) {
	st, err := e.lookup(stream)
	if err != nil {
		return 0, err
	}
	d := definition{Kind: "window", Window: spec.String()}
	if st.idx != 0 {
		d.Stream = st.id
	}
	commit := e.lockDefs()
	id, err := e.applyWindow(st, spec)
	if err == nil {
		e.addDef(d)
	}
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	return id, err
}

func (e *Engine) applyWindow(st *stream, spec ops.WindowSpec) (WindowID, error) {
	ops := make([]uint16, len(e.shards))
	err := e.onStream(st, func(i int, p Processor) error {
		h, ok := p.(WindowHost)
		if !ok {
			return ErrNoWindowHost
		}
		op, err := h.AddWindow(spec)
		ops[i] = op
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, op := range ops[1:] {
		if op != ops[0] {
			return 0, fmt.Errorf("engine: shards disagree on the new window's id (%v)", ops)
		}
	}
	return WindowID(ops[0]), nil
}

func parseAgg(agg string) (ops.Aggregation, error) {
	a, err := ops.ParseAggregation(agg)
	if err != nil {
		return a, fmt.Errorf("engine: %w", err)
	}
	return a, nil
}

// CreateTumblingWindow adds tumbling windows of size, aligned to the epoch,
// aggregating the trade price with agg ("vwap", "ohlcv", "p99", ...).
func (e *Engine) CreateTumblingWindow(size time.Duration, agg string) (WindowID, error) {
	a, err := parseAgg(agg)
	if err != nil {
		return 0, err
	}
	spec, err := ops.TumblingWindowSpec(int64(size), a, ops.FieldPrice)
	if err != nil {
		return 0, err
	}
	return e.CreateWindow(spec)
}

// CreateSlidingWindow adds the specification's sliding window: a trailing
// window of size evaluated at trades, at most once per slide (0: every trade).
func (e *Engine) CreateSlidingWindow(size, slide time.Duration, agg string) (WindowID, error) {
	a, err := parseAgg(agg)
	if err != nil {
		return 0, err
	}
	spec, err := ops.SlidingWindowSpec(int64(size), int64(slide), a, ops.FieldPrice)
	if err != nil {
		return 0, err
	}
	return e.CreateWindow(spec)
}

// CreateHoppingWindow adds windows of size starting every hop.
func (e *Engine) CreateHoppingWindow(size, hop time.Duration, agg string) (WindowID, error) {
	a, err := parseAgg(agg)
	if err != nil {
		return 0, err
	}
	spec, err := ops.HoppingWindowSpec(int64(size), int64(hop), a, ops.FieldPrice)
	if err != nil {
		return 0, err
	}
	return e.CreateWindow(spec)
}

// CreateSessionWindow adds session windows closed by gaps of at least gap.
func (e *Engine) CreateSessionWindow(gap time.Duration, agg string) (WindowID, error) {
	a, err := parseAgg(agg)
	if err != nil {
		return 0, err
	}
	spec, err := ops.SessionWindowSpec(int64(gap), a, ops.FieldPrice)
	if err != nil {
		return 0, err
	}
	return e.CreateWindow(spec)
}

// WindowAggregate is the current (partial) value of one open window of one
// symbol.
type WindowAggregate struct {
	Symbol         string
	StartNs, EndNs int64
	Count          int64
	Value          float64 // NaN when the window has no trades or fn does not apply
}

// AggregateWindow returns, for every symbol with an open window of id, the
// value of fn over what the window holds so far (the specification's
// aggregate_window, on demand), ordered by symbol id and window start. fn is
// any aggregation the window's running state supports: count, sum, avg, min,
// max, stddev, stddev_samp, vwap, twap; percentiles need a percentile window.
func (e *Engine) AggregateWindow(id WindowID, fn ops.AggregationKind) ([]WindowAggregate, error) {
	return e.AggregateStreamWindow(DefaultStream, id, fn)
}

// AggregateStreamWindow is AggregateWindow on one stream's operators.
func (e *Engine) AggregateStreamWindow(stream StreamID, id WindowID, fn ops.AggregationKind) ([]WindowAggregate, error) {
	st, err := e.lookup(stream)
	if err != nil {
		return nil, err
	}
	per := make([][]ops.SymbolWindowStats, len(e.shards))
	err = e.onStream(st, func(i int, p Processor) error {
		h, ok := p.(WindowHost)
		if !ok {
			return ErrNoWindowHost
		}
		var err error
		per[i], err = h.AppendWindowStats(uint16(id), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	var all []ops.SymbolWindowStats
	for _, p := range per {
		all = append(all, p...)
	}
	sortWindowStats(all)
	out := make([]WindowAggregate, len(all))
	for i := range all {
		st := &all[i]
		out[i] = WindowAggregate{Symbol: e.symbols.Name(st.Symbol), StartNs: st.StartNs, EndNs: st.EndNs, Count: st.Count, Value: st.Value(fn)}
	}
	return out, nil
}

func sortWindowStats(s []ops.SymbolWindowStats) {
	slices.SortStableFunc(s, func(a, b ops.SymbolWindowStats) int {
		if a.Symbol != b.Symbol {
			return cmp.Compare(a.Symbol, b.Symbol)
		}
		return cmp.Compare(a.StartNs, b.StartNs)
	})
}

// WindowInfo describes one window operator of the shards' pipelines.
type WindowInfo struct {
	ID   WindowID
	Spec ops.WindowSpec
}

// WindowLister is a Processor that lists its window operators.
// *ops.Pipeline implements it.
type WindowLister interface {
	Windows() []*ops.WindowOperator
}

// ListWindows returns the window operators, configured and created at run
// time, by id. Every shard has the same ones: it asks the first.
func (e *Engine) ListWindows() ([]WindowInfo, error) {
	return e.ListStreamWindows(DefaultStream)
}

// ListStreamWindows is ListWindows of one stream.
func (e *Engine) ListStreamWindows(stream StreamID) ([]WindowInfo, error) {
	st, err := e.lookup(stream)
	if err != nil {
		return nil, err
	}
	var out []WindowInfo
	err = e.onStream(st, func(i int, p Processor) error {
		if i != 0 {
			return nil
		}
		l, ok := p.(WindowLister)
		if !ok {
			return ErrNoWindowHost
		}
		for _, w := range l.Windows() {
			out = append(out, WindowInfo{ID: WindowID(w.Op()), Spec: w.Spec()})
		}
		return nil
	})
	return out, err
}
