package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

const (
	patAPISyms = 12
	patAPIN    = 9000
)

// patAPIConfigured is the engine pipelines' configured pattern (id 0).
func patAPIConfigured(t testing.TB) []ops.PatternSpec {
	specs, err := ops.ParsePatterns([]byte(`[{"id":"spike","type":"volume_spike","multiplier":3,"baseline":"200us"}]`))
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// patAPIRegistered are registered while the engine runs: a breakout
// restricted to some symbols and a followed-by sequence.
func patAPIRegistered(t testing.TB) []ops.PatternSpec {
	specs, err := ops.ParsePatterns([]byte(`[
	{"id":"brk","type":"price_breakout","threshold":0.001,"timeframe":"100us","symbols":["S001","S002","S003","S005","S008"]},
	{"id":"dip","type":"sequence","within":"50us","steps":[{"where":["price < sma_5"]},{"where":["price > sma_5"]}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// patAPIEngine is a two-shard engine over pipelines with the configured
// pattern, ordered output (one publisher, increasing Seq) so that the order
// of delivery is the order of input.
func patAPIEngine(t *testing.T, buffer int) (*Engine, *collect) {
	t.Helper()
	symbols := codec.NewSymbolTable(64)
	configured := patAPIConfigured(t)
	out := &collect{}
	e, err := New(Config{
		Shards:  2,
		Ordered: true,
		Symbols: symbols,
		Processors: func(int) (Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Patterns: configured, SymbolNames: symbols, MaxSymbolID: 64, MaxSlots: 64})
		},
		Output:             out,
		PatternMatchBuffer: buffer,
	})
	if err != nil {
		t.Fatal(err)
	}
	internSymbols(t, e, patAPISyms)
	return e, out
}

// publishAndWait publishes evs and waits until the shards processed them.
func publishAndWait(t *testing.T, e *Engine, p *Publisher, evs []codec.Event) {
	t.Helper()
	want := e.Stats().Messages + uint64(len(evs))
	publishRange(t, p, evs, 0, len(evs))
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Messages < want {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %d events to be processed, %d were", want, e.Stats().Messages)
		}
		time.Sleep(time.Millisecond)
	}
}

// matchesOf returns the pattern matches of op among outs with Seq in
// (from, to], in order.
func matchesOf(outs []ops.Output, op uint16, from, to uint64) []ops.Output {
	var m []ops.Output
	for _, o := range outs {
		if o.Kind == ops.OutPattern && o.Op == op && o.Seq > from && o.Seq <= to {
			m = append(m, o)
		}
	}
	return m
}

// waitMatches waits until outs holds n matches of op.
func waitMatches(t *testing.T, out *collect, op uint16, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(matchesOf(out.all(), op, 0, math.MaxUint64)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %d matches of pattern %d, have %d", n, op, len(matchesOf(out.all(), op, 0, math.MaxUint64)))
		}
		time.Sleep(time.Millisecond)
	}
}

// reference runs evs through a pipeline configured with spec alone (Op 0),
// as a pattern registered before evs starts.
func reference(t *testing.T, e *Engine, spec ops.PatternSpec, evs []codec.Event) []ops.Output {
	t.Helper()
	p, err := ops.NewPipeline(ops.PipelineConfig{Patterns: []ops.PatternSpec{spec}, SymbolNames: e.Symbols(), MaxSymbolID: 64, MaxSlots: 64})
	if err != nil {
		t.Fatal(err)
	}
	var out []ops.Output
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out)
	}
	slices.SortStableFunc(out, func(a, b ops.Output) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// sameMatches compares matches but for Op, Key and IngestNs, which depend
// on the pattern's id, the engine's source keys and its clock.
func sameMatches(t *testing.T, what string, got, want []ops.Output) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d matches, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		g.Op, g.Key, g.IngestNs, w.Op, w.Key, w.IngestNs = 0, 0, 0, 0, 0, 0
		if g != w {
			t.Fatalf("%s: match %d:\n got %+v\nwant %+v", what, i, g, w)
		}
	}
}

// A pattern registered while the engine runs matches the events that
// follow exactly as a pipeline configured with it alone; its matches are
// listed, counted and buffered (the most recent ones, bounded); a removed
// pattern stops matching; the configured pattern is untouched.
func TestRegisterPatternWhileRunning(t *testing.T) {
	const buffer = 16
	e, out := patAPIEngine(t, buffer)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	evs := testEvents(patAPIN, patAPISyms, 7)
	c1, c2 := patAPIN/3, 2*patAPIN/3
	p, err := e.NewPublisher("feed")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !e.stopping.Load() { // a failed check: end the engine all the same
			p.Close()
			stop(t, e)
		}
	}()
	publishAndWait(t, e, p, evs[:c1])

	regs := patAPIRegistered(t)
	ids := make([]PatternID, len(regs))
	for k, s := range regs {
		if ids[k], err = e.RegisterPattern(s); err != nil {
			t.Fatalf("register %q: %v", s.ID, err)
		}
		if ids[k] != PatternID(1+k) {
			t.Fatalf("register %q: id %d, want %d", s.ID, ids[k], 1+k)
		}
	}
	publishAndWait(t, e, p, evs[c1:c2])
	refs := make([][]ops.Output, len(regs))
	for k, s := range regs {
		refs[k] = reference(t, e, s, evs[c1:c2])
		if len(refs[k]) <= buffer {
			t.Fatalf("%q: %d matches in the reference, the buffer bound is not exercised", s.ID, len(refs[k]))
		}
		waitMatches(t, out, uint16(ids[k]), len(refs[k]))
		got := matchesOf(out.all(), uint16(ids[k]), 0, math.MaxUint64)
		sameMatches(t, s.ID, got, refs[k])
		for _, o := range got {
			if o.Op != uint16(ids[k]) {
				t.Fatalf("%q: a match with Op %d", s.ID, o.Op)
			}
		}
		// The buffer holds the last 16 matches, in order.
		ms, err := e.DetectPatternMatches(ids[k])
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != buffer {
			t.Fatalf("%q: %d buffered matches, want %d", s.ID, len(ms), buffer)
		}
		names := s.DetailNames()
		for i, m := range ms {
			o := refs[k][len(refs[k])-buffer+i]
			if m.Pattern != ids[k] || m.Symbol != e.Symbols().Name(o.Symbol) || m.TsNs != o.TsNs || m.Confidence != o.Value || len(m.Details) != int(o.NValues) {
				t.Fatalf("%q: buffered match %d %+v, want %+v", s.ID, i, m, o)
			}
			for j, d := range m.Details {
				if d.Name != names[j] || d.Value != o.Values[j] {
					t.Fatalf("%q: buffered match %d detail %d %+v, want %s=%v", s.ID, i, j, d, names[j], o.Values[j])
				}
			}
		}
	}

	// The configured pattern matched all along and is listed first.
	list := e.ListPatterns()
	if len(list) != 3 || list[0].Spec.ID != "spike" || list[1].Spec.ID != "brk" || list[2].Spec.ID != "dip" {
		t.Fatalf("ListPatterns: %+v", list)
	}
	for i, pi := range list {
		n := uint64(len(matchesOf(out.all(), uint16(i), 0, math.MaxUint64)))
		if pi.ID != PatternID(i) || !pi.Active || pi.Matches != n || pi.Dropped != n-min(n, buffer) || n == 0 {
			t.Fatalf("ListPatterns[%d] = {ID %d Active %v Matches %d Dropped %d}, %d delivered", i, pi.ID, pi.Active, pi.Matches, pi.Dropped, n)
		}
	}

	// Remove the breakout: events after the removal do not match it.
	if err := e.RemovePattern(ids[0]); err != nil {
		t.Fatal(err)
	}
	before := e.ListPatterns()[ids[0]].Matches
	publishAndWait(t, e, p, evs[c2:])
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	stop(t, e)
	all := out.all()
	if m := matchesOf(all, uint16(ids[0]), uint64(c2), math.MaxUint64); len(m) != 0 {
		t.Fatalf("the removed pattern matched %d events published after its removal", len(m))
	}
	sameMatches(t, "dip after the removal", matchesOf(all, uint16(ids[1]), uint64(c1), math.MaxUint64), reference(t, e, regs[1], evs[c1:]))
	sameMatches(t, "the configured pattern", matchesOf(all, 0, 0, math.MaxUint64), reference(t, e, patAPIConfigured(t)[0], evs))
	list = e.ListPatterns()
	if list[ids[0]].Active || list[ids[0]].Matches != before || !list[ids[1]].Active {
		t.Fatalf("after the removal: %+v", list)
	}
	if ms, err := e.DetectPatternMatches(ids[0]); err != nil || len(ms) != buffer {
		t.Fatalf("a removed pattern's matches stay readable: %d, %v", len(ms), err)
	}
}

func TestPatternAPIErrors(t *testing.T) {
	e, _ := patAPIEngine(t, 0)
	regs := patAPIRegistered(t)
	// Before Start the calls run directly on the pipelines.
	id, err := e.RegisterPattern(regs[0])
	if err != nil || id != 1 {
		t.Fatalf("register: %d %v", id, err)
	}
	if _, err := e.RegisterPattern(regs[0]); !errors.Is(err, ErrDuplicatePattern) {
		t.Fatalf("same id again: %v", err)
	}
	if _, err := e.RegisterPattern(patAPIConfigured(t)[0]); !errors.Is(err, ErrDuplicatePattern) {
		t.Fatalf("the configured pattern's id: %v", err)
	}
	bad := regs[0]
	bad.ID, bad.TimeframeNs = "bad", 0
	if _, err := e.RegisterPattern(bad); !errors.Is(err, ErrInvalidPattern) || !errors.Is(err, ops.ErrPatternSpec) {
		t.Fatalf("zero timeframe: %v", err)
	}
	for _, id := range []PatternID{3, 99} {
		if err := e.RemovePattern(id); !errors.Is(err, ErrUnknownPattern) {
			t.Fatalf("remove %d: %v", id, err)
		}
		if _, err := e.DetectPatternMatches(id); !errors.Is(err, ErrUnknownPattern) {
			t.Fatalf("matches of %d: %v", id, err)
		}
	}
	if err := e.RemovePattern(id); err != nil {
		t.Fatal(err)
	}
	if err := e.RemovePattern(id); !errors.Is(err, ErrUnknownPattern) {
		t.Fatalf("remove twice: %v", err)
	}
	// The id of a removed pattern may be registered again, under a new id;
	// failed registrations took none.
	if id2, err := e.RegisterPattern(regs[0]); err != nil || id2 != 2 {
		t.Fatalf("re-register: %d %v", id2, err)
	}
	if got := len(e.ListPatterns()); got != 3 {
		t.Fatalf("%d patterns listed, want 3", got)
	}
	// Processors that cannot host patterns.
	plain := newTestEngine(t, Config{Shards: 1, Processors: func(s int) (Processor, error) { return newEcho(s), nil }})
	if _, err := plain.RegisterPattern(regs[0]); !errors.Is(err, ErrNoPatternHost) {
		t.Fatalf("echo processors: %v", err)
	}
	if plain.ListPatterns() != nil {
		t.Fatal("echo processors list patterns")
	}
	if _, err := New(Config{Processors: func(s int) (Processor, error) { return newEcho(s), nil }, PatternMatchBuffer: MaxPatternMatchBuffer + 1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("a match buffer above the bound: %v", err)
	}
}

// Run-time definitions come back with recovery: a window created, a filter
// and a transform set, and patterns registered (one of them removed) while
// the engine runs, each
// made durable by the checkpoint the call takes, then a crash (no final
// checkpoint) and a recovery that replays the WAL after it. The outputs by
// key equal one uninterrupted run that makes the same calls at the same
// points, and the registry lists the patterns again.
func TestRecoverBringsBackRunTimeDefinitions(t *testing.T) {
	evs := testEvents(6000, recSyms, 3)
	win, err := ops.ParseWindowSpecs("tumbling:500us:max")
	if err != nil {
		t.Fatal(err)
	}
	brk, err := ops.ParsePatterns([]byte(`[{"id":"brk","type":"price_breakout","threshold":0.002,"timeframe":"200us"},
		{"id":"gone","type":"volume_spike","multiplier":2,"baseline":"100us"}]`))
	if err != nil {
		t.Fatal(err)
	}
	// settle makes every event published so far processed (a checkpoint's
	// cut goes through the rings after them), so that a change applies at
	// the same input position in every run.
	settle := func(r *durableRig, p *Publisher) {
		t.Helper()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.e.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	changes := func(r *durableRig, p *Publisher) {
		t.Helper()
		publishRange(t, p, evs, 0, 1024)
		settle(r, p)
		if _, err := r.e.CreateWindow(win[0]); err != nil {
			t.Fatal(err)
		}
		if err := r.e.FilterStream(DefaultStream, "kind != trade or volume < 90"); err != nil {
			t.Fatal(err)
		}
		if err := r.e.TransformStream(DefaultStream, "volume = volume * 2"); err != nil {
			t.Fatal(err)
		}
		if err := r.e.FilterStream("other", "price > 0"); !errors.Is(err, ErrUnknownStream) {
			t.Fatalf("another stream: %v", err)
		}
		if _, err := r.e.RegisterPattern(brk[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := r.e.RegisterPattern(patAPIRegistered(t)[1]); err != nil { // a sequence
			t.Fatal(err)
		}
		id, err := r.e.RegisterPattern(brk[1])
		if err != nil {
			t.Fatal(err)
		}
		publishRange(t, p, evs, 1024, 2048)
		settle(r, p)
		if err := r.e.RemovePattern(id); err != nil {
			t.Fatal(err)
		}
		publishRange(t, p, evs, 2048, 3072)
	}
	// The reference: one incarnation.
	want := func() map[uint64]ops.Output {
		r := openRig(t, t.TempDir(), 2, &memOutput{}, 0)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internSymbols(t, r.e, recSyms)
		p, _ := r.e.NewPublisher("feed")
		changes(r, p)
		publishRange(t, p, evs, 3072, len(evs))
		p.Close()
		stop(t, r.e)
		r.w.Close()
		m, dups := byKey(t, r.out.all())
		if dups != 0 {
			t.Fatalf("reference: %d duplicate keys", dups)
		}
		return m
	}()

	dir, out := t.TempDir(), &memOutput{}
	r := openRig(t, dir, 2, out, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	changes(r, p)
	if err := p.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A crash: the publisher stays open and Stop gives up at once, so no
	// final checkpoint is taken; recovery replays the WAL after the last.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = r.e.Stop(ctx)
	r.w.Close()

	r = openRig(t, dir, 2, out, 0)
	rep, err := r.e.Recover(context.Background())
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	if rep.Events == 0 {
		t.Fatal("recovery replayed nothing: the test does not show the WAL replay under the definitions")
	}
	list := r.e.ListPatterns()
	var ids []string
	for _, pi := range list {
		ids = append(ids, fmt.Sprintf("%s:%v", pi.Spec.ID, pi.Active))
	}
	if got := strings.Join(ids, " "); got != "brk:true dip:true gone:false" {
		t.Fatalf("patterns after recovery: %s", got)
	}
	internSymbols(t, r.e, recSyms)
	off, _ := r.e.SourceOffset("feed")
	p, _ = r.e.NewPublisher("feed")
	publishRange(t, p, evs, int(off), len(evs))
	p.Close()
	stop(t, r.e)
	r.w.Close()
	got, dups := byKey(t, out.all())
	if dups != 0 {
		t.Fatalf("%d duplicate keys after recovery", dups)
	}
	matches := map[uint16]int{}
	for k, w := range want {
		g, ok := got[k]
		if !ok || !sameOutput(g, w) {
			t.Fatalf("output %x: got %+v, want %+v", k, g, w)
		}
		if w.Kind == ops.OutPattern {
			matches[w.Op]++
		}
	}
	filtered := 0
	for _, w := range want {
		if w.Kind == ops.OutIndicators && w.Seq > 1024 {
			// Filtered (volume < 90) and then transformed (× 2).
			if w.Volume >= 180 || math.Mod(w.Volume, 2) != 0 {
				filtered++
			}
		}
	}
	if filtered != 0 {
		t.Fatalf("%d indicator outputs after the filter and transform that neither explains", filtered)
	}
	if len(got) != len(want) || matches[0] == 0 || matches[1] == 0 {
		t.Fatalf("%d outputs, want %d; pattern matches by id %v", len(got), len(want), matches)
	}
	t.Logf("%d outputs equal, pattern matches by id %v, recovery replayed %d events", len(got), matches, rep.Events)
}

// Registering and removing patterns while a producer publishes: the
// control calls interleave with batches on the shard goroutines (run it
// with -race), matches appear, and a removed pattern matches no event
// published after RemovePattern returned.
func TestPatternAPIUnderLoad(t *testing.T) {
	e, out := patAPIEngine(t, 0)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := e.NewPublisher("feed")
	if err != nil {
		t.Fatal(err)
	}
	evs := testEvents(60_000, patAPISyms, 11)
	var published atomic.Uint64
	done := make(chan error, 1)
	go func() {
		for i := range evs {
			// Stored before the call: when the main goroutine reads v,
			// event v+1 may be published already (its call follows the
			// store of v), but no event after it (whose store of v+1
			// the read did not see).
			published.Store(evs[i].Seq - 1)
			if err := p.Publish(&evs[i]); err != nil {
				done <- err
				return
			}
			if i%64 == 63 {
				p.Flush()
			}
			if i%1024 == 1023 {
				time.Sleep(100 * time.Microsecond) // let the calls below land mid-stream
			}
		}
		done <- p.Close()
	}()
	regs := patAPIRegistered(t)
	var removedAfter []uint64 // per registered pattern: no event after this Seq was published before its removal returned
	for round := range 6 {
		for published.Load() < uint64((round+1)*8000) {
			time.Sleep(100 * time.Microsecond)
		}
		s := regs[round%len(regs)]
		id, err := e.RegisterPattern(s)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if int(id) != 1+round {
			t.Fatalf("round %d: id %d", round, id)
		}
		time.Sleep(2 * time.Millisecond)
		if err := e.RemovePattern(id); err != nil {
			t.Fatal(err)
		}
		removedAfter = append(removedAfter, published.Load()+1)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stop(t, e)
	all := out.all()
	matched := 0
	for k, last := range removedAfter {
		op := uint16(1 + k)
		if late := matchesOf(all, op, last, math.MaxUint64); len(late) != 0 {
			t.Fatalf("pattern %d matched %d events published after its removal (first Seq %d, removed after %d)", op, len(late), late[0].Seq, last)
		}
		matched += len(matchesOf(all, op, 0, math.MaxUint64))
		if got := e.ListPatterns()[op].Matches; got != uint64(len(matchesOf(all, op, 0, math.MaxUint64))) {
			t.Fatalf("pattern %d: %d matches counted, %d delivered", op, got, len(matchesOf(all, op, 0, math.MaxUint64)))
		}
	}
	if matched == 0 {
		t.Fatal("no registered pattern matched while it was active")
	}
	t.Logf("%d matches of patterns registered mid-stream", matched)
}
