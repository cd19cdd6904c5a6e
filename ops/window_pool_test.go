package ops

import (
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

// TestWinPool: chunk 0 is never handed out, reserve grows by whole blocks
// within the budget and never beyond, alloc zeroes when asked, released
// chunks come back first (LIFO), and blocks never move.
func TestWinPool(t *testing.T) {
	var p winPool[winPane]
	p.init(3, true, true) // rounded up to 4 panes
	if p.chunkLen != 4 {
		t.Fatalf("chunkLen %d, want 4", p.chunkLen)
	}
	perChunk := p.blockBytes / (int64(p.mask) + 1)
	if perChunk != 4*(136+128) {
		t.Fatalf("%d bytes per chunk", perChunk)
	}
	b := winBudget{maxBytes: 2*p.blockBytes + 10}
	if !p.reserve(1, &b) || b.held != p.blockBytes || len(p.items) != 1 {
		t.Fatalf("first reserve: held %d, blocks %d", b.held, len(p.items))
	}
	per := int(p.mask) + 1
	seen := map[int32]bool{}
	var got []int32
	for i := 0; i < 2*per-1; i++ { // every chunk of two blocks but chunk 0
		if !p.reserve(1, &b) {
			t.Fatalf("reserve %d failed with %d held", i, b.held)
		}
		c := p.alloc()
		if c == 0 || seen[c] {
			t.Fatalf("alloc %d gave chunk %d", i, c)
		}
		seen[c] = true
		got = append(got, c)
		ch := p.chunk(c)
		if ch[0].A.N != 0 || ch[3].Fires != 0 || p.auxAt(c, 2).N != 0 {
			t.Fatalf("chunk %d not zeroed", c)
		}
		ch[0].A.N, ch[3].Fires, p.auxAt(c, 2).N = 7, 8, 9 // dirty it for the next user
	}
	if !slices.IsSorted(got) {
		t.Fatalf("fresh chunks out of order: %v", got)
	}
	if p.reserve(1, &b) || b.held != 2*p.blockBytes {
		t.Fatalf("reserve beyond the budget: held %d of %d", b.held, b.maxBytes)
	}
	first := &p.chunk(got[0])[0]
	p.release(got[5])
	p.release(got[2])
	if c := p.alloc(); c != got[2] || p.at(c, 0).A.N != 0 || p.auxAt(c, 2).N != 0 {
		t.Fatalf("LIFO reuse: got %d, want %d, zeroed", c, got[2])
	}
	if c := p.alloc(); c != got[5] {
		t.Fatalf("LIFO reuse: got %d, want %d", c, got[5])
	}
	if first != &p.chunk(got[0])[0] || first.A.N != 7 {
		t.Fatal("a chunk moved")
	}
	if p.inUse != int32(2*per-1) {
		t.Fatalf("in use %d", p.inUse)
	}
}

// winChurn drives op with a stream where a rotating set of symbols trades
// (symbols fall idle and come back, sessions open and close, buffers fill
// and drain), slot = symbol − 1, watermark = time − 50 ms, with some
// disorder and late trades. It returns a step function for AllocsPerRun.
// With nsyms a multiple of 24 the stream repeats every nsyms/24·500 trades
// (relative to any window grid dividing that much event time), so the
// state held reaches its peak within a few periods.
func winChurn(op *WindowOperator, nsyms int) func() {
	dst := make([]Output, 0, 1<<14)
	ts := int64(1_700_000_000) * winSec
	i := 0
	return func() {
		i++
		ts += 3 * winMs
		// 24 of nsyms symbols are active at a time; the set moves on every
		// 500 trades, so every symbol goes idle and comes back.
		sym := codec.Symbol(1 + (i/500*24+i%24)%nsyms)
		ev := codec.Event{TsNs: ts - int64(i%5)*20*winMs, Price: 100 + float64(i%13), Volume: float64(1 + i%3),
			Symbol: sym, Kind: codec.KindTrade}
		dst, _ = op.OnEvent(int(sym)-1, sym, &ev, ts-50*winMs, dst[:0])
		dst = op.OnWatermark(ts-50*winMs, 0, dst)
	}
}

// winPoolTaken is the number of chunks the data pools of op (pane blocks,
// trade chunks, sessions, sketches) have handed out, and the number they
// have created.
func winPoolTaken(op *WindowOperator) (taken, created uint64) {
	for _, p := range []struct{ taken, chunks uint64 }{
		{op.panes.taken, uint64(op.panes.chunks)}, {op.recs.taken, uint64(op.recs.chunks)},
		{op.sess.taken, uint64(op.sess.chunks)}, {op.sks.taken, uint64(op.sks.chunks)},
	} {
		taken += p.taken
		created += p.chunks
	}
	return taken, created
}

// TestWindowPoolRecycles: over a long run in which symbols keep falling
// idle and coming back, every window type reaches a steady state where
// trades and firings allocate nothing, the pools stop growing, and the
// chunks they hand out are recycled many times over; at the end of input
// the pane blocks, sketches and sessions all go back.
func TestWindowPoolRecycles(t *testing.T) {
	steps := 40000
	if os.Getenv("QSTREAM_STRESS") != "" {
		steps = 400000
	}
	for _, spec := range []string{"tumbling:1s:ohlcv", "tumbling:200ms:p99", "hopping:2s/500ms:stddev", "hopping:2s/500ms:vwap",
		"hopping:1s/250ms:twap", "sliding:1s:max", "sliding:500ms/100ms:avg", "session:100ms:twap", "session:50ms:p50",
		"count:10:p50", "tumbling:500ms:band(2)"} {
		op, err := NewWindowOperator(0, winMustSpec(t, spec), WindowOptions{AllowedLatenessNs: 100 * winMs}, 256)
		if err != nil {
			t.Fatal(err)
		}
		step := winChurn(op, 192)      // a period of 4000 trades, 12 s
		for j := 0; j < 8*steps; j++ { // warm up: every symbol has traded and gone idle, many times
			step()
		}
		held := op.StateBytes()
		taken0, created0 := winPoolTaken(op)
		// AllocsPerRun rounds down: the pools' sizes below catch even one
		// growth.
		if a := testing.AllocsPerRun(steps, step); a != 0 {
			t.Errorf("%s: %v allocations per trade in steady state", spec, a)
		}
		taken, created := winPoolTaken(op)
		if op.StateBytes() != held || created != created0 {
			t.Errorf("%s: pools grew in steady state: %d -> %d bytes, %d -> %d chunks", spec, held, op.StateBytes(), created0, created)
		}
		if taken-taken0 < 4*created {
			t.Errorf("%s: %d chunks handed out over %d trades from %d created: not recycling", spec, taken-taken0, steps, created)
		}
		if c := op.Counters(); c.Fired == 0 || c.Refused != 0 {
			t.Errorf("%s: counters %+v", spec, c)
		}
		op.OnWatermark(math.MaxInt64, 0, nil)
		if op.panes.inUse != 0 || op.sks.inUse != 0 || op.sess.inUse != 0 {
			t.Errorf("%s: after the end of input %d pane blocks, %d sketches, %d sessions still held",
				spec, op.panes.inUse, op.sks.inUse, op.sess.inUse)
		}
	}
}

// TestWindowStateFull: when the pools reach MaxStateBytes a trade that
// needs more is refused with ReasonOversize, counted in Refused and
// StateFull, and changes nothing; trades that need nothing new still pass,
// and once firings return chunks, new trades are accepted again.
func TestWindowStateFull(t *testing.T) {
	for _, spec := range []string{"tumbling:1s:p50", "sliding:1s:max", "session:100ms:count", "hopping:2s/1s:max"} {
		op, err := NewWindowOperator(0, winMustSpec(t, spec), WindowOptions{}, 1024)
		if err != nil {
			t.Fatal(err)
		}
		// Room for the fixed part, a page of slots and about one block per pool.
		op.budget.maxBytes = op.budget.held + 64<<10 + op.dirs.blockBytes + op.panes.blockBytes + op.recs.blockBytes +
			op.sess.blockBytes + op.sks.blockBytes
		base := int64(1_700_000_000) * winSec
		var out []Output
		var accepted, refused int
		trade := func(sym codec.Symbol, ts int64, wm int64) codec.Reason {
			ev := codec.Event{TsNs: ts, Price: 100 + float64(sym), Volume: 1, Symbol: sym, Kind: codec.KindTrade}
			var r codec.Reason
			out, r = op.OnEvent(int(sym)-1, sym, &ev, wm, out[:0])
			switch r {
			case codec.ReasonNone:
				accepted++
			case codec.ReasonOversize:
				refused++
			default:
				t.Fatalf("%s: %v", spec, r)
			}
			return r
		}
		// Many symbols at once: the pools fill up.
		for sym := codec.Symbol(1); sym <= 120; sym++ {
			for k := int64(0); k < 40; k++ {
				trade(sym, base+k*10*winMs, base)
			}
		}
		c := op.Counters()
		if refused == 0 || c.StateFull == 0 || c.Refused != uint64(refused) || c.StateFull > c.Refused {
			t.Fatalf("%s: %d accepted, %d refused, counters %+v", spec, accepted, refused, c)
		}
		if e := op.RejectError(); e.Reason != codec.ReasonOversize || !errors.Is(e, &codec.Error{Reason: codec.ReasonOversize}) ||
			!strings.Contains(e.Error(), "MaxStateBytes") {
			t.Fatalf("%s: RejectError %v", spec, e)
		}
		if op.StateBytes() > op.budget.maxBytes {
			t.Fatalf("%s: %d bytes held over the bound %d", spec, op.StateBytes(), op.budget.maxBytes)
		}
		// Everything fires and is released: the same symbols trade again.
		wm := base + 10*winSec
		out = op.OnWatermark(wm, 0, out[:0])
		if len(out) == 0 {
			t.Fatalf("%s: nothing fired", spec)
		}
		refusedBefore := refused
		for sym := codec.Symbol(1); sym <= 4; sym++ {
			if r := trade(sym, wm+int64(sym)*winMs, wm); r != codec.ReasonNone {
				t.Fatalf("%s: after the firings released state, trade refused: %v (%d refused before)", spec, r, refusedBefore)
			}
		}
	}
}

// TestWindowDefaultSlotsMemory: the replay default of 65,536 symbol slots
// with every spec of the replay golden test holds next to nothing before
// trades and, with a few hundred active symbols scattered over the slots,
// a small fraction of what per-slot worst-case arrays took (tens of GB).
func TestWindowDefaultSlotsMemory(t *testing.T) {
	specs, err := ParseWindowSpecs("tumbling:1s:vwap,tumbling:1s:ohlcv,hopping:1s/500ms:count,sliding:500ms:max," +
		"session:200ms:count,count:2:avg:volume,tumbling:1s:p50,tumbling:1s:twap")
	if err != nil {
		t.Fatal(err)
	}
	const slots = 1 << 16
	var ops []*WindowOperator
	var fresh int64
	for i, spec := range specs {
		op, err := NewWindowOperator(uint16(i), spec, WindowOptions{}, slots)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		ops = append(ops, op)
		fresh += op.StateBytes()
	}
	if fresh > 4<<20 {
		t.Fatalf("8 operators for %d slots hold %d bytes before any trade", slots, fresh)
	}
	base := int64(1_700_000_000) * winSec
	var out []Output
	for i := 0; i < 60000; i++ {
		sym := codec.Symbol(1 + (i*7919)%300) // 300 symbols ...
		slot := int(sym) * 211 % slots        // ... scattered over the slots
		ts := base + int64(i)*int64(time.Millisecond)/2
		ev := codec.Event{TsNs: ts, Price: 100 + float64(i%17)/4, Volume: 1, Symbol: sym, Kind: codec.KindTrade}
		for _, op := range ops {
			var r codec.Reason
			if out, r = op.OnEvent(slot, sym, &ev, ts, out[:0]); r != codec.ReasonNone {
				t.Fatalf("%s: trade %d refused: %v", op.Spec(), i, r)
			}
			out = op.OnWatermark(ts, 0, out[:0])
		}
	}
	var held int64
	for _, op := range ops {
		held += op.StateBytes()
	}
	if held > 64<<20 {
		t.Fatalf("300 active symbols in 8 operators hold %d bytes", held)
	}
	t.Logf("8 operators × %d slots: %d bytes before trades, %d bytes with 300 active symbols", slots, fresh, held)
}

// TestWindowGappedHopping: hopping windows whose SIZE divides HOP (one pane
// per window, h > 1) fire exactly the windows with trades, as the oracle
// says. (The pane ring read pane k instead of k·h for window k.)
func TestWindowGappedHopping(t *testing.T) {
	winOracleOne(t, "hopping:1s/2s:count", []int64{0, 1500, 2100, 2900, 7000, 7999}, WindowOptions{})
	winOracleOne(t, "hopping:1s/3s+500ms:sum", []int64{0, 600, 1400, 3600, 9000}, WindowOptions{AllowedLatenessNs: 2 * winSec})
}

// TestWindowHoppingLongGap: a 5-minute window hopping by 1 second over a
// symbol with gaps of 512 to 599 seconds between trades (its next window
// still overlaps the previous one) gives the oracle's min, max and stddev.
// (The two-stacks suffix aggregates were kept in the pane ring and aliased
// when the flip spanned more than the ring.)
func TestWindowHoppingLongGap(t *testing.T) {
	for _, agg := range []string{"max", "min", "stddev", "ohlcv"} {
		winOracleOne(t, "hopping:5m/1s:"+agg, []int64{0, 1000, 2000, 550_000, 551_000, 560_000, 1_200_000, 1_201_000, 1_790_000},
			WindowOptions{})
	}
}

// winOracleOne feeds trades of one symbol at the given millisecond offsets
// (watermark = each trade's time, advanced before the trade) to the operator
// and the oracle and compares everything they emit.
func winOracleOne(t *testing.T, specText string, msOffsets []int64, opts WindowOptions) {
	t.Helper()
	spec := winMustSpec(t, specText)
	op, err := NewWindowOperator(0, spec, opts, 1)
	if err != nil {
		t.Fatal(err)
	}
	or := newWinOracle(spec, op.Options())
	base := int64(1_700_000_001) * winSec // a multiple of 3 s
	var got []Output
	var want []orOut
	for i, off := range msOffsets {
		ev := codec.Event{TsNs: base + off*winMs + 100, Seq: uint64(i + 1), Price: 100 - float64(i) + float64(i%3)/4, Volume: 1,
			Symbol: 1, Kind: codec.KindTrade}
		got = op.OnWatermark(ev.TsNs, 0, got)
		want = append(want, or.watermark(ev.TsNs)...)
		var r codec.Reason
		got, r = op.OnEvent(0, 1, &ev, ev.TsNs, got)
		wr, o := or.event(&ev, ev.TsNs)
		if r != wr {
			t.Fatalf("%s: trade %d: reason %v, oracle %v", specText, i, r, wr)
		}
		want = append(want, o...)
	}
	got = op.OnWatermark(math.MaxInt64, 0, got)
	want = append(want, or.watermark(math.MaxInt64)...)
	if len(want) == 0 {
		t.Fatalf("%s: the oracle fired nothing", specText)
	}
	winCompare(t, specText, op, got, want, 1e-9)
}
