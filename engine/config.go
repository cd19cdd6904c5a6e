package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ring"
)

// Mode is the specification's processing mode.
type Mode uint8

// Processing modes.
const (
	// ModeEventDriven processes each message as it arrives and parks the
	// shard while there is none (the Park wait strategy). The default.
	ModeEventDriven Mode = iota
	// ModeRealTime processes each message as it arrives; the shard waits with
	// the configured strategy (spin or yield on dedicated cores).
	ModeRealTime
	// ModeMicroBatch gathers up to BatchSize messages, or whatever arrived
	// within BatchTimeout of the first, and processes them together.
	ModeMicroBatch
)

// ParseMode parses "event-driven", "real-time" or "micro-batch".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "event-driven", "event_driven", "eventdriven", "":
		return ModeEventDriven, nil
	case "real-time", "real_time", "realtime":
		return ModeRealTime, nil
	case "micro-batch", "micro_batch", "microbatch":
		return ModeMicroBatch, nil
	}
	return 0, fmt.Errorf("engine: unknown processing mode %q (want event-driven, real-time or micro-batch)", s)
}

func (m Mode) String() string {
	switch m {
	case ModeRealTime:
		return "real-time"
	case ModeMicroBatch:
		return "micro-batch"
	}
	return "event-driven"
}

// Processor is a shard's operator chain (ops.Pipeline implements it). The
// shard that owns it calls it from one goroutine only.
type Processor interface {
	// OnEvent processes one non-watermark event at the shard's current
	// watermark and appends outputs to dst. A reason other than ReasonNone
	// sends the event to the dead-letter output (late, unknown symbol).
	OnEvent(ev *codec.Event, watermarkNs int64, dst []ops.Output) ([]ops.Output, codec.Reason)
	// OnWatermark advances event time; seq is the input sequence that
	// advanced it, carried into the outputs it fires.
	OnWatermark(watermarkNs int64, seq uint64, dst []ops.Output) []ops.Output
}

// BatchProcessor is a Processor that takes a run of plain events in one
// call: one interface call per run instead of one per event (BENCHMARKS.md,
// issue 12). The shard finds the runs with one scan of each batch it polls;
// a run is a stretch of consecutive events of one input that the shard
// would give OnEvent one by one at the same watermark with nothing of its
// own in between. It ends before a watermark, cut, idle or detach marker, a
// text chunk or an event with text, an event the dedup set has to look at
// (one with a message id, when Config.DedupHorizon > 0) and the event a
// ProcessMessage call waits for; those go through the per-event path.
// *ops.Pipeline implements it.
type BatchProcessor interface {
	Processor
	// OnEvents processes evs in order exactly as OnEvent would one at a
	// time, at watermarkNs, and appends their outputs to dst in the same
	// order. It returns after the first event it rejects and otherwise
	// after the last one; it may also return early, after any event, and
	// must once len(dst) >= cap(dst)-ops.OutputHeadroom (the shard flushes
	// its buffer and calls again with the rest). n is how many events it
	// processed, at least 1 when evs is not empty; reason is ReasonNone or
	// the rejection of evs[n-1], which the shard sends to the dead letters
	// as it does OnEvent's. The slice aliases the ring and is valid only
	// during the call.
	OnEvents(evs []codec.Event, watermarkNs int64, dst []ops.Output) (out []ops.Output, n int, reason codec.Reason)
}

// TextProcessor is a Processor that takes events with text (news articles,
// signal, system and custom events; see codec/text.go). The shard gathers
// an event's KindText chunks and calls OnText once with the whole text
// (valid during the call); a Processor without it gets OnEvent and no
// text. *ops.Pipeline implements it.
type TextProcessor interface {
	OnText(ev *codec.Event, text []byte, watermarkNs int64, dst []ops.Output) ([]ops.Output, codec.Reason)
}

// ProcessingTimeProcessor is a Processor with processing-time triggers
// (early window firings). The shard calls OnProcessingTime about every
// Config.ProcessingTimeTick with its monotonic clock; seq is the last input
// sequence it processed.
type ProcessingTimeProcessor interface {
	OnProcessingTime(nowNs int64, seq uint64, dst []ops.Output) []ops.Output
}

// ProcessorFactory builds the Processor of one shard.
type ProcessorFactory func(shard int) (Processor, error)

// OutputHandler receives operator outputs from the engine's collector
// goroutine, one batch at a time. The slice is only valid during the call.
// An error is sticky: the engine stops delivering and reports it from Err
// and Stop. A handler that retries (sinks.Guard) must give up once
// Engine.Stopping is true.
type OutputHandler interface {
	HandleOutputs(outs []ops.Output) error
}

