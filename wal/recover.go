package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"qstream/codec"
)

// Recovery reports what Open found and repaired.
type Recovery struct {
	Segments    int       // segments on disk after Open
	FirstLSN    uint64    // first LSN of the oldest segment
	LastLSN     uint64    // the last complete record (0 if none)
	Torn        *TornTail // the torn tail that was truncated, with the copy's path; nil if none
	RemovedTemp []string  // unfinished segment creations removed
}

// lockName is the lock file Open holds in the WAL directory.
const lockName = "LOCK"

// dirListing is what a WAL directory holds.
type dirListing struct {
	segs  []segRef // by first LSN
	temps []string // unfinished segment creations (*.wal.tmp)
	torn  []string // copies of torn tails kept by earlier recoveries
}

func listDir(fs FS, dir string) (dirListing, error) {
	var ls dirListing
	names, err := fs.ReadDir(dir)
	if err != nil {
		return ls, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".wal.tmp"):
			ls.temps = append(ls.temps, filepath.Join(dir, n))
		case strings.Contains(n, ".wal.torn-"):
			ls.torn = append(ls.torn, filepath.Join(dir, n))
		default:
			if first, ok := parseSegmentName(n); ok {
				ls.segs = append(ls.segs, segRef{first: first, path: filepath.Join(dir, n)})
			}
		}
	}
	slices.SortFunc(ls.segs, func(a, b segRef) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	slices.Sort(ls.temps)
	slices.Sort(ls.torn)
	return ls, nil
}

