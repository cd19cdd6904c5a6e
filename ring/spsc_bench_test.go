package ring

import (
	"fmt"
	"testing"
	"unsafe"
)

// event128 has codec.Event's size and shape (128 bytes, pointer-free); ring
// is a leaf package and does not import codec.
type event128 struct {
	Seq      uint64
	TsNs     int64
	IngestNs int64
	Price    float64
	Volume   float64
	Bid      float64
	Ask      float64
	BidSize  float64
	AskSize  float64
	Symbol   uint32
	Kind     uint8
	Flags    uint8
	_        [50]byte
}

var _ [128]byte = [unsafe.Sizeof(event128{})]byte{}

// Capacities benchmarked, for the ring and the channel alike: 128 slots of
// 128-byte events (16 KiB) fit in a 32 KiB L1d with room for the other side;
// 1024 slots (128 KiB) do not, and there the figure is bounded by L2
// bandwidth rather than by the hand-off itself.
var benchCaps = []int{128, 1024}

// benchBatch is the Claim/Poll request size for a ring of capacity c.
func benchBatch(c int) int { return min(128, c/4) }

// BenchmarkSPSC: batched hand-off of 128-byte events from a producer
// goroutine to the benchmark goroutine, which reads both cache lines of each
// event in place. One op is one message. Sub-benchmarks name the capacity
// and the strategy of both Waiters: yield is the default to compare with the
// channel baseline at the same capacity, spin is for dedicated cores.
func BenchmarkSPSC(b *testing.B) {
	for _, c := range benchCaps {
		for _, s := range []Strategy{Yield, Spin, Park} {
			b.Run(fmt.Sprintf("cap%d/%v", c, s), func(b *testing.B) { benchSPSC(b, c, s, false) })
		}
	}
}

// benchSPSC hands b.N events over a ring. inPlace fills the fields a parser
// writes directly in the claimed slots; otherwise whole events are copied in.
func benchSPSC(b *testing.B, capacity int, s Strategy, inPlace bool) {
	r, err := New[event128](capacity, NewWaiter(s), NewWaiter(s))
	if err != nil {
		b.Fatal(err)
	}
	batch := benchBatch(capacity)
	n := b.N
	b.ReportAllocs()
	b.SetBytes(int64(unsafe.Sizeof(event128{})))
	b.ResetTimer()
	go func() {
		ev := event128{Price: 189.23, Volume: 300, Symbol: 7, Kind: 1}
		for i := 0; i < n; {
			sl := r.ClaimWait(batch)
			k := min(len(sl), n-i)
			for j := range k {
				if inPlace {
					e := &sl[j]
					e.Seq = uint64(i + j)
					e.TsNs = int64(i + j)
					e.Price, e.Volume, e.Symbol, e.Kind = 189.23, 300, 7, 1
				} else {
					ev.Seq = uint64(i + j)
					sl[j] = ev
				}
			}
			r.Publish(k)
			i += k
		}
	}()
	var sum uint64
	for got := 0; got < n; {
		sl := r.PollWait(batch)
		for j := range sl {
			sum += sl[j].Seq + uint64(sl[j].Symbol) // both cache lines of the event
		}
		r.Release(len(sl))
		got += len(sl)
	}
	b.StopTimer()
	if want := uint64(n)*uint64(n-1)/2 + 7*uint64(n); sum != want {
		b.Fatalf("checksum %d, want %d", sum, want)
	}
}

// BenchmarkChannelBaseline: the same hand-off through a buffered Go channel
// of the same capacity and payload, one message per send/receive.
func BenchmarkChannelBaseline(b *testing.B) {
	for _, c := range benchCaps {
		b.Run(fmt.Sprintf("cap%d", c), func(b *testing.B) { benchChannel(b, c) })
	}
}

func benchChannel(b *testing.B, capacity int) {
	ch := make(chan event128, capacity)
	n := b.N
	b.ReportAllocs()
	b.SetBytes(int64(unsafe.Sizeof(event128{})))
	b.ResetTimer()
	go func() {
		ev := event128{Price: 189.23, Volume: 300, Symbol: 7, Kind: 1}
		for i := 0; i < n; i++ {
			ev.Seq = uint64(i)
			ch <- ev
		}
	}()
	var sum uint64
	for range n {
		ev := <-ch
		sum += ev.Seq + uint64(ev.Symbol)
	}
	b.StopTimer()
	if want := uint64(n)*uint64(n-1)/2 + 7*uint64(n); sum != want {
		b.Fatalf("checksum %d, want %d", sum, want)
	}
}

