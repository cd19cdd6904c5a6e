package ring

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"

	"qstream/internal/invariants"
)

func TestNewCapacity(t *testing.T) {
	tests := []struct {
		capacity int
		ok       bool
	}{
		{-4, false}, {0, false}, {1, false}, {2, true}, {3, false}, {4, true},
		{6, false}, {1000, false}, {1024, true}, {1<<30 - 1, false},
		{1 << 30, true}, {1<<30 + 1, false}, {1 << 31, false},
	}
	for _, tt := range tests {
		// struct{} keeps the 1<<30 case free of memory.
		r, err := New[struct{}](tt.capacity, nil, nil)
		if tt.ok {
			if err != nil || r.Cap() != tt.capacity || r.Len() != 0 {
				t.Errorf("New(%d): err %v", tt.capacity, err)
			}
			continue
		}
		if !errors.Is(err, ErrCapacity) || r != nil {
			t.Errorf("New(%d) = %v, %v; want ErrCapacity", tt.capacity, r, err)
		}
	}
}

func TestNewSameWaiter(t *testing.T) {
	w := NewWaiter(Park)
	if _, err := New[int](8, w, w); !errors.Is(err, ErrSameWaiter) {
		t.Fatalf("New with one Waiter for both sides: err %v, want ErrSameWaiter", err)
	}
	if _, err := New[int](8, w, nil); err != nil {
		t.Fatalf("New(consumer w, nil producer): %v", err)
	}
}

// TestLayout checks the padding: the producer's and the consumer's hot words
// are at least a cache line from each other and from the read-only fields.
func TestLayout(t *testing.T) {
	var r SPSC[[128]byte]
	line := unsafe.Sizeof(cpu.CacheLinePad{})
	if line < 32 {
		t.Fatalf("CacheLinePad is %d bytes", line)
	}
	head, tail := unsafe.Offsetof(r.head), unsafe.Offsetof(r.tail)
	limit, tailCache := unsafe.Offsetof(r.limit), unsafe.Offsetof(r.tailCache)
	closed := unsafe.Offsetof(r.closed)
	if tail-tailCache < line || limit-tailCache < line {
		t.Errorf("consumer line (tailCache at %d) within %d bytes of producer line (tail %d, limit %d)",
			tailCache, line, tail, limit)
	}
	if head-closed < line {
		t.Errorf("head at %d within a cache line of the read-only fields (closed at %d)", head, closed)
	}
	if unsafe.Sizeof(r)-unsafe.Offsetof(r.claimed) < line {
		t.Errorf("no trailing pad after the producer line")
	}
}

// sliceQueue is the oracle: an unbounded FIFO plus the position arithmetic
// the ring promises (contiguous runs end at the buffer's end).
type sliceQueue struct {
	q          []uint64
	cap        int
	head, tail uint64 // counts of values released and published
}

func (m *sliceQueue) claimLen(n int) int {
	if n <= 0 {
		return 0
	}
	return min(n, m.cap-len(m.q), m.cap-int(m.tail%uint64(m.cap)))
}

func (m *sliceQueue) pollLen(max int) int {
	if max <= 0 {
		return 0
	}
	return min(max, len(m.q), m.cap-int(m.head%uint64(m.cap)))
}

