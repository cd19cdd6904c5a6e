package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"

	"qstream/codec"
	"qstream/feeds"
	"qstream/ops"
)

// Bounds of the sns:// sink.
const (
	snsBatchMax         = 10        // entries of one PublishBatch (SNS's limit)
	snsBatchBytesMax    = 256 << 10 // payload of one PublishBatch (SNS's limit)
	snsMessageBytesMax  = 256 << 10 // one message, attributes included
	DefaultSNSTimeout   = 10 * time.Second
	snsTopicNameMax     = 256
	snsAttrSymbol       = "symbol"
	snsAttrKind         = "kind"
	snsAttrKey          = "key"
	snsFIFOSuffix       = ".fifo"
	snsNoSymbolGroupKey = "_"
)

// SNSWriter publishes outputs to Amazon SNS: one topic per output kind,
// "<prefix>-<kind>" (kind: indicators, windows, patterns, news, events,
// movements; Channel), the JSON line as the message, and the message
// attributes symbol, kind and key (the output key in decimal: consumers
// de-duplicate on it; a redelivered output carries the same key).
//
//	sns://PREFIX[?region=R&endpoint=URL&profile=P&fifo=true&create=false&arn_prefix=arn:aws:sns:R:ACCOUNT:&timeout=10s]
//
// Region, endpoint and profile override the standard AWS configuration
// chain (credentials always come from the chain). The topics are created
// at Open (CreateTopic is idempotent) unless create=false, which needs
// arn_prefix (topic ARN = arn_prefix + name). fifo=true publishes to FIFO
// topics "<prefix>-<kind>.fifo" with MessageGroupId = the symbol (per-symbol
// order) and MessageDeduplicationId = the output key, so SNS itself drops a
// repeat within its 5-minute window.
//
// Outputs go out with PublishBatch, up to 10 per call and 256 KiB; an entry
// the server refuses is retried with the batch (the whole batch: SNS
// deduplicates FIFO topics by key, consumers of standard topics by the key
// attribute). An endpoint without PublishBatch (goaws) gets one Publish per
// output from the first refusal on. A message over 256 KiB is a
// *PoisonError (codec.ReasonOversize), as is an output whose symbol id the
// table does not hold.
type SNSWriter struct {
	prefix    string
	aws       feeds.AWSOptions
	fifo      bool
	create    bool
	arnPrefix string
	timeout   time.Duration
	env       Env

	client  *sns.Client
	topics  [ops.OutKinds]string // ARNs, by kind
	noBatch atomic.Bool          // the endpoint has no PublishBatch

	enc     *JSONLWriter
	arena   []byte
	ends    []int
	entries []types.PublishBatchRequestEntry

	published, batches, singles atomic.Uint64
}

