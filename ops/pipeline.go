package ops

import (
	"errors"
	"fmt"
	"math"

	"qstream/codec"
	"qstream/ops/news"
)

// PipelineConfig configures the operator chain of one shard.
type PipelineConfig struct {
	// Indicators computed on every trade (nil: none).
	Indicators       []IndicatorSpec
	IndicatorOptions IndicatorOptions
	// EmitIndicators makes every trade produce an OutIndicators output.
	EmitIndicators bool
	// Windows are event-time window operators over trades; a window's Op in
	// its outputs is its index here.
	Windows       []WindowSpec
	WindowOptions WindowOptions
	// Patterns are the built-in complex-event patterns over trades (see
	// pattern.go); a match's Op is the pattern's index here.
	Patterns       []PatternSpec
	PatternOptions PatternOptions
	// Movements are price-movement detectors over trades (movement.go); an
	// event's Op is the spec's index here.
	Movements       []MovementSpec
	MovementOptions MovementOptions
	// SymbolNames names symbol ids for patterns restricted to symbols (the
	// engine's symbol table); needed only when some pattern has Symbols.
	SymbolNames SymbolNamer
	// MaxSymbolID is the largest symbol id the pipeline may see (the symbol
	// table's capacity): the symbol → slot index is preallocated to it.
	MaxSymbolID int
	// MaxSlots bounds how many distinct symbols this pipeline holds state
	// for. A new symbol beyond it is rejected with ReasonUnknownSymbol.
	MaxSlots int
	// News analyses news articles (text.go): each article becomes a news
	// line (OutNews) and feeds the news_impact patterns, which need it.
	// Nil: articles are passed over.
	News *news.Analyzer
	// Events makes signal, system and custom events event lines (OutEvent).
	Events bool
	// Filter and Transform are the stream's filter and transform
	// (filter.go), run before every operator; empty: none.
	Filter, Transform string
}

// Pipeline is one shard's operator chain: quote state, indicators, windows
// and patterns for the symbols the shard owns. It is a pure event-time state
// machine and is not safe for concurrent use: the shard that owns it is the
// only caller.
type Pipeline struct {
	cfg    PipelineConfig
	slotOf []int32 // symbol id → slot, -1 when unseen
	nslots int
	syms   []codec.Symbol // slot → symbol
	ind    *IndicatorSet
	nInd   int
	quotes []quoteState // per slot
	vals   [MaxValues]float64
	// The source of the events being processed (SetSourceKey).
	srcKey, scopeKey uint64

	windows []*WindowOperator
	pat     *patternSet // nil without built-in patterns
	patOps  []uint16    // built-in pattern index → Op, when sequences come before some (nil: the same)
	seq     *seqSet     // nil without sequence patterns (sequence.go)
	nimp    *newsImpactSet
	text    textState
	flt     *Filter    // the stream's filter (filter.go); nil: every event
	xf      *Transform // the stream's transform; nil: none
	xfEv    codec.Event
	nfilt   uint64     // events the filter stopped
	subsBuf []stateful // subStates' result, reused

	mov *movementSet // nil without movement specs (movement.go)
	rt  *patRuntime  // patterns added or removed at run time (pattern_api.go); nil before the first
}

// quoteState is the latest top of book of a symbol; quotes update it, trades
// do not.
type quoteState struct {
	bid, ask float64
	tsNs     int64
}

// ErrPipelineConfig is wrapped by configuration errors of NewPipeline.
var ErrPipelineConfig = errors.New("ops: invalid pipeline configuration")

