// Package jsontext appends JSON numbers and strings to byte slices without
// allocating: the one encoder of qstream's output lines (sinks) and of the
// news analytics lines (ops/news), which must agree byte for byte.
package jsontext

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// AppendFloat appends f as encoding/json writes a float64 (shortest
// round-trip form, exponent only outside [1e-6, 1e21)), and null for NaN or
// ±Inf, which JSON cannot represent.
func AppendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(dst) - start
		if n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// AppendString appends s as a JSON string that is always valid UTF-8 JSON,
// whatever s holds: quotes and backslashes are escaped, control characters
// (C0 and DEL) are written as \u00XX, and every byte that is not part of a
// valid UTF-8 sequence becomes \ufffd (the replacement character, as
// encoding/json does). Plain ASCII is copied as it is; it does not allocate
// beyond growing dst.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendBytes is AppendString for text in a byte slice (read in place, not
// copied).
func AppendBytes(dst []byte, b []byte) []byte {
	return AppendString(dst, unsafe.String(unsafe.SliceData(b), len(b)))
}
