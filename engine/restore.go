package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"qstream/checkpoint"
	"qstream/codec"
)

// Moving state between hosts. A checkpoint is a consistent cut of an
// engine's state (checkpoint.go); RestoreFrom loads one that another engine
// took, perhaps on another host, into a fresh engine whose WAL is new and
// empty: the scale-out group (package cluster) moves a partition this way.
// There is no WAL to replay: the caller resumes each source after its
// offset in the checkpoint (SourceOffset, or CheckpointSources before the
// engine exists), from the durable log the source comes from (a JetStream
// stream). The checkpoint's LSNs refer to the other engine's WAL and are
// not used; the checkpoints this engine takes refer to its own.
//
// The output starts afresh (RestoreOutput(nil) for a CheckpointedOutput):
// the caller makes sure that every output of the events before the cut was
// delivered before it published the checkpoint (the group waits for its
// sinks' acknowledgements), and the outputs after it are produced again,
// with the same keys, which the idempotent sinks absorb.

// RestoreFrom loads ck, taken by another engine built the same way (the
// same shards, operators and streams), and starts the engine. Call it
// instead of Start or Recover, before any feed publishes, on a fresh
// engine with an empty symbol table whose Config.Durability is a new,
// empty *WAL. On error the engine must be discarded.
func (e *Engine) RestoreFrom(ctx context.Context, ck *checkpoint.Checkpoint) (*RecoveryReport, error) {
	if e.wal == nil {
		return nil, fmt.Errorf("%w: RestoreFrom needs Config.Durability to be a *engine.WAL", ErrConfig)
	}
	if e.started.Load() {
		return nil, errors.New("engine: RestoreFrom after Start")
	}
	if ck == nil {
		return nil, errors.New("engine: RestoreFrom: no checkpoint")
	}
	if e.wal.LastLSN() != 0 {
		return nil, fmt.Errorf("%w: RestoreFrom needs an empty WAL (this one ends at LSN %d): use Recover for the engine's own", ErrConfig, e.wal.LastLSN())
	}
	start := time.Now()
	rep := &RecoveryReport{WAL: e.wal.w.Recovered(), Sources: map[string]uint64{}}
	c := e.cut
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &replayer{e: e, rep: rep, names: map[int]string{}, offsetIDs: map[int]bool{}, filter: map[int]uint64{},
		pubs: map[string]*Publisher{}, state: map[string]sourceState{}}
	if err := r.loadCheckpoint(ck, math.MaxUint64); err != nil {
		return rep, fmt.Errorf("engine: restore from checkpoint %d: %w", ck.ID, err)
	}
	for name, st := range r.state {
		st.lsn = 0 // of the other WAL: nothing here to filter
		r.state[name] = st
	}
	info := checkpoint.Info{ID: ck.ID, LSN: ck.LSN, CreatedNs: ck.CreatedNs, Sections: len(ck.Sections)}
	rep.Checkpoint = &info
	if c.output != nil {
		if err := c.output.RestoreOutput(nil); err != nil {
			return rep, fmt.Errorf("engine: restore: output: %w", err)
		}
	}
	for _, st := range e.streamOutputs() {
		if err := st.output.(CheckpointedOutput).RestoreOutput(nil); err != nil {
			return rep, fmt.Errorf("engine: restore: the output of stream %q: %w", st.id, err)
		}
	}
	e.wal.bind(e.symbols, codec.Symbol(e.symbols.Len()))
	e.mu.Lock()
	e.restored = r.state
	for name, st := range r.state {
		rep.Sources[name] = st.offset
	}
	e.mu.Unlock()
	if err := e.Start(); err != nil {
		return rep, err
	}
	rep.Symbols = e.symbols.Len()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// CheckpointSources returns the offset of every source a checkpoint holds
// (the largest Seq each had published at the cut), by publisher name.
func CheckpointSources(ck *checkpoint.Checkpoint) (map[string]uint64, error) {
	data, ok := ck.Get(sectionEngine)
	if !ok {
		return nil, stateErr("no engine section")
	}
	st, err := decodeEngineState(data)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(st.sources))
	for _, s := range st.sources {
		out[s.name] = max(out[s.name], s.offset)
	}
	return out, nil
}
