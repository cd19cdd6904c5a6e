package ops

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

// wm is a watermark marker for seqFeed: the watermark moves to ms.
func wm(ms int64) codec.Event {
	return codec.Event{Kind: codec.KindWatermark, TsNs: ms * int64(time.Millisecond)}
}

// wmEnd is the end-of-input watermark (+∞).
var wmEnd = codec.Event{Kind: codec.KindWatermark, TsNs: math.MaxInt64}

func qt(sym codec.Symbol, ms int64, bid, ask float64) codec.Event {
	return codec.Event{Kind: codec.KindQuote, Symbol: sym, TsNs: ms * int64(time.Millisecond), Bid: bid, Ask: ask,
		Flags: codec.FlagHasBid | codec.FlagHasAsk}
}

// seqFeed numbers evs, runs them (watermark markers through OnWatermark)
// and returns the outputs.
func seqFeed(p *Pipeline, evs []codec.Event) []Output {
	var out []Output
	for i := range evs {
		evs[i].Seq = uint64(i + 1)
		if evs[i].Kind == codec.KindWatermark {
			out = p.OnWatermark(evs[i].TsNs, evs[i].Seq, out)
			continue
		}
		out, _ = p.OnEvent(&evs[i], 0, out)
	}
	return out
}

// seqMatches lists the matches as "op:sym@ms".
func seqMatches(outs []Output) []string {
	var s []string
	for _, o := range outs {
		if o.Kind == OutPattern {
			s = append(s, fmt.Sprintf("%d:%d@%d", o.Op, o.Symbol, o.TsNs/int64(time.Millisecond)))
		}
	}
	return s
}

func seqCheck(t *testing.T, name, js string, evs []codec.Event, want ...string) *Pipeline {
	t.Helper()
	p := patPipeline(t, mustParsePatterns(t, js), PatternOptions{})
	if got := seqMatches(seqFeed(p, evs)); !slices.Equal(got, want) {
		t.Errorf("%s: matches %v, want %v", name, got, want)
	}
	return p
}

const seqDipUp = `[{"id":"dip_up","type":"sequence","within":"5s","steps":[
	{"name":"dip","where":["price < 100"]},{"name":"up","where":["price > 101"]}]}]`

