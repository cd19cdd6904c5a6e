package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// This file holds the pattern configuration: the specs of the built-in
// patterns, their JSON form (--patterns FILE, DESIGN.md "Patterns") and the
// names of their details. The detector is in pattern.go.

// PatternType names a built-in pattern.
type PatternType uint8

// Built-in pattern types.
const (
	PatBreakout    PatternType = iota + 1 // price_breakout (Direction up or down)
	PatVolumeSpike                        // volume_spike
	PatTechnical                          // technical_signal
	PatSequence                           // sequence (sequence_spec.go)
	PatNewsImpact                         // news_impact (pattern_news.go)
)

// String returns the type's name in the pattern file and the match line.
func (t PatternType) String() string {
	switch t {
	case PatBreakout:
		return "price_breakout"
	case PatVolumeSpike:
		return "volume_spike"
	case PatTechnical:
		return "technical_signal"
	case PatSequence:
		return "sequence"
	case PatNewsImpact:
		return "news_impact"
	}
	return "invalid"
}

// TechnicalSignal selects the cross a technical_signal pattern looks for.
type TechnicalSignal uint8

// Technical signals.
const (
	SigSMACross  TechnicalSignal = iota + 1 // SMA(fast) crosses SMA(slow)
	SigEMACross                             // EMA(fast) crosses EMA(slow)
	SigRSICross                             // RSI(period) crosses up through overbought or down through oversold
	SigVWAPCross                            // the trade price crosses the session VWAP
)

var sigNames = [...]string{"", "sma_cross", "ema_cross", "rsi_cross", "vwap_cross"}

// String returns the signal's name ("sma_cross", ...).
func (s TechnicalSignal) String() string {
	if s > 0 && int(s) < len(sigNames) {
		return sigNames[s]
	}
	return "invalid"
}

// Defaults of the optional technical_signal parameters.
const (
	DefaultRSIPeriod     = 14
	DefaultRSIOverbought = 70
	DefaultRSIOversold   = 30
)

// MaxPatterns bounds the patterns of one pipeline (Output.Op is a uint16).
const MaxPatterns = 4096

// PatternSpec is one configured pattern. Which fields apply depends on Type:
//
//   - PatBreakout: Threshold (a fraction ≥ 0: 0.02 is 2 %), TimeframeNs > 0,
//     Down for the mirrored breakdown.
//   - PatVolumeSpike: Multiplier > 0, TimeframeNs > 0 (the file's baseline).
//   - PatTechnical: Signal; Fast < Slow periods for sma_cross and ema_cross;
//     Period, Overbought and Oversold for rsi_cross.
//
// Symbols restricts the pattern to those symbol names; empty means every
// symbol.
type PatternSpec struct {
	ID          string
	Type        PatternType
	Symbols     []string
	Threshold   float64
	TimeframeNs int64
	Down        bool
	Multiplier  float64
	Signal      TechnicalSignal
	Fast, Slow  int
	Period      int
	Overbought  float64
	Oversold    float64
	Sequence    SequenceSpec // PatSequence (sequence_spec.go)
	// PatNewsImpact (pattern_news.go): Keywords (none: any article),
	// SentimentThreshold in [0, 1], Move (a fraction ≥ 0) within TimeframeNs.
	Keywords           []string
	SentimentThreshold float64
	Move               float64
}

// DetailNames returns the JSON keys of a match's details, in the order of
// Output.Values. A key "direction" holds +1 for "up" and −1 for "down".
func (s PatternSpec) DetailNames() []string {
	switch s.Type {
	case PatBreakout:
		if s.Down {
			return []string{"current_price", "historical_low", "breakdown_percentage"}
		}
		return []string{"current_price", "historical_high", "breakout_percentage"}
	case PatVolumeSpike:
		return []string{"volume", "baseline_mean", "ratio"}
	case PatTechnical:
		switch s.Signal {
		case SigSMACross, SigEMACross:
			return []string{"direction", "fast", "slow", "previous_fast", "previous_slow"}
		case SigRSICross:
			return []string{"direction", "rsi", "previous_rsi", "level"}
		case SigVWAPCross:
			return []string{"direction", "price", "vwap", "previous_price", "previous_vwap"}
		}
	case PatSequence:
		return s.Sequence.seqDetailNames()
	case PatNewsImpact:
		return []string{"sentiment", "reference_price", "current_price", "move_percentage", "news_ts"}
	}
	return nil
}

