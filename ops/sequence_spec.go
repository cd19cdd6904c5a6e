package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// This file holds the sequence pattern language: the Go form (SequenceSpec
// in PatternSpec.Sequence, Type PatSequence), its JSON form in the pattern
// file and the match details. The detector is in sequence.go, its
// checkpoint encoding in sequence_state.go.
//
// # The pattern file
//
//	{"id":"dip_rebound","type":"sequence","within":"30s",
//	 "contiguity":"relaxed","skip":"skip_past_last_event","max_partial":16,"symbols":["AAPL"],
//	 "steps":[{"name":"dip","kind":"trade","where":["rsi_14 < 30","price < vwap"]},
//	          {"name":"rebound","where":["price > vwap","sma_5 > sma_20"]}]}
//	{"id":"no_recovery","type":"sequence","within":"1m",
//	 "steps":[{"name":"drop","where":["price < 100"]},{"name":"recover","absent":true,"where":["price >= 100"]}]}
//
// steps: 2..MaxSequenceSteps objects, each with an optional name (default
// s1, s2, ...; letters, digits and _), a kind (trade, the default; quote;
// bar; any; movement: an event of --movements, see movement_seq.go) and
// where, a list of conditions that must all hold (empty: any event of the
// kind). A condition is "OPERAND OP OPERAND", OP one of < <= >
// >= == !=, an operand a number, an event field (price: the trade price or
// the bar close; volume; open, high, low: bars; bid, ask, spread, mid: the
// symbol's top of book after the event; change_pct, reference_price:
// movements) or an indicator of the symbol
// (sma_N, ema_N, rsi_N, vwap, vwap_N, as in --indicators, updated by its
// trades, the event itself included). A value that does not exist yet (warm-up, no quote yet, a bar
// field on a trade) makes the condition false. The last step may be
// "absent": true, "A not followed by B within T". within (required): a
// positive duration; contiguity: relaxed (default) or strict; skip:
// skip_past_last_event (default) or no_skip; max_partial: 1..65536 (default
// DefaultMaxSequencePartial).

// MaxSequenceSteps bounds the steps of a sequence (its details are two
// values per step before the absent one, plus the deadline).
const MaxSequenceSteps = 7

// DefaultMaxSequencePartial is SequenceSpec.MaxPartial when it is 0.
const DefaultMaxSequencePartial = 64

// maxSequencePartial bounds SequenceSpec.MaxPartial.
const maxSequencePartial = 1 << 16

// SeqKind is a set of event kinds a step accepts.
type SeqKind uint8

// Event kinds of a step (SeqAny accepts all three).
const (
	SeqTrade SeqKind = 1 << iota
	SeqQuote
	SeqBar
	SeqAny = SeqTrade | SeqQuote | SeqBar
)

// SeqMovement is the kind of a step on the movement operator's events
// (movement_seq.go); "any" does not include it.
const SeqMovement SeqKind = 1 << 3

// SeqContiguity says what may come between two steps.
type SeqContiguity uint8

// Contiguities (FlinkCEP's next() and followedBy()).
const (
	// SeqRelaxed: other events of the symbol may come in between; a
	// partial match waits for the first event that satisfies its next
	// step (FlinkCEP "skip till next match").
	SeqRelaxed SeqContiguity = iota
	// SeqStrict: the next step must be the very next event of the symbol
	// among the kinds the pattern's steps name; any other event ends the
	// partial match.
	SeqStrict
)

// SeqSkip is the after-match skip strategy (FlinkCEP's names).
type SeqSkip uint8

// After-match skip strategies.
const (
	// SkipPastLastEvent: after a match, every partial match that started
	// at or before the match's last event is discarded, so matches never
	// share events and a new match starts after the last one.
	SkipPastLastEvent SeqSkip = iota
	// NoSkip: every partial match goes on; each start event can give its
	// own match (A1 A2 B gives A1·B and A2·B).
	NoSkip
)

// SeqField is what an operand reads.
type SeqField uint8

