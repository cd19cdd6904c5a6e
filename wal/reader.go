package wal

import (
	"errors"
	"fmt"
	"io"
	"os"

	"qstream/codec"
)

var errReaderClosed = errors.New("wal: reader closed")

// Record is one record as returned by a Reader.
type Record struct {
	LSN     uint64
	Type    RecordType
	Payload []byte // aliases the Reader's buffer: valid until its next call
}

// Reader iterates the records of a WAL directory in LSN order, verifying
// every checksum. It reads each segment through one large buffer and does
// not allocate per record (it allocates when it opens a segment). A Reader
// is for one goroutine.
//
// The set of segments is taken when the Reader is opened. It may run beside
// a Writer on the same directory: records up to the Writer's DurableLSN are
// complete; a record being written at that moment may look like a torn tail
// and end the iteration. Reopen from the last LSN + 1 to follow a live log.
//
// At the end of the last segment the Reader stops at the first all-zero
// record header without checking the rest of the file (Open and Inspect do);
// at a damaged record it applies the same rule as Open: a torn tail ends the
// iteration (see TornTail), anything else is a *CorruptionError.
type Reader struct {
	fs     FS
	segs   []segRef
	idx    int // index of the open segment in segs
	want   uint64
	f      File
	sc     scanner
	from   uint64
	curOff int64

	peeked bool
	peek   Record
	torn   *TornTail
	err    error // sticky: io.EOF or the failure
}

// OpenReader opens the WAL in dir for reading from fromLSN: the first
// record returned has the smallest LSN >= fromLSN; 0 means from the oldest
// segment. It returns ErrTruncated when fromLSN lies before the oldest
// segment (its records were deleted).
func OpenReader(dir string, fromLSN uint64) (*Reader, error) {
	return OpenReaderFS(OSFS{}, dir, fromLSN)
}

// OpenReaderFS is OpenReader on a given file system.
func OpenReaderFS(fs FS, dir string, fromLSN uint64) (*Reader, error) {
	ls, err := listDir(fs, dir)
	if err != nil {
		return nil, err
	}
	r := &Reader{fs: fs, segs: ls.segs, from: fromLSN, idx: -1}
	if len(ls.segs) == 0 {
		r.err = io.EOF
		return r, nil
	}
	if fromLSN > 0 && fromLSN < ls.segs[0].first {
		return nil, fmt.Errorf("%w: LSN %d, oldest segment starts at %d", ErrTruncated, fromLSN, ls.segs[0].first)
	}
	start := 0
	for i, s := range ls.segs {
		if s.first <= fromLSN {
			start = i
		}
	}
	r.idx = start - 1
	r.want = ls.segs[start].first
	return r, nil
}

// Next returns the next record, io.EOF at the end of the log, or a
// *CorruptionError (also returned by every later call).
func (r *Reader) Next() (Record, error) {
	if r.peeked {
		r.peeked = false
		return r.peek, nil
	}
	for r.err == nil {
		if r.f == nil && !r.openNext() {
			break
		}
		off := r.sc.off
		f, ok := r.sc.next()
		if ok {
			if f.lsn < r.from {
				continue
			}
			r.curOff = off
			return Record{LSN: f.lsn, Type: f.typ, Payload: f.payload}, nil
		}
		switch r.sc.end {
		case endSealed:
			r.want = r.sc.sealNext
			r.closeSeg()
			if r.idx == len(r.segs)-1 {
				r.err = io.EOF
			}
		case endTorn:
			t := r.sc.torn
			r.torn = &t
			r.err = io.EOF
		case endCorrupt:
			ce := r.sc.corrupt
			r.err = &ce
		default:
			r.err = io.EOF
		}
	}
	return Record{}, r.err
}

// openNext opens the next segment; false when there is none or it fails.
func (r *Reader) openNext() bool {
	r.idx++
	if r.idx >= len(r.segs) {
		r.err = io.EOF
		return false
	}
	s := r.segs[r.idx]
	if s.first != r.want {
		r.err = &CorruptionError{Segment: s.path, Offset: 0, Reason: codec.ReasonSequenceGap, Detail: "segment first LSN does not follow the previous segment"}
		return false
	}
	f, _, err := openScan(r.fs, &r.sc, s.path, os.O_RDONLY, s.first, r.idx == len(r.segs)-1, false)
	if err != nil {
		r.err = err
		return false
	}
	r.f = f
	if r.sc.end == endCorrupt {
		ce := r.sc.corrupt
		r.err = &ce
		return false
	}
	return true
}

func (r *Reader) closeSeg() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// SkipUntil advances to the first record for which match returns true; that
// record is returned by the next call to Next. It returns io.EOF if no
// record matches. Replay from an event time T is SkipUntil with a predicate
// that decodes the payload's time and compares it with T.
func (r *Reader) SkipUntil(match func(Record) bool) error {
	for {
		rec, err := r.Next()
		if err != nil {
			return err
		}
		if match(rec) {
			r.peek, r.peeked = rec, true
			return nil
		}
	}
}

// Position returns the segment path and byte offset of the record last
// returned by Next.
func (r *Reader) Position() (segment string, offset int64) {
	if r.idx < 0 || r.idx >= len(r.segs) {
		return "", 0
	}
	return r.segs[r.idx].path, r.curOff
}

// TornTail reports the torn tail that ended the iteration, or nil.
func (r *Reader) TornTail() *TornTail { return r.torn }

// Close releases the open segment.
func (r *Reader) Close() error {
	r.closeSeg()
	if r.err == nil {
		r.err = errReaderClosed
	}
	return nil
}
