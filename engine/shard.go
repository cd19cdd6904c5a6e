package engine

import (
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"qstream/codec"
	"qstream/internal/clock"
	"qstream/internal/cpu"
	"qstream/ops"
	"qstream/ring"
)

const (
	minInt64 = math.MinInt64
	// pollBatchMax bounds how many events a shard takes from one ring before
	// it looks at the next: fairness between producers and a bound on the
	// output produced per step.
	pollBatchMax = 256
	// outBufCap is the preallocated capacity of a shard's output buffer. One
	// event rarely produces more than a handful of outputs; a watermark may
	// fire many windows, and the buffer is flushed whenever it fills.
	outBufCap = 4096
	// idleCheckEvery is how often a parked shard wakes to check for idle
	// sources and stop requests when nothing arrives.
	idleCheckEvery = 50 * time.Millisecond
)

// SourceKeyedProcessor is a Processor whose per-input outputs (indicator
// lines) carry keys that name the input's source, so that they are unique
// per input message across every Publisher of the engine. The shard calls
// SetSourceKey before each batch of events from one Publisher with two
// stable keys of it, the same in a recovery replay: src = codec.HashID of
// its name (not its index, which depends on creation order), the namespace
// of its offsets (Event.Seq); scope = codec.HashID of its dedup scope (the
// name up to its first '/'), the namespace of its message ids
// (Event.IDHash). *ops.Pipeline implements it.
type SourceKeyedProcessor interface {
	SetSourceKey(src, scope uint64)
}

// deadLetter is a rejection raised inside a shard (late event, symbol
// capacity), carried to the collector through a bounded ring.
type deadLetter struct {
	ev     codec.Event
	reason codec.Reason
}

// shard is one worker loop. Everything in it except the atomics, the
// latency recorder and the rings' other sides is owned by its goroutine.
type shard struct {
	e      *Engine
	id     int
	waiter *ring.Waiter // consumer side of every input ring
	out    *ring.SPSC[ops.Output]
	dlq    *ring.SPSC[deadLetter]

	inputs []*ring.SPSC[codec.Event] // indexed by publisher id; refreshed from e.pubs
	// strs are the shard's part of each stream (streams.go), indexed by
	// stream index: its processor and watermark. Owned by the shard
	// goroutine; strPub is the same for readers off it (Stats, the API).
	strs     []*shardStream
	strPub   [MaxStreams]atomic.Pointer[shardStream]
	inStream []int        // per input: the index of its publisher's stream
	cur      *shardStream // the stream whose outputs outBuf holds
	outBuf   []ops.Output

	progress atomic.Uint64 // Seq of the last event whose outputs are all in out
	lat      *latencyRecorder

	// counters, written by the shard, read by Stats
	byKind   [codec.KindCount]atomic.Uint64
	kinds    [codec.KindCount]uint64 // this batch's counts, added to byKind at its end
	outputs  atomic.Uint64
	dead     atomic.Uint64
	batchBuf []stampRun // ingest stamps of the batch being processed, runs of equal ones
	ready    func() bool
	// inBatch is true while processBatch runs (its input not released);
	// outAge counts the loop rounds since outputs were pushed without
	// being delivered (deliverOutputs), 0 when there are none.
	inBatch bool
	outAge  int

	ptNextNs    int64         // when to call the processing-time triggers next (monotonic ns)
	waitTimeout time.Duration // longest sleep of an idle shard
	ctl         mailbox       // control functions from the API (api.go)
	ctlFlag     atomic.Bool   // set while ctl holds work
	srcHash     []uint64      // per input: its publisher's name hash (output keys)
	scopeHash   []uint64      // per input: its publisher's dedup scope hash (dedup keys)
	capture     []*Publisher  // per input: its publisher if it is a stream's API publisher (ProcessMessage)
	dedup       *dedupSet     // nil unless Config.DedupHorizon > 0
	offsets     offsetDedup   // the dedup of sources whose ids are their offsets (dedup.go)
	cut         shardCut      // checkpoint alignment (checkpoint_shard.go)
	texts       []textAsm     // per input: the event whose text chunks are arriving
	textOuts    int           // OutText outputs in outBuf (not counted as outputs)

	// outWait is the producer side of out and dlq: the shard's waiter, or
	// with Config.Chain a Waiter of its own, so that a collection step
	// releasing outputs does not wake a parked shard (chain.go).
	outWait    *ring.Waiter
	chainState // the role token and what a chained round leaves behind (chain.go)
}

