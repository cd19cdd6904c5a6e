package natscluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connect connects to the cluster (all three URLs), reconnecting quickly
// and forever; closed at the end of the test.
func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return connectURLs(t, Require(t))
}

// connectTo connects to server i first (it reconnects to the others).
func connectTo(t *testing.T, i int) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	urls := []string{URL(i)}
	for j := 1; j <= Size; j++ {
		if j != i {
			urls = append(urls, URL(j))
		}
	}
	nc, js := connectURLs(t, strings.Join(urls, ","), nats.DontRandomize())
	if got := nc.ConnectedUrl(); got != URL(i) {
		t.Fatalf("connected to %s, want %s", got, URL(i))
	}
	return nc, js
}

func connectURLs(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(2 * time.Second), nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond), nats.ReconnectJitter(0, 0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// unique returns a stream or bucket name unique to this run.
func unique(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e12)
}

// killLeader kills the leader of the stream (as StreamInfo names it) and
// registers its restart in t.Cleanup (a no-op once the test restarted it).
func killLeader(t *testing.T, js jetstream.JetStream, stream string) int {
	t.Helper()
	i := leader(t, js, stream)
	t.Cleanup(func() {
		if !Healthy(i) {
			Restart(t, i)
		}
	})
	Kill(t, i)
	return i
}

// leader returns the number of the server that leads the stream.
func leader(t *testing.T, js jetstream.JetStream, stream string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || Index(info.Cluster.Leader) == 0 {
		t.Fatalf("stream %s: cluster info %+v names no leader of the cluster", stream, info.Cluster)
	}
	return Index(info.Cluster.Leader)
}

