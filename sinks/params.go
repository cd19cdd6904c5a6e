package sinks

import (
	"fmt"
	"net/url"
	"slices"
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

// queryParams parses the query of a sink's URL; every parameter must be
// given once, but those named in repeatable.
func queryParams(sink string, u *url.URL, repeatable ...string) (url.Values, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("sinks: %s: query: %w", sink, err)
	}
	for k, vs := range q {
		if len(vs) != 1 && !slices.Contains(repeatable, k) {
			return nil, fmt.Errorf("sinks: %s: parameter %s given %d times", sink, k, len(vs))
		}
	}
	return q, nil
}
