package ops

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WindowType is the kind of an event-time window (the specification's
// WindowType).
type WindowType uint8

// Window types. The zero value is invalid.
const (
	// WindowTumbling: [k·SIZE+OFFSET, (k+1)·SIZE+OFFSET), aligned to the epoch.
	WindowTumbling WindowType = iota + 1
	// WindowHopping: [k·HOP+OFFSET, k·HOP+OFFSET+SIZE), Flink's sliding
	// event-time windows and Kafka's hopping windows.
	WindowHopping
	// WindowSliding: the trailing window (t−SIZE, t] evaluated at trades.
	WindowSliding
	// WindowSession: trades less than GAP apart; merges when a late trade
	// bridges two sessions.
	WindowSession
	// WindowCount: every N trades of a symbol in arrival order.
	WindowCount
)

var winTypeNames = [...]string{"", "tumbling", "hopping", "sliding", "session", "count"}

func (t WindowType) String() string {
	if int(t) < len(winTypeNames) && t != 0 {
		return winTypeNames[t]
	}
	return "invalid"
}

// Field selects the number of a trade that a window aggregates.
type Field uint8

// Fields. Bid, ask, spread (ask−bid) and mid ((bid+ask)/2) need the trade
// to carry them (codec.FlagHasBid / FlagHasAsk); a trade without them is
// skipped by the window and counted in WindowCounters.MissingField.
const (
	FieldPrice Field = iota
	FieldVolume
	FieldBid
	FieldAsk
	FieldSpread
	FieldMid
)

var winFieldNames = [...]string{"price", "volume", "bid", "ask", "spread", "mid"}

func (f Field) String() string {
	if int(f) < len(winFieldNames) {
		return winFieldNames[f]
	}
	return "invalid"
}

// ParseField parses a FIELD of a window spec.
func ParseField(s string) (Field, error) {
	for i, n := range winFieldNames {
		if s == n {
			return Field(i), nil
		}
	}
	return 0, fmt.Errorf("ops: unknown field %q (want price, volume, bid, ask, spread or mid)", s)
}

// Limits of window specs.
const (
	// MaxWindowSpecs bounds the specs of one ParseWindowSpecs call.
	MaxWindowSpecs = 64
	// MaxWindowSpanNs bounds sizes, hops, slides, gaps and offsets: 366 days.
	MaxWindowSpanNs = 366 * 24 * int64(time.Hour)
	// MaxCountWindow bounds N of count:N.
	MaxCountWindow = 1 << 20
	// MaxWindowSpecLen bounds the text of one spec.
	MaxWindowSpecLen = 256
)

// ErrBadWindowSpec is wrapped by every error of ParseWindowSpecs and
// NewWindowSpec; the message names the offending item.
var ErrBadWindowSpec = errors.New("ops: bad window spec")

// WindowSpec is one parsed `TYPE:PARAMS:AGG[:FIELD]` item of --windows
// (DESIGN.md, "Replay and emit"):
//
//	tumbling:SIZE[+OFFSET]:AGG        hopping:SIZE/HOP[+OFFSET]:AGG
//	sliding:SIZE[/SLIDE]:AGG          session:GAP:AGG          count:N:AGG
//
// Durations are a positive integer or decimal with a unit (ns, us, µs, ms,
// s, m, h, d), or a Go duration such as 1m30s. OFFSET shifts the epoch
// alignment of tumbling and hopping windows (0 <= OFFSET < HOP). FIELD is
// price (default), volume, bid, ask, spread or mid.
type WindowSpec struct {
	Type WindowType
	// SizeNs is SIZE for tumbling, hopping and sliding windows and GAP for
	// session windows; 0 for count windows.
	SizeNs int64
	// HopNs is HOP for hopping windows, SLIDE for sliding windows (0: every
	// distinct trade time), SIZE for tumbling windows and 0 otherwise.
	HopNs int64
	// OffsetNs aligns tumbling and hopping windows: starts are k·HOP+OffsetNs.
	OffsetNs int64
	// Count is N for count windows.
	Count int64
	Agg   Aggregation
	Field Field
	// Raw is the user's text of this item; String returns it.
	Raw string
}

// String returns the user's spec text exactly (the "window" value of an
// emitted line), or a canonical rendering for a spec built in code.
func (s WindowSpec) String() string {
	if s.Raw != "" {
		return s.Raw
	}
	return s.canonical()
}

// ValueIsObject reports whether results of this spec carry an object
// (ohlcv: Output.Values[0:5] = open, high, low, close, volume) rather than
// the single number Output.Value.
func (s WindowSpec) ValueIsObject() bool { return s.Agg.Kind == AggOHLCV }

// GapNs is the session gap (SizeNs) of a session window.
func (s WindowSpec) GapNs() int64 {
	if s.Type == WindowSession {
		return s.SizeNs
	}
	return 0
}

func (s WindowSpec) canonical() string {
	var b strings.Builder
	b.WriteString(s.Type.String())
	b.WriteByte(':')
	switch s.Type {
	case WindowCount:
		b.WriteString(strconv.FormatInt(s.Count, 10))
	case WindowHopping:
		b.WriteString(FormatWindowDuration(s.SizeNs))
		b.WriteByte('/')
		b.WriteString(FormatWindowDuration(s.HopNs))
	case WindowSliding:
		b.WriteString(FormatWindowDuration(s.SizeNs))
		if s.HopNs > 0 {
			b.WriteByte('/')
			b.WriteString(FormatWindowDuration(s.HopNs))
		}
	default:
		b.WriteString(FormatWindowDuration(s.SizeNs))
	}
	if s.OffsetNs != 0 {
		b.WriteByte('+')
		b.WriteString(FormatWindowDuration(s.OffsetNs))
	}
	b.WriteByte(':')
	b.WriteString(s.Agg.String())
	if s.Field != FieldPrice {
		b.WriteByte(':')
		b.WriteString(s.Field.String())
	}
	return b.String()
}

// NewWindowSpec builds and validates a spec in code (the engine's
// CreateTumblingWindow and friends). For WindowCount, sizeNs is N. hopNs is
// HOP (hopping), SLIDE (sliding, 0 = every trade time) and ignored otherwise.
// Raw is set to the canonical text, which ParseWindowSpecs accepts.
func NewWindowSpec(t WindowType, sizeNs, hopNs, offsetNs int64, agg Aggregation, field Field) (WindowSpec, error) {
	s := WindowSpec{Type: t, Agg: agg, Field: field, OffsetNs: offsetNs}
	switch t {
	case WindowTumbling:
		s.SizeNs, s.HopNs = sizeNs, sizeNs
	case WindowHopping, WindowSliding:
		s.SizeNs, s.HopNs = sizeNs, hopNs
	case WindowSession:
		s.SizeNs = sizeNs
	case WindowCount:
		s.Count = sizeNs
	}
	if err := s.validate(); err != nil {
		return WindowSpec{}, fmt.Errorf("%w %q: %v", ErrBadWindowSpec, s.canonical(), err)
	}
	s.Raw = s.canonical()
	return s, nil
}

// TumblingWindowSpec is NewWindowSpec for a tumbling window aligned to the epoch.
func TumblingWindowSpec(sizeNs int64, agg Aggregation, field Field) (WindowSpec, error) {
	return NewWindowSpec(WindowTumbling, sizeNs, 0, 0, agg, field)
}

// HoppingWindowSpec is NewWindowSpec for a hopping window aligned to the epoch.
func HoppingWindowSpec(sizeNs, hopNs int64, agg Aggregation, field Field) (WindowSpec, error) {
	return NewWindowSpec(WindowHopping, sizeNs, hopNs, 0, agg, field)
}

// SlidingWindowSpec is NewWindowSpec for a trailing window (slideNs 0: every trade time).
func SlidingWindowSpec(sizeNs, slideNs int64, agg Aggregation, field Field) (WindowSpec, error) {
	return NewWindowSpec(WindowSliding, sizeNs, slideNs, 0, agg, field)
}

// SessionWindowSpec is NewWindowSpec for a session window.
func SessionWindowSpec(gapNs int64, agg Aggregation, field Field) (WindowSpec, error) {
	return NewWindowSpec(WindowSession, gapNs, 0, 0, agg, field)
}

// CountWindowSpec is NewWindowSpec for a count window of n trades.
func CountWindowSpec(n int64, agg Aggregation, field Field) (WindowSpec, error) {
	return NewWindowSpec(WindowCount, n, 0, 0, agg, field)
}

func (s WindowSpec) validate() error {
	span := func(name string, v int64, zeroOK bool) error {
		if v < 0 || (v == 0 && !zeroOK) || v > MaxWindowSpanNs {
			return fmt.Errorf("%s %d ns outside 1ns..366d", name, v)
		}
		return nil
	}
	switch s.Type {
	case WindowTumbling:
		if err := span("size", s.SizeNs, false); err != nil {
			return err
		}
		if s.HopNs != s.SizeNs {
			return errors.New("tumbling hop must equal size")
		}
	case WindowHopping:
		if err := span("size", s.SizeNs, false); err != nil {
			return err
		}
		if err := span("hop", s.HopNs, false); err != nil {
			return err
		}
	case WindowSliding:
		if err := span("size", s.SizeNs, false); err != nil {
			return err
		}
		if err := span("slide", s.HopNs, true); err != nil {
			return err
		}
	case WindowSession:
		if err := span("gap", s.SizeNs, false); err != nil {
			return err
		}
	case WindowCount:
		if s.Count < 1 || s.Count > MaxCountWindow {
			return fmt.Errorf("count %d outside 1..%d", s.Count, MaxCountWindow)
		}
	default:
		return errors.New("unknown window type")
	}
	if s.OffsetNs != 0 {
		if s.Type != WindowTumbling && s.Type != WindowHopping {
			return errors.New("an offset applies to tumbling and hopping windows only")
		}
		if s.OffsetNs < 0 || s.OffsetNs >= s.HopNs {
			return errors.New("offset must be in [0, hop)")
		}
	}
	if s.Field > FieldMid {
		return errors.New("unknown field")
	}
	return s.Agg.validate()
}

// ParseWindowSpecs parses the --windows value: SPEC[,SPEC...], each
// `TYPE:PARAMS:AGG[:FIELD]`. Commas inside a custom aggregation's
// parentheses do not split. An empty string yields no specs. Errors wrap
// ErrBadWindowSpec and name the bad item; duplicates are rejected because
// their output lines would be indistinguishable.
func ParseWindowSpecs(s string) ([]WindowSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []WindowSpec
	depth, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '(':
				depth++
				continue
			case ')':
				depth--
				continue
			case ',':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		item := strings.TrimSpace(s[start:i])
		start = i + 1
		if len(out) == MaxWindowSpecs {
			return nil, fmt.Errorf("%w: more than %d specs", ErrBadWindowSpec, MaxWindowSpecs)
		}
		spec, err := ParseWindowSpec(item)
		if err != nil {
			return nil, err
		}
		for _, prev := range out {
			if prev.Raw == spec.Raw {
				return nil, fmt.Errorf("%w %q: duplicate", ErrBadWindowSpec, item)
			}
		}
		out = append(out, spec)
	}
	return out, nil
}

