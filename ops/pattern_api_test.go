package ops

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"qstream/codec"
)

// The pattern detector's keys, with their per-input parts computed once,
// are OutputKey's (a key must never change: sinks upsert on it).
func TestPatKeyerIsOutputKey(t *testing.T) {
	p, err := NewPipeline(PipelineConfig{MaxSymbolID: 8})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 1000 {
		p.SetSourceKey(rng.Uint64(), rng.Uint64())
		ev := codec.Event{Symbol: codec.Symbol(1 + rng.IntN(1<<20)), Seq: rng.Uint64()}
		if i%2 == 0 {
			ev.IDHash = rng.Uint64()
		}
		var k patKeyer
		for range 3 {
			op := uint16(rng.IntN(MaxPatterns))
			if got, want := k.key(p, op, &ev), p.inputKey(OutPattern, op, &ev); got != want {
				t.Fatalf("event %+v op %d: key %x, want %x", ev, op, got, want)
			}
		}
	}
}

// apiBaseSpecs are the configured patterns of the API tests: sequences
// before and after built-in ones (so built-in Ops are remapped), a
// technical one sharing indicators with the added ones.
func apiBaseSpecs(t testing.TB) []PatternSpec {
	return mustParsePatterns(t, `[
	{"id":"dip","type":"sequence","within":"2s","steps":[{"where":["rsi_14 < 40"]},{"where":["price > vwap"]}]},
	{"id":"brk","type":"price_breakout","threshold":0.0002,"timeframe":"10s"},
	{"id":"spk","type":"volume_spike","multiplier":4,"baseline":"10s"},
	{"id":"ema","type":"technical_signal","signal":"ema_cross","fast":3,"slow":8},
	{"id":"stall","type":"sequence","within":"1s","max_partial":8,"steps":[{"where":["price > sma_5"]},{"absent":true,"where":["price < sma_5"]}]}]`)
}

// apiAddedSpecs are added at run time: one of each kind, one with an id a
// configured pattern had, one restricted to symbols, one sharing its
// timeframe and indicators with configured ones (its state must still
// start empty).
func apiAddedSpecs(t testing.TB) []PatternSpec {
	return mustParsePatterns(t, `[
	{"id":"brk2","type":"price_breakout","threshold":0.0001,"timeframe":"10s"},
	{"id":"dn","type":"price_breakout","direction":"down","threshold":0.0001,"timeframe":"3s","symbols":["AAA","CCC"]},
	{"id":"spk2","type":"volume_spike","multiplier":3,"baseline":"5s"},
	{"id":"ema2","type":"technical_signal","signal":"ema_cross","fast":3,"slow":8},
	{"id":"rsi","type":"technical_signal","signal":"rsi_cross","period":5},
	{"id":"seq2","type":"sequence","within":"2s","steps":[{"where":["price < sma_5"]},{"where":["price > sma_5"]}]},
	{"id":"gone","type":"sequence","within":"1s","max_partial":8,"steps":[{"where":["price > sma_20"]},{"absent":true,"where":["price < sma_20"]}]}]`)
}

func apiPipeline(t testing.TB, specs []PatternSpec) *Pipeline {
	t.Helper()
	p, err := NewPipeline(PipelineConfig{Patterns: specs, SymbolNames: patNames{}, MaxSymbolID: 64, MaxSlots: 8})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// patsOf returns the pattern matches of op in outs, ordered by input
// (Seq), then symbol: a watermark fires symbols in slot order, and slots
// are numbered by first sight, which differs between pipelines that
// started at different points.
func patsOf(outs []Output, op uint16) []Output {
	var m []Output
	for _, o := range outs {
		if o.Kind == OutPattern && o.Op == op {
			m = append(m, o)
		}
	}
	slices.SortStableFunc(m, func(a, b Output) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Symbol, b.Symbol))
	})
	return m
}

