package ops

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"qstream/codec"
)

// This file holds the detector of sequence patterns (Type PatSequence; the
// language is in sequence_spec.go, the checkpoint encoding in
// sequence_state.go).
//
// # Semantics
//
// A pattern sees the events of each symbol it applies to whose kind one of
// its steps names (trades, quotes, bars), in arrival order. An event whose
// event time is before the latest one of its symbol's earlier events
// (trades, quotes and bars alike) is late for sequences: it is skipped and counted (SequenceStats.Late). Indicators
// are those of the symbol's in-order trades.
//
// A partial match holds the steps matched so far (their event times and
// prices). On an event at time t, for every partial match of the symbol and
// pattern, oldest first:
//
//   - With an absent last step, a partial match that matched every other
//     step is pending until its deadline, the first step's time + within.
//     It fires when t or the watermark passes the deadline (is greater
//     than it): one match, ts the deadline, fired exactly once. An event at
//     t <= deadline that satisfies the absent step cancels it (with strict
//     contiguity only the very next event can: any other one confirms the
//     absence).
//   - Otherwise, when t − the first step's time exceeds within the partial
//     match expires (SequenceStats.Expired). When the event satisfies the
//     next step, it is taken; the last step completes the match (ts t).
//     When it does not, relaxed contiguity keeps the partial match waiting
//     (FlinkCEP "skip till next match": the first event that satisfies a
//     step is taken, there is no branching), strict contiguity ends it
//     (SequenceStats.Broken).
//
// Then, when the event satisfies the first step, it starts a new partial
// match. An event can thus advance several partial matches and start one.
// After a match, the skip strategy applies: skip_past_last_event discards
// every partial match that started at or before the match's last event
// (for an absence, its last matched step), and an event that completed a
// match starts none; no_skip keeps them all (SequenceStats.Skipped counts
// the discarded ones).
//
// Each symbol holds at most MaxPartial partial matches per pattern:
// starting one more drops the oldest (SequenceStats.Dropped). The memory of
// a symbol is thus at most about patterns × MaxPartial × 144 bytes (a
// partial match; the slice grows by doubling, so up to twice that),
// allocated as partial matches appear and reused afterwards: no allocation
// per event in steady state.
//
// # Cost
//
// Per event, for each pattern that applies to the symbol and names the
// event's kind: each step's conditions at most once (memoized for the
// event), then a scan of the symbol's partial matches only when the event
// satisfies a step after the first or the contiguity is strict; otherwise
// only the expired (and due) prefix is touched. A watermark does nothing
// until it passes the earliest pending deadline of the pipeline; then it
// compares every slot's earliest deadline and scans the slots it passed.
//
// # Output
//
// A match is an OutPattern output: ts the last step's event time (absence:
// the deadline), Seq the input or watermark that produced it, Key the
// OutputKey of the pattern and the first step's input (a partial match
// starts at most once per input, so the key is unique and the same in a
// replay), details for every step that occurred NAME_ts (an event time in
// ns, exact) and NAME_price (trade price, bar close, or the quote's mid),
// then deadline for an absence. Matches of one input or watermark are in
// event-time order (stable: pattern order at equal times), so that a
// symbol's matches are in event-time order.
//
// # Confidence
//
// A followed-by match has confidence 1 − 0.5·(t_last − t_first)/within:
// 1 for steps at the same instant, 0.5 for a match that used all the time
// allowed. An absence has confidence 1: the watermark made it certain.

// SequenceStats counts what the sequence detector did beyond matching.
type SequenceStats struct {
	Late      uint64 // events skipped because their event time went backwards for their symbol
	Dropped   uint64 // partial matches dropped because MaxPartial were held (the oldest)
	Expired   uint64 // partial matches whose within ran out before they completed
	Broken    uint64 // partial matches ended by strict contiguity
	Cancelled uint64 // absences cancelled because the absent step came in time
	Skipped   uint64 // partial matches discarded by skip_past_last_event
}

