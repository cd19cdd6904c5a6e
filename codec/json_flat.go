package codec

import (
	"bytes"
	"encoding/binary"

	"github.com/valyala/fastjson"
)

// scanFlat is the fast path of ParseJSON for the common message: one flat
// object whose values are strings without escapes, numbers, true, false or
// null, like the compact tick. It fills f straight from msg, without
// building fastjson's tree, and returns true. For anything else (a nested
// object or array, an escape, NaN, malformed input) it returns false and
// ParseJSON falls back to fastjson, so every error, every nested shape and
// every oddity of fastjson's grammar is handled in one place.
//
// It accepts a subset of what fastjson accepts and records exactly what
// collect would record from fastjson's tree for the same message; the fuzz
// test FuzzParseJSON checks both paths give identical results.
func (p *Parser) scanFlat(msg []byte, f *jsonFields) bool {
	f.reset()
	i := jsonSkipWS(msg, 0)
	if i >= len(msg) || msg[i] != '{' {
		return false
	}
	i = jsonSkipWS(msg, i+1)
	if i < len(msg) && msg[i] == '}' {
		return jsonSkipWS(msg, i+1) == len(msg)
	}
	for k := 0; ; k++ {
		// Key: a string without escapes. A feed sends its keys in the same
		// order message after message, so the key the previous message had
		// at this place is tried first: one compare instead of a scan for
		// the closing quote and a lookup of the key.
		if i >= len(msg) || msg[i] != '"' {
			return false
		}
		var id jsonKey
		var next int
		hit := false
		if k < len(p.keyOrder) {
			if id = p.keyOrder[k]; id != jkNone {
				name := jsonKeyNames[id]
				if e := i + 1 + len(name); e < len(msg) && msg[e] == '"' && string(msg[i+1:e]) == name {
					next, hit = e+1, true
				}
			}
		}
		if !hit {
			key, n, ok := jsonFlatString(msg, i+1)
			if !ok {
				return false
			}
			id, next = jsonKeyOf(key), n
			if k < len(p.keyOrder) {
				p.keyOrder[k] = id
			}
		}
		i = jsonSkipWS(msg, next)
		if i >= len(msg) || msg[i] != ':' {
			return false
		}
		i = jsonSkipWS(msg, i+1)
		if i >= len(msg) {
			return false
		}

		// Value.
		var t fastjson.Type
		var raw []byte
		switch c := msg[i]; {
		case c == '"':
			var ok bool
			raw, next, ok = jsonFlatString(msg, i+1)
			if !ok {
				return false
			}
			t, i = fastjson.TypeString, next
		case c == '-' || c >= '0' && c <= '9':
			// fastjson's number token: the run of [0-9.eE+-]; ParseDecimal
			// and ParseTimestamp judge it later, exactly as on the
			// fastjson path.
			j := i + 1
			for j+8 <= len(msg) && jsonEightDigits(binary.LittleEndian.Uint64(msg[j:])) {
				j += 8 // nanosecond timestamps: 19 digits
			}
			for j < len(msg) && jsonNumberByte(msg[j]) {
				j++
			}
			t, raw, i = fastjson.TypeNumber, msg[i:j], j
		case c == 't' && bytes.HasPrefix(msg[i:], []byte("true")):
			t, i = fastjson.TypeTrue, i+4
		case c == 'f' && bytes.HasPrefix(msg[i:], []byte("false")):
			t, i = fastjson.TypeFalse, i+5
		case c == 'n' && bytes.HasPrefix(msg[i:], []byte("null")):
			t, i = fastjson.TypeNull, i+4
		default:
			return false // objects, arrays, NaN, Inf, garbage
		}
		if id != jkNone {
			f.add(id, t, raw, nil)
		}

		i = jsonSkipWS(msg, i)
		if i >= len(msg) {
			return false
		}
		switch msg[i] {
		case ',':
			i = jsonSkipWS(msg, i+1)
		case '}':
			return jsonSkipWS(msg, i+1) == len(msg)
		default:
			return false
		}
	}
}

// jsonFlatString returns the body of the string starting at msg[i] (after
// its opening quote) and the offset after its closing quote; ok is false if
// it contains a backslash or is not closed.
func jsonFlatString(msg []byte, i int) (s []byte, next int, ok bool) {
	// A plain loop that inlines: keys and tick values are a few bytes long,
	// too short for bytes.IndexByte's setup or an eight-byte (SWAR) scan to
	// pay off (measured: both slower on the compact tick).
	for j := i; j < len(msg); j++ {
		switch msg[j] {
		case '"':
			return msg[i:j:j], j + 1, true
		case '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// jsonNumberTab marks the bytes of fastjson's number token: [0-9.eE+-].
var jsonNumberTab = [256]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true,
	'5': true, '6': true, '7': true, '8': true, '9': true,
	'.': true, '-': true, '+': true, 'e': true, 'E': true,
}

func jsonNumberByte(c byte) bool { return jsonNumberTab[c] }

// jsonEightDigits reports whether the eight bytes of x are all ASCII digits
// (the test of tsEightDigits: high nibble 3, and adding 6 does not carry).
func jsonEightDigits(x uint64) bool {
	return x&0xF0F0F0F0F0F0F0F0 == 0x3030303030303030 &&
		(x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0 == 0x3030303030303030
}
