package sinks

import (
	"net"
	"sync"
)

// wsFlushMin is the size at which a writer round's frames are written out
// before the round ends: a round rarely exceeds it, and a round that does
// costs one more system call, not memory.
const wsFlushMin = 64 << 10

// wsListener hands the HTTP server wsConns. github.com/coder/websocket does
// the handshake, reads (requests, pongs, close frames) and writes the control
// frames (pings, pongs, close), but the data frames bypass it: through
// Conn.Write every message costs two channel-based lock acquisitions and a
// flush, one write system call per message and client, which at tens of
// thousands of outputs per second and a hundred clients is what would bound
// the fan-out. Instead a client's writer copies the prebuilt frames of a
// whole round (see wsMsg) into its wsConn's buffer and writes them in one
// system call.
type wsListener struct {
	net.Listener
	sndbuf int // SO_SNDBUF of accepted connections; 0 keeps the system's
}

func (l wsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && l.sndbuf > 0 {
		_ = tc.SetWriteBuffer(l.sndbuf) // best effort: the kernel rounds and bounds it
	}
	return &wsConn{Conn: c}, nil
}

// wsConn is a client's connection. Writes are serialised by mu, and each is
// whole frames: the library flushes one control frame (at most 2+125 bytes,
// within its 4 KiB buffer) per Write, and writeFrames appends whole data
// frames, so frames never interleave below frame boundaries (RFC 6455 lets
// control frames come between data frames). Close does not take mu, so
// closing the connection always unblocks a write stuck on a full socket.
type wsConn struct {
	net.Conn

	mu  sync.Mutex
	buf []byte // frames of the current round; reused
	err error  // sticky write error
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// writeFrames writes replies, then msgs, each as one unfragmented text
// frame, in as few system calls as the buffer allows.
func (c *wsConn) writeFrames(replies [][]byte, msgs []*wsMsg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	buf := c.buf[:0]
	for _, r := range replies {
		buf = appendWSTextHeader(buf, len(r))
		buf = append(buf, r...)
	}
	for _, m := range msgs {
		if len(buf) >= wsFlushMin {
			if buf = c.flushLocked(buf); c.err != nil {
				return c.err
			}
		}
		buf = append(buf, m.frame()...)
	}
	c.buf = c.flushLocked(buf)
	return c.err
}

func (c *wsConn) flushLocked(buf []byte) []byte {
	if len(buf) > 0 {
		if _, err := c.Conn.Write(buf); err != nil {
			c.err = err
		}
	}
	return buf[:0]
}

// wsHeaderMax is the longest frame header a server writes (no mask).
const wsHeaderMax = 10

// appendWSTextHeader appends the header of an unmasked, final text frame
// with an n-byte payload (RFC 6455 section 5.2).
func appendWSTextHeader(dst []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(dst, finText, byte(n))
	case n < 1<<16:
		return append(dst, finText, 126, byte(n>>8), byte(n))
	}
	return append(dst, finText, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}
