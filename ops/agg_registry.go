package ops

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// AggregationFunc computes a custom aggregation from a window's summary. It
// runs on the hot path: it must not allocate, must not keep s, and must be
// deterministic (a pure function of s). NaN means null.
type AggregationFunc func(s *WindowStats) float64

// AggregationFactory validates a custom aggregation's parameters and returns
// its function. It is called at start-up (when a spec is parsed and when an
// operator is built), never per trade.
type AggregationFactory func(params []float64) (AggregationFunc, error)

// ErrAggregationExists is returned by RegisterAggregation for a name that is
// built in or already registered.
var ErrAggregationExists = errors.New("ops: aggregation already registered")

var aggRegistry = struct {
	sync.RWMutex
	m map[string]AggregationFactory
}{m: map[string]AggregationFactory{}}

// RegisterAggregation adds a named custom aggregation usable as AGG in
// window specs (`name` or `name(p1;p2)`). Names are 1..32 characters of
// [a-z0-9_] starting with a letter, and may not shadow a built-in
// aggregation or look like a percentile (p followed by a digit). Register
// at init time, before parsing specs. Safe for concurrent use.
//
// Built-in registrations: "range" (max − min) and "band(k)" (mean + k·σ,
// population σ: a Bollinger band over the window).
func RegisterAggregation(name string, factory AggregationFactory) error {
	if factory == nil {
		return errors.New("ops: nil aggregation factory")
	}
	if !aggValidName(name) {
		return fmt.Errorf("ops: bad aggregation name %q (want [a-z][a-z0-9_]{0,31})", name)
	}
	if _, err := ParseAggregation(name); err == nil {
		return fmt.Errorf("%w: %q", ErrAggregationExists, name)
	} else if len(name) > 1 && name[0] == 'p' && name[1] >= '0' && name[1] <= '9' {
		return fmt.Errorf("ops: aggregation name %q looks like a percentile", name)
	}
	aggRegistry.Lock()
	defer aggRegistry.Unlock()
	if _, ok := aggRegistry.m[name]; ok {
		return fmt.Errorf("%w: %q", ErrAggregationExists, name)
	}
	aggRegistry.m[name] = factory
	return nil
}

// RegisteredAggregations returns the registered custom names, sorted.
func RegisteredAggregations() []string {
	aggRegistry.RLock()
	defer aggRegistry.RUnlock()
	names := make([]string, 0, len(aggRegistry.m))
	for n := range aggRegistry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func aggLookup(name string) AggregationFactory {
	aggRegistry.RLock()
	defer aggRegistry.RUnlock()
	return aggRegistry.m[name]
}

func aggValidName(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func init() {
	must := func(err error) {
		if err != nil {
			panic(err) // a bug in this file, not input
		}
	}
	must(RegisterAggregation("range", func(p []float64) (AggregationFunc, error) {
		if len(p) != 0 {
			return nil, errors.New("range takes no parameters")
		}
		return func(s *WindowStats) float64 { return s.Max - s.Min }, nil
	}))
	must(RegisterAggregation("band", func(p []float64) (AggregationFunc, error) {
		if len(p) != 1 {
			return nil, errors.New("band takes one parameter k: band(2) = mean + 2σ")
		}
		k := p[0]
		return func(s *WindowStats) float64 { return s.Mean + k*math.Sqrt(s.Variance) }, nil
	}))
}