// sameMatches compares two match lists but for Op and Key.
func sameMatches(t *testing.T, what string, got, want []Output) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d matches, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		g.Op, g.Key, w.Op, w.Key = 0, 0, 0, 0
		for k := range g.Values {
			if math.Float64bits(g.Values[k]) != math.Float64bits(w.Values[k]) {
				t.Fatalf("%s: match %d value %d: %v, want %v", what, i, k, g.Values[k], w.Values[k])
			}
		}
		g.Values, w.Values = [MaxValues]float64{}, [MaxValues]float64{}
		if g != w {
			t.Fatalf("%s: match %d:\n got %+v\nwant %+v", what, i, g, w)
		}
	}
}

// Patterns added mid-stream get new Ops, leave the configured ones' outputs
// as they were, and match exactly as a pipeline configured with each alone
// from that point on; removed ones stop at once, the others go on
// unchanged.
func TestAddAndRemovePatternsMidStream(t *testing.T) {
	base, added := apiBaseSpecs(t), apiAddedSpecs(t)
	evs := realTradeEvents(t)
	c1, c2 := len(evs)/3, 2*len(evs)/3

	// Reference: the configured patterns alone, uninterrupted.
	ref := apiPipeline(t, base)
	runEvents(ref, evs[:c1])
	ref2 := runEvents(ref, evs[c1:c2])
	ref3 := ref.OnWatermark(math.MaxInt64, 0, runEvents(ref, evs[c2:]))

	p := apiPipeline(t, base)
	runEvents(p, evs[:c1])
	fresh := make([]*Pipeline, len(added))
	for k, s := range added {
		op, err := p.AddPattern(s)
		if err != nil {
			t.Fatalf("add %q: %v", s.ID, err)
		}
		if want := uint16(len(base) + k); op != want {
			t.Fatalf("add %q: op %d, want %d", s.ID, op, want)
		}
		fresh[k] = apiPipeline(t, []PatternSpec{s})
	}
	if got := p.Patterns(); len(got) != len(base)+len(added) || got[len(base)].ID != "brk2" {
		t.Fatalf("Patterns() after adding: %d, first added %q", len(got), got[len(base)].ID)
	}
	out2 := runEvents(p, evs[c1:c2])
	fresh2 := make([][]Output, len(added))
	for k := range added {
		fresh2[k] = runEvents(fresh[k], evs[c1:c2])
	}
	// Remove a configured built-in, a configured sequence and an added one.
	removed := map[uint16]bool{2: true, 4: true, uint16(len(base) + len(added) - 1): true}
	for op := range removed {
		if err := p.RemovePattern(op); err != nil {
			t.Fatalf("remove %d: %v", op, err)
		}
		if p.PatternActive(op) {
			t.Fatalf("pattern %d still active", op)
		}
	}
	// A removed configured built-in pattern costs nothing any more: no
	// plan refers to it.
	for _, pl := range p.pat.plans {
		for _, tp := range pl.trails {
			for _, r := range slices.Concat(tp.up, tp.down, tp.spike) {
				if removed[p.patOps[r.op]] {
					t.Fatalf("a plan still checks removed pattern %d", p.patOps[r.op])
				}
			}
		}
	}
	out3 := p.OnWatermark(math.MaxInt64, 0, runEvents(p, evs[c2:]))

	for op := range uint16(len(base)) {
		sameMatches(t, "configured, while adding", patsOf(out2, op), patsOf(ref2, op))
		if removed[op] {
			if m := patsOf(out3, op); len(m) != 0 {
				t.Fatalf("removed pattern %d matched %d times", op, len(m))
			}
			continue
		}
		sameMatches(t, "configured, after removing", patsOf(out3, op), patsOf(ref3, op))
	}
	total := 0
	for k := range added {
		op := uint16(len(base) + k)
		want := patsOf(fresh2[k], 0)
		got := patsOf(out2, op)
		if len(want) == 0 {
			t.Fatalf("added pattern %q never matched: the test proves little", added[k].ID)
		}
		total += len(got)
		sameMatches(t, "added "+added[k].ID, got, want)
		if added[k].Type != PatSequence {
			for _, o := range got {
				if o.Key != OutputKey(OutPattern, op, o.Symbol, o.Seq, 0) {
					t.Fatalf("added %q: key %x is not its Op's", added[k].ID, o.Key)
				}
			}
		}
		if removed[op] {
			if m := patsOf(out3, op); len(m) != 0 {
				t.Fatalf("removed added pattern %d matched %d times", op, len(m))
			}
			continue
		}
		want3 := patsOf(fresh[k].OnWatermark(math.MaxInt64, 0, runEvents(fresh[k], evs[c2:])), 0)
		sameMatches(t, "added "+added[k].ID+", after removing", patsOf(out3, op), want3)
	}
	keys := map[uint64]bool{}
	for _, o := range append(out2, out3...) {
		if o.Kind == OutPattern {
			if keys[o.Key] {
				t.Fatalf("key %x repeated", o.Key)
			}
			keys[o.Key] = true
		}
	}
	t.Logf("%d matches of added patterns", total)
}