// Operand fields.
const (
	SeqConst     SeqField = iota // the constant Const
	SeqPrice                     // trade price, bar close
	SeqVolume                    // trade size, bar volume
	SeqOpen                      // bar open
	SeqHigh                      // bar high
	SeqLow                       // bar low
	SeqBid                       // the symbol's best bid after the event
	SeqAsk                       // the symbol's best ask after the event
	SeqSpread                    // ask − bid
	SeqMid                       // (bid + ask) / 2
	SeqIndicator                 // the indicator Ind of the symbol
	SeqChangePct                 // a movement's change in percent, signed (NaN on other events)
	SeqRefPrice                  // a movement's reference price (NaN on other events)
	seqFieldEnd
)

var seqFieldNames = [seqFieldEnd]string{"", "price", "volume", "open", "high", "low", "bid", "ask", "spread", "mid", "", "change_pct", "reference_price"}

// SeqOperand is one side of a condition.
type SeqOperand struct {
	Field SeqField
	Const float64       // SeqConst
	Ind   IndicatorSpec // SeqIndicator
}

// String returns the operand as the pattern file writes it.
func (o SeqOperand) String() string {
	switch o.Field {
	case SeqConst:
		return strconv.FormatFloat(o.Const, 'g', -1, 64)
	case SeqIndicator:
		return o.Ind.Name()
	}
	if o.Field < seqFieldEnd {
		return seqFieldNames[o.Field]
	}
	return "invalid"
}

// SeqCmp is a comparison.
type SeqCmp uint8

// Comparisons. NaN on either side makes every one false (!= included).
const (
	SeqLT SeqCmp = iota + 1
	SeqLE
	SeqGT
	SeqGE
	SeqEQ
	SeqNE
)

var seqCmpNames = [...]string{"", "<", "<=", ">", ">=", "==", "!="}

// SeqCond is "Left Op Right".
type SeqCond struct {
	Left  SeqOperand
	Op    SeqCmp
	Right SeqOperand
}

// String returns the condition as the pattern file writes it.
func (c SeqCond) String() string {
	op := "?"
	if int(c.Op) < len(seqCmpNames) && c.Op > 0 {
		op = seqCmpNames[c.Op]
	}
	return c.Left.String() + " " + op + " " + c.Right.String()
}

// SeqStep is one step of a sequence.
type SeqStep struct {
	Name   string    // names its details (NAME_ts, NAME_price); "" is s<position>
	Kind   SeqKind   // 0 means SeqTrade
	Where  []SeqCond // all must hold
	Absent bool      // only on the last step: the match is that no such event comes
}

// SequenceSpec is the sequence of a PatSequence pattern.
type SequenceSpec struct {
	Steps      []SeqStep
	WithinNs   int64 // the last step's event time − the first's is at most this (absence: the deadline is first + WithinNs)
	Contiguity SeqContiguity
	Skip       SeqSkip
	MaxPartial int // partial matches held per symbol; beyond it the oldest is dropped (counted); 0: DefaultMaxSequencePartial
}

// ParseSeqCond reads one condition, "rsi_14 < 30".
func ParseSeqCond(s string) (SeqCond, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return SeqCond{}, fmt.Errorf("%q: want OPERAND OP OPERAND, e.g. \"rsi_14 < 30\"", s)
	}
	var c SeqCond
	for i, n := range seqCmpNames {
		if i > 0 && f[1] == n {
			c.Op = SeqCmp(i)
		}
	}
	if c.Op == 0 {
		return c, fmt.Errorf("%q: %q is not < <= > >= == or !=", s, f[1])
	}
	var err error
	if c.Left, err = parseSeqOperand(f[0]); err != nil {
		return c, fmt.Errorf("%q: %w", s, err)
	}
	if c.Right, err = parseSeqOperand(f[2]); err != nil {
		return c, fmt.Errorf("%q: %w", s, err)
	}
	if c.Left.Field == SeqConst && c.Right.Field == SeqConst {
		return c, fmt.Errorf("%q: compares two constants", s)
	}
	return c, nil
}

func parseSeqOperand(s string) (SeqOperand, error) {
	for i, n := range seqFieldNames {
		if n != "" && s == n {
			return SeqOperand{Field: SeqField(i)}, nil
		}
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return SeqOperand{}, fmt.Errorf("%q: not a finite number", s)
		}
		return SeqOperand{Field: SeqConst, Const: v}, nil
	}
	name, period, ok := strings.Cut(s, "_")
	item := name
	if ok {
		item += ":" + period
	}
	spec, err := indParseItem(item)
	if err != nil || strings.ContainsAny(s, ":") {
		return SeqOperand{}, fmt.Errorf("%q: not a number, a field (price volume open high low bid ask spread mid change_pct reference_price) or an indicator (sma_N ema_N rsi_N vwap vwap_N)", s)
	}
	return SeqOperand{Field: SeqIndicator, Ind: spec}, nil
}

