package bench

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// NowNs is the clock of the load generators and of the latency
// measurements: Unix nanoseconds (time.Now, read through the vDSO without a
// system call or an allocation). It is shared by every process on the host,
// so a generator running in a process of its own (as the latency benchmark
// runs it) and the engine measure against the same clock.
func NowNs() int64 { return time.Now().UnixNano() }

// OpenLoop is the schedule of an open-loop load generator: message i (from
// 0) is due at StartNs + i·IntervalNs (NowNs clock), whatever happened to
// the messages before it. A generator that falls behind sends what is
// overdue at once, and latency is measured from each message's due time
// (its intended send time): a stall of the system under test, or of the
// generator, shows up in the latency of every message it delayed. So the
// measurement does not suffer from coordinated omission and needs no
// correction of the histogram afterwards.
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

// Pacing says how a generator waits for the next intended send time.
type Pacing uint8

// Pacings.
const (
	// PaceSpin busy-waits: sends leave on time to within a clock read, but
	// the generator keeps a CPU busy. For benchmarks, with the generator in
	// a process of its own.
	PaceSpin Pacing = iota
	// PaceSleep sleeps: no CPU is spent waiting, but sends leave late by the
	// timer's granularity (up to a millisecond), which the intended-time
	// accounting charges to the latency. For tests.
	PaceSleep
	// PaceNanosleep sleeps in nanosleep(2) on a thread with a 1 ns timer
	// slack (LockForNanosleep): sends leave late by the kernel's wake-up
	// latency (tens of µs on a VM) and no CPU is spent waiting. For shared
	// machines, where a busy generator would take a CPU from what it
	// measures.
	PaceNanosleep
)

// WaitUntil waits, as p says, until NowNs() >= deadlineNs and returns the
// time it read then.
func WaitUntil(deadlineNs int64, p Pacing) int64 {
	for {
		now := NowNs()
		if now >= deadlineNs {
			return now
		}
		switch p {
		case PaceSleep:
			time.Sleep(time.Duration(deadlineNs - now))
		case PaceNanosleep:
			nanosleep(deadlineNs - now)
		}
	}
}

// TCPLoad configures RunTCPLoad.
type TCPLoad struct {
	Rate     int   // messages per second (> 0)
	Messages int64 // how many to send (> 0)
	StartNs  int64 // the first message's intended send time (NowNs clock)
	Pacing   Pacing
	// WriteMax bounds one write: overdue messages go out together, up to
	// this many bytes (default 64 KiB).
	WriteMax int
	// Append appends message i, whose intended send time is dueNs, to dst.
	// It must not allocate for the run to stay allocation-free.
	Append func(dst []byte, i, dueNs int64) []byte
}

// ErrTCPLoadConfig is returned by RunTCPLoad for an invalid TCPLoad.
var ErrTCPLoadConfig = errors.New("bench: invalid TCP load")

// RunTCPLoad sends cfg.Messages messages to w on cfg's open-loop schedule:
// it waits for each message's intended time (Pacing), then writes every
// message due by then in one write. It returns each message's actual send
// time (NowNs just before the write that carried it).
func RunTCPLoad(w io.Writer, cfg TCPLoad) (sentNs []int64, err error) {
	if cfg.Rate <= 0 || cfg.Messages <= 0 || cfg.Append == nil {
		return nil, fmt.Errorf("%w: rate %d, messages %d", ErrTCPLoadConfig, cfg.Rate, cfg.Messages)
	}
	if cfg.WriteMax <= 0 {
		cfg.WriteMax = 64 << 10
	}
	sched := NewOpenLoop(cfg.Rate, cfg.StartNs)
	sentNs = make([]int64, cfg.Messages)
	buf := make([]byte, 0, cfg.WriteMax+4096)
	for i := int64(0); i < cfg.Messages; {
		now := WaitUntil(sched.Due(i), cfg.Pacing)
		due := min(sched.DueBy(now), cfg.Messages)
		buf = buf[:0]
		first := i
		for ; i < due && len(buf) < cfg.WriteMax; i++ {
			buf = cfg.Append(buf, i, sched.Due(i))
		}
		sent := NowNs()
		for s := first; s < i; s++ {
			sentNs[s] = sent
		}
		if _, err := w.Write(buf); err != nil {
			return sentNs, fmt.Errorf("bench: load: %w", err)
		}
	}
	return sentNs, nil
}
