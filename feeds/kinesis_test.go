package feeds

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"qstream/codec"
	"qstream/internal/awstest"
)

// kinesisEnv is a stream on the local kinesalite (scripts/services.sh).
type kinesisEnv struct {
	t      testing.TB
	ep     string
	client *kinesis.Client
	stream string
}

func newKinesisEnv(t testing.TB, shards int32) *kinesisEnv {
	t.Helper()
	ep := awstest.Kinesis(t)
	awstest.SetEnv(t)
	ctx := context.Background()
	c, err := NewKinesisClient(ctx, AWSOptions{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	e := &kinesisEnv{t: t, ep: ep, client: c, stream: fmt.Sprintf("qs-%s-%d", sanitizeFileName(strings.ToLower(t.Name()[:min(len(t.Name()), 24)])), time.Now().UnixNano()%1e9)}
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(e.stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	e.waitActive()
	t.Cleanup(func() {
		c.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: aws.String(e.stream)})
	})
	return e
}

func (e *kinesisEnv) waitActive() {
	e.t.Helper()
	netWaitFor(e.t, 20*time.Second, "stream active", func() bool {
		out, err := e.client.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(e.stream)})
		return err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive
	})
}

// put puts trades i in [from, to) with PutRecords, symbol syms[i%len] as
// the partition key, price i+1, id "k-<i>", event time netRecTsBase+i. It
// returns the sequence number of each.
func (e *kinesisEnv) put(syms []string, from, to int) []string {
	e.t.Helper()
	var seqs []string
	for lo := from; lo < to; lo += 500 {
		hi := min(to, lo+500)
		var recs []types.PutRecordsRequestEntry
		for i := lo; i < hi; i++ {
			sym := syms[i%len(syms)]
			recs = append(recs, types.PutRecordsRequestEntry{PartitionKey: aws.String(sym), Data: kinesisTrade(sym, i)})
		}
		out, err := e.client.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String(e.stream), Records: recs})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			e.t.Fatalf("put records: %v (%d failed)", err, aws.ToInt32(out.FailedRecordCount))
		}
		for _, r := range out.Records {
			seqs = append(seqs, aws.ToString(r.SequenceNumber))
		}
	}
	return seqs
}

func kinesisTrade(sym string, i int) []byte {
	return fmt.Appendf(nil, `{"type":"trade","symbol":%q,"ts":%d,"price":%d,"volume":1,"id":"k-%d"}`, sym, netRecTsBase+int64(i), i+1, i)
}

func (e *kinesisEnv) config(dir string) KinesisConfig {
	return KinesisConfig{Stream: e.stream, AWS: AWSOptions{Endpoint: e.ep}, StateDir: dir, PollInterval: 20 * time.Millisecond,
		ListInterval: 100 * time.Millisecond}
}

// offsetRecorder is a netRecorder whose engine "restored" offsets.
type offsetRecorder struct {
	*netRecorder
	off map[string]uint64
}

func (r offsetRecorder) SourceOffset(name string) (uint64, bool) {
	o, ok := r.off[name]
	return o, ok
}

