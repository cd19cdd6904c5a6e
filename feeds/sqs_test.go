package feeds

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"qstream/codec"
	"qstream/internal/awstest"
)

// sqsEnv is a queue on the local goaws (scripts/services.sh).
type sqsEnv struct {
	t      testing.TB
	ep     string
	client *sqs.Client
	url    string
}

func newSQSEnv(t testing.TB, visibility time.Duration) *sqsEnv {
	t.Helper()
	ep := awstest.SQS(t)
	awstest.SetEnv(t)
	ctx := context.Background()
	c, err := NewSQSClient(ctx, AWSOptions{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("qs-%s-%d", sanitizeFileName(strings.ToLower(t.Name()[:min(len(t.Name()), 24)])), time.Now().UnixNano()%1e9)
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": strconv.Itoa(int(visibility / time.Second))}})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	e := &sqsEnv{t: t, ep: ep, client: c, url: aws.ToString(out.QueueUrl)}
	t.Cleanup(func() { c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(e.url)}) })
	return e
}

// send sends trades i in [from, to) (kinesisTrade's bodies, ids "k-<i>").
func (e *sqsEnv) send(from, to int) {
	e.t.Helper()
	for lo := from; lo < to; lo += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for i := lo; i < min(to, lo+10); i++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)),
				MessageBody: aws.String(string(kinesisTrade(kinesisSyms[i%len(kinesisSyms)], i)))})
		}
		out, err := e.client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(e.url), Entries: entries})
		if err != nil || len(out.Failed) > 0 {
			e.t.Fatalf("send: %v %v", err, out)
		}
	}
}

// pending returns the queue's visible plus in-flight messages.
func (e *sqsEnv) pending() int {
	out, err := e.client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(e.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		e.t.Fatalf("queue attributes: %v", err)
	}
	a, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	b, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return a + b
}

func (e *sqsEnv) config() SQSConfig {
	return SQSConfig{QueueURL: e.url, AWS: AWSOptions{Endpoint: e.ep}, Wait: time.Second, Visibility: 2 * time.Second}
}

