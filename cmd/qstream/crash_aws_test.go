package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	stypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"qstream/feeds"
	"qstream/internal/awstest"
)

// The crash harness of the AWS feeds that keep a position upstream (Kinesis:
// the WAL's record counts and the position file; SQS: deletes after the
// WAL sync), on the model of crash_feeds_test.go: `qstream run --feed
// kinesis|sqs` with the WAL on is killed with SIGKILL at random moments and
// at named failpoints, and some incarnations are stopped cleanly, each
// restarted on the same data directory, until every message was consumed;
// its output must then equal `qstream replay` of the same messages, each
// message's indicator line exactly once (checkFeedCrashOutput).
//
// Kinesis: every message is put before the first start (partition key: the
// symbol, so a symbol's messages keep their order in one shard; the
// sentinels last), on a stream of two shards; a kill lands in the middle of
// a shard. SQS: the client sends a batch of 10 once the previous one was
// deleted (the queue's visible and in-flight messages are none), as an
// at-least-once producer that waits for consumption would, so a batch a
// kill left undeleted comes back (after the 2s visibility timeout) before
// anything newer: the order the replay sees.
//
// QSTREAM_CRASH_KILLS sets the kills (default 5, `make crash-test` 50),
// QSTREAM_CRASH_AWS_MESSAGES the messages (default 16000 for Kinesis,
// half of that for SQS, whose client waits for each batch).

type awsCrashClient interface {
	session(ctx context.Context) error
	done() bool // everything consumed (and durable)
	progress() string
}

type awsCrashHarness struct {
	name     string
	messages int
	args     func(dir string) []string
	client   func(t *testing.T, dir string, msgs []feedMsg) awsCrashClient
	// killMin and killSpan: a kill lands killMin plus up to killSpan
	// after the start.
	killMin, killSpan time.Duration
}

func awsCrashMessages(t *testing.T, def int) int {
	return envInt(t, "QSTREAM_CRASH_AWS_MESSAGES", def)
}