func TestAddPatternErrors(t *testing.T) {
	base := apiBaseSpecs(t)
	p := apiPipeline(t, base)
	bad := base[1]
	bad.ID, bad.Threshold = "neg", -1
	if _, err := p.AddPattern(bad); !errors.Is(err, ErrPatternSpec) {
		t.Fatalf("negative threshold: %v", err)
	}
	if _, err := p.AddPattern(base[3]); !errors.Is(err, ErrPatternIDTaken) {
		t.Fatalf("duplicate id: %v", err)
	}
	if err := p.RemovePattern(99); !errors.Is(err, ErrNoPattern) {
		t.Fatalf("remove unknown: %v", err)
	}
	if err := p.RemovePattern(3); err != nil {
		t.Fatal(err)
	}
	if err := p.RemovePattern(3); !errors.Is(err, ErrNoPattern) {
		t.Fatalf("remove twice: %v", err)
	}
	// A removed pattern's id may be used again, with a new Op.
	if op, err := p.AddPattern(base[3]); err != nil || op != uint16(len(base)) {
		t.Fatalf("re-add: %d %v", op, err)
	}
	noNames, err := NewPipeline(PipelineConfig{MaxSymbolID: 8})
	if err != nil {
		t.Fatal(err)
	}
	restricted := mustParsePatterns(t, `[{"id":"r","type":"volume_spike","multiplier":2,"baseline":"1s","symbols":["AAA"]}]`)[0]
	if _, err := noNames.AddPattern(restricted); !errors.Is(err, ErrPatternSpec) {
		t.Fatalf("symbols without names: %v", err)
	}
	// A pipeline without configured patterns takes some at run time.
	if op, err := noNames.AddPattern(mustParsePatterns(t, `[{"id":"v","type":"volume_spike","multiplier":2,"baseline":"1s"}]`)[0]); err != nil || op != 0 {
		t.Fatalf("first pattern: %d %v", op, err)
	}
}

