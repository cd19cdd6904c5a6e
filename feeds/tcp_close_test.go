package feeds

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

// tcpTimeWaits counts the IPv4 sockets in TIME_WAIT whose local port is port
// (/proc/net/tcp: state 06).
func tcpTimeWaits(t *testing.T, port int) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatalf("this test reads /proc/net/tcp (Linux): %v", err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "06" {
			n++
		}
	}
	return n
}

// Item 3 of issue 8: a server stopped abruptly with live connections leaves
// them in TIME_WAIT on its port; a new server must bind the same address at
// once (a restart after kill -9 closes the sockets the same way).
func TestTCPRebindWithTimeWait(t *testing.T) {
	rec := newNetRecorder(t, false)
	s1, stop1 := startTCPServer(t, TCPConfig{Format: TCPLines, EventLoops: 2}, rec)
	addr := s1.Addr().String()
	var conns []*net.TCPConn
	for i := range 4 {
		c := dialTCP(t, s1)
		if _, err := c.Write([]byte(tcpTick("AAPL", i+1, 1) + "\n")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	netWaitFor(t, 10*time.Second, "4 events", func() bool { return rec.total.Load() == 4 })
	stop1() // the server closes the live connections first: its side goes to TIME_WAIT
	for _, c := range conns {
		expectClosed(t, c, 10*time.Second)
		c.Close()
	}
	netWaitFor(t, 10*time.Second, "sockets in TIME_WAIT on the port", func() bool { return tcpTimeWaits(t, s1.Addr().Port) > 0 })

	rec2 := newNetRecorder(t, false)
	s2, _ := startTCPServer(t, TCPConfig{Addr: addr, Format: TCPLines, EventLoops: 2}, rec2)
	if got := s2.Addr().String(); got != addr {
		t.Fatalf("bound %s, want %s", got, addr)
	}
	c := dialTCP(t, s2)
	if _, err := c.Write([]byte(tcpTick("AAPL", 9, 1) + "\n")); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "an event on the new server", func() bool { return rec2.total.Load() == 1 })
}

// A second live server on the same address is refused: address reuse is
// for sockets in TIME_WAIT, not for sharing a listener.
func TestTCPSecondListenerRefused(t *testing.T) {
	s1, _ := startTCPServer(t, TCPConfig{Format: TCPLines, EventLoops: 1}, newNetRecorder(t, false))
	s2, err := NewTCPServer(TCPConfig{Addr: s1.Addr().String(), Format: TCPLines, EventLoops: 1, Logger: tcpQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s2.Run(ctx, newNetRecorder(t, false)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second listener on %s: Run = %v, want address already in use", s1.Addr(), err)
	}
}

// Item 11: a half line or half frame left when a connection closes is
// counted and rejected with its position, not dropped silently.
func TestTCPTruncatedAtClose(t *testing.T) {
	t.Run("line", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		first := tcpTick("AAPL", 1, 1) + "\n"
		half := tcpTick("AAPL", 2, 1)[:30]
		if _, err := c.Write([]byte(first + half)); err != nil {
			t.Fatal(err)
		}
		netWaitFor(t, 10*time.Second, "the first line", func() bool { return rec.total.Load() == 1 })
		c.Close()
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		st, sn := s.Stats(), rec.snapshot()
		if st.Truncated != 1 || st.Rejects != 1 || st.Messages != 1 {
			t.Errorf("stats %+v, want 1 truncated (a reject) and 1 message", st)
		}
		if len(sn.rejects) != 1 {
			t.Fatalf("rejects %+v, want the half line", sn.rejects)
		}
		r := sn.rejects[0]
		if r.Reason != codec.ReasonMalformed || r.Raw != half || r.Pos.Line != 2 || r.Pos.Offset != int64(len(first)) || !strings.Contains(r.Err, "truncated") {
			t.Errorf("reject %+v, want malformed %q at line 2, offset %d, truncated", r, half, len(first))
		}
	})
	t.Run("frame", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		ev1, ev2 := tcpFrameEvent(1, 1), tcpFrameEvent(1, 2)
		stream := codec.AppendFrame(nil, &ev1)
		stream = codec.AppendFrame(stream, &ev2)
		stream = stream[:codec.FrameSize+20]
		if _, err := c.Write(stream); err != nil {
			t.Fatal(err)
		}
		netWaitFor(t, 10*time.Second, "the first frame", func() bool { return rec.total.Load() == 1 })
		c.Close()
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		st, sn := s.Stats(), rec.snapshot()
		if st.Truncated != 1 || len(sn.rejects) != 1 || sn.rejects[0].Reason != codec.ReasonMalformed ||
			sn.rejects[0].Pos != (Position{Offset: codec.FrameSize}) || sn.rejects[0].Raw != string(stream[codec.FrameSize:]) {
			t.Errorf("stats %+v rejects %+v, want 1 truncated frame at offset %d", st, sn.rejects, codec.FrameSize)
		}
	})
	t.Run("oversize is not also truncated", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, MaxMessageSize: 64, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		_ = c.SetNoDelay(true)
		// A long line in two writes: carried, then over the limit.
		if _, err := c.Write([]byte(strings.Repeat("x", 40))); err != nil {
			t.Fatal(err)
		}
		netWaitFor(t, 10*time.Second, "the carry", func() bool { return s.Stats().Bytes == 40 })
		_, _ = c.Write([]byte(strings.Repeat("y", 40)))
		expectClosed(t, c, 10*time.Second)
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		if st, sn := s.Stats(), rec.snapshot(); st.Oversize != 1 || st.Truncated != 0 || len(sn.rejects) != 1 {
			t.Errorf("stats %+v rejects %+v, want one oversize reject only", st, sn.rejects)
		}
	})
}