// shardStream is one stream's part of a shard: its operator chain and the
// watermark of its sources. Owned by the shard goroutine but for the
// atomics.
type shardStream struct {
	idx      int
	proc     Processor
	batch    BatchProcessor          // the processor, if it takes runs of events
	keyed    SourceKeyedProcessor    // the processor, if its output keys name the source
	textProc TextProcessor           // the processor, if it takes text
	ptProc   ProcessingTimeProcessor // the processor, if it has processing-time triggers and ProcessingTimeTick > 0
	// wm combines the stream's publishers' watermarks (ops.WatermarkTracker:
	// min over active sources, idleness from each publisher's last flush,
	// detached sources excluded; indexed by input, publishers of other
	// streams never seen); wmNs is its value as last given to the processor.
	wm    *ops.WatermarkTracker
	wmNs  int64 // the stream's watermark on this shard, monotone
	ended bool  // StopStream fired its end: it takes no more input
	// wmPub is wmNs for readers off the shard goroutine (Stats), stored
	// when the watermark moves; processed counts its events (added once per
	// batch), outputs what it pushed, dead its operator-time rejections.
	wmPub     atomic.Int64
	processed atomic.Uint64
	outputs   atomic.Uint64
	dead      [codec.ReasonCount]atomic.Uint64
}

func newShardStream(e *Engine, idx int, proc Processor) *shardStream {
	ss := &shardStream{idx: idx, proc: proc, wmNs: minInt64}
	ss.wmPub.Store(minInt64)
	// Publishers send their watermarks with the out-of-orderness applied.
	ss.wm = ops.NewWatermarkTracker(e.cfg.MaxProducers, 0, int64(e.cfg.IdleTimeout))
	ss.keyed, _ = proc.(SourceKeyedProcessor)
	ss.batch, _ = proc.(BatchProcessor)
	ss.textProc, _ = proc.(TextProcessor)
	if pt, ok := proc.(ProcessingTimeProcessor); ok && e.cfg.ProcessingTimeTick > 0 {
		ss.ptProc = pt
	}
	return ss
}

// addStream gives the shard its part of stream idx. On the shard goroutine
// (a control function), or before the shard runs.
func (s *shard) addStream(ss *shardStream) {
	for len(s.strs) <= ss.idx {
		s.strs = append(s.strs, nil)
	}
	s.strs[ss.idx] = ss
	s.strPub[ss.idx].Store(ss)
	if ss.ptProc != nil {
		s.waitTimeout = min(idleCheckEvery, s.e.cfg.ProcessingTimeTick)
	}
}

// use makes ss the stream whose outputs outBuf collects, flushing another
// stream's first.
func (s *shard) use(ss *shardStream) {
	if s.cur != ss {
		s.flushOutputs()
		s.cur = ss
	}
}

// textAsm gathers the text of one event from its KindText chunks. A
// Publisher puts an event and its chunks into a ring back to back, so at
// most one is open per input.
type textAsm struct {
	head codec.Event
	buf  []byte // grows to the largest text seen, at most codec.MaxText
	open bool
}

