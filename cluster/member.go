// Package cluster runs several qstream instances as one group over the
// partitions of a JetStream stream: membership and partition ownership in a
// JetStream key-value bucket with leases, a deterministic assignment over
// the live members, claims by compare-and-set, fencing by epoch and lease
// deadline, and operator state per partition in the JetStream object store
// (state.go), so that a partition moves to another host with its state.
//
// # Membership and leases
//
// The group's lease bucket ("qstream_<group>_leases") has a time to live
// equal to the lease: a key not written for a lease is removed by the
// server. Each member puts "m.<instance>" every Lease/4 (its heartbeat);
// the members of the group are the keys present. A partition p is owned by
// whoever holds the key "p.<p>": it is claimed with Create (which succeeds
// only while the key is absent) and renewed with Update at the revision the
// owner last wrote (compare-and-set), so two owners can never hold it at
// once. The revision of the claim is the partition's epoch: it grows with
// every claim of any partition, also across expiries.
//
// # Assignment
//
// Every member computes the same assignment from the same member list:
// rendezvous hashing with bounded load (partitions in order, each to the
// highest-ranked member that holds fewer than ceil(P/N)), so the load is
// balanced and a member joining or leaving moves few partitions. A member
// claims the partitions assigned to it that nobody holds, and releases
// (final checkpoint, then deletes the key) those it holds that are now
// assigned to another live member. A dead member's keys expire after the
// lease; the survivors then claim its partitions.
//
// # Fencing
//
// A member's right to act for a partition ends at its fence deadline: the
// time it sent its last successful renewal plus the lease, minus a margin
// (Lease/5). The server removes the claim no sooner than a lease after it
// received that renewal, which is after it was sent, so the deadline comes
// first on any clock that runs at the same rate. Tasks check the fence
// before they publish an output or a checkpoint (Fence.Valid), and the
// member revokes a task whose fence has passed or whose renewal was refused
// (another member holds the key). A paused process that wakes up after
// losing its lease finds its fence passed before it can write anything.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits and defaults.
const (
	DefaultLease   = 3 * time.Second
	MinLease       = 500 * time.Millisecond
	MaxPartitions  = 4096
	MaxInstanceLen = 64
)

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("cluster: invalid configuration")

// errReleased marks a claim whose task has released it (no renewal).
var errReleased = errors.New("cluster: released")

// ErrFenced is returned by a fenced operation after the fence has passed.
var ErrFenced = errors.New("cluster: fenced: the partition's lease is no longer held")