// openScan opens a segment and starts sc on it. When the header is bad sc
// ends as corrupt and the file is still returned.
func openScan(fs FS, sc *scanner, path string, flag int, wantFirst uint64, last, verifyTail bool) (File, int64, error) {
	f, err := fs.OpenFile(path, flag, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("wal: open segment: %w", err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("wal: stat segment %s: %w", path, err)
	}
	if err := sc.open(f, size, path, wantFirst, last, verifyTail); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// open reads the segment header from ra and starts sc on it, growing the
// read buffer if the segment needs a larger one. The buffer never exceeds
// the file's size or twice the largest frame the header allows, so a damaged
// header cannot make it allocate more than the data it describes.
func (sc *scanner) open(ra io.ReaderAt, size int64, path string, wantFirst uint64, last, verifyTail bool) error {
	var hb [segHeaderSize]byte
	n, err := ra.ReadAt(hb[:], 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	sc.sr.reset(ra, size)
	if sc.start(hb[:n], path, size, wantFirst, last, verifyTail) {
		need := int(min(int64(readBufSize(sc.hdr)), max(size, frameHeaderSize)))
		if len(sc.sr.buf) < need {
			sc.sr.buf = make([]byte, need) // grows at most a few times per scan
		}
	}
	return nil
}

// drain runs sc to the end of its segment.
func (sc *scanner) drain() {
	for {
		if _, ok := sc.next(); !ok {
			return
		}
	}
}

// Open opens (creating if needed) the WAL in dir for appending, after the
// recovery check described in the package comment: a torn tail of the last
// segment is copied aside and truncated; any other damage returns a
// *CorruptionError naming the segment and offset, and nothing is modified.
// Open takes an exclusive lock on the directory (ErrLocked if held).
func Open(dir string, opts Options) (*Writer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	fs := opts.FS
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	lock, err := fs.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, opts: opts, fs: fs, lock: lock}
	ok := false
	defer func() {
		if !ok {
			if w.cur != nil {
				w.cur.Close()
			}
			lock.Close()
		}
	}()
	if err := w.recover(); err != nil {
		return nil, err
	}
	w.spaceCond.L = &w.mu
	w.dcond.L = &w.dmu
	w.active = &buffer{data: make([]byte, opts.BufferSize)}
	w.spare = &buffer{data: make([]byte, opts.BufferSize)}
	w.kick = make(chan struct{}, 1)
	w.done = make(chan struct{})
	ok = true
	go w.run()
	return w, nil
}

// recover scans the directory and leaves w ready to append.
func (w *Writer) recover() error {
	fs, dir := w.fs, w.dir
	ls, err := listDir(fs, dir)
	if err != nil {
		return err
	}
	rec := &w.recovery
	for _, t := range ls.temps {
		if err := fs.Remove(t); err != nil {
			return fmt.Errorf("wal: remove unfinished segment: %w", err)
		}
		rec.RemovedTemp = append(rec.RemovedTemp, t)
	}
	if len(ls.temps) > 0 {
		if err := fs.SyncDir(dir); err != nil {
			return fmt.Errorf("wal: sync directory %s: %w", dir, err)
		}
	}
	if len(ls.segs) == 0 {
		f, path, err := createSegment(fs, dir, 1, w.opts.SegmentSize, w.opts.MaxRecordSize)
		if err != nil {
			return err
		}
		w.cur, w.curSeg = f, 1
		w.segs = []segRef{{first: 1, path: path}}
		w.nextLSN, w.seg, w.segOff, w.segCap = 1, 1, segHeaderSize, w.opts.SegmentSize
		rec.Segments, rec.FirstLSN = 1, 1
		return nil
	}

	var sc scanner
	want := ls.segs[0].first
	for i, s := range ls.segs {
		last := i == len(ls.segs)-1
		if s.first != want {
			return &CorruptionError{Segment: s.path, Offset: 0, Reason: codec.ReasonSequenceGap, Detail: "segment first LSN does not follow the previous segment"}
		}
		flag := os.O_RDONLY
		if last {
			flag = os.O_RDWR
		}
		f, _, err := openScan(fs, &sc, s.path, flag, s.first, last, true)
		if err != nil {
			return err
		}
		sc.drain()
		if sc.end == endCorrupt {
			f.Close()
			ce := sc.corrupt
			return &ce
		}
		if !last {
			f.Close()
			want = sc.sealNext
			continue
		}
		w.cur, w.curSeg = f, s.first
	}
	w.segs = ls.segs
	last := ls.segs[len(ls.segs)-1]
	lastLSN := sc.expect - 1
	rec.Segments, rec.FirstLSN, rec.LastLSN = len(ls.segs), ls.segs[0].first, lastLSN
	w.nextLSN = lastLSN + 1
	w.written.Store(lastLSN)
	w.synced.Store(lastLSN)
	w.durable.Store(lastLSN)

	switch sc.end {
	case endSealed:
		// The crash came between sealing and creating the next segment.
		w.cur.Close()
		w.cur = nil
		f, path, err := createSegment(fs, dir, sc.sealNext, w.opts.SegmentSize, w.opts.MaxRecordSize)
		if err != nil {
			return err
		}
		w.cur, w.curSeg = f, sc.sealNext
		w.segs = append(w.segs, segRef{first: sc.sealNext, path: path})
		w.seg, w.segOff, w.segCap = sc.sealNext, segHeaderSize, w.opts.SegmentSize
		rec.Segments++
		return nil
	case endTorn:
		t := sc.torn
		if err := saveTorn(fs, dir, w.cur, &t); err != nil {
			return err
		}
		if err := w.cur.Truncate(t.Offset); err != nil {
			return fmt.Errorf("wal: truncate torn tail of %s: %w", last.path, err)
		}
		rec.Torn = &t
	}
	if err := w.cur.Preallocate(sc.hdr.capacity); err != nil {
		return fmt.Errorf("wal: preallocate %s: %w", last.path, err)
	}
	// Whatever survived the crash in the page cache is made durable before
	// it is reported as such.
	if err := w.cur.Sync(); err != nil {
		return fmt.Errorf("wal: sync %s: %w", last.path, err)
	}
	w.seg, w.segOff, w.segCap = last.first, sc.off, sc.hdr.capacity
	if sc.hdr.maxRecord < w.opts.MaxRecordSize {
		// The segment's header promises readers a smaller bound than this
		// Writer allows: make the first Append seal it and start a new one.
		w.segCap = w.segOff + sealFrameSize
	}
	return nil
}

// saveTorn copies the torn bytes of f to <segment>.torn-<offset> (with a
// numeric suffix if that exists), syncs it and the directory.
func saveTorn(fs FS, dir string, f File, t *TornTail) error {
	base := t.Segment + ".torn-" + strconv.FormatInt(t.Offset, 10)
	var out File
	var path string
	for i := 0; i < 1000 && out == nil; i++ {
		path = base
		if i > 0 {
			path = base + "." + strconv.Itoa(i)
		}
		o, err := fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		switch {
		case err == nil:
			out = o
		case errors.Is(err, os.ErrExist):
		default:
			return fmt.Errorf("wal: save torn tail: %w", err)
		}
	}
	if out == nil {
		return fmt.Errorf("wal: save torn tail: too many copies named %s", base)
	}
	buf := make([]byte, min(t.Length, 1<<20))
	for done := int64(0); done < t.Length; {
		k := int(min(int64(len(buf)), t.Length-done))
		n, err := f.ReadAt(buf[:k], t.Offset+done)
		if n < k {
			out.Close()
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("wal: save torn tail: read %s: %w", t.Segment, err)
		}
		if _, err := out.WriteAt(buf[:k], done); err != nil {
			out.Close()
			return fmt.Errorf("wal: save torn tail: %w", err)
		}
		done += int64(k)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("wal: save torn tail: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("wal: save torn tail: %w", err)
	}
	if err := fs.SyncDir(dir); err != nil {
		return fmt.Errorf("wal: save torn tail: sync directory: %w", err)
	}
	t.CopyPath = path
	return nil
}
