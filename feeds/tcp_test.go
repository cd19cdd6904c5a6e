package feeds

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"qstream/codec"
)

// tcpQuietLogger keeps the expected warnings (oversize closes, refusals) out
// of the test output unless -v.
func tcpQuietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startTCPServer runs a TCPServer on 127.0.0.1 (an ephemeral port) until
// the returned stop is called (also at cleanup).
func startTCPServer(t testing.TB, cfg TCPConfig, pubs Publishers) (*TCPServer, func()) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = tcpQuietLogger()
	}
	s, err := NewTCPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, pubs) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready after 10s")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func dialTCP(t testing.TB, s *TCPServer) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tcpTick(sym string, seq int, price float64) string {
	return fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%g,"volume":%d,"id":"t-%d"}`,
		sym, 1700000000000000000+seq, price, seq, seq)
}

// expectClosed reads from c until the server closes it (EOF or reset), and
// fails if that does not happen within d.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v", d)
		}
		return // io.EOF or connection reset
	}
}

func TestTCPLines(t *testing.T) {
	rec := newNetRecorder(t, true)
	s, stop := startTCPServer(t, TCPConfig{Format: TCPLines, Source: 7, EventLoops: 2}, rec)
	c := dialTCP(t, s)
	input := tcpTick("AAPL", 1, 189.25) + "\n" +
		"\n" + // blank: skipped, not rejected
		`{"type":"trade","symbol":"AAPL","ts":1,"price":-1,"volume":1}` + "\n" + // bad price: rejected
		"not json at all\r\n" + // malformed: rejected
		tcpTick("MSFT", 5, 410.5) + "\r\n" +
		tcpTick("AAPL", 6, 189.5)
	// Write it in pieces that cut lines mid-way.
	for _, part := range []string{input[:17], input[17:90], input[90:], "\n"} {
		if _, err := c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	netWaitFor(t, 10*time.Second, "3 events and 2 rejects", func() bool {
		sn := rec.snapshot()
		return sn.published == 3 && len(sn.rejects) == 2
	})
	sn := rec.snapshot()
	want := []struct {
		sym   string
		seq   uint64
		price float64
	}{{"AAPL", 1, 189.25}, {"MSFT", 5, 410.5}, {"AAPL", 6, 189.5}}
	for i, w := range want {
		ev := sn.events[i]
		// Seq is left 0 for the engine's Publisher to number (the source
		// offset); the sender's number is in ts.
		if rec.syms.Name(ev.Symbol) != w.sym || ev.Seq != 0 || ev.TsNs != netRecTsBase+int64(w.seq) || ev.Price != w.price || ev.Kind != codec.KindTrade || ev.Source != 7 {
			t.Errorf("event %d = %s seq %d ts %d price %v kind %v source %d; want %s seq 0 ts +%d price %v trade source 7",
				i, rec.syms.Name(ev.Symbol), ev.Seq, ev.TsNs, ev.Price, ev.Kind, ev.Source, w.sym, w.seq, w.price)
		}
		if ev.IDHash != codec.HashID([]byte(fmt.Sprintf("t-%d", w.seq))) {
			t.Errorf("event %d IDHash %x, want the hash of its id", i, ev.IDHash)
		}
	}
	r0, r1 := sn.rejects[0], sn.rejects[1]
	if r0.Reason != codec.ReasonBadPrice || r0.Pos.Line != 3 || r0.Pos.Offset != int64(len(tcpTick("AAPL", 1, 189.25))+2) {
		t.Errorf("reject 0 = %+v, want bad_price at line 3, offset %d", r0, len(tcpTick("AAPL", 1, 189.25))+2)
	}
	if r1.Reason != codec.ReasonMalformed || r1.Pos.Line != 4 || r1.Raw != "not json at all" {
		t.Errorf("reject 1 = %+v, want malformed %q at line 4", r1, "not json at all")
	}
	// Counters are added after a read's messages are published: wait for them.
	netWaitFor(t, 10*time.Second, "connection counters", func() bool { st := s.Stats(); return st.Messages == 3 && st.Rejects == 2 })
	st := s.Stats()
	if st.Open != 1 || st.Messages != 3 || st.Rejects != 2 || st.Bytes != uint64(len(input)+1) || st.Errors != 0 {
		t.Errorf("stats %+v, want 1 open, 3 messages, 2 rejects, %d bytes", st, len(input)+1)
	}
	if len(st.Conns) != 1 || st.Conns[0].ID != 1 || st.Conns[0].Messages != 3 || st.Conns[0].Remote != c.LocalAddr().String() {
		t.Errorf("conn stats %+v", st.Conns)
	}
	// The connection is still usable after the bad lines.
	if _, err := c.Write([]byte(tcpTick("AAPL", 7, 190) + "\n")); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "4th event", func() bool { return rec.snapshot().published == 4 })
	c.Close()
	netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
	st = s.Stats()
	if st.Open != 0 || st.Messages != 4 || st.Rejects != 2 {
		t.Errorf("stats after close %+v, want totals kept: 4 messages, 2 rejects", st)
	}
	stop()
	if sn := rec.snapshot(); sn.flushes == 0 {
		t.Errorf("no Flush calls")
	}
}

func tcpFrameEvent(conn, seq int) codec.Event {
	return codec.Event{Kind: codec.KindTrade, TsNs: netRecTsBase + int64(seq), Seq: uint64(seq),
		Aux: uint64(conn), Symbol: codec.Symbol(1 + conn%3), Price: 100 + float64(seq%100)/4, Volume: float64(seq%7 + 1)}
}

// internFrameSymbols names the symbol ids tcpFrameEvent uses (1..3): a frame
// carries ids, and the feed rejects one whose id the table does not hold.
func internFrameSymbols(t testing.TB, syms *codec.SymbolTable) {
	t.Helper()
	for _, name := range []string{"F1", "F2", "F3"} {
		if _, err := syms.InternString(name); err != nil {
			t.Fatal(err)
		}
	}
}

// sendFrames writes frames [from, to] of connection conn in writes of about
// batchBytes.
func sendFrames(c net.Conn, conn, from, to, batchBytes int) error {
	buf := make([]byte, 0, batchBytes+codec.FrameSize)
	for i := from; i <= to; i++ {
		ev := tcpFrameEvent(conn, i)
		buf = codec.AppendFrame(buf, &ev)
		if len(buf) >= batchBytes || i == to {
			if _, err := c.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}

// The must-show test: at least 1M frames from several connections, all
// arriving, in order per connection (run it under -race).
func TestTCPFramesMillion(t *testing.T) {
	const conns = 4
	perConn := 250_000 // 1M in all
	if testing.Short() {
		perConn = 25_000
	}
	if os.Getenv("QSTREAM_STRESS") != "" {
		perConn = 2_500_000
	}
	rec := newNetRecorder(t, false)
	rec.target = int64(conns * perConn)
	s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 2}, rec)
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for k := 1; k <= conns; k++ {
		c := dialTCP(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Uneven batch sizes, so frames straddle reads at varying offsets.
			if err := sendFrames(c, k, 1, perConn, 16<<10+k*1000+7); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	select {
	case <-rec.reached:
	case <-time.After(120 * time.Second):
		t.Fatalf("only %d of %d frames arrived", rec.total.Load(), conns*perConn)
	}
	elapsed := time.Since(start)
	sn := rec.snapshot()
	if sn.orderErrs != 0 {
		t.Fatalf("%d frames out of order; first: %s", sn.orderErrs, sn.firstErr)
	}
	for k := 1; k <= conns; k++ {
		if sn.count[uint64(k)] != int64(perConn) {
			t.Errorf("connection %d: %d frames, want %d", k, sn.count[uint64(k)], perConn)
		}
	}
	// The per-connection counters are added after a read's messages are
	// published, so they may trail the recorder for a moment.
	st := s.Stats()
	for deadline := time.Now().Add(10 * time.Second); st.Messages < uint64(conns*perConn) && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(time.Millisecond)
	}
	if st.Messages != uint64(conns*perConn) || st.Bytes != uint64(conns*perConn*codec.FrameSize) || st.Rejects != 0 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
	if sn.pubs > 2 {
		t.Errorf("%d publishers for 2 event loops", sn.pubs)
	}
	t.Logf("%d frames over %d connections in %v (%.0f frames/s)", conns*perConn, conns, elapsed, float64(conns*perConn)/elapsed.Seconds())
}

// A frame stream written one byte per write still decodes whole.
func TestTCPFramesBytewise(t *testing.T) {
	rec := newNetRecorder(t, true)
	s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
	c := dialTCP(t, s)
	_ = c.SetNoDelay(true)
	var stream []byte
	for i := 1; i <= 3; i++ {
		ev := tcpFrameEvent(9, i)
		stream = codec.AppendFrame(stream, &ev)
	}
	for i := range stream {
		if _, err := c.Write(stream[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%8 == 0 {
			time.Sleep(time.Millisecond) // let the server see many small reads
		}
	}
	netWaitFor(t, 10*time.Second, "3 frames", func() bool { return rec.snapshot().published == 3 })
	sn := rec.snapshot()
	for i, ev := range sn.events {
		want := tcpFrameEvent(9, i+1)
		want.Seq = 0 // the engine's Publisher numbers the events
		if ev != want {
			t.Errorf("frame %d = %+v, want %+v", i, ev, want)
		}
	}
	if sn.orderErrs != 0 || len(sn.rejects) != 0 {
		t.Errorf("order errors %d, rejects %+v", sn.orderErrs, sn.rejects)
	}
}

// A frame with a bad checksum is rejected alone; the stream stays aligned.
func TestTCPFramesBadChecksum(t *testing.T) {
	rec := newNetRecorder(t, true)
	s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
	c := dialTCP(t, s)
	var stream []byte
	for i := 1; i <= 3; i++ {
		ev := tcpFrameEvent(1, i)
		stream = codec.AppendFrame(stream, &ev)
	}
	stream[codec.FrameSize+50] ^= 0xff // damage the body of frame 2
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "2 frames and a reject", func() bool {
		sn := rec.snapshot()
		return sn.published == 2 && len(sn.rejects) == 1
	})
	sn := rec.snapshot()
	if r := sn.rejects[0]; r.Reason != codec.ReasonChecksum || r.Pos.Offset != codec.FrameSize || len(r.Raw) != codec.FrameSize {
		t.Errorf("reject %+v, want checksum at offset %d with the frame", r, codec.FrameSize)
	}
	if n0, n1 := sn.events[0].TsNs-netRecTsBase, sn.events[1].TsNs-netRecTsBase; n0 != 1 || n1 != 3 || sn.events[0].Seq != 0 {
		t.Errorf("events %d, %d (seq %d), want 1, 3 (seq 0: the Publisher numbers them)", n0, n1, sn.events[0].Seq)
	}
	netWaitFor(t, 10*time.Second, "connection counters", func() bool { return s.Stats().Rejects == 1 })
	if st := s.Stats(); st.Open != 1 || st.Rejects != 1 {
		t.Errorf("stats %+v, want the connection open with 1 reject", st)
	}
}

// A frame whose symbol id the engine's table does not hold (frames carry
// ids, not names) is dead-lettered as unknown_symbol, alone: the connection
// stays open and the next frame is published. Before, it reached Publish,
// whose WAL refused it ("symbol 1 is not in the symbol table"), and the
// connection was closed with nothing dead-lettered.
func TestTCPFramesUnknownSymbol(t *testing.T) {
	rec := newNetRecorder(t, true) // ids 1..3 are named
	s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
	c := dialTCP(t, s)
	var stream []byte
	for i, sym := range []codec.Symbol{7, 0, 2} {
		ev := tcpFrameEvent(1, i+1)
		ev.Symbol = sym
		stream = codec.AppendFrame(stream, &ev)
	}
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "1 frame and 2 rejects", func() bool {
		sn := rec.snapshot()
		return sn.published == 1 && len(sn.rejects) == 2
	})
	sn := rec.snapshot()
	for i, r := range sn.rejects {
		if r.Reason != codec.ReasonUnknownSymbol || r.Pos.Offset != int64(i*codec.FrameSize) || len(r.Raw) != codec.FrameSize {
			t.Errorf("reject %d %+v, want unknown_symbol at offset %d with the frame", i, r, i*codec.FrameSize)
		}
	}
	if ev := sn.events[0]; ev.Symbol != 2 || ev.TsNs != netRecTsBase+3 {
		t.Errorf("published %+v, want frame 3 of symbol 2", ev)
	}
	netWaitFor(t, 10*time.Second, "connection counters", func() bool { return s.Stats().Rejects == 2 })
	if st := s.Stats(); st.Open != 1 || st.Errors != 0 {
		t.Errorf("stats %+v, want the connection open, no errors", st)
	}
}

func TestTCPOversizeCloses(t *testing.T) {
	t.Run("line", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, MaxMessageSize: 128, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		long := `{"type":"trade","symbol":"AAPL","pad":"` + strings.Repeat("x", 200) + `"}`
		if _, err := c.Write([]byte(tcpTick("AAPL", 1, 1) + "\n" + long + "\n" + tcpTick("AAPL", 2, 1) + "\n")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 10*time.Second)
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		st, sn := s.Stats(), rec.snapshot()
		if st.Oversize != 1 || st.Errors != 1 || st.Messages != 1 {
			t.Errorf("stats %+v, want 1 oversize close, 1 error, 1 message", st)
		}
		if len(sn.rejects) != 1 || sn.rejects[0].Reason != codec.ReasonOversize || len(sn.rejects[0].Raw) > tcpRejectRawMax ||
			sn.rejects[0].Pos.Offset != int64(len(tcpTick("AAPL", 1, 1))+1) {
			t.Errorf("rejects %+v, want one oversize at offset %d", sn.rejects, len(tcpTick("AAPL", 1, 1))+1)
		}
	})
	t.Run("frame", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, MaxMessageSize: 1024, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		ev := tcpFrameEvent(1, 1)
		stream := codec.AppendFrame(nil, &ev)
		stream = append(stream, codec.FrameMagic, codec.FrameVersion, 0xff, 0xff) // claims 65535 bytes
		if _, err := c.Write(stream); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 10*time.Second)
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		if st := s.Stats(); st.Oversize != 1 || st.Messages != 1 {
			t.Errorf("stats %+v, want 1 oversize close after 1 message", st)
		}
	})
	t.Run("unaligned", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		if _, err := c.Write([]byte(tcpTick("AAPL", 1, 1) + "\n")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 10*time.Second)
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		sn := rec.snapshot()
		if st := s.Stats(); st.Unaligned != 1 || st.Oversize != 0 || len(sn.rejects) != 1 || sn.rejects[0].Reason != codec.ReasonMalformed {
			t.Errorf("stats %+v rejects %+v, want 1 unaligned close rejected as malformed", st, sn.rejects)
		}
	})
}

// When Publish blocks (rings full), the server stops reading: the sender's
// writes stall, nothing is lost, and everything arrives in order once the
// engine drains.
func TestTCPBackpressure(t *testing.T) {
	const total = 100_000 // 13.6 MB of frames: far more than the socket buffers hold
	rec := newNetRecorder(t, false)
	rec.gate = make(chan struct{})
	rec.blockAfter = 1000
	rec.target = total
	s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
	c := dialTCP(t, s)
	sent := make(chan error, 1)
	go func() { sent <- sendFrames(c, 1, 1, total, 64<<10) }()
	netWaitFor(t, 10*time.Second, "the loop to block in Publish", func() bool { return rec.blocked.Load() == 1 })
	// The server no longer reads: its byte count stops growing and the
	// sender stalls with most of the stream unsent.
	var b1 uint64
	netWaitFor(t, 10*time.Second, "the byte count to settle", func() bool {
		b0 := s.Stats().Bytes
		time.Sleep(100 * time.Millisecond)
		b1 = s.Stats().Bytes
		return b0 == b1
	})
	select {
	case err := <-sent:
		t.Fatalf("sender finished (%v) while the server was blocked", err)
	case <-time.After(300 * time.Millisecond):
	}
	if b1 >= uint64(total*codec.FrameSize/2) {
		t.Fatalf("server read %d of %d bytes while blocked", b1, total*codec.FrameSize)
	}
	if got := rec.total.Load(); got != 1000 {
		t.Fatalf("%d events published while blocked, want 1000", got)
	}
	close(rec.gate)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.reached:
	case <-time.After(60 * time.Second):
		t.Fatalf("%d of %d events after the gate opened", rec.total.Load(), total)
	}
	sn := rec.snapshot()
	if sn.orderErrs != 0 || sn.count[1] != total {
		t.Fatalf("order errors %d (%s), count %d of %d", sn.orderErrs, sn.firstErr, sn.count[1], total)
	}
	t.Logf("server had read %d bytes (%.1f%% of the stream) while blocked", b1, 100*float64(b1)/float64(total*codec.FrameSize))
}

// A loop blocked in Publish does not stop the server from shutting down once
// the engine stops.
func TestTCPStopWhileBlocked(t *testing.T) {
	rec := newNetRecorder(t, false)
	rec.gate = make(chan struct{})
	rec.blockAfter = 10
	s, stop := startTCPServer(t, TCPConfig{Format: TCPFrames, EventLoops: 1}, rec)
	c := dialTCP(t, s)
	go func() { _ = sendFrames(c, 1, 1, 50_000, 64<<10) }()
	netWaitFor(t, 10*time.Second, "the loop to block", func() bool { return rec.blocked.Load() == 1 })
	rec.stop() // the engine stops: Publish returns ErrStopped
	stop()
	if st := s.Stats(); st.Open != 0 {
		t.Errorf("%d connections open after stop", st.Open)
	}
}

func TestTCPAcks(t *testing.T) {
	t.Run("lines", func(t *testing.T) {
		rec := newNetRecorder(t, true)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, Ack: true, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		var in string
		for i := 1; i <= 10; i++ {
			in += tcpTick("AAPL", i, 10) + "\n"
		}
		in += "garbage\n" // rejected, still counted as taken
		if _, err := c.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		last := ""
		for last != `{"ack":11}` {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading acks: %v (last %q)", err, last)
			}
			last = strings.TrimSuffix(line, "\n")
		}
		sn := rec.snapshot()
		if sn.barriers == 0 || sn.published != 10 {
			t.Errorf("%d barriers, %d published; want barriers before the ack and 10 events", sn.barriers, sn.published)
		}
		if st := s.Stats(); st.Conns[0].Acked != 11 {
			t.Errorf("conn stats %+v, want Acked 11", st.Conns[0])
		}
	})
	t.Run("frames", func(t *testing.T) {
		rec := newNetRecorder(t, false)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPFrames, Ack: true, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		if err := sendFrames(c, 1, 1, 5000, 32<<10); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var ack [TCPAckSize]byte
		var count uint64
		for count < 5000 {
			if _, err := io.ReadFull(c, ack[:]); err != nil {
				t.Fatalf("reading acks: %v (count %d)", err, count)
			}
			if ack[0] != TCPAckMagic || ack[1] != 1 || binary.LittleEndian.Uint16(ack[2:]) != TCPAckSize {
				t.Fatalf("bad ack header % x", ack[:4])
			}
			next := binary.LittleEndian.Uint64(ack[4:])
			if next <= count {
				t.Fatalf("ack count went from %d to %d", count, next)
			}
			count = next
		}
		if count != 5000 {
			t.Fatalf("final ack %d, want 5000", count)
		}
	})
	t.Run("barrier failure closes", func(t *testing.T) {
		rec := newNetRecorder(t, false)
		e := errNetTestBarrier
		rec.barrierErr.Store(&e)
		s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, Ack: true, EventLoops: 1}, rec)
		c := dialTCP(t, s)
		if _, err := c.Write([]byte(tcpTick("AAPL", 1, 10) + "\n")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 10*time.Second) // no ack: the data is not known durable
		netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Closed == 1 })
		if st := s.Stats(); st.Errors != 1 {
			t.Errorf("stats %+v, want 1 error", st)
		}
	})
}

func TestTCPMaxConns(t *testing.T) {
	rec := newNetRecorder(t, true)
	s, _ := startTCPServer(t, TCPConfig{Format: TCPLines, MaxConns: 2, EventLoops: 2}, rec)
	c1, c2 := dialTCP(t, s), dialTCP(t, s)
	for _, c := range []net.Conn{c1, c2} {
		if _, err := c.Write([]byte(tcpTick("A", 1, 1) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	netWaitFor(t, 10*time.Second, "2 events", func() bool { return rec.snapshot().published == 2 })
	c3 := dialTCP(t, s)
	expectClosed(t, c3, 10*time.Second)
	if st := s.Stats(); st.Refused != 1 || st.Open != 2 || st.Accepted != 3 {
		t.Errorf("stats %+v, want 3 accepted, 1 refused, 2 open", st)
	}
	// A freed slot is reused.
	c1.Close()
	netWaitFor(t, 10*time.Second, "close", func() bool { return s.Stats().Open == 1 })
	c4 := dialTCP(t, s)
	if _, err := c4.Write([]byte(tcpTick("A", 2, 1) + "\n")); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "3rd event", func() bool { return rec.snapshot().published == 3 })
	st := s.Stats()
	remotes := map[string]uint64{}
	for _, cs := range st.Conns {
		remotes[cs.Remote] = cs.ID
	}
	_, has1 := remotes[c1.LocalAddr().String()]
	_, has2 := remotes[c2.LocalAddr().String()]
	if st.Open != 2 || has1 || !has2 || remotes[c4.LocalAddr().String()] != 3 {
		t.Errorf("stats %+v: want c2 and c4 open, c4 numbered 3 (refused ones get no number)", st)
	}
}

// TCPAuto picks the format per connection from the first byte.
func TestTCPAuto(t *testing.T) {
	rec := newNetRecorder(t, true)
	s, _ := startTCPServer(t, TCPConfig{Format: TCPAuto, EventLoops: 1}, rec)
	lines, frames := dialTCP(t, s), dialTCP(t, s)
	if _, err := lines.Write([]byte(tcpTick("AAPL", 1, 2) + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := sendFrames(frames, 2, 1, 3, 1<<10); err != nil {
		t.Fatal(err)
	}
	netWaitFor(t, 10*time.Second, "4 events", func() bool { return rec.snapshot().published == 4 })
	if sn := rec.snapshot(); len(sn.rejects) != 0 {
		t.Errorf("rejects %+v", sn.rejects)
	}
}

func TestTCPConfigErrors(t *testing.T) {
	for _, cfg := range []TCPConfig{
		{Addr: "127.0.0.1:0"},
		{Format: TCPLines},
		{Format: TCPLines, Addr: "127.0.0.1:0", MaxConns: 1 << 21},
	} {
		if _, err := NewTCPServer(cfg); !errors.Is(err, ErrTCPConfig) {
			t.Errorf("NewTCPServer(%+v) = %v, want ErrTCPConfig", cfg, err)
		}
	}
	s, err := NewTCPServer(TCPConfig{Format: TCPLines, Addr: "256.0.0.1:1", Logger: tcpQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), newNetRecorder(t, false)); err == nil || !strings.HasPrefix(err.Error(), "tcp: ") {
		t.Errorf("Run on a bad address = %v, want a tcp: error", err)
	}
	if err := s.Run(context.Background(), newNetRecorder(t, false)); !errors.Is(err, ErrTCPRunning) {
		t.Errorf("second Run = %v, want ErrTCPRunning", err)
	}
}

// tcpNullPub is a Publisher that only counts (allocation tests and
// benchmarks).
type tcpNullPub struct{ n int64 }

func (p *tcpNullPub) Publish(*codec.Event) error                   { p.n++; return nil }
func (p *tcpNullPub) Flush() error                                 { return nil }
func (p *tcpNullPub) Barrier(context.Context) error                { return nil }
func (p *tcpNullPub) Reject([]byte, codec.Reason, Position, error) {}

// The read path (split, parse or decode, publish, count) allocates nothing.
func TestTCPConsumeNoAlloc(t *testing.T) {
	for _, format := range []TCPFormat{TCPLines, TCPFrames} {
		s, err := NewTCPServer(TCPConfig{Format: format, Addr: "127.0.0.1:0", MaxConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		syms := codec.NewSymbolTable(0)
		if format == TCPFrames {
			internFrameSymbols(t, syms)
		}
		pub := &tcpNullPub{}
		l := &tcpLoop{pub: pub, parser: s.cfg.NewParser(syms), decode: s.cfg.DecodeFrame, symbols: syms}
		cs := &s.conns[0]
		cs.loop = l
		var stream []byte
		for i := 1; i <= 100; i++ {
			if format == TCPLines {
				stream = append(append(stream, tcpTick([]string{"AAPL", "MSFT", "GOOG"}[i%3], i, 100.5)...), '\n')
			} else {
				ev := tcpFrameEvent(1, i)
				stream = codec.AppendFrame(stream, &ev)
			}
		}
		reads := tcpSplitAt(stream, []int{100, 101, 2000, len(stream) - 5})
		run := func() {
			for _, r := range reads {
				if s.consume(cs, r) != 0 {
					t.Fatal("consume closed the connection")
				}
			}
		}
		run() // warm: symbols interned, carry grown
		if a := testing.AllocsPerRun(50, run); a != 0 {
			t.Errorf("%v: %v allocs per 100 messages, want 0", format, a)
		}
		if pub.n != 52*100 { // AllocsPerRun runs once more to warm up
			t.Errorf("%v: published %d, want %d", format, pub.n, 52*100)
		}
	}
}

// The acks a TCP client reads back: a line on a JSON connection, a 12-byte
// frame on a binary one.
func ExampleAppendTCPAck() {
	fmt.Printf("%s", AppendTCPAck(nil, TCPLines, 42))
	fmt.Printf("% x\n", AppendTCPAck(nil, TCPFrames, 42))
	// Output:
	// {"ack":42}
	// f6 01 0c 00 2a 00 00 00 00 00 00 00
}

// PublishText publishes ev; the fake keeps no text.
func (p *tcpNullPub) PublishText(ev *codec.Event, _ []byte) error { return p.Publish(ev) }
