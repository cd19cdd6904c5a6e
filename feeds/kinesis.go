package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"qstream/codec"
)

// SourceOffsets is implemented by a Publishers whose engine restored source
// offsets from its WAL (the binary's adapter): SourceOffset returns the
// largest Seq durable for the publisher name (engine.Engine.SourceOffset).
// A feed that numbers its records itself resumes after it.
type SourceOffsets interface {
	SourceOffset(name string) (uint64, bool)
}

// KinesisStart is where a shard without a saved position starts.
type KinesisStart uint8

// Kinesis start positions (the shard iterator types).
const (
	KinesisTrimHorizon   KinesisStart = iota // the oldest record kept (TRIM_HORIZON)
	KinesisLatest                            // only records put from now on (LATEST)
	KinesisAtSequence                        // at StartSequence[shard] (AT_SEQUENCE_NUMBER)
	KinesisAfterSequence                     // after StartSequence[shard] (AFTER_SEQUENCE_NUMBER)
)

// ParseKinesisStart parses trim_horizon, latest, at_sequence_number,
// after_sequence_number (any case).
func ParseKinesisStart(s string) (KinesisStart, error) {
	switch strings.ToUpper(s) {
	case "", "TRIM_HORIZON":
		return KinesisTrimHorizon, nil
	case "LATEST":
		return KinesisLatest, nil
	case "AT_SEQUENCE_NUMBER":
		return KinesisAtSequence, nil
	case "AFTER_SEQUENCE_NUMBER":
		return KinesisAfterSequence, nil
	}
	return 0, fmt.Errorf("%w: start %q is not trim_horizon, latest, at_sequence_number or after_sequence_number", ErrKinesisConfig, s)
}

func (s KinesisStart) iteratorType() types.ShardIteratorType {
	switch s {
	case KinesisLatest:
		return types.ShardIteratorTypeLatest
	case KinesisAtSequence:
		return types.ShardIteratorTypeAtSequenceNumber
	case KinesisAfterSequence:
		return types.ShardIteratorTypeAfterSequenceNumber
	}
	return types.ShardIteratorTypeTrimHorizon
}

// Defaults and bounds of KinesisConfig.
const (
	DefaultKinesisLimit        = 1000
	MaxKinesisLimit            = 10000 // GetRecords' own limit
	DefaultKinesisPollInterval = 250 * time.Millisecond
	DefaultKinesisListInterval = 10 * time.Second
	DefaultKinesisMaxShards    = 64
	DefaultKinesisBarrierWait  = 30 * time.Second
)

// ErrKinesisConfig wraps every configuration error of NewKinesisFeed.
var ErrKinesisConfig = errors.New("kinesis: invalid config")