// NewSNS validates u without connecting.
func NewSNS(u *url.URL, env Env) (*SNSWriter, error) {
	if u.Scheme != "sns" || u.Host == "" {
		return nil, fmt.Errorf("sinks: sns: %q: want sns://TOPIC_PREFIX", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.Fragment != "" {
		return nil, fmt.Errorf("sinks: sns: %q: unexpected path or fragment", u.Redacted())
	}
	if env.JSONL.Symbols == nil {
		return nil, errors.New("sinks: sns: Env.JSONL.Symbols is required")
	}
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	w := &SNSWriter{prefix: u.Host, create: true, timeout: DefaultSNSTimeout, env: env}
	q, err := queryParams("sns", u)
	if err != nil {
		return nil, err
	}
	if w.aws, err = feeds.ParseAWSQuery(q); err != nil {
		return nil, fmt.Errorf("sinks: sns: %w", err)
	}
	for k, vs := range q {
		v := vs[0]
		switch k {
		case "fifo", "create":
			b, perr := strconv.ParseBool(v)
			if perr != nil {
				return nil, fmt.Errorf("sinks: sns: %s=%q: want true or false", k, v)
			}
			if k == "fifo" {
				w.fifo = b
			} else {
				w.create = b
			}
		case "arn_prefix":
			w.arnPrefix = v
		case "timeout":
			if w.timeout, err = durationParam("sns", k, v, time.Millisecond, 5*time.Minute); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("sinks: sns: unknown parameter %q (want region, endpoint, profile, fifo, create, arn_prefix, timeout)", k)
		}
	}
	if !w.create && w.arnPrefix == "" {
		return nil, errors.New("sinks: sns: create=false needs arn_prefix")
	}
	if len(w.TopicName(ops.OutMovement)) > snsTopicNameMax {
		return nil, fmt.Errorf("sinks: sns: topic prefix %q too long", w.prefix)
	}
	w.enc = NewJSONLWriter(nil, env.JSONL)
	return w, nil
}

// TopicName returns the topic of an output kind: "<prefix>-<kind>", with
// ".fifo" for FIFO topics.
func (w *SNSWriter) TopicName(k ops.OutKind) string {
	n := w.prefix + "-" + Channel(k)
	if w.fifo {
		n += snsFIFOSuffix
	}
	return n
}

// TopicARN returns the ARN of an output kind's topic (after Open).
func (w *SNSWriter) TopicARN(k ops.OutKind) string { return w.topics[k] }

// snsKinds are the output kinds with a topic (OutText travels inside its
// line's message).
var snsKinds = []ops.OutKind{ops.OutIndicators, ops.OutWindow, ops.OutPattern, ops.OutNews, ops.OutEvent, ops.OutMovement}

// Open builds the client and creates (or names) the topics.
func (w *SNSWriter) Open(ctx context.Context) error {
	if w.client == nil {
		cfg, err := feeds.LoadAWSConfig(ctx, w.aws)
		if err != nil {
			return fmt.Errorf("sinks: sns: %w", err)
		}
		w.client = sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = w.aws.BaseEndpoint() })
	}
	for _, k := range snsKinds {
		if w.topics[k] != "" {
			continue
		}
		name := w.TopicName(k)
		if !w.create {
			w.topics[k] = w.arnPrefix + name
			continue
		}
		in := &sns.CreateTopicInput{Name: aws.String(name)}
		if w.fifo {
			in.Attributes = map[string]string{"FifoTopic": "true"}
		}
		cctx, cancel := context.WithTimeout(ctx, w.timeout)
		out, err := w.client.CreateTopic(cctx, in)
		cancel()
		if err != nil {
			return fmt.Errorf("sinks: sns: create topic %s: %w (%w)", name, err, ErrTransient)
		}
		w.topics[k] = aws.ToString(out.TopicArn)
	}
	return nil
}

// WriteBatch publishes outs (see the type's doc comment).
func (w *SNSWriter) WriteBatch(ctx context.Context, outs []ops.Output) error {
	if w.client == nil {
		return fmt.Errorf("sinks: sns: not open: %w", ErrTransient)
	}
	// Encode every payload: the arena may grow while encoding.
	w.arena, w.ends = w.arena[:0], w.ends[:0]
	for i := range outs {
		if outs[i].Kind != ops.OutText {
			w.arena = w.enc.AppendGroup(w.arena, outs[i:])
		}
		w.ends = append(w.ends, len(w.arena))
	}
	w.entries = w.entries[:0]
	topic, bytes, begin := "", 0, 0
	for i := range outs {
		o := &outs[i]
		if o.Kind == ops.OutText {
			continue
		}
		msg := w.arena[begin:w.ends[i]]
		begin = w.ends[i]
		arn := ""
		if int(o.Kind) < len(w.topics) {
			arn = w.topics[o.Kind]
		}
		name := w.env.JSONL.Symbols.Name(o.Symbol)
		if o.Symbol == 0 && (o.Kind == ops.OutNews || o.Kind == ops.OutEvent) {
			name = snsNoSymbolGroupKey
		}
		if name == "" || arn == "" {
			return &PoisonError{Index: i, Reason: codec.ReasonUnknownSymbol, Err: fmt.Errorf("sinks: sns: output of kind %d, symbol id %d: no topic or no symbol name", o.Kind, o.Symbol)}
		}
		size := len(msg) + len(name) + 64
		if size > snsMessageBytesMax {
			if err := w.flush(ctx, topic); err != nil {
				return err
			}
			return &PoisonError{Index: i, Reason: codec.ReasonOversize, Err: fmt.Errorf("sinks: sns: message of %d bytes, at most %d", size, snsMessageBytesMax)}
		}
		if len(w.entries) > 0 && (arn != topic || len(w.entries) == snsBatchMax || bytes+size > snsBatchBytesMax) {
			if err := w.flush(ctx, topic); err != nil {
				return err
			}
			bytes = 0
		}
		topic = arn
		bytes += size
		w.entries = append(w.entries, w.entry(o, name, msg))
	}
	return w.flush(ctx, topic)
}

