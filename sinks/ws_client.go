package sinks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsMsg is one encoded output, shared by every client it goes to: WriteBatch
// encodes it once as a complete WebSocket text frame (buf[off:], the header
// right before the JSON), sets refs to the number of clients it hands it to,
// and whoever drops the last reference (a writer after writing it, the queue
// when a newer message of the same key replaces it, a closing client) puts it
// back in the pool. buf is immutable between the hand-off and that last
// release.
type wsMsg struct {
	buf  []byte
	off  int    // where the frame starts: buf[off:wsHeaderMax] is its header
	key  uint64 // conflation key: channel, operator and symbol
	refs atomic.Int32
}

// frame returns the message as a WebSocket frame.
func (m *wsMsg) frame() []byte { return m.buf[m.off:] }

// payload returns the message's JSON.
func (m *wsMsg) payload() []byte { return m.buf[wsHeaderMax:] }

// setPayloadLen writes the frame header for the payload in buf[wsHeaderMax:].
func (m *wsMsg) setPayloadLen() {
	var h [wsHeaderMax]byte
	hdr := appendWSTextHeader(h[:0], len(m.buf)-wsHeaderMax)
	m.off = wsHeaderMax - len(hdr)
	copy(m.buf[m.off:], hdr)
}

// wsMsgBufMax keeps unusually large buffers out of the pool.
const wsMsgBufMax = 16 << 10

var wsMsgPool = sync.Pool{New: func() any { return &wsMsg{buf: make([]byte, 0, 512)} }}

func (m *wsMsg) release() {
	if m.refs.Add(-1) == 0 && cap(m.buf) <= wsMsgBufMax {
		wsMsgPool.Put(m)
	}
}

func wsReleaseAll(ms []*wsMsg) {
	for i, m := range ms {
		m.release()
		ms[i] = nil
	}
}

// wsQueue is a client's bounded queue of messages with conflation. It holds
// at most bound messages in a ring indexed by absolute positions head <= tail
// (the ring's length is a power of two that grows up to the first one >=
// bound, so an idle client costs little). While the queue is full or has not
// drained to half since it was (conflating), latest maps each key to the
// position of its newest queued message, so a push onto the full queue
// replaces that message in place: the client keeps its place in the order
// and gets the newest value. The owner (wsClient) holds its mutex around
// every method.
type wsQueue struct {
	ring        []*wsMsg
	head, tail  uint64
	bound       uint64
	conflating  bool
	fullSinceNs int64             // when conflating began
	latest      map[uint64]uint64 // key -> position, valid while conflating
	lenMax      int64
}

// Push verdicts.
const (
	wsPushed    = iota // appended
	wsConflated        // replaced the queued message of the same key, returned to release
	wsStalled          // full for longer than the stall bound: close the client
	wsOverflow         // full, and no queued message of this key to replace: close the client
)

func newWSQueue(bound int) wsQueue {
	n := 64
	for n < bound && n < 1024 {
		n *= 2
	}
	return wsQueue{ring: make([]*wsMsg, n), bound: uint64(bound)}
}

func (q *wsQueue) len() int { return int(q.tail - q.head) }

func (q *wsQueue) push(m *wsMsg, nowNs, stallNs int64) (verdict int, old *wsMsg) {
	if q.tail-q.head < q.bound {
		if q.tail-q.head == uint64(len(q.ring)) {
			q.grow()
		}
		q.ring[q.tail&uint64(len(q.ring)-1)] = m
		if q.conflating {
			q.latest[m.key] = q.tail
		}
		q.tail++
		return wsPushed, nil
	}
	if !q.conflating {
		q.conflating = true
		q.fullSinceNs = nowNs
		if q.latest == nil {
			q.latest = make(map[uint64]uint64, min(q.bound, 1024))
		}
		for p := q.head; p < q.tail; p++ {
			q.latest[q.ring[p&uint64(len(q.ring)-1)].key] = p
		}
	} else if nowNs-q.fullSinceNs > stallNs {
		return wsStalled, nil
	}
	p, ok := q.latest[m.key]
	if !ok || p < q.head { // its newest message has been taken off: none queued
		return wsOverflow, nil
	}
	slot := &q.ring[p&uint64(len(q.ring)-1)]
	old, *slot = *slot, m
	return wsConflated, old
}

