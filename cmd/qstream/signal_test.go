package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// qstreamBinary builds the qstream binary once per test process.
func qstreamBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qstream-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "qstream")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v\n%s", binErr, binPath)
	}
	return binPath
}

// TestRunStatusLineAndInterrupt runs the binary as `make run` does (no feed
// flags), waits for status lines, sends SIGINT and expects a clean stop with
// a summary and exit status 0.
func TestRunStatusLineAndInterrupt(t *testing.T) {
	bin := qstreamBinary(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "run", "--rate", "20000", "--status-interval", "100ms")
	cmd.Dir = dir // the embedded defaults may write local state (the WAL) into the working directory
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	sc := bufio.NewScanner(stderr)
	status := 0
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		if strings.Contains(line, "msg/s") && strings.Contains(line, "p99.9") && strings.Contains(line, "rings") {
			status++
			if status == 3 {
				cmd.Process.Signal(syscall.SIGINT)
			}
		}
	}
	err = cmd.Wait()
	if status < 3 {
		t.Fatalf("saw %d status lines, want 3:\n%s", status, all.String())
	}
	if err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, all.String())
	}
	if !strings.Contains(all.String(), "stopped after") {
		t.Fatalf("no final summary:\n%s", all.String())
	}
}