// Config configures a Member.
type Config struct {
	// Group names the group: 1..32 of [A-Za-z0-9_-]. Its buckets are
	// qstream_<group>_leases, qstream_<group>_state (KV) and the object
	// store qstream_<group>_state.
	Group string
	// Instance names this member, unique in the group and stable across
	// restarts (a restarted instance gets its partitions back).
	Instance string
	// Partitions is the partition count P of the stream (1..4096).
	Partitions int
	// Lease is the lease time (default 3s, at least 500ms).
	Lease time.Duration
	// Replicas of the buckets (1; 3 on a three-server cluster).
	Replicas int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// ValidName reports whether s is a valid group or instance name.
func ValidName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (c *Config) defaults() error {
	if !ValidName(c.Group, 32) {
		return fmt.Errorf("%w: group %q: want 1..32 of [A-Za-z0-9_-]", ErrConfig, c.Group)
	}
	if !ValidName(c.Instance, MaxInstanceLen) {
		return fmt.Errorf("%w: instance %q: want 1..%d of [A-Za-z0-9_-]", ErrConfig, c.Instance, MaxInstanceLen)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fmt.Errorf("%w: %d partitions: want 1..%d", ErrConfig, c.Partitions, MaxPartitions)
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Lease < MinLease {
		return fmt.Errorf("%w: lease %s: want at least %s", ErrConfig, c.Lease, MinLease)
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Tasks is what a Member drives: the work of each partition it owns. The
// calls come from the member's goroutine, one at a time.
type Tasks interface {
	// Acquire starts partition p, claimed at epoch; fence tells whether the
	// claim still holds. It should return quickly (the task loads its
	// state in the background); an error gives the claim up.
	Acquire(p int, epoch uint64, fence *Fence) error
	// Release stops partition p cleanly while the claim is still held
	// (the member keeps renewing it until Release returns): a last
	// checkpoint, then nothing more is published. The member deletes the
	// claim afterwards.
	Release(p int)
	// Revoke stops partition p at once, publishing nothing more: the claim
	// is lost (its fence passed, or another member holds it).
	Revoke(p int)
}

// monotonic clock in nanoseconds since the package loaded.
var monoBase = time.Now()

func mono() int64 { return int64(time.Since(monoBase)) }

// Fence tells a task whether its claim still holds (see the package
// comment). It is safe for concurrent use.
type Fence struct {
	epoch    uint64
	deadline atomic.Int64 // mono ns
	revoked  atomic.Bool
}

// NewFence returns a fence of epoch valid until deadline (for tests and
// single-process use).
func NewFence(epoch uint64, deadline time.Time) *Fence {
	f := &Fence{epoch: epoch}
	f.deadline.Store(mono() + int64(time.Until(deadline)))
	return f
}

// Epoch is the claim's epoch.
func (f *Fence) Epoch() uint64 { return f.epoch }

// Valid reports whether the claim holds now.
func (f *Fence) Valid() bool { return !f.revoked.Load() && mono() < f.deadline.Load() }

// Remaining is how long the claim holds from now (0 once it does not).
func (f *Fence) Remaining() time.Duration {
	if f.revoked.Load() {
		return 0
	}
	return max(0, time.Duration(f.deadline.Load()-mono()))
}

// Revoke ends the fence at once.
func (f *Fence) Revoke() { f.revoked.Store(true) }

func (f *Fence) extend(sentMono int64, lease time.Duration) {
	f.deadline.Store(sentMono + int64(lease-lease/5))
}

// claim is a partition this member holds.
type claim struct {
	p         int
	rev       uint64 // the revision it last wrote
	epoch     uint64
	fence     *Fence
	releasing bool
	released  chan struct{} // closed when Release returned
	dropped   bool          // Drop: the task failed; revoked at the next round
}

// Stats are a member's counters.
type Stats struct {
	Members     []string // the live members it saw last
	Owned       []int    // the partitions it holds
	Acquired    uint64   // claims made
	Released    uint64   // partitions handed over cleanly
	Revoked     uint64   // claims lost (fence passed or taken)
	Rebalances  uint64   // changes of the member list seen
	RenewErrors uint64
}

// Member is one instance of a group.
type Member struct {
	cfg    Config
	log    *slog.Logger
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream // the lease bucket's stream (listMembers)
	tasks  Tasks

	mu      sync.Mutex
	claims  map[int]*claim
	members []string
	st      Stats
}

// LeaseBucket is the name of a group's lease bucket.
func LeaseBucket(group string) string { return "qstream_" + group + "_leases" }

// Join creates (or opens) the group's lease bucket and returns the member;
// Run does the work.
func Join(ctx context.Context, js jetstream.JetStream, cfg Config, tasks Tasks) (*Member, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	kv, err := ensure(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, LeaseBucket(cfg.Group)) },
		func(ctx context.Context) (jetstream.KeyValue, error) {
			return js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      LeaseBucket(cfg.Group),
				Description: "qstream group members and partition claims (leases)",
				TTL:         cfg.Lease,
				History:     1,
				Storage:     jetstream.FileStorage,
				Replicas:    cfg.Replicas,
			})
		})
	if err != nil {
		return nil, fmt.Errorf("cluster: lease bucket: %w", err)
	}
	if st, err := kv.Status(ctx); err == nil && st.TTL() != cfg.Lease {
		return nil, fmt.Errorf("%w: the group's lease bucket has a lease of %s, this member %s: start every member with the same lease", ErrConfig, st.TTL(), cfg.Lease)
	}
	return &Member{js: js, cfg: cfg, log: cfg.Logger.With("group", cfg.Group, "instance", cfg.Instance), kv: kv, tasks: tasks, claims: map[int]*claim{}}, nil
}

