package codec

import (
	"bytes"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

// tsStrictRFC3339 is the subset of time.RFC3339Nano that ParseTimestamp must
// accept whenever time.Parse does and the value is in range. The zone offset
// is limited to RFC 3339's ranges (hours 00-23, minutes 00-59): time.Parse
// falls back to a lenient parser that also takes "+00:60" (Go issue 54580),
// which ParseTimestamp rejects.
var tsStrictRFC3339 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

// tsOracle parses s with time.Parse after undoing ParseTimestamp's
// documented extensions ('t' or ' ' for 'T', 'z' for 'Z', ',' for '.').
func tsOracle(s string) (int64, bool) {
	b := []byte(s)
	if len(b) > 19 {
		if b[10] == 't' || b[10] == ' ' {
			b[10] = 'T'
		}
		if b[19] == ',' {
			b[19] = '.'
		}
		if b[len(b)-1] == 'z' {
			b[len(b)-1] = 'Z'
		}
	}
	tm, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	// UnixNano is undefined outside int64; compare in seconds first.
	if tm.Unix() < 0 || tm.Unix() > MaxTimestampNs/1e9 {
		return 0, false
	}
	if tm.Before(time.Unix(0, 0)) || tm.After(time.Unix(0, MaxTimestampNs)) {
		return 0, false
	}
	return tm.UnixNano(), true
}

func TestParseTimestampTable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // checked against time.Parse too for RFC 3339 input
		err  error
	}{
		{"1700000000123456789", 1700000000123456789, nil},
		{"0", 0, nil},
		{"9223372036854775807", math.MaxInt64, nil},
		{"2024-01-02T14:30:00.123Z", 1704205800123000000, nil},
		{"2024-01-02T14:30:00Z", 1704205800000000000, nil},
		{"2024-01-02T14:30:00.123456789Z", 1704205800123456789, nil},
		{"2024-01-02T14:30:00.1Z", 1704205800100000000, nil},
		{"2024-01-02T09:30:00-05:00", 1704205800000000000, nil},
		{"2024-01-02T20:00:00.5+05:30", 1704205800500000000, nil},
		{"2024-02-29T00:00:00Z", 1709164800000000000, nil},
		{"2000-02-29T00:00:00Z", 951782400000000000, nil},
		{"1970-01-01T00:00:00Z", 0, nil},
		{"1970-01-01T01:00:00+01:00", 0, nil},
		{"2021-04-17T16:43:37.123456Z", 1618677817123456000, nil}, // Coinbase "time"
		{"2262-04-11T23:47:16.854775807Z", math.MaxInt64, nil},
		{"2024-01-02t14:30:00.123z", 1704205800123000000, nil},
		{"2024-01-02 14:30:00,123Z", 1704205800123000000, nil},

		{"", 0, ErrTimestampSyntax},
		{"abc", 0, ErrTimestampSyntax},
		{"17000000001234x", 0, ErrTimestampSyntax},
		{"1.7e18", 0, ErrTimestampSyntax},
		{"2024-01-02T14:30:00", 0, ErrTimestampSyntax}, // no zone
		{"2024-01-02", 0, ErrTimestampSyntax},
		{"2024-01-02T14:30:00.Z", 0, ErrTimestampSyntax},
		{"2024-01-02T14:30:00.1234567891Z", 0, ErrTimestampSyntax}, // 10 digits
		{"2024-01-02T14:30:00+0500", 0, ErrTimestampSyntax},
		{"2024-01-02T14:30:00ZZ", 0, ErrTimestampSyntax},
		{"2024-1-02T14:30:00Z", 0, ErrTimestampSyntax},
		{"2024-01-02T4:30:00Z", 0, ErrTimestampSyntax},
		{"2024/01/02T14:30:00Z", 0, ErrTimestampSyntax},
		{"2024-01-02X14:30:00Z", 0, ErrTimestampSyntax},
		{"+2024-01-02T14:30:00Z", 0, ErrTimestampSyntax},

		{"9223372036854775808", 0, ErrTimestampRange},
		{"-1", 0, ErrTimestampRange},
		{"2024-13-02T14:30:00Z", 0, ErrTimestampRange},
		{"2024-00-02T14:30:00Z", 0, ErrTimestampRange},
		{"2023-02-29T14:30:00Z", 0, ErrTimestampRange},
		{"1900-02-29T14:30:00Z", 0, ErrTimestampRange},
		{"2024-04-31T14:30:00Z", 0, ErrTimestampRange},
		{"2024-01-02T24:00:00Z", 0, ErrTimestampRange},
		{"2024-01-02T23:60:00Z", 0, ErrTimestampRange},
		{"2016-12-31T23:59:60Z", 0, ErrTimestampRange}, // leap second
		{"2024-01-02T14:30:00+24:00", 0, ErrTimestampRange},
		{"2024-01-02T14:30:00+01:60", 0, ErrTimestampRange},
		{"2000-01-01T00:00:00+00:60", 0, ErrTimestampRange}, // time.Parse accepts it (Go issue 54580)
		{"1969-12-31T23:59:59.999999999Z", 0, ErrTimestampRange},
		{"1970-01-01T00:00:00+00:01", 0, ErrTimestampRange},
		{"2262-04-11T23:47:16.854775808Z", 0, ErrTimestampRange},
		{"9999-12-31T23:59:59Z", 0, ErrTimestampRange},
	} {
		got, err := ParseTimestamp([]byte(tc.in))
		if err != tc.err {
			t.Errorf("ParseTimestamp(%q) error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			if ReasonOf(err) != ReasonBadTimestamp {
				t.Errorf("ParseTimestamp(%q) reason %s", tc.in, ReasonOf(err))
			}
			continue
		}
		if got != tc.want {
			t.Errorf("ParseTimestamp(%q) = %d, want %d", tc.in, got, tc.want)
		}
		if strings.Contains(tc.in, "-") {
			if o, ok := tsOracle(tc.in); !ok || o != got {
				t.Errorf("ParseTimestamp(%q) = %d, time.Parse gives %d (ok %v)", tc.in, got, o, ok)
			}
		}
	}
}