// seqJSON is the file form of a sequence pattern.
type seqJSON struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	Symbols    []string   `json:"symbols"`
	Within     *string    `json:"within"`
	Contiguity *string    `json:"contiguity"`
	Skip       *string    `json:"skip"`
	MaxPartial *int       `json:"max_partial"`
	Steps      []seqJStep `json:"steps"`
}

type seqJStep struct {
	Name   string   `json:"name"`
	Kind   *string  `json:"kind"`
	Where  []string `json:"where"`
	Absent bool     `json:"absent"`
}

// isSequenceJSON reports whether a pattern object has "type":"sequence".
func isSequenceJSON(raw []byte) bool {
	var probe struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Type == "sequence"
}

// parseSequenceJSON reads one "type":"sequence" object. Errors start with
// the field's name.
func parseSequenceJSON(raw []byte) (PatternSpec, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var sj seqJSON
	if err := dec.Decode(&sj); err != nil {
		return PatternSpec{}, err
	}
	s := PatternSpec{ID: sj.ID, Type: PatSequence, Symbols: sj.Symbols}
	if sj.ID == "" {
		return s, errors.New("id: missing or empty")
	}
	if len(sj.ID) > 256 {
		return s, errors.New("id: longer than 256 bytes")
	}
	for _, sym := range sj.Symbols {
		if sym == "" || len(sym) > 64 {
			return s, fmt.Errorf("symbols: %q is not a symbol name (1..64 bytes)", sym)
		}
	}
	if sj.Symbols != nil && len(sj.Symbols) == 0 {
		return s, errors.New("symbols: empty list (leave the field out for every symbol)")
	}
	q := &s.Sequence
	d, err := patDuration("within", sj.Within)
	if err != nil {
		return s, err
	}
	q.WithinNs = d
	if sj.Contiguity != nil {
		switch *sj.Contiguity {
		case "relaxed":
		case "strict":
			q.Contiguity = SeqStrict
		default:
			return s, fmt.Errorf("contiguity: %q is not relaxed or strict", *sj.Contiguity)
		}
	}
	if sj.Skip != nil {
		switch *sj.Skip {
		case "skip_past_last_event":
		case "no_skip":
			q.Skip = NoSkip
		default:
			return s, fmt.Errorf("skip: %q is not skip_past_last_event or no_skip", *sj.Skip)
		}
	}
	if sj.MaxPartial != nil {
		if *sj.MaxPartial < 1 || *sj.MaxPartial > maxSequencePartial {
			return s, fmt.Errorf("max_partial: %d outside 1..%d", *sj.MaxPartial, maxSequencePartial)
		}
		q.MaxPartial = *sj.MaxPartial
	}
	for i, js := range sj.Steps {
		st := SeqStep{Name: js.Name, Kind: SeqTrade, Absent: js.Absent}
		if js.Kind != nil {
			switch *js.Kind {
			case "trade":
			case "quote":
				st.Kind = SeqQuote
			case "bar":
				st.Kind = SeqBar
			case "any":
				st.Kind = SeqAny
			case "movement":
				st.Kind = SeqMovement
			default:
				return s, fmt.Errorf("steps[%d].kind: %q is not trade, quote, bar, any or movement", i, *js.Kind)
			}
		}
		for _, w := range js.Where {
			c, err := ParseSeqCond(w)
			if err != nil {
				return s, fmt.Errorf("steps[%d].where: %w", i, err)
			}
			st.Where = append(st.Where, c)
		}
		q.Steps = append(q.Steps, st)
	}
	return s, q.validate()
}

