package ring_test

import (
	"fmt"
	"time"

	"qstream/ring"
)

// tick is a fixed-size, pointer-free value, as ring values should be.
type tick struct {
	Seq   uint64
	Price float64
}

// A producer goroutine fills claimed slots in place and publishes them in
// batches; the consumer polls batches, uses the values in place and releases
// them. Close lets the consumer drain and stop.
func Example() {
	strategy, err := ring.ParseStrategy("park")
	if err != nil {
		panic(err)
	}
	r, err := ring.New[tick](64, ring.NewWaiter(strategy), ring.NewWaiter(strategy))
	if err != nil {
		panic(err)
	}

	go func() {
		defer r.Close() // no more values
		for seq := uint64(1); seq <= 1000; {
			slots := r.ClaimWait(16) // waits while the ring is full
			n := 0
			for ; n < len(slots) && seq <= 1000; n++ {
				slots[n] = tick{Seq: seq, Price: 100 + float64(seq%7)}
				seq++
			}
			r.Publish(n)
		}
	}()

	var count, seqSum uint64
	for {
		batch := r.PollWait(32) // waits while the ring is empty
		if len(batch) == 0 {
			break // closed and drained
		}
		for i := range batch {
			count++
			seqSum += batch[i].Seq
		}
		r.Release(len(batch)) // batch must not be used after this
	}
	fmt.Println(count, seqSum, r.Drained())
	// Output: 1000 500500 true
}

// A shard consumes several rings and sleeps on one Waiter that every ring's
// Publish wakes. Its wait condition is built once, outside the loop.
func ExampleWaiter() {
	shard := ring.NewWaiter(ring.Park)
	feeds := make([]*ring.SPSC[tick], 2)
	for i := range feeds {
		feeds[i], _ = ring.New[tick](8, shard, nil) // nil: the producer gets its own Park Waiter
	}
	ready := func() bool {
		for _, r := range feeds {
			if r.Ready() {
				return true
			}
		}
		return false
	}

	go func() { feeds[1].Put(&tick{Seq: 42, Price: 9.5}) }()

	if !shard.Wait(ready, time.Minute) {
		fmt.Println("timed out")
		return
	}
	for i, r := range feeds {
		if s := r.Poll(8); len(s) > 0 {
			fmt.Printf("feed %d: seq %d price %.1f\n", i, s[0].Seq, s[0].Price)
			r.Release(len(s))
		}
	}
	// Output: feed 1: seq 42 price 9.5
}
