package ops

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// indStateTestSet returns a set over every kind with short periods, and
// trades to feed it.
func indStateTestSet(t testing.TB, slots int, opts IndicatorOptions) (*IndicatorSet, []indTrade) {
	t.Helper()
	specs, err := ParseIndicators("sma:3,sma:20,ema:4,rsi:5,vwap,vwap:3")
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewIndicatorSet(specs, opts, slots)
	if err != nil {
		t.Fatal(err)
	}
	return set, indRandomTrades(rand.New(rand.NewPCG(11, 12)), 2000, 60e9)
}

// TestIndicatorStateRoundTrip: a set restored from a snapshot taken
// mid-stream continues exactly (bit for bit) as the original.
func TestIndicatorStateRoundTrip(t *testing.T) {
	for _, cut := range []int{0, 1, 7, 50, 999} {
		opts := IndicatorOptions{EMASeed: EMASeedFirst, SessionLengthNs: 3600e9, SessionOffsetNs: 1800e9}
		orig, trades := indStateTestSet(t, 4, opts)
		n := len(orig.Specs())
		outA, outB := make([]float64, n), make([]float64, n)
		for i, tr := range trades[:cut] {
			orig.Update(i%4, tr.ts, tr.price, tr.volume, outA)
		}
		prefix := []byte("checkpoint header")
		snap := orig.AppendState(prefix)
		if !bytes.HasPrefix(snap, prefix) {
			t.Fatal("AppendState overwrote dst")
		}
		restored, _ := indStateTestSet(t, 4, opts)
		if err := restored.LoadState(snap[len(prefix):]); err != nil {
			t.Fatalf("cut %d: LoadState: %v", cut, err)
		}
		if !bytes.Equal(restored.AppendState(nil), snap[len(prefix):]) {
			t.Fatalf("cut %d: the restored state encodes differently", cut)
		}
		for i, tr := range trades[cut:] {
			slot := (cut + i) % 4
			orig.Update(slot, tr.ts, tr.price, tr.volume, outA)
			restored.Update(slot, tr.ts, tr.price, tr.volume, outB)
			for j := range outA {
				if math.Float64bits(outA[j]) != math.Float64bits(outB[j]) {
					t.Fatalf("cut %d, trade %d: original %v, restored %v", cut, cut+i, outA, outB)
				}
			}
		}
	}
}

// indFixCRC rewrites the trailing checksum of a snapshot so that tests (and
// the fuzzer) can reach the checks behind it.
func indFixCRC(b []byte) {
	if len(b) >= 4 {
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], indCRCTable))
	}
}

func TestIndicatorStateErrors(t *testing.T) {
	set, trades := indStateTestSet(t, 2, IndicatorOptions{})
	out := make([]float64, len(set.Specs()))
	for i, tr := range trades[:100] {
		set.Update(i%2, tr.ts, tr.price, tr.volume, out)
	}
	good := set.AppendState(nil)
	le := binary.LittleEndian
	hdr := 8 + 8*len(set.Specs()) + 8 + 16 + 16 // first slot header

	mutate := func(f func(b []byte) []byte, fixCRC bool) []byte {
		b := f(bytes.Clone(good))
		if fixCRC {
			indFixCRC(b)
		}
		return b
	}
	tests := []struct {
		name string
		src  []byte
		msg  string
	}{
		{"empty", nil, "not an indicator snapshot"},
		{"other magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b }, true), "not an indicator snapshot"},
		{"future version", mutate(func(b []byte) []byte { b[4] = 3; return b }, true), "version 3"},
		{"truncated", good[:len(good)-1], "bytes, want"},
		{"trailing byte", append(bytes.Clone(good), 0), "bytes, want"},
		{"bit flip", mutate(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, false), "checksum"},
		{"other period", mutate(func(b []byte) []byte { b[12] = 4; return b }, true), "indicator 0 is sma:4"},
		{"other seed", mutate(func(b []byte) []byte { b[8+8*6] = 1; return b }, true), "ema seed first"},
		{"other session", mutate(func(b []byte) []byte { b[8+8*6+8] ^= 1; return b }, true), "sessions of"},
		{"bad session flag", mutate(func(b []byte) []byte { b[hdr+16] = 2; return b }, true), "bad session header"},
		{"ring head", mutate(func(b []byte) []byte { le.PutUint64(b[hdr:], le.Uint64(b[hdr:])+1); return b }, true), "ring head"},
		{"non-zero count", mutate(func(b []byte) []byte {
			p := hdr + 2*indSlotHdrBytes + 4*3 // slot 0: heads of sma:3, sma:20, vwap:3, then its non-zero count
			le.PutUint32(b[p:], le.Uint32(b[p:])+1)
			return b
		}, true), "non-zero volumes"},
	}
	for _, tc := range tests {
		before := set.AppendState(nil)
		err := set.LoadState(tc.src)
		if err == nil {
			t.Errorf("%s: LoadState succeeded", tc.name)
			continue
		}
		if !errors.Is(err, ErrIndicatorState) || !strings.HasPrefix(err.Error(), "ops: ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q, want ErrIndicatorState mentioning %q", tc.name, err, tc.msg)
		}
		if !bytes.Equal(before, set.AppendState(nil)) {
			t.Errorf("%s: a failed LoadState changed the set", tc.name)
		}
	}

	// A snapshot of another configuration is refused.
	for _, other := range []struct {
		specs string
		opts  IndicatorOptions
		slots int
	}{
		{"sma:3,sma:20,ema:4,rsi:5,vwap,vwap:3", IndicatorOptions{}, 3},
		{"sma:3,sma:20,ema:4,rsi:5,vwap,vwap:3", IndicatorOptions{SessionOffsetNs: 1}, 2},
		{"sma:3,sma:20,ema:4,rsi:5,vwap", IndicatorOptions{}, 2},
		{"sma:3,sma:20,ema:4,rsi:5,vwap:3,vwap", IndicatorOptions{}, 2},
	} {
		specs, _ := ParseIndicators(other.specs)
		o, _ := NewIndicatorSet(specs, other.opts, other.slots)
		if err := o.LoadState(good); !errors.Is(err, ErrIndicatorState) {
			t.Errorf("%s %+v %d slots: LoadState of another configuration: %v", other.specs, other.opts, other.slots, err)
		}
	}
}

