package checkpoint

import (
	"qstream/internal/testvectors"

	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"qstream/codec"
)

func randCheckpoint(rng *rand.Rand) *Checkpoint {
	c := &Checkpoint{ID: rng.Uint64N(1 << 40), LSN: rng.Uint64(), CreatedNs: rng.Int64()}
	n := rng.IntN(30)
	for i := 0; i < n; i++ {
		name := make([]byte, 1+rng.IntN(40))
		for j := range name {
			name[j] = byte('a' + rng.IntN(26))
		}
		var data []byte
		switch rng.IntN(4) {
		case 0: // empty
		case 1:
			data = make([]byte, rng.IntN(100000))
		default:
			data = make([]byte, rng.IntN(300))
		}
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		c.Set(string(name)+string(rune('A'+i%26))+strings.Repeat("x", i/26), data)
	}
	return c
}

func equal(a, b *Checkpoint) bool {
	if a.ID != b.ID || a.LSN != b.LSN || a.CreatedNs != b.CreatedNs || len(a.Sections) != len(b.Sections) {
		return false
	}
	for i := range a.Sections {
		if a.Sections[i].Name != b.Sections[i].Name || !bytes.Equal(a.Sections[i].Data, b.Sections[i].Data) {
			return false
		}
	}
	return true
}

// TestEncodeDecodeProperty: Decode(Encode(c)) == c for random checkpoints,
// the size is EncodedSize, and Encode appends to dst.
func TestEncodeDecodeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		c := randCheckpoint(rng)
		prefix := []byte("prefix")
		b, err := Encode(prefix, c)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:6]) != "prefix" || len(b)-6 != EncodedSize(c) || (len(b)-6)%8 != 0 {
			t.Fatalf("encoded %d bytes, EncodedSize %d", len(b)-6, EncodedSize(c))
		}
		d, err := Decode(b[6:])
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !equal(c, d) {
			t.Fatalf("case %d: round trip differs", i)
		}
	}
}

// reseal recomputes the trailer checksum, so a test can reach the structure
// checks behind it.
func reseal(b []byte) []byte {
	end := len(b) - trailerSize
	binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
	return b
}

func TestDecodeRejects(t *testing.T) {
	c := &Checkpoint{ID: 3, LSN: 77, CreatedNs: 5}
	c.Set("ops", []byte("abc"))
	c.Set("sources", []byte("0123456789"))
	good, err := Encode(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	sec1 := headerSize // first section header
	cases := []struct {
		name   string
		data   []byte
		reason codec.Reason
		offset int64
	}{
		{"empty", nil, codec.ReasonMalformed, 0},
		{"truncated", good[:len(good)-1], codec.ReasonMalformed, 40},
		{"extended", append(bytes.Clone(good), 0), codec.ReasonMalformed, 40},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), codec.ReasonMalformed, 0},
		{"future version", mod(func(b []byte) []byte { b[4] = 2; return b }), codec.ReasonMalformed, 4},
		{"flipped data", mod(func(b []byte) []byte { b[sec1+8+8] ^= 1; return b }), codec.ReasonChecksum, int64(len(good) - 8)},
		{"flipped LSN", mod(func(b []byte) []byte { b[16] ^= 0x80; return b }), codec.ReasonChecksum, int64(len(good) - 8)},
		{"bad trailer", mod(func(b []byte) []byte { b[len(b)-1] = 0; return b }), codec.ReasonMalformed, int64(len(good) - 4)},
		{"too many sections", mod(func(b []byte) []byte { b[32] = 200; return reseal(b) }), codec.ReasonOversize, 32},
		{"section past end", mod(func(b []byte) []byte { b[sec1+4] = 200; return reseal(b) }), codec.ReasonMalformed, int64(sec1)},
		{"zero name length", mod(func(b []byte) []byte { b[sec1] = 0; return reseal(b) }), codec.ReasonMalformed, int64(sec1)},
		{"non-zero padding", mod(func(b []byte) []byte { b[sec1+8+3] = 1; return reseal(b) }), codec.ReasonMalformed, int64(sec1 + 8 + 3)},
		{"fewer sections than bytes", mod(func(b []byte) []byte { b[32] = 1; return reseal(b) }), codec.ReasonMalformed, int64(sec1 + 8 + 8 + 8)},
		{"duplicate names", mod(func(b []byte) []byte {
			s2 := sec1 + 8 + 8 + 8
			copy(b[s2+8:], "ops\x00\x00\x00\x00")
			b[s2] = 3
			return reseal(b)
		}), codec.ReasonMalformed, int64(sec1 + 8 + 8 + 8 + 8)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode = %v, want a *CorruptError", err)
			}
			if ce.Reason != tc.reason || ce.Offset != tc.offset {
				t.Fatalf("got %s at %d (%s), want %s at %d", ce.Reason, ce.Offset, ce.Detail, tc.reason, tc.offset)
			}
			var cerr *codec.Error
			if !errors.As(err, &cerr) || cerr.Reason != tc.reason {
				t.Fatalf("no codec.Error with the reason in %v", err)
			}
		})
	}
}