// BenchmarkSPSCSingle: one value at a time (Offer, falling back to Put, and
// Poll(1)/Release(1)), for honesty: the batched path is what the budget is
// about.
func BenchmarkSPSCSingle(b *testing.B) {
	for _, s := range []Strategy{Yield, Spin} {
		b.Run("cap1024/"+s.String(), func(b *testing.B) {
			r, err := New[event128](1024, NewWaiter(s), NewWaiter(s))
			if err != nil {
				b.Fatal(err)
			}
			n := b.N
			b.ReportAllocs()
			b.SetBytes(int64(unsafe.Sizeof(event128{})))
			b.ResetTimer()
			go func() {
				ev := event128{Price: 189.23, Volume: 300, Symbol: 7, Kind: 1}
				for i := 0; i < n; i++ {
					ev.Seq = uint64(i)
					if !r.Offer(&ev) {
						r.Put(&ev)
					}
				}
			}()
			var sum uint64
			for range n {
				sl := r.PollWait(1)
				sum += sl[0].Seq + uint64(sl[0].Symbol)
				r.Release(1)
			}
			b.StopTimer()
			if want := uint64(n)*uint64(n-1)/2 + 7*uint64(n); sum != want {
				b.Fatalf("checksum %d, want %d", sum, want)
			}
		})
	}
}

// BenchmarkSPSCWord and BenchmarkChannelWordBaseline hand off 8-byte values
// (a sequence number, the payload of an index-passing design): the cost of
// the hand-off itself, without moving 128 bytes per message between cores.
func BenchmarkSPSCWord(b *testing.B) {
	for _, s := range []Strategy{Park, Yield} {
		b.Run("cap1024/"+s.String(), func(b *testing.B) {
			r, err := New[uint64](1024, NewWaiter(s), NewWaiter(s))
			if err != nil {
				b.Fatal(err)
			}
			n := b.N
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for i := 0; i < n; {
					sl := r.ClaimWait(256)
					k := min(len(sl), n-i)
					for j := range k {
						sl[j] = uint64(i + j)
					}
					r.Publish(k)
					i += k
				}
			}()
			var sum uint64
			for got := 0; got < n; {
				sl := r.PollWait(256)
				for _, v := range sl {
					sum += v
				}
				r.Release(len(sl))
				got += len(sl)
			}
			b.StopTimer()
			if want := uint64(n) * uint64(n-1) / 2; sum != want {
				b.Fatalf("checksum %d, want %d", sum, want)
			}
		})
	}
}

func BenchmarkChannelWordBaseline(b *testing.B) {
	ch := make(chan uint64, 1024)
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < n; i++ {
			ch <- uint64(i)
		}
	}()
	var sum uint64
	for range n {
		sum += <-ch
	}
	b.StopTimer()
	if want := uint64(n) * uint64(n-1) / 2; sum != want {
		b.Fatalf("checksum %d, want %d", sum, want)
	}
}

// BenchmarkCopyFloor copies 128-byte events from one slice to another on
// one goroutine and reads them back: the memory-movement floor under
// BenchmarkSPSC on this machine, with no second core involved.
func BenchmarkCopyFloor(b *testing.B) {
	src := make([]event128, 1024)
	dst := make([]event128, 1024)
	b.SetBytes(int64(unsafe.Sizeof(event128{})))
	b.ReportAllocs()
	var sum uint64
	for i := 0; i < b.N; i++ {
		j := i & 1023
		src[j].Seq = uint64(i)
		dst[j] = src[j]
		sum += dst[j].Seq + uint64(dst[j].Symbol)
	}
	if sum == 1 {
		b.Log(sum)
	}
}

// BenchmarkSPSCInPlace is BenchmarkSPSC as the Disruptor uses a ring of
// preallocated entries: the producer fills the claimed slots in place (the
// fields a parser writes) instead of copying a whole event into them, and the
// consumer reads both cache lines of each event where it lies.
func BenchmarkSPSCInPlace(b *testing.B) {
	for _, s := range []Strategy{Park, Yield} {
		b.Run("cap1024/"+s.String(), func(b *testing.B) { benchSPSC(b, 1024, s, true) })
	}
	// The engine's ring size (engine.Config's default): the floor under
	// BenchmarkEngineHandOff's ring8192 rows, the ring alone.
	b.Run("cap8192/park", func(b *testing.B) { benchSPSC(b, 8192, Park, true) })
}
