package ring

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"qstream/internal/invariants"
)

// stress reports whether the long forms run (QSTREAM_STRESS=1, make stress).
func stress() bool { return os.Getenv("QSTREAM_STRESS") == "1" }

// item is the stress payload: small, so that -race runs move many values.
// Check is a function of Seq, so a torn or misplaced slot is caught.
type item struct {
	Seq   uint64
	Check uint64
}

func mix(seq uint64) uint64 {
	x := seq * 0x9E3779B97F4A7C15
	return x ^ x>>29
}

type pairConfig struct {
	n        uint64 // values to move
	capacity int
	batchMax int // largest Claim/Poll request; requests are random in [1, batchMax]
	producer Strategy
	consumer Strategy
	single   bool // Offer/Put and Poll(1)/Release(1) instead of batches
	seed     uint64
}

// runPair moves cfg.n values from a producer goroutine to a consumer
// goroutine and checks order (each value carries its sequence), integrity
// (Check == mix(Seq)), the count and a checksum against the producer's.
func runPair(t *testing.T, cfg pairConfig) {
	t.Helper()
	r, err := New[item](cfg.capacity, NewWaiter(cfg.consumer), NewWaiter(cfg.producer))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var sent uint64
	var prodErr string
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.Close()
		rng := rand.New(rand.NewPCG(cfg.seed, 1))
		for seq := uint64(0); seq < cfg.n; {
			if cfg.single {
				v := item{Seq: seq, Check: mix(seq)}
				if seq%2 == 0 || !r.Offer(&v) {
					r.Put(&v)
				}
				sent += v.Check
				seq++
				continue
			}
			s := r.ClaimWait(1 + rng.IntN(cfg.batchMax))
			if len(s) == 0 {
				prodErr = "ClaimWait returned no slots on an open ring"
				return
			}
			k := min(uint64(len(s)), cfg.n-seq)
			for i := range k {
				s[i] = item{Seq: seq + i, Check: mix(seq + i)}
				sent += s[i].Check
			}
			r.Publish(int(k))
			seq += k
		}
	}()

	rng := rand.New(rand.NewPCG(cfg.seed, 2))
	var got, sum uint64
	for {
		max := 1
		if !cfg.single {
			max = 1 + rng.IntN(cfg.batchMax)
		}
		s := r.PollWait(max)
		if len(s) == 0 {
			break
		}
		for i := range s {
			v := &s[i]
			if v.Seq != got || v.Check != mix(v.Seq) {
				r.Close() // unblock the producer
				wg.Wait()
				t.Fatalf("value %d: got {Seq %d, Check %#x}, want {%d, %#x}", got, v.Seq, v.Check, got, mix(got))
			}
			sum += v.Check
			got++
		}
		r.Release(len(s))
	}
	wg.Wait()
	if prodErr != "" {
		t.Fatal(prodErr)
	}
	if got != cfg.n || sum != sent {
		t.Fatalf("moved %d of %d values, checksum %#x want %#x", got, cfg.n, sum, sent)
	}
	if !r.Drained() || r.Len() != 0 {
		t.Fatalf("after the run: Drained %v, Len %d", r.Drained(), r.Len())
	}
}

// TestStressSPSC moves values between two goroutines through every path:
// the batched Claim/Publish + Poll/Release path with Park (10M values, 300M
// under QSTREAM_STRESS=1), the single-value Offer/Put + Poll(1) path, and
// short runs with Spin and Yield (they burn both cores of a shared machine).
func TestStressSPSC(t *testing.T) {
	long := stress()
	scale := func(normal, short, stressN uint64) uint64 {
		switch {
		case long:
			return stressN
		case testing.Short():
			return short
		}
		return normal
	}
	cases := []pairConfig{
		{n: scale(10_000_000, 500_000, 300_000_000), capacity: 1024, batchMax: 256, producer: Park, consumer: Park},
		{n: scale(200_000, 50_000, 10_000_000), capacity: 64, batchMax: 64, producer: Park, consumer: Park},
		{n: scale(500_000, 50_000, 20_000_000), capacity: 256, producer: Park, consumer: Park, single: true},
		// Spin and Yield keep both cores busy; when other processes take a
		// core a spinner burns whole time slices, so these stay short.
		{n: scale(100_000, 20_000, 2_000_000), capacity: 1024, batchMax: 256, producer: Yield, consumer: Yield},
		{n: scale(20_000, 5_000, 500_000), capacity: 256, producer: Yield, consumer: Yield, single: true},
		{n: scale(100_000, 20_000, 2_000_000), capacity: 1024, batchMax: 256, producer: Spin, consumer: Spin},
		{n: scale(20_000, 5_000, 500_000), capacity: 256, producer: Spin, consumer: Spin, single: true},
		{n: scale(100_000, 20_000, 5_000_000), capacity: 8, batchMax: 5, producer: Park, consumer: Yield},
	}
	for i, cfg := range cases {
		cfg.seed = uint64(i + 1)
		mode := "batch"
		if cfg.single {
			mode = "single"
		}
		name := fmt.Sprintf("%s/%v-%v/cap%d/n%d", mode, cfg.producer, cfg.consumer, cfg.capacity, cfg.n)
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			runPair(t, cfg)
			el := time.Since(start)
			t.Logf("%d values in %v (%.1f ns/value, race %v)", cfg.n, el.Round(time.Millisecond),
				float64(el.Nanoseconds())/float64(cfg.n), invariants.RaceEnabled)
		})
	}
}

