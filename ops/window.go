package ops

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"unsafe"

	"qstream/codec"
)

// EmitMode chooses between updating results and one final result per window.
type EmitMode uint8

// Emit modes.
const (
	// EmitUpdates (default): a window fires on_time when the watermark
	// reaches its end, early when a configured early trigger says so, and
	// again (late) for every trade within the allowed lateness that changes it.
	EmitUpdates EmitMode = iota
	// EmitFinal: a window fires once, on_time, when the watermark reaches its
	// end plus the allowed lateness, i.e. when it can no longer change (Kafka
	// Streams' suppress(untilWindowCloses)). No early or late firings.
	EmitFinal
)

// WindowTrigger says when windows fire besides the watermark (the
// specification's WindowTrigger). The zero value fires on the watermark only.
type WindowTrigger struct {
	// EarlyEveryNs fires every open window of each symbol that received
	// trades, at most once per EarlyEveryNs of processing time, when the
	// caller calls OnProcessingTime. 0 disables.
	EarlyEveryNs int64
	// EarlyEveryN fires every open window of a symbol after each EarlyEveryN
	// of its trades. 0 disables.
	EarlyEveryN int
	// Emit is the emit mode.
	Emit EmitMode
}

// WindowOptions configures a WindowOperator beyond its spec. Zero fields
// take the defaults documented on each.
type WindowOptions struct {
	// AllowedLatenessNs: a trade behind the watermark by at most this much
	// still updates its windows (late firings); later trades are refused with
	// codec.ReasonLate. Default 0.
	AllowedLatenessNs int64
	// MaxOpenWindowsPerSymbol bounds per-symbol state: for tumbling and
	// hopping windows, how many hops a symbol's trades may run ahead of the
	// firing watermark beyond the windows held for allowed lateness (at
	// least this many: the pane span is rounded up to a power of two); for
	// session windows, the sessions held per symbol. A trade that would
	// exceed it is refused with codec.ReasonOversize and counted. Default 16,
	// at most 4096.
	MaxOpenWindowsPerSymbol int
	// MaxBufferedEventsPerSymbol bounds the raw trades kept per symbol by
	// sliding windows (the trades of (t−SIZE, t] plus allowed lateness), by
	// TWAP (trades within the allowed lateness, for out-of-order inserts),
	// by percentiles (trades of open windows, for exact ranks) and by count
	// windows with those aggregations (N <= this). When it is full a sliding
	// or TWAP operator refuses the trade (codec.ReasonOversize); a percentile
	// operator drops the oldest raw value instead (counted in Spilled) and
	// answers the windows that held it from its sketches. Default 4096, at
	// most 1<<24.
	MaxBufferedEventsPerSymbol int
	// PercentileExactMax: a window with at most this many trades gets the
	// exact nearest-rank percentile; above it (or after a spill), the
	// Sketch estimate within SketchRelativeAccuracy. Default 1024.
	PercentileExactMax int
	// IdleSymbolTTLNs releases the state of a symbol whose last trade is
	// more than this behind the watermark and that has nothing left to fire
	// (counted in IdleResets). Must exceed the allowed lateness plus the
	// window size (or gap). 0 disables.
	IdleSymbolTTLNs int64
	// MaxStateBytes bounds the operator's memory: the part preallocated for
	// maxSlots (a page table and a heap index, 4.5 bytes per slot, plus
	// scratch; NewWindowOperator refuses a configuration where that alone
	// exceeds it), the 512-byte slot records, allocated in pages of 16 slots
	// as their symbols trade, and the pools that hold what symbols actually
	// use (pane blocks, buffered trades, sessions, sketches), which grow on
	// demand. A trade that needs more than the bound allows is refused with
	// codec.ReasonOversize (counted in Refused and StateFull). Default 1 GiB.
	MaxStateBytes int64
	WindowTrigger
}

// Defaults and limits of WindowOptions.
const (
	DefaultMaxOpenWindowsPerSymbol    = 16
	DefaultMaxBufferedEventsPerSymbol = 4096
	DefaultPercentileExactMax         = 1024
	DefaultMaxWindowStateBytes        = 1 << 30
	maxOpenWindowsLimit               = 4096
	maxBufferedLimit                  = 1 << 24
	maxPanesPerWindow                 = 1 << 16
	maxRingPanes                      = 1 << 22
	// winMaxTs bounds accepted event times (about year 2116) so that window
	// arithmetic never overflows.
	winMaxTs = int64(1) << 62
	// MaxWindowSlots bounds maxSlots.
	MaxWindowSlots = 1 << 22
	// winDirMaxBlocks bounds a symbol's pane directory and winDirMaxChunks
	// its buffered-trade directory: pane blocks and trade chunks grow instead.
	winDirMaxBlocks = 32
	winDirMaxChunks = 1024
)

// ErrWindowConfig is wrapped by configuration errors of NewWindowOperator.
var ErrWindowConfig = errors.New("ops: invalid window configuration")

// WindowCounters are the operator's cumulative counts (metrics).
type WindowCounters struct {
	Events       uint64 // trades folded into window state
	Late         uint64 // refused: behind the watermark by more than the allowed lateness
	Refused      uint64 // refused: per-symbol state full or the operator at MaxStateBytes (ReasonOversize)
	BadValue     uint64 // refused: non-finite value or volume, negative volume, time out of range
	MissingField uint64 // skipped: the trade lacks the aggregated field (bid, ask, spread, mid)
	Unwindowed   uint64 // skipped: a hopping trade between windows (HOP > SIZE)
	Fired        uint64 // results emitted (all timings)
	FiredLate    uint64 // of which late
	FiredEarly   uint64 // of which early
	Spilled      uint64 // percentile raw values dropped from a full buffer
	Sketched     uint64 // percentile results answered from a sketch
	IdleResets   uint64 // symbols released by IdleSymbolTTLNs
	Merges       uint64 // session windows merged by a bridging trade
	StateFull    uint64 // of Refused: the operator's state was at MaxStateBytes
}

