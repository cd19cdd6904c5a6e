package codec

import (
	"bytes"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// decGrammar is ParseDecimal's documented grammar, the oracle for which
// inputs it must accept.
var decGrammar = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// decCheck compares ParseDecimal with strconv.ParseFloat on s.
func decCheck(t testing.TB, s string) {
	t.Helper()
	got, err := ParseDecimal([]byte(s))
	want, serr := strconv.ParseFloat(s, 64)
	if err == nil {
		if serr != nil {
			t.Fatalf("ParseDecimal(%q) = %v, but strconv rejects it: %v", s, got, serr)
		}
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("ParseDecimal(%q) = %v (%#x), strconv %v (%#x)", s, got, math.Float64bits(got), want, math.Float64bits(want))
		}
		return
	}
	if ReasonOf(err) != ReasonBadNumber {
		t.Fatalf("ParseDecimal(%q): reason %s, want bad_number", s, ReasonOf(err))
	}
	if decGrammar.MatchString(s) && serr == nil {
		t.Fatalf("ParseDecimal(%q) rejected a valid decimal (%v); strconv gives %v", s, err, want)
	}
	if err == ErrDecimalRange && !errors_IsRange(serr) {
		t.Fatalf("ParseDecimal(%q) says out of range, strconv says %v", s, serr)
	}
}

func errors_IsRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func TestParseDecimalTable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  error
	}{
		{"189.23", 189.23, nil},
		{"0.00001234", 0.00001234, nil},
		{"42", 42, nil},
		{"+42", 42, nil},
		{"-0.5", -0.5, nil},
		{"5.", 5, nil},
		{".5", 0.5, nil},
		{"1e-8", 1e-8, nil},
		{"1E+3", 1000, nil},
		{"007", 7, nil},
		{"9007199254740993", 9007199254740992, nil}, // 2^53+1 rounds to even
		{"12345678901234567890123", 1.2345678901234568e22, nil},
		{"0.1000000000000000055511151231257827", 0.1, nil},
		{"1.7976931348623157e308", math.MaxFloat64, nil},
		{"4.9e-324", 5e-324, nil},
		{"1e-400", 0, nil}, // underflow rounds to 0, as strconv
		{"0e999999999999", 0, nil},
		{"", 0, ErrDecimalSyntax},
		{"-", 0, ErrDecimalSyntax},
		{".", 0, ErrDecimalSyntax},
		{"1e", 0, ErrDecimalSyntax},
		{"1e+", 0, ErrDecimalSyntax},
		{"1.2.3", 0, ErrDecimalSyntax},
		{" 1", 0, ErrDecimalSyntax},
		{"1 ", 0, ErrDecimalSyntax},
		{"0x1p3", 0, ErrDecimalSyntax},
		{"1_000", 0, ErrDecimalSyntax},
		{"abc", 0, ErrDecimalSyntax},
		{"nano", 0, ErrDecimalSyntax},
		{"NaN", 0, ErrDecimalNonFinite},
		{"nan", 0, ErrDecimalNonFinite},
		{"-nan", 0, ErrDecimalNonFinite},
		{"Inf", 0, ErrDecimalNonFinite},
		{"+inf", 0, ErrDecimalNonFinite},
		{"-Infinity", 0, ErrDecimalNonFinite},
		{"1e309", 0, ErrDecimalRange},
		{"1.7976931348623159e308", 0, ErrDecimalRange},
		{"-1e99999", 0, ErrDecimalRange},
	} {
		got, err := ParseDecimal([]byte(tc.in))
		if err != tc.err {
			t.Errorf("ParseDecimal(%q) error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && math.Float64bits(got) != math.Float64bits(tc.want) {
			t.Errorf("ParseDecimal(%q) = %v, want %v", tc.in, got, tc.want)
		}
		decCheck(t, tc.in)
	}
	if v, _ := ParseDecimal([]byte("-0")); !math.Signbit(v) || v != 0 {
		t.Errorf("ParseDecimal(-0) = %v, want -0", v)
	}
	if v, _ := ParseDecimal([]byte("-0e500")); !math.Signbit(v) || v != 0 {
		t.Errorf("ParseDecimal(-0e500) = %v, want -0", v)
	}
}

