package engine

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"qstream/internal/clock"
	"qstream/ops"
	"qstream/ring"
)

// collectBatchMax bounds the outputs handed to the OutputHandler per call.
const collectBatchMax = 1024

// collector is the single consumer of every shard's output and dead-letter
// rings. It calls the OutputHandler and DeadLetterHandler, so those need no
// locking against each other.
//
// In ordered mode it merges the shards' output streams by (Seq, shard,
// position in the shard's stream). A shard's outputs are already in Seq
// order, so a head with Seq X from shard i may go out once every other shard
// j either shows a head that sorts after it or has no head and has
// progressed to X (it has pushed every output with Seq ≤ X). Progress is read
// before the rings are polled, which is what makes "no head" conclusive.
type collector struct {
	e      *Engine
	waiter *ring.Waiter
	lat    *latencyRecorder
	buf    []ops.Output
	stamps []int64
	done   chan struct{}
	ready  func() bool

	delivered atomic.Uint64
	dead      atomic.Uint64

	// Outputs with text are groups (ops.GroupLen) that reach the handler
	// whole: stage[i] holds the start of a group from shard i whose rest is
	// not in its ring yet (unordered mode); in ordered mode open is the
	// shard whose group c.buf ends inside (-1 if none), which is the only
	// shard taken from until the group is complete.
	stage [][]ops.Output
	open  int
}

func newCollector(e *Engine, w *ring.Waiter) *collector {
	c := &collector{
		e:      e,
		waiter: w,
		lat:    newLatencyRecorder(),
		buf:    make([]ops.Output, 0, collectBatchMax),
		stamps: make([]int64, 0, collectBatchMax),
		done:   make(chan struct{}),
		stage:  make([][]ops.Output, len(e.shards)),
		open:   -1,
	}
	c.ready = c.anyReady
	return c
}

func (c *collector) anyReady() bool {
	for _, s := range c.e.shards {
		if s.out.Len() > 0 || s.dlq.Len() > 0 || s.out.Drained() {
			return true
		}
	}
	return false
}

func (c *collector) start() {
	go func() {
		defer close(c.done)
		if c.e.cfg.Ordered {
			c.runOrdered()
		} else {
			c.runUnordered()
		}
	}()
}

func (c *collector) wait() { <-c.done }

func (c *collector) allDrained() bool {
	for _, s := range c.e.shards {
		if !s.out.Drained() || !s.dlq.Drained() {
			return false
		}
	}
	return true
}

func (c *collector) runUnordered() {
	for {
		n := c.drainDeadLetters()
		for i, s := range c.e.shards {
			batch := s.out.Poll(collectBatchMax)
			if len(batch) == 0 {
				continue
			}
			c.deliverGroups(i, batch)
			s.out.Release(len(batch))
			n += len(batch)
		}
		if n > 0 {
			continue
		}
		if c.allDrained() {
			return
		}
		c.waiter.Wait(c.ready, idleCheckEvery)
	}
}

func (c *collector) runOrdered() {
	shards := c.e.shards
	prog := make([]uint64, len(shards))
	hasHead := make([]bool, len(shards))
	for {
		c.drainDeadLetters()
		for j, s := range shards {
			prog[j] = s.progress.Load()
		}
		moved := false
		for {
			// Find the smallest head by (Seq, shard), remembering which
			// shards showed no head at all.
			best, bestSeq := -1, uint64(math.MaxUint64)
			for j, s := range shards {
				h := s.out.Poll(1)
				hasHead[j] = len(h) > 0
				if hasHead[j] && (best < 0 || h[0].Seq < bestSeq) {
					best, bestSeq = j, h[0].Seq
				}
			}
			if c.open >= 0 {
				// The rest of a group: its shard pushes it before it
				// moves on, so wait for nothing else.
				if !hasHead[c.open] {
					break
				}
				best, bestSeq = c.open, shards[c.open].out.Poll(1)[0].Seq
			}
			if best < 0 {
				break
			}
			ok := true
			for j := range shards {
				if c.open < 0 && j != best && !hasHead[j] && prog[j] < bestSeq {
					ok = false // shard j may still produce outputs with Seq ≤ bestSeq
					break
				}
			}
			if !ok {
				break
			}
			// Take the run of outputs from the best shard with this Seq.
			s := shards[best]
			h := s.out.Poll(collectBatchMax - len(c.buf))
			k := 0
			for k < len(h) && h[k].Seq == bestSeq {
				k++
			}
			c.buf = append(c.buf, h[:k]...)
			s.out.Release(k)
			moved = true
			c.open = -1
			if g := ops.CompleteGroups(c.buf); g < len(c.buf) {
				c.open = best
			}
			if len(c.buf) == collectBatchMax {
				c.deliverBuf()
			}
		}
		c.deliverBuf()
		if moved {
			continue
		}
		if c.allDrained() {
			return
		}
		c.waiter.Wait(c.ready, time.Millisecond)
	}
}