// KinesisConfig configures a KinesisFeed.
type KinesisConfig struct {
	// Name identifies the feed ("kinesis" if empty); shard S is read by
	// the Publisher "<Name>/<S>", whose Seq is the shard's record count.
	Name string
	// Stream is the stream's name. Required.
	Stream string
	// AWS overrides the configuration chain (region, endpoint, profile).
	AWS AWSOptions
	// Client, if set, is used instead of one built from AWS (tests,
	// benchmarks, a caller with its own configuration).
	Client *kinesis.Client
	// Start is where a shard without a saved position starts (default
	// TRIM_HORIZON). AT_ and AFTER_SEQUENCE_NUMBER take the shard's
	// sequence number from StartSequence; a shard missing there starts at
	// TRIM_HORIZON.
	Start         KinesisStart
	StartSequence map[string]string
	// StateDir holds the feed's position file (kinesis-<stream>.pos, see
	// KinesisFeed). Empty: no file; a restart then resumes from the
	// engine's offsets alone, by counting from TRIM_HORIZON.
	StateDir string
	// Limit bounds the records of one GetRecords call (default 1000, at
	// most 10000).
	Limit int32
	// PollInterval is the wait after a GetRecords that returned nothing
	// (default 250ms; AWS allows 5 GetRecords per second and shard).
	PollInterval time.Duration
	// ListInterval is how often the shards are listed again to find the
	// children of a resharding (default 10s; also after a shard ends).
	ListInterval time.Duration
	// MaxShards bounds the shards read at once (each has a Publisher;
	// default 64).
	MaxShards int
	// Source is stored in Event.Source of every event.
	Source uint16
	// NewParser returns the JSON parser of one shard's goroutine (default
	// codec.NewParser).
	NewParser func(symbols *codec.SymbolTable) JSONParser
	// Backoff spaces retries after throttling (ProvisionedThroughputExceeded,
	// LimitExceeded) and other failed calls; MaxAttempts consecutive
	// failures of one shard end Run (0: retry forever, each wait at most
	// Backoff.Max).
	Backoff Backoff
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// KinesisFeed reads every shard of a Kinesis stream, one goroutine and one
// Publisher per shard, with shard iterators and GetRecords.
//
// # Positions
//
// A shard's records are numbered 1, 2, ... in the order the shard holds
// them, from where the feed first started on it; the number is the event's
// Seq, so the engine's WAL holds, per shard, the number of the last durable
// record (engine.Engine.SourceOffset, through SourceOffsets). After every
// GetRecords batch is durable (Publisher.Barrier) the feed records in its
// position file the batch's last number and sequence number, and whether
// the shard has ended. The file is a hint that may lag (it is written at
// most every 100ms, and a crash can fall between the barrier and the
// write); the WAL's number is the truth. A restart resumes each shard
// AFTER_SEQUENCE_NUMBER of the file's sequence number and skips the
// records up to the WAL's number: nothing durable is read twice, nothing
// is lost. Without a file entry it counts from TRIM_HORIZON (exact while
// the stream has not trimmed the shard's first records).
//
// # Resharding
//
// A shard is read only once its parent and adjacent parent have ended (a
// GetRecords without a next iterator: every record read and durable) or are
// no longer listed (past the retention): a key's records stay in order
// across splits and merges. An ended shard's Publisher is closed (if it
// can be: its source has ended) and the shards are listed again to start
// its children.
//
// # Records
//
// Each record's data is one JSON message (codec.Parser shapes) parsed into
// a reused event; a record that does not parse goes to Publisher.Reject.
// An event without an id of its own gets IDHash = codec.HashID of
// "<shard>/<sequence number>", so the engine's dedup absorbs a record put
// twice by a retrying producer only when it carries its own id.
type KinesisFeed struct {
	cfg KinesisConfig
	log *slog.Logger
	pos *kinesisPositions
	st  kinesisCounters
}

type kinesisCounters struct {
	records, published, rejected, skipped atomic.Uint64
	batches, throttled, expired, errors   atomic.Uint64
	shardsDone, shardsStarted             atomic.Uint64
}

// KinesisStats is a snapshot of a KinesisFeed's counters.
type KinesisStats struct {
	Records       uint64 // records received
	Published     uint64 // events published
	Rejected      uint64 // records that did not parse (dead-letter output)
	Skipped       uint64 // records skipped on resume: already durable
	Batches       uint64 // GetRecords batches made durable
	Throttled     uint64 // calls refused with ProvisionedThroughputExceeded or LimitExceeded
	Expired       uint64 // shard iterators that expired and were renewed
	Errors        uint64 // other failed calls
	ShardsStarted uint64
	ShardsDone    uint64 // shards read to their end (resharding)
}

// NewKinesisFeed validates cfg and applies defaults; it does not connect.
func NewKinesisFeed(cfg KinesisConfig) (*KinesisFeed, error) {
	if cfg.Name == "" {
		cfg.Name = "kinesis"
	}
	if cfg.Stream == "" {
		return nil, fmt.Errorf("%w: Stream is required", ErrKinesisConfig)
	}
	if err := cfg.AWS.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKinesisConfig, err)
	}
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultKinesisLimit
	}
	if cfg.Limit > MaxKinesisLimit {
		return nil, fmt.Errorf("%w: Limit %d above %d", ErrKinesisConfig, cfg.Limit, MaxKinesisLimit)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultKinesisPollInterval
	}
	if cfg.ListInterval <= 0 {
		cfg.ListInterval = DefaultKinesisListInterval
	}
	if cfg.MaxShards <= 0 {
		cfg.MaxShards = DefaultKinesisMaxShards
	}
	if (cfg.Start == KinesisAtSequence || cfg.Start == KinesisAfterSequence) && len(cfg.StartSequence) == 0 {
		return nil, fmt.Errorf("%w: a sequence-number start needs StartSequence", ErrKinesisConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewParser == nil {
		cfg.NewParser = codecParsers(0, cfg.Source)
	}
	f := &KinesisFeed{cfg: cfg, log: cfg.Logger.With("feed", cfg.Name, "stream", cfg.Stream)}
	f.pos = newKinesisPositions(cfg.StateDir, cfg.Stream)
	return f, nil
}

// Name implements Feed.
func (f *KinesisFeed) Name() string { return f.cfg.Name }

// Stats returns a snapshot of the counters.
func (f *KinesisFeed) Stats() KinesisStats {
	s := &f.st
	return KinesisStats{Records: s.records.Load(), Published: s.published.Load(), Rejected: s.rejected.Load(),
		Skipped: s.skipped.Load(), Batches: s.batches.Load(), Throttled: s.throttled.Load(), Expired: s.expired.Load(),
		Errors: s.errors.Load(), ShardsStarted: s.shardsStarted.Load(), ShardsDone: s.shardsDone.Load()}
}

// Positions returns the saved position of every shard: its record count and
// last sequence number, and whether it ended.
func (f *KinesisFeed) Positions() map[string]KinesisPosition { return f.pos.snapshot() }

// NewKinesisClient returns a Kinesis client for o (the configuration chain
// with o's overrides).
func NewKinesisClient(ctx context.Context, o AWSOptions) (*kinesis.Client, error) {
	cfg, err := LoadAWSConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return kinesis.NewFromConfig(cfg, func(k *kinesis.Options) { k.BaseEndpoint = o.BaseEndpoint() }), nil
}

// Run reads the stream until ctx is done (it returns nil), the engine stops,
// or a shard fails for good. Each shard finishes the batch in hand. Call it
// once.
func (f *KinesisFeed) Run(ctx context.Context, pubs Publishers) error {
	if err := f.pos.load(); err != nil {
		return err
	}
	defer f.pos.flush() // the last positions, once every shard returned
	client := f.cfg.Client
	if client == nil {
		var err error
		if client, err = NewKinesisClient(ctx, f.cfg.AWS); err != nil {
			return fmt.Errorf("kinesis: %w", err)
		}
	}
	offsets, _ := pubs.(SourceOffsets)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // before cancel (deferred later, runs first)
	defer cancel()
	ended := make(chan string, f.cfg.MaxShards)
	errs := make(chan error, f.cfg.MaxShards)
	running := map[string]bool{}
	done := map[string]bool{}
	for id, p := range f.pos.snapshot() {
		if p.Done {
			done[id] = true
		}
	}
	tick := time.NewTicker(f.cfg.ListInterval)
	defer tick.Stop()
	rnd := newJitterRand(0)
	failures := 0
	var gate *kinesisStartGate // the first listing's, then nil
	for first := true; ; first = false {
		shards, err := f.listShards(runCtx, client)
		switch {
		case runCtx.Err() != nil:
			return f.firstErr(errs)
		case err != nil:
			failures++
			if isKinesisThrottle(err) {
				f.st.throttled.Add(1)
			} else {
				f.st.errors.Add(1)
			}
			if f.cfg.Backoff.Exhausted(failures) {
				return fmt.Errorf("kinesis: %s: %w after %d list calls: %v", f.cfg.Stream, ErrRetriesExhausted, failures, err)
			}
			f.log.Warn("kinesis: list shards failed", "err", err)
			if sleepCtx(runCtx, f.cfg.Backoff.Delay(failures-1, rnd)) != nil {
				return f.firstErr(errs)
			}
			continue
		}
		failures = 0
		listed := make(map[string]bool, len(shards))
		for _, s := range shards {
			listed[aws.ToString(s.ShardId)] = true
		}
		ready := func(parent *string) bool {
			p := aws.ToString(parent)
			return p == "" || done[p] || !listed[p]
		}
		gate = nil
		if first {
			gate = newKinesisStartGate()
			for _, s := range shards {
				id := aws.ToString(s.ShardId)
				if !done[id] && ready(s.ParentShardId) && ready(s.AdjacentParentShardId) {
					gate.remaining.Add(1)
				}
			}
		}
		for _, s := range shards {
			id := aws.ToString(s.ShardId)
			if running[id] || done[id] || !ready(s.ParentShardId) || !ready(s.AdjacentParentShardId) {
				continue
			}
			if len(running) >= f.cfg.MaxShards {
				return fmt.Errorf("kinesis: %s: more than %d shards to read at once", f.cfg.Stream, f.cfg.MaxShards)
			}
			name := f.cfg.Name + "/" + id
			pub, err := pubs.NewPublisher(name)
			if err != nil {
				return fmt.Errorf("kinesis: publisher %s: %w", name, err)
			}
			var from uint64
			hasFrom := false
			if offsets != nil {
				from, hasFrom = offsets.SourceOffset(name)
			}
			running[id] = true
			f.st.shardsStarted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &kinesisShard{f: f, client: client, id: id, pub: pub, syms: pubs.Symbols(), from: from, hasFrom: hasFrom, gate: gate}
				defer r.arrive()
				if err := r.run(runCtx); err != nil {
					errs <- err
					cancel()
					return
				}
				if r.ended {
					ended <- id
				}
			}()
		}
		select {
		case <-runCtx.Done():
			return f.firstErr(errs)
		case id := <-ended:
			delete(running, id)
			done[id] = true
		case <-tick.C:
		}
	}
}