func runAWSCrash(t *testing.T, h awsCrashHarness) {
	kills := envInt(t, "QSTREAM_CRASH_KILLS", 5)
	seed := uint64(envInt(t, "QSTREAM_CRASH_SEED", int(time.Now().UnixNano()&0xFFFFFFF)))
	rng := rand.New(rand.NewPCG(seed, 91))
	bin := qstreamBinary(t)
	dir := keepDir(t, h.name)
	msgs, finalWm := feedSchedule(h.messages, feedCrashConns, false, true, rng)
	if err := os.WriteFile(filepath.Join(dir, "patterns.json"), []byte(feedCrashPatterns), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d kills over %d messages, QSTREAM_CRASH_SEED=%d", h.name, kills, len(msgs), seed)
	client := h.client(t, dir, msgs)
	env := awstest.Env()
	done, cleanStops := 0, 0
	byPoint := map[string]int{}
	for inc := 1; ; inc++ {
		if inc > 5*kills+20 {
			t.Fatalf("no completion after %d incarnations: %s", inc, client.progress())
		}
		fp := ""
		clean := done < kills && rng.IntN(5) == 0
		killAfter := time.Duration(0)
		if done < kills && !clean {
			if rng.IntN(2) == 0 {
				fp = randomFailpoint(rng)
			}
			killAfter = h.killMin + time.Duration(rng.Int64N(int64(h.killSpan)))
		}
		p := startFeedProc(t, bin, dir, inc, h.args(dir), append([]string{"QSTREAM_FAILPOINT=" + fp}, env...))
		ctx, cancel := context.WithCancel(context.Background())
		sessErr := make(chan error, 1)
		go func() { sessErr <- client.session(ctx) }()
		switch {
		case clean:
			// SIGTERM once it runs (a stop during recovery is refused
			// with an error, not a clean stop), after a while.
			for !p.exited() && !strings.Contains(p.text(), "qstream: running:") {
				time.Sleep(10 * time.Millisecond)
			}
			select {
			case <-p.done:
			case <-time.After(time.Duration(rng.IntN(1000)) * time.Millisecond):
			}
			err := p.stop(t)
			cancel()
			<-sessErr
			if err != nil {
				t.Fatalf("incarnation %d: exit after SIGTERM: %v\n%s", inc, err, tail(p.text(), 30))
			}
			cleanStops++
			t.Logf("incarnation %d: stopped cleanly: %s%s", inc, client.progress(), recoveryLines(p.text()))
			continue
		case killAfter > 0:
			timer := time.AfterFunc(killAfter, func() { p.cmd.Process.Signal(syscall.SIGKILL) })
			<-p.done
			timer.Stop()
			cancel()
			<-sessErr
			if !p.killedBySignal() {
				t.Fatalf("incarnation %d: exit %v, not a kill:\n%s", inc, p.err, tail(p.text(), 30))
			}
			done++
			if strings.Contains(p.text(), "failpoint: ") {
				byPoint[strings.SplitN(fp, ":", 2)[0]]++
			} else {
				byPoint["random"]++
			}
			t.Logf("incarnation %d: killed after %s (failpoint %q): %s%s", inc, time.Since(p.started).Round(time.Millisecond), fp, client.progress(), recoveryLines(p.text()))
			continue
		}
		// The last incarnation: until it runs (SIGTERM before its handler
		// is installed would kill it) and everything is consumed.
		deadline := time.Now().Add(180 * time.Second)
		for !strings.Contains(p.text(), "qstream: running:") || !client.done() {
			if p.exited() {
				cancel()
				t.Fatalf("last incarnation %d exited: %v: %s\n%s", inc, p.err, client.progress(), tail(p.text(), 30))
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("last incarnation %d: not everything consumed within 180s: %s\n%s", inc, client.progress(), tail(p.text(), 30))
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-sessErr
		if err := p.stop(t); err != nil {
			t.Fatalf("last incarnation %d: exit after SIGTERM: %v\n%s", inc, err, tail(p.text(), 30))
		}
		t.Logf("incarnation %d: %s; stopped cleanly%s", inc, client.progress(), recoveryLines(p.text()))
		break
	}
	t.Logf("%d kills by point: %v; %d clean stops between them", done, byPoint, cleanStops)
	checkFeedCrashOutput(t, bin, dir, msgs, finalWm)
}

// ---- Kinesis ----

type kinesisCrashClient struct {
	posPath string
	total   int
}

func (c *kinesisCrashClient) session(ctx context.Context) error { <-ctx.Done(); return nil }

// counts sums the position file's record counts and done shards.
func (c *kinesisCrashClient) counts() (n uint64, shards int) {
	b, err := os.ReadFile(c.posPath)
	if err != nil {
		return 0, 0
	}
	var f struct {
		Shards map[string]feeds.KinesisPosition `json:"shards"`
	}
	if json.Unmarshal(b, &f) != nil {
		return 0, 0
	}
	for _, p := range f.Shards {
		n += p.N
	}
	return n, len(f.Shards)
}

func (c *kinesisCrashClient) done() bool {
	n, _ := c.counts()
	return n == uint64(c.total)
}

func (c *kinesisCrashClient) progress() string {
	n, shards := c.counts()
	return fmt.Sprintf("%d of %d records durable in the position file (%d shards)", n, c.total, shards)
}

// TestCrashKinesis: a kill in the middle of a shard resumes right after the
// last durable record of each shard.
func TestCrashKinesis(t *testing.T) {
	ep := awstest.Kinesis(t)
	awstest.SetEnv(t)
	stream := fmt.Sprintf("qs-crash-%d", time.Now().UnixNano()%1e9)
	runAWSCrash(t, awsCrashHarness{
		name:     "kinesis",
		messages: awsCrashMessages(t, 16000),
		killMin:  100 * time.Millisecond, killSpan: 1500 * time.Millisecond,
		args: func(dir string) []string {
			return append([]string{"--feed", "kinesis", "--kinesis-stream", stream, "--kinesis-endpoint", ep, "--kinesis-poll", "20ms", "--kinesis-limit", "200"},
				feedCrashCommon(dir)...)
		},
		client: func(t *testing.T, dir string, msgs []feedMsg) awsCrashClient {
			ctx := context.Background()
			c, err := feeds.NewKinesisClient(ctx, feeds.AWSOptions{Endpoint: ep})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(2)}); err != nil {
				t.Fatalf("create stream: %v", err)
			}
			t.Cleanup(func() {
				c.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: aws.String(stream)})
			})
			for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
				out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
				if err == nil && out.StreamDescriptionSummary.StreamStatus == ktypes.StreamStatusActive {
					break
				}
				if time.Since(start) > 20*time.Second {
					t.Fatalf("stream not active: %v", err)
				}
			}
			// Body messages first, then the sentinels, each in schedule
			// order.
			var order []*feedMsg
			for _, sentinel := range []bool{false, true} {
				for i := range msgs {
					if msgs[i].sentinel == sentinel {
						order = append(order, &msgs[i])
					}
				}
			}
			for lo := 0; lo < len(order); lo += 500 {
				var recs []ktypes.PutRecordsRequestEntry
				for _, m := range order[lo:min(len(order), lo+500)] {
					recs = append(recs, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(m.symbol), Data: []byte(m.jsonLine())})
				}
				out, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: recs})
				if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
					t.Fatalf("put records: %v", err)
				}
			}
			return &kinesisCrashClient{posPath: filepath.Join(dir, "wal", "kinesis-"+stream+".pos"), total: len(msgs)}
		},
	})
}