// Item 11: idle connections are closed after IdleTimeout and counted, so
// they cannot hold every slot; a connection that sends stays open.
func TestTCPIdleTimeout(t *testing.T) {
	rec := newNetRecorder(t, false)
	s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, MaxConns: 2, EventLoops: 2, IdleTimeout: time.Second}, rec)
	idle, busy := dialTCP(t, s), dialTCP(t, s)
	netWaitFor(t, 10*time.Second, "2 open", func() bool { return s.Stats().Open == 2 })
	// MaxConns are held: a third is refused.
	expectClosed(t, dialTCP(t, s), 10*time.Second)
	stopBusy := make(chan struct{})
	busyDone := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stopBusy:
				busyDone <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := busy.Write([]byte(tcpTick("AAPL", i, 1) + "\n")); err != nil {
				busyDone <- err
				return
			}
		}
	}()
	expectClosed(t, idle, 10*time.Second)
	netWaitFor(t, 10*time.Second, "the idle close counted", func() bool { st := s.Stats(); return st.IdleClosed == 1 && st.Open == 1 })
	// The freed slot takes a new connection.
	c3 := dialTCP(t, s)
	if _, err := c3.Write([]byte(tcpTick("MSFT", 1, 1) + "\n")); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "the new connection's event", func() bool {
		for _, cs := range s.Stats().Conns {
			if cs.Remote == c3.LocalAddr().String() && cs.Messages == 1 {
				return true
			}
		}
		return false
	})
	// c3 falls silent after its line and is closed in turn; the busy one
	// stays open all along.
	expectClosed(t, c3, 10*time.Second)
	close(stopBusy)
	if err := <-busyDone; err != nil {
		t.Fatalf("the busy connection failed: %v", err)
	}
	netWaitFor(t, 10*time.Second, "the second idle close counted", func() bool { return s.Stats().IdleClosed == 2 })
	st := s.Stats()
	if st.Open != 1 || len(st.Conns) != 1 || st.Conns[0].Remote != busy.LocalAddr().String() || st.Conns[0].Messages < 5 {
		t.Errorf("stats %+v: want only the busy connection open, with its messages", st)
	}
}

func TestTCPIdleTimeoutDefaults(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, DefaultTCPIdleTimeout}, {-1, -1}, {time.Second, time.Second},
	} {
		s, err := NewTCPServer(TCPConfig{Addr: "127.0.0.1:0", Format: TCPLines, IdleTimeout: tc.in})
		if err != nil {
			t.Fatal(err)
		}
		if s.cfg.IdleTimeout != tc.want {
			t.Errorf("IdleTimeout %v → %v, want %v", tc.in, s.cfg.IdleTimeout, tc.want)
		}
	}
}
