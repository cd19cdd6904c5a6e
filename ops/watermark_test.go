package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"qstream/codec"
)

func TestWatermarkTracker(t *testing.T) {
	const ooo, idle = 10, 100
	tr := NewWatermarkTracker(3, ooo, idle)
	type step struct {
		op       string // "obs", "tick", "close", "eoi"
		src      int
		ts, now  int64
		want     int64
		advanced bool
	}
	min := int64(math.MinInt64)
	for i, s := range []step{
		{"tick", 0, 0, 0, min, false},               // nothing seen
		{"obs", 0, 1000, 0, 990, true},              // one source: its max − ooo
		{"obs", 0, 995, 1, 990, false},              // disorder does not move it
		{"obs", 1, 500, 2, 990, false},              // a slower source joins: the min would be 490, but never backwards
		{"obs", 0, 1200, 3, 990, false},             // held back by source 1 (490)
		{"obs", 1, 1100, 4, 1090, true},             // source 1 catches up: min(1190, 1090)
		{"tick", 0, 0, 104, 1090, false},            // source 0 idle (seen at 3), source 1 (seen at 4) still holds
		{"tick", 0, 0, 105, 1090, false},            // both idle: the watermark stays put
		{"obs", 2, 5000, 106, 4990, true},           // a new source; 0 and 1 idle
		{"obs", 1, 1300, 107, 4990, false},          // source 1 resumes behind: holds, the watermark stays
		{"obs", 2, 6000, 108, 4990, false},          // held back by source 1 (1290) again
		{"obs", 1, 7000, 109, 5990, true},           // min(5990, 6990)
		{"close", 2, 0, 110, 6990, true},            // source 2 finished: only source 1
		{"eoi", 0, 0, 0, math.MaxInt64, true},       // end of input
		{"obs", 1, 9000, 111, math.MaxInt64, false}, // nothing moves it back
	} {
		var got int64
		var adv bool
		switch s.op {
		case "obs":
			got, adv = tr.Observe(s.src, s.ts, s.now)
		case "tick":
			got, adv = tr.Tick(s.now)
		case "close":
			got, adv = tr.CloseSource(s.src, s.now)
		case "eoi":
			got, adv = tr.EndOfInput()
		}
		if got != s.want || adv != s.advanced || got != tr.Watermark() {
			t.Fatalf("step %d %+v: got (%d, %v), want (%d, %v)", i, s, got, adv, s.want, s.advanced)
		}
	}
	if w, adv := tr.Observe(7, 1, 1); w != math.MaxInt64 || adv {
		t.Fatal("out-of-range source must be ignored")
	}
	tr2 := NewWatermarkTracker(2, 0, 0) // no idleness: a silent source holds forever
	tr2.Observe(0, 100, 0)
	tr2.Observe(1, 50, 0)
	if w, _ := tr2.Observe(0, 1000, 1<<40); w != 100 {
		t.Fatalf("idleness disabled: watermark %d, want 100 (held by source 1 at 50? no: never backwards)", w)
	}
	if !tr2.Idle(5, 0) || tr2.Idle(1, 1<<50) || tr2.SourceWatermark(1) != 50 || tr2.SourceWatermark(9) != math.MinInt64 {
		t.Fatal("Idle/SourceWatermark")
	}
}

