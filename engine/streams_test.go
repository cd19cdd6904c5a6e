package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

// testStreamSpec is the definition testStreamFactory builds: indicators
// and windows in the --indicators and --windows syntax.
type testStreamSpec struct {
	Indicators string `json:"indicators,omitempty"`
	Windows    string `json:"windows,omitempty"`
}

func streamPipeline(t testing.TB, spec testStreamSpec) ProcessorFactory {
	t.Helper()
	var cfg ops.PipelineConfig
	if spec.Indicators != "" {
		ind, err := ops.ParseIndicators(spec.Indicators)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Indicators, cfg.EmitIndicators = ind, true
	}
	if spec.Windows != "" {
		w, err := ops.ParseWindowSpecs(spec.Windows)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Windows = w
	}
	cfg.MaxSymbolID, cfg.MaxSlots = 64, 64
	return func(int) (Processor, error) { return ops.NewPipeline(cfg) }
}

func mustSpec(t testing.TB, s testStreamSpec) json.RawMessage {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// streamOutputs hands each stream its own memOutput, by id.
type streamOutputs struct {
	mu   sync.Mutex
	outs map[StreamID]*memOutput
}

func (s *streamOutputs) of(id StreamID) *memOutput {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outs == nil {
		s.outs = map[StreamID]*memOutput{}
	}
	if s.outs[id] == nil {
		s.outs[id] = &memOutput{}
	}
	return s.outs[id]
}

func (s *streamOutputs) factory(t testing.TB) StreamFactory {
	return func(cfg StreamConfig) (StreamParts, error) {
		var spec testStreamSpec
		dec := json.NewDecoder(bytes.NewReader(cfg.Spec))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			return StreamParts{}, fmt.Errorf("spec: %w", err)
		}
		return StreamParts{Processors: streamPipeline(t, spec), Output: s.of(cfg.ID)}, nil
	}
}