// grow doubles the ring; absolute positions (and so latest) stay valid.
func (q *wsQueue) grow() {
	ring := make([]*wsMsg, 2*len(q.ring))
	for p := q.head; p < q.tail; p++ {
		ring[p&uint64(len(ring)-1)] = q.ring[p&uint64(len(q.ring)-1)]
	}
	q.ring = ring
}

// pop appends up to max messages to dst, oldest first, and ends conflation
// once the queue is down to half its bound.
func (q *wsQueue) pop(dst []*wsMsg, max int) []*wsMsg {
	for q.head < q.tail && len(dst) < max {
		i := q.head & uint64(len(q.ring)-1)
		dst = append(dst, q.ring[i])
		q.ring[i] = nil
		q.head++
	}
	if q.conflating && q.tail-q.head <= q.bound/2 {
		q.conflating = false
		clear(q.latest)
	}
	return dst
}

// drain releases every queued message.
func (q *wsQueue) drain() {
	for ; q.head < q.tail; q.head++ {
		i := q.head & uint64(len(q.ring)-1)
		q.ring[i].release()
		q.ring[i] = nil
	}
	q.conflating = false
	clear(q.latest)
}

// wsClient is one connected client. Its goroutines: the HTTP handler runs
// readLoop, writeLoop drains the queue, pingLoop pings. stop (idempotent; the
// first caller's status wins) ends them: writeLoop then closes the
// connection, with a close handshake bounded by wsCloseGrace when a status is
// given, and closes finished.
type wsClient struct {
	s    *WSServer
	conn *websocket.Conn
	nc   *wsConn

	pending []*wsMsg   // this batch's messages: WriteBatch only
	sub     wsSubState // guarded by s.mu

	mu        sync.Mutex // guards what follows; never held across I/O
	q         wsQueue
	replies   [][]byte // protocol replies, written before data; len <= wsRepliesMax
	dead      bool     // stopped: nothing more is queued
	conflated uint64

	notify   chan struct{} // capacity 1: the queue has work
	done     chan struct{} // closed by stop
	stopOnce sync.Once
	code     websocket.StatusCode // set by the winning stop before done closes
	reason   string
	kill     *time.Timer   // armed by stop: closes the connection after wsCloseGrace
	finished chan struct{} // closed once writeLoop has closed the connection
}

func newWSClient(s *WSServer, conn *websocket.Conn, nc *wsConn) *wsClient {
	return &wsClient{
		s: s, conn: conn, nc: nc,
		q:        newWSQueue(s.cfg.queue),
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
}

// stop ends the client; code 0 closes the connection without a handshake.
// It reports whether this call was the one that stopped it. The connection
// is closed within wsCloseGrace whatever the client does: the timer also
// ends a write stuck on a socket the client does not read.
func (cl *wsClient) stop(code websocket.StatusCode, reason string) bool {
	won := false
	cl.stopOnce.Do(func() {
		won = true
		cl.code, cl.reason = code, reason
		cl.kill = time.AfterFunc(wsCloseGrace, func() { cl.nc.Conn.Close() })
		close(cl.done)
	})
	return won
}

func (cl *wsClient) wake() {
	select {
	case cl.notify <- struct{}{}:
	default:
	}
}

func (cl *wsClient) markDeadLocked() {
	cl.dead = true
	cl.q.drain()
	clear(cl.replies)
	cl.replies = cl.replies[:0]
}

// enqueuePending moves this batch's messages into the queue under one lock
// and wakes the writer once. Called by WriteBatch only.
func (cl *wsClient) enqueuePending(nowNs int64) {
	s := cl.s
	stallNs := int64(s.cfg.stall)
	verdict, conflated, i := wsPushed, uint64(0), 0
	cl.mu.Lock()
	if cl.dead {
		cl.mu.Unlock()
		wsReleaseAll(cl.pending)
		cl.pending = cl.pending[:0]
		return
	}
	for ; i < len(cl.pending); i++ {
		v, old := cl.q.push(cl.pending[i], nowNs, stallNs)
		if v == wsConflated {
			old.release()
			conflated++
			continue
		}
		if v != wsPushed {
			verdict = v
			break
		}
		cl.pending[i] = nil
	}
	n := int64(cl.q.len())
	newMax := n > cl.q.lenMax
	if newMax {
		cl.q.lenMax = n
	}
	cl.conflated += conflated
	if verdict != wsPushed {
		cl.markDeadLocked()
	}
	cl.mu.Unlock()
	wsReleaseAll(cl.pending[i:]) // those not queued, when the client was closed
	clear(cl.pending)
	cl.pending = cl.pending[:0]
	if conflated > 0 {
		s.conflated.Add(conflated)
	}
	if newMax {
		s.noteQueueLen(n)
	}
	switch verdict {
	case wsPushed:
		cl.wake()
	case wsStalled:
		cl.closeSlow("slow consumer: queue full for longer than the stall bound")
	case wsOverflow:
		cl.closeSlow("slow consumer: queue full of distinct keys")
	}
}

// closeSlow closes the client with 1008. The caller has marked it dead.
func (cl *wsClient) closeSlow(reason string) {
	if cl.stop(websocket.StatusPolicyViolation, reason) {
		cl.s.closedSlow.Add(1)
		cl.mu.Lock()
		conflated := cl.conflated
		cl.mu.Unlock()
		cl.s.logger.Warn("sinks: ws: closed a slow client", "remote", cl.nc.RemoteAddr().String(),
			"reason", reason, "conflated", conflated)
	}
}

// reply queues a protocol reply; false when the client has too many unread.
// The caller holds s.mu (replies are queued in the order requests apply).
func (cl *wsClient) reply(b []byte) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.dead {
		return true
	}
	if len(cl.replies) >= wsRepliesMax {
		cl.markDeadLocked()
		return false
	}
	cl.replies = append(cl.replies, b)
	return true
}