// WindowOperator runs one WindowSpec for up to maxSlots symbols of one
// shard. Its memory is bounded by what the symbols actually hold, not by
// symbols × worst case: only a page table and a heap index (4.5 bytes per
// slot) are preallocated for maxSlots; a slot's fixed-size record (512
// bytes: window indices, aggregators, list heads) comes in pages of 16
// slots when one of them first trades; everything variable (the pane
// blocks of tumbling and hopping windows, buffered trades, session lists,
// percentile sketches) comes from per-operator pools of fixed-size,
// pointer-free chunks addressed by int32 indices (see winPool). Pools grow
// lazily in blocks up to WindowOptions.MaxStateBytes and recycle chunks
// through free lists as windows fire and symbols fall quiet (firings,
// trades and a small sweep on each firing watermark release what no window
// can read any more), so after warm-up the hot path allocates nothing (as
// long as the caller reuses dst), and AppendState snapshots exactly what
// is held.
//
// Time is event time only: OnEvent and OnWatermark take the shard's
// watermark from the caller (see WatermarkTracker); processing time enters
// only through OnProcessingTime, for early firings. The operator never
// reads a clock, so the same calls give bit-identical outputs.
//
// The shard calls it from one goroutine; it is not safe for concurrent use.
// A slot belongs to one symbol from its first trade until ResetSlot.
//
// Firing rules (DESIGN.md, "Replay and emit"):
//   - tumbling/hopping/session windows fire on_time when the watermark
//     reaches their end (plus the allowed lateness in EmitFinal mode);
//   - a sliding window evaluates (t−SIZE, t] at each distinct trade time t
//     (or, with SLIDE, at the first trade time at or after the previous
//     evaluation + SLIDE) once the watermark is past t, i.e. > t, because
//     more trades at t may still come;
//   - count windows fire on their N-th trade, in arrival order, and never
//     consult event time (they never report late);
//   - a trade behind the watermark but within the allowed lateness re-fires
//     every window it changes, in OnEvent, with timing late (a window that
//     held no trades fires then for the first time, also late); in sliding
//     windows a late trade re-fires the evaluations whose window contains
//     it and, without SLIDE, is evaluated itself; with SLIDE it never
//     becomes an evaluation point;
//   - watermark math.MaxInt64 is the end of input: everything open fires
//     on_time, including sliding evaluations not yet due and the partial
//     chunk of a count window;
//   - windows without trades never fire.
//
// Each result is an Output with Kind OutWindow, Op = op, Symbol, Timing,
// StartNs and EndNs (for tumbling and hopping windows [start, end); for a
// sliding window the trailing window (start, end] = (t−SIZE, t]; for a
// session [first trade, last trade + GAP); for a count window the first
// and last event time of its trades), Count (trades), Value (NaN = null:
// vwap without volume, stddev_samp of one trade) or, for ohlcv, NValues = 5
// and Values[0:5] = open, high, low, close, volume (Value = close). Seq is
// the input sequence of the trade or watermark whose processing fired it
// (OnEvent: the trade's Seq; OnWatermark: the seq argument), TsNs that
// trade's event time or the watermark, IngestNs the trade's ingest stamp (0
// for watermark firings), and Key a deterministic idempotency key over
// (op, symbol, start, end, firing ordinal): late and early re-firings of a
// window get new keys; a replay of the same input gives the same keys.
//
// Values are bit-for-bit deterministic for the same sequence of calls,
// across AppendState/LoadState too. Sums are Neumaier-compensated, standard
// deviations use Welford's update and Chan's merge, and windows over panes
// or buffered trades combine them with two-stacks (min, max, stddev, OHLCV,
// TWAP, custom) or subtract-on-evict (count, sum, avg, vwap; re-summed
// exactly once per window length of evictions so rounding cannot drift).
//
// Cost per trade is O(1) amortized for every type and aggregation except
// percentiles, which select over the window's trades at each firing
// (exact up to PercentileExactMax, else a Sketch). State is bounded per
// symbol by WindowOptions and per operator by MaxStateBytes; what does not
// fit is refused or spilled, and counted (WindowCounters).
type WindowOperator struct {
	op       uint16
	spec     WindowSpec
	opts     WindowOptions
	maxSlots int

	kind     AggregationKind
	mask     aggMask
	inv      bool // the window combine subtracts evicted panes
	custom   AggregationFunc
	pctMilli int64
	useBuf   bool // keeps sorted raw trades per symbol
	bufMust  bool // a full buffer refuses (sliding, TWAP, count) instead of spilling
	useSk    bool // percentile units keep sketches (tumbling, hopping, session)
	twoPanes bool // hopping two-stacks: pane blocks carry suffix aggregates
	twoRecs  bool // sliding two-stacks: trade chunks carry suffix aggregates
	// paneSimple: a tumbling or hopping trade needs nothing but its pane
	// blocks (no trade buffer, no sketch).
	paneSimple bool

	paneNs, off int64 // tumbling/hopping pane length and alignment
	w, h        int64 // panes per window, per hop
	ringCap     int64 // pane span a symbol may hold (a power of two)
	sizeNs      int64 // sliding SIZE, session GAP
	slideNs     int64 // sliding SLIDE (>= 1)
	countN      int64
	lateNs      int64
	delayNs     int64 // EmitFinal: firing waits for the allowed lateness
	bufCap      int64
	maxOpen     int64

	// Pool geometry: pane blocks of paneP panes (paneShift = log2), a
	// symbol's held blocks indexed through paneDirN directory entries; trade
	// chunks of recL trades, recDirN directory entries. Both directories
	// share one dirs chunk per symbol (panes first).
	paneP, paneDirN int64
	paneShift       uint
	recL, recDirN   int64
	recMask         int64 // recL − 1
	recShift        uint

	wm  int64 // last OnWatermark
	fwm int64 // firing watermark: wm − delay (math.MaxInt64 at end of input)
	// Tumbling/hopping, derived from wm by setWatermark: the first window
	// the firing watermark has not passed, and the first window that can
	// still change (end > wm − allowed lateness).
	kFire, kAlive       int64
	kFireEnd, kAliveEnd int64 // their window ends: the indices change when the watermark gets there
	wmSlowAt            int64 // OnWatermark takes its slow path at or after this watermark

	lastEarlyNs   int64
	earlyArmed    bool
	ttlCursor     int
	reclaimCursor int
	reclaimTick   uint32

	heap     []winHeapEnt // slots with something to fire, by (key, symbol, slot)
	heapRoom int          // slots of allocated pages: cap(heap) >= heapRoom
	heapAt   []int32      // per slot: its position in heap + 1, 0 when absent
	heapTop  int64        // key of heap[0], math.MaxInt64 when empty

	budget winBudget
	// The state of each slot, in pages of winSymPage slots allocated when
	// one of their slots gets its first trade (the page table is the only
	// part preallocated for maxSlots).
	symPages []*[winSymPage]winSym
	dirs     winPool[int32]      // per symbol: pane block and trade chunk directories
	panes    winPool[winPane]    // pane blocks (+ suffix aggregates)
	recs     winPool[winRec]     // buffered trade chunks (+ suffix aggregates)
	sess     winPool[winSession] // session list nodes
	sks      winPool[Sketch]     // percentile sketches (per pane or session)

	tmpSuffix []aggState // two-stacks suffixes of temporary sweeps (late re-firings, partial values)
	// The trade chunk rec resolved last: chunk number rcN of rcS is rcRecs
	// (rcS nil: none). Cleared when that chunk is released.
	rcS       *winSym
	rcN       int64
	rcRecs    []winRec
	rc2S      *winSym // a second entry: the chunk rcS/rcN displaced
	rc2N      int64
	rc2Recs   []winRec
	scratch   []float64 // exact percentiles
	scratchSk Sketch
	zeroAgg   aggState // read-only empty state
	qAgg      aggState // scratch for a combined window aggregate
	qAgg2     aggState // write-only sink (see paneSufAt)
	statsTmp  WindowStats

	counters WindowCounters
	rejErr   codec.Error
}

