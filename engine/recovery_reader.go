package engine

import (
	"errors"
	"fmt"

	"qstream/checkpoint"
	"qstream/codec"
	"qstream/wal"
)

// WALEventsOptions configure OpenWALEvents.
type WALEventsOptions struct {
	// Symbols is the symbol table of the engine that replays the events;
	// the WAL's symbol ids (those of the process that wrote it) are mapped
	// to it by name. Required.
	Symbols *codec.SymbolTable
	// FromLSN: events with a smaller LSN are skipped.
	FromLSN uint64
	// FromTimeNs, when HasFromTime: events are skipped until the first one
	// (at or after FromLSN) whose event time is >= FromTimeNs; everything
	// after it is returned. Records are in arrival order, not event-time
	// order, so later events may be older than FromTimeNs.
	FromTimeNs  int64
	HasFromTime bool
	// CheckpointDir, if set, names the symbols whose definitions were in
	// WAL segments deleted after a checkpoint (the newest valid checkpoint
	// holds the whole table).
	CheckpointDir string
}

// WALEvents reads the events of an engine's WAL for replay: `qstream replay
// --format wal`. It reads every record from the oldest segment on (symbol
// definitions before the starting point are needed), returns the event
// records selected by the options, and ignores watermark and publisher
// records (a replay computes its own watermarks).
type WALEvents struct {
	r       *wal.Reader
	o       WALEventsOptions
	names   map[uint32]string
	ids     map[uint32]codec.Symbol // WAL id → id in o.Symbols
	started bool
	lsn     uint64
	// The event batch being read (RecordEventBatch), its LSN and payload.
	batch    EventBatch
	inBatch  bool
	batchLSN uint64
	batchRaw []byte
}

// WALRecordError is a record that cannot be replayed (an event whose symbol
// is not defined, an invalid frame); the reader goes on after it.
type WALRecordError struct {
	LSN uint64
	Raw []byte // the record's payload, valid until the next call
	Err error
}

func (e *WALRecordError) Error() string { return fmt.Sprintf("wal record %d: %v", e.LSN, e.Err) }
func (e *WALRecordError) Unwrap() error { return e.Err }

// OpenWALEvents opens the WAL in dir for replay.
func OpenWALEvents(dir string, o WALEventsOptions) (*WALEvents, error) {
	if o.Symbols == nil {
		return nil, errors.New("engine: OpenWALEvents: no symbol table")
	}
	w := &WALEvents{o: o, names: map[uint32]string{}, ids: map[uint32]codec.Symbol{}, started: !o.HasFromTime}
	if o.CheckpointDir != "" {
		ck, _, err := checkpoint.LoadLatest(o.CheckpointDir)
		switch {
		case err == nil:
			if data, ok := ck.Get(sectionEngine); ok {
				st, err := decodeEngineState(data)
				if err != nil {
					return nil, fmt.Errorf("engine: checkpoint %d: %w", ck.ID, err)
				}
				for i, n := range st.symbols {
					w.names[uint32(i+1)] = n
				}
			}
		case errors.Is(err, checkpoint.ErrNoCheckpoint):
		default:
			return nil, err
		}
	}
	r, err := wal.OpenReader(dir, 0)
	if err != nil {
		return nil, err
	}
	w.r = r
	return w, nil
}

// LSN is the LSN of the record last returned.
func (w *WALEvents) LSN() uint64 { return w.lsn }

// Next decodes the next selected event into ev. It returns io.EOF at the
// end (a torn tail ends the log quietly), a *WALRecordError for a record it
// skips, and any other error when the log cannot be read further
// (corruption, with the segment and offset).
func (w *WALEvents) Next(ev *codec.Event) error {
	for {
		if w.inBatch {
			ok, err := w.batch.Next(ev)
			if err != nil {
				w.inBatch = false
				return &WALRecordError{LSN: w.batchLSN, Raw: w.batchRaw, Err: err}
			}
			if ok {
				if selected, err := w.finish(ev, w.batchLSN, w.batchRaw); selected {
					return err
				}
				continue
			}
			w.inBatch = false
		}
		rec, err := w.r.Next()
		if err != nil {
			return err
		}
		switch rec.Type {
		case RecordSymbol:
			sym, name, err := DecodeSymbolRecord(rec.Payload)
			if err != nil {
				return &WALRecordError{LSN: rec.LSN, Raw: rec.Payload, Err: err}
			}
			if w.names[uint32(sym)] != string(name) {
				w.names[uint32(sym)] = string(name)
				delete(w.ids, uint32(sym)) // a later process reused the id
			}
		case RecordEvent:
			if rec.LSN < w.o.FromLSN {
				continue
			}
			if _, err := codec.DecodeStoredFrame(rec.Payload, ev); err != nil {
				return &WALRecordError{LSN: rec.LSN, Raw: rec.Payload, Err: err}
			}
			if selected, err := w.finish(ev, rec.LSN, rec.Payload); selected {
				return err
			}
		case RecordEventBatch:
			if rec.LSN < w.o.FromLSN {
				continue
			}
			if err := w.batch.Reset(rec.Payload); err != nil {
				return &WALRecordError{LSN: rec.LSN, Raw: rec.Payload, Err: err}
			}
			w.inBatch, w.batchLSN, w.batchRaw = true, rec.LSN, rec.Payload
		}
	}
}

// finish selects an event read from the record at lsn (the time filter)
// and maps its symbol; selected false: skip it.
func (w *WALEvents) finish(ev *codec.Event, lsn uint64, raw []byte) (selected bool, err error) {
	if !w.started {
		if ev.TsNs < w.o.FromTimeNs {
			return false, nil
		}
		w.started = true
	}
	w.lsn = lsn
	id, ok := w.ids[uint32(ev.Symbol)]
	if !ok && ev.Symbol != 0 {
		name, known := w.names[uint32(ev.Symbol)]
		if !known {
			return true, &WALRecordError{LSN: lsn, Raw: raw, Err: &codec.Error{Reason: codec.ReasonUnknownSymbol, Detail: "symbol id not defined in the WAL or checkpoint", Offset: -1}}
		}
		if id, err = w.o.Symbols.InternString(name); err != nil {
			return true, &WALRecordError{LSN: lsn, Raw: raw, Err: &codec.Error{Reason: codec.ReasonUnknownSymbol, Detail: "symbol table full", Offset: -1}}
		}
		w.ids[uint32(ev.Symbol)] = id
	}
	ev.Symbol = id
	ev.IngestNs = 0
	ev.Flags |= codec.FlagReplay
	return true, nil
}

// Close releases the reader.
func (w *WALEvents) Close() error {
	if w.r == nil {
		return nil
	}
	return w.r.Close()
}
