package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qstream/feeds"
)

// The JetStream must-show of issue #4, end to end with real processes and
// the real nats-server on 127.0.0.1:4222 (`make services` starts it; the
// test fails, never skips, without it):
//
// One stream with e2ePartitions partitions by symbol holds e2eMessages
// trades (one JSON tick each, with a Nats-Msg-Id). Two `qstream run --feed
// jetstream` processes own half of the partitions each and write one
// indicator output per trade (--output; its "seq" is the message's stream
// sequence), each with a WAL, checkpoints (every 300ms) and dead letters in
// a directory of its own. Instance B is killed with SIGKILL once it has
// output a fifth of its messages and started again with the same flags
// (the same WAL, checkpoints and output file); once the server shows every
// partition acknowledged to its end, both are stopped with SIGTERM.
//
// What "exactly once" means here and is asserted:
//
//   - Every message of the stream has its output in the union of the two
//     instances' output files, and exactly once: no message is lost and none
//     is output twice, although B died with messages fetched but not
//     acknowledged (redelivered to the new B) and messages in its WAL whose
//     outputs were cut or never written (recovery rewinds the output file to
//     the last checkpoint's mark and replays the WAL; the engine's dedup by
//     message id drops the redeliveries of messages the WAL already holds).
//   - The survivor A processes each of its messages once and sees no
//     redelivery.
//   - The restarted B resumes from its acknowledged position: the messages
//     its feed receives are exactly those of its partitions that were not
//     acknowledged when it was killed (the consumers' ack floors, read from
//     the server after the kill), never the acknowledged ones.
//
// Acknowledgement is durable only if `run` writes a WAL: without one,
// Barrier returns after the flush into the rings and a SIGKILL can lose an
// acknowledged message. The test therefore requires `qstream run` to have
// the WAL (issue #5) and fails, saying so, if its flags lack --wal-dir.

const (
	e2eNATSURL    = "nats://127.0.0.1:4222"
	e2eMessages   = 100_000
	e2ePartitions = 8
	e2eSymbols    = 64
	e2eAckWait    = 2 * time.Second
	e2eTimeout    = 120 * time.Second
)

var e2eSeq atomic.Int64

// buildQstreamE2E builds the qstream binary into a temporary directory.
func buildQstreamE2E(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qstream")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// e2eStream is the test's stream: which partition each published message
// (by stream sequence) went to.
type e2eStream struct {
	js      jetstream.JetStream
	name    string
	prefix  string
	part    []int    // part[seq] for seq in 1..e2eMessages
	lastSeq []uint64 // last stream sequence of each partition
}

func newE2EStream(t *testing.T) *e2eStream {
	t.Helper()
	nc, err := nats.Connect(e2eNATSURL, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server with JetStream is not reachable at %s (%v): start it with `make services` (scripts/services.sh) or `nats-server -js -a 127.0.0.1 -p 4222`", e2eNATSURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%d_%d", time.Now().UnixNano()%1_000_000_000, e2eSeq.Add(1))
	s := &e2eStream{js: js, name: "QSE2E_" + id, prefix: "qse2e_" + id}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := feeds.EnsureJetStreamStream(ctx, js, s.name, s.prefix); err != nil {
		t.Fatalf("%v (is JetStream enabled? nats-server needs -js)", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, s.name); err != nil {
			t.Errorf("deleting stream %s: %v", s.name, err)
		}
	})
	return s
}

