package engine

import (
	"errors"
	"fmt"
	"sync"

	"qstream/codec"
	"qstream/ops"
)

// The Go API of the specification's pattern detector: patterns registered
// and removed at run time, the list of patterns with their match counts, and
// the most recent matches of each on demand. Like the window API
// (api.go), changes run on every shard goroutine through the control
// mailbox; the matches are recorded by the collector, where outputs are
// gathered, into one preallocated ring per pattern.

// PatternID identifies a pattern: its Op (ops.Output.Op of its matches) in
// every shard's pipeline. Configured patterns have the ids 0..n−1 in
// configuration order; registered ones the next ids, never reused.
type PatternID uint16

// DefaultPatternMatchBuffer is Config.PatternMatchBuffer when it is 0.
const DefaultPatternMatchBuffer = 256

// MaxPatternMatchBuffer bounds Config.PatternMatchBuffer.
const MaxPatternMatchBuffer = 1 << 16

// PatternHost is a Processor that can add and remove patterns at run time.
// *ops.Pipeline implements it.
type PatternHost interface {
	AddPattern(spec ops.PatternSpec) (uint16, error)
	RemovePattern(op uint16) error
	Patterns() []ops.PatternSpec
	PatternActive(op uint16) bool
}

// Errors of the pattern API; each call's error wraps one of them (and, for
// an invalid spec, ops.ErrPatternSpec).
var (
	// ErrNoPatternHost: the shards' processors do not implement PatternHost.
	ErrNoPatternHost = errors.New("engine: processors cannot host patterns")
	// ErrUnknownPattern: no pattern has the id (RemovePattern: no active one).
	ErrUnknownPattern = errors.New("engine: unknown pattern")
	// ErrInvalidPattern: the spec breaks the pattern file's rules.
	ErrInvalidPattern = errors.New("engine: invalid pattern")
	// ErrDuplicatePattern: an active pattern already has the spec's id.
	ErrDuplicatePattern = errors.New("engine: duplicate pattern id")
)

// PatternInfo describes one pattern of the engine.
type PatternInfo struct {
	ID      PatternID
	Spec    ops.PatternSpec
	Active  bool   // false once removed
	Matches uint64 // matches delivered since the engine was built
	Dropped uint64 // of them, those pushed out of the match buffer (the oldest go first)
}

// PatternDetail is one named value of a match (ops.PatternSpec.DetailNames).
type PatternDetail struct {
	Name  string
	Value float64 // NaN for null
}

// PatternMatch is one match of a pattern.
type PatternMatch struct {
	Pattern    PatternID
	Symbol     string
	TsNs       int64 // event time of the match
	Confidence float64
	Details    []PatternDetail
}

// patternRegistry holds the engine's patterns and their recent matches.
// The collector records matches under mu; the API serializes its changes
// under api and takes mu only to read or change entries.
type patternRegistry struct {
	api     sync.Mutex
	mu      sync.Mutex
	size    int         // matches kept per pattern (0: none)
	entries []*patEntry // by PatternID
}

// patEntry is one pattern and the ring of its last size matches: match k
// (0-based, k < n) is at k % size while k >= n − size.
type patEntry struct {
	spec   ops.PatternSpec
	names  []string
	active bool
	n      uint64 // matches recorded
	syms   []codec.Symbol
	ts     []int64
	conf   []float64
	nvals  []uint8
	vals   []float64 // size × len(names)
}

func newPatEntry(spec ops.PatternSpec, size int, active bool) *patEntry {
	en := &patEntry{spec: spec, names: spec.DetailNames(), active: active}
	if size > 0 {
		en.syms = make([]codec.Symbol, size)
		en.ts = make([]int64, size)
		en.conf = make([]float64, size)
		en.nvals = make([]uint8, size)
		en.vals = make([]float64, size*len(en.names))
	}
	return en
}

// newPatternRegistry returns the registry of the patterns the shards'
// processors were configured with, or nil when they cannot host patterns.
// It runs in New, before the shards run.
func newPatternRegistry(e *Engine, proc Processor) *patternRegistry {
	h, ok := proc.(PatternHost)
	if !ok {
		return nil
	}
	r := &patternRegistry{size: max(0, e.cfg.PatternMatchBuffer)}
	for op, s := range h.Patterns() {
		r.entries = append(r.entries, newPatEntry(s, r.size, h.PatternActive(uint16(op))))
	}
	return r
}

