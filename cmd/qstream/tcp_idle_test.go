package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// `run --tcp-idle-timeout` closes a silent connection and counts it; a half
// line left at close is counted as truncated (issue 8, item 11).
func TestRunTCPIdleAndTruncated(t *testing.T) {
	r := startRun(t, "--feed", "tcp", "--tcp-addr", "127.0.0.1:0", "--tcp-format", "lines", "--tcp-idle-timeout", "200ms")
	addr := r.addr(t, "tcp")
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	half, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := half.Write([]byte(`{"type":"trade","symbol":"A","ts":1,"price":1,"volume":1}` + "\n" + `{"type":"tra`)); err != nil {
		t.Fatal(err)
	}
	// The server closes both (idle after the half line too): reads end.
	for _, c := range []net.Conn{idle, half} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 16)); err == nil {
			t.Fatal("read data from the server; want its close")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection still open 10s after the idle timeout")
		}
	}
	stderr, err := r.stop(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "truncated=1 idle_closed=2") {
		t.Errorf("stderr lacks truncated=1 idle_closed=2:\n%s", stderr)
	}
}
