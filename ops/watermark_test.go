package ops

import (
	"fmt"
	"math"
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
