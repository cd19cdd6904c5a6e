package sinks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// DefaultTCPAckTimeout is TCPLineOptions.AckTimeout when it is zero.
const DefaultTCPAckTimeout = 10 * time.Second

// tcpAckLineMax bounds one line the server sends back (an ack is ~30 bytes).
const tcpAckLineMax = 256

// Errors of TCPLineSender.
var (
	// ErrTCPNotAcked is wrapped by Close when the server did not acknowledge
	// every message sent: a timeout, a closed connection, or fewer acked.
	ErrTCPNotAcked = errors.New("sinks: tcp: not every message was acknowledged")
	// ErrTCPBadAck is wrapped when the server sends something that is not an
	// ack line, or acknowledges more than was sent.
	ErrTCPBadAck = errors.New("sinks: tcp: unexpected reply")
)

// TCPLineOptions configure a TCPLineSender.
type TCPLineOptions struct {
	// NoAck sends to a server that does not acknowledge (a TCP feed without
	// --tcp-ack): Close then half-closes the connection and waits until the
	// server has read the stream to its end and closed, but whether the
	// messages became durable is not known (TCPLineResult.Confirmed false).
	NoAck bool
	// AckTimeout bounds every wait: a write that makes no progress, and, in
	// Close, the time without a new ack (or, with NoAck, for the server to
	// close). Zero means DefaultTCPAckTimeout.
	AckTimeout time.Duration
	// DialTimeout bounds the connect; zero means AckTimeout.
	DialTimeout time.Duration
}

// TCPLineResult is what a TCPLineSender delivered.
type TCPLineResult struct {
	Sent      uint64 // messages sent, as the server counts them (non-empty lines)
	Acked     uint64 // the highest cumulative ack received
	AcksSeen  bool   // at least one ack arrived
	Confirmed bool   // every message sent was acknowledged (Acked == Sent)
}

// TCPLineSender writes newline-delimited messages to a qstream TCP feed
// (feeds.TCPServer in TCPLines format; `qstream dlq replay --tcp` uses it)
// and reads the feed's acks: the line `{"ack":N}`, N the cumulative count of
// the connection's messages the engine has durably taken (see
// feeds.AppendTCPAck). Acks are read while sending, so the server's replies
// never pile up unread: closing a socket with unread data resets the
// connection, and the server then loses what it had not read yet. Close
// waits, bounded by AckTimeout without progress, until the ack covers every
// message sent, and only then closes.
//
// Use from one goroutine (Send, then Close); the ack reader runs on its own.
type TCPLineSender struct {
	conn    *net.TCPConn
	bw      *bufio.Writer
	opts    TCPLineOptions
	sent    uint64
	err     error // sticky write error
	closed  bool
	readerC chan struct{} // closed when the ack reader ends

	mu       sync.Mutex
	acked    uint64
	acksSeen bool
	readErr  error         // why the reader ended (io.EOF: the server closed)
	progress chan struct{} // a token per ack progress (capacity 1)
}

// DialTCPLines connects to addr and starts reading acks.
func DialTCPLines(addr string, opts TCPLineOptions) (*TCPLineSender, error) {
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultTCPAckTimeout
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = opts.AckTimeout
	}
	c, err := net.DialTimeout("tcp", addr, opts.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("sinks: tcp: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("sinks: tcp: %s is not a TCP connection", addr)
	}
	s := &TCPLineSender{conn: tc, opts: opts, readerC: make(chan struct{}), progress: make(chan struct{}, 1)}
	s.bw = bufio.NewWriterSize(deadlineWriter{tc, opts.AckTimeout}, 64<<10)
	go s.readAcks()
	return s, nil
}

// deadlineWriter gives every write to the connection AckTimeout to make
// progress, so a server that stops reading cannot block the sender forever.
type deadlineWriter struct {
	c *net.TCPConn
	d time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	if err := w.c.SetWriteDeadline(time.Now().Add(w.d)); err != nil {
		return 0, err
	}
	return w.c.Write(p)
}

// Send writes msg and a newline. The server counts each non-empty line (a
// trailing '\r' dropped), so a msg holding newlines counts as the lines in
// it, and an empty one as none; Sent follows the server's count.
func (s *TCPLineSender) Send(msg []byte) error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return ErrClosed
	}
	for rest := msg; ; {
		line, more, found := bytes.Cut(rest, []byte{'\n'})
		if len(bytes.TrimSuffix(line, []byte{'\r'})) > 0 {
			s.sent++
		}
		if !found {
			break
		}
		rest = more
	}
	if _, err := s.bw.Write(msg); err != nil {
		s.err = fmt.Errorf("sinks: tcp: %w", err)
		return s.err
	}
	if err := s.bw.WriteByte('\n'); err != nil {
		s.err = fmt.Errorf("sinks: tcp: %w", err)
	}
	return s.err
}

// Sent returns the number of messages sent so far, as the server counts them.
func (s *TCPLineSender) Sent() uint64 { return s.sent }

