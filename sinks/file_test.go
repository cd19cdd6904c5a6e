package sinks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
)

var _ engine.CheckpointedOutput = (*FileOutput)(nil)

// TestFileOutputCheckpoint: the --output file keeps its previous content
// until a start has succeeded: a recovery stages the replay's outputs and
// its checkpoint commits them, rewinding the file to the mark (cutting off
// what came after, a torn line included); a recovery that never commits
// leaves the file byte-identical; a fresh run replaces it.
func TestFileOutputCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	syms := codec.NewSymbolTable(16)
	sym, _ := syms.InternString("X")
	specs, _ := ops.ParseIndicators("sma:2")
	outs := func(seqs ...uint64) []ops.Output {
		var o []ops.Output
		for _, s := range seqs {
			o = append(o, ops.Output{Kind: ops.OutIndicators, Symbol: sym, Seq: s, Price: float64(s), NValues: 1, Values: [ops.MaxValues]float64{math.NaN()}})
		}
		return o
	}
	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	line := func(seq int) string {
		return fmt.Sprintf(`{"seq":%d,"symbol":"X","ts":0,"price":%d,"volume":0,"sma_2":null}`+"\n", seq, seq)
	}
	if err := os.WriteFile(path, []byte("stale content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() *FileOutput {
		o, err := OpenFileOutput(path, JSONLConfig{Symbols: syms, Indicators: []string{specs[0].Name()}})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}

	// A fresh run: the old content goes at the first write.
	o := open()
	if got := read(); got != "stale content\n" {
		t.Fatalf("opening changed the file: %q", got)
	}
	if err := o.HandleOutputs(outs(1, 2)); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), line(1)+line(2); got != want {
		t.Fatalf("after a batch (flushed at once): %q, want %q", got, want)
	}
	mark, err := o.CheckpointOutput()
	if err != nil || len(mark) != fileOutputMarkLen || binary.LittleEndian.Uint64(mark) != uint64(len(line(1)+line(2))) {
		t.Fatalf("CheckpointOutput = %x, %v; want the file length", mark, err)
	}
	if err := o.HandleOutputs(outs(3)); err != nil {
		t.Fatal(err)
	}
	// A crash: the process dies with a torn line after output 3.
	if _, err := o.f.WriteString(`{"seq":4,"sym`); err != nil {
		t.Fatal(err)
	}
	o.f.Close()
	crashed := line(1) + line(2) + line(3) + `{"seq":4,"sym`

	// A recovery that fails after RestoreOutput (the replay hits a damaged
	// record, or is interrupted): the file is as it was.
	o = open()
	if err := o.RestoreOutput(mark); err != nil {
		t.Fatal(err)
	}
	if err := o.HandleOutputs(outs(3)); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != crashed {
		t.Fatalf("during the replay: %q, want the file untouched %q", got, crashed)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != crashed {
		t.Fatalf("after a recovery that did not commit: %q, want %q", got, crashed)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".out.jsonl.*")); len(left) != 0 {
		t.Fatalf("staging files left: %v", left)
	}

	// Recovery rewinds to the mark at its checkpoint; the replay wrote 3
	// again, the live run 4.
	o = open()
	if err := o.RestoreOutput(mark); err != nil {
		t.Fatal(err)
	}
	if err := o.HandleOutputs(outs(3)); err != nil {
		t.Fatal(err)
	}
	mark3, err := o.CheckpointOutput()
	if err != nil || binary.LittleEndian.Uint64(mark3) != uint64(len(line(1)+line(2)+line(3))) {
		t.Fatalf("the recovery's CheckpointOutput = %x, %v; want the length up to line 3", mark3, err)
	}
	if got, want := read(), line(1)+line(2)+line(3); got != want {
		t.Fatalf("after the recovery's checkpoint: %q, want %q", got, want)
	}
	if err := o.HandleOutputs(outs(4)); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), line(1)+line(2)+line(3)+line(4); got != want {
		t.Fatalf("after the replay: %q, want %q", got, want)
	}

	// A mark beyond the file: the file was changed behind qstream's back.
	o = open()
	if err := o.RestoreOutput(binary.LittleEndian.AppendUint64(nil, 1<<20)); err == nil || !strings.Contains(err.Error(), "shorter than the checkpoint's mark") {
		t.Errorf("RestoreOutput beyond the end = %v", err)
	}
	if err := o.RestoreOutput([]byte{1}); err == nil {
		t.Error("RestoreOutput of a 1-byte mark succeeded")
	}
	// Recovery without a checkpoint replays from the first record: empty,
	// once it commits.
	if err := o.RestoreOutput(nil); err != nil {
		t.Fatal(err)
	}
	if got := read(); got == "" {
		t.Errorf("RestoreOutput(nil) emptied the file before the commit")
	}
	if _, err := o.CheckpointOutput(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "" {
		t.Errorf("after RestoreOutput(nil) and the commit: %q, want empty", got)
	}
	o.Close()

	// A fresh run that writes nothing still replaces the old content once
	// it has started (Begin); one that never started leaves it.
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = open()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "old\n" {
		t.Errorf("a run that never started left %q", got)
	}
	o = open()
	if err := o.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "" {
		t.Errorf("fresh run without outputs left %q", got)
	}
}