// seqOpC is a compiled operand: ind indexes the set's indicators.
type seqOpC struct {
	field SeqField
	c     float64
	ind   int
}

type seqCondC struct {
	l, r seqOpC
	op   SeqCmp
}

type seqStepC struct {
	kind  SeqKind
	conds []seqCondC
}

// seqPat is one compiled sequence pattern.
type seqPat struct {
	op       uint16
	npos     int // steps that must occur
	absent   bool
	strict   bool
	skipPast bool
	within   int64
	maxPart  int
	kinds    SeqKind
	steps    []seqStepC
}

// seqPart is a partial match: k steps matched, at ts[0:k] with prices
// px[0:k]; n0 and nl are the ordinals (per symbol and pattern) of its first
// and last matched events; key is its output key.
type seqPart struct {
	n0, nl    uint64
	key       uint64
	k         uint8
	confirmed bool // strict absence: the next event was not the absent step
	ts        [MaxSequenceSteps]int64
	px        [MaxSequenceSteps]float64
}

// seqRun is the state of one pattern for one symbol.
type seqRun struct {
	seen  uint64    // events of the pattern's kinds seen (the ordinal of the latest)
	parts []seqPart // oldest first
}

// seqSlot is one symbol's sequence state.
type seqSlot struct {
	init   bool
	seen   bool
	lastTs int64
	due    int64 // no absence of the slot is due before the watermark passes this
	sym    codec.Symbol
	apply  []uint16  // patterns (indices into seqSet.pats) that apply
	runs   []seqRun  // parallel to apply
	vals   []float64 // the indicators after the symbol's latest trade (NaN: none yet)
}

// seqSet is a pipeline's sequence detector.
type seqSet struct {
	specs    []PatternSpec // the pipeline's pattern list (Op order)
	pats     []seqPat
	names    SymbolNamer
	ind      *IndicatorSet
	indSpecs []IndicatorSpec
	slots    []seqSlot
	applies  map[string][]uint16
	nextDue  int64
	stats    SequenceStats
}

// seqEv is one event's operand values.
type seqEv struct {
	kind                                     SeqKind
	price, volume, open, high, low, bid, ask float64
	vals                                     []float64
	chg, ref                                 float64 // movements only (movement_seq.go)
}

func (x *seqEv) value(o *seqOpC) float64 {
	nan := math.NaN()
	switch o.field {
	case SeqConst:
		return o.c
	case SeqPrice:
		return x.price
	case SeqVolume:
		return x.volume
	case SeqOpen:
		return x.open
	case SeqHigh:
		return x.high
	case SeqLow:
		return x.low
	case SeqBid:
		return x.bid
	case SeqAsk:
		return x.ask
	case SeqSpread:
		return x.ask - x.bid
	case SeqMid:
		return (x.ask + x.bid) / 2
	case SeqIndicator:
		return x.vals[o.ind]
	case SeqChangePct, SeqRefPrice:
		return x.movementValue(o.field)
	}
	return nan
}

// stepOK reports whether the event satisfies step k of pat.
func (x *seqEv) stepOK(st *seqStepC) bool {
	if st.kind&x.kind == 0 {
		return false
	}
	for i := range st.conds {
		c := &st.conds[i]
		a, b := x.value(&c.l), x.value(&c.r)
		var ok bool
		switch c.op {
		case SeqLT:
			ok = a < b
		case SeqLE:
			ok = a <= b
		case SeqGT:
			ok = a > b
		case SeqGE:
			ok = a >= b
		case SeqEQ:
			ok = a == b
		case SeqNE:
			ok = a != b && a == a && b == b
		}
		if !ok {
			return false
		}
	}
	return true
}

