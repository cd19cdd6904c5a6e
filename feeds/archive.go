package feeds

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"qstream/codec"
)

// The archive of raw input events (`--sink archive://DIR`, written by
// sinks.Archive, read back by `qstream replay --format archive`).
//
// # Files
//
// An archive is a directory of files, each one zstd stream:
//
//	<first>-<last>.qarc      complete: records with positions first..last
//	<first>.qarc.partial     the file being written (at most one)
//	*.tmp                    a file being finalised; removed on open
//	*.qarc.partial.torn      a partial file cut by a crash, kept after its
//	                         readable records were recovered; never read
//
// first and last are 16 lower-case hex digits, so names sort in position
// order. A file is written under its .partial name and renamed when it is
// complete (rotation, Close), so a crash leaves complete files plus at most
// one partial file, whose readable records the writer recovers on its next
// open (see sinks.OpenArchive).
//
// # Records
//
// The decompressed stream starts with a 16-byte header (little-endian):
//
//	0  magic    "QARC"
//	4  version  u16 (1)
//	6  reserved u16, zero
//	8  first    u64, the first record's position (equal to the file name's)
//
// followed by records:
//
//	0  length   u32, payload bytes: codec.FrameSize + len(symbol name)
//	4  crc      u32, CRC-32C (Castagnoli) of bytes 8..end, then of bytes 0..3
//	8  position u64, strictly increasing through the archive
//	16 payload  the event's codec frame (its Symbol field is the writer's
//	            id, not used by readers), then the symbol's name
//	            (0..codec.MaxSymbolLen bytes)
//
// The position is the event's WAL LSN when the archive follows a WAL (`qstream
// run`), or a counter (last + 1) when events are appended directly (`qstream
// replay --sink archive://`). The name travels with every event so that each
// file reads alone, in any process; zstd makes the repetition nearly free.
// Offsets in errors are offsets in the decompressed stream.

// Archive file names.
const (
	ArchiveExt        = ".qarc"
	ArchivePartialExt = ".qarc.partial"
	archiveMagic      = "QARC"
	archiveVersion    = 1
	// ArchiveHeaderSize is the size of a file's header.
	ArchiveHeaderSize = 16
	// ArchiveRecordHeader is the size of a record's length, crc and position.
	ArchiveRecordHeader = 16
	archiveMaxPayload   = codec.FrameSize + codec.MaxSymbolLen
)

var archiveCRC = crc32.MakeTable(crc32.Castagnoli)

// ArchiveFileName returns the name of a complete file.
func ArchiveFileName(first, last uint64) string {
	return fmt.Sprintf("%016x-%016x%s", first, last, ArchiveExt)
}

// ArchivePartialName returns the name of the file being written.
func ArchivePartialName(first uint64) string {
	return fmt.Sprintf("%016x%s", first, ArchivePartialExt)
}

// ArchiveFile is one file of an archive directory.
type ArchiveFile struct {
	Path        string
	First, Last uint64 // Last is 0 for a partial file
	Partial     bool
}

// ParseArchiveName parses a file name made by ArchiveFileName or
// ArchivePartialName.
func ParseArchiveName(name string) (f ArchiveFile, ok bool) {
	if base, found := strings.CutSuffix(name, ArchivePartialExt); found {
		first, err := strconv.ParseUint(base, 16, 64)
		if err != nil || len(base) != 16 {
			return f, false
		}
		return ArchiveFile{Path: name, First: first, Partial: true}, true
	}
	base, found := strings.CutSuffix(name, ArchiveExt)
	if !found || len(base) != 33 || base[16] != '-' {
		return f, false
	}
	first, err1 := strconv.ParseUint(base[:16], 16, 64)
	last, err2 := strconv.ParseUint(base[17:], 16, 64)
	if err1 != nil || err2 != nil || last < first {
		return f, false
	}
	return ArchiveFile{Path: name, First: first, Last: last}, true
}

// ListArchive returns the files of the archive in dir in position order
// (a partial file after the complete files it follows).
func ListArchive(dir string) ([]ArchiveFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var files []ArchiveFile
	for _, e := range ents {
		if f, ok := ParseArchiveName(e.Name()); ok && e.Type().IsRegular() {
			f.Path = filepath.Join(dir, e.Name())
			files = append(files, f)
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].First != files[j].First {
			return files[i].First < files[j].First
		}
		return !files[i].Partial && files[j].Partial
	})
	return files, nil
}