// Stats returns a snapshot of the counters.
func (m *Member) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.Members = slices.Clone(m.members)
	st.Owned = make([]int, 0, len(m.claims))
	for p := range m.claims {
		st.Owned = append(st.Owned, p)
	}
	slices.Sort(st.Owned)
	return st
}

func partitionKey(p int) string { return "p." + strconv.Itoa(p) }

const memberPrefix = "m."

type claimValue struct {
	Owner string `json:"owner"`
	Epoch uint64 `json:"epoch,omitempty"`
}

// Run heartbeats, claims, renews and releases until ctx ends; then it
// releases every partition it holds (Release, then the claim's delete) and
// leaves the group. It returns ctx's end as nil.
func (m *Member) Run(ctx context.Context) error {
	tick := time.NewTicker(m.cfg.Lease / 4)
	defer tick.Stop()
	m.round(ctx)
	for {
		select {
		case <-ctx.Done():
			m.leave()
			return nil
		case <-tick.C:
			m.round(ctx)
		}
	}
}

// opTimeout bounds one request to the server.
func (m *Member) opTimeout() time.Duration { return m.cfg.Lease / 5 }

func (m *Member) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.opTimeout())
}

// round is one heartbeat: renew every claim, refresh the members, claim and
// release to follow the assignment, revoke what was lost.
func (m *Member) round(ctx context.Context) {
	m.renew(ctx)
	m.heartbeat(ctx)
	members, err := m.listMembers(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cluster: cannot list the members", "err", err)
		}
		return
	}
	m.mu.Lock()
	if !slices.Equal(members, m.members) {
		if m.members != nil {
			m.st.Rebalances++
		}
		m.log.Info("cluster: members", "members", strings.Join(members, ","))
		m.members = members
	}
	m.mu.Unlock()
	if !slices.Contains(members, m.cfg.Instance) {
		return // our heartbeat is not visible yet
	}
	want := Assign(members, m.cfg.Partitions)
	for p, owner := range want {
		m.mu.Lock()
		c := m.claims[p]
		m.mu.Unlock()
		switch {
		case owner == m.cfg.Instance && c == nil:
			m.tryClaim(ctx, p)
		case owner != m.cfg.Instance && c != nil && !c.releasing:
			m.release(c)
		}
	}
	m.finishReleases(ctx)
}

// Drop gives up the claim of p at the member's next round (its task
// failed): the claim is deleted, and the partition claimed again when the
// assignment still gives it to this member. It does not block.
func (m *Member) Drop(p int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.claims[p]; c != nil {
		c.dropped = true
		c.fence.Revoke()
	}
}

