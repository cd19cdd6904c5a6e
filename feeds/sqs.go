package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"qstream/codec"
)

// Defaults and bounds of SQSConfig.
const (
	DefaultSQSWait        = 20 * time.Second // the longest long poll SQS allows
	DefaultSQSVisibility  = 30 * time.Second
	DefaultSQSBatch       = 10 // the most one ReceiveMessage returns
	MaxSQSPollers         = 64
	DefaultSQSDedupWindow = 1 << 16
)

// ErrSQSConfig wraps every configuration error of NewSQSFeed.
var ErrSQSConfig = errors.New("sqs: invalid config")

// SQSConfig configures an SQSFeed.
type SQSConfig struct {
	// Name identifies the feed ("sqs" if empty); poller i publishes
	// through the Publisher "<Name>/r<i>".
	Name string
	// QueueURL is the queue's URL. Required.
	QueueURL string
	// AWS overrides the configuration chain (region, endpoint, profile).
	AWS AWSOptions
	// Client, if set, is used instead of one built from AWS.
	Client *sqs.Client
	// Wait is the long-polling wait of one ReceiveMessage (1s..20s,
	// whole seconds; default 20s).
	Wait time.Duration
	// Visibility is the visibility timeout asked for received messages
	// (default 30s, whole seconds, at least 2s). While a batch is not yet
	// deleted, its messages' visibility is extended by Visibility every
	// Visibility/2, so a slow batch (backpressure, a slow WAL sync) is not
	// redelivered meanwhile.
	Visibility time.Duration
	// BatchMax is the most messages of one ReceiveMessage (1..10, default
	// 10).
	BatchMax int
	// Pollers is the number of concurrent receivers (1..64, default 1).
	Pollers int
	// Dedup is the window of message ids made durable; nil gives the feed
	// a private window of DedupWindow ids (default 65536).
	Dedup       *IDWindow
	DedupWindow int
	// Source is stored in Event.Source of every event.
	Source uint16
	// NewParser returns the JSON parser of one poller (default
	// codec.NewParser).
	NewParser func(symbols *codec.SymbolTable) JSONParser
	// Backoff spaces retries after failed calls; MaxAttempts consecutive
	// failures end Run.
	Backoff Backoff
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// SQSFeed consumes an SQS queue with long polling.
//
// # Processing and deletes
//
// A poller receives up to BatchMax messages (waiting at most Wait), parses
// and publishes each message body (one JSON message, codec.Parser shapes;
// one that does not parse goes to Publisher.Reject: it is handled, and
// deleted with the batch), calls Publisher.Barrier, and once the events are
// durable deletes the batch (DeleteMessageBatch). Nothing is deleted before
// it is durable in the WAL: after a crash SQS delivers the undeleted
// messages again once their visibility timeout passes.
//
// # Redeliveries
//
// A message's dedup key is codec.HashID of its MessageId, which SQS keeps
// across redeliveries. Keys of durable messages enter the dedup window; a
// received message whose key is there was made durable before (its delete
// was lost, or the process crashed between the barrier and the delete): it
// is deleted without being published again. An event without an id of its
// own gets IDHash = the MessageId's hash, so the engine's dedup (which
// survives restarts in checkpoints) absorbs what a restarted process with
// an empty window publishes again.
type SQSFeed struct {
	cfg   SQSConfig
	log   *slog.Logger
	dedup *IDWindow
	st    sqsCounters

	// beforeDelete, in tests, runs before a durable batch is deleted; an
	// error ends Run without deleting (a crash).
	beforeDelete func(n int) error
}

type sqsCounters struct {
	received, published, rejected, duplicates, redelivered atomic.Uint64
	deleted, batches, extended, deleteErrors, errors       atomic.Uint64
}

// SQSStats is a snapshot of an SQSFeed's counters.
type SQSStats struct {
	Received     uint64 // messages received
	Published    uint64 // events published
	Rejected     uint64 // messages that did not parse (dead-letter output, deleted)
	Duplicates   uint64 // messages whose id was in the dedup window (deleted, not published)
	Redelivered  uint64 // messages received more than once (ApproximateReceiveCount > 1)
	Deleted      uint64 // messages deleted after their batch was durable
	Batches      uint64 // batches made durable and deleted
	Extended     uint64 // visibility extensions
	DeleteErrors uint64
	Errors       uint64 // failed receives
}

// NewSQSFeed validates cfg and applies defaults; it does not connect.
func NewSQSFeed(cfg SQSConfig) (*SQSFeed, error) {
	if cfg.Name == "" {
		cfg.Name = "sqs"
	}
	if cfg.QueueURL == "" {
		return nil, fmt.Errorf("%w: QueueURL is required", ErrSQSConfig)
	}
	if err := cfg.AWS.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSQSConfig, err)
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultSQSWait
	}
	if cfg.Wait < time.Second || cfg.Wait > 20*time.Second {
		return nil, fmt.Errorf("%w: Wait %s outside 1s..20s", ErrSQSConfig, cfg.Wait)
	}
	if cfg.Visibility == 0 {
		cfg.Visibility = DefaultSQSVisibility
	}
	if cfg.Visibility < 2*time.Second || cfg.Visibility > 12*time.Hour {
		return nil, fmt.Errorf("%w: Visibility %s outside 2s..12h", ErrSQSConfig, cfg.Visibility)
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = DefaultSQSBatch
	}
	if cfg.BatchMax < 1 || cfg.BatchMax > 10 {
		return nil, fmt.Errorf("%w: BatchMax %d outside 1..10", ErrSQSConfig, cfg.BatchMax)
	}
	if cfg.Pollers == 0 {
		cfg.Pollers = 1
	}
	if cfg.Pollers < 1 || cfg.Pollers > MaxSQSPollers {
		return nil, fmt.Errorf("%w: Pollers %d outside 1..%d", ErrSQSConfig, cfg.Pollers, MaxSQSPollers)
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = DefaultSQSDedupWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewParser == nil {
		cfg.NewParser = codecParsers(0, cfg.Source)
	}
	f := &SQSFeed{cfg: cfg, log: cfg.Logger.With("feed", cfg.Name, "queue", cfg.QueueURL), dedup: cfg.Dedup}
	if f.dedup == nil {
		f.dedup = NewIDWindow(cfg.DedupWindow)
	}
	return f, nil
}

