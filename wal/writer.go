package wal

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// maxPieces bounds the segment runs one buffer may hold; a buffer that would
// need more is treated as full.
const maxPieces = 8

// piece is a run of a buffer that goes to one segment at one file offset.
type piece struct {
	seg        uint64 // the segment's first LSN (its name)
	fileOff    int64  // file offset of data[start]
	start, end int
	newSeg     bool  // create the segment before writing
	capacity   int64 // capacity of a new segment
}

// buffer is one of the Writer's two append buffers.
type buffer struct {
	data    []byte
	n       int
	records int    // data records in the buffer
	lastLSN uint64 // LSN of the last data record (valid when records > 0)
	pieces  [maxPieces]piece
	np      int
}

func (b *buffer) reset() { b.n, b.records, b.lastLSN, b.np = 0, 0, 0, 0 }

type segRef struct {
	first uint64
	path  string
}

// Writer appends records to a WAL directory. All methods are safe for
// concurrent use; several producers may Append at once. See the package
// comment for the durability contract.
type Writer struct {
	dir  string
	opts Options
	fs   FS
	lock io.Closer

	// mu guards the append state below.
	mu        sync.Mutex
	spaceCond sync.Cond // Append waits here for buffer space; broadcast on swap, failure, close
	active    *buffer   // Append fills it
	spare     *buffer   // nil while the flusher writes it
	nextLSN   uint64
	seg       uint64 // segment Append writes into
	segOff    int64  // where the next record goes in it
	segCap    int64
	force     bool   // flush now, without waiting for GroupRecords/GroupDelay
	idle      bool   // the flusher saw nothing to do and waits for a kick
	syncTo    uint64 // Sync/Close want synced >= syncTo
	closing   bool
	failErr   error
	closed    atomic.Bool // set by Close after the flusher stopped

	kick chan struct{} // wakes the flusher; capacity 1
	done chan struct{} // closed when the flusher exits

	written atomic.Uint64 // highest LSN written to the file
	synced  atomic.Uint64 // highest LSN covered by a completed sync
	durable atomic.Uint64 // synced, or written under SyncNone
	fatal   atomic.Pointer[error]

	// dmu guards waitCh; dcond (on dmu) is broadcast whenever written,
	// synced or durable advance, on failure and on close.
	dmu    sync.Mutex
	dcond  sync.Cond
	waitCh chan struct{}

	// Owned by the flusher (and by Open/Close when it is not running).
	cur    File
	curSeg uint64

	segMu sync.Mutex
	segs  []segRef

	fatalOnce sync.Once
	recovery  Recovery
}

// Append adds a record and returns its LSN. The payload is copied; the
// caller may reuse it at once. Under SyncAlways it returns after a sync that
// covers the record; otherwise the record is durable once DurableLSN reaches
// the returned LSN (see WaitDurable and Options.OnDurable). Append blocks
// while both buffers are full. It does not allocate.
func (w *Writer) Append(typ RecordType, payload []byte) (uint64, error) {
	if typ < TypeData || typ > TypeUserMax {
		return 0, ErrBadType
	}
	if len(payload) > w.opts.MaxRecordSize {
		return 0, ErrRecordTooLarge
	}
	fsz := frameSize(len(payload))
	w.mu.Lock()
	var b *buffer
	var rotate bool
	for {
		if w.failErr != nil {
			err := w.failErr
			w.mu.Unlock()
			return 0, err
		}
		if w.closing {
			w.mu.Unlock()
			return 0, ErrClosed
		}
		b = w.active
		rotate = w.segOff+int64(fsz)+sealFrameSize > w.segCap
		need, pieces := fsz, 0
		if b.np == 0 {
			pieces++
		}
		if rotate {
			need += sealFrameSize
			pieces++
		}
		if b.n+need <= len(b.data) && b.np+pieces <= maxPieces {
			break
		}
		w.force = true
		w.kickFlusher()
		w.spaceCond.Wait()
	}
	if b.np == 0 {
		b.pieces[0] = piece{seg: w.seg, fileOff: w.segOff, start: b.n, end: b.n}
		b.np = 1
	}
	if rotate {
		// Seal the current segment; its LSN field names the next segment.
		w.segOff += int64(putFrameBody(b.data[b.n:], w.nextLSN, typeSeal, nil))
		b.n += sealFrameSize
		b.pieces[b.np-1].end = b.n
		w.seg, w.segOff, w.segCap = w.nextLSN, segHeaderSize, w.opts.SegmentSize
		b.pieces[b.np] = piece{seg: w.seg, fileOff: w.segOff, start: b.n, end: b.n, newSeg: true, capacity: w.segCap}
		b.np++
	}
	lsn := w.nextLSN
	w.nextLSN++
	b.n += putFrameBody(b.data[b.n:], lsn, typ, payload) // the checksum is the flusher's
	b.pieces[b.np-1].end = b.n
	w.segOff += int64(fsz)
	b.records++
	b.lastLSN = lsn
	// The first record of a buffer wakes an idle flusher only: a busy one
	// (writing, or waiting out GroupDelay) finds the record pending
	// anyway, and a needless wake-up costs both goroutines a switch per
	// group commit.
	kick := b.records == 1 && w.idle || b.records == w.opts.GroupRecords || w.opts.Sync == SyncAlways
	w.mu.Unlock()
	if kick {
		w.kickFlusher()
	}
	if w.opts.Sync == SyncAlways {
		return lsn, w.waitFor(&w.synced, lsn)
	}
	return lsn, nil
}