// TestWindowIdleSourceDoesNotStall: two feeds into one shard; one goes
// silent. Without idleness its last event holds the watermark and the
// windows of the live feed never fire; with an idle timeout they fire on
// time, and when the silent feed resumes it holds the watermark again.
func TestWindowIdleSourceDoesNotStall(t *testing.T) {
	sec := int64(time.Second)
	run := func(idleNs int64) (fired []int64, late uint64) {
		tr := NewWatermarkTracker(2, 0, idleNs)
		op, err := NewWindowOperator(0, winMustSpec(t, "tumbling:1s:count"), WindowOptions{}, 2)
		if err != nil {
			t.Fatal(err)
		}
		var out []Output
		feed := func(src int, sym codec.Symbol, ts, now int64) {
			ev := codec.Event{TsNs: ts, Price: 1, Volume: 1, Symbol: sym, Source: uint16(src), Kind: codec.KindTrade}
			wm, adv := tr.Observe(src, ts, now)
			out, _ = op.OnEvent(int(sym)-1, sym, &ev, wm, out)
			if adv {
				out = op.OnWatermark(wm, 0, out)
			}
		}
		// Both sources trade in second 0; then source 1 goes silent while
		// source 0 keeps trading for 10 seconds (processing time = event time).
		feed(0, 1, 100, 100)
		feed(1, 2, 200, 200)
		for s := int64(1); s <= 10; s++ {
			feed(0, 1, s*sec, s*sec)
			if wm, adv := tr.Tick(s * sec); adv {
				out = op.OnWatermark(wm, 0, out)
			}
		}
		for _, o := range out {
			fired = append(fired, o.EndNs/sec)
		}
		// Source 1 resumes: it holds the watermark back again.
		wm0 := tr.Watermark()
		feed(1, 2, 11*sec, 11*sec)
		feed(0, 1, 12*sec, 12*sec)
		if idleNs > 0 && tr.Watermark() != 11*sec {
			t.Errorf("resumed source: watermark %d (was %d), want held at 11s", tr.Watermark(), wm0)
		}
		return fired, op.Counters().Late
	}
	if fired, _ := run(0); len(fired) != 0 {
		t.Fatalf("without idleness the silent source must hold the watermark: fired %v", fired)
	}
	fired, _ := run(2 * sec)
	want := []int64{1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if fmt.Sprint(fired) != fmt.Sprint(want) {
		t.Fatalf("with a 2 s idle timeout: windows ending at %v s, want %v", fired, want)
	}
}

// TestWatermarkTrackerEndedSourceNeverIdle: a source that ended (event time
// +∞) is not silent, it is finished: with the other sources idle the
// watermark goes to +∞, as in the engine (and Flink) when the last live
// source ends while the others are idle. Out-of-orderness does not apply to
// the end.
func TestWatermarkTrackerEndedSourceNeverIdle(t *testing.T) {
	tr := NewWatermarkTracker(2, 10, 100)
	tr.Observe(0, 1000, 0)
	tr.Observe(1, 2000, 0)
	if w, adv := tr.Observe(1, math.MaxInt64, 1); w != 990 || adv {
		t.Fatalf("source 1 ended, source 0 active: (%d, %v), want (990, false)", w, adv)
	}
	if got := tr.SourceWatermark(1); got != math.MaxInt64 {
		t.Fatalf("ended source watermark %d, want +inf", got)
	}
	// Long after: source 0 is idle, source 1 ended long ago but is not idle.
	if w, adv := tr.Tick(1000); w != math.MaxInt64 || !adv {
		t.Fatalf("source 0 idle, source 1 ended: (%d, %v), want (+inf, true)", w, adv)
	}
	if tr.Idle(1, 1<<60) {
		t.Fatal("an ended source reported idle")
	}
}

// TestWatermarkTrackerRecordThenTick: Advance, Touch and Detach record
// without re-evaluating; Tick re-evaluates; Observe is the three in one;
// Restore sets the floor after a checkpoint.
func TestWatermarkTrackerRecordThenTick(t *testing.T) {
	tr := NewWatermarkTracker(3, 0, 100)
	tr.Advance(0, 500)
	tr.Advance(1, 700)
	if tr.Watermark() != math.MinInt64 {
		t.Fatal("Advance re-evaluated")
	}
	tr.Touch(0, 50)
	tr.Touch(1, 50)
	tr.Touch(2, 50) // never sent an event: stays inactive
	if w, adv := tr.Tick(60); w != 500 || !adv {
		t.Fatalf("Tick: (%d, %v), want (500, true)", w, adv)
	}
	tr.Touch(1, 200) // source 1 flushed again; source 0 silent since 50
	if w, adv := tr.Tick(151); w != 700 || !adv {
		t.Fatalf("source 0 idle: (%d, %v), want (700, true)", w, adv)
	}
	tr.Advance(0, 900) // an event time alone is not activity: source 0 stays idle
	tr.Advance(1, 1000)
	if w, _ := tr.Tick(152); w != 1000 {
		t.Fatalf("watermark %d, want 1000 (source 0 idle)", w)
	}
	tr.Detach(1)
	if !tr.Detached(1) || tr.Detached(0) || tr.Detached(99) {
		t.Fatal("Detached")
	}
	tr.Touch(0, 300)
	tr.Advance(0, 1500)
	if w, adv := tr.Tick(301); w != 1500 || !adv {
		t.Fatalf("source 1 detached: (%d, %v), want (1500, true)", w, adv)
	}
	tr.Advance(1, 1200) // a detached source that sends holds again
	tr.Touch(1, 301)
	if tr.Detached(1) {
		t.Fatal("a source that sent after Detach is still detached")
	}
	tr.Advance(0, 3000)
	if w, _ := tr.Tick(302); w != 1500 {
		t.Fatalf("watermark %d, want 1500 (held by source 1 at 1200, never backwards)", w)
	}

	r := NewWatermarkTracker(2, 0, 0)
	r.Restore(5000)
	if w, adv := r.Observe(0, 4000, 0); w != 5000 || adv {
		t.Fatalf("after Restore(5000): (%d, %v), want (5000, false)", w, adv)
	}
	if w, adv := r.Observe(0, 6000, 0); w != 6000 || !adv {
		t.Fatalf("after Restore(5000): (%d, %v), want (6000, true)", w, adv)
	}
	// Out-of-range sources are ignored by every recording call.
	r.Advance(-1, 1<<40)
	r.Advance(2, 1<<40)
	r.Touch(2, 1)
	r.Detach(2)
	if w, _ := r.Tick(0); w != 6000 {
		t.Fatalf("an out-of-range source moved the watermark to %d", w)
	}
}

// engineRule is the rule the engine's shards ran before they used
// WatermarkTracker (engine/shard.go onWatermark/advance/finish and
// onDetach, as of issue 8), kept as the oracle that the tracker reproduces
// it: per-source watermarks (publishers apply the out-of-orderness), a
// source idle when its publisher's last flush is older than the timeout
// unless its watermark is +∞, detached sources excluded, monotone.
type engineRule struct {
	srcWm    []int64
	gone     []bool
	active   []int64 // the publishers' lastActiveNs
	wmNs     int64
	idleNs   int64
	advanced int
}

func (e *engineRule) advance(now int64) {
	wm, any := int64(math.MaxInt64), false
	for i, w := range e.srcWm {
		if w == math.MinInt64 || e.gone[i] {
			continue
		}
		if e.idleNs > 0 && w != math.MaxInt64 && now-e.active[i] > e.idleNs {
			continue
		}
		any = true
		wm = min(wm, w)
	}
	if !any || wm <= e.wmNs {
		return
	}
	e.wmNs = wm
	e.advanced++
}

// Property: driven as the engine drives it (Advance and Touch, then Tick;
// Detach; at the end +∞ for every source not detached), the tracker gives
// the engine's former rule's watermark after every step.
func TestWatermarkTrackerMatchesEngineRule(t *testing.T) {
	rnd := rand.New(rand.NewPCG(8, 8))
	for trial := 0; trial < 500; trial++ {
		n := 1 + rnd.IntN(5)
		idle := int64(0)
		if rnd.IntN(3) > 0 {
			idle = 1 + rnd.Int64N(50)
		}
		o := &engineRule{srcWm: make([]int64, n), gone: make([]bool, n), active: make([]int64, n), wmNs: math.MinInt64, idleNs: idle}
		for i := range o.srcWm {
			o.srcWm[i] = math.MinInt64
		}
		tr := NewWatermarkTracker(n, 0, idle)
		if rnd.IntN(4) == 0 { // restored from a checkpoint
			w := rnd.Int64N(300)
			o.wmNs = w
			tr.Restore(w)
		}
		var now int64
		tick := func() {
			var n0 int64
			if idle > 0 {
				n0 = now
				for i := range o.active {
					tr.Touch(i, o.active[i])
				}
			}
			o.advance(n0)
			if w, _ := tr.Tick(n0); w != o.wmNs {
				t.Fatalf("trial %d: tracker %d, engine rule %d (sources %v gone %v active %v now %d idle %d)",
					trial, w, o.wmNs, o.srcWm, o.gone, o.active, now, idle)
			}
		}
		for step := 0; step < 200; step++ {
			now += rnd.Int64N(20)
			src := rnd.IntN(n)
			switch k := rnd.IntN(10); {
			case k < 5: // a watermark from a publisher that has not detached
				if o.gone[src] {
					continue
				}
				wm := rnd.Int64N(1000)
				if rnd.IntN(30) == 0 {
					wm = math.MaxInt64 // Close
				}
				if wm > o.srcWm[src] {
					o.srcWm[src] = wm
				}
				tr.Advance(src, wm)
				tick()
			case k < 8: // a flush without a new watermark
				o.active[src] = now
			case k < 9: // a periodic idle check
				tick()
			default:
				if rnd.IntN(5) == 0 && !o.gone[src] {
					o.gone[src] = true
					tr.Detach(src)
					tick()
				}
			}
		}
		for i := range o.srcWm { // finish
			if !o.gone[i] {
				o.srcWm[i] = math.MaxInt64
			}
			if !tr.Detached(i) {
				tr.Advance(i, math.MaxInt64)
			}
		}
		tick()
	}
}
