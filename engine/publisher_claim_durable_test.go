package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"qstream/checkpoint"
	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

// Durable in-place claims: a durable Publisher's ClaimBatch hands out ring
// slots, CommitBatch logs the events from there, and a checkpoint cut that
// comes while a claim is outstanding is placed when the claim ends.

// openBatchRig is openRig with the WAL logging event batches
// (Config.WALBatches, `qstream run`'s setting) and rings of ringSize.
func openBatchRig(t testing.TB, dir string, shards, ringSize int, out *memOutput) *durableRig {
	t.Helper()
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &durableRig{w: w, out: out, dl: &dlCollect{}}
	r.e, err = New(Config{
		Shards:       shards,
		RingSize:     ringSize,
		Symbols:      codec.NewSymbolTable(64),
		Processors:   pipelineFactory(t),
		Output:       out,
		DeadLetters:  r.dl,
		Durability:   w,
		WALBatches:   true,
		Checkpoints:  &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")},
		DedupHorizon: 4096,
		Logger:       slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// walRecords returns every record of the WAL under dir: its type and
// payload.
func walRecords(t testing.TB, dir string) []string {
	t.Helper()
	rd, err := wal.OpenReader(filepath.Join(dir, "wal"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var recs []string
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, string(rune(rec.Type))+string(rec.Payload))
	}
}

// flattenWAL returns the events of the batch records and the other
// records, each in order.
func flattenWAL(t testing.TB, recs []string) (evs []codec.Event, other []string) {
	t.Helper()
	for _, r := range recs {
		if wal.RecordType(r[0]) != RecordEventBatch {
			other = append(other, r)
			continue
		}
		if err := DecodeEventBatch([]byte(r[1:]), func(ev *codec.Event) error {
			evs = append(evs, *ev)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return evs, other
}

// stampedEvents is testEvents with ingest stamps of their own, so that the
// WAL's bytes do not depend on the clock.
func stampedEvents(n int) []codec.Event {
	evs := testEvents(n, recSyms, 11)
	for i := range evs {
		evs[i].IngestNs = 1_800_000_000_000_000_000 + int64(i)*7
	}
	return evs
}

// TestDurableClaimMatchesPublish: a durable engine logging event batches
// gets the same WAL (byte for byte: the same records, the same batches),
// the same outputs and the same final operator state when its events are
// claimed in place (with abandoned claims and garbage in the events not
// committed: claimRange) as when they are published (publishRange). The
// rings hold every event, so that claims end at the same places in both.
func TestDurableClaimMatchesPublish(t *testing.T) {
	evs := stampedEvents(recN / 2)
	for _, shards := range []int{1, 2} {
		run := func(publish func(p *Publisher)) ([]string, []string, *durableRig) {
			dir := t.TempDir()
			r := openBatchRig(t, dir, shards, 1<<15, &memOutput{})
			if _, err := r.e.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			internSymbols(t, r.e, recSyms)
			p, err := r.e.NewPublisher("feed")
			if err != nil {
				t.Fatal(err)
			}
			publish(p)
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := r.e.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			p.Close()
			stop(t, r.e)
			r.w.Close()
			if _, dups := byKey(t, r.out.all()); dups != 0 {
				t.Fatalf("shards=%d: %d duplicate outputs", shards, dups)
			}
			return walRecords(t, dir), shardSections(t, dir), r
		}
		wantWAL, wantState, ref := run(func(p *Publisher) { publishRange(t, p, evs, 0, len(evs)) })
		rng := rand.New(rand.NewPCG(uint64(shards), 3))
		gotWAL, gotState, in := run(func(p *Publisher) { claimRange(t, p, evs, 0, len(evs), rng) })
		if len(wantWAL) < 10 {
			t.Fatalf("shards=%d: the reference WAL has %d records", shards, len(wantWAL))
		}
		if shards == 1 && !slices.Equal(gotWAL, wantWAL) {
			i := 0
			for i < min(len(gotWAL), len(wantWAL)) && gotWAL[i] == wantWAL[i] {
				i++
			}
			t.Fatalf("shards=%d: WAL of %d records differs from the published one's (%d) at record %d", shards, len(gotWAL), len(wantWAL), i)
		}
		// With two shards a claim's slots are taken from one ring before
		// its events are known, and Publish takes a ring's claim at the
		// first event for it, so the batches can end elsewhere (each at
		// the events made visible together): the same events and the same
		// other records, in the same order.
		gotEvs, gotOther := flattenWAL(t, gotWAL)
		wantEvs, wantOther := flattenWAL(t, wantWAL)
		if len(wantEvs) != len(evs) || !slices.Equal(gotEvs, wantEvs) || !slices.Equal(gotOther, wantOther) {
			t.Fatalf("shards=%d: WAL of %d events and %d other records, want %d and %d, the same", shards, len(gotEvs), len(gotOther), len(wantEvs), len(wantOther))
		}
		if !slices.Equal(gotState, wantState) {
			t.Fatalf("shards=%d: final operator state differs from the run through Publish", shards)
		}
		want, _ := byKey(t, ref.out.all())
		got, _ := byKey(t, in.out.all())
		if len(got) != len(want) {
			t.Fatalf("shards=%d: %d outputs, want %d", shards, len(got), len(want))
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || !sameOutput(g, w) {
				t.Fatalf("shards=%d: output %x: got %+v, want %+v", shards, k, g, w)
			}
		}
	}
}

// batchReferenceRun is referenceRun on openBatchRig's engine of shards
// shards: the outputs and final operator state of one uninterrupted run
// through Publish.
func batchReferenceRun(t *testing.T, evs []codec.Event, shards int) (map[uint64]ops.Output, []string) {
	dir := t.TempDir()
	r := openBatchRig(t, dir, shards, 0, &memOutput{})
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	publishRange(t, p, evs, 0, len(evs))
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Close()
	stop(t, r.e)
	r.w.Close()
	m, dups := byKey(t, r.out.all())
	if dups != 0 {
		t.Fatalf("reference run has %d duplicate keys", dups)
	}
	return m, shardSections(t, dir)
}

// cutWaits reports whether a cut waits for p's claim.
func cutWaits(p *Publisher) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inPlace.cut != nil
}

// waitCutPending waits until a cut waits for p's claim.
func waitCutPending(t *testing.T, p *Publisher) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cutWaits(p) {
		if time.Now().After(deadline) {
			t.Fatal("no cut came to wait for the claim")
		}
		time.Sleep(time.Millisecond)
	}
}

// checkpointSource returns the state of source name in the newest
// checkpoint under dir.
func checkpointSource(t *testing.T, dir, name string) sourceState {
	t.Helper()
	ck, _, err := checkpoint.LoadLatest(filepath.Join(dir, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	data, ok := ck.Get(sectionEngine)
	if !ok {
		t.Fatal("no engine section")
	}
	st, err := decodeEngineState(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.sources {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no source %q in the checkpoint", name)
	return sourceState{}
}

// TestDurableClaimCutWhileClaimed: a checkpoint whose cut comes while the
// Publisher's claim is outstanding - the caller still writing its slots -
// waits for the claim, and the cut lands behind the committed events (the
// checkpoint's offset is the claim's last). The process then crashes after
// more events; recovery from that checkpoint and the rest of the input give
// the outputs and the final state of the uninterrupted run. Under -race a
// cut event written into a slot the caller is filling is a reported race;
// a torn event shows in the outputs.
func TestDurableClaimCutWhileClaimed(t *testing.T) {
	evs := testEvents(recN/2, recSyms, 3)
	for _, shards := range []int{1, 2} {
		want, wantState := batchReferenceRun(t, evs, shards)
		dir := t.TempDir()
		out := &memOutput{}
		r := openBatchRig(t, dir, shards, 0, out)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internSymbols(t, r.e, recSyms)
		p, err := r.e.NewPublisher("feed")
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(4, uint64(shards)))
		half := len(evs) / 2 / 64 * 64
		claimRange(t, p, evs, 0, half, rng)
		// A claim, half filled, when the cut comes; filled after.
		batch, err := p.ClaimBatch(50)
		if err != nil {
			t.Fatal(err)
		}
		k := copy(batch[:len(batch)/2], evs[half:])
		ck := make(chan error, 1)
		go func() {
			_, err := r.e.Checkpoint(context.Background())
			ck <- err
		}()
		waitCutPending(t, p)
		k += copy(batch[k:], evs[half+k:])
		select {
		case err := <-ck:
			t.Fatalf("shards=%d: the checkpoint ended (%v) while the claim was outstanding", shards, err)
		case <-time.After(20 * time.Millisecond):
		}
		if err := p.CommitBatch(k); err != nil {
			t.Fatal(err)
		}
		if err := <-ck; err != nil {
			t.Fatalf("shards=%d: checkpoint: %v", shards, err)
		}
		if st := checkpointSource(t, dir, "feed"); st.offset != uint64(half+k) {
			t.Fatalf("shards=%d: the checkpoint's offset is %d, want %d (behind the claim's events)", shards, st.offset, half+k)
		}
		// More events, durable but after the checkpoint; then a crash.
		next, crash := half+k, (half+k+1000)/64*64 // at a flush point, as Barrier flushes
		claimRange(t, p, evs, next, crash, rng)
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.e.StopCheckpoints()
		p.Detach()
		stop(t, r.e)
		r.w.Close()

		r = openBatchRig(t, dir, shards, 0, out)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internSymbols(t, r.e, recSyms)
		p, err = r.e.NewPublisher("feed")
		if err != nil {
			t.Fatal(err)
		}
		from, _ := r.e.SourceOffset("feed")
		if from != uint64(crash) {
			t.Fatalf("shards=%d: resuming after %d, want %d", shards, from, crash)
		}
		claimRange(t, p, evs, int(from), len(evs), rng)
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.e.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		p.Close()
		stop(t, r.e)
		r.w.Close()
		got, dups := byKey(t, out.all())
		if dups != 0 || len(got) != len(want) {
			t.Fatalf("shards=%d: %d outputs (%d duplicates), want %d", shards, len(got), dups, len(want))
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || !sameOutput(g, w) {
				t.Fatalf("shards=%d: output %x: got %+v, want %+v", shards, k, g, w)
			}
		}
		if gotState := shardSections(t, dir); !slices.Equal(gotState, wantState) {
			t.Fatalf("shards=%d: final operator state differs from the uninterrupted run", shards)
		}
	}
}

// TestDurableClaimAbandonedPlacesCut: a cut waiting for a claim that the
// caller abandons (it calls Flush instead of CommitBatch) is placed by
// Flush, before anything Flush writes; the claim is gone (ErrNoClaim).
func TestDurableClaimAbandonedPlacesCut(t *testing.T) {
	evs := testEvents(600, recSyms, 5)
	dir := t.TempDir()
	r := openBatchRig(t, dir, 2, 0, &memOutput{})
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	publishRange(t, p, evs, 0, 300)
	batch, err := p.ClaimBatch(10)
	if err != nil {
		t.Fatal(err)
	}
	batch[0] = garbage
	ck := make(chan error, 1)
	go func() {
		_, err := r.e.Checkpoint(context.Background())
		ck <- err
	}()
	waitCutPending(t, p)
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-ck; err != nil {
		t.Fatal(err)
	}
	if err := p.CommitBatch(1); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("CommitBatch after the claim was abandoned: %v, want ErrNoClaim", err)
	}
	if st := checkpointSource(t, dir, "feed"); st.offset != 300 {
		t.Fatalf("the checkpoint's offset is %d, want 300", st.offset)
	}
	publishRange(t, p, evs, 300, len(evs))
	p.Close()
	stop(t, r.e)
	r.w.Close()
	if got := len(r.out.all()); p.Published() != uint64(len(evs)) || got == 0 || len(r.dl.n) != 0 {
		t.Fatalf("published %d of %d, %d outputs, dead letters %v", p.Published(), len(evs), got, r.dl.n)
	}
}

// TestDurableClaimHeldFailsCheckpoint: a checkpoint that waits longer than
// CheckpointConfig.ClaimWait for a claim fails, naming the Publisher, and
// is counted; the cut completes when the claim ends, and the next
// checkpoint succeeds with the events in place.
func TestDurableClaimHeldFailsCheckpoint(t *testing.T) {
	evs := testEvents(400, recSyms, 6)
	dir := t.TempDir()
	r := openBatchRig(t, dir, 2, 0, &memOutput{})
	r.e.cut.claimWait = 30 * time.Millisecond
	if _, err := r.e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	internSymbols(t, r.e, recSyms)
	p, _ := r.e.NewPublisher("feed")
	publishRange(t, p, evs, 0, 200)
	batch, err := p.ClaimBatch(10)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.e.Checkpoint(context.Background())
	if err == nil || !strings.Contains(err.Error(), `publisher "feed" held an in-place claim`) {
		t.Fatalf("checkpoint with a claim held: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the failed checkpoint took %v", took)
	}
	if st := r.e.CheckpointStats(); st.Failed != 1 {
		t.Fatalf("stats %+v, want 1 failed", st)
	}
	// Still held: the next checkpoint fails too, without waiting for ever.
	if _, err := r.e.Checkpoint(context.Background()); err == nil {
		t.Fatal("a checkpoint succeeded while the previous cut waited for the claim")
	}
	k := copy(batch, evs[200:])
	if err := p.CommitBatch(k); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Checkpoint(context.Background()); err != nil {
		t.Fatalf("checkpoint after the claim ended: %v", err)
	}
	if st := checkpointSource(t, dir, "feed"); st.offset != uint64(200+k) {
		t.Fatalf("the checkpoint's offset is %d, want %d", st.offset, 200+k)
	}
	publishRange(t, p, evs, 200+k, len(evs))
	p.Close()
	stop(t, r.e)
	r.w.Close()
	if p.Published() != uint64(len(evs)) || len(r.dl.n) != 0 {
		t.Fatalf("published %d of %d, dead letters %v", p.Published(), len(evs), r.dl.n)
	}
}

// TestDurableClaimDoesNotAllocate: claiming, filling, committing and
// flushing batches on a durable engine logging event batches (two shards,
// some events copied into the other shard's ring), with the WAL writer,
// the shards and the collector at work, allocate nothing in steady state.
func TestDurableClaimDoesNotAllocate(t *testing.T) {
	w, err := OpenWAL(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	te := newTestEngine(t, Config{Shards: 2, Durability: w, WALBatches: true, Processors: func(int) (Processor, error) { return nopProc{}, nil }})
	internSymbols(t, te.Engine, 16)
	p, _ := te.NewPublisher("p")
	te.Start()
	var seq int64
	batch := func() {
		for n := 0; n < 256; {
			evs, err := p.ClaimBatch(256 - n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs {
				seq++
				evs[i] = trade(0, codec.Symbol(1+seq%16), seq)
			}
			if err := p.CommitBatch(len(evs)); err != nil {
				t.Fatal(err)
			}
			n += len(evs)
		}
		p.Flush()
	}
	allocs := allocsPerBatch(t, te, p, batch)
	if allocs > 0 {
		t.Fatalf("durable claim+commit+flush of 256 events allocated %.1f times per batch", allocs)
	}
}