func (w *Writer) kickFlusher() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// waitFor blocks until v >= lsn, the Writer fails, or it is closed with v
// still short of lsn.
func (w *Writer) waitFor(v *atomic.Uint64, lsn uint64) error {
	if v.Load() >= lsn {
		return nil
	}
	w.dmu.Lock()
	defer w.dmu.Unlock()
	for v.Load() < lsn {
		if e := w.fatal.Load(); e != nil {
			return *e
		}
		if w.isClosed() {
			return ErrClosed
		}
		w.dcond.Wait()
	}
	return nil
}

func (w *Writer) isClosed() bool { return w.closed.Load() }

// Sync makes every record appended before the call durable with an fsync of
// its own if needed (also under SyncNone) and returns once it is.
func (w *Writer) Sync() error {
	w.mu.Lock()
	if w.failErr != nil {
		err := w.failErr
		w.mu.Unlock()
		return err
	}
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	target := w.nextLSN - 1
	if target > w.syncTo {
		w.syncTo = target
	}
	w.mu.Unlock()
	if w.synced.Load() >= target {
		return nil
	}
	w.kickFlusher()
	return w.waitFor(&w.synced, target)
}

// WaitDurable returns nil once DurableLSN >= lsn, the Writer's sticky error
// if it fails first, ErrClosed if it is closed first, or ctx's error. It
// allocates only when it has to wait (one channel shared by all waiters of a
// sync).
func (w *Writer) WaitDurable(ctx context.Context, lsn uint64) error {
	for {
		if w.durable.Load() >= lsn {
			return nil
		}
		w.dmu.Lock()
		if w.durable.Load() >= lsn {
			w.dmu.Unlock()
			return nil
		}
		if e := w.fatal.Load(); e != nil {
			w.dmu.Unlock()
			return *e
		}
		if w.isClosed() {
			w.dmu.Unlock()
			return ErrClosed
		}
		if w.waitCh == nil {
			w.waitCh = make(chan struct{})
		}
		ch := w.waitCh
		w.dmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// DurableLSN is the highest LSN that is durable (under SyncNone: written).
func (w *Writer) DurableLSN() uint64 { return w.durable.Load() }

// LastLSN is the LSN of the last appended record (0 if none ever was).
func (w *Writer) LastLSN() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nextLSN - 1
}

// FirstLSN is the first LSN of the oldest segment still on disk.
func (w *Writer) FirstLSN() uint64 {
	w.segMu.Lock()
	defer w.segMu.Unlock()
	return w.segs[0].first
}

// Dir is the WAL directory.
func (w *Writer) Dir() string { return w.dir }

// MaxRecordSize is the largest payload Append takes.
func (w *Writer) MaxRecordSize() int { return w.opts.MaxRecordSize }

// Recovered reports what Open found and repaired.
func (w *Writer) Recovered() Recovery { return w.recovery }

// Err returns the sticky failure, or nil.
func (w *Writer) Err() error {
	if e := w.fatal.Load(); e != nil {
		return *e
	}
	return nil
}

// notify wakes everything waiting on a durability change.
func (w *Writer) notify() {
	w.dmu.Lock()
	if w.waitCh != nil {
		close(w.waitCh)
		w.waitCh = nil
	}
	w.dcond.Broadcast()
	w.dmu.Unlock()
}

// run is the flusher goroutine.
func (w *Writer) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	var deadline time.Time
	for {
		w.mu.Lock()
		if w.failErr != nil {
			w.mu.Unlock()
			return
		}
		pending := w.active.n > 0
		wantSync := w.syncTo > w.synced.Load()
		force := w.force || w.closing || wantSync || w.opts.Sync == SyncAlways || w.active.records >= w.opts.GroupRecords
		closing := w.closing
		w.idle = !pending && !wantSync && !closing // before the unlock: an Append after it kicks
		w.mu.Unlock()
		if !pending && !wantSync {
			if closing {
				return
			}
			armed = false
			<-w.kick
			continue
		}
		if !force {
			now := time.Now()
			if !armed {
				armed, deadline = true, now.Add(w.opts.GroupDelay)
			}
			if d := deadline.Sub(now); d > 0 {
				timer.Reset(d)
				select {
				case <-w.kick:
					timer.Stop()
					continue
				case <-timer.C:
				}
			}
		}
		start := time.Now()
		if err := w.flush(); err != nil {
			w.fail(err)
			return
		}
		// Records that arrived during the flush have waited since start.
		armed, deadline = true, start.Add(w.opts.GroupDelay)
	}
}

