package codec

import (
	"errors"
	"math"

	"github.com/valyala/fastjson"
)

// exBase is what the three adapters share: the reused parser and error,
// counters, the symbol cache and field helpers. The helpers return ok=false
// after filling b.err, so Decode can end with `return b.fail(dst)`.
type exBase struct {
	name     string
	syms     *SymbolCache
	source   uint16
	p        fastjson.Parser
	err      Error
	stats    AdapterStats
	lastType string
}

func (b *exBase) init(name string, syms *SymbolCache, source uint16) {
	if syms == nil {
		syms = NewSymbolCache(NewSymbolTable(0))
	}
	b.name, b.syms, b.source = name, syms, source
}

// Name implements Adapter.
func (b *exBase) Name() string { return b.name }

// LastType implements Adapter.
func (b *exBase) LastType() string { return b.lastType }

// Stats implements Adapter.
func (b *exBase) Stats() AdapterStats { return b.stats }

// begin starts a Decode: counts it, bounds the size and parses the JSON.
func (b *exBase) begin(msg []byte) (*fastjson.Value, bool) {
	b.stats.Messages++
	b.lastType = ""
	if len(msg) > MaxExchangeMessageLen {
		b.setErr(ReasonOversize, "", "message over MaxExchangeMessageLen")
		return nil, false
	}
	v, err := b.p.ParseBytes(msg)
	if err != nil {
		b.setErr(ReasonMalformed, "", "not valid JSON")
		return nil, false
	}
	return v, true
}

func (b *exBase) setErr(r Reason, field, detail string) { b.err.set(r, field, detail) }

// fail ends a Decode with the error outcome.
func (b *exBase) fail(dst []Event) ([]Event, error) {
	b.stats.Errors++
	return dst, &b.err
}

// skip ends a Decode with the skip outcome.
func (b *exBase) skip(dst []Event, typ string) ([]Event, error) {
	b.lastType = typ
	b.stats.Skipped++
	return dst, nil
}

// done ends a Decode with the events outcome, counting dst[from:].
func (b *exBase) done(dst []Event, from int) ([]Event, error) {
	for i := from; i < len(dst); i++ {
		switch dst[i].Kind {
		case KindTrade:
			b.stats.Trades++
		case KindQuote:
			b.stats.Quotes++
		case KindBar:
			b.stats.Bars++
		}
	}
	b.stats.Events += uint64(len(dst) - from)
	return dst, nil
}

// str returns the bytes of a required string field.
func (b *exBase) str(v *fastjson.Value, key string) ([]byte, bool) {
	x := v.Get(key)
	if x == nil {
		b.setErr(ReasonMissingField, key, "")
		return nil, false
	}
	if x.Type() != fastjson.TypeString {
		b.setErr(ReasonBadType, key, "want a string")
		return nil, false
	}
	s, _ := x.StringBytes()
	return s, true
}

// boolean returns a required boolean field; field names it in errors (it
// may be a path such as "k.x").
func (b *exBase) boolean(v *fastjson.Value, key, field string) (val, ok bool) {
	switch x := v.Get(key); {
	case x == nil:
		b.setErr(ReasonMissingField, field, "")
		return false, false
	case x.Type() == fastjson.TypeTrue:
		return true, true
	case x.Type() == fastjson.TypeFalse:
		return false, true
	}
	b.setErr(ReasonBadType, field, "want a boolean")
	return false, false
}

// optStr returns the bytes of an optional string field (nil if absent or
// not a string).
func optStr(v *fastjson.Value, key string) []byte {
	x := v.Get(key)
	if x == nil || x.Type() != fastjson.TypeString {
		return nil
	}
	s, _ := x.StringBytes()
	return s
}

// decimal returns a required decimal field, given as a string (parsed
// exactly by ParseDecimal) or as a JSON number.
func (b *exBase) decimal(v *fastjson.Value, key string) (float64, bool) {
	x := v.Get(key)
	if x == nil {
		b.setErr(ReasonMissingField, key, "")
		return 0, false
	}
	return b.decimalValue(x, key)
}

func (b *exBase) decimalValue(x *fastjson.Value, key string) (float64, bool) {
	switch x.Type() {
	case fastjson.TypeString:
		s, _ := x.StringBytes()
		f, err := ParseDecimal(s)
		if err != nil {
			b.setErr(ReasonBadNumber, key, "not a finite decimal")
			return 0, false
		}
		return f, true
	case fastjson.TypeNumber:
		f, err := x.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			b.setErr(ReasonBadNumber, key, "not a finite number")
			return 0, false
		}
		return f, true
	}
	b.setErr(ReasonBadType, key, "want a decimal string or number")
	return 0, false
}

// price and size apply the Reason rules: price > 0, size >= 0.
func (b *exBase) price(v *fastjson.Value, key string) (float64, bool) {
	f, ok := b.decimal(v, key)
	if ok && !(f > 0) {
		b.setErr(ReasonBadPrice, key, "price must be > 0")
		return 0, false
	}
	return f, ok
}

func (b *exBase) size(v *fastjson.Value, key string) (float64, bool) {
	f, ok := b.decimal(v, key)
	if ok && f < 0 {
		b.setErr(ReasonBadVolume, key, "size must be >= 0")
		return 0, false
	}
	return f, ok
}

// uint returns a required non-negative integer field.
func (b *exBase) uint(v *fastjson.Value, key string) (uint64, bool) {
	x := v.Get(key)
	if x == nil {
		b.setErr(ReasonMissingField, key, "")
		return 0, false
	}
	if x.Type() != fastjson.TypeNumber {
		b.setErr(ReasonBadType, key, "want an integer")
		return 0, false
	}
	n, err := x.Uint64()
	if err != nil {
		b.setErr(ReasonBadNumber, key, "not an unsigned integer")
		return 0, false
	}
	return n, true
}

// millis returns a required integer field of milliseconds since the epoch,
// in nanoseconds.
func (b *exBase) millis(v *fastjson.Value, key string) (int64, bool) {
	x := v.Get(key)
	if x == nil {
		b.setErr(ReasonMissingField, key, "")
		return 0, false
	}
	if x.Type() != fastjson.TypeNumber {
		b.setErr(ReasonBadType, key, "want integer milliseconds")
		return 0, false
	}
	ms, err := x.Int64()
	if err != nil {
		b.setErr(ReasonBadTimestamp, key, "not integer milliseconds")
		return 0, false
	}
	ns, ok := exMsToNs(ms)
	if !ok {
		b.setErr(ReasonBadTimestamp, key, "milliseconds out of range")
	}
	return ns, ok
}

// symbol interns an instrument name; a name that is not valid UTF-8 or
// holds a control character (ValidSymbolName) is ReasonMalformed.
func (b *exBase) symbol(name []byte, field string) (Symbol, bool) {
	id, err := b.syms.Intern(name)
	if errors.Is(err, ErrInvalidSymbol) {
		b.setErr(ReasonMalformed, field, symbolInvalidDetail)
		return 0, false
	}
	if err != nil {
		b.setErr(ReasonUnknownSymbol, field, "empty, too long, not in the configured universe, or table full")
		return 0, false
	}
	return id, true
}