func newShard(e *Engine, id int, proc Processor, outWaiter *ring.Waiter) (*shard, error) {
	s := &shard{
		e:           e,
		id:          id,
		waiter:      ring.NewWaiter(e.cfg.Wait),
		outBuf:      make([]ops.Output, 0, outBufCap),
		lat:         newLatencyRecorder(),
		batchBuf:    make([]stampRun, 0, pollBatchMax),
		waitTimeout: idleCheckEvery,
	}
	s.addStream(newShardStream(e, 0, proc))
	s.cur = s.strs[0]
	s.outWait = s.waiter
	s.ready = s.inputReady
	s.role.Store(1) // the shard's from the start: nobody chains before it runs
	if e.cfg.Chain {
		s.outWait = ring.NewWaiter(e.cfg.Wait)
		s.ready = s.readyChained
	}
	var err error
	if s.out, err = ring.New[ops.Output](e.cfg.OutRingSize, outWaiter, s.outWait); err != nil {
		return nil, fmt.Errorf("engine: output ring: %w", err)
	}
	if s.dlq, err = ring.New[deadLetter](1024, outWaiter, s.outWait); err != nil {
		return nil, fmt.Errorf("engine: dead-letter ring: %w", err)
	}
	return s, nil
}

// processingTime calls the processor's processing-time triggers once per
// ProcessingTimeTick (early window firings). It reads the clock once.
func (s *shard) processingTime() {
	now := clock.MonoNs()
	if now < s.ptNextNs {
		return
	}
	s.ptNextNs = now + int64(s.e.cfg.ProcessingTimeTick)
	for _, ss := range s.strs {
		if ss != nil && ss.ptProc != nil && !ss.ended {
			s.use(ss)
			s.outBuf = ss.ptProc.OnProcessingTime(now, s.progress.Load(), s.outBuf)
		}
	}
	s.flushOutputs()
}

func (s *shard) inputReady() bool {
	for i, r := range s.inputs {
		if r.Len() > 0 && (s.cut.req == nil || !s.cutHolds(i)) {
			return true
		}
	}
	return s.e.stopping.Load() || s.e.paused.Load() || len(*s.e.pubs.Load()) != len(s.inputs) || s.cutWanted() || s.ctlFlag.Load() ||
		s.handBack.Load()
}

// refreshInputs picks up publishers created since the last look.
func (s *shard) refreshInputs() {
	pubs := *s.e.pubs.Load()
	for i := len(s.inputs); i < len(pubs); i++ {
		s.inputs = append(s.inputs, pubs[i].rings[s.id])
		s.srcHash = append(s.srcHash, pubs[i].srcHash)
		s.scopeHash = append(s.scopeHash, pubs[i].scopeHash)
		s.inStream = append(s.inStream, pubs[i].stream.idx)
		var c *Publisher
		if pubs[i].api {
			c = pubs[i]
		}
		s.capture = append(s.capture, c)
	}
}

// locksThread reports whether a shard of cfg runs on an OS thread of its
// own (runtime.LockOSThread): when it is pinned to a CPU (PinCPUs), which
// needs its thread, or busy-waits (Spin, Yield: its thread never sleeps;
// Yield then gives the CPU up with sched_yield, see ring.Waiter). A shard
// that parks does not: waking a goroutine locked to its thread makes the
// runtime hand a P from the waker's thread to the sleeping one and stop the
// waker's (two thread wake-ups and context switches where an unlocked
// goroutine takes a P, often the waker's, with at most one). A replay,
// whose shard parks and wakes for every few chunks of input, ran 1.3-1.5x
// faster unlocked (2M trades with a window: 0.20-0.23 -> 0.14-0.16 s); the
// ring hand-off under Park 1.5-5x; a saturated run (the shard never parks)
// is the same either way. Unlocked, Yield measured worse end to end (p50
// 0.6 ms with sched_yield, 1.5 ms with Gosched, against 0.08-0.4 ms
// locked).
func locksThread(cfg *Config) bool { return len(cfg.PinCPUs) > 0 || cfg.Wait != ring.Park }

