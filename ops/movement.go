package ops

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"qstream/codec"
)

// This file holds the price-movement operator (the specification's
// detect_price_movements / generate_events); its checkpoint encoding is in
// movement_state.go, the sequence steps on movements in movement_seq.go.
//
// # Semantics
//
// A MovementSpec is a horizon H (event time) and a threshold θ (a fraction).
// Per symbol and spec, on every trade at event time t with price p:
//
//   - The reference is the latest trade of the symbol at or before t − H:
//     among the symbol's earlier trades (arrival order, the trade itself
//     excluded), those with event time ≤ t − H, the last to arrive (at equal
//     event times, the last one). With no such trade (the first H of a
//     symbol's history) nothing is checked.
//   - The move is m = (p − ref)/ref, signed.
//   - Hysteresis: each (symbol, spec) is armed or has fired up or down. An
//     armed one fires when |m| ≥ θ: one OutMovement output, then it is
//     "fired up" (m > 0) or "fired down" (m < 0). A fired-up one re-arms on
//     the first trade with m < θ/2 (signed: a fall to −θ re-arms too), a
//     fired-down one on m > −θ/2; re-arming and firing are checked in that
//     order on the same trade, so a swing from +θ to −θ in one trade re-arms
//     and fires down at once. A sustained move is thus one event, not one per
//     trade; the next event in the same direction needs the move to fall
//     back below half the threshold first. Trades without a reference
//     leave the state as it is.
//   - A trade whose event time is before its symbol's latest trade's is late
//     for movements: it is neither checked nor remembered (MovementStats.Late),
//     so each symbol's history is in event-time order. A trade whose price
//     is not a finite positive number is skipped (MovementStats.Invalid).
//
// # Cost and bounds
//
// Each (symbol, spec) keeps a deque (a ring, oldest first) of (ts, price)
// of its trades from the current reference on: on a trade the front is
// popped while the next entry is also at or before t − H, the front is then
// the reference, and the trade is pushed at the back. Each trade is pushed
// and popped once: amortised O(1) per trade and spec, no rescans. The ring
// starts at movRingInit entries and doubles (an allocation, during warm-up
// only) up to MovementOptions.MaxTradesPerSymbol (rounded up to a power of
// two, at least 16) while the operator's rings hold at most
// MovementOptions.MaxStateBytes in all (the first movRingInit entries of a
// ring are always granted). A push onto a full ring that may not grow first
// thins it: with its capacity c and bucket width g = ⌈H/(c/2)⌉ of event
// time, it keeps the front and the last trade of each bucket floor(ts/g),
// which leaves at most c/2 + 2 entries (the entries after the front are
// within (t−H, t]); MovementStats.Thinned counts these. Thinning costs O(c)
// once per at least c/2 − 2 pushes, so the cost stays amortised O(1). After
// thinning a reference can be an older trade than the exact one: the latest
// kept trade before t−H's bucket, less than g (plus any gap without trades)
// older. A symbol with fewer than c/2 trades per horizon is never thinned
// and is exact.
//
// # Output
//
// One OutMovement per event: Op the spec's index, Symbol, TsNs and Price of
// the trade, Value the move m (a signed fraction), Values[0] the reference
// price, Values[1] float64(reference ts) (rounded; StartNs holds it
// exactly), Values[2] the spec's threshold and Count its horizon in ns
// (MovementSpecOf), StartNs the reference's event time, EndNs = TsNs, Seq the
// trade's input sequence, Key the pipeline's per-input key of the trade
// (Pipeline.inputKey: OutputKey(OutMovement, op, symbol, seq or id hash,
// source)). The outputs of one trade are in spec order.

// MovementSpec is one price-movement detector: a move of at least Threshold
// (a fraction: 0.01 is 1 %) against the price Horizon ago (event time).
type MovementSpec struct {
	Horizon   int64   // ns of event time, > 0
	Threshold float64 // fraction, > 0
}

// MaxMovements bounds the movement specs of one pipeline.
const MaxMovements = 64

// DefaultMaxMovementTrades is MovementOptions.MaxTradesPerSymbol when 0.
const DefaultMaxMovementTrades = 4096

// DefaultMaxMovementStateBytes is MovementOptions.MaxStateBytes when 0.
const DefaultMaxMovementStateBytes = 256 << 20

// maxMovementTrades bounds MovementOptions.MaxTradesPerSymbol.
const maxMovementTrades = 1 << 24

// movRingInit is the first capacity of a ring.
const movRingInit = 16