// kinesisStartGate orders the first publication of the shards of the first
// listing. The engine counts a source in its watermark from the source's
// first event on, so a shard that publishes first moves the watermark to its
// own, and a shard behind it in event time (after a restart, a shard with
// more records per second of event time than another is) would find its
// first records late. So each shard waits until every shard has its first
// record in hand (or has none to publish, or ended, or kinesisStartGateMax
// passed), and then they publish their first record, and flush it (the
// watermark), in order of event time: the one furthest behind first.
type kinesisStartGate struct {
	remaining atomic.Int32
	open      chan struct{}

	mu      sync.Mutex
	firsts  []kinesisFirst
	changed chan struct{} // closed and replaced at each published first
}

type kinesisFirst struct {
	id        string
	tsNs      int64
	published bool
}

const kinesisStartGateMax = 30 * time.Second

func newKinesisStartGate() *kinesisStartGate {
	return &kinesisStartGate{open: make(chan struct{}), changed: make(chan struct{})}
}

// arrive counts one shard ready; the last one opens the gate.
func (g *kinesisStartGate) arrive() {
	if g.remaining.Add(-1) == 0 {
		close(g.open)
	}
}

// arriveWith is arrive for a shard whose first record has event time tsNs.
func (g *kinesisStartGate) arriveWith(id string, tsNs int64) {
	g.mu.Lock()
	g.firsts = append(g.firsts, kinesisFirst{id: id, tsNs: tsNs})
	g.mu.Unlock()
	g.arrive()
}