// DeadLetter is one rejected input as the engine reports it.
type DeadLetter struct {
	Reason codec.Reason
	Feed   string // name of the publisher/feed
	Pos    codec.Position
	Raw    []byte // the raw input if the rejection happened at parse time (valid during the call); nil for events rejected by operators
	Event  *codec.Event
	Output *ops.Output // an output the sink rejected as poison (Engine.DeadLetterOutput); nil otherwise
	Err    error
}

// DeadLetterHandler receives every rejected input. Calls come from feed
// goroutines (parse-time rejections) and from the collector (operator
// rejections); implementations must be safe for concurrent use and must not
// block for long.
type DeadLetterHandler interface {
	HandleDeadLetter(dl *DeadLetter)
}

// Config configures an Engine. Zero values take the documented defaults.
type Config struct {
	// Shards is the number of shard loops. Default: usable CPUs − 1, at least 1.
	Shards int
	// PinCPUs, when set, pins shard i to PinCPUs[i % len(PinCPUs)]. A refusal is
	// logged once and the shard runs unpinned.
	PinCPUs []int
	// Wait is the shards' and producers' wait strategy. Default ring.Park.
	Wait ring.Strategy
	// Mode is the processing mode. ModeEventDriven forces Wait = Park.
	Mode Mode
	// Chain lets a Publisher run a parked shard's processing round itself
	// (operator chaining, engine/chain.go): when it makes a few events
	// visible to a shard whose thread sleeps, it takes the shard's role
	// token, processes what the shard's rings hold and delivers the outputs
	// on its own goroutine, and the shard thread sleeps on; no wake-up and
	// no hop between threads per message. It applies only with the Park
	// wait strategy, not in ModeMicroBatch nor with Ordered (withDefaults
	// clears it otherwise), and never to a recovery replay's publishers.
	Chain bool
	// BatchSize and BatchTimeout apply to ModeMicroBatch (defaults 256, 1ms).
	BatchSize    int
	BatchTimeout time.Duration
	// RingSize is the capacity of each producer→shard ring (power of two, default 8192).
	RingSize int
	// OutRingSize is the capacity of each shard's output ring (power of two, default 16384).
	OutRingSize int
	// MaxProducers bounds the number of Publishers (default 16).
	MaxProducers int
	// MaxSymbols is the capacity of the symbol table (default 65536).
	MaxSymbols int
	// Symbols, if set, is the symbol table to use (its capacity wins over
	// MaxSymbols); the engine creates one otherwise.
	Symbols *codec.SymbolTable
	// OutOfOrderness is subtracted from the largest event time a source has
	// seen to form its watermark.
	OutOfOrderness time.Duration
	// IdleTimeout: a source that published nothing for this long (processing
	// time) stops holding the watermark back. 0 disables.
	IdleTimeout time.Duration
	// ProcessingTimeTick is how often shards run processing-time triggers of
	// processors that have them (ProcessingTimeProcessor). 0 disables; it
	// must stay 0 for a deterministic replay.
	ProcessingTimeTick time.Duration
	// Ordered makes the collector deliver outputs in input order (by Seq,
	// then a deterministic tie-break), independent of the number of shards.
	// It requires a single Publisher whose events carry increasing Seq: replay.
	Ordered bool
	// Processors builds each shard's operator chain. Required.
	Processors ProcessorFactory
	// Output receives the first stream's operator outputs. Nil discards
	// them (counted).
	Output OutputHandler
	// StreamName names the first stream (the one Processors and Output
	// describe); "" is "default". The id "default" names it as well.
	StreamName StreamID
	// Streams are more streams on the same shards, built at New by
	// StreamFactory (streams.go). They are not recorded in checkpoints:
	// the configuration brings them back.
	Streams []StreamConfig
	// StreamFactory builds streams from their definitions: Streams,
	// StartStream and recovery of StartStream's streams. Nil: the engine
	// runs only its first stream.
	StreamFactory StreamFactory
	// DeadLetters receives rejected inputs. Nil only counts them.
	DeadLetters DeadLetterHandler
	// Durability, if set, makes Publisher.Barrier wait for the WAL. A *WAL
	// (OpenWAL) also logs symbols, watermarks and publishers, which
	// Recover, Checkpoints and `qstream replay --format wal` need.
	Durability Durability
	// WALBatches makes a *WAL log the events a Publisher makes visible
	// together as one record (RecordEventBatch, walbatch.go: about 39
	// bytes an event instead of 100) instead of a record per event: the
	// WAL writes less than half the bytes and takes one append per batch,
	// which is most of what durability costs a publisher (BENCHMARKS.md).
	// `qstream run` sets it unless --wal-batches=false. The archive sink
	// needs it off (it positions events by LSN).
	WALBatches bool
	// Checkpoints, if set, takes consistent checkpoints of every shard's
	// state (see checkpoint.go). It needs Durability to be a *WAL and every
	// Processor to be a StatefulProcessor.
	Checkpoints *CheckpointConfig
	// DedupHorizon, if > 0, makes each shard drop an event whose message id
	// (Event.IDHash, from the same feed: Publishers named "<feed>/<member>"
	// share their ids) is among the last DedupHorizon ids it saw:
	// exactly-once over at-least-once upstreams. Dropped events
	// go to the dead-letter output as ReasonDuplicate. At most
	// MaxDedupHorizon; the ids are part of every checkpoint.
	// A source created with PublisherOptions.OffsetIDs (its message ids are
	// its offsets) is de-duplicated by Seq instead: an event whose Seq is
	// not above the largest processed from the source (by name) is a
	// duplicate, whatever the horizon, and its ids are not kept.
	DedupHorizon int
	// Logger for lifecycle messages. Default slog.Default().
	Logger *slog.Logger
	// PatternMatchBuffer is how many of each pattern's most recent matches
	// Engine.DetectPatternMatches keeps (a ring preallocated per pattern):
	// 0 means DefaultPatternMatchBuffer, negative none (matches are still
	// counted); at most MaxPatternMatchBuffer.
	PatternMatchBuffer int
}

