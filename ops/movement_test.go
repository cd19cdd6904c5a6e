package ops

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"qstream/codec"
)

func TestParseMovements(t *testing.T) {
	got, err := ParseMovements("5m:1%, 30s:0.5%,1h:2%,250ms:0.001")
	if err != nil {
		t.Fatal(err)
	}
	want := []MovementSpec{{5 * 60e9, 0.01}, {30e9, 0.005}, {3600e9, 0.02}, {250e6, 0.001}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i, s := range []string{"5m:1%", "30s:0.5%", "1h:2%", "250ms:0.1%"} {
		if got[i].String() != string(got[i].AppendTo([]byte{})) {
			t.Errorf("String and AppendTo differ")
		}
		if got[i].String() != s {
			t.Errorf("spec %d prints %q, want %q", i, got[i].String(), s)
		}
		if back, err := ParseMovement(got[i].String()); err != nil || back != got[i] {
			t.Errorf("%s does not round-trip: %+v %v", s, back, err)
		}
	}
	for _, c := range []struct {
		s    MovementSpec
		want string
	}{{MovementSpec{1, 0.07}, "1ns:7%"}, {MovementSpec{1500e6, 0.007}, "1500ms:0.7%"}, {MovementSpec{2 * 86400e9, 1}, "2d:100%"}} {
		if c.s.String() != c.want || c.s.String() != FormatWindowDuration(c.s.Horizon)+c.want[len(FormatWindowDuration(c.s.Horizon)):] {
			t.Errorf("%+v prints %q, want %q", c.s, c.s.String(), c.want)
		}
	}
	for _, bad := range []string{"", "5m", "5:1%", "5m:", "5m:x%", "5m:0%", "5m:-1%", "-5m:1%", "0s:1%", "5m:NaN", "5m:1%,5m:1%", "400d:1%"} {
		if _, err := ParseMovements(bad); !errors.Is(err, ErrMovementSpec) {
			t.Errorf("%q: err %v, want ErrMovementSpec", bad, err)
		}
	}
}

// movOracle recomputes the movement events of evs from scratch: for each
// in-order trade of a symbol it scans every earlier remembered trade of the
// symbol for the reference, and applies the documented hysteresis.
func movOracle(specs []MovementSpec, evs []codec.Event) []Output {
	type hist struct {
		ts    []int64
		price []float64
		dir   []int8
	}
	h := map[codec.Symbol]*hist{}
	var out []Output
	for i := range evs {
		ev := &evs[i]
		if ev.Kind != codec.KindTrade || !(ev.Price > 0) {
			continue
		}
		s := h[ev.Symbol]
		if s == nil {
			s = &hist{dir: make([]int8, len(specs))}
			h[ev.Symbol] = s
		}
		if n := len(s.ts); n > 0 && ev.TsNs < s.ts[n-1] {
			continue // late
		}
		for k, sp := range specs {
			ref := -1
			for j := range s.ts { // the last (arrival) of those at or before t-H
				if s.ts[j] <= ev.TsNs-sp.Horizon {
					ref = j
				}
			}
			if ref < 0 {
				continue
			}
			m := (ev.Price - s.price[ref]) / s.price[ref]
			if s.dir[k] == 1 && m < sp.Threshold/2 || s.dir[k] == -1 && m > -sp.Threshold/2 {
				s.dir[k] = 0
			}
			if s.dir[k] == 0 && math.Abs(m) >= sp.Threshold {
				s.dir[k] = 1
				if m < 0 {
					s.dir[k] = -1
				}
				out = append(out, Output{Kind: OutMovement, Op: uint16(k), Symbol: ev.Symbol, Seq: ev.Seq, TsNs: ev.TsNs,
					Price: ev.Price, Value: m, StartNs: s.ts[ref], Count: sp.Horizon, NValues: 3,
					Values: [MaxValues]float64{s.price[ref], float64(s.ts[ref]), sp.Threshold}})
			}
		}
		s.ts = append(s.ts, ev.TsNs)
		s.price = append(s.price, ev.Price)
	}
	return out
}

// movOnly keeps the movement outputs, without keys (the oracle has none).
func movOnly(outs []Output) []Output {
	var m []Output
	for _, o := range outs {
		if o.Kind == OutMovement {
			o.Key, o.EndNs, o.IngestNs = 0, 0, 0
			m = append(m, o)
		}
	}
	return m
}

func movPipeline(t testing.TB, specs string, opts MovementOptions) *Pipeline {
	t.Helper()
	ms, err := ParseMovements(specs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(PipelineConfig{Movements: ms, MovementOptions: opts, MaxSymbolID: 64, MaxSlots: 8})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const movTestSpecs = "1s:0.02%,30s:0.05%,5m:0.1%,20m:0.3%"

// The operator equals the brute-force oracle on the real trades (five
// symbols, quotes between), with some trades moved out of order.
func TestMovementOracleRealTrades(t *testing.T) {
	evs := realTradeEvents(t)
	// Late trades: swap a few neighbours of the same symbol far apart in time.
	for _, i := range []int{100, 2345, 7000} {
		for j := i + 1; j < len(evs); j++ {
			if evs[j].Kind == codec.KindTrade && evs[j].Symbol == evs[i].Symbol && evs[j].TsNs > evs[i].TsNs {
				evs[i].TsNs, evs[j].TsNs = evs[j].TsNs, evs[i].TsNs
				break
			}
		}
	}
	p := movPipeline(t, movTestSpecs, MovementOptions{})
	var got []Output
	for i := range evs {
		got, _ = p.OnEvent(&evs[i], 0, got)
	}
	specs, _ := ParseMovements(movTestSpecs)
	want := movOracle(specs, evs)
	sameOutputs(t, movOnly(got), want)
	perSpec := make([]int, len(specs))
	for _, o := range want {
		perSpec[o.Op]++
	}
	for k, n := range perSpec {
		if n < 3 {
			t.Errorf("spec %s: only %d events: the test proves little", specs[k], n)
		}
	}
	st := p.MovementStats()
	if st.Late == 0 || st.Events != uint64(len(want)) || st.Thinned != 0 {
		t.Fatalf("stats %+v, want late trades, %d events, no thinning", st, len(want))
	}
	// Keys: the per-input key of the trade, unique.
	keys := map[uint64]bool{}
	for _, o := range got {
		if o.Kind != OutMovement {
			continue
		}
		if o.Key != OutputKey(OutMovement, o.Op, o.Symbol, o.Seq, 0) || keys[o.Key] {
			t.Fatalf("key of %+v", o)
		}
		keys[o.Key] = true
		if MovementRefTs(&o) != o.StartNs || o.EndNs != o.TsNs || MovementSpecOf(&o) != specs[o.Op] {
			t.Fatalf("times of %+v", o)
		}
	}
}

// Hysteresis and the threshold edge on one symbol: the reference stays the
// trade at 0 (every later trade is within (H, 2H)).
func TestMovementHysteresis(t *testing.T) {
	const h = int64(time.Minute)
	prices := []float64{
		100.99,  // 0.99 %: just below the threshold, nothing
		101.5,   // fires up
		101.2,   // still above: nothing (one event for a sustained move)
		100.8,   // below θ but above θ/2: still fired
		101.1,   // back above θ: nothing, not re-armed
		100.4,   // below θ/2: re-armed, nothing
		101,     // exactly θ: fires up again
		98.5,    // a swing to −1.5 %: re-arms and fires down on the same trade
		99.2,    // −0.8 %: still fired down
		99.6,    // −0.4 %: re-armed
		98.9999, // −1.0001 %: fires down
	}
	evs := []codec.Event{{Kind: codec.KindTrade, Symbol: 1, TsNs: 0, Price: 100, Seq: 1}}
	for i, px := range prices {
		evs = append(evs, codec.Event{Kind: codec.KindTrade, Symbol: 1, TsNs: h + int64(i)*int64(time.Second), Price: px, Seq: uint64(i + 2)})
	}
	p := movPipeline(t, "1m:1%", MovementOptions{})
	var out []Output
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out)
	}
	var got []string
	for _, o := range out {
		got = append(got, fmt.Sprintf("%d:%.4f", o.Seq, o.Value*100))
		if o.Values[0] != 100 || o.StartNs != 0 || o.Price != evs[o.Seq-1].Price {
			t.Errorf("event %+v: reference %v at %d", o, o.Values[0], o.StartNs)
		}
	}
	want := []string{"3:1.5000", "8:1.0000", "9:-1.5000", "12:-1.0001"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	sameOutputs(t, movOnly(out), movOracle([]MovementSpec{{h, 0.01}}, evs))
}

// The reference is the last arrival among trades at or before t−H, ties
// included, and a trade exactly H after another uses it.
func TestMovementReferenceEdges(t *testing.T) {
	s := int64(time.Second)
	evs := []codec.Event{
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 0, Price: 50, Seq: 1},
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 0, Price: 100, Seq: 2},     // the later of two at 0
		{Kind: codec.KindTrade, Symbol: 1, TsNs: s - 1, Price: 200, Seq: 3}, // nothing at or before −1: unchecked
		{Kind: codec.KindTrade, Symbol: 1, TsNs: s, Price: 102, Seq: 4},     // ref: the trade at 0 priced 100 → +2 %
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 2*s - 1, Price: 100, Seq: 5},
	}
	p := movPipeline(t, "1s:1%", MovementOptions{})
	var out []Output
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out)
	}
	// Seq 3 at 1s−1: no trade at or before −1 → nothing. Seq 4: +2 % vs
	// 100. Seq 5 at 2s−1: reference the trade at 1s−1 (200): −50 %.
	if len(out) != 2 || out[0].Seq != 4 || out[0].Values[0] != 100 || out[1].Seq != 5 || out[1].Values[0] != 200 || out[1].Value != -0.5 {
		t.Fatalf("outputs %+v", out)
	}
	sameOutputs(t, movOnly(out), movOracle([]MovementSpec{{s, 0.01}}, evs))
}