func (s *shard) run() {
	if locksThread(&s.e.cfg) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		s.waiter.SetThreadLocked(true)
	}
	if pins := s.e.cfg.PinCPUs; len(pins) > 0 {
		if err := cpu.PinThread(pins[s.id%len(pins)]); err != nil {
			s.e.pinOnce.Do(func() {
				s.e.cfg.Logger.Warn("engine: CPU pinning refused; shards run unpinned", "err", err)
			})
		}
	}
	micro := s.e.cfg.Mode == ModeMicroBatch
	var batchStartNs int64
	for {
		if s.ctlFlag.Load() {
			s.runControl()
		}
		if s.e.paused.Load() && !s.e.stopping.Load() {
			s.deliverNow()
			s.e.waitForResume(&s.ctlFlag)
			if s.ctlFlag.Load() {
				continue // run the control functions, then wait again
			}
		}
		if len(*s.e.pubs.Load()) != len(s.inputs) {
			s.refreshInputs()
		}
		// Progress argument for the ordered collector: read what every
		// publisher has committed before looking at the rings (only it
		// reads progress).
		var committed uint64
		if s.e.cfg.Ordered {
			committed = s.committedSeq()
		}
		if micro {
			avail := 0
			for _, r := range s.inputs {
				avail += r.Len()
			}
			if avail > 0 && avail < s.e.cfg.BatchSize && !s.e.stopping.Load() {
				now := clock.MonoNs()
				if batchStartNs == 0 {
					batchStartNs = now
				}
				if left := time.Duration(batchStartNs + int64(s.e.cfg.BatchTimeout) - now); left > 0 {
					s.deliverNow()
					s.waiter.Wait(s.ready, left)
					continue
				}
			}
			batchStartNs = 0
		}
		n := s.pollInputs()
		s.deliverOutputs()
		if s.e.cut != nil {
			s.checkCut()
		}
		if s.e.cfg.ProcessingTimeTick > 0 {
			s.processingTime()
		}
		if n > 0 {
			continue
		}
		// Nothing arrived: every event up to `committed` has been processed
		// (but an event whose text is still arriving).
		s.caughtUp(committed)
		if s.e.stopping.Load() && s.inputsDrained() && !s.cutPending() {
			s.finish()
			return
		}
		if s.e.cfg.IdleTimeout > 0 {
			s.checkIdle()
		}
		s.deliverNow()
		s.wait()
	}
}

// pollInputs processes one batch (at most pollBatchMax events) from each
// input that the checkpoint alignment does not hold, and returns how many
// events it consumed. A chained round stops early when its outputs cannot
// be pushed (chainBail).
func (s *shard) pollInputs() int {
	n := 0
	for src, r := range s.inputs {
		if s.cut.req != nil && s.cutHolds(src) {
			continue // aligning a checkpoint: this input is past the cut
		}
		batch := r.Poll(pollBatchMax)
		if len(batch) == 0 {
			continue
		}
		s.inBatch = true
		k := s.processBatch(src, batch)
		s.inBatch = false
		r.Release(k)
		n += k
		if s.chainBail {
			break
		}
	}
	return n
}

// caughtUp runs after a round that found nothing: every event up to
// committed (read before the rings were polled) has been processed (but an
// event whose text is still arriving).
func (s *shard) caughtUp(committed uint64) {
	if committed = s.capProgress(committed); committed > s.progress.Load() {
		s.progress.Store(committed)
	}
}

func (s *shard) committedSeq() uint64 {
	pubs := *s.e.pubs.Load()
	if len(pubs) == 0 {
		return 0
	}
	c := uint64(math.MaxUint64)
	for _, p := range pubs {
		c = min(c, p.committedSeq.Load())
	}
	return c
}

func (s *shard) inputsDrained() bool {
	for _, r := range s.inputs {
		if r.Len() > 0 {
			return false
		}
	}
	return len(*s.e.pubs.Load()) == len(s.inputs)
}

