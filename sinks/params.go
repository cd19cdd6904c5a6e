package sinks

import (
	"fmt"
	"strconv"
	"time"
)

// The writers' own query parameters share these parsers, so that a bound is
// checked and reported the same way on every scheme:
// "sinks: SINK: KEY=VALUE: want ... in [lo, hi]".

// intParam parses v, the value of the query parameter key of a sink's URL,
// as an integer in [lo, hi].
func intParam(sink, key, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("sinks: %s: %s=%q: want an integer in [%d, %d]", sink, key, v, lo, hi)
	}
	return n, nil
}

// durationParam parses v, the value of the query parameter key of a sink's
// URL, as a duration in [lo, hi]; hi <= 0 leaves it unbounded above. Pass lo
// = time.Nanosecond for "any positive duration".
func durationParam(sink, key, v string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || hi > 0 && d > hi {
		if hi <= 0 {
			return 0, fmt.Errorf("sinks: %s: %s=%q: want a duration of at least %s", sink, key, v, lo)
		}
		return 0, fmt.Errorf("sinks: %s: %s=%q: want a duration in [%s, %s]", sink, key, v, lo, hi)
	}
	return d, nil
}
