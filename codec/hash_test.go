package codec

import (
	"hash/fnv"
	"math/rand/v2"
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