// runKinesis runs f on pubs until the returned stop is called.
func runKinesis(t *testing.T, f *KinesisFeed, pubs Publishers) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx, pubs) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				err = errors.New("Run did not return within 20s of the cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// checkKinesisEvents checks what rec got: each id in [from, to) once, per
// publisher Seq strictly increasing, per symbol prices increasing (a
// partition key's records keep their order).
func checkKinesisEvents(t *testing.T, rec *netRecorder, from, to int) map[uint64]int {
	t.Helper()
	rec.mu.Lock()
	pubs := append([]*netRecPub(nil), rec.pubs...)
	rec.mu.Unlock()
	seen := map[uint64]int{}
	lastPrice := map[codec.Symbol]float64{}
	for _, p := range pubs {
		p.mu.Lock()
		var last uint64
		for _, ev := range p.events {
			if ev.Seq <= last {
				t.Fatalf("%s: Seq %d after %d", p.name, ev.Seq, last)
			}
			last = ev.Seq
			if lp, ok := lastPrice[ev.Symbol]; ok && ev.Price <= lp && !strings.Contains(t.Name(), "Reshard") {
				t.Fatalf("%s: symbol %d price %v after %v", p.name, ev.Symbol, ev.Price, lp)
			}
			lastPrice[ev.Symbol] = ev.Price
			seen[ev.IDHash]++
		}
		p.mu.Unlock()
	}
	for i := from; i < to; i++ {
		if n := seen[codec.HashID(fmt.Appendf(nil, "k-%d", i))]; n != 1 {
			t.Fatalf("record k-%d published %d times", i, n)
		}
	}
	if len(seen) != to-from {
		t.Fatalf("%d distinct events, want %d", len(seen), to-from)
	}
	return seen
}

var kinesisSyms = []string{"AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "IBM"}

// Every record of every shard once, per shard in order, on a Publisher per
// shard whose Seq counts the shard's records; the position file holds the
// counts.
func TestKinesisReadsEveryShard(t *testing.T) {
	e := newKinesisEnv(t, 3)
	e.put(kinesisSyms, 0, 600)
	dir := t.TempDir()
	rec := newNetRecorder(t, true)
	f, err := NewKinesisFeed(e.config(dir))
	if err != nil {
		t.Fatal(err)
	}
	stop := runKinesis(t, f, rec)
	netWaitFor(t, 30*time.Second, "600 events", func() bool { return rec.snapshot().published == 600 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	checkKinesisEvents(t, rec, 0, 600)
	sn := rec.snapshot()
	if sn.pubs != 3 || sn.barriers == 0 {
		t.Fatalf("%d publishers (want 3), %d barriers", sn.pubs, sn.barriers)
	}
	var total uint64
	for _, p := range rec.pubs {
		if !strings.HasPrefix(p.name, "kinesis/shardId-") {
			t.Errorf("publisher name %q", p.name)
		}
		last := p.events[len(p.events)-1]
		pos := f.Positions()[strings.TrimPrefix(p.name, "kinesis/")]
		if pos.N != last.Seq || pos.Seq == "" || pos.Done || uint64(len(p.events)) != last.Seq {
			t.Errorf("%s: position %+v, last Seq %d of %d events", p.name, pos, last.Seq, len(p.events))
		}
		total += pos.N
	}
	if total != 600 {
		t.Errorf("positions count %d records, want 600", total)
	}
	// The file has them too.
	again := newKinesisPositions(dir, e.stream)
	if err := again.load(); err != nil || len(again.snapshot()) != 3 {
		t.Fatalf("position file: %v, %v", err, again.snapshot())
	}
	if st := f.Stats(); st.Records != 600 || st.Published != 600 || st.Rejected != 0 || st.ShardsStarted != 3 {
		t.Errorf("stats %+v", st)
	}
}

// A restart resumes right after the last durable record of each shard: from
// the position file when it is current, from the engine's offsets past a
// lagging file (records skipped, not published twice), and by counting from
// TRIM_HORIZON without a file.
func TestKinesisResume(t *testing.T) {
	e := newKinesisEnv(t, 2)
	e.put(kinesisSyms, 0, 200)
	dir := t.TempDir()
	rec1 := newNetRecorder(t, true)
	f1, _ := NewKinesisFeed(e.config(dir))
	stop := runKinesis(t, f1, rec1)
	netWaitFor(t, 30*time.Second, "200 events", func() bool { return rec1.snapshot().published == 200 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	offsets := map[string]uint64{}
	for _, p := range rec1.pubs {
		offsets[p.name] = p.events[len(p.events)-1].Seq
	}
	full := f1.Positions()
	e.put(kinesisSyms, 200, 300)

	for _, tc := range []struct {
		name string
		pos  func(id string, p KinesisPosition) (KinesisPosition, bool) // the file's entry
	}{
		{"current file", func(_ string, p KinesisPosition) (KinesisPosition, bool) { return p, true }},
		{"lagging file", func(_ string, p KinesisPosition) (KinesisPosition, bool) { return p, false }},
		{"no file", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.pos != nil {
				ps := newKinesisPositions(d, e.stream)
				for id, p := range full {
					q, current := tc.pos(id, p)
					if !current {
						// An older position: the file was written a batch
						// before the crash. Take the sequence number of a
						// record 30 before the end from the first run.
						for _, pub := range rec1.pubs {
							if pub.name == "kinesis/"+id {
								q = KinesisPosition{N: q.N - 30, Seq: kinesisSeqOf(t, e, id, q.N-30)}
							}
						}
					}
					ps.set(id, q, false)
				}
				if err := ps.flush(); err != nil {
					t.Fatal(err)
				}
			}
			rec := newNetRecorder(t, true)
			f, _ := NewKinesisFeed(e.config(d))
			stop := runKinesis(t, f, offsetRecorder{rec, offsets})
			netWaitFor(t, 30*time.Second, "100 new events", func() bool { return rec.snapshot().published >= 100 })
			time.Sleep(100 * time.Millisecond) // nothing more arrives
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			checkKinesisEvents(t, rec, 200, 300)
			for _, p := range rec.pubs {
				if len(p.events) > 0 && p.events[0].Seq != offsets[p.name]+1 {
					t.Errorf("%s resumed at Seq %d, want %d", p.name, p.events[0].Seq, offsets[p.name]+1)
				}
			}
			wantSkip := map[string]uint64{"current file": 0, "lagging file": 60, "no file": 200}[tc.name]
			if st := f.Stats(); st.Skipped != wantSkip {
				t.Errorf("skipped %d records, want %d", st.Skipped, wantSkip)
			}
		})
	}
}

// kinesisSeqOf returns the sequence number of the n-th record (1-based) of
// a shard, read from TRIM_HORIZON.
func kinesisSeqOf(t *testing.T, e *kinesisEnv, shard string, n uint64) string {
	t.Helper()
	ctx := context.Background()
	it, err := e.client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(e.stream), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(int32(n))})
	if err != nil || uint64(len(out.Records)) != n {
		t.Fatalf("get %d records: %v (%d)", n, err, len(out.Records))
	}
	return aws.ToString(out.Records[n-1].SequenceNumber)
}

// The start positions of a shard without a saved position.
func TestKinesisStartPositions(t *testing.T) {
	shard := "shardId-000000000000"
	for _, tc := range []struct {
		start    string
		from, to int // the records expected once 20..30 were put too
	}{
		{"trim_horizon", 0, 30},
		{"latest", 20, 30},
		{"at_sequence_number", 5, 30},
		{"after_sequence_number", 6, 30},
	} {
		t.Run(tc.start, func(t *testing.T) {
			e := newKinesisEnv(t, 1)
			seqs := e.put(kinesisSyms, 0, 20)
			start, err := ParseKinesisStart(tc.start)
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config("")
			cfg.Start = start
			cfg.StartSequence = map[string]string{shard: seqs[5]}
			rec := newNetRecorder(t, true)
			f, err := NewKinesisFeed(cfg)
			if err != nil {
				t.Fatal(err)
			}
			stop := runKinesis(t, f, rec)
			// LATEST is taken when the iterator is: wait until the shard's
			// reader polls before putting the newer records.
			netWaitFor(t, 20*time.Second, "the reader polling", func() bool { return f.Stats().ShardsStarted == 1 && rec.snapshot().pubs == 1 })
			time.Sleep(200 * time.Millisecond)
			e.put(kinesisSyms, 20, 30)
			netWaitFor(t, 20*time.Second, "the events", func() bool { return rec.snapshot().published >= int64(tc.to-tc.from) })
			time.Sleep(100 * time.Millisecond)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			sn := rec.snapshot()
			if sn.published != int64(tc.to-tc.from) {
				t.Fatalf("%d events, want %d", sn.published, tc.to-tc.from)
			}
			first := sn.events[0]
			if first.Price != float64(tc.from+1) {
				t.Errorf("first record %v, want %d", first.Price, tc.from)
			}
		})
	}
	if _, err := ParseKinesisStart("at_timestamp"); !errors.Is(err, ErrKinesisConfig) {
		t.Errorf("ParseKinesisStart(at_timestamp) = %v", err)
	}
}

// Splitting a shard: the children are read only once the parent is read to
// its end (and its Publisher closed); every record once; a key's records in
// order across the split.
func TestKinesisReshard(t *testing.T) {
	e := newKinesisEnv(t, 1)
	e.put(kinesisSyms, 0, 100)
	ctx := context.Background()
	half := new(big.Int).Lsh(big.NewInt(1), 127).String()
	if _, err := e.client.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(e.stream),
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(half)}); err != nil {
		t.Fatalf("split: %v", err)
	}
	e.waitActive()
	e.put(kinesisSyms, 100, 300)
	rec := &orderRecorder{netRecorder: newNetRecorder(t, true)}
	f, _ := NewKinesisFeed(e.config(t.TempDir()))
	stop := runKinesis(t, f, rec)
	netWaitFor(t, 30*time.Second, "300 events", func() bool { return rec.snapshot().published == 300 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkKinesisEvents(t, rec.netRecorder, 0, 300)
	if len(rec.created) != 3 || rec.created[0].name != "kinesis/shardId-000000000000" {
		t.Fatalf("publishers created %+v", rec.created)
	}
	for _, c := range rec.created[1:] {
		if c.published != 100 {
			t.Errorf("child %s created when %d records were published, want the parent's 100 first", c.name, c.published)
		}
	}
	if !rec.closed["kinesis/shardId-000000000000"] {
		t.Error("the parent's Publisher was not closed")
	}
	// Per symbol, prices in order over the publishers in creation order.
	last := map[codec.Symbol]float64{}
	for _, c := range rec.created {
		for _, p := range rec.pubs {
			if p.name != c.name {
				continue
			}
			for _, ev := range p.events {
				if ev.Price <= last[ev.Symbol] && last[ev.Symbol] != 0 {
					t.Fatalf("symbol %d: %v after %v", ev.Symbol, ev.Price, last[ev.Symbol])
				}
				last[ev.Symbol] = ev.Price
			}
		}
	}
	if st := f.Stats(); st.ShardsDone != 1 || st.ShardsStarted != 3 {
		t.Errorf("stats %+v", st)
	}
	if p := f.Positions()["shardId-000000000000"]; !p.Done || p.N != 100 {
		t.Errorf("parent position %+v", p)
	}
}

// orderRecorder records when each Publisher was created and which were
// closed.
type orderRecorder struct {
	*netRecorder
	mu      sync.Mutex
	created []struct {
		name      string
		published int64
	}
	closed map[string]bool
}

type closingPub struct {
	*netRecPub
	o *orderRecorder
}

func (c closingPub) Close() error {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if c.o.closed == nil {
		c.o.closed = map[string]bool{}
	}
	c.o.closed[c.name] = true
	return nil
}

func (o *orderRecorder) NewPublisher(name string) (Publisher, error) {
	n := o.snapshot().published
	o.mu.Lock()
	o.created = append(o.created, struct {
		name      string
		published int64
	}{name, n})
	o.mu.Unlock()
	p, _ := o.netRecorder.NewPublisher(name)
	return closingPub{p.(*netRecPub), o}, nil
}

// A record that does not parse goes to the dead-letter output with its
// record number; the others are published.
func TestKinesisRejects(t *testing.T) {
	e := newKinesisEnv(t, 1)
	ctx := context.Background()
	for i, data := range []string{string(kinesisTrade("AAPL", 0)), `{"type":"trade","symbol":`, string(kinesisTrade("AAPL", 1))} {
		if _, err := e.client.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(e.stream), PartitionKey: aws.String("k"), Data: []byte(data)}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	rec := newNetRecorder(t, true)
	f, _ := NewKinesisFeed(e.config(""))
	stop := runKinesis(t, f, rec)
	netWaitFor(t, 20*time.Second, "2 events and a reject", func() bool {
		sn := rec.snapshot()
		return sn.published == 2 && len(sn.rejects) == 1
	})
	stop()
	sn := rec.snapshot()
	if r := sn.rejects[0]; r.Pos.Offset != 2 || r.Raw != `{"type":"trade","symbol":` || !strings.Contains(r.Err, "kinesis: shard shardId-000000000000 record ") {
		t.Errorf("reject %+v", r)
	}
	if sn.events[1].Seq != 3 {
		t.Errorf("the record after the reject has Seq %d, want 3", sn.events[1].Seq)
	}
}

func TestKinesisThrottleErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}, true},
		{fmt.Errorf("get records: %w", &types.LimitExceededException{}), true},
		{&types.ExpiredIteratorException{}, false},
		{errors.New("connection refused"), false},
	} {
		if got := isKinesisThrottle(tc.err); got != tc.want {
			t.Errorf("isKinesisThrottle(%v) = %v", tc.err, got)
		}
	}
}

