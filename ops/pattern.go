package ops

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"qstream/codec"
)

// This file holds the detector of the built-in patterns (price_breakout and
// its mirror, volume_spike, technical_signal); the specs are in
// pattern_spec.go, the checkpoint encoding in pattern_state.go.
//
// # Semantics
//
// Patterns see each symbol's trades in event-time order. A trade whose event
// time is before the largest event time of the symbol's earlier trades
// (arrival order) is late for patterns: it neither matches nor enters any
// trailing set or pattern indicator, and is counted (PatternStats.Late).
// Equal event times are in order. On that in-order subsequence, with t, p
// and v the trade's event time, price and volume:
//
//   - price_breakout{threshold, timeframe}: the trailing set is the symbol's
//     earlier trades with event time in (t − timeframe, t]; when it is not
//     empty and its highest price H satisfies p > H·(1+threshold) the
//     pattern matches: details current_price p, historical_high H,
//     breakout_percentage (p−H)/H·100. direction down: lowest price L,
//     p < L·(1−threshold), details current_price, historical_low,
//     breakdown_percentage (L−p)/L·100.
//   - volume_spike{multiplier, baseline}: the same trailing set over
//     baseline, mean volume M (a compensated running sum over the set's
//     count); matches when v > multiplier·M: details volume, baseline_mean,
//     ratio v/M (null when M is 0).
//   - technical_signal: the pattern's indicators (IndicatorSet, with the
//     pipeline's IndicatorOptions) are updated with every in-order trade;
//     it matches when a value crosses between the previous trade and this
//     one: sma_cross/ema_cross when fast goes from <= slow to > slow (up) or
//     from >= slow to < slow (down); rsi_cross when RSI goes from <=
//     overbought to > overbought (up) or from >= oversold to < oversold
//     (down); vwap_cross when the price goes from <= the session VWAP to >
//     it (up) or from >= to < (down). Warm-up values (NaN) never cross.
//
// # Confidence
//
// Match lines carry a confidence in [0, 1]:
//
//   - price_breakout: with r the move past the extreme as a fraction ((p−H)/H,
//     or (L−p)/L), min(1, r/(2·threshold)): 0.5 just past the threshold,
//     1 at twice the threshold or beyond; 1 when the threshold is 0.
//   - volume_spike: min(1, ratio/(2·multiplier)), the same shape.
//   - technical_signal: 0.5 + 0.5·a/(a+b) with a how far the value is past
//     the line now and b how far it was on the other side before (for
//     crosses of two lines, the gaps between them): 0.5 for a hesitant cross
//     that just touched the line, towards 1 for a decisive one.
//
// # State and bounds
//
// Trailing sets are per symbol and per distinct timeframe (patterns with the
// same timeframe, of either type, share one): a stretch of the symbol's ring
// of recent trades (one ring for all its timeframes, as long as the longest
// set) with a compensated running volume sum. The highest and lowest prices
// come from two monotonic deques per symbol (highest, lowest) over the
// longest set, which answer every shorter set too: each set keeps its index
// of the first deque element inside it. O(1) amortized per trade, never a
// rescan. Each set holds at most MaxTradesPerSymbol trades (PatternOptions):
// beyond it the oldest trade leaves the set early and is counted
// (PatternStats.Capped), so the set is then the last MaxTradesPerSymbol
// trades within the timeframe. A symbol's memory is thus at most about
// MaxTradesPerSymbol·48 bytes (16-byte ring entries, 16-byte deque entries,
// rounded up to powers of two: 768 KB for the default 10,000; in practice the
// deques hold a few dozen prices) plus 56 bytes per timeframe, and only
// symbols that trade hold any. The slot of a symbol with at most three
// timeframes is 320 bytes with its trailing sets: a trade touches five
// cache lines of it (with many symbols their state is not in the cache
// when they trade again, so lines, not instructions, set the cost).
// Technical patterns share one IndicatorSet per pipeline (each distinct
// indicator once) and per symbol the previous values (an arena of 8 bytes
// per indicator and symbol).
//
// # Index
//
// Per symbol (at its first trade) the patterns that apply are gathered into
// a plan, shared by every symbol with the same applicable set: per trailing
// set, the breakouts up sorted by threshold, the breakdowns sorted by
// threshold and the spikes sorted by multiplier. The conditions are monotone
// in those parameters, so each list is scanned only until its first
// pattern that does not match: a trade costs one step per trailing set plus
// one per match, however many patterns there are; technical patterns with
// the same signal and parameters share one test.