// NewPipeline preallocates the state of every operator for MaxSlots symbols.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	if cfg.MaxSymbolID <= 0 || cfg.MaxSymbolID > 1<<24 {
		return nil, fmt.Errorf("%w: max symbol id %d outside 1..%d", ErrPipelineConfig, cfg.MaxSymbolID, 1<<24)
	}
	if cfg.MaxSlots <= 0 {
		cfg.MaxSlots = cfg.MaxSymbolID
	}
	cfg.MaxSlots = min(cfg.MaxSlots, cfg.MaxSymbolID)
	p := &Pipeline{
		cfg:    cfg,
		slotOf: make([]int32, cfg.MaxSymbolID+1),
		syms:   make([]codec.Symbol, cfg.MaxSlots),
		quotes: make([]quoteState, cfg.MaxSlots),
	}
	for i := range p.slotOf {
		p.slotOf[i] = -1
	}
	if len(cfg.Indicators) > 0 {
		ind, err := NewIndicatorSet(cfg.Indicators, cfg.IndicatorOptions, cfg.MaxSlots)
		if err != nil {
			return nil, err
		}
		p.ind, p.nInd = ind, len(cfg.Indicators)
	}
	if len(cfg.Windows) > math.MaxUint16 {
		return nil, fmt.Errorf("%w: %d windows, at most %d", ErrPipelineConfig, len(cfg.Windows), math.MaxUint16)
	}
	for i, spec := range cfg.Windows {
		w, err := NewWindowOperator(uint16(i), spec, cfg.WindowOptions, cfg.MaxSlots)
		if err != nil {
			return nil, fmt.Errorf("ops: window %s: %w", spec, err)
		}
		p.windows = append(p.windows, w)
	}
	if len(cfg.Patterns) > 0 {
		builtin, patOps, nseq, err := seqSplit(cfg.Patterns)
		if err != nil {
			return nil, err
		}
		if len(builtin) > 0 {
			ps, err := newPatternSet(builtin, cfg.PatternOptions, cfg.IndicatorOptions, cfg.SymbolNames, cfg.MaxSlots)
			if err != nil {
				return nil, err
			}
			p.pat, p.patOps = ps, patOps
		}
		if nseq > 0 {
			if p.seq, err = newSeqSet(cfg.Patterns, cfg.IndicatorOptions, cfg.SymbolNames, cfg.MaxSlots); err != nil {
				return nil, err
			}
		}
		var nspecs []PatternSpec
		var nops []uint16
		for i, s := range cfg.Patterns {
			if s.Type == PatNewsImpact {
				nspecs, nops = append(nspecs, s), append(nops, uint16(i))
			}
		}
		if len(nspecs) > 0 {
			if cfg.News == nil {
				return nil, fmt.Errorf("%w: news_impact patterns need the news analyser (PipelineConfig.News)", ErrPipelineConfig)
			}
			if p.nimp, err = newNewsImpactSet(nspecs, nops, cfg.SymbolNames, cfg.MaxSlots); err != nil {
				return nil, err
			}
		}
	}
	if err := p.initMovements(); err != nil {
		return nil, err
	}
	if err := p.SetFilter(cfg.Filter); err != nil {
		return nil, err
	}
	if err := p.SetTransform(cfg.Transform); err != nil {
		return nil, err
	}
	return p, nil
}

// Windows returns the pipeline's window operators, indexed by Op.
func (p *Pipeline) Windows() []*WindowOperator { return p.windows }

// Slot returns the state slot of sym and whether the pipeline holds it.
func (p *Pipeline) Slot(sym codec.Symbol) (int, bool) {
	if int(sym) >= len(p.slotOf) || p.slotOf[sym] < 0 {
		return 0, false
	}
	return int(p.slotOf[sym]), true
}

// slot returns the state slot of sym, assigning the next free one on first
// sight.
func (p *Pipeline) slot(sym codec.Symbol) (int, bool) {
	if int(sym) >= len(p.slotOf) {
		return 0, false
	}
	if s := p.slotOf[sym]; s >= 0 {
		return int(s), true
	}
	if p.nslots == p.cfg.MaxSlots {
		return 0, false
	}
	s := p.nslots
	p.nslots++
	p.slotOf[sym] = int32(s)
	p.syms[s] = sym
	if p.nimp != nil {
		p.nimp.newSlot(s, sym)
	}
	return s, true
}

// Symbols returns how many symbols hold state in this pipeline.
func (p *Pipeline) Symbols() int { return p.nslots }

// OnEvent runs one event through the operators at the given watermark and
// appends their outputs to dst. A returned reason other than ReasonNone asks
// the caller to dead-letter the event: the first refusal of a window
// operator (late beyond the allowed lateness, a state limit). The event may
// still have updated state that does not depend on event time (indicators,
// which follow arrival order) and windows that accepted it.
func (p *Pipeline) OnEvent(ev *codec.Event, watermarkNs int64, dst []Output) ([]Output, codec.Reason) {
	if p.flt != nil || p.xf != nil {
		var reason codec.Reason
		if ev, reason = p.prefilter(ev); ev == nil {
			return dst, reason
		}
	}
	if p.rt != nil {
		return p.onEventRuntime(ev, watermarkNs, dst)
	}
	return p.onEvent(ev, watermarkNs, dst)
}

