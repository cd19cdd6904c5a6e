package feeds

import (
	"bytes"
	"encoding/binary"
	"errors"

	"qstream/codec"
)

// TCPFormat is the wire format of a TCP connection.
type TCPFormat uint8

// TCP wire formats.
const (
	// TCPLines is newline-delimited JSON: one message per line in any shape
	// codec.Parser.ParseJSON accepts. A trailing '\r' is dropped, empty lines
	// are skipped. MaxMessageSize bounds a line without its newline.
	TCPLines TCPFormat = iota + 1
	// TCPFrames is a stream of codec binary frames (codec.AppendFrame), back
	// to back. A frame is length-prefixed by its own header: byte 0 is
	// codec.FrameMagic, byte 1 the version, bytes 2-3 the frame's total
	// length (uint16, little-endian, header included). The splitter cuts by
	// that length, so a frame of another version or a bad checksum is
	// rejected alone and the stream stays aligned; a wrong magic byte or a
	// length under 4 means the stream is not aligned on frames any more and
	// closes the connection. MaxMessageSize bounds the frame length.
	TCPFrames
	// TCPAuto decides per connection from its first byte: codec.FrameMagic
	// (0xF5, which never occurs in UTF-8 text) selects TCPFrames, anything
	// else TCPLines.
	TCPAuto
)

func (f TCPFormat) String() string {
	switch f {
	case TCPLines:
		return "lines"
	case TCPFrames:
		return "frames"
	case TCPAuto:
		return "auto"
	}
	return "invalid"
}

// TCPFrameHeaderSize is the size of the header that starts every frame of a
// TCPFrames stream and carries its length.
const TCPFrameHeaderSize = 4

// errTCPOversize is the splitter's verdict on a message over the size
// limit; the connection is then closed, since the rest of its stream cannot
// be trusted to be aligned (a frame length) or bounded (a line).
var errTCPOversize = errors.New("tcp: message over the size limit")

// errTCPUnaligned is the splitter's verdict on a TCPFrames stream whose next
// bytes are not a frame header; the connection is then closed.
var errTCPUnaligned = errors.New("tcp: stream not aligned on a frame header")

// tcpSplitter cuts one connection's byte stream into messages. Reads arrive
// in arbitrary pieces; a message cut by a read boundary is copied into carry
// (at most one message, so carry is bounded by the size limit) and completed
// from the next read. Complete messages inside a read are returned in place,
// without copying. Not safe for concurrent use.
//
// Use: Begin(buf) with each read, then Next until it returns ok == false;
// every byte of buf is consumed by then (returned or carried). A TCPAuto
// splitter settles on TCPLines or TCPFrames at the first byte.
type tcpSplitter struct {
	format  TCPFormat // TCPLines or TCPFrames once the first byte is seen
	initial TCPFormat // as configured, restored by reset
	max     int       // bound of a line (without '\n') or of a frame

	buf   []byte // the current read
	pos   int    // next unconsumed byte of buf
	carry []byte // a partial message from earlier reads, raw (length prefix included)

	bufOff   int64 // stream offset of buf[0]
	carryOff int64 // stream offset of carry[0]
	msgOff   int64 // stream offset of the message last returned
	count    int64 // messages returned so far (including empty lines)
}

func newTCPSplitter(format TCPFormat, max int) tcpSplitter {
	return tcpSplitter{format: format, initial: format, max: max}
}

// reset forgets all state, for a new connection in a reused slot. The carry
// buffer's capacity is kept.
func (s *tcpSplitter) reset() {
	s.format = s.initial
	s.buf, s.pos, s.carry = nil, 0, s.carry[:0]
	s.bufOff, s.carryOff, s.msgOff, s.count = 0, 0, 0, 0
}

// Begin starts on a new read. buf must stay valid and unchanged until Next
// returns ok == false or an error.
func (s *tcpSplitter) Begin(buf []byte) {
	s.bufOff += int64(s.pos)
	s.buf, s.pos = buf, 0
}

// pendingOff returns the stream offset of the message Next is working on:
// where a message over the limit or a bad frame header starts.
func (s *tcpSplitter) pendingOff() int64 {
	if len(s.carry) > 0 {
		return s.carryOff
	}
	return s.bufOff + int64(s.pos)
}

// Carried returns the number of bytes of a partial message held over.
func (s *tcpSplitter) Carried() int { return len(s.carry) }

// carriedPos locates the partial message held over: the index it would
// have had (Line, for TCPLines) and its stream offset.
func (s *tcpSplitter) carriedPos() Position {
	p := Position{Offset: s.carryOff}
	if s.format == TCPLines {
		p.Line = s.count + 1
	}
	return p
}

