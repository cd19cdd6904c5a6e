package sinks

import (
	"math/rand/v2"
	"time"
)

// Backoff bounds of the default retry delay.
const (
	backoffMin  = time.Millisecond
	backoffBase = 10 * time.Millisecond
	backoffCap  = 2 * time.Second
)

// FullJitter is capped exponential backoff with full jitter (the AWS
// architecture blog's "full jitter"): a delay drawn uniformly from
// [1ms, min(2s, 10ms·2^(attempt-1))] for attempt 1, 2, ...
func FullJitter(rnd *rand.Rand, attempt int) time.Duration {
	ceil := backoffBase
	for i := 1; i < attempt && ceil < backoffCap; i++ {
		ceil *= 2
	}
	ceil = min(ceil, backoffCap)
	return backoffMin + time.Duration(rnd.Int64N(int64(ceil-backoffMin)+1))
}