func TestSeqFollowedByFiresAndNot(t *testing.T) {
	seqCheck(t, "fires", seqDipUp, []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 100.5, 1), tr(1, 3000, 102, 1)}, "0:1@3000")
	seqCheck(t, "at within", seqDipUp, []codec.Event{tr(1, 0, 99, 1), tr(1, 5000, 102, 1)}, "0:1@5000")
	seqCheck(t, "just outside within", seqDipUp, []codec.Event{tr(1, 0, 99, 1), tr(1, 5001, 102, 1)})
	seqCheck(t, "wrong symbol", seqDipUp, []codec.Event{tr(1, 0, 99, 1), tr(2, 1000, 102, 1)})
	seqCheck(t, "failed step condition", seqDipUp, []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 101, 1)})
	seqCheck(t, "B before A", seqDipUp, []codec.Event{tr(1, 0, 102, 1), tr(1, 1000, 99, 1)})
	seqCheck(t, "late event skipped", seqDipUp, []codec.Event{tr(1, 1000, 99, 1), tr(1, 500, 102, 1)})
	restricted := strings.Replace(seqDipUp, `"within"`, `"symbols":["AAA"],"within"`, 1)
	seqCheck(t, "restricted, its symbol", restricted, []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 102, 1)}, "0:1@1000")
	seqCheck(t, "restricted, another symbol", restricted, []codec.Event{tr(2, 0, 99, 1), tr(2, 1000, 102, 1)})
	strict := strings.Replace(seqDipUp, `"within"`, `"contiguity":"strict","within"`, 1)
	seqCheck(t, "strict, next event", strict, []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 102, 1)}, "0:1@1000")
	p := seqCheck(t, "strict, broken", strict, []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 100.5, 1), tr(1, 2000, 102, 1)})
	if st := p.SequenceStats(); st.Broken != 1 {
		t.Errorf("strict broken: stats %+v", st)
	}
	// Quotes are invisible to a trade-only pattern, even a strict one.
	seqCheck(t, "strict, quote between", strict, []codec.Event{tr(1, 0, 99, 1), qt(1, 500, 1, 2), tr(1, 1000, 102, 1)}, "0:1@1000")
	// Skip strategies: A1 A2 B.
	evs := []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 98, 1), tr(1, 2000, 102, 1), tr(1, 2500, 103, 1)}
	p = seqCheck(t, "skip_past_last_event", seqDipUp, slices.Clone(evs), "0:1@2000")
	if st := p.SequenceStats(); st.Skipped != 1 {
		t.Errorf("skip: stats %+v, want 1 skipped", st)
	}
	noSkip := strings.Replace(seqDipUp, `"within"`, `"skip":"no_skip","within"`, 1)
	seqCheck(t, "no_skip", noSkip, slices.Clone(evs), "0:1@2000", "0:1@2000")
	// The match's values: details, key, confidence.
	p = patPipeline(t, mustParsePatterns(t, seqDipUp), PatternOptions{})
	out := seqFeed(p, []codec.Event{tr(1, 1000, 99.5, 1), tr(1, 3500, 102.25, 7)})
	o := out[0]
	if o.NValues != 4 || SeqDetailTime(o.Values[0]) != 1e9 || o.Values[1] != 99.5 || SeqDetailTime(o.Values[2]) != 3.5e9 ||
		o.Values[3] != 102.25 || o.Value != 0.75 || o.Seq != 2 || o.Key != OutputKey(OutPattern, 0, 1, 1, 0) {
		t.Fatalf("match %+v", o)
	}
	if got := mustParsePatterns(t, seqDipUp)[0].DetailNames(); !slices.Equal(got, []string{"dip_ts", "dip_price", "up_ts", "up_price"}) {
		t.Fatalf("detail names %v", got)
	}
}

func TestSeqConditionsOnIndicatorsQuotesAndBars(t *testing.T) {
	// sma_3 after 10, 11, 12 is 11: price 12 > sma_3, then a trade below it.
	js := `[{"id":"x","type":"sequence","within":"1m","steps":[{"where":["price > sma_3","sma_3 >= 11"]},{"where":["price < sma_3"]}]}]`
	seqCheck(t, "indicators", js, []codec.Event{tr(1, 0, 10, 1), tr(1, 1, 11, 1), tr(1, 2, 12, 1), tr(1, 3, 11, 1)}, "0:1@3") // sma_3 11.33 with this trade
	seqCheck(t, "warm-up is false", js, []codec.Event{tr(1, 0, 12, 1), tr(1, 1, 10, 1)})
	js = `[{"id":"q","type":"sequence","within":"1m","steps":[{"kind":"quote","where":["spread > 1"]},{"kind":"trade","where":["price >= ask"]}]}]`
	seqCheck(t, "quote then trade at the ask", js, []codec.Event{qt(1, 0, 10, 10.5), qt(1, 1, 10, 12), tr(1, 2, 11, 1), tr(1, 3, 12, 1)}, "0:1@3")
	js = `[{"id":"b","type":"sequence","within":"1m","steps":[{"kind":"bar","where":["high > 110"]},{"kind":"any","where":["price < low"]}]}]`
	bar := codec.Event{Kind: codec.KindBar, Symbol: 1, TsNs: 0, Open: 100, High: 111, Low: 99, Price: 105, Volume: 10}
	seqCheck(t, "bar", js, []codec.Event{bar, tr(1, 1, 98, 1)}) // low is a bar field: NaN on a trade
	bar2 := bar
	bar2.TsNs, bar2.Price, bar2.Low, bar2.High = 1e6, 90, 95, 100
	bar2.Price = 94
	seqCheck(t, "bar then bar", js, []codec.Event{bar, bar2}, "0:1@1")
}

