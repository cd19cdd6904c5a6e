package ops

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// This file holds the indicator configuration: kinds, specs, their textual
// form ("sma:5,ema:12,rsi:14,vwap,vwap:14") and the options shared by a set.
// The state machines are in indicator_set.go, the checkpoint encoding in
// indicator_state.go.

// IndicatorKind names an incremental price indicator. The zero value is
// invalid so that a spec that was never filled in is rejected.
type IndicatorKind uint8

// Indicator kinds. Definitions follow TA-Lib's default (classic) mode; see
// IndicatorSet for the exact formulas and warm-up lengths.
const (
	IndSMA   IndicatorKind = iota + 1 // simple moving average of the last n prices
	IndEMA                            // exponential moving average, k = 2/(n+1)
	IndRSI                            // Wilder's relative strength index
	IndVWAP                           // session VWAP: Σ price·volume / Σ volume since the session start
	IndVWAPN                          // rolling VWAP over the last n trades
	indKindEnd
)

var indKindNames = [indKindEnd]string{"", "sma", "ema", "rsi", "vwap", "vwap"}

// String returns the kind's name as used in specs ("sma", "vwap"), or
// "invalid".
func (k IndicatorKind) String() string {
	if k > 0 && k < indKindEnd {
		return indKindNames[k]
	}
	return "invalid"
}

// MaxIndicatorPeriod bounds an indicator's period. State is kept per symbol
// and SMA(n) and vwap:n hold a ring of n values, so the bound is also a
// memory bound (see IndicatorStateBytes).
const MaxIndicatorPeriod = 100000

// DefaultIndicators is the indicator list used when none is configured.
const DefaultIndicators = "sma:5,sma:20,ema:12,rsi:14,vwap"

// ErrIndicatorSpec is wrapped by every error of ParseIndicators,
// NewIndicatorSet and ParseEMASeed about a bad indicator list, period or
// option. The message names the offending item.
var ErrIndicatorSpec = errors.New("ops: bad indicator spec")

// IndicatorSpec is one configured indicator. Period is the number of inputs
// (trades) the indicator looks at; it is 0 for the session VWAP (IndVWAP) and
// 1..MaxIndicatorPeriod for every other kind.
type IndicatorSpec struct {
	Kind   IndicatorKind
	Period int
}

// Name returns the indicator's JSON key: "sma_5", "ema_12", "rsi_14",
// "vwap" (session) or "vwap_14" (rolling). It allocates; callers on a hot
// path compute the names once at start-up or use AppendName.
func (s IndicatorSpec) Name() string { return string(s.AppendName(nil)) }

// AppendName appends the indicator's JSON key (see Name) to dst.
func (s IndicatorSpec) AppendName(dst []byte) []byte {
	dst = append(dst, s.Kind.String()...)
	if s.Kind == IndVWAP {
		return dst
	}
	dst = append(dst, '_')
	return strconv.AppendInt(dst, int64(s.Period), 10)
}

// String returns the spec in the form ParseIndicators reads: "sma:5",
// "vwap", "vwap:14".
func (s IndicatorSpec) String() string {
	if s.Kind == IndVWAP {
		return "vwap"
	}
	return s.Kind.String() + ":" + strconv.Itoa(s.Period)
}

// validate checks the kind and the period range.
func (s IndicatorSpec) validate() error {
	switch s.Kind {
	case IndVWAP:
		if s.Period != 0 {
			return fmt.Errorf("%w: %q: the session vwap takes no period (use vwap:N for a rolling one)", ErrIndicatorSpec, s.String())
		}
	case IndSMA, IndEMA, IndRSI, IndVWAPN:
		if s.Period < 1 || s.Period > MaxIndicatorPeriod {
			return fmt.Errorf("%w: %s: period %d out of range 1..%d", ErrIndicatorSpec, s.Kind, s.Period, MaxIndicatorPeriod)
		}
	default:
		return fmt.Errorf("%w: unknown indicator kind %d", ErrIndicatorSpec, s.Kind)
	}
	return nil
}

// indValidateSpecs checks a whole list: 1..MaxValues valid specs, no duplicates.
func indValidateSpecs(specs []IndicatorSpec) error {
	if len(specs) == 0 {
		return fmt.Errorf("%w: no indicators", ErrIndicatorSpec)
	}
	if len(specs) > MaxValues {
		return fmt.Errorf("%w: %d indicators, at most %d", ErrIndicatorSpec, len(specs), MaxValues)
	}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return err
		}
		for _, p := range specs[:i] {
			if p == s {
				return fmt.Errorf("%w: %q: duplicate", ErrIndicatorSpec, s.String())
			}
		}
	}
	return nil
}

