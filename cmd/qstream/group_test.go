package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qstream/cluster"
	"qstream/feeds"
	"qstream/internal/natscluster"
	"qstream/internal/netproxy"
)

// The scale-out group's tests (issue 14) run `qstream run --group` processes
// against the three-server NATS cluster on loopback
// (scripts/nats-cluster.sh; `make services` starts it): the input stream,
// the group's buckets and the output stream are all replicated three times.
// A publisher sends trades at a steady rate on 16 partitions, each
// acknowledged by JetStream; the members compute 1 s tumbling windows and
// write them to the NATS sink, whose output stream de-duplicates by output
// key (Nats-Msg-Id). The test then checks, on what the output stream holds:
// every window of every acknowledged message, equal to `qstream replay` of
// the same messages, and no window twice (under two keys).

const (
	groupPartitions = 16
	groupSymbols    = 48
	groupLease      = 2 * time.Second
	groupWindows    = "tumbling:1s:vwap,tumbling:1s:count"
	groupBaseTs     = int64(1_700_000_000_000_000_000)
)

// groupEnv is one test's stream, group and output stream.
type groupEnv struct {
	t        *testing.T
	bin      string
	urls     string // the cluster's client URLs, comma-separated
	replicas int
	nc       *nats.Conn
	js       jetstream.JetStream
	id       string
	stream   string
	prefix   string
	group    string
	out      string // the output stream
	dir      string
	symbols  []string

	mu    sync.Mutex
	acked []groupMsg // acknowledged messages, by stream sequence order
	sent  atomic.Int64
}

type groupMsg struct {
	seq  uint64
	line string
}

func newGroupEnv(t *testing.T) *groupEnv {
	t.Helper()
	urls, replicas := "", 3
	if u := os.Getenv("QSTREAM_GROUP_NATS"); u != "" {
		urls, replicas = u, 1 // a single server, for development
	} else {
		urls = natscluster.Require(t)
	}
	nc, err := nats.Connect(urls, nats.Timeout(5*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("the NATS cluster (%s) is not reachable: %v; start it with ./scripts/nats-cluster.sh start (or make services)", urls, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000_000)
	e := &groupEnv{t: t, replicas: replicas, bin: buildQstreamE2E(t), urls: urls, nc: nc, js: js, id: id,
		stream: "QSGRP_" + id, prefix: "qsgrp_" + id, group: "g" + id, out: "QSGRP_OUT_" + id, dir: t.TempDir()}
	tag := string(rune('A'+id[len(id)-1]-'0')) + string(rune('A'+id[len(id)-2]-'0'))
	for i := range groupSymbols {
		e.symbols = append(e.symbols, fmt.Sprintf("G%s%02d", tag, i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: e.stream, Subjects: []string{e.prefix + ".*"},
		Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatalf("input stream: %v", err)
	}
	// Only this test's run publishes windows on the cluster: the output
	// stream captures every window subject and drops a repeated key.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: e.out, Subjects: []string{"qstream.windows.*"},
		Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 5 * time.Minute}); err != nil {
		t.Fatalf("output stream: %v", err)
	}
	t.Cleanup(e.remove)
	return e
}

// remove deletes the environment's streams and buckets (idempotent).
func (e *groupEnv) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, s := range []string{e.stream, e.out, "KV_" + cluster.LeaseBucket(e.group), "KV_" + cluster.StateBucket(e.group), "OBJ_" + cluster.StateBucket(e.group)} {
		_ = e.js.DeleteStream(ctx, s)
	}
}

// publish sends trades at rate per second until ctx ends, each on its
// symbol's partition with increasing event time (1 ms apart), retrying a
// publish that fails (a leader election) with the same message id.
func (e *groupEnv) publish(ctx context.Context, rate int) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(1, rate/100)
	i := int(e.sent.Load())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range per {
			e.publishOne(i, groupBaseTs+int64(i)*int64(time.Millisecond), e.symbols[i%len(e.symbols)])
			i++
		}
	}
}

