package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"

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
				if w := &jsonKeyWords[id]; w.mask != 0 && i+9 <= len(msg) {
					// The name and its closing quote in one eight-byte compare.
					if binary.LittleEndian.Uint64(msg[i+1:])&w.mask == w.word {
						next, hit = i+2+len(name), true
					}
				} else if e := i + 1 + len(name); e < len(msg) && msg[e] == '"' && string(msg[i+1:e]) == name {
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
		start := i
		var t fastjson.Type
		var raw []byte
		var num jsonNum
		switch c := msg[i]; {
		case c == '"':
			var ok bool
			raw, next, ok = jsonFlatValue(msg, i+1)
			if !ok {
				return false
			}
			t, i = fastjson.TypeString, next
		case c == '-' || c >= '0' && c <= '9':
			// fastjson's number token: the run of [0-9.eE+-]; ParseDecimal
			// and ParseTimestamp judge it later, exactly as on the
			// fastjson path. The common shapes are read on the way
			// (jsonScanNumber), so that they are not read twice.
			var j int
			j, num = jsonScanNumber(msg, i)
			if j == i+1 && c == '-' {
				return false // a bare sign: fastjson's grammar refuses it (found by FuzzParseJSON)
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
			if f.add(id, t, raw, nil) && num.kind != 0 {
				f.vals[id].num = num
			}
		}
		p.flatSeen.value(k, id, t, start, i)

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

// scanFlatLearn is scanFlat, and when it takes the message, learnShape.
func (p *Parser) scanFlatLearn(msg []byte, f *jsonFields) bool {
	p.flatSeen.n = 0
	if !p.scanFlat(msg, f) {
		return false
	}
	p.learnShape(msg, f)
	return true
}

// A message of a feed usually has the bytes of the one before it between
// its values: the same keys in the same order with the same spacing, only
// the values differ. scanShape checks those bytes (a literal: up to sixteen
// of them in two eight-byte compares) instead of scanning keys, spaces,
// colons and commas one at a time.

// jsonShapeMax bounds the values of a shape and jsonShapeBytes its
// literals; longer messages are scanned by scanFlat alone.
const (
	jsonShapeMax   = 16
	jsonShapeBytes = 512
)

// jsonShape is the layout of a flat message: before each value a literal
// (for a string value it ends with the opening quote), the value's key and
// kind, and a literal after the last value up to the end of the message.
// Every key is a known and distinct one, every value a string or a number.
type jsonShape struct {
	n    int // values; 0: no shape
	vals [jsonShapeMax]struct {
		lit jsonLit
		id  jsonKey
		str bool // a string; else a number
	}
	tail jsonLit
	buf  [jsonShapeBytes]byte // the literals' bytes
}

// jsonLit is a run of bytes of jsonShape.buf. A literal of up to sixteen
// bytes is also held as words: its first eight bytes (fewer when it is
// shorter, in the low bytes of first) and, from eight bytes on, its last
// eight, so that match compares one or two words read within the message.
type jsonLit struct {
	off, n      uint16
	first, last uint64
}

func (l *jsonLit) set(buf []byte, off int, lit []byte) {
	copy(buf[off:], lit)
	*l = jsonLit{off: uint16(off), n: uint16(len(lit))}
	for i := min(len(lit), 8) - 1; i >= 0; i-- {
		l.first = l.first<<8 | uint64(lit[i])
	}
	if len(lit) >= 8 {
		l.last = binary.LittleEndian.Uint64(lit[len(lit)-8:])
	}
}

// match reports whether msg[i:] starts with the literal. It reads nothing
// past len(msg) (a caller's buffer may be written beyond it).
func (l *jsonLit) match(msg []byte, i int, buf *[jsonShapeBytes]byte) bool {
	n := int(l.n)
	if len(msg)-i < n {
		return false
	}
	switch {
	case n >= 8 && n <= 16: // two words, overlapping when n < 16
		return binary.LittleEndian.Uint64(msg[i:]) == l.first && binary.LittleEndian.Uint64(msg[i+n-8:]) == l.last
	case n < 8 && i+8 <= len(msg): // the word from i, its first n bytes
		return binary.LittleEndian.Uint64(msg[i:])&(1<<(8*n)-1) == l.first
	case n < 8 && i+n >= 8: // the word that ends with the literal, its last n bytes
		return binary.LittleEndian.Uint64(msg[i+n-8:])>>(8*(8-n)) == l.first
	}
	return string(msg[i:i+n]) == string(buf[l.off:int(l.off)+n])
}

// jsonFlatSeen is what scanFlat saw of each value: its key, its type and
// where its token starts and ends (a string's quotes included). n is -1
// once a value that a shape cannot hold has been seen.
type jsonFlatSeen struct {
	n    int
	vals [jsonShapeMax]struct {
		start, end int
		id         jsonKey
		t          fastjson.Type
	}
}

// value records the k-th value (0-based) of the message scanFlat reads.
func (s *jsonFlatSeen) value(k int, id jsonKey, t fastjson.Type, start, end int) {
	if s.n != k || k >= jsonShapeMax || id == jkNone || t != fastjson.TypeString && t != fastjson.TypeNumber {
		s.n = -1
		return
	}
	v := &s.vals[k]
	v.start, v.end, v.id, v.t = start, end, id, t
	s.n++
}

// learnShape makes msg, which scanFlat has just taken into f, the shape
// scanShape tries first, if a shape can hold it; else there is none.
func (p *Parser) learnShape(msg []byte, f *jsonFields) {
	sh, seen := &p.shape, &p.flatSeen
	sh.n = 0
	if seen.n <= 0 || f.dup != jkNone {
		return
	}
	off, prev := 0, 0
	for k := range seen.n {
		v := &seen.vals[k]
		lit := v.start
		if v.t == fastjson.TypeString {
			lit++ // the opening quote
		}
		if off+lit-prev > jsonShapeBytes {
			return
		}
		sh.vals[k].lit.set(sh.buf[:], off, msg[prev:lit])
		sh.vals[k].id, sh.vals[k].str = v.id, v.t == fastjson.TypeString
		off += lit - prev
		prev = v.end
	}
	if off+len(msg)-prev > jsonShapeBytes {
		return
	}
	sh.tail.set(sh.buf[:], off, msg[prev:])
	sh.n = seen.n
}

// scanShape is scanFlat for a message laid out as the last one it learnt
// (learnShape): it compares the literals and scans only the values, each
// as scanFlat scans a value of its kind, so it fills f exactly as scanFlat
// would. It returns false (f then holds partial results) for a message of
// another layout, which scanFlat then reads.
func (p *Parser) scanShape(msg []byte, f *jsonFields) bool {
	sh := &p.shape
	if sh.n == 0 {
		return false
	}
	f.reset()
	i := 0
	for k := range sh.n {
		v := &sh.vals[k]
		if !v.lit.match(msg, i, &sh.buf) {
			return false
		}
		i += int(v.lit.n)
		bit := uint64(1) << v.id
		f.seen |= bit
		f.present |= bit
		if v.str {
			raw, next, ok := jsonFlatValue(msg, i)
			if !ok {
				return false
			}
			// Field by field: a composite literal is built on the stack
			// and copied in 16-byte moves that stall on its 8-byte stores.
			fv := &f.vals[v.id]
			fv.raw, fv.v, fv.t, fv.num = raw, nil, fastjson.TypeString, jsonNum{}
			i = next
			continue
		}
		if i >= len(msg) {
			return false
		}
		if c := msg[i]; c != '-' && (c < '0' || c > '9') {
			return false
		}
		j, num := jsonScanNumber(msg, i)
		if j == i+1 && msg[i] == '-' {
			return false // a bare sign, as scanFlat
		}
		fv := &f.vals[v.id]
		fv.raw, fv.v, fv.t, fv.num = msg[i:j], nil, fastjson.TypeNumber, num
		i = j
	}
	return sh.tail.match(msg, i, &sh.buf) && len(msg)-i == int(sh.tail.n)
}

// jsonKeyWords holds, for each key of at most seven bytes, the key and its
// closing quote as a little-endian word and the mask of those bytes, for
// scanFlat's compare with the key it expects; mask 0 for longer keys.
var jsonKeyWords = func() (w [jkCount]struct{ word, mask uint64 }) {
	for k := jkNone + 1; k < jkCount; k++ {
		name := jsonKeyNames[k] + `"`
		if len(name) > 8 {
			continue
		}
		for i := range len(name) {
			w[k].word |= uint64(name[i]) << (8 * i)
			w[k].mask |= 0xff << (8 * i)
		}
	}
	return w
}()

// jsonNum is the value of a number token that jsonScanNumber could read
// exactly as ParseDecimal or ParseTimestamp would (kind says which), so that
// they need not read it again.
type jsonNum struct {
	kind uint8   // 0: neither; jsonNumFloat; jsonNumFloat|jsonNumInt
	f    float64 // ParseDecimal's result (jsonNumFloat)
	i    int64   // ParseTimestamp's result (jsonNumInt)
}

const (
	jsonNumFloat = 1 << iota // f is ParseDecimal(token)
	jsonNumInt               // i is ParseTimestamp(token)
)

// jsonScanNumber returns the end of the number token at msg[i] (msg[i] is
// '-' or a digit) and, for the shapes ParseDecimal's and ParseTimestamp's
// fast paths take, their results. It follows those fast paths step for
// step (the same digits into the same uint64, the same single division by
// an exact power of ten), so the values are bit for bit theirs; anything
// else (exponents, more than 19 digits, a stray sign or point) is left to
// them.
func jsonScanNumber(msg []byte, i int) (int, jsonNum) {
	j := i
	neg := msg[j] == '-'
	if neg {
		j++
	}
	var mant uint64
	start := j
	for j+8 <= len(msg) {
		v, ok := tsEightDigits(msg[j:])
		if !ok {
			break
		}
		mant = mant*100_000_000 + v // wraps past 19 digits: then unused
		j += 8
	}
	for j < len(msg) {
		d := msg[j] - '0'
		if d > 9 {
			break
		}
		mant = mant*10 + uint64(d)
		j++
	}
	nd := j - start
	intDigits := nd
	exp10 := 0
	if j < len(msg) && msg[j] == '.' {
		j++
		k := j
		for j < len(msg) {
			d := msg[j] - '0'
			if d > 9 {
				break
			}
			mant = mant*10 + uint64(d)
			j++
		}
		exp10 = k - j
		nd += j - k
	}
	end := j
	for end < len(msg) && jsonNumberByte(msg[end]) {
		end++
	}
	var n jsonNum
	if end != j || nd == 0 || nd > 19 {
		return end, n
	}
	if mant <= 1<<53 && exp10 >= -22 { // ParseDecimal's fast path
		f := float64(mant)
		if exp10 < 0 {
			f /= decPow10[-exp10]
		}
		if neg {
			f = -f
		}
		n.kind, n.f = jsonNumFloat, f
	}
	if !neg && intDigits == nd && j == start+nd && mant <= math.MaxInt64 { // tsParseInt
		n.kind |= jsonNumInt
		n.i = int64(mant)
	}
	return end, n
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

// jsonFlatValue is jsonFlatString for values, whose lengths vary from one
// message to the next (symbols, ids): it finds the closing quote (or a
// backslash) eight bytes at a time (SWAR), without a loop exit per byte
// that the branch predictor would miss.
func jsonFlatValue(msg []byte, i int) (s []byte, next int, ok bool) {
	j := i
	for ; j+8 <= len(msg); j += 8 {
		x := binary.LittleEndian.Uint64(msg[j:])
		q := x ^ ('"' * jsonSWARLo)
		b := x ^ ('\\' * jsonSWARLo)
		// The lowest set bit marks the first '"' or '\\' (higher bits may
		// be false positives of the borrow; they are not used).
		if m := ((q-jsonSWARLo)&^q | (b-jsonSWARLo)&^b) & jsonSWARHi; m != 0 {
			j += bits.TrailingZeros64(m) >> 3
			if msg[j] != '"' {
				return nil, 0, false
			}
			return msg[i:j:j], j + 1, true
		}
	}
	for ; j < len(msg); j++ { // the last few bytes of msg
		switch msg[j] {
		case '"':
			return msg[i:j:j], j + 1, true
		case '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// SWAR constants: one in every byte, and every byte's high bit.
const (
	jsonSWARLo = 0x0101010101010101
	jsonSWARHi = 0x8080808080808080
)

// jsonNumberTab marks the bytes of fastjson's number token: [0-9.eE+-].
var jsonNumberTab = [256]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true,
	'5': true, '6': true, '7': true, '8': true, '9': true,
	'.': true, '-': true, '+': true, 'e': true, 'E': true,
}

func jsonNumberByte(c byte) bool { return jsonNumberTab[c] }
