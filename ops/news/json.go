package news

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the DESIGN.md news line of res, without a newline:
//
//	{"id":ID,"ts":TS,"symbols":[...],"entities":[{"text","symbol","start","end"}],
//	 "sentiment":S,"relevance":{"SYM":R},"events":[{"type","evidence"}]}
//
// id is the article id and tsNs its event time in Unix nanoseconds. Strings
// are escaped and floats written as sinks.AppendString and sinks.AppendFloat
// write them (encoding/json's forms; invalid UTF-8 becomes \ufffd), which
// ops may not import. It does not allocate beyond growing dst.
func AppendJSON(dst []byte, id []byte, tsNs int64, res *Result) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendBytes(dst, id)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, tsNs, 10)
	dst = append(dst, `,"symbols":[`...)
	for i, s := range res.Symbols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	dst = append(dst, `],"entities":[`...)
	for i, e := range res.Entities {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"text":`...)
		dst = appendBytes(dst, res.Text[e.Start:e.End])
		dst = append(dst, `,"symbol":`...)
		dst = appendString(dst, e.Symbol)
		dst = append(dst, `,"start":`...)
		dst = strconv.AppendInt(dst, int64(e.Start), 10)
		dst = append(dst, `,"end":`...)
		dst = strconv.AppendInt(dst, int64(e.End), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"sentiment":`...)
	dst = appendFloat(dst, res.Sentiment)
	dst = append(dst, `,"relevance":{`...)
	for i, s := range res.Symbols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
		dst = append(dst, ':')
		dst = appendFloat(dst, res.Relevance[i])
	}
	dst = append(dst, `},"events":[`...)
	for i, e := range res.Events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"type":`...)
		dst = appendString(dst, e.Type)
		dst = append(dst, `,"evidence":`...)
		dst = appendBytes(dst, res.Text[e.Start:e.End])
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendFloat writes f as encoding/json does (shortest round-trip form,
// exponent only outside [1e-6, 1e21)), null for NaN and ±Inf: the semantics
// of sinks.AppendFloat.
func appendFloat(dst []byte, f float64) []byte {
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
		n := len(dst) - start
		if n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// appendString writes s as a JSON string with the semantics of
// sinks.AppendString: quotes and backslashes escaped, C0 and DEL as \u00XX,
// bytes outside valid UTF-8 as \ufffd.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			dst = appendASCII(dst, c)
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

// appendBytes is appendString for a byte slice.
func appendBytes(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			dst = appendASCII(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

func appendASCII(dst []byte, c byte) []byte {
	const hex = "0123456789abcdef"
	switch {
	case c == '"' || c == '\\':
		return append(dst, '\\', c)
	case c < 0x20 || c == 0x7f:
		return append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
	}
	return append(dst, c)
}
