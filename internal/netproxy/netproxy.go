// Package netproxy is a TCP proxy on loopback for network-partition tests:
// a test puts it between a client and a server (a NATS client and one
// server of a cluster, say) and cuts, resets or heals the path at will.
//
// A connection accepted on the listening address is forwarded to the target
// address in both directions, each direction by one goroutine through a
// fixed 32 KiB buffer (nothing else is queued in the proxy: a slow reader
// slows the writer down through TCP, as without the proxy). The proxy has
// three states:
//
//   - forwarding (the start, and after Heal): new connections are dialled
//     to the target and forwarded;
//   - partitioned (Partition): every connection stops forwarding in both
//     directions, its bytes are read and dropped (counted), and nothing is
//     closed, so each side sees silence, as across a partition or a
//     blackholed route: writes succeed, nothing arrives, and only a
//     protocol's own keep-alive (NATS PING/PONG, say) notices. New
//     connections are accepted and blackholed the same way, without
//     dialling the target. Heal closes these connections;
//   - reset (Reset): every connection is closed with an RST (SO_LINGER 0)
//     on both sides, and new connections are accepted and reset at once,
//     so a client sees ECONNRESET or EOF, never a hang.
//
// At most MaxConns connections are open at a time; more are reset when
// accepted. All methods are safe for concurrent use.
package netproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the proxy.
const (
	// MaxConns bounds the connections open at a time.
	MaxConns = 1024
	// bufSize is the buffer of each direction of a connection.
	bufSize = 32 << 10
	// dialTimeout bounds the dial of the target.
	dialTimeout = 5 * time.Second
)

// States of a Proxy.
const (
	stateForwarding = iota
	statePartitioned
	stateReset
)

// Stats are a proxy's counters since New. Up is client to target, down is
// target to client.
type Stats struct {
	Accepted    uint64 // connections accepted
	Active      int    // connections open now
	Blackholed  uint64 // connections accepted or cut by a partition
	ResetConns  uint64 // connections closed by Reset, or refused
	DialErrors  uint64 // target dials that failed (the client was reset)
	BytesUp     uint64 // bytes forwarded client → target
	BytesDown   uint64 // bytes forwarded target → client
	DroppedUp   uint64 // bytes read from clients and dropped in a partition
	DroppedDown uint64 // bytes read from targets and dropped in a partition
}

// Proxy forwards TCP connections from its listening address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	state  int
	closed bool
	conns  map[*conn]struct{}

	wg sync.WaitGroup // the accept loop and every pump

	accepted, blackholed, resets, dialErrors   atomic.Uint64
	bytesUp, bytesDown, droppedUp, droppedDown atomic.Uint64
}

// conn is one proxied connection; up is nil for a connection blackholed
// from its accept on.
type conn struct {
	client, up net.Conn
	cut        atomic.Bool // partitioned: drop, never forward again
	once       sync.Once
	pumps      atomic.Int32 // pumps still running
}

// New listens on listenAddr ("127.0.0.1:0" picks a free port: see Addr)
// and forwards every connection to targetAddr, forwarding from the start.
func New(listenAddr, targetAddr string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("netproxy: listen %s: %w", listenAddr, err)
	}
	p := &Proxy{ln: ln, target: targetAddr, conns: make(map[*conn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the proxy listens on ("127.0.0.1:PORT").
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Partition cuts the network: every connection stops forwarding in both
// directions (its bytes are dropped; it stays open), and new connections
// are accepted and blackholed until Heal.
func (p *Proxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.state = statePartitioned
	for c := range p.conns {
		if !c.cut.Swap(true) {
			p.blackholed.Add(1)
		}
	}
}

// Reset closes every connection with an RST on both sides, and resets new
// connections as they are accepted until Heal.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.state = stateReset
	for c := range p.conns {
		p.resets.Add(1)
		c.close(true)
		delete(p.conns, c)
	}
}

// Heal restores forwarding for new connections. Connections cut by a
// partition are closed now (they have lost bytes: a client must reconnect).
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.state = stateForwarding
	for c := range p.conns {
		if c.cut.Load() {
			c.close(false)
			delete(p.conns, c)
		}
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.close(false)
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Accepted: p.accepted.Load(), Active: active, Blackholed: p.blackholed.Load(), ResetConns: p.resets.Load(),
		DialErrors: p.dialErrors.Load(), BytesUp: p.bytesUp.Load(), BytesDown: p.bytesDown.Load(),
		DroppedUp: p.droppedUp.Load(), DroppedDown: p.droppedDown.Load(),
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(nc)
	}
}

// serve dials the target for a new connection (unless the proxy is
// partitioned or reset) and starts its pumps.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	state, full := p.state, len(p.conns) >= MaxConns
	p.mu.Unlock()
	if state == stateReset || full {
		p.resets.Add(1)
		rst(client)
		return
	}
	var up net.Conn
	if state == stateForwarding {
		var err error
		if up, err = net.DialTimeout("tcp", p.target, dialTimeout); err != nil {
			p.dialErrors.Add(1)
			rst(client)
			return
		}
	}
	c := &conn{client: client, up: up}
	p.mu.Lock()
	switch {
	case p.closed || p.state == stateReset: // changed while dialling
		p.mu.Unlock()
		p.resets.Add(1)
		c.close(true)
		return
	case p.state == statePartitioned || up == nil:
		c.cut.Store(true)
		p.blackholed.Add(1)
	}
	p.conns[c] = struct{}{}
	if up != nil {
		c.pumps.Store(2)
		p.wg.Add(2)
		go p.pump(c, up, client, &p.bytesUp, &p.droppedUp)
		go p.pump(c, client, up, &p.bytesDown, &p.droppedDown)
	} else {
		c.pumps.Store(1)
		p.wg.Add(1)
		go p.pump(c, nil, client, nil, &p.droppedUp)
	}
	p.mu.Unlock()
}

// pump copies src to dst (dst nil: drops everything) until src ends. A
// cut connection drops what it reads, and an end of src is not passed on
// (a partition lets no FIN through either); otherwise an EOF half-closes
// dst, so a client's shutdown(SHUT_WR) reaches the target, and an error
// closes both sides.
func (p *Proxy) pump(c *conn, dst, src net.Conn, forwarded, dropped *atomic.Uint64) {
	defer p.wg.Done()
	buf := make([]byte, bufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if c.cut.Load() || dst == nil {
				dropped.Add(uint64(n))
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				p.drop(c, false)
				return
			} else {
				forwarded.Add(uint64(n))
			}
		}
		if err != nil {
			switch {
			case c.cut.Load() || dst == nil:
				// Silence: keep the other side open until Heal or Close.
			case errors.Is(err, io.EOF):
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				if c.pumps.Add(-1) == 0 {
					p.drop(c, false)
				}
				return
			default:
				p.drop(c, false)
			}
			return
		}
	}
}

// drop closes c and forgets it.
func (p *Proxy) drop(c *conn, reset bool) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.close(reset)
}

// close closes both sides once, with an RST when reset.
func (c *conn) close(reset bool) {
	c.once.Do(func() {
		if reset {
			rst(c.client)
			if c.up != nil {
				rst(c.up)
			}
			return
		}
		c.client.Close()
		if c.up != nil {
			c.up.Close()
		}
	})
}

// rst closes nc with SO_LINGER 0, so the peer gets an RST rather than a FIN.
func rst(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	nc.Close()
}
