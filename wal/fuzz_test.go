package wal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// realFrames encodes real third-party messages as WAL records.
func realFrames(t testing.TB) [][]byte {
	var out [][]byte
	lines := realLines(t, "trades/binance_futures_btcusdt_trades.csv")
	lines = append(lines[:20], realLines(t, "exchange/kraken_trades_ws_capture.txt")[:10]...)
	for i, l := range lines {
		f := make([]byte, frameSize(len(l)))
		putFrame(f, uint64(i+1), TypeData, l)
		out = append(out, f)
	}
	return out
}

// FuzzDecodeFrame: the record decoder never panics, never allocates, never
// reads past its input, bounds the length by maxPayload, and what it accepts
// re-encodes to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range realFrames(f) {
		f.Add(fr, uint32(4096))
		f.Add(fr[:len(fr)/2], uint32(4096)) // split frames
		f.Add(fr[:frameHeaderSize], uint32(16))
		g := bytes.Clone(fr)
		g[len(g)/2] ^= 4
		f.Add(g, uint32(4096))
	}
	seal := make([]byte, sealFrameSize)
	putFrame(seal, 42, typeSeal, nil)
	f.Add(seal, uint32(0))
	f.Add(make([]byte, 40), uint32(100))
	f.Fuzz(func(t *testing.T, b []byte, maxPayload uint32) {
		limit := int(maxPayload % (1 << 20))
		var fr frame
		var st frameStatus
		allocs := testing.AllocsPerRun(1, func() { fr, st = decodeFrame(b, limit) })
		if allocs > 0 {
			t.Fatalf("decodeFrame allocated %.0f times", allocs)
		}
		switch st {
		case frameOK:
			if fr.size > len(b) || len(fr.payload) > limit || fr.size%8 != 0 {
				t.Fatalf("accepted frame of size %d, payload %d, input %d, limit %d", fr.size, len(fr.payload), len(b), limit)
			}
			re := make([]byte, fr.size)
			putFrame(re, fr.lsn, fr.typ, fr.payload)
			if !bytes.Equal(re, b[:fr.size]) {
				t.Fatal("accepted frame does not re-encode to its bytes")
			}
		case frameShort:
			if fr.need <= len(b) || fr.need > frameSize(limit) {
				t.Fatalf("short with need %d, input %d, limit %d", fr.need, len(b), limit)
			}
		case frameBad:
			if fr.detail == "" || fr.reason == 0 {
				t.Fatal("bad frame without a reason")
			}
		case frameZero:
			if len(b) < frameHeaderSize || !allZero(b[:frameHeaderSize]) {
				t.Fatal("zero status for a non-zero header")
			}
		}
	})
}

// FuzzScanSegment runs the open-time scanner over arbitrary segment files:
// no panic, no allocation while scanning, dense LSNs, and a consistent
// classification of how the segment ends.
func FuzzScanSegment(f *testing.F) {
	dir := f.TempDir()
	o := Options{SegmentSize: 4096, MaxRecordSize: 512, BufferSize: 4096, OnFatal: func(err error) { f.Error(err) }}
	w, err := Open(dir, o)
	if err != nil {
		f.Fatal(err)
	}
	for _, fr := range realFrames(f) {
		if _, err := w.Append(TypeData, fr[frameHeaderSize:]); err != nil {
			f.Fatal(err)
		}
	}
	w.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/3])
		g := bytes.Clone(b)
		g[100] ^= 1
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		first := uint64(1)
		if h, r, _ := decodeSegHeader(data); r == 0 {
			first = h.firstLSN
		}
		for _, mode := range []struct{ last, verify bool }{{false, true}, {true, true}, {true, false}} {
			var sc scanner
			ra := bytes.NewReader(data)
			if err := sc.open(ra, int64(len(data)), "fuzz.wal", first, mode.last, mode.verify); err != nil {
				t.Fatal(err)
			}
			if len(sc.sr.buf) > max(len(data), frameHeaderSize) {
				t.Fatalf("read buffer of %d bytes for %d bytes of input", len(sc.sr.buf), len(data))
			}
			var n int64
			allocs := testing.AllocsPerRun(1, func() {
				for {
					fr, ok := sc.next()
					if !ok {
						break
					}
					if fr.lsn != first+uint64(n) {
						t.Fatalf("LSN %d, want %d", fr.lsn, first+uint64(n))
					}
					n++
				}
			})
			if allocs > 0 {
				t.Fatalf("scan allocated %.0f times", allocs)
			}
			if sc.off > int64(len(data)) {
				t.Fatalf("offset %d past the input (%d)", sc.off, len(data))
			}
			switch sc.end {
			case endTorn:
				if !mode.last || sc.torn.Offset != sc.off || sc.torn.Length <= 0 || sc.torn.Offset+sc.torn.Length > int64(len(data)) {
					t.Fatalf("torn %+v at %d in %d bytes (last %v)", sc.torn, sc.off, len(data), mode.last)
				}
				if data[sc.torn.Offset+sc.torn.Length-1] == 0 {
					t.Fatal("torn length does not end at a non-zero byte")
				}
			case endCorrupt:
				if sc.corrupt.Offset < 0 || sc.corrupt.Offset > int64(len(data)) || sc.corrupt.Detail == "" {
					t.Fatalf("corruption %+v", sc.corrupt)
				}
			case endClean:
				if !mode.last {
					t.Fatal("a non-last segment ended without a seal")
				}
				if mode.verify && !allZero(data[sc.off:]) {
					t.Fatal("clean end with non-zero bytes after it")
				}
			case endSealed:
				if !allZero(data[sc.off:]) {
					t.Fatal("sealed with non-zero bytes after the seal")
				}
			default:
				t.Fatalf("scan ended without a classification")
			}
		}
	})
}