// Durability is the WAL as the engine sees it: every published event is
// appended before it is handed to a shard, and Barrier waits for the sync.
type Durability interface {
	// Append logs one event, encoded as a compact codec frame (valid only during the
	// call), and returns its LSN.
	Append(frame []byte) (lsn uint64, err error)
	// WaitDurable returns once lsn is synced.
	WaitDurable(lsn uint64) error
}

// Limits that bound configuration.
const (
	MaxShards       = 256
	MaxProducersMax = 1024
	maxRingSize     = 1 << 22
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("engine: invalid configuration")

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Shards == 0 {
		cfg.Shards = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if cfg.Shards < 0 || cfg.Shards > MaxShards {
		return cfg, fmt.Errorf("%w: shards %d outside 1..%d", ErrConfig, cfg.Shards, MaxShards)
	}
	if cfg.Mode == ModeEventDriven {
		cfg.Wait = ring.Park
	}
	if cfg.Wait != ring.Park || cfg.Mode == ModeMicroBatch || cfg.Ordered {
		// Chaining replaces a parked shard's wake-up only. Not in ordered
		// mode: a chained round delivers at once, inside the Publisher's
		// commit of one ring, and the ordered merge's progress argument
		// does not cover a publisher whose end-of-source watermark carries
		// the Seq of its last flush's (see chain.go).
		cfg.Chain = false
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = time.Millisecond
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = 8192
	}
	if cfg.OutRingSize == 0 {
		cfg.OutRingSize = 16384
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = min(256, cfg.RingSize)
	}
	for _, n := range []int{cfg.RingSize, cfg.OutRingSize} {
		if n < 2 || n > maxRingSize || n&(n-1) != 0 {
			return cfg, fmt.Errorf("%w: ring size %d is not a power of two in 2..%d", ErrConfig, n, maxRingSize)
		}
	}
	if cfg.Mode == ModeMicroBatch && (cfg.BatchSize < 1 || cfg.BatchSize > cfg.RingSize) {
		return cfg, fmt.Errorf("%w: batch size %d outside 1..ring size %d", ErrConfig, cfg.BatchSize, cfg.RingSize)
	}
	if cfg.MaxProducers == 0 {
		cfg.MaxProducers = 16
	}
	if cfg.MaxProducers < 1 || cfg.MaxProducers > MaxProducersMax {
		return cfg, fmt.Errorf("%w: max producers %d outside 1..%d", ErrConfig, cfg.MaxProducers, MaxProducersMax)
	}
	if cfg.MaxSymbols == 0 {
		cfg.MaxSymbols = 1 << 16
	}
	if cfg.DedupHorizon < 0 || cfg.DedupHorizon > MaxDedupHorizon {
		return cfg, fmt.Errorf("%w: dedup horizon %d outside 0..%d", ErrConfig, cfg.DedupHorizon, MaxDedupHorizon)
	}
	if cfg.OutOfOrderness < 0 || cfg.IdleTimeout < 0 || cfg.ProcessingTimeTick < 0 {
		return cfg, fmt.Errorf("%w: negative out-of-orderness or idle timeout", ErrConfig)
	}
	if cfg.Processors == nil {
		return cfg, fmt.Errorf("%w: no processor factory", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.PatternMatchBuffer == 0:
		cfg.PatternMatchBuffer = DefaultPatternMatchBuffer
	case cfg.PatternMatchBuffer > MaxPatternMatchBuffer:
		return cfg, fmt.Errorf("%w: pattern match buffer %d above %d", ErrConfig, cfg.PatternMatchBuffer, MaxPatternMatchBuffer)
	}
	return cfg, nil
}