// ErrPatternSpec is wrapped by every error of ParsePatterns and of a
// pipeline refusing a pattern; the message names the pattern and the field.
var ErrPatternSpec = errors.New("ops: bad pattern spec")

// patternJSON is the file form of one pattern. Durations are Go duration
// strings ("5m", "30s"); absent numbers are nil so that defaults and
// "missing" can be told apart.
type patternJSON struct {
	ID                 string   `json:"id"`
	Type               string   `json:"type"`
	Symbols            []string `json:"symbols"`
	Threshold          *float64 `json:"threshold"`
	Timeframe          *string  `json:"timeframe"`
	Direction          *string  `json:"direction"`
	Multiplier         *float64 `json:"multiplier"`
	Baseline           *string  `json:"baseline"`
	Signal             *string  `json:"signal"`
	Fast               *int     `json:"fast"`
	Slow               *int     `json:"slow"`
	Period             *int     `json:"period"`
	Overbought         *float64 `json:"overbought"`
	Oversold           *float64 `json:"oversold"`
	Keywords           any      `json:"keywords"`
	SentimentThreshold any      `json:"sentiment_threshold"`
	Move               any      `json:"move"`
	Steps              any      `json:"steps"`
	Within             any      `json:"within"`
}

// ParsePatterns reads a pattern file: a JSON array of objects, each with an
// "id", a "type" and the type's parameters (DESIGN.md "Patterns"):
//
//	[{"id":"btc_up","type":"price_breakout","threshold":0.02,"timeframe":"5m","symbols":["BTCUSDT"]},
//	 {"id":"btc_dn","type":"price_breakout","direction":"down","threshold":0.02,"timeframe":"5m"},
//	 {"id":"vol","type":"volume_spike","multiplier":3,"baseline":"1m"},
//	 {"id":"golden","type":"technical_signal","signal":"sma_cross","fast":5,"slow":20},
//	 {"id":"rsi","type":"technical_signal","signal":"rsi_cross","period":14,"overbought":70,"oversold":30},
//	 {"id":"vwap","type":"technical_signal","signal":"vwap_cross"}]
//
// Unknown fields, a parameter of another type, missing or out-of-range
// values and duplicate ids are errors that name the pattern (its id, or its
// position) and the field; they wrap ErrPatternSpec. ParsePatternsFile
// (pattern_yaml.go) reads YAML files through it. Sequence patterns are read
// by parseSequenceJSON (sequence_spec.go), news_impact ones by
// newsImpactSpec (pattern_news.go):
//
//	{"id":"earn","type":"news_impact","keywords":["earnings","guidance"],
//	 "sentiment_threshold":0.3,"timeframe":"15m","move":0.01}
func ParsePatterns(data []byte) ([]PatternSpec, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("%w: the file must be a JSON array of pattern objects: %w", ErrPatternSpec, err)
	}
	if len(raws) > MaxPatterns {
		return nil, fmt.Errorf("%w: %d patterns, at most %d", ErrPatternSpec, len(raws), MaxPatterns)
	}
	specs := make([]PatternSpec, 0, len(raws))
	ids := make(map[string]int, len(raws))
	for i, raw := range raws {
		if isSequenceJSON(raw) { // sequence_spec.go
			spec, err := parseSequenceJSON(raw)
			if err != nil {
				name := fmt.Sprintf("#%d", i+1)
				if spec.ID != "" {
					name = fmt.Sprintf("%q (#%d)", spec.ID, i+1)
				}
				return nil, fmt.Errorf("%w: pattern %s: %w", ErrPatternSpec, name, err)
			}
			if j, dup := ids[spec.ID]; dup {
				return nil, fmt.Errorf("%w: pattern %q (#%d): id: already used by pattern #%d", ErrPatternSpec, spec.ID, i+1, j+1)
			}
			ids[spec.ID] = i
			specs = append(specs, spec)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var pj patternJSON
		if err := dec.Decode(&pj); err != nil {
			name := fmt.Sprintf("#%d", i+1)
			var probe struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &probe) == nil && probe.ID != "" {
				name = fmt.Sprintf("%q (#%d)", probe.ID, i+1)
			}
			return nil, fmt.Errorf("%w: pattern %s: %w", ErrPatternSpec, name, err)
		}
		spec, err := pj.spec()
		if err != nil {
			name := fmt.Sprintf("#%d", i+1)
			if pj.ID != "" {
				name = fmt.Sprintf("%q (#%d)", pj.ID, i+1)
			}
			return nil, fmt.Errorf("%w: pattern %s: %w", ErrPatternSpec, name, err)
		}
		if j, dup := ids[spec.ID]; dup {
			return nil, fmt.Errorf("%w: pattern %q (#%d): id: already used by pattern #%d", ErrPatternSpec, spec.ID, i+1, j+1)
		}
		ids[spec.ID] = i
		specs = append(specs, spec)
	}
	return specs, nil
}