// entry builds the batch entry of one output.
func (w *SNSWriter) entry(o *ops.Output, symbol string, msg []byte) types.PublishBatchRequestEntry {
	key := strconv.FormatUint(o.Key, 10)
	e := types.PublishBatchRequestEntry{
		Id:      aws.String(strconv.Itoa(len(w.entries))),
		Message: aws.String(string(msg)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			snsAttrSymbol: {DataType: aws.String("String"), StringValue: aws.String(symbol)},
			snsAttrKind:   {DataType: aws.String("String"), StringValue: aws.String(Channel(o.Kind))},
			snsAttrKey:    {DataType: aws.String("String"), StringValue: aws.String(key)},
		},
	}
	if w.fifo {
		e.MessageGroupId = aws.String(symbol)
		e.MessageDeduplicationId = aws.String(key)
	}
	return e
}

// flush publishes the pending entries to topic.
func (w *SNSWriter) flush(ctx context.Context, topic string) error {
	if len(w.entries) == 0 {
		return nil
	}
	defer func() { w.entries = w.entries[:0] }()
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if !w.noBatch.Load() {
		out, err := w.client.PublishBatch(cctx, &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: w.entries})
		switch {
		case err == nil && len(out.Failed) == 0:
			w.published.Add(uint64(len(w.entries)))
			w.batches.Add(1)
			return nil
		case err == nil:
			f := out.Failed[0]
			return fmt.Errorf("sinks: sns: %d of %d entries refused, first %s: %s (%w)", len(out.Failed), len(w.entries),
				aws.ToString(f.Code), aws.ToString(f.Message), ErrTransient)
		case !snsNoPublishBatch(err):
			return fmt.Errorf("sinks: sns: publish batch: %w (%w)", err, ErrTransient)
		}
		w.noBatch.Store(true)
		w.env.Logger.Warn("sinks: sns: the endpoint has no PublishBatch: one Publish per output from now on", "err", err)
	}
	for i := range w.entries {
		e := &w.entries[i]
		_, err := w.client.Publish(cctx, &sns.PublishInput{TopicArn: aws.String(topic), Message: e.Message,
			MessageAttributes: e.MessageAttributes, MessageGroupId: e.MessageGroupId, MessageDeduplicationId: e.MessageDeduplicationId})
		if err != nil {
			return fmt.Errorf("sinks: sns: publish: %w (%w)", err, ErrTransient)
		}
		w.published.Add(1)
		w.singles.Add(1)
	}
	return nil
}

// snsNoPublishBatch reports an error that says the endpoint does not know
// PublishBatch (an older or partial SNS implementation): an InvalidAction
// error, or a 400 whose body is not an SNS error document at all.
func snsNoPublishBatch(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		c := ae.ErrorCode()
		return c == "InvalidAction" || c == "UnknownOperation" || c == "UnknownOperationException" ||
			strings.Contains(strings.ToLower(ae.ErrorMessage()), "publishbatch")
	}
	return strings.Contains(err.Error(), "StatusCode: 400") && strings.Contains(err.Error(), "deserialization failed")
}

// Close has nothing to release (the client holds no connection of its own
// beyond the HTTP pool).
func (w *SNSWriter) Close() error { return nil }

// AppendStatus implements StatusWriter.
func (w *SNSWriter) AppendStatus(dst []byte) []byte {
	dst = append(dst, " published="...)
	dst = strconv.AppendUint(dst, w.published.Load(), 10)
	dst = append(dst, " batches="...)
	dst = strconv.AppendUint(dst, w.batches.Load(), 10)
	if n := w.singles.Load(); n > 0 {
		dst = append(dst, " singles="...)
		dst = strconv.AppendUint(dst, n, 10)
	}
	return dst
}