// processBatch runs the processor over one batch from one source and pushes
// the outputs. The clock is read once per batch for the latency record. It
// stops after a checkpoint's cut event and returns how many events it
// consumed. A BatchProcessor gets each run of plain events (plainRun) in
// one call; the other events, and every event of another Processor, go
// through the per-event path below.
func (s *shard) processBatch(src int, batch []codec.Event) int {
	s.batchBuf = s.batchBuf[:0]
	ss := s.strs[s.inStream[src]]
	s.use(ss)
	if ss.keyed != nil {
		ss.keyed.SetSourceKey(s.srcHash[src], s.scopeHash[src])
	}
	var capt *captureReq
	if p := s.capture[src]; p != nil {
		capt = p.capture.Load()
	}
	var lastSeq uint64
	consumed, events := len(batch), 0
	floor := s.offsetFloor(src) // nil but for a source whose ids are its offsets (dedup.go)
	for i := 0; i < len(batch); i++ {
		if ss.batch != nil {
			if k := s.plainRun(src, capt, floor, batch[i:]); k > 0 {
				s.processRun(ss, batch[i:i+k])
				events += k
				i += k - 1
				lastSeq = batch[i].Seq
				if s.chainBail {
					consumed = i + 1 // a chained round hands back (chain.go)
					break
				}
				continue
			}
		}
		ev := &batch[i]
		if ev.Kind == codec.KindWatermark && ev.Aux == detachAux {
			s.onDetach(ss, src, ev.Seq)
			lastSeq = ev.Seq
			continue
		}
		if ev.Kind == codec.KindWatermark && ev.Aux == idleAux {
			// Idle until its next watermark: in the tracker's terms a
			// detach, which its next watermark (Advance) ends.
			ss.wm.Detach(src)
			s.advance(ss, ev.Seq)
			lastSeq = ev.Seq
			continue
		}
		if ev.Kind == codec.KindWatermark && ev.Aux != 0 {
			s.onCut(src, ev.Aux) // a cut event: nothing after it before the cut completes
			lastSeq, consumed = ev.Seq, i+1
			break
		}
		if ev.Kind == codec.KindText || (src < len(s.texts) && s.texts[src].open) || ev.TextLen > 0 {
			if ev = s.gatherText(src, ev); ev == nil {
				lastSeq = batch[i].Seq
				continue // the text is not complete yet
			}
		}
		s.kinds[ev.Kind%codec.Kind(codec.KindCount)]++
		if ev.Kind == codec.KindWatermark {
			ss.wm.Advance(src, ev.TsNs) // also ends a detach or Idle: the source holds the watermark again
			s.advance(ss, ev.Seq)
		} else if s.dedup != nil && (floor != nil && seqDuplicate(floor, ev.Seq) || floor == nil && s.idDuplicate(src, ev)) {
			s.deadLetterOnce(ev, codec.ReasonDuplicate)
			if capt != nil && ev.Seq == capt.seq {
				capt.add(s, nil, codec.ReasonDuplicate)
			}
		} else {
			events++
			var reason codec.Reason
			first := len(s.outBuf)
			if ev.TextLen > 0 && ss.textProc != nil {
				s.outBuf, reason = ss.textProc.OnText(ev, s.texts[src].buf, ss.wmNs, s.outBuf)
				for i := first; i < len(s.outBuf); i++ {
					if s.outBuf[i].Kind == ops.OutText {
						s.textOuts++ // a line's text: the line counts once (flushOutputs)
					}
				}
			} else {
				s.outBuf, reason = ss.proc.OnEvent(ev, ss.wmNs, s.outBuf)
			}
			if reason != codec.ReasonNone {
				s.deadLetterOnce(ev, reason)
			}
			if capt != nil && ev.Seq == capt.seq && ev.Kind != codec.KindText {
				capt.add(s, s.outBuf[first:], reason)
			}
			if ev.IngestNs != 0 {
				s.addStamps(ev.IngestNs, 1)
			}
		}
		lastSeq = ev.Seq
		if len(s.outBuf) >= outBufCap-ops.OutputHeadroom {
			if s.flushOutputs(); s.chainBail {
				consumed = i + 1 // a chained round hands back (chain.go)
				break
			}
		}
	}
	s.flushOutputs()
	if events > 0 {
		ss.processed.Add(uint64(events))
	}
	for k, n := range s.kinds {
		if n > 0 {
			s.byKind[k].Add(n) // once per batch and kind, not per event
			s.kinds[k] = 0
		}
	}
	// (Not after a chained round's bail: outputs up to lastSeq are still in
	// outBuf, and progress promises they are all in out.)
	if lastSeq = s.capProgress(lastSeq); lastSeq > s.progress.Load() && !s.chainBail {
		s.progress.Store(lastSeq)
	}
	if len(s.batchBuf) > 0 {
		s.lat.recordRuns(stageShard, clock.MonoNs(), s.batchBuf)
	}
	return consumed
}