// seqSplit checks the ids of a pattern list across types and returns the
// built-in patterns and, when their indices differ from their place in
// specs, the map from their index to their Op (nil when equal).
func seqSplit(specs []PatternSpec) (builtin []PatternSpec, ops []uint16, nseq int, err error) {
	if len(specs) > MaxPatterns {
		return nil, nil, 0, fmt.Errorf("%w: %d patterns, at most %d", ErrPatternSpec, len(specs), MaxPatterns)
	}
	ids := make(map[string]int, len(specs))
	identity := true
	for i, s := range specs {
		if j, dup := ids[s.ID]; dup && s.ID != "" {
			return nil, nil, 0, fmt.Errorf("%w: pattern %q (#%d): id: already used by pattern #%d", ErrPatternSpec, s.ID, i+1, j+1)
		}
		ids[s.ID] = i
		if s.Type == PatSequence {
			nseq++
			continue
		}
		if s.Type == PatNewsImpact {
			identity = false
			continue
		}
		if len(builtin) != i {
			identity = false
		}
		builtin = append(builtin, s)
		ops = append(ops, uint16(i))
	}
	if identity {
		ops = nil
	}
	return builtin, ops, nseq, nil
}

// remapPatternOps gives the built-in detector's matches of ev (indexed in
// its own list) the Op and key of their place in the pipeline's list.
func (p *Pipeline) remapPatternOps(ev *codec.Event, outs []Output) {
	for i := range outs {
		o := &outs[i]
		o.Op = p.patOps[o.Op]
		o.Key = p.inputKey(OutPattern, o.Op, ev)
	}
}

func newSeqSet(specs []PatternSpec, indOpts IndicatorOptions, names SymbolNamer, maxSlots int) (*seqSet, error) {
	sq := &seqSet{
		specs:   slices.Clone(specs),
		names:   names,
		slots:   make([]seqSlot, maxSlots),
		applies: map[string][]uint16{},
		nextDue: math.MaxInt64,
	}
	for i, s := range specs {
		if s.Type != PatSequence {
			continue
		}
		if s.ID == "" {
			return nil, fmt.Errorf("%w: pattern #%d: id: empty", ErrPatternSpec, i+1)
		}
		if err := s.Sequence.validate(); err != nil {
			return nil, fmt.Errorf("%w: pattern %q (#%d): %w", ErrPatternSpec, s.ID, i+1, err)
		}
		if len(s.Symbols) > 0 && names == nil {
			return nil, fmt.Errorf("%w: pattern %q: symbols given but the pipeline has no SymbolNames", ErrPatternSpec, s.ID)
		}
		q := &s.Sequence
		pat := seqPat{
			op:       uint16(i),
			npos:     q.positive(),
			absent:   q.positive() < len(q.Steps),
			strict:   q.Contiguity == SeqStrict,
			skipPast: q.Skip == SkipPastLastEvent,
			within:   q.WithinNs,
			maxPart:  q.MaxPartial,
		}
		if pat.maxPart == 0 {
			pat.maxPart = DefaultMaxSequencePartial
		}
		for _, st := range q.Steps {
			sc := seqStepC{kind: st.Kind}
			if sc.kind == 0 {
				sc.kind = SeqTrade
			}
			pat.kinds |= sc.kind
			for _, c := range st.Where {
				cc := seqCondC{op: c.Op, l: sq.operand(c.Left), r: sq.operand(c.Right)}
				sc.conds = append(sc.conds, cc)
			}
			pat.steps = append(pat.steps, sc)
		}
		sq.pats = append(sq.pats, pat)
	}
	if len(sq.indSpecs) > MaxValues {
		return nil, fmt.Errorf("%w: sequence patterns need %d distinct indicators, at most %d", ErrPatternSpec, len(sq.indSpecs), MaxValues)
	}
	if len(sq.indSpecs) > 0 {
		ind, err := NewIndicatorSet(sq.indSpecs, indOpts, maxSlots)
		if err != nil {
			return nil, fmt.Errorf("ops: sequence patterns: %w", err)
		}
		sq.ind = ind
	}
	return sq, nil
}

