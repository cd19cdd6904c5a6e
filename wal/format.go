package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"qstream/codec"
)

// RecordType says what a record's payload is. The WAL does not interpret
// payloads; types let several record kinds share one log.
type RecordType uint8

// Record types. Types TypeData..TypeUserMax belong to the caller; the rest are
// reserved for the WAL's own records.
const (
	TypeData    RecordType = 1   // an event frame (the engine's codec frames)
	TypeUserMax RecordType = 127 // the highest type Append accepts
	typeSeal    RecordType = 255 // ends a full segment; LSN field = next segment's first LSN
)

// Size limits.
const (
	// DefaultMaxRecordSize is the default maximum payload of one record.
	DefaultMaxRecordSize = 1 << 20
	// MaxRecordSizeLimit bounds Options.MaxRecordSize and the maxRecord field
	// a reader trusts in a segment header.
	MaxRecordSizeLimit = 64 << 20
	// DefaultSegmentSize is the default segment capacity.
	DefaultSegmentSize = 64 << 20
	// MaxSegmentSize bounds Options.SegmentSize.
	MaxSegmentSize = 4 << 30

	segHeaderSize   = 32
	frameHeaderSize = 24
	sealFrameSize   = frameHeaderSize
	segMagic        = "QWAL"
	segVersion      = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameSize is the on-disk size of a record with an n-byte payload.
func frameSize(n int) int { return frameHeaderSize + (n+7)&^7 }

// putFrame encodes a record into dst and returns its size. The caller must
// ensure len(dst) >= frameSize(len(payload)); dst may hold stale bytes, the
// reserved bytes and padding are zeroed here.
func putFrame(dst []byte, lsn uint64, typ RecordType, payload []byte) int {
	n := putFrameBody(dst, lsn, typ, payload)
	setFrameCRC(dst[:n])
	return n
}

// putFrameBody is putFrame without the checksum: the Writer's Append
// leaves it to the flusher (setFrameCRCs), off the appending goroutine.
// The checksum field keeps the stale bytes of dst until then.
func putFrameBody(dst []byte, lsn uint64, typ RecordType, payload []byte) int {
	n := frameSize(len(payload))
	b := dst[:n]
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(b[8:16], lsn)
	b[16] = byte(typ)
	clear(b[17:24])
	copy(b[24:], payload)
	clear(b[24+len(payload) : n])
	return n
}

// setFrameCRC writes the checksum of the complete frame b.
func setFrameCRC(b []byte) { binary.LittleEndian.PutUint32(b[4:8], frameCRC(b)) }

// setFrameCRCs writes the checksums of the frames that fill b end to end,
// as putFrameBody wrote them (a bug panics: b must end at a frame's end).
func setFrameCRCs(b []byte) {
	for len(b) > 0 {
		n := frameSize(int(binary.LittleEndian.Uint32(b)))
		setFrameCRC(b[:n])
		b = b[n:]
	}
}

// frameCRC is the checksum of a complete frame b: bytes 8..end, then 0..3.
func frameCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[8:])
	return crc32.Update(c, castagnoli, b[0:4])
}

// frameStatus is the outcome of decodeFrame.
type frameStatus uint8

const (
	frameOK    frameStatus = iota
	frameZero              // the 24 header bytes are all zero: no record here
	frameShort             // b ends before the frame does; need says how many bytes it takes
	frameBad               // not a valid record; reason and detail say why
)

// frame is a decoded record. payload aliases the decoder's input.
type frame struct {
	lsn     uint64
	typ     RecordType
	payload []byte
	size    int // bytes the frame occupies (header, payload, padding)
	need    int // for frameShort: the frame size (or frameHeaderSize)
	reason  codec.Reason
	detail  string
}

// validType reports whether t may appear on disk.
func validType(t RecordType) bool { return (t >= TypeData && t <= TypeUserMax) || t == typeSeal }

