package wal

import (
	"bytes"
	"io"

	"qstream/codec"
)

// readBufBytes is the read buffer for a large segment: large sequential
// reads are what make replay fast.
const readBufBytes = 4 << 20

// readBufSize is the buffer a scanner needs for a segment: every frame must
// fit in one buffer, and there is no point in reading more than a segment.
func readBufSize(h segHeader) int {
	return max(int(min(readBufBytes, h.capacity)), 2*frameSize(h.maxRecord))
}

// segReader reads a segment sequentially through one large buffer. It never
// allocates after construction.
type segReader struct {
	ra    io.ReaderAt
	size  int64  // readable bytes (the file size)
	buf   []byte // len(buf) is the capacity used; fixed
	start int64  // file offset of buf[0]
	n     int    // valid bytes in buf
	err   error  // a read error other than EOF
}

func (s *segReader) reset(ra io.ReaderAt, size int64) {
	s.ra, s.size, s.start, s.n, s.err = ra, size, 0, 0, nil
}

// fill reads from off into the buffer and returns the bytes from off.
func (s *segReader) fill(off int64) []byte {
	s.start, s.n = off, 0
	if off >= s.size {
		return nil
	}
	want := int(min(int64(len(s.buf)), s.size-off))
	for s.n < want {
		k, err := s.ra.ReadAt(s.buf[s.n:want], off+int64(s.n))
		s.n += k
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			break
		}
		if k == 0 {
			break
		}
	}
	return s.buf[:s.n]
}

// window returns the buffered bytes from off, refilling when fewer than want
// are buffered and more exist in the file.
func (s *segReader) window(off int64, want int) []byte {
	if off >= s.start && off <= s.start+int64(s.n) {
		i := int(off - s.start)
		if s.n-i >= want || s.start+int64(s.n) >= s.size {
			return s.buf[i:s.n]
		}
	}
	return s.fill(off)
}

var zeroBlock [64 << 10]byte

// nonZeroSpan returns the offsets of the first and last non-zero bytes in
// [from, to) (last is exclusive: one past the byte); first == to when all are
// zero. Reads go through s.
func (s *segReader) nonZeroSpan(from, to int64) (first, last int64) {
	first, last = to, from
	for off := from; off < to; {
		b := s.window(off, 1)
		if len(b) == 0 {
			break
		}
		if int64(len(b)) > to-off {
			b = b[:to-off]
		}
		for i := 0; i < len(b); {
			c := b[i:min(len(b), i+len(zeroBlock))]
			if !bytes.Equal(c, zeroBlock[:len(c)]) {
				for j, v := range c {
					if v != 0 {
						if p := off + int64(i+j); p < first {
							first = p
						}
						break
					}
				}
				for j := len(c) - 1; j >= 0; j-- {
					if c[j] != 0 {
						last = off + int64(i+j) + 1
						break
					}
				}
			}
			i += len(c)
		}
		off += int64(len(b))
	}
	return first, last
}

// scanEnd says why a scanner stopped.
type scanEnd uint8

const (
	endNone    scanEnd = iota
	endClean           // zeros (or end of file) after the last record
	endSealed          // a seal record
	endTorn            // a torn tail (last segment only); see scanner.torn
	endCorrupt         // see scanner.corrupt
)

// scanner iterates the records of one segment and classifies how it ends.
// It is shared by Open, the Reader and Inspect so that all three agree.
type scanner struct {
	sr         segReader
	path       string
	hdr        segHeader
	off        int64  // offset of the next record
	expect     uint64 // LSN of the next record
	last       bool   // the last segment: a torn tail is allowed
	verifyTail bool   // on a zero header, check the rest of the file is zero (Open, Inspect)
	end        scanEnd
	sealNext   uint64 // the seal's next LSN when end == endSealed
	torn       TornTail
	corrupt    CorruptionError
	records    int64 // data records returned
}

// start validates the header read from hb and positions the scanner at the
// first record. wantFirst is the first LSN the segment must have (from its
// name or the previous segment).
func (sc *scanner) start(hb []byte, path string, size int64, wantFirst uint64, last, verifyTail bool) bool {
	sc.path, sc.last, sc.verifyTail = path, last, verifyTail
	sc.end, sc.records, sc.sealNext = endNone, 0, 0
	sc.hdr, sc.off, sc.expect = segHeader{}, 0, 0
	sc.torn, sc.corrupt = TornTail{}, CorruptionError{}
	h, r, detail := decodeSegHeader(hb)
	if r != codec.ReasonNone {
		return sc.fail(0, r, detail)
	}
	if h.firstLSN != wantFirst {
		return sc.fail(0, codec.ReasonSequenceGap, "segment first LSN does not match its name or the previous segment")
	}
	sc.hdr = h
	sc.off = segHeaderSize
	sc.expect = h.firstLSN
	return true
}

