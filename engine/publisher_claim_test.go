package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

// garbage is what a failed parse leaves in a claimed event. If it were ever
// published it would show: echo dead-letters a negative price, and its Seq
// and symbol are nowhere in the inputs.
var garbage = codec.Event{Kind: codec.KindTrade, Symbol: 1, Seq: 1 << 40, TsNs: 1, Price: -1, Volume: 1}

// claimRange publishes evs[from:to] as publishRange does (the same events,
// flushes after the same ones) through Claim/Commit and ClaimBatch/
// CommitBatch in a random mix, with abandoned claims and garbage in the
// claimed events that are not committed.
func claimRange(t testing.TB, p *Publisher, evs []codec.Event, from, to int, rng *rand.Rand) {
	t.Helper()
	for i := from; i < to; {
		end := to // up to the next flush point (an event whose Seq is a multiple of 64)
		for j := i; j < to; j++ {
			if evs[j].Seq%64 == 0 && evs[j].Seq != 0 {
				end = j + 1
				break
			}
		}
		for i < end {
			if rng.IntN(3) == 0 {
				ev, err := p.Claim()
				if err != nil {
					t.Fatal(err)
				}
				if rng.IntN(4) == 0 { // a parse error: the next claim reuses the event
					*ev = garbage
					if ev, err = p.Claim(); err != nil {
						t.Fatal(err)
					}
				}
				*ev = evs[i]
				if err := p.Commit(); err != nil {
					t.Fatal(err)
				}
				i++
				continue
			}
			batch, err := p.ClaimBatch(1 + rng.IntN(100))
			if err != nil {
				t.Fatal(err)
			}
			k := copy(batch, evs[i:end])
			for j := k; j < len(batch); j++ {
				batch[j] = garbage // claimed, not committed
			}
			if rng.IntN(4) == 0 && k > 0 {
				k-- // the last one failed to parse
				batch[k] = garbage
			}
			if err := p.CommitBatch(k); err != nil {
				t.Fatal(err)
			}
			i += k
		}
		if s := evs[end-1].Seq; s%64 == 0 && s != 0 {
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// runEcho publishes evs through one Publisher of a fresh engine (echo
// processors) and returns the outputs, IngestNs cleared, sorted.
func runEcho(t *testing.T, shards int, evs []codec.Event, publish func(*Publisher)) ([]string, *testEngine) {
	t.Helper()
	// Small rings on several shards: claims end early and fill up, so a
	// batch's copies into other rings wait for space mid-batch.
	ringSize := 8192
	if shards > 1 {
		ringSize = 16
	}
	te := newTestEngine(t, Config{Shards: shards, RingSize: ringSize})
	internSymbols(t, te.Engine, recSyms)
	p, err := te.NewPublisher("feed")
	if err != nil {
		t.Fatal(err)
	}
	if err := te.Start(); err != nil {
		t.Fatal(err)
	}
	publish(p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	stop(t, te.Engine)
	if got := p.Published(); got != uint64(len(evs)) {
		t.Fatalf("published %d, want %d", got, len(evs))
	}
	var out []string
	for _, o := range te.out.all() {
		o.IngestNs = 0
		out = append(out, fmt.Sprint(o))
	}
	slices.Sort(out)
	return out, te
}

// TestClaimMatchesPublish: the same events through Claim/ClaimBatch (with
// abandoned claims and uncommitted garbage) and through Publish give the
// same outputs, on one shard and on three (where most events route away
// from the ring their slots were claimed in), with the sources' offsets
// given and left to the Publisher.
func TestClaimMatchesPublish(t *testing.T) {
	for _, shards := range []int{1, 3} {
		for _, numbered := range []bool{true, false} {
			t.Run(fmt.Sprintf("shards=%d/seq=%v", shards, numbered), func(t *testing.T) {
				evs := testEvents(5000, recSyms, 7)
				if !numbered {
					for i := range evs {
						evs[i].Seq = 0
					}
				}
				want, _ := runEcho(t, shards, evs, func(p *Publisher) {
					for i := range evs {
						ev := evs[i]
						if err := p.Publish(&ev); err != nil {
							t.Fatal(err)
						}
						if ev.Seq%64 == 0 {
							p.Flush()
						}
					}
				})
				got, te := runEcho(t, shards, evs, func(p *Publisher) {
					// Flush points by the Seq the Publisher will give.
					num := slices.Clone(evs)
					for i := range num {
						num[i].Seq = uint64(i + 1)
					}
					if numbered {
						claimRange(t, p, evs, 0, len(evs), rand.New(rand.NewPCG(1, 2)))
						return
					}
					claimRangeNumbered(t, p, evs, num, rand.New(rand.NewPCG(1, 2)))
				})
				if n := te.dl.n[codec.ReasonLate]; n != 0 {
					t.Fatalf("%d garbage events published", n)
				}
				if len(got) != len(want) {
					t.Fatalf("%d outputs, want %d", len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("output %d: got %s, want %s", i, got[i], want[i])
					}
				}
			})
		}
	}
}

// claimRangeNumbered is claimRange for events whose Seq the Publisher
// assigns (0 in evs): it flushes where num (the numbered copy) says.
func claimRangeNumbered(t testing.TB, p *Publisher, evs, num []codec.Event, rng *rand.Rand) {
	t.Helper()
	for i := 0; i < len(evs); {
		end := min(len(evs), (i/64+1)*64)
		for i < end {
			batch, err := p.ClaimBatch(1 + rng.IntN(100))
			if err != nil {
				t.Fatal(err)
			}
			k := copy(batch, evs[i:end])
			clear(batch[k:])
			if err := p.CommitBatch(k); err != nil {
				t.Fatal(err)
			}
			i += k
		}
		if num[end-1].Seq%64 == 0 {
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestClaimAbandoned: an abandoned claim publishes nothing, leaves no hole
// (the offsets stay contiguous) and hands out the same slot again; Commit
// after another method returns ErrNoClaim.
func TestClaimAbandoned(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 1})
	sym, _ := te.Symbols().InternString("AAPL")
	p, _ := te.NewPublisher("feed")
	te.Start()
	if err := p.Commit(); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("Commit without Claim: %v", err)
	}
	a, _ := p.Claim()
	*a = garbage
	b, _ := p.Claim()
	if a != b || *b != (codec.Event{}) {
		t.Fatalf("a claim after an abandoned one: %p (%+v), want the zeroed %p", b, *b, a)
	}
	*b = trade(0, sym, 10)
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	// Another method between claim and commit abandons the claim.
	c, _ := p.Claim()
	*c = garbage
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("Commit after Flush: %v", err)
	}
	evs, _ := p.ClaimBatch(8)
	for i := range evs {
		evs[i] = garbage
	}
	if err := p.CommitBatch(len(evs) + 1); err == nil {
		t.Fatal("CommitBatch of more than claimed accepted")
	}
	evs, _ = p.ClaimBatch(8)
	for i := range evs {
		evs[i] = trade(0, sym, int64(20+i))
	}
	if err := p.CommitBatch(3); err != nil {
		t.Fatal(err)
	}
	if err := p.CommitBatch(0); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("a second CommitBatch: %v", err)
	}
	p.Close()
	stop(t, te.Engine)
	var seqs []uint64
	for _, o := range te.out.all() {
		if o.Kind == ops.OutIndicators {
			seqs = append(seqs, o.Seq)
		}
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4}) || p.Published() != 4 || len(te.dl.n) != 0 {
		t.Fatalf("outputs of Seq %v, published %d, dead letters %v; want Seq 1..4 and none", seqs, p.Published(), te.dl.n)
	}
}

// TestClaimWithCheckpoints: a durable engine (claims in ring slots, the
// cuts of checkpoints left to the Publisher while one is outstanding) with
// checkpoints cut concurrently from another goroutine, and a recovery in the middle: the sink and the
// final operator state are those of the uninterrupted run through Publish.
func TestClaimWithCheckpoints(t *testing.T) {
	evs := testEvents(recN/2, recSyms, 3)
	want, wantState := referenceRun(t, evs)
	dir := t.TempDir()
	out := &memOutput{}
	rng := rand.New(rand.NewPCG(9, 9))
	half := len(evs) / 2 / 64 * 64
	for inc, to := range []int{half, len(evs)} {
		r := openRig(t, dir, 2, out, 0)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internSymbols(t, r.e, recSyms)
		p, err := r.e.NewPublisher("feed")
		if err != nil {
			t.Fatal(err)
		}
		from, _ := r.e.SourceOffset("feed")
		stopCuts := make(chan struct{})
		cuts := make(chan int)
		go func() {
			n := 0
			defer func() { cuts <- n }()
			for {
				select {
				case <-stopCuts:
					return
				default:
				}
				if _, err := r.e.Checkpoint(context.Background()); err != nil {
					t.Error(err)
					return
				}
				n++
				time.Sleep(time.Millisecond)
			}
		}()
		for i := int(from); i < to; i += 500 { // slowly, so that cuts fall in between
			claimRange(t, p, evs, i, min(to, i+500), rng)
			time.Sleep(2 * time.Millisecond)
		}
		close(stopCuts)
		t.Logf("incarnation %d: events %d..%d, %d checkpoints while claiming", inc, from, to, <-cuts)
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.e.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		if to < len(evs) {
			p.Detach() // a crash after the checkpoint
		} else {
			p.Close()
		}
		stop(t, r.e)
		r.w.Close()
	}
	got, dups := byKey(t, out.all())
	if dups != 0 || len(got) != len(want) {
		t.Fatalf("%d outputs (%d duplicates), want %d", len(got), dups, len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !sameOutput(g, w) {
			t.Fatalf("output %x: got %+v, want %+v", k, g, w)
		}
	}
	if gotState := shardSections(t, dir); !slices.Equal(gotState, wantState) {
		t.Fatal("final operator state differs from the run through Publish")
	}
}

// TestClaimWaitsAtPausedStream: Claim holds a paused stream's producer, as
// Publish does, and what it claims after the resume is processed.
func TestClaimWaitsAtPausedStream(t *testing.T) {
	for _, shards := range []int{1, 2} {
		te := newTestEngine(t, Config{Shards: shards})
		internSymbols(t, te.Engine, 4)
		p, _ := te.NewPublisher("feed")
		te.Start()
		if err := te.PauseStream(DefaultStream); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			evs, err := p.ClaimBatch(4)
			if err != nil {
				done <- err
				return
			}
			for i := range evs {
				evs[i] = trade(0, codec.Symbol(1+i%4), int64(i+1))
			}
			if err := p.CommitBatch(len(evs)); err != nil {
				done <- err
				return
			}
			done <- p.Flush()
		}()
		select {
		case err := <-done:
			t.Fatalf("shards=%d: claimed on a paused stream (%v)", shards, err)
		case <-time.After(50 * time.Millisecond):
		}
		if err := te.ResumeStream(DefaultStream); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		te.waitOutputs(t, int(p.Published()))
		p.Close()
		stop(t, te.Engine)
		if p.Published() == 0 || len(te.dl.n) != 0 {
			t.Fatalf("shards=%d: published %d, dead letters %v", shards, p.Published(), te.dl.n)
		}
	}
}

// TestClaimDoesNotAllocate: claiming, filling and committing a batch of
// events (one at a time and in batches, two shards) and flushing, with the
// shards and the collector processing them, allocate nothing in steady
// state.
func TestClaimDoesNotAllocate(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 2, Processors: func(int) (Processor, error) { return nopProc{}, nil }})
	p, _ := te.NewPublisher("p")
	te.Start()
	var seq int64
	batch := func() {
		for range 64 {
			seq++
			ev, err := p.Claim()
			if err != nil {
				t.Fatal(err)
			}
			*ev = trade(0, codec.Symbol(1+seq%16), seq)
			if err := p.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		for n := 0; n < 192; {
			evs, err := p.ClaimBatch(192 - n)
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
		t.Fatalf("claim+commit+flush of 256 events allocated %.1f times per batch", allocs)
	}
}

// TestCommitInPlaceStampsAsPublish: commitInPlace, which does what stamp
// and account do with the Publisher's fields in registers, leaves the
// events and the Publisher's counters exactly as stamp and account
// (Publish's path) do: offsets given and left to the Publisher, out of
// order, ingest stamps given and not, a stale FlagPrimary, text chunks
// (not counted as published).
func TestCommitInPlaceStampsAsPublish(t *testing.T) {
	te := newTestEngine(t, Config{Shards: 1})
	internSymbols(t, te.Engine, 4)
	inPlace, err := te.NewPublisher("in-place")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := te.NewPublisher("reference")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	evs := make([]codec.Event, 200)
	for i := range evs {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(1 + i%4), TsNs: 1000 + rng.Int64N(500), Price: 1}
		if rng.IntN(3) == 0 {
			ev.Seq = uint64(rng.IntN(400)) // given, out of order at times
		}
		if rng.IntN(4) == 0 {
			ev.IngestNs = 77
		}
		if rng.IntN(5) == 0 {
			ev.Flags |= codec.FlagPrimary
		}
		if rng.IntN(6) == 0 {
			ev.Kind = codec.KindText
		}
		evs[i] = ev
	}
	const nowNs = 12345
	inPlace.nowNs, ref.nowNs = nowNs, nowNs
	for i := 0; i < len(evs); {
		batch, err := inPlace.ClaimBatch(1 + rng.IntN(50))
		if err != nil {
			t.Fatal(err)
		}
		k := copy(batch, evs[i:])
		if err := inPlace.CommitBatch(k); err != nil {
			t.Fatal(err)
		}
		i += k
	}
	got := inPlace.claim[0][:inPlace.fill[0]] // written, not yet visible (under publishBatchMax)
	if len(got) != len(evs) {
		t.Fatalf("%d events in the claim, want %d", len(got), len(evs))
	}
	for i := range evs {
		want := evs[i]
		ref.stamp(&want)
		ref.account(&want)
		g := got[i]
		if g.Source != uint16(inPlace.id) || want.Source != uint16(ref.id) {
			t.Fatalf("event %d: sources %d and %d", i, g.Source, want.Source)
		}
		g.Source, want.Source = 0, 0
		if g != want {
			t.Fatalf("event %d: got %+v, want %+v", i, g, want)
		}
	}
	if inPlace.maxTsNs != ref.maxTsNs || inPlace.maxSeq != ref.maxSeq || inPlace.lastSeq != ref.lastSeq || inPlace.pubPending != ref.pubPending {
		t.Fatalf("counters: got maxTs %d maxSeq %d lastSeq %d pending %d, want %d %d %d %d",
			inPlace.maxTsNs, inPlace.maxSeq, inPlace.lastSeq, inPlace.pubPending, ref.maxTsNs, ref.maxSeq, ref.lastSeq, ref.pubPending)
	}
}
