package codec

// FNV-1a 64-bit parameters (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	hashFNVOffset64 = 14695981039346656037
	hashFNVPrime64  = 1099511628211
)

// HashID returns the stable 64-bit hash of a message id that parsers store in
// Event.IDHash: 64-bit FNV-1a of the bytes exactly as given (after JSON
// unescaping), with two adjustments so that 0 keeps meaning "no id":
// an empty id hashes to 0, and a non-empty id whose FNV-1a is 0 hashes to 1.
//
// The function is part of the WAL and output contract (dedup keys, idempotent
// sink writes): it must never change. It does not allocate.
func HashID(id []byte) uint64 {
	h, _ := hashIDASCII(id)
	return h
}

// DecimalIDHasher computes HashID of the decimal form of a number (no sign,
// no leading zeros: strconv.AppendUint(nil, n, 10)), the id of a feed whose
// ids are its offsets, at one multiplication per call while n stays in the
// ten of the previous call, as consecutive offsets do: FNV-1a runs left to
// right, so the state after every digit but the last is kept and only the
// last is hashed. Hash(n) == HashID(strconv.AppendUint(nil, n, 10)) for
// every n. The zero value is ready; it is for one goroutine.
type DecimalIDHasher struct {
	tens  uint64 // n/10 whose digits state has hashed; valid when ok
	state uint64 // FNV-1a state after the decimal digits of tens (none when 0)
	ok    bool
}

// Hash returns HashID of n's decimal digits. It does not allocate.
func (h *DecimalIDHasher) Hash(n uint64) uint64 {
	tens, last := n/10, n%10
	if !h.ok || tens != h.tens {
		h.setTens(tens)
	}
	x := (h.state ^ ('0' + last)) * hashFNVPrime64
	if x == 0 {
		x = 1
	}
	return x
}

// setTens hashes the digits of tens: Hash's slow path, once per ten.
func (h *DecimalIDHasher) setTens(tens uint64) {
	var buf [20]byte
	i := len(buf)
	for v := tens; v > 0; v /= 10 {
		i--
		buf[i] = byte('0' + v%10)
	}
	state := uint64(hashFNVOffset64)
	for _, c := range buf[i:] {
		state ^= uint64(c)
		state *= hashFNVPrime64
	}
	h.tens, h.state, h.ok = tens, state, true
}

// hashIDASCII is HashID that also reports whether id is all ASCII (and so
// valid UTF-8), from the same pass over the bytes: parsers that must check an
// id's UTF-8 skip utf8.Valid for the usual ASCII id.
func hashIDASCII(id []byte) (h uint64, ascii bool) {
	if len(id) == 0 {
		return 0, true
	}
	h = uint64(hashFNVOffset64)
	var or byte
	for _, c := range id {
		h ^= uint64(c)
		h *= hashFNVPrime64
		or |= c
	}
	if h == 0 {
		h = 1
	}
	return h, or < 0x80
}

// Mix64 is the SplitMix64 finaliser (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", 2014; the constants of Vigna's splitmix64):
// a bijection of uint64 with full avalanche, so that ids that are already
// hashes and ids that are small counters both spread. It is qstream's one
// hash mixer: dedup keys, output keys and hash tables all use it. Mix64(0)
// is 0.
//
// Like HashID it is part of the WAL and output contract (dedup keys in
// checkpoints, idempotent sink writes): it must never change.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return x
}