// A snapshot taken after run-time changes is refused, with a reason, by a
// pipeline built from the configuration, and by the pipeline itself (which
// it leaves unchanged).
func TestRuntimePatternsRefuseSnapshots(t *testing.T) {
	base, added := apiBaseSpecs(t), apiAddedSpecs(t)
	evs := realTradeEvents(t)[:3000]
	for _, change := range []string{"add", "remove"} {
		p := apiPipeline(t, base)
		runEvents(p, evs[:1000])
		if change == "add" {
			if _, err := p.AddPattern(added[0]); err != nil {
				t.Fatal(err)
			}
		} else if err := p.RemovePattern(1); err != nil {
			t.Fatal(err)
		}
		runEvents(p, evs[1000:])
		snap := p.AppendState(nil)
		fresh := apiPipeline(t, base)
		before := fresh.AppendState(nil)
		err := fresh.LoadState(snap)
		if !errors.Is(err, ErrRuntimePatternState) || !errors.Is(err, ErrPipelineState) {
			t.Fatalf("%s: a fresh pipeline loading the snapshot: %v", change, err)
		}
		if string(fresh.AppendState(nil)) != string(before) {
			t.Fatalf("%s: the refused load changed the pipeline", change)
		}
		// A pipeline with the same run-time changes, made in the same
		// order (what the engine does on recovery, engine/defs.go), loads
		// it and snapshots the same bytes; other changes are refused.
		same := apiPipeline(t, base)
		other := apiPipeline(t, base)
		if change == "add" {
			if _, err := same.AddPattern(added[0]); err != nil {
				t.Fatal(err)
			}
			if _, err := other.AddPattern(added[1]); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := same.RemovePattern(1); err != nil {
				t.Fatal(err)
			}
			if err := other.RemovePattern(0); err != nil {
				t.Fatal(err)
			}
		}
		if err := same.LoadState(snap); err != nil {
			t.Fatalf("%s: a pipeline with the same changes: %v", change, err)
		}
		if string(same.AppendState(nil)) != string(snap) {
			t.Fatalf("%s: the restored pipeline snapshots differently", change)
		}
		if err := other.LoadState(snap); !errors.Is(err, ErrRuntimePatternState) {
			t.Fatalf("%s: a pipeline with other changes: %v", change, err)
		}
		if err := p.LoadState(snap); err != nil {
			t.Fatalf("%s: the pipeline reloading its own snapshot: %v", change, err)
		}
	}
}

// Patterns added at run time allocate nothing per event once their symbols
// have state.
func TestAddedPatternsDoNotAllocate(t *testing.T) {
	p := apiPipeline(t, apiBaseSpecs(t))
	for _, s := range apiAddedSpecs(t) {
		if _, err := p.AddPattern(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.RemovePattern(1); err != nil {
		t.Fatal(err)
	}
	evs := realTradeEvents(t)
	out := make([]Output, 0, 4096)
	out = p.OnWatermark(0, 0, runEvents(p, evs)[:0])
	i := 0
	last := evs[len(evs)-1].TsNs
	allocs := testing.AllocsPerRun(2000, func() {
		ev := evs[len(evs)-1-i%500]
		ev.TsNs = last + int64(i)*1e6
		i++
		out, _ = p.OnEvent(&ev, 0, out[:0])
		if i%64 == 0 {
			out = p.OnWatermark(ev.TsNs, ev.Seq, out[:0])
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per event", allocs)
	}
}

// A sequence over bars added to a pipeline without configured sequences
// sees the bars of symbols that had no trade yet, as a pipeline configured
// with it does.
func TestAddedSequenceSeesBars(t *testing.T) {
	spec := mustParsePatterns(t, `[{"id":"bars","type":"sequence","within":"1m","steps":[{"kind":"bar","where":["price < open"]},{"kind":"bar","where":["price > open"]}]}]`)[0]
	var evs []codec.Event
	for i := range 40 {
		o := 100 + float64(i%3)
		evs = append(evs, codec.Event{Kind: codec.KindBar, Symbol: codec.Symbol(1 + i%3), Seq: uint64(i + 1), TsNs: int64(i) * 1e9,
			Open: o, High: o + 2, Low: o - 2, Price: o + float64(i%2*2-1), Volume: 10})
	}
	p := apiPipeline(t, apiBaseSpecs(t)[1:2])
	if _, err := p.AddPattern(spec); err != nil {
		t.Fatal(err)
	}
	got := patsOf(runEvents(p, evs), 1)
	want := patsOf(runEvents(apiPipeline(t, []PatternSpec{spec}), evs), 0)
	if len(want) == 0 {
		t.Fatal("no match in the reference")
	}
	sameMatches(t, "bars", got, want)
}
