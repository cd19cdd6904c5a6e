package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qstream/checkpoint"
	"qstream/wal"
)

// statusLine returns the last "status: " line of inspect's output.
func statusLine(t *testing.T, out string) string {
	t.Helper()
	var st string
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "status: ") {
			st = l
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d status lines, want one verdict:\n%s", n, out)
	}
	return st
}

// Item 11 of issue 8: `wal inspect` printed "status: ok" and exited 1 when
// no checkpoint was usable. The status line is now one verdict over the WAL
// and the checkpoints, says why when it is not ok, and agrees with the exit
// status, in every case.
func TestWALInspectStatusAgreesWithExit(t *testing.T) {
	root := t.TempDir()
	// A WAL of several segments, its first one pruned: it starts after LSN 1.
	var b strings.Builder
	for i := 1; i <= 30_000; i++ {
		fmt.Fprintf(&b, `{"type":"trade","symbol":"W%d","ts":%d,"price":%d.5,"volume":1}`+"\n", i%5, 1_700_000_000_000_000_000+int64(i)*1000, 100+i%9)
	}
	input := filepath.Join(root, "in.jsonl")
	if err := os.WriteFile(input, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(root, "wal")
	writeWAL(t, walDir, input, "jsonl")
	segs, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if len(segs) < 3 {
		t.Fatalf("%d segments, want at least 3", len(segs))
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	rep, err := wal.Inspect(walDir)
	if err != nil || rep.FirstLSN <= 1 || rep.Corruption != nil {
		t.Fatalf("pruned WAL: %+v, %v", rep, err)
	}

	checkpoints := func(name string, lsns ...uint64) string {
		dir := filepath.Join(root, name)
		for _, lsn := range lsns {
			if _, err := checkpoint.Write(dir, &checkpoint.Checkpoint{LSN: lsn, CreatedNs: 1}); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	damage := func(dir string) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
		last := files[len(files)-1]
		data, _ := os.ReadFile(last)
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(last, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	within := checkpoints("ck-within", rep.FirstLSN+10)
	pruned := checkpoints("ck-pruned", rep.FirstLSN-100, rep.FirstLSN+20)
	damage(pruned) // the newer one is damaged, the older one is pruned past
	ahead := checkpoints("ck-ahead", rep.LastLSN+5)

	for _, tc := range []struct {
		name   string
		ckDir  string
		rc     int
		status []string
	}{
		{"usable checkpoint", within, 0, []string{"status: ok"}},
		{"no usable checkpoint", pruned, 1, []string{"status: no usable checkpoint (of 2, none is valid",
			fmt.Sprintf("starts at LSN %d", rep.FirstLSN), "recovery refuses to start"}},
		{"checkpoint ahead", ahead, 1, []string{"status: checkpoint 1 is ahead of the WAL", fmt.Sprintf("the WAL ends at %d", rep.LastLSN)}},
	} {
		out, stderr, rc := qstream(t, "wal", "inspect", "--checkpoint-dir", tc.ckDir, walDir)
		st := statusLine(t, out)
		for _, want := range tc.status {
			if !strings.Contains(st, want) {
				t.Errorf("%s: status %q lacks %q", tc.name, st, want)
			}
		}
		if rc != tc.rc || (rc == 0) != (st == "status: ok") {
			t.Errorf("%s: exit %d with %q (want exit %d)\n%s%s", tc.name, rc, st, tc.rc, out, stderr)
		}
	}

	// A WAL that still starts at LSN 1 needs no checkpoint: with only a
	// damaged one, recovery replays the whole WAL, and the status is ok.
	whole := filepath.Join(root, "wal-whole")
	writeWAL(t, whole, "testdata/ticks.jsonl", "jsonl")
	dmg := checkpoints("ck-damaged", 3)
	damage(dmg)
	out, _, rc := qstream(t, "wal", "inspect", "--checkpoint-dir", dmg, whole)
	if st := statusLine(t, out); rc != 0 || st != "status: ok" || !strings.Contains(out, "it would replay the whole WAL") {
		t.Errorf("whole WAL, damaged checkpoint: exit %d, %q\n%s", rc, st, out)
	}
	// Corruption: status and exit agree, and name the segment.
	segs, _ = filepath.Glob(filepath.Join(whole, "*.wal"))
	data, _ := os.ReadFile(segs[0])
	data[600] ^= 0x04
	if err := os.WriteFile(segs[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, rc = qstream(t, "wal", "inspect", "--checkpoint-dir", dmg, whole)
	if st := statusLine(t, out); rc != 1 || !strings.HasPrefix(st, "status: CORRUPT: Open refuses to start (") || !strings.Contains(st, filepath.Base(segs[0])) {
		t.Errorf("corrupt WAL: exit %d, %q\n%s", rc, st, out)
	}
}