// ParseWindowSpec parses one `TYPE:PARAMS:AGG[:FIELD]` item.
func ParseWindowSpec(item string) (WindowSpec, error) {
	bad := func(format string, args ...any) (WindowSpec, error) {
		return WindowSpec{}, fmt.Errorf("%w %q: %s", ErrBadWindowSpec, item, fmt.Sprintf(format, args...))
	}
	if item == "" {
		return bad("empty item")
	}
	if len(item) > MaxWindowSpecLen {
		return bad("longer than %d bytes", MaxWindowSpecLen)
	}
	parts := winSplitColons(item)
	if len(parts) < 3 || len(parts) > 4 {
		return bad("want TYPE:PARAMS:AGG[:FIELD]")
	}
	s := WindowSpec{Raw: item}
	switch parts[0] {
	case "tumbling":
		s.Type = WindowTumbling
	case "hopping":
		s.Type = WindowHopping
	case "sliding":
		s.Type = WindowSliding
	case "session":
		s.Type = WindowSession
	case "count":
		s.Type = WindowCount
	default:
		return bad("unknown window type %q (want tumbling, hopping, sliding, session or count)", parts[0])
	}
	params := parts[1]
	if s.Type == WindowTumbling || s.Type == WindowHopping {
		if i := strings.IndexByte(params, '+'); i >= 0 {
			off, err := ParseWindowDuration(params[i+1:], true)
			if err != nil {
				return bad("offset: %v", err)
			}
			s.OffsetNs = off
			params = params[:i]
		}
	}
	var err error
	switch s.Type {
	case WindowTumbling:
		if s.SizeNs, err = winDur("size", params, false); err != nil {
			return bad("%v", err)
		}
		s.HopNs = s.SizeNs
	case WindowHopping:
		size, hop, found := strings.Cut(params, "/")
		if !found {
			return bad("hopping wants SIZE/HOP")
		}
		if s.SizeNs, err = winDur("size", size, false); err != nil {
			return bad("%v", err)
		}
		if s.HopNs, err = winDur("hop", hop, false); err != nil {
			return bad("%v", err)
		}
	case WindowSliding:
		size, slide, found := strings.Cut(params, "/")
		if s.SizeNs, err = winDur("size", size, false); err != nil {
			return bad("%v", err)
		}
		if found {
			if s.HopNs, err = winDur("slide", slide, false); err != nil {
				return bad("%v", err)
			}
		}
	case WindowSession:
		if s.SizeNs, err = winDur("gap", params, false); err != nil {
			return bad("%v", err)
		}
	case WindowCount:
		n, perr := strconv.ParseInt(params, 10, 64)
		if perr != nil || n < 1 || n > MaxCountWindow {
			return bad("count %q: want an integer in 1..%d", params, MaxCountWindow)
		}
		s.Count = n
	}
	agg, err := ParseAggregation(parts[2])
	if err != nil {
		return bad("%v", err)
	}
	s.Agg = agg
	if len(parts) == 4 {
		f, err := ParseField(parts[3])
		if err != nil {
			return bad("%v", err)
		}
		s.Field = f
	}
	if err := s.validate(); err != nil {
		return bad("%v", err)
	}
	return s, nil
}