// DefaultMaxPatternTradesPerSymbol is PatternOptions.MaxTradesPerSymbol when
// it is 0.
const DefaultMaxPatternTradesPerSymbol = 10000

// PatternOptions configure the pattern detector of a pipeline.
type PatternOptions struct {
	// MaxTradesPerSymbol bounds each trailing set of each symbol (see
	// PatternStats.Capped); 0 means DefaultMaxPatternTradesPerSymbol.
	MaxTradesPerSymbol int
}

// SymbolNamer names symbol ids; *codec.SymbolTable implements it. Patterns
// restricted to symbols need it to match names at a symbol's first trade.
type SymbolNamer interface {
	Name(id codec.Symbol) string
}

// PatternStats counts what the detector did beyond matching.
type PatternStats struct {
	Late   uint64 // trades skipped by patterns because their event time went backwards
	Capped uint64 // trades that left a trailing set early because it held MaxTradesPerSymbol
}

// patEnt is one trade of a slot's ring. Its price is in the deques while it
// can still be a set's highest or lowest, and needed nowhere else.
type patEnt struct {
	ts     int64
	volume float64
}

// patTrail is one symbol's trailing set for one timeframe: the entries
// [head, patSlot.tail) of the symbol's ring, which every timeframe shares
// (positions are absolute counters; position i is at ents[i&mask]). The
// highest and lowest prices come from the slot's two monotonic deques, also
// shared: a deque over the longest set holds, for every suffix of the ring,
// the suffix's extreme as its first element at or after the suffix's start,
// so each set keeps only its index into each deque (qx, qn: the first
// element with position >= head; the deque's tail when the set is empty).
//
// The entry at head is also held in the set itself (headTs, headVol): the
// set tests and drops its oldest entry without reading the ring, whose
// lines that far back have usually left the cache.
type patTrail struct {
	head       uint64
	headTs     int64   // event time of the entry at head, when the set is not empty
	headVol    float64 // its volume
	qx, qn     uint64
	vsum, vcmp float64
}

// patQ is a deque element: an entry's position and price.
type patQ struct {
	pos   uint64
	price float64
}

// popFront removes the set's oldest entry from its sum; the caller moves
// the deque indices (seek).
func (tr *patTrail) popFront(ents []patEnt, m, tail uint64) {
	tr.vsum, tr.vcmp = indTwoSum(tr.vsum, tr.vcmp, -tr.headVol)
	tr.head++
	if tr.head == tail {
		tr.vsum, tr.vcmp = 0, 0 // exact again when empty
	} else {
		e := &ents[tr.head&m]
		tr.headTs, tr.headVol = e.ts, e.volume
	}
}

// seek moves the set's deque indices past the elements before head.
func (tr *patTrail) seek(st *patSlot) {
	xm, nm := uint64(len(st.maxq)-1), uint64(len(st.minq)-1)
	for tr.qx != st.mxt && st.maxq[tr.qx&xm].pos < tr.head {
		tr.qx++
	}
	for tr.qn != st.mnt && st.minq[tr.qn&nm].pos < tr.head {
		tr.qn++
	}
}

// evict drops the entries with event time <= cut. The caller tests the
// first (headTs <= cut) for the common case of a set with nothing to drop.
func (tr *patTrail) evict(st *patSlot, m uint64, cut int64) {
	// popFront's steps on locals: the loop carries no stores and reloads.
	ents, tail := st.ents, st.tail
	head, headTs, headVol, vsum, vcmp := tr.head, tr.headTs, tr.headVol, tr.vsum, tr.vcmp
	for head != tail && headTs <= cut {
		vsum, vcmp = indTwoSum(vsum, vcmp, -headVol)
		head++
		if head == tail {
			vsum, vcmp = 0, 0 // exact again when empty
		} else {
			e := &ents[head&m]
			headTs, headVol = e.ts, e.volume
		}
	}
	tr.head, tr.headTs, tr.headVol, tr.vsum, tr.vcmp = head, headTs, headVol, vsum, vcmp
	tr.seek(st)
}

