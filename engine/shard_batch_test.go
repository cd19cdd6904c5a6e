package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

// recProc is a test Processor that logs every call the shard makes and
// answers each with outputs that depend on the event, the watermark it was
// given and its own running state: one output per event (two for a quote),
// one per watermark, one per text. It dead-letters events of negative
// price as late. It is not a BatchProcessor; batchRec is the same with
// OnEvents.
type recProc struct {
	log   []string
	count map[codec.Symbol]int
}

func newRecProc() *recProc { return &recProc{count: map[codec.Symbol]int{}} }

func (p *recProc) OnEvent(ev *codec.Event, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	p.log = append(p.log, fmt.Sprintf("event %d %v sym %d wm %d", ev.Seq, ev.Kind, ev.Symbol, wm))
	if ev.Price < 0 {
		return dst, codec.ReasonLate
	}
	p.count[ev.Symbol]++
	dst = append(dst, ops.Output{Kind: ops.OutIndicators, Symbol: ev.Symbol, Seq: ev.Seq, TsNs: ev.TsNs,
		Price: ev.Price, EndNs: wm, Count: int64(p.count[ev.Symbol]), IngestNs: ev.IngestNs})
	if ev.Kind == codec.KindQuote {
		dst = append(dst, ops.Output{Kind: ops.OutMovement, Symbol: ev.Symbol, Seq: ev.Seq, Value: ev.Bid})
	}
	return dst, codec.ReasonNone
}

func (p *recProc) OnWatermark(wm int64, seq uint64, dst []ops.Output) []ops.Output {
	p.log = append(p.log, fmt.Sprintf("watermark %d seq %d", wm, seq))
	return append(dst, ops.Output{Kind: ops.OutWindow, Seq: seq, EndNs: wm})
}

func (p *recProc) OnText(ev *codec.Event, text []byte, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	p.log = append(p.log, fmt.Sprintf("text %d %q wm %d", ev.Seq, text, wm))
	return append(dst, ops.Output{Kind: ops.OutEvent, Symbol: ev.Symbol, Seq: ev.Seq, Count: int64(len(text))}), codec.ReasonNone
}

// AppendState logs the checkpoint's place among the calls (the cut) and
// snapshots the counts.
func (p *recProc) AppendState(dst []byte) []byte {
	p.log = append(p.log, "checkpoint")
	for sym := range codec.Symbol(8) {
		dst = fmt.Appendf(dst, "%d:%d ", sym, p.count[sym])
	}
	return dst
}

func (p *recProc) LoadState([]byte) error { return nil }

// batchRec is recProc with OnEvents, which returns early now and then (at
// events whose Seq is a multiple of 7) to take the shard's path of calling
// again with the rest.
type batchRec struct {
	*recProc
	calls, events int // OnEvents calls and the events they took
}

func (p *batchRec) OnEvents(evs []codec.Event, wm int64, dst []ops.Output) ([]ops.Output, int, codec.Reason) {
	p.calls++
	for i := range evs {
		var r codec.Reason
		dst, r = p.OnEvent(&evs[i], wm, dst)
		if r != codec.ReasonNone || evs[i].Seq%7 == 0 || len(dst) >= cap(dst)-ops.OutputHeadroom {
			p.events += i + 1
			return dst, i + 1, r
		}
	}
	p.events += len(evs)
	return dst, len(evs), codec.ReasonNone
}

// dlLog records every dead letter's reason and Seq in order.
type dlLog struct {
	mu  sync.Mutex
	got []string
}

func (d *dlLog) HandleDeadLetter(dl *DeadLetter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var seq uint64
	if dl.Event != nil {
		seq = dl.Event.Seq
	}
	d.got = append(d.got, fmt.Sprintf("%v %d", dl.Reason, seq))
}

// batchRun is what one engine run of batchScript gives.
type batchRun struct {
	outs, dls, calls []string
	stats            Stats
	latCount         int64
	batchCalls       int
	batchEvents      int
}

