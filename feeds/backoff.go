package feeds

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// ErrRetriesExhausted is returned (wrapped) by a feed that gave up after
// Backoff.MaxAttempts consecutive failed attempts.
var ErrRetriesExhausted = errors.New("feeds: retries exhausted")

// Backoff computes the delays between reconnect (or retry) attempts: capped
// exponential growth with full jitter, as in "Exponential Backoff And
// Jitter" (AWS Architecture Blog, 2015). Retry n (0-based) waits a duration
// drawn uniformly from [Min, min(Max, Base·2^n)]. Jitter spreads the
// reconnects of many clients after a shared outage; the Min floor keeps a
// run of zero draws from turning into a tight reconnect loop.
//
// The zero value is usable and means the defaults below.
type Backoff struct {
	Base        time.Duration // ceiling of the first retry; default 100ms
	Max         time.Duration // cap of the ceiling; default 30s
	Min         time.Duration // floor of every delay; default 10ms (capped at the ceiling)
	MaxAttempts int           // consecutive failures before giving up; 0 means retry forever
}

// Default backoff parameters.
const (
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
	DefaultBackoffMin  = 10 * time.Millisecond
)

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.Min <= 0 {
		b.Min = DefaultBackoffMin
	}
	return b
}

// Ceiling returns the upper bound of the delay before retry attempt
// (0-based): min(Max, Base·2^attempt), without overflow.
func (b Backoff) Ceiling(attempt int) time.Duration {
	b = b.withDefaults()
	c := b.Base
	for i := 0; i < attempt; i++ {
		if c > b.Max/2 {
			return b.Max
		}
		c <<= 1
	}
	return min(c, b.Max)
}

// Delay returns the delay before retry attempt (0-based), drawn with rnd.
// The result lies in [min(Min, ceiling), ceiling].
func (b Backoff) Delay(attempt int, rnd *rand.Rand) time.Duration {
	b = b.withDefaults()
	ceil := b.Ceiling(attempt)
	lo := min(b.Min, ceil)
	return lo + time.Duration(rnd.Int64N(int64(ceil-lo)+1))
}

// Exhausted reports whether failures consecutive failed attempts use up the
// budget (never when MaxAttempts is 0).
func (b Backoff) Exhausted(failures int) bool {
	return b.MaxAttempts > 0 && failures >= b.MaxAttempts
}

// newJitterRand returns the random source for jitter: seeded (deterministic)
// when seed != 0, else from the runtime's entropy.
func newJitterRand(seed uint64) *rand.Rand {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// sleepCtx waits for d or until ctx is done, whichever comes first, and
// returns ctx.Err() in the latter case.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