// push appends a trade to the slot's ring, deques and every set, first
// evicting the oldest entry of each set that holds capN; it returns how
// many did. Precondition: trails are ordered by timeframe, longest first,
// so that trails[0] holds the oldest live entry (and its deque indices are
// the deques' fronts).
func (st *patSlot) push(t int64, price, vol float64, capN int) (capped uint64) {
	if len(st.trails) == 0 {
		return 0
	}
	m := uint64(len(st.ents) - 1)
	// Every set is a suffix of the longest one, trails[0]: when it is under
	// the cap, so are they all.
	if st.tail-st.trails[0].head >= uint64(capN) {
		for i := range st.trails {
			if tr := &st.trails[i]; st.tail-tr.head >= uint64(capN) {
				tr.popFront(st.ents, m, st.tail)
				tr.seek(st)
				capped++
			}
		}
	}
	if st.tail-st.trails[0].head == uint64(len(st.ents)) {
		st.grow()
		m = uint64(len(st.ents) - 1)
	}
	pos := st.tail
	st.ents[pos&m] = patEnt{t, vol}
	st.tail++
	// The back of both deques is the newest entry (st.back): they are read
	// only when it leaves.
	mxt, front := st.mxt, st.trails[0].qx
	xm := uint64(len(st.maxq) - 1)
	if mxt != front && st.back <= price {
		mxt--
		for mxt != front && st.maxq[(mxt-1)&xm].price <= price {
			mxt--
		}
	}
	if mxt-front == uint64(len(st.maxq)) {
		st.maxq = patGrowQ(st.maxq, front, mxt)
		xm = uint64(len(st.maxq) - 1)
	}
	st.maxq[mxt&xm] = patQ{pos, price}
	st.mxt = mxt + 1
	mnt, front := st.mnt, st.trails[0].qn
	nm := uint64(len(st.minq) - 1)
	if mnt != front && st.back >= price {
		mnt--
		for mnt != front && st.minq[(mnt-1)&nm].price >= price {
			mnt--
		}
	}
	if mnt-front == uint64(len(st.minq)) {
		st.minq = patGrowQ(st.minq, front, mnt)
		nm = uint64(len(st.minq) - 1)
	}
	st.minq[mnt&nm] = patQ{pos, price}
	st.mnt = mnt + 1
	st.back = price
	for i := range st.trails {
		tr := &st.trails[i]
		if tr.head == pos { // the set was empty
			tr.headTs, tr.headVol = t, vol
		}
		tr.qx, tr.qn = min(tr.qx, mxt), min(tr.qn, mnt)
		tr.vsum, tr.vcmp = indTwoSum(tr.vsum, tr.vcmp, vol)
	}
	return capped
}

// grow doubles the ring (a power of two, at least 8), keeping positions.
func (st *patSlot) grow() {
	n := max(8, 2*len(st.ents))
	ents := make([]patEnt, n)
	nm := uint64(n - 1)
	if len(st.ents) > 0 {
		om := uint64(len(st.ents) - 1)
		for i := st.trails[0].head; i != st.tail; i++ {
			ents[i&nm] = st.ents[i&om]
		}
	}
	st.ents = ents
}

// patGrowQ returns a deque twice as long (at least 8) with the elements
// [front, tail) of q at the same indices.
func patGrowQ(q []patQ, front, tail uint64) []patQ {
	n := max(8, 2*len(q))
	nq := make([]patQ, n)
	nm, om := uint64(n-1), uint64(len(q)-1)
	for i := front; i != tail; i++ {
		nq[i&nm] = q[i&om]
	}
	return nq
}

// patRef is a pattern in a plan list with its precomputed factor: 1+threshold
// (up), 1−threshold (down) or the multiplier (spike).
type patRef struct {
	f  float64
	th float64 // the threshold or multiplier, for the confidence
	op uint16
}

// trailPlan is what one trailing set of a slot is checked for.
type trailPlan struct {
	k               int   // trail index (timeframe) in patternSet.tfs
	tf              int64 // the timeframe, tfs[k]
	up, down, spike []patRef
}

// techPlan is one distinct technical condition and the patterns it stands for.
type techPlan struct {
	c   int
	ops []uint16
}

// patPlan is the index of the patterns that apply to a set of symbols.
type patPlan struct {
	trails []trailPlan // longest timeframe first
	// check is the order in which the trailing sets are checked: by their
	// first pattern, so that a trade's matches usually come out in pattern
	// order already (they are sorted otherwise).
	check []int
	tech  []techPlan
}

// techCond is a distinct technical condition over the pattern indicator
// values: indices a, b into them (b unused for RSI and VWAP).
type techCond struct {
	sig    TechnicalSignal
	a, b   int
	hi, lo float64 // RSI levels
}

// patInlineTrails is how many trailing sets a slot holds in itself; a slot
// with more timeframes has them in a separate array.
const patInlineTrails = 3