// validate checks a sequence with the rules of the pattern file.
func (q *SequenceSpec) validate() error {
	n := len(q.Steps)
	if n < 2 || n > MaxSequenceSteps {
		return fmt.Errorf("steps: %d steps, want 2..%d", n, MaxSequenceSteps)
	}
	if q.WithinNs <= 0 {
		return fmt.Errorf("within: %d ns, want > 0", q.WithinNs)
	}
	if q.Contiguity > SeqStrict {
		return fmt.Errorf("contiguity: %d unknown", q.Contiguity)
	}
	if q.Skip > NoSkip {
		return fmt.Errorf("skip: %d unknown", q.Skip)
	}
	if q.MaxPartial < 0 || q.MaxPartial > maxSequencePartial {
		return fmt.Errorf("max_partial: %d outside 1..%d", q.MaxPartial, maxSequencePartial)
	}
	names := map[string]bool{}
	for i, st := range q.Steps {
		if st.Absent && i != n-1 {
			return fmt.Errorf("steps[%d].absent: only the last step can be absent", i)
		}
		if st.Kind > SeqAny && st.Kind != SeqMovement {
			return fmt.Errorf("steps[%d].kind: %d unknown", i, st.Kind)
		}
		name := q.stepName(i)
		if len(name) > 64 || strings.IndexFunc(name, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) >= 0 {
			return fmt.Errorf("steps[%d].name: %q: want 1..64 letters, digits or _", i, name)
		}
		if names[name] {
			return fmt.Errorf("steps[%d].name: %q used twice", i, name)
		}
		names[name] = true
		for _, c := range st.Where {
			if c.Op < SeqLT || c.Op > SeqNE {
				return fmt.Errorf("steps[%d].where: %s: unknown comparison", i, c)
			}
			for _, o := range []SeqOperand{c.Left, c.Right} {
				switch {
				case o.Field >= seqFieldEnd:
					return fmt.Errorf("steps[%d].where: %s: unknown field", i, c)
				case o.Field == SeqConst && (math.IsNaN(o.Const) || math.IsInf(o.Const, 0)):
					return fmt.Errorf("steps[%d].where: %s: not a finite constant", i, c)
				case (o.Field == SeqChangePct || o.Field == SeqRefPrice) && st.Kind != SeqMovement:
					return fmt.Errorf("steps[%d].where: %s: %s is a field of movement steps only", i, c, o)
				case o.Field == SeqIndicator:
					if err := o.Ind.validate(); err != nil {
						return fmt.Errorf("steps[%d].where: %s: %w", i, c, err)
					}
				}
			}
		}
	}
	return nil
}

// stepName is step i's name, s<i+1> when unnamed.
func (q *SequenceSpec) stepName(i int) string {
	if q.Steps[i].Name != "" {
		return q.Steps[i].Name
	}
	return "s" + strconv.Itoa(i+1)
}

// positive is the number of steps that must occur (all but an absent last).
func (q *SequenceSpec) positive() int {
	if n := len(q.Steps); n > 0 && q.Steps[n-1].Absent {
		return n - 1
	}
	return len(q.Steps)
}

// seqDetailNames: NAME_ts and NAME_price for every step that occurs, in
// step order, then "deadline" for an absence.
func (q *SequenceSpec) seqDetailNames() []string {
	var d []string
	for i := 0; i < q.positive(); i++ {
		d = append(d, q.stepName(i)+"_ts", q.stepName(i)+"_price")
	}
	if q.positive() < len(q.Steps) {
		d = append(d, "deadline")
	}
	return d
}

// DetailIsTime reports for each detail (DetailNames order) whether it is an
// event time in nanoseconds. Such a value is carried in Output.Values as the
// bits of the int64 (math.Float64frombits(uint64(ns))) so that it is exact;
// SeqDetailTime reads it back. Only sequence patterns have such details.
func (s PatternSpec) DetailIsTime() []bool {
	if s.Type == PatNewsImpact {
		return []bool{false, false, false, false, true} // news_ts
	}
	if s.Type != PatSequence {
		return nil
	}
	names := s.DetailNames()
	t := make([]bool, len(names))
	for i, n := range names {
		t[i] = n == "deadline" || i%2 == 0
	}
	return t
}

// SeqDetailTime returns the event time a time detail carries.
func SeqDetailTime(v float64) int64 { return int64(math.Float64bits(v)) }

// seqTimeValue is the Output.Values form of an event time.
func seqTimeValue(ns int64) float64 { return math.Float64frombits(uint64(ns)) }
