package wal

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// smallOpts gives several segments for little data.
func smallOpts(t testing.TB) Options {
	return Options{
		SegmentSize:   16 << 10,
		MaxRecordSize: 2 << 10,
		BufferSize:    32 << 10,
		OnFatal:       func(err error) { t.Errorf("unexpected fatal: %v", err) },
	}
}

func mustOpen(t testing.TB, dir string, o Options) *Writer {
	t.Helper()
	w, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func mustAppend(t testing.TB, w *Writer, p []byte) uint64 {
	t.Helper()
	lsn, err := w.Append(TypeData, p)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return lsn
}

// readAll reads every record from fromLSN; payloads are copied.
func readAll(t testing.TB, dir string, from uint64) ([]uint64, [][]byte, error) {
	t.Helper()
	r, err := OpenReader(dir, from)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var lsns []uint64
	var ps [][]byte
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return lsns, ps, nil
		}
		if err != nil {
			return lsns, ps, err
		}
		lsns = append(lsns, rec.LSN)
		ps = append(ps, append([]byte(nil), rec.Payload...))
	}
}

// randPayload returns n random bytes, none of them zero (so that a torn copy's
// length is exactly predictable).
func randPayload(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(1 + rng.IntN(255))
	}
	return p
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// fileState is what faultFS observed of one file.
type fileState struct {
	writtenEnd int64 // highest byte written
	syncedEnd  int64 // writtenEnd at the last successful sync
	datasyncs  int
	syncs      int
}

// faultFS wraps OSFS, tracks written and synced extents per file (by final
// path: renames move the state) and can fail or block syncs and writes.
type faultFS struct {
	OSFS
	mu              sync.Mutex
	files           map[string]*fileState
	datasyncs       int           // successful or failed Datasync calls, all files
	failDatasyncAt  int           // fail the Datasync call with this 1-based number; 0 = never
	failWriteAt     int           // fail the WriteAt call with this 1-based number; 0 = never
	writes          int           // WriteAt calls
	blockDatasync   chan struct{} // if non-nil, Datasync waits for a receive... until closed
	failErr         error
	datasyncsAfterF int // Datasync calls after the failure
	failed          bool
}

func newFaultFS() *faultFS {
	return &faultFS{files: map[string]*fileState{}, failErr: errors.New("injected EIO")}
}

// snapshot returns a copy of the state of path.
func (fs *faultFS) snapshot(path string) fileState {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if st := fs.files[path]; st != nil {
		return *st
	}
	return fileState{}
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	st := fs.files[name]
	if st == nil || flag&os.O_TRUNC != 0 {
		st = &fileState{}
		fs.files[name] = st
	}
	fs.mu.Unlock()
	return &faultFile{File: f, fs: fs, st: st}, nil
}

func (fs *faultFS) Rename(oldpath, newpath string) error {
	if err := fs.OSFS.Rename(oldpath, newpath); err != nil {
		return err
	}
	fs.mu.Lock()
	if st := fs.files[oldpath]; st != nil {
		fs.files[newpath] = st
		delete(fs.files, oldpath)
	}
	fs.mu.Unlock()
	return nil
}

type faultFile struct {
	File
	fs *faultFS
	st *fileState
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	fs := f.fs
	fs.mu.Lock()
	fs.writes++
	if fs.failWriteAt > 0 && fs.writes == fs.failWriteAt {
		fs.failed = true
		fs.mu.Unlock()
		return 0, fs.failErr
	}
	fs.mu.Unlock()
	n, err := f.File.WriteAt(p, off)
	fs.mu.Lock()
	if end := off + int64(n); end > f.st.writtenEnd {
		f.st.writtenEnd = end
	}
	fs.mu.Unlock()
	return n, err
}

func (f *faultFile) Datasync() error {
	fs := f.fs
	if ch := fs.blockDatasync; ch != nil {
		<-ch
	}
	fs.mu.Lock()
	fs.datasyncs++
	if fs.failed {
		fs.datasyncsAfterF++
	}
	if fs.failDatasyncAt > 0 && fs.datasyncs == fs.failDatasyncAt {
		fs.failed = true
		fs.mu.Unlock()
		return fs.failErr
	}
	end := f.st.writtenEnd
	fs.mu.Unlock()
	if err := f.File.Datasync(); err != nil {
		return err
	}
	fs.mu.Lock()
	f.st.datasyncs++
	if end > f.st.syncedEnd {
		f.st.syncedEnd = end
	}
	fs.mu.Unlock()
	return nil
}

func (f *faultFile) Sync() error {
	fs := f.fs
	fs.mu.Lock()
	end := f.st.writtenEnd
	fs.mu.Unlock()
	if err := f.File.Sync(); err != nil {
		return err
	}
	fs.mu.Lock()
	f.st.syncs++
	if end > f.st.syncedEnd {
		f.st.syncedEnd = end
	}
	fs.mu.Unlock()
	return nil
}

// noSyncFS is OSFS with fsync, fdatasync and directory syncs skipped: for
// tests of recovery logic that open and close a WAL thousands of times on a
// shared disk, where the syncs are not what is tested.
type noSyncFS struct{ OSFS }

type noSyncFile struct{ File }

func (noSyncFile) Sync() error     { return nil }
func (noSyncFile) Datasync() error { return nil }

func (fs noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }
