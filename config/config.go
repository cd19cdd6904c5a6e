// Package config reads qstream's configuration file: the engine-wide
// settings and a list of streams, each the specification's StreamConfig
// (a source, a processing mode, the operators and the sinks).
//
// The file is YAML (JSON is YAML too). It is decoded through yaml.v3's Node
// API, so every error names the file, the line and the field:
//
//	qstream.yaml:12: streams[0].windows[1]: "tumbling:0s:vwap": size must be > 0
//
// Unknown fields, values of the wrong type, duplicate keys and stream names
// are errors. Values are checked with the parsers the `qstream run` flags use
// (ops.ParseIndicators, ops.ParseWindowSpec, ops.ParsePatternsFile,
// ops.ParseMovements, sinks.OpenSink, time.ParseDuration, ...), so a file that
// loads also runs: Config.RunArgs turns a stream into the equivalent `run`
// flags, which `qstream run --config FILE` parses as if they had been typed.
//
// Every field has a default, the default of its flag; a field left out of the
// file keeps it. Paths of files the configuration reads (patterns_file, the
// news data files, the pcap capture, the webhook secret, @FILE subscriptions)
// are relative to the configuration file's directory; directories and files
// the engine writes (WAL, checkpoints, dead letters, sink state, output, ack
// file) are relative to the working directory, as with the flags.
package config

import (
	_ "embed"
	"strings"
	"time"

	"qstream/feeds"
	"qstream/ops"
	"qstream/wal"
)

// Config is a configuration file: engine-wide settings and the streams.
type Config struct {
	// Wait is the shard wait strategy: park (sleep until work; shared
	// machines), yield or spin (dedicated cores). Default park. (--wait)
	Wait string `yaml:"wait"`
	// Pin pins shards to CPUs: "" (no pinning), "auto" (the allowed CPUs
	// after the first) or a list like "2,3". Default "". (--pin)
	Pin string `yaml:"pin"`
	// MaxSymbols is the capacity of the symbol table. Default 65536.
	// (--max-symbols)
	MaxSymbols int `yaml:"max_symbols"`
	// DedupHorizon is, per shard, how many recent message ids are
	// remembered to drop redelivered duplicates (0: off). Default 65536.
	// (--dedup-horizon)
	DedupHorizon int `yaml:"dedup_horizon"`
	// WAL is the write-ahead log.
	WAL WALConfig `yaml:"wal"`
	// Checkpoint is where operator state is checkpointed.
	Checkpoint CheckpointConfig `yaml:"checkpoint"`
	// SinkDir is where sinks keep their spill and checkpointed queues ("":
	// sinks/ beside the WAL directory; without a WAL a temporary
	// directory). Default "". (--sink-dir)
	SinkDir string `yaml:"sink_dir"`
	// SinkDrain is how long the sinks may take at stop to deliver what they
	// queued. Default 10s. (--sink-drain)
	SinkDrain time.Duration `yaml:"sink_drain"`
	// StatusInterval is how often the status line is printed. Default 1s.
	// (--status-interval)
	StatusInterval time.Duration `yaml:"status_interval"`
	// Duration stops the run after this long (0: until interrupted).
	// Default 0s. (--duration)
	Duration time.Duration `yaml:"duration"`
	// HTTP is the control endpoint and the dashboard (README "Control
	// API"). An address left at its default leaves --http at its own
	// (127.0.0.1:8080, or $QSTREAM_HTTP when set).
	HTTP HTTPConfig `yaml:"http"`
	// Streams are the streams; at least one. `qstream run` runs them all
	// on one engine's shards: the first sets the engine-wide fields
	// (parallelism, processing mode, batch, checkpoint interval, event
	// time's out-of-orderness and idle timeout, error handling), which the
	// others must leave as it has them.
	Streams []StreamConfig `yaml:"streams"`

	file string   // the file's name, for errors
	dir  string   // its directory: relative input paths are resolved against it
	tmp  []string // files written by RunArgs (inline patterns); Cleanup removes them
}

// WALConfig configures the write-ahead log.
type WALConfig struct {
	// Dir is the WAL directory; "" turns the WAL, checkpoints and recovery
	// off. Default qstream-data/wal. (--wal-dir)
	Dir string `yaml:"dir"`
	// Sync is the sync policy: group (fdatasync every group_records records
	// or group_interval), always (every append waits for its sync) or none.
	// Default group. (--sync)
	Sync string `yaml:"sync"`
	// GroupRecords is the group commit's records per fdatasync at most.
	// Default 1024. (--group-records)
	GroupRecords int `yaml:"group_records"`
	// GroupInterval is the longest wait of a record for its fdatasync.
	// Default 200µs. (--group-interval)
	GroupInterval time.Duration `yaml:"group_interval"`
}