// winHeapEnt is an entry of the firing heap: the slot and what it is
// ordered by, so that comparisons touch only the heap.
type winHeapEnt struct {
	Key  int64 // fire when the firing watermark reaches it
	Sym  codec.Symbol
	Slot int32
}

// winSym is the state of one slot, in the operator's slot pages (512
// bytes; what it holds beyond this comes from the pools). The zero state of
// a page's slots is winSymInit. Exported fields are for encoding/binary
// only.
type winSym struct {
	// The first cache line: what every tumbling or hopping trade reads.
	DataHi  int64 // highest pane claimed
	NextK   int64 // first window not yet fired on time
	LoPane  int64 // lowest pane that may still be live
	NDP     int64 // first non-empty pane >= NextK·h, or winNone
	BlkLo   int64 // held pane blocks: [BlkLo, BlkLo+BlkN), contiguous
	BlkN    int64
	HotBlk  int64 // a one-entry cache of the pane directory: block HotBlk is chunk HotBlkC (0: empty)
	HotBlkC int32
	Dir     int32 // dirs chunk: paneDirN pane blocks, then recDirN trade chunks (0: none yet)

	Sym      codec.Symbol
	Used     uint16 // 1 from the slot's first trade until ResetSlot
	Early    uint16 // traded since the last processing-time early firing
	_        int32
	Sess     int32 // first session node (by time), 0 when none
	LastTs   int64 // latest event time seen (idle TTL)
	EarlyN   int64
	FreeQ    int64 // the sketches of panes below this have been released
	HotRecN  int64 // a one-entry cache of the trade directory: chunk number HotRecN is HotRecC (0: empty)
	HotRecC  int32
	NSess    uint32
	ColdBlk  int64 // a second entry of the pane cache, for reads away from the newest block
	ColdBlkC int32
	_        int32

	// sliding evaluation chain
	Cursor    int64 // abs index of the first trade the chain has not passed
	LastPoint int64
	HasPoint  uint32
	_         uint32

	// buffered trades (abs index = BufHead + i)
	BufHead, BufN int64
	SpillTs       int64 // percentile values at or before this time were dropped

	// window aggregator over panes (hopping) or buffered trades (sliding)
	Sw winSwag

	// count windows
	Chunk              aggState
	ChunkNo            int64
	ChunkMin, ChunkMax int64
	ChunkFires         uint32
	_                  [1]uint32 // 512 bytes: records stay cache-line aligned in their pages
}

// winSymInit is the state of a slot without trades.
var winSymInit = winSym{NDP: winNone, DataHi: winNone, LoPane: winNone, NextK: math.MinInt64,
	FreeQ: math.MinInt64, LastPoint: math.MinInt64, SpillTs: math.MinInt64, ChunkMin: math.MaxInt64, ChunkMax: math.MinInt64}

// winSwag is a sliding-window aggregator over consecutive items (panes of
// a hopping window, buffered trades of a sliding window) [Lo, Hi). For
// invertible aggregations Back is the running aggregate: pushes merge,
// evictions subtract (re-summed exactly from the items after every
// window-length of evictions, so rounding cannot drift). Otherwise it is
// the two-stacks algorithm: items [Lo, B) have suffix aggregates stored
// beside them, Back aggregates [B, Hi); evicting at B = Lo flips (recomputes
// the suffixes of [Lo, Hi)), so every operation is amortized O(1) and min,
// max, stddev, OHLCV and TWAP need no inverse. Dirty forces a rebuild after
// a late trade changed an item inside.
type winSwag struct {
	Lo, Hi, B, Evicts int64
	Dirty             uint32
	_                 uint32
	Back              aggState
}

// winPane is one pane of a tumbling or hopping window.
type winPane struct {
	Fires uint32 // firings of the window whose first pane this is (key ordinal)
	Sk    int32  // sketch (percentile), 0 none
	A     aggState
}

// winRec is one buffered trade.
type winRec struct {
	Ts    int64
	X, V  float64
	Fires uint32 // sliding: firings of the evaluation at Ts (first trade at Ts)
	Point uint32 // sliding: 1 when Ts is an evaluation point (first trade at Ts)
}

// winSession is one session window, a node of the symbol's list sorted by
// time.
type winSession struct {
	First, Last int64
	Fires       uint32
	Fired       uint32 // 1 when the current contents have been emitted
	Sk          int32  // sketch (percentile), 0 none
	Next        int32  // next session node, 0 at the end
	A           aggState
}

const winNone = math.MinInt64

