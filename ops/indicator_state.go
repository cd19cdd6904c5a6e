package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// ErrIndicatorState is wrapped by every LoadState error: the snapshot is
// truncated, corrupt, of an unknown version, or was taken from a set with a
// different configuration.
var ErrIndicatorState = errors.New("ops: bad indicator state")

// Indicator state encoding, version 2. All integers little-endian; floats as
// their IEEE-754 bits, so a restore is bit-exact. Only the slots in use are
// written (slots are handed out densely from 0): a set sized for 65,536
// symbols that has seen 100 snapshots 100 slots.
//
//	magic    [4]byte "QIND"
//	version  uint16 (2)
//	nspecs   uint16
//	specs    nspecs × { kind uint8, 3 zero bytes, period uint32 }
//	seed     uint8, 7 zero bytes
//	sesslen  int64  (normalized options)
//	sessoff  int64
//	slots    uint32, stride uint32 (float64s per slot), istride uint32 (uint32s per slot), used uint32 (<= slots)
//	headers  used × { count uint64, sessStartNs int64, sessOpen uint64 }
//	ints     used × istride × uint32
//	arena    used × stride × uint64 (float64 bits)
//	crc      uint32, CRC-32C (Castagnoli) of every byte above, from magic on
const (
	indStateMagic   = "QIND"
	indStateVersion = 2
)

var indCRCTable = crc32.MakeTable(crc32.Castagnoli)

// stateLen returns the length of the encoding of used slots of s.
func (s *IndicatorSet) stateLen(used int) int {
	return 4 + 2 + 2 + 8*len(s.specs) + 8 + 8 + 8 + 16 +
		used*(indSlotHdrBytes+4*s.istride+8*s.stride) + 4
}

// AppendState appends a versioned, checksummed snapshot of the whole state
// (configuration, every slot in use) to dst and returns the extended slice,
// for checkpoints. It allocates only if dst lacks the capacity.
func (s *IndicatorSet) AppendState(dst []byte) []byte {
	start := len(dst)
	dst = indGrowBytes(dst, s.stateLen(s.used))
	le := binary.LittleEndian
	dst = append(dst, indStateMagic...)
	dst = le.AppendUint16(dst, indStateVersion)
	dst = le.AppendUint16(dst, uint16(len(s.specs)))
	for _, sp := range s.specs {
		dst = append(dst, byte(sp.Kind), 0, 0, 0)
		dst = le.AppendUint32(dst, uint32(sp.Period))
	}
	dst = append(dst, byte(s.opts.EMASeed), 0, 0, 0, 0, 0, 0, 0)
	dst = le.AppendUint64(dst, uint64(s.opts.SessionLengthNs))
	dst = le.AppendUint64(dst, uint64(s.opts.SessionOffsetNs))
	dst = le.AppendUint32(dst, uint32(s.slots))
	dst = le.AppendUint32(dst, uint32(s.stride))
	dst = le.AppendUint32(dst, uint32(s.istride))
	dst = le.AppendUint32(dst, uint32(s.used))
	for i := range s.hdr[:s.used] {
		h := &s.hdr[i]
		dst = le.AppendUint64(dst, h.count)
		dst = le.AppendUint64(dst, uint64(h.sessStartNs))
		dst = le.AppendUint64(dst, h.sessOpen)
	}
	for _, v := range s.ints[:s.used*s.istride] {
		dst = le.AppendUint32(dst, v)
	}
	for _, f := range s.arena[:s.used*s.stride] {
		dst = le.AppendUint64(dst, math.Float64bits(f))
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], indCRCTable))
}

// indGrowBytes makes room for n more bytes in dst.
func indGrowBytes(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	out := make([]byte, len(dst), len(dst)+n)
	copy(out, dst)
	return out
}

// LoadState replaces the whole state of s with a snapshot made by
// AppendState, which must be all of src. The snapshot must come from a set
// with the same specs, options and number of slots. It is checked completely
// (checksum, configuration, and that every ring position and count is
// consistent) before anything is changed: on error s is unchanged. Errors
// wrap ErrIndicatorState.
func (s *IndicatorSet) LoadState(src []byte) error {
	used, err := s.checkState(src)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	p := 4 + 2 + 2 + 8*len(s.specs) + 8 + 8 + 8 + 16
	// Slots beyond the snapshot's were never used: clear them.
	clear(s.hdr[used:])
	clear(s.ints[used*s.istride:])
	clear(s.arena[used*s.stride:])
	s.used = used
	for i := range s.hdr[:used] {
		s.hdr[i] = indSlotHdr{
			count:       le.Uint64(src[p:]),
			sessStartNs: int64(le.Uint64(src[p+8:])),
			sessOpen:    le.Uint64(src[p+16:]),
		}
		p += indSlotHdrBytes
	}
	for i := range s.ints[:used*s.istride] {
		s.ints[i] = le.Uint32(src[p:])
		p += 4
	}
	for i := range s.arena[:used*s.stride] {
		s.arena[i] = math.Float64frombits(le.Uint64(src[p:]))
		p += 8
	}
	return nil
}

