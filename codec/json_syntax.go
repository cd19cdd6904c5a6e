package codec

import "bytes"

// jsonMaxDepth mirrors fastjson.MaxDepth.
const jsonMaxDepth = 300

// jsonErrorOffset returns the byte offset in msg at which fastjson's grammar
// fails (len(msg) when the input ends too early), or -1 if fastjson parses
// msg. fastjson reports only an excerpt of the unparsed tail, so the parser
// runs this scan on the error path to give a malformed message its Offset.
//
// It follows fastjson's own, lenient grammar rather than RFC 8259 (bare
// NaN/Inf, any run of [0-9.eE+-] as a number, strings ended by the first
// unescaped quote), so that the offset points where fastjson stopped, and
// the two agree on which inputs are malformed (a fuzz test checks this).
func jsonErrorOffset(msg []byte) int {
	i := jsonSkipWS(msg, 0)
	i, ok := jsonScanValue(msg, i, 0)
	if !ok {
		return i
	}
	if i = jsonSkipWS(msg, i); i < len(msg) {
		return i
	}
	return -1
}

// jsonSkipWS returns the offset of the first byte at or after i that is not
// JSON whitespace. Most calls land on a non-space byte: every whitespace
// byte is <= ' ', so one compare settles them.
func jsonSkipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonScanValue scans the value at b[i:] and returns the offset after it, or
// the offset of the failure and false.
func jsonScanValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	depth++
	if depth > jsonMaxDepth {
		return i, false
	}
	switch c := b[i]; c {
	case '{':
		return jsonScanObject(b, i+1, depth)
	case '[':
		return jsonScanArray(b, i+1, depth)
	case '"':
		return jsonScanString(b, i+1)
	case 't':
		return jsonScanWord(b, i, "true")
	case 'f':
		return jsonScanWord(b, i, "false")
	case 'n':
		if bytes.HasPrefix(b[i:], []byte("null")) {
			return i + 4, true
		}
		if i+3 <= len(b) && decEqualFold(b[i:i+3], "nan") {
			return i + 3, true
		}
		return i, false
	}
	// A number: fastjson takes any run of [0-9.eE+-], or inf/nan after an
	// optional sign.
	j := i
	for j < len(b) {
		c := b[j]
		if (c >= '0' && c <= '9') || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+' {
			j++
			continue
		}
		if j == i || j == i+1 && (b[i] == '-' || b[i] == '+') {
			if j+3 <= len(b) && (decEqualFold(b[j:j+3], "inf") || decEqualFold(b[j:j+3], "nan")) {
				return j + 3, true
			}
			return i, false
		}
		return j, true
	}
	return j, true
}

func jsonScanWord(b []byte, i int, w string) (int, bool) {
	if len(b)-i >= len(w) && string(b[i:i+len(w)]) == w {
		return i + len(w), true
	}
	return i, false
}

// jsonScanString scans a string body starting after its opening quote and
// returns the offset after the closing quote.
func jsonScanString(b []byte, i int) (int, bool) {
	for {
		n := bytes.IndexByte(b[i:], '"')
		if n < 0 {
			return len(b), false
		}
		q := i + n
		k := q
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			return q + 1, true
		}
		i = q + 1
	}
}

func jsonScanObject(b []byte, i, depth int) (int, bool) {
	i = jsonSkipWS(b, i)
	if i >= len(b) {
		return i, false
	}
	if b[i] == '}' {
		return i + 1, true
	}
	for {
		i = jsonSkipWS(b, i)
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		var ok bool
		if i, ok = jsonScanString(b, i+1); !ok {
			return i, false
		}
		i = jsonSkipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		i = jsonSkipWS(b, i+1)
		if i, ok = jsonScanValue(b, i, depth); !ok {
			return i, false
		}
		i = jsonSkipWS(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

func jsonScanArray(b []byte, i, depth int) (int, bool) {
	i = jsonSkipWS(b, i)
	if i >= len(b) {
		return i, false
	}
	if b[i] == ']' {
		return i + 1, true
	}
	for {
		i = jsonSkipWS(b, i)
		var ok bool
		if i, ok = jsonScanValue(b, i, depth); !ok {
			return i, false
		}
		i = jsonSkipWS(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}
