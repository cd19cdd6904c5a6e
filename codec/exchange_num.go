package codec

import (
	"math"
)

// Time and hash helpers of the exchange adapters that the package's general
// parsers do not cover (decimal strings go through ParseDecimal and RFC 3339
// times through ParseTimestamp). Private and prefixed (ex...).

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