// ParseIndicators parses a comma-separated indicator list such as
// "sma:5,sma:20,ema:12,rsi:14,vwap,vwap:14". Items are "sma:N", "ema:N",
// "rsi:N", "vwap" (session VWAP) and "vwap:N" (rolling VWAP over N trades),
// with N a decimal 1..MaxIndicatorPeriod; blanks around items are ignored.
// The list holds 1..MaxValues items without duplicates. Errors wrap
// ErrIndicatorSpec and quote the bad item.
func ParseIndicators(s string) ([]IndicatorSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty indicator list", ErrIndicatorSpec)
	}
	n := strings.Count(s, ",") + 1
	if n > MaxValues {
		return nil, fmt.Errorf("%w: %d indicators, at most %d", ErrIndicatorSpec, n, MaxValues)
	}
	specs := make([]IndicatorSpec, 0, n)
	for item := range strings.SplitSeq(s, ",") {
		spec, err := indParseItem(strings.TrimSpace(item))
		if err != nil {
			return nil, err
		}
		for _, p := range specs {
			if p == spec {
				return nil, fmt.Errorf("%w: %q: duplicate", ErrIndicatorSpec, item)
			}
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// indParseItem parses one item of ParseIndicators.
func indParseItem(item string) (IndicatorSpec, error) {
	name, arg, hasArg := strings.Cut(item, ":")
	var kind IndicatorKind
	switch name {
	case "sma":
		kind = IndSMA
	case "ema":
		kind = IndEMA
	case "rsi":
		kind = IndRSI
	case "vwap":
		if !hasArg {
			return IndicatorSpec{Kind: IndVWAP}, nil
		}
		kind = IndVWAPN
	case "":
		return IndicatorSpec{}, fmt.Errorf("%w: empty item in indicator list", ErrIndicatorSpec)
	default:
		return IndicatorSpec{}, fmt.Errorf("%w: %q: unknown indicator (want sma:N, ema:N, rsi:N, vwap or vwap:N)", ErrIndicatorSpec, item)
	}
	if !hasArg {
		return IndicatorSpec{}, fmt.Errorf("%w: %q: missing period (want %s:N)", ErrIndicatorSpec, item, name)
	}
	period, ok := indParsePeriod(arg)
	if !ok {
		return IndicatorSpec{}, fmt.Errorf("%w: %q: period must be an integer 1..%d", ErrIndicatorSpec, item, MaxIndicatorPeriod)
	}
	return IndicatorSpec{Kind: kind, Period: period}, nil
}

// indParsePeriod reads 1..MaxIndicatorPeriod written as plain decimal digits
// (no sign, no blanks).
func indParsePeriod(s string) (int, bool) {
	if len(s) == 0 || len(s) > 7 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 1 && n <= MaxIndicatorPeriod
}

// EMASeed selects how an EMA starts.
type EMASeed uint8

// EMA seeds.
const (
	// EMASeedSMA (the default, TA-Lib's): the first EMA(n) value is the SMA
	// of the first n inputs, emitted at the n-th input.
	EMASeedSMA EMASeed = iota
	// EMASeedFirst (MetaStock's and Tulip's): the EMA starts at the first
	// input, which is also its first value.
	EMASeedFirst
)

// String returns "sma" or "first", the form ParseEMASeed reads.
func (e EMASeed) String() string {
	switch e {
	case EMASeedSMA:
		return "sma"
	case EMASeedFirst:
		return "first"
	}
	return "invalid"
}

// ParseEMASeed parses "sma" or "first" (the --ema-seed flag).
func ParseEMASeed(s string) (EMASeed, error) {
	switch s {
	case "sma":
		return EMASeedSMA, nil
	case "first":
		return EMASeedFirst, nil
	}
	return 0, fmt.Errorf("%w: ema seed %q: want sma or first", ErrIndicatorSpec, s)
}

// DefaultSessionLengthNs is the session length used when
// IndicatorOptions.SessionLengthNs is 0: one day.
const DefaultSessionLengthNs = 24 * 60 * 60 * 1_000_000_000

// MaxSessionLengthNs bounds IndicatorOptions.SessionLengthNs (2^62 ns, about
// 146 years) so that session arithmetic cannot overflow.
const MaxSessionLengthNs = 1 << 62

// IndicatorOptions configure an IndicatorSet. The zero value is the default:
// EMA seeded with the SMA, daily sessions starting at UTC midnight.
type IndicatorOptions struct {
	EMASeed EMASeed
	// SessionLengthNs is the session VWAP's session length; 0 means
	// DefaultSessionLengthNs. Sessions are [OffsetNs + k·LengthNs,
	// OffsetNs + (k+1)·LengthNs) for integer k, in event time (ns since the
	// Unix epoch, UTC).
	SessionLengthNs int64
	// SessionOffsetNs shifts the session boundaries from the epoch (UTC
	// midnight for daily sessions): 13h30m with 24h sessions starts each
	// session at 13:30 UTC. It is taken modulo the session length and may be
	// negative.
	SessionOffsetNs int64
}

// normalize returns o with defaults filled in and the offset reduced to
// [0, SessionLengthNs), or an error for an unknown seed or a session length
// out of range.
func (o IndicatorOptions) normalize() (IndicatorOptions, error) {
	if o.EMASeed != EMASeedSMA && o.EMASeed != EMASeedFirst {
		return o, fmt.Errorf("%w: ema seed %d unknown", ErrIndicatorSpec, o.EMASeed)
	}
	if o.SessionLengthNs == 0 {
		o.SessionLengthNs = DefaultSessionLengthNs
	}
	if o.SessionLengthNs < 0 || o.SessionLengthNs > MaxSessionLengthNs {
		return o, fmt.Errorf("%w: session length %d ns out of range 1..2^62", ErrIndicatorSpec, o.SessionLengthNs)
	}
	o.SessionOffsetNs %= o.SessionLengthNs
	if o.SessionOffsetNs < 0 {
		o.SessionOffsetNs += o.SessionLengthNs
	}
	return o, nil
}