// Two streams on the same two shards with different operators: each gets
// its own events, its own watermark and its own outputs.
func TestStreamsShareShards(t *testing.T) {
	outs := &streamOutputs{}
	syms := codec.NewSymbolTable(64)
	e, err := New(Config{
		Shards:        2,
		Symbols:       syms,
		StreamName:    "ticks",
		Processors:    streamPipeline(t, testStreamSpec{Indicators: "sma:3"}),
		Output:        outs.of("ticks"),
		Streams:       []StreamConfig{{ID: "bars", Spec: mustSpec(t, testStreamSpec{Windows: "tumbling:1ms:count"})}},
		StreamFactory: outs.factory(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, e, 8)
	evs := testEvents(4000, 8, 3)
	pa, err := e.NewPublisher("feed")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := e.NewStreamPublisher("bars", "feed")
	if err != nil || pb.Name() != "bars:feed" {
		t.Fatalf("NewStreamPublisher: %v %v", pb, err)
	}
	if _, err := e.NewStreamPublisher("nope", "feed"); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("publisher of an unknown stream: %v", err)
	}
	// Stream bars gets only the first half: its watermark must not move
	// past what it saw, whatever ticks sees.
	publishRange(t, pa, evs, 0, len(evs))
	publishRange(t, pb, evs, 0, len(evs)/2)
	pa.Close()
	pb.Close()
	stop(t, e)

	trades := 0
	for _, ev := range evs {
		if ev.Kind == codec.KindTrade {
			trades++
		}
	}
	ticks, bars := outs.of("ticks").all(), outs.of("bars").all()
	if len(ticks) != trades {
		t.Fatalf("ticks: %d outputs for %d trades", len(ticks), trades)
	}
	for _, o := range ticks {
		if o.Kind != ops.OutIndicators || o.Stream != 0 {
			t.Fatalf("ticks got %+v", o)
		}
	}
	var counted int64
	for _, o := range bars {
		if o.Kind != ops.OutWindow || o.Stream != 1 {
			t.Fatalf("bars got %+v", o)
		}
		counted += int64(o.Value)
	}
	want := 0
	for _, ev := range evs[:len(evs)/2] {
		if ev.Kind == codec.KindTrade {
			want++
		}
	}
	if counted != int64(want) {
		t.Fatalf("bars' windows counted %d trades, want %d (of its half)", counted, want)
	}
	m, err := e.StreamMetrics("bars")
	if err != nil || m.Messages != uint64(len(evs)/2) || m.Published != uint64(len(evs)/2) || m.Delivered != uint64(len(bars)) || m.Outputs != uint64(len(bars)) {
		t.Fatalf("bars' metrics: %+v %v (outputs %d)", m, err, len(bars))
	}
	mt, _ := e.StreamMetrics("ticks")
	md, _ := e.StreamMetrics(DefaultStream)
	if mt.Messages != uint64(len(evs)) || md.Messages != mt.Messages {
		t.Fatalf("ticks' metrics %d, default %d, want %d", mt.Messages, md.Messages, len(evs))
	}
	list := e.Streams()
	if len(list) != 2 || list[0].ID != "ticks" || list[1].ID != "bars" || list[1].Dynamic {
		t.Fatalf("Streams: %+v", list)
	}
}

// One stream paused while the other runs: the paused stream's publisher
// blocks and its operators see nothing new; the other's events are
// processed; resume lets the first go on with nothing lost.
func TestPauseOneStreamWhileTheOtherRuns(t *testing.T) {
	outs := &streamOutputs{}
	e, err := New(Config{
		Shards:        2,
		Symbols:       codec.NewSymbolTable(64),
		Processors:    streamPipeline(t, testStreamSpec{Indicators: "sma:3"}),
		Output:        outs.of(DefaultStream),
		StreamFactory: outs.factory(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, e, 8)
	if _, err := e.StartStream(StreamConfig{ID: "slow", Spec: mustSpec(t, testStreamSpec{Indicators: "ema:5"})}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []StreamConfig{{ID: "slow"}, {ID: "default"}, {ID: "a b"}, {ID: "x", Spec: []byte(`{"nope":1}`)}} {
		if _, err := e.StartStream(bad); err == nil {
			t.Fatalf("StartStream(%q, %s) accepted", bad.ID, bad.Spec)
		}
	}
	evs := testEvents(3000, 8, 4)
	pa, _ := e.NewPublisher("feed")
	pb, _ := e.NewStreamPublisher("slow", "feed")
	publishRange(t, pb, evs, 0, 1000)
	if err := pb.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { m, _ := e.StreamMetrics("slow"); return m.Messages == 1000 })
	if err := e.PauseStream("slow"); err != nil || !e.StreamPaused("slow") || e.StreamPaused(DefaultStream) {
		t.Fatalf("pause: %v", err)
	}
	if err := e.PauseStream("nope"); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("pause of an unknown stream: %v", err)
	}
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		publishRange(t, pb, evs, 1000, 2000)
		_ = pb.Flush()
	}()
	publishRange(t, pa, evs, 0, len(evs))
	if err := pa.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { m, _ := e.StreamMetrics(DefaultStream); return m.Messages == uint64(len(evs)) })
	select {
	case <-blocked:
		t.Fatal("the paused stream's publisher was not held")
	case <-time.After(50 * time.Millisecond):
	}
	if m, _ := e.StreamMetrics("slow"); m.Messages != 1000 {
		t.Fatalf("the paused stream processed %d events, it had 1000 when paused", m.Messages)
	}
	if _, err := e.ProcessMessage(context.Background(), "slow", &evs[0], nil); !errors.Is(err, ErrStreamState) {
		t.Fatalf("ProcessMessage on a paused stream: %v", err)
	}
	if err := e.ResumeStream("slow"); err != nil {
		t.Fatal(err)
	}
	<-blocked
	waitFor(t, func() bool { m, _ := e.StreamMetrics("slow"); return m.Messages == 2000 })

	// ProcessMessage returns the outputs of its message.
	ev := codec.Event{Kind: codec.KindTrade, Symbol: 3, TsNs: evs[len(evs)-1].TsNs + 1, Price: 123.5, Volume: 7}
	got, err := e.ProcessMessage(context.Background(), "slow", &ev, nil)
	if err != nil || len(got) != 1 || got[0].Kind != ops.OutIndicators || got[0].Symbol != 3 || got[0].Price != 123.5 || got[0].Stream != 1 {
		t.Fatalf("ProcessMessage: %+v %v", got, err)
	}
	beyond := codec.Event{Kind: codec.KindTrade, Symbol: 100, TsNs: ev.TsNs, Price: 1, Volume: 1}
	if outs, err := e.ProcessMessage(context.Background(), "slow", &beyond, nil); err == nil {
		t.Fatalf("a symbol beyond the operators' capacity: no error (%d outputs)", len(outs))
	} else if re := (*RejectedError)(nil); !errors.As(err, &re) {
		t.Fatalf("a symbol beyond the operators' capacity: %v", err)
	}

	// StopStream fires the stream's end and retires it; the other runs on.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pb.Close()
	if err := e.StopStream(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.NewStreamPublisher("slow", "again"); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("a publisher of a stopped stream: %v", err)
	}
	if st := e.Streams(); st[1].State != StreamStopped {
		t.Fatalf("state after StopStream: %v", st[1].State)
	}
	pa.Close()
	stop(t, e)
	slowTrades := 0
	for _, ev := range evs[:2000] {
		if ev.Kind == codec.KindTrade {
			slowTrades++
		}
	}
	if n := len(outs.of("slow").all()); n != slowTrades+1 {
		t.Fatalf("slow: %d outputs, want %d (the trades of 2000 published, one ProcessMessage)", n, slowTrades+1)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// openStreamsRig is openRig with a stream factory: the first stream runs
// the recovery tests' pipeline.
func openStreamsRig(t testing.TB, dir string, outs *streamOutputs) *durableRig {
	t.Helper()
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &durableRig{w: w, out: outs.of(DefaultStream), dl: &dlCollect{}}
	r.e, err = New(Config{
		Shards:        2,
		Symbols:       codec.NewSymbolTable(64),
		Processors:    pipelineFactory(t),
		Output:        r.out,
		DeadLetters:   r.dl,
		Durability:    w,
		Checkpoints:   &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")},
		DedupHorizon:  4096,
		StreamFactory: outs.factory(t),
		Logger:        slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Two streams, the second started at run time with a window and a filter
// created at run time too: crashes (no final checkpoint) and recoveries
// bring both back with their definitions, and every output of both equals
// one uninterrupted run's.
func TestStreamsRecoverWithRunTimeDefinitions(t *testing.T) {
	evs := testEvents(94*64, 8, 9) // a multiple of the flush period: the last Barrier flushes where the reference does
	defineB := func(t *testing.T, e *Engine) {
		if _, err := e.StartStream(StreamConfig{ID: "b", Spec: mustSpec(t, testStreamSpec{Indicators: "rsi:14"})}); err != nil {
			t.Fatal(err)
		}
		spec, err := ops.ParseWindowSpecs("tumbling:2ms:vwap")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.CreateStreamWindow("b", spec[0]); err != nil {
			t.Fatal(err)
		}
		if err := e.FilterStream("b", "kind == trade and price > 100"); err != nil {
			t.Fatal(err)
		}
		pats, err := ops.ParsePatterns([]byte(`[{"id":"spike","type":"volume_spike","multiplier":2,"baseline":"50us"}]`))
		if err != nil {
			t.Fatal(err)
		}
		if id, err := e.RegisterStreamPattern("b", pats[0]); err != nil || id != 0 {
			t.Fatalf("RegisterStreamPattern: %d %v", id, err)
		}
	}
	publishBoth := func(t *testing.T, pa, pb *Publisher, from, to int) {
		publishRange(t, pa, evs, from, to)
		publishRange(t, pb, evs, from, to)
	}
	ref := &streamOutputs{}
	func() {
		r := openStreamsRig(t, t.TempDir(), ref)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internSymbols(t, r.e, 8)
		defineB(t, r.e)
		pa, _ := r.e.NewPublisher("feed")
		pb, _ := r.e.NewStreamPublisher("b", "feed")
		publishBoth(t, pa, pb, 0, len(evs))
		pa.Close()
		pb.Close()
		stop(t, r.e)
		r.w.Close()
	}()
	wantA, _ := byKey(t, ref.of(DefaultStream).all())
	wantB, _ := byKey(t, ref.of("b").all())
	windows, matches := 0, 0
	for _, o := range wantB {
		if o.Kind == ops.OutWindow {
			windows++
		}
		if o.Kind == ops.OutPattern {
			matches++
		}
		if o.Kind == ops.OutIndicators && o.Price <= 100 {
			t.Fatalf("the filter let a trade at %v through", o.Price)
		}
	}
	if len(wantA) == 0 || windows == 0 || matches == 0 || len(wantB) <= windows+matches {
		t.Fatalf("reference: %d outputs of a, %d of b (%d windows, %d pattern matches)", len(wantA), len(wantB), windows, matches)
	}

	dir := t.TempDir()
	got := &streamOutputs{}
	rng := rand.New(rand.NewPCG(21, 22))
	replayed := int64(0)
	for inc := 0; ; inc++ {
		r := openStreamsRig(t, dir, got)
		rep, err := r.e.Recover(context.Background())
		if err != nil {
			t.Fatalf("incarnation %d: %v", inc, err)
		}
		replayed += rep.Events
		internSymbols(t, r.e, 8)
		if inc == 0 {
			defineB(t, r.e)
		} else if info, err := r.e.StreamInfo("b"); err != nil || !info.Dynamic {
			t.Fatalf("incarnation %d: stream b not recovered: %+v %v", inc, info, err)
		} else if pats, err := r.e.ListStreamPatterns("b"); err != nil || len(pats) != 1 || pats[0].Spec.ID != "spike" {
			t.Fatalf("incarnation %d: b's pattern not recovered: %+v %v", inc, pats, err)
		} else if pats, _ := r.e.ListStreamPatterns(DefaultStream); len(pats) != 0 {
			t.Fatalf("incarnation %d: the first stream has b's pattern: %+v", inc, pats)
		}
		offA, _ := r.e.SourceOffset("feed")
		offB, _ := r.e.SourceOffset("b:feed")
		if offA != offB {
			t.Fatalf("incarnation %d: offsets %d and %d: both were acknowledged together", inc, offA, offB)
		}
		pa, _ := r.e.NewPublisher("feed")
		pb, err := r.e.NewStreamPublisher("b", "feed")
		if err != nil {
			t.Fatal(err)
		}
		from := int(offA)
		to := min(len(evs), (from/64+1+rng.IntN(25))*64)
		last := inc >= 5 || to == len(evs)
		if last {
			to = len(evs)
		}
		for pos := from; pos < to; {
			step := min(to, pos+1+rng.IntN(900))
			publishBoth(t, pa, pb, pos, step)
			pos = step
			if rng.IntN(2) == 0 {
				if _, err := r.e.Checkpoint(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, p := range []*Publisher{pa, pb} {
			if err := p.Barrier(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if last {
			pa.Close()
			pb.Close()
			stop(t, r.e)
			r.w.Close()
			break
		}
		// A crash: no final checkpoint; recovery replays the WAL after
		// the last one and rewinds both outputs to their marks.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.e.Stop(ctx); err == nil {
			t.Fatal("Stop with open publishers and no time: no error")
		}
		r.w.Close()
	}
	if replayed == 0 {
		t.Fatal("no incarnation replayed WAL events: the test shows nothing about recovery")
	}
	for _, c := range []struct {
		id   StreamID
		want map[uint64]ops.Output
	}{{DefaultStream, wantA}, {"b", wantB}} {
		g, dups := byKey(t, got.of(c.id).all())
		if dups != 0 || len(g) != len(c.want) {
			t.Fatalf("stream %s: %d outputs (%d duplicates), want %d", c.id, len(g), dups, len(c.want))
		}
		for k, w := range c.want {
			if o, ok := g[k]; !ok || !sameOutput(o, w) {
				t.Fatalf("stream %s: output %x: got %+v, want %+v", c.id, k, o, w)
			}
		}
	}
}

// A checkpoint that holds a stream the restarted engine does not start is
// refused, naming it.
func TestRecoverRefusesAnUnknownStream(t *testing.T) {
	dir := t.TempDir()
	outs := &streamOutputs{}
	r := openStreamsRig(t, dir, outs)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.StartStream(StreamConfig{ID: "gone", Spec: mustSpec(t, testStreamSpec{Indicators: "sma:2"})}); err != nil {
		t.Fatal(err)
	}
	stop(t, r.e)
	r.w.Close()
	// The same directory without a factory cannot build the stream.
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e, err := New(Config{Shards: 2, Symbols: codec.NewSymbolTable(64), Processors: pipelineFactory(t), Durability: w,
		Checkpoints: &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Recover(context.Background())
	if !errors.Is(err, ErrCheckpointState) || !strings.Contains(err.Error(), "StreamFactory") {
		t.Fatalf("recover without the stream's factory: %v", err)
	}
}

// ProcessMessage on the first stream of a running engine, then Stop: the
// API publisher does not hold the stop.
func TestProcessMessageThenStop(t *testing.T) {
	out := &memOutput{}
	e, err := New(Config{Shards: 2, Symbols: codec.NewSymbolTable(64), Processors: streamPipeline(t, testStreamSpec{Indicators: "sma:2"}), Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, e, 4)
	for i, price := range []float64{10, 20, 40} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: 2, TsNs: int64(i + 1), Price: price, Volume: 1}
		got, err := e.ProcessMessage(context.Background(), DefaultStream, &ev, nil)
		if err != nil || len(got) != 1 || got[0].Seq != uint64(i+1) {
			t.Fatalf("message %d: %+v %v", i, got, err)
		}
		if i > 0 && got[0].Values[0] != (price+[]float64{10, 20, 40}[i-1])/2 {
			t.Fatalf("message %d: sma %v", i, got[0].Values[0])
		}
	}
	if _, err := e.ProcessMessage(context.Background(), "nope", &codec.Event{Kind: codec.KindTrade}, nil); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("unknown stream: %v", err)
	}
	stop(t, e)
	if n := len(out.all()); n != 3 {
		t.Fatalf("%d outputs delivered, want 3", n)
	}
}

// StopStream right after its publisher closes: everything the publisher
// put into the rings is processed before the end fires (nothing late), and
// the windows hold every trade.
func TestStopStreamDrainsFirst(t *testing.T) {
	outs := &streamOutputs{}
	e, err := New(Config{
		Shards:        2,
		Symbols:       codec.NewSymbolTable(64),
		Processors:    streamPipeline(t, testStreamSpec{Indicators: "sma:2"}),
		StreamFactory: outs.factory(t),
		RingSize:      8192,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, e, 8)
	for round := range 5 {
		id := StreamID(fmt.Sprintf("w%d", round))
		if _, err := e.StartStream(StreamConfig{ID: id, Spec: mustSpec(t, testStreamSpec{Windows: "tumbling:1ms:count"})}); err != nil {
			t.Fatal(err)
		}
		evs := testEvents(6000, 8, uint64(10+round))
		p, _ := e.NewStreamPublisher(id, "feed")
		publishRange(t, p, evs, 0, len(evs))
		p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.StopStream(ctx, id); err != nil {
			t.Fatal(err)
		}
		cancel()
		trades := 0
		for _, ev := range evs {
			if ev.Kind == codec.KindTrade {
				trades++
			}
		}
		var counted int64
		for _, o := range outs.of(id).all() {
			counted += int64(o.Value)
		}
		if m, _ := e.StreamMetrics(DefaultStream); counted != int64(trades) {
			t.Fatalf("round %d: windows counted %d trades of %d (%+v)", round, counted, trades, m.Rejected)
		}
	}
	stop(t, e)
}
