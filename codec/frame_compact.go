package codec

import (
	"encoding/binary"
	"hash/crc32"
	"unsafe"
)

// The compact frame is the WAL's encoding of an event (version 2 of the
// frame): the fixed frame's header and fields, but the 8-byte words that
// are zero are left out, named by a presence mask. A trade carries six of
// the fourteen (times, offsets, id, price and volume), so its record is
// about half the fixed frame's 136 bytes; the WAL's throughput is bounded by
// the bytes it writes and syncs, so this is what durability costs per event.
// The fixed frame (AppendFrame) stays the format of the TCP feed, the
// archive and the dead letters: only the WAL is written compact, and
// DecodeStoredFrame reads both, so older WALs replay as before.
//
//	offset size field
//	     0    1 magic FrameMagic
//	     1    1 version FrameVersionCompact
//	     2    2 frame length in bytes (uint16)
//	     4    4 CRC-32C (Castagnoli) of bytes [8, length)
//	     8    2 mask: bit i set when word i is present (bits 0..13: TsNs,
//	            IngestNs, Seq, IDHash, Price, Volume, Bid, Ask, BidSize,
//	            AskSize, Open, High, Low, Aux); bit 14: TextLen; bit 15: zero
//	    10    1 Kind
//	    11    1 Status
//	    12    1 Flags
//	    13    1 reserved, zero
//	    14    4 Symbol (uint32)
//	    18    2 Source (uint16)
//	    20      the present words in mask order, 8 bytes each (floats by their
//	            IEEE bits: a word is absent only when all its bits are zero),
//	            then TextLen (4 bytes) when present
//
// DecodeStoredFrame(AppendCompactFrame(ev)) == ev for every valid event.
const (
	FrameVersionCompact = 2
	compactHeader       = 20
	compactWords        = 14
	// MaxCompactFrameSize is the largest compact frame: every word present.
	MaxCompactFrameSize = compactHeader + compactWords*8 + 4
)

// The compact frame views an Event's 112 bytes from TsNs to Aux as its
// fourteen words.
var _ [0]struct{} = [unsafe.Offsetof(Event{}.Aux) - unsafe.Offsetof(Event{}.TsNs) - 13*8]struct{}{}

func eventWords(ev *Event) *[compactWords]uint64 {
	return (*[compactWords]uint64)(unsafe.Pointer(&ev.TsNs))
}

// EventWords returns ev's first fourteen fields (TsNs, IngestNs, Seq,
// IDHash, Price, Volume, Bid, Ask, BidSize, AskSize, Open, High, Low, Aux)
// as the 8-byte words the compact encodings store (floats by their bits).
// The words alias ev.
func EventWords(ev *Event) *[14]uint64 { return eventWords(ev) }

// ValidKindStatus reports whether kind and status are ones a frame may
// carry.
func ValidKindStatus(kind Kind, status Status) bool {
	return kind != KindInvalid && kind < kindCount && status < statusCount
}

// AppendCompactFrame appends the compact frame of ev to dst and returns the
// extended slice. It does not allocate when cap(dst)-len(dst) >=
// MaxCompactFrameSize.
func AppendCompactFrame(dst []byte, ev *Event) []byte {
	start := len(dst)
	le := binary.LittleEndian
	dst = append(dst, FrameMagic, FrameVersionCompact, 0, 0, 0, 0, 0, 0, 0, 0,
		byte(ev.Kind), byte(ev.Status), byte(ev.Flags), 0)
	dst = le.AppendUint32(dst, uint32(ev.Symbol))
	dst = le.AppendUint16(dst, ev.Source)
	var mask uint16
	for i, w := range eventWords(ev) {
		if w != 0 {
			mask |= 1 << i
			dst = le.AppendUint64(dst, w)
		}
	}
	if ev.TextLen != 0 {
		mask |= 1 << compactWords
		dst = le.AppendUint32(dst, ev.TextLen)
	}
	b := dst[start:]
	le.PutUint16(b[2:], uint16(len(b)))
	le.PutUint16(b[8:], mask)
	le.PutUint32(b[4:], crc32.Checksum(b[frameBody:], frameCRCTable))
	return dst
}

// DecodeStoredFrame decodes the frame at the start of src, fixed
// (DecodeFrame) or compact, into ev and returns its length. On error it
// returns 0, leaves ev unchanged and reports DecodeFrame's errors. It does
// not allocate.
func DecodeStoredFrame(src []byte, ev *Event) (n int, err error) {
	if len(src) >= 2 && src[0] == FrameMagic && src[1] == FrameVersion {
		return DecodeFrame(src, ev)
	}
	if len(src) < compactHeader {
		return 0, ErrFrameShort
	}
	le := binary.LittleEndian
	size := int(le.Uint16(src[2:]))
	if src[0] != FrameMagic || src[1] != FrameVersionCompact || size < compactHeader || size > MaxCompactFrameSize {
		return 0, ErrFrameHeader
	}
	if len(src) < size {
		return 0, ErrFrameShort
	}
	b := src[:size:size]
	if le.Uint32(b[4:]) != crc32.Checksum(b[frameBody:], frameCRCTable) {
		return 0, ErrFrameChecksum
	}
	mask := le.Uint16(b[8:])
	kind, status := Kind(b[10]), Status(b[11])
	want := compactHeader
	for m := mask &^ (1 << compactWords); m != 0; m &= m - 1 {
		want += 8
	}
	if mask&(1<<compactWords) != 0 {
		want += 4
	}
	if kind == KindInvalid || kind >= kindCount || status >= statusCount || b[13] != 0 || mask>>15 != 0 || want != size {
		return 0, ErrFrameContent
	}
	var e Event
	e.Kind, e.Status, e.Flags = kind, status, Flags(b[12])
	e.Symbol = Symbol(le.Uint32(b[14:]))
	e.Source = le.Uint16(b[18:])
	words := eventWords(&e)
	off := compactHeader
	for i := range words {
		if mask&(1<<i) != 0 {
			words[i] = le.Uint64(b[off:])
			off += 8
		}
	}
	if mask&(1<<compactWords) != 0 {
		e.TextLen = le.Uint32(b[off:])
	}
	*ev = e
	return size, nil
}