// TestParseTimestampMatchesTimeFormat is the property test: random instants
// in range, formatted by the time package with every fraction width and a
// random zone, parse back to the same nanosecond.
func TestParseTimestampMatchesTimeFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	for range n {
		ns := r.Int64N(math.MaxInt64-48*3600*1e9) + 24*3600*1e9
		if r.IntN(4) == 0 {
			ns = ns / 1e9 * 1e9 // whole seconds
		}
		offMin := r.IntN(2*24*60-1) - (24*60 - 1)
		if r.IntN(3) == 0 {
			offMin = 0
		}
		tm := time.Unix(0, ns).In(time.FixedZone("", offMin*60))
		frac := strings.Repeat("0", r.IntN(10)) // fixed width, 0 to 9 digits
		layout := "2006-01-02T15:04:05"
		if frac != "" {
			layout += "." + frac
		}
		layout += "Z07:00"
		s := tm.Format(layout)
		want := tm.Truncate(time.Duration(math.Pow10(9 - len(frac)))).UnixNano()
		got, err := ParseTimestamp([]byte(s))
		if err != nil || got != want {
			t.Fatalf("ParseTimestamp(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}

func TestParseTimestampAllocs(t *testing.T) {
	in := [][]byte{[]byte("1700000000123456789"), []byte("2024-01-02T14:30:00.123456789-05:00"),
		[]byte("2024-02-30T00:00:00Z"), []byte("garbage")}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range in {
			_, _ = ParseTimestamp(b)
		}
	}); n != 0 {
		t.Fatalf("ParseTimestamp allocates %v per run", n)
	}
}

// TestParseTimestampCoinbaseCapture parses every "time" of the recorded
// Coinbase feed in ../shared/testdata and compares with time.Parse.
func TestParseTimestampCoinbaseCapture(t *testing.T) {
	var jp fastjson.Parser
	n := 0
	parserEachLine(t, parserSharedTestdata(t, "exchange/coinbase_ws_capture.txt"), func(line []byte) {
		i := bytes.Index(line, []byte(": {"))
		if i < 0 {
			return
		}
		v, err := jp.ParseBytes(line[i+2:])
		if err != nil {
			return
		}
		s := v.GetStringBytes("time")
		if s == nil {
			return
		}
		n++
		got, err := ParseTimestamp(s)
		want, ok := tsOracle(string(s))
		if err != nil || !ok || got != want {
			t.Fatalf("ParseTimestamp(%q) = %d, %v; time.Parse %d, %v", s, got, err, want, ok)
		}
	})
	if n < 1000 {
		t.Fatalf("only %d Coinbase times found", n)
	}
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{
		"1700000000123456789", "0", "9223372036854775807", "9223372036854775808", "-1",
		"2024-01-02T14:30:00.123Z", "2024-01-02T09:30:00-05:00", "2021-04-17T16:43:37.123456Z",
		"2262-04-11T23:47:16.854775807Z", "2262-04-11T23:47:16.854775808Z", "1969-12-31T23:59:59Z",
		"2024-02-29T00:00:00+14:00", "2024-01-02 14:30:00,5z", "2024-01-02T14:30:00", "garbage",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTimestamp([]byte(s))
		if err != nil {
			if ReasonOf(err) != ReasonBadTimestamp {
				t.Fatalf("ParseTimestamp(%q): reason %s", s, ReasonOf(err))
			}
		} else if got < MinTimestampNs {
			t.Fatalf("ParseTimestamp(%q) = %d, out of range", s, got)
		}
		if tsAllDigits([]byte(s)) && s != "" {
			return // integer nanoseconds: no time.Parse oracle
		}
		want, ok := tsOracle(s)
		if err == nil && (!ok || got != want) {
			t.Fatalf("ParseTimestamp(%q) = %d; time.Parse gives %d, %v", s, got, want, ok)
		}
		if err != nil && ok && tsStrictRFC3339.MatchString(s) {
			t.Fatalf("ParseTimestamp(%q) rejected (%v) a time that time.Parse reads as %d", s, err, want)
		}
	})
}

