package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// writeAndCheck writes pieces of random bytes at scattered offsets through
// OSFS (a page, a megabyte, a few bytes across a page boundary), syncs, and
// checks the file holds them; it returns the file, still open.
func writeAndCheck(t *testing.T, name string) *osFile {
	t.Helper()
	f, err := OSFS{}.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]byte, 3<<20)
	for _, w := range []struct{ off, n int }{{0, 4096}, {4096, 1 << 20}, {8190, 5}, {2 << 20, 777}, {1 << 21, 1}} {
		p := make([]byte, w.n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if n, err := f.WriteAt(p, int64(w.off)); err != nil || n != len(p) {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), w.off, n, err)
		}
		copy(want[w.off:], p)
	}
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if end := 2<<20 + 777; len(got) != end || !bytes.Equal(got, want[:end]) {
		t.Fatalf("the file holds %d bytes, not the %d written (or other bytes)", len(got), end)
	}
	return f.(*osFile)
}

// The WAL's files write and sync through their io_uring on this machine
// (the kernel CI runs on has it): not a silent fall-back to plain system
// calls, which would bring back what uring.go is for. With io_uring off,
// the same writes go through pwrite(2) and fdatasync(2).
func TestOSFileWritesThroughUring(t *testing.T) {
	dir := t.TempDir()
	f := writeAndCheck(t, filepath.Join(dir, "a"))
	if f.ring == nil || f.noRing {
		t.Fatalf("the file has no io_uring (io_uring off: %v); its writes made blocking system calls", uringOff.Load())
	}
	if err := f.Close(); err != nil || f.ring != nil {
		t.Fatalf("Close: %v, ring %v", err, f.ring)
	}

	was := uringOff.Load()
	uringOff.Store(true)
	defer uringOff.Store(was)
	g := writeAndCheck(t, filepath.Join(dir, "b"))
	if g.ring != nil || !g.noRing {
		t.Fatal("io_uring off, yet the file has a ring")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// A failed write through the ring is the error pwrite(2) gives, named by
// the file.
func TestUringWriteError(t *testing.T) {
	name := filepath.Join(t.TempDir(), "ro")
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OSFS{}.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.WriteAt([]byte("abc"), 0)
	var pe *os.PathError
	if n != 0 || !errors.Is(err, unix.EBADF) || !errors.As(err, &pe) || pe.Path != name {
		t.Fatalf("WriteAt on a read-only file: %d, %v; want 0 and EBADF naming %s", n, err, name)
	}
	if f.(*osFile).ring == nil {
		t.Fatal("the write did not go through the ring")
	}
}

// A full disk (a 256 KiB tmpfs) fails a write through the ring with ENOSPC,
// after the bytes that fitted.
func TestUringFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -t tmpfs -o size=256k tmpfs %s: %v: %s\nthis test needs root (or CAP_SYS_ADMIN) to mount a small file system that fills up", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	f, err := OSFS{}.OpenFile(filepath.Join(dir, "wal"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 1<<20)
	n, err := f.WriteAt(p, 0)
	if !errors.Is(err, unix.ENOSPC) || n >= len(p) {
		t.Fatalf("a 1 MiB write on a 256 KiB file system: %d bytes, %v; want ENOSPC", n, err)
	}
	if f.(*osFile).ring == nil {
		t.Fatal("the write did not go through the ring")
	}
}