// publishRetry publishes data with msgID, retrying a failed publish (the
// stream has no leader during an election, or the acknowledgement was lost)
// with the same id every 50 ms at most, for at most 30 s (nats.go's own
// retries are off, so the first success is seen within 50 ms). It returns
// the acknowledgement and how many attempts failed.
func publishRetry(t *testing.T, js jetstream.JetStream, subject, msgID string, data []byte) (*jetstream.PubAck, int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	backoff := 10 * time.Millisecond
	for failed := 0; ; failed++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ack, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID), jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			return ack, failed
		}
		if failed == 0 {
			t.Logf("publish %s failed (retrying): %v", msgID, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: still failing after 30 s and %d attempts: %v", msgID, failed+1, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// waitCurrent waits until every replica of the stream, server Name(i)
// among them, is current with its leader.
func waitCurrent(t *testing.T, js jetstream.JetStream, stream string, i int) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < 30*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := js.Stream(ctx, stream)
		var si *jetstream.StreamInfo
		if err == nil {
			si, err = info.Info(ctx)
		}
		cancel()
		if err != nil {
			last = err.Error()
		} else if c := si.Cluster; c != nil {
			seen, current := c.Leader == Name(i), true
			for _, r := range c.Replicas {
				if r.Name == Name(i) {
					seen = seen || r.Current
				}
				current = current && r.Current && !r.Offline
			}
			if seen && current && len(c.Replicas) == Size-1 {
				return time.Since(start)
			}
			last = fmt.Sprintf("leader %s replicas %+v", c.Leader, c.Replicas)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("stream %s: %s did not catch up within 30 s: %s", stream, Name(i), last)
	return 0
}

func TestURLsAndIndex(t *testing.T) {
	if got := strings.Join(URLs(), ","); got != "nats://127.0.0.1:4241,nats://127.0.0.1:4242,nats://127.0.0.1:4243" {
		t.Fatalf("URLs() = %s", got)
	}
	for _, c := range []struct {
		name string
		want int
	}{{"n1", 1}, {"n3", 3}, {"n4", 0}, {"", 0}} {
		if got := Index(c.name); got != c.want {
			t.Errorf("Index(%q) = %d, want %d", c.name, got, c.want)
		}
	}
	if _, err := ScriptPath(); err != nil {
		t.Fatal(err)
	}
}

// TestRequireHoldsTheCluster: after Require, another process (here another
// open file) cannot take the cluster's lock; a subtest's Require does not
// wait for its parent; the lock is free once the test ends.
func TestRequireHoldsTheCluster(t *testing.T) {
	path := filepath.Join(Dir(), "lock")
	tryLock := func() error {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	t.Run("held", func(t *testing.T) {
		Require(t)
		if err := tryLock(); !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("lock while a test holds the cluster: %v, want EWOULDBLOCK", err)
		}
		t.Run("nested", func(t *testing.T) {
			done := make(chan struct{})
			go func() { defer close(done); Require(t) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("a subtest's Require waits for its parent")
			}
		})
	})
	if err := tryLock(); err != nil {
		t.Fatalf("lock after the holding test ended: %v", err)
	}
}

// TestLockServersSeesInheritedLock: a process called nats-server that
// holds the lock file open (inherited, as from flock(1)) is named, so
// Require fails at once with the remedy instead of waiting.
func TestLockServersSeesInheritedLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lock")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nats-server") // a stand-in: sleep under the server's name
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := lockServers(path); len(got) != 0 {
		t.Fatalf("lockServers before = %v", got)
	}
	cmd := exec.Command(bin, "30")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	want := fmt.Sprintf("%d (nats-server)", cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := lockServers(path)
		if len(got) == 1 && got[0] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockServers = %v, want [%s]", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamSurvivesLeaderKill: an R3 file stream keeps every acknowledged
// message, once and in order, across a SIGKILL of its leader in the middle
// of 2000 publishes; the killed server, restarted, catches up. The
// publisher is connected to the leader (it must reconnect as well) or to
// a follower.
func TestStreamSurvivesLeaderKill(t *testing.T) {
	Require(t)
	t.Run("client on the leader", func(t *testing.T) { testStreamLeaderKill(t, true) })
	t.Run("client on a follower", func(t *testing.T) { testStreamLeaderKill(t, false) })
}

func testStreamLeaderKill(t *testing.T, clientOnLeader bool) {
	_, js := connect(t)
	name := unique("NATSCLUSTER_T")
	subject := "natscluster.test." + name
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject},
		Replicas: Size, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Errorf("delete stream %s: %v", name, err)
		}
	})

	// The publisher: on the leader, or on the server after it.
	on := leader(t, js, name)
	if !clientOnLeader {
		on = on%Size + 1
	}
	_, pjs := connectTo(t, on)

	const n, killAt = 2000, 1000
	var killed int
	var killTime time.Time
	var failover time.Duration
	failedTotal, dups := 0, 0
	begin := time.Now()
	for i := range n {
		if i == killAt {
			killTime = time.Now()
			killed = killLeader(t, js, name)
		}
		ack, failed := publishRetry(t, pjs, subject, fmt.Sprint(i), fmt.Appendf(nil, "m-%d", i))
		failedTotal += failed
		if ack.Duplicate {
			dups++ // an earlier attempt was stored, its acknowledgement lost
		}
		if i == killAt {
			failover = time.Since(killTime)
		}
	}
	t.Logf("publisher on %s; killed leader %s before message %d: first PubAck %v after the SIGKILL (%d failed attempts in all, %d duplicate acks); %d publishes in %v",
		Name(on), Name(killed), killAt, failover.Round(time.Millisecond), failedTotal, dups, n, time.Since(begin).Round(time.Millisecond))

	// A retry whose first attempt was stored (its PubAck lost) must be
	// absorbed: the new leader's duplicate window knows the ids that the
	// old leader stored. Republish ids from before and after the kill.
	for _, i := range []int{0, killAt - 2, killAt - 1, killAt, killAt + 1, n - 1} {
		ack, _ := publishRetry(t, pjs, subject, fmt.Sprint(i), fmt.Appendf(nil, "m-%d", i))
		if !ack.Duplicate || ack.Sequence != uint64(i+1) {
			t.Fatalf("republished id %d after the failover: ack %+v, want a duplicate of sequence %d", i, ack, i+1)
		}
	}

	// Every wait below has its own bound; this context bounds what is left.
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	restartBegin := time.Now()
	Restart(t, killed)
	restarted := time.Since(restartBegin)
	catchUp := waitCurrent(t, js, name, killed)
	t.Logf("restarted %s: Restart returned in %v, every replica current %v later", Name(killed), restarted.Round(time.Millisecond), catchUp.Round(time.Millisecond))
	// The restarted server's own store holds every message.
	var local StreamState
	localBegin := time.Now()
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, ok, err := LocalStreamState(killed, name)
		if err == nil && ok && st.Msgs == n && st.FirstSeq == 1 && st.LastSeq == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's replica of %s: %+v (holds one: %v, %v) 30 s after the restart, want %d messages 1..%d", Name(killed), name, st, ok, err, n, n)
		}
		local = st
		time.Sleep(50 * time.Millisecond)
	}
	if local.Msgs != 0 {
		t.Logf("%s's replica was still catching up after Restart returned: %+v, complete %v later", Name(killed), local, time.Since(localBegin).Round(time.Millisecond))
	}

	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n || info.State.FirstSeq != 1 || info.State.LastSeq != n {
		t.Fatalf("stream state %+v, want %d messages at sequences 1..%d", info.State, n, n)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch after %d messages: %v", i, err)
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("m-%d", i); string(m.Data()) != want || md.Sequence.Stream != uint64(i+1) {
				t.Fatalf("message at sequence %d: %q, want %q at %d", md.Sequence.Stream, m.Data(), want, i+1)
			}
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != fmt.Sprint(i) {
				t.Fatalf("message %d: Nats-Msg-Id %q", i, id)
			}
			i++
			got++
		}
		if err := batch.Error(); err != nil || got == 0 {
			t.Fatalf("fetch after %d messages: %d messages, %v", i, got, err)
		}
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != n {
		t.Fatalf("after reading: %+v, %v", info, err)
	}
}