// spec validates one decoded pattern. Errors start with the field's name.
func (pj *patternJSON) spec() (PatternSpec, error) {
	s := PatternSpec{ID: pj.ID, Symbols: pj.Symbols}
	if pj.ID == "" {
		return s, errors.New("id: missing or empty")
	}
	if len(pj.ID) > 256 {
		return s, errors.New("id: longer than 256 bytes")
	}
	for _, sym := range pj.Symbols {
		if sym == "" || len(sym) > 64 {
			return s, fmt.Errorf("symbols: %q is not a symbol name (1..64 bytes)", sym)
		}
	}
	if pj.Symbols != nil && len(pj.Symbols) == 0 {
		return s, errors.New("symbols: empty list (leave the field out for every symbol)")
	}
	// allowed lists the parameters of the type; any other one present is an
	// error naming it.
	present := map[string]bool{
		"threshold": pj.Threshold != nil, "timeframe": pj.Timeframe != nil, "direction": pj.Direction != nil,
		"multiplier": pj.Multiplier != nil, "baseline": pj.Baseline != nil, "signal": pj.Signal != nil,
		"fast": pj.Fast != nil, "slow": pj.Slow != nil, "period": pj.Period != nil,
		"overbought": pj.Overbought != nil, "oversold": pj.Oversold != nil,
	}
	only := func(allowed ...string) error {
		for _, f := range []string{"threshold", "timeframe", "direction", "multiplier", "baseline", "signal", "fast", "slow", "period", "overbought", "oversold"} {
			if present[f] && !contains(allowed, f) {
				return fmt.Errorf("%s: not a parameter of %s", f, pj.Type)
			}
		}
		return nil
	}
	switch pj.Type {
	case "price_breakout":
		s.Type = PatBreakout
		if err := only("threshold", "timeframe", "direction"); err != nil {
			return s, err
		}
		if pj.Threshold == nil {
			return s, errors.New("threshold: missing (a fraction: 0.02 is 2%)")
		}
		if t := *pj.Threshold; !(t >= 0) || t > 1e6 || math.IsInf(t, 0) {
			return s, fmt.Errorf("threshold: %v outside 0..1e6", t)
		}
		s.Threshold = *pj.Threshold
		d, err := patDuration("timeframe", pj.Timeframe)
		if err != nil {
			return s, err
		}
		s.TimeframeNs = d
		if pj.Direction != nil {
			switch *pj.Direction {
			case "up":
			case "down":
				s.Down = true
			default:
				return s, fmt.Errorf("direction: %q is not up or down", *pj.Direction)
			}
		}
	case "volume_spike":
		s.Type = PatVolumeSpike
		if err := only("multiplier", "baseline"); err != nil {
			return s, err
		}
		if pj.Multiplier == nil {
			return s, errors.New("multiplier: missing")
		}
		if m := *pj.Multiplier; !(m > 0) || m > 1e12 {
			return s, fmt.Errorf("multiplier: %v outside (0, 1e12]", m)
		}
		s.Multiplier = *pj.Multiplier
		d, err := patDuration("baseline", pj.Baseline)
		if err != nil {
			return s, err
		}
		s.TimeframeNs = d
	case "technical_signal":
		s.Type = PatTechnical
		if pj.Signal == nil {
			return s, errors.New("signal: missing (sma_cross, ema_cross, rsi_cross or vwap_cross)")
		}
		switch *pj.Signal {
		case "sma_cross", "ema_cross":
			s.Signal = SigSMACross
			if *pj.Signal == "ema_cross" {
				s.Signal = SigEMACross
			}
			if err := only("signal", "fast", "slow"); err != nil {
				return s, err
			}
			if pj.Fast == nil || pj.Slow == nil {
				return s, fmt.Errorf("%s: fast and slow periods are required", map[bool]string{true: "fast", false: "slow"}[pj.Fast == nil])
			}
			s.Fast, s.Slow = *pj.Fast, *pj.Slow
			if s.Fast < 1 || s.Fast > MaxIndicatorPeriod {
				return s, fmt.Errorf("fast: %d outside 1..%d", s.Fast, MaxIndicatorPeriod)
			}
			if s.Slow <= s.Fast || s.Slow > MaxIndicatorPeriod {
				return s, fmt.Errorf("slow: %d must be greater than fast (%d) and at most %d", s.Slow, s.Fast, MaxIndicatorPeriod)
			}
		case "rsi_cross":
			s.Signal = SigRSICross
			if err := only("signal", "period", "overbought", "oversold"); err != nil {
				return s, err
			}
			s.Period, s.Overbought, s.Oversold = DefaultRSIPeriod, DefaultRSIOverbought, DefaultRSIOversold
			if pj.Period != nil {
				s.Period = *pj.Period
			}
			if pj.Overbought != nil {
				s.Overbought = *pj.Overbought
			}
			if pj.Oversold != nil {
				s.Oversold = *pj.Oversold
			}
			if s.Period < 1 || s.Period > MaxIndicatorPeriod {
				return s, fmt.Errorf("period: %d outside 1..%d", s.Period, MaxIndicatorPeriod)
			}
			if !(s.Overbought > 0 && s.Overbought < 100) {
				return s, fmt.Errorf("overbought: %v outside (0, 100)", s.Overbought)
			}
			if !(s.Oversold > 0 && s.Oversold < s.Overbought) {
				return s, fmt.Errorf("oversold: %v must be in (0, overbought %v)", s.Oversold, s.Overbought)
			}
		case "vwap_cross":
			s.Signal = SigVWAPCross
			if err := only("signal"); err != nil {
				return s, err
			}
		default:
			return s, fmt.Errorf("signal: %q is not sma_cross, ema_cross, rsi_cross or vwap_cross", *pj.Signal)
		}
	case "news_impact":
		return newsImpactSpec(s, pj, only)
	case "":
		return s, errors.New("type: missing")
	default:
		return s, fmt.Errorf("type: %q is not price_breakout, volume_spike, technical_signal, news_impact or sequence", pj.Type)
	}
	if pj.Keywords != nil || pj.SentimentThreshold != nil || pj.Move != nil || pj.Steps != nil || pj.Within != nil {
		return s, fmt.Errorf("keywords/sentiment_threshold/move/steps/within: not parameters of %s", pj.Type)
	}
	return s, nil
}