func TestKinesisConfigErrors(t *testing.T) {
	for _, cfg := range []KinesisConfig{
		{},
		{Stream: "s", Limit: MaxKinesisLimit + 1},
		{Stream: "s", Start: KinesisAtSequence},
		{Stream: "s", AWS: AWSOptions{Endpoint: "127.0.0.1:4567"}},
	} {
		if _, err := NewKinesisFeed(cfg); !errors.Is(err, ErrKinesisConfig) {
			t.Errorf("NewKinesisFeed(%+v) = %v", cfg, err)
		}
	}
}

// The feed's own per-record work (parse into the reused event, id hash,
// publish) allocates nothing once warm; what GetRecords allocates is the
// SDK's.
func TestKinesisPublishAllocs(t *testing.T) {
	rec := newNetRecorder(t, false)
	pub, _ := rec.NewPublisher("kinesis/shardId-000000000000")
	f, err := NewKinesisFeed(KinesisConfig{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	r := &kinesisShard{f: f, id: "shardId-000000000000", pub: pub, idBuf: make([]byte, 0, 128)}
	parser := f.cfg.NewParser(rec.Symbols())
	data := []byte(`{"type":"trade","symbol":"AAPL","ts":1700000000000000000,"price":189.5,"volume":3}`)
	record := types.Record{Data: data, SequenceNumber: aws.String("49590338271490256608559692538361571095921575989136588898"), PartitionKey: aws.String("AAPL")}
	var ev codec.Event
	r.lastSeq = aws.ToString(record.SequenceNumber)
	if err := r.publish(parser, &record, &ev); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		r.n++
		if err := r.publish(parser, &record, &ev); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per record", n)
	}
	if ev.IDHash != codec.HashID([]byte("shardId-000000000000/"+r.lastSeq)) || ev.Seq != r.n {
		t.Fatalf("IDHash %x Seq %d", ev.IDHash, ev.Seq)
	}
}
