package sinks

import (
	"testing"
	"time"
)

func TestSinkParams(t *testing.T) {
	for _, c := range []struct {
		v      string
		lo, hi time.Duration
		want   time.Duration
		err    string
	}{
		{"1ms", time.Millisecond, time.Hour, time.Millisecond, ""},
		{"1h", time.Millisecond, time.Hour, time.Hour, ""},
		{"999us", time.Millisecond, time.Hour, 0, `sinks: ws: ping="999us": want a duration in [1ms, 1h0m0s]`},
		{"61m", time.Millisecond, time.Hour, 0, `sinks: ws: ping="61m": want a duration in [1ms, 1h0m0s]`},
		{"soon", time.Millisecond, time.Hour, 0, `sinks: ws: ping="soon": want a duration in [1ms, 1h0m0s]`},
		{"1000h", time.Nanosecond, 0, 1000 * time.Hour, ""},
		{"0s", time.Nanosecond, 0, 0, `sinks: ws: ping="0s": want a duration of at least 1ns`},
	} {
		d, err := durationParam("ws", "ping", c.v, c.lo, c.hi)
		if msg := paramErrString(err); d != c.want || msg != c.err {
			t.Errorf("durationParam(%q, %v, %v) = %v, %q; want %v, %q", c.v, c.lo, c.hi, d, msg, c.want, c.err)
		}
	}
	for _, c := range []struct {
		v    string
		want int
		err  string
	}{
		{"1", 1, ""},
		{"8", 8, ""},
		{"0", 0, `sinks: nats: max_pending="0": want an integer in [1, 8]`},
		{"9", 0, `sinks: nats: max_pending="9": want an integer in [1, 8]`},
		{"x", 0, `sinks: nats: max_pending="x": want an integer in [1, 8]`},
	} {
		n, err := intParam("nats", "max_pending", c.v, 1, 8)
		if msg := paramErrString(err); n != c.want || msg != c.err {
			t.Errorf("intParam(%q) = %d, %q; want %d, %q", c.v, n, msg, c.want, c.err)
		}
	}
}

func paramErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
