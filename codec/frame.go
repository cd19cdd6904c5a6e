package codec

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// The binary frame is the fixed-size, little-endian encoding of one Event:
// the payload of the TCP feed's binary mode and of the WAL's data records.
// It carries its own magic, version and length, so a reader can check a
// frame alone and resynchronise a damaged stream (FrameSync); no extra length
// prefix is needed in front of it.
//
//	offset size field
//	     0    1 magic FrameMagic (0xF5: never a byte of UTF-8 text, so a frame
//	            is never mistaken for a JSON line)
//	     1    1 version FrameVersion
//	     2    2 frame length in bytes, = FrameSize (uint16)
//	     4    4 CRC-32C (Castagnoli) of bytes [8, FrameSize) (uint32)
//	     8    8 TsNs         (int64)
//	    16    8 IngestNs     (int64)
//	    24    8 Seq          (uint64)
//	    32    8 IDHash       (uint64)
//	    40   72 Price, Volume, Bid, Ask, BidSize, AskSize, Open, High, Low
//	            (float64 IEEE 754 bits, each 8 bytes, in this order)
//	   112    8 Aux          (uint64)
//	   120    4 Symbol       (uint32)
//	   124    2 Source       (uint16)
//	   126    1 Kind
//	   127    1 Status
//	   128    1 Flags
//	   129    3 reserved, zero
//	   132    4 TextLen      (uint32)
//
// Every field is copied bit for bit (floats by their IEEE bits, so -0 and NaN
// payloads survive too), so DecodeFrame(AppendFrame(ev)) == ev for every
// valid event. An event's text is not part of its frame: it travels in the
// KindText events that follow it, each a frame of its own.
const (
	FrameSize    = 136
	FrameMagic   = 0xF5
	FrameVersion = 1
)

const frameBody = 8 // offset of the CRC-covered body

// frameHeader is the constant first word of every frame.
var frameHeader = [4]byte{FrameMagic, FrameVersion, FrameSize & 0xff, FrameSize >> 8}