// MovementOptions bounds the movement operator's state.
type MovementOptions struct {
	// MaxTradesPerSymbol bounds the trades kept per symbol and spec
	// (16 bytes each), rounded up to a power of two; beyond it the ring is
	// thinned (see the package comment of movement.go). 0 means
	// DefaultMaxMovementTrades.
	MaxTradesPerSymbol int
	// MaxStateBytes bounds the memory of the operator's rings beyond their
	// first movRingInit entries each (16 bytes a trade); a ring that may
	// not grow is thinned instead. 0 means DefaultMaxMovementStateBytes.
	MaxStateBytes int64
}

// MovementStats counts what the movement operator did besides detecting.
type MovementStats struct {
	Events  uint64 // movement outputs
	Late    uint64 // trades skipped: their event time went backwards for their symbol
	Invalid uint64 // trades skipped: price not finite and positive
	Thinned uint64 // rings thinned because they were full
	Bytes   uint64 // memory held by the rings (16 bytes a trade of capacity)
}

// ErrMovementSpec is wrapped by every error of ParseMovements and of a
// pipeline refusing a movement spec.
var ErrMovementSpec = errors.New("ops: bad movement spec")

// String returns the spec as --movements writes it: "5m:1%".
func (s MovementSpec) String() string { return string(s.AppendTo(nil)) }

// AppendTo appends the spec as String writes it (the horizon as
// FormatWindowDuration does, the threshold as a percentage with 12
// significant digits), without allocating beyond growing dst.
func (s MovementSpec) AppendTo(dst []byte) []byte {
	units := [...]struct {
		n int64
		s string
	}{{24 * int64(time.Hour), "d"}, {int64(time.Hour), "h"}, {int64(time.Minute), "m"},
		{int64(time.Second), "s"}, {int64(time.Millisecond), "ms"}, {int64(time.Microsecond), "us"}, {1, "ns"}}
	for _, u := range units {
		if s.Horizon%u.n == 0 && s.Horizon != 0 || u.n == 1 {
			dst = strconv.AppendInt(dst, s.Horizon/u.n, 10)
			dst = append(dst, u.s...)
			break
		}
	}
	dst = append(dst, ':')
	dst = strconv.AppendFloat(dst, s.Threshold*100, 'g', 12, 64)
	return append(dst, '%')
}

// MovementSpecOf returns the spec of a movement output (Count and Values[2]
// carry it, so that an encoder names the event without configuration).
func MovementSpecOf(o *Output) MovementSpec {
	return MovementSpec{Horizon: o.Count, Threshold: o.Values[2]}
}

// ParseMovement reads one spec, HORIZON:THRESHOLD: a duration ("30s",
// "5m", "1h") and a percentage ("1%", "0.5%") or a bare fraction ("0.01").
func ParseMovement(s string) (MovementSpec, error) {
	h, th, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return MovementSpec{}, fmt.Errorf("%w: %q: want HORIZON:THRESHOLD, e.g. 5m:1%%", ErrMovementSpec, s)
	}
	ns, err := ParseWindowDuration(h, false)
	if err != nil {
		return MovementSpec{}, fmt.Errorf("%w: %q: horizon: %w", ErrMovementSpec, s, err)
	}
	pct := strings.HasSuffix(th, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(th, "%"), 64)
	if err != nil {
		return MovementSpec{}, fmt.Errorf("%w: %q: threshold %q is not a number such as 1%% or 0.01", ErrMovementSpec, s, th)
	}
	if pct {
		v /= 100
	}
	spec := MovementSpec{Horizon: ns, Threshold: v}
	if err := spec.validate(); err != nil {
		return MovementSpec{}, fmt.Errorf("%w: %q: %w", ErrMovementSpec, s, err)
	}
	return spec, nil
}

// ParseMovements reads a comma-separated list of specs, "5m:1%,1h:2%". The
// same spec twice is an error.
func ParseMovements(s string) ([]MovementSpec, error) {
	var specs []MovementSpec
	for _, item := range strings.Split(s, ",") {
		spec, err := ParseMovement(item)
		if err != nil {
			return nil, err
		}
		for _, o := range specs {
			if o == spec {
				return nil, fmt.Errorf("%w: %s given twice", ErrMovementSpec, spec)
			}
		}
		specs = append(specs, spec)
	}
	if len(specs) > MaxMovements {
		return nil, fmt.Errorf("%w: %d specs, at most %d", ErrMovementSpec, len(specs), MaxMovements)
	}
	return specs, nil
}

