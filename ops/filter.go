package ops

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"qstream/codec"
)

// Stream filters and transforms (the specification's filter_stream and
// transform_stream): a declarative predicate and field transforms, parsed
// and compiled once into closures that run on every event without
// allocating. They run before every operator of a pipeline.
//
// A filter is conditions joined by "and" and "or" ("and" binds tighter; no
// parentheses):
//
//	kind == trade and price > 100 and symbol in (AAPL, MSFT) or volume >= 1000
//
// A condition is FIELD OP OPERAND with FIELD one of price, volume, bid, ask,
// spread, mid, open, high, low (an unset bid or ask is NaN, and a NaN makes
// any comparison false) and OP one of < <= > >= == !=, the OPERAND a number
// or another field; or "kind" or "symbol" with == or != and a name, or "in"
// or "not in" and a parenthesised list of names. Events that do not pass
// are counted (Pipeline.Filtered) and go no further: they are not dead
// letters.
//
// A transform is assignments separated by ";":
//
//	price = price * 100; volume = volume / 1000
//
// each FIELD = TERM [OP TERM] with FIELD one of price, volume, bid, ask, OP
// one of + - * / (with spaces around a minus: "price - 1", since names
// such as BTC-USD hold one), and TERM a number or a field (read before the
// assignment's own write; assignments apply in order). A trade whose
// transformed price is not finite and positive, or volume not finite and
// non-negative, is a dead letter (bad_price, bad_volume).

// ErrFilterSpec is wrapped by filter and transform parse errors.
var ErrFilterSpec = errors.New("ops: bad filter or transform")

// Filter is a compiled stream filter.
type Filter struct {
	src   string
	pred  func(*codec.Event, SymbolNamer) bool
	names bool // a condition on the symbol: needs the pipeline's SymbolNames
}

// String returns the filter as given.
func (f *Filter) String() string { return f.src }

// Pass reports whether ev passes; names names its symbol.
func (f *Filter) Pass(ev *codec.Event, names SymbolNamer) bool { return f.pred(ev, names) }

// Transform is a compiled stream transform.
type Transform struct {
	src    string
	assign []func(*codec.Event)
}

// String returns the transform as given.
func (t *Transform) String() string { return t.src }

// Apply transforms ev in place.
func (t *Transform) Apply(ev *codec.Event) {
	for _, a := range t.assign {
		a(ev)
	}
}

type numField func(*codec.Event) float64

var filterFields = map[string]numField{
	"price":  func(e *codec.Event) float64 { return e.Price },
	"volume": func(e *codec.Event) float64 { return e.Volume },
	"open":   func(e *codec.Event) float64 { return e.Open },
	"high":   func(e *codec.Event) float64 { return e.High },
	"low":    func(e *codec.Event) float64 { return e.Low },
	"bid": func(e *codec.Event) float64 {
		if e.HasBid() {
			return e.Bid
		}
		return math.NaN()
	},
	"ask": func(e *codec.Event) float64 {
		if e.HasAsk() {
			return e.Ask
		}
		return math.NaN()
	},
	"spread": func(e *codec.Event) float64 {
		if e.HasBid() && e.HasAsk() {
			return e.Ask - e.Bid
		}
		return math.NaN()
	},
	"mid": func(e *codec.Event) float64 {
		if e.HasBid() && e.HasAsk() {
			return (e.Ask + e.Bid) / 2
		}
		return math.NaN()
	},
}

// ParseFilter compiles a filter (see the file comment).
func ParseFilter(src string) (*Filter, error) {
	toks, err := filterTokens(src)
	if err != nil {
		return nil, err
	}
	toks0 := toks
	var ors []func(*codec.Event, SymbolNamer) bool
	var ands []func(*codec.Event, SymbolNamer) bool
	flush := func() {
		a := ands
		switch len(a) {
		case 1:
			ors = append(ors, a[0])
		default:
			ors = append(ors, func(e *codec.Event, n SymbolNamer) bool {
				for _, c := range a {
					if !c(e, n) {
						return false
					}
				}
				return true
			})
		}
		ands = nil
	}
	for len(toks) > 0 {
		cond, rest, err := filterCond(toks)
		if err != nil {
			return nil, fmt.Errorf("%w: filter %q: %w", ErrFilterSpec, src, err)
		}
		ands = append(ands, cond)
		toks = rest
		if len(toks) == 0 {
			break
		}
		switch strings.ToLower(toks[0]) {
		case "and":
		case "or":
			flush()
		default:
			return nil, fmt.Errorf("%w: filter %q: %q: want and or or", ErrFilterSpec, src, toks[0])
		}
		toks = toks[1:]
		if len(toks) == 0 {
			return nil, fmt.Errorf("%w: filter %q: ends with a connective", ErrFilterSpec, src)
		}
	}
	if len(ands) == 0 {
		return nil, fmt.Errorf("%w: filter %q: empty", ErrFilterSpec, src)
	}
	flush()
	f := &Filter{src: src, names: filterNamesSymbol(toks0)}
	if len(ors) == 1 {
		f.pred = ors[0]
	} else {
		f.pred = func(e *codec.Event, n SymbolNamer) bool {
			for _, c := range ors {
				if c(e, n) {
					return true
				}
			}
			return false
		}
	}
	return f, nil
}