// renew extends every claim (compare-and-set at its revision) and revokes
// those whose fence passed or whose renewal was refused.
func (m *Member) renew(ctx context.Context) {
	m.mu.Lock()
	cs := make([]*claim, 0, len(m.claims))
	var dropped []*claim
	for _, c := range m.claims {
		if c.dropped {
			dropped = append(dropped, c)
		} else {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	for _, c := range dropped {
		m.revoke(c, true)
	}
	// A fence that passed is acted on before any request: when the server
	// is unreachable every request below takes its whole timeout.
	live := cs[:0]
	for _, c := range cs {
		if !c.fence.Valid() && !c.releasing {
			m.log.Warn("cluster: lease passed: fenced", "partition", c.p, "epoch", c.epoch)
			m.revoke(c, true)
			continue
		}
		live = append(live, c)
	}
	cs = live
	// The renewals go out together: one slow reply must not hold back
	// the others (each claim's fence counts from its own send).
	type result struct {
		rev  uint64
		sent int64
		err  error
	}
	res := make([]result, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		if c.releasing && !c.fence.Valid() {
			res[i].err = errReleased // the task is done with it; finishReleases deletes it
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			val, _ := json.Marshal(claimValue{Owner: m.cfg.Instance, Epoch: c.epoch})
			octx, cancel := m.op(ctx)
			defer cancel()
			res[i].sent = mono()
			res[i].rev, res[i].err = m.kv.Update(octx, partitionKey(c.p), val, c.rev)
		}()
	}
	wg.Wait()
	for i, c := range cs {
		rev, err := res[i].rev, res[i].err
		switch {
		case errors.Is(err, errReleased):
		case err == nil:
			c.rev = rev
			c.fence.extend(res[i].sent, m.cfg.Lease)
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists):
			m.log.Warn("cluster: claim lost: another member holds the partition or it expired", "partition", c.p, "epoch", c.epoch)
			m.revoke(c, false)
		default:
			m.mu.Lock()
			m.st.RenewErrors++
			m.mu.Unlock()
			if !c.fence.Valid() && !c.releasing {
				m.log.Warn("cluster: lease passed without renewal: fenced", "partition", c.p, "epoch", c.epoch, "err", err)
				m.revoke(c, true)
			}
		}
	}
}

// revoke stops a lost claim's task; with free, it also deletes the claim at
// its revision (harmless if someone else holds it: the delete is refused).
func (m *Member) revoke(c *claim, free bool) {
	c.fence.Revoke()
	m.mu.Lock()
	if m.claims[c.p] != c {
		m.mu.Unlock()
		return
	}
	delete(m.claims, c.p)
	m.st.Revoked++
	m.mu.Unlock()
	if !c.releasing { // else the task is stopping already, fenced now
		m.tasks.Revoke(c.p)
	}
	if free {
		ctx, cancel := context.WithTimeout(context.Background(), m.opTimeout())
		_ = m.kv.Delete(ctx, partitionKey(c.p), jetstream.LastRevision(c.rev))
		cancel()
	}
}

func (m *Member) heartbeat(ctx context.Context) {
	val, _ := json.Marshal(claimValue{Owner: m.cfg.Instance})
	octx, cancel := m.op(ctx)
	defer cancel()
	if _, err := m.kv.Put(octx, memberPrefix+m.cfg.Instance, val); err != nil && ctx.Err() == nil {
		m.log.Warn("cluster: heartbeat failed", "err", err)
	}
}

func (m *Member) listMembers(ctx context.Context) ([]string, error) {
	octx, cancel := m.op(ctx)
	defer cancel()
	// The key listers of nats.go need nats-server 2.10 (their consumers'
	// FilterSubjects); the bucket's stream info with a subject filter
	// lists the member keys on 2.9 too. A key whose last message is a
	// delete marker (a member that left) is not a member.
	if m.stream == nil {
		s, err := m.js.Stream(octx, "KV_"+LeaseBucket(m.cfg.Group))
		if err != nil {
			return nil, err
		}
		m.stream = s
	}
	pre := "$KV." + LeaseBucket(m.cfg.Group) + "." + memberPrefix
	info, err := m.stream.Info(octx, jetstream.WithSubjectFilter(pre+">"))
	if err != nil {
		return nil, err
	}
	var out []string
	for subj := range info.State.Subjects {
		name := strings.TrimPrefix(subj, pre)
		if _, err := m.kv.Get(octx, memberPrefix+name); err == nil {
			out = append(out, name)
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, err
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *Member) tryClaim(ctx context.Context, p int) {
	val, _ := json.Marshal(claimValue{Owner: m.cfg.Instance})
	sent := mono()
	octx, cancel := m.op(ctx)
	rev, err := m.kv.Create(octx, partitionKey(p), val)
	cancel()
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			m.log.Warn("cluster: claim failed", "partition", p, "err", err)
		}
		return // held by another member until it releases it or its lease expires
	}
	c := &claim{p: p, rev: rev, epoch: rev, fence: &Fence{epoch: rev}}
	c.fence.extend(sent, m.cfg.Lease)
	if err := m.tasks.Acquire(p, rev, c.fence); err != nil {
		m.log.Warn("cluster: the task did not start; the claim is given up", "partition", p, "err", err)
		c.fence.Revoke()
		dctx, cancel := m.op(ctx)
		_ = m.kv.Delete(dctx, partitionKey(p), jetstream.LastRevision(rev))
		cancel()
		return
	}
	m.mu.Lock()
	m.claims[p] = c
	m.st.Acquired++
	m.mu.Unlock()
	m.log.Info("cluster: partition acquired", "partition", p, "epoch", rev)
}

// release starts a clean handover of c: the task stops in the background
// while the member keeps renewing the claim; finishReleases deletes it.
func (m *Member) release(c *claim) {
	c.releasing = true
	c.released = make(chan struct{})
	m.log.Info("cluster: releasing partition to its assigned member", "partition", c.p, "epoch", c.epoch)
	go func() {
		defer close(c.released)
		m.tasks.Release(c.p)
	}()
}

func (m *Member) finishReleases(ctx context.Context) {
	m.mu.Lock()
	var done []*claim
	for _, c := range m.claims {
		if c.releasing {
			select {
			case <-c.released:
				done = append(done, c)
			default:
			}
		}
	}
	m.mu.Unlock()
	for _, c := range done {
		c.fence.Revoke()
		octx, cancel := m.op(ctx)
		err := m.kv.Delete(octx, partitionKey(c.p), jetstream.LastRevision(c.rev))
		cancel()
		if err != nil && ctx.Err() == nil {
			m.log.Warn("cluster: deleting a released claim failed; it expires after the lease", "partition", c.p, "err", err)
		}
		m.mu.Lock()
		delete(m.claims, c.p)
		m.st.Released++
		m.mu.Unlock()
		m.log.Info("cluster: partition released", "partition", c.p, "epoch", c.epoch)
	}
}

// leave releases every claim (renewing them meanwhile) and deletes the
// member's key.
func (m *Member) leave() {
	ctx := context.Background()
	m.mu.Lock()
	for _, c := range m.claims {
		if !c.releasing {
			m.release(c)
		}
	}
	m.mu.Unlock()
	deadline := time.Now().Add(2 * m.cfg.Lease)
	for {
		m.finishReleases(ctx)
		m.mu.Lock()
		n := len(m.claims)
		m.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		m.renew(ctx)
		time.Sleep(min(50*time.Millisecond, m.cfg.Lease/10))
	}
	octx, cancel := m.op(ctx)
	defer cancel()
	_ = m.kv.Delete(octx, memberPrefix+m.cfg.Instance)
}

// Assign returns the owner of every partition among members (sorted,
// distinct): rendezvous hashing with bounded load. Each partition ranks the
// members by a hash of (member, partition); a first pass gives each
// partition to its highest-ranked member holding fewer than floor(P/N), a
// second gives the rest to their highest-ranked member holding fewer than
// ceil(P/N). So every member holds floor(P/N) or ceil(P/N), and a member
// joining or leaving moves few partitions. Every member computes the same
// result from the same list.
func Assign(members []string, partitions int) []string {
	out := make([]string, partitions)
	n := len(members)
	if n == 0 {
		return out
	}
	load := make(map[string]int, n)
	ranked := make([][]string, partitions)
	for p := range out {
		r := slices.Clone(members)
		slices.SortFunc(r, func(a, b string) int {
			ha, hb := score(a, p), score(b, p)
			switch {
			case ha > hb:
				return -1
			case ha < hb:
				return 1
			}
			return strings.Compare(a, b)
		})
		ranked[p] = r
	}
	for _, limit := range []int{partitions / n, (partitions + n - 1) / n} {
		for p := range out {
			if out[p] != "" {
				continue
			}
			for _, mem := range ranked[p] {
				if load[mem] < limit {
					out[p] = mem
					load[mem]++
					break
				}
			}
		}
	}
	return out
}

func score(member string, p int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	var b [8]byte
	for i := range b {
		b[i] = byte(uint64(p) >> (8 * i))
	}
	h.Write(b[:])
	x := h.Sum64()
	// A finaliser (splitmix64) spreads FNV's low-entropy tail.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
