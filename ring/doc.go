// Package ring holds qstream's lock-free hand-off between goroutines: SPSC,
// a bounded single-producer/single-consumer ring of fixed-size values (one per
// feed→shard pair and shard→sink pair), and Waiter, the explicit wait
// strategy (Spin, Yield or Park) a side uses when its ring is empty or full.
//
// ring is a leaf package: it imports nothing of qstream but
// internal/invariants, whose checks (Publish of more slots than claimed,
// Release of more than polled, two goroutines waiting on one Waiter) are
// compiled in only under -race or the `invariants` build tag.
package ring