// NewWindowOperator builds the operator for spec (its index op among the
// engine's specs is carried in Output.Op) for up to maxSlots symbols. It
// validates the spec and options and preallocates the fixed per-slot
// headers; it refuses a configuration whose headers alone would exceed
// opts.MaxStateBytes. Everything else is taken from the pools as symbols
// need it.
func NewWindowOperator(op uint16, spec WindowSpec, opts WindowOptions, maxSlots int) (*WindowOperator, error) {
	bad := func(format string, a ...any) (*WindowOperator, error) {
		return nil, fmt.Errorf("%w: %s: %s", ErrWindowConfig, spec.String(), fmt.Sprintf(format, a...))
	}
	if err := spec.validate(); err != nil {
		return bad("%v", err)
	}
	if maxSlots <= 0 || maxSlots > MaxWindowSlots {
		return bad("maxSlots %d outside 1..%d", maxSlots, MaxWindowSlots)
	}
	o := opts
	if o.MaxOpenWindowsPerSymbol == 0 {
		o.MaxOpenWindowsPerSymbol = DefaultMaxOpenWindowsPerSymbol
	}
	if o.MaxBufferedEventsPerSymbol == 0 {
		o.MaxBufferedEventsPerSymbol = DefaultMaxBufferedEventsPerSymbol
	}
	if o.PercentileExactMax == 0 {
		o.PercentileExactMax = min(DefaultPercentileExactMax, o.MaxBufferedEventsPerSymbol)
	}
	if o.MaxStateBytes == 0 {
		o.MaxStateBytes = DefaultMaxWindowStateBytes
	}
	switch {
	case o.AllowedLatenessNs < 0 || o.AllowedLatenessNs > MaxWindowSpanNs:
		return bad("allowed lateness %d ns outside 0..366d", o.AllowedLatenessNs)
	case o.MaxOpenWindowsPerSymbol < 1 || o.MaxOpenWindowsPerSymbol > maxOpenWindowsLimit:
		return bad("MaxOpenWindowsPerSymbol %d outside 1..%d", o.MaxOpenWindowsPerSymbol, maxOpenWindowsLimit)
	case o.MaxBufferedEventsPerSymbol < 1 || o.MaxBufferedEventsPerSymbol > maxBufferedLimit:
		return bad("MaxBufferedEventsPerSymbol %d outside 1..%d", o.MaxBufferedEventsPerSymbol, maxBufferedLimit)
	case o.PercentileExactMax < 1 || o.PercentileExactMax > o.MaxBufferedEventsPerSymbol:
		return bad("PercentileExactMax %d outside 1..MaxBufferedEventsPerSymbol", o.PercentileExactMax)
	case o.MaxStateBytes < 0:
		return bad("negative MaxStateBytes")
	case o.EarlyEveryNs < 0 || o.EarlyEveryN < 0:
		return bad("negative early trigger")
	case o.Emit > EmitFinal:
		return bad("unknown emit mode %d", o.Emit)
	case o.Emit == EmitFinal && (o.EarlyEveryNs > 0 || o.EarlyEveryN > 0):
		return bad("early firings need EmitUpdates")
	case spec.Type == WindowSliding && (o.EarlyEveryNs > 0 || o.EarlyEveryN > 0):
		return bad("sliding windows are evaluated at trades; early firings do not apply")
	case o.IdleSymbolTTLNs < 0:
		return bad("negative IdleSymbolTTLNs")
	case o.IdleSymbolTTLNs > 0 && o.IdleSymbolTTLNs <= o.AllowedLatenessNs+spec.SizeNs:
		return bad("IdleSymbolTTLNs must exceed allowed lateness + window size")
	}
	w := &WindowOperator{
		op: op, spec: spec, opts: o, maxSlots: maxSlots,
		kind:    spec.Agg.Kind,
		lateNs:  o.AllowedLatenessNs,
		bufCap:  int64(o.MaxBufferedEventsPerSymbol),
		maxOpen: int64(o.MaxOpenWindowsPerSymbol),
		wm:      math.MinInt64, fwm: math.MinInt64,
	}
	if o.Emit == EmitFinal {
		w.delayNs = o.AllowedLatenessNs
	}
	w.mask, w.inv = aggMaskOf(w.kind)
	if w.kind == AggCustom {
		f, err := aggLookup(spec.Agg.Name)(spec.Agg.Params[:spec.Agg.NParams])
		if err != nil {
			return bad("%v", err)
		}
		w.custom = f
	}
	if w.kind == AggPercentile {
		w.pctMilli = int64(spec.Agg.PercentileMilli)
		w.useBuf = true
	}
	if w.kind == AggTWAP {
		w.useBuf, w.bufMust = true, true
	}
	switch spec.Type {
	case WindowTumbling, WindowHopping:
		w.paneNs = winGCD(spec.SizeNs, spec.HopNs)
		w.w, w.h = spec.SizeNs/w.paneNs, spec.HopNs/w.paneNs
		w.off = spec.OffsetNs
		if w.w > maxPanesPerWindow {
			return bad("SIZE/gcd(SIZE,HOP) = %d panes per window, more than %d", w.w, maxPanesPerWindow)
		}
		need := w.w + winCeilDiv(o.AllowedLatenessNs, w.paneNs) + (w.maxOpen+1)*w.h + 1
		if need > maxRingPanes {
			return bad("%d panes per symbol (window, lateness and open windows), more than %d", need, maxRingPanes)
		}
		w.ringCap = winPow2(need)
		w.twoPanes = w.w > 1 && !w.inv
		// The blocks a symbol holds span less than ringCap + 2·w panes (see
		// paneFree): blocks of paneP panes keep its directory within
		// winDirMaxBlocks entries.
		span := w.ringCap + 2*w.w
		w.paneP = max(4, winPow2(winCeilDiv(span, winDirMaxBlocks)))
		w.paneDirN = winPow2(winCeilDiv(span, w.paneP) + 1)
		w.paneShift = uint(bits.TrailingZeros64(uint64(w.paneP)))
		w.useSk = w.kind == AggPercentile
	case WindowSliding:
		w.sizeNs, w.slideNs = spec.SizeNs, max(spec.HopNs, 1)
		w.useBuf, w.bufMust = true, true
		w.twoRecs = !w.inv
	case WindowSession:
		w.sizeNs = spec.SizeNs
		w.useSk = w.kind == AggPercentile
	case WindowCount:
		w.countN = spec.Count
		if w.useBuf {
			w.bufMust = true
			if w.countN > w.bufCap {
				return bad("count %d over MaxBufferedEventsPerSymbol %d (needed by %s)", w.countN, w.bufCap, w.kind)
			}
		}
	}
	w.paneSimple = !w.useBuf && !w.useSk
	if w.useBuf {
		// Trade chunks of recL: at most winDirMaxChunks directory entries
		// for bufCap trades (+1: the buffer need not start at a chunk
		// boundary).
		w.recL = min(64, winPow2(w.bufCap))
		if winCeilDiv(w.bufCap, w.recL)+1 > winDirMaxChunks {
			w.recL = winPow2(winCeilDiv(w.bufCap, winDirMaxChunks-1))
		}
		w.recDirN = winPow2(winCeilDiv(w.bufCap, w.recL) + 1)
		w.recShift = uint(bits.TrailingZeros64(uint64(w.recL)))
		w.recMask = w.recL - 1
	}
	// Memory: the fixed part is refused up front; the pools count against
	// the same bound as they grow.
	fixed := int64((maxSlots+winSymPage-1)/winSymPage) * 8 // slot page table
	fixed += int64(maxSlots) * 4                           // heap positions
	if w.kind == AggPercentile {
		fixed += int64(o.PercentileExactMax) * 8
	}
	// Two-stacks suffixes of temporary sweeps: a pane span, or a symbol's
	// buffer (index modulo a power of two).
	tmpN := int64(0)
	if w.twoPanes {
		tmpN = w.ringCap
	}
	if w.twoRecs {
		tmpN = winPow2(w.bufCap)
	}
	fixed += tmpN * int64(unsafe.Sizeof(aggState{}))
	if fixed > o.MaxStateBytes {
		return bad("fixed state would take %d bytes for %d symbols, over MaxStateBytes %d", fixed, maxSlots, o.MaxStateBytes)
	}
	w.budget = winBudget{held: fixed, maxBytes: o.MaxStateBytes}
	w.heapTop = math.MaxInt64
	w.heapAt = make([]int32, maxSlots)
	if w.kind == AggPercentile {
		w.scratch = make([]float64, 0, o.PercentileExactMax)
	}
	if tmpN > 0 {
		w.tmpSuffix = make([]aggState, tmpN)
	}
	w.symPages = make([]*[winSymPage]winSym, (maxSlots+winSymPage-1)/winSymPage)
	if n := w.paneDirN + w.recDirN; n > 0 {
		w.dirs.init(int(n), false, false)
	}
	if w.ringCap > 0 {
		w.panes.init(int(w.paneP), w.twoPanes, true)
	}
	if w.useBuf {
		w.recs.init(int(w.recL), w.twoRecs, false)
	}
	if spec.Type == WindowSession {
		w.sess.init(1, false, false)
	}
	if w.useSk {
		w.sks.init(1, false, true)
	}
	w.setWatermark(math.MinInt64)
	return w, nil
}

