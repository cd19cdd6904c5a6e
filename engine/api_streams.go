package engine

import (
	"errors"
	"fmt"

	"qstream/ops"
)

// StreamID names a stream of the engine. An engine runs one stream today,
// DefaultStream; the API takes the id so that it reads as the
// specification's (filter_stream, transform_stream) and stays when several
// streams share the shards.
type StreamID string

// DefaultStream is the id of the engine's stream.
const DefaultStream StreamID = "default"

// ErrUnknownStream is returned for a stream id the engine does not run.
var ErrUnknownStream = errors.New("engine: unknown stream")

// StreamHost is a Processor whose stream can be filtered and transformed
// at run time. *ops.Pipeline implements it.
type StreamHost interface {
	SetFilter(src string) error
	SetTransform(src string) error
}

// ErrNoStreamHost: the shards' processors cannot filter or transform.
var ErrNoStreamHost = errors.New("engine: processors cannot filter or transform their stream")

// FilterStream sets the stream's filter, a declarative predicate compiled
// once (ops.ParseFilter: "kind == trade and symbol in (AAPL, MSFT) and
// price > 100"): events that do not pass reach no operator. "" removes
// it. It applies on every shard between batches and is recorded in
// checkpoints like every run-time definition (defs.go). Errors wrap
// ops.ErrFilterSpec, ErrUnknownStream or ErrNoStreamHost.
func (e *Engine) FilterStream(id StreamID, filter string) error {
	if filter != "" {
		if _, err := ops.ParseFilter(filter); err != nil {
			return err
		}
	}
	return e.setStream(id, definition{Kind: "filter", Expr: filter})
}

// TransformStream sets the stream's transform (ops.ParseTransform:
// "price = price * 100; volume = volume / 1000"), run after the filter and
// before every operator. "" removes it. Recorded in checkpoints.
func (e *Engine) TransformStream(id StreamID, transform string) error {
	if transform != "" {
		if _, err := ops.ParseTransform(transform); err != nil {
			return err
		}
	}
	return e.setStream(id, definition{Kind: "transform", Expr: transform})
}

func (e *Engine) setStream(id StreamID, d definition) error {
	if id != DefaultStream {
		return fmt.Errorf("%w: %q (this engine runs %q)", ErrUnknownStream, id, DefaultStream)
	}
	commit := e.lockDefs()
	err := e.applyStream(d)
	if err == nil {
		e.addDef(d)
	}
	if cerr := commit(err == nil); err == nil {
		err = cerr
	}
	return err
}

func (e *Engine) applyStream(d definition) error {
	return e.onShards(func(_ int, p Processor) error {
		h, ok := p.(StreamHost)
		if !ok {
			return ErrNoStreamHost
		}
		if d.Kind == "filter" {
			return h.SetFilter(d.Expr)
		}
		return h.SetTransform(d.Expr)
	})
}
