package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// These tests talk to the NATS server with JetStream on 127.0.0.1:4222
// (make services). The scale-out group's end-to-end tests (three members,
// kill -9, a network partition, on a three-server cluster) are in
// cmd/qstream/group_test.go.

const testURL = "nats://127.0.0.1:4222"

func testJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(testURL, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server with JetStream is not reachable at %s (%v): start it with `make services` (scripts/services.sh)", testURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testGroup(t *testing.T, js jetstream.JetStream) string {
	g := fmt.Sprintf("t%d", time.Now().UnixNano()%1_000_000_000)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range []string{"KV_" + LeaseBucket(g), "KV_" + StateBucket(g), "OBJ_" + StateBucket(g)} {
			_ = js.DeleteStream(ctx, s)
		}
	})
	return g
}

func TestAssignBalancedDeterministicSticky(t *testing.T) {
	members := []string{"a", "b", "c"}
	got := Assign(members, 16)
	if !slices.Equal(got, Assign(slices.Clone(members), 16)) {
		t.Fatal("Assign is not deterministic")
	}
	load := map[string]int{}
	for _, m := range got {
		load[m]++
	}
	for _, m := range members {
		if load[m] < 5 || load[m] > 6 {
			t.Errorf("member %s gets %d of 16 partitions, want 5 or 6: %v", m, load[m], load)
		}
	}
	// One member leaves: only its partitions move, and a bounded few
	// others to keep the load balanced.
	two := Assign([]string{"a", "c"}, 16)
	moved := 0
	for p := range 16 {
		if got[p] != "b" && two[p] != got[p] {
			moved++
		}
	}
	if moved > 3 {
		t.Errorf("%d partitions of the survivors moved when b left: %v -> %v", moved, got, two)
	}
	if slices.Contains(two, "b") || slices.Contains(two, "") {
		t.Errorf("assignment after b left: %v", two)
	}
	if out := Assign(nil, 4); !slices.Equal(out, []string{"", "", "", ""}) {
		t.Errorf("no members: %v", out)
	}
}

func TestFence(t *testing.T) {
	f := NewFence(7, time.Now().Add(50*time.Millisecond))
	if !f.Valid() || f.Epoch() != 7 || f.Remaining() <= 0 {
		t.Fatalf("new fence: valid %v epoch %d remaining %s", f.Valid(), f.Epoch(), f.Remaining())
	}
	time.Sleep(60 * time.Millisecond)
	if f.Valid() || f.Remaining() != 0 {
		t.Fatal("the fence is valid past its deadline")
	}
	g := NewFence(8, time.Now().Add(time.Hour))
	g.Revoke()
	if g.Valid() {
		t.Fatal("a revoked fence is valid")
	}
}

func TestConfigErrors(t *testing.T) {
	js := testJS(t)
	for _, c := range []Config{
		{Group: "", Instance: "a", Partitions: 1},
		{Group: "g.x", Instance: "a", Partitions: 1},
		{Group: "g", Instance: "a b", Partitions: 1},
		{Group: "g", Instance: "a", Partitions: 0},
		{Group: "g", Instance: "a", Partitions: 1, Lease: time.Millisecond},
	} {
		if _, err := Join(context.Background(), js, c, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
}

// recTasks records what a member asks of its tasks.
type recTasks struct {
	mu     sync.Mutex
	owned  map[int]*Fence
	events []string
}

func newRecTasks() *recTasks { return &recTasks{owned: map[int]*Fence{}} }

func (r *recTasks) Acquire(p int, epoch uint64, f *Fence) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owned[p] = f
	r.events = append(r.events, fmt.Sprintf("acquire %d", p))
	return nil
}

func (r *recTasks) Release(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owned, p)
	r.events = append(r.events, fmt.Sprintf("release %d", p))
}

func (r *recTasks) Revoke(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owned, p)
	r.events = append(r.events, fmt.Sprintf("revoke %d", p))
}

