package ops

import (
	"math"
	"math/bits"
	"unsafe"
)

// The variable part of a window operator's state lives in per-operator pools
// of fixed-size chunks addressed by int32 indices: the symbols' directories,
// the pane blocks of tumbling and hopping windows, the buffered trades, the
// session lists and the percentile sketches. A symbol holds only what it
// uses; what it stops using goes back to its pool's free list and is handed
// to the next symbol that needs it.
//
// Pools grow lazily, one block of chunks at a time, while the operator's
// winBudget (WindowOptions.MaxStateBytes) allows; growth is the only
// allocation after start-up besides the slot pages (allocated when one of
// their slots gets its first trade), and it stops once the working set has
// been reached. A chunk that cannot be had is a refused trade
// (codec.ReasonOversize, counted in WindowCounters.Refused and StateFull),
// never a failed firing: every event reserves what it and the firings it
// causes will need before it changes anything (winPool.reserve), which is
// also why a pointer into a chunk taken after the reservations stays valid
// for the rest of the event.

// winBudget is the memory bound of one operator: held counts the fixed
// arrays, scratch and every pool block allocated so far; pools grow only
// while held stays within maxBytes.
type winBudget struct {
	held, maxBytes int64
}

// winPoolBlockBytes is the target size of one pool block: large enough that
// growth is rare (amortised), small enough that a quiet operator holds
// little.
const winPoolBlockBytes = 64 << 10

// winPool hands out chunks of chunkLen items of T (and, for pools with
// suffix storage, a parallel chunk of chunkLen aggState: the two-stacks
// suffix aggregates of the same items). Chunk 0 is the nil chunk and is
// never handed out, so a zero index means "none". Chunks live in blocks that
// never move: a pointer into a chunk stays valid until the chunk is released,
// whatever the pool does meanwhile. T is pointer-free, so the garbage
// collector has nothing to scan inside a block.
//
// alloc pops the free list (LIFO, so recently released chunks are reused
// while still in cache) and never allocates: callers reserve first. The
// contents of a chunk from alloc are whatever its previous user left unless
// the pool zeroes (zero): callers that read before they write ask for it.
type winPool[T any] struct {
	items      [][]T        // blocks of 1<<shift chunks × chunkLen items
	aux        [][]aggState // parallel blocks (withAux)
	free       []int32      // free chunk indices, top at the end
	chunks     int32        // chunks created, including chunk 0
	inUse      int32        // chunks handed out
	taken      uint64       // chunks handed out ever (tests: recycling)
	chunkLen   int
	lenShift   uint // log2(chunkLen): chunk lengths are powers of two
	shift      uint
	mask       int32
	withAux    bool
	zero       bool
	blockBytes int64
}

// init sizes the pool: chunks of chunkLen items (rounded up to a power of
// two), zeroed on alloc when zero, with a parallel aggState chunk when
// withAux.
func (p *winPool[T]) init(chunkLen int, withAux, zero bool) {
	chunkLen = int(winPow2(int64(chunkLen)))
	var t T
	per := int64(unsafe.Sizeof(t)) * int64(chunkLen)
	if withAux {
		per += int64(unsafe.Sizeof(aggState{})) * int64(chunkLen)
	}
	perBlock := int64(1)
	if per > 0 && per < winPoolBlockBytes {
		perBlock = int64(1) << (bits.Len64(uint64(winPoolBlockBytes/per)) - 1)
	}
	*p = winPool[T]{chunkLen: chunkLen, lenShift: uint(bits.TrailingZeros64(uint64(chunkLen))), withAux: withAux, zero: zero,
		shift: uint(bits.TrailingZeros64(uint64(perBlock))), mask: int32(perBlock - 1), blockBytes: per * perBlock}
}

// grow adds one block if the budget allows.
func (p *winPool[T]) grow(b *winBudget) bool {
	per := int64(p.mask) + 1
	if b.held+p.blockBytes > b.maxBytes || int64(p.chunks)+per > math.MaxInt32 {
		return false
	}
	b.held += p.blockBytes
	first := p.chunks
	p.items = append(p.items, make([]T, per*int64(p.chunkLen)))
	if p.withAux {
		p.aux = append(p.aux, make([]aggState, per*int64(p.chunkLen)))
	}
	p.chunks += int32(per)
	if cap(p.free) < int(p.chunks) { // release must never allocate
		nf := make([]int32, len(p.free), 2*int(p.chunks))
		copy(nf, p.free)
		p.free = nf
	}
	for c := p.chunks - 1; c >= first; c-- { // pops come out in ascending order
		if c != 0 {
			p.free = append(p.free, c)
		}
	}
	return true
}

// reserve makes sure that n chunks can be had without growing, growing the
// pool if the budget allows; it reports whether they can.
func (p *winPool[T]) reserve(n int, b *winBudget) bool {
	for len(p.free) < n {
		if !p.grow(b) {
			return false
		}
	}
	return true
}

// alloc hands out a chunk. The caller has reserved it: an empty free list is
// a bug.
func (p *winPool[T]) alloc() int32 {
	n := len(p.free) - 1
	c := p.free[n]
	p.free = p.free[:n]
	p.inUse++
	p.taken++
	if p.zero {
		clear(p.chunk(c))
		if p.withAux {
			clear(p.auxChunk(c))
		}
	}
	return c
}

// release returns chunk c (> 0) to the free list.
func (p *winPool[T]) release(c int32) {
	p.free = append(p.free, c)
	p.inUse--
}

// chunk returns the items of chunk c.
func (p *winPool[T]) chunk(c int32) []T {
	i := int(c&p.mask) << p.lenShift
	return p.items[c>>p.shift][i : i+p.chunkLen : i+p.chunkLen]
}

// auxChunk returns the parallel aggState items of chunk c.
func (p *winPool[T]) auxChunk(c int32) []aggState {
	i := int(c&p.mask) << p.lenShift
	return p.aux[c>>p.shift][i : i+p.chunkLen : i+p.chunkLen]
}

// at returns item i (< chunkLen) of chunk c.
func (p *winPool[T]) at(c int32, i int) *T {
	return &p.items[c>>p.shift][int(c&p.mask)<<p.lenShift|i]
}

// auxAt returns parallel item i (< chunkLen) of chunk c.
func (p *winPool[T]) auxAt(c int32, i int) *aggState {
	return &p.aux[c>>p.shift][int(c&p.mask)<<p.lenShift|i]
}

// winPow2 returns the smallest power of two >= n (n >= 1).
func winPow2(n int64) int64 {
	if n <= 1 {
		return 1
	}
	return int64(1) << bits.Len64(uint64(n-1))
}
