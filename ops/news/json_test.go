package news

import (
	"math"
	"testing"
)

// TestAppendStringStable pins the escaping that sinks.AppendString does (the
// vectors are sinks.AppendString's output, checked when written; ops may not import sinks,
// and a test import would close a cycle once the engine wires this package).
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
		if got := string(appendString(nil, c.in)); got != c.want {
			t.Errorf("appendString(%q) = %s, want %s", c.in, got, c.want)
		}
		if got := string(appendBytes(nil, []byte(c.in))); got != c.want {
			t.Errorf("appendBytes(%q) = %s, want %s", c.in, got, c.want)
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
		if got := string(appendFloat(nil, c.in)); got != c.want {
			t.Errorf("appendFloat(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}