// OnEvents is OnEvent for a run of events (the engine's BatchProcessor: one
// call per run instead of an interface call per event): it runs evs
// through the operators in order at watermarkNs and appends their outputs
// to dst. It returns after the first event whose OnEvent returned a reason
// other than ReasonNone, after an event that leaves fewer than
// OutputHeadroom outputs of free capacity in dst (the caller drains dst
// and calls again with the rest), or after the last event; n is how many
// events it took, reason that of evs[n-1].
func (p *Pipeline) OnEvents(evs []codec.Event, watermarkNs int64, dst []Output) (out []Output, n int, reason codec.Reason) {
	for i := range evs {
		dst, reason = p.OnEvent(&evs[i], watermarkNs, dst)
		if reason != codec.ReasonNone || len(dst) >= cap(dst)-OutputHeadroom {
			return dst, i + 1, reason
		}
	}
	return dst, len(evs), codec.ReasonNone
}

// onEvent is OnEvent after the stream's filter and transform.
func (p *Pipeline) onEvent(ev *codec.Event, watermarkNs int64, dst []Output) ([]Output, codec.Reason) {
	switch ev.Kind {
	case codec.KindTrade, codec.KindQuote:
	case codec.KindBar:
		if p.seq == nil {
			return dst, codec.ReasonNone
		}
	default:
		return dst, codec.ReasonNone // news, status, system events: no per-symbol operators yet
	}
	slot, ok := p.slot(ev.Symbol)
	if !ok {
		return dst, codec.ReasonUnknownSymbol
	}
	if ev.Kind == codec.KindQuote {
		q := &p.quotes[slot]
		if ev.HasBid() {
			q.bid = ev.Bid
		}
		if ev.HasAsk() {
			q.ask = ev.Ask
		}
		q.tsNs = ev.TsNs
		if p.seq != nil {
			dst = p.onSequences(slot, ev, dst)
		}
		return dst, codec.ReasonNone
	}
	if ev.Kind == codec.KindBar {
		return p.onSequences(slot, ev, dst), codec.ReasonNone
	}
	if p.ind != nil {
		vals := p.vals[:p.nInd]
		p.ind.Update(slot, ev.TsNs, ev.Price, ev.Volume, vals)
		if p.cfg.EmitIndicators {
			dst = append(dst, Output{
				Kind:     OutIndicators,
				NValues:  uint8(p.nInd),
				Symbol:   ev.Symbol,
				Seq:      ev.Seq,
				Key:      p.inputKey(OutIndicators, 0, ev),
				TsNs:     ev.TsNs,
				Price:    ev.Price,
				Volume:   ev.Volume,
				IngestNs: ev.IngestNs,
			})
			copy(dst[len(dst)-1].Values[:], vals)
		}
	}
	reason := codec.ReasonNone
	for _, w := range p.windows {
		var r codec.Reason
		dst, r = w.OnEvent(slot, ev.Symbol, ev, watermarkNs, dst)
		if r != codec.ReasonNone && reason == codec.ReasonNone {
			reason = r
		}
	}
	if p.seq != nil {
		dst = p.onSequences(slot, ev, dst)
	}
	if p.mov != nil {
		dst = p.onMovements(slot, ev, dst)
	}
	if p.pat != nil {
		first := len(dst)
		dst = p.onPatterns(slot, ev, dst)
		if p.patOps != nil {
			p.remapPatternOps(ev, dst[first:])
		}
	}
	if p.nimp != nil {
		dst = p.nimp.onTrade(p, slot, ev, dst)
	}
	return dst, reason
}

// OnWatermark advances event time for every operator; windows whose end the
// watermark reached fire, in spec order, each in its own deterministic order;
// then the absences of sequence patterns whose deadline it passed.
func (p *Pipeline) OnWatermark(watermarkNs int64, seq uint64, dst []Output) []Output {
	if p.rt != nil {
		return p.onWatermarkRuntime(watermarkNs, seq, dst)
	}
	for _, w := range p.windows {
		dst = w.OnWatermark(watermarkNs, seq, dst)
	}
	if p.seq != nil {
		dst = p.seqOnWatermark(watermarkNs, seq, dst)
	}
	return dst
}

// OnProcessingTime runs the processing-time triggers (early firings) at
// nowNs, which the caller reads from its clock; operators never do.
func (p *Pipeline) OnProcessingTime(nowNs int64, seq uint64, dst []Output) []Output {
	for _, w := range p.windows {
		dst = w.OnProcessingTime(nowNs, seq, dst)
	}
	return dst
}