func TestIndicatorAppendStateAllocs(t *testing.T) {
	set, _ := indStateTestSet(t, 8, IndicatorOptions{})
	buf := make([]byte, 0, len(set.AppendState(nil)))
	if a := testing.AllocsPerRun(20, func() { buf = set.AppendState(buf[:0]) }); a > 0 {
		t.Errorf("AppendState into a big enough buffer allocates %v times", a)
	}
	if a := testing.AllocsPerRun(20, func() { _ = set.LoadState(buf) }); a > 0 {
		t.Errorf("LoadState allocates %v times", a)
	}
}

// FuzzIndicatorLoadState: LoadState never panics; whatever it accepts
// re-encodes to the same bytes and can be updated. The checksum is fixed up
// so the fuzzer explores the checks behind it.
func FuzzIndicatorLoadState(f *testing.F) {
	set, trades := indStateTestSet(f, 2, IndicatorOptions{})
	f.Add(set.AppendState(nil))
	out := make([]float64, len(set.Specs()))
	for i, tr := range trades[:30] {
		set.Update(i%2, tr.ts, tr.price, tr.volume, out)
	}
	f.Add(set.AppendState(nil))
	f.Add([]byte("QIND"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := indStateTestSet(t, 2, IndicatorOptions{})
		b = bytes.Clone(b) // the fuzzer's input must not be modified
		indFixCRC(b)
		if err := s.LoadState(b); err != nil {
			return
		}
		if !bytes.Equal(s.AppendState(nil), b) {
			t.Fatal("an accepted snapshot re-encodes differently")
		}
		out := make([]float64, len(s.Specs()))
		for i, tr := range trades[:50] {
			s.Update(i%2, tr.ts, tr.price, tr.volume, out)
		}
	})
}

// TestIndicatorStateHoldsOnlyUsedSlots: a set sized for many symbols that has
// seen a few snapshots only those, and loading it clears slots the snapshot
// does not hold.
func TestIndicatorStateHoldsOnlyUsedSlots(t *testing.T) {
	specs, _ := ParseIndicators(DefaultIndicators)
	big, err := NewIndicatorSet(specs, IndicatorOptions{}, 65536)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(specs))
	for i := 0; i < 30; i++ {
		big.Update(i%3, int64(i), 100+float64(i), 1, out)
	}
	snap := big.AppendState(nil)
	if full := IndicatorStateBytes(specs, 65536); int64(len(snap)) > full/1000 {
		t.Fatalf("snapshot of 3 used slots is %d bytes (the full state is %d)", len(snap), full)
	}
	other, _ := NewIndicatorSet(specs, IndicatorOptions{}, 65536)
	for i := 0; i < 50; i++ {
		other.Update(i%10, int64(i), 50, 2, out) // slots 3..9 hold state the snapshot lacks
	}
	if err := other.LoadState(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(other.AppendState(nil), snap) {
		t.Fatal("restored set snapshots differently")
	}
	// Slot 7 must be as new: its first trade gives null SMA and VWAP = price.
	other.Update(7, 100, 42, 1, out)
	fresh, _ := NewIndicatorSet(specs, IndicatorOptions{}, 1)
	want := make([]float64, len(specs))
	fresh.Update(0, 100, 42, 1, want)
	for i := range out {
		if !(out[i] == want[i] || math.IsNaN(out[i]) && math.IsNaN(want[i])) {
			t.Fatalf("slot beyond the snapshot kept old state: %v, want %v", out, want)
		}
	}
}
