package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"qstream/codec"
	"qstream/internal/failpoint"
	"qstream/wal"
)

// WAL record types the engine writes. Event records carry a codec frame; the
// others are the control records that make a WAL replayable on its own:
// symbol definitions (ids are per process and dense), the watermarks each
// publisher sent (so a replay reproduces every late/on-time decision) and
// publisher registrations (frames carry the publisher id of the process that
// wrote them; these records map it to the source's name).
const (
	RecordEvent      = wal.TypeData      // one event: its compact codec frame (codec.AppendCompactFrame; the fixed frame of older WALs reads too: codec.DecodeStoredFrame)
	RecordSymbol     = wal.RecordType(2) // symbol id u32 | name
	RecordWatermark  = wal.RecordType(3) // publisher id u16 | 6 zero bytes | watermark i64 | seq u64
	RecordSource     = wal.RecordType(4) // publisher id u16 | flags u16 (bit 0: sourceOffsetIDs; others zero) | name
	RecordEventBatch = wal.RecordType(5) // the events a publisher made visible together (walbatch.go)
	watermarkRecLen  = 24                // size of a RecordWatermark payload
	maxSourceName    = 255               // bound on a source (publisher) name in records and checkpoints
)

// WAL is the engine's write-ahead log: a wal.Writer plus the engine's record
// types. Give it to Config.Durability; checkpoints and Recover need it.
//
// Every event a Publisher publishes is appended as a RecordEvent before it
// reaches a shard. A symbol id is logged (RecordSymbol) before the first
// event that uses it, a publisher (RecordSource) when it is created, and each
// watermark a publisher sends (RecordWatermark) when it sends it, so that
// the WAL alone replays to the same result.
type WAL struct {
	w *wal.Writer

	symMu     sync.Mutex // serialises symbol logging; guards symBuf
	symBuf    []byte
	symLogged atomic.Uint32 // every symbol id <= symLogged has its RecordSymbol appended
	symbols   *codec.SymbolTable
}

// OpenWAL opens (recovering if needed) the WAL in dir. When crash points are
// armed (see internal/failpoint) the file system is wrapped so that they fire.
func OpenWAL(dir string, opts wal.Options) (*WAL, error) {
	if failpoint.Any() {
		inner := opts.FS
		if inner == nil {
			inner = wal.OSFS{}
		}
		opts.FS = failpoint.FS(inner)
	}
	w, err := wal.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return NewWAL(w), nil
}

// NewWAL wraps an open wal.Writer.
func NewWAL(w *wal.Writer) *WAL {
	return &WAL{w: w, symBuf: make([]byte, 0, 4+codec.MaxSymbolLen)}
}

// Writer returns the underlying wal.Writer.
func (d *WAL) Writer() *wal.Writer { return d.w }

// Append logs one event frame (Durability).
func (d *WAL) Append(frame []byte) (uint64, error) { return d.w.Append(RecordEvent, frame) }

// WaitDurable returns once lsn is durable (Durability). After a failed
// fsync it returns the Writer's sticky error (wrapping wal.ErrFailed); the
// Writer's OnFatal has then been called and the process must exit.
func (d *WAL) WaitDurable(lsn uint64) error { return d.w.WaitDurable(context.Background(), lsn) }

// LastLSN is the LSN of the last appended record.
func (d *WAL) LastLSN() uint64 { return d.w.LastLSN() }

// DurableLSN is the highest durable LSN.
func (d *WAL) DurableLSN() uint64 { return d.w.DurableLSN() }

// Close flushes, syncs and closes the log.
func (d *WAL) Close() error { return d.w.Close() }

// bind gives the log the engine's symbol table; symbols up to logged are
// known to be in the log (or in the checkpoint it recovers from).
func (d *WAL) bind(t *codec.SymbolTable, logged codec.Symbol) {
	d.symMu.Lock()
	d.symbols = t
	d.symLogged.Store(uint32(logged))
	d.symMu.Unlock()
}

// needSymbol reports whether sym has not been logged yet: the inlined fast
// path of Publish.
func (d *WAL) needSymbol(sym codec.Symbol) bool { return uint32(sym) > d.symLogged.Load() }

// logSymbols appends a RecordSymbol for every id up to sym not yet logged.
// Ids are dense, so this also logs ids a feed interned but never published.
func (d *WAL) logSymbols(sym codec.Symbol) error {
	d.symMu.Lock()
	defer d.symMu.Unlock()
	for id := d.symLogged.Load() + 1; id <= uint32(sym); id++ {
		name := d.symbols.Name(codec.Symbol(id))
		if name == "" {
			return fmt.Errorf("engine: wal: symbol %d is not in the symbol table", id)
		}
		d.symBuf = AppendSymbolRecord(d.symBuf[:0], codec.Symbol(id), name)
		if _, err := d.w.Append(RecordSymbol, d.symBuf); err != nil {
			return err
		}
		d.symLogged.Store(id)
	}
	return nil
}

