package engine

import (
	"context"
	"testing"

	"qstream/ops"
)

// A clean Stop after the end of input checkpoints the state after it: the
// end-of-input firings are behind the output's mark, so a restart neither
// rewinds the output over them nor fires them again (issue 8, item 5).
func TestStopCheckpointsEndOfInput(t *testing.T) {
	dir := t.TempDir()
	out := &memOutput{}
	r := openRig(t, dir, 2, out, 0)
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	evs := testEvents(5000, recSyms, 5)
	publishRange(t, p, evs, 0, len(evs))
	if _, err := r.e.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Close() // end of input: every open window fires
	stop(t, r.e)
	r.w.Close()
	want := out.all()
	windows := 0
	for _, o := range want {
		if o.Kind == ops.OutWindow {
			windows++
		}
	}
	if windows == 0 {
		t.Fatal("no window results")
	}

	// A restart: nothing to replay, nothing rewound.
	r = openRig(t, dir, 2, out, 0)
	rep, err := r.e.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 0 {
		t.Errorf("recovery replayed %d events: the stop's checkpoint does not cover the end of input", rep.Events)
	}
	if got := len(out.all()); got != len(want) {
		t.Fatalf("recovery rewound the output to %d of %d outputs (the end-of-input results)", got, len(want))
	}
	// The source ends again (a finite feed restarted): nothing fires twice.
	p, _ = r.e.NewPublisher("feed")
	p.Close()
	stop(t, r.e)
	r.w.Close()
	if got := len(out.all()); got != len(want) {
		t.Fatalf("after the restarted source ended: %d outputs, want %d", got, len(want))
	}
}