// setWatermark sets wm and what derives from it.
func (w *WindowOperator) setWatermark(wm int64) {
	w.wm = wm
	switch {
	case wm == math.MaxInt64:
		w.fwm = math.MaxInt64
	default:
		w.fwm = wmSatSub(wm, w.delayNs)
	}
	w.wmSlowAt = math.MinInt64 // recomputed below; MinInt64 means always slow
	if w.ringCap > 0 {
		// Both only change when their watermark reaches the end of the
		// window they name: skip the divisions otherwise.
		if f := w.fwm; f >= w.kFireEnd || f < w.kFireEnd-w.h*w.paneNs {
			w.kFire = w.kAfter(f)
			w.kFireEnd = winClamp(w.winEnd(w.kFire))
		}
		if a := wmSatSub(wm, w.lateNs); a >= w.kAliveEnd || a < w.kAliveEnd-w.h*w.paneNs {
			w.kAlive = w.kAfter(a)
			w.kAliveEnd = winClamp(w.winEnd(w.kAlive))
		}
	}
	// OnWatermark may skip setWatermark below this watermark: the cached
	// indices hold and no idle sweep is due. Only with a sane watermark and
	// without TTL sweeps (which run on every advance).
	if wm > -winMaxTs && wm < winMaxTs && w.opts.IdleSymbolTTLNs == 0 {
		w.wmSlowAt = math.MaxInt64
		if w.ringCap > 0 {
			w.wmSlowAt = min(w.kFireEnd+w.delayNs, w.kAliveEnd+w.lateNs)
		}
	}
}

// Spec returns the operator's spec.
func (w *WindowOperator) Spec() WindowSpec { return w.spec }

// Options returns the options with defaults filled in.
func (w *WindowOperator) Options() WindowOptions { return w.opts }

// Op returns the operator index carried in Output.Op.
func (w *WindowOperator) Op() uint16 { return w.op }

// MaxSlots returns the number of symbol slots.
func (w *WindowOperator) MaxSlots() int { return w.maxSlots }

// Watermark returns the last watermark given to OnWatermark.
func (w *WindowOperator) Watermark() int64 { return w.wm }

// StateBytes returns the memory the operator holds, what MaxStateBytes
// bounds: the page table and heap index (preallocated for maxSlots),
// scratch for percentiles and temporary sweeps, the slot pages allocated
// and the firing heap's room for their slots, and every pool block
// allocated so far (pools grow on demand and keep their blocks, so this is
// the high-water mark of what symbols held, rounded up to blocks).
func (w *WindowOperator) StateBytes() int64 { return w.budget.held }

// StateInUseBytes returns the part of StateBytes that symbols hold right
// now: StateBytes less the pool chunks on free lists (free for reuse by
// any symbol).
func (w *WindowOperator) StateInUseBytes() int64 {
	n := w.budget.held
	n -= winPoolFree(&w.dirs) + winPoolFree(&w.panes) +
		winPoolFree(&w.recs) + winPoolFree(&w.sess) + winPoolFree(&w.sks)
	return n
}

// winPoolFree returns the bytes of the pool's chunks not handed out.
func winPoolFree[T any](p *winPool[T]) int64 {
	if len(p.items) == 0 {
		return 0
	}
	perChunk := p.blockBytes / (int64(p.mask) + 1)
	return (int64(p.chunks) - int64(p.inUse)) * perChunk
}

// Counters returns the cumulative counts.
func (w *WindowOperator) Counters() WindowCounters { return w.counters }

// RejectError describes the last refusal of OnEvent as a *codec.Error with
// its reason. The error is owned by the operator and valid until the next
// OnEvent; copy the struct to keep it.
func (w *WindowOperator) RejectError() *codec.Error { return &w.rejErr }

// sym returns the state of slot, whose page must exist (the slot has had
// a trade).
func (w *WindowOperator) sym(slot int) *winSym {
	return &w.symPages[slot>>winSymPageShift][slot&(winSymPage-1)]
}

// symIf returns the state of slot, or nil when it has had no trade.
func (w *WindowOperator) symIf(slot int) *winSym {
	if slot < 0 || slot >= w.maxSlots {
		return nil
	}
	page := w.symPages[slot>>winSymPageShift]
	if page == nil || page[slot&(winSymPage-1)].Used == 0 {
		return nil
	}
	return &page[slot&(winSymPage-1)]
}

// Slot pages: winSymPage slots of state (8 KiB): small, so that scattered
// slots waste little.
const (
	winSymPageShift = 4
	winSymPage      = 1 << winSymPageShift
)

// symPage returns the state of slot, allocating its page if it is the
// page's first slot with a trade (counted against MaxStateBytes); nil when
// that would exceed it.
func (w *WindowOperator) symPage(slot int) *winSym {
	page := &w.symPages[slot>>winSymPageShift]
	if *page == nil {
		// The page, and room in the heap for its slots: firing never
		// allocates.
		n := int64(winSymPage) * int64(unsafe.Sizeof(winSym{}))
		grow := 0
		if w.heapRoom+winSymPage > cap(w.heap) {
			grow = max(2*cap(w.heap), cap(w.heap)+winSymPage)
			n += int64(grow-cap(w.heap)) * int64(unsafe.Sizeof(winHeapEnt{}))
		}
		if w.budget.held+n > w.budget.maxBytes {
			return nil
		}
		w.budget.held += n
		if grow > 0 {
			w.heap = append(make([]winHeapEnt, 0, grow), w.heap...)
		}
		w.heapRoom += winSymPage
		*page = new([winSymPage]winSym)
		for i := range *page {
			(*page)[i] = winSymInit
		}
	}
	return &(*page)[slot&(winSymPage-1)]
}

// dirReserve gives s its directory chunk (at its first pane block or
// buffered trade); false when the pool is at MaxStateBytes.
func (w *WindowOperator) dirReserve(s *winSym) bool {
	if s.Dir != 0 {
		return true
	}
	if !w.dirs.reserve(1, &w.budget) {
		return false
	}
	s.Dir = w.dirs.alloc()
	return true
}

// ResetSlot forgets everything about the symbol in slot (nothing fires) and
// returns what it held to the pools, so the slot can be given to another
// symbol.
func (w *WindowOperator) ResetSlot(slot int) {
	s := w.symIf(slot)
	if s == nil {
		return
	}
	w.heapRemove(slot)
	w.paneReleaseAll(s)
	w.bufReleaseAll(s)
	w.sessReleaseAll(s)
	if s.Dir != 0 {
		w.dirs.release(s.Dir)
	}
	*s = winSymInit
}

// slotDue reports whether slot has a firing due at the current firing
// watermark (OnWatermark is still working through it).
func (w *WindowOperator) slotDue(slot int) bool {
	p := w.heapAt[slot]
	return p != 0 && w.heap[p-1].Key <= w.fwm
}