// plainRun returns how many leading events of evs, from input src, form a
// run for the stream's BatchProcessor: events the per-event path of
// processBatch would hand to OnEvent one after the other, with nothing of
// its own in between but what plainRun does for them here (the kinds
// counters and the ingest stamps). A run ends before a marker (every
// KindWatermark event: watermark, cut, idle, detach), a text chunk or an
// event with text (and none starts while the input's text is open), an
// event the dedup set looks at and the event a ProcessMessage capture waits
// for. One pass over the batch.
func (s *shard) plainRun(src int, capt *captureReq, floor *uint64, evs []codec.Event) int {
	if src < len(s.texts) && s.texts[src].open {
		return 0
	}
	n := 0
	for n < len(evs) {
		ev := &evs[n]
		if ev.Kind == codec.KindWatermark || ev.Kind == codec.KindText || s.endsRun(ev, capt, floor) {
			break
		}
		// The stretch of events of ev's kind and ingest stamp: counted
		// once, in a loop without calls or stores.
		kind, in := ev.Kind, ev.IngestNs
		i := n + 1
		for ; i < len(evs); i++ {
			if e := &evs[i]; e.Kind != kind || e.IngestNs != in || s.endsRun(e, capt, floor) {
				break
			}
		}
		s.kinds[kind%codec.Kind(codec.KindCount)] += uint64(i - n)
		if in != 0 {
			s.addStamps(in, int64(i-n))
		}
		n = i
	}
	return n
}

// endsRun reports whether ev, not a marker or a chunk, needs the per-event
// path all the same: it has text, a ProcessMessage capture waits for it, or
// it is a duplicate or may be one. floor is offsetFloor's for the batch: for
// a source whose ids are its offsets the check is the per-event path's
// (seqDuplicate), done here: a duplicate ends the run (the per-event path
// finds it again and dead-letters it), any other event moves the floor past
// itself and stays in the run. Side effects only when it returns false, and
// plainRun asks once per event it takes. For other sources, an event the
// dedup set looks at ends the run.
func (s *shard) endsRun(ev *codec.Event, capt *captureReq, floor *uint64) bool {
	if ev.TextLen != 0 || capt != nil && ev.Seq == capt.seq {
		return true
	}
	if floor != nil {
		return seqDuplicate(floor, ev.Seq)
	}
	return s.needsDedup(ev)
}

// needsDedup is the dedup condition of processBatch's per-event path for a
// source whose ids are not its offsets, but the lookup: whether the dedup
// set looks at ev.
func (s *shard) needsDedup(ev *codec.Event) bool {
	return s.dedup != nil && ev.IDHash != 0
}

// processRun gives a run of plain events (plainRun) to the stream's
// BatchProcessor, sending each rejected event to the dead letters right
// after the call that rejected it and flushing the output buffer when it
// fills, as the per-event path does.
func (s *shard) processRun(ss *shardStream, run []codec.Event) {
	for len(run) > 0 {
		out, n, reason := ss.batch.OnEvents(run, ss.wmNs, s.outBuf)
		s.outBuf = out
		if n < 1 || n > len(run) {
			panic(fmt.Sprintf("engine: OnEvents took %d of %d events", n, len(run)))
		}
		if reason != codec.ReasonNone {
			s.deadLetterOnce(&run[n-1], reason)
		}
		run = run[n:]
		if len(s.outBuf) >= outBufCap-ops.OutputHeadroom {
			s.flushOutputs()
		}
	}
}

// stampRun is a run of n events with one ingest stamp (a Publisher stamps
// its events once per batch).
type stampRun struct {
	ingestNs int64
	n        int64
}

// addStamps adds n events' ingest stamp in to the batch's (batchBuf).
func (s *shard) addStamps(in, n int64) {
	if k := len(s.batchBuf); k > 0 && s.batchBuf[k-1].ingestNs == in {
		s.batchBuf[k-1].n += n
		return
	}
	s.batchBuf = append(s.batchBuf, stampRun{ingestNs: in, n: n})
}

