package sinks

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"qstream/feeds"
	"qstream/internal/awstest"
	"qstream/ops"
)

func newTestSNS(t *testing.T, raw string, env Env) *SNSWriter {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewSNS(u, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}

func snsPrefix(t *testing.T) string {
	return fmt.Sprintf("qs-%d", time.Now().UnixNano()%1e9)
}

// A topic per kind; outputs published in batches with their attributes,
// received by an SQS queue subscribed with raw delivery (fauxqs serves SNS
// with PublishBatch, and SQS).
func TestSNSPublishBatch(t *testing.T) {
	ep := awstest.SQS(t) // fauxqs: SNS and SQS
	awstest.SetEnv(t)
	env := natsEnv(t, "AAPL", "MSFT", "BRK.B")
	w := newTestSNS(t, "sns://"+snsPrefix(t)+"?endpoint="+url.QueryEscape(ep), env)
	ctx := context.Background()
	q, err := feeds.NewSQSClient(ctx, feeds.AWSOptions{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	qurl, qarn := snsTestQueue(t, q, w.TopicName(ops.OutIndicators))
	sc := w.client
	if _, err := sc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(w.TopicARN(ops.OutIndicators)), Protocol: aws.String("sqs"),
		Endpoint: aws.String(qarn), Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	outs := natsOutputs(25, 3, 1000)
	if err := w.WriteBatch(ctx, outs); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if b, p := w.batches.Load(), w.published.Load(); b != 3 || p != 25 || w.singles.Load() != 0 {
		t.Errorf("%d batches (want 3 of at most 10), %d published", b, p)
	}
	got := map[string]sqstypes.Message{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 25 && time.Now().Before(deadline) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(qurl), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			got[aws.ToString(m.MessageAttributes["key"].StringValue)] = m
		}
	}
	if len(got) != 25 {
		t.Fatalf("received %d distinct keys, want 25", len(got))
	}
	var enc []byte
	for i := range outs {
		key := strconv.FormatUint(outs[i].Key, 10)
		m := got[key]
		sym := env.JSONL.Symbols.Name(outs[i].Symbol)
		enc = w.enc.AppendGroup(enc[:0], outs[i:])
		if aws.ToString(m.Body) != string(enc) || aws.ToString(m.MessageAttributes["symbol"].StringValue) != sym ||
			aws.ToString(m.MessageAttributes["kind"].StringValue) != "indicators" {
			t.Fatalf("output %d: message %q attributes %v, want %q symbol %s", i, aws.ToString(m.Body), m.MessageAttributes, enc, sym)
		}
	}
	for _, k := range snsKinds {
		if !strings.HasSuffix(w.TopicARN(k), ":"+w.TopicName(k)) {
			t.Errorf("kind %d: topic ARN %q", k, w.TopicARN(k))
		}
	}
}

// snsTestQueue creates a queue (fauxqs) and returns its URL and ARN.
func snsTestQueue(t *testing.T, q *sqs.Client, name string) (string, string) {
	t.Helper()
	ctx := context.Background()
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-q")})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	qurl := aws.ToString(out.QueueUrl)
	t.Cleanup(func() { q.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(qurl)}) })
	a, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(qurl), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	return qurl, a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
}

// goaws has no PublishBatch: the writer falls back to Publish per output,
// with the same attributes. The queue subscribed to the topic is read with
// goaws's own (query) protocol, which the SDK's SQS client no longer speaks.
func TestSNSWithoutPublishBatch(t *testing.T) {
	ep := awstest.SNS(t) // goaws
	awstest.SetEnv(t)
	env := natsEnv(t, "AAPL", "MSFT")
	w := newTestSNS(t, "sns://"+snsPrefix(t)+"?endpoint="+url.QueryEscape(ep), env)
	qname := w.TopicName(ops.OutIndicators) + "-q"
	goawsQuery(t, ep, url.Values{"Action": {"CreateQueue"}, "QueueName": {qname}})
	qurl := ep + "/100010001000/" + qname
	if _, err := w.client.Subscribe(context.Background(), &sns.SubscribeInput{TopicArn: aws.String(w.TopicARN(ops.OutIndicators)),
		Protocol: aws.String("sqs"), Endpoint: aws.String("arn:aws:sqs:us-east-1:100010001000:" + qname),
		Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	outs := natsOutputs(12, 2, 500)
	if err := w.WriteBatch(context.Background(), outs); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if !w.noBatch.Load() || w.singles.Load() != 12 || w.published.Load() != 12 {
		t.Fatalf("noBatch %v, %d singles, %d published", w.noBatch.Load(), w.singles.Load(), w.published.Load())
	}
	keys := map[string]bool{}
	for tries := 0; len(keys) < 12 && tries < 20; tries++ {
		var r struct {
			Messages []struct {
				Body  string `xml:"Body"`
				Attrs []struct {
					Name  string `xml:"Name"`
					Value string `xml:"Value>StringValue"`
				} `xml:"MessageAttribute"`
			} `xml:"ReceiveMessageResult>Message"`
		}
		body := goawsQuery(t, ep, url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {qurl}, "MaxNumberOfMessages": {"10"},
			"MessageAttributeName.1": {"All"}})
		if err := xml.Unmarshal(body, &r); err != nil {
			t.Fatalf("receive: %v: %s", err, body)
		}
		for _, m := range r.Messages {
			for _, a := range m.Attrs {
				if a.Name == "key" {
					keys[a.Value] = true
				}
			}
		}
	}
	if len(keys) != 12 {
		t.Fatalf("received %d distinct keys, want 12: %v", len(keys), keys)
	}
}

func goawsQuery(t *testing.T, ep string, v url.Values) []byte {
	t.Helper()
	resp, err := http.PostForm(ep+"/", v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("goaws %s: %d %s", v.Get("Action"), resp.StatusCode, b)
	}
	return b
}

func TestSNSURIErrors(t *testing.T) {
	env := natsEnv(t, "AAPL")
	for _, raw := range []string{
		"sns://p/path",
		"sns://p?fifo=maybe",
		"sns://p?create=false",
		"sns://p?endpoint=127.0.0.1:4100",
		"sns://p?colour=blue",
		"sns://p?region=a&region=b",
	} {
		u, _ := url.Parse(raw)
		if _, err := NewSNS(u, env); err == nil {
			t.Errorf("NewSNS(%s): no error", raw)
		}
	}
	u, _ := url.Parse("sns://pre?fifo=true&create=false&arn_prefix=arn:aws:sns:eu-west-1:123:&region=eu-west-1")
	w, err := NewSNS(u, env)
	if err != nil {
		t.Fatal(err)
	}
	if w.TopicName(ops.OutWindow) != "pre-windows.fifo" || w.aws.Region != "eu-west-1" {
		t.Errorf("topic %q, region %q", w.TopicName(ops.OutWindow), w.aws.Region)
	}
}

// --sink sns://... goes through the registry with the framework's
// parameters removed.
func TestSNSRegistered(t *testing.T) {
	env := natsEnv(t, "AAPL")
	env.Logger = quietArchiveLog()
	s, err := OpenSink("sns://qs?region=eu-west-1&batch=100&fifo=true&full=block", env, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := s.w.(*SNSWriter)
	if !ok || !w.fifo || w.aws.Region != "eu-west-1" || s.pol.BatchMax != 100 || s.Name() != "sns://qs?fifo=true&region=eu-west-1" {
		t.Fatalf("sink %s: writer %T %+v, policy %+v", s.Name(), s.w, w, s.pol)
	}
}
