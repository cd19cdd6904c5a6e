package sinks

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"qstream/codec"
)

// DLQNATS publishes every dead letter, as the JSON object DLQWriter writes,
// to a NATS subject: the optional second copy of the DLQ for operators who
// watch it live. Publishing is asynchronous (the connection's buffer, which
// nats.go bounds); failures are counted and the last one kept, never
// retried here, since the DLQ segments hold the record durably. Safe for
// concurrent use.
type DLQNATS struct {
	nc      *nats.Conn
	subject string
	symbols *codec.SymbolTable

	mu      sync.Mutex
	buf     []byte
	sent    atomic.Uint64
	failed  atomic.Uint64
	lastErr atomic.Pointer[error]
}

// NewDLQNATS returns a publisher to subject over nc.
func NewDLQNATS(nc *nats.Conn, subject string, symbols *codec.SymbolTable) (*DLQNATS, error) {
	if subject == "" {
		return nil, fmt.Errorf("sinks: dlq nats: empty subject")
	}
	return &DLQNATS{nc: nc, subject: subject, symbols: symbols, buf: make([]byte, 0, 1024)}, nil
}

// Write publishes one dead letter.
func (d *DLQNATS) Write(r *DeadLetterRecord) error {
	d.mu.Lock()
	d.buf = AppendDeadLetterJSON(d.buf[:0], r, d.symbols)
	err := d.nc.Publish(d.subject, d.buf)
	d.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("sinks: dlq nats: %w", err)
		d.failed.Add(1)
		d.lastErr.Store(&err)
		return err
	}
	d.sent.Add(1)
	return nil
}

// Sent and Failed count publications.
func (d *DLQNATS) Sent() uint64   { return d.sent.Load() }
func (d *DLQNATS) Failed() uint64 { return d.failed.Load() }

// Err returns the last publication error, or nil.
func (d *DLQNATS) Err() error {
	if e := d.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Flush waits until the server has every published dead letter.
func (d *DLQNATS) Flush() error { return d.nc.Flush() }
