package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"qstream/codec"
	"qstream/wal"
)

// Info describes one checkpoint file.
type Info struct {
	Path      string
	ID        uint64
	LSN       uint64
	CreatedNs int64
	Size      int64
	Sections  int
	Err       error // nil if the file verifies; else why it cannot be loaded
}

// Store is a checkpoint directory on a file system. The package-level
// functions use the operating system's; a Store with another wal.FS lets
// tests and the crash harness observe or interrupt writes. A directory has
// one writer: Write and Prune must not run concurrently with each other.
type Store struct {
	Dir string
	FS  wal.FS // nil means wal.OSFS
}

func (s Store) fs() wal.FS {
	if s.FS == nil {
		return wal.OSFS{}
	}
	return s.FS
}

// Write stores c atomically (see the package comment) and returns its Info.
// It assigns c.ID (the newest ID in the directory + 1) and c.CreatedNs when
// they are zero.
func Write(dir string, c *Checkpoint) (Info, error) { return Store{Dir: dir}.Write(c) }

// LoadLatest returns the newest valid checkpoint in dir, with the newer
// files it skipped (each with its Err). It returns ErrNoCheckpoint when
// there is none.
func LoadLatest(dir string) (*Checkpoint, []Info, error) { return Store{Dir: dir}.LoadLatest() }

// List verifies every checkpoint file in dir (reading each once, in 1 MiB
// pieces) and returns them by ascending ID; a file that does not verify has
// Err set.
func List(dir string) ([]Info, error) { return Store{Dir: dir}.List() }

// Prune keeps the newest keep (>= 1) valid checkpoints of dir and removes
// older files (valid or not) and unfinished .tmp files. It returns the kept
// valid checkpoints, oldest first, and the removed paths. Corrupt files
// newer than the newest valid one are left for inspection.
func Prune(dir string, keep int) (kept []Info, removed []string, err error) {
	return Store{Dir: dir}.Prune(keep)
}

func fileName(id uint64) string { return fmt.Sprintf("%016x.ckpt", id) }