// runBatchScript runs batchScript through a one-shard engine whose
// processor is batchRec (batch) or recProc, durable with checkpoints and
// dedup (cut markers, events the dedup set looks at) or not.
func runBatchScript(t *testing.T, batch, durable bool) batchRun {
	t.Helper()
	rec := newRecProc()
	var proc Processor = rec
	br := &batchRec{recProc: rec}
	if batch {
		proc = br
	}
	out, dl := &collect{}, &dlLog{}
	cfg := Config{Shards: 1, RingSize: 64, Output: out, DeadLetters: dl,
		Processors: func(int) (Processor, error) { return proc, nil },
		Logger:     slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	var w *WAL
	if durable {
		dir := t.TempDir()
		var err error
		w, err = OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		cfg.Durability = w
		cfg.Checkpoints = &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}
		cfg.DedupHorizon = 4096
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if durable {
		if _, err := e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	internSymbols(t, e, 5)
	p, err := e.NewPublisher("feed")
	if err != nil {
		t.Fatal(err)
	}
	if !durable {
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
	}
	batchScript(t, e, p, durable)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	stop(t, e)
	r := batchRun{dls: dl.got, calls: rec.log, stats: e.Stats(), latCount: e.Latency(false).Stages[stageShard].Count,
		batchCalls: br.calls, batchEvents: br.events}
	for _, o := range out.all() {
		o.IngestNs = 0
		r.outs = append(r.outs, fmt.Sprintf("%+v", o))
	}
	return r
}

// batchScript publishes runs of plain trades and quotes (some rejected by
// the processor) mixed with everything that ends a run: watermarks
// (Flush), events with text, events with message ids (some of them
// duplicates), Idle markers and, on a durable engine, checkpoints (cut
// markers), some in place (ClaimBatch) and some through Publish.
func batchScript(t *testing.T, e *Engine, p *Publisher, durable bool) {
	t.Helper()
	ts := int64(1_700_000_000_000_000_000)
	n := 0
	next := func() codec.Event {
		n++
		ts += 1000
		ev := codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(1 + n%5), TsNs: ts, Price: 100 + float64(n%13), Volume: 1}
		if n%3 == 0 {
			ev.Kind, ev.Bid, ev.Ask = codec.KindQuote, 99, 101
			ev.Flags = codec.FlagHasBid | codec.FlagHasAsk
		}
		if n%17 == 0 {
			ev.Price = -1 // the processor rejects it
		}
		return ev
	}
	for round := range 40 {
		// A run claimed in place, longer than the shard's poll at times.
		for k := 0; k < 20+round*7; {
			evs, err := p.ClaimBatch(20 + round*7 - k)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs {
				evs[i] = next()
			}
			if err := p.CommitBatch(len(evs)); err != nil {
				t.Fatal(err)
			}
			k += len(evs)
		}
		switch round % 5 {
		case 0: // an event with text in the middle of a run
			ev := next()
			if err := p.PublishText(&ev, []byte(fmt.Sprintf("text of round %d, %s", round, bytes.Repeat([]byte("x"), round*9)))); err != nil {
				t.Fatal(err)
			}
		case 1: // events with message ids, every third a duplicate
			for i := range 6 {
				ev := next()
				ev.IDHash = uint64(1000 + round*10 + i - i/3*2)
				if err := p.Publish(&ev); err != nil {
					t.Fatal(err)
				}
			}
		case 2:
			if err := p.Idle(); err != nil {
				t.Fatal(err)
			}
		case 3:
			if durable {
				if _, err := e.Checkpoint(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
		for range 5 { // a short run through Publish
			ev := next()
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
		}
		if round%2 == 0 {
			if err := p.Flush(); err != nil { // a watermark
				t.Fatal(err)
			}
		}
	}
}

// TestBatchProcessorMatchesPerEvent: a BatchProcessor receives exactly the
// events a per-event Processor does, in the same order, at the same
// watermarks, between the same watermark and text calls, and the engine's
// outputs, dead letters (processor rejections, duplicates), counters and
// latency records are the same, with watermark, idle and cut markers,
// texts and dedup lookups mixed into the runs.
func TestBatchProcessorMatchesPerEvent(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			want := runBatchScript(t, false, durable)
			got := runBatchScript(t, true, durable)
			if got.batchEvents < len(got.calls)/2 || got.batchCalls == 0 {
				t.Fatalf("OnEvents took %d events in %d calls of %d processor calls: the batch path was not used",
					got.batchEvents, got.batchCalls, len(got.calls))
			}
			t.Logf("%d outputs, %d dead letters, %d processor calls; OnEvents: %d events in %d calls",
				len(want.outs), len(want.dls), len(want.calls), got.batchEvents, got.batchCalls)
			check := func(what string, got, want []string) {
				t.Helper()
				if len(want) == 0 {
					t.Fatalf("no %s in the reference run", what)
				}
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("%s %d: got %s, want %s", what, i, got[i], want[i])
					}
				}
				if len(got) != len(want) {
					t.Fatalf("%d %s, want %d", len(got), what, len(want))
				}
			}
			check("processor calls", got.calls, want.calls)
			if durable && !slices.Contains(want.calls, "checkpoint") {
				t.Fatal("no checkpoint among the processor calls")
			}
			check("outputs", got.outs, want.outs)
			check("dead letters", got.dls, want.dls)
			if durable && !slices.ContainsFunc(want.dls, func(s string) bool { return strings.HasPrefix(s, codec.ReasonDuplicate.String()) }) {
				t.Fatalf("no duplicate among the dead letters %v", want.dls)
			}
			if got.stats.Messages != want.stats.Messages || got.stats.Outputs != want.stats.Outputs ||
				got.stats.DeadLetters != want.stats.DeadLetters || fmt.Sprint(got.stats.ByKind) != fmt.Sprint(want.stats.ByKind) {
				t.Fatalf("stats: got %+v, want %+v", got.stats, want.stats)
			}
			if got.latCount != want.latCount || want.latCount == 0 {
				t.Fatalf("%d latency records, want %d", got.latCount, want.latCount)
			}
		})
	}
}