// IsArchive reports whether path is a directory holding archive files or
// a file named like one.
func IsArchive(path string) bool {
	if strings.HasPrefix(path, "s3://") {
		return true // an archive the s3 uploader wrote (aws_s3.go)
	}
	if _, ok := ParseArchiveName(filepath.Base(path)); ok {
		return true
	}
	files, err := ListArchive(path)
	return err == nil && len(files) > 0
}

// AppendArchiveHeader appends the header of a file whose first record has
// position first.
func AppendArchiveHeader(dst []byte, first uint64) []byte {
	dst = append(dst, archiveMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, archiveVersion)
	dst = append(dst, 0, 0)
	return binary.LittleEndian.AppendUint64(dst, first)
}

// AppendArchiveRecord appends the record of ev at position pos with the
// symbol's name (at most codec.MaxSymbolLen bytes; longer names are cut,
// which cannot happen for a name a SymbolTable holds). It does not allocate
// when dst has room for ArchiveRecordHeader + codec.FrameSize + len(name).
func AppendArchiveRecord(dst []byte, pos uint64, ev *codec.Event, name []byte) []byte {
	if len(name) > codec.MaxSymbolLen {
		name = name[:codec.MaxSymbolLen]
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(codec.FrameSize+len(name)))
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, pos)
	dst = codec.AppendFrame(dst, ev)
	dst = append(dst, name...)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:], archiveRecordCRC(rec))
	return dst
}

func archiveRecordCRC(rec []byte) uint32 {
	c := crc32.Update(0, archiveCRC, rec[8:])
	return crc32.Update(c, archiveCRC, rec[:4])
}

// ArchiveError is damage in an archive file: where (the file and the offset
// in its decompressed stream) and what.
type ArchiveError struct {
	File   string
	Offset int64
	Reason codec.Reason
	Detail string
	Err    error // the decompressor's error, if any
	// Torn: the stream ends inside a record or block, as the file being
	// written when a process crashed does.
	Torn bool
}

