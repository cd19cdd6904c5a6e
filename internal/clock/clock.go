// Package clock is qstream's processing-time clock: a monotonic nanosecond
// count since process start. It is used for ingest stamps, latency metrics,
// timeouts and pacing, never by operators (they run on event time).
package clock

import "time"

var start = time.Now()

// MonoNs returns monotonic nanoseconds since process start; never 0.
func MonoNs() int64 { return int64(time.Since(start)) + 1 }
