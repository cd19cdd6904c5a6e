package jsontext

import (
	"math"
	"testing"
)

// TestAppendStringStable pins the escaping of every output line (sinks and
// ops/news both write with this package).
func TestAppendStringStable(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `""`},
		{"plain AAPL", `"plain AAPL"`},
		{`q"b\`, `"q\"b\\"`},
		{"\x00\x1f\x7f\n\t", `"\u0000\u001f\u007f\u000a\u0009"`},
		{"Größe’s", `"Größe’s"`},
		{"bad\xffbyte\xe2\x80", `"bad\ufffdbyte\ufffd\ufffd"`},
		{"<&>", `"<&>"`},
	} {
		if got := string(AppendString(nil, c.in)); got != c.want {
			t.Errorf("AppendString(%q) = %s, want %s", c.in, got, c.want)
		}
		if got := string(AppendBytes(nil, []byte(c.in))); got != c.want {
			t.Errorf("AppendBytes(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestAppendFloatStable(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1, "1"}, {-0.75, "-0.75"}, {0.1234, "0.1234"}, {1e-7, "1e-7"}, {1e21, "1e+21"},
		{123456789, "123456789"}, {math.NaN(), "null"}, {math.Inf(-1), "null"},
	} {
		if got := string(AppendFloat(nil, c.in)); got != c.want {
			t.Errorf("AppendFloat(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// Appending to a buffer with room allocates nothing, for text with
// multi-byte and invalid sequences too.
func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	b := []byte("Größe\xff \"q\"")
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendBytes(buf[:0], b)
		buf = AppendString(buf, "plain")
		buf = AppendFloat(buf, 1.5e-9)
	}); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}
