package ops

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"qstream/codec"
)

// TestWindowStateRoundTrip: for every window type, an operator restored
// mid-stream from AppendState continues exactly as the original (bit for
// bit, keys included), and the restored snapshot re-encodes identically.
func TestWindowStateRoundTrip(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, typ := range winOracleTypes {
		for _, agg := range []string{"avg", "max", "twap", "p90", "ohlcv", "band(1.5)"} {
			name := typ + ":" + agg
			spec := winMustSpec(t, name)
			opts := WindowOptions{AllowedLatenessNs: 400 * ms, MaxOpenWindowsPerSymbol: 64, MaxBufferedEventsPerSymbol: 1 << 11,
				PercentileExactMax: 16}
			rng := rand.New(rand.NewPCG(9, uint64(len(name))))
			evs := winRandomStream(rng, winStreamCfg{n: 600, syms: 3, stepMaxNs: 300 * ms, jumpProb: 0.03,
				jumpNs: 3 * int64(time.Second), disorderNs: 900 * ms, wayLate: 0.03, sameTs: 0.1})
			ref, err := NewWindowOperator(1, spec, opts, 4)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := winRun(t, ref, evs, 500*ms)

			a, _ := NewWindowOperator(1, spec, opts, 4)
			tr := NewWatermarkTracker(1, 500*ms, 0)
			var got, dst []Output
			feed := func(op *WindowOperator, from, to int) {
				for i := from; i < to; i++ {
					ev := &evs[i]
					wm, adv := tr.Observe(0, ev.TsNs, int64(i))
					dst, _ = op.OnEvent(int(ev.Symbol)-1, ev.Symbol, ev, wm, dst[:0])
					got = append(got, dst...)
					if adv {
						got = op.OnWatermark(wm, ev.Seq, got)
					}
				}
			}
			feed(a, 0, 300)
			snap := a.AppendState(nil)
			b, _ := NewWindowOperator(1, spec, opts, 4)
			if err := b.LoadState(snap); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if again := b.AppendState(nil); !winSameState(snap, again) {
				t.Fatalf("%s: restored state re-encodes differently", name)
			}
			feed(b, 300, len(evs))
			wm, _ := tr.EndOfInput()
			got = b.OnWatermark(wm, uint64(len(evs)+1), got)
			if !slices.EqualFunc(got, want, winSameOutput) {
				t.Fatalf("%s: restored run differs: %d outputs, want %d", name, len(got), len(want))
			}
		}
	}
}

func winSameState(a, b []byte) bool { return bytes.Equal(a, b) }

func winSameOutput(a, b Output) bool {
	same := func(x, y float64) bool { return x == y || (x != x && y != y) }
	if a.Kind != b.Kind || a.Timing != b.Timing || a.Op != b.Op || a.Symbol != b.Symbol || a.Seq != b.Seq || a.Key != b.Key ||
		a.TsNs != b.TsNs || a.StartNs != b.StartNs || a.EndNs != b.EndNs || a.Count != b.Count || !same(a.Value, b.Value) ||
		a.NValues != b.NValues {
		return false
	}
	for i := range a.Values {
		if !same(a.Values[i], b.Values[i]) {
			return false
		}
	}
	return true
}