// flush writes the active buffer and syncs per the policy.
func (w *Writer) flush() error {
	w.mu.Lock()
	b := w.active
	w.active, w.spare = w.spare, nil
	w.force = false
	syncTo := w.syncTo
	w.mu.Unlock()
	w.spaceCond.Broadcast()

	// The frames' checksums, left out by Append: the buffer is the
	// flusher's alone now, and the appenders (the engine's feed) do not
	// pay for them.
	setFrameCRCs(b.data[:b.n])
	for i := range b.pieces[:b.np] {
		p := &b.pieces[i]
		if p.newSeg {
			if err := w.rotate(p.seg, p.capacity); err != nil {
				return err
			}
		}
		if p.seg != w.curSeg {
			panic("wal: buffer piece for a segment that is not open") // a bug, never input
		}
		if p.end > p.start {
			if _, err := w.cur.WriteAt(b.data[p.start:p.end], p.fileOff); err != nil {
				return fmt.Errorf("wal: write segment %s: %w", segmentName(w.curSeg), err)
			}
		}
	}
	if b.records > 0 {
		w.written.Store(b.lastLSN)
	}
	written := w.written.Load()
	if w.opts.Sync != SyncNone || syncTo > w.synced.Load() {
		if err := w.cur.Datasync(); err != nil {
			return fmt.Errorf("wal: fdatasync segment %s: %w", segmentName(w.curSeg), err)
		}
		w.synced.Store(written)
	}
	advanced := false
	d := w.synced.Load()
	if w.opts.Sync == SyncNone {
		d = written
	}
	if d > w.durable.Load() {
		w.durable.Store(d)
		advanced = true
	}
	b.reset()
	w.mu.Lock()
	w.spare = b
	w.mu.Unlock()
	// OnDurable runs before waiters wake, so a WaitDurable that returns has
	// been preceded by the callback for its LSN.
	if advanced && w.opts.OnDurable != nil {
		w.opts.OnDurable(d)
	}
	w.notify()
	return nil
}