// readAcks reads the server's ack lines until the connection ends.
func (s *TCPLineSender) readAcks() {
	defer close(s.readerC)
	br := bufio.NewReaderSize(s.conn, tcpAckLineMax)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = fmt.Errorf("%w: a line over %d bytes", ErrTCPBadAck, tcpAckLineMax)
			}
			s.endReader(err)
			return
		}
		n, ok := parseTCPAck(line)
		if !ok {
			s.endReader(fmt.Errorf("%w: %q", ErrTCPBadAck, bytes.TrimSpace(line)))
			return
		}
		s.mu.Lock()
		s.acksSeen = true
		if n > s.acked {
			s.acked = n
		}
		s.mu.Unlock()
		select {
		case s.progress <- struct{}{}:
		default:
		}
	}
}

func (s *TCPLineSender) endReader(err error) {
	s.mu.Lock()
	s.readErr = err
	s.mu.Unlock()
}

// parseTCPAck parses the ack line `{"ack":N}` (with its newline, a '\r'
// tolerated), as feeds.AppendTCPAck writes it.
func parseTCPAck(line []byte) (uint64, bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
	body, ok := bytes.CutPrefix(line, []byte(`{"ack":`))
	if !ok {
		return 0, false
	}
	digits, ok := bytes.CutSuffix(body, []byte{'}'})
	if !ok || len(digits) == 0 || len(digits) > 20 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	return n, err == nil
}

// state returns what the reader has seen.
func (s *TCPLineSender) state() (acked uint64, seen bool, readErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked, s.acksSeen, s.readErr
}

// Close flushes what is buffered and ends the connection, then reports what
// was delivered. Unless NoAck is set, it waits until the server has
// acknowledged every message (no longer than AckTimeout without a new ack)
// and returns an error wrapping ErrTCPNotAcked if it did not: the result
// then says how many were sent and acknowledged. With NoAck it half-closes
// and waits for the server to close its side (bounded by AckTimeout); acks
// that arrive anyway are reported, but Confirmed is true only if they cover
// every message.
func (s *TCPLineSender) Close() (TCPLineResult, error) {
	if s.closed {
		return s.result(), ErrClosed
	}
	s.closed = true
	defer func() {
		s.conn.Close()
		<-s.readerC
	}()
	err := s.err
	if err == nil {
		if ferr := s.bw.Flush(); ferr != nil {
			err = fmt.Errorf("sinks: tcp: %w", ferr)
		}
	}
	if err != nil {
		r := s.result()
		return r, fmt.Errorf("%w: sent %d, acknowledged %d: %w", ErrTCPNotAcked, r.Sent, r.Acked, err)
	}
	if s.opts.NoAck {
		return s.closeNoAck()
	}
	timer := time.NewTimer(s.opts.AckTimeout)
	defer timer.Stop()
	for {
		acked, seen, readErr := s.state()
		switch {
		case acked > s.sent:
			return s.result(), fmt.Errorf("%w: the server acknowledged %d but %d were sent", ErrTCPBadAck, acked, s.sent)
		case acked == s.sent:
			return s.result(), nil
		case readErr != nil:
			why := "the server closed the connection"
			if !errors.Is(readErr, io.EOF) {
				why = readErr.Error()
			}
			return s.result(), fmt.Errorf("%w: sent %d, acknowledged %d: %s", ErrTCPNotAcked, s.sent, acked, why)
		}
		select {
		case <-s.progress:
			if !timer.Stop() {
				<-timer.C
			}
			timer.Reset(s.opts.AckTimeout)
		case <-s.readerC:
		case <-timer.C:
			why := fmt.Sprintf("no new ack for %s", s.opts.AckTimeout)
			if !seen {
				why = fmt.Sprintf("no ack within %s: does the server send acks (qstream run --tcp-ack)?", s.opts.AckTimeout)
			}
			return s.result(), fmt.Errorf("%w: sent %d, acknowledged %d: %s", ErrTCPNotAcked, s.sent, acked, why)
		}
	}
}

// Abort closes the connection at once, without flushing or waiting for
// acks: for a sender given up on (the caller reports the failure). It is a
// no-op after Close.
func (s *TCPLineSender) Abort() {
	if s.closed {
		return
	}
	s.closed = true
	s.conn.Close()
	<-s.readerC
}

// closeNoAck half-closes and waits for the server to close: it has then read
// every byte sent.
func (s *TCPLineSender) closeNoAck() (TCPLineResult, error) {
	if err := s.conn.CloseWrite(); err != nil {
		return s.result(), fmt.Errorf("sinks: tcp: %w", err)
	}
	select {
	case <-s.readerC:
	case <-time.After(s.opts.AckTimeout):
		return s.result(), fmt.Errorf("sinks: tcp: sent %d; the server did not close the connection within %s", s.sent, s.opts.AckTimeout)
	}
	r := s.result()
	if _, _, readErr := s.state(); readErr != nil && !errors.Is(readErr, io.EOF) {
		return r, fmt.Errorf("sinks: tcp: sent %d: %w", s.sent, readErr)
	}
	return r, nil
}

func (s *TCPLineSender) result() TCPLineResult {
	acked, seen, _ := s.state()
	return TCPLineResult{Sent: s.sent, Acked: acked, AcksSeen: seen, Confirmed: acked == s.sent && (seen || s.sent == 0)}
}