// patSlot is one symbol's pattern state. The trailing sets follow the
// header in the slot itself (inl): with three of them a slot is 320 bytes,
// five cache lines, so that a trade of a symbol whose state went cold costs
// as few cache misses as possible (the technical patterns' previous values
// are in patternSet.prevs).
type patSlot struct {
	plan     *patPlan // nil until the symbol's first trade
	lastTs   int64
	tail     uint64
	mxt, mnt uint64     // the deques' tails (their fronts are trails[0].qx, .qn)
	back     float64    // the newest entry's price: the back of both deques when they are not empty
	ents     []patEnt   // the ring of trades the trailing sets share
	maxq     []patQ     // prices strictly decreasing from front to back; a power of two long, as short as its elements allow
	minq     []patQ     // prices strictly increasing
	trails   []patTrail // parallel to plan.trails: inl[:n] when n <= patInlineTrails (setTrails, rebase)
	seen     bool
	inl      [patInlineTrails]patTrail
}

// setTrails gives the slot n empty trailing sets, in inl when they fit.
func (st *patSlot) setTrails(n int) {
	if n <= patInlineTrails {
		st.inl = [patInlineTrails]patTrail{}
		st.trails = st.inl[:n:n]
		return
	}
	st.trails = make([]patTrail, n)
}

// rebase points trails at the slot's own inl after the slot was copied
// (its trails still pointed into the original).
func (st *patSlot) rebase() {
	if n := len(st.trails); n <= patInlineTrails {
		copy(st.inl[:n], st.trails)
		st.trails = st.inl[:n:n]
	}
}

// patternSet is a pipeline's pattern detector.
type patternSet struct {
	specs    []PatternSpec
	names    SymbolNamer
	capN     int
	tfs      []int64 // distinct timeframes
	patTrail []int   // pattern → index in tfs (-1: technical)
	conds    []techCond
	patCond  []int // pattern → index in conds (-1: not technical)
	ind      *IndicatorSet
	indSpecs []IndicatorSpec
	vals     []float64
	// prevs holds per slot (stride len(indSpecs)+1) the pattern indicator
	// values after the symbol's previous trade, then its price; NaN: none
	// yet. Only slots with technical patterns use theirs (zeros otherwise).
	prevs    []float64
	slots    []patSlot // maxSlots long, or grown on demand for a pattern added at run time (growSlots)
	maxSlots int
	plans    map[string]*patPlan
	stats    PatternStats
	// opOf maps a pattern's index in specs to its Op, for the detector of a
	// pattern added at run time (nil: the index is the Op).
	opOf []uint16
	// retired marks the patterns removed at run time: plans hold no
	// reference to them (their trailing sets and indicators stay, so that
	// the plan's shape does not change).
	retired []bool
	// loadSyms is the slot table of a snapshot being loaded (set by
	// Pipeline.LoadState), to rebuild plans before checking the state.
	loadSyms []codec.Symbol
}

func newPatternSet(specs []PatternSpec, opts PatternOptions, indOpts IndicatorOptions, names SymbolNamer, maxSlots int) (*patternSet, error) {
	return newPatternSetSlots(specs, opts, indOpts, names, maxSlots, maxSlots)
}

