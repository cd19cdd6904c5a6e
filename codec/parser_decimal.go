package codec

import (
	"strconv"
	"unsafe"
)

// Errors returned by ParseDecimal. They are shared, immutable values (do not
// modify them); all carry ReasonBadNumber, so errors.Is cannot tell them
// apart: compare with == when the cause matters.
var (
	// ErrDecimalSyntax: the text is not a decimal number.
	ErrDecimalSyntax = &Error{Reason: ReasonBadNumber, Detail: "not a decimal number", Offset: -1}
	// ErrDecimalNonFinite: the text spells NaN or an infinity.
	ErrDecimalNonFinite = &Error{Reason: ReasonBadNumber, Detail: "NaN or infinity", Offset: -1}
	// ErrDecimalRange: the value overflows float64.
	ErrDecimalRange = &Error{Reason: ReasonBadNumber, Detail: "number out of float64 range", Offset: -1}
)

// decPow10 holds the powers of ten that are exact in float64.
var decPow10 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// ParseDecimal parses a decimal number such as "189.23", "-0.5", "1e-8" or
// "42" exactly: the result is bit-for-bit what strconv.ParseFloat(s, 64)
// returns for the same text (it is the correctly rounded float64).
//
// The accepted grammar is [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)?
// with no surrounding spaces. Unlike strconv it rejects "NaN", "Inf",
// "Infinity" in any case (ErrDecimalNonFinite), hexadecimal floats and
// underscores (ErrDecimalSyntax), and values that overflow float64
// (ErrDecimalRange). Values below the smallest subnormal round to ±0, as in
// strconv.
//
// It does not allocate, except on the rare path where a value within a few
// units of float64's maximum exponent overflows (strconv builds its error).
// Exchange adapters use it for prices and sizes that arrive as strings.
func ParseDecimal(b []byte) (float64, error) {
	// Fast path: at most 19 digits in all, which accumulate exactly in a
	// uint64, and no exponent part. Anything else takes decParseSlow.
	i := 0
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		i = 1
	}
	var mant uint64
	nd := 0
	for ; i < len(b); i++ {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		mant = mant*10 + uint64(d)
		nd++
	}
	exp10 := 0
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for ; i < len(b); i++ {
			d := b[i] - '0'
			if d > 9 {
				break
			}
			mant = mant*10 + uint64(d)
		}
		exp10 = j - i
		nd += i - j
	}
	// Clinger's fast path: an exact mantissa below 2^53 times an exact power
	// of ten is correctly rounded by a single IEEE multiply or divide.
	if i == len(b) && nd > 0 && nd <= 19 && mant <= 1<<53 && exp10 >= -22 {
		f := float64(mant)
		if exp10 < 0 {
			f /= decPow10[-exp10]
		}
		if neg {
			f = -f
		}
		return f, nil
	}
	return decParseSlow(b)
}

// decParseSlow is ParseDecimal for exponents, long mantissas and errors.
func decParseSlow(b []byte) (float64, error) {
	i := 0
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		i = 1
	}
	if i == len(b) {
		return 0, ErrDecimalSyntax
	}
	if c := b[i] | 0x20; c == 'n' || c == 'i' {
		return 0, decNonFinite(b[i:])
	}

	// Mantissa: up to 19 significant digits accumulate exactly in mant;
	// further digits only mark the value as inexact for the fast path.
	var mant uint64
	nSig := 0 // significant digits seen (after leading zeros)
	dropped := false
	exp10 := 0   // decimal exponent adjustment from the point and dropped digits
	nDigits := 0 // mantissa digits seen, including leading zeros
	sawDot := false
	for ; i < len(b); i++ {
		c := b[i]
		if c >= '0' && c <= '9' {
			nDigits++
			if c == '0' && nSig == 0 {
				if sawDot {
					exp10--
				}
				continue
			}
			if nSig < 19 {
				mant = mant*10 + uint64(c-'0')
				nSig++
				if sawDot {
					exp10--
				}
			} else {
				if c != '0' {
					dropped = true
				}
				if !sawDot {
					exp10++
				}
			}
			continue
		}
		if c == '.' && !sawDot {
			sawDot = true
			continue
		}
		break
	}
	if nDigits == 0 {
		return 0, ErrDecimalSyntax
	}
	if i < len(b) {
		if b[i]|0x20 != 'e' {
			return 0, ErrDecimalSyntax
		}
		i++
		eneg := false
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			eneg = b[i] == '-'
			i++
		}
		if i == len(b) {
			return 0, ErrDecimalSyntax
		}
		e := 0
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return 0, ErrDecimalSyntax
			}
			if e < 1_000_000 { // saturate: anything beyond is over- or underflow anyway
				e = e*10 + int(c-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp10 += e
	}

	if !dropped && mant <= 1<<53 && exp10 >= -22 && exp10 <= 22 {
		f := float64(mant)
		if exp10 < 0 {
			f /= decPow10[-exp10]
		} else {
			f *= decPow10[exp10]
		}
		if neg {
			f = -f
		}
		return f, nil
	}
	if mant == 0 && !dropped {
		if neg {
			return decNegZero(), nil
		}
		return 0, nil
	}
	// The value is about 10^(nSig+exp10-1); float64 overflows at ~1.8e308.
	if nSig+exp10 > 310 {
		return 0, ErrDecimalRange
	}
	// The syntax is already validated and is a subset of strconv's, so the
	// only error left is ErrRange (overflow).
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil {
		return 0, ErrDecimalRange
	}
	return f, nil
}

// decNegZero returns -0.0 (a constant expression cannot produce it).
func decNegZero() float64 {
	z := 0.0
	return -z
}

// decNonFinite classifies text that starts with 'n' or 'i' after the sign.
func decNonFinite(b []byte) error {
	if decEqualFold(b, "nan") || decEqualFold(b, "inf") || decEqualFold(b, "infinity") {
		return ErrDecimalNonFinite
	}
	return ErrDecimalSyntax
}

// decEqualFold reports whether b equals w, a lower-case ASCII word, ignoring
// the case of ASCII letters in b.
func decEqualFold(b []byte, w string) bool {
	if len(b) != len(w) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}
