// Package feedhost adapts an engine to feeds.Publishers: the wiring between
// the engine (which knows nothing of feeds) and the feeds (which know
// nothing of the engine), shared by the binary and the benchmarks.
package feedhost

import (
	"sync"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
)

// Publishers hands out the engine's Publishers to feeds and remembers them,
// so that they can be closed or detached once their feeds have returned.
type Publishers struct {
	E *engine.Engine
	// Stream is the stream the Publishers belong to; "" is the engine's
	// first (engine.NewStreamPublisher).
	Stream engine.StreamID
	mu     sync.Mutex
	pubs   []*engine.Publisher
}

// New returns the adapter for e.
func New(e *engine.Engine) *Publishers { return &Publishers{E: e} }

// NewPublisher implements feeds.Publishers.
func (p *Publishers) NewPublisher(name string) (feeds.Publisher, error) {
	return p.newPublisher(name, engine.PublisherOptions{})
}

// NewOffsetIDPublisher implements feeds.OffsetIDPublishers.
func (p *Publishers) NewOffsetIDPublisher(name string) (feeds.Publisher, error) {
	return p.newPublisher(name, engine.PublisherOptions{OffsetIDs: true})
}

func (p *Publishers) newPublisher(name string, opts engine.PublisherOptions) (feeds.Publisher, error) {
	var pub *engine.Publisher
	var err error
	if p.Stream == "" {
		pub, err = p.E.NewPublisherWith(name, opts)
	} else {
		pub, err = p.E.NewStreamPublisherWith(p.Stream, name, opts)
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pubs = append(p.pubs, pub)
	p.mu.Unlock()
	return pub, nil
}

// Symbols implements feeds.Publishers.
func (p *Publishers) Symbols() *codec.SymbolTable { return p.E.Symbols() }

// CloseAll closes every Publisher handed out: their sources have ended.
// Precondition: the goroutines that used them have returned.
func (p *Publishers) CloseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.pubs {
		pub.Close()
	}
}

// DetachAll detaches every Publisher: their sources are suspended, not
// ended (see engine.Publisher.Detach). Precondition: as for CloseAll.
func (p *Publishers) DetachAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.pubs {
		pub.Detach()
	}
}
