package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The checkpointed --output file of `qstream run` on its failure paths: a
// refused start, a restart after a completed run, a full disk. Each test
// runs the built binary.

// outputRunArgs are the flags of a small durable run in dir with a window
// that fires only at the end of input, so the last lines of the output are
// end-of-input results; synthetic adds a finite synthetic feed of count
// messages.
func outputRunArgs(dir string, extra ...string) []string {
	args := []string{"run", "--max-symbols", "64", "--shards", "2",
		"--status-interval", "1h", "--windows", "tumbling:1h:ohlcv,count:50:sum",
		"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"),
		"--checkpoint-interval", "20ms"}
	return append(args, extra...)
}

func synthetic(count string) []string {
	return []string{"--count", count, "--rate", "0", "--seed", "7", "--symbols", "10"}
}

// runBinary runs the binary with args in dir and returns its stderr and exit
// status; it fails the test if the process runs longer than limit.
func runBinary(t *testing.T, dir string, limit time.Duration, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(qstreamBinary(t), args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hung := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	start := time.Now()
	err := cmd.Wait()
	hung.Stop()
	if took := time.Since(start); took >= limit {
		t.Fatalf("qstream %s: still running after %s, killed:\n%s", strings.Join(args, " "), limit, stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), 0
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkNoDuplicateLines fails when a line appears twice (every line of the
// test's outputs is unique: indicator lines carry seq, window lines their
// window bounds).
func checkNoDuplicateLines(t *testing.T, what string, b []byte) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if seen[string(l)] {
			t.Fatalf("%s: line repeated: %s", what, l)
		}
		seen[string(l)] = true
	}
}

// Item 4 of issue 8: with a damaged WAL the start is refused, naming the
// segment and offset, and the output file is left byte-identical: nothing
// touches it before recovery has succeeded.
func TestRunRefusedStartKeepsOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	args := outputRunArgs(dir, append(synthetic("20000"), "--output", out)...)
	if s, rc := runBinary(t, dir, 2*time.Minute, args...); rc != 0 {
		t.Fatalf("first run: exit %d\n%s", rc, s)
	}
	before := readFile(t, out)
	if len(before) == 0 {
		t.Fatal("first run wrote no output")
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(segs) == 0 {
		t.Fatal("no WAL segment")
	}
	seg := readFile(t, segs[0])
	seg[4096] ^= 0x04 // early in the log: valid records follow
	if err := os.WriteFile(segs[0], seg, 0o644); err != nil {
		t.Fatal(err)
	}
	s, rc := runBinary(t, dir, 2*time.Minute, args...)
	if rc == 0 || !strings.Contains(s, filepath.Base(segs[0])) || !strings.Contains(s, "offset") {
		t.Fatalf("start over a damaged WAL: exit %d, want a refusal naming segment and offset:\n%s", rc, s)
	}
	if after := readFile(t, out); !bytes.Equal(after, before) {
		t.Fatalf("the refused start changed the output: %d bytes, was %d", len(after), len(before))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".out.jsonl.*")); len(left) != 0 {
		t.Fatalf("staging files left: %v", left)
	}
}

// Item 5 of issue 8: what a completed run wrote stays written. A restart
// on the same data directory, whether its own input ends again or it is
// stopped with Ctrl-C while waiting on another feed, neither rewinds the
// output over the end-of-input window results nor writes them again.
func TestRunRestartAfterCompletedRunKeepsOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	args := outputRunArgs(dir, append(synthetic("20000"), "--output", out)...)
	if s, rc := runBinary(t, dir, 2*time.Minute, args...); rc != 0 {
		t.Fatalf("first run: exit %d\n%s", rc, s)
	}
	want := readFile(t, out)
	if n := bytes.Count(want, []byte(`"window":"tumbling:1h:ohlcv"`)); n != 10 {
		t.Fatalf("first run: %d end-of-input window results, want 10 (one per symbol)", n)
	}
	checkNoDuplicateLines(t, "first run", want)

	// The same command again: its input is complete already.
	if s, rc := runBinary(t, dir, 2*time.Minute, args...); rc != 0 {
		t.Fatalf("restart: exit %d\n%s", rc, s)
	}
	if got := readFile(t, out); !bytes.Equal(got, want) {
		checkNoDuplicateLines(t, "after the restart", got)
		t.Fatalf("a restart of the completed run changed the output: %d bytes, was %d", len(got), len(want))
	}

	// A restart on a live feed, stopped cleanly with Ctrl-C.
	cmd := exec.Command(qstreamBinary(t), outputRunArgs(dir, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--output", out)...)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer kill.Stop()
	var all bytes.Buffer
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		all.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "listening on") {
			cmd.Process.Signal(syscall.SIGINT)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tcp restart stopped with Ctrl-C: %v\n%s", err, all.String())
	}
	if got := readFile(t, out); !bytes.Equal(got, want) {
		t.Fatalf("a restart stopped with Ctrl-C changed the output: %d bytes (%d window results), was %d:\n%s",
			len(got), bytes.Count(got, []byte(`"window":"tumbling:1h:ohlcv"`)), len(want), all.String())
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

// Item 6 of issue 8: the output's disk fills up. The run stops with an
// error naming the file and ENOSPC and a non-zero status, in bounded time;
// the acknowledged input stays in the WAL (on another disk), and once there
// is space a restart recovers and completes the output exactly once: the
// same lines as an uninterrupted run, none twice.
func TestRunOutputDiskFull(t *testing.T) {
	const count = "60000"
	ref := t.TempDir()
	if s, rc := runBinary(t, ref, 2*time.Minute, outputRunArgs(ref, append(synthetic(count), "--output", filepath.Join(ref, "out.jsonl"))...)...); rc != 0 {
		t.Fatalf("reference run: exit %d\n%s", rc, s)
	}
	want := readFile(t, filepath.Join(ref, "out.jsonl"))
	if len(want) < 1<<20 {
		t.Fatalf("reference output of %d bytes does not overflow the small file system", len(want))
	}

	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, disk, "256k")
	out := filepath.Join(disk, "out.jsonl")
	args := outputRunArgs(dir, append(synthetic(count), "--output", out, "--ack-file", filepath.Join(dir, "acks"), "--ack-every", "1000")...)
	s, rc := runBinary(t, dir, 30*time.Second, args...)
	t.Logf("run on a full disk: exit %d:\n%s", rc, s)
	if rc == 0 || !strings.Contains(s, out) || !strings.Contains(s, syscall.ENOSPC.Error()) {
		t.Fatalf("run on a full disk: exit %d, want non-zero with an error naming %s and %q:\n%s", rc, out, syscall.ENOSPC.Error(), s)
	}
	if !strings.Contains(s, "qstream run: ") {
		t.Fatalf("no final error line:\n%s", s)
	}
	acked := maxAck(t, filepath.Join(dir, "acks"))
	if acked == 0 {
		t.Fatalf("nothing was acknowledged before the disk filled:\n%s", s)
	}

	// Free space and restart: recovery completes the output.
	if b, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, b)
	}
	s, rc = runBinary(t, dir, 2*time.Minute, args...)
	if rc != 0 || !strings.Contains(s, "qstream: recovered from") {
		t.Fatalf("restart with space: exit %d\n%s", rc, s)
	}
	got := readFile(t, out)
	checkNoDuplicateLines(t, "after the restart", got)
	if !sameLines(got, want) {
		t.Fatalf("output after the full disk and a restart (%d bytes, %d lines) differs from the uninterrupted run's (%d bytes, %d lines)",
			len(got), bytes.Count(got, []byte("\n")), len(want), bytes.Count(want, []byte("\n")))
	}
	if ents, _ := os.ReadDir(disk); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("files on the output's disk: %v, want only out.jsonl", names)
	}
}

