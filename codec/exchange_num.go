package codec

import (
	"math"
	"strconv"
	"unsafe"
)

// Number, time and hash helpers of the exchange adapters. They are private
// and prefixed (ex...) so that they never collide with the general parsers of
// the package (ParseDecimal, ParseTimestamp), which the adapters can switch
// to once those land; the semantics are the same: exact, allocation-free.

// exMaxDecimalLen bounds a decimal string; exchanges send at most ~30 bytes.
const exMaxDecimalLen = 64

// exPow10 holds the powers of ten that are exact in a float64.
var exPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// exParseDecimal parses a decimal string such as "0.00001305" or "-12.5"
// (an optional exponent is accepted) to the float64 nearest to its exact
// value: the same result as strconv.ParseFloat(s, 64), without allocating.
// NaN, Inf, hex floats, underscores and empty input are rejected (ok false).
//
// Fast path (Clinger): when the significant digits fit in 53 bits and there
// are at most 22 fraction digits, mantissa and 10^k are exact float64s and
// one IEEE division rounds correctly. Anything else goes to strconv through
// a no-copy string view.
func exParseDecimal(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > exMaxDecimalLen {
		return 0, false
	}
	i := 0
	neg := false
	switch b[0] {
	case '-':
		neg = true
		i++
	case '+':
		i++
	}
	var mant uint64
	digits, frac := 0, 0
	sawDigit, sawDot := false, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			sawDigit = true
			if mant == 0 && c == '0' {
				if sawDot {
					frac++
				}
				continue
			}
			if digits >= 19 {
				return exParseDecimalSlow(b)
			}
			mant = mant*10 + uint64(c-'0')
			digits++
			if sawDot {
				frac++
			}
		case c == '.' && !sawDot:
			sawDot = true
		case c == 'e' || c == 'E':
			if !sawDigit {
				return 0, false
			}
			return exParseDecimalSlow(b)
		default:
			return 0, false
		}
	}
	if !sawDigit {
		return 0, false
	}
	if mant >= 1<<53 || frac >= len(exPow10) {
		return exParseDecimalSlow(b)
	}
	f := float64(mant) / exPow10[frac]
	if neg {
		f = -f
	}
	return f, true
}

// exParseDecimalSlow validates the character set (digits, one dot, one
// exponent with an optional sign) and hands the bytes to strconv.
func exParseDecimalSlow(b []byte) (float64, bool) {
	dot, exp := false, false
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && !exp:
			dot = true
		case (c == 'e' || c == 'E') && !exp:
			exp = true
		case c == '-' || c == '+':
			if i != 0 && b[i-1] != 'e' && b[i-1] != 'E' {
				return 0, false
			}
		default:
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// exMaxUnixSec is the last second whose nanoseconds still fit in an int64
// (2262-04-11).
const exMaxUnixSec = math.MaxInt64/1_000_000_000 - 1

// exParseUnixFrac parses Kraken's "seconds.fraction" time ("1618678142.557535")
// to nanoseconds exactly, in integers. Fraction digits past the ninth are
// truncated.
func exParseUnixFrac(b []byte) (int64, bool) {
	i := 0
	var sec int64
	for ; i < len(b) && b[i] != '.'; i++ {
		c := b[i]
		if c < '0' || c > '9' || i >= 11 {
			return 0, false
		}
		sec = sec*10 + int64(c-'0')
	}
	if i == 0 || sec > exMaxUnixSec {
		return 0, false
	}
	var ns int64
	if i < len(b) { // b[i] == '.'
		i++
		if i == len(b) {
			return 0, false
		}
		scale := int64(1e8)
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			ns += int64(c-'0') * scale
			scale /= 10
		}
	}
	return sec*1e9 + ns, true
}

// exMsToNs converts exchange milliseconds since the epoch to nanoseconds,
// rejecting negative or overflowing values.
func exMsToNs(ms int64) (int64, bool) {
	if ms < 0 || ms > math.MaxInt64/1_000_000 {
		return 0, false
	}
	return ms * 1e6, true
}

// exParseRFC3339 parses "2021-04-17T16:43:37.089723Z" (RFC 3339: fraction
// optional, up to 9 digits used and further ones truncated; zone Z or
// ±hh:mm) to nanoseconds since the epoch, without allocating. Years
// 1970–2261 are accepted, the range of a non-negative int64 of nanoseconds.
func exParseRFC3339(b []byte) (int64, bool) {
	if len(b) < 20 {
		return 0, false
	}
	year, ok1 := exDigits(b[0:4])
	month, ok2 := exDigits(b[5:7])
	day, ok3 := exDigits(b[8:10])
	hour, ok4 := exDigits(b[11:13])
	minute, ok5 := exDigits(b[14:16])
	sec, ok6 := exDigits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' ||
		(b[10] != 'T' && b[10] != 't' && b[10] != ' ') {
		return 0, false
	}
	if year < 1970 || year > 2261 || month < 1 || month > 12 || day < 1 ||
		day > exDaysIn(year, month) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	i := 19
	var ns int64
	if b[i] == '.' {
		i++
		start := i
		scale := int64(1e8)
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			ns += int64(b[i]-'0') * scale
			scale /= 10
		}
		if i == start || i >= len(b) {
			return 0, false
		}
	}
	var off int64
	switch b[i] {
	case 'Z', 'z':
		if i+1 != len(b) {
			return 0, false
		}
	case '+', '-':
		if len(b)-i != 6 || b[i+3] != ':' {
			return 0, false
		}
		oh, okh := exDigits(b[i+1 : i+3])
		om, okm := exDigits(b[i+4 : i+6])
		if !okh || !okm || oh > 23 || om > 59 {
			return 0, false
		}
		off = int64(oh*3600 + om*60)
		if b[i] == '-' {
			off = -off
		}
	default:
		return 0, false
	}
	days := exDaysFromCivil(year, month, day)
	s := days*86400 + int64(hour*3600+minute*60+sec) - off
	if s < 0 || s > exMaxUnixSec {
		return 0, false
	}
	return s*1e9 + ns, true
}

// exDigits parses a short run of ASCII digits.
func exDigits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func exDaysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// exDaysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (H. Hinnant's days_from_civil), for year >= 1.
func exDaysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := m + 9
	if m > 2 {
		mp = m - 3
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// FNV-1a, 64 bit: the stable id hash of the adapters. Event.IDHash must not
// change between releases (it keys idempotent sink writes), so it is spelt
// out here rather than borrowed from a library that might change it.
const (
	exFNVOffset = 14695981039346656037
	exFNVPrime  = 1099511628211
)

func exHashBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= exFNVPrime
	}
	return h
}

func exHashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= exFNVPrime
	}
	return h
}

func exHashUint(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= exFNVPrime
		v >>= 8
	}
	return h
}

// exHashID is the IDHash of an exchange trade: FNV-1a over the exchange name,
// the instrument and the trade id, with separators so that fields cannot run
// into each other. Never 0 (0 means "no id").
func exHashID(exchange string, instrument []byte, kind byte, id uint64) uint64 {
	h := exHashString(exFNVOffset, exchange)
	h = exHashUint(h, 0xff)
	h = exHashBytes(h, instrument)
	h = exHashUint(h, uint64(kind)<<8|0xff)
	h = exHashUint(h, id)
	if h == 0 {
		h = 1
	}
	return h
}