// filterTokens splits src into words, numbers, operators, parentheses and
// commas.
func filterTokens(src string) ([]string, error) {
	var toks []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')' || c == ',' || c == ';' || c == '+' || c == '*' || c == '/':
			toks = append(toks, src[i:i+1])
			i++
		case c == '<' || c == '>' || c == '=' || c == '!':
			j := i + 1
			if j < len(src) && src[j] == '=' {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		default:
			// Words, numbers and names (BTC-USD): a minus is part of a
			// word, so a subtraction needs spaces ("price - 1").
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\n(),;+*/<>=!", rune(src[j])) {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		}
	}
	return toks, nil
}

// filterCond compiles the condition at the start of toks.
func filterCond(toks []string) (func(*codec.Event, SymbolNamer) bool, []string, error) {
	if len(toks) < 3 {
		return nil, nil, fmt.Errorf("%q: want FIELD OP OPERAND", strings.Join(toks, " "))
	}
	name := strings.ToLower(toks[0])
	if name == "kind" || name == "symbol" {
		return filterNameCond(name, toks)
	}
	left, ok := filterFields[name]
	if !ok {
		return nil, nil, fmt.Errorf("%q: not a field (price, volume, bid, ask, spread, mid, open, high, low, kind, symbol)", toks[0])
	}
	cmp, err := filterCmp(toks[1])
	if err != nil {
		return nil, nil, err
	}
	right, err := filterOperand(toks[2])
	if err != nil {
		return nil, nil, err
	}
	return func(e *codec.Event, _ SymbolNamer) bool { return cmp(left(e), right(e)) }, toks[3:], nil
}

func filterOperand(tok string) (numField, error) {
	if f, ok := filterFields[strings.ToLower(tok)]; ok {
		return f, nil
	}
	v, err := strconv.ParseFloat(tok, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("%q: not a field or a finite number", tok)
	}
	return func(*codec.Event) float64 { return v }, nil
}

func filterCmp(op string) (func(a, b float64) bool, error) {
	switch op {
	case "<":
		return func(a, b float64) bool { return a < b }, nil
	case "<=":
		return func(a, b float64) bool { return a <= b }, nil
	case ">":
		return func(a, b float64) bool { return a > b }, nil
	case ">=":
		return func(a, b float64) bool { return a >= b }, nil
	case "==":
		return func(a, b float64) bool { return a == b }, nil
	case "!=":
		return func(a, b float64) bool { return a == a && b == b && a != b }, nil
	}
	return nil, fmt.Errorf("%q: not one of < <= > >= == !=", op)
}

// filterNameCond compiles "kind|symbol (==|!=) NAME" and "kind|symbol [not]
// in (NAME, ...)".
func filterNameCond(field string, toks []string) (func(*codec.Event, SymbolNamer) bool, []string, error) {
	neg := false
	i := 1
	var names []string
	switch {
	case toks[1] == "==" || toks[1] == "!=":
		neg = toks[1] == "!="
		names = []string{toks[2]}
		i = 3
	case strings.EqualFold(toks[1], "in") || (strings.EqualFold(toks[1], "not") && len(toks) > 2 && strings.EqualFold(toks[2], "in")):
		if strings.EqualFold(toks[1], "not") {
			neg = true
			i++
		}
		i++
		if i >= len(toks) || toks[i] != "(" {
			return nil, nil, fmt.Errorf("%s in: want a list in parentheses", field)
		}
		i++
		for {
			if i >= len(toks) {
				return nil, nil, fmt.Errorf("%s in: the list is not closed", field)
			}
			if toks[i] == ")" {
				i++
				break
			}
			if toks[i] != "," {
				names = append(names, toks[i])
			}
			i++
		}
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("%s in: empty list", field)
		}
	default:
		return nil, nil, fmt.Errorf("%s %s: want ==, !=, in or not in", field, toks[1])
	}
	if field == "kind" {
		var kinds [codec.KindCount]bool
		for _, n := range names {
			k := codec.KindInvalid
			for c := codec.Kind(1); int(c) < codec.KindCount; c++ {
				if strings.EqualFold(c.String(), n) && c != codec.KindWatermark && c != codec.KindText {
					k = c
				}
			}
			if k == codec.KindInvalid {
				return nil, nil, fmt.Errorf("kind %q: not trade, quote, bar, book, news, signal, system, custom or status", n)
			}
			kinds[k] = true
		}
		return func(e *codec.Event, _ SymbolNamer) bool { return kinds[e.Kind%codec.Kind(codec.KindCount)] != neg }, toks[i:], nil
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return func(e *codec.Event, n SymbolNamer) bool {
		in := false
		if n != nil && e.Symbol != 0 {
			in = set[n.Name(e.Symbol)]
		}
		return in != neg
	}, toks[i:], nil
}