// waitTurn returns once the gate is open and every shard whose first record
// is earlier (event time, then shard id) has published it, or ctx is done,
// or kinesisStartGateMax passed.
func (g *kinesisStartGate) waitTurn(ctx context.Context, id string, tsNs int64) {
	t := time.NewTimer(kinesisStartGateMax)
	defer t.Stop()
	select {
	case <-g.open:
	case <-ctx.Done():
		return
	case <-t.C:
		return
	}
	for {
		g.mu.Lock()
		ch, wait := g.changed, false
		for _, o := range g.firsts {
			if !o.published && (o.tsNs < tsNs || o.tsNs == tsNs && o.id < id) {
				wait = true
			}
		}
		g.mu.Unlock()
		if !wait {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}

// published records that shard id's first record is published and flushed.
func (g *kinesisStartGate) published(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.firsts {
		if g.firsts[i].id == id {
			g.firsts[i].published = true
		}
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// firstErr returns the first shard failure, if any, once every shard
// goroutine returned; the caller's deferred Wait comes first.
func (f *KinesisFeed) firstErr(errs chan error) error {
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// listShards returns every shard of the stream, open and closed.
func (f *KinesisFeed) listShards(ctx context.Context, c *kinesis.Client) ([]types.Shard, error) {
	var shards []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(f.cfg.Stream)}
	for {
		out, err := c.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: list shards of %s: %w", f.cfg.Stream, err)
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken} // StreamName must not go with a token
	}
}

// isKinesisThrottle reports a call refused for throughput: retry later.
func isKinesisThrottle(err error) bool {
	var pt *types.ProvisionedThroughputExceededException
	var le *types.LimitExceededException
	return errors.As(err, &pt) || errors.As(err, &le)
}

// kinesisShard is the reader of one shard.
type kinesisShard struct {
	f       *KinesisFeed
	client  *kinesis.Client
	id      string
	pub     Publisher
	syms    *codec.SymbolTable
	from    uint64 // the engine's durable record number for the shard
	hasFrom bool
	ended   bool // read to its end (closed by a resharding)
	gate    *kinesisStartGate

	n       uint64 // number of the last record read
	lastSeq string // its sequence number
	skip    uint64 // records still to skip (already durable)
	idBuf   []byte
}

// publishFirst publishes the shard's first record in its turn (see
// kinesisStartGate) and flushes it.
func (r *kinesisShard) publishFirst(ctx context.Context, g *kinesisStartGate, parser JSONParser, rec *types.Record, ev *codec.Event) error {
	ts := int64(math.MaxInt64) // a record that does not parse goes last
	if parser.ParseJSON(rec.Data, ev) == nil {
		ts = ev.TsNs
	}
	g.arriveWith(r.id, ts)
	r.gate = nil
	g.waitTurn(ctx, r.id, ts)
	defer g.published(r.id)
	if err := r.publish(parser, rec, ev); err != nil {
		return err
	}
	if err := r.pub.Flush(); err != nil {
		return fmt.Errorf("kinesis: shard %s: %w", r.id, err)
	}
	return nil
}

// arrive tells the start gate (once) that the shard is ready to publish.
func (r *kinesisShard) arrive() {
	if r.gate != nil {
		r.gate.arrive()
		r.gate = nil
	}
}

// start returns the first shard iterator's input and sets n and skip.
func (r *kinesisShard) start() *kinesis.GetShardIteratorInput {
	f := r.f
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(f.cfg.Stream), ShardId: aws.String(r.id)}
	p, ok := f.pos.get(r.id)
	switch {
	case ok && p.Seq != "":
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(p.Seq)
		r.n, r.lastSeq = p.N, p.Seq
		if r.hasFrom && r.from > p.N {
			r.skip = r.from - p.N
		}
	case r.hasFrom && r.from > 0:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
		r.skip = r.from
		f.log.Warn("kinesis: no saved position for a shard with durable records: counting from TRIM_HORIZON", "shard", r.id, "durable", r.from)
	default:
		in.ShardIteratorType = f.cfg.Start.iteratorType()
		if f.cfg.Start == KinesisAtSequence || f.cfg.Start == KinesisAfterSequence {
			if seq := f.cfg.StartSequence[r.id]; seq != "" {
				in.StartingSequenceNumber = aws.String(seq)
			} else {
				in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
			}
		}
	}
	return in
}

// run reads the shard until ctx is done or the shard ends.
func (r *kinesisShard) run(ctx context.Context) error {
	f := r.f
	parser := f.cfg.NewParser(r.syms)
	first := r.start()
	if r.skip > 0 || r.n > 0 {
		f.log.Info("kinesis: resume", "shard", r.id, "after", r.n, "skip", r.skip)
	}
	iter, err := r.iterator(ctx, first)
	if err != nil || iter == nil {
		return err
	}
	var ev codec.Event
	in := &kinesis.GetRecordsInput{Limit: aws.Int32(f.cfg.Limit)}
	rnd := newJitterRand(0)
	failures := 0
	for ctx.Err() == nil {
		in.ShardIterator = iter
		out, err := r.client.GetRecords(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var exp *types.ExpiredIteratorException
			if errors.As(err, &exp) {
				f.st.expired.Add(1)
				if iter, err = r.iterator(ctx, r.resumeInput(first)); err != nil || iter == nil {
					return err
				}
				continue
			}
			if isKinesisThrottle(err) {
				f.st.throttled.Add(1)
			} else {
				f.st.errors.Add(1)
			}
			failures++
			if f.cfg.Backoff.Exhausted(failures) {
				return fmt.Errorf("kinesis: shard %s: %w after %d calls: %v", r.id, ErrRetriesExhausted, failures, err)
			}
			if !isKinesisThrottle(err) {
				f.log.Warn("kinesis: get records failed", "shard", r.id, "err", err)
			}
			if sleepCtx(ctx, f.cfg.Backoff.Delay(failures-1, rnd)) != nil {
				return nil
			}
			continue
		}
		failures = 0
		published := false
		for i := range out.Records {
			rec := &out.Records[i]
			r.n++
			r.lastSeq = aws.ToString(rec.SequenceNumber)
			f.st.records.Add(1)
			if r.skip > 0 {
				r.skip--
				f.st.skipped.Add(1)
				continue
			}
			if g := r.gate; g != nil {
				if err := r.publishFirst(ctx, g, parser, rec, &ev); err != nil {
					return err
				}
				published = true
				continue
			}
			if err := r.publish(parser, rec, &ev); err != nil {
				return err
			}
			published = true
		}
		if len(out.Records) > 0 {
			if published {
				bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultKinesisBarrierWait)
				err := r.pub.Barrier(bctx)
				cancel()
				if err != nil {
					return fmt.Errorf("kinesis: shard %s: barrier: %w", r.id, err)
				}
			}
			f.st.batches.Add(1)
			f.pos.set(r.id, KinesisPosition{N: r.n, Seq: r.lastSeq}, false)
		}
		iter = out.NextShardIterator
		if iter == nil {
			return r.end()
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			r.arrive() // nothing to publish yet: do not hold the others
			// Caught up: write a position that set left for later.
			if err := f.pos.flush(); err != nil {
				f.log.Warn("kinesis: position file", "err", err)
			}
			if idler, ok := r.pub.(SourceIdler); ok {
				if err := idler.Idle(); err != nil {
					return fmt.Errorf("kinesis: shard %s: %w", r.id, err)
				}
			}
			if sleepCtx(ctx, f.cfg.PollInterval) != nil {
				return nil
			}
		}
	}
	return nil
}

// publish parses one record and publishes it (or rejects it).
func (r *kinesisShard) publish(parser JSONParser, rec *types.Record, ev *codec.Event) error {
	f := r.f
	ev.Seq, ev.IngestNs = 0, 0
	if err := parser.ParseJSON(rec.Data, ev); err != nil {
		r.pub.Reject(rec.Data, codec.ReasonOf(err), Position{Offset: int64(r.n)}, fmt.Errorf("kinesis: shard %s record %s: %w", r.id, r.lastSeq, err))
		f.st.rejected.Add(1)
		return nil
	}
	ev.Seq, ev.Source, ev.IngestNs = r.n, f.cfg.Source, 0
	if ev.IDHash == 0 {
		r.idBuf = append(append(append(r.idBuf[:0], r.id...), '/'), r.lastSeq...)
		ev.IDHash = codec.HashID(r.idBuf)
	}
	if err := r.pub.PublishText(ev, parsedText(parser)); err != nil {
		return fmt.Errorf("kinesis: shard %s: %w", r.id, err)
	}
	f.st.published.Add(1)
	return nil
}

// end records that the shard was read to its end and closes its Publisher.
func (r *kinesisShard) end() error {
	r.ended = true
	r.f.st.shardsDone.Add(1)
	r.f.pos.set(r.id, KinesisPosition{N: r.n, Seq: r.lastSeq}, true)
	if err := r.f.pos.flush(); err != nil {
		r.f.log.Warn("kinesis: position file", "err", err)
	}
	if c, ok := r.pub.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// resumeInput is the iterator after the last record read, or first again
// when none was read since the start.
func (r *kinesisShard) resumeInput(first *kinesis.GetShardIteratorInput) *kinesis.GetShardIteratorInput {
	if r.lastSeq == "" {
		return first
	}
	return &kinesis.GetShardIteratorInput{StreamName: first.StreamName, ShardId: first.ShardId,
		ShardIteratorType: types.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: aws.String(r.lastSeq)}
}

// iterator gets a shard iterator, retrying throttling with backoff. A nil
// iterator with a nil error means ctx ended.
func (r *kinesisShard) iterator(ctx context.Context, in *kinesis.GetShardIteratorInput) (*string, error) {
	f := r.f
	rnd := newJitterRand(0)
	for failures := 1; ; failures++ {
		out, err := r.client.GetShardIterator(ctx, in)
		if err == nil {
			return out.ShardIterator, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if isKinesisThrottle(err) {
			f.st.throttled.Add(1)
		} else {
			f.st.errors.Add(1)
		}
		if f.cfg.Backoff.Exhausted(failures) {
			return nil, fmt.Errorf("kinesis: shard %s: iterator: %w after %d calls: %v", r.id, ErrRetriesExhausted, failures, err)
		}
		f.log.Warn("kinesis: get shard iterator failed", "shard", r.id, "type", in.ShardIteratorType, "err", err)
		if sleepCtx(ctx, f.cfg.Backoff.Delay(failures-1, rnd)) != nil {
			return nil, nil
		}
	}
}