// record counts the pattern matches of a batch of outputs and keeps each in
// its pattern's ring, overwriting the oldest. The collector calls it for
// every batch before handing it on; it does not allocate.
func (r *patternRegistry) record(batch []ops.Output) {
	locked := false
	for i := range batch {
		o := &batch[i]
		if o.Kind != ops.OutPattern {
			continue
		}
		if !locked {
			r.mu.Lock()
			locked = true
		}
		if int(o.Op) >= len(r.entries) {
			continue // a processor's own pattern output the registry does not know
		}
		en := r.entries[o.Op]
		k := en.n
		en.n++
		if r.size == 0 {
			continue
		}
		at := int(k % uint64(r.size))
		en.syms[at], en.ts[at], en.conf[at] = o.Symbol, o.TsNs, o.Value
		nd := min(int(o.NValues), len(en.names))
		en.nvals[at] = uint8(nd)
		copy(en.vals[at*len(en.names):], o.Values[:nd])
	}
	if locked {
		r.mu.Unlock()
	}
}

func (st *stream) patternRegistry() (*patternRegistry, error) {
	if st.patterns == nil {
		return nil, ErrNoPatternHost
	}
	return st.patterns, nil
}

// RegisterPattern adds a built-in or sequence pattern to every shard and
// returns its id. Its state starts empty: it matches as a pattern configured
// alone would from the events that follow (see ops.Pipeline.AddPattern), and
// its matches reach the OutputHandler with Op = the id. Errors wrap
// ErrInvalidPattern (and ops.ErrPatternSpec), ErrDuplicatePattern (an active
// pattern has spec.ID) or ErrNoPatternHost.
//
// The pattern (and a removal) is recorded in checkpoints (see defs.go):
// recovery registers it again before loading its state.
func (e *Engine) RegisterPattern(spec ops.PatternSpec) (PatternID, error) {
	return e.RegisterStreamPattern(DefaultStream, spec)
}

// RegisterStreamPattern is RegisterPattern on one stream's operators; each
// stream numbers its patterns on its own.
func (e *Engine) RegisterStreamPattern(stream StreamID, spec ops.PatternSpec) (PatternID, error) {
	st, err := e.lookup(stream)
	if err != nil {
		return 0, err
	}
	var sid StreamID
	if st.idx != 0 {
		sid = st.id
	}
	commit := e.lockDefs()
	before := 0
	if st.patterns != nil {
		before = st.patternCount()
	}
	id, err := e.applyPattern(st, spec)
	if st.patterns != nil && st.patternCount() > before {
		// The id is taken (also when some shards refused it and it was
		// retired at once): recovery must take it the same way.
		e.addDef(definition{Kind: "pattern", Stream: sid, Pattern: &spec})
		if err != nil {
			e.addDef(definition{Kind: "remove_pattern", Stream: sid, ID: before})
		}
	}
	if cerr := commit(st.patterns != nil && st.patternCount() > before); err == nil {
		err = cerr
	}
	return id, err
}

func (st *stream) patternCount() int {
	st.patterns.mu.Lock()
	defer st.patterns.mu.Unlock()
	return len(st.patterns.entries)
}

func (e *Engine) applyPattern(st *stream, spec ops.PatternSpec) (PatternID, error) {
	r, err := st.patternRegistry()
	if err != nil {
		return 0, err
	}
	if err := spec.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidPattern, err)
	}
	r.api.Lock()
	defer r.api.Unlock()
	r.mu.Lock()
	for id, en := range r.entries {
		if en.active && en.spec.ID == spec.ID {
			r.mu.Unlock()
			return 0, fmt.Errorf("%w: %q is pattern %d", ErrDuplicatePattern, spec.ID, id)
		}
	}
	op := len(r.entries)
	// The entry exists before any shard matches: the first matches are
	// recorded too.
	r.entries = append(r.entries, newPatEntry(spec, r.size, true))
	r.mu.Unlock()

	gotOps := make([]uint16, len(e.shards))
	added := make([]bool, len(e.shards))
	err = e.onStream(st, func(i int, p Processor) error {
		h, ok := p.(PatternHost)
		if !ok {
			return ErrNoPatternHost
		}
		id, err := h.AddPattern(spec)
		gotOps[i], added[i] = id, err == nil
		return err
	})
	if err == nil {
		for _, id := range gotOps {
			if int(id) != op {
				err = fmt.Errorf("engine: shards gave the new pattern the ids %v, the registry %d", gotOps, op)
			}
		}
	}
	if err == nil {
		return PatternID(op), nil
	}
	switch {
	case errors.Is(err, ops.ErrPatternSpec):
		err = fmt.Errorf("%w: %w", ErrInvalidPattern, err)
	case errors.Is(err, ops.ErrPatternIDTaken):
		err = fmt.Errorf("%w: %w", ErrDuplicatePattern, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !anyTrue(added) {
		r.entries = r.entries[:op] // no shard took the id
		return 0, err
	}
	// Some shards took the id: it stays retired so that ids stay aligned.
	r.entries[op].active = false
	_ = e.onStream(st, func(i int, p Processor) error {
		if added[i] {
			return p.(PatternHost).RemovePattern(uint16(op))
		}
		return nil
	})
	return 0, err
}

func anyTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}