// With a small ring the operator thins: every reference still lies at or
// before t−H and at or after the last trade before t−H's bucket.
func TestMovementThinningBound(t *testing.T) {
	evs := realTradeEvents(t)
	p := movPipeline(t, "5m:0.1%", MovementOptions{MaxTradesPerSymbol: 16})
	var out []Output
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out)
	}
	st := p.MovementStats()
	if st.Thinned == 0 || st.Events == 0 {
		t.Fatalf("stats %+v: want thinning and events", st)
	}
	h := int64(5 * time.Minute)
	g := (h + 7) / 8
	hist := map[codec.Symbol][]int64{}
	next := 0
	for _, o := range out {
		for ; next < len(evs) && evs[next].Seq < o.Seq; next++ {
			if e := evs[next]; e.Kind == codec.KindTrade {
				hist[e.Symbol] = append(hist[e.Symbol], e.TsNs)
			}
		}
		q := o.TsNs - h
		lo := int64(math.MinInt64)
		for _, ts := range hist[o.Symbol] {
			if ts < floorDiv(q, g)*g {
				lo = max(lo, ts)
			}
		}
		if o.StartNs > q || o.StartNs < lo {
			t.Fatalf("event at %d: reference at %d outside [%d, %d]", o.TsNs, o.StartNs, lo, q)
		}
	}
	// A memory budget instead of a ring bound: rings stop growing at the
	// budget and thin; the state stays within it; references stay at or
	// before t−H; a snapshot restores the capacities (identical output).
	budget := int64(4 << 10)
	bp := movPipeline(t, "5m:0.1%,30s:0.05%", MovementOptions{MaxStateBytes: budget})
	cut := len(evs) / 3
	var bo []Output
	for i := range evs[:cut] {
		bo, _ = bp.OnEvent(&evs[i], 0, bo)
	}
	restored := movPipeline(t, "5m:0.1%,30s:0.05%", MovementOptions{MaxStateBytes: budget})
	if err := restored.LoadState(bp.AppendState(nil)); err != nil {
		t.Fatal(err)
	}
	var ro []Output
	for i := range evs[cut:] {
		bo, _ = bp.OnEvent(&evs[cut+i], 0, bo)
		ro, _ = restored.OnEvent(&evs[cut+i], 0, ro)
	}
	sameOutputs(t, ro, bo[len(bo)-len(ro):])
	bst := bp.MovementStats()
	t.Logf("budget %d: %+v", budget, bst)
	if bst.Thinned == 0 || bst.Events == 0 || int64(bst.Bytes) > budget+16*movRingInit*2*5 || restored.MovementStats() != bst {
		t.Fatalf("budget %d: stats %+v (restored %+v)", budget, bst, restored.MovementStats())
	}
	for _, o := range bo {
		if o.StartNs > o.TsNs-MovementSpecOf(&o).Horizon {
			t.Fatalf("reference at %d is after t−H for %+v", o.StartNs, o)
		}
	}
	// With the default bound the same input is exact (no thinning).
	specs, _ := ParseMovements("5m:0.1%")
	exact := movPipeline(t, "5m:0.1%", MovementOptions{})
	var ex []Output
	for i := range evs {
		ex, _ = exact.OnEvent(&evs[i], 0, ex)
	}
	sameOutputs(t, movOnly(ex), movOracle(specs, evs))
}

