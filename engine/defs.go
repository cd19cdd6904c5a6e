package engine

import (
	"encoding/json"
	"fmt"

	"qstream/ops"
)

// Run-time definitions: windows created, patterns registered or removed and
// the stream's filter and transform set through the API change the shards' operators, so a checkpoint's shard
// state only loads into operators built the same way. The engine keeps the
// list of these changes in order, writes it into every checkpoint (section
// "defs") and, on recovery, applies it to the fresh processors before their
// state is loaded, so recovery brings them back.
//
// A change is made durable by a checkpoint taken right after it, while the
// checkpoint lock is held, so no cut falls between the shards applying it
// and the checkpoint that records it; the call returns once that checkpoint
// is written. Without checkpoints a change lives as long as the process.
// While the engine is paused the change is recorded by the next checkpoint
// (a cut needs running shards), so a crash before that loses it, as it
// loses nothing else: no event was processed under it.

const sectionDefs = "defs"

// definition is one run-time change, as the checkpoint stores it (JSON).
type definition struct {
	Kind    string           `json:"kind"`             // "stream", "window", "pattern", "remove_pattern", "filter", "transform"
	Stream  StreamID         `json:"stream,omitempty"` // the stream it applies to ("stream": starts); "": the first
	Spec    json.RawMessage  `json:"spec,omitempty"`   // "stream": its StreamConfig.Spec
	Window  string           `json:"window,omitempty"`
	Pattern *ops.PatternSpec `json:"pattern,omitempty"`
	ID      int              `json:"id,omitempty"`   // remove_pattern: the pattern's id
	Expr    string           `json:"expr,omitempty"` // filter, transform ("" removes)
}

// lockDefs serialises a definition change with checkpoints and returns the
// function that makes it durable (a checkpoint, when checkpoints are
// configured and the engine runs unpaused) and unlocks.
func (e *Engine) lockDefs() (commit func(changed bool) error) {
	c := e.cut
	if c == nil || c.store == nil {
		return func(bool) error { return nil }
	}
	c.mu.Lock()
	return func(changed bool) error {
		defer c.mu.Unlock()
		if !changed || !e.started.Load() || e.stopping.Load() || c.closed.Load() || e.paused.Load() {
			return nil
		}
		if _, err := c.checkpointLocked(); err != nil {
			return fmt.Errorf("engine: the change is made but not yet durable: %w", err)
		}
		return nil
	}
}

// addDef records a change made on every shard.
func (e *Engine) addDef(d definition) {
	e.defsMu.Lock()
	e.defs = append(e.defs, d)
	e.defsMu.Unlock()
}

// removeDefs drops a stopped stream's definitions: its start and every
// change made to it.
func (e *Engine) removeDefs(id StreamID) {
	e.defsMu.Lock()
	defer e.defsMu.Unlock()
	keep := e.defs[:0]
	for _, d := range e.defs {
		if d.Stream != id {
			keep = append(keep, d)
		}
	}
	clear(e.defs[len(keep):])
	e.defs = keep
}

// defsSection returns the definitions as the checkpoint stores them, or nil
// when there are none.
func (e *Engine) defsSection() ([]byte, error) {
	e.defsMu.Lock()
	defer e.defsMu.Unlock()
	if len(e.defs) == 0 {
		return nil, nil
	}
	return json.Marshal(e.defs)
}

// restoreDefs applies a checkpoint's definitions to the processors (before
// their state is loaded; the shards do not run yet) and to the pattern
// registry, in their order.
func (e *Engine) restoreDefs(data []byte) error {
	var defs []definition
	if err := json.Unmarshal(data, &defs); err != nil {
		return stateErr("run-time definitions: %v", err)
	}
	for k, d := range defs {
		var err error
		var st *stream
		if d.Kind != "stream" {
			if st, err = e.lookup(d.Stream); err != nil {
				return stateErr("run-time definition %d (%s): %v", k, d.Kind, err)
			}
		}
		switch d.Kind {
		case "stream":
			err = e.startStream(StreamConfig{ID: d.Stream, Spec: d.Spec}, true)
		case "window":
			var specs []ops.WindowSpec
			if specs, err = ops.ParseWindowSpecs(d.Window); err == nil && len(specs) != 1 {
				err = fmt.Errorf("%q is not one window", d.Window)
			}
			if err == nil {
				_, err = e.applyWindow(st, specs[0])
			}
		case "pattern":
			if d.Pattern == nil {
				err = fmt.Errorf("no pattern")
				break
			}
			_, err = e.applyPattern(st, *d.Pattern)
		case "remove_pattern":
			err = e.applyRemovePattern(st, PatternID(d.ID))
		case "filter", "transform":
			err = e.applyStream(st, d)
		default:
			err = fmt.Errorf("unknown kind %q", d.Kind)
		}
		if err != nil {
			return stateErr("run-time definition %d (%s): %v", k, d.Kind, err)
		}
	}
	e.defsMu.Lock()
	e.defs = defs
	e.defsMu.Unlock()
	return nil
}
