package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"qstream/bench"
	"qstream/cluster"
	"qstream/feeds"
)

// TestGroupBench measures the scale-out group on this machine (`make
// bench-group`, BENCHMARKS.md "Scale-out group"): the throughput of 1, 2
// and 3 members over the same pre-published stream on the three-server
// cluster (each ratio against one member, measured in the same run), and
// the takeover after kill -9 (kill to every partition claimed again, and
// claim to the partition's task consuming). It is a benchmark harness, not
// a test: it runs only with QSTREAM_GROUP_BENCH=1 and writes
// bench/results-group.md.
func TestGroupBench(t *testing.T) {
	if os.Getenv("QSTREAM_GROUP_BENCH") == "" {
		t.Skip("a benchmark harness: QSTREAM_GROUP_BENCH=1 (make bench-group) runs it")
	}
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("QSTREAM_GROUP_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	type tp struct {
		members int
		secs    float64
		rate    float64
		owned   time.Duration
	}
	var rows []tp
	var base float64 // seconds the baseline took
	mach := bench.ThisMachine()
	for k := 1; k <= 3; k++ {
		e := newGroupEnv(t)
		last := e.prepublish(t, n)
		if k == 1 {
			base = e.drain(t, last)
			t.Logf("baseline: 16 ordered consumers in one process drain %d messages in %.2fs: %.0f msg/s", n, base, float64(n)/base)
		}
		var ms []*groupMember
		for i := 1; i <= k; i++ {
			m := e.member(fmt.Sprintf("b%d", i), e.urls, strings.Split(e.urls, ",")[0]+"?timeout=5s")
			for j, a := range m.args {
				if a == "--checkpoint-interval" {
					m.args[j+1] = "100ms"
				}
			}
			ms = append(ms, m)
		}
		start := time.Now()
		for _, m := range ms {
			m.start(t, e.bin)
		}
		var names []string
		for _, m := range ms {
			names = append(names, m.name)
		}
		e.waitOwned(t, names, nil, 60*time.Second)
		owned := time.Since(start)
		e.waitFloors(t, last, 10*time.Minute)
		secs := time.Since(start).Seconds()
		rows = append(rows, tp{k, secs, float64(n) / secs, owned})
		t.Logf("%d member(s): %d messages in %.2fs from the start (every partition owned after %s): %.0f msg/s", k, n, secs, owned.Round(time.Millisecond), float64(n)/secs)
		for _, m := range ms {
			m.stop(t)
		}
		e.remove() // the next environment's output stream takes the same subjects
	}

	// Takeover after kill -9, with three members under a steady load.
	e := newGroupEnv(t)
	names := []string{"i1", "i2", "i3"}
	var ms []*groupMember
	for _, name := range names {
		m := e.member(name, e.urls, strings.Split(e.urls, ",")[0]+"?timeout=5s")
		m.start(t, e.bin)
		ms = append(ms, m)
	}
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.publish(pubCtx, 2000) }()
	e.waitAssigned(t, names, 60*time.Second)
	var claimed []time.Duration
	kills := 6
	for k := range kills {
		time.Sleep(2 * time.Second)
		m := ms[k%3]
		killed, moved, live := e.killOne(m, names)
		e.waitOwned(t, live, moved, 30*time.Second)
		claimed = append(claimed, time.Since(killed))
		time.Sleep(time.Second)
		m.start(t, e.bin)
		e.waitAssigned(t, names, 30*time.Second)
	}
	stopPub()
	<-pubDone
	for _, m := range ms {
		m.stop(t)
	}
	// Claim to consuming: the "took" of every partition a task started,
	// from the members' logs.
	var load []time.Duration
	for _, m := range ms {
		load = append(load, m.loadTimes()...)
	}
	slices.Sort(claimed)
	slices.Sort(load)
	pct := func(d []time.Duration, q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }

	mach.SetEnd()
	var b strings.Builder
	fmt.Fprintf(&b, "# Scale-out group (`make bench-group`)\n\n%s\nNATS: a three-server cluster on loopback (scripts/nats-cluster.sh); the input stream, the group's buckets and the output stream replicated three times. Every member runs on the same two cores as the three servers and the publisher: the figures show the group's overhead and its failover, not scaling (that needs a core per member).\n\n", mach.Markdown())
	fmt.Fprintf(&b, "## Throughput\n\n%d trades pre-published on 16 partitions (48 symbols); members started together, timed from their start (processes, joining, claims and the rebalances while the others join: the owned column) to every partition's saved checkpoint floor at its last message (checkpoints every 100 ms). Operators: tumbling 1 s VWAP and count per symbol; outputs to the NATS sink (JetStream, de-duplicated by key).\n\n", n)
	fmt.Fprintf(&b, "Baseline, same run: the floor of the path, 16 ordered consumers (nats.go, one per partition) in one process that only count the messages: %.2f s, %.0f msgs/s.\n\n", base, float64(n)/base)
	fmt.Fprintf(&b, "| members | every partition owned after | seconds to the end | msgs/s | ÷ one member | ÷ baseline |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %.2f | %.0f | %.2fx | %.2fx |\n", r.members, r.owned.Round(time.Millisecond), r.secs, r.rate, r.rate/rows[0].rate, r.rate/(float64(n)/base))
	}
	fmt.Fprintf(&b, "\n## Takeover after kill -9 (lease %s)\n\n", groupLease)
	fmt.Fprintf(&b, "Three members under 2000 trades/s; one killed %d times (restarted after its partitions were taken).\n\n", kills)
	fmt.Fprintf(&b, "| measure | min | median | p90 | max | n |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| kill -> every partition claimed again | %s | %s | %s | %s | %d |\n", claimed[0].Round(time.Millisecond), pct(claimed, 0.5).Round(time.Millisecond), pct(claimed, 0.9).Round(time.Millisecond), claimed[len(claimed)-1].Round(time.Millisecond), len(claimed))
	fmt.Fprintf(&b, "| claim -> the partition's task consuming (checkpoint loaded, engine restored) | %s | %s | %s | %s | %d |\n", load[0].Round(time.Microsecond), pct(load, 0.5).Round(time.Microsecond), pct(load, 0.9).Round(time.Microsecond), load[len(load)-1].Round(time.Microsecond), len(load))
	out := filepath.Join("..", "..", "bench", "results-group.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

// prepublish sends n trades as fast as JetStream takes them and returns
// the last stream sequence of each partition.
func (e *groupEnv) prepublish(t *testing.T, n int) map[int]uint64 {
	t.Helper()
	last := map[int]uint64{}
	const window = 2048 // below nats.go's limit of outstanding async publishes (4000)
	futures := make([]jetstream.PubAckFuture, 0, window)
	parts := make([]int, 0, window)
	drain := func() {
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				last[parts[i]] = max(last[parts[i]], ack.Sequence)
			case err := <-f.Err():
				t.Fatalf("prepublish: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("prepublish: no ack in 60s")
			}
		}
		futures, parts = futures[:0], parts[:0]
	}
	for i := range n {
		sym := e.symbols[i%len(e.symbols)]
		p := feeds.JetStreamPartition([]byte(sym), groupPartitions)
		line := fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%d.%02d,"volume":%d}`, sym, groupBaseTs+int64(i)*int64(time.Millisecond), 100+i%37, i%100, 1+i%9)
		f, err := e.js.PublishAsync(feeds.JetStreamSubject(e.prefix, p), []byte(line), jetstream.WithMsgID("m-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		futures, parts = append(futures, f), append(parts, p)
		if len(futures) == window {
			drain()
		}
	}
	drain()
	return last
}

// drain reads every partition to its last message with an ordered
// consumer per partition, counting only, and returns the seconds it took:
// the baseline of the group's throughput.
func (e *groupEnv) drain(t *testing.T, last map[int]uint64) float64 {
	t.Helper()
	start := time.Now()
	errs := make(chan error, groupPartitions)
	for p := range groupPartitions {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			c, err := e.js.OrderedConsumer(ctx, e.stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{feeds.JetStreamSubject(e.prefix, p)}})
			if err != nil {
				errs <- err
				return
			}
			it, err := c.Messages(jetstream.PullMaxMessages(feeds.DefaultJetStreamBatchMax))
			if err != nil {
				errs <- err
				return
			}
			defer it.Stop()
			for {
				m, err := it.Next()
				if err != nil {
					errs <- err
					return
				}
				meta, err := m.Metadata()
				if err != nil {
					errs <- err
					return
				}
				if meta.Sequence.Stream >= last[p] {
					errs <- nil
					return
				}
			}
		}()
	}
	for range groupPartitions {
		if err := <-errs; err != nil {
			t.Fatalf("baseline drain: %v", err)
		}
	}
	return time.Since(start).Seconds()
}

// waitFloors waits until every partition's saved checkpoint floor reached
// its last message.
func (e *groupEnv) waitFloors(t *testing.T, last map[int]uint64, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	st, err := cluster.OpenState(ctx, e.js, e.group, e.replicas)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		refs, err := st.Refs(ctx, groupPartitions)
		if err == nil {
			done := true
			for p, l := range last {
				if refs[p].Floor < l {
					done = false
				}
			}
			if done {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint floors %v not at %v within %s", refs, last, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