func (s MovementSpec) validate() error {
	if s.Horizon <= 0 || s.Horizon > MaxWindowSpanNs {
		return fmt.Errorf("horizon %d ns outside 1ns..366d", s.Horizon)
	}
	if !(s.Threshold > 0 && s.Threshold <= 1e6) {
		return fmt.Errorf("threshold %v outside (0, 1e6]", s.Threshold)
	}
	return nil
}

// movEnt is one remembered trade.
type movEnt struct {
	ts    int64
	price float64
}

// movRing is the state of one (symbol, spec): the deque of trades from the
// reference on, oldest first, in ents[(head+i) & (len(ents)−1)] for i < n,
// and the hysteresis state.
type movRing struct {
	ents []movEnt // power-of-two length; nil until the first trade
	head uint32
	n    uint32
	dir  int8 // 0 armed, +1 fired up, −1 fired down
}

// movementSet is a pipeline's movement operator.
type movementSet struct {
	specs  []MovementSpec
	capN   int       // ring capacity bound, a power of two
	budget int64     // MaxStateBytes
	rings  []movRing // slot*len(specs) + spec
	seen   []bool    // per slot: a trade was remembered
	lastTs []int64   // per slot: event time of that latest trade
	used   int       // slots below this may hold state
	bytes  int64     // 16 × the capacity beyond movRingInit of every grown ring, against budget
	stats  MovementStats
}

func newMovementSet(specs []MovementSpec, opts MovementOptions, maxSlots int) (*movementSet, error) {
	if len(specs) > MaxMovements {
		return nil, fmt.Errorf("%w: %d specs, at most %d", ErrMovementSpec, len(specs), MaxMovements)
	}
	n := opts.MaxTradesPerSymbol
	if n == 0 {
		n = DefaultMaxMovementTrades
	}
	if n < 0 || n > maxMovementTrades {
		return nil, fmt.Errorf("%w: max trades per symbol %d outside 1..%d", ErrMovementSpec, n, maxMovementTrades)
	}
	capN := max(movRingInit, 1<<bits.Len(uint(n-1)))
	budget := opts.MaxStateBytes
	if budget == 0 {
		budget = DefaultMaxMovementStateBytes
	}
	if budget < 0 {
		return nil, fmt.Errorf("%w: max state bytes %d is negative", ErrMovementSpec, budget)
	}
	m := &movementSet{
		specs:  append([]MovementSpec(nil), specs...),
		capN:   capN,
		budget: budget,
		rings:  make([]movRing, maxSlots*len(specs)),
		seen:   make([]bool, maxSlots),
		lastTs: make([]int64, maxSlots),
	}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMovementSpec, s, err)
		}
		for j := range specs[:i] {
			if specs[j] == s {
				return nil, fmt.Errorf("%w: %s given twice", ErrMovementSpec, s)
			}
		}
	}
	return m, nil
}

// initMovements builds the movement operator of cfg.Movements (nil without
// any) and checks that sequence steps on movements have some to see.
func (p *Pipeline) initMovements() error {
	if len(p.cfg.Movements) > 0 {
		m, err := newMovementSet(p.cfg.Movements, p.cfg.MovementOptions, p.cfg.MaxSlots)
		if err != nil {
			return err
		}
		p.mov = m
	}
	return p.checkSeqMovements()
}

// onMovements runs the movement operator on one trade of slot and appends
// its events, each then seen by the sequence patterns (movement_seq.go).
func (p *Pipeline) onMovements(slot int, ev *codec.Event, dst []Output) []Output {
	first := len(dst)
	dst = p.mov.onTrade(slot, ev, dst)
	end := len(dst)
	for i := first; i < end; i++ {
		o := &dst[i]
		o.Key = p.inputKey(OutMovement, o.Op, ev)
		o.IngestNs = ev.IngestNs
	}
	if p.seq != nil {
		for i := first; i < end; i++ { // the matches go after the movements
			dst = p.onSequenceMovement(slot, ev, i, dst)
		}
	}
	return dst
}