func (r *recTasks) held() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for p := range r.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMembersShareAndTakeOver: two members split 8 partitions, never
// holding one at the same time; when one stops, the other takes all after
// a clean release; when one dies (its context ends without leave: the
// claims stay until they expire), the survivor takes over after the lease.
func TestMembersShareAndTakeOver(t *testing.T) {
	js := testJS(t)
	g := testGroup(t, js)
	const parts = 8
	lease := time.Second
	tasks := map[string]*recTasks{"a": newRecTasks(), "b": newRecTasks()}
	members := map[string]*Member{}
	cancels := map[string]context.CancelFunc{}
	done := map[string]chan struct{}{}
	for _, name := range []string{"a", "b"} {
		m, err := Join(context.Background(), js, Config{Group: g, Instance: name, Partitions: parts, Lease: lease}, tasks[name])
		if err != nil {
			t.Fatal(err)
		}
		members[name] = m
		ctx, cancel := context.WithCancel(context.Background())
		cancels[name], done[name] = cancel, make(chan struct{})
		go func() { defer close(done[name]); m.Run(ctx) }()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	want := Assign([]string{"a", "b"}, parts)
	waitFor(t, 10*time.Second, "the partitions split as Assign says", func() bool {
		for p, owner := range want {
			if !slices.Contains(tasks[owner].held(), p) {
				return false
			}
		}
		return len(tasks["a"].held())+len(tasks["b"].held()) == parts
	})
	for _, p := range tasks["a"].held() {
		if slices.Contains(tasks["b"].held(), p) {
			t.Fatalf("partition %d held by both", p)
		}
	}
	// A third party cannot claim a held partition.
	kv, err := js.KeyValue(context.Background(), LeaseBucket(g))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(context.Background(), partitionKey(0), []byte(`{"owner":"x"}`)); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("claiming a held partition: %v, want ErrKeyExists", err)
	}
	// b leaves cleanly: it releases, a takes everything.
	cancels["b"]()
	<-done["b"]
	start := time.Now()
	waitFor(t, 5*time.Second, "a holds every partition after b left", func() bool { return len(tasks["a"].held()) == parts })
	if took := time.Since(start); took > lease {
		t.Errorf("takeover after a clean leave took %s, more than the lease %s", took, lease)
	}
	if st := members["b"].Stats(); st.Released == 0 || st.Revoked != 0 {
		t.Errorf("b's stats after leaving: %+v", st)
	}
	// a's epochs are all newer than b's claims were: each claim its own.
	seen := map[uint64]bool{}
	for _, f := range tasks["a"].owned {
		if seen[f.Epoch()] {
			t.Errorf("two partitions share epoch %d", f.Epoch())
		}
		seen[f.Epoch()] = true
	}
}