const seqNoRecovery = `[{"id":"norec","type":"sequence","within":"5s","skip":"no_skip","steps":[
	{"name":"drop","where":["price < 100"]},{"name":"recover","absent":true,"where":["price > 105"]}]}]`

func TestSeqAbsenceFiresOnce(t *testing.T) {
	p := seqCheck(t, "fires once the watermark passes", seqNoRecovery,
		[]codec.Event{tr(1, 0, 99, 1), wm(4000), wm(5000), tr(1, 5000, 101, 1), wm(5000), wm(5001), wm(9000), wmEnd}, "0:1@5000")
	if st := p.SequenceStats(); st.Cancelled != 0 {
		t.Fatalf("stats %+v", st)
	}
	p = seqCheck(t, "not when B comes in time", seqNoRecovery,
		[]codec.Event{tr(1, 0, 99, 1), tr(1, 5000, 106, 1), wm(10000), wm(20000)})
	if st := p.SequenceStats(); st.Cancelled != 1 {
		t.Fatalf("stats %+v", st)
	}
	seqCheck(t, "B too late: fired by the event", seqNoRecovery,
		[]codec.Event{tr(1, 0, 99, 1), tr(1, 5001, 106, 1), wm(10000)}, "0:1@5000")
	seqCheck(t, "B of another symbol", seqNoRecovery,
		[]codec.Event{tr(1, 0, 99, 1), tr(2, 1000, 106, 1), wm(6000)}, "0:1@5000")
	seqCheck(t, "each A its own", seqNoRecovery,
		[]codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 98, 1), wm(5500), wm(6500), wm(7000)}, "0:1@5000", "0:1@6000")
	seqCheck(t, "end of input", seqNoRecovery, []codec.Event{tr(1, 0, 99, 1), tr(2, 10, 99, 1), wmEnd}, "0:1@5000", "0:2@5010")
	strict := strings.Replace(seqNoRecovery, `"within"`, `"contiguity":"strict","within"`, 1)
	seqCheck(t, "strict: confirmed by the next event", strict,
		[]codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 101, 1), tr(1, 2000, 106, 1), wm(6000)}, "0:1@5000")
	seqCheck(t, "strict: cancelled by the next event", strict,
		[]codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 106, 1), wm(6000)})
	// Matches of one watermark come per symbol in event-time order.
	two := `[{"id":"long","type":"sequence","within":"9s","steps":[{"where":["price < 100"]},{"absent":true,"where":["price > 105"]}]},
		{"id":"short","type":"sequence","within":"2s","steps":[{"where":["price < 100"]},{"absent":true,"where":["price > 105"]}]}]`
	seqCheck(t, "event-time order", two, []codec.Event{tr(1, 0, 99, 1), wm(20000)}, "1:1@2000", "0:1@9000")
	// The match's details: the drop and the deadline.
	p = patPipeline(t, mustParsePatterns(t, seqNoRecovery), PatternOptions{})
	out := seqFeed(p, []codec.Event{tr(1, 1000, 99.5, 1), wm(7000)})
	if o := out[0]; o.NValues != 3 || SeqDetailTime(o.Values[0]) != 1e9 || o.Values[1] != 99.5 || SeqDetailTime(o.Values[2]) != 6e9 ||
		o.Value != 1 || o.Seq != 2 || o.TsNs != 6e9 {
		t.Fatalf("absence %+v", o)
	}
}

