package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qstream/codec"
)

// Partitioning of a JetStream stream by symbol. A message about symbol S is
// published on "<prefix>.<p>" with p = JetStreamPartition(S, P): the 64-bit
// FNV-1a hash of the symbol's bytes (codec.HashID) modulo P. The hash is
// part of the contract between publishers and engines: it must never change
// for a deployed stream.

// JetStreamPartition returns the partition of symbol among partitions.
func JetStreamPartition(symbol []byte, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	return int(codec.HashID(symbol) % uint64(partitions))
}

// JetStreamSubject returns the subject of a partition: "<prefix>.<p>".
func JetStreamSubject(prefix string, partition int) string {
	return prefix + "." + strconv.Itoa(partition)
}

// AppendJetStreamSubject appends the subject for symbol to dst, without
// allocating when dst has room: what a publisher calls per message.
func AppendJetStreamSubject(dst []byte, prefix string, symbol []byte, partitions int) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, int64(JetStreamPartition(symbol, partitions)), 10)
}

// EnsureJetStreamStream creates (or updates) a file-backed stream named name
// over the subjects "<prefix>.*", with a two-minute window in which
// JetStream drops a message whose Nats-Msg-Id it has already stored
// (publisher retries).
func EnsureJetStreamStream(ctx context.Context, js jetstream.JetStream, name, prefix string) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{prefix + ".*"},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", name, err)
	}
	return s, nil
}

// JetStreamFormat is the payload format of the stream's messages.
type JetStreamFormat uint8

// JetStream payload formats.
const (
	JetStreamJSON   JetStreamFormat = iota // one JSON message (codec.Parser shapes)
	JetStreamFrames                        // one codec binary frame
)

// Defaults of JetStreamConfig.
const (
	DefaultJetStreamDurable       = "qstream"
	DefaultJetStreamBatchMax      = 256
	DefaultJetStreamFetchWait     = 500 * time.Millisecond
	DefaultJetStreamAckWait       = 30 * time.Second
	DefaultJetStreamMaxAckPending = 1024
	DefaultJetStreamMaxDeliver    = 20
	DefaultJetStreamDedupWindow   = 1 << 16
	MaxJetStreamPartitions        = 4096
)

// ErrJetStreamConfig wraps every configuration error of NewJetStreamFeed.
var ErrJetStreamConfig = errors.New("jetstream: invalid config")

// JetStreamConfig configures a JetStreamFeed.
type JetStreamConfig struct {
	// Name identifies the feed ("jetstream" if empty); the Publisher of
	// partition p is named "<Name>/p<p>".
	Name string
	// URL of the NATS server (default nats.DefaultURL, 127.0.0.1:4222).
	URL string
	// NATSOptions are passed to nats.Connect (credentials, TLS, name).
	NATSOptions []nats.Option
	// Stream is the JetStream stream, which must exist (see
	// EnsureJetStreamStream). Required.
	Stream string
	// SubjectPrefix: partition p is the subject "<SubjectPrefix>.<p>".
	// Required.
	SubjectPrefix string
	// Partitions is the stream's partition count P (1..4096).
	Partitions int
	// Owned lists the partitions this engine instance consumes, each in
	// [0, P). Instances of a deployment own disjoint sets that cover all.
	Owned []int
	// Durable is the base name of the durable consumers: partition p is
	// consumed by "<Durable>-p<p>" (default "qstream"). The acknowledged
	// position belongs to the partition, so a partition moved to another
	// instance resumes where it was acknowledged.
	Durable string
	// Format of the payloads (default JetStreamJSON).
	Format JetStreamFormat
	// BatchMax bounds the messages of one fetch (default 256, at most
	// MaxAckPending).
	BatchMax int
	// FetchWait bounds how long a fetch waits for messages (default 500ms).
	FetchWait time.Duration
	// AckWait is how long the server waits for an ack before it redelivers
	// (default 30s); MaxAckPending bounds the unacknowledged messages per
	// consumer (default 1024); MaxDeliver bounds deliveries of one message
	// (default 20; then the server gives up on it).
	AckWait       time.Duration
	MaxAckPending int
	MaxDeliver    int
	// Dedup is the window of processed message ids; nil gives the feed a
	// private window of DedupWindow ids (default 65536). Share one between
	// the feed instances of an engine so that a redelivery to a new instance
	// is recognised.
	Dedup       *IDWindow
	DedupWindow int
	// Source is stored in Event.Source of every event.
	Source uint16
	// NewParser returns the JSON parser of one partition's goroutine. Nil
	// means codec.NewParser.
	NewParser func(symbols *codec.SymbolTable) JSONParser
	// Backoff spaces retries after a failed fetch; MaxAttempts consecutive
	// failures end Run.
	Backoff Backoff
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ordered consumes the one Owned partition with an ordered consumer
	// (no durable consumer, no acks) from stream sequence StartSeq (1 when
	// 0), strictly in stream order: what a member of a scale-out group
	// (package cluster) does, whose acknowledged position is the floor of
	// the partition's checkpoint rather than a consumer's ack floor.
	Ordered  bool
	StartSeq uint64
}

