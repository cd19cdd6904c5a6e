package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"qstream/feeds"
	"qstream/internal/feedhost"
)

// The AWS feeds of `qstream run --feed`.
const (
	feedKinesis = "kinesis"
	feedSQS     = "sqs"
)

func init() {
	feedNames = append(feedNames, feedKinesis, feedSQS)
	for _, fl := range []string{"kinesis-stream", "kinesis-region", "kinesis-endpoint", "kinesis-profile", "kinesis-start",
		"kinesis-start-seq", "kinesis-state-dir", "kinesis-limit", "kinesis-poll", "kinesis-max-shards"} {
		feedFlagOwners[fl] = feedKinesis
	}
	for _, fl := range []string{"sqs-queue-url", "sqs-region", "sqs-endpoint", "sqs-profile", "sqs-wait", "sqs-visibility",
		"sqs-batch", "sqs-pollers"} {
		feedFlagOwners[fl] = feedSQS
	}
}

// awsFeedFlags are the flags of the kinesis and sqs feeds. Region,
// endpoint and profile override the standard AWS configuration chain
// (environment, shared config files) per feed; credentials come from the
// chain only.
type awsFeedFlags struct {
	kinStream, kinStart, kinStartSeq, kinStateDir string
	kinAWS                                        awsFlagSet
	kinLimit, kinMaxShards                        int
	kinPoll                                       time.Duration

	sqsQueueURL        string
	sqsAWS             awsFlagSet
	sqsWait, sqsVisib  time.Duration
	sqsBatch, sqsPolls int
}

type awsFlagSet struct{ region, endpoint, profile string }

func (a *awsFlagSet) register(fs *flag.FlagSet, feed string) {
	fs.StringVar(&a.region, feed+"-region", "", feed+" feed: AWS region (default: the AWS configuration chain's: AWS_REGION, the profile)")
	fs.StringVar(&a.endpoint, feed+"-endpoint", "", feed+" feed: endpoint URL instead of AWS's (a local server: http://127.0.0.1:PORT)")
	fs.StringVar(&a.profile, feed+"-profile", "", feed+" feed: shared-config profile (default: AWS_PROFILE, else default)")
}

func (a *awsFlagSet) options() feeds.AWSOptions {
	return feeds.AWSOptions{Region: a.region, Endpoint: a.endpoint, Profile: a.profile}
}

func (af *awsFeedFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&af.kinStream, "kinesis-stream", "", "kinesis feed: name of the stream; every shard is read, children after their parents")
	af.kinAWS.register(fs, "kinesis")
	fs.StringVar(&af.kinStart, "kinesis-start", "trim_horizon", "kinesis feed: where a shard without a saved position starts: trim_horizon, latest, at_sequence_number or after_sequence_number (with --kinesis-start-seq)")
	fs.StringVar(&af.kinStartSeq, "kinesis-start-seq", "", "kinesis feed: SHARD=SEQUENCE_NUMBER[,...] for the *_sequence_number starts")
	fs.StringVar(&af.kinStateDir, "kinesis-state-dir", "", "kinesis feed: directory of the position file kinesis-<stream>.pos (default: --wal-dir; the WAL's record counts are the truth, the file says where to resume reading)")
	fs.IntVar(&af.kinLimit, "kinesis-limit", feeds.DefaultKinesisLimit, "kinesis feed: records per GetRecords call (1..10000)")
	fs.DurationVar(&af.kinPoll, "kinesis-poll", feeds.DefaultKinesisPollInterval, "kinesis feed: wait after a GetRecords that returned nothing")
	fs.IntVar(&af.kinMaxShards, "kinesis-max-shards", feeds.DefaultKinesisMaxShards, "kinesis feed: most shards read at once (each has a publisher)")

	fs.StringVar(&af.sqsQueueURL, "sqs-queue-url", "", "sqs feed: URL of the queue")
	af.sqsAWS.register(fs, "sqs")
	fs.DurationVar(&af.sqsWait, "sqs-wait", feeds.DefaultSQSWait, "sqs feed: long-polling wait of a ReceiveMessage (at most 20s)")
	fs.DurationVar(&af.sqsVisib, "sqs-visibility", feeds.DefaultSQSVisibility, "sqs feed: visibility timeout of received messages; extended while a batch is not yet durable")
	fs.IntVar(&af.sqsBatch, "sqs-batch", feeds.DefaultSQSBatch, "sqs feed: messages per ReceiveMessage (1..10)")
	fs.IntVar(&af.sqsPolls, "sqs-pollers", 1, "sqs feed: concurrent receivers, each with its own publisher (1..64)")
}

