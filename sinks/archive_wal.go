package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/wal"
)

// Defaults and bounds of FollowOptions.
const (
	DefaultFollowPoll = 500 * time.Millisecond
	MinFollowPoll     = time.Millisecond
	MaxFollowPoll     = time.Minute
	DefaultFollowSync = time.Second
)

// FollowOptions configure FollowWAL.
type FollowOptions struct {
	// Durable returns the WAL writer's durable LSN (engine.WAL.DurableLSN):
	// records past it are not archived yet, since a crash could still take
	// them (and reuse their LSNs). Nil means no writer is running: every
	// complete record in the directory counts (offline archiving).
	Durable func() uint64
	// Symbols names symbol ids defined before the archive's position (their
	// RecordSymbol may lie in deleted segments): the engine's table, whose
	// ids recovery keeps equal to the WAL's. Symbol records read on the way
	// are used first.
	Symbols *codec.SymbolTable
	// Poll is how often new durable records are looked for (default
	// 500 ms; 1 ms..1 min). Reopening re-scans the current segment up to
	// the position, so a very short poll costs CPU on a busy log.
	Poll time.Duration
	// SyncEvery is how often the archive is synced (default 1 s, at least
	// Poll): its Durable position is what RetainLSN keeps in the WAL.
	SyncEvery time.Duration
	// Logger reports gaps (default slog.Default()).
	Logger *slog.Logger
}

// WALFollower archives the events of a WAL as they become durable, from the
// archive's own last position on: `qstream run --sink archive://DIR`. Every
// acknowledged event is in the WAL before it is acknowledged, and the
// archive resumes at Last()+1 after any crash (its partial file recovered),
// so each acknowledged event is archived exactly once, at its LSN, as long
// as the WAL still holds the records after the archive's durable position.
//
// To make sure it does, give RetainLSN to engine.CheckpointConfig.RetainWAL:
// checkpoints then delete no segment the archive has not synced. Without
// that, the engine may delete segments the follower has not read; the
// follower detects it (wal.ErrTruncated when it reopens), logs an error with
// the lost LSN range, counts it (Gaps, GapLSNs) and goes on from the oldest
// segment.
type WALFollower struct {
	dir string
	a   *Archive
	o   FollowOptions

	next    uint64 // the next LSN to read
	primed  bool   // the symbol records before next have been read
	names   []string
	nameBuf []byte
	ev      codec.Event

	durable atomic.Uint64 // mirror of a.Durable() for RetainLSN (other goroutines)
	gaps    atomic.Uint64
	gapLSNs atomic.Uint64
	events  atomic.Uint64
	unnamed atomic.Uint64
}

// NewWALFollower returns a follower of the WAL in walDir into a. It fails
// when the archive is ahead of the WAL (a different or re-created WAL).
func NewWALFollower(walDir string, a *Archive, o FollowOptions) (*WALFollower, error) {
	if o.Poll == 0 {
		o.Poll = DefaultFollowPoll
	}
	if o.Poll < MinFollowPoll || o.Poll > MaxFollowPoll {
		return nil, fmt.Errorf("sinks: archive: follow poll %s outside %s..%s", o.Poll, MinFollowPoll, MaxFollowPoll)
	}
	if o.SyncEvery == 0 {
		o.SyncEvery = DefaultFollowSync
	}
	o.SyncEvery = max(o.SyncEvery, o.Poll)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	f := &WALFollower{dir: walDir, a: a, o: o, next: a.Last() + 1, nameBuf: make([]byte, 0, codec.MaxSymbolLen)}
	f.durable.Store(a.Durable())
	if o.Durable != nil {
		if d := o.Durable(); d < a.Last() {
			return nil, fmt.Errorf("sinks: archive: the archive ends at LSN %d but the WAL in %s only at %d: not the WAL it was archived from (move the archive or the WAL away)", a.Last(), walDir, d)
		}
	}
	return f, nil
}

// FollowWAL is NewWALFollower and Run.
func FollowWAL(ctx context.Context, walDir string, a *Archive, o FollowOptions) error {
	f, err := NewWALFollower(walDir, a, o)
	if err != nil {
		return err
	}
	return f.Run(ctx)
}

// RetainLSN is the lowest LSN the follower still needs: the archive's
// durable position + 1. Safe for concurrent use (engine.CheckpointConfig
// .RetainWAL calls it from the checkpointing goroutine).
func (f *WALFollower) RetainLSN() uint64 { return f.durable.Load() + 1 }

// Gaps and GapLSNs count the times the WAL had been deleted past the
// follower's position and the LSNs lost to the archive.
func (f *WALFollower) Gaps() uint64    { return f.gaps.Load() }
func (f *WALFollower) GapLSNs() uint64 { return f.gapLSNs.Load() }

// Unnamed counts events archived without a symbol name (see archive).
func (f *WALFollower) Unnamed() uint64 { return f.unnamed.Load() }

// Events counts the events archived by this follower.
func (f *WALFollower) Events() uint64 { return f.events.Load() }

