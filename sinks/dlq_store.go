package sinks

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"qstream/codec"
	"qstream/wal"
)

// DLQRecordType is the WAL record type of dead letters in DLQ segments.
const DLQRecordType = wal.RecordType(16)

// Defaults of DLQOptions.
const (
	DefaultDLQSegmentSize = 8 << 20
	DefaultDLQMaxBytes    = 1 << 30
)

// DLQOptions configure a DLQStore.
type DLQOptions struct {
	// WAL options of the segments. Zero fields get DLQ defaults: 8 MiB
	// segments, records up to DLQMaxRecord, group commit.
	WAL wal.Options
	// MaxBytes bounds the segments kept (default 1 GiB): past it the oldest
	// segments are deleted and their records counted as dropped. It is
	// checked every 256 writes and at Sync, so segments written in between
	// can exceed it by a little.
	MaxBytes int64
}

// DLQStore writes dead letters into DLQ segments: a WAL directory (package
// wal) of DLQRecordType records (see AppendDLQRecord), so they are
// checksummed, survive crashes the way the main WAL does, and can be listed,
// shown and re-injected with `qstream dlq`. It is safe for concurrent use
// (feeds reject from their goroutines, the engine's collector from its
// own). Errors are sticky.
type DLQStore struct {
	w       *wal.Writer
	symbols *codec.SymbolTable
	max     int64
	segSize int64

	mu      sync.Mutex // guards buf and err
	buf     []byte
	err     error
	n       atomic.Uint64
	dropped atomic.Uint64
}

// OpenDLQ opens (creating if needed) the DLQ segments in dir. symbols names
// the symbols of rejected events (nil: none).
func OpenDLQ(dir string, opts DLQOptions, symbols *codec.SymbolTable) (*DLQStore, error) {
	o := opts.WAL
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultDLQSegmentSize
	}
	if o.MaxRecordSize == 0 {
		o.MaxRecordSize = DLQMaxRecord
	}
	if o.BufferSize == 0 {
		o.BufferSize = 1 << 20
	}
	w, err := wal.Open(dir, o)
	if err != nil {
		return nil, fmt.Errorf("sinks: dlq: %w", err)
	}
	max := opts.MaxBytes
	if max <= 0 {
		max = DefaultDLQMaxBytes
	}
	return &DLQStore{w: w, symbols: symbols, max: max, segSize: o.SegmentSize, buf: make([]byte, 0, 4096)}, nil
}

// Write appends one dead letter. It does not wait for the disk (group
// commit); Sync or Close does.
func (d *DLQStore) Write(r *DeadLetterRecord) error {
	var sym string
	if d.symbols != nil {
		switch {
		case r.Event != nil:
			sym = d.symbols.Name(r.Event.Symbol)
		case r.Output != nil:
			sym = d.symbols.Name(r.Output.Symbol)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.buf = AppendDLQRecord(d.buf[:0], r, sym)
	if _, err := d.w.Append(DLQRecordType, d.buf); err != nil {
		d.err = fmt.Errorf("sinks: dlq: %w", err)
		return d.err
	}
	if d.n.Add(1)%256 == 0 {
		d.retain()
	}
	return nil
}

// retain deletes the oldest segments while more than MaxBytes are kept.
// Called with d.mu held.
func (d *DLQStore) retain() {
	segs := d.w.Segments()
	for len(segs) > 1 && int64(len(segs))*d.segSize > d.max {
		next, err := strconv.ParseUint(filepath.Base(segs[1])[:16], 16, 64)
		if err != nil {
			return
		}
		first := d.w.FirstLSN()
		if n, err := d.w.DeleteBefore(next); err != nil || n == 0 {
			return
		}
		d.dropped.Add(next - first)
		segs = d.w.Segments()
	}
}

// Count returns how many dead letters were written; Dropped how many old
// ones retention deleted.
func (d *DLQStore) Count() uint64   { return d.n.Load() }
func (d *DLQStore) Dropped() uint64 { return d.dropped.Load() }

// Sync makes every written dead letter durable and applies retention.
func (d *DLQStore) Sync() error {
	err := d.w.Sync()
	d.mu.Lock()
	d.retain()
	d.mu.Unlock()
	return err
}

// Dir is the DLQ directory.
func (d *DLQStore) Dir() string { return d.w.Dir() }

// Close syncs and closes the segments.
func (d *DLQStore) Close() error {
	if err := d.w.Close(); err != nil {
		return fmt.Errorf("sinks: dlq: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// DLQReader reads the dead letters of a DLQ directory in order.
type DLQReader struct {
	r *wal.Reader
}

// OpenDLQReader opens dir for reading from fromLSN (0: the oldest kept).
func OpenDLQReader(dir string, fromLSN uint64) (*DLQReader, error) {
	r, err := wal.OpenReader(dir, fromLSN)
	if err != nil {
		return nil, fmt.Errorf("sinks: dlq: %w", err)
	}
	return &DLQReader{r: r}, nil
}

// Next decodes the next dead letter into e (e.Raw valid until the next
// call). It returns io.EOF at the end; a damaged record is an error.
func (d *DLQReader) Next(e *DLQEntry) error {
	for {
		rec, err := d.r.Next()
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("sinks: dlq: %w", err)
		}
		if rec.Type != DLQRecordType {
			continue
		}
		e.LSN = rec.LSN
		if err := DecodeDLQRecord(rec.Payload, e); err != nil {
			seg, off := d.r.Position()
			return fmt.Errorf("sinks: dlq: record %d (%s offset %d): %w", rec.LSN, seg, off, err)
		}
		return nil
	}
}

// Close releases the reader.
func (d *DLQReader) Close() error { return d.r.Close() }
