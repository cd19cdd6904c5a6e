package engine

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"qstream/ops"
	"qstream/wal"
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

// haltedOutput is a memOutput whose sink is down while its retry policy
// holds the batch, as sinks.Guard does with an open circuit breaker: it
// waits inside HandleOutputs until the engine stops or fails
// (Engine.Stopping), then gives up with an error.
type haltedOutput struct {
	memOutput
	e     atomic.Pointer[Engine]
	calls atomic.Int64
}

func (h *haltedOutput) HandleOutputs([]ops.Output) error {
	h.calls.Add(1)
	for !h.e.Load().Stopping() {
		time.Sleep(time.Millisecond)
	}
	return errors.New("sink: connection refused; given up at stop")
}

// Stop after the end of input while the output is halted: the final
// checkpoint cannot be taken (the output never takes the end-of-input
// results), and Stop still returns when its context ends, with an error:
// the context's end makes Stopping true, which releases the output.
func TestStopWithHaltedOutputIsBounded(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	out := &haltedOutput{}
	e, err := New(Config{Shards: 2, Processors: pipelineFactory(t), Output: out, Durability: w,
		Checkpoints: &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	out.e.Store(e)
	if _, err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, e, recSyms)
	p, _ := e.NewPublisher("feed")
	publishRange(t, p, testEvents(2000, recSyms, 6), 0, 2000)
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = e.Stop(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %s with a 1s context", took)
	}
	if err == nil {
		t.Fatal("Stop with a halted output returned no error")
	}
	if st := e.CheckpointStats(); st.Taken != 1 { // the one after recovery
		t.Fatalf("%d checkpoints taken, want only recovery's: a checkpoint covered outputs the sink never took", st.Taken)
	}
	if n := out.calls.Load(); n != 1 {
		t.Fatalf("the halted output was called %d times, want once: outputs were delivered after its error", n)
	}
}