// onTrade is the operator's step for one trade (see the file comment). It
// allocates only when a ring grows.
func (m *movementSet) onTrade(slot int, ev *codec.Event, dst []Output) []Output {
	t, px := ev.TsNs, ev.Price
	if !(px > 0 && px <= math.MaxFloat64) {
		m.stats.Invalid++
		return dst
	}
	if m.seen[slot] && t < m.lastTs[slot] {
		m.stats.Late++
		return dst
	}
	m.seen[slot], m.lastTs[slot] = true, t
	m.used = max(m.used, slot+1)
	rings := m.rings[slot*len(m.specs) : (slot+1)*len(m.specs)]
	for i := range rings {
		r := &rings[i]
		s := &m.specs[i]
		cut := t - s.Horizon
		if t < math.MinInt64+s.Horizon { // saturate rather than wrap
			cut = math.MinInt64
		}
		if r.n > 0 {
			mask := uint32(len(r.ents) - 1)
			for r.n > 1 && r.ents[(r.head+1)&mask].ts <= cut {
				r.head = (r.head + 1) & mask
				r.n--
			}
			if ref := r.ents[r.head]; ref.ts <= cut {
				move := (px - ref.price) / ref.price
				switch {
				case r.dir > 0 && move < s.Threshold/2, r.dir < 0 && move > -s.Threshold/2:
					r.dir = 0
				}
				if r.dir == 0 && math.Abs(move) >= s.Threshold {
					r.dir = 1
					if move < 0 {
						r.dir = -1
					}
					m.stats.Events++
					dst = append(dst, Output{
						Kind:    OutMovement,
						NValues: 3,
						Op:      uint16(i),
						Symbol:  ev.Symbol,
						Seq:     ev.Seq,
						TsNs:    t,
						Price:   px,
						Value:   move,
						StartNs: ref.ts,
						EndNs:   t,
						Count:   s.Horizon,
					})
					o := &dst[len(dst)-1]
					o.Values[0], o.Values[1], o.Values[2] = ref.price, float64(ref.ts), s.Threshold
				}
			}
		}
		m.push(r, i, movEnt{t, px})
	}
	return dst
}

// push appends e at the back of r, growing or thinning it when full.
func (m *movementSet) push(r *movRing, spec int, e movEnt) {
	if c := len(r.ents); int(r.n) == c {
		switch {
		case c == 0:
			m.grow(r, movRingInit)
		case c < m.capN && m.bytes+16*int64(c) <= m.budget:
			m.grow(r, 2*c)
		default:
			half := int64(c / 2)
			m.thin(r, (m.specs[spec].Horizon+half-1)/half)
		}
	}
	r.ents[(r.head+r.n)&uint32(len(r.ents)-1)] = e
	r.n++
}

// grow moves r's entries into a new ring of capacity n (a power of two),
// front first at index 0.
func (m *movementSet) grow(r *movRing, n int) {
	if len(r.ents) > 0 {
		m.bytes += 16 * int64(n-len(r.ents))
	}
	ents := make([]movEnt, n)
	mask := uint32(len(r.ents) - 1)
	for i := uint32(0); i < r.n; i++ {
		ents[i] = r.ents[(r.head+i)&mask]
	}
	r.ents, r.head = ents, 0
}

// thin keeps the front of r and the last entry of every bucket of width g
// (floor(ts/g)), in order, compacted from index 0.
func (m *movementSet) thin(r *movRing, g int64) {
	m.stats.Thinned++
	// Linearise first (in place would overwrite unread entries of a
	// wrapped ring): rotate so that the front is at index 0.
	if r.head != 0 {
		rotateMov(r.ents, int(r.head))
		r.head = 0
	}
	e := r.ents[:r.n]
	w := 1 // e[0], the front, is kept
	for i := 1; i < len(e); i++ {
		if i+1 < len(e) && floorDiv(e[i].ts, g) == floorDiv(e[i+1].ts, g) {
			continue // a later entry of the same bucket follows
		}
		e[w] = e[i]
		w++
	}
	r.n = uint32(w)
}

// rotateMov rotates e left by k in place (three reversals, no allocation).
func rotateMov(e []movEnt, k int) {
	rev := func(s []movEnt) {
		for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
			s[i], s[j] = s[j], s[i]
		}
	}
	rev(e[:k])
	rev(e[k:])
	rev(e)
}

// floorDiv is ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// MovementRefTs returns the reference trade's event time of a movement
// output (exact; Values[1] holds it as a rounded float64).
func MovementRefTs(o *Output) int64 { return o.StartNs }

// MovementStats returns the movement operator's counters.
func (p *Pipeline) MovementStats() MovementStats {
	if p.mov == nil {
		return MovementStats{}
	}
	st := p.mov.stats
	st.Bytes = uint64(p.mov.bytes + 16*movRingInit*int64(p.mov.rings16()))
	return st
}

// rings16 counts the rings that hold memory (each at least movRingInit
// entries); not a hot-path call.
func (m *movementSet) rings16() int {
	n := 0
	for i := range m.rings[:m.used*len(m.specs)] {
		if m.rings[i].ents != nil {
			n++
		}
	}
	return n
}
