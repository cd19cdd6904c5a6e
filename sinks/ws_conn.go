package sinks

import (
	"net"
	"sync"
)

// wsCorkMax bounds the bytes a corked connection holds before it writes them
// through: one writer round of a client rarely exceeds it, and a round that
// does costs one more system call, not memory.
const wsCorkMax = 64 << 10

// wsListener hands the HTTP server wsConns, so that a client's writer can
// cork its connection: github.com/coder/websocket flushes every message to
// the socket (one write system call per message and client), which at tens
// of thousands of outputs per second and a hundred clients is what would
// bound the fan-out. Corked, a writer round of many messages costs one
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

// wsConn is a net.Conn whose writes can be held back (corked) and written
// in one system call (uncork). Every write of the WebSocket library (data
// frames from the client's writer, pongs from its reader, pings, close
// frames) goes through Write, serialised by mu; uncork is called by the
// client's writer only. Close does not take mu, so closing the connection
// always unblocks a write stuck on a full socket.
type wsConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte // held-back bytes while corked; len <= wsCorkMax
	err    error  // sticky write error
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked {
		if len(c.buf)+len(p) <= wsCorkMax {
			c.buf = append(c.buf, p...)
			return len(p), nil
		}
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// cork holds writes back until uncork.
func (c *wsConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what cork held back and lets later writes through.
func (c *wsConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

func (c *wsConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		c.err = err
	}
	return err
}
