package feeds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
)

// netRecorder is the network feeds' test double of the engine's Publishers
// (the engine implements the real one). Each Publisher records what it is
// given; the feeds under test talk to real sockets and servers. Shared by the
// tcp, ws, webhook and jetstream tests.
type netRecorder struct {
	t    testing.TB
	syms *codec.SymbolTable

	keep bool // keep every event (else count, and check order per Aux key)

	// gate, when set, makes Publish block after blockAfter events in total
	// until gate is closed (backpressure tests).
	gate       chan struct{}
	blockAfter int64
	blocked    atomic.Int64 // Publish calls currently waiting at the gate

	stopped    chan struct{} // closed: Publish and Barrier return ErrStopped
	barrierErr atomic.Pointer[error]
	// barrierGate, when set, makes Barrier wait until it is closed (or ctx
	// ends): a slow WAL sync.
	barrierGate chan struct{}
	// barrierSleep makes every Barrier take this long (a WAL sync).
	barrierSleep time.Duration

	total atomic.Int64 // events published over all publishers
	// target, when > 0, closes reached once total reaches it.
	target  int64
	reached chan struct{}

	mu   sync.Mutex
	pubs []*netRecPub
}

// netRecTsBase is the event time of message 0 in the tests' streams: a
// message's number is its TsNs − netRecTsBase.
const netRecTsBase = 1700000000000000000

type netReject struct {
	Raw    string
	Reason codec.Reason
	Pos    Position
	Err    string
}

type netRecPub struct {
	r    *netRecorder
	name string
	busy atomic.Int32 // detects concurrent use, which the contract forbids

	mu        sync.Mutex
	events    []codec.Event
	rejects   []netReject
	published int64
	flushes   int64
	barriers  int64
	lastSeq   []uint64 // by Aux: the order check (message numbers in TsNs − netRecTsBase)
	count     []int64  // by Aux
	orderErrs int
	firstErr  string
}

// newNetRecorder returns a recorder whose symbol table names the ids of
// tcpFrameEvent's frames (1..3) before any line interns its own.
func newNetRecorder(t testing.TB, keep bool) *netRecorder {
	r := &netRecorder{t: t, syms: codec.NewSymbolTable(0), keep: keep, stopped: make(chan struct{}), reached: make(chan struct{})}
	internFrameSymbols(t, r.syms)
	return r
}

func (r *netRecorder) NewPublisher(name string) (Publisher, error) {
	p := &netRecPub{r: r, name: name}
	r.mu.Lock()
	r.pubs = append(r.pubs, p)
	r.mu.Unlock()
	return p, nil
}

func (r *netRecorder) Symbols() *codec.SymbolTable { return r.syms }

// stop makes every later Publish and Barrier fail with ErrStopped, like an
// engine shutting down.
func (r *netRecorder) stop() {
	select {
	case <-r.stopped:
	default:
		close(r.stopped)
	}
}

func (p *netRecPub) enter() {
	if !p.busy.CompareAndSwap(0, 1) {
		p.r.t.Errorf("publisher %s used by two goroutines at once", p.name)
	}
}

func (p *netRecPub) leave() { p.busy.Store(0) }

func (p *netRecPub) Publish(ev *codec.Event) error {
	p.enter()
	defer p.leave()
	r := p.r
	select {
	case <-r.stopped:
		return ErrStopped
	default:
	}
	if r.gate != nil && r.total.Load() >= r.blockAfter {
		r.blocked.Add(1)
		select {
		case <-r.gate:
		case <-r.stopped:
			r.blocked.Add(-1)
			return ErrStopped
		}
		r.blocked.Add(-1)
	}
	p.mu.Lock()
	p.published++
	if r.keep {
		p.events = append(p.events, *ev)
	}
	k := int(ev.Aux)
	if k < 1<<16 {
		for len(p.lastSeq) <= k {
			p.lastSeq = append(p.lastSeq, 0)
			p.count = append(p.count, 0)
		}
		// The sender's number is in the event time (tcpFrameEvent): the
		// TCP feed leaves Seq to the engine's Publisher.
		n := uint64(ev.TsNs - netRecTsBase)
		if n != p.lastSeq[k]+1 && p.orderErrs == 0 {
			p.firstErr = fmt.Sprintf("key %d: message %d after %d", k, n, p.lastSeq[k])
		}
		if n != p.lastSeq[k]+1 {
			p.orderErrs++
		}
		p.lastSeq[k] = n
		p.count[k]++
	}
	p.mu.Unlock()
	if n := r.total.Add(1); r.target > 0 && n == r.target {
		close(r.reached)
	}
	return nil
}

func (p *netRecPub) Flush() error {
	p.enter()
	defer p.leave()
	p.mu.Lock()
	p.flushes++
	p.mu.Unlock()
	return nil
}

func (p *netRecPub) Barrier(ctx context.Context) error {
	p.enter()
	defer p.leave()
	select {
	case <-p.r.stopped:
		return ErrStopped
	default:
	}
	if e := p.r.barrierErr.Load(); e != nil {
		return *e
	}
	if d := p.r.barrierSleep; d > 0 {
		time.Sleep(d)
	}
	if g := p.r.barrierGate; g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	p.barriers++
	p.mu.Unlock()
	return nil
}

func (p *netRecPub) Reject(raw []byte, reason codec.Reason, pos Position, err error) {
	p.enter()
	defer p.leave()
	es := ""
	if err != nil {
		es = err.Error()
	}
	p.mu.Lock()
	p.rejects = append(p.rejects, netReject{string(raw), reason, pos, es})
	p.mu.Unlock()
}

// netRecSnapshot sums the publishers' records.
type netRecSnapshot struct {
	events    []codec.Event
	rejects   []netReject
	published int64
	flushes   int64
	barriers  int64
	orderErrs int
	firstErr  string
	count     map[uint64]int64 // by Aux, over all publishers
	pubs      int
}

func (r *netRecorder) snapshot() netRecSnapshot {
	r.mu.Lock()
	pubs := append([]*netRecPub(nil), r.pubs...)
	r.mu.Unlock()
	s := netRecSnapshot{count: map[uint64]int64{}, pubs: len(pubs)}
	for _, p := range pubs {
		p.mu.Lock()
		s.events = append(s.events, p.events...)
		s.rejects = append(s.rejects, p.rejects...)
		s.published += p.published
		s.flushes += p.flushes
		s.barriers += p.barriers
		s.orderErrs += p.orderErrs
		if s.firstErr == "" {
			s.firstErr = p.firstErr
		}
		for k, c := range p.count {
			if c > 0 {
				s.count[uint64(k)] += c
			}
		}
		p.mu.Unlock()
	}
	return s
}

// waitFor polls cond every few milliseconds (never spinning) until it holds
// or the timeout passes.
func netWaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errNetTestBarrier = errors.New("test: barrier failed")

// PublishText publishes ev; the fake keeps no text.
func (p *netRecPub) PublishText(ev *codec.Event, _ []byte) error { return p.Publish(ev) }