func winDur(name, v string, zeroOK bool) (int64, error) {
	d, err := ParseWindowDuration(v, zeroOK)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

// winSplitColons splits on ':' outside parentheses.
func winSplitColons(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ':':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// ParseWindowDuration parses a window duration: "250ms", "1s", "1m", "1h",
// "2d", "1m30s", "1.5s", "100us". The result must be in 1ns..366d (or 0 when
// zeroOK). A bare number is rejected: the unit is part of the contract.
func ParseWindowDuration(s string, zeroOK bool) (int64, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if !winHasUnit(s) {
		return 0, fmt.Errorf("bad duration %q: missing unit", s)
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	var ns int64
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
		if err != nil || n < 0 || n > MaxWindowSpanNs/(24*int64(time.Hour)) {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		ns = n * 24 * int64(time.Hour)
	} else {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		ns = int64(d)
	}
	if ns < 0 || ns > MaxWindowSpanNs || (ns == 0 && !zeroOK) {
		return 0, fmt.Errorf("duration %q outside 1ns..366d", s)
	}
	return ns, nil
}

func winHasUnit(s string) bool {
	last := s[len(s)-1]
	return last < '0' || last > '9'
}

// FormatWindowDuration renders ns in the largest unit that divides it
// exactly (d, h, m, s, ms, us, ns): the inverse of ParseWindowDuration for
// canonical texts.
func FormatWindowDuration(ns int64) string {
	units := [...]struct {
		n int64
		s string
	}{{24 * int64(time.Hour), "d"}, {int64(time.Hour), "h"}, {int64(time.Minute), "m"},
		{int64(time.Second), "s"}, {int64(time.Millisecond), "ms"}, {int64(time.Microsecond), "us"}}
	if ns == 0 {
		return "0s"
	}
	for _, u := range units {
		if ns%u.n == 0 {
			return strconv.FormatInt(ns/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(ns, 10) + "ns"
}

// winFinite reports whether x is neither NaN nor ±Inf (for both, x−x is NaN).
func winFinite(x float64) bool { return x-x == 0 }
