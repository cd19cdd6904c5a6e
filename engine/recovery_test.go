package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"qstream/checkpoint"
	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

// memOutput is a CheckpointedOutput in memory: its mark is the number of
// outputs it holds, and RestoreOutput cuts back to it.
type memOutput struct {
	mu       sync.Mutex
	outs     []ops.Output
	restores int
}

func (m *memOutput) HandleOutputs(outs []ops.Output) error {
	m.mu.Lock()
	m.outs = append(m.outs, outs...)
	m.mu.Unlock()
	return nil
}

func (m *memOutput) CheckpointOutput() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return binary.LittleEndian.AppendUint64(nil, uint64(len(m.outs))), nil
}

func (m *memOutput) RestoreOutput(hwm []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.restores++
	n := uint64(0)
	if hwm != nil {
		if len(hwm) != 8 {
			return fmt.Errorf("bad mark %x", hwm)
		}
		n = binary.LittleEndian.Uint64(hwm)
	}
	if n > uint64(len(m.outs)) {
		return fmt.Errorf("mark %d beyond %d outputs", n, len(m.outs))
	}
	m.outs = m.outs[:n]
	return nil
}

func (m *memOutput) all() []ops.Output {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ops.Output(nil), m.outs...)
}

// testEvents is a deterministic stream of trades and quotes over syms
// symbols (ids 1..syms), Seq 1..n, every event with a message id.
func testEvents(n, syms int, seed uint64) []codec.Event {
	rng := rand.New(rand.NewPCG(seed, 1))
	evs := make([]codec.Event, n)
	price := make([]float64, syms+1)
	for i := range price {
		price[i] = 100
	}
	for i := range evs {
		sym := codec.Symbol(1 + rng.IntN(syms))
		price[sym] *= 1 + (rng.Float64()-0.5)/100
		ev := codec.Event{Kind: codec.KindTrade, Symbol: sym, Seq: uint64(i + 1), TsNs: 1_700_000_000_000_000_000 + int64(i)*1000,
			Price: price[sym], Volume: float64(1 + rng.IntN(100)), Status: codec.StatusOpen}
		if i%5 == 4 {
			ev.Kind, ev.Price, ev.Volume = codec.KindQuote, 0, 0
			ev.Bid, ev.Ask, ev.Flags = price[sym]-0.01, price[sym]+0.01, codec.FlagHasBid|codec.FlagHasAsk
		}
		ev.IDHash = codec.HashID(strconv.AppendUint(nil, ev.Seq, 10))
		evs[i] = ev
	}
	return evs
}

type durableRig struct {
	e   *Engine
	w   *WAL
	out *memOutput
	dl  *dlCollect
}

func pipelineFactory(t testing.TB) ProcessorFactory {
	specs, err := ops.ParseIndicators(ops.DefaultIndicators)
	if err != nil {
		t.Fatal(err)
	}
	// Windows make outputs depend on where watermarks fall: recovery must
	// replay them at the same points.
	wins, err := ops.ParseWindowSpecs("tumbling:1ms:vwap,session:20us:count,sliding:500us/100us:max,hopping:2ms/1ms:ohlcv")
	if err != nil {
		t.Fatal(err)
	}
	return func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: wins, MaxSymbolID: 64, MaxSlots: 64})
	}
}

