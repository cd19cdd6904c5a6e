package feeds

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qstream/codec"
)

// tidPubs records the OS thread (gettid) of every Publish: the event
// loop's thread, since a loop publishes on its own goroutine.
type tidPubs struct {
	syms *codec.SymbolTable
	mu   sync.Mutex
	tids map[int]int // thread id -> events published on it
	n    int
}

func (p *tidPubs) NewPublisher(string) (Publisher, error) { return p, nil }
func (p *tidPubs) Symbols() *codec.SymbolTable            { return p.syms }
func (p *tidPubs) Publish(*codec.Event) error {
	tid := unix.Gettid()
	p.mu.Lock()
	p.tids[tid]++
	p.n++
	p.mu.Unlock()
	return nil
}
func (p *tidPubs) PublishText(ev *codec.Event, _ []byte) error  { return p.Publish(ev) }
func (p *tidPubs) Flush() error                                 { return nil }
func (p *tidPubs) Barrier(context.Context) error                { return nil }
func (p *tidPubs) Reject([]byte, codec.Reason, Position, error) {}

func (p *tidPubs) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// TestTCPLoopKeepsItsThread: an event loop publishes every message of a
// connection from one OS thread, also when it waits in epoll_wait between
// messages (TCPConfig.SharedThreads unset: gnet.WithLockOSThread). Unlocked,
// the same run published from 4 threads here: the loop's goroutine, woken
// from the system call, runs wherever the scheduler finds it a P.
func TestTCPLoopKeepsItsThread(t *testing.T) {
	pubs := &tidPubs{syms: codec.NewSymbolTable(16), tids: map[int]int{}}
	s, stop := startTCPServer(t, TCPConfig{Format: TCPLines, EventLoops: 1}, pubs)
	c := dialTCP(t, s)
	const lines = 500
	for i := 1; i <= lines; i++ {
		if _, err := c.Write([]byte(tcpTick("AAPL", i, 10) + "\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond) // the loop goes back to epoll_wait
	}
	deadline := time.Now().Add(10 * time.Second)
	for pubs.count() < lines && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	pubs.mu.Lock()
	defer pubs.mu.Unlock()
	if pubs.n != lines || len(pubs.tids) != 1 {
		t.Fatalf("%d of %d events published, from %d threads (%v), want all from one", pubs.n, lines, len(pubs.tids), pubs.tids)
	}
}
