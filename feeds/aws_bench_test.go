package feeds

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Throughput out of the local AWS stand-ins (kinesalite, fauxqs) into
// qstream's feeds, each against the bare SDK calls that fetch the same data
// (the baseline: what the server and the SDK cost without parsing,
// publishing, barriers and positions). One iteration is one record or
// message; each benchmark checks that every one was published (or fetched)
// exactly once. The records are put before the timer starts; run with a
// fixed count, e.g. -benchtime 20000x.

func benchKinesisPut(b *testing.B, shards int32) *kinesisEnv {
	e := newKinesisEnv(b, shards)
	e.put(kinesisSyms, 0, b.N)
	return e
}

// BenchmarkKinesisFeed: the feed reading two shards into a Publisher that
// counts (GetRecords of 1000, parse, publish, barrier, position).
func BenchmarkKinesisFeed(b *testing.B) {
	e := benchKinesisPut(b, 2)
	rec := newNetRecorder(b, false)
	f, err := NewKinesisFeed(KinesisConfig{Stream: e.stream, AWS: AWSOptions{Endpoint: e.ep}, StateDir: b.TempDir(), PollInterval: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx, rec) }()
	netWaitFor(b, 10*time.Minute, "every record", func() bool { return rec.total.Load() >= int64(b.N) })
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if st := f.Stats(); st.Published != uint64(b.N) || st.Records != uint64(b.N) || rec.total.Load() != int64(b.N) {
		b.Fatalf("published %d of %d records (%+v)", rec.total.Load(), b.N, st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkKinesisGetRecordsRaw: the baseline, GetRecords of 1000 over both
// shards from TRIM_HORIZON, nothing done with the records.
func BenchmarkKinesisGetRecordsRaw(b *testing.B) {
	e := benchKinesisPut(b, 2)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for _, shard := range []string{"shardId-000000000000", "shardId-000000000001"} {
		it, err := e.client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(e.stream), ShardId: aws.String(shard),
			ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			b.Fatal(err)
		}
		iter := it.ShardIterator
		for {
			out, err := e.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(DefaultKinesisLimit)})
			if err != nil {
				b.Fatal(err)
			}
			n += len(out.Records)
			if len(out.Records) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	b.StopTimer()
	if n != b.N {
		b.Fatalf("fetched %d of %d records", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func benchSQSSend(b *testing.B) *sqsEnv {
	e := newSQSEnv(b, 30*time.Second)
	e.send(0, b.N)
	return e
}

// BenchmarkSQSFeed: the feed with 4 pollers (long polling, batches of 10,
// parse, publish, barrier, DeleteMessageBatch).
func BenchmarkSQSFeed(b *testing.B) {
	e := benchSQSSend(b)
	rec := newNetRecorder(b, false)
	f, err := NewSQSFeed(SQSConfig{QueueURL: e.url, AWS: AWSOptions{Endpoint: e.ep}, Wait: time.Second, Pollers: 4})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx, rec) }()
	netWaitFor(b, 10*time.Minute, "every message deleted", func() bool { return f.Stats().Deleted >= uint64(b.N) })
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if st := f.Stats(); st.Published != uint64(b.N) || st.Deleted != uint64(b.N) || st.Duplicates != 0 || rec.total.Load() != int64(b.N) {
		b.Fatalf("published %d of %d (%+v)", rec.total.Load(), b.N, st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSQSReceiveDeleteRaw: the baseline, 4 goroutines receiving 10
// and deleting them in one batch, nothing else.
func BenchmarkSQSReceiveDeleteRaw(b *testing.B) {
	e := benchSQSSend(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	var total atomic.Int64
	counts := make(chan int, 4)
	for range 4 {
		go func() {
			n := 0
			defer func() { counts <- n }()
			for total.Load() < int64(b.N) {
				out, err := e.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil {
					return
				}
				if len(out.Messages) == 0 {
					continue
				}
				var del []sqstypes.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(string(rune('a' + i))), ReceiptHandle: m.ReceiptHandle})
				}
				if _, err := e.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(e.url), Entries: del}); err != nil {
					return
				}
				n += len(out.Messages)
				if total.Add(int64(len(out.Messages))) >= int64(b.N) {
					cancel() // the others' long polls
				}
			}
		}()
	}
	n := 0
	for range 4 {
		n += <-counts
	}
	b.StopTimer()
	if n != b.N {
		b.Fatalf("received and deleted %d of %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