// buildAWSFeed builds the kinesis or sqs feed from the flags.
func buildAWSFeed(name string, f *runFlags) (feeds.Feed, int, error) {
	af := &f.feeds.aws
	switch name {
	case feedKinesis:
		if af.kinStream == "" {
			return nil, 0, usageError{errors.New("--feed kinesis needs --kinesis-stream")}
		}
		start, err := feeds.ParseKinesisStart(af.kinStart)
		if err != nil {
			return nil, 0, usageError{fmt.Errorf("--kinesis-start: %w", err)}
		}
		seqs := map[string]string{}
		for _, kv := range strings.Split(af.kinStartSeq, ",") {
			if kv = strings.TrimSpace(kv); kv == "" {
				continue
			}
			shard, seq, ok := strings.Cut(kv, "=")
			if !ok || shard == "" || seq == "" {
				return nil, 0, usageError{fmt.Errorf("--kinesis-start-seq: %q is not SHARD=SEQUENCE_NUMBER", kv)}
			}
			seqs[shard] = seq
		}
		if af.kinLimit < 1 || af.kinLimit > feeds.MaxKinesisLimit {
			return nil, 0, usageError{fmt.Errorf("--kinesis-limit: %d outside 1..%d", af.kinLimit, feeds.MaxKinesisLimit)}
		}
		stateDir := af.kinStateDir
		if stateDir == "" {
			stateDir = f.durable.walDir
		}
		k, err := feeds.NewKinesisFeed(feeds.KinesisConfig{Stream: af.kinStream, AWS: af.kinAWS.options(), Start: start,
			StartSequence: seqs, StateDir: stateDir, Limit: int32(af.kinLimit), PollInterval: af.kinPoll,
			MaxShards: af.kinMaxShards, Backoff: feeds.Backoff{Max: 5 * time.Second}})
		if err != nil {
			return nil, 0, usageError{err}
		}
		return offsetFeed{k}, af.kinMaxShards, nil
	case feedSQS:
		return buildSQS(af)
	}
	return nil, 0, fmt.Errorf("unknown AWS feed %q", name)
}

// describeAWSFeed is the start-up line's part for an AWS feed ("" if name
// is not one).
func describeAWSFeed(name string, f *runFlags) string {
	af := &f.feeds.aws
	switch name {
	case feedKinesis:
		return fmt.Sprintf("kinesis feed %s (%s) from %s", af.kinStream, af.kinAWS.options(), strings.ToLower(af.kinStart))
	case feedSQS:
		return fmt.Sprintf("sqs feed %s (%s)", af.sqsQueueURL, af.sqsAWS.options())
	}
	return ""
}

// offsetFeed runs a feed that numbers its records itself (Kinesis) with
// the engine's restored offsets: the Publishers it gets also implement
// feeds.SourceOffsets.
type offsetFeed struct{ *feeds.KinesisFeed }

func (o offsetFeed) Run(ctx context.Context, pubs feeds.Publishers) error {
	if fh, ok := pubs.(*feedhost.Publishers); ok {
		pubs = enginePublishers{fh}
	}
	return o.KinesisFeed.Run(ctx, pubs)
}

func (o offsetFeed) statusLine() string {
	st := o.Stats()
	return fmt.Sprintf(" | kinesis records %d rej %d shards %d done %d throttled %d", st.Records, st.Rejected, st.ShardsStarted, st.ShardsDone, st.Throttled)
}

type enginePublishers struct{ *feedhost.Publishers }

func (p enginePublishers) SourceOffset(name string) (uint64, bool) { return p.E.SourceOffset(name) }

func buildSQS(af *awsFeedFlags) (feeds.Feed, int, error) {
	if af.sqsQueueURL == "" {
		return nil, 0, usageError{errors.New("--feed sqs needs --sqs-queue-url")}
	}
	if af.sqsWait%time.Second != 0 || af.sqsVisib%time.Second != 0 {
		return nil, 0, usageError{errors.New("--sqs-wait and --sqs-visibility are whole seconds")}
	}
	f, err := feeds.NewSQSFeed(feeds.SQSConfig{QueueURL: af.sqsQueueURL, AWS: af.sqsAWS.options(), Wait: af.sqsWait,
		Visibility: af.sqsVisib, BatchMax: af.sqsBatch, Pollers: af.sqsPolls, Backoff: feeds.Backoff{Max: 5 * time.Second}})
	if err != nil {
		return nil, 0, usageError{err}
	}
	return sqsFeed{f}, af.sqsPolls, nil
}

type sqsFeed struct{ *feeds.SQSFeed }

func (s sqsFeed) statusLine() string {
	st := s.Stats()
	return fmt.Sprintf(" | sqs msgs %d deleted %d rej %d dup %d redelivered %d", st.Received, st.Deleted, st.Rejected, st.Duplicates, st.Redelivered)
}