// newPatternSetSlots is newPatternSet with nslots slots allocated now; the
// others are allocated as symbols appear (growSlots).
func newPatternSetSlots(specs []PatternSpec, opts PatternOptions, indOpts IndicatorOptions, names SymbolNamer, maxSlots, nslots int) (*patternSet, error) {
	if len(specs) > MaxPatterns {
		return nil, fmt.Errorf("%w: %d patterns, at most %d", ErrPatternSpec, len(specs), MaxPatterns)
	}
	ps := &patternSet{
		specs:    slices.Clone(specs),
		names:    names,
		capN:     opts.MaxTradesPerSymbol,
		plans:    map[string]*patPlan{},
		slots:    make([]patSlot, nslots),
		maxSlots: maxSlots,
	}
	if ps.capN == 0 {
		ps.capN = DefaultMaxPatternTradesPerSymbol
	}
	if ps.capN < 1 || ps.capN > 1<<24 {
		return nil, fmt.Errorf("%w: max trades per symbol %d outside 1..%d", ErrPatternSpec, ps.capN, 1<<24)
	}
	ids := map[string]bool{}
	addInd := func(s IndicatorSpec) int {
		if i := slices.Index(ps.indSpecs, s); i >= 0 {
			return i
		}
		ps.indSpecs = append(ps.indSpecs, s)
		return len(ps.indSpecs) - 1
	}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("%w: pattern %q (#%d): %w", ErrPatternSpec, s.ID, i+1, err)
		}
		if ids[s.ID] {
			return nil, fmt.Errorf("%w: pattern %q (#%d): id: duplicate", ErrPatternSpec, s.ID, i+1)
		}
		ids[s.ID] = true
		if len(s.Symbols) > 0 && names == nil {
			return nil, fmt.Errorf("%w: pattern %q: symbols given but the pipeline has no SymbolNames", ErrPatternSpec, s.ID)
		}
		ps.patTrail = append(ps.patTrail, -1)
		ps.patCond = append(ps.patCond, -1)
		if s.Type != PatTechnical {
			k := slices.Index(ps.tfs, s.TimeframeNs)
			if k < 0 {
				k = len(ps.tfs)
				ps.tfs = append(ps.tfs, s.TimeframeNs)
			}
			ps.patTrail[i] = k
			continue
		}
		var c techCond
		c.sig = s.Signal
		switch s.Signal {
		case SigSMACross:
			c.a, c.b = addInd(IndicatorSpec{IndSMA, s.Fast}), addInd(IndicatorSpec{IndSMA, s.Slow})
		case SigEMACross:
			c.a, c.b = addInd(IndicatorSpec{IndEMA, s.Fast}), addInd(IndicatorSpec{IndEMA, s.Slow})
		case SigRSICross:
			c.a, c.hi, c.lo = addInd(IndicatorSpec{IndRSI, s.Period}), s.Overbought, s.Oversold
		case SigVWAPCross:
			c.a = addInd(IndicatorSpec{Kind: IndVWAP})
		}
		j := slices.Index(ps.conds, c)
		if j < 0 {
			j = len(ps.conds)
			ps.conds = append(ps.conds, c)
		}
		ps.patCond[i] = j
	}
	if len(ps.indSpecs) > MaxValues {
		return nil, fmt.Errorf("%w: technical patterns need %d distinct indicators, at most %d", ErrPatternSpec, len(ps.indSpecs), MaxValues)
	}
	if len(ps.indSpecs) > 0 {
		ind, err := NewIndicatorSet(ps.indSpecs, indOpts, maxSlots)
		if err != nil {
			return nil, fmt.Errorf("ops: technical patterns: %w", err)
		}
		ps.ind = ind
		ps.vals = make([]float64, len(ps.indSpecs))
		ps.prevs = make([]float64, nslots*ps.pstride())
	}
	return ps, nil
}

// planFor returns the (shared) plan of the patterns that apply to sym. It
// allocates on first sight of a new applicable set only.
func (ps *patternSet) planFor(sym codec.Symbol) *patPlan {
	var name string
	if ps.names != nil {
		name = ps.names.Name(sym)
	}
	var key strings.Builder
	var apply []int
	for i, s := range ps.specs {
		if len(s.Symbols) == 0 || slices.Contains(s.Symbols, name) {
			apply = append(apply, i)
			fmt.Fprintf(&key, "%d,", i)
		}
	}
	if pl, ok := ps.plans[key.String()]; ok {
		return pl
	}
	pl := &patPlan{}
	for _, i := range apply {
		s := &ps.specs[i]
		op, off := ps.op(i), ps.retired != nil && ps.retired[i]
		if k := ps.patTrail[i]; k >= 0 {
			j := slices.IndexFunc(pl.trails, func(t trailPlan) bool { return t.k == k })
			if j < 0 {
				j = len(pl.trails)
				pl.trails = append(pl.trails, trailPlan{k: k, tf: ps.tfs[k]})
			}
			tp := &pl.trails[j]
			switch {
			case off:
			case s.Type == PatVolumeSpike:
				tp.spike = append(tp.spike, patRef{f: s.Multiplier, th: s.Multiplier, op: op})
			case s.Down:
				tp.down = append(tp.down, patRef{f: 1 - s.Threshold, th: s.Threshold, op: op})
			default:
				tp.up = append(tp.up, patRef{f: 1 + s.Threshold, th: s.Threshold, op: op})
			}
			continue
		}
		c := ps.patCond[i]
		j := slices.IndexFunc(pl.tech, func(t techPlan) bool { return t.c == c })
		if j < 0 {
			j = len(pl.tech)
			pl.tech = append(pl.tech, techPlan{c: c})
		}
		if !off {
			pl.tech[j].ops = append(pl.tech[j].ops, op)
		}
	}
	// Stable sorts keep pattern order among equal parameters.
	byTh := func(a, b patRef) int {
		if a.th != b.th {
			if a.th < b.th {
				return -1
			}
			return 1
		}
		return int(a.op) - int(b.op)
	}
	// Longest timeframe first: its set holds the ring's oldest entry.
	slices.SortStableFunc(pl.trails, func(a, b trailPlan) int {
		if ta, tb := ps.tfs[a.k], ps.tfs[b.k]; ta != tb {
			if ta > tb {
				return -1
			}
			return 1
		}
		return 0
	})
	for j := range pl.trails {
		slices.SortFunc(pl.trails[j].up, byTh)
		slices.SortFunc(pl.trails[j].down, byTh)
		slices.SortFunc(pl.trails[j].spike, byTh)
	}
	firstOp := func(tp *trailPlan) int {
		op := math.MaxInt - 1 // a set without patterns (all retired) is checked last
		for _, l := range [][]patRef{tp.up, tp.down, tp.spike} {
			for _, r := range l {
				op = min(op, int(r.op))
			}
		}
		return op
	}
	for j := range pl.trails {
		pl.check = append(pl.check, j)
	}
	slices.SortStableFunc(pl.check, func(a, b int) int { return firstOp(&pl.trails[a]) - firstOp(&pl.trails[b]) })
	ps.plans[key.String()] = pl
	return pl
}