func TestSeqPartialMatchBound(t *testing.T) {
	js := `[{"id":"x","type":"sequence","within":"1m","skip":"no_skip","max_partial":3,"steps":[{"where":["price < 100"]},{"where":["price > 101"]}]}]`
	var evs []codec.Event
	for i := range 5 {
		evs = append(evs, tr(1, int64(i), 99, 1))
	}
	evs = append(evs, tr(1, 10, 102, 1))
	p := patPipeline(t, mustParsePatterns(t, js), PatternOptions{})
	out := seqFeed(p, evs)
	var starts []int64
	for _, o := range out {
		starts = append(starts, SeqDetailTime(o.Values[0])/1e6)
	}
	if !slices.Equal(starts, []int64{2, 3, 4}) {
		t.Fatalf("matches start at %v ms, want the 3 newest", starts)
	}
	if st := p.SequenceStats(); st.Dropped != 2 {
		t.Fatalf("stats %+v, want 2 dropped", st)
	}
	if n := len(p.seq.slots[0].runs[0].parts); n != 0 {
		t.Fatalf("%d partial matches left", n)
	}
	// Expiry with event time.
	p = patPipeline(t, mustParsePatterns(t, js), PatternOptions{})
	seqFeed(p, []codec.Event{tr(1, 0, 99, 1), tr(1, 1, 99, 1), tr(1, 60002, 100, 1)})
	if st := p.SequenceStats(); st.Expired != 2 || len(p.seq.slots[0].runs[0].parts) != 0 {
		t.Fatalf("stats %+v: want both expired", st)
	}
}

// Sequence patterns placed before built-in ones keep every Op and key.
func TestSeqWithBuiltinPatterns(t *testing.T) {
	js := `[{"id":"dip_up","type":"sequence","within":"5s","steps":[{"where":["price < 100"]},{"where":["price > 101"]}]},
		{"id":"up","type":"price_breakout","threshold":0.01,"timeframe":"5s"}]`
	p := patPipeline(t, mustParsePatterns(t, js), PatternOptions{})
	out := seqFeed(p, []codec.Event{tr(1, 0, 99, 1), tr(1, 1000, 102, 1)})
	if got := seqMatches(out); !slices.Equal(got, []string{"0:1@1000", "1:1@1000"}) {
		t.Fatalf("matches %v", got)
	}
	if out[1].Key != OutputKey(OutPattern, 1, 1, 2, 0) {
		t.Fatalf("breakout key %x", out[1].Key)
	}
}

func seqStateSpecs(t testing.TB) []PatternSpec {
	return mustParsePatterns(t, `[
	{"id":"dip_rsi","type":"sequence","within":"2s","steps":[{"where":["rsi_14 < 40"]},{"where":["price > vwap","sma_5 > sma_20"]}]},
	{"id":"brk","type":"price_breakout","threshold":0.0005,"timeframe":"10s"},
	{"id":"strict3","type":"sequence","within":"1s","contiguity":"strict","skip":"no_skip","max_partial":4,
	 "steps":[{"where":["price < sma_5"]},{"where":["price < sma_5"]},{"where":["price > sma_5"]}]},
	{"id":"quote","type":"sequence","within":"500ms","symbols":["BBB","CCC"],"steps":[{"kind":"quote","where":["spread >= 1"]},{"where":["price >= ask"]}]},
	{"id":"absent","type":"sequence","within":"3s","skip":"no_skip","max_partial":8,
	 "steps":[{"where":["price < sma_20"]},{"absent":true,"where":["price > sma_20"]}]}]`)
}

