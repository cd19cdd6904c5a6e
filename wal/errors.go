package wal

import (
	"errors"
	"fmt"

	"qstream/codec"
)

// Sentinel errors. Errors returned by this package wrap them, so test with
// errors.Is.
var (
	// ErrClosed is returned by Writer methods after Close.
	ErrClosed = errors.New("wal: writer closed")
	// ErrFailed is wrapped by every error a Writer returns after a write or
	// fsync failed. The failure is sticky and is never retried: the process
	// must exit and run recovery (Open) on restart.
	ErrFailed = errors.New("wal: writer failed; exit the process and recover on restart")
	// ErrRecordTooLarge is returned by Append for a payload above
	// Options.MaxRecordSize.
	ErrRecordTooLarge = errors.New("wal: record too large")
	// ErrBadType is returned by Append for a RecordType outside
	// [TypeData, TypeUserMax].
	ErrBadType = errors.New("wal: invalid record type")
	// ErrCorrupt is wrapped by every *CorruptionError.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrTruncated is returned by OpenReader when the requested LSN lies
	// before the oldest segment (DeleteBefore removed it).
	ErrTruncated = errors.New("wal: LSN precedes the oldest segment")
	// ErrLocked is returned by Open when another Writer holds the directory.
	ErrLocked = errors.New("wal: directory is locked by another writer")
	// ErrBadOptions is wrapped by Open for inconsistent Options.
	ErrBadOptions = errors.New("wal: bad options")
)

// CorruptionError reports a record or segment that is damaged in a way a
// torn write cannot explain. Open refuses to start with it; the Reader and
// Inspect report it.
type CorruptionError struct {
	Segment string       // path of the segment file
	Offset  int64        // byte offset of the bad record (or bad byte) in the segment
	Reason  codec.Reason // ReasonChecksum, ReasonOversize, ReasonMalformed or ReasonSequenceGap
	Detail  string       // a constant description
	// NextValid is, for damage in the last segment, the offset of the valid
	// record found after it that rules out a torn write; 0 otherwise.
	NextValid int64
}

func (e *CorruptionError) Error() string {
	if e.NextValid > 0 {
		return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s: %s (valid record follows at offset %d)",
			e.Segment, e.Offset, e.Reason, e.Detail, e.NextValid)
	}
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s: %s", e.Segment, e.Offset, e.Reason, e.Detail)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true and lets errors.As find a
// *codec.Error carrying the same Reason (what a DLQ or metric keys on).
func (e *CorruptionError) Unwrap() []error {
	off := int(e.Offset)
	if int64(off) != e.Offset {
		off = -1
	}
	return []error{ErrCorrupt, &codec.Error{Reason: e.Reason, Detail: e.Detail, Offset: off}}
}

// TornTail describes the unfinished end of the last segment: the bytes from
// Offset to Offset+Length that did not form a complete record.
type TornTail struct {
	Segment  string // path of the segment file
	Offset   int64  // where the last complete record ends
	Length   int64  // bytes from Offset to the last non-zero byte
	Reason   codec.Reason
	Detail   string
	CopyPath string // where Open saved the bytes before truncating; "" if not (yet) saved
}