// JetStreamFeed consumes the owned partitions of a JetStream stream with one
// durable pull consumer per partition, each on its own goroutine with its
// own Publisher.
//
// # Consumers
//
// Partition p has the durable consumer "<Durable>-p<p>" with FilterSubject
// "<prefix>.<p>", DeliverAll, AckPolicy AckExplicit, AckWait, MaxAckPending
// and MaxDeliver as configured. One consumer per partition (rather than one per
// instance with FilterSubjects) works with nats-server before 2.10 and
// keeps the acknowledged position with the partition when ownership moves.
// Two engine processes that own disjoint halves of the partitions together
// consume every message; a killed one restarts from its consumers' ack
// floors.
//
// # Processing and acks
//
// A goroutine fetches up to BatchMax messages (waiting at most FetchWait),
// parses and publishes each (a message that does not parse goes to
// Publisher.Reject: it is handled, not retried), then calls
// Publisher.Barrier, and once the events are durable acknowledges every
// message of the batch: a plain ack for each and a double ack (one round
// trip, which also confirms the earlier acks of the same connection) for the
// last. If anything fails before the acks, nothing is acknowledged and the
// server redelivers after AckWait.
//
// The consumers use AckExplicit, not the cheaper AckAll: after a crash the
// messages the dead instance held stay pending until AckWait, and the next
// instance fetches newer ones first; its AckAll would acknowledge the old
// ones unprocessed (TestJetStreamRedeliveryAfterCrash catches exactly that).
//
// # Redeliveries
//
// A message's id is its Nats-Msg-Id header (codec.HashID of it), else the
// event's own id (Event.IDHash), else its stream sequence. Ids of messages
// made durable enter the dedup window; a message whose id is in the window
// is acknowledged without being published again (counted in Duplicates).
// Redeliveries (NumDelivered > 1) are counted. An event without its own id
// gets IDHash from Nats-Msg-Id, so the engine's dedup (issue #5) can absorb
// what a restarted instance with an empty window re-publishes. Event.Seq is
// the stream sequence.
type JetStreamFeed struct {
	cfg JetStreamConfig
	log *slog.Logger

	dedup *IDWindow
	parts []jsPartition
	st    jsCounters

	// beforeAck, in tests, runs before a batch is acknowledged; an error
	// ends Run without acking (a crash).
	beforeAck func(partition, n int) error
}

type jsPartition struct {
	p        int
	subject  string
	durable  string
	ackedSeq atomic.Uint64 // stream sequence of the last acknowledged message
}

type jsCounters struct {
	fetched, published, rejected, redelivered, duplicates atomic.Uint64
	acked, batches, ackErrors, fetchErrors                atomic.Uint64
}