// A pipeline restored from a snapshot taken mid-stream continues exactly as
// the uninterrupted one.
func TestSeqStateRestoreContinuesIdentically(t *testing.T) {
	specs := seqStateSpecs(t)
	evs := realTradeEvents(t)
	for i := range evs {
		if i%97 == 5 {
			evs[i].TsNs -= int64(time.Second) // late
		}
	}
	mk := func() *Pipeline {
		p, err := NewPipeline(PipelineConfig{Patterns: specs, SymbolNames: patNames{}, MaxSymbolID: 64, MaxSlots: 8})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	full := mk()
	whole := runEvents(full, slices.Clone(evs))
	whole = full.OnWatermark(math.MaxInt64, 0, whole) // the end of the input: pending absences fire
	byOp := map[uint16]int{}
	for _, o := range whole {
		byOp[o.Op]++
	}
	for op := range uint16(5) {
		if byOp[op] == 0 {
			t.Fatalf("pattern %d never matched: %v", op, byOp)
		}
	}
	t.Logf("matches by pattern %v, stats %+v", byOp, full.SequenceStats())
	for _, cut := range []int{0, 1, 501, len(evs) / 2, len(evs) - 3} {
		orig := mk()
		first := runEvents(orig, evs[:cut])
		snap := orig.AppendState(nil)
		restored := mk()
		runEvents(restored, evs[len(evs)-40:])
		if err := restored.LoadState(snap); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if string(restored.AppendState(nil)) != string(snap) {
			t.Fatalf("cut %d: snapshot of the restored pipeline differs", cut)
		}
		rest := runEvents(restored, evs[cut:])
		rest = restored.OnWatermark(math.MaxInt64, 0, rest)
		sameOutputs(t, append(first, rest...), whole)
		if restored.SequenceStats() != full.SequenceStats() {
			t.Fatalf("cut %d: stats %+v, want %+v", cut, restored.SequenceStats(), full.SequenceStats())
		}
	}
	// Other sequence patterns refuse the snapshot; a flipped byte too.
	p := mk()
	runEvents(p, evs[:300])
	snap := p.AppendState(nil)
	other, err := NewPipeline(PipelineConfig{Patterns: specs[:3], SymbolNames: patNames{}, MaxSymbolID: 64, MaxSlots: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.LoadState(snap); err == nil {
		t.Fatal("a snapshot of other patterns loaded")
	}
	if err := p.seq.LoadState(flip(p.seq.AppendState(nil), 30)); !errors.Is(err, ErrSequenceState) {
		t.Fatalf("flipped byte: %v", err)
	}
}

func TestParseSequenceErrors(t *testing.T) {
	for _, tc := range []struct{ js, want string }{
		{`[{"id":"a","type":"sequence","steps":[{},{}]}]`, `"a" (#1): within: missing`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{}]}]`, `steps: 1 steps, want 2..7`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"absent":true},{}]}]`, `steps[0].absent: only the last`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"where":["price <"]},{}]}]`, `steps[0].where: "price <": want OPERAND OP OPERAND`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"where":["price ~ 3"]},{}]}]`, `"~" is not`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"where":["colour > 3"]},{}]}]`, `"colour": not a number`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"where":["sma_0 > 3"]},{}]}]`, `"sma_0": not a number`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"where":["1 > 3"]},{}]}]`, `compares two constants`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"kind":"news"},{}]}]`, `steps[0].kind: "news"`},
		{`[{"id":"a","type":"sequence","within":"1s","contiguity":"loose","steps":[{},{}]}]`, `contiguity: "loose"`},
		{`[{"id":"a","type":"sequence","within":"1s","skip":"skip_to_next","steps":[{},{}]}]`, `skip: "skip_to_next"`},
		{`[{"id":"a","type":"sequence","within":"1s","max_partial":0,"steps":[{},{}]}]`, `max_partial: 0`},
		{`[{"id":"a","type":"sequence","within":"1s","threshold":1,"steps":[{},{}]}]`, `unknown field "threshold"`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{"name":"x"},{"name":"x"}]}]`, `steps[1].name: "x" used twice`},
		{`[{"id":"a","type":"sequence","within":"1s","steps":[{},{}]},{"id":"a","type":"volume_spike","multiplier":2,"baseline":"1m"}]`, `"a" (#2): id: already used`},
	} {
		_, err := ParsePatterns([]byte(tc.js))
		if err == nil || !errors.Is(err, ErrPatternSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.js, err, tc.want)
		}
	}
	// The Go form is checked as the file is.
	bad := PatternSpec{ID: "g", Type: PatSequence, Sequence: SequenceSpec{WithinNs: 1, Steps: []SeqStep{{}}}}
	if _, err := NewPipeline(PipelineConfig{Patterns: []PatternSpec{bad}, MaxSymbolID: 8}); !errors.Is(err, ErrPatternSpec) {
		t.Fatalf("one step: %v", err)
	}
}