// openRig opens the WAL and checkpoints under dir and builds an engine over
// them with the given output (its content survives "crashes": it plays the
// external sink).
func openRig(t testing.TB, dir string, shards int, out *memOutput, interval time.Duration) *durableRig {
	t.Helper()
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &durableRig{w: w, out: out, dl: &dlCollect{}}
	symbols := codec.NewSymbolTable(64)
	r.e, err = New(Config{
		Shards:       shards,
		Symbols:      symbols,
		Processors:   pipelineFactory(t),
		Output:       out,
		DeadLetters:  r.dl,
		Durability:   w,
		Checkpoints:  &CheckpointConfig{Dir: filepath.Join(dir, "ckpt"), Interval: interval},
		DedupHorizon: 4096,
		Logger:       slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func internSymbols(t testing.TB, e *Engine, syms int) {
	for i := 1; i <= syms; i++ {
		id, err := e.Symbols().InternString(fmt.Sprintf("S%03d", i))
		if err != nil || id != codec.Symbol(i) {
			t.Fatalf("intern %d: %d %v", i, id, err)
		}
	}
}

// publishRange publishes evs[from:to] (Seq from+1..to), flushing at fixed
// Seq multiples so that watermarks are sent at the same points in every run.
func publishRange(t testing.TB, p *Publisher, evs []codec.Event, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ev := evs[i]
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq%64 == 0 {
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// byKey indexes outputs by their key and fails on two different outputs
// with one key.
func byKey(t testing.TB, outs []ops.Output) (map[uint64]ops.Output, int) {
	m := make(map[uint64]ops.Output, len(outs))
	dups := 0
	for _, o := range outs {
		o.IngestNs = 0
		if prev, ok := m[o.Key]; ok {
			dups++
			if !sameOutput(prev, o) {
				t.Fatalf("key %x: two different outputs %+v and %+v", o.Key, prev, o)
			}
		}
		m[o.Key] = o
	}
	return m, dups
}

// sameOutput compares two outputs, NaN-safe, every field but the ingest
// stamp (processing time).
func sameOutput(a, b ops.Output) bool {
	a.IngestNs, b.IngestNs = 0, 0

	return fmt.Sprint(a) == fmt.Sprint(b)
}

func shardSections(t testing.TB, dir string) []string {
	ck, _, err := checkpoint.LoadLatest(filepath.Join(dir, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range ck.Sections {
		if len(s.Name) > 6 && s.Name[:6] == "shard/" {
			out = append(out, s.Name+":"+string(s.Data))
		}
	}
	sort.Strings(out)
	return out
}

const (
	recN    = 20_000
	recSyms = 24
)

// referenceRun publishes everything in one incarnation: the oracle.
func referenceRun(t *testing.T, evs []codec.Event) (map[uint64]ops.Output, []string) {
	return referenceRunWith(t, evs, PublisherOptions{})
}

// referenceRunWith is referenceRun with a Publisher of the given options.
func referenceRunWith(t *testing.T, evs []codec.Event, opts PublisherOptions) (map[uint64]ops.Output, []string) {
	dir := t.TempDir()
	r := openRig(t, dir, 2, &memOutput{}, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisherWith("feed", opts)
	publishRange(t, p, evs, 0, len(evs))
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Close()
	stop(t, r.e)
	r.w.Close()
	m, dups := byKey(t, r.out.all())
	if dups != 0 {
		t.Fatalf("reference run has %d duplicate keys", dups)
	}
	return m, shardSections(t, dir)
}

// TestRecoverMatchesUninterruptedRun runs a stream over several
// incarnations - each stopped without a final checkpoint after a random
// number of events, with checkpoints at random points, and each resuming
// from the offset Recover reports while re-sending some already durable
// events as an at-least-once upstream would - and compares the sink and
// the final operator state with one uninterrupted run.
func TestRecoverMatchesUninterruptedRun(t *testing.T) {
	testRecoverMatchesUninterruptedRun(t, PublisherOptions{})
}

// TestRecoverMatchesUninterruptedRunOffsetIDs is the same for a source
// whose ids are its offsets (de-duplicated by Seq): the same outputs, and
// the same final state as its own uninterrupted run (its ids are in no
// horizon there either).
func TestRecoverMatchesUninterruptedRunOffsetIDs(t *testing.T) {
	testRecoverMatchesUninterruptedRun(t, PublisherOptions{OffsetIDs: true})
}

func testRecoverMatchesUninterruptedRun(t *testing.T, opts PublisherOptions) {
	evs := testEvents(recN, recSyms, 1)
	want, wantState := referenceRunWith(t, evs, opts)

	dir := t.TempDir()
	out := &memOutput{}
	rng := rand.New(rand.NewPCG(5, 6))
	done := 0
	for inc := 0; ; inc++ {
		r := openRig(t, dir, 2, out, 0)
		rep, err := r.e.Recover(context.Background())
		if err != nil {
			t.Fatalf("incarnation %d: %v", inc, err)
		}
		t.Logf("incarnation %d: checkpoint %v, replayed %d events %d watermarks, filtered %d, sink restores %d", inc, rep.Checkpoint != nil, rep.Events, rep.Watermarks, rep.Filtered, out.restores)
		off, ok := r.e.SourceOffset("feed")
		if inc > 0 && (!ok || int(off) < done) {
			t.Fatalf("incarnation %d: resumes at %d (known %v), but %d events were durable", inc, off, ok, done)
		}
		if inc > 0 && rep.Events == 0 && rep.Filtered == 0 && rep.Checkpoint == nil {
			t.Fatalf("incarnation %d: nothing recovered: %+v", inc, rep)
		}
		internSymbols(t, r.e, recSyms)
		p, err := r.e.NewPublisherWith("feed", opts)
		if err != nil {
			t.Fatal(err)
		}
		from := int(off)
		resend := min(from, rng.IntN(300)) // the upstream re-sends unacknowledged events
		// Incarnations end (Barrier) at flush points, as a feed that
		// acknowledges at fixed offsets does, so that watermarks fall where
		// they fall in the reference run and window state stays identical.
		to := min(len(evs), (from/64+1+rng.IntN(60))*64)
		last := inc >= 6 || to == len(evs)
		if last {
			to = len(evs)
		}
		pos := from - resend
		for pos < to {
			step := min(to, pos+1+rng.IntN(1500))
			publishRange(t, p, evs, pos, step)
			pos = step
			if rng.IntN(2) == 0 {
				if _, err := r.e.Checkpoint(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		done = to
		if last {
			if _, err := r.e.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			p.Close()
			stop(t, r.e)
			r.w.Close()
			break
		}
		// A crash, as far as the state goes: nothing after the last
		// checkpoint is saved; the sink holds outputs past its mark.
		p.Detach()
		stop(t, r.e)
		r.w.Close()
	}
	got, dups := byKey(t, out.all())
	if dups != 0 {
		t.Fatalf("%d duplicate outputs in the sink after recovery rewound it", dups)
	}
	if len(got) != len(want) {
		t.Fatalf("%d outputs, want %d", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameOutput(g, w) {
			t.Fatalf("output %x: got %+v, want %+v", k, g, w)
		}
	}
	gotState := shardSections(t, dir)
	if len(gotState) != len(wantState) {
		t.Fatal("different shard sections")
	}
	for i := range gotState {
		if gotState[i] != wantState[i] {
			t.Fatalf("final state of %s differs from the uninterrupted run", gotState[i][:9])
		}
	}
}

// Several publishers in their own goroutines while checkpoints are taken
// concurrently: a publisher's records between the cut's start and its own
// cut event must be skipped by recovery, the others replayed. Every event
// must reach the sink exactly once.
func TestRecoverConcurrentPublishersExactlyOnce(t *testing.T) {
	const perSource, sources = 6000, 3
	dir := t.TempDir()
	out := &memOutput{}
	evsOf := func(s int) []codec.Event {
		evs := testEvents(perSource, 6, uint64(10+s))
		for i := range evs {
			evs[i].Symbol += codec.Symbol(6 * s) // each source its own symbols
			evs[i].IDHash ^= uint64(s) << 50
		}
		return evs
	}
	offsets := make([]int, sources)
	for inc := 0; inc < 4; inc++ {
		r := openRig(t, dir, 3, out, 0)
		rep, err := r.e.Recover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("incarnation %d: replayed %d, filtered %d", inc, rep.Events, rep.Filtered)
		internSymbols(t, r.e, 6*sources)
		var wg sync.WaitGroup
		stopCk := make(chan struct{})
		ckDone := make(chan error, 1)
		go func() {
			for {
				select {
				case <-stopCk:
					ckDone <- nil
					return
				default:
				}
				if _, err := r.e.Checkpoint(context.Background()); err != nil {
					ckDone <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		pubs := make([]*Publisher, sources)
		for s := 0; s < sources; s++ {
			name := fmt.Sprintf("src%d", s)
			off, _ := r.e.SourceOffset(name)
			if int(off) < offsets[s] {
				t.Fatalf("incarnation %d: %s resumes at %d, %d were durable", inc, name, off, offsets[s])
			}
			p, err := r.e.NewPublisher(name)
			if err != nil {
				t.Fatal(err)
			}
			pubs[s] = p
			to := perSource
			if inc < 3 {
				to = min(perSource, int(off)+1500)
			}
			offsets[s] = to
			wg.Add(1)
			go func(s, from, to int) {
				defer wg.Done()
				publishRange(t, p, evsOf(s), from, to)
				if err := p.Barrier(context.Background()); err != nil {
					t.Error(err)
				}
			}(s, int(off), to)
		}
		wg.Wait()
		close(stopCk)
		if err := <-ckDone; err != nil {
			t.Fatal(err)
		}
		for _, p := range pubs {
			if inc == 3 {
				p.Close()
			} else {
				p.Detach()
			}
		}
		stop(t, r.e)
		r.w.Close()
	}
	var trades []ops.Output
	for _, o := range out.all() {
		if o.Kind == ops.OutIndicators {
			trades = append(trades, o)
		}
	}
	got, dups := byKey(t, trades)
	if dups != 0 || len(got) != sources*perSource*4/5 {
		t.Fatalf("%d distinct outputs (%d duplicates), want %d trades once each", len(got), dups, sources*perSource*4/5)
	}
	seen := map[[2]uint64]int{}
	for _, o := range got {
		seen[[2]uint64{uint64(o.Symbol-1) / 6, o.Seq}]++
	}
	for s := 0; s < sources; s++ {
		for i, ev := range evsOf(s) {
			if ev.Kind == codec.KindTrade && seen[[2]uint64{uint64(s), ev.Seq}] != 1 {
				t.Fatalf("source %d event %d reached the sink %d times", s, i, seen[[2]uint64{uint64(s), ev.Seq}])
			}
		}
	}
}

func TestRecoverRefusesAnotherShardCount(t *testing.T) {
	dir := t.TempDir()
	r := openRig(t, dir, 2, &memOutput{}, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop(t, r.e)
	r.w.Close()
	r = openRig(t, dir, 3, &memOutput{}, 0)
	_, err := r.e.Recover(context.Background())
	if !errors.Is(err, ErrCheckpointState) {
		t.Fatalf("recover with 3 shards from a 2-shard checkpoint: %v", err)
	}
	r.w.Close()
}

// Periodic checkpoints prune old ones and the WAL segments no checkpoint
// needs any more.
func TestPeriodicCheckpointsPruneWAL(t *testing.T) {
	dir := t.TempDir()
	out := &memOutput{}
	r := openRig(t, dir, 1, out, 5*time.Millisecond)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	evs := testEvents(60_000, recSyms, 3) // ~11 MB of WAL: about 11 segments of 1 MiB
	for i := 0; i < len(evs); i += 5000 {
		publishRange(t, p, evs, i, i+5000)
		time.Sleep(10 * time.Millisecond)
	}
	p.Barrier(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for r.e.CheckpointStats().SegmentsDeleted == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no segment deleted: %+v, segments %d", r.e.CheckpointStats(), len(r.w.Writer().Segments()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := r.e.Stats()
	if st.Durability.Checkpoints.Taken < 2 || st.Durability.DurableLSN == 0 {
		t.Fatalf("stats %+v", st.Durability)
	}
	infos, _ := checkpoint.List(filepath.Join(dir, "ckpt"))
	if len(infos) > DefaultCheckpointKeep+1 {
		t.Fatalf("%d checkpoint files kept", len(infos))
	}
	p.Detach()
	stop(t, r.e)
	r.w.Close()
	// And the pruned WAL still recovers.
	r = openRig(t, dir, 1, out, 0)
	rep, err := r.e.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if off := rep.Sources["feed"]; off != uint64(len(evs)) {
		t.Fatalf("recovered offset %d, want %d", off, len(evs))
	}
	stop(t, r.e)
	r.w.Close()
}

// Watermarks replayed by recovery reach every shard even though the
// recovery publisher is detached right after the replay (the detach travels
// in the rings behind them).
func TestRecoverAppliesReplayedWatermarks(t *testing.T) {
	evs := testEvents(5000, recSyms, 9)
	for round := 0; round < 10; round++ {
		dir := t.TempDir()
		out := &memOutput{}
		r := openRig(t, dir, 2, out, 0)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internSymbols(t, r.e, recSyms)
		p, _ := r.e.NewPublisher("feed")
		publishRange(t, p, evs, 0, 640) // 10 watermarks
		if _, err := r.e.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		publishRange(t, p, evs, 640, 4992) // up to the last multiple of 64
		p.Barrier(context.Background())
		p.Detach()
		r.e.StopCheckpoints() // no final checkpoint at Stop: recovery replays the WAL after the one above
		stop(t, r.e)
		r.w.Close()

		r = openRig(t, dir, 2, out, 0)
		rep, err := r.e.Recover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Watermarks == 0 {
			t.Fatalf("no watermark replayed: %+v", rep)
		}
		stop(t, r.e)
		r.w.Close()
		want := evs[4991].TsNs
		for _, sec := range shardSections(t, dir) {
			st, err := decodeShardState([]byte(sec[len("shard/000:"):]))
			if err != nil {
				t.Fatal(err)
			}
			if st.wmNs != want {
				t.Fatalf("round %d: %s recovered with watermark %d, want %d (the last replayed)", round, sec[:9], st.wmNs, want)
			}
		}
	}
}

// Stop while paused with a checkpoint waiting for the paused shards: the
// checkpoint completes and Stop returns.
func TestStopWhilePausedDuringCheckpoint(t *testing.T) {
	r := openRig(t, t.TempDir(), 2, &memOutput{}, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	publishRange(t, p, testEvents(1000, recSyms, 4), 0, 1000)
	r.e.Pause()
	done := make(chan error, 1)
	go func() { _, err := r.e.Checkpoint(context.Background()); done <- err }()
	time.Sleep(20 * time.Millisecond)
	p.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- r.e.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hung behind a checkpoint of a paused engine")
	}
	if err := <-done; err != nil {
		t.Fatalf("the checkpoint in flight: %v", err)
	}
	r.w.Close()
}
