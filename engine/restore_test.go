package engine

import (
	"context"
	"os"
	"testing"

	"qstream/checkpoint"
)

// TestRestoreFromOnAnotherHost moves a stream between "hosts": an engine
// takes a checkpoint in the middle of the stream; a fresh engine in another
// directory (its own, empty WAL) restores it with RestoreFrom and resumes
// the source after the checkpoint's offset. The outputs of the two, joined
// at the cut (the first engine's up to its checkpoint, the second's after),
// are exactly those of one uninterrupted run, key for key, and so are the
// final operator states. The first engine also goes on past the cut, as an
// old owner does until it is fenced: its outputs after the cut carry the
// same keys and values as the second's, so an idempotent sink absorbs them.
func TestRestoreFromOnAnotherHost(t *testing.T) {
	evs := testEvents(recN, recSyms, 3)
	want, wantState := referenceRun(t, evs)
	ctx := context.Background()

	// Host A: the first 64*150 events, a checkpoint, then more events.
	dirA := t.TempDir()
	outA := &memOutput{}
	a := openRig(t, dirA, 2, outA, 0)
	if err := a.e.Start(); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, a.e, recSyms)
	pa, _ := a.e.NewPublisher("feed")
	cut := 64 * 150
	publishRange(t, pa, evs, 0, cut)
	if err := pa.Flush(); err != nil {
		t.Fatal(err)
	}
	info, err := a.e.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	atCut := len(outA.all())
	publishRange(t, pa, evs, cut, cut+64*40) // the old owner goes on a while
	if err := pa.Flush(); err != nil {
		t.Fatal(err)
	}
	pa.Detach()
	stop(t, a.e)
	a.w.Close()
	data, err := os.ReadFile(info.Path)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := CheckpointSources(ck)
	if err != nil || srcs["feed"] != uint64(cut) {
		t.Fatalf("checkpoint sources %v (%v), want feed at %d", srcs, err, cut)
	}

	// Host B: another directory, an empty WAL.
	dirB := t.TempDir()
	outB := &memOutput{}
	b := openRig(t, dirB, 2, outB, 0)
	rep, err := b.e.RestoreFrom(ctx, ck)
	if err != nil {
		t.Fatal(err)
	}
	if outB.restores != 1 || rep.Sources["feed"] != uint64(cut) {
		t.Fatalf("restore: output restores %d, sources %v", outB.restores, rep.Sources)
	}
	if off, ok := b.e.SourceOffset("feed"); !ok || off != uint64(cut) {
		t.Fatalf("SourceOffset = %d, %v; want %d", off, ok, cut)
	}
	pb, _ := b.e.NewPublisher("feed")
	publishRange(t, pb, evs, cut, len(evs))
	if err := pb.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.e.Checkpoint(ctx); err != nil { // B checkpoints with its own WAL
		t.Fatal(err)
	}
	pb.Close()
	stop(t, b.e)
	b.w.Close()

	joined := append(outA.all()[:atCut:atCut], outB.all()...)
	got, dups := byKey(t, joined)
	if dups != 0 {
		t.Fatalf("%d outputs twice across the handover", dups)
	}
	if len(got) != len(want) {
		t.Fatalf("%d outputs across the handover, want %d", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameOutput(g, w) {
			t.Fatalf("output %x: got %+v, want %+v", k, g, w)
		}
	}
	// What A wrote after the cut is the same, key for key, as B's.
	for _, o := range outA.all()[atCut:] {
		if g, ok := got[o.Key]; !ok || !sameOutput(g, o) {
			t.Fatalf("the old owner's output %x after the cut differs from the new owner's: %+v vs %+v", o.Key, o, g)
		}
	}
	gotState := shardSections(t, dirB)
	for i := range gotState {
		if gotState[i] != wantState[i] {
			t.Fatalf("final state of %s differs from the uninterrupted run", gotState[i][:9])
		}
	}

	// RestoreFrom refuses a WAL that is not empty.
	c := openRig(t, dirA, 2, &memOutput{}, 0)
	defer c.w.Close()
	if _, err := c.e.RestoreFrom(ctx, ck); err == nil {
		t.Fatal("RestoreFrom over a used WAL succeeded")
	}
}