// logSource appends the RecordSource of a new publisher.
func (d *WAL) logSource(id int, name string, flags uint16) error {
	_, err := d.w.Append(RecordSource, appendSourceRecord(nil, id, flags, name))
	return err
}

// sourceOffsetIDs is the RecordSource flag of a publisher created with
// PublisherOptions.OffsetIDs. WALs written before it have no flags; a WAL
// with it set does not replay in builds from before it (they refuse the
// record), and only such publishers set it.
const sourceOffsetIDs = 1

// AppendSymbolRecord appends the payload of a RecordSymbol.
func AppendSymbolRecord(dst []byte, sym codec.Symbol, name string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(sym))
	return append(dst, name...)
}

// DecodeSymbolRecord decodes a RecordSymbol payload; name aliases p.
func DecodeSymbolRecord(p []byte) (sym codec.Symbol, name []byte, err error) {
	if len(p) < 5 || len(p) > 4+codec.MaxSymbolLen {
		return 0, nil, &codec.Error{Reason: codec.ReasonMalformed, Detail: "symbol record length out of range", Offset: 0}
	}
	sym = codec.Symbol(binary.LittleEndian.Uint32(p))
	if sym == 0 {
		return 0, nil, &codec.Error{Reason: codec.ReasonMalformed, Detail: "symbol record with id 0", Offset: 0}
	}
	return sym, p[4:], nil
}

// AppendWatermarkRecord appends the payload of a RecordWatermark.
func AppendWatermarkRecord(dst []byte, source int, wmNs int64, seq uint64) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(source))
	dst = append(dst, 0, 0, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(wmNs))
	return binary.LittleEndian.AppendUint64(dst, seq)
}

// DecodeWatermarkRecord decodes a RecordWatermark payload.
func DecodeWatermarkRecord(p []byte) (source int, wmNs int64, seq uint64, err error) {
	if len(p) != watermarkRecLen {
		return 0, 0, 0, &codec.Error{Reason: codec.ReasonMalformed, Detail: "watermark record length", Offset: 0}
	}
	if binary.LittleEndian.Uint32(p[2:])|uint32(binary.LittleEndian.Uint16(p[6:])) != 0 {
		return 0, 0, 0, &codec.Error{Reason: codec.ReasonMalformed, Detail: "watermark record reserved bytes", Offset: 2}
	}
	return int(binary.LittleEndian.Uint16(p)), int64(binary.LittleEndian.Uint64(p[8:])), binary.LittleEndian.Uint64(p[16:]), nil
}

// AppendSourceRecord appends the payload of a RecordSource with no flags.
func AppendSourceRecord(dst []byte, id int, name string) []byte {
	return appendSourceRecord(dst, id, 0, name)
}

func appendSourceRecord(dst []byte, id int, flags uint16, name string) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(id))
	dst = binary.LittleEndian.AppendUint16(dst, flags)
	if len(name) > maxSourceName {
		name = name[:maxSourceName]
	}
	return append(dst, name...)
}

// DecodeSourceRecord decodes a RecordSource payload; name aliases p.
func DecodeSourceRecord(p []byte) (id int, name []byte, err error) {
	id, _, name, err = decodeSourceRecord(p)
	return id, name, err
}

// decodeSourceRecord is DecodeSourceRecord with the record's flags.
func decodeSourceRecord(p []byte) (id int, flags uint16, name []byte, err error) {
	if len(p) < 4 || len(p) > 4+maxSourceName {
		return 0, 0, nil, &codec.Error{Reason: codec.ReasonMalformed, Detail: "source record length out of range", Offset: 0}
	}
	if flags = binary.LittleEndian.Uint16(p[2:]); flags&^sourceOffsetIDs != 0 {
		return 0, 0, nil, &codec.Error{Reason: codec.ReasonMalformed, Detail: "source record reserved bytes", Offset: 2}
	}
	return int(binary.LittleEndian.Uint16(p)), flags, p[4:], nil
}

// logWatermark appends the RecordWatermark of a watermark this Publisher is
// about to send, so that a replay sends it at the same point.
func (p *Publisher) logWatermark(wm int64) error {
	w := p.e.wal
	if w == nil || p.replay {
		return nil
	}
	p.frame = AppendWatermarkRecord(p.frame[:0], p.id, wm, p.lastSeq)
	_, err := w.w.Append(RecordWatermark, p.frame)
	return err
}