func TestWindowStateErrors(t *testing.T) {
	spec := winMustSpec(t, "tumbling:1s:avg")
	op, _ := NewWindowOperator(0, spec, WindowOptions{}, 2)
	ev := codec.Event{TsNs: 5e9, Price: 10, Volume: 1, Symbol: 1, Kind: codec.KindTrade}
	op.OnEvent(0, 1, &ev, 0, nil)
	snap := op.AppendState(nil)
	other, _ := NewWindowOperator(0, winMustSpec(t, "tumbling:2s:avg"), WindowOptions{}, 2)
	if err := other.LoadState(snap); !errors.Is(err, ErrWindowState) {
		t.Fatalf("other spec: %v", err)
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", snap[:10]},
		{"magic", append([]byte("XXXX"), snap[4:]...)},
		{"truncated", snap[:len(snap)-9]},
		{"flipped", func() []byte { b := slices.Clone(snap); b[40] ^= 1; return b }()},
	} {
		fresh, _ := NewWindowOperator(0, spec, WindowOptions{}, 2)
		if err := fresh.LoadState(c.b); !errors.Is(err, ErrWindowState) {
			t.Errorf("%s: err = %v", c.name, err)
		}
		// A failed load leaves the operator usable and empty.
		if out := fresh.OnWatermark(1<<62, 0, nil); len(out) != 0 {
			t.Errorf("%s: failed load left state behind", c.name)
		}
	}
	// A corrupt body with a valid checksum is caught by validation.
	b := slices.Clone(snap)
	hdr := 24
	body := b[hdr : len(b)-4]
	// The first slot record starts after wm, the two sweep cursors, the
	// counters and the record count; its winSym after the slot number.
	off := 24 + binary.Size(WindowCounters{}) + 8 + 8
	binary.LittleEndian.PutUint64(body[off+winSymBufNOffset(t):], 1<<40)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], winCRC))
	fresh, _ := NewWindowOperator(0, spec, WindowOptions{}, 2)
	if err := fresh.LoadState(b); !errors.Is(err, ErrWindowState) {
		t.Fatalf("corrupt buffer bounds with valid checksum: %v", err)
	}
}

// winSymBufNOffset is the encoded offset of winSym.BufN: its memory offset,
// as winSym has no padding (encoding/binary packs the fields).
func winSymBufNOffset(t *testing.T) int {
	if binary.Size(winSym{}) != int(unsafe.Sizeof(winSym{})) {
		t.Fatalf("winSym has padding: encoded %d bytes, %d in memory", binary.Size(winSym{}), unsafe.Sizeof(winSym{}))
	}
	return int(unsafe.Offsetof(winSym{}.BufN))
}

// FuzzWindowLoadState: arbitrary bytes, and valid snapshots with bytes
// changed (checksum fixed up, so that validation is what is tested), never
// make LoadState or the operator afterwards panic. The snapshot is rebuilt
// inside from a seed so that the fuzz inputs stay small.
func FuzzWindowLoadState(f *testing.F) {
	for i := range winFuzzSpecs {
		f.Add(uint8(i), uint16(i), uint32(0), uint8(0), uint32(0), uint8(0), []byte(nil))
		f.Add(uint8(i), uint16(i), uint32(100+i), uint8(1), uint32(3000), uint8(0x80), []byte("QSWS"))
	}
	f.Fuzz(func(t *testing.T, which uint8, seed uint16, at uint32, xor uint8, at2 uint32, xor2 uint8, raw []byte) {
		newOp := func() *WindowOperator {
			op, err := NewWindowOperator(0, winMustSpec(t, winFuzzSpecs[int(which)%len(winFuzzSpecs)]), winFuzzOpts, 2)
			if err != nil {
				t.Fatal(err)
			}
			return op
		}
		ms := int64(time.Millisecond)
		if len(raw) > 0 {
			newOp().LoadState(raw)
		}
		src := newOp()
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		evs := winRandomStream(rng, winStreamCfg{n: 40, syms: 2, stepMaxNs: 300 * ms, disorderNs: 500 * ms, wayLate: 0.05, sameTs: 0.1})
		winRun(t, src, evs[:int(seed)%40], 200*ms)
		b := src.AppendState(nil)
		b[24+int(at)%(len(b)-28)] ^= xor
		b[24+int(at2)%(len(b)-28)] ^= xor2
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], winCRC))
		op := newOp()
		if op.LoadState(b) != nil {
			return
		}
		var dst []Output
		for i := range evs {
			wm := evs[i].TsNs - 200*ms
			dst, _ = op.OnEvent(int(evs[i].Symbol)-1, evs[i].Symbol, &evs[i], wm, dst[:0])
			dst = op.OnWatermark(wm, 0, dst)
			dst = op.Partial(i%2, dst)
		}
		op.OnWatermark(1<<62, 0, dst)
	})
}

var winFuzzSpecs = []string{"tumbling:1s:p50", "hopping:3s/1s:twap", "sliding:2s:max", "session:800ms:p90", "count:5:twap", "hopping:2s/1s:sum"}

var winFuzzOpts = WindowOptions{AllowedLatenessNs: 300 * int64(time.Millisecond), MaxOpenWindowsPerSymbol: 4,
	MaxBufferedEventsPerSymbol: 64, PercentileExactMax: 8}