// capProgress lowers seq below the Seq of any event whose text is still
// arriving: its outputs are not pushed yet, so the ordered collector must
// not take the shard to be past it.
func (s *shard) capProgress(seq uint64) uint64 {
	for i := range s.texts {
		if t := &s.texts[i]; t.open && t.head.Seq <= seq {
			seq = t.head.Seq - 1
		}
	}
	return seq
}

// gatherText takes an event with text or a chunk of one from input src. It
// returns the event to process once its text is complete in
// s.texts[src].buf (the event itself when it is not part of a text), and
// nil while chunks are outstanding. A chunk without an open event, an
// event whose chunks stop short (a source that crashed mid-group and was
// replayed up to there) and an over-long text go to the dead letters.
func (s *shard) gatherText(src int, ev *codec.Event) *codec.Event {
	for len(s.texts) <= src {
		s.texts = append(s.texts, textAsm{})
	}
	t := &s.texts[src]
	if ev.Kind == codec.KindText {
		if !t.open || ev.Seq != t.head.Seq {
			s.deadLetterOnce(ev, codec.ReasonMalformed) // a chunk of no event
			return nil
		}
		need := int(t.head.TextLen) - len(t.buf)
		t.buf = append(t.buf, codec.TextChunk(ev)[:min(need, codec.TextChunkSize)]...)
		if len(t.buf) < int(t.head.TextLen) {
			return nil
		}
		t.open = false
		return &t.head
	}
	if t.open { // the last event's text stopped short
		t.open = false
		s.deadLetterOnce(&t.head, codec.ReasonMalformed)
	}
	if ev.TextLen == 0 {
		return ev
	}
	if ev.TextLen > codec.MaxText {
		s.deadLetterOnce(ev, codec.ReasonOversize)
		return nil
	}
	t.head, t.buf, t.open = *ev, t.buf[:0], true
	return nil
}

// advance re-evaluates the stream's watermark on this shard (the tracker's
// rule) and fires its processor if it moved. With an idle timeout it reads
// the clock once and gives the tracker each of the stream's publishers'
// last flush as its last activity. The caller has made ss current (use).
func (s *shard) advance(ss *shardStream, seq uint64) {
	var now int64
	if s.e.cfg.IdleTimeout > 0 {
		now = clock.MonoNs()
		pubs := *s.e.pubs.Load()
		for i := range s.inputs {
			if s.inStream[i] == ss.idx {
				ss.wm.Touch(i, pubs[i].lastActiveNs.Load())
			}
		}
	}
	wm, moved := ss.wm.Tick(now)
	if !moved {
		return
	}
	ss.wmNs = wm
	ss.wmPub.Store(wm)
	s.outBuf = ss.proc.OnWatermark(wm, seq, s.outBuf)
}

// checkIdle re-evaluates the watermarks when sources may have gone idle.
func (s *shard) checkIdle() {
	for _, ss := range s.strs {
		if ss != nil && !ss.ended {
			s.use(ss)
			s.advance(ss, s.progress.Load())
		}
	}
	s.flushOutputs()
}

// deadLetterOnce dead-letters ev unless it is a copy of a broadcast event
// that another shard's primary copy reports (see codec.FlagBroadcast): one
// input, one dead letter.
func (s *shard) deadLetterOnce(ev *codec.Event, reason codec.Reason) {
	if ev.Flags&codec.FlagBroadcast == 0 || ev.Flags&codec.FlagPrimary != 0 {
		s.deadLetter(ev, reason)
	}
}

func (s *shard) deadLetter(ev *codec.Event, reason codec.Reason) {
	s.dead.Add(1)
	s.cur.dead[int(reason)%codec.ReasonCount].Add(1)
	d := deadLetter{ev: *ev, reason: reason}
	if s.chained {
		s.chainedDeadLetter(&d) // never waits (chain.go)
		return
	}
	s.dlq.Put(&d)
}