func movStatePipeline(t testing.TB, withMov bool) *Pipeline {
	t.Helper()
	specs, _ := ParseIndicators("sma:5,vwap")
	wins, _ := ParseWindowSpecs("tumbling:1m:ohlcv")
	cfg := PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: wins, MaxSymbolID: 64, MaxSlots: 8}
	if withMov {
		cfg.Movements, _ = ParseMovements(movTestSpecs)
	}
	p, err := NewPipeline(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A pipeline restored from a snapshot continues exactly as the original;
// a snapshot from a pipeline without movements loads with empty movement
// state; a damaged movement state is refused and changes nothing.
func TestMovementStateRestore(t *testing.T) {
	evs := realTradeEvents(t)
	for _, cut := range []int{0, 1, 777, len(evs) / 2, len(evs) - 3} {
		orig := movStatePipeline(t, true)
		runEvents(orig, evs[:cut])
		snap := orig.AppendState(nil)
		restored := movStatePipeline(t, true)
		runEvents(restored, evs[len(evs)-100:])
		if err := restored.LoadState(snap); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if string(restored.AppendState(nil)) != string(snap) {
			t.Fatalf("cut %d: the restored pipeline's snapshot differs", cut)
		}
		a, b := runEvents(restored, evs[cut:]), runEvents(orig, evs[cut:])
		if len(movOnly(b)) == 0 && cut < len(evs)/2 {
			t.Fatalf("cut %d: no movements after the cut", cut)
		}
		sameOutputs(t, a, b)
		if restored.MovementStats() != orig.MovementStats() {
			t.Fatalf("cut %d: stats %+v, want %+v", cut, restored.MovementStats(), orig.MovementStats())
		}
	}
	// An older snapshot, without movement state.
	cut := 4000
	old := movStatePipeline(t, false)
	runEvents(old, evs[:cut])
	p := movStatePipeline(t, true)
	runEvents(p, evs[:100])
	if err := p.LoadState(old.AppendState(nil)); err != nil {
		t.Fatalf("snapshot without movements: %v", err)
	}
	fresh := movPipeline(t, movTestSpecs, MovementOptions{})
	sameOutputs(t, movOnly(runEvents(p, evs[cut:])), movOnly(runEvents(fresh, evs[cut:])))
	// A movement snapshot into a pipeline without movements, and damage.
	snap := p.AppendState(nil)
	if err := movStatePipeline(t, false).LoadState(snap); !errors.Is(err, ErrPipelineState) {
		t.Fatalf("movement snapshot into a pipeline without movements: %v", err)
	}
	bad := append([]byte(nil), snap...)
	bad[len(bad)-30] ^= 0x40 // inside the movement state, the last
	withCRC(bad)
	before := p.AppendState(nil)
	if err := p.LoadState(bad); !errors.Is(err, ErrMovementState) {
		t.Fatalf("damaged movement state: %v", err)
	}
	if string(p.AppendState(nil)) != string(before) {
		t.Fatal("a refused LoadState changed the pipeline")
	}
	other := movPipeline(t, "1s:0.02%", MovementOptions{})
	if err := other.mov.LoadState(p.mov.AppendState(nil)); !errors.Is(err, ErrMovementState) {
		t.Fatalf("other specs: %v", err)
	}
}

// After warm-up, a trade costs no allocation with two horizons.
func TestMovementOnEventDoesNotAllocate(t *testing.T) {
	p := movPipeline(t, "1s:0.01%,5s:0.02%", MovementOptions{})
	evs := make([]codec.Event, 4096)
	for i := range evs {
		evs[i] = codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(1 + i%4), TsNs: int64(i) * int64(10*time.Millisecond),
			Price: 100 + 2*math.Sin(float64(i)/30), Volume: 1, Seq: uint64(i + 1)}
	}
	out := make([]Output, 0, 64)
	for i := range evs[:2048] {
		out, _ = p.OnEvent(&evs[i], 0, out[:0])
	}
	i := 2048
	allocs := testing.AllocsPerRun(1000, func() {
		out, _ = p.OnEvent(&evs[i], 0, out[:0])
		i++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per trade", allocs)
	}
	if p.MovementStats().Events == 0 {
		t.Fatal("no movement events: the measurement proves little")
	}
}

// Sequence steps on movements: "an up move followed by a down move".
func TestMovementSequenceSteps(t *testing.T) {
	pats := mustParsePatterns(t, `[{"id":"whipsaw","type":"sequence","within":"2m","steps":[
		{"name":"up","kind":"movement","where":["change_pct >= 1"]},
		{"name":"down","kind":"movement","where":["change_pct <= -1","reference_price > 0"]}]}]`)
	ms, _ := ParseMovements("1m:1%")
	p, err := NewPipeline(PipelineConfig{Patterns: pats, Movements: ms, MaxSymbolID: 8})
	if err != nil {
		t.Fatal(err)
	}
	sec := int64(time.Second)
	evs := []codec.Event{
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 0, Price: 100},
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 30 * sec, Price: 103},
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 60 * sec, Price: 102},  // +2 % vs 100: up
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 90 * sec, Price: 100},  // −2.9 % vs 103: down → match
		{Kind: codec.KindTrade, Symbol: 2, TsNs: 0, Price: 100},         // another symbol: up only
		{Kind: codec.KindTrade, Symbol: 2, TsNs: 60 * sec, Price: 105},  // up
		{Kind: codec.KindTrade, Symbol: 2, TsNs: 100 * sec, Price: 105}, // nothing
	}
	out := seqFeed(p, evs)
	var kinds []string
	for _, o := range out {
		switch o.Kind {
		case OutMovement:
			kinds = append(kinds, fmt.Sprintf("mov:%d@%d", o.Symbol, o.TsNs/sec))
		case OutPattern:
			kinds = append(kinds, fmt.Sprintf("pat:%d@%d", o.Symbol, o.TsNs/sec))
			if SeqDetailTime(o.Values[0]) != 60*sec || o.Values[1] != 102 || SeqDetailTime(o.Values[2]) != 90*sec || o.Values[3] != 100 {
				t.Errorf("match details %v", o.Values[:4])
			}
			// Started by the movement of trade 3 (spec 0): the trade's key
			// mixed with the spec, apart from a start by the trade itself.
			if want := OutputKey(OutPattern, 0, 1, OutputKey(OutPattern, 0, 1, 3, 0), 1); o.Key != want || o.Seq != 4 {
				t.Errorf("match key %x seq %d, want %x and 4", o.Key, o.Seq, want)
			}
		}
	}
	want := []string{"mov:1@60", "mov:1@90", "pat:1@90", "mov:2@60"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("outputs %v, want %v", kinds, want)
	}
	// One trade, two specs firing: two movements, each starts its own
	// partial match (no_skip), the next big trade completes both, with
	// distinct keys.
	pats2 := mustParsePatterns(t, `[{"id":"move_then_volume","type":"sequence","within":"1m","skip":"no_skip","steps":[
		{"name":"move","kind":"movement","where":["change_pct >= 1"]},{"name":"big","where":["volume > 5"]}]}]`)
	ms2, _ := ParseMovements("1m:1%,30s:1%")
	p2, err := NewPipeline(PipelineConfig{Patterns: pats2, Movements: ms2, MaxSymbolID: 8})
	if err != nil {
		t.Fatal(err)
	}
	out2 := seqFeed(p2, []codec.Event{
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 0, Price: 100, Volume: 1},
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 30 * sec, Price: 100, Volume: 1},
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 60 * sec, Price: 102, Volume: 9}, // both specs fire; its volume comes before its movements
		{Kind: codec.KindTrade, Symbol: 1, TsNs: 70 * sec, Price: 102, Volume: 9}, // completes both
	})
	var keys []uint64
	nmov := 0
	for _, o := range out2 {
		switch o.Kind {
		case OutMovement:
			nmov++
		case OutPattern:
			if o.TsNs != 70*sec || SeqDetailTime(o.Values[0]) != 60*sec {
				t.Errorf("match %+v", o)
			}
			keys = append(keys, o.Key)
		}
	}
	if nmov != 2 || len(keys) != 2 || keys[0] == keys[1] {
		t.Fatalf("%d movements, match keys %x: want 2 movements and 2 distinct keys", nmov, keys)
	}
	// A movement step without movement specs, and movement fields on a trade step, are refused.
	if _, err := NewPipeline(PipelineConfig{Patterns: pats, MaxSymbolID: 8}); !errors.Is(err, ErrPatternSpec) {
		t.Fatalf("no movements: %v", err)
	}
	if _, err := ParsePatterns([]byte(`[{"id":"x","type":"sequence","within":"1m","steps":[{"where":["change_pct > 1"]},{}]}]`)); !errors.Is(err, ErrPatternSpec) {
		t.Fatalf("change_pct on a trade step: %v", err)
	}
}