// refuseFull refuses a trade that needs more state than MaxStateBytes allows.
func (w *WindowOperator) refuseFull() codec.Reason {
	w.counters.StateFull++
	return w.reject(codec.ReasonOversize, "", "window state at MaxStateBytes")
}

// reject records a refusal and returns its reason.
func (w *WindowOperator) reject(r codec.Reason, field, detail string) codec.Reason {
	w.rejErr = codec.Error{Reason: r, Field: field, Detail: detail, Offset: -1}
	switch r {
	case codec.ReasonLate:
		w.counters.Late++
	case codec.ReasonOversize:
		w.counters.Refused++
	default:
		w.counters.BadValue++
	}
	return r
}

// fieldValue returns the aggregated number of ev and whether it has one.
func (w *WindowOperator) fieldValue(ev *codec.Event) (float64, bool) {
	switch w.spec.Field {
	case FieldPrice:
		return ev.Price, true
	case FieldVolume:
		return ev.Volume, true
	case FieldBid:
		return ev.Bid, ev.HasBid()
	case FieldAsk:
		return ev.Ask, ev.HasAsk()
	case FieldSpread:
		return ev.Ask - ev.Bid, ev.HasBid() && ev.HasAsk()
	case FieldMid:
		return (ev.Bid + ev.Ask) / 2, ev.HasBid() && ev.HasAsk()
	}
	return 0, false
}

// OnEvent feeds one trade of the symbol in slot, given the shard's current
// watermark, and appends what it fires to dst: the count window it
// completes, late re-firings of windows the watermark already passed, and
// early firings (EarlyEveryN). It returns the extended dst and
// codec.ReasonNone, or the reason the trade was refused, for the caller to
// dead-letter it (RejectError has the details; the operator counts it too):
// ReasonLate when it is behind the watermark by more than the allowed
// lateness, ReasonOversize when the symbol's bounded state is full,
// ReasonBadNumber / ReasonBadTimestamp for a non-finite number, a negative
// volume or an event time outside [0, 2^62). A trade without the
// aggregated field (bid, ask, spread, mid) is skipped with ReasonNone and
// counted in MissingField. ReasonUnknownSymbol means slot is out of range
// or already holds another symbol.
//
// dst is appended to; reuse it across calls (dst[:0]) so that steady state
// does not allocate. Preconditions: ev is a trade; OnWatermark has been
// called with every watermark the caller computed before this one (a
// watermark passed here but not yet to OnWatermark only decides lateness).
func (w *WindowOperator) OnEvent(slot int, sym codec.Symbol, ev *codec.Event, watermarkNs int64, dst []Output) ([]Output, codec.Reason) {
	if slot < 0 || slot >= w.maxSlots {
		return dst, w.reject(codec.ReasonUnknownSymbol, "", "window slot out of range")
	}
	page := w.symPages[slot>>winSymPageShift]
	if page == nil { // the first trade of a slot of this page
		if w.symPage(slot) == nil {
			return dst, w.refuseFull()
		}
		page = w.symPages[slot>>winSymPageShift]
	}
	s := &page[slot&(winSymPage-1)]
	if s.Used == 0 {
		s.Used, s.Sym = 1, sym
	} else if s.Sym != sym {
		return dst, w.reject(codec.ReasonUnknownSymbol, "symbol", "window slot holds another symbol")
	}
	x, ok := ev.Price, true
	if w.spec.Field != FieldPrice {
		x, ok = w.fieldValue(ev)
	}
	if !ok {
		w.counters.MissingField++
		return dst, codec.ReasonNone
	}
	v, ts := ev.Volume, ev.TsNs
	if x-x+(v-v) != 0 || v < 0 { // x or v NaN or ±Inf, or a negative volume
		return dst, w.reject(codec.ReasonBadNumber, w.spec.Field.String(), "non-finite value or negative volume")
	}
	if ts < 0 || ts > winMaxTs {
		return dst, w.reject(codec.ReasonBadTimestamp, "ts", "event time outside the window range")
	}
	if w.spec.Type != WindowCount {
		if ts < wmSatSub(max(watermarkNs, w.wm), w.lateNs) {
			return dst, w.reject(codec.ReasonLate, "ts", "behind the watermark by more than the allowed lateness")
		}
	}
	var r codec.Reason
	switch w.spec.Type {
	case WindowTumbling, WindowHopping:
		dst, r = w.paneEvent(slot, s, x, v, ts, ev.Seq, ev.IngestNs, dst)
	case WindowSliding:
		dst, r = w.slideEvent(slot, s, x, v, ts, ev.Seq, ev.IngestNs, dst)
	case WindowSession:
		dst, r = w.sessEvent(slot, s, x, v, ts, ev.Seq, ev.IngestNs, dst)
	case WindowCount:
		dst, r = w.countEvent(slot, s, x, v, ts, ev.Seq, ev.IngestNs, dst)
	}
	if r == winSkip {
		return dst, codec.ReasonNone
	}
	if r != codec.ReasonNone {
		return dst, r
	}
	w.counters.Events++
	s.LastTs = max(s.LastTs, ts)
	s.Early = 1
	if w.opts.EarlyEveryN > 0 && w.opts.Emit == EmitUpdates {
		s.EarlyN++
		if s.EarlyN >= int64(w.opts.EarlyEveryN) {
			s.EarlyN = 0
			dst, _ = w.openWindows(slot, winOpenFire, ev.Seq, ts, ev.IngestNs, dst, nil)
		}
	}
	return dst, codec.ReasonNone
}

// OnWatermark advances event time to watermarkNs for every symbol and
// appends every window that fires, ordered by window end, then symbol id,
// then start. seq is carried in the outputs' Seq (the input sequence of the
// watermark or of the event that advanced it) and watermarkNs in their
// TsNs. A watermark at or behind the previous one does nothing.
// math.MaxInt64 is the end of input: everything open fires on_time.
func (w *WindowOperator) OnWatermark(watermarkNs int64, seq uint64, dst []Output) []Output {
	if watermarkNs <= w.wm {
		return dst
	}
	if watermarkNs < w.heapTop && watermarkNs < w.wmSlowAt && watermarkNs != math.MaxInt64 {
		// Fast path: nothing can fire and the cached window indices stay
		// valid; only the watermark moves.
		w.wm = watermarkNs
		w.fwm = watermarkNs - w.delayNs
		return dst
	}
	return w.onWatermarkSlow(watermarkNs, seq, dst)
}

