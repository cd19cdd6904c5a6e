package engine

import (
	"context"
	"testing"
	"time"

	"qstream/codec"
	"qstream/internal/clock"
)

// A checkpoint holds the shard's combined watermark, not which source held
// it there. Here source b runs ahead of source a (a holds the watermark
// back); a checkpoint is taken; after it b's records come first in the WAL,
// then a's. Live, a's events after the checkpoint are not late (a holds the
// watermark). A recovery replay from that checkpoint must decide the same:
// a's recovery publisher has to hold the watermark that a held at the cut
// before its first record after the cut is replayed, or b's replayed
// watermark alone moves the shards past a's events and makes them late.
func TestRecoveryFromCheckpointKeepsSourceWatermarks(t *testing.T) {
	for _, batches := range []bool{false, true} {
		name := "records"
		if batches {
			name = "batches"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := &memOutput{}
			r := openRig(t, dir, 1, out, 0)
			r.e.cfg.WALBatches = batches
			if _, err := r.e.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			internSymbols(t, r.e, 2)
			pa, _ := r.e.NewPublisher("tcp/loop0")
			pb, _ := r.e.NewPublisher("tcp/loop1")
			trades := 0
			publishWait(t, pa, out, 1, 0, 0, &trades)   // a's watermark: trade 0
			publishWait(t, pb, out, 2, 0, 100, &trades) // b far ahead: trade 100
			if _, err := r.e.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			publishWait(t, pb, out, 2, 101, 110, &trades) // after the cut, b first
			publishWait(t, pa, out, 1, 1, 50, &trades)    // then a, behind b but not behind a's own watermark
			r.dl.mu.Lock()
			liveLate := r.dl.n[codec.ReasonLate]
			r.dl.mu.Unlock()
			if liveLate != 0 {
				t.Fatalf("live run: %d late events", liveLate)
			}
			pa.Detach()
			pb.Detach()
			r.e.StopCheckpoints() // like a crash: recovery replays the WAL after the checkpoint
			stop(t, r.e)
			r.w.Close()
			live := out.all()

			// The same output (a file across the crash): recovery cuts it
			// back to the checkpoint's mark and replays the rest.
			r2 := openRig(t, dir, 1, out, 0)
			r2.e.cfg.WALBatches = batches
			rep, err := r2.e.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Events != 60 {
				t.Fatalf("replayed %d events after the checkpoint, want 60", rep.Events)
			}
			stop(t, r2.e)
			r2.w.Close()
			r2.dl.mu.Lock()
			late := r2.dl.n[codec.ReasonLate]
			r2.dl.mu.Unlock()
			if late != 0 {
				t.Errorf("recovery replay: %d late events, the live run had none", late)
			}
			sameAsLive(t, live, out.all(), r.dl, r2.dl)
		})
	}
}

// A checkpoint records a source as holding the watermark only as the
// shards' tracker sees it: sent one, not idle (Idle, or silent for longer
// than Config.IdleTimeout), not closed.
func TestCheckpointHoldsAsTheTrackerSees(t *testing.T) {
	out := &memOutput{}
	r := openRig(t, t.TempDir(), 1, out, 0)
	r.e.cfg.IdleTimeout = time.Minute
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, 2)
	pa, _ := r.e.NewPublisher("a")
	pb, _ := r.e.NewPublisher("b")
	holds := func(p *Publisher) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.holdsWatermark()
	}
	if holds(pa) {
		t.Fatal("a source that sent no watermark holds")
	}
	trades := 0
	publishWait(t, pa, out, 1, 0, 0, &trades)
	publishWait(t, pb, out, 2, 0, 0, &trades)
	if !holds(pa) || !holds(pb) {
		t.Fatal("sources that just sent watermarks do not hold")
	}
	if err := pb.Idle(); err != nil {
		t.Fatal(err)
	}
	if holds(pb) {
		t.Fatal("an idle source holds")
	}
	pa.lastActiveNs.Store(clock.MonoNs() - int64(2*time.Minute)) // silent past the idle timeout
	if holds(pa) {
		t.Fatal("a source silent past the idle timeout holds")
	}
	publishWait(t, pa, out, 1, 1, 1, &trades)
	if !holds(pa) {
		t.Fatal("a source that published again does not hold")
	}
	pa.Close()
	if holds(pa) {
		t.Fatal("a closed source holds")
	}
	pb.Detach()
	stop(t, r.e)
	r.w.Close()
}