// Name implements Feed.
func (f *SQSFeed) Name() string { return f.cfg.Name }

// Stats returns a snapshot of the counters.
func (f *SQSFeed) Stats() SQSStats {
	s := &f.st
	return SQSStats{Received: s.received.Load(), Published: s.published.Load(), Rejected: s.rejected.Load(),
		Duplicates: s.duplicates.Load(), Redelivered: s.redelivered.Load(), Deleted: s.deleted.Load(), Batches: s.batches.Load(),
		Extended: s.extended.Load(), DeleteErrors: s.deleteErrors.Load(), Errors: s.errors.Load()}
}

// NewSQSClient returns an SQS client for o (the configuration chain with o's
// overrides).
func NewSQSClient(ctx context.Context, o AWSOptions) (*sqs.Client, error) {
	cfg, err := LoadAWSConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return sqs.NewFromConfig(cfg, func(s *sqs.Options) { s.BaseEndpoint = o.BaseEndpoint() }), nil
}

// Run consumes until ctx is done (each poller finishes the batch in hand
// and Run returns nil), the engine stops, or a poller fails for good. Call
// it once.
func (f *SQSFeed) Run(ctx context.Context, pubs Publishers) error {
	client := f.cfg.Client
	if client == nil {
		var err error
		if client, err = NewSQSClient(ctx, f.cfg.AWS); err != nil {
			return fmt.Errorf("sqs: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, f.cfg.Pollers)
	var wg sync.WaitGroup
	for i := range f.cfg.Pollers {
		pub, err := pubs.NewPublisher(f.cfg.Name + "/r" + strconv.Itoa(i))
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("sqs: publisher: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.poll(runCtx, client, pub, pubs.Symbols()); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err, ok := <-errs; ok {
		return err
	}
	return nil
}

// sqsBatch is what a poller holds of one received batch.
type sqsBatch struct {
	handles []string // receipt handles of every message (deleted together)
	ids     []string // their message ids (DeleteMessageBatch entry ids)
	keys    []uint64 // dedup keys of the messages published or rejected
}

func (f *SQSFeed) poll(ctx context.Context, client *sqs.Client, pub Publisher, syms *codec.SymbolTable) error {
	parser := f.cfg.NewParser(syms)
	var ev codec.Event
	b := &sqsBatch{}
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(f.cfg.QueueURL),
		MaxNumberOfMessages:         int32(f.cfg.BatchMax),
		WaitTimeSeconds:             int32(f.cfg.Wait / time.Second),
		VisibilityTimeout:           int32(f.cfg.Visibility / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	}
	rnd := newJitterRand(0)
	failures := 0
	for ctx.Err() == nil {
		out, err := client.ReceiveMessage(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.st.errors.Add(1)
			failures++
			if f.cfg.Backoff.Exhausted(failures) {
				return fmt.Errorf("sqs: %w after %d receives: %v", ErrRetriesExhausted, failures, err)
			}
			f.log.Warn("sqs: receive failed", "err", err)
			if sleepCtx(ctx, f.cfg.Backoff.Delay(failures-1, rnd)) != nil {
				return nil
			}
			continue
		}
		failures = 0
		if len(out.Messages) == 0 {
			if idler, ok := pub.(SourceIdler); ok {
				if err := idler.Idle(); err != nil {
					return fmt.Errorf("sqs: %w", err)
				}
			}
			continue
		}
		b.handles, b.ids, b.keys = b.handles[:0], b.ids[:0], b.keys[:0]
		for i := range out.Messages {
			m := &out.Messages[i]
			b.handles = append(b.handles, aws.ToString(m.ReceiptHandle))
			b.ids = append(b.ids, strconv.Itoa(i))
		}
		stopExtend := f.extendVisibility(ctx, client, b.handles)
		err = f.process(ctx, pub, parser, out.Messages, b, &ev)
		if err == nil {
			err = f.commit(ctx, client, pub, b)
		}
		stopExtend()
		if err != nil {
			return err
		}
	}
	return nil
}

// process publishes (or rejects, or skips as duplicates) a batch's messages.
func (f *SQSFeed) process(ctx context.Context, pub Publisher, parser JSONParser, msgs []types.Message, b *sqsBatch, ev *codec.Event) error {
	for i := range msgs {
		m := &msgs[i]
		f.st.received.Add(1)
		if n, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"]); n > 1 {
			f.st.redelivered.Add(1)
		}
		id := aws.ToString(m.MessageId)
		key := codec.HashID([]byte(id))
		if key == 0 {
			key = 1
		}
		if f.dedup.Contains(key) {
			f.st.duplicates.Add(1)
			continue
		}
		b.keys = append(b.keys, key)
		body := []byte(aws.ToString(m.Body))
		ev.Seq, ev.IngestNs = 0, 0
		if err := parser.ParseJSON(body, ev); err != nil {
			pub.Reject(body, codec.ReasonOf(err), Position{Offset: -1}, fmt.Errorf("sqs: message %s: %w", id, err))
			f.st.rejected.Add(1)
			continue
		}
		ev.Source, ev.IngestNs = f.cfg.Source, 0
		if ev.IDHash == 0 {
			ev.IDHash = key
		}
		if err := pub.PublishText(ev, parsedText(parser)); err != nil {
			return fmt.Errorf("sqs: %w", err)
		}
		f.st.published.Add(1)
	}
	return nil
}

// commit makes a batch durable and deletes its messages. The wait is bounded
// (by the visibility timeout, which is extended meanwhile, times 4) but not
// cut short by ctx, so a stopping feed finishes the batch in hand.
func (f *SQSFeed) commit(ctx context.Context, client *sqs.Client, pub Publisher, b *sqsBatch) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*f.cfg.Visibility)
	defer cancel()
	if len(b.keys) > 0 {
		if err := pub.Barrier(cctx); err != nil {
			return fmt.Errorf("sqs: barrier: %w", err)
		}
		for _, k := range b.keys {
			f.dedup.Add(k)
		}
	}
	if f.beforeDelete != nil {
		if err := f.beforeDelete(len(b.handles)); err != nil {
			return err
		}
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(b.handles))
	for i := range b.handles {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(b.ids[i]), ReceiptHandle: aws.String(b.handles[i])}
	}
	out, err := client.DeleteMessageBatch(cctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(f.cfg.QueueURL), Entries: entries})
	// A failed delete is not fatal: SQS delivers the message again and the
	// dedup window (or the engine's dedup) absorbs it.
	switch {
	case err != nil:
		f.st.deleteErrors.Add(uint64(len(entries)))
		f.log.Warn("sqs: delete failed", "messages", len(entries), "err", err)
	default:
		f.st.deleted.Add(uint64(len(out.Successful)))
		if len(out.Failed) > 0 {
			f.st.deleteErrors.Add(uint64(len(out.Failed)))
			f.log.Warn("sqs: delete failed", "messages", len(out.Failed), "first", aws.ToString(out.Failed[0].Message))
		}
	}
	f.st.batches.Add(1)
	return nil
}

// extendVisibility extends the visibility of the batch's messages every
// Visibility/2 until the returned stop is called (which waits for it).
func (f *SQSFeed) extendVisibility(ctx context.Context, client *sqs.Client, handles []string) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	hs := append([]string(nil), handles...)
	go func() {
		defer close(exited)
		t := time.NewTicker(f.cfg.Visibility / 2)
		defer t.Stop()
		ectx := context.WithoutCancel(ctx)
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for _, h := range hs {
				cctx, cancel := context.WithTimeout(ectx, f.cfg.Visibility/2)
				_, err := client.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(f.cfg.QueueURL),
					ReceiptHandle: aws.String(h), VisibilityTimeout: int32(f.cfg.Visibility / time.Second)})
				cancel()
				if err != nil {
					f.log.Warn("sqs: visibility extension failed", "err", err)
					continue
				}
				f.st.extended.Add(1)
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