func (w *WindowOperator) onWatermarkSlow(watermarkNs int64, seq uint64, dst []Output) []Output {
	w.setWatermark(watermarkNs)
	if watermarkNs == math.MaxInt64 {
		if w.spec.Type == WindowCount {
			for i := 0; i < w.maxSlots; i++ {
				if s := w.symIf(i); s != nil && s.Chunk.N > 0 {
					w.heapSet(i, s.ChunkMax)
				}
			}
		}
	}
	for w.heapTop <= w.fwm && len(w.heap) > 0 {
		slot := int(w.heap[0].Slot)
		s := w.sym(slot)
		switch w.spec.Type {
		case WindowTumbling, WindowHopping:
			dst = w.paneFire(slot, s, seq, watermarkNs, dst)
		case WindowSliding:
			dst = w.slideFire(slot, s, seq, watermarkNs, dst)
		case WindowSession:
			dst = w.sessFire(slot, s, seq, watermarkNs, dst)
		case WindowCount:
			dst = w.countFlush(slot, s, seq, watermarkNs, dst)
		}
	}
	if watermarkNs == math.MaxInt64 { // end of input: everything fired, release all that can be
		for i := 0; i < w.maxSlots; i++ {
			if w.symPages[i>>winSymPageShift] == nil {
				i |= winSymPage - 1
			} else if s := w.symIf(i); s != nil {
				w.reclaim(s)
			}
		}
	} else {
		w.reclaimSweep()
	}
	if w.opts.IdleSymbolTTLNs > 0 && watermarkNs != math.MaxInt64 {
		w.idleSweep()
	}
	return dst
}

// reclaimSweep visits a few slots every 8th watermark that fires (or moves
// the firing indices), skipping empty pages, and returns what their symbols hold but no window can
// read any more: the panes and sketches of fired windows past the allowed
// lateness, sessions that can no longer change, buffered trades no window
// can need (purges that firings and trades also do for the symbols they
// touch; this reaches the symbols that have gone quiet). A slot page
// without state is skipped whole. None of it is visible in results, except
// that an idle symbol's aggregator is dropped (see paneLive, slideIdle).
func (w *WindowOperator) reclaimSweep() {
	if w.reclaimTick++; w.reclaimTick&7 != 0 {
		return
	}
	for n, done := 0, 0; n < 16 && done < 4; n++ {
		i := w.reclaimCursor
		if w.symPages[i>>winSymPageShift] == nil {
			w.reclaimCursor = (i | (winSymPage - 1)) + 1 // the next page
		} else {
			w.reclaimCursor = i + 1
			if s := w.symIf(i); s != nil && !w.slotDue(i) {
				done++
				w.reclaim(s)
			}
		}
		if w.reclaimCursor >= w.maxSlots {
			w.reclaimCursor = 0
		}
	}
}

// reclaim returns what s holds but no window can read any more (see
// reclaimSweep); s has nothing due.
func (w *WindowOperator) reclaim(s *winSym) {
	switch w.spec.Type {
	case WindowTumbling, WindowHopping:
		w.paneFree(s)
		if w.useBuf {
			w.bufPurge(s)
		}
	case WindowSliding:
		w.slideIdle(s)
	case WindowSession:
		w.sessPurge(s)
		if w.useBuf {
			w.bufPurge(s)
		}
	}
}

// OnProcessingTime drives early firings on processing time (nowNs,
// monotonic, any origin, passed by the caller): at most once per
// EarlyEveryNs it appends an early result for every open window of each
// symbol that received trades since its previous early firing, slot by
// slot. It does nothing without EarlyEveryNs. seq is carried in Seq.
func (w *WindowOperator) OnProcessingTime(nowNs int64, seq uint64, dst []Output) []Output {
	if w.opts.EarlyEveryNs <= 0 {
		return dst
	}
	if !w.earlyArmed {
		w.earlyArmed, w.lastEarlyNs = true, nowNs
		return dst
	}
	if nowNs-w.lastEarlyNs < w.opts.EarlyEveryNs {
		return dst
	}
	w.lastEarlyNs = nowNs
	for i := 0; i < w.maxSlots; i++ {
		if s := w.symIf(i); s != nil && s.Early != 0 {
			s.Early = 0
			dst, _ = w.openWindows(i, winOpenFire, seq, w.wm, 0, dst, nil)
		}
	}
	return dst
}

// Partial appends the current (partial) value of each open window of the
// symbol in slot, the specification's AggregateWindow on demand: windows
// that hold trades and have not fired on time (for a sliding window, the
// trailing window at its latest trade, as long as the symbol's trades are
// held: until the watermark passes its latest trade by SIZE plus the
// allowed lateness; for a count window, the chunk so far). The outputs have timing early, Key 0 and Seq 0; nothing is
// recorded as fired. For hopping windows this is every overlapping window,
// in order of end.
func (w *WindowOperator) Partial(slot int, dst []Output) []Output {
	if w.symIf(slot) == nil {
		return dst
	}
	dst, _ = w.openWindows(slot, winOpenPeek, 0, w.wm, 0, dst, nil)
	return dst
}

// PartialStats appends the summary statistics of each open window of the
// symbol in slot (same windows as Partial), so that any aggregation can be
// applied on demand with WindowStats.Value or a custom function. Statistics
// the operator does not maintain for its aggregation are NaN.
func (w *WindowOperator) PartialStats(slot int, dst []WindowStats) []WindowStats {
	if w.symIf(slot) == nil {
		return dst
	}
	_, dst = w.openWindows(slot, winOpenStats, 0, w.wm, 0, nil, dst)
	return dst
}

// winOpenMode says what openWindows produces.
type winOpenMode uint8

const (
	winOpenPeek  winOpenMode = iota // outputs with timing early, unkeyed, not recorded (Partial)
	winOpenFire                     // early firings: keyed and counted
	winOpenStats                    // WindowStats (PartialStats)
)

// openWindows appends the open windows of slot, as outputs or statistics
// depending on mode.
func (w *WindowOperator) openWindows(slot int, mode winOpenMode, seq uint64, ts, ingest int64, dst []Output, st []WindowStats) ([]Output, []WindowStats) {
	s := w.symIf(slot)
	if s == nil {
		return dst, st
	}
	switch w.spec.Type {
	case WindowTumbling, WindowHopping:
		return w.paneOpen(slot, s, mode, seq, ts, ingest, dst, st)
	case WindowSession:
		return w.sessOpen(slot, s, mode, seq, ts, ingest, dst, st)
	case WindowSliding:
		return w.slideOpen(slot, s, mode, seq, ts, ingest, dst, st)
	case WindowCount:
		return w.countOpen(slot, s, mode, seq, ts, ingest, dst, st)
	}
	return dst, st
}

func (w *WindowOperator) appendStats(st []WindowStats, a *aggState, start, end, twEnd int64) []WindowStats {
	st = append(st, WindowStats{})
	st[len(st)-1].fill(w.mask, a, start, end, twEnd)
	return st
}

