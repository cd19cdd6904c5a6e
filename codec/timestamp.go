package codec

import (
	"encoding/binary"
	"math"
)

// Errors returned by ParseTimestamp. They are shared, immutable values (do
// not modify them); both carry ReasonBadTimestamp, so errors.Is cannot tell
// them apart: compare with == when the cause matters.
var (
	// ErrTimestampSyntax: neither integer nanoseconds nor RFC 3339.
	ErrTimestampSyntax = &Error{Reason: ReasonBadTimestamp, Detail: "not integer nanoseconds or RFC 3339", Offset: -1}
	// ErrTimestampRange: a well-formed time outside [MinTimestampNs, MaxTimestampNs],
	// or a calendar field out of range (month 13, February 30, hour 24, ...).
	ErrTimestampRange = &Error{Reason: ReasonBadTimestamp, Detail: "timestamp out of range", Offset: -1}
)

// The range of event times: from the Unix epoch to the largest int64
// nanosecond, 2262-04-11T23:47:16.854775807Z. Market data before 1970 has no
// nanosecond feed; a negative time is far more likely a unit mix-up.
const (
	MinTimestampNs int64 = 0
	MaxTimestampNs int64 = math.MaxInt64
)

// ParseTimestamp parses an event time into nanoseconds since the Unix epoch.
// It accepts:
//
//   - integer nanoseconds: ASCII digits only ("1700000000123456789");
//   - RFC 3339 / ISO 8601 extended format with a zone:
//     YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm), where the fraction has 1 to
//     9 digits. As RFC 3339 permits, 't', 'z' and a space in place of 'T' are
//     accepted, and ISO 8601's ',' may stand for the decimal point.
//
// A time without a zone is rejected (its meaning depends on the sender). Leap
// seconds (:60) are rejected, as time.Parse does. The result must lie in
// [MinTimestampNs, MaxTimestampNs], otherwise ErrTimestampRange. For the
// RFC 3339 subset that time.Parse(time.RFC3339Nano, s) accepts, the result
// equals its UnixNano.
//
// It does not allocate and does not call the time package.
func ParseTimestamp(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, ErrTimestampSyntax
	}
	if b[0] >= '0' && b[0] <= '9' && (len(b) < 5 || b[4] != '-') {
		return tsParseInt(b)
	}
	if b[0] == '-' && len(b) > 1 && tsAllDigits(b[1:]) {
		return 0, ErrTimestampRange // a negative integer: before the epoch
	}
	return tsParseRFC3339(b)
}

func tsAllDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func tsParseInt(b []byte) (int64, error) {
	for len(b) > 1 && b[0] == '0' {
		b = b[1:] // leading zeros do not count towards the 19-digit limit
	}
	if len(b) > 19 {
		if tsAllDigits(b) {
			return 0, ErrTimestampRange
		}
		return 0, ErrTimestampSyntax
	}
	// At most 19 digits: the value fits a uint64; check int64 once at the end.
	var n uint64
	for len(b) >= 8 {
		v, ok := tsEightDigits(b)
		if !ok {
			return 0, ErrTimestampSyntax
		}
		n = n*100_000_000 + v
		b = b[8:]
	}
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, ErrTimestampSyntax
		}
		n = n*10 + uint64(d)
	}
	if n > math.MaxInt64 {
		return 0, ErrTimestampRange
	}
	return int64(n), nil
}

// tsEightDigits parses b[:8] as eight ASCII digits at once (SWAR); ok is
// false if any of them is not a digit. The caller ensures len(b) >= 8.
func tsEightDigits(b []byte) (uint64, bool) {
	x := binary.LittleEndian.Uint64(b)
	// Every byte must be 0x30..0x39: high nibble 3, and adding 6 must not carry
	// into the high nibble.
	if x&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 ||
		(x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 {
		return 0, false
	}
	x -= 0x3030303030303030
	// b[0] is the lowest byte and the most significant digit.
	x = (x*10 + x>>8) & 0x00FF00FF00FF00FF
	x = (x*100 + x>>16) & 0x0000FFFF0000FFFF
	x = (x*10000 + x>>32) & 0xFFFFFFFF
	return x, true
}

// tsNum2 parses two ASCII digits; ok is false if either is not a digit.
func tsNum2(b []byte) (int, bool) {
	d0, d1 := b[0]-'0', b[1]-'0'
	if d0 > 9 || d1 > 9 {
		return 0, false
	}
	return int(d0)*10 + int(d1), true
}

func tsParseRFC3339(b []byte) (int64, error) {
	const minLen = len("2006-01-02T15:04:05Z")
	if len(b) < minLen {
		return 0, ErrTimestampSyntax
	}
	yh, ok1 := tsNum2(b[0:2])
	yl, ok2 := tsNum2(b[2:4])
	month, ok3 := tsNum2(b[5:7])
	day, ok4 := tsNum2(b[8:10])
	hour, ok5 := tsNum2(b[11:13])
	minute, ok6 := tsNum2(b[14:16])
	sec, ok7 := tsNum2(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) ||
		b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' ||
		(b[10] != 'T' && b[10] != 't' && b[10] != ' ') {
		return 0, ErrTimestampSyntax
	}
	year := yh*100 + yl
	rest := b[19:]

	// Fraction: 1 to 9 digits, scaled to nanoseconds.
	var frac int64
	if rest[0] == '.' || rest[0] == ',' {
		n := 0
		for n+1 < len(rest) && rest[n+1] >= '0' && rest[n+1] <= '9' {
			if n == 9 {
				return 0, ErrTimestampSyntax // more than nanosecond precision
			}
			frac = frac*10 + int64(rest[n+1]-'0')
			n++
		}
		if n == 0 {
			return 0, ErrTimestampSyntax
		}
		for k := n; k < 9; k++ {
			frac *= 10
		}
		rest = rest[n+1:]
	}

	// Zone.
	var offsetSec int64
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := tsNum2(rest[1:3])
		om, okm := tsNum2(rest[4:6])
		if !okh || !okm {
			return 0, ErrTimestampSyntax
		}
		if oh > 23 || om > 59 {
			return 0, ErrTimestampRange
		}
		offsetSec = int64(oh*3600 + om*60)
		if rest[0] == '-' {
			offsetSec = -offsetSec
		}
	default:
		return 0, ErrTimestampSyntax
	}

	if month < 1 || month > 12 || day < 1 || day > tsDaysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, ErrTimestampRange
	}
	secs := tsDaysFromCivil(year, month, day)*86400 +
		int64(hour*3600+minute*60+sec) - offsetSec
	const maxSec = MaxTimestampNs / 1e9
	const maxFrac = MaxTimestampNs % 1e9
	if secs < 0 || secs > maxSec || (secs == maxSec && frac > maxFrac) {
		return 0, ErrTimestampRange
	}
	return secs*1e9 + frac, nil
}

func tsIsLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func tsDaysIn(month, year int) int {
	switch month {
	case 2:
		if tsIsLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// tsDaysFromCivil returns the number of days from 1970-01-01 to the given
// proleptic Gregorian date (Howard Hinnant's days_from_civil), for years
// 0..9999.
func tsDaysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400 // [0, 399]
	mp := (m + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