// ExamplePatternSpec builds a sequence pattern in Go: a dip under the
// session VWAP followed within 30 s by a trade back above it.
func ExamplePatternSpec() {
	lt, gt := SeqCond{Left: SeqOperand{Field: SeqPrice}, Op: SeqLT, Right: SeqOperand{Field: SeqIndicator, Ind: IndicatorSpec{Kind: IndVWAP}}}, SeqCond{}
	gt = lt
	gt.Op = SeqGT
	spec := PatternSpec{ID: "vwap_reclaim", Type: PatSequence, Sequence: SequenceSpec{
		WithinNs: int64(30 * time.Second),
		Steps:    []SeqStep{{Name: "under", Where: []SeqCond{lt}}, {Name: "over", Where: []SeqCond{gt}}},
	}}
	p, err := NewPipeline(PipelineConfig{Patterns: []PatternSpec{spec}, MaxSymbolID: 8})
	if err != nil {
		panic(err)
	}
	var out []Output
	for i, px := range []float64{100, 98, 101} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: 1, Seq: uint64(i + 1), TsNs: int64(i) * 1e9, Price: px, Volume: 1}
		out, _ = p.OnEvent(&ev, 0, out)
	}
	o := out[0]
	fmt.Println(spec.DetailNames(), lt, "then", gt)
	fmt.Println(SeqDetailTime(o.Values[0]), o.Values[1], SeqDetailTime(o.Values[2]), o.Values[3], o.Value)
	// Output:
	// [under_ts under_price over_ts over_price] price < vwap then price > vwap
	// 1000000000 98 2000000000 101 0.9833333333333333
}