func (e *ArchiveError) Error() string {
	s := fmt.Sprintf("archive %s: offset %d: %s", e.File, e.Offset, e.Detail)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.As find a *codec.Error with the reason.
func (e *ArchiveError) Unwrap() []error {
	errs := []error{&codec.Error{Reason: e.Reason, Detail: e.Detail, Offset: int(e.Offset)}}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// ArchiveRecord is one record as an ArchiveScanner returns it. Frame, Name
// and Raw alias the scanner's buffer: valid until its next call.
type ArchiveRecord struct {
	Pos    uint64
	Offset int64  // of the record in the decompressed stream
	Frame  []byte // codec.FrameSize bytes
	Name   []byte
	Raw    []byte // the whole record
}

// ArchiveScanner reads the records of one file at a time, verifying each
// checksum. It keeps its decompressor and buffers across files (Reset) and
// does not allocate per record.
type ArchiveScanner struct {
	dec  *zstd.Decoder
	br   *bufio.Reader
	f    *os.File
	path string
	off  int64
	buf  []byte
	err  error
}

// NewArchiveScanner returns a scanner; Reset it onto a file.
func NewArchiveScanner() (*ArchiveScanner, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &ArchiveScanner{dec: dec, buf: make([]byte, ArchiveRecordHeader+archiveMaxPayload)}, nil
}

// Reset opens path and checks its header against first (the position its
// name promises).
func (s *ArchiveScanner) Reset(path string, first uint64) error {
	s.closeFile()
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	s.f, s.path, s.off, s.err = f, path, 0, nil
	if err := s.dec.Reset(f); err != nil {
		s.err = &ArchiveError{File: path, Reason: codec.ReasonMalformed, Detail: "not a zstd stream", Err: err}
		return s.err
	}
	if s.br == nil {
		s.br = bufio.NewReaderSize(s.dec, 64<<10)
	} else {
		s.br.Reset(s.dec)
	}
	h := s.buf[:ArchiveHeaderSize]
	if err := s.read(h); err != nil {
		if err == io.EOF {
			s.err = &ArchiveError{File: path, Reason: codec.ReasonMalformed, Detail: "empty file", Torn: true}
		}
		return s.err
	}
	if string(h[:4]) != archiveMagic || binary.LittleEndian.Uint16(h[4:]) != archiveVersion || binary.LittleEndian.Uint16(h[6:]) != 0 {
		s.err = &ArchiveError{File: path, Reason: codec.ReasonMalformed, Detail: "bad file header"}
		return s.err
	}
	if got := binary.LittleEndian.Uint64(h[8:]); got != first {
		s.err = &ArchiveError{File: path, Reason: codec.ReasonSequenceGap, Detail: fmt.Sprintf("header says first position %d, the name %d", got, first)}
		return s.err
	}
	return nil
}

// read fills b from the stream; a short read is a torn *ArchiveError.
func (s *ArchiveScanner) read(b []byte) error {
	n, err := io.ReadFull(s.br, b)
	if err == nil {
		s.off += int64(n)
		return nil
	}
	if err == io.EOF {
		return io.EOF
	}
	torn := errors.Is(err, io.ErrUnexpectedEOF)
	detail := "truncated record"
	if !torn {
		detail = "undecodable compressed data"
	}
	s.err = &ArchiveError{File: s.path, Offset: s.off + int64(n), Reason: codec.ReasonMalformed, Detail: detail, Err: err, Torn: torn}
	return s.err
}

// Next returns the next record, io.EOF at the clean end of the file, or an
// *ArchiveError: damage (after which the file cannot be read further), or,
// for a record whose checksum does not match but whose length is plausible,
// one with Reason codec.ReasonChecksum after which Next goes on with the
// following record.
func (s *ArchiveScanner) Next() (ArchiveRecord, error) {
	if s.err != nil {
		return ArchiveRecord{}, s.err
	}
	if s.f == nil {
		return ArchiveRecord{}, io.EOF
	}
	off := s.off
	h := s.buf[:8]
	if err := s.read(h); err != nil {
		if err == io.EOF {
			s.err = io.EOF
		} else if ae, ok := err.(*ArchiveError); ok {
			ae.Offset = off // report the record, not the byte inside it
		}
		return ArchiveRecord{}, s.err
	}
	n := int(binary.LittleEndian.Uint32(h))
	if n < codec.FrameSize || n > archiveMaxPayload {
		s.err = &ArchiveError{File: s.path, Offset: off, Reason: codec.ReasonMalformed, Detail: fmt.Sprintf("record length %d outside %d..%d", n, codec.FrameSize, archiveMaxPayload)}
		return ArchiveRecord{}, s.err
	}
	rec := s.buf[:ArchiveRecordHeader+n]
	if err := s.read(rec[8:]); err != nil {
		if err == io.EOF {
			s.err = &ArchiveError{File: s.path, Offset: off, Reason: codec.ReasonMalformed, Detail: "truncated record", Err: io.ErrUnexpectedEOF, Torn: true}
		} else if ae, ok := err.(*ArchiveError); ok {
			ae.Offset = off
		}
		return ArchiveRecord{}, s.err
	}
	r := ArchiveRecord{Pos: binary.LittleEndian.Uint64(rec[8:]), Offset: off, Frame: rec[16 : 16+codec.FrameSize], Name: rec[16+codec.FrameSize:], Raw: rec}
	if binary.LittleEndian.Uint32(rec[4:]) != archiveRecordCRC(rec) {
		return r, &ArchiveError{File: s.path, Offset: off, Reason: codec.ReasonChecksum, Detail: "record checksum mismatch"}
	}
	return r, nil
}

// Offset is the decompressed offset reached in the current file: after
// the last record read.
func (s *ArchiveScanner) Offset() int64 { return s.off }

func (s *ArchiveScanner) closeFile() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// Close releases the file and the decompressor.
func (s *ArchiveScanner) Close() error {
	s.closeFile()
	if s.dec != nil {
		s.dec.Close()
		s.dec = nil
	}
	return nil
}

// ArchiveReaderOptions configure OpenArchiveReader.
type ArchiveReaderOptions struct {
	// Symbols is the table the events' symbols are interned in. Required.
	Symbols *codec.SymbolTable
}

// ArchiveStats count what an ArchiveReader read.
type ArchiveStats struct {
	Files, Events uint64
	Skipped       uint64 // records at or below a position already read (a partial file overlapping a complete one)
	Damaged       uint64 // records with a checksum mismatch, returned as *RecordError
	TornTail      bool   // the partial file ended inside a record, as a crash leaves it
}

// ArchiveReader reads an archive back in position order: `qstream replay
// --format archive`. It is a Reader: a record whose checksum does not match
// is a *RecordError (Pos.Offset = its offset in the decompressed stream; the
// error names the file) and the reading goes on; damage that makes a
// complete file unreadable further (a bad length, undecodable compressed
// data, a truncated complete file) is an *ArchiveError that ends the
// reading. The partial file is read up to its last complete record. Events
// carry codec.FlagReplay and IngestNs 0 (the replaying engine stamps its
// own).
type ArchiveReader struct {
	files []ArchiveFile
	idx   int
	sc    *ArchiveScanner
	cache *codec.SymbolCache
	last  uint64
	any   bool
	stats ArchiveStats
	// tmpDir holds an s3:// archive's files (aws_s3.go), removed by Close.
	tmpDir string
}

// OpenArchiveReader opens path: an archive directory or one archive file.
func OpenArchiveReader(path string, o ArchiveReaderOptions) (*ArchiveReader, error) {
	if o.Symbols == nil {
		return nil, errors.New("archive: OpenArchiveReader: no symbol table")
	}
	if strings.HasPrefix(path, "s3://") {
		return openS3ArchiveReader(path, o)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var files []ArchiveFile
	if st.IsDir() {
		if files, err = ListArchive(path); err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("archive: %s holds no archive files (*%s)", path, ArchiveExt)
		}
	} else {
		f, ok := ParseArchiveName(filepath.Base(path))
		if !ok {
			return nil, fmt.Errorf("archive: %s is not named like an archive file (<first>-<last>%s)", path, ArchiveExt)
		}
		f.Path = path
		files = []ArchiveFile{f}
	}
	sc, err := NewArchiveScanner()
	if err != nil {
		return nil, err
	}
	return &ArchiveReader{files: files, idx: -1, sc: sc, cache: codec.NewSymbolCache(o.Symbols)}, nil
}

// Stats returns the counts so far.
func (r *ArchiveReader) Stats() ArchiveStats { return r.stats }

// Next implements Reader.
func (r *ArchiveReader) Next(ev *codec.Event) error {
	for {
		if r.idx < 0 {
			r.idx = 0
			if err := r.open(); err != nil {
				return err
			}
			continue
		}
		if r.idx >= len(r.files) {
			return io.EOF
		}
		f := &r.files[r.idx]
		rec, err := r.sc.Next()
		if err == io.EOF {
			r.idx++
			if r.idx >= len(r.files) {
				return io.EOF
			}
			if err := r.open(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			var ae *ArchiveError
			if errors.As(err, &ae) {
				if ae.Reason == codec.ReasonChecksum {
					r.stats.Damaged++
					return &RecordError{Pos: Position{Offset: rec.Offset}, Raw: rec.Raw, Err: err}
				}
				if ae.Torn && f.Partial {
					r.stats.TornTail = true
					r.idx = len(r.files)
					return io.EOF
				}
			}
			return err
		}
		if r.any && rec.Pos <= r.last {
			r.stats.Skipped++
			continue
		}
		if !f.Partial && (rec.Pos < f.First || rec.Pos > f.Last) {
			return &ArchiveError{File: f.Path, Offset: rec.Offset, Reason: codec.ReasonSequenceGap, Detail: fmt.Sprintf("position %d outside the file's range %d..%d", rec.Pos, f.First, f.Last)}
		}
		if _, err := codec.DecodeFrame(rec.Frame, ev); err != nil {
			r.stats.Damaged++
			return &RecordError{Pos: Position{Offset: rec.Offset}, Raw: rec.Raw, Err: fmt.Errorf("archive %s: offset %d: %w", f.Path, rec.Offset, err)}
		}
		r.last, r.any = rec.Pos, true
		sym := codec.Symbol(0)
		if len(rec.Name) > 0 {
			if sym, err = r.cache.Intern(rec.Name); err != nil {
				return &RecordError{Pos: Position{Offset: rec.Offset}, Raw: rec.Raw, Err: &codec.Error{Reason: codec.ReasonUnknownSymbol, Detail: err.Error(), Offset: -1}}
			}
		}
		ev.Symbol = sym
		ev.IngestNs = 0
		ev.Flags |= codec.FlagReplay
		r.stats.Events++
		return nil
	}
}

func (r *ArchiveReader) open() error {
	f := r.files[r.idx]
	r.stats.Files++
	err := r.sc.Reset(f.Path, f.First)
	var ae *ArchiveError
	if err != nil && f.Partial && errors.As(err, &ae) {
		r.stats.TornTail = true // crashed before the header reached the disk
		r.idx = len(r.files)
		return nil
	}
	return err
}

// Close implements Reader.
func (r *ArchiveReader) Close() error {
	err := r.sc.Close()
	if r.tmpDir != "" {
		os.RemoveAll(r.tmpDir)
	}
	return err
}