// ---- SQS ----

type sqsCrashClient struct {
	c    *sqs.Client
	url  string
	msgs []feedMsg

	mu       sync.Mutex
	round    int  // batches [0, round) were consumed
	sent     bool // batch round is in the queue
	batches  int
	lastWait time.Duration
}

const sqsCrashBatch = 10

func (c *sqsCrashClient) rounds() int { return (len(c.msgs) + sqsCrashBatch - 1) / sqsCrashBatch }

func (c *sqsCrashClient) pending(ctx context.Context) (int, error) {
	out, err := c.c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(c.url),
		AttributeNames: []stypes.QueueAttributeName{stypes.QueueAttributeNameApproximateNumberOfMessages, stypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return 0, err
	}
	a, _ := strconv.Atoi(out.Attributes[string(stypes.QueueAttributeNameApproximateNumberOfMessages)])
	b, _ := strconv.Atoi(out.Attributes[string(stypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return a + b, nil
}

func (c *sqsCrashClient) session(ctx context.Context) error {
	for {
		c.mu.Lock()
		r, sent := c.round, c.sent
		c.mu.Unlock()
		if r >= c.rounds() {
			return nil
		}
		if !sent {
			var entries []stypes.SendMessageBatchRequestEntry
			for i := r * sqsCrashBatch; i < min(len(c.msgs), (r+1)*sqsCrashBatch); i++ {
				entries = append(entries, stypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(c.msgs[i].jsonLine())})
			}
			out, err := c.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(c.url), Entries: entries})
			if err != nil || len(out.Failed) > 0 {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send batch %d: %v", r, err)
			}
			c.mu.Lock()
			c.sent = true
			c.mu.Unlock()
		}
		start := time.Now()
		for {
			n, err := c.pending(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return fmt.Errorf("queue attributes: %v", err)
			}
			if n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(3 * time.Millisecond):
			}
		}
		c.mu.Lock()
		c.round, c.sent = r+1, false
		c.batches++
		c.lastWait = time.Since(start)
		c.mu.Unlock()
	}
}

func (c *sqsCrashClient) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.round >= c.rounds()
}

func (c *sqsCrashClient) progress() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d of %d batches consumed", c.round, c.rounds())
}

// TestCrashSQS: a kill in the middle of an SQS batch (received, published,
// maybe durable, not deleted) resumes with nothing lost and nothing
// processed twice: the batch comes back and the engine's dedup drops what
// was durable.
func TestCrashSQS(t *testing.T) {
	ep := awstest.SQS(t)
	awstest.SetEnv(t)
	ctx := context.Background()
	c, err := feeds.NewSQSClient(ctx, feeds.AWSOptions{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("qs-crash-%d", time.Now().UnixNano()%1e9)),
		Attributes: map[string]string{"VisibilityTimeout": "2"}})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() { c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}) })
	runAWSCrash(t, awsCrashHarness{
		name:     "sqs",
		messages: awsCrashMessages(t, 16000) / 2,
		// Past the 2s visibility timeout of a batch the last kill left
		// undeleted, so that kills land in later batches.
		killMin: 2200 * time.Millisecond, killSpan: 2000 * time.Millisecond,
		args: func(dir string) []string {
			return append([]string{"--feed", "sqs", "--sqs-queue-url", url, "--sqs-endpoint", ep, "--sqs-wait", "1s", "--sqs-visibility", "2s"},
				feedCrashCommon(dir)...)
		},
		client: func(t *testing.T, dir string, msgs []feedMsg) awsCrashClient {
			return &sqsCrashClient{c: c, url: url, msgs: msgs}
		},
	})
}
