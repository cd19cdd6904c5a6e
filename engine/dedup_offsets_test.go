package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"qstream/codec"
	"qstream/internal/invariants"
	"qstream/ops"
	"qstream/wal"
)

// offsetRig is a durable engine over dir with two sources: "syn", whose
// message ids are its offsets (Seq 1..n, resent with the same Seq), and
// "other", whose ids are not (the Publisher numbers it; a resend has its
// message id and a new Seq). Its sink and dead-letter counts survive the
// "crashes" between incarnations.
type offsetRig struct {
	*durableRig
}

func openOffsetRig(t *testing.T, dir string, out *memOutput, checkpoints bool) *offsetRig {
	t.Helper()
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &durableRig{w: w, out: out, dl: &dlCollect{}}
	cfg := Config{Shards: 2, Symbols: codec.NewSymbolTable(64), Processors: pipelineFactory(t), Output: out,
		DeadLetters: r.dl, Durability: w, DedupHorizon: 4096, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	if checkpoints {
		cfg.Checkpoints = &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}
	}
	if r.e, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return &offsetRig{r}
}

// idSetLen is the number of ids in the shards' dedup horizons. Call it
// after the engine stopped.
func (r *offsetRig) idSetLen() int {
	n := 0
	for _, s := range r.e.shards {
		n += s.dedup.len()
	}
	return n
}

func (r *offsetRig) duplicates() int {
	r.dl.mu.Lock()
	defer r.dl.mu.Unlock()
	return r.dl.n[codec.ReasonDuplicate]
}

// TestOffsetIDsDedup runs the two sources over three incarnations, each
// ending in a crash (no final checkpoint) but the last, each resending
// already durable events of both sources (and "syn" re-sending some within
// a run), with and without checkpoints, and with "syn" declared from the
// first incarnation on or only from the second (a WAL whose registrations
// of one name differ: recovery switches). It checks that every resend is
// dead-lettered as a duplicate - live, and again when recovery replays the
// WAL, exactly as many - that every event reaches the sink once and the
// new ones pass, and that "syn" takes no room in the dedup horizon while
// "other" is de-duplicated by id as before.
func TestOffsetIDsDedup(t *testing.T) {
	for _, c := range []struct {
		name                 string
		checkpoints, upgrade bool
	}{{"checkpoints", true, false}, {"no-checkpoint", false, false}, {"no-checkpoint-upgrade", false, true}, {"checkpoints-upgrade", true, true}} {
		t.Run(c.name, func(t *testing.T) { testOffsetIDsDedup(t, c.checkpoints, c.upgrade) })
	}
}