func (sq *seqSet) operand(o SeqOperand) seqOpC {
	c := seqOpC{field: o.Field, c: o.Const}
	if o.Field == SeqIndicator {
		c.ind = slices.Index(sq.indSpecs, o.Ind)
		if c.ind < 0 {
			c.ind = len(sq.indSpecs)
			sq.indSpecs = append(sq.indSpecs, o.Ind)
		}
	}
	return c
}

// initSlot gives a slot the patterns that apply to sym and empty state. It
// allocates (on a symbol's first event only).
func (sq *seqSet) initSlot(st *seqSlot, sym codec.Symbol) {
	var name string
	if sq.names != nil {
		name = sq.names.Name(sym)
	}
	var key strings.Builder
	var apply []uint16
	for i := range sq.pats {
		s := &sq.specs[sq.pats[i].op]
		if len(s.Symbols) == 0 || slices.Contains(s.Symbols, name) {
			apply = append(apply, uint16(i))
			key.WriteString(strconv.Itoa(i))
			key.WriteByte(',')
		}
	}
	if a, ok := sq.applies[key.String()]; ok {
		apply = a
	} else {
		sq.applies[key.String()] = apply
	}
	*st = seqSlot{init: true, sym: sym, due: math.MaxInt64, apply: apply, runs: make([]seqRun, len(apply))}
	st.vals = make([]float64, len(sq.indSpecs))
	for i := range st.vals {
		st.vals[i] = math.NaN()
	}
}

// seqDeadline is t0 + within, saturated.
func seqDeadline(t0, within int64) int64 {
	if t0 > math.MaxInt64-within {
		return math.MaxInt64
	}
	return t0 + within
}

// onSequences runs the sequence patterns on one trade, quote or bar of slot
// (after the quote state took a quote) and appends the matches.
func (p *Pipeline) onSequences(slot int, ev *codec.Event, dst []Output) []Output {
	sq := p.seq
	st := &sq.slots[slot]
	if !st.init {
		sq.initSlot(st, ev.Symbol)
	}
	if st.seen && ev.TsNs < st.lastTs {
		sq.stats.Late++
		return dst
	}
	st.seen, st.lastTs = true, ev.TsNs
	nan := math.NaN()
	x := seqEv{price: nan, volume: nan, open: nan, high: nan, low: nan, bid: nan, ask: nan, vals: st.vals}
	switch ev.Kind {
	case codec.KindTrade:
		x.kind, x.price, x.volume = SeqTrade, ev.Price, ev.Volume
		if sq.ind != nil {
			sq.ind.Update(slot, ev.TsNs, ev.Price, ev.Volume, st.vals)
		}
	case codec.KindQuote:
		x.kind = SeqQuote
	case codec.KindBar:
		x.kind, x.price, x.volume, x.open, x.high, x.low = SeqBar, ev.Price, ev.Volume, ev.Open, ev.High, ev.Low
	default:
		return dst
	}
	if q := &p.quotes[slot]; true {
		if q.bid != 0 {
			x.bid = q.bid
		}
		if q.ask != 0 {
			x.ask = q.ask
		}
	}
	first := len(dst)
	for i, pi := range st.apply {
		pat := &sq.pats[pi]
		if pat.kinds&x.kind == 0 {
			continue
		}
		dst = p.seqEvent(st, pat, &st.runs[i], &x, ev, dst)
	}
	if len(dst)-first > 1 {
		seqSortByTs(dst[first:])
	}
	return dst
}

// seqSortByTs orders one input's matches by event time, stably (insertion
// sort: few elements, no allocation).
func seqSortByTs(m []Output) {
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && m[j].TsNs < m[j-1].TsNs; j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
}