// TestStressSharedConsumerWaiter: several producers, one ring each, one
// consumer sleeping on a single Park Waiter that all rings wake — the shard
// layout. Per-ring order and checksums are checked; a lost wake-up shows as
// the watchdog timeout.
func TestStressSharedConsumerWaiter(t *testing.T) {
	const rings = 3
	n := uint64(1_000_000)
	if stress() {
		n = 30_000_000
	} else if testing.Short() {
		n = 100_000
	}
	shared := NewWaiter(Park)
	rs := make([]*SPSC[item], rings)
	sent := make([]uint64, rings)
	for i := range rs {
		var err error
		if rs[i], err = New[item](256, shared, nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			for seq := uint64(0); seq < n; {
				s := r.ClaimWait(1 + rng.IntN(100))
				k := min(uint64(len(s)), n-seq)
				for j := range k {
					s[j] = item{Seq: seq + j, Check: mix(seq + j)}
					sent[i] += s[j].Check
				}
				r.Publish(int(k))
				seq += k
				if rng.IntN(64) == 0 {
					time.Sleep(time.Microsecond) // let the consumer catch up and park
				}
			}
		}()
	}
	var done [rings]bool
	var got, sums [rings]uint64
	remaining := rings
	ready := func() bool {
		for i, r := range rs {
			if !done[i] && (r.Ready() || r.Closed()) {
				return true
			}
		}
		return false
	}
	fail := func(format string, args ...any) {
		t.Helper()
		for _, r := range rs {
			r.Close()
		}
		wg.Wait()
		t.Fatalf(format, args...)
	}
	for remaining > 0 {
		progressed := false
		for i, r := range rs {
			if done[i] {
				continue
			}
			s := r.Poll(128)
			if len(s) == 0 {
				if r.Drained() {
					done[i] = true
					remaining--
					progressed = true
				}
				continue
			}
			progressed = true
			for _, v := range s {
				if v.Seq != got[i] || v.Check != mix(v.Seq) {
					fail("ring %d value %d: got {%d, %#x}", i, got[i], v.Seq, v.Check)
				}
				sums[i] += v.Check
				got[i]++
			}
			r.Release(len(s))
		}
		if !progressed && !shared.Wait(ready, 30*time.Second) {
			fail("consumer not woken for 30s (lost wake-up?): got %v of %d each", got, n)
		}
	}
	wg.Wait()
	t.Logf("shared consumer Waiter slept %d times", shared.Sleeps())
	for i := range rs {
		if got[i] != n || sums[i] != sent[i] {
			t.Errorf("ring %d: %d of %d values, checksum %#x want %#x", i, got[i], n, sums[i], sent[i])
		}
	}
}

// TestRingNoLostWakeup: request/response through two rings of capacity 2
// with Park on every side, so nearly every hand-off parks the receiver. The
// receiver waits with a watchdog timeout instead of for ever, so a lost
// wake-up fails the test instead of hanging it.
func TestRingNoLostWakeup(t *testing.T) {
	rounds := 20000
	if stress() {
		rounds = 1000000
	} else if testing.Short() {
		rounds = 2000
	}
	const watchdog = 30 * time.Second
	req, _ := New[uint64](2, nil, nil)
	resp, _ := New[uint64](2, nil, nil)
	errc := make(chan error, 1)
	go func() {
		d := newJitter(3)
		for i := uint64(0); i < uint64(rounds); i++ {
			if !req.consumer.Wait(req.canPoll, watchdog) {
				errc <- fmt.Errorf("server: round %d: no wake-up in %v", i, watchdog)
				return
			}
			s := req.Poll(1)
			if len(s) != 1 || s[0] != i {
				errc <- fmt.Errorf("server: round %d: got %v", i, s)
				return
			}
			v := s[0] * 3
			req.Release(1)
			d.delay()
			resp.Put(&v)
		}
		errc <- nil
	}()
	d := newJitter(4)
	for i := uint64(0); i < uint64(rounds); i++ {
		d.delay()
		req.Put(&i)
		if !resp.consumer.Wait(resp.canPoll, watchdog) {
			t.Fatalf("client: round %d: no wake-up in %v", i, watchdog)
		}
		s := resp.Poll(1)
		if len(s) != 1 || s[0] != 3*i {
			t.Fatalf("client: round %d: got %v", i, s)
		}
		resp.Release(1)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkParked(t, rounds, req.consumer, resp.consumer)
}