// idleSweep checks a few slots per watermark for IdleSymbolTTLNs.
func (w *WindowOperator) idleSweep() {
	horizon := wmSatSub(w.wm, w.opts.IdleSymbolTTLNs)
	for n := 0; n < 4 && n < w.maxSlots; n++ {
		i := w.ttlCursor
		w.ttlCursor++
		if w.ttlCursor == w.maxSlots {
			w.ttlCursor = 0
		}
		s := w.symIf(i)
		if s == nil || s.LastTs >= horizon || w.heapAt[i] != 0 || s.Chunk.N > 0 {
			continue
		}
		w.ResetSlot(i)
		w.counters.IdleResets++
	}
}

// emit appends one result. ord is the key ordinal (firings of this window
// before this one); val is the percentile value when kind is AggPercentile.
func (w *WindowOperator) emit(dst []Output, slot int, a *aggState, start, end, twEnd int64, timing Timing,
	ord uint64, seq uint64, ts, ingest int64, val float64, keyed bool) []Output {
	s := w.sym(slot)
	o := Output{Kind: OutWindow, Timing: timing, Op: w.op, Symbol: s.Sym, Seq: seq, TsNs: ts,
		StartNs: start, EndNs: end, Count: a.N, IngestNs: ingest}
	if keyed {
		o.Key = winKey(w.op, s.Sym, start, end, ord)
	}
	n := float64(a.N)
	switch w.kind {
	case AggCount:
		o.Value = n
	case AggSum:
		o.Value = a.Sum + a.SumC
	case AggAvg:
		o.Value = (a.Sum + a.SumC) / n
	case AggMin:
		o.Value = a.Min
	case AggMax:
		o.Value = a.Max
	case AggStdDev:
		o.Value = math.Sqrt(max(a.M2, 0) / n)
	case AggStdDevSample:
		o.Value = math.NaN()
		if a.N > 1 {
			o.Value = math.Sqrt(max(a.M2, 0) / (n - 1))
		}
	case AggVWAP:
		o.Value = math.NaN()
		if vol := a.Vol + a.VolC; vol != 0 {
			o.Value = (a.PV + a.PVC) / vol
		}
	case AggTWAP:
		o.Value = a.twap(twEnd)
	case AggOHLCV:
		o.NValues = 5
		o.Values[0], o.Values[1], o.Values[2], o.Values[3], o.Values[4] = a.First, a.Max, a.Min, a.Last, a.Vol+a.VolC
		o.Value = a.Last
	case AggPercentile:
		o.Value = val
	case AggCustom:
		w.statsTmp.fill(w.mask, a, start, end, twEnd)
		o.Value = w.custom(&w.statsTmp)
	}
	if keyed {
		w.counters.Fired++
		switch timing {
		case TimingLate:
			w.counters.FiredLate++
		case TimingEarly:
			w.counters.FiredEarly++
		}
	}
	return append(dst, o)
}

// winKey is the idempotency key of a window result, a stable function of
// (op, symbol, start, end, ordinal), where ordinal counts the earlier
// firings of the same window (count windows put their chunk number in the
// upper 32 bits):
//
//	h = mix(op<<32 | symbol); h = mix(h ^ start); h = mix(h ^ end); h = mix(h ^ ordinal)
//
// with mix(x) the SplitMix64 finaliser of x + 0x9E3779B97F4A7C15. Sinks
// rely on it: it must not change.
func winKey(op uint16, sym codec.Symbol, start, end int64, ord uint64) uint64 {
	h := winMix(uint64(op)<<32 | uint64(sym))
	h = winMix(h ^ uint64(start))
	h = winMix(h ^ uint64(end))
	return winMix(h ^ ord)
}

func winMix(x uint64) uint64 { return codec.Mix64(x + 0x9E3779B97F4A7C15) }

// --- heap of slots with something to fire, ordered by (key, symbol, slot).

// winHeapLess orders heap entries by (key, symbol, slot).
func winHeapLess(a, b *winHeapEnt) bool {
	if a.Key != b.Key {
		return a.Key < b.Key
	}
	if a.Sym != b.Sym {
		return a.Sym < b.Sym
	}
	return a.Slot < b.Slot
}

// heapUp and heapDown put entry e, whose place was i, where it belongs,
// shifting the entries it passes into the hole it leaves (half the writes of
// swapping). e is passed by value: it is never stored before its final place.
func (w *WindowOperator) heapUp(i int, e winHeapEnt) {
	for i > 0 {
		p := (i - 1) / 2
		if !winHeapLess(&e, &w.heap[p]) {
			break
		}
		w.heap[i] = w.heap[p]
		w.heapAt[w.heap[i].Slot] = int32(i + 1)
		i = p
	}
	w.heap[i] = e
	w.heapAt[e.Slot] = int32(i + 1)
}

func (w *WindowOperator) heapDown(i int, e winHeapEnt) {
	n := len(w.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && winHeapLess(&w.heap[r], &w.heap[l]) {
			m = r
		}
		if !winHeapLess(&w.heap[m], &e) {
			break
		}
		w.heap[i] = w.heap[m]
		w.heapAt[w.heap[i].Slot] = int32(i + 1)
		i = m
	}
	w.heap[i] = e
	w.heapAt[e.Slot] = int32(i + 1)
}

// heapSet puts slot in the heap with key, or moves it there. The heap has
// room for every slot with a page (symPage).
func (w *WindowOperator) heapSet(slot int, key int64) {
	p := int(w.heapAt[slot]) - 1
	if p < 0 {
		n := len(w.heap)
		w.heap = w.heap[:n+1]
		w.heapUp(n, winHeapEnt{Key: key, Sym: w.sym(slot).Sym, Slot: int32(slot)})
		w.heapTop = w.heap[0].Key
		return
	}
	e := w.heap[p]
	old := e.Key
	e.Key = key
	switch {
	case key < old:
		w.heapUp(p, e)
	case key > old:
		w.heapDown(p, e)
	default:
		return
	}
	w.heapTop = w.heap[0].Key
}

// heapRemove takes slot out of the heap.
func (w *WindowOperator) heapRemove(slot int) {
	i := int(w.heapAt[slot]) - 1
	if i < 0 {
		return
	}
	last := len(w.heap) - 1
	w.heapAt[slot] = 0
	e := w.heap[last]
	w.heap = w.heap[:last]
	if i != last { // the last entry fills the hole at i, up or down
		if i > 0 && winHeapLess(&e, &w.heap[(i-1)/2]) {
			w.heapUp(i, e)
		} else {
			w.heapDown(i, e)
		}
	}
	w.heapTop = math.MaxInt64
	if len(w.heap) > 0 {
		w.heapTop = w.heap[0].Key
	}
}

// --- integer helpers

func winFloorDiv(a, b int64) int64 {
	if a >= 0 && b > 0 {
		return a / b
	}
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func winCeilDiv(a, b int64) int64 { return -winFloorDiv(-a, b) }

func winMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func winGCD(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// winClamp keeps a watermark-derived time inside the range where window
// arithmetic cannot overflow.
func winClamp(t int64) int64 {
	return min(max(t, -4*MaxWindowSpanNs), winMaxTs+4*MaxWindowSpanNs)
}