// SetSourceKey sets the identity of the source whose events follow: src
// names the source's offsets (Event.Seq), scope the namespace of its
// message ids (Event.IDHash); the engine passes codec.HashID of the
// publisher's name and of its dedup scope before each batch (see
// engine.SourceKeyedProcessor). They go into the keys of per-input outputs.
// Zero values are valid keys for a pipeline that only ever sees one source.
func (p *Pipeline) SetSourceKey(src, scope uint64) { p.srcKey, p.scopeKey = src, scope }

// inputKey is the key of the output of operator (kind, op) for input ev:
// by message id within the source's dedup scope when ev has one, else by
// the source's offset. A message resent through another connection or
// event loop of the same feed thus keeps its key whichever copy is
// processed (copies in two publishers' rings are processed in either
// order, live and in a recovery replay), and an input without an id is
// keyed by its place in its source. The complemented scope keeps the two
// namespaces apart.
func (p *Pipeline) inputKey(kind OutKind, op uint16, ev *codec.Event) uint64 {
	if ev.IDHash != 0 {
		return OutputKey(kind, op, ev.Symbol, ev.IDHash, ^p.scopeKey)
	}
	return OutputKey(kind, op, ev.Symbol, ev.Seq, p.srcKey)
}

// OutputKey is the deterministic idempotency key of an output: a stable
// 64-bit mix of what identifies it (operator kind and index, symbol, and two
// words a and b):
//
//	h = kind<<56 ^ op<<40 ^ sym
//	h = Mix64(h ^ Mix64(a + 0x9E3779B97F4A7C15))
//	key = Mix64(h ^ Mix64(b + 0xC2B2AE3D27D4EB4F))
//
// with codec.Mix64. Per-input outputs (indicator lines) pass a = the
// message id hash and b = ^(source scope key) when the input has an id, else
// a = the source offset (Event.Seq) and b = the source key (see
// SetSourceKey): unique per input message and operator across every source
// of an engine, and the same in a replay of the same input. Sinks rely on it
// (upserts absorb replayed duplicates): it must not change.
func OutputKey(kind OutKind, op uint16, sym codec.Symbol, a, b uint64) uint64 {
	h := uint64(kind)<<56 ^ uint64(op)<<40 ^ uint64(sym)
	h = codec.Mix64(h ^ codec.Mix64(a+0x9E3779B97F4A7C15))
	return codec.Mix64(h ^ codec.Mix64(b+0xC2B2AE3D27D4EB4F))
}

// AddWindow adds a window operator over trades with the pipeline's
// WindowOptions, for windows created at run time (the engine's
// CreateTumblingWindow and friends). It returns the operator's Op. It
// allocates the operator's state; call it from the goroutine that owns the
// pipeline. A checkpoint taken afterwards includes the window, so recovery
// must add the same windows, in the same order, before loading it.
func (p *Pipeline) AddWindow(spec WindowSpec) (uint16, error) {
	if len(p.windows) >= math.MaxUint16 {
		return 0, fmt.Errorf("%w: at most %d windows", ErrPipelineConfig, math.MaxUint16)
	}
	op := uint16(len(p.windows))
	w, err := NewWindowOperator(op, spec, p.cfg.WindowOptions, p.cfg.MaxSlots)
	if err != nil {
		return 0, fmt.Errorf("ops: window %s: %w", spec, err)
	}
	p.windows = append(p.windows, w)
	p.cfg.Windows = append(p.cfg.Windows, spec)
	return op, nil
}

// SymbolWindowStats is the running state of one open window of one symbol.
type SymbolWindowStats struct {
	Symbol codec.Symbol
	WindowStats
}

// AppendWindowStats appends the running statistics of every open window of
// window operator op, for every symbol the pipeline holds, in slot order
// (the specification's AggregateWindow, on demand). It is not a hot-path
// call: it may allocate.
func (p *Pipeline) AppendWindowStats(op uint16, dst []SymbolWindowStats) ([]SymbolWindowStats, error) {
	if int(op) >= len(p.windows) {
		return dst, fmt.Errorf("ops: no window %d (the pipeline has %d)", op, len(p.windows))
	}
	w := p.windows[op]
	var st []WindowStats
	for slot := 0; slot < p.nslots; slot++ {
		st = w.PartialStats(slot, st[:0])
		for _, s := range st {
			dst = append(dst, SymbolWindowStats{Symbol: p.syms[slot], WindowStats: s})
		}
	}
	return dst, nil
}