// dropCarry forgets the partial message held over.
func (s *tcpSplitter) dropCarry() { s.carry = s.carry[:0] }

// Pos locates the message last returned by Next: its 1-based index on the
// connection (Line, for TCPLines) and its stream offset.
func (s *tcpSplitter) Pos() Position {
	p := Position{Offset: s.msgOff}
	if s.format == TCPLines {
		p.Line = s.count
	}
	return p
}

// Next returns the next complete message: a line without its '\n' (and
// without a '\r' before it) or a whole frame, header included. msg is valid
// until the next call to Next or Begin. ok is false when the read is used
// up. err is errTCPOversize when a message exceeds the limit or
// errTCPUnaligned when a frame stream is not at a frame header; msg then
// holds the bytes of the message seen so far (for a report) and the stream
// must be abandoned.
func (s *tcpSplitter) Next() (msg []byte, ok bool, err error) {
	if len(s.carry) > 0 {
		return s.nextCarried()
	}
	rest := s.buf[s.pos:]
	if len(rest) == 0 {
		return nil, false, nil
	}
	if s.format == TCPAuto {
		s.format = TCPLines
		if rest[0] == codec.FrameMagic {
			s.format = TCPFrames
		}
	}
	start := s.bufOff + int64(s.pos)
	switch s.format {
	case TCPLines:
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(rest) > s.max {
				return rest, false, errTCPOversize
			}
			s.hold(rest, start)
			return nil, false, nil
		}
		if i > s.max {
			return rest[:i], false, errTCPOversize
		}
		s.pos += i + 1
		s.msgOff, s.count = start, s.count+1
		return trimCR(rest[:i]), true, nil
	default: // TCPFrames
		if rest[0] != codec.FrameMagic {
			return rest[:min(len(rest), TCPFrameHeaderSize)], false, errTCPUnaligned
		}
		if len(rest) < TCPFrameHeaderSize {
			s.hold(rest, start)
			return nil, false, nil
		}
		n, err := s.frameLen(rest)
		if err != nil {
			return rest, false, err
		}
		if len(rest) < n {
			s.hold(rest, start)
			return nil, false, nil
		}
		s.pos += n
		s.msgOff, s.count = start, s.count+1
		return rest[:n], true, nil
	}
}

// nextCarried completes the carried partial message from the current read.
func (s *tcpSplitter) nextCarried() (msg []byte, ok bool, err error) {
	rest := s.buf[s.pos:]
	switch s.format {
	case TCPLines:
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(s.carry)+len(rest) > s.max {
				return s.carry, false, errTCPOversize
			}
			s.carry = append(s.carry, rest...)
			s.pos = len(s.buf)
			return nil, false, nil
		}
		if len(s.carry)+i > s.max {
			return s.carry, false, errTCPOversize
		}
		s.carry = append(s.carry, rest[:i]...)
		s.pos += i + 1
		msg = trimCR(s.carry)
	default: // TCPFrames
		if len(s.carry) < TCPFrameHeaderSize {
			k := min(TCPFrameHeaderSize-len(s.carry), len(rest))
			s.carry = append(s.carry, rest[:k]...)
			s.pos += k
			rest = rest[k:]
			if len(s.carry) < TCPFrameHeaderSize {
				return nil, false, nil
			}
		}
		n, err := s.frameLen(s.carry)
		if err != nil {
			return s.carry, false, err
		}
		need := n - len(s.carry)
		if len(rest) < need {
			s.carry = append(s.carry, rest...)
			s.pos = len(s.buf)
			return nil, false, nil
		}
		s.carry = append(s.carry, rest[:need]...)
		s.pos += need
		msg = s.carry
	}
	// The message aliases carry, which is emptied (not overwritten) here and
	// refilled only by a later call: msg stays valid until then.
	s.msgOff, s.count = s.carryOff, s.count+1
	s.carry = s.carry[:0]
	return msg, true, nil
}

// frameLen checks the frame header at the start of b (len(b) >= 4; b[0]
// already known to be the magic) and returns the frame's length.
func (s *tcpSplitter) frameLen(b []byte) (int, error) {
	n := int(binary.LittleEndian.Uint16(b[2:]))
	if n < TCPFrameHeaderSize {
		return 0, errTCPUnaligned
	}
	if n > s.max {
		return 0, errTCPOversize
	}
	return n, nil
}

// hold carries rest (the tail of the read, a partial message) over to the
// next read.
func (s *tcpSplitter) hold(rest []byte, off int64) {
	s.carry = append(s.carry[:0], rest...)
	s.carryOff = off
	s.pos = len(s.buf)
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
