package failpoint

import (
	"os"
	"strings"
	"syscall"

	"qstream/wal"
)

// FS wraps a wal.FS so that the WAL and checkpoint points fire where the
// files are written: WAL segment writes and syncs (files named *.wal) and
// checkpoint writes and renames (*.ckpt.tmp). Segment header writes do not
// count as WAL writes. Wrap only when Any() is true;
// the unwrapped file system costs nothing.
func FS(inner wal.FS) wal.FS { return fpFS{inner} }

type fpFS struct{ wal.FS }

type fileKind uint8

const (
	kindOther fileKind = iota
	kindSegment
	kindCheckpoint
)

func kindOf(name string) fileKind {
	switch {
	case strings.HasSuffix(name, ".wal"), strings.HasSuffix(name, ".wal.tmp"):
		// A new segment is created as .wal.tmp and renamed; the writer keeps
		// the handle it created.
		return kindSegment
	case strings.HasSuffix(name, ".ckpt.tmp"):
		return kindCheckpoint
	}
	return kindOther
}

func (f fpFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if k := kindOf(name); k != kindOther {
		return fpFile{File: file, kind: k}, nil
	}
	return file, nil
}

func (f fpFS) Rename(oldpath, newpath string) error {
	if kindOf(oldpath) == kindCheckpoint {
		CheckpointRename.Hit()
	}
	return f.FS.Rename(oldpath, newpath)
}

type fpFile struct {
	wal.File
	kind fileKind
}

func (f fpFile) WriteAt(p []byte, off int64) (int, error) {
	switch f.kind {
	case kindSegment:
		if off > 0 { // not the header of a new segment
			WALBeforeWrite.Hit()
		}
	case kindCheckpoint:
		if CheckpointWrite.Armed() && len(p) > 1 {
			half := len(p) / 2
			n, err := f.File.WriteAt(p[:half], off)
			if err != nil {
				return n, err
			}
			CheckpointWrite.Hit()
			m, err := f.File.WriteAt(p[half:], off+int64(half))
			return n + m, err
		}
	}
	return f.File.WriteAt(p, off)
}

func (f fpFile) Datasync() error {
	if f.kind != kindSegment {
		return f.File.Datasync()
	}
	WALBeforeSync.Hit()
	if WALSyncEIO.Fail() {
		return &os.PathError{Op: "fdatasync", Path: "wal segment", Err: syscall.EIO}
	}
	err := f.File.Datasync()
	if err == nil {
		WALAfterSync.Hit()
	}
	return err
}