// checkState validates src as a snapshot of s without changing s and
// returns the number of slots it holds.
func (s *IndicatorSet) checkState(src []byte) (int, error) {
	le := binary.LittleEndian
	if len(src) < 8 || string(src[:4]) != indStateMagic {
		return 0, fmt.Errorf("%w: not an indicator snapshot", ErrIndicatorState)
	}
	if v := le.Uint16(src[4:]); v != indStateVersion {
		return 0, fmt.Errorf("%w: version %d, this build reads %d", ErrIndicatorState, v, indStateVersion)
	}
	hdrEnd := 4 + 2 + 2 + 8*len(s.specs) + 8 + 8 + 8 + 16
	if len(src) < hdrEnd+4 {
		return 0, fmt.Errorf("%w: %d bytes, shorter than the header for this configuration", ErrIndicatorState, len(src))
	}
	used := int(le.Uint32(src[hdrEnd-4:]))
	if used > s.slots {
		return 0, fmt.Errorf("%w: %d slots in use, this set has %d", ErrIndicatorState, used, s.slots)
	}
	if want := s.stateLen(used); len(src) != want {
		return 0, fmt.Errorf("%w: %d bytes, want %d for %d slots of this configuration", ErrIndicatorState, len(src), want, used)
	}
	body := src[:len(src)-4]
	if got, want := crc32.Checksum(body, indCRCTable), le.Uint32(src[len(body):]); got != want {
		return 0, fmt.Errorf("%w: checksum %08x, want %08x", ErrIndicatorState, got, want)
	}
	if n := int(le.Uint16(src[6:])); n != len(s.specs) {
		return 0, fmt.Errorf("%w: %d indicators, this set has %d", ErrIndicatorState, n, len(s.specs))
	}
	p := 8
	for i, sp := range s.specs {
		got := IndicatorSpec{Kind: IndicatorKind(src[p]), Period: int(le.Uint32(src[p+4:]))}
		if got != sp || src[p+1]|src[p+2]|src[p+3] != 0 {
			return 0, fmt.Errorf("%w: indicator %d is %s, this set has %s", ErrIndicatorState, i, got, sp)
		}
		p += 8
	}
	if EMASeed(src[p]) != s.opts.EMASeed || le.Uint64(src[p:])>>8 != 0 {
		return 0, fmt.Errorf("%w: ema seed %s, this set uses %s", ErrIndicatorState, EMASeed(src[p]), s.opts.EMASeed)
	}
	p += 8
	if l, o := int64(le.Uint64(src[p:])), int64(le.Uint64(src[p+8:])); l != s.opts.SessionLengthNs || o != s.opts.SessionOffsetNs {
		return 0, fmt.Errorf("%w: sessions of %d ns at offset %d, this set uses %d at %d",
			ErrIndicatorState, l, o, s.opts.SessionLengthNs, s.opts.SessionOffsetNs)
	}
	p += 16
	if n, st, ist := le.Uint32(src[p:]), le.Uint32(src[p+4:]), le.Uint32(src[p+8:]); int(n) != s.slots || int(st) != s.stride || int(ist) != s.istride {
		return 0, fmt.Errorf("%w: %d slots of %d+%d words, this set has %d of %d+%d",
			ErrIndicatorState, n, st, ist, s.slots, s.stride, s.istride)
	}
	p += 16
	hdrs := src[p : p+used*indSlotHdrBytes]
	ints := src[p+len(hdrs):]
	arena := ints[4*used*s.istride:]
	for slot := 0; slot < used; slot++ {
		h := hdrs[slot*indSlotHdrBytes:]
		count, open := le.Uint64(h), le.Uint64(h[16:])
		if open > 1 || open == 0 && le.Uint64(h[8:]) != 0 {
			return 0, fmt.Errorf("%w: slot %d: bad session header", ErrIndicatorState, slot)
		}
		is := ints[slot*4*s.istride:]
		for _, pl := range s.plan {
			switch pl.kind {
			case IndSMA, IndVWAPN:
				// Every ring advances once per trade from an empty slot, so
				// its head is the trade count modulo the period.
				if hd := le.Uint32(is[4*pl.ioff:]); uint64(hd) != count%pl.un {
					return 0, fmt.Errorf("%w: slot %d: %s:%d ring head %d with %d trades", ErrIndicatorState, slot, pl.kind, pl.n, hd, count)
				}
			}
			if pl.kind == IndVWAPN {
				// The count of non-zero volumes must match the ring, or
				// evicting one could wrap it.
				ring := arena[8*(slot*s.stride+pl.off+8):]
				nz := 0
				for k := 0; k < pl.n; k++ {
					if math.Float64frombits(le.Uint64(ring[16*k+8:])) != 0 {
						nz++
					}
				}
				if got := le.Uint32(is[4*pl.ioff+4:]); int(got) != nz {
					return 0, fmt.Errorf("%w: slot %d: vwap:%d counts %d non-zero volumes, its ring holds %d", ErrIndicatorState, slot, pl.n, got, nz)
				}
			}
		}
	}
	return used, nil
}