// TestPropertyAgainstSlice applies random single-threaded operation sequences
// to the ring and to a slice queue and checks that they agree on every
// result: slice lengths (including short runs at the wrap), values and
// their order, Offer's success, Len and Ready.
func TestPropertyAgainstSlice(t *testing.T) {
	steps := 20000
	if testing.Short() {
		steps = 2000
	}
	for _, capacity := range []int{2, 4, 8, 16, 64} {
		for seed := uint64(1); seed <= 4; seed++ {
			rng := rand.New(rand.NewPCG(seed, uint64(capacity)))
			r, err := New[uint64](capacity, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := &sliceQueue{cap: capacity}
			next := uint64(1)
			for step := 0; step < steps; step++ {
				fail := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("cap %d seed %d step %d: "+format, append([]any{capacity, seed, step}, args...)...)
				}
				switch op := rng.IntN(10); {
				case op < 3: // Claim, fill, Publish a prefix
					n := rng.IntN(capacity+3) - 1
					s := r.Claim(n)
					if want := m.claimLen(n); len(s) != want {
						fail("Claim(%d) gave %d slots, want %d (len %d)", n, len(s), want, len(m.q))
					}
					for i := range s {
						s[i] = next + uint64(i)
					}
					k := 0
					if len(s) > 0 {
						k = rng.IntN(len(s) + 1)
					}
					r.Publish(k)
					for i := 0; i < k; i++ {
						m.q = append(m.q, next)
						next++
					}
					m.tail += uint64(k)
				case op < 5: // Offer
					v := next
					ok := r.Offer(&v)
					if want := len(m.q) < capacity; ok != want {
						fail("Offer = %v with len %d", ok, len(m.q))
					}
					if ok {
						m.q = append(m.q, v)
						m.tail++
						next++
					}
				case op < 9: // Poll, check, Release a prefix
					max := rng.IntN(capacity+3) - 1
					s := r.Poll(max)
					if want := m.pollLen(max); len(s) != want {
						fail("Poll(%d) gave %d values, want %d (len %d)", max, len(s), want, len(m.q))
					}
					for i, v := range s {
						if v != m.q[i] {
							fail("Poll value %d = %d, want %d", i, v, m.q[i])
						}
					}
					k := 0
					if len(s) > 0 {
						k = rng.IntN(len(s) + 1)
					}
					r.Release(k)
					m.q = m.q[k:]
					m.head += uint64(k)
				default: // observers
					if r.Len() != len(m.q) {
						fail("Len = %d, want %d", r.Len(), len(m.q))
					}
					if r.Ready() != (len(m.q) > 0) {
						fail("Ready = %v with len %d", r.Ready(), len(m.q))
					}
				}
			}
		}
	}
}

func TestClaimLimits(t *testing.T) {
	r, _ := New[int](8, nil, nil)
	if s := r.Claim(100); len(s) != 8 {
		t.Fatalf("Claim(100) on empty ring of 8 gave %d slots", len(s))
	}
	r.Publish(5)
	if s := r.Claim(100); len(s) != 3 {
		t.Fatalf("Claim(100) with 3 free at the end gave %d", len(s))
	}
	r.Publish(3)
	if s := r.Claim(1); len(s) != 0 {
		t.Fatalf("Claim on full ring gave %d", len(s))
	}
	v := 1
	if r.Offer(&v) {
		t.Fatal("Offer on full ring succeeded")
	}
	s := r.Poll(6)
	if len(s) != 6 || cap(s) != 6 {
		t.Fatalf("Poll(6) gave len %d cap %d; the cap must stop appends into the ring", len(s), cap(s))
	}
	r.Release(6)
	// tail at 8 (slot 0), head at 6: 6 free, contiguous from slot 0.
	if s := r.Claim(100); len(s) != 6 {
		t.Fatalf("Claim after wrap gave %d, want 6", len(s))
	}
	r.Publish(0)
	if r.Len() != 2 {
		t.Fatalf("Len = %d, want 2", r.Len())
	}
}

func TestPollWithoutReleaseRepeats(t *testing.T) {
	r, _ := New[int](4, nil, nil)
	for i := 1; i <= 3; i++ {
		r.Offer(&i)
	}
	a := r.Poll(2)
	r.Release(0)
	b := r.Poll(3)
	if len(a) != 2 || len(b) != 3 || a[0] != 1 || b[0] != 1 || b[2] != 3 {
		t.Fatalf("Poll, Release(0), Poll: %v then %v", a, b)
	}
}

func TestCloseDrained(t *testing.T) {
	r, _ := New[int](8, nil, nil)
	for i := 1; i <= 3; i++ {
		if !r.Offer(&i) {
			t.Fatal("Offer failed")
		}
	}
	r.Close()
	r.Close() // idempotent
	if !r.Closed() {
		t.Fatal("Closed = false after Close")
	}
	if r.Drained() {
		t.Fatal("Drained with 3 values left")
	}
	sum := 0
	for {
		s := r.PollWait(2)
		if len(s) == 0 {
			break
		}
		if r.Drained() {
			t.Fatal("Drained before the polled values were released")
		}
		for _, v := range s {
			sum += v
		}
		r.Release(len(s))
	}
	if sum != 6 || !r.Drained() {
		t.Fatalf("after drain: sum %d, Drained %v", sum, r.Drained())
	}
	if s := r.PollWait(4); len(s) != 0 {
		t.Fatalf("PollWait on drained ring gave %v", s)
	}
	if s := r.ClaimWait(4); len(s) != 0 {
		t.Fatalf("ClaimWait on closed ring gave %d slots", len(s))
	}
}

