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

	// Ordered mode's per-shard scratch: progress read before polling, and
	// whether a shard showed a head.
	prog    []uint64
	hasHead []bool

	// role is 1 while a goroutine takes a collection step: the collector
	// goroutine, or a shard delivering its own outputs when it has no input
	// pending (collectIdle). Everything above is owned by the role's holder;
	// the CompareAndSwap that takes it and the Store that gives it back
	// order one holder's work before the next's.
	role        atomic.Uint32
	inlineSteps atomic.Uint64 // steps taken by shards (tests, tuning)
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

		prog:    make([]uint64, len(e.shards)),
		hasHead: make([]bool, len(e.shards)),
	}
	c.ready = c.runnable
	return c
}

// runnable is the collector goroutine's wait condition: there is something
// to take and no shard is taking it. A shard that gives the role back with
// outputs left wakes the collector (collectIdle).
func (c *collector) runnable() bool {
	return c.role.Load() == 0 && c.anyReady()
}

// anyReady reports whether a shard's rings hold something for a collection
// step. Only atomics: the collector goroutine evaluates it without the role
// (runnable), while a shard may hold it (Drained reads the consumer's side).
func (c *collector) anyReady() bool {
	for _, s := range c.e.shards {
		if s.out.Len() > 0 || s.dlq.Len() > 0 || s.out.Closed() && s.out.Len() == 0 {
			return true
		}
	}
	return false
}

func (c *collector) start() {
	go func() {
		defer close(c.done)
		c.run()
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

// run is the collector goroutine: it takes collection steps until every
// shard's rings are drained, and sleeps while there is nothing to take or a
// shard is taking it (see collectIdle).
func (c *collector) run() {
	timeout := idleCheckEvery
	if c.e.cfg.Ordered {
		timeout = time.Millisecond // a shard's progress moves without a wake-up
	}
	for {
		if c.role.CompareAndSwap(0, 1) {
			n := c.step()
			drained := n == 0 && c.allDrained()
			c.role.Store(0)
			if drained {
				return
			}
			if n > 0 {
				continue
			}
		}
		c.waiter.Wait(c.ready, timeout)
	}
}

// step takes what the rings hold and delivers it, once round, and returns
// how many outputs and dead letters it moved (in ordered mode: whether it
// moved any). The caller holds the role.
func (c *collector) step() int {
	if c.e.cfg.Ordered {
		return c.stepOrdered()
	}
	return c.stepUnordered()
}

// collectIdle is called by a shard that has pushed outputs (PublishQuiet)
// and has no more input pending: nothing more is coming soon, so they are
// delivered now. If no one holds the role the shard takes one collection
// step itself, on its own thread: no hand-off to the collector goroutine
// and its wake-up (a context switch on a machine with a CPU to spare at
// most). Otherwise, or if outputs are left after the step, it wakes the
// collector goroutine, which holds the role or will take it.
//
// A shard with input pending calls collectBusy instead: the collector
// goroutine delivers while the shard processes the next batch.
func (c *collector) collectIdle() {
	if c.role.CompareAndSwap(0, 1) {
		c.step()
		c.role.Store(0)
		c.inlineSteps.Add(1)
		if !c.anyReady() {
			return
		}
	}
	c.waiter.Wake()
}

// collectBusy wakes the collector goroutine for outputs a shard pushed
// with PublishQuiet.
func (c *collector) collectBusy() { c.waiter.Wake() }

func (c *collector) stepUnordered() int {
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
	return n
}

func (c *collector) stepOrdered() int {
	shards := c.e.shards
	prog, hasHead := c.prog, c.hasHead
	c.drainDeadLetters()
	for j, s := range shards {
		prog[j] = s.progress.Load()
	}
	moved := 0
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
		moved += k
		c.open = -1
		if g := ops.CompleteGroups(c.buf); g < len(c.buf) {
			c.open = best
		}
		if len(c.buf) == collectBatchMax {
			c.deliverBuf()
		}
	}
	c.deliverBuf()
	return moved
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
