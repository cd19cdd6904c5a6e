package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"qstream/codec"
	"qstream/wal"
)

// recFS records file operations and can fail one, simulating a crash at
// that point (the operation does not happen).
type recFS struct {
	wal.OSFS
	mu     sync.Mutex
	ops    []string
	failOp string // "rename", "sync", "syncdir"
}

var errCrash = errors.New("simulated crash")

func (fs *recFS) log(op, path string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.ops = append(fs.ops, op+" "+filepath.Base(path))
	return op == fs.failOp
}

func (fs *recFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&os.O_CREATE != 0 {
		fs.log("create", name)
	}
	return &recFile{File: f, fs: fs, name: name}, nil
}

func (fs *recFS) Rename(o, n string) error {
	if fs.log("rename", o) {
		return errCrash
	}
	return fs.OSFS.Rename(o, n)
}

func (fs *recFS) SyncDir(d string) error {
	if fs.log("syncdir", d) {
		return errCrash
	}
	return fs.OSFS.SyncDir(d)
}

type recFile struct {
	wal.File
	fs   *recFS
	name string
}

func (f *recFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.log("write", f.name)
	return f.File.WriteAt(p, off)
}

func (f *recFile) Sync() error {
	if f.fs.log("sync", f.name) {
		return errCrash
	}
	return f.File.Sync()
}

func (f *recFile) Close() error {
	f.fs.log("close", f.name)
	return f.File.Close()
}

func mk(lsn uint64, state string) *Checkpoint {
	c := &Checkpoint{LSN: lsn}
	c.Set("ops", []byte(state))
	c.Set("sources", []byte(fmt.Sprintf("offset=%d", lsn*10)))
	return c
}

func TestWriteLoadLatest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	if _, _, err := LoadLatest(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty dir: %v", err)
	}
	for i := 1; i <= 3; i++ {
		info, err := Write(dir, mk(uint64(i*100), fmt.Sprint("state", i)))
		if err != nil {
			t.Fatal(err)
		}
		if info.ID != uint64(i) || info.LSN != uint64(i*100) || filepath.Base(info.Path) != fileName(uint64(i)) {
			t.Fatalf("write %d: %+v", i, info)
		}
	}
	c, skipped, err := LoadLatest(dir)
	if err != nil || len(skipped) != 0 {
		t.Fatal(err, skipped)
	}
	if st, _ := c.Get("ops"); c.ID != 3 || c.LSN != 300 || string(st) != "state3" || c.CreatedNs == 0 {
		t.Fatalf("latest = %+v", c)
	}
	if _, ok := c.Get("nope"); ok {
		t.Fatal("Get of a missing section succeeded")
	}
	infos, err := List(dir)
	if err != nil || len(infos) != 3 {
		t.Fatal(err, infos)
	}
	for i, in := range infos {
		if in.Err != nil || in.ID != uint64(i+1) || in.LSN != uint64((i+1)*100) || in.Sections != 2 {
			t.Fatalf("List[%d] = %+v", i, in)
		}
	}
	if _, err := Write(dir, &Checkpoint{ID: 2}); !errors.Is(err, ErrExists) {
		t.Fatalf("rewriting ID 2: %v", err)
	}
}

// TestWriteOrder: data is synced before the rename, the directory after it.
func TestWriteOrder(t *testing.T) {
	dir := t.TempDir()
	fs := &recFS{}
	if _, err := (Store{Dir: dir, FS: fs}).Write(mk(1, "a")); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(fs.ops, ", ")
	want := "create 0000000000000001.ckpt.tmp, write 0000000000000001.ckpt.tmp, sync 0000000000000001.ckpt.tmp, close 0000000000000001.ckpt.tmp, rename 0000000000000001.ckpt.tmp, syncdir " + filepath.Base(dir)
	if got != want {
		t.Fatalf("operations:\n got %s\nwant %s", got, want)
	}
}

// TestCrashDuringWrite: a crash before the rename (after the temporary file
// was written and synced, or before its sync) leaves the previous checkpoint
// as the latest; the leftover is ignored, then pruned, and the next Write
// reuses the ID.
func TestCrashDuringWrite(t *testing.T) {
	for _, op := range []string{"sync", "rename"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Write(dir, mk(100, "old")); err != nil {
				t.Fatal(err)
			}
			fs := &recFS{failOp: op}
			if _, err := (Store{Dir: dir, FS: fs}).Write(mk(200, "new")); !errors.Is(err, errCrash) {
				t.Fatalf("Write = %v", err)
			}
			tmp := filepath.Join(dir, fileName(2)+".tmp")
			if _, err := os.Stat(tmp); err != nil {
				t.Fatalf("the crash should leave the temporary file: %v", err)
			}
			c, skipped, err := LoadLatest(dir)
			if err != nil || len(skipped) != 0 || c.LSN != 100 {
				t.Fatalf("after the crash LoadLatest = %+v, %v, %v", c, skipped, err)
			}
			if infos, _ := List(dir); len(infos) != 1 {
				t.Fatalf("List sees %d files", len(infos))
			}
			_, removed, err := Prune(dir, 1)
			if err != nil || len(removed) != 1 || removed[0] != tmp {
				t.Fatalf("Prune removed %v, %v", removed, err)
			}
			info, err := Write(dir, mk(200, "new"))
			if err != nil || info.ID != 2 {
				t.Fatalf("Write after the crash: %+v, %v", info, err)
			}
			if c, _, _ := LoadLatest(dir); c.LSN != 200 {
				t.Fatalf("latest LSN %d", c.LSN)
			}
		})
	}
	t.Run("syncdir", func(t *testing.T) {
		// The rename happened; whether it survives a power loss is up to
		// the directory sync, but the process sees the new file.
		dir := t.TempDir()
		fs := &recFS{failOp: "syncdir"}
		if _, err := (Store{Dir: dir, FS: fs}).Write(mk(1, "x")); !errors.Is(err, errCrash) {
			t.Fatalf("Write = %v", err)
		}
		if c, _, err := LoadLatest(dir); err != nil || c.LSN != 1 {
			t.Fatalf("LoadLatest = %v", err)
		}
	})
}