// publish sends n trades over e2eSymbols symbols, each on its symbol's
// partition with the message id m-<i>, and records where each landed.
func (s *e2eStream) publish(t *testing.T, n int) {
	t.Helper()
	s.part = make([]int, n+1)
	s.lastSeq = make([]uint64, e2ePartitions)
	futures := make([]jetstream.PubAckFuture, n)
	parts := make([]int, n)
	var subj []byte
	for i := range n {
		sym := fmt.Sprintf("E%02d", i%e2eSymbols)
		parts[i] = feeds.JetStreamPartition([]byte(sym), e2ePartitions)
		subj = feeds.AppendJetStreamSubject(subj[:0], s.prefix, []byte(sym), e2ePartitions)
		msg := fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%d.%02d,"volume":%d}`,
			sym, 1_700_000_000_000_000_000+int64(i)*1_000, 100+i%37, i%100, 1+i%9)
		f, err := s.js.PublishAsync(string(subj), []byte(msg), jetstream.WithMsgID("m-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		futures[i] = f
	}
	select {
	case <-s.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("publishing did not complete within 60s")
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Sequence < 1 || ack.Sequence > uint64(n) || ack.Duplicate {
				t.Fatalf("message %d: ack %+v", i, ack)
			}
			s.part[ack.Sequence] = parts[i]
			s.lastSeq[parts[i]] = max(s.lastSeq[parts[i]], ack.Sequence)
		case err := <-f.Err():
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// share counts the messages of the partitions in owned, and of those the
// ones with a stream sequence above the partition's floor.
func (s *e2eStream) share(owned []int, floor map[int]uint64) (all, above int) {
	for seq := 1; seq < len(s.part); seq++ {
		p := s.part[seq]
		if slices.Contains(owned, p) {
			all++
			if uint64(seq) > floor[p] {
				above++
			}
		}
	}
	return all, above
}

// consumer returns the info of partition p's durable consumer.
func (s *e2eStream) consumer(t *testing.T, durable string, p int) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.js.Consumer(ctx, s.name, fmt.Sprintf("%s-p%d", durable, p))
	if err != nil {
		t.Fatalf("consumer %s-p%d: %v", durable, p, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// e2eInstance is one `qstream run` process of the test.
type e2eInstance struct {
	name   string
	dir    string // working directory: its local state (WAL, checkpoints) lives here
	out    string // --output file
	owned  []int
	args   []string
	cmd    *exec.Cmd
	stderr string // path of the current process's stderr
	lives  int
}

func (in *e2eInstance) start(t *testing.T, bin string) {
	t.Helper()
	in.lives++
	in.stderr = filepath.Join(in.dir, fmt.Sprintf("stderr.%d", in.lives))
	f, err := os.Create(in.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in.cmd = exec.Command(bin, in.args...)
	in.cmd.Dir = in.dir
	in.cmd.Stdout = f
	in.cmd.Stderr = f
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := in.cmd
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// stop sends sig and waits for the exit; it returns the process's stderr
// and its exit error.
func (in *e2eInstance) stop(t *testing.T, sig syscall.Signal) (string, error) {
	t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal: %v", in.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		in.cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit 60s after %v:\n%s", in.name, sig, in.stderrText(t))
	}
	return in.stderrText(t), err
}

func (in *e2eInstance) stderrText(t *testing.T) string {
	b, err := os.ReadFile(in.stderr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exited reports a process that ended by itself (a failure here).
func (in *e2eInstance) exited() bool {
	return in.cmd.ProcessState != nil || in.cmd.Process.Signal(syscall.Signal(0)) != nil
}

var jsSummaryRE = regexp.MustCompile(`qstream: feed jetstream: fetched=(\d+) published=(\d+) rejected=(\d+) redelivered=(\d+) duplicates=(\d+) acked=(\d+)`)

// jsSummary is the jetstream feed's summary line of a run's stderr.
type jsSummary struct{ fetched, published, rejected, redelivered, duplicates, acked int }

func parseJSSummary(t *testing.T, name, stderr string) jsSummary {
	t.Helper()
	m := jsSummaryRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("%s: no jetstream summary in its stderr:\n%s", name, stderr)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return jsSummary{n(1), n(2), n(3), n(4), n(5), n(6)}
}

func TestJetStreamTwoProcessesExactlyOnce(t *testing.T) {
	stream := newE2EStream(t)
	bin := buildQstreamE2E(t)
	var help strings.Builder
	cmd := exec.Command(bin, "run", "--help")
	cmd.Stderr = &help
	_ = cmd.Run()
	if !strings.Contains(help.String(), "-wal-dir") {
		t.Fatalf("`qstream run` has no WAL (--wal-dir): without it an acknowledgement follows the flush into the rings, not a durable write, so a SIGKILL can lose acknowledged messages and exactly-once cannot hold. This must-show needs issue #5's WAL wired into run.")
	}
	stream.publish(t, e2eMessages)

	root := t.TempDir()
	const durable = "e2e"
	newInstance := func(name string, owned []int) *e2eInstance {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		in := &e2eInstance{name: name, dir: dir, out: filepath.Join(dir, "out.jsonl"), owned: owned}
		var ownedText []string
		for _, p := range owned {
			ownedText = append(ownedText, strconv.Itoa(p))
		}
		in.args = []string{"run", "--feed", "jetstream", "--js-url", e2eNATSURL, "--js-stream", stream.name,
			"--js-subject-prefix", stream.prefix, "--js-partitions", strconv.Itoa(e2ePartitions),
			"--js-owned", strings.Join(ownedText, ","), "--js-durable", durable, "--js-ack-wait", e2eAckWait.String(),
			"--shards", "1", "--status-interval", "250ms", "--output", in.out,
			// Its own WAL, checkpoints (often, so that recovery rewinds the
			// output to a mark inside the file) and dead letters.
			"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "checkpoints"),
			"--checkpoint-interval", "300ms", "--dlq-dir", filepath.Join(dir, "dlq")}
		return in
	}
	a := newInstance("A", []int{0, 1, 2, 3})
	b := newInstance("B", []int{4, 5, 6, 7})
	shareA, _ := stream.share(a.owned, nil)
	shareB, _ := stream.share(b.owned, nil)
	if shareA == 0 || shareB == 0 || shareA+shareB != e2eMessages {
		t.Fatalf("partition shares %d + %d of %d messages", shareA, shareB, e2eMessages)
	}
	a.start(t, bin)
	b.start(t, bin)

	// Kill B once it has output a fifth of its share: mid-run, with
	// messages acknowledged and others in flight.
	deadline := time.Now().Add(e2eTimeout)
	for {
		raw, _ := os.ReadFile(b.out)
		if strings.Count(string(raw), "\n") >= shareB/5 {
			break
		}
		if b.exited() || time.Now().After(deadline) {
			t.Fatalf("B did not get a fifth of the way (%d lines):\n%s", strings.Count(string(raw), "\n"), b.stderrText(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if stderr, err := b.stop(t, syscall.SIGKILL); err == nil {
		t.Fatalf("B exited cleanly after SIGKILL:\n%s", stderr)
	}
	// The acknowledged position of B's partitions, as the server keeps it.
	// Acks go out in stream order per partition, so a dead consumer's
	// acknowledged messages are exactly those at or below its ack floor.
	// The server may still be processing acks B sent just before it died:
	// read until two reads 100ms apart agree.
	floor := map[int]uint64{}
	for stable := false; !stable; {
		time.Sleep(100 * time.Millisecond)
		stable = true
		for _, p := range b.owned {
			if f := stream.consumer(t, durable, p).AckFloor.Stream; f != floor[p] {
				floor[p], stable = f, false
			}
		}
	}
	_, unackedB := stream.share(b.owned, floor)
	if unackedB == 0 || unackedB == shareB {
		t.Fatalf("the kill was not mid-run: %d of B's %d messages unacknowledged (floors %v)", unackedB, shareB, floor)
	}
	killedOut, _ := os.ReadFile(b.out)
	t.Logf("B killed with %d of its %d messages acknowledged (ack floors %v) and %d output lines written",
		shareB-unackedB, shareB, floor, strings.Count(string(killedOut), "\n"))

	b.start(t, bin) // same directory: same WAL, checkpoints and output file

	// Wait until every partition is acknowledged to its end.
	for {
		done := true
		for p := range e2ePartitions {
			info := stream.consumer(t, durable, p)
			// A filtered consumer's ack floor may pass its subject's last
			// message (up to the stream's last sequence).
			if info.AckFloor.Stream < stream.lastSeq[p] || info.NumAckPending != 0 || info.NumPending != 0 {
				done = false
				break
			}
		}
		if done {
			break
		}
		if a.exited() || b.exited() || time.Now().After(deadline) {
			var st strings.Builder
			for p := range e2ePartitions {
				info := stream.consumer(t, durable, p)
				fmt.Fprintf(&st, "partition %d: last %d, ack floor %d, pending %d, ack pending %d, redelivered %d\n",
					p, stream.lastSeq[p], info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
			}
			t.Fatalf("the stream was not consumed in time:\n%s\nA:\n%s\nB:\n%s", st.String(), tail(a.stderrText(t), 6), tail(b.stderrText(t), 12))
		}
		time.Sleep(50 * time.Millisecond)
	}
	stderrA, errA := a.stop(t, syscall.SIGTERM)
	stderrB, errB := b.stop(t, syscall.SIGTERM)
	if errA != nil || errB != nil {
		t.Fatalf("exit after SIGTERM: A %v, B %v\nA:\n%s\nB:\n%s", errA, errB, stderrA, stderrB)
	}

	// Exactly once: every message's output, once, across both files.
	count := make([]int, e2eMessages+1)
	for _, in := range []*e2eInstance{a, b} {
		lines, _, torn := readOutputs(t, in.out)
		if torn {
			t.Errorf("%s: the output ends with a torn line after a clean stop", in.name)
		}
		for _, o := range lines {
			if o.Seq < 1 || o.Seq > e2eMessages {
				t.Fatalf("%s: output with seq %d outside the stream", in.name, o.Seq)
			}
			if !slices.Contains(in.owned, stream.part[o.Seq]) {
				t.Fatalf("%s: output for message %d of partition %d, which it does not own", in.name, o.Seq, stream.part[o.Seq])
			}
			count[o.Seq]++
		}
	}
	var lost, dup []int
	for seq := 1; seq <= e2eMessages; seq++ {
		switch {
		case count[seq] == 0:
			lost = append(lost, seq)
		case count[seq] > 1:
			dup = append(dup, seq)
		}
	}
	if len(lost) > 0 || len(dup) > 0 {
		t.Errorf("not exactly once: %d messages without output (first %v), %d output more than once (first %v)",
			len(lost), lost[:min(len(lost), 10)], len(dup), dup[:min(len(dup), 10)])
	}

	// The survivor saw each of its messages once.
	sa := parseJSSummary(t, "A", stderrA)
	if sa.fetched != shareA || sa.published != shareA || sa.redelivered != 0 || sa.acked != shareA {
		t.Errorf("A: %+v; want its %d messages fetched, published and acknowledged once", sa, shareA)
	}
	// The restarted B resumed from its acknowledged position: it received
	// exactly the messages that were not acknowledged at the kill.
	sb := parseJSSummary(t, "B", stderrB)
	if sb.fetched != unackedB || sb.acked != unackedB {
		t.Errorf("restarted B: %+v; want exactly the %d unacknowledged messages fetched and acknowledged (not the %d acknowledged before the kill)",
			sb, unackedB, shareB-unackedB)
	}
	t.Logf("A: %+v", sa)
	t.Logf("restarted B: %+v (of %d unacknowledged at the kill)", sb, unackedB)
	for _, line := range strings.Split(stderrB, "\n") {
		if strings.Contains(line, "recovered") || strings.Contains(line, "stopped after") {
			t.Logf("restarted B: %s", line)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