// RemovePattern stops pattern id on every shard. Its id is not reused; its
// matches stay readable through DetectPatternMatches. Matches produced
// before the call may still be delivered after it. Errors wrap
// ErrUnknownPattern (no active pattern id) or ErrNoPatternHost. The removal
// is recorded in checkpoints.
func (e *Engine) RemovePattern(id PatternID) error {
	return e.RemoveStreamPattern(DefaultStream, id)
}

// RemoveStreamPattern is RemovePattern on one stream.
func (e *Engine) RemoveStreamPattern(stream StreamID, id PatternID) error {
	st, err := e.lookup(stream)
	if err != nil {
		return err
	}
	var sid StreamID
	if st.idx != 0 {
		sid = st.id
	}
	commit := e.lockDefs()
	err = e.applyRemovePattern(st, id)
	if err == nil {
		e.addDef(definition{Kind: "remove_pattern", Stream: sid, ID: int(id)})
	}
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	return err
}

func (e *Engine) applyRemovePattern(st *stream, id PatternID) error {
	r, err := st.patternRegistry()
	if err != nil {
		return err
	}
	r.api.Lock()
	defer r.api.Unlock()
	r.mu.Lock()
	ok := int(id) < len(r.entries) && r.entries[id].active
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no active pattern %d", ErrUnknownPattern, id)
	}
	err = e.onStream(st, func(_ int, p Processor) error {
		h, ok := p.(PatternHost)
		if !ok {
			return ErrNoPatternHost
		}
		return h.RemovePattern(uint16(id))
	})
	if errors.Is(err, ops.ErrNoPattern) {
		err = fmt.Errorf("%w: %w", ErrUnknownPattern, err)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.entries[id].active = false
	r.mu.Unlock()
	return nil
}

// ListPatterns returns every pattern the engine had, configured and
// registered, removed ones included, by id.
func (e *Engine) ListPatterns() []PatternInfo {
	l, _ := e.ListStreamPatterns(DefaultStream)
	return l
}

// ListStreamPatterns is ListPatterns of one stream.
func (e *Engine) ListStreamPatterns(stream StreamID) ([]PatternInfo, error) {
	st, err := e.lookup(stream)
	if err != nil {
		return nil, err
	}
	r := st.patterns
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PatternInfo, len(r.entries))
	for id, en := range r.entries {
		out[id] = PatternInfo{ID: PatternID(id), Spec: en.spec, Active: en.active, Matches: en.n, Dropped: en.n - min(en.n, uint64(r.size))}
	}
	return out, nil
}

// DetectPatternMatches returns the most recent matches of pattern id, oldest
// first: at most Config.PatternMatchBuffer of them (PatternInfo.Dropped
// counts the older ones). The result is the caller's. Errors wrap
// ErrUnknownPattern or ErrNoPatternHost.
func (e *Engine) DetectPatternMatches(id PatternID) ([]PatternMatch, error) {
	return e.DetectStreamPatternMatches(DefaultStream, id)
}

// DetectStreamPatternMatches is DetectPatternMatches on one stream.
func (e *Engine) DetectStreamPatternMatches(stream StreamID, id PatternID) ([]PatternMatch, error) {
	st, err := e.lookup(stream)
	if err != nil {
		return nil, err
	}
	r, err := st.patternRegistry()
	if err != nil {
		return nil, err
	}
	type raw struct {
		sym  codec.Symbol
		ts   int64
		conf float64
		vals []float64
	}
	r.mu.Lock()
	if int(id) >= len(r.entries) {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %d", ErrUnknownPattern, id)
	}
	en := r.entries[id]
	kept := min(en.n, uint64(r.size))
	raws := make([]raw, 0, kept)
	nn := len(en.names)
	for k := en.n - kept; k < en.n; k++ {
		at := int(k % uint64(r.size))
		v := make([]float64, en.nvals[at])
		copy(v, en.vals[at*nn:])
		raws = append(raws, raw{en.syms[at], en.ts[at], en.conf[at], v})
	}
	names := en.names
	r.mu.Unlock()
	out := make([]PatternMatch, len(raws))
	for i, m := range raws {
		d := make([]PatternDetail, len(m.vals))
		for j, v := range m.vals {
			d[j] = PatternDetail{Name: names[j], Value: v}
		}
		out[i] = PatternMatch{Pattern: id, Symbol: e.symbols.Name(m.sym), TsNs: m.ts, Confidence: m.conf, Details: d}
	}
	return out, nil
}