// Run archives durable records until ctx is done, then archives what is
// durable at that moment, syncs the archive and returns nil. It returns
// early on an error of the archive or a corrupt WAL. It does not close the
// archive.
func (f *WALFollower) Run(ctx context.Context) error {
	poll := time.NewTicker(f.o.Poll)
	defer poll.Stop()
	lastSync := time.Now()
	for {
		// Whether ctx was done is read before the catch-up: a cancel that
		// lands during it gets one more pass, so the last pass reads what
		// was durable after the cancel (the run's final records), not a
		// poll interval before it.
		done := ctx.Err() != nil
		if err := f.CatchUp(); err != nil {
			return err
		}
		f.durable.Store(f.a.Durable()) // rotations sync too
		if now := time.Now(); done || now.Sub(lastSync) >= f.o.SyncEvery {
			if err := f.a.Sync(); err != nil {
				return err
			}
			f.durable.Store(f.a.Durable())
			lastSync = now
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-poll.C:
		}
	}
}

// CatchUp archives every durable event after the archive's position, once.
// The first call reads the WAL from its oldest segment for the symbol
// records before the position (a restart resumes in the middle of the log).
func (f *WALFollower) CatchUp() error {
	limit := ^uint64(0)
	if f.o.Durable != nil {
		limit = f.o.Durable()
	}
	if limit < f.next && f.primed {
		return nil
	}
	from := f.next
	if !f.primed {
		from = 0
	}
	r, err := wal.OpenReader(f.dir, from)
	if errors.Is(err, wal.ErrTruncated) {
		r, err = wal.OpenReader(f.dir, 0) // the loop reports the gap
	}
	if err != nil {
		return fmt.Errorf("sinks: archive: follow %s: %w", f.dir, err)
	}
	defer r.Close()
	checked := false
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("sinks: archive: follow %s: %w", f.dir, err)
		}
		if rec.LSN > f.next && !checked {
			f.gap(rec.LSN) // LSNs are dense: the records before it were deleted
		}
		checked = checked || rec.LSN >= f.next
		if rec.LSN > limit {
			break
		}
		if rec.LSN < f.next && f.primed {
			continue
		}
		switch rec.Type {
		case engine.RecordSymbol:
			sym, name, err := engine.DecodeSymbolRecord(rec.Payload)
			if err == nil {
				f.setName(sym, string(name))
			}
		case engine.RecordEventBatch:
			if rec.LSN < f.next {
				continue
			}
			// The archive positions events by LSN, one per record: a WAL
			// written with an archive sink logs events one per record
			// (engine.Config.WALBatches off).
			return fmt.Errorf("sinks: archive: follow %s: record %d is a batch of events, written by a start without an archive sink; the archive follows a WAL written with it from its first start (use a new --wal-dir)", f.dir, rec.LSN)
		case engine.RecordEvent:
			if rec.LSN < f.next {
				continue // archived before; read for the symbols only
			}
			if err := f.archive(rec); err != nil {
				return err
			}
		}
		f.next = max(f.next, rec.LSN+1)
	}
	f.primed = true
	return nil
}

// gap reports that the WAL no longer holds f.next..first-1 and moves on.
func (f *WALFollower) gap(first uint64) {
	lost := first - f.next
	f.gaps.Add(1)
	f.gapLSNs.Add(lost)
	f.o.Logger.Error("sinks: archive: the WAL was deleted before the archive read it: events in this LSN range are NOT archived (give the follower's RetainLSN to the checkpoints' RetainWAL)",
		"wal", f.dir, "from_lsn", f.next, "to_lsn", first-1, "lsns", lost)
	f.next = first
}

// archive appends one event record.
func (f *WALFollower) archive(rec wal.Record) error {
	if _, err := codec.DecodeStoredFrame(rec.Payload, &f.ev); err != nil {
		// A checksum-valid WAL record with an invalid frame is a writer
		// bug; archive nothing rather than something wrong, and say so.
		f.o.Logger.Error("sinks: archive: WAL event record with an invalid frame skipped", "lsn", rec.LSN, "err", err)
		return nil
	}
	id := int(f.ev.Symbol)
	if (id >= len(f.names) || f.names[id] == "") && f.o.Symbols != nil && id != 0 {
		f.setName(f.ev.Symbol, f.o.Symbols.Name(f.ev.Symbol))
	}
	f.nameBuf = f.nameBuf[:0]
	if id < len(f.names) {
		f.nameBuf = append(f.nameBuf, f.names[id]...)
	}
	if len(f.nameBuf) == 0 && id != 0 {
		// Defined in a deleted segment and no table given: the event is
		// archived without its name (a replay rejects it as
		// unknown_symbol); counted and logged, never dropped silently.
		if f.unnamed.Add(1) == 1 {
			f.o.Logger.Error("sinks: archive: WAL event with a symbol id defined nowhere readable; archived without a name (give FollowOptions.Symbols)", "lsn", rec.LSN, "symbol_id", id)
		}
	}
	if err := f.a.AppendAt(rec.LSN, &f.ev, f.nameBuf); err != nil {
		return err
	}
	f.events.Add(1)
	return nil
}

func (f *WALFollower) setName(sym codec.Symbol, name string) {
	if sym > 1<<24 { // a bound on a damaged record's id, as replay's --max-symbols
		return
	}
	for len(f.names) <= int(sym) {
		f.names = append(f.names, "")
	}
	f.names[sym] = name
}