// decodeFrame decodes the record at the start of b. maxPayload bounds the
// length field (a larger one is corruption, never an allocation). It never
// allocates and never reads past len(b). The caller checks the LSN.
func decodeFrame(b []byte, maxPayload int) (f frame, st frameStatus) {
	if len(b) < frameHeaderSize {
		f.need = frameHeaderSize
		return f, frameShort
	}
	h := b[:frameHeaderSize]
	if binary.LittleEndian.Uint64(h[0:8])|binary.LittleEndian.Uint64(h[8:16])|binary.LittleEndian.Uint64(h[16:24]) == 0 {
		return f, frameZero
	}
	length := binary.LittleEndian.Uint32(h[0:4])
	f.lsn = binary.LittleEndian.Uint64(h[8:16])
	f.typ = RecordType(h[16])
	switch {
	case uint64(length) > uint64(maxPayload):
		return bad(f, codec.ReasonOversize, "length field above the maximum record size")
	case !validType(f.typ):
		return bad(f, codec.ReasonMalformed, "unknown record type")
	case binary.LittleEndian.Uint64(h[16:24])>>8 != 0:
		return bad(f, codec.ReasonMalformed, "non-zero reserved header bytes")
	case f.typ == typeSeal && length != 0:
		return bad(f, codec.ReasonMalformed, "seal record with a payload")
	}
	f.size = frameSize(int(length))
	if len(b) < f.size {
		f.need = f.size
		return f, frameShort
	}
	fb := b[:f.size]
	if binary.LittleEndian.Uint32(fb[4:8]) != frameCRC(fb) {
		return bad(f, codec.ReasonChecksum, "record checksum mismatch")
	}
	for _, c := range fb[frameHeaderSize+int(length):] {
		if c != 0 {
			return bad(f, codec.ReasonMalformed, "non-zero padding")
		}
	}
	f.payload = fb[frameHeaderSize : frameHeaderSize+int(length) : frameHeaderSize+int(length)]
	return f, frameOK
}

func bad(f frame, r codec.Reason, detail string) (frame, frameStatus) {
	f.reason, f.detail = r, detail
	return f, frameBad
}

// segHeader is a decoded segment header.
type segHeader struct {
	firstLSN  uint64
	capacity  int64
	maxRecord int
}

func putSegHeader(dst []byte, h segHeader) {
	b := dst[:segHeaderSize]
	copy(b[0:4], segMagic)
	binary.LittleEndian.PutUint16(b[4:6], segVersion)
	binary.LittleEndian.PutUint16(b[6:8], segHeaderSize)
	binary.LittleEndian.PutUint64(b[8:16], h.firstLSN)
	binary.LittleEndian.PutUint64(b[16:24], uint64(h.capacity))
	binary.LittleEndian.PutUint32(b[24:28], uint32(h.maxRecord))
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[0:28], castagnoli))
}

// decodeSegHeader validates a segment header. The returned detail is a
// constant string; reason is ReasonNone when the header is valid.
func decodeSegHeader(b []byte) (h segHeader, reason codec.Reason, detail string) {
	if len(b) < segHeaderSize {
		return h, codec.ReasonMalformed, "segment shorter than its header"
	}
	b = b[:segHeaderSize]
	if string(b[0:4]) != segMagic {
		return h, codec.ReasonMalformed, "bad segment magic"
	}
	if binary.LittleEndian.Uint32(b[28:32]) != crc32.Checksum(b[0:28], castagnoli) {
		return h, codec.ReasonChecksum, "segment header checksum mismatch"
	}
	if v := binary.LittleEndian.Uint16(b[4:6]); v != segVersion {
		return h, codec.ReasonMalformed, "unsupported segment version"
	}
	if binary.LittleEndian.Uint16(b[6:8]) != segHeaderSize {
		return h, codec.ReasonMalformed, "unsupported segment header size"
	}
	h.firstLSN = binary.LittleEndian.Uint64(b[8:16])
	capacity := binary.LittleEndian.Uint64(b[16:24])
	maxRec := binary.LittleEndian.Uint32(b[24:28])
	switch {
	case h.firstLSN == 0:
		return h, codec.ReasonMalformed, "segment first LSN is zero"
	case maxRec > MaxRecordSizeLimit:
		return h, codec.ReasonOversize, "segment max record size above the limit"
	case capacity > MaxSegmentSize || capacity < uint64(segHeaderSize+frameSize(int(maxRec))+sealFrameSize):
		return h, codec.ReasonMalformed, "segment capacity out of range"
	}
	h.capacity = int64(capacity)
	h.maxRecord = int(maxRec)
	return h, codec.ReasonNone, ""
}

// segmentName is the file name of the segment whose first LSN is lsn.
func segmentName(lsn uint64) string { return fmt.Sprintf("%016x.wal", lsn) }

// parseSegmentName returns the first LSN encoded in a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != 20 || name[16:] != ".wal" {
		return 0, false
	}
	var v uint64
	for i := 0; i < 16; i++ {
		c := name[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, v != 0
}