// TestParseDecimalMatchesStrconv is the property test: random decimal text,
// shaped like prices and like arbitrary floats, parses bit-identically to
// strconv.ParseFloat.
func TestParseDecimalMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	digits := func(n int) string {
		var sb strings.Builder
		for range n {
			sb.WriteByte(byte('0' + r.IntN(10)))
		}
		return sb.String()
	}
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	for range n {
		var s string
		switch r.IntN(4) {
		case 0: // exchange-style price or size
			s = strconv.Itoa(r.IntN(100000)) + "." + digits(r.IntN(10))
		case 1: // random components, possibly long and with an exponent
			s = digits(r.IntN(25))
			if r.IntN(2) == 0 {
				s += "." + digits(r.IntN(25))
			}
			if s == "" || s == "." {
				s = "0"
			}
			if r.IntN(2) == 0 {
				s += "e" + strconv.Itoa(r.IntN(700)-350)
			}
			if r.IntN(3) == 0 {
				s = "-" + s
			}
		case 2: // shortest representation of a random float64
			f := math.Float64frombits(r.Uint64())
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			s = strconv.FormatFloat(f, "eg"[r.IntN(2)], -1, 64)
		case 3: // a random float64 printed with too few or too many digits
			f := math.Float64frombits(r.Uint64())
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			s = strconv.FormatFloat(f, 'e', r.IntN(30), 64)
		}
		decCheck(t, s)
	}
}

func TestParseDecimalAllocs(t *testing.T) {
	inputs := [][]byte{[]byte("189.23"), []byte("0.00012345"), []byte("123456789012345678901234"),
		[]byte("1e-400"), []byte("NaN"), []byte("1.2.3"), []byte("1e999")}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range inputs {
			_, _ = ParseDecimal(b)
		}
	}); n != 0 {
		t.Fatalf("ParseDecimal allocates %v per run", n)
	}
}

// TestParseDecimalExchangeData checks ParseDecimal against strconv on every
// price and size string of the recorded Coinbase and Kraken WebSocket feeds
// and the Binance futures trade CSV in ../shared/testdata.
func TestParseDecimalExchangeData(t *testing.T) {
	var n int
	check := func(b []byte) {
		if len(b) == 0 {
			return
		}
		n++
		decCheck(t, string(b))
		if _, err := ParseDecimal(b); err != nil {
			t.Fatalf("exchange decimal %q rejected: %v", b, err)
		}
	}
	var jp fastjson.Parser

	// Coinbase: "<ts>: {json}" lines; numbers are strings.
	parserEachLine(t, parserSharedTestdata(t, "exchange/coinbase_ws_capture.txt"), func(line []byte) {
		i := bytes.Index(line, []byte(": {"))
		if i < 0 || bytes.Contains(line[:i], []byte("wss://")) {
			return
		}
		v, err := jp.ParseBytes(line[i+2:])
		if err != nil {
			t.Fatalf("coinbase capture line is not JSON: %v", err)
		}
		for _, k := range []string{"price", "size", "best_bid", "best_ask", "last_size", "volume_24h", "open_24h", "low_24h", "high_24h"} {
			check(v.GetStringBytes(k))
		}
		for _, ch := range v.GetArray("changes") { // l2update: [side, price, size]
			for _, x := range ch.GetArray()[1:] {
				check(x.GetStringBytes())
			}
		}
	})
	// Kraken: [channelID, [[price, volume, time, side, type, misc], ...], "trade", "PAIR"].
	parserEachLine(t, parserSharedTestdata(t, "exchange/kraken_trades_ws_capture.txt"), func(line []byte) {
		i := bytes.Index(line, []byte(": ["))
		if i < 0 {
			return
		}
		v, err := jp.ParseBytes(line[i+2:])
		if err != nil {
			return
		}
		for _, tr := range v.GetArray("1") {
			a := tr.GetArray()
			if len(a) >= 3 {
				check(a[0].GetStringBytes())
				check(a[1].GetStringBytes())
				check(a[2].GetStringBytes()) // "1618677816.123456": seconds as a decimal
			}
		}
	})
	// Binance futures (Tardis CSV): price and amount columns.
	parserEachLine(t, parserSharedTestdata(t, "trades/binance_futures_btcusdt_trades.csv"), func(line []byte) {
		f := bytes.Split(line, []byte(","))
		if len(f) != 8 || string(f[0]) == "exchange" {
			return
		}
		check(f[6])
		check(f[7])
	})
	if n < 10_000 {
		t.Fatalf("only %d exchange decimals checked; the captures look truncated", n)
	}
	t.Logf("%d exchange decimals match strconv", n)
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{
		"189.23", "0.00001234", "-0", "+7", "5.", ".5", "1e-8", "1E+3",
		"9007199254740993", "12345678901234567890123", "1.7976931348623157e308",
		"1.7976931348623159e308", "4.9e-324", "1e-400", "0e99999",
		"", "-", ".", "1e", "1.2.3", "0x1p3", "1_000", "NaN", "-Infinity", "inf",
		"43109.52000000", "0.00250000", "61234.5", // exchange-style strings
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		decCheck(t, s)
	})
}

func BenchmarkParseDecimal(b *testing.B) {
	in := []byte("43109.52000000")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDecimal(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseDecimalStrconv is the baseline: strconv.ParseFloat on a string.
func BenchmarkParseDecimalStrconv(b *testing.B) {
	in := "43109.52000000"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := strconv.ParseFloat(in, 64); err != nil {
			b.Fatal(err)
		}
	}
}