func (e *groupEnv) publishOne(i int, ts int64, sym string) {
	line := fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%d.%02d,"volume":%d}`, sym, ts, 100+i%37, i%100, 1+i%9)
	subj := feeds.JetStreamSubject(e.prefix, feeds.JetStreamPartition([]byte(sym), groupPartitions))
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ack, err := e.js.Publish(ctx, subj, []byte(line), jetstream.WithMsgID("m-"+strconv.Itoa(i)))
		cancel()
		if err == nil {
			if ack.Duplicate && attempt == 0 {
				e.t.Errorf("publish %d: the stream took message id m-%d for a duplicate", i, i)
			}
			// A duplicate on a retry: an earlier attempt was stored, its
			// acknowledgement lost (a leader election); the ack names
			// its sequence.
			e.mu.Lock()
			e.acked = append(e.acked, groupMsg{seq: ack.Sequence, line: line})
			e.mu.Unlock()
			e.sent.Add(1)
			return
		}
		if attempt > 400 { // 20 s: a leader election of the cluster takes 4-8 s
			e.t.Errorf("publish %d: %v", i, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flush sends one trade per partition far ahead in event time, so that each
// partition's watermark passes every window of the data before it.
func (e *groupEnv) flush() int64 {
	base := int(e.sent.Load())
	ts := groupBaseTs + int64(base+10_000)*int64(time.Millisecond)
	done := map[int]bool{}
	for _, sym := range e.symbols {
		p := feeds.JetStreamPartition([]byte(sym), groupPartitions)
		if !done[p] {
			done[p] = true
			e.publishOne(base+1_000_000+p, ts, sym) // a message id of its own
		}
	}
	if len(done) != groupPartitions {
		e.t.Fatalf("the symbols cover %d of %d partitions", len(done), groupPartitions)
	}
	return ts
}

// groupMember is one `qstream run --group` process.
type groupMember struct {
	*e2eInstance          // the process, its directory and its current stderr
	logs         []string // the stderr file of every life
}

func (e *groupEnv) member(name string, natsURL, sinkURL string, extra ...string) *groupMember {
	m := &groupMember{e2eInstance: &e2eInstance{name: name, dir: filepath.Join(e.dir, name)}}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	m.args = append([]string{"run", "--group", e.group, "--group-instance", name, "--group-lease", groupLease.String(), "--group-replicas", strconv.Itoa(e.replicas),
		"--feed", "jetstream", "--js-url", natsURL, "--js-stream", e.stream, "--js-subject-prefix", e.prefix,
		"--js-partitions", strconv.Itoa(groupPartitions), "--indicators", "", "--windows", groupWindows, "--emit", "windows",
		"--sink", sinkURL, "--wal-dir", filepath.Join(m.dir, "wal"), "--checkpoint-interval", "500ms", "--http", "", "--status-interval", "1s"}, extra...)
	return m
}

func (m *groupMember) start(t *testing.T, bin string) {
	t.Helper()
	m.e2eInstance.start(t, bin)
	m.logs = append(m.logs, m.e2eInstance.stderr)
}

func (m *groupMember) kill() {
	m.cmd.Process.Kill()
	m.cmd.Wait()
}

// stop sends SIGTERM: the member leaves the group (its partitions handed
// over with a last checkpoint) and exits 0.
func (m *groupMember) stop(t *testing.T) {
	t.Helper()
	if out, err := m.e2eInstance.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("%s: exit after SIGTERM: %v\n%s", m.name, err, tail(out, 2000))
	}
}

func (m *groupMember) lastLog() string {
	b, _ := os.ReadFile(m.logs[len(m.logs)-1])
	return string(b)
}

// killOne SIGKILLs m and returns when, the partitions it held with their
// claim revisions (a new claim has a higher one), and the members left.
func (e *groupEnv) killOne(m *groupMember, names []string) (killed time.Time, moved map[int]uint64, live []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	owners, revs := e.claims(ctx)
	cancel()
	moved = map[int]uint64{}
	for p, o := range owners {
		if o == m.name {
			moved[p] = revs[p]
		}
	}
	m.kill()
	for _, n := range names {
		if n != m.name {
			live = append(live, n)
		}
	}
	return time.Now(), moved, live
}

// keepLogs shows the members' last logs when t failed, and copies every
// life's log to $QSTREAM_GROUP_LOGS when it is set.
func keepLogs(t *testing.T, members []*groupMember) {
	for _, m := range members {
		if t.Failed() {
			t.Logf("%s last log:\n%s", m.name, tail(m.lastLog(), 3000))
		}
		if d := os.Getenv("QSTREAM_GROUP_LOGS"); d != "" {
			for i, l := range m.logs {
				b, _ := os.ReadFile(l)
				os.WriteFile(filepath.Join(d, fmt.Sprintf("%s.%s.%d.log", t.Name(), m.name, i+1)), b, 0o644)
			}
		}
	}
}

// claims returns the lease bucket's partition keys: owner and revision.
func (e *groupEnv) claims(ctx context.Context) (map[int]string, map[int]uint64) {
	kv, err := e.js.KeyValue(ctx, cluster.LeaseBucket(e.group))
	if err != nil {
		return nil, nil
	}
	owners, revs := map[int]string{}, map[int]uint64{}
	for p := range groupPartitions {
		ent, err := kv.Get(ctx, "p."+strconv.Itoa(p))
		if err != nil {
			continue
		}
		var v struct{ Owner string }
		json.Unmarshal(ent.Value(), &v)
		owners[p], revs[p] = v.Owner, ent.Revision()
	}
	return owners, revs
}

// waitOwned waits until every partition is claimed by one of live and, for
// the partitions in moved, claimed anew (a revision above before's): it
// returns how long that took.
func (e *groupEnv) waitOwned(t *testing.T, live []string, moved map[int]uint64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		owners, revs := e.claims(ctx)
		cancel()
		ok := len(owners) == groupPartitions
		for p := range groupPartitions {
			if !slices.Contains(live, owners[p]) {
				ok = false
			}
			if r, was := moved[p]; was && revs[p] <= r {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	owners, _ := e.claims(context.Background())
	t.Fatalf("partitions not all owned by %v within %s: %v", live, within, owners)
	return 0
}

// waitAssigned waits until every partition is held by the member the
// assignment over live gives it (the group has settled).
func (e *groupEnv) waitAssigned(t *testing.T, live []string, within time.Duration) {
	t.Helper()
	want := cluster.Assign(live, groupPartitions)
	start := time.Now()
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		owners, _ := e.claims(ctx)
		cancel()
		ok := true
		for p := range groupPartitions {
			if owners[p] != want[p] {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	owners, _ := e.claims(context.Background())
	t.Fatalf("the group did not settle on %v within %s: %v", want, within, owners)
}

// windowRec is one window result.
type windowRec struct {
	Window string   `json:"window"`
	Symbol string   `json:"symbol"`
	Start  int64    `json:"start"`
	End    int64    `json:"end"`
	Count  uint64   `json:"count"`
	Value  *float64 `json:"value"`
}

func (w windowRec) id() string { return fmt.Sprintf("%s|%s|%d", w.Window, w.Symbol, w.Start) }

// outputs reads the whole output stream: each window with the ids (keys)
// it was stored under, and the stored messages' origin headers and times.
type storedWindow struct {
	rec    windowRec
	key    string
	origin string
	at     time.Time
}

func (e *groupEnv) outputs(t *testing.T) []storedWindow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, e.out)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Msgs
	c, err := e.js.OrderedConsumer(ctx, e.out, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []storedWindow
	for uint64(len(out)) < n {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var w windowRec
			if err := json.Unmarshal(m.Data(), &w); err != nil {
				t.Fatalf("output %q: %v", m.Data(), err)
			}
			meta, _ := m.Metadata()
			out = append(out, storedWindow{rec: w, key: m.Headers().Get(jetstream.MsgIDHeader), origin: m.Headers().Get("Qstream-Origin"), at: meta.Timestamp})
		}
		if got == 0 {
			t.Fatalf("read %d of the output stream's %d messages", len(out), n)
		}
	}
	return out
}

// expected runs `qstream replay` over the acknowledged messages in stream
// order and returns its windows that end at or before flushTs.
func (e *groupEnv) expected(t *testing.T, flushTs int64) map[string]windowRec {
	t.Helper()
	e.mu.Lock()
	msgs := slices.Clone(e.acked)
	e.mu.Unlock()
	slices.SortFunc(msgs, func(a, b groupMsg) int { return int(a.seq) - int(b.seq) })
	in := filepath.Join(e.dir, "acked.jsonl")
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(e.bin, "replay", "--input", in, "--format", "jsonl", "--indicators", "", "--windows", groupWindows, "--emit", "windows").Output()
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	want := map[string]windowRec{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var w windowRec
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatalf("replay output %q: %v", sc.Bytes(), err)
		}
		if w.End <= flushTs {
			want[w.id()] = w
		}
	}
	return want
}

// check compares the output stream with the replay: every expected window
// once, with the same count and value, and nothing else before flushTs.
func (e *groupEnv) check(t *testing.T, flushTs int64, want map[string]windowRec) []storedWindow {
	t.Helper()
	var got []storedWindow
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = e.outputs(t)
		n := 0
		for _, w := range got {
			if w.rec.End <= flushTs {
				n++
			}
		}
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	seen := map[string]string{} // window id → key
	keys := map[string]bool{}
	for _, w := range got {
		if keys[w.key] {
			t.Errorf("output key %s stored twice (JetStream's duplicate window should have absorbed it)", w.key)
		}
		keys[w.key] = true
		if w.rec.End > flushTs {
			continue
		}
		id := w.rec.id()
		if k, dup := seen[id]; dup {
			t.Errorf("window %s stored twice, under keys %s and %s", id, k, w.key)
			continue
		}
		seen[id] = w.key
		x, ok := want[id]
		switch {
		case !ok:
			t.Errorf("window %s in the output but not in the replay of the acknowledged messages", id)
		case x.Count != w.rec.Count || !sameValue(x.Value, w.rec.Value):
			t.Errorf("window %s: count %d value %v, the replay has count %d value %v", id, w.rec.Count, fv(w.rec.Value), x.Count, fv(x.Value))
		}
	}
	missing := 0
	for id := range want {
		if _, ok := seen[id]; !ok {
			if missing < 10 {
				t.Errorf("window %s of the replay is missing from the output", id)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d windows missing", missing, len(want))
	}
	t.Logf("%d windows checked against the replay of %d acknowledged messages; %d outputs stored", len(want), len(e.acked), len(got))
	return got
}

func sameValue(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b || math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*a))
}

func fv(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

// TestGroupKillNine: three members over 16 partitions; one of them, at
// random, is killed with SIGKILL at a random moment ten times (more with
// QSTREAM_GROUP_KILLS: make crash-test) and restarted
// after a random pause (sometimes within the lease, so it takes its own
// partitions back, sometimes after, so the survivors take them over and hand
// them back when it returns). Each time every partition must be owned again
// within lease + 2 s; at the end the output stream must hold every window of
// the acknowledged messages once, equal to the replay.
func TestGroupKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the group failover test takes about a minute")
	}
	e := newGroupEnv(t)
	sink := strings.Split(e.urls, ",")[0]
	names := []string{"i1", "i2", "i3"}
	var members []*groupMember
	for _, name := range names {
		m := e.member(name, e.urls, sink+"?timeout=5s")
		m.start(t, e.bin)
		members = append(members, m)
	}
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.publish(pubCtx, 2000) }()
	t.Cleanup(func() { keepLogs(t, members) })
	first := e.waitOwned(t, names, nil, 30*time.Second)
	t.Logf("all %d partitions owned %s after the start", groupPartitions, first.Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	bound := groupLease + 2*time.Second
	var takeovers []time.Duration
	kills := 10
	if n, err := strconv.Atoi(os.Getenv("QSTREAM_GROUP_KILLS")); err == nil && n > 0 {
		kills = n // make crash-test runs more
	}
	for k := range kills {
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		m := members[rng.IntN(len(members))]
		killed, moved, live := e.killOne(m, names)
		pause := time.Duration(rng.IntN(int(2 * groupLease)))
		if pause < groupLease {
			time.Sleep(pause)
			m.start(t, e.bin)
			live = names
		}
		e.waitOwned(t, live, moved, 30*time.Second)
		took := time.Since(killed)
		if len(moved) > 0 { // a member killed while it held nothing (mid-rebalance) has nothing to take over
			takeovers = append(takeovers, took)
		}
		t.Logf("kill %d: %s (held %d partitions) down %s; every partition owned again %s after the kill", k+1, m.name, len(moved), pause.Round(time.Millisecond), took.Round(time.Millisecond))
		if took > bound {
			t.Errorf("kill %d: partitions owned again %s after the kill, bound %s (lease + 2s)", k+1, took, bound)
		}
		if pause >= groupLease {
			m.start(t, e.bin)
			e.waitOwned(t, names, nil, 30*time.Second)
		}
	}
	stopPub()
	<-pubDone
	flushTs := e.flush()
	want := e.expected(t, flushTs)
	e.check(t, flushTs, want)
	if len(takeovers) == 0 {
		t.Fatal("no kill hit a member holding partitions")
	}
	slices.Sort(takeovers)
	t.Logf("takeover after kill -9 (kill to every partition owned again), %d kills of a member holding partitions: min %s median %s max %s (lease %s)", len(takeovers),
		takeovers[0].Round(time.Millisecond), takeovers[len(takeovers)/2].Round(time.Millisecond), takeovers[len(takeovers)-1].Round(time.Millisecond), groupLease)
	for _, m := range members {
		m.stop(t)
	}
	// Claim to consuming (checkpoint loaded, engine restored), from the
	// members' logs.
	var loads []time.Duration
	for _, m := range members {
		loads = append(loads, m.loadTimes()...)
	}
	slices.Sort(loads)
	if len(loads) == 0 {
		t.Fatal("no partition task start found in the logs")
	}
	t.Logf("claim to consuming, %d partition starts: median %s, max %s", len(loads), loads[len(loads)/2], loads[len(loads)-1])
	if loads[len(loads)-1] > 5*time.Second {
		t.Errorf("a partition took %s from its claim to consuming", loads[len(loads)-1])
	}
}

// loadTimes returns the "took" of every partition task start in the
// member's logs: from the claim to consuming.
func (m *groupMember) loadTimes() []time.Duration {
	var out []time.Duration
	for _, l := range m.logs {
		b, _ := os.ReadFile(l)
		for _, mm := range tookRE.FindAllStringSubmatch(string(b), -1) {
			if d, err := time.ParseDuration(strings.ReplaceAll(mm[1], "µ", "u")); err == nil {
				out = append(out, d)
			}
		}
	}
	return out
}

var tookRE = regexp.MustCompile(`msg="group: partition running".* took=([0-9.]+[a-zµ]+)`)

// TestGroupOneMember: one member owns every partition; the windows it writes
// equal the replay.
func TestGroupOneMember(t *testing.T) {
	e := newGroupEnv(t)
	m := e.member("solo", e.urls, strings.Split(e.urls, ",")[0]+"?timeout=5s", "--http", "127.0.0.1:0")
	m.start(t, e.bin)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", tail(m.lastLog(), 3000))
		}
	})
	e.waitOwned(t, []string{"solo"}, nil, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	e.publish(ctx, 2000)
	cancel()
	flushTs := e.flush()
	e.check(t, flushTs, e.expected(t, flushTs))
	// The status line and the metrics show the partitions owned.
	addr := regexp.MustCompile(`http: listening on (\S+)`).FindStringSubmatch(m.lastLog())
	if addr == nil {
		t.Fatal("no http address in the log")
	}
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"qstream_group_partitions_owned{group=\"" + e.group + "\",instance=\"solo\"} 16",
		"qstream_group_members{", "qstream_group_rebalances_total{", "qstream_group_checkpoints_saved_total{"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(m.lastLog(), "| members 1 | partitions 16 [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15] | rebalances 0") {
		t.Errorf("the status line does not show the 16 partitions owned:\n%s", tail(m.lastLog(), 600))
	}
	m.stop(t)
}

// claimLog polls the lease bucket and records who held each partition when.
type claimLog struct {
	mu   sync.Mutex
	hist map[int][]claimAt
}

type claimAt struct {
	at    time.Time
	owner string
}

func (e *groupEnv) watchClaims(ctx context.Context) *claimLog {
	l := &claimLog{hist: map[int][]claimAt{}}
	go func() {
		for ctx.Err() == nil {
			octx, cancel := context.WithTimeout(ctx, time.Second)
			owners, _ := e.claims(octx)
			cancel()
			now := time.Now()
			l.mu.Lock()
			for p := range groupPartitions {
				h := l.hist[p]
				if len(h) == 0 || h[len(h)-1].owner != owners[p] {
					l.hist[p] = append(h, claimAt{now, owners[p]})
				}
			}
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return l
}

// ownerAt is who held p at t ("" for nobody), as last seen before t.
func (l *claimLog) ownerAt(p int, t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	owner := ""
	for _, c := range l.hist[p] {
		if c.at.After(t) {
			break
		}
		owner = c.owner
	}
	return owner
}

// takenFrom returns, for each partition victim held at from, when another
// member first held it afterwards.
func (l *claimLog) takenFrom(victim string, from time.Time) map[int]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]time.Time{}
	for p, h := range l.hist {
		held := false
		for _, c := range h {
			if !c.at.After(from) {
				held = c.owner == victim
				continue
			}
			if held && c.owner != "" && c.owner != victim {
				out[p] = c.at
				break
			}
		}
	}
	return out
}

// fencingScenario runs three members, disrupts i3 (its connection to the
// cluster cut, or the process paused), and checks that i3 published nothing
// for a partition while another member held it, that every partition it
// held was taken over, and that the output equals the replay with no
// window twice.
func fencingScenario(t *testing.T, setup func(e *groupEnv, victim *groupMember) (disrupt func() (heal func()))) {
	e := newGroupEnv(t)
	direct := strings.Split(e.urls, ",")[0]
	var members []*groupMember
	for _, name := range []string{"i1", "i2", "i3"} {
		m := e.member(name, e.urls, direct+"?timeout=5s&origin="+name)
		members = append(members, m)
	}
	victim := members[2]
	t.Cleanup(func() { keepLogs(t, members) })
	disrupt := setup(e, victim) // may change the victim's arguments before it starts
	for _, m := range members {
		m.start(t, e.bin)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	claims := e.watchClaims(wctx)
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.publish(pubCtx, 2000) }()
	e.waitAssigned(t, []string{"i1", "i2", "i3"}, 30*time.Second)
	time.Sleep(2 * time.Second)
	cut := time.Now()
	healFn := disrupt()
	// The survivors take the victim's partitions over.
	e.waitOwned(t, []string{"i1", "i2"}, nil, 30*time.Second)
	took := time.Since(cut)
	time.Sleep(2 * groupLease)
	healFn()
	healed := time.Now()
	e.waitAssigned(t, []string{"i1", "i2", "i3"}, 30*time.Second)
	time.Sleep(time.Second)
	stopPub()
	<-pubDone
	flushTs := e.flush()
	got := e.check(t, flushTs, e.expected(t, flushTs))
	stopWatch()

	taken := claims.takenFrom("i3", cut)
	if len(taken) == 0 {
		t.Fatal("no partition of i3 was taken over")
	}
	late := 0
	for _, w := range got {
		if w.origin != "i3" {
			continue
		}
		p := feeds.JetStreamPartition([]byte(w.rec.Symbol), groupPartitions)
		if tk, ok := taken[p]; ok && w.at.After(tk) && w.at.Before(healed) {
			if owner := claims.ownerAt(p, w.at); owner != "i3" {
				late++
				if late < 5 {
					t.Errorf("i3 published %s (partition %d) at %s, after %s took the partition over at %s",
						w.rec.id(), p, w.at.Format("15:04:05.000"), owner, tk.Format("15:04:05.000"))
				}
			}
		}
	}
	if late > 0 {
		t.Errorf("%d outputs published by i3 after losing their partitions", late)
	}
	last := time.Time{}
	for _, w := range got {
		if w.origin == "i3" && w.at.Before(healed) && w.at.After(last) {
			last = w.at
		}
	}
	var first time.Time
	for _, tk := range taken {
		if first.IsZero() || tk.Before(first) {
			first = tk
		}
	}
	t.Logf("i3 held %d partitions; the survivors held them all %s after the disruption; i3's last output before healing %s, the first takeover %s",
		len(taken), took.Round(time.Millisecond), last.Format("15:04:05.000"), first.Format("15:04:05.000"))
	for _, m := range members {
		m.stop(t)
	}
}

// TestGroupNetworkPartition cuts one member (i3) off the NATS cluster: its
// client connections go through proxies that start dropping every byte. It
// can no longer renew its leases, so it stops publishing (its fence passes)
// before the server lets a survivor claim its partitions; the survivors
// take over, and after the network heals i3 gets partitions back. Its
// outputs go to a sink that stays reachable, so only the fence stops them.
func TestGroupNetworkPartition(t *testing.T) {
	fencingScenario(t, func(e *groupEnv, victim *groupMember) func() func() {
		var proxies []*netproxy.Proxy
		var urls []string
		for _, u := range natscluster.URLs() {
			px, err := netproxy.New("127.0.0.1:0", strings.TrimPrefix(u, "nats://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { px.Close() })
			proxies = append(proxies, px)
			urls = append(urls, "nats://"+px.Addr())
		}
		for i, a := range victim.args {
			if a == "--js-url" {
				victim.args[i+1] = strings.Join(urls, ",")
			}
		}
		return func() func() {
			for _, px := range proxies {
				px.Partition()
			}
			t.Logf("i3 cut off the cluster")
			return func() {
				for _, px := range proxies {
					px.Heal()
				}
				t.Logf("network healed")
			}
		}
	})
}

// TestGroupPausedOwnerFenced stops i3 with SIGSTOP for longer than its
// lease, as a long GC pause or a frozen VM would: the survivors take its
// partitions over; when it resumes, with outputs queued and input buffered,
// its fences have passed and it publishes none of them.
func TestGroupPausedOwnerFenced(t *testing.T) {
	fencingScenario(t, func(e *groupEnv, victim *groupMember) func() func() {
		return func() func() {
			victim.cmd.Process.Signal(syscall.SIGSTOP)
			t.Logf("i3 paused")
			return func() {
				victim.cmd.Process.Signal(syscall.SIGCONT)
				t.Logf("i3 resumed")
			}
		}
	})
}

// TestGroupSurvivesServerKill: while three members run, the NATS server
// leading the group's lease bucket (n2 or n3: the sink writes through n1) is
// killed with SIGKILL and restarted. The replicated stream, buckets and
// object store elect new leaders; claims that could not be renewed during
// the election are fenced and claimed again from the partitions'
// checkpoints. Every window of the acknowledged messages is in the output
// once, equal to the replay.
func TestGroupSurvivesServerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the server-kill test takes about a minute")
	}
	e := newGroupEnv(t)
	if e.replicas != 3 {
		t.Skip("QSTREAM_GROUP_NATS: a single server cannot lose one")
	}
	names := []string{"i1", "i2", "i3"}
	sink := strings.Split(e.urls, ",")[0]
	var members []*groupMember
	for _, name := range names {
		m := e.member(name, e.urls, sink+"?timeout=5s")
		m.start(t, e.bin)
		members = append(members, m)
	}
	t.Cleanup(func() { keepLogs(t, members) })
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.publish(pubCtx, 2000) }()
	e.waitAssigned(t, names, 30*time.Second)
	time.Sleep(2 * time.Second)
	victim := 2
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if s, err := e.js.Stream(ctx, "KV_"+cluster.LeaseBucket(e.group)); err == nil {
		if info, err := s.Info(ctx); err == nil && info.Cluster != nil {
			if i := natscluster.Index(info.Cluster.Leader); i > 1 {
				victim = i
			}
		}
	}
	cancel()
	natscluster.Kill(t, victim)
	killed := time.Now()
	t.Logf("killed NATS server %s (the lease bucket's leader, or a follower when n1 led it)", natscluster.Name(victim))
	time.Sleep(3 * groupLease)
	natscluster.Restart(t, victim)
	e.waitAssigned(t, names, 60*time.Second)
	t.Logf("the group settled again %s after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(time.Second)
	stopPub()
	<-pubDone
	flushTs := e.flush()
	e.check(t, flushTs, e.expected(t, flushTs))
	for _, m := range members {
		m.stop(t)
	}
}