// Ctrl-C stops run in bounded time even when the output blocks (standard
// output into a pipe nobody reads: the write never returns, the rings fill
// and the feed is blocked on backpressure): the clean stop cannot finish, so
// the process exits with status 1 and says so; the WAL recovers the rest.
func TestRunInterruptWithBlockedOutputIsBounded(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(qstreamBinary(t), outputRunArgs(dir, "--rate", "0", "--symbols", "10", "--output", "-", "--stop-timeout", hardStopAfter.String())...)
	cmd.Dir = dir
	pr, pw, err := os.Pipe() // never read
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd.Stdout = pw
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	kill := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer kill.Stop()
	var all bytes.Buffer
	sc := bufio.NewScanner(stderr)
	var sent time.Time
	for sc.Scan() {
		all.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "qstream: running:") {
			time.Sleep(time.Second) // the pipe and the rings fill
			cmd.Process.Signal(syscall.SIGINT)
			sent = time.Now()
		}
	}
	err = cmd.Wait()
	took := time.Since(sent)
	if sent.IsZero() {
		t.Fatalf("never running: %v\n%s", err, all.String())
	}
	if took > hardStopAfter+5*time.Second {
		t.Fatalf("stopped %s after SIGINT, want within %s:\n%s", took, hardStopAfter+5*time.Second, all.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(all.String(), "not stopped") {
		t.Fatalf("exit after SIGINT with a blocked output: %v, want status 1 and a message:\n%s", err, all.String())
	}
	t.Logf("stopped %s after SIGINT", took.Round(time.Millisecond))
}
