package news

// vocab is the read-only open-addressing table from lower-cased words to
// their ids that Analyze probes once per token: the token's hash is computed
// while tokenizing, and the word is compared case-insensitively in place, so
// a lookup neither lower-cases into a buffer nor hashes twice.
type vocab struct {
	slots []vslot // a power of two, at most half full
	mask  uint64
	keys  []byte // the lower-cased words, back to back
}

type vslot struct {
	hash uint64
	off  uint32
	n    uint32 // 0: empty
	id   int32
}

func buildVocab(words map[string]int32) vocab {
	size := 16
	for size < 2*len(words) {
		size *= 2
	}
	v := vocab{slots: make([]vslot, size), mask: uint64(size - 1)}
	for w, id := range words {
		h := hashLower([]byte(w))
		i := h & v.mask
		for v.slots[i].n != 0 {
			i = (i + 1) & v.mask
		}
		v.slots[i] = vslot{hash: h, off: uint32(len(v.keys)), n: uint32(len(w)), id: id}
		v.keys = append(v.keys, w...)
	}
	return v
}

// find returns the id of w (any case; h = hashLower(w)), or -1.
func (v *vocab) find(h uint64, w []byte) int32 {
	for i := h & v.mask; ; i = (i + 1) & v.mask {
		s := &v.slots[i]
		if s.n == 0 {
			return -1
		}
		if s.hash == h && int(s.n) == len(w) && eqLower(w, v.keys[s.off:s.off+s.n]) {
			return s.id
		}
	}
}

// eqLower reports whether w lower-cased equals key (len(w) == len(key)).
func eqLower(w, key []byte) bool {
	for i, c := range w {
		if lowerByte[c] != key[i] {
			return false
		}
	}
	return true
}