// writeLoop drains the queue onto the connection, a round at a time: a
// round's frames go out in one system call (see wsConn.writeFrames).
func (cl *wsClient) writeLoop() {
	defer cl.s.wg.Done()
	defer cl.finish()
	round := make([]*wsMsg, 0, wsWriteRoundMax)
	var replies [][]byte
	for {
		select {
		case <-cl.done:
			return
		case <-cl.notify:
		}
		for {
			cl.mu.Lock()
			round = cl.q.pop(round, wsWriteRoundMax)
			replies = append(replies, cl.replies...)
			clear(cl.replies)
			cl.replies = cl.replies[:0]
			cl.mu.Unlock()
			if len(round) == 0 && len(replies) == 0 {
				break
			}
			err := cl.write(round, replies)
			wsReleaseAll(round)
			round = round[:0]
			clear(replies)
			replies = replies[:0]
			if err != nil {
				cl.stop(0, "")
				return
			}
			select {
			case <-cl.done:
				return
			default:
			}
		}
	}
}

func (cl *wsClient) write(msgs []*wsMsg, replies [][]byte) error {
	if err := cl.nc.writeFrames(replies, msgs); err != nil {
		return err
	}
	cl.s.sent.Add(uint64(len(msgs)))
	return nil
}

// finish closes the connection once the client is stopped.
func (cl *wsClient) finish() {
	defer close(cl.finished)
	cl.mu.Lock()
	cl.markDeadLocked()
	cl.mu.Unlock()
	<-cl.done
	if cl.code != 0 {
		cl.conn.Close(cl.code, cl.reason)
	} else {
		cl.conn.CloseNow()
	}
	cl.kill.Stop()
}

// pingLoop pings every ping interval and drops a client whose pong does not
// come within the pong timeout.
func (cl *wsClient) pingLoop() {
	defer cl.s.wg.Done()
	t := time.NewTimer(cl.s.cfg.ping)
	defer t.Stop()
	for {
		select {
		case <-cl.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), cl.s.cfg.pong)
		err := cl.conn.Ping(ctx)
		timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil {
			if cl.stop(0, "") && timedOut {
				cl.s.closedPing.Add(1)
				cl.s.logger.Info("sinks: ws: dropped a client that did not answer a ping",
					"remote", cl.nc.RemoteAddr().String(), "pong_timeout", cl.s.cfg.pong)
			}
			return
		}
		t.Reset(cl.s.cfg.ping)
	}
}

// readLoop reads the client's requests until the connection ends.
func (cl *wsClient) readLoop() {
	ctx := context.Background()
	for {
		typ, data, err := cl.conn.Read(ctx)
		if err != nil {
			return
		}
		cl.s.handleRequest(cl, typ, data)
	}
}