// flushOutputs moves the output buffer into the output ring, waiting while
// it is full (block policy: backpressure reaches the inputs), and has them
// delivered: by the shard itself when none of its inputs holds more events
// (smart batching: nothing more is coming soon, so waking the collector
// goroutine would only add a hand-off to the outputs' latency), by the
// collector goroutine, woken, while more input is pending.
func (s *shard) flushOutputs() {
	if s.chainBail {
		return // a chained round that could not push: the shard thread will (chain.go)
	}
	if len(s.outBuf) == 0 {
		if !s.inBatch {
			s.deliverNow() // what the last batches pushed, before a wait
		}
		return
	}
	n := uint64(len(s.outBuf) - s.textOuts - s.outCarried)
	s.outputs.Add(n)
	s.cur.outputs.Add(n)
	s.textOuts, s.outCarried = 0, 0
	if idx := uint8(s.cur.idx); idx != 0 {
		for i := range s.outBuf {
			s.outBuf[i].Stream = idx
		}
	}
	c := s.e.collector
	n0 := len(s.outBuf)
	rest := s.outBuf
	for len(rest) > 0 {
		dst := s.out.Claim(len(rest))
		if len(dst) == 0 {
			// Full: what was published quietly must be taken first.
			c.collectIdle()
			if s.chained {
				// A chained round never waits: it keeps the rest for the
				// shard thread and hands back (chain.go).
				if dst = s.out.Claim(len(rest)); len(dst) == 0 {
					s.outBuf = s.outBuf[:copy(s.outBuf, rest)]
					s.outCarried, s.chainBail = len(s.outBuf), true
					s.outAge = max(s.outAge, 1)
					return
				}
			} else if dst = s.out.ClaimWait(len(rest)); len(dst) == 0 {
				break // output ring closed: only at shutdown
			}
		}
		k := copy(dst, rest)
		s.out.PublishQuiet(k)
		rest = rest[k:]
	}
	s.outBuf = s.outBuf[:0]
	if s.inBatch && n0 < outBufCap/2 {
		// The end of a batch (or a switch of stream in it): the loop
		// decides once the batch is released (deliverOutputs).
		s.outAge = max(s.outAge, 1)
		return
	}
	s.outAge = 1
	s.deliverNow()
}

// deliverOutputs runs at the end of each round of the shard loop and has
// the outputs pushed since the last delivery delivered: at once by the
// shard itself if no input holds more events; if some do, after one more
// round (an event or watermark that arrived while the last batch was
// processed: its outputs go with these), and by the collector goroutine,
// woken, if input is still pending then: under sustained load the collector
// delivers while the shard processes. The delay is bounded by one round
// (at most pollBatchMax events per input).
func (s *shard) deliverOutputs() {
	if s.outAge == 0 {
		return
	}
	if s.outAge >= 2 || !s.inputsPending() {
		s.deliverNow()
		return
	}
	s.outAge++
}

// deliverNow has the outputs pushed so far delivered now: by the shard if
// no input is pending and no one else is collecting, otherwise by the
// collector goroutine. Called before the shard waits for anything.
func (s *shard) deliverNow() {
	if s.outAge == 0 {
		return
	}
	s.outAge = 0
	if s.inputsPending() {
		s.e.collector.collectBusy()
	} else {
		s.e.collector.collectIdle()
	}
}

// inputsPending reports whether any input ring holds events.
func (s *shard) inputsPending() bool {
	for _, r := range s.inputs {
		if r.Len() > 0 {
			return true
		}
	}
	return false
}

// finish runs at shutdown: the end of every source is +∞, so every open
// window fires; then the output rings are closed for the collector.
func (s *shard) finish() {
	for _, ss := range s.strs {
		if ss == nil || ss.ended {
			continue
		}
		s.use(ss)
		for i := range s.inputs {
			if s.inStream[i] == ss.idx && !ss.wm.Detached(i) { // a detached source did not end
				ss.wm.Advance(i, math.MaxInt64)
			}
		}
		s.advance(ss, math.MaxUint64)
	}
	s.flushOutputs()
	s.progress.Store(math.MaxUint64)
	s.out.Close()
	s.dlq.Close()
	s.drainControl()
}