// A damaged movement snapshot (with a valid checksum) is refused or loaded,
// never a panic, and a refused one changes nothing.
func TestMovementStateCorruptionNeverPanics(t *testing.T) {
	evs := realTradeEvents(t)[:1500]
	p := movPipeline(t, "30s:0.05%,5m:0.1%", MovementOptions{})
	for i := range evs {
		p.OnEvent(&evs[i], 0, nil)
	}
	snap := p.mov.AppendState(nil)
	q := movPipeline(t, "30s:0.05%,5m:0.1%", MovementOptions{})
	if err := q.mov.LoadState(snap); err != nil {
		t.Fatal(err)
	}
	before := string(q.mov.AppendState(nil))
	refused := 0
	for i := 4; i < len(snap)-4; i += 1 + i/97 {
		for _, x := range []byte{1, 0x80, 0xff} {
			b := slices.Clone(snap)
			b[i] ^= x
			if err := q.mov.LoadState(withCRC(b)); err != nil {
				refused++
				if string(q.mov.AppendState(nil)) != before {
					t.Fatalf("byte %d ^ %x: a refused snapshot changed the operator", i, x)
				}
			} else if err := q.mov.LoadState(snap); err != nil {
				t.Fatal(err)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no damaged snapshot was refused")
	}
	if err := q.mov.LoadState(snap[:len(snap)-9]); !errors.Is(err, ErrMovementState) {
		t.Fatalf("truncated: %v", err)
	}
}
