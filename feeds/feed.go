// Package feeds holds qstream's sources: the gnet TCP server, exchange
// WebSocket clients, HTTP webhooks, NATS JetStream, pcap and WAL replay, line
// files and the synthetic generator. Each parses into codec.Event without
// per-message allocation and hands events to the engine through a Publisher.
package feeds

import (
	"context"
	"errors"
	"fmt"

	"qstream/codec"
)

// ErrStopped is returned by Publisher methods once the engine is stopping.
var ErrStopped = errors.New("feeds: engine stopped")

// Publisher is where one producing goroutine hands events to the engine. The
// engine gives every producer its own Publisher, backed by its own SPSC ring
// into each shard, so a Publisher must only ever be used by one goroutine.
type Publisher interface {
	// Publish copies ev into the engine (the engine routes it by symbol,
	// stamps IngestNs when it is zero, and sets a zero Seq to the source's
	// next offset: a feed without resumable offsets of its own leaves Seq
	// 0). It blocks while the target ring is
	// full: that is the backpressure a network feed turns into not reading.
	// Publication is batched: call Flush to make events visible promptly.
	Publish(ev *codec.Event) error
	// PublishText publishes ev with its text (codec/text.go), both as one
	// group; with no text it is Publish.
	PublishText(ev *codec.Event, text []byte) error
	// Flush makes every event published so far visible to the shards.
	Flush() error
	// Barrier flushes and then returns once every event published so far is
	// durable (its WAL record synced). Feeds release upstream
	// acknowledgements (webhook 202, JetStream ack, TCP ack frame) only after
	// it returns nil. Without a WAL it returns after the flush.
	Barrier(ctx context.Context) error
	// Reject records an input that failed to parse or validate: it is counted
	// by reason and written to the dead-letter output with raw (copied), the
	// feed's name and pos. It never blocks for long and never fails the feed.
	Reject(raw []byte, reason codec.Reason, pos Position, err error)
}

// SourceIdler is implemented by a Publisher (the engine's) whose source can
// go idle. Idle says the producer has nothing to send for now (a TCP event
// loop without connections): its watermark stops holding the engine's back
// until it publishes again. Call it from the Publisher's goroutine.
type SourceIdler interface {
	Idle() error
}

// OffsetIDPublishers is implemented by Publishers (the engine's) that can
// de-duplicate a source by its offsets, at no cost per message.
// NewOffsetIDPublisher is NewPublisher for a feed whose message ids are its
// offsets: it sets every event's Seq, strictly increasing, and a message it
// sends again carries the Seq it had, so a resent message is one whose Seq
// is not above the largest already processed (engine.PublisherOptions.
// OffsetIDs). A feed for which that is not exactly true (two messages with
// one id, one message under two offsets) uses NewPublisher.
type OffsetIDPublishers interface {
	NewOffsetIDPublisher(name string) (Publisher, error)
}

// Publishers hands out Publishers, one per producing goroutine.
type Publishers interface {
	// NewPublisher returns a Publisher for one goroutine of the feed. A
	// feed with several names them "<feed>/<member>" (TCP event loops,
	// JetStream partitions): they share the feed's message ids, so a
	// message resent through any of them is a duplicate. The name is the
	// source's identity across restarts (offsets, output keys).
	NewPublisher(name string) (Publisher, error)
	// Symbols is the engine's shared symbol table (wrap it in a
	// codec.SymbolCache per goroutine).
	Symbols() *codec.SymbolTable
}

// Feed is a long-running source of events.
type Feed interface {
	// Name identifies the feed in metrics, logs and DLQ records.
	Name() string
	// Run produces events until ctx is done or the source ends. A finite
	// source (a file, a capture) returns nil at its end.
	Run(ctx context.Context, pubs Publishers) error
}

// Position locates a record in its input (line or offset).
type Position = codec.Position

// Reader is a finite, pull-style source of events: a file of lines, a
// capture, a WAL. Replay drives Readers so that the same input always gives
// the same sequence of events.
type Reader interface {
	// Next decodes the next event into ev. It returns io.EOF at the end of the
	// input and a *RecordError for a bad record, after which Next may be
	// called again. Any other error means the input cannot be read further.
	Next(ev *codec.Event) error
	Close() error
}

// RecordError is a bad record: where it was, its raw bytes (owned by the
// Reader, valid until the next call to Next) and why it was rejected.
type RecordError struct {
	Pos Position
	Raw []byte
	Err error
}

func (e *RecordError) Error() string { return fmt.Sprintf("%s: %v", e.Pos, e.Err) }
func (e *RecordError) Unwrap() error { return e.Err }

// Reason returns the codec.Reason of the underlying error.
func (e *RecordError) Reason() codec.Reason { return codec.ReasonOf(e.Err) }
