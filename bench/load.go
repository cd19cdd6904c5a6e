package bench

import (
	"runtime"
	"sync"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/internal/clock"
)

// OpenLoop is the schedule of an open-loop load generator: message i (from
// 0) is due at StartNs + i·IntervalNs on the clock.MonoNs clock, whatever
// happened to the messages before it. A generator that falls behind sends
// what is overdue at once and measures each message's latency from its due
// time (the intended send time), so a stall of the system under test shows
// up in the latency of every message it delayed: the measurement does not
// suffer from coordinated omission, and no correction of the histogram is
// needed.
type OpenLoop struct {
	StartNs    int64
	IntervalNs int64
}

// NewOpenLoop returns the schedule of rate messages per second starting at
// startNs. rate must be positive.
func NewOpenLoop(rate int, startNs int64) OpenLoop {
	return OpenLoop{StartNs: startNs, IntervalNs: max(1, int64(time.Second)/int64(rate))}
}

// Due returns the intended send time of message i.
func (o OpenLoop) Due(i int64) int64 { return o.StartNs + i*o.IntervalNs }

// DueBy returns how many messages (from 0) are due at nowNs.
func (o OpenLoop) DueBy(nowNs int64) int64 {
	if nowNs < o.StartNs {
		return 0
	}
	return (nowNs-o.StartNs)/o.IntervalNs + 1
}

// waitSleepSlack is how far ahead of a deadline WaitUntil stops sleeping:
// more than the usual oversleep of a Go timer, so the last stretch is waited
// out by yielding.
const waitSleepSlack = 200 * time.Microsecond

// WaitUntil returns once clock.MonoNs() >= deadlineNs, and the time it read
// then. It sleeps while the deadline is more than waitSleepSlack away and
// yields the processor (runtime.Gosched) for the rest, so it neither
// oversleeps by a timer's granularity nor holds a CPU for long: a yielding
// wait lasts at most waitSleepSlack.
func WaitUntil(deadlineNs int64) int64 {
	for {
		now := clock.MonoNs()
		left := time.Duration(deadlineNs - now)
		switch {
		case left <= 0:
			return now
		case left > waitSleepSlack:
			time.Sleep(left - waitSleepSlack)
		default:
			runtime.Gosched()
		}
	}
}

// EnginePublishers adapts an engine to feeds.Publishers, as `qstream run`
// does, and remembers the Publishers so that CloseAll can close them once
// their feed has returned.
type EnginePublishers struct {
	E    *engine.Engine
	mu   sync.Mutex
	pubs []*engine.Publisher
}

// NewPublisher implements feeds.Publishers.
func (p *EnginePublishers) NewPublisher(name string) (feeds.Publisher, error) {
	pub, err := p.E.NewPublisher(name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pubs = append(p.pubs, pub)
	p.mu.Unlock()
	return pub, nil
}

// Symbols implements feeds.Publishers.
func (p *EnginePublishers) Symbols() *codec.SymbolTable { return p.E.Symbols() }

// CloseAll closes every Publisher handed out. Precondition: the goroutines
// that used them have returned.
func (p *EnginePublishers) CloseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.pubs {
		pub.Close()
	}
}