var frameCRCTable = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by DecodeFrame. They are shared, immutable values (do not
// modify them). errors.Is matches any *Error of the same Reason, so compare
// with == to tell ErrFrameShort from ErrFrameHeader.
var (
	// ErrFrameShort: fewer than FrameSize bytes; a stream reader waits for more.
	ErrFrameShort = &Error{Reason: ReasonMalformed, Detail: "short frame", Offset: -1}
	// ErrFrameHeader: the magic, version or length is wrong: not a frame
	// boundary (resynchronise with FrameSync) or a newer format.
	ErrFrameHeader = &Error{Reason: ReasonMalformed, Detail: "bad frame header", Offset: 0}
	// ErrFrameChecksum: the CRC-32C does not match the body.
	ErrFrameChecksum = &Error{Reason: ReasonChecksum, Detail: "frame checksum mismatch", Offset: 4}
	// ErrFrameContent: the checksum matches but the event is invalid (kind,
	// status or reserved bytes): a writer bug, not line noise.
	ErrFrameContent = &Error{Reason: ReasonMalformed, Detail: "invalid event in frame", Offset: 126}
)

// AppendFrame appends the FrameSize-byte frame of ev to dst and returns the
// extended slice. It does not allocate when cap(dst)-len(dst) >= FrameSize.
// It encodes any event; DecodeFrame accepts only valid ones (Kind in
// (KindInvalid, KindCount), a defined Status).
func AppendFrame(dst []byte, ev *Event) []byte {
	n := len(dst)
	if cap(dst)-n < FrameSize {
		dst = append(dst, make([]byte, FrameSize)...)
	} else {
		dst = dst[:n+FrameSize]
	}
	b := dst[n : n+FrameSize : n+FrameSize]
	le := binary.LittleEndian
	copy(b[0:4], frameHeader[:])
	le.PutUint64(b[8:], uint64(ev.TsNs))
	le.PutUint64(b[16:], uint64(ev.IngestNs))
	le.PutUint64(b[24:], ev.Seq)
	le.PutUint64(b[32:], ev.IDHash)
	le.PutUint64(b[40:], math.Float64bits(ev.Price))
	le.PutUint64(b[48:], math.Float64bits(ev.Volume))
	le.PutUint64(b[56:], math.Float64bits(ev.Bid))
	le.PutUint64(b[64:], math.Float64bits(ev.Ask))
	le.PutUint64(b[72:], math.Float64bits(ev.BidSize))
	le.PutUint64(b[80:], math.Float64bits(ev.AskSize))
	le.PutUint64(b[88:], math.Float64bits(ev.Open))
	le.PutUint64(b[96:], math.Float64bits(ev.High))
	le.PutUint64(b[104:], math.Float64bits(ev.Low))
	le.PutUint64(b[112:], ev.Aux)
	le.PutUint32(b[120:], uint32(ev.Symbol))
	le.PutUint16(b[124:], ev.Source)
	b[126] = byte(ev.Kind)
	b[127] = byte(ev.Status)
	b[128] = byte(ev.Flags)
	clear(b[129:132])
	le.PutUint32(b[132:], ev.TextLen)
	le.PutUint32(b[4:], crc32.Checksum(b[frameBody:], frameCRCTable))
	return dst
}

// DecodeFrame decodes the frame at the start of src into ev and returns the
// number of bytes it used (FrameSize). On error it returns 0, leaves ev
// unchanged and reports one of ErrFrameShort, ErrFrameHeader,
// ErrFrameChecksum (ReasonChecksum) or ErrFrameContent. It does not allocate.
func DecodeFrame(src []byte, ev *Event) (n int, err error) {
	if len(src) < FrameSize {
		return 0, ErrFrameShort
	}
	b := src[:FrameSize:FrameSize]
	if b[0] != frameHeader[0] || b[1] != frameHeader[1] || b[2] != frameHeader[2] || b[3] != frameHeader[3] {
		return 0, ErrFrameHeader
	}
	le := binary.LittleEndian
	if le.Uint32(b[4:]) != crc32.Checksum(b[frameBody:], frameCRCTable) {
		return 0, ErrFrameChecksum
	}
	kind, status := Kind(b[126]), Status(b[127])
	if kind == KindInvalid || kind >= kindCount || status >= statusCount ||
		b[129] != 0 || b[130] != 0 || b[131] != 0 {
		return 0, ErrFrameContent
	}
	*ev = Event{
		TsNs:     int64(le.Uint64(b[8:])),
		IngestNs: int64(le.Uint64(b[16:])),
		Seq:      le.Uint64(b[24:]),
		IDHash:   le.Uint64(b[32:]),
		Price:    math.Float64frombits(le.Uint64(b[40:])),
		Volume:   math.Float64frombits(le.Uint64(b[48:])),
		Bid:      math.Float64frombits(le.Uint64(b[56:])),
		Ask:      math.Float64frombits(le.Uint64(b[64:])),
		BidSize:  math.Float64frombits(le.Uint64(b[72:])),
		AskSize:  math.Float64frombits(le.Uint64(b[80:])),
		Open:     math.Float64frombits(le.Uint64(b[88:])),
		High:     math.Float64frombits(le.Uint64(b[96:])),
		Low:      math.Float64frombits(le.Uint64(b[104:])),
		Aux:      le.Uint64(b[112:]),
		Symbol:   Symbol(le.Uint32(b[120:])),
		Source:   le.Uint16(b[124:]),
		Kind:     kind,
		Status:   status,
		Flags:    Flags(b[128]),
		TextLen:  le.Uint32(b[132:]),
	}
	return FrameSize, nil
}

// FrameSync returns the offset of the first position in src where a frame
// could start: where src continues with the 4-byte frame header, or with a
// prefix of it when fewer than 4 bytes remain. It returns len(src) if there
// is none. A stream reader that gets ErrFrameHeader or ErrFrameChecksum at
// src[0] drops 1+FrameSync(src[1:]) bytes (counting them as lost) and tries
// again.
func FrameSync(src []byte) int {
	for i := 0; i < len(src); i++ {
		if src[i] != FrameMagic {
			continue
		}
		rest := src[i:]
		m := min(len(rest), len(frameHeader))
		if string(rest[:m]) == string(frameHeader[:m]) {
			return i
		}
	}
	return len(src)
}