// Once partial matches have grown to their working size, the detector
// allocates nothing per event.
func TestSeqOnEventDoesNotAllocate(t *testing.T) {
	p := patPipeline(t, seqStateSpecs(t), PatternOptions{})
	evs := realTradeEvents(t)
	out := make([]Output, 0, 4096)
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out[:0])
	}
	i := 0
	last := evs[len(evs)-1].TsNs
	allocs := testing.AllocsPerRun(2000, func() {
		ev := evs[len(evs)-1-i%500]
		ev.TsNs = last + int64(i)*int64(time.Millisecond)
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

// seqBenchSpecs is the benchmark's 10 sequence patterns: followed-by with
// indicator and field conditions, relaxed and strict, both skip strategies,
// three steps, and absences.
func seqBenchSpecs(t testing.TB) []PatternSpec {
	return mustParsePatterns(t, `[
	{"id":"dip","type":"sequence","within":"2s","steps":[{"where":["price < vwap","rsi_14 < 45"]},{"where":["price > vwap"]}]},
	{"id":"cross","type":"sequence","within":"5s","skip":"no_skip","max_partial":16,"steps":[{"where":["sma_5 < sma_20"]},{"where":["sma_5 > sma_20"]}]},
	{"id":"strict_up","type":"sequence","within":"1s","contiguity":"strict","steps":[{"where":["price > sma_5"]},{"where":["price > sma_5"]},{"where":["price > sma_5"]}]},
	{"id":"vol","type":"sequence","within":"3s","steps":[{"where":["volume >= 500"]},{"where":["volume < 20","price > sma_20"]}]},
	{"id":"rsi","type":"sequence","within":"10s","steps":[{"where":["rsi_14 > 60"]},{"where":["rsi_14 < 40"]}]},
	{"id":"ema","type":"sequence","within":"4s","skip":"no_skip","max_partial":8,"steps":[{"where":["price < ema_12"]},{"where":["price > ema_12"]},{"where":["price < ema_12"]}]},
	{"id":"stall","type":"sequence","within":"1s","max_partial":8,"steps":[{"where":["price > sma_5"]},{"absent":true,"where":["price < sma_5"]}]},
	{"id":"quiet","type":"sequence","within":"500ms","max_partial":8,"steps":[{"where":["volume > 1500"]},{"absent":true,"where":["volume > 1500"]}]},
	{"id":"drop","type":"sequence","within":"2s","skip":"no_skip","max_partial":8,"steps":[{"where":["price < sma_20"]},{"absent":true,"where":["price > vwap"]}]},
	{"id":"hi","type":"sequence","within":"3s","steps":[{"where":["price > 200"]},{"where":["price < 150"]}]}]`)
}

// BenchmarkSequencePatterns: events/s of 10 sequence patterns over 1,000
// symbols through Pipeline.OnEvent, with a watermark every 256 events (as
// replay flushes), against Baseline: the same pipeline without patterns
// (slot lookup only). The indexed run must produce matches and allocate
// nothing per event.
func BenchmarkSequencePatterns(b *testing.B) {
	evs := patBenchTrades(false)
	for _, name := range []string{"Sequences10", "Baseline"} {
		b.Run(name, func(b *testing.B) {
			var specs []PatternSpec
			if name != "Baseline" {
				specs = seqBenchSpecs(b)
			}
			p, err := NewPipeline(PipelineConfig{Patterns: specs, SymbolNames: patNames{}, MaxSymbolID: patBenchSymbols + 1})
			if err != nil {
				b.Fatal(err)
			}
			out := make([]Output, 0, 1024)
			var ts int64
			step := func(i int) int {
				ev := evs[i&(len(evs)-1)]
				ts += patBenchStepNs
				ev.TsNs = ts
				ev.Seq = uint64(i + 1)
				out, _ = p.OnEvent(&ev, 0, out[:0])
				n := len(out)
				if i%256 == 255 {
					out = p.OnWatermark(ts, ev.Seq, out[:0])
					n += len(out)
				}
				return n
			}
			for i := range 4 * len(evs) { // warm-up: partial matches grown to their working size
				step(i)
			}
			matches := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				matches += step(i)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(matches)/float64(b.N), "matches/event")
			if specs != nil && matches == 0 && b.N > 1000 {
				b.Fatal("no matches: the benchmark measured nothing")
			}
		})
	}
}

// A corrupted sequence snapshot (with a valid checksum) is refused or
// loaded, never a panic; a refused one leaves the detector unchanged.
func TestSeqStateCorruptionNeverPanics(t *testing.T) {
	specs := seqStateSpecs(t)
	p := patPipeline(t, specs, PatternOptions{})
	runEvents(p, realTradeEvents(t)[:3000])
	snap := p.seq.AppendState(nil)
	before := string(snap)
	for i := 4; i < len(snap)-4; i += 1 + i/64 {
		for _, x := range []byte{1, 0x80, 0xff} {
			b := slices.Clone(snap)
			b[i] ^= x
			b = withCRC(b)
			q := patPipeline(t, specs, PatternOptions{})
			if err := q.seq.LoadState(snap); err != nil {
				t.Fatal(err)
			}
			if err := q.seq.LoadState(b); err != nil && string(q.seq.AppendState(nil)) != before {
				t.Fatalf("byte %d ^ %x: a refused snapshot changed the detector", i, x)
			}
		}
		if i > 4000 {
			break
		}
	}
}

// Patterns lists every pattern of the configuration, sequences included,
// in Op order.
func TestPipelinePatternsListsSequences(t *testing.T) {
	specs, err := ParsePatterns([]byte(`[{"id":"s","type":"sequence","within":"1s","steps":[{"name":"a"},{"name":"b"}]},
		{"id":"b","type":"price_breakout","threshold":0.01,"timeframe":"1m"}]`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(PipelineConfig{Patterns: specs, MaxSymbolID: 16})
	if err != nil {
		t.Fatal(err)
	}
	got := p.Patterns()
	if len(got) != 2 || got[0].ID != "s" || got[1].ID != "b" {
		t.Fatalf("Patterns() = %+v", got)
	}
}