// HTTPConfig configures the control endpoint.
type HTTPConfig struct {
	// Addr is the endpoint's address; "" turns it off. Default
	// 127.0.0.1:8080. (--http)
	Addr string `yaml:"addr"`
	// Dashboard serves the live dashboard at /. Default true. (--dashboard)
	Dashboard bool `yaml:"dashboard"`
	// StopTimeout bounds a clean stop. Default 30s. (--stop-timeout)
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// DefaultHTTP is the control endpoint's defaults.
func DefaultHTTP() HTTPConfig {
	return HTTPConfig{Addr: "127.0.0.1:8080", Dashboard: true, StopTimeout: 30 * time.Second}
}

// CheckpointConfig configures checkpoints (their interval is per stream:
// StreamConfig.CheckpointInterval).
type CheckpointConfig struct {
	// Dir is the checkpoint directory (with a WAL). Default
	// qstream-data/checkpoints. (--checkpoint-dir)
	Dir string `yaml:"dir"`
	// Final takes a checkpoint when a finite feed completes, before ending
	// the input. Default false. (--final-checkpoint)
	Final bool `yaml:"final"`
}

// StreamConfig is one stream: the specification's StreamConfig.
type StreamConfig struct {
	// Name names the stream; unique in the file. Default "stream-N" (N its
	// 1-based position). The control API and the metrics address the
	// stream by it (the first stream also as "default"); a later stream's
	// feeds publish as "<name>:<feed>".
	Name string `yaml:"name"`
	// Source is the stream's feeds: one key per feed, each with its
	// settings. Default: the synthetic feed with its defaults. (--feed and
	// the feeds' flags)
	Source SourceConfig `yaml:"source"`
	// ProcessingMode is event-driven (park until a message arrives),
	// real-time (each message as it arrives, with the engine's wait) or
	// micro-batch (batch_size / max_latency). Default event-driven. (--mode)
	ProcessingMode string `yaml:"processing_mode"`
	// Parallelism is the number of shards (0: usable CPUs minus one, at
	// least one). Default 0. (--shards)
	Parallelism int `yaml:"parallelism"`
	// BatchSize is the micro-batch's messages per batch. Default 256.
	// (--batch-size)
	BatchSize int `yaml:"batch_size"`
	// MaxLatency is the micro-batch's longest wait for a batch to fill.
	// Default 1ms. (--batch-timeout)
	MaxLatency time.Duration `yaml:"max_latency"`
	// CheckpointInterval is the time between checkpoints of all operator
	// state (0: only after recovery and at the final checkpoint). Default
	// 10s. (--checkpoint-interval)
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// ErrorHandling is where rejected inputs go.
	ErrorHandling ErrorHandling `yaml:"error_handling"`
	// EventTime configures watermarks and lateness.
	EventTime EventTimeConfig `yaml:"event_time"`
	// Indicators are computed on every trade: sma:N, ema:N, rsi:N, vwap,
	// vwap:N; [] for none. Default [sma:5, sma:20, ema:12, rsi:14, vwap].
	// (--indicators)
	Indicators []string `yaml:"indicators"`
	// IndicatorOptions tune the indicators.
	IndicatorOptions IndicatorOptions `yaml:"indicator_options"`
	// Windows are event-time windows over trades, each TYPE:PARAMS:AGG[:FIELD]
	// (tumbling:1m:vwap, hopping:5m/1m:avg, ...). Default []. (--windows)
	Windows []string `yaml:"windows"`
	// WindowOptions tune the windows.
	WindowOptions WindowOptions `yaml:"window_options"`
	// Patterns is an inline list of patterns in the form of a --patterns
	// file (README "Patterns"). Default []. Not with PatternsFile.
	Patterns []Pattern `yaml:"patterns"`
	// PatternsFile is a pattern file (JSON or YAML) instead of an inline
	// list. Default "". (--patterns)
	PatternsFile string `yaml:"patterns_file"`
	// PatternMaxTrades is the trades kept per symbol in each pattern
	// timeframe. Default 10000. (--pattern-max-trades)
	PatternMaxTrades int `yaml:"pattern_max_trades"`
	// Movements are price movements, each HORIZON:THRESHOLD (5m:1%).
	// Default []. (--movements)
	Movements []string `yaml:"movements"`
	// MovementMaxTrades is the trades kept per symbol and movement horizon.
	// Default 4096. (--movement-max-trades)
	MovementMaxTrades int `yaml:"movement_max_trades"`
	// News are the news analysis's data files.
	News NewsConfig `yaml:"news"`
	// Sinks receive every output, each a --sink URI: redis://, clickhouse://,
	// clickhouse+http://, nats://, ws://, archive://. Default []. (--sink)
	Sinks []string `yaml:"sinks"`
	// Emit is what the output and the sinks get: indicators, windows,
	// patterns, movements, news, events, or all. Default [all]. (--emit)
	Emit []string `yaml:"emit"`
	// Output is a JSON Lines file of every output, or - for standard
	// output ("": outputs are only counted). Default "". (--output)
	Output string `yaml:"output"`
}

// Pattern is one inline pattern, kept as the JSON of a --patterns file
// entry; Line is its line in the configuration file.
type Pattern struct {
	JSON []byte
	Line int
}

// SourceConfig holds the feeds of a stream; a nil feed is not run. A
// source with none is the synthetic feed with its defaults.
type SourceConfig struct {
	// Synthetic is the built-in synthetic market.
	Synthetic *SyntheticSource `yaml:"synthetic"`
	// TCP is a TCP listener of JSON lines or binary frames.
	TCP *TCPSource `yaml:"tcp"`
	// WS is an exchange's WebSocket feed.
	WS *WSSource `yaml:"ws"`
	// Webhook is an HTTP endpoint of HMAC-signed events.
	Webhook *WebhookSource `yaml:"webhook"`
	// JetStream is a partitioned NATS JetStream stream.
	JetStream *JetStreamSource `yaml:"jetstream"`
	// Pcap replays an IEX TOPS/DEEP capture.
	Pcap *PcapSource `yaml:"pcap"`
}

// SyntheticSource is the synthetic feed: a seeded random walk of trades and
// quotes.
type SyntheticSource struct {
	// Symbols is the number of instruments. Default 100. (--symbols)
	Symbols int `yaml:"symbols"`
	// Rate is messages per second (0: as fast as possible). Default
	// 100000. (--rate)
	Rate int `yaml:"rate"`
	// Seed: the same seed gives the same messages. Default 1. (--seed)
	Seed uint64 `yaml:"seed"`
	// Count stops after this many messages (0: until interrupted). Default
	// 0. (--count)
	Count int64 `yaml:"count"`
	// AckFile gets each acknowledged offset, a line per ack_every
	// messages. Default "". (--ack-file)
	AckFile string `yaml:"ack_file"`
	// AckEvery waits for durability and acknowledges every this many
	// messages (0: never). Default 0. (--ack-every)
	AckEvery uint64 `yaml:"ack_every"`
	// Resend resumes this many messages before the durable offset after
	// recovery (dedup drops them). Default 0. (--resend)
	Resend uint64 `yaml:"resend"`
	// FlushEvery makes events visible and advances the watermark every this
	// many messages. Default 256. (--flush-every)
	FlushEvery uint64 `yaml:"flush_every"`
}

// TCPSource is the TCP feed.
type TCPSource struct {
	// Addr is the listen address host:port (port 0 picks one). Required.
	// (--tcp-addr)
	Addr string `yaml:"addr"`
	// Format is lines, frames or auto (per connection). Default auto.
	// (--tcp-format)
	Format string `yaml:"format"`
	// Ack sends each connection's cumulative count once its messages are
	// durable. Default false. (--tcp-ack)
	Ack bool `yaml:"ack"`
	// Loops is the gnet event loops (0: GOMAXPROCS; at most 256). Default
	// 0. (--tcp-loops)
	Loops int `yaml:"loops"`
	// LockThread locks each event loop to an OS thread of its own (lower
	// latency; false: a few per cent more saturated ingest). Default true.
	// (--tcp-lock-thread)
	LockThread bool `yaml:"lock_thread"`
	// IdleTimeout closes a connection silent this long (0: never). Default
	// 5m. (--tcp-idle-timeout)
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// WSSource is an exchange's WebSocket feed.
type WSSource struct {
	// URL is the ws:// or wss:// endpoint. Required. (--ws-url)
	URL string `yaml:"url"`
	// Exchange is the message format: coinbase, binance or kraken.
	// Required. (--ws-exchange)
	Exchange string `yaml:"exchange"`
	// Subscribe are the subscription messages sent after every
	// (re)connect: a JSON message, or @FILE. Default []. (--ws-subscribe)
	Subscribe []string `yaml:"subscribe"`
	// StaleAfter reconnects when nothing arrived for this long (negative
	// disables). Default 30s. (--ws-stale-after)
	StaleAfter time.Duration `yaml:"stale_after"`
}

// WebhookSource is the HTTP webhook feed. Its secret is never in the
// file: SecretFile, or the environment variable QSTREAM_WEBHOOK_SECRET.
type WebhookSource struct {
	// Addr is the listen address host:port. Required. (--webhook-addr)
	Addr string `yaml:"addr"`
	// Path is the endpoint's path. Default /webhook. (--webhook-path)
	Path string `yaml:"path"`
	// SecretFile holds the HMAC secret. Default "" (the environment
	// variable). (--webhook-secret-file)
	SecretFile string `yaml:"secret_file"`
}

// JetStreamSource is the NATS JetStream feed.
type JetStreamSource struct {
	// URL is the NATS server. Default nats://127.0.0.1:4222. (--js-url)
	URL string `yaml:"url"`
	// Stream is the stream's name (it must exist). Required. (--js-stream)
	Stream string `yaml:"stream"`
	// SubjectPrefix: partition p is the subject <prefix>.<p>. Required.
	// (--js-subject-prefix)
	SubjectPrefix string `yaml:"subject_prefix"`
	// Partitions is the stream's partitions (1..4096). Required.
	// (--js-partitions)
	Partitions int `yaml:"partitions"`
	// Owned are the partitions consumed here, e.g. 0-7 or 0,2,4 ("": all).
	// Default "". (--js-owned)
	Owned string `yaml:"owned"`
	// Durable is the base name of the durable consumers. Default qstream.
	// (--js-durable)
	Durable string `yaml:"durable"`
	// AckWait: the server redelivers a message not acknowledged within
	// this long. Default 30s. (--js-ack-wait)
	AckWait time.Duration `yaml:"ack_wait"`
}

// PcapSource replays a capture.
type PcapSource struct {
	// Path is the pcap or pcapng file (gzip or not). Required. (--pcap)
	Path string `yaml:"path"`
	// Speed is 0 (as fast as possible) or a factor of the captured pace.
	// Default 0. (--pcap-speed)
	Speed float64 `yaml:"speed"`
}

// ErrorHandling says where rejected inputs go.
type ErrorHandling struct {
	// Policy is dead_letter (segments in dead_letter_dir; see `qstream
	// dlq`) or log (stderr only). Default dead_letter.
	Policy string `yaml:"policy"`
	// DeadLetterDir is the dead-letter directory (policy dead_letter).
	// Default qstream-data/dlq. (--dlq-dir)
	DeadLetterDir string `yaml:"dead_letter_dir"`
	// NATSURL also publishes every dead letter to NATS. Default "".
	// (--dlq-nats-url)
	NATSURL string `yaml:"nats_url"`
	// NATSSubject is the dead letters' subject (with nats_url). Default "".
	// (--dlq-nats-subject)
	NATSSubject string `yaml:"nats_subject"`
}

// EventTimeConfig configures watermarks and lateness.
type EventTimeConfig struct {
	// OutOfOrderness: the watermark is the largest event time seen minus
	// this. Default 0s. (--out-of-orderness)
	OutOfOrderness time.Duration `yaml:"out_of_orderness"`
	// AllowedLateness: events behind the watermark by at most this update
	// their windows. Default 0s. (--allowed-lateness)
	AllowedLateness time.Duration `yaml:"allowed_lateness"`
	// IdleTimeout: a source silent this long stops holding the watermark
	// back (0: never). Default 0s. (--idle-timeout)
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// IndicatorOptions tune the indicators.
type IndicatorOptions struct {
	// EMASeed is sma (TA-Lib) or first (MetaStock, Tulip). Default sma.
	// (--ema-seed)
	EMASeed string `yaml:"ema_seed"`
	// VWAPSession is the length of the session that resets the session
	// VWAP. Default 24h. (--vwap-session)
	VWAPSession time.Duration `yaml:"vwap_session"`
	// VWAPSessionOffset is the session's start after UTC midnight. Default
	// 0s. (--vwap-session-offset)
	VWAPSessionOffset time.Duration `yaml:"vwap_session_offset"`
}

// WindowOptions tune the windows.
type WindowOptions struct {
	// Emit is updates (on-time result, then late re-firings) or final.
	// Default updates. (--window-emit)
	Emit string `yaml:"emit"`
	// EarlyEveryN fires open windows early after every N trades of a
	// symbol (0: never). Default 0. (--early-every-n)
	EarlyEveryN int `yaml:"early_every_n"`
	// EarlyEvery fires open windows early every this much processing time
	// (0: never). Default 0s. (--early-every)
	EarlyEvery time.Duration `yaml:"early_every"`
	// MaxOpen is the open windows held per symbol. Default 16.
	// (--max-open-windows)
	MaxOpen int `yaml:"max_open"`
	// MaxBuffered is the raw trades kept per symbol by sliding, TWAP and
	// percentile windows. Default 4096. (--max-buffered)
	MaxBuffered int `yaml:"max_buffered"`
	// PercentileExactMax: windows with at most this many trades get exact
	// percentiles. Default 1024. (--percentile-exact-max)
	PercentileExactMax int `yaml:"percentile_exact_max"`
	// SymbolTTL releases an idle symbol's window state (0: keep). Default
	// 0s. (--symbol-ttl)
	SymbolTTL time.Duration `yaml:"symbol_ttl"`
}

// NewsConfig names the news analysis's data files ("": the built-in one).
type NewsConfig struct {
	// Entities is the entity dictionary. Default "". (--news-entities)
	Entities string `yaml:"entities"`
	// Lexicon is the sentiment lexicon. Default "". (--news-lexicon)
	Lexicon string `yaml:"lexicon"`
	// Events is the event rules file. Default "". (--news-events)
	Events string `yaml:"events"`
}

// Default values that have no constant in another package; they are those
// of the `qstream run` flags (cmd/qstream's tests compare them).
const (
	DefaultWALDir        = "qstream-data/wal"
	DefaultCheckpointDir = "qstream-data/checkpoints"
	DefaultDLQDir        = "qstream-data/dlq"
)

// Default returns the engine-wide defaults, without streams.
func Default() Config {
	return Config{
		Wait:           "park",
		MaxSymbols:     1 << 16,
		DedupHorizon:   1 << 16,
		WAL:            WALConfig{Dir: DefaultWALDir, Sync: "group", GroupRecords: wal.DefaultGroupRecords, GroupInterval: wal.DefaultGroupDelay},
		Checkpoint:     CheckpointConfig{Dir: DefaultCheckpointDir},
		SinkDrain:      10 * time.Second,
		StatusInterval: time.Second,
		HTTP:           DefaultHTTP(),
	}
}

// DefaultStream returns a stream's defaults; its source is none (Load
// makes a stream without feeds the default synthetic one).
func DefaultStream() StreamConfig {
	return StreamConfig{
		ProcessingMode:     "event-driven",
		BatchSize:          256,
		MaxLatency:         time.Millisecond,
		CheckpointInterval: 10 * time.Second,
		ErrorHandling:      ErrorHandling{Policy: PolicyDeadLetter, DeadLetterDir: DefaultDLQDir},
		Indicators:         splitList(ops.DefaultIndicators),
		IndicatorOptions:   IndicatorOptions{EMASeed: "sma", VWAPSession: 24 * time.Hour},
		WindowOptions: WindowOptions{
			Emit: "updates", MaxOpen: ops.DefaultMaxOpenWindowsPerSymbol, MaxBuffered: ops.DefaultMaxBufferedEventsPerSymbol,
			PercentileExactMax: ops.DefaultPercentileExactMax,
		},
		PatternMaxTrades:  ops.DefaultMaxPatternTradesPerSymbol,
		MovementMaxTrades: ops.DefaultMaxMovementTrades,
		Emit:              []string{"all"},
	}
}

// Error handling policies.
const (
	PolicyDeadLetter = "dead_letter"
	PolicyLog        = "log"
)

// Feed defaults, filled in when the feed's key is present.
func defaultSynthetic() *SyntheticSource {
	return &SyntheticSource{Symbols: 100, Rate: 100_000, Seed: 1, FlushEvery: 256}
}
func defaultTCP() *TCPSource {
	return &TCPSource{Format: "auto", LockThread: true, IdleTimeout: feeds.DefaultTCPIdleTimeout}
}
func defaultWS() *WSSource { return &WSSource{StaleAfter: feeds.DefaultWSStaleAfter} }
func defaultWebhook() *WebhookSource {
	return &WebhookSource{Path: feeds.DefaultWebhookPath}
}
func defaultJetStream() *JetStreamSource {
	return &JetStreamSource{URL: "nats://127.0.0.1:4222", Durable: feeds.DefaultJetStreamDurable, AckWait: feeds.DefaultJetStreamAckWait}
}
func defaultPcap() *PcapSource { return &PcapSource{} }

// splitList splits a flag's comma-separated list.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// File returns the name of the file the configuration was read from.
func (c *Config) File() string { return c.file }

// Example is a complete commented configuration: every field with its
// default and a one-line comment (`qstream config example`). It loads.
//
//go:embed example.yaml
var Example string
