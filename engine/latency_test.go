package engine

import "testing"

// The recorder's swap-and-merge: a read without reset neither loses nor
// doubles what was recorded, a reset clears it, and records made between
// reads all arrive.
func TestLatencyRecorderMerge(t *testing.T) {
	r := newLatencyRecorder()
	count := func(reset bool) int64 {
		m := newStageHistograms()
		r.mergeInto(&m, reset)
		return m[stageShard].TotalCount()
	}
	r.recordBatch(stageShard, 100, []int64{90, 80})
	if n := count(false); n != 2 {
		t.Fatalf("first read: %d", n)
	}
	if n := count(false); n != 2 {
		t.Fatalf("second read without reset: %d", n)
	}
	r.recordBatch(stageShard, 100, []int64{10})
	if n := count(true); n != 3 {
		t.Fatalf("read with reset: %d", n)
	}
	if n := count(false); n != 0 {
		t.Fatalf("after the reset: %d", n)
	}
	r.recordBatch(stageShard, 100, []int64{1})
	r.recordBatch(stageSink, 100, []int64{1})
	if n := count(false); n != 1 {
		t.Fatalf("after the reset and one record: %d", n)
	}
	if a := testing.AllocsPerRun(100, func() { r.recordBatch(stageShard, 100, []int64{5, 6, 7}) }); a != 0 {
		t.Fatalf("recordBatch allocates: %v", a)
	}
}