func testOffsetIDsDedup(t *testing.T, checkpoints, upgrade bool) {
	const nSyn, nOther = 3000, 1500
	syn := testEvents(nSyn, 12, 21)
	other := testEvents(nOther, 12, 22)
	for i := range other {
		other[i].Symbol += 12
		other[i].Seq = 0 // numbered by the Publisher
		other[i].IDHash = codec.HashID(fmt.Appendf(nil, "o-%d", i))
	}
	type inc struct {
		synTo, synResend, synInRun int // publish syn from offset-synResend to synTo, then again its last synInRun
		otherFrom, otherTo         int // other[otherFrom:otherTo]
	}
	incs := []inc{{1000, 0, 100, 0, 500}, {2000, 300, 0, 400, 1000}, {nSyn, 250, 40, 950, nOther}}
	dir := t.TempDir()
	out := &memOutput{}
	var live, afterCk []int // duplicates sent live per incarnation, and after its checkpoint
	otherDone := 0
	for k, in := range incs {
		r := openOffsetRig(t, dir, out, checkpoints)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatalf("incarnation %d: %v", k, err)
		}
		internSymbols(t, r.e, 24)
		off, _ := r.e.SourceOffset("syn")
		if k > 0 && int(off) != incs[k-1].synTo {
			t.Fatalf("incarnation %d: syn resumes at %d, want %d", k, off, incs[k-1].synTo)
		}
		ps, err := r.e.NewPublisherWith("syn", PublisherOptions{OffsetIDs: !upgrade || k > 0})
		if err != nil {
			t.Fatal(err)
		}
		po, err := r.e.NewPublisher("other")
		if err != nil {
			t.Fatal(err)
		}
		publishRange(t, ps, syn, int(off)-in.synResend, in.synTo)
		if checkpoints {
			// Recovery starts here: syn's resends after it are judged
			// by the floor the checkpoint's offset gives.
			if _, err := r.e.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		publishRange(t, ps, syn, in.synTo-in.synInRun, in.synTo)
		for i := in.otherFrom; i < in.otherTo; i++ {
			ev := other[i]
			if err := po.Publish(&ev); err != nil {
				t.Fatal(err)
			}
		}
		live = append(live, in.synResend+in.synInRun+otherDone-in.otherFrom)
		afterCk = append(afterCk, in.synInRun+otherDone-in.otherFrom)
		otherDone = in.otherTo
		for _, p := range []*Publisher{ps, po} {
			if err := p.Barrier(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if k == len(incs)-1 {
			ps.Close()
			po.Close()
		} else {
			r.e.StopCheckpoints() // a crash: no final checkpoint
			ps.Detach()
			po.Detach()
		}
		stop(t, r.e)
		r.w.Close()

		// Dead letters: this incarnation's resends, and those that the
		// recovery replayed: every earlier one's without checkpoints, the
		// last one's after its checkpoint with.
		want := live[k]
		for j := 0; j < k; j++ {
			switch {
			case !checkpoints:
				want += live[j]
			case j == k-1:
				want += afterCk[j]
			}
		}
		if got := r.duplicates(); got != want {
			t.Fatalf("incarnation %d: %d duplicates dead-lettered, want %d (live %v)", k, got, want, live)
		}
		// The horizon holds "other"'s ids, and "syn"'s only from the
		// incarnation that did not declare them.
		wantIDs := otherDone
		if upgrade {
			wantIDs += incs[0].synTo
		}
		if got := r.idSetLen(); got != wantIDs {
			t.Fatalf("incarnation %d: %d ids in the dedup horizons, want %d", k, got, wantIDs)
		}
		// Every trade published so far reaches the sink once.
		outs, dups := byKey(t, out.all())
		if dups != 0 {
			t.Fatalf("incarnation %d: %d outputs twice in the sink", k, dups)
		}
		wantTrades := countTrades(syn[:in.synTo]) + countTrades(other[:otherDone])
		if got := countKindByKey(outs, ops.OutIndicators); got != wantTrades {
			t.Fatalf("incarnation %d: %d indicator outputs, want one per trade: %d", k, got, wantTrades)
		}
	}
}

func countTrades(evs []codec.Event) int {
	n := 0
	for i := range evs {
		if evs[i].Kind == codec.KindTrade {
			n++
		}
	}
	return n
}

func countKindByKey(outs map[uint64]ops.Output, kind ops.OutKind) int {
	n := 0
	for _, o := range outs {
		if o.Kind == kind {
			n++
		}
	}
	return n
}

// TestOffsetIDsDedupDoesNotAllocate: publishing events of a source whose
// ids are its offsets, a quarter of them resent, and the shards judging
// them by Seq and dead-lettering the resends, allocate nothing in steady
// state; every resend is a duplicate and the horizon stays empty.
func TestOffsetIDsDedupDoesNotAllocate(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 2, DedupHorizon: 1024, Processors: func(int) (Processor, error) { return nopProc{}, nil }})
	p, err := te.NewPublisherWith("p", PublisherOptions{OffsetIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	te.Start()
	var seq uint64
	resent := 0
	batch := func() {
		for i := 0; i < 256; i++ {
			seq++
			ev := trade(seq, codec.Symbol(1+seq%16), int64(seq))
			ev.IDHash = seq * 0x9E3779B97F4A7C15
			p.Publish(&ev)
			if i%4 == 3 { // resent: the same event again
				p.Publish(&ev)
				resent++
			}
		}
		p.Flush()
	}
	allocs := allocsPerBatch(t, te, p, batch)
	if allocs > 0 && !invariants.RaceEnabled { // under -race sync.Pool (the dead letters') drops items at random
		t.Fatalf("publish+flush of 256 events and 64 resends allocated %.1f times per batch", allocs)
	}
	if got := te.dl.n[codec.ReasonDuplicate]; got != resent || len(te.dl.n) != 1 {
		t.Fatalf("dead letters %v, want %d duplicates", te.dl.n, resent)
	}
	if got := len(te.out.all()); got != int(seq) {
		t.Fatalf("%d outputs of %d events", got, seq)
	}
	for _, s := range te.shards {
		if s.dedup.len() != 0 {
			t.Fatalf("shard %d holds %d ids of a source whose ids are its offsets", s.id, s.dedup.len())
		}
	}
}