func TestEncodeLimits(t *testing.T) {
	many := &Checkpoint{}
	for i := 0; i <= MaxSections; i++ {
		many.Sections = append(many.Sections, Section{Name: "s" + strings.Repeat("x", i%50) + string(rune('0'+i%10)) + string(rune(i))})
	}
	cases := []struct {
		c    *Checkpoint
		want error
	}{
		{many, ErrLimit},
		{&Checkpoint{Sections: []Section{{Name: strings.Repeat("n", MaxNameLen+1)}}}, ErrLimit},
		{&Checkpoint{Sections: []Section{{Name: ""}}}, ErrBadName},
		{&Checkpoint{Sections: []Section{{Name: "a"}, {Name: "a"}}}, ErrBadName},
	}
	for i, tc := range cases {
		if _, err := Encode(nil, tc.c); !errors.Is(err, tc.want) {
			t.Errorf("case %d: %v, want %v", i, err, tc.want)
		}
		if _, err := Write(t.TempDir(), tc.c); !errors.Is(err, tc.want) {
			t.Errorf("case %d: Write %v, want %v", i, err, tc.want)
		}
	}
	ok := &Checkpoint{Sections: []Section{{Name: strings.Repeat("n", MaxNameLen), Data: []byte{1}}}}
	if _, err := Encode(nil, ok); err != nil {
		t.Fatal(err)
	}
}

// realSections builds a checkpoint whose sections are real third-party
// data, as state blobs.
func realSections(t testing.TB) *Checkpoint {
	path := filepath.Join(testvectors.Dir(), "trades/binance_futures_btcusdt_trades.csv")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("shared test data %s is missing (expected beside the repository, see ../shared/testdata/SOURCES.md): %v", path, err)
	}
	k, err := os.ReadFile(filepath.Join(testvectors.Dir(), "exchange/kraken_trades_ws_capture.txt"))
	if err != nil {
		t.Fatalf("shared test data missing: %v", err)
	}
	c := &Checkpoint{ID: 9, LSN: 123456, CreatedNs: 1582329602111000000}
	c.Set("trades.head", b[:2000])
	c.Set("kraken", k[:1500])
	c.Set("empty", nil)
	return c
}

// FuzzDecode: the decoder never panics, bounds its allocations by the
// input, and what it accepts re-encodes to the same bytes. With the
// checksum check off the fuzzer reaches the structure checks.
func FuzzDecode(f *testing.F) {
	real, err := Encode(nil, realSections(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real, true)
	f.Add(real, false)
	f.Add(real[:len(real)/2], false)
	g := bytes.Clone(real)
	g[100] ^= 2
	f.Add(g, false)
	empty, _ := Encode(nil, &Checkpoint{ID: 1})
	f.Add(empty, true)
	f.Fuzz(func(t *testing.T, data []byte, crc bool) {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		c, err := decode(data, crc)
		runtime.ReadMemStats(&ms1)
		if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > uint64(4*len(data)+64<<10) {
			t.Fatalf("decoding %d bytes allocated %d", len(data), alloc)
		}
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset < 0 || ce.Offset > int64(len(data)) {
				t.Fatalf("error %v", err)
			}
			return
		}
		re, err := Encode(nil, c)
		if err != nil {
			t.Fatalf("accepted checkpoint does not encode: %v", err)
		}
		n := len(data) - trailerSize + 4 // all but the checksum when it was not checked
		if crc {
			n = len(data)
		}
		if len(re) != len(data) || !bytes.Equal(re[:n-4], data[:n-4]) || !bytes.Equal(re[n:], data[n:]) {
			t.Fatal("accepted checkpoint does not re-encode to its bytes")
		}
	})
}
