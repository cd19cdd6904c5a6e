package ring

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Strategy is how a Waiter waits for its condition.
type Strategy uint8

// Wait strategies. The zero value is Spin; configuration should default to
// Park, which is right for small shared machines.
const (
	// Spin busy-loops on the condition: lowest latency, burns a whole core.
	// Only for dedicated (pinned, isolated) cores.
	Spin Strategy = iota
	// Yield spins briefly, then yields the CPU between checks (sched_yield,
	// and now and then runtime.Gosched): low latency, keeps the core busy
	// but lets other threads and goroutines run.
	Yield
	// Park spins very briefly, yields the CPU a few times (about 2 µs when
	// nothing else wants it), then sleeps until woken (or the timeout):
	// costs a wake-up (microseconds) per sleep, burns no CPU while asleep.
	Park
	strategyCount
)

// ErrStrategy is wrapped by the error ParseStrategy returns for an unknown
// name.
var ErrStrategy = errors.New("ring: unknown wait strategy")

var strategyNames = [strategyCount]string{Spin: "spin", Yield: "yield", Park: "park"}

// String returns the name ParseStrategy accepts ("spin", "yield", "park").
func (s Strategy) String() string {
	if s < strategyCount {
		return strategyNames[s]
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// ParseStrategy parses "spin", "yield" or "park" (any case, surrounding
// spaces ignored).
func ParseStrategy(s string) (Strategy, error) {
	name := strings.TrimSpace(s)
	for i, n := range strategyNames {
		if strings.EqualFold(name, n) {
			return Strategy(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want spin, yield or park)", ErrStrategy, s)
}