// TestCloseWakesBlockedSides: a consumer parked in PollWait and a producer
// parked in ClaimWait/Put both return when the ring is closed.
func TestCloseWakesBlockedSides(t *testing.T) {
	r, _ := New[int](2, nil, nil)
	got := make(chan int, 1)
	go func() { got <- len(r.PollWait(1)) }()
	waitSleeping(t, r.consumer)
	r.Close()
	if n := <-got; n != 0 {
		t.Fatalf("PollWait returned %d values after Close of empty ring", n)
	}

	r, _ = New[int](2, nil, nil)
	one := 1
	r.Put(&one)
	r.Put(&one)
	done := make(chan int, 1)
	go func() {
		n := len(r.ClaimWait(1))
		r.Put(&one) // closed and full: returns without storing
		done <- n
	}()
	waitSleeping(t, r.producer)
	r.Close() // the consumer side gives up
	if n := <-done; n != 0 {
		t.Fatalf("ClaimWait returned %d slots after Close of full ring", n)
	}
	if r.Len() != 2 {
		t.Fatalf("Len = %d after Put on closed full ring, want 2", r.Len())
	}
}

// waitSleeping waits (sleeping, not spinning) until w's owner is parked.
func waitSleeping(t *testing.T, w *Waiter) {
	t.Helper()
	if !parked(w) {
		t.Fatal("the other goroutine never parked")
	}
}

// parked sleeps until w's owner is parked; false after 10 s (a loaded
// machine can keep a goroutine off the CPU for a while). Usable from any
// goroutine.
func parked(w *Waiter) bool {
	start := time.Now()
	for w.sleeping.Load() == 0 {
		if time.Since(start) > 10*time.Second {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

func TestInvariantChecks(t *testing.T) {
	if !invariants.Enabled {
		t.Skip("invariants are off (build with -race or -tags invariants)")
	}
	fresh := func() *SPSC[int] {
		r, _ := New[int](8, nil, nil)
		v := 7
		r.Offer(&v)
		return r
	}
	tests := []struct {
		what string
		f    func(r *SPSC[int])
	}{
		{"Publish(k > claimed)", func(r *SPSC[int]) { r.Claim(2); r.Publish(3) }},
		{"Publish(-1)", func(r *SPSC[int]) { r.Claim(2); r.Publish(-1) }},
		{"Publish without Claim", func(r *SPSC[int]) { r.Publish(1) }},
		{"Publish twice", func(r *SPSC[int]) { r.Claim(2); r.Publish(1); r.Publish(1) }},
		{"Offer inside a claim", func(r *SPSC[int]) { v := 1; r.Claim(1); r.Offer(&v) }},
		{"Release(k > polled)", func(r *SPSC[int]) { r.Poll(1); r.Release(2) }},
		{"Release without Poll", func(r *SPSC[int]) { r.Release(1) }},
		{"Release twice", func(r *SPSC[int]) { r.Poll(1); r.Release(1); r.Release(1) }},
	}
	for _, tt := range tests {
		mustViolate(t, tt.what, func() { tt.f(fresh()) })
	}
}

func mustViolate(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if _, ok := recover().(invariants.Violation); !ok {
			t.Errorf("%s: no invariant violation", what)
		}
	}()
	f()
}

// TestPublishQuietDoesNotWake: PublishQuiet makes values visible to the
// consumer but leaves a sleeping consumer asleep (its sleeping word set, as
// a parked consumer's would be); WakeConsumer wakes it, as Publish does.
func TestPublishQuietDoesNotWake(t *testing.T) {
	cons := NewWaiter(Park)
	r, err := New[int](8, cons, nil)
	if err != nil {
		t.Fatal(err)
	}
	cons.sleeping.Store(1) // stands for a consumer parked in PollWait
	s := r.Claim(2)
	s[0], s[1] = 1, 2
	r.PublishQuiet(2)
	if r.Len() != 2 {
		t.Fatalf("Len after PublishQuiet(2) = %d", r.Len())
	}
	if cons.sleeping.Load() != 1 {
		t.Fatal("PublishQuiet woke the consumer")
	}
	r.WakeConsumer()
	if cons.sleeping.Load() != 0 {
		t.Fatal("WakeConsumer did not wake the consumer")
	}
	cons.sleeping.Store(1)
	s = r.Claim(1)
	s[0] = 3
	r.Publish(1)
	if cons.sleeping.Load() != 0 {
		t.Fatal("Publish did not wake the consumer")
	}
	if got := r.Poll(8); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("Poll = %v", got)
	}
}