// TestPipelineBatchMatchesPerEvent: ops.Pipeline's OnEvents through the
// engine gives the outputs of its OnEvent (the default indicators, windows
// firing at the watermarks).
func TestPipelineBatchMatchesPerEvent(t *testing.T) {
	evs := testEvents(20000, recSyms, 11)
	for i := range evs {
		evs[i].IDHash = 0 // no dedup lookups: runs as long as the batches
	}
	run := func(batch bool) []string {
		factory := pipelineFactory(t)
		var pipes []*ops.Pipeline
		te := newTestEngine(t, Config{Shards: 2, Processors: func(i int) (Processor, error) {
			p, err := factory(i)
			if err != nil {
				return nil, err
			}
			pipes = append(pipes, p.(*ops.Pipeline))
			if batch {
				return p, nil
			}
			return perEventPipeline{p.(*ops.Pipeline)}, nil
		}})
		internSymbols(t, te.Engine, recSyms)
		p, err := te.NewPublisher("feed")
		if err != nil {
			t.Fatal(err)
		}
		if err := te.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			ev := evs[i]
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
			if i%300 == 299 {
				if err := p.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		stop(t, te.Engine)
		var out []string
		for _, o := range te.out.all() {
			o.IngestNs = 0
			out = append(out, fmt.Sprintf("%+v", o))
		}
		slices.Sort(out) // two shards: the collector interleaves them by timing
		return out
	}
	want, got := run(false), run(true)
	if len(want) < len(evs) {
		t.Fatalf("%d outputs of %d events", len(want), len(evs))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("OnEvents gave %d outputs, OnEvent %d, or they differ", len(got), len(want))
	}
}

// perEventPipeline hides OnEvents (and everything but what the engine's
// per-event path uses) of a Pipeline.
type perEventPipeline struct{ p *ops.Pipeline }

func (w perEventPipeline) OnEvent(ev *codec.Event, wm int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	return w.p.OnEvent(ev, wm, dst)
}

func (w perEventPipeline) OnWatermark(wm int64, seq uint64, dst []ops.Output) []ops.Output {
	return w.p.OnWatermark(wm, seq, dst)
}

func (w perEventPipeline) SetSourceKey(src, scope uint64) { w.p.SetSourceKey(src, scope) }

// TestBatchPathDoesNotAllocate: claiming, filling and committing batches
// in place, and the shards (plainRun, OnEvents, the stamps and latency
// records) and the collector processing them, allocate nothing in steady
// state.
func TestBatchPathDoesNotAllocate(t *testing.T) {
	var procs []*nopBatch
	te := newTestEngine(t, Config{Shards: 2, Processors: func(int) (Processor, error) {
		procs = append(procs, &nopBatch{})
		return procs[len(procs)-1], nil
	}})
	p, _ := te.NewPublisher("p")
	te.Start()
	var seq uint64
	batch := func() {
		for k := 0; k < 256; {
			evs, err := p.ClaimBatch(64)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs {
				seq++
				evs[i] = trade(0, codec.Symbol(1+seq/64%16), int64(seq))
			}
			p.CommitBatch(len(evs))
			k += len(evs)
		}
		p.Flush()
	}
	allocs := allocsPerBatch(t, te, p, batch)
	if allocs > 0 {
		t.Fatalf("claim+commit+flush of 256 events allocated %.1f times per batch", allocs)
	}
	if n := procs[0].events + procs[1].events; n != int(seq) {
		t.Fatalf("OnEvents took %d of %d events", n, seq)
	}
}

// nopBatch is nopProc with OnEvents.
type nopBatch struct {
	nopProc
	events int
}

func (b *nopBatch) OnEvents(evs []codec.Event, wm int64, dst []ops.Output) ([]ops.Output, int, codec.Reason) {
	for i := range evs {
		dst, _ = b.OnEvent(&evs[i], wm, dst)
	}
	b.events += len(evs)
	return dst, len(evs), codec.ReasonNone
}

// TestPlainRunEnds: where plainRun ends a run, and what it counts for the
// events of the run (kinds, ingest stamps in runs of equal ones).
func TestPlainRunEnds(t *testing.T) {
	s := &shard{dedup: nil, batchBuf: make([]stampRun, 0, 8)}
	evs := []codec.Event{
		{Kind: codec.KindTrade, IngestNs: 5}, {Kind: codec.KindQuote, IngestNs: 5}, {Kind: codec.KindTrade, IngestNs: 6},
		{Kind: codec.KindTrade}, {Kind: codec.KindTrade, IngestNs: 6},
		{Kind: codec.KindWatermark}, {Kind: codec.KindTrade},
	}
	if n := s.plainRun(0, nil, nil, evs); n != 5 {
		t.Fatalf("run of %d, want 5 (up to the watermark)", n)
	}
	if want := []stampRun{{5, 2}, {6, 2}}; !slices.Equal(s.batchBuf, want) { // the unstamped event left out
		t.Fatalf("stamps %v", s.batchBuf)
	}
	if s.kinds[codec.KindTrade] != 4 || s.kinds[codec.KindQuote] != 1 {
		t.Fatalf("kinds %v", s.kinds)
	}
	for _, c := range []struct {
		name string
		ev   codec.Event
		capt *captureReq
		ddp  bool
	}{
		{"text chunk", codec.Event{Kind: codec.KindText}, nil, false},
		{"event with text", codec.Event{Kind: codec.KindTrade, TextLen: 3}, nil, false},
		{"message id with dedup", codec.Event{Kind: codec.KindTrade, IDHash: 9}, nil, true},
		{"capture target", codec.Event{Kind: codec.KindTrade, Seq: 4}, &captureReq{seq: 4}, false},
	} {
		s := &shard{batchBuf: make([]stampRun, 0, 8)}
		if c.ddp {
			s.dedup = newDedupSet(16)
		}
		run := []codec.Event{{Kind: codec.KindTrade, Seq: 3}, c.ev, {Kind: codec.KindTrade, Seq: 5}}
		if n := s.plainRun(0, c.capt, nil, run); n != 1 {
			t.Errorf("%s: run of %d, want 1", c.name, n)
		}
	}
	// A message id without dedup, and a capture of another event, do not end a run.
	run := []codec.Event{{Kind: codec.KindTrade, Seq: 3, IDHash: 9}, {Kind: codec.KindTrade, Seq: 5}}
	if n := (&shard{}).plainRun(0, &captureReq{seq: 4}, nil, run); n != 2 {
		t.Errorf("run of %d, want 2", n)
	}
	// A source whose ids are its offsets (a floor): its events stay in the
	// run while their offsets rise, each moving the floor past itself; the
	// first at or below the floor (a resend) ends it without moving it.
	s = &shard{dedup: newDedupSet(16), batchBuf: make([]stampRun, 0, 8)}
	floor := uint64(2)
	run = []codec.Event{
		{Kind: codec.KindTrade, Seq: 3, IDHash: 9}, {Kind: codec.KindTrade, Seq: 4, IDHash: 8},
		{Kind: codec.KindTrade, Seq: 4, IDHash: 8}, {Kind: codec.KindTrade, Seq: 6, IDHash: 7},
	}
	if n := s.plainRun(0, nil, &floor, run); n != 2 || floor != 4 {
		t.Errorf("offset ids: run of %d, floor %d; want 2 and 4", n, floor)
	}
	if n := s.plainRun(0, nil, &floor, run[2:]); n != 0 || floor != 4 {
		t.Errorf("offset ids, a resend first: run of %d, floor %d; want 0 and 4", n, floor)
	}
	if s.dedup.len() != 0 {
		t.Errorf("offset ids entered the id set: %d", s.dedup.len())
	}
}