// TestCorruptNewestFallsBack: a damaged newest checkpoint is skipped with a
// reason and the previous one is loaded.
func TestCorruptNewestFallsBack(t *testing.T) {
	damage := []struct {
		name   string
		f      func(path string) error
		reason codec.Reason
	}{
		{"bit flip", func(p string) error {
			b, _ := os.ReadFile(p)
			b[60] ^= 0x10
			return os.WriteFile(p, b, 0o644)
		}, codec.ReasonChecksum},
		{"truncated", func(p string) error { return os.Truncate(p, 70) }, codec.ReasonMalformed},
		{"empty", func(p string) error { return os.Truncate(p, 0) }, codec.ReasonMalformed},
		{"renamed to another ID", func(p string) error {
			return os.Rename(p, filepath.Join(filepath.Dir(p), fileName(9)))
		}, codec.ReasonMalformed},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			Write(dir, mk(100, "a"))
			Write(dir, mk(200, "b"))
			info, _ := Write(dir, mk(300, "c"))
			if err := d.f(info.Path); err != nil {
				t.Fatal(err)
			}
			c, skipped, err := LoadLatest(dir)
			if err != nil || c.LSN != 200 {
				t.Fatalf("LoadLatest = %+v, %v", c, err)
			}
			var ce *CorruptError
			if len(skipped) != 1 || !errors.As(skipped[0].Err, &ce) || ce.Reason != d.reason || ce.Path != skipped[0].Path {
				t.Fatalf("skipped = %+v", skipped)
			}
			infos, _ := List(dir)
			if !errors.As(infos[len(infos)-1].Err, &ce) || ce.Reason != d.reason {
				t.Fatalf("List did not flag the damaged file: %+v", infos[len(infos)-1])
			}
			// The next Write takes an ID above the damaged one.
			if in, err := Write(dir, mk(400, "d")); err != nil || in.ID <= infos[len(infos)-1].ID {
				t.Fatalf("Write after damage: %+v, %v", in, err)
			}
		})
	}
	t.Run("all damaged", func(t *testing.T) {
		dir := t.TempDir()
		info, _ := Write(dir, mk(1, "a"))
		os.Truncate(info.Path, 10)
		if _, skipped, err := LoadLatest(dir); !errors.Is(err, ErrNoCheckpoint) || len(skipped) != 1 {
			t.Fatalf("LoadLatest = %v, %v", skipped, err)
		}
	})
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := 1; i <= 5; i++ {
		info, err := Write(dir, mk(uint64(i*10), "s"))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, info.Path)
	}
	// Damage the newest: it is kept for inspection, and does not count.
	os.Truncate(paths[4], 50)
	kept, removed, err := Prune(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 2 || kept[0].ID != 3 || kept[1].ID != 4 || kept[0].LSN != 30 {
		t.Fatalf("kept %+v", kept)
	}
	if len(removed) != 2 || removed[0] != paths[0] || removed[1] != paths[1] {
		t.Fatalf("removed %v", removed)
	}
	infos, _ := List(dir)
	if len(infos) != 3 || infos[2].Err == nil {
		t.Fatalf("left %+v", infos)
	}
	if _, _, err := Prune(dir, 0); err == nil {
		t.Fatal("Prune(0) succeeded")
	}
	if _, _, err := Prune(t.TempDir(), 1); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("Prune of an empty dir: %v", err)
	}
}

// Example shows the checkpoint cycle with the WAL: write a checkpoint at
// the WAL's durable LSN, prune old ones, delete the WAL segments no kept
// checkpoint needs, and on restart load the latest.
func Example() {
	dir, err := os.MkdirTemp("", "ckpt")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	for lsn := uint64(1000); lsn <= 3000; lsn += 1000 {
		c := &Checkpoint{LSN: lsn}
		c.Set("ops", []byte("operator state"))
		c.Set("sources", []byte("feed-a=42"))
		if _, err := Write(dir, c); err != nil {
			panic(err)
		}
	}
	kept, _, err := Prune(dir, 2)
	if err != nil {
		panic(err)
	}
	fmt.Println("WAL needed from LSN", kept[0].LSN+1) // w.DeleteBefore(kept[0].LSN + 1)
	c, _, err := LoadLatest(dir)
	if err != nil {
		panic(err)
	}
	src, _ := c.Get("sources")
	fmt.Println(c.ID, c.LSN, string(src))
	// Output:
	// WAL needed from LSN 2001
	// 3 3000 feed-a=42
}
