package codec

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestHashIDVectors(t *testing.T) {
	// Published FNV-1a 64 test vectors; HashID must never change (WAL, dedup keys).
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0}, // HashID's convention: no id
		{"a", 0xaf63dc4c8601ec8c},
		{"foobar", 0x85944171f73967e8},
		{"t-1", 0x5627091943b2a601},
	} {
		if got := HashID([]byte(tc.in)); got != tc.want {
			t.Errorf("HashID(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func TestHashIDMatchesFNV1a(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, 1+r.IntN(64))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		h := fnv.New64a()
		h.Write(b)
		want := h.Sum64()
		if want == 0 {
			want = 1
		}
		if got := HashID(b); got != want {
			t.Fatalf("HashID(%x) = %#x, want %#x", b, got, want)
		}
	}
}

func TestHashIDAllocs(t *testing.T) {
	b := []byte("3f2a9c6e-0d7b-4f19-9d43-52b1f4a0c8e1")
	if n := testing.AllocsPerRun(100, func() { HashID(b) }); n != 0 {
		t.Fatalf("HashID allocates %v", n)
	}
}

func TestMix64Vectors(t *testing.T) {
	// Written down once, never recomputed by the code under test. The
	// splitmix64 generator seeded with 0 first returns
	// Mix64(0x9E3779B97F4A7C15) = 0xe220a8397b1dcdaf (Vigna's reference).
	for _, tc := range []struct{ in, want uint64 }{
		{0, 0},
		{1, 0x5692161d100b05e5},
		{2, 0xdbd238973a2b148a},
		{0x9E3779B97F4A7C15, 0xe220a8397b1dcdaf},
		{0xFFFFFFFFFFFFFFFF, 0xb4d055fcf2cbbd7b},
		{0x5627091943b2a601, 0x64076d35b4ee32d0}, // HashID("t-1")
	} {
		if got := Mix64(tc.in); got != tc.want {
			t.Errorf("Mix64(%#x) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func TestHashIDSourceNames(t *testing.T) {
	// Publisher names hashed into output and dedup keys (engine).
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"replay", 0x93e4cd644f65cef2},
		{"tcp", 0x56d0b41944429590},
		{"tcp/loop0", 0xaf09c93a28206789},
		{"tcp/loop1", 0xaf09c83a282065d6},
		{"webhook", 0x31f4ad339841cbc6},
	} {
		if got := HashID([]byte(tc.in)); got != tc.want {
			t.Errorf("HashID(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// TestDecimalIDHasherIsHashID: the incremental hash of decimal offsets is
// HashID of their strconv form, over consecutive runs (every digit count's
// boundary), jumps back and forth, and the extremes.
func TestDecimalIDHasherIsHashID(t *testing.T) {
	var h DecimalIDHasher
	check := func(n uint64) {
		t.Helper()
		if got, want := h.Hash(n), HashID(strconv.AppendUint(nil, n, 10)); got != want {
			t.Fatalf("Hash(%d) = %x, HashID = %x", n, got, want)
		}
	}
	for n := uint64(0); n < 200_000; n++ {
		check(n)
	}
	for p := uint64(10); p < 1e19; p *= 10 {
		for n := p - 25; n < p+25; n++ {
			check(n)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10_000; i++ {
		check(rng.Uint64() >> rng.IntN(64))
	}
	for _, n := range []uint64{math.MaxUint64, math.MaxUint64 - 1, 1e19, 0, 9, 10, 1} {
		check(n)
	}
	// A pinned vector: 64-bit FNV-1a of "1234567", written down.
	if got := h.Hash(1234567); got != 0xec75ca32794b12a7 {
		t.Fatalf("Hash(1234567) = %x", got)
	}
	if a := testing.AllocsPerRun(1000, func() { h.Hash(uint64(rng.Uint32())) }); a != 0 {
		t.Fatalf("Hash allocates %.1f times", a)
	}
}

func BenchmarkDecimalIDHasher(b *testing.B) {
	var h DecimalIDHasher
	var sink uint64
	for i := 0; i < b.N; i++ {
		sink ^= h.Hash(uint64(i) + 1_000_000)
	}
	if sink == 42 {
		b.Log(sink)
	}
}

func BenchmarkDecimalIDStrconvHashID(b *testing.B) {
	var buf []byte
	var sink uint64
	for i := 0; i < b.N; i++ {
		buf = strconv.AppendUint(buf[:0], uint64(i)+1_000_000, 10)
		sink ^= HashID(buf)
	}
	if sink == 42 {
		b.Log(sink)
	}
}