// The file output's error on a full disk: it names the file, keeps ENOSPC
// for errors.Is through every wrapping, is permanent for the Guard
// (never retried) and sticky.
func TestFileOutputDiskFullError(t *testing.T) {
	disk := t.TempDir()
	mountTmpfs(t, disk, "64k")
	path := filepath.Join(disk, "out.jsonl")
	syms := codec.NewSymbolTable(16)
	sym, _ := syms.InternString("X")
	h, err := OpenFileOutput(path, JSONLConfig{Symbols: syms, Indicators: []string{"sma_2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	batch := make([]ops.Output, 100)
	for i := range batch {
		batch[i] = ops.Output{Kind: ops.OutIndicators, Symbol: sym, Seq: uint64(i), NValues: 1, Values: [ops.MaxValues]float64{math.NaN()}}
	}
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ {
		werr = h.HandleOutputs(batch)
	}
	if werr == nil {
		t.Fatal("64 KiB took 100,000 lines")
	}
	if !errors.Is(werr, syscall.ENOSPC) || !errors.Is(werr, ErrPermanent) || !strings.Contains(werr.Error(), path) {
		t.Fatalf("error %v: want ENOSPC, ErrPermanent and the path %s", werr, path)
	}
	if err := h.HandleOutputs(batch[:1]); err != werr {
		t.Fatalf("after the failure: %v, want the same sticky error", err)
	}
	if _, err := h.CheckpointOutput(); err != werr {
		t.Fatalf("a checkpoint after the failure: %v, want the sticky error", err)
	}
}

// mountTmpfs mounts a tmpfs of size (mount(8)'s syntax, "256k") at dir and
// unmounts it when the test ends. It fails when mounting is not permitted.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s tmpfs %s: %v: %s\nthis test needs root (or CAP_SYS_ADMIN) to mount a small file system that fills up", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// failAfter is a writer that takes n bytes, then fails.
type failAfter struct {
	n   int
	got []byte
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(f.got)+len(p) > f.n {
		return 0, errors.New("pipe: broken")
	}
	f.got = append(f.got, p...)
	return len(p), nil
}

// WriterOutput flushes every batch to its writer at once (a reader of the
// pipe sees it) and keeps its first error.
func TestWriterOutputFlushesEachBatch(t *testing.T) {
	syms := codec.NewSymbolTable(16)
	sym, _ := syms.InternString("X")
	w := &failAfter{n: 200}
	o := NewWriterOutput(w, JSONLConfig{Symbols: syms})
	batch := []ops.Output{{Kind: ops.OutIndicators, Symbol: sym, Seq: 1, Price: 2}}
	if err := o.HandleOutputs(batch); err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"symbol":"X","ts":0,"price":2,"volume":0}` + "\n"
	if string(w.got) != want {
		t.Fatalf("after one batch the writer has %q, want %q", w.got, want)
	}
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = o.HandleOutputs(batch)
	}
	if err == nil || !strings.Contains(err.Error(), "pipe: broken") {
		t.Fatalf("writing past the writer's end: %v", err)
	}
	if err2 := o.HandleOutputs(batch); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("after the failure: %v, want the sticky %v", err2, err)
	}
	if err2 := o.Flush(); err2 == nil {
		t.Fatal("Flush after the failure: nil")
	}
}
