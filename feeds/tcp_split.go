package feeds

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// TCPFormat is the wire format of a TCP listener. It is chosen per listener
// (one TCPServer per format and port), not negotiated: a length prefix can
// begin with any byte, including '{', so sniffing the first byte would be a
// guess.
type TCPFormat uint8

// TCP wire formats.
const (
	// TCPLines is newline-delimited JSON: one message per line in any shape
	// codec.Parser.ParseJSON accepts. A trailing '\r' is dropped, empty lines
	// are skipped. MaxMessageSize bounds a line without its newline.
	TCPLines TCPFormat = iota + 1
	// TCPFrames is length-prefixed binary: a 4-byte little-endian payload
	// length followed by the payload, one codec binary frame
	// (codec.AppendFrame). MaxMessageSize bounds the payload length; a
	// zero-length payload is rejected as malformed.
	TCPFrames
)

func (f TCPFormat) String() string {
	switch f {
	case TCPLines:
		return "lines"
	case TCPFrames:
		return "frames"
	}
	return "invalid"
}

// TCPFrameHeaderSize is the size of the length prefix of a TCPFrames message.
const TCPFrameHeaderSize = 4

// AppendTCPFrame appends payload to dst as one TCPFrames message: its
// 4-byte little-endian length, then payload.
func AppendTCPFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// errTCPOversize is the splitter's verdict on a message over the size
// limit; the connection is then closed, since the rest of its stream cannot
// be trusted to be aligned (a frame length) or bounded (a line).
var errTCPOversize = errors.New("feeds: tcp message over the size limit")

// tcpSplitter cuts one connection's byte stream into messages. Reads arrive
// in arbitrary pieces; a message cut by a read boundary is copied into carry
// (at most one message, so carry is bounded by the size limit) and completed
// from the next read. Complete messages inside a read are returned in place,
// without copying. Not safe for concurrent use.
//
// Use: Begin(buf) with each read, then Next until it returns ok == false;
// every byte of buf is consumed by then (returned or carried).
type tcpSplitter struct {
	format TCPFormat
	max    int // bound of a line (without '\n') or of a frame payload

	buf   []byte // the current read
	pos   int    // next unconsumed byte of buf
	carry []byte // a partial message from earlier reads, raw (length prefix included)

	bufOff   int64 // stream offset of buf[0]
	carryOff int64 // stream offset of carry[0]
	msgOff   int64 // stream offset of the message last returned
	count    int64 // messages returned so far (including empty lines)
}

func newTCPSplitter(format TCPFormat, max int) tcpSplitter {
	return tcpSplitter{format: format, max: max}
}

// reset forgets all state, for a new connection in a reused slot. The carry
// buffer's capacity is kept.
func (s *tcpSplitter) reset() {
	s.buf, s.pos, s.carry = nil, 0, s.carry[:0]
	s.bufOff, s.carryOff, s.msgOff, s.count = 0, 0, 0, 0
}

// Begin starts on a new read. buf must stay valid and unchanged until Next
// returns ok == false or an error.
func (s *tcpSplitter) Begin(buf []byte) {
	s.bufOff += int64(s.pos)
	s.buf, s.pos = buf, 0
}

// Carried returns the number of bytes of a partial message held over.
func (s *tcpSplitter) Carried() int { return len(s.carry) }

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
// without a '\r' before it) or a frame payload. msg is valid until the next
// call to Next or Begin. ok is false when the read is used up. err is
// errTCPOversize when a message exceeds the limit; msg then holds the bytes of
// it seen so far (for a report) and the stream must be abandoned.
func (s *tcpSplitter) Next() (msg []byte, ok bool, err error) {
	if len(s.carry) > 0 {
		return s.nextCarried()
	}
	rest := s.buf[s.pos:]
	if len(rest) == 0 {
		return nil, false, nil
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
		if len(rest) < TCPFrameHeaderSize {
			s.hold(rest, start)
			return nil, false, nil
		}
		n := binary.LittleEndian.Uint32(rest)
		if uint64(n) > uint64(s.max) {
			return rest, false, errTCPOversize
		}
		end := TCPFrameHeaderSize + int(n)
		if len(rest) < end {
			s.hold(rest, start)
			return nil, false, nil
		}
		s.pos += end
		s.msgOff, s.count = start, s.count+1
		return rest[TCPFrameHeaderSize:end], true, nil
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
		n := binary.LittleEndian.Uint32(s.carry)
		if uint64(n) > uint64(s.max) {
			return s.carry, false, errTCPOversize
		}
		need := TCPFrameHeaderSize + int(n) - len(s.carry)
		if len(rest) < need {
			s.carry = append(s.carry, rest...)
			s.pos = len(s.buf)
			return nil, false, nil
		}
		s.carry = append(s.carry, rest[:need]...)
		s.pos += need
		msg = s.carry[TCPFrameHeaderSize:]
	}
	// The message aliases carry, which is emptied (not overwritten) here and
	// refilled only by a later call: msg stays valid until then.
	s.msgOff, s.count = s.carryOff, s.count+1
	s.carry = s.carry[:0]
	return msg, true, nil
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