func runSQS(t *testing.T, f *SQSFeed, pubs Publishers) (stop func() error, errc chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc = make(chan error, 1)
	res := make(chan error, 1)
	go func() {
		err := f.Run(ctx, pubs)
		errc <- err
		res <- err
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-res:
			case <-time.After(20 * time.Second):
				err = errors.New("Run did not return within 20s of the cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, errc
}

// Long-polled batches published, made durable (a barrier per batch), then
// deleted: the queue ends empty and every message was published once.
func TestSQSConsume(t *testing.T) {
	e := newSQSEnv(t, 30*time.Second)
	e.send(0, 200)
	rec := newNetRecorder(t, true)
	cfg := e.config()
	cfg.Pollers = 2
	f, err := NewSQSFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runSQS(t, f, rec)
	netWaitFor(t, 30*time.Second, "200 events, the queue empty", func() bool { return rec.snapshot().published == 200 && e.pending() == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	seen := map[uint64]int{}
	for _, ev := range rec.snapshot().events {
		seen[ev.IDHash]++
	}
	for i := 0; i < 200; i++ {
		if n := seen[codec.HashID(fmt.Appendf(nil, "k-%d", i))]; n != 1 {
			t.Fatalf("message k-%d published %d times", i, n)
		}
	}
	st := f.Stats()
	if st.Received != 200 || st.Deleted != 200 || st.Duplicates != 0 || st.Rejected != 0 || st.DeleteErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	if sn := rec.snapshot(); sn.barriers < int64(st.Batches) || sn.pubs != 2 {
		t.Errorf("%d barriers for %d batches, %d publishers", sn.barriers, st.Batches, sn.pubs)
	}
}

// A crash after the batch is durable but before its delete: SQS delivers
// it again after the visibility timeout. With the dedup window shared (as
// one engine's feeds share it) the redelivered messages are deleted without
// being published again; without it they come again with the same IDHash,
// for the engine's dedup to absorb.
func TestSQSRedeliveryAfterCrash(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			e := newSQSEnv(t, 2*time.Second)
			e.send(0, 30)
			window := NewIDWindow(1024)
			rec1 := newNetRecorder(t, true)
			cfg := e.config()
			cfg.Dedup = window
			f1, _ := NewSQSFeed(cfg)
			crash := errors.New("crash before delete")
			f1.beforeDelete = func(int) error { return crash }
			_, errc := runSQS(t, f1, rec1)
			select {
			case err := <-errc:
				if !errors.Is(err, crash) {
					t.Fatalf("Run = %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no crash")
			}
			first := rec1.snapshot()
			if first.published == 0 || first.barriers == 0 {
				t.Fatalf("first instance: %d published, %d barriers", first.published, first.barriers)
			}
			rec2 := newNetRecorder(t, true)
			if !shared {
				cfg.Dedup = nil
			}
			f2, _ := NewSQSFeed(cfg)
			stop, _ := runSQS(t, f2, rec2)
			netWaitFor(t, 30*time.Second, "the queue empty", func() bool { return e.pending() == 0 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			second := rec2.snapshot()
			st := f2.Stats()
			if st.Redelivered < uint64(first.published) {
				t.Errorf("%d redelivered, want at least the %d of the crashed batch", st.Redelivered, first.published)
			}
			ids := map[uint64]int{}
			for _, ev := range append(first.events, second.events...) {
				ids[ev.IDHash]++
			}
			if len(ids) != 30 {
				t.Fatalf("%d distinct ids, want 30", len(ids))
			}
			switch {
			case shared && (second.published != 30-first.published || st.Duplicates != uint64(first.published)):
				t.Errorf("shared window: second instance published %d (want %d), %d duplicates", second.published, 30-first.published, st.Duplicates)
			case !shared && second.published != 30:
				t.Errorf("private window: second instance published %d, want all 30 again", second.published)
			}
		})
	}
}

// A batch that takes longer than the visibility timeout to become durable
// keeps its messages invisible: the visibility is extended, nothing is
// delivered twice.
func TestSQSVisibilityExtendedForSlowBatch(t *testing.T) {
	e := newSQSEnv(t, 2*time.Second)
	e.send(0, 10)
	rec := newNetRecorder(t, true)
	rec.barrierSleep = 3500 * time.Millisecond // a slow WAL sync
	cfg := e.config()
	cfg.Pollers = 2 // the other poller would get a message that came back
	f, _ := NewSQSFeed(cfg)
	stop, _ := runSQS(t, f, rec)
	netWaitFor(t, 30*time.Second, "the queue empty", func() bool { return e.pending() == 0 && f.Stats().Deleted == 10 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if st.Extended == 0 || st.Redelivered != 0 || st.Received != 10 || rec.snapshot().published != 10 {
		t.Errorf("stats %+v, published %d", st, rec.snapshot().published)
	}
}

// A body that does not parse goes to the dead-letter output and is deleted
// with its batch.
func TestSQSRejects(t *testing.T) {
	e := newSQSEnv(t, 30*time.Second)
	if _, err := e.client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(e.url), MessageBody: aws.String(`{"type":"trade"`)}); err != nil {
		t.Fatal(err)
	}
	e.send(0, 1)
	rec := newNetRecorder(t, true)
	f, _ := NewSQSFeed(e.config())
	stop, _ := runSQS(t, f, rec)
	netWaitFor(t, 20*time.Second, "an event, a reject, the queue empty", func() bool {
		sn := rec.snapshot()
		return sn.published == 1 && len(sn.rejects) == 1 && e.pending() == 0
	})
	stop()
	if r := rec.snapshot().rejects[0]; r.Raw != `{"type":"trade"` || r.Reason != codec.ReasonMalformed && r.Reason == 0 || !strings.HasPrefix(r.Err, "sqs: message ") {
		t.Errorf("reject %+v", r)
	}
}

func TestSQSConfigErrors(t *testing.T) {
	for _, cfg := range []SQSConfig{
		{},
		{QueueURL: "u", Wait: 21 * time.Second},
		{QueueURL: "u", Visibility: time.Second},
		{QueueURL: "u", BatchMax: 11},
		{QueueURL: "u", Pollers: MaxSQSPollers + 1},
		{QueueURL: "u", AWS: AWSOptions{Endpoint: "ftp://x"}},
	} {
		if _, err := NewSQSFeed(cfg); !errors.Is(err, ErrSQSConfig) {
			t.Errorf("NewSQSFeed(%+v) = %v", cfg, err)
		}
	}
}