// JetStreamStats is a snapshot of a JetStreamFeed's counters.
type JetStreamStats struct {
	Fetched     uint64 // messages received
	Published   uint64 // events published
	Rejected    uint64 // messages that did not parse (acknowledged, in the dead-letter output)
	Redelivered uint64 // messages delivered more than once
	Duplicates  uint64 // messages skipped because their id was in the dedup window
	Acked       uint64 // messages acknowledged (after their batch was durable)
	Batches     uint64 // batches made durable and acknowledged
	AckErrors   uint64
	FetchErrors uint64
	// AckedSeq is, per owned partition, the highest stream sequence this
	// feed has acknowledged (0 if none).
	AckedSeq map[int]uint64
}

// NewJetStreamFeed validates cfg and applies defaults.
func NewJetStreamFeed(cfg JetStreamConfig) (*JetStreamFeed, error) {
	if cfg.Name == "" {
		cfg.Name = "jetstream"
	}
	if cfg.URL == "" {
		cfg.URL = nats.DefaultURL
	}
	if cfg.Stream == "" || cfg.SubjectPrefix == "" {
		return nil, fmt.Errorf("%w: Stream and SubjectPrefix are required", ErrJetStreamConfig)
	}
	if cfg.Partitions < 1 || cfg.Partitions > MaxJetStreamPartitions {
		return nil, fmt.Errorf("%w: Partitions %d outside 1..%d", ErrJetStreamConfig, cfg.Partitions, MaxJetStreamPartitions)
	}
	if len(cfg.Owned) == 0 {
		return nil, fmt.Errorf("%w: Owned is empty", ErrJetStreamConfig)
	}
	if cfg.Ordered && len(cfg.Owned) != 1 {
		return nil, fmt.Errorf("%w: Ordered consumes one partition, not %d", ErrJetStreamConfig, len(cfg.Owned))
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultJetStreamDurable
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = DefaultJetStreamMaxAckPending
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = DefaultJetStreamBatchMax
	}
	cfg.BatchMax = min(cfg.BatchMax, cfg.MaxAckPending)
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = DefaultJetStreamFetchWait
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultJetStreamAckWait
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = DefaultJetStreamMaxDeliver
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = DefaultJetStreamDedupWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewParser == nil {
		cfg.NewParser = codecParsers(0, cfg.Source)
	}
	f := &JetStreamFeed{cfg: cfg, log: cfg.Logger.With("feed", cfg.Name, "stream", cfg.Stream), dedup: cfg.Dedup}
	if f.dedup == nil {
		f.dedup = NewIDWindow(cfg.DedupWindow)
	}
	seen := make(map[int]bool, len(cfg.Owned))
	f.parts = make([]jsPartition, len(cfg.Owned))
	for i, p := range cfg.Owned {
		if p < 0 || p >= cfg.Partitions || seen[p] {
			return nil, fmt.Errorf("%w: owned partition %d invalid or repeated", ErrJetStreamConfig, p)
		}
		seen[p] = true
		f.parts[i].p = p
		f.parts[i].subject = JetStreamSubject(cfg.SubjectPrefix, p)
		f.parts[i].durable = cfg.Durable + "-p" + strconv.Itoa(p)
	}
	return f, nil
}

// Name implements Feed.
func (f *JetStreamFeed) Name() string { return f.cfg.Name }

// Stats returns a snapshot of the counters.
func (f *JetStreamFeed) Stats() JetStreamStats {
	s := &f.st
	st := JetStreamStats{
		Fetched: s.fetched.Load(), Published: s.published.Load(), Rejected: s.rejected.Load(),
		Redelivered: s.redelivered.Load(), Duplicates: s.duplicates.Load(), Acked: s.acked.Load(), Batches: s.batches.Load(),
		AckErrors: s.ackErrors.Load(), FetchErrors: s.fetchErrors.Load(),
		AckedSeq: make(map[int]uint64, len(f.parts)),
	}
	for i := range f.parts {
		st.AckedSeq[f.parts[i].p] = f.parts[i].ackedSeq.Load()
	}
	return st
}