// rotate makes the current segment durable, then creates the next one. A
// segment therefore exists only once every earlier one is complete on disk,
// which is what lets Open demand that all but the last segment be whole.
func (w *Writer) rotate(first uint64, capacity int64) error {
	if err := w.cur.Datasync(); err != nil {
		return fmt.Errorf("wal: fdatasync segment %s: %w", segmentName(w.curSeg), err)
	}
	if err := w.cur.Close(); err != nil {
		return fmt.Errorf("wal: close segment %s: %w", segmentName(w.curSeg), err)
	}
	w.cur = nil
	f, path, err := createSegment(w.fs, w.dir, first, capacity, w.opts.MaxRecordSize)
	if err != nil {
		return err
	}
	w.cur, w.curSeg = f, first
	w.segMu.Lock()
	w.segs = append(w.segs, segRef{first: first, path: path})
	w.segMu.Unlock()
	return nil
}

// createSegment creates a segment atomically: header written and synced in
// a temporary file that is then renamed, and the directory synced.
func createSegment(fs FS, dir string, first uint64, capacity int64, maxRecord int) (File, string, error) {
	path := filepath.Join(dir, segmentName(first))
	tmp := path + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("wal: create segment: %w", err)
	}
	fail := func(err error) (File, string, error) {
		f.Close()
		fs.Remove(tmp)
		return nil, "", fmt.Errorf("wal: create segment %s: %w", path, err)
	}
	var hdr [segHeaderSize]byte
	putSegHeader(hdr[:], segHeader{firstLSN: first, capacity: capacity, maxRecord: maxRecord})
	if _, err := f.WriteAt(hdr[:], 0); err != nil {
		return fail(err)
	}
	if err := f.Preallocate(capacity); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := fs.SyncDir(dir); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("wal: create segment %s: sync directory: %w", path, err)
	}
	return f, path, nil
}

// fail enters the sticky failed state. Nothing is retried.
func (w *Writer) fail(cause error) {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	w.mu.Lock()
	if w.failErr == nil {
		w.failErr = err
	} else {
		err = w.failErr
	}
	w.mu.Unlock()
	w.fatal.CompareAndSwap(nil, &err)
	w.spaceCond.Broadcast()
	w.notify()
	w.fatalOnce.Do(func() { w.opts.OnFatal(err) })
}

// Close flushes and fsyncs everything appended (under every policy), stops
// the flusher and closes the files. It returns the sticky failure if the
// Writer failed. Appends blocked for buffer space return ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closing = true
	if t := w.nextLSN - 1; t > w.syncTo {
		w.syncTo = t
	}
	w.mu.Unlock()
	w.spaceCond.Broadcast()
	w.kickFlusher()
	<-w.done
	err := w.Err()
	if w.cur != nil {
		if cerr := w.cur.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("wal: close segment: %w", cerr)
		}
		w.cur = nil
	}
	if w.lock != nil {
		w.lock.Close()
	}
	w.closed.Store(true)
	w.notify()
	return err
}

// DeleteBefore removes the segments whose records all have LSNs below lsn,
// oldest first, never the segment being written, and syncs the directory.
// It returns how many it removed. A Reader keeps reading a removed segment
// it has already opened; one that has yet to reach a removed segment fails
// with an error wrapping os.ErrNotExist, so delete only below every
// reader's position (in practice: below the oldest kept checkpoint).
func (w *Writer) DeleteBefore(lsn uint64) (int, error) {
	w.segMu.Lock()
	defer w.segMu.Unlock()
	n := 0
	for len(w.segs) > 1 && w.segs[1].first <= lsn {
		if err := w.fs.Remove(w.segs[0].path); err != nil {
			return n, fmt.Errorf("wal: delete segment: %w", err)
		}
		w.segs = w.segs[1:]
		n++
	}
	if n > 0 {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return n, fmt.Errorf("wal: delete segments: sync directory: %w", err)
		}
	}
	return n, nil
}

// Segments returns the paths of the segments on disk, oldest first.
func (w *Writer) Segments() []string {
	w.segMu.Lock()
	defer w.segMu.Unlock()
	out := make([]string, len(w.segs))
	for i, s := range w.segs {
		out[i] = s.path
	}
	return out
}