func BenchmarkParseTimestamp(b *testing.B) {
	in := []byte("2024-01-02T14:30:00.123456789Z")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTimestamp(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseTimestampStdlib is the baseline: time.Parse and UnixNano.
func BenchmarkParseTimestampStdlib(b *testing.B) {
	in := "2024-01-02T14:30:00.123456789Z"
	b.ReportAllocs()
	for b.Loop() {
		tm, err := time.Parse(time.RFC3339Nano, in)
		if err != nil {
			b.Fatal(err)
		}
		_ = tm.UnixNano()
	}
}

// TestParseTimestampIntegers is the property for integer nanoseconds:
// ParseTimestamp agrees with strconv.ParseInt on random digit strings of
// every length (with leading zeros and stray non-digits).
func TestParseTimestampIntegers(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	for range 200_000 {
		b := make([]byte, 1+r.IntN(24))
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		if r.IntN(4) == 0 {
			b = b[:copy(b, strconv.FormatUint(r.Uint64(), 10))]
		}
		if r.IntN(10) == 0 {
			b[r.IntN(len(b))] = "/:a. "[r.IntN(5)]
		}
		got, err := ParseTimestamp(b)
		want, serr := strconv.ParseInt(string(b), 10, 64)
		switch {
		case serr == nil && (err != nil || got != want):
			t.Fatalf("ParseTimestamp(%q) = %d, %v; strconv %d", b, got, err, want)
		case serr != nil && err == nil:
			t.Fatalf("ParseTimestamp(%q) = %d; strconv: %v", b, got, serr)
		case errors_IsRange(serr) && tsAllDigits(b) && err != ErrTimestampRange:
			t.Fatalf("ParseTimestamp(%q): %v, want ErrTimestampRange", b, err)
		}
	}
}