// deliverBuf delivers the whole groups in c.buf and keeps the rest.
func (c *collector) deliverBuf() {
	g := ops.CompleteGroups(c.buf)
	if g > 0 {
		c.deliver(c.buf[:g])
	}
	c.buf = c.buf[:copy(c.buf, c.buf[g:])]
}

// deliverGroups delivers the whole groups of batch, from shard i, after
// what is staged for that shard, and stages the rest.
func (c *collector) deliverGroups(i int, batch []ops.Output) {
	st := c.stage[i]
	if len(st) > 0 {
		st = append(st, batch...)
		batch = st
	}
	g := ops.CompleteGroups(batch)
	if g > 0 {
		c.deliver(batch[:g])
	}
	if len(st) > 0 {
		c.stage[i] = st[:copy(st, batch[g:])]
	} else {
		c.stage[i] = append(st, batch[g:]...)
	}
}

// deliver hands a batch to the output handler, records the sink latency and
// keeps the first error sticky: after it, outputs are counted but dropped,
// and Stop reports the error.
func (c *collector) deliver(batch []ops.Output) {
	c.delivered.Add(uint64(len(batch)))
	streams := c.e.streamList()
	if len(streams) == 1 {
		c.deliverStream(streams[0], batch, false)
	} else {
		// A shard flushes one stream's outputs at a time, so a batch is a
		// few runs of one stream each (groups never span two).
		for rest := batch; len(rest) > 0; {
			idx, k := rest[0].Stream, 1
			for k < len(rest) && rest[k].Stream == idx {
				k++
			}
			if int(idx) < len(streams) {
				c.deliverStream(streams[idx], rest[:k], true)
			}
			rest = rest[k:]
		}
	}
	c.stamps = c.stamps[:0]
	for i := range batch {
		if batch[i].IngestNs != 0 {
			c.stamps = append(c.stamps, batch[i].IngestNs)
		}
	}
	if len(c.stamps) > 0 {
		c.lat.recordBatch(stageSink, clock.MonoNs(), c.stamps)
	}
}

// deliverStream hands one stream's run of outputs to its handler and, when
// the engine runs several streams, counts them for the stream (StopStream,
// StreamMetrics; with one stream Stats counts).
func (c *collector) deliverStream(st *stream, batch []ops.Output, count bool) {
	n := uint64(0)
	if count {
		for i := range batch {
			if batch[i].Kind != ops.OutText {
				n++
			}
		}
	}
	if r := st.patterns; r != nil {
		r.record(batch) // before the handler: a match is readable once delivered
	}
	if h := st.output; h != nil && !c.e.hasErr.Load() {
		if err := h.HandleOutputs(batch); err != nil {
			c.e.setErr(err)
		}
	}
	if n > 0 {
		st.delivered.Add(n)
	}
}

var deadLetterPool = sync.Pool{New: func() any { return new(DeadLetter) }}

func (c *collector) drainDeadLetters() int {
	n := 0
	for _, s := range c.e.shards {
		batch := s.dlq.Poll(64)
		for i := range batch {
			c.dead.Add(1)
			c.e.rejected[batch[i].reason].Add(1)
			if h := c.e.cfg.DeadLetters; h != nil {
				dl := deadLetterPool.Get().(*DeadLetter)
				*dl = DeadLetter{Reason: batch[i].reason, Feed: c.e.feedName(int(batch[i].ev.Source)), Event: &batch[i].ev,
					Pos: posOf(&batch[i].ev)}
				h.HandleDeadLetter(dl)
				*dl = DeadLetter{}
				deadLetterPool.Put(dl)
			}
		}
		s.dlq.Release(len(batch))
		n += len(batch)
	}
	return n
}