// ParseTransform compiles a transform (see the file comment).
func ParseTransform(src string) (*Transform, error) {
	toks, err := filterTokens(src)
	if err != nil {
		return nil, err
	}
	t := &Transform{src: src}
	for len(toks) > 0 {
		end := 0
		for end < len(toks) && toks[end] != ";" {
			end++
		}
		a, err := transformAssign(toks[:end])
		if err != nil {
			return nil, fmt.Errorf("%w: transform %q: %w", ErrFilterSpec, src, err)
		}
		t.assign = append(t.assign, a)
		if end == len(toks) {
			break
		}
		toks = toks[end+1:]
	}
	if len(t.assign) == 0 {
		return nil, fmt.Errorf("%w: transform %q: empty", ErrFilterSpec, src)
	}
	return t, nil
}

func transformAssign(toks []string) (func(*codec.Event), error) {
	if len(toks) != 3 && len(toks) != 5 || toks[1] != "=" {
		return nil, fmt.Errorf("%q: want FIELD = TERM [OP TERM]", strings.Join(toks, " "))
	}
	var set func(*codec.Event, float64)
	switch strings.ToLower(toks[0]) {
	case "price":
		set = func(e *codec.Event, v float64) { e.Price = v }
	case "volume":
		set = func(e *codec.Event, v float64) { e.Volume = v }
	case "bid":
		set = func(e *codec.Event, v float64) {
			if e.HasBid() {
				e.Bid = v
			}
		}
	case "ask":
		set = func(e *codec.Event, v float64) {
			if e.HasAsk() {
				e.Ask = v
			}
		}
	default:
		return nil, fmt.Errorf("%q: not an assignable field (price, volume, bid, ask)", toks[0])
	}
	a, err := filterOperand(toks[2])
	if err != nil {
		return nil, err
	}
	if len(toks) == 3 {
		return func(e *codec.Event) { set(e, a(e)) }, nil
	}
	b, err := filterOperand(toks[4])
	if err != nil {
		return nil, err
	}
	switch toks[3] {
	case "+":
		return func(e *codec.Event) { set(e, a(e)+b(e)) }, nil
	case "-":
		return func(e *codec.Event) { set(e, a(e)-b(e)) }, nil
	case "*":
		return func(e *codec.Event) { set(e, a(e)*b(e)) }, nil
	case "/":
		return func(e *codec.Event) { set(e, a(e)/b(e)) }, nil
	}
	return nil, fmt.Errorf("%q: not one of + - * /", toks[3])
}

// prefilter runs the stream's filter and transform on ev: nil when the
// filter stops it or the transform made it invalid (with the reason), else
// the event to process (a transformed copy).
//
// The closures see a copy in the pipeline, never the caller's event: an
// event handed to a function value escapes, and the caller's would then be
// allocated on every call.
func (p *Pipeline) prefilter(in *codec.Event) (*codec.Event, codec.Reason) {
	p.xfEv = *in
	ev := &p.xfEv
	if p.flt != nil && !p.flt.Pass(ev, p.cfg.SymbolNames) {
		p.nfilt++
		return nil, codec.ReasonNone
	}
	if p.xf == nil {
		return ev, codec.ReasonNone
	}
	p.xf.Apply(ev)
	if ev.Kind == codec.KindTrade {
		if !(ev.Price > 0) || math.IsInf(ev.Price, 0) {
			return nil, codec.ReasonBadPrice
		}
		if !(ev.Volume >= 0) || math.IsInf(ev.Volume, 0) {
			return nil, codec.ReasonBadVolume
		}
	}
	return ev, codec.ReasonNone
}

// Filtered returns how many events the stream's filter stopped.
func (p *Pipeline) Filtered() uint64 { return p.nfilt }

// SetFilter replaces the stream's filter ("" removes it). Call it from the
// goroutine that owns the pipeline.
func (p *Pipeline) SetFilter(src string) error {
	if src == "" {
		p.flt, p.cfg.Filter = nil, ""
		return nil
	}
	f, err := ParseFilter(src)
	if err != nil {
		return err
	}
	if f.names && p.cfg.SymbolNames == nil {
		return fmt.Errorf("%w: filter %q: conditions on the symbol need the pipeline's SymbolNames", ErrFilterSpec, src)
	}
	p.flt, p.cfg.Filter = f, src
	return nil
}

// SetTransform replaces the stream's transform ("" removes it).
func (p *Pipeline) SetTransform(src string) error {
	if src == "" {
		p.xf, p.cfg.Transform = nil, ""
		return nil
	}
	t, err := ParseTransform(src)
	if err != nil {
		return err
	}
	p.xf, p.cfg.Transform = t, src
	return nil
}

// filterNamesSymbol reports whether a filter's tokens test the symbol.
func filterNamesSymbol(toks []string) bool {
	for _, t := range toks {
		if strings.EqualFold(t, "symbol") {
			return true
		}
	}
	return false
}
