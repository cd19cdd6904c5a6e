package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FS is the small set of file-system operations the WAL uses. OSFS is the
// real one; tests and the crash harness wrap it to observe or fail syncs.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	Rename(oldpath, newpath string) error
	// ReadDir returns the names of the entries of dir (files only need be
	// listed), in any order.
	ReadDir(dir string) ([]string, error)
	MkdirAll(dir string, perm os.FileMode) error
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
	// Lock takes an exclusive advisory lock on the file name, creating it if
	// needed; it fails at once if another process or Writer holds it.
	Lock(name string) (io.Closer, error)
}

// File is an open file. ReadAt and WriteAt must not allocate on the hot path.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync is fsync(2): data and all metadata.
	Sync() error
	// Datasync is fdatasync(2): data and the metadata needed to read it back.
	Datasync() error
	Truncate(size int64) error
	// Preallocate reserves size bytes: the file's size becomes at least
	// size, the new bytes reading as zeros. Where the file system has no
	// fallocate it extends the file sparsely instead; an error means no
	// space (or another I/O failure).
	Preallocate(size int64) error
	Size() (int64, error)
}

// OSFS is the operating system's file system.
type OSFS struct{}

type osFile struct {
	f  *os.File
	fd int
	// ring is the file's io_uring (uring.go), made on its first write or
	// sync; noRing once that failed: plain system calls from then on.
	ring   *uring
	noRing bool
}

// uring returns the file's ring, or nil where there is none.
func (o *osFile) uring() *uring {
	if o.ring == nil && !o.noRing {
		r, err := setupUring()
		if err != nil {
			o.noRing = true
			return nil
		}
		o.ring = r
	}
	return o.ring
}

// OpenFile opens name with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f, fd: int(f.Fd())}, nil
}

// Remove removes name.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename renames oldpath to newpath.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// ReadDir lists the names in dir.
func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// MkdirAll creates dir and its parents.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

// SyncDir fsyncs the directory dir.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type flock struct{ f *os.File }

func (l flock) Close() error {
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	return l.f.Close()
}

// Lock takes a non-blocking exclusive flock(2) on name.
func (OSFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, filepath.Dir(name))
		}
		return nil, fmt.Errorf("wal: lock %s: %w", name, err)
	}
	return flock{f}, nil
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }
func (o *osFile) Sync() error                             { return o.f.Sync() }
func (o *osFile) Truncate(size int64) error               { return o.f.Truncate(size) }

// smallWrite bounds the writes made with pwrite(2) even where the file has
// a ring: copying that much into the page cache takes a few microseconds,
// well under the runtime monitor's 20µs tick, and the ring's round trip
// (a kernel worker, the eventfd, the netpoller) would add tens.
const smallWrite = 64 << 10

// WriteAt writes through the file's ring where there is one, but for small
// writes.
func (o *osFile) WriteAt(p []byte, off int64) (int, error) {
	r := o.uring()
	if r == nil || len(p) <= smallWrite {
		return o.f.WriteAt(p, off)
	}
	n, err := r.writeAt(o.fd, p, off)
	if err != nil {
		err = &os.PathError{Op: "write", Path: o.f.Name(), Err: err}
	}
	return n, err
}

func (o *osFile) Close() error {
	if o.ring != nil {
		o.ring.close()
		o.ring = nil
	}
	return o.f.Close()
}

// Datasync syncs through the file's ring where there is one.
func (o *osFile) Datasync() error {
	if r := o.uring(); r != nil {
		if err := r.datasync(o.fd); err != nil {
			return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
		}
		return nil
	}
	for {
		err := unix.Fdatasync(o.fd)
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (o *osFile) Preallocate(size int64) error {
	err := unix.Fallocate(o.fd, 0, 0, size)
	for err == unix.EINTR {
		err = unix.Fallocate(o.fd, 0, 0, size)
	}
	switch err {
	case nil:
		return nil
	case unix.EOPNOTSUPP, unix.ENOSYS, unix.EINVAL:
		// No fallocate here (tmpfs of old kernels, some network and FUSE
		// file systems): a sparse extension still reads as zeros.
		cur, serr := o.Size()
		if serr != nil {
			return serr
		}
		if cur < size {
			return o.f.Truncate(size)
		}
		return nil
	}
	return &os.PathError{Op: "fallocate", Path: o.f.Name(), Err: err}
}

func (o *osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