// Run connects, sets up the consumers and consumes until ctx is done (it
// then finishes the batch in hand and returns nil), the engine stops, or a
// partition fails for good; the connection is closed on return, and
// anything not acknowledged is redelivered by the server. Call it once.
func (f *JetStreamFeed) Run(ctx context.Context, pubs Publishers) error {
	nc, err := nats.Connect(f.cfg.URL, f.cfg.NATSOptions...)
	if err != nil {
		return fmt.Errorf("jetstream: connect %s: %w", f.cfg.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if f.cfg.Ordered {
		return f.runOrdered(ctx, js, pubs)
	}
	consumers := make([]jetstream.Consumer, len(f.parts))
	for i := range f.parts {
		part := &f.parts[i]
		c, err := js.CreateOrUpdateConsumer(ctx, f.cfg.Stream, jetstream.ConsumerConfig{
			Durable:       part.durable,
			FilterSubject: part.subject,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       f.cfg.AckWait,
			MaxAckPending: f.cfg.MaxAckPending,
			MaxDeliver:    f.cfg.MaxDeliver,
		})
		if err != nil {
			return fmt.Errorf("jetstream: consumer %s on %s: %w", part.durable, f.cfg.Stream, err)
		}
		consumers[i] = c
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(f.parts))
	var wg sync.WaitGroup
	for i := range f.parts {
		pub, err := pubs.NewPublisher(f.cfg.Name + "/p" + strconv.Itoa(f.parts[i].p))
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("jetstream: publisher: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.consume(runCtx, &f.parts[i], consumers[i], pub, pubs.Symbols()); err != nil {
				errs <- err
				cancel() // one partition failing stops the feed: the engine decides
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err, ok := <-errs; ok {
		return err // the first failure; the others followed from the cancel
	}
	return nil
}

// consume is the loop of one partition.
func (f *JetStreamFeed) consume(ctx context.Context, part *jsPartition, c jetstream.Consumer, pub Publisher, syms *codec.SymbolTable) error {
	var parser JSONParser
	if f.cfg.Format == JetStreamJSON {
		parser = f.cfg.NewParser(syms)
	}
	keys := make([]uint64, 0, f.cfg.BatchMax)
	msgs := make([]jetstream.Msg, 0, f.cfg.BatchMax)
	var ev codec.Event
	rnd := newJitterRand(0)
	failures := 0
	for ctx.Err() == nil {
		batch, err := c.Fetch(f.cfg.BatchMax, jetstream.FetchMaxWait(f.cfg.FetchWait))
		if err != nil {
			if stop, err := f.failed(ctx, part.durable, &failures, rnd, err); stop {
				return err
			}
			continue
		}
		failures = 0
		keys, msgs = keys[:0], msgs[:0]
		var lastSeq uint64
		n := 0
		for msg := range batch.Messages() {
			n++
			f.st.fetched.Add(1)
			meta, err := msg.Metadata()
			if err != nil {
				// Not a JetStream message: nothing to ack or dedup.
				pub.Reject(msg.Data(), codec.ReasonMalformed, Position{Offset: -1}, fmt.Errorf("jetstream: metadata: %w", err))
				f.st.rejected.Add(1)
				continue
			}
			if meta.NumDelivered > 1 {
				f.st.redelivered.Add(1)
			}
			msgs = append(msgs, msg)
			lastSeq = max(lastSeq, meta.Sequence.Stream)
			key, perr := f.decode(msg, meta, parser, &ev)
			if f.dedup.Contains(key) {
				f.st.duplicates.Add(1)
				continue
			}
			keys = append(keys, key)
			if _, err := f.hand(pub, msg, meta, perr, parser, &ev); err != nil {
				return fmt.Errorf("jetstream: %s: %w", part.durable, err)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			f.st.fetchErrors.Add(1)
			f.log.Warn("jetstream: batch ended with an error", "consumer", part.durable, "messages", n, "err", err)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := f.commit(ctx, part, pub, msgs, lastSeq, keys); err != nil {
			return err
		}
	}
	return nil
}

// hand publishes the decoded ev (with its text), or rejects msg when perr
// says it did not parse; it reports whether it published.
func (f *JetStreamFeed) hand(pub Publisher, msg jetstream.Msg, meta *jetstream.MsgMetadata, perr error, parser JSONParser, ev *codec.Event) (bool, error) {
	if perr != nil {
		pub.Reject(msg.Data(), codec.ReasonOf(perr), Position{Offset: int64(meta.Sequence.Stream)}, perr)
		f.st.rejected.Add(1)
		return false, nil
	}
	var text []byte
	if f.cfg.Format != JetStreamFrames {
		text = parsedText(parser)
	}
	if err := pub.PublishText(ev, text); err != nil {
		return false, err
	}
	f.st.published.Add(1)
	return true, nil
}

// failed counts a failed fetch of what and backs off; stop says the loop
// ends (ctx done: nil; the retries exhausted: the error).
func (f *JetStreamFeed) failed(ctx context.Context, what string, failures *int, rnd *rand.Rand, err error) (bool, error) {
	if ctx.Err() != nil {
		return true, nil
	}
	f.st.fetchErrors.Add(1)
	*failures++
	if f.cfg.Backoff.Exhausted(*failures) {
		return true, fmt.Errorf("jetstream: %s: %w after %d fetches: %v", what, ErrRetriesExhausted, *failures, err)
	}
	f.log.Warn("jetstream: fetch failed", "consumer", what, "err", err)
	if sleepCtx(ctx, f.cfg.Backoff.Delay(*failures-1, rnd)) != nil {
		return true, nil
	}
	return false, nil
}

// decode parses msg into ev and returns its dedup key (see JetStreamFeed).
func (f *JetStreamFeed) decode(msg jetstream.Msg, meta *jetstream.MsgMetadata, parser JSONParser, ev *codec.Event) (uint64, error) {
	var idHash uint64
	if h := msg.Headers(); h != nil {
		if id := h.Get(jetstream.MsgIDHeader); id != "" {
			idHash = codec.HashID([]byte(id))
		}
	}
	var err error
	if f.cfg.Format == JetStreamFrames {
		err = decodeCodecFrame(msg.Data(), ev)
	} else {
		ev.Seq, ev.IngestNs = 0, 0
		err = parser.ParseJSON(msg.Data(), ev)
	}
	if err == nil {
		ev.Seq, ev.Source, ev.IngestNs = meta.Sequence.Stream, f.cfg.Source, 0
		if ev.IDHash == 0 {
			ev.IDHash = idHash
		}
	}
	switch {
	case idHash != 0:
		return idHash, err
	case err == nil && ev.IDHash != 0:
		return ev.IDHash, nil
	}
	return codec.Mix64(meta.Sequence.Stream) | 1, err
}

// commit makes a batch durable and acknowledges its messages. The wait is
// bounded but not cut short by ctx, so a stopping feed finishes the batch in
// hand.
func (f *JetStreamFeed) commit(ctx context.Context, part *jsPartition, pub Publisher, msgs []jetstream.Msg, lastSeq uint64, keys []uint64) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.AckWait)
	defer cancel()
	if err := pub.Barrier(cctx); err != nil {
		return fmt.Errorf("jetstream: %s: barrier: %w", part.durable, err)
	}
	for _, k := range keys {
		f.dedup.Add(k)
	}
	if f.beforeAck != nil {
		if err := f.beforeAck(part.p, len(keys)); err != nil {
			return err
		}
	}
	// Acks failing is not fatal: the server redelivers and the window
	// absorbs it.
	last := len(msgs) - 1
	for _, m := range msgs[:last] {
		if err := m.Ack(); err != nil {
			f.st.ackErrors.Add(1)
		}
	}
	if err := msgs[last].DoubleAck(cctx); err != nil {
		f.st.ackErrors.Add(1)
		f.log.Warn("jetstream: ack failed", "consumer", part.durable, "err", err)
		return nil
	}
	if lastSeq > part.ackedSeq.Load() {
		part.ackedSeq.Store(lastSeq)
	}
	f.st.acked.Add(uint64(len(msgs)))
	f.st.batches.Add(1)
	return nil
}

// runOrdered consumes the one owned partition from StartSeq with an ordered
// consumer: every message once, in stream order, no acks (the position that
// matters is the Publisher's offset, Event.Seq = the stream sequence, which
// the engine's checkpoints record). It pulls through one long-lived message
// iterator (an ordered consumer's Fetch recreates the server's consumer at
// every call, a replicated write on a cluster each time), read by a
// goroutine of its own with blocking Next calls: nats.go watches the
// consumer's heartbeats only inside Next, and recreates a consumer whose
// server died only when a heartbeat is missed there (short Next timeouts
// never let that happen: a partition stalled for good after its consumer's
// server was killed). What it publishes becomes visible once no message is
// waiting, or every BatchMax messages.
func (f *JetStreamFeed) runOrdered(ctx context.Context, js jetstream.JetStream, pubs Publishers) error {
	part := &f.parts[0]
	start := max(f.cfg.StartSeq, 1)
	c, err := js.OrderedConsumer(ctx, f.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{part.subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return fmt.Errorf("jetstream: ordered consumer of %s from %d: %w", part.subject, start, err)
	}
	// Heartbeats every second: a consumer whose server died is noticed
	// (two missed) and recreated from the last sequence within seconds.
	it, err := c.Messages(jetstream.PullMaxMessages(f.cfg.BatchMax), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: ordered consumer of %s: %w", part.subject, err)
	}
	pub, err := pubs.NewPublisher(f.cfg.Name + "/p" + strconv.Itoa(part.p))
	if err != nil {
		it.Stop()
		return fmt.Errorf("jetstream: publisher: %w", err)
	}
	var parser JSONParser
	if f.cfg.Format == JetStreamJSON {
		parser = f.cfg.NewParser(pubs.Symbols())
	}
	rctx, cancel := context.WithCancel(ctx)
	msgs := make(chan jetstream.Msg, f.cfg.BatchMax) // bounded: the reader waits when the engine does
	readErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		rnd := newJitterRand(0)
		failures := 0
		for {
			m, err := it.Next()
			if err != nil {
				if rctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if stop, err := f.failed(rctx, part.subject, &failures, rnd, err); stop {
					readErr <- err
					return
				}
				continue
			}
			failures = 0
			select {
			case msgs <- m:
			case <-rctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		it.Stop() // ends the reader's Next
		for range msgs {
		}
	}()
	var ev codec.Event
	pending := 0
	for {
		var msg jetstream.Msg
		var ok bool
		if pending > 0 {
			select {
			case msg, ok = <-msgs:
			default: // nothing waiting: make what was published visible
				if err := pub.Flush(); err != nil {
					return fmt.Errorf("jetstream: %s: %w", part.subject, err)
				}
				f.st.batches.Add(1)
				pending = 0
				continue
			}
		} else {
			select {
			case msg, ok = <-msgs:
			case <-ctx.Done():
				return nil
			}
		}
		if !ok {
			select {
			case err := <-readErr:
				return err
			default:
				return nil
			}
		}
		f.st.fetched.Add(1)
		meta, err := msg.Metadata()
		if err != nil {
			pub.Reject(msg.Data(), codec.ReasonMalformed, Position{Offset: -1}, fmt.Errorf("jetstream: metadata: %w", err))
			f.st.rejected.Add(1)
			continue
		}
		_, perr := f.decode(msg, meta, parser, &ev)
		published, err := f.hand(pub, msg, meta, perr, parser, &ev)
		if err != nil {
			return fmt.Errorf("jetstream: %s: %w", part.subject, err)
		}
		if published {
			pending++
		}
		part.ackedSeq.Store(meta.Sequence.Stream)
		if pending >= f.cfg.BatchMax {
			if err := pub.Flush(); err != nil {
				return fmt.Errorf("jetstream: %s: %w", part.subject, err)
			}
			f.st.batches.Add(1)
			pending = 0
		}
	}
}