// TestFencedAfterLeaseWithoutRenewal: a member whose renewals stop (its
// server connection is gone) revokes its tasks once the fence passes, which
// is before the server lets another member claim.
func TestFencedAfterLeaseWithoutRenewal(t *testing.T) {
	js := testJS(t)
	g := testGroup(t, js)
	nc, err := nats.Connect(testURL)
	if err != nil {
		t.Fatal(err)
	}
	js2, _ := jetstream.New(nc)
	lease := time.Second
	rec := newRecTasks()
	m, err := Join(context.Background(), js2, Config{Group: g, Instance: "lonely", Partitions: 2, Lease: lease}, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	waitFor(t, 5*time.Second, "both partitions held", func() bool { return len(rec.held()) == 2 })
	rec.mu.Lock()
	f := rec.owned[0]
	rec.mu.Unlock()
	nc.Close() // the member can no longer renew
	cut := time.Now()
	waitFor(t, 3*time.Second, "the fence passes", func() bool { return !f.Valid() })
	fenced := time.Since(cut)
	waitFor(t, 3*time.Second, "the tasks revoked", func() bool { return len(rec.held()) == 0 })
	// Another member can claim only after the server expired the claim.
	kv, err := js.KeyValue(context.Background(), LeaseBucket(g))
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := kv.Create(context.Background(), partitionKey(0), []byte(`{"owner":"other"}`))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	claimable := time.Since(cut)
	if fenced >= claimable {
		t.Errorf("fenced %s after the cut, but another member could claim at %s: the fence must pass first", fenced, claimable)
	}
	t.Logf("fenced %s after the connection closed; claimable by another member %s after", fenced.Round(time.Millisecond), claimable.Round(time.Millisecond))
}

// TestStateSaveFencedByEpoch: checkpoints move the pointer forward only;
// an older epoch, or a passed fence, cannot overwrite a newer one.
// testState opens the state of a new group (replicas 1).
func testState(t *testing.T) (jetstream.JetStream, string, *State) {
	t.Helper()
	js := testJS(t)
	g := testGroup(t, js)
	s, err := OpenState(context.Background(), js, g, 1)
	if err != nil {
		t.Fatal(err)
	}
	return js, g, s
}

// TestStateReadsFromTheLeader: the state bucket's pointers are read through
// the stream's leader (STREAM.MSG.GET), never by a direct get that any
// replica may answer (State.get): the bucket has direct gets on, as
// CreateKeyValue makes it, and a subscriber on the API subjects sees every
// request of Load, Save and Refs. Also: a missing key, a deleted one.
func TestStateReadsFromTheLeader(t *testing.T) {
	js, g, s := testState(t)
	ctx := context.Background()
	st, err := js.Stream(ctx, "KV_"+StateBucket(g))
	if err != nil {
		t.Fatal(err)
	}
	if !st.CachedInfo().Config.AllowDirect {
		t.Fatal("the state bucket has no direct gets: this test no longer shows that reads avoid them")
	}
	nc, err := nats.Connect(testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	seen := map[string]int{}
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(m.Subject, "$JS.API.DIRECT.GET.KV_"+StateBucket(g)):
			seen["direct"]++ // (the object store's reads are direct gets of OBJ_...: not counted)
		case strings.HasPrefix(m.Subject, "$JS.API.STREAM.MSG.GET.KV_"+StateBucket(g)):
			seen["leader"]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := s.Load(ctx, 1); ok || err != nil {
		t.Fatalf("empty partition: ok %v err %v", ok, err)
	}
	live := NewFence(5, time.Now().Add(time.Hour))
	for _, floor := range []uint64{50, 60} {
		if _, err := s.Save(ctx, 1, 5, floor, "a", fmt.Appendf(nil, "state@%d", floor), live); err != nil {
			t.Fatal(err)
		}
	}
	if ref, data, ok, err := s.Load(ctx, 1); err != nil || !ok || string(data) != "state@60" || ref.Floor != 60 {
		t.Fatalf("load: %+v %q %v %v", ref, data, ok, err)
	}
	if refs, err := s.Refs(ctx, 4); err != nil || len(refs) != 1 || refs[1].Floor != 60 {
		t.Fatalf("refs: %v %v", refs, err)
	}
	if err := s.kv.Delete(ctx, partitionKey(1)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := s.Load(ctx, 1); ok || err != nil {
		t.Fatalf("deleted pointer: ok %v err %v", ok, err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the subscriber's last messages
	mu.Lock()
	defer mu.Unlock()
	// Load x3, Save x2, Refs x4 partitions.
	if seen["direct"] != 0 || seen["leader"] != 9 {
		t.Fatalf("pointer reads: %d direct gets (want none), %d through the leader (want 9)", seen["direct"], seen["leader"])
	}
}

func TestStateSaveFencedByEpoch(t *testing.T) {
	_, _, s := testState(t)
	ctx := context.Background()
	if _, _, ok, err := s.Load(ctx, 3); ok || err != nil {
		t.Fatalf("empty partition: ok %v err %v", ok, err)
	}
	live := NewFence(10, time.Now().Add(time.Hour))
	if _, err := s.Save(ctx, 3, 10, 100, "a", []byte("state@100"), live); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, 3, 10, 200, "a", []byte("state@200"), live); err != nil {
		t.Fatal(err)
	}
	ref, data, ok, err := s.Load(ctx, 3)
	if err != nil || !ok || string(data) != "state@200" || ref.Floor != 200 || ref.Epoch != 10 {
		t.Fatalf("load: %+v %q %v %v", ref, data, ok, err)
	}
	// The previous object is gone.
	if _, err := s.obj.GetBytes(ctx, "p3-e10-f100"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("the replaced checkpoint is still stored: %v", err)
	}
	// A new owner (epoch 20) saves; the old one (epoch 10) wakes up.
	if _, err := s.Save(ctx, 3, 20, 250, "b", []byte("state@250"), NewFence(20, time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, 3, 10, 300, "a", []byte("stale@300"), live); !errors.Is(err, ErrFenced) {
		t.Fatalf("an older epoch saved over a newer one: %v", err)
	}
	passed := NewFence(30, time.Now().Add(-time.Second))
	if _, err := s.Save(ctx, 3, 30, 400, "c", []byte("late@400"), passed); !errors.Is(err, ErrFenced) {
		t.Fatalf("a passed fence saved: %v", err)
	}
	ref, data, _, _ = s.Load(ctx, 3)
	if string(data) != "state@250" || ref.Epoch != 20 || ref.Owner != "b" {
		t.Fatalf("after the fenced saves: %+v %q", ref, data)
	}
	if _, err := s.obj.GetBytes(ctx, "p3-e10-f300"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("a fenced save left its object: %v", err)
	}
	refs, err := s.Refs(ctx, 8)
	if err != nil || len(refs) != 1 || refs[3].Floor != 250 {
		t.Fatalf("refs: %v %v", refs, err)
	}
}

// TestStateAPIPrefix: State.get sends its request under the API prefix the
// JetStream handle uses (jetstream.New, NewWithAPIPrefix, NewWithDomain).
func TestStateAPIPrefix(t *testing.T) {
	for _, tc := range []struct {
		opts jetstream.JetStreamOptions
		want string
	}{
		{jetstream.JetStreamOptions{}, "$JS.API."},
		{jetstream.JetStreamOptions{APIPrefix: "$JS.hub.API"}, "$JS.hub.API."},
		{jetstream.JetStreamOptions{APIPrefix: "$JS.hub.API."}, "$JS.hub.API."},
		{jetstream.JetStreamOptions{Domain: "leaf"}, "$JS.leaf.API."},
	} {
		if got := apiPrefix(tc.opts); got != tc.want {
			t.Errorf("apiPrefix(%+v) = %q, want %q", tc.opts, got, tc.want)
		}
	}
	// And as the library sets the options.
	nc, err := nats.Connect(testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "leaf")
	if err != nil {
		t.Fatal(err)
	}
	if got := apiPrefix(js.Options()); got != "$JS.leaf.API." {
		t.Errorf("NewWithDomain: apiPrefix = %q", got)
	}
	if js, err = jetstream.NewWithAPIPrefix(nc, "$JS.hub.API"); err != nil {
		t.Fatal(err)
	}
	if got := apiPrefix(js.Options()); got != "$JS.hub.API." {
		t.Errorf("NewWithAPIPrefix: apiPrefix = %q", got)
	}
}