func (sc *scanner) fail(off int64, r codec.Reason, detail string) bool {
	sc.end = endCorrupt
	sc.corrupt = CorruptionError{Segment: sc.path, Offset: off, Reason: r, Detail: detail}
	return false
}

// next returns the next data record. ok is false at the end of the segment;
// sc.end then says how it ended. The payload aliases the read buffer and is
// valid until the next call.
func (sc *scanner) next() (f frame, ok bool) {
	if sc.end != endNone {
		return f, false
	}
	for {
		b := sc.sr.window(sc.off, frameHeaderSize)
		f, st := decodeFrame(b, sc.hdr.maxRecord)
		if st == frameShort && f.need <= len(sc.sr.buf) {
			b = sc.sr.window(sc.off, f.need)
			f, st = decodeFrame(b, sc.hdr.maxRecord)
		}
		if sc.sr.err != nil {
			sc.fail(sc.off, codec.ReasonMalformed, "read error")
			return f, false
		}
		switch st {
		case frameOK:
			if f.lsn != sc.expect {
				// A torn write cannot produce a checksum-valid record with
				// the wrong LSN: this is corruption even at the tail.
				sc.fail(sc.off, codec.ReasonSequenceGap, "record LSN out of sequence")
				return f, false
			}
			if f.typ == typeSeal {
				sc.sealed()
				return f, false
			}
			sc.off += int64(f.size)
			sc.expect++
			sc.records++
			return f, true
		case frameZero:
			if !sc.last {
				sc.fail(sc.off, codec.ReasonMalformed, "segment ends without a seal record")
				return f, false
			}
			if !sc.verifyTail {
				sc.end = endClean
				return f, false
			}
			sc.badTail(codec.ReasonMalformed, "zero record header followed by non-zero bytes")
			return f, false
		case frameShort:
			if !sc.last {
				sc.fail(sc.off, codec.ReasonMalformed, "record cut short by the end of the segment")
				return f, false
			}
			sc.badTail(codec.ReasonMalformed, "record cut short by the end of the file")
			return f, false
		default:
			if !sc.last {
				sc.fail(sc.off, f.reason, f.detail)
				return f, false
			}
			sc.badTail(f.reason, f.detail)
			return f, false
		}
	}
}

// sealed handles a seal record at sc.off: the rest of the segment must be
// zeros.
func (sc *scanner) sealed() {
	sc.sealNext = sc.expect
	after := sc.off + sealFrameSize
	if first, _ := sc.sr.nonZeroSpan(after, sc.sr.size); first < sc.sr.size {
		sc.fail(first, codec.ReasonMalformed, "non-zero bytes after the seal record")
		return
	}
	sc.end = endSealed
	sc.off = after
}

// badTail classifies an invalid spot at sc.off in the last segment: clean
// end, torn tail, or corruption.
func (sc *scanner) badTail(r codec.Reason, detail string) {
	x := sc.off
	first, last := sc.sr.nonZeroSpan(x, sc.sr.size)
	if first == sc.sr.size {
		sc.end = endClean
		return
	}
	if y, found := sc.validAfter(x, last); found {
		sc.fail(x, r, detail)
		sc.corrupt.NextValid = y
		return
	}
	sc.end = endTorn
	sc.torn = TornTail{Segment: sc.path, Offset: x, Length: last - x, Reason: r, Detail: detail}
}

// validAfter looks for a valid record with an LSN at or after sc.expect at
// any 8-aligned offset in (x, limit). Its presence means the bad spot at x is
// not the unfinished end of the log.
func (sc *scanner) validAfter(x, limit int64) (int64, bool) {
	// Bound the plausible LSNs: every record takes at least a header.
	maxLSN := sc.expect + uint64((limit-x)/frameHeaderSize) + 1
	for y := x + 8; y+frameHeaderSize <= limit; y += 8 {
		b := sc.sr.window(y, frameHeaderSize)
		if len(b) < frameHeaderSize {
			break
		}
		f, st := decodeFrame(b, sc.hdr.maxRecord)
		if st == frameShort && f.need <= len(sc.sr.buf) {
			if f.lsn < sc.expect || f.lsn > maxLSN {
				continue
			}
			b = sc.sr.window(y, f.need)
			f, st = decodeFrame(b, sc.hdr.maxRecord)
		}
		if st == frameOK && f.lsn >= sc.expect && f.lsn <= maxLSN {
			return y, true
		}
	}
	return 0, false
}