func parseName(name string) (uint64, bool) {
	if len(name) != 21 || !strings.HasSuffix(name, ".ckpt") {
		return 0, false
	}
	var v uint64
	for _, c := range []byte(name[:16]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, v != 0
}

type entry struct {
	id   uint64
	path string
}

// scan lists checkpoint files by ascending ID and leftover temporaries.
func (s Store) scan() (files []entry, temps []string, err error) {
	names, err := s.fs().ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("checkpoint: list %s: %w", s.Dir, err)
	}
	for _, n := range names {
		if id, ok := parseName(n); ok {
			files = append(files, entry{id, filepath.Join(s.Dir, n)})
		} else if strings.HasSuffix(n, ".ckpt.tmp") {
			temps = append(temps, filepath.Join(s.Dir, n))
		}
	}
	slices.SortFunc(files, func(a, b entry) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return files, temps, nil
}

// Write implements the package-level Write.
func (s Store) Write(c *Checkpoint) (Info, error) {
	fs := s.fs()
	if err := validate(c); err != nil {
		return Info{}, err
	}
	if err := fs.MkdirAll(s.Dir, 0o755); err != nil {
		return Info{}, fmt.Errorf("checkpoint: create %s: %w", s.Dir, err)
	}
	files, _, err := s.scan()
	if err != nil {
		return Info{}, err
	}
	if c.ID == 0 {
		c.ID = 1
		if len(files) > 0 {
			c.ID = files[len(files)-1].id + 1
		}
	}
	for _, f := range files {
		if f.id == c.ID {
			return Info{}, fmt.Errorf("%w: %s", ErrExists, f.path)
		}
	}
	if c.CreatedNs == 0 {
		c.CreatedNs = time.Now().UnixNano()
	}
	data, err := Encode(nil, c)
	if err != nil {
		return Info{}, err
	}
	path := filepath.Join(s.Dir, fileName(c.ID))
	tmp := path + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return Info{}, fmt.Errorf("checkpoint: create %s: %w", tmp, err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return Info{}, fmt.Errorf("checkpoint: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return Info{}, fmt.Errorf("checkpoint: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("checkpoint: close %s: %w", tmp, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return Info{}, fmt.Errorf("checkpoint: rename %s: %w", tmp, err)
	}
	if err := fs.SyncDir(s.Dir); err != nil {
		return Info{}, fmt.Errorf("checkpoint: sync directory %s: %w", s.Dir, err)
	}
	return Info{Path: path, ID: c.ID, LSN: c.LSN, CreatedNs: c.CreatedNs, Size: int64(len(data)), Sections: len(c.Sections)}, nil
}

// load reads and decodes one file.
func (s Store) load(e entry) (*Checkpoint, Info) {
	info := Info{Path: e.path, ID: e.id}
	f, err := s.fs().OpenFile(e.path, os.O_RDONLY, 0)
	if err != nil {
		info.Err = fmt.Errorf("checkpoint: open: %w", err)
		return nil, info
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		info.Err = fmt.Errorf("checkpoint: stat %s: %w", e.path, err)
		return nil, info
	}
	info.Size = size
	if size > MaxFileSize {
		info.Err = &CorruptError{Path: e.path, Offset: 0, Reason: codec.ReasonOversize, Detail: "file above the size limit"}
		return nil, info
	}
	data := make([]byte, size)
	if n, err := f.ReadAt(data, 0); n < len(data) {
		info.Err = fmt.Errorf("checkpoint: read %s: %w", e.path, err)
		return nil, info
	}
	c, err := Decode(data)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			ce.Path = e.path
		}
		info.Err = err
		return nil, info
	}
	if c.ID != e.id {
		info.Err = &CorruptError{Path: e.path, Offset: 8, Reason: codec.ReasonMalformed, Detail: "ID does not match the file name"}
		return nil, info
	}
	info.LSN, info.CreatedNs, info.Sections = c.LSN, c.CreatedNs, len(c.Sections)
	return c, info
}

// LoadLatest implements the package-level LoadLatest.
func (s Store) LoadLatest() (*Checkpoint, []Info, error) {
	files, _, err := s.scan()
	if err != nil {
		return nil, nil, err
	}
	var skipped []Info
	for i := len(files) - 1; i >= 0; i-- {
		c, info := s.load(files[i])
		if info.Err == nil {
			return c, skipped, nil
		}
		skipped = append(skipped, info)
	}
	return nil, skipped, fmt.Errorf("%w in %s (%d unusable files)", ErrNoCheckpoint, s.Dir, len(skipped))
}

// verify checks a file's length, header and checksum by streaming it, and
// fills in the header fields.
func (s Store) verify(e entry) Info {
	info := Info{Path: e.path, ID: e.id}
	f, err := s.fs().OpenFile(e.path, os.O_RDONLY, 0)
	if err != nil {
		info.Err = fmt.Errorf("checkpoint: open: %w", err)
		return info
	}
	defer f.Close()
	if info.Size, err = f.Size(); err != nil {
		info.Err = fmt.Errorf("checkpoint: stat %s: %w", e.path, err)
		return info
	}
	corrupt := func(off int64, r codec.Reason, d string) Info {
		info.Err = &CorruptError{Path: e.path, Offset: off, Reason: r, Detail: d}
		return info
	}
	if info.Size < headerSize+trailerSize || info.Size > MaxFileSize {
		return corrupt(0, codec.ReasonMalformed, "file size out of range")
	}
	buf := make([]byte, min(info.Size, 1<<20))
	var hdr [headerSize]byte
	var crc uint32
	end := info.Size - trailerSize
	for off := int64(0); off < end; {
		k := int(min(int64(len(buf)), end-off))
		if n, err := f.ReadAt(buf[:k], off); n < k {
			info.Err = fmt.Errorf("checkpoint: read %s: %w", e.path, err)
			return info
		}
		if off == 0 {
			copy(hdr[:], buf[:k])
		}
		crc = crc32.Update(crc, castagnoli, buf[:k])
		off += int64(k)
	}
	var tr [trailerSize]byte
	if n, err := f.ReadAt(tr[:], end); n < trailerSize {
		info.Err = fmt.Errorf("checkpoint: read %s: %w", e.path, err)
		return info
	}
	switch {
	case string(hdr[0:4]) != magic:
		return corrupt(0, codec.ReasonMalformed, "bad magic")
	case binary.LittleEndian.Uint64(hdr[40:48]) != uint64(info.Size):
		return corrupt(40, codec.ReasonMalformed, "length field does not match the file size (truncated or extended)")
	case string(tr[4:8]) != trailerMagic:
		return corrupt(end+4, codec.ReasonMalformed, "bad trailer magic")
	case binary.LittleEndian.Uint32(tr[0:4]) != crc:
		return corrupt(end, codec.ReasonChecksum, "checksum mismatch")
	case binary.LittleEndian.Uint64(hdr[8:16]) != e.id:
		return corrupt(8, codec.ReasonMalformed, "ID does not match the file name")
	}
	info.LSN, info.CreatedNs, info.Sections = binary.LittleEndian.Uint64(hdr[16:24]), int64(binary.LittleEndian.Uint64(hdr[24:32])), int(binary.LittleEndian.Uint32(hdr[32:36]))
	return info
}

// List implements the package-level List.
func (s Store) List() ([]Info, error) {
	files, _, err := s.scan()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(files))
	for _, e := range files {
		out = append(out, s.verify(e))
	}
	return out, nil
}

// Prune implements the package-level Prune.
func (s Store) Prune(keep int) (kept []Info, removed []string, err error) {
	if keep < 1 {
		return nil, nil, fmt.Errorf("checkpoint: Prune keep %d: at least one checkpoint must be kept", keep)
	}
	infos, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	_, temps, err := s.scan()
	if err != nil {
		return nil, nil, err
	}
	var valid []Info
	for _, in := range infos {
		if in.Err == nil {
			valid = append(valid, in)
		}
	}
	if len(valid) == 0 {
		return nil, nil, fmt.Errorf("%w in %s: nothing pruned", ErrNoCheckpoint, s.Dir)
	}
	kept = valid[max(0, len(valid)-keep):]
	oldest := kept[0].ID
	fs := s.fs()
	for _, in := range infos {
		if in.ID < oldest {
			if err := fs.Remove(in.Path); err != nil {
				return kept, removed, fmt.Errorf("checkpoint: prune: %w", err)
			}
			removed = append(removed, in.Path)
		}
	}
	for _, t := range temps {
		if err := fs.Remove(t); err != nil && !errors.Is(err, os.ErrNotExist) {
			return kept, removed, fmt.Errorf("checkpoint: prune: %w", err)
		}
		removed = append(removed, t)
	}
	if len(removed) > 0 {
		if err := fs.SyncDir(s.Dir); err != nil {
			return kept, removed, fmt.Errorf("checkpoint: prune: sync directory: %w", err)
		}
	}
	return kept, removed, nil
}