// op is the Op of the pattern at index i of specs.
func (ps *patternSet) op(i int) uint16 {
	if ps.opOf != nil {
		return ps.opOf[i]
	}
	return uint16(i)
}

// retire stops pattern i (an index into specs) from matching: it leaves
// every plan, now and for symbols planned later. The trailing sets and
// technical conditions it shared stay (their state is kept up to date, so
// the plans' shape, and a snapshot's, do not change).
func (ps *patternSet) retire(i int) {
	if ps.retired == nil {
		ps.retired = make([]bool, len(ps.specs))
	}
	ps.retired[i] = true
	op := ps.op(i)
	drop := func(l []patRef) []patRef {
		return slices.DeleteFunc(l, func(r patRef) bool { return r.op == op })
	}
	for _, pl := range ps.plans {
		for j := range pl.trails {
			tp := &pl.trails[j]
			tp.up, tp.down, tp.spike = drop(tp.up), drop(tp.down), drop(tp.spike)
		}
		for j := range pl.tech {
			pl.tech[j].ops = slices.DeleteFunc(pl.tech[j].ops, func(o uint16) bool { return o == op })
		}
	}
}

// growSlots makes slot (< maxSlots) addressable in a detector whose slots
// grow on demand (a pattern added at run time): the slot array doubles,
// and the copied slots' inline trailing sets are rebased.
func (ps *patternSet) growSlots(slot int) {
	n := min(ps.maxSlots, max(64, 2*len(ps.slots), slot+1))
	slots := make([]patSlot, n)
	copy(slots, ps.slots)
	for i := range ps.slots {
		slots[i].rebase()
	}
	ps.slots = slots
	if ps.prevs != nil {
		prevs := make([]float64, n*ps.pstride())
		copy(prevs, ps.prevs)
		ps.prevs = prevs
	}
}

// pstride is the length of a slot's range of prevs.
func (ps *patternSet) pstride() int { return len(ps.indSpecs) + 1 }

// prev returns slot's previous indicator values and, last, its previous
// price.
func (ps *patternSet) prev(slot int) []float64 {
	n := ps.pstride()
	return ps.prevs[slot*n : slot*n+n : slot*n+n]
}

// initSlot gives slot the plan of sym and empty state.
func (ps *patternSet) initSlot(slot int, sym codec.Symbol) {
	st := &ps.slots[slot]
	st.plan = ps.planFor(sym)
	st.setTrails(len(st.plan.trails))
	if len(st.plan.tech) > 0 {
		prev := ps.prev(slot)
		for i := range prev {
			prev[i] = math.NaN()
		}
	}
}

// onPatterns runs the pipeline's built-in patterns on one trade of slot and
// appends the matches.
func (p *Pipeline) onPatterns(slot int, ev *codec.Event, dst []Output) []Output {
	return p.runPatterns(p.pat, slot, ev, dst)
}