// seqEvent runs one pattern on one event of a symbol.
func (p *Pipeline) seqEvent(st *seqSlot, pat *seqPat, run *seqRun, x *seqEv, ev *codec.Event, dst []Output) []Output {
	sq := p.seq
	t := ev.TsNs
	var cut uint64
	if pat.absent {
		dst, cut = p.seqFireDue(pat, run, st.sym, t, ev.Seq, ev.IngestNs, dst)
	}
	run.seen++
	n := run.seen
	// The event's price in details: trade price, bar close, quote mid.
	px := x.price
	if x.kind == SeqQuote {
		px = (x.bid + x.ask) / 2
	}
	var tested, okMask uint8
	ok := func(k int) bool { // memoized per event: several partials wait for the same step
		if tested&(1<<k) == 0 {
			tested |= 1 << k
			if x.stepOK(&pat.steps[k]) {
				okMask |= 1 << k
			}
		}
		return okMask&(1<<k) != 0
	}
	parts := run.parts
	if len(parts) > 0 && cut == 0 && !pat.strict && !seqAnyLaterStep(pat, ok) {
		// Fast path: the event advances and cancels nothing, so only
		// expiry changes the list, and the expired are a prefix.
		r := 0
		for r < len(parts) && t > seqDeadline(parts[r].ts[0], pat.within) {
			r++
		}
		if r > 0 {
			sq.stats.Expired += uint64(r)
			parts = parts[:copy(parts, parts[r:])]
		}
		return p.seqStart(st, pat, run, parts, n, cut, t, px, ev, ok, dst)
	}
	w := 0
	for r := range parts {
		pt := &parts[r]
		if pt.n0 <= cut {
			sq.stats.Skipped++
			continue
		}
		deadline := seqDeadline(pt.ts[0], pat.within)
		if int(pt.k) == pat.npos { // a pending absence, not due (seqFireDue)
			if !pt.confirmed && ok(pat.npos) {
				sq.stats.Cancelled++
				continue
			}
			if pat.strict {
				pt.confirmed = true
			}
			if w != r {
				parts[w] = *pt
			}
			w++
			continue
		}
		if t > deadline {
			sq.stats.Expired++
			continue
		}
		if ok(int(pt.k)) {
			pt.ts[pt.k], pt.px[pt.k] = t, px
			pt.k++
			pt.nl = n
			if int(pt.k) == pat.npos {
				if !pat.absent {
					dst = p.seqOut(dst, pat, pt, st.sym, t, ev.Seq, ev.IngestNs, 1-0.5*float64(t-pt.ts[0])/float64(pat.within))
					if pat.skipPast {
						sq.stats.Skipped += uint64(w)
						w = 0
						cut = n
					}
					continue
				}
				st.due = min(st.due, deadline)
				sq.nextDue = min(sq.nextDue, deadline)
			}
		} else if pat.strict {
			sq.stats.Broken++
			continue
		}
		if w != r {
			parts[w] = *pt
		}
		w++
	}
	return p.seqStart(st, pat, run, parts[:w], n, cut, t, px, ev, ok, dst)
}

// seqAnyLaterStep reports whether the event satisfies a step after the
// first (the absent one included).
func seqAnyLaterStep(pat *seqPat, ok func(int) bool) bool {
	for k := 1; k < len(pat.steps); k++ {
		if ok(k) {
			return true
		}
	}
	return false
}

// seqStart starts a partial match at event ordinal n when the event
// satisfies the first step and no match ended at it, and stores parts.
func (p *Pipeline) seqStart(st *seqSlot, pat *seqPat, run *seqRun, parts []seqPart, n, cut uint64, t int64, px float64, ev *codec.Event, ok func(int) bool, dst []Output) []Output {
	sq := p.seq
	if n > cut && ok(0) {
		if len(parts) >= pat.maxPart {
			copy(parts, parts[1:])
			parts = parts[:len(parts)-1]
			sq.stats.Dropped++
		}
		parts = append(parts, seqPart{n0: n, nl: n, key: p.inputKey(OutPattern, pat.op, ev), k: 1})
		pt := &parts[len(parts)-1]
		pt.ts[0], pt.px[0] = t, px
		if pat.npos == 1 { // A not followed by B: pending from its start
			d := seqDeadline(t, pat.within)
			st.due = min(st.due, d)
			sq.nextDue = min(sq.nextDue, d)
		}
	}
	run.parts = parts
	return dst
}