// TestKVSurvivesLeaderKill: an R3 key-value bucket keeps compare-and-set
// working across a SIGKILL of its stream's leader: Update with the last
// revision and Create of a new key succeed after the election, and stale
// revisions and existing keys are still refused.
func TestKVSurvivesLeaderKill(t *testing.T) {
	_, js := connect(t)
	bucket := unique("natscluster_kv")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Replicas: Size, Storage: jetstream.FileStorage, History: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := js.DeleteKeyValue(ctx, bucket); err != nil {
			t.Errorf("delete bucket %s: %v", bucket, err)
		}
	})
	rev, err := kv.Create(ctx, "lease.p0", []byte("owner-a:1"))
	if err != nil {
		t.Fatal(err)
	}
	for e := 2; e <= 10; e++ {
		if rev, err = kv.Update(ctx, "lease.p0", fmt.Appendf(nil, "owner-a:%d", e), rev); err != nil {
			t.Fatal(err)
		}
	}

	killTime := time.Now()
	killed := killLeader(t, js, "KV_"+bucket)
	// Update with the last revision, retried through the election. An
	// attempt whose reply was lost may have been applied: then the retry
	// fails as stale, and the entry shows our value.
	want := []byte("owner-b:11")
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		nrev, err := kv.Update(actx, "lease.p0", want, rev)
		acancel()
		if err == nil {
			rev = nrev
			t.Logf("killed leader %s of KV_%s: first Update %v after the SIGKILL (%d tries)", Name(killed), bucket, time.Since(killTime).Round(time.Millisecond), attempt)
			break
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			e, gerr := kv.Get(ctx, "lease.p0")
			if gerr == nil && string(e.Value()) == string(want) && e.Revision() > rev {
				rev = e.Revision()
				break
			}
			t.Fatalf("Update after the kill refused as stale (%v) and the entry is not ours: %v %v", err, e, gerr)
		}
		if attempt == 1 {
			t.Logf("Update failed (retrying): %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Update still failing 30 s after the kill (%d attempts): %v", attempt, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := kv.Update(ctx, "lease.p0", []byte("owner-c:12"), rev-1); err == nil {
		t.Fatal("Update with a stale revision succeeded after the election")
	}
	if _, err := kv.Create(ctx, "lease.p0", []byte("owner-c:12")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("Create of an existing key: %v, want ErrKeyExists", err)
	}
	if _, err := kv.Create(ctx, "lease.p1", []byte("owner-b:1")); err != nil {
		t.Fatalf("Create of a new key after the election: %v", err)
	}

	Restart(t, killed)
	waitCurrent(t, js, "KV_"+bucket, killed)
	if rev, err = kv.Update(ctx, "lease.p0", []byte("owner-b:12"), rev); err != nil {
		t.Fatalf("Update after the restart: %v", err)
	}
	// A KV bucket answers Get from any replica (direct get), and the
	// restarted one may still be catching up: it served revision 11 once,
	// right after the Update of 13 (CI, 2026-12-06). The compare-and-set
	// above went through the leader; the read must show it once the
	// replicas have it.
	var e jetstream.KeyValueEntry
	deadline = time.Now().Add(10 * time.Second)
	for {
		e, err = kv.Get(ctx, "lease.p0")
		if err == nil && string(e.Value()) == "owner-b:12" && e.Revision() == rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease.p0 = %v (err %v) 10 s after the Update, want owner-b:12 at revision %d", e, err, rev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