// runPatterns runs the detector ps on one trade of slot and appends the
// matches.
func (p *Pipeline) runPatterns(ps *patternSet, slot int, ev *codec.Event, dst []Output) []Output {
	if slot >= len(ps.slots) {
		ps.growSlots(slot)
	}
	st := &ps.slots[slot]
	if st.plan == nil {
		ps.initSlot(slot, ev.Symbol)
	}
	if st.seen && ev.TsNs < st.lastTs {
		ps.stats.Late++
		return dst
	}
	st.seen, st.lastTs = true, ev.TsNs
	first := len(dst)
	var kr patKeyer
	t, price, vol := ev.TsNs, ev.Price, ev.Volume
	pl := st.plan
	m := uint64(len(st.ents) - 1)
	for _, i := range pl.check {
		tp := &pl.trails[i]
		tr := &st.trails[i]
		if tr.head == st.tail {
			continue
		}
		// t − tf underflows when t < MinInt64 + tf: every entry is within.
		if tf := tp.tf; t >= math.MinInt64+tf && tr.headTs <= t-tf {
			tr.evict(st, m, t-tf)
		}
		if tr.head == st.tail {
			continue
		}
		if len(tp.up) > 0 {
			h := st.maxq[tr.qx&uint64(len(st.maxq)-1)].price
			for _, r := range tp.up {
				if !(price > h*r.f) {
					break
				}
				frac := (price - h) / h
				dst = p.patOut(dst, &kr, r.op, ev, patConfidence(frac, r.th), 3, price, h, frac*100, 0, 0)
			}
		}
		if len(tp.down) > 0 {
			l := st.minq[tr.qn&uint64(len(st.minq)-1)].price
			for _, r := range tp.down {
				if !(price < l*r.f) {
					break
				}
				frac := (l - price) / l
				dst = p.patOut(dst, &kr, r.op, ev, patConfidence(frac, r.th), 3, price, l, frac*100, 0, 0)
			}
		}
		if len(tp.spike) > 0 {
			mean := (tr.vsum + tr.vcmp) / float64(st.tail-tr.head)
			for _, r := range tp.spike {
				if !(vol > r.f*mean) {
					break
				}
				ratio := math.Inf(1)
				if mean != 0 {
					ratio = vol / mean
				}
				dst = p.patOut(dst, &kr, r.op, ev, min(1, ratio/(2*r.f)), 3, vol, mean, ratio, 0, 0)
			}
		}
	}
	ps.stats.Capped += st.push(t, price, vol, ps.capN)
	if len(pl.tech) > 0 {
		dst = p.onTechnical(ps, slot, st, ev, &kr, dst)
	}
	if len(dst)-first > 1 && !patSortedByOp(dst[first:]) {
		patSortByOp(dst[first:])
	}
	return dst
}

func patSortedByOp(m []Output) bool {
	for i := 1; i < len(m); i++ {
		if m[i].Op < m[i-1].Op {
			return false
		}
	}
	return true
}

// patSortByOp puts one trade's matches in pattern order (insertion sort:
// few elements, no allocation).
func patSortByOp(m []Output) {
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && m[j].Op < m[j-1].Op; j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
}

// patConfidence is min(1, frac/(2·threshold)), 1 for a zero threshold.
func patConfidence(frac, th float64) float64 {
	if th == 0 {
		return 1
	}
	return min(1, frac/(2*th))
}

// onTechnical updates the pattern indicators and tests the crosses.
func (p *Pipeline) onTechnical(ps *patternSet, slot int, st *patSlot, ev *codec.Event, kr *patKeyer, dst []Output) []Output {
	vals := ps.vals
	ps.ind.Update(slot, ev.TsNs, ev.Price, ev.Volume, vals)
	prev := ps.prev(slot)
	prevPrice := prev[len(vals)]
	for _, tp := range st.plan.tech {
		c := &ps.conds[tp.c]
		// The cross is tested first; the details and the confidence are
		// worked out only for a match.
		var dir, a, b, c1, c2 float64
		var nd uint8
		switch c.sig {
		case SigSMACross, SigEMACross:
			a, b, c1, c2, nd = vals[c.a], vals[c.b], prev[c.a], prev[c.b], 5
			dir = patCross(c1, c2, a, b)
		case SigRSICross:
			r, pr := vals[c.a], prev[c.a]
			switch {
			case pr <= c.hi && r > c.hi:
				dir, c2 = 1, c.hi
			case pr >= c.lo && r < c.lo:
				dir, c2 = -1, c.lo
			}
			a, b, c1, nd = r, pr, c2, 4
		case SigVWAPCross:
			a, b, c1, c2, nd = ev.Price, vals[c.a], prevPrice, prev[c.a], 5
			dir = patCross(c1, c2, a, b)
		}
		if dir == 0 {
			continue
		}
		var conf float64
		if c.sig == SigRSICross {
			conf = patCrossConfidence(a-c1, b-c1) // RSI now and before, against the level
		} else {
			conf = patCrossConfidence(a-b, c1-c2) // the gaps now and before
		}
		for _, op := range tp.ops {
			dst = p.patOut(dst, kr, op, ev, conf, nd, dir, a, b, c1, c2)
		}
	}
	// A loop, not copy: a handful of values, not worth a memmove call.
	pv := prev[:len(vals)]
	//lint:ignore S1001 a handful of values: the loop beats a memmove call per trade
	for i, v := range vals {
		pv[i] = v
	}
	prev[len(vals)] = ev.Price
	return dst
}