// seqFireDue fires the pending absences of run whose deadline is before
// limit (an event time or the watermark), oldest first, and discards what
// skip_past_last_event says. It returns the ordinal cut: partial matches
// that started at or before it are discarded. Partial matches are in start
// order, so their deadlines and start ordinals ascend: what is due and what
// is discarded are prefixes, and the scan stops at the first partial match
// that is neither.
func (p *Pipeline) seqFireDue(pat *seqPat, run *seqRun, sym codec.Symbol, limit int64, seq uint64, ingest int64, dst []Output) ([]Output, uint64) {
	sq := p.seq
	var cut uint64
	parts := run.parts
	w, r := 0, 0
	for ; r < len(parts); r++ {
		pt := &parts[r]
		if pt.n0 <= cut {
			sq.stats.Skipped++
			continue
		}
		d := seqDeadline(pt.ts[0], pat.within)
		if d >= limit {
			break
		}
		if int(pt.k) == pat.npos {
			dst = p.seqOut(dst, pat, pt, sym, d, seq, ingest, 1)
			if pat.skipPast {
				sq.stats.Skipped += uint64(w)
				w = 0
				cut = pt.nl
			}
			continue
		}
		if w != r {
			parts[w] = *pt
		}
		w++
	}
	if w != r {
		w += copy(parts[w:], parts[r:])
	} else {
		w = len(parts)
	}
	run.parts = parts[:w]
	return dst, cut
}

// seqOut appends a match of pat from partial pt at event time ts.
func (p *Pipeline) seqOut(dst []Output, pat *seqPat, pt *seqPart, sym codec.Symbol, ts int64, seq uint64, ingest int64, conf float64) []Output {
	dst = append(dst, Output{
		Kind:     OutPattern,
		Op:       pat.op,
		Symbol:   sym,
		Seq:      seq,
		Key:      pt.key,
		TsNs:     ts,
		Price:    pt.px[pat.npos-1],
		Value:    conf,
		IngestNs: ingest,
	})
	o := &dst[len(dst)-1]
	n := 0
	for k := 0; k < pat.npos; k++ {
		o.Values[n], o.Values[n+1] = seqTimeValue(pt.ts[k]), pt.px[k]
		n += 2
	}
	if pat.absent {
		o.Values[n] = seqTimeValue(ts)
		n++
	}
	o.NValues = uint8(n)
	return dst
}

// seqOnWatermark fires the absences whose deadline the watermark passed,
// symbol by symbol in slot order, each symbol's in event-time order.
func (p *Pipeline) seqOnWatermark(wm int64, seq uint64, dst []Output) []Output {
	sq := p.seq
	if wm <= sq.nextDue {
		return dst
	}
	next := int64(math.MaxInt64)
	for s := range sq.slots[:p.nslots] {
		st := &sq.slots[s]
		if !st.init || wm <= st.due {
			next = min(next, st.due)
			continue
		}
		first := len(dst)
		due := int64(math.MaxInt64)
		for i, pi := range st.apply {
			pat := &sq.pats[pi]
			if !pat.absent {
				continue
			}
			run := &st.runs[i]
			dst, _ = p.seqFireDue(pat, run, st.sym, wm, seq, 0, dst)
			for r := range run.parts {
				if pt := &run.parts[r]; int(pt.k) == pat.npos {
					due = min(due, seqDeadline(pt.ts[0], pat.within))
				}
			}
		}
		st.due = due
		next = min(next, due)
		if len(dst)-first > 1 {
			seqSortByTs(dst[first:])
		}
	}
	sq.nextDue = next
	return dst
}

// SequenceStats returns the sequence detector's counters.
func (p *Pipeline) SequenceStats() SequenceStats {
	if p.seq == nil {
		return SequenceStats{}
	}
	return p.seq.stats
}