// patDuration reads a positive Go duration string (a timeframe or baseline).
func patDuration(field string, v *string) (int64, error) {
	if v == nil {
		return 0, fmt.Errorf("%s: missing (a duration such as \"5m\")", field)
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration such as \"5m\" or \"30s\"", field, *v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: %s must be positive", field, *v)
	}
	return int64(d), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validate checks a spec built in Go (not through ParsePatterns) with the
// same rules, so the pipeline never runs a pattern the file would refuse.
func (s PatternSpec) validate() error {
	if s.ID == "" {
		return errors.New("id: empty")
	}
	switch s.Type {
	case PatBreakout:
		if !(s.Threshold >= 0) || s.Threshold > 1e6 {
			return fmt.Errorf("threshold: %v outside 0..1e6", s.Threshold)
		}
	case PatVolumeSpike:
		if !(s.Multiplier > 0) || s.Multiplier > 1e12 {
			return fmt.Errorf("multiplier: %v outside (0, 1e12]", s.Multiplier)
		}
	case PatTechnical:
		switch s.Signal {
		case SigSMACross, SigEMACross:
			if s.Fast < 1 || s.Slow <= s.Fast || s.Slow > MaxIndicatorPeriod {
				return fmt.Errorf("fast/slow: %d/%d, want 1 <= fast < slow <= %d", s.Fast, s.Slow, MaxIndicatorPeriod)
			}
		case SigRSICross:
			if s.Period < 1 || s.Period > MaxIndicatorPeriod || !(s.Oversold > 0 && s.Oversold < s.Overbought && s.Overbought < 100) {
				return fmt.Errorf("period/oversold/overbought: %d/%v/%v out of range", s.Period, s.Oversold, s.Overbought)
			}
		case SigVWAPCross:
		default:
			return fmt.Errorf("signal: %d unknown", s.Signal)
		}
		return nil
	case PatSequence:
		return s.Sequence.validate()
	default:
		return fmt.Errorf("type: %d unknown", s.Type)
	}
	if s.TimeframeNs <= 0 {
		return fmt.Errorf("timeframe: %d ns, want > 0", s.TimeframeNs)
	}
	return nil
}