// patCross is +1 when x goes from <= y to > y, −1 from >= y to < y, else 0
// (NaN compares false: no cross during warm-up).
//
// It is branch-free: whether a line is crossed is close to random from one
// trade to the next, and mispredicted branches cost more than the four
// comparisons.
func patCross(px, py, x, y float64) float64 {
	up := patB2i(px <= py) & patB2i(x > y)
	down := patB2i(px >= py) & patB2i(x < y)
	return float64(up - down)
}

// patB2i is 1 for true, 0 for false (compiled to a SETcc, no branch).
func patB2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// patCrossConfidence is 0.5 + 0.5·|now|/(|now|+|before|).
func patCrossConfidence(now, before float64) float64 {
	a, b := math.Abs(now), math.Abs(before)
	if a+b == 0 {
		return 0.5
	}
	return 0.5 + 0.5*(a/(a+b))
}

// patKeyer computes the output keys of one input's matches: OutputKey
// with the parts that do not depend on the pattern (the two words' mixes)
// worked out once, at the input's first match.
type patKeyer struct {
	ok         bool
	h0, ma, mb uint64
}

// key is p.inputKey(OutPattern, op, ev) (TestPatKeyerIsOutputKey).
func (k *patKeyer) key(p *Pipeline, op uint16, ev *codec.Event) uint64 {
	if !k.ok {
		a, b := ev.Seq, p.srcKey
		if ev.IDHash != 0 {
			a, b = ev.IDHash, ^p.scopeKey
		}
		k.h0 = uint64(OutPattern)<<56 ^ uint64(ev.Symbol)
		k.ma, k.mb = codec.Mix64(a+0x9E3779B97F4A7C15), codec.Mix64(b+0xC2B2AE3D27D4EB4F)
		k.ok = true
	}
	return codec.Mix64(codec.Mix64(k.h0^uint64(op)<<40^k.ma) ^ k.mb)
}

// patOut appends a match of pattern op for ev with confidence conf and
// nd (3 or 5) details. A trade's matches are then put in pattern order.
func (p *Pipeline) patOut(dst []Output, k *patKeyer, op uint16, ev *codec.Event, conf float64, nd uint8, d0, d1, d2, d3, d4 float64) []Output {
	key := k.key(p, op, ev)
	// Written in place: an Output is 224 bytes, built once.
	n := len(dst)
	if n < cap(dst) {
		dst = dst[:n+1]
	} else {
		dst = append(dst, Output{})
	}
	o := &dst[n]
	*o = Output{} // zeroed in place (a literal with fields is built on the stack and copied)
	o.Kind, o.NValues, o.Op, o.Symbol = OutPattern, nd, op, ev.Symbol
	o.Seq, o.Key, o.TsNs, o.IngestNs = ev.Seq, key, ev.TsNs, ev.IngestNs
	o.Price, o.Volume, o.Value = ev.Price, ev.Volume, conf
	o.Values[0], o.Values[1], o.Values[2] = d0, d1, d2
	if nd > 3 {
		o.Values[3], o.Values[4] = d3, d4
	}
	return dst
}

// Patterns returns the pipeline's pattern specs, indexed by Op: the
// configured ones, then those added at run time (AddPattern), removed ones
// included (PatternActive tells them apart).
func (p *Pipeline) Patterns() []PatternSpec {
	if p.rt != nil {
		return slices.Clone(p.rt.specs)
	}
	return slices.Clone(p.cfg.Patterns) // built-in and sequence patterns, indexed by Output.Op
}

// PatternStats returns the built-in pattern detectors' counters (those of
// patterns added at run time included).
func (p *Pipeline) PatternStats() PatternStats {
	var st PatternStats
	if p.pat != nil {
		st = p.pat.stats
	}
	if p.rt != nil {
		for _, a := range p.rt.added {
			if a.pat != nil {
				st.Late += a.pat.stats.Late
				st.Capped += a.pat.stats.Capped
			}
		}
	}
	return st
}
