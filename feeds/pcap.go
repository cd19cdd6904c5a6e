package feeds

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"qstream/codec"
)

// ErrCaptureTruncated is reported (by PcapReader.Warning, and in the log) when
// a capture ends inside a record: the records before it were decoded, the
// incomplete one was dropped, and the replay ended normally.
var ErrCaptureTruncated = errors.New("feeds: pcap: capture truncated inside its last record")

// ErrPcapFormat is returned by OpenPcap and NewPcapReader for an input that is
// neither pcap nor pcapng (after an optional gzip layer).
var ErrPcapFormat = errors.New("feeds: pcap: not a pcap or pcapng capture")

// pcapMaxSnaplen bounds the packet buffer of the classic reader whatever
// snap length the file header claims (a corrupt header must not make the
// reader allocate gigabytes). Ethernet jumbo frames are 9 KiB.
const pcapMaxSnaplen = 256 << 10

// PcapOptions configures a PcapReader and a PcapFeed.
type PcapOptions struct {
	Name    string             // feed name; default "pcap"
	Source  uint16             // stamped into Event.Source
	Symbols *codec.SymbolTable // the engine's table (the feed uses pubs.Symbols()); nil: a private one
	// Port keeps only UDP datagrams to this destination port (IEX uses one
	// port per feed: 10378 TOPS, 10379 DEEP; the sample uses 16642). 0 takes
	// every UDP datagram whose payload is an IEX-TP segment.
	Port uint16
	// Speed paces a PcapFeed: 0 replays as fast as possible; otherwise packets
	// are released at the captured pace times Speed (2 = twice as fast),
	// using the packet capture timestamps. Readers ignore it.
	Speed float64
	// Logger receives the truncation warning; nil: slog.Default().
	Logger *slog.Logger
}

// PcapStats counts what a PcapReader has read.
type PcapStats struct {
	Packets  uint64 // records read from the capture
	Segments uint64 // IEX-TP segments decoded (heartbeats included)
	Skipped  uint64 // records that are not IPv4/UDP (to Port), or IP fragments
	NotIEX   uint64 // UDP payloads that are not IEX-TP TOPS/DEEP segments (reported as record errors)
	Events   uint64 // events returned
	Errors   uint64 // record errors returned
	// Continuity per (protocol, channel, session), from each segment's
	// first sequence number and stream offset against the previous one's
	// (see PcapReader for the rules).
	Sessions          uint64 // distinct (protocol, channel, session) streams
	Gaps              uint64 // segments that started after the expected sequence number (a reset epoch not starting at 1 included)
	MissingMessages   uint64 // messages lost in those gaps
	MissingBytes      uint64 // stream bytes lost in those gaps
	Overlaps          uint64 // segments that started before it and ended after it: the repeated messages passed over, the new ones returned
	DuplicateSegments uint64 // segments whose messages had all been seen (a second feed line, a retransmission): passed over
	DuplicateMessages uint64 // messages of overlapping and duplicate segments passed over, not returned twice
	Resets            uint64 // sequence resets: a new epoch of a stream began (each also logged as a warning)
	OffsetMismatches  uint64 // segments whose sequence was continuous but stream offset was not
	// Truncated is set when the capture ended inside a record; the records
	// before it were all decoded.
	Truncated bool
	// IEX holds the decoder's counters: messages by type, unknown types, ...
	IEX codec.IEXStats
}

// pcapResetWindow is the farthest back, in messages, that a segment is
// taken for a retransmission of the stream it belongs to: a segment that
// starts more than this many messages before the expected sequence number is
// a sequence reset (a new epoch), whatever its content. A capture holds
// retransmissions close behind the originals: IEX's redundant feed line
// lags by a few packets, and a gap fill re-sends what a receiver missed
// moments before. 2^20 messages is tens of seconds of the busiest DEEP
// traffic and far more than any of those; a reset that does not start at
// sequence 1 and jumps back less than this is still recognised by its
// timestamps (see PcapReader).
const pcapResetWindow = 1 << 20

// pcapStream is the continuity state of one IEX-TP stream, in its current
// epoch (a sequence reset starts a new one).
type pcapStream struct {
	nextSeq, nextOff uint64
	// seqBase is added to this stream's sequence numbers to make Event.Seq
	// (strictly increasing in capture order across streams and epochs).
	seqBase uint64
	// maxTsNs is the newest message timestamp in the segments the stream
	// has taken (in any epoch: a copy of a segment from before a reset is
	// not newer), messages of unknown types included.
	maxTsNs int64
	// firstMsg is codec.HashID of this epoch's message 1 (0: not seen),
	// which tells a copy of the first segment from a reset to 1.
	firstMsg uint64
}

type pcapStreamKey struct {
	proto           uint16
	channel, sessID uint32
}

// pcapPacketSource is what pcapgo's two readers have in common.
type pcapPacketSource interface {
	ZeroCopyReadPacketData() ([]byte, pcapCaptureInfo, error)
	LinkType() layers.LinkType
}

// PcapReader replays a pcap or pcapng capture (optionally gzip-compressed;
// both detected by their magic numbers) of Ethernet/IPv4/UDP datagrams that
// carry IEX-TP v1 segments of IEX TOPS 1.6 or DEEP 1.0, as a Reader of
// codec.Events: one per IEX message, in capture order, mapped as
// codec.IEXDecoder documents, with FlagReplay set.
//
// It checks stream continuity per (protocol, channel, session) and counts
// what it finds (Stats). Against the sequence number the stream expects, a
// segment that carries messages
//   - starts there: it is decoded;
//   - starts after it: a gap (the messages in between are missing); decoded;
//   - starts before it, and is a sequence reset: the stream starts a new
//     epoch with this segment, which is decoded, and so is everything after
//     it; the reset is counted and logged as a warning (once per reset,
//     naming the stream, the packet and both sequence numbers). A segment
//     behind the stream is a reset when it jumps back more than
//     pcapResetWindow messages; or when it starts the stream again (sequence
//     1 at stream offset 0) with a first message other than this epoch's
//     message 1 (a copy of that first segment from a second feed line is a
//     duplicate); or when its first message is newer than every message the
//     stream has taken (a retransmission repeats messages already seen,
//     so it cannot be newer; this assumes that timestamps do not go
//     backwards across a gap, as IEX timestamps do not);
//   - otherwise ends at or before it: a duplicate, passed over;
//   - otherwise: an overlap, whose repeated messages are passed over and
//     whose new ones are decoded.
//
// No message is returned twice and none is dropped unless counted. A
// heartbeat (no messages) only moves the stream forward.
//
// Event.Seq is the message's IEX sequence number plus a per-stream offset,
// so that Event.Seq is strictly increasing in capture order: an engine can
// use it as the source offset, and the same capture always gives the same
// numbers. The offset is 0 for a capture of one stream without resets; a
// reset sets it to the last Event.Seq returned (sequence number n of the new
// epoch becomes that plus n, so lost messages still leave a hole); where
// streams interleave, it is raised at the first message of a segment just
// enough to stay above the last Event.Seq. Event.Seq never wraps: a segment
// whose sequence numbers or stream offset run past 2^63-1 (IEX-TP's are
// signed 64-bit) is a record error, and should resets of streams near 2^63
// use up Event.Seq's 64 bits, Next returns an error and the replay ends.
//
// A capture that ends inside a record is not an error: Next returns io.EOF,
// Warning returns ErrCaptureTruncated and the warning is logged once.
//
// Reading does not allocate per packet or per message (pcapgo's zero-copy
// read reuses one packet buffer; a gzip-compressed capture adds
// compress/flate's occasional allocation per deflate block). A corrupt capture gives errors, never a
// panic or an unbounded allocation: packet buffers are bounded by
// pcapMaxSnaplen (a pcapng stream is checked block by block before pcapgo
// sees it) and a panic inside pcapgo is turned into an error.
// Single-goroutine.
type PcapReader struct {
	opts   PcapOptions
	log    *slog.Logger
	file   io.Closer
	gz     *gzip.Reader
	src    pcapPacketSource
	link   layers.LinkType
	dec    *codec.IEXDecoder
	inSeg  bool
	done   bool
	pkt    int64 // index of the current packet (0-based)
	pktNs  int64 // capture time of the current packet
	seg    []byte
	stats  PcapStats
	stream map[pcapStreamKey]*pcapStream
	cur    *pcapStream     // the stream of the current segment
	hdr    codec.IEXHeader // the current segment's header
	warn   error
	rerr   RecordError
	// lastSeq is the Event.Seq of the last event returned.
	lastSeq uint64
}

// OpenPcap opens a capture file for replay.
func OpenPcap(path string, opts PcapOptions) (*PcapReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("feeds: pcap: %w", err)
	}
	r, err := NewPcapReader(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	r.file = f
	return r, nil
}

// NewPcapReader reads a capture from r. Close does not close r.
func NewPcapReader(r io.Reader, opts PcapOptions) (*PcapReader, error) {
	if opts.Name == "" {
		opts.Name = "pcap"
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	syms := opts.Symbols
	if syms == nil {
		syms = codec.NewSymbolTable(0)
	}
	pr := &PcapReader{
		opts:   opts,
		log:    log,
		dec:    codec.NewIEXDecoder(codec.IEXOptions{Symbols: codec.NewSymbolCache(syms), Source: opts.Source, Flags: codec.FlagReplay}),
		stream: make(map[pcapStreamKey]*pcapStream),
		pkt:    -1,
	}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, ErrPcapFormat
	}
	var in io.Reader = br
	if magic[0] == 0x1f && magic[1] == 0x8b {
		if pr.gz, err = gzip.NewReader(br); err != nil {
			return nil, fmt.Errorf("feeds: pcap: gzip: %w", err)
		}
		gbr := bufio.NewReaderSize(pr.gz, 64<<10)
		if magic, err = gbr.Peek(4); err != nil {
			return nil, ErrPcapFormat
		}
		in = gbr
	}
	switch binary.LittleEndian.Uint32(magic) {
	case 0x0A0D0D0A: // pcapng section header block
		ng, err := pcapNewNg(in)
		if err != nil {
			return nil, fmt.Errorf("feeds: pcap: pcapng: %w", err)
		}
		pr.src = ngSource{ng}
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1: // µs and ns, either byte order
		cr, err := pcapNewClassic(in)
		if err != nil {
			return nil, fmt.Errorf("feeds: pcap: %w", err)
		}
		if cr.Snaplen() > pcapMaxSnaplen || cr.Snaplen() == 0 {
			cr.SetSnaplen(pcapMaxSnaplen)
		}
		pr.src = classicSource{cr}
	default:
		return nil, ErrPcapFormat
	}
	pr.link = pr.src.LinkType()
	switch pr.link {
	case layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkType(12), layers.LinkTypeIPv4,
		layers.LinkTypeLinuxSLL, layers.LinkTypeNull, layers.LinkTypeLoop:
	default:
		return nil, fmt.Errorf("feeds: pcap: unsupported link type %v", pr.link)
	}
	return pr, nil
}

// Next implements Reader: it decodes the next IEX message into ev.
func (r *PcapReader) Next(ev *codec.Event) error {
	for {
		if r.inSeg {
			ok, err := r.dec.Next(ev)
			if err != nil {
				if r.dec.FramingLost() {
					r.rewind()
				}
				r.stats.Errors++
				r.rerr = RecordError{Pos: codec.Position{Offset: r.pkt}, Raw: r.dec.Raw(), Err: err}
				return &r.rerr
			}
			if ok {
				ev.Seq += r.cur.seqBase
				r.lastSeq = ev.Seq
				r.stats.Events++
				return nil
			}
			r.inSeg = false
		}
		if r.done {
			return io.EOF
		}
		data, ci, err := r.src.ZeroCopyReadPacketData()
		if err != nil {
			return r.readFailed(err, ci)
		}
		r.pkt++
		r.stats.Packets++
		r.pktNs = ci.tsNs
		payload, ok := r.udpPayload(data)
		if !ok {
			r.stats.Skipped++
			continue
		}
		r.seg = payload
		h, err := r.dec.Reset(payload)
		if err != nil {
			r.stats.NotIEX++
			r.stats.Errors++
			r.rerr = RecordError{Pos: codec.Position{Offset: r.pkt}, Raw: payload, Err: err}
			return &r.rerr
		}
		if err := iexCheckRange(&h); err != nil {
			r.stats.Errors++
			r.rerr = RecordError{Pos: codec.Position{Offset: r.pkt}, Raw: payload, Err: err}
			return &r.rerr
		}
		r.stats.Segments++
		r.hdr = h
		skip := r.continuity(&h)
		if int(h.MessageCount) > skip && h.NextSeq()-1 > math.MaxUint64-r.cur.seqBase {
			// Only resets and interleaved streams of sequence numbers near
			// 2^63 can use up the numbering; nothing after this segment
			// could be given an increasing Event.Seq.
			r.done = true
			return fmt.Errorf("%w (at packet %d)", errPcapSeqSpace, r.pkt)
		}
		if skip > 0 {
			if err := r.dec.Skip(skip); err != nil {
				r.stats.Errors++
				r.rerr = RecordError{Pos: codec.Position{Offset: r.pkt}, Raw: r.dec.Raw(), Err: err}
				return &r.rerr
			}
		}
		r.inSeg = true
	}
}

// readFailed turns the end of the capture into io.EOF, recording a
// truncated last record as a warning.
func (r *PcapReader) readFailed(err error, ci pcapCaptureInfo) error {
	r.done = true
	switch {
	case err == io.EOF && !ci.partial:
		return io.EOF
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		r.stats.Truncated = true
		r.warn = fmt.Errorf("%w: after %d complete packets", ErrCaptureTruncated, r.pkt+1)
		r.log.Warn("pcap: capture truncated; the incomplete last record was dropped",
			"feed", r.opts.Name, "packets", r.pkt+1, "events", r.stats.Events)
		return io.EOF
	}
	return fmt.Errorf("feeds: pcap: packet %d: %w", r.pkt+1, err)
}

// continuity checks h (the header of the segment r.seg) against its stream,
// as PcapReader documents, and returns how many of its messages were
// already delivered (to be skipped).
func (r *PcapReader) continuity(h *codec.IEXHeader) int {
	key := pcapStreamKey{h.ProtocolID, h.ChannelID, h.SessionID}
	s := r.stream[key]
	if s == nil {
		s = &pcapStream{nextSeq: h.FirstSeq, nextOff: h.StreamOffset, maxTsNs: math.MinInt64}
		r.stream[key] = s
		r.stats.Sessions++
	}
	r.cur = s
	msgs := uint64(h.MessageCount)
	skip := uint64(0)
	switch {
	case h.FirstSeq == s.nextSeq:
		if h.StreamOffset != s.nextOff {
			r.stats.OffsetMismatches++
		}
	case h.FirstSeq > s.nextSeq:
		r.stats.Gaps++
		r.stats.MissingMessages += h.FirstSeq - s.nextSeq
		if h.StreamOffset > s.nextOff {
			r.stats.MissingBytes += h.StreamOffset - s.nextOff
		} else {
			r.stats.OffsetMismatches++
		}
	case msgs == 0:
		return 0 // a late heartbeat: nothing to deliver, no news of the stream
	case r.isReset(s, h):
		r.reset(s, h)
	case h.FirstSeq+msgs <= s.nextSeq:
		r.stats.DuplicateSegments++
		r.stats.DuplicateMessages += msgs
		return int(msgs)
	default:
		r.stats.Overlaps++
		skip = s.nextSeq - h.FirstSeq
		r.stats.DuplicateMessages += skip
	}
	if h.NextSeq() >= s.nextSeq {
		s.nextSeq = h.NextSeq()
		s.nextOff = max(s.nextOff, h.NextOffset())
	}
	if msgs > skip {
		s.maxTsNs = max(s.maxTsNs, iexMaxTimestamp(r.seg))
		if h.FirstSeq == 1 && skip == 0 {
			if m, ok := iexFirstMessage(r.seg); ok {
				s.firstMsg = codec.HashID(m)
			}
		}
		// The first message to be returned gets an Event.Seq above the last.
		if first := h.FirstSeq + skip; first+s.seqBase <= r.lastSeq {
			s.seqBase = r.lastSeq + 1 - first
		}
	}
	return int(skip)
}

// isReset reports whether h, a segment with messages that starts before the
// sequence number its stream s expects, starts a new epoch of the stream
// (the rules are PcapReader's).
func (r *PcapReader) isReset(s *pcapStream, h *codec.IEXHeader) bool {
	if s.nextSeq-h.FirstSeq > pcapResetWindow {
		return true
	}
	m, ok := iexFirstMessage(r.seg)
	if !ok {
		return false // unreadable: the decoder reports it
	}
	if h.FirstSeq == 1 && h.StreamOffset == 0 && codec.HashID(m) != s.firstMsg {
		return true
	}
	return len(m) >= 10 && int64(binary.LittleEndian.Uint64(m[2:])) > s.maxTsNs
}

// reset starts a new epoch of stream s at segment h: it counts and logs the
// reset and forgets the previous epoch.
func (r *PcapReader) reset(s *pcapStream, h *codec.IEXHeader) {
	r.stats.Resets++
	r.log.Warn("pcap: IEX-TP sequence reset: the stream starts again; decoding its new epoch",
		"feed", r.opts.Name, "protocol", fmt.Sprintf("%#04x", h.ProtocolID), "channel", h.ChannelID,
		"session", h.SessionID, "packet", r.pkt, "seq", h.FirstSeq, "offset", h.StreamOffset,
		"expected_seq", s.nextSeq, "reset", r.stats.Resets)
	if h.FirstSeq > 1 { // the epoch's first messages were lost
		r.stats.Gaps++
		r.stats.MissingMessages += h.FirstSeq - 1
		r.stats.MissingBytes += h.StreamOffset
	}
	s.nextSeq, s.nextOff = h.FirstSeq, h.StreamOffset
	s.firstMsg, s.seqBase = 0, r.lastSeq
}

// IEX-TP sequence numbers and stream offsets are signed 64-bit integers
// (the specification's "Long"); a segment whose messages or bytes would run
// past 2^63-1 is malformed. Rejecting it keeps the continuity arithmetic and
// Event.Seq from wrapping. Shared, immutable values: do not modify.
var (
	errIEXSeqRange = &codec.Error{Reason: codec.ReasonMalformed, Field: "first_message_sequence_number",
		Detail: "pcap: IEX-TP sequence numbers of the segment run past 2^63-1", Offset: 24}
	errIEXOffsetRange = &codec.Error{Reason: codec.ReasonMalformed, Field: "stream_offset",
		Detail: "pcap: IEX-TP stream offset of the segment runs past 2^63-1", Offset: 16}
)

// errPcapSeqSpace ends a replay whose Event.Seq numbering is used up.
var errPcapSeqSpace = errors.New("feeds: pcap: Event.Seq would pass 2^64-1 (sequence resets or streams near 2^63)")

// iexCheckRange checks that the segment's sequence numbers and stream
// offsets stay within IEX-TP's signed 64-bit range.
func iexCheckRange(h *codec.IEXHeader) error {
	switch {
	case h.FirstSeq > math.MaxInt64-uint64(h.MessageCount):
		return errIEXSeqRange
	case h.StreamOffset > math.MaxInt64-uint64(h.PayloadLen):
		return errIEXOffsetRange
	}
	return nil
}

// iexMaxTimestamp returns the newest message timestamp of the IEX-TP
// segment seg (every IEX message has its timestamp at bytes 2-9), or
// math.MinInt64 if none can be read. It follows the length prefixes as far
// as they hold.
func iexMaxTimestamp(seg []byte) int64 {
	ts := int64(math.MinInt64)
	p := seg[min(len(seg), codec.IEXHeaderLen):]
	for len(p) >= 2 {
		n := int(binary.LittleEndian.Uint16(p))
		if n == 0 || 2+n > len(p) {
			break
		}
		if n >= 10 {
			ts = max(ts, int64(binary.LittleEndian.Uint64(p[4:])))
		}
		p = p[2+n:]
	}
	return ts
}

// iexFirstMessage returns the first message (type byte first) of the IEX-TP
// segment seg, if its length prefix is readable.
func iexFirstMessage(seg []byte) ([]byte, bool) {
	if len(seg) < codec.IEXHeaderLen+2 {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint16(seg[codec.IEXHeaderLen:]))
	m := seg[codec.IEXHeaderLen+2:]
	if n == 0 || n > len(m) {
		return nil, false
	}
	return m[:n], true
}

// rewind moves the current stream's expected position back to the message
// where the current segment's framing was lost, so that the undelivered
// messages are not taken for duplicates if they are sent again.
func (r *PcapReader) rewind() {
	s, h := r.cur, &r.hdr
	if s == nil || s.nextSeq != h.NextSeq() {
		return // this segment did not advance the stream
	}
	msgs, n := r.dec.Framed()
	s.nextSeq = h.FirstSeq + uint64(msgs)
	s.nextOff = h.StreamOffset + uint64(n)
}

// udpPayload returns the UDP payload of an IPv4 datagram to the configured
// port, parsed by hand from the link layer up (no allocation).
func (r *PcapReader) udpPayload(data []byte) ([]byte, bool) {
	var ip []byte
	switch r.link {
	case layers.LinkTypeEthernet:
		if len(data) < 14 {
			return nil, false
		}
		etype := binary.BigEndian.Uint16(data[12:])
		p := 14
		for (etype == 0x8100 || etype == 0x88a8) && len(data) >= p+4 { // 802.1Q / 802.1ad tags
			etype = binary.BigEndian.Uint16(data[p+2:])
			p += 4
		}
		if etype != 0x0800 {
			return nil, false
		}
		ip = data[p:]
	case layers.LinkTypeLinuxSLL:
		if len(data) < 16 || binary.BigEndian.Uint16(data[14:]) != 0x0800 {
			return nil, false
		}
		ip = data[16:]
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(data) < 4 {
			return nil, false
		}
		ip = data[4:]
	default: // raw IP
		ip = data
	}
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return nil, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl+8 || total > len(ip) || ip[9] != 17 {
		return nil, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // more fragments, or a fragment offset
		return nil, false
	}
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < 8 || ulen > len(udp) {
		return nil, false
	}
	if r.opts.Port != 0 && binary.BigEndian.Uint16(udp[2:]) != r.opts.Port {
		return nil, false
	}
	return udp[8:ulen], true
}

// SetLogger directs the reader's warnings (a truncated capture, sequence
// resets) to l instead of PcapOptions.Logger; nil: slog.Default(). For a
// caller that gets the reader from elsewhere; call it before Next.
func (r *PcapReader) SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.Default()
	}
	r.log = l
}

// PacketTimeNs returns the capture timestamp of the packet of the last event
// (ns since the epoch): processing time of the capture, used for pacing.
func (r *PcapReader) PacketTimeNs() int64 { return r.pktNs }

// Packet returns the 0-based index of the packet of the last event.
func (r *PcapReader) Packet() int64 { return r.pkt }

// Stats returns the counters.
func (r *PcapReader) Stats() PcapStats {
	st := r.stats
	st.IEX = r.dec.Stats()
	return st
}

// Warning returns ErrCaptureTruncated (wrapped with the packet count) if the
// capture ended inside a record, else nil.
func (r *PcapReader) Warning() error { return r.warn }

// Close releases the capture (and closes the file OpenPcap opened).
func (r *PcapReader) Close() error {
	r.done = true
	var err error
	if r.gz != nil {
		err = r.gz.Close()
	}
	if r.file != nil {
		if cerr := r.file.Close(); err == nil {
			err = cerr
		}
		r.file = nil
	}
	return err
}

// pcapngMaxBlock bounds a pcapng block (a packet of pcapMaxSnaplen bytes
// plus its options).
const pcapngMaxBlock = pcapMaxSnaplen + 64<<10

// errPcapngBlock is returned (through pcapgo) for a pcapng block whose
// lengths would make the reader allocate more than the bounds allow.
var errPcapngBlock = errors.New("feeds: pcap: pcapng block or packet length over the limit, or inconsistent")

// ngGuard sits between the capture and pcapgo's pcapng reader. pcapgo
// allocates its packet buffer from lengths it reads from the file (the
// interface's snap length, a packet's captured length) before it reads the
// packet, so a corrupt block could make it allocate gigabytes. ngGuard
// follows the block structure of the stream, rejects blocks over
// pcapngMaxBlock and packets longer than their block, and lowers interface
// snap lengths over pcapMaxSnaplen. Everything else passes through unchanged;
// a stream cut short passes through as it is, so that pcapgo reports the
// truncation.
type ngGuard struct {
	br     *bufio.Reader
	order  binary.ByteOrder
	left   int64    // bytes of the current block not yet passed on
	hdr    [28]byte // the current block's (possibly patched) leading bytes
	hdrN   int
	hdrOff int
	err    error
}

func newNgGuard(r io.Reader) *ngGuard {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	return &ngGuard{br: br, order: binary.LittleEndian}
}

func (g *ngGuard) Read(p []byte) (int, error) {
	if g.hdrOff < g.hdrN {
		n := copy(p, g.hdr[g.hdrOff:g.hdrN])
		g.hdrOff += n
		g.left -= int64(n)
		return n, nil
	}
	if g.left > 0 {
		if int64(len(p)) > g.left {
			p = p[:g.left]
		}
		n, err := g.br.Read(p)
		g.left -= int64(n)
		return n, err
	}
	if g.err != nil {
		return 0, g.err
	}
	if err := g.nextBlock(); err != nil {
		g.err = err
		return 0, err
	}
	return g.Read(p)
}

// nextBlock reads the leading bytes of the next block into hdr, checks and
// patches them.
func (g *ngGuard) nextBlock() error {
	b, err := g.br.Peek(8)
	if len(b) < 8 {
		if len(b) == 0 {
			if err == nil {
				err = io.EOF
			}
			return err
		}
		g.left = int64(len(b)) // a cut-off header: let pcapgo see it
		return nil
	}
	typ := binary.LittleEndian.Uint32(b) // 0x0A0D0D0A reads the same both ways
	need := 8
	switch typ {
	case 0x0A0D0D0A: // section header: the byte-order magic follows the length
		need = 12
	case 1: // interface description: link type, reserved, snap length
		need = 16
	case 2, 6: // (obsolete) packet, enhanced packet: captured length at 20
		need = 28
	case 3: // simple packet: original length at 8
		need = 12
	}
	b, _ = g.br.Peek(need)
	if len(b) < need { // cut short: pass the rest through
		g.left = int64(len(b))
		return nil
	}
	if typ == 0x0A0D0D0A {
		switch binary.LittleEndian.Uint32(b[8:]) {
		case 0x1A2B3C4D:
			g.order = binary.LittleEndian
		case 0x4D3C2B1A:
			g.order = binary.BigEndian
		}
	}
	length := int64(g.order.Uint32(b[4:]))
	if length > pcapngMaxBlock || length < int64(need) {
		return errPcapngBlock
	}
	g.hdrN = copy(g.hdr[:], b)
	g.hdrOff = 0
	switch typ {
	case 1:
		if g.order.Uint32(g.hdr[12:]) > pcapMaxSnaplen {
			g.order.PutUint32(g.hdr[12:], pcapMaxSnaplen)
		}
	case 2, 6:
		if int64(g.order.Uint32(g.hdr[20:])) > length-32 {
			return errPcapngBlock
		}
	case 3:
		if int64(g.order.Uint32(g.hdr[8:])) > pcapngMaxBlock {
			return errPcapngBlock
		}
	}
	if _, err := g.br.Discard(g.hdrN); err != nil {
		return err
	}
	g.left = length
	return nil
}

// pcapCaptureInfo is the part of gopacket.CaptureInfo the reader needs, plus
// whether a record had started when the read failed.
type pcapCaptureInfo struct {
	tsNs    int64
	partial bool
}

// errPcapgoPanic reports a panic of pcapgo on a malformed capture (it divides
// by a timestamp resolution it read from the file, for one): the capture
// cannot be read further.
var errPcapgoPanic = errors.New("feeds: pcap: malformed capture (the pcapgo reader panicked)")

// pcapRecover turns a panic of pcapgo into *err.
func pcapRecover(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %v", errPcapgoPanic, p)
	}
}

func pcapNewNg(in io.Reader) (r *pcapgo.NgReader, err error) {
	defer pcapRecover(&err)
	return pcapgo.NewNgReader(newNgGuard(in), pcapgo.NgReaderOptions{})
}

func pcapNewClassic(in io.Reader) (r *pcapgo.Reader, err error) {
	defer pcapRecover(&err)
	return pcapgo.NewReader(in)
}

type classicSource struct{ r *pcapgo.Reader }

func (s classicSource) ZeroCopyReadPacketData() (_ []byte, _ pcapCaptureInfo, err error) {
	defer pcapRecover(&err)
	data, ci, err := s.r.ZeroCopyReadPacketData()
	// pcapgo fills ci once the 16-byte record header was read: an io.EOF
	// after that is a record cut short, not the end of the capture.
	return data, pcapCaptureInfo{tsNs: ci.Timestamp.UnixNano(), partial: ci.CaptureLength > 0}, err
}

func (s classicSource) LinkType() layers.LinkType { return s.r.LinkType() }

type ngSource struct{ r *pcapgo.NgReader }

func (s ngSource) ZeroCopyReadPacketData() (_ []byte, _ pcapCaptureInfo, err error) {
	defer pcapRecover(&err)
	data, ci, err := s.r.ZeroCopyReadPacketData()
	return data, pcapCaptureInfo{tsNs: ci.Timestamp.UnixNano(), partial: ci.CaptureLength > 0}, err
}

func (s ngSource) LinkType() layers.LinkType { return s.r.LinkType() }

// PcapFeed replays a capture into the engine as a Feed: as fast as possible,
// or paced by the packet capture timestamps at Speed times the captured rate.
// The pacing clock starts at the first packet that yields an event (leading
// heartbeats are not waited for); events of one packet go out together, and
// what is due is flushed before each wait.
// Bad records go to Publisher.Reject; the end of the capture ends Run with
// nil (a truncated last record is logged, not returned).
type PcapFeed struct {
	path string
	opts PcapOptions

	mu    sync.Mutex
	stats PcapStats
	warn  error

	// Clock hooks, replaced in tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// NewPcapFeed returns a feed over the capture at path.
func NewPcapFeed(path string, opts PcapOptions) *PcapFeed {
	if opts.Name == "" {
		opts.Name = "pcap"
	}
	return &PcapFeed{path: path, opts: opts, now: time.Now, sleep: pcapSleep}
}

// Name implements Feed.
func (f *PcapFeed) Name() string { return f.opts.Name }

// Stats returns the counters of the current Run (refreshed every 64
// packets that yield events, for status lines) or, once it has returned,
// the final counters of the last one.
func (f *PcapFeed) Stats() PcapStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Warning returns the truncation warning of the last Run, if any.
func (f *PcapFeed) Warning() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.warn
}

// pcapPaceMin is the smallest lag worth sleeping for; shorter ones are
// carried over to the next packet, so the average pace stays exact.
const pcapPaceMin = time.Millisecond

// Run implements Feed.
func (f *PcapFeed) Run(ctx context.Context, pubs Publishers) error {
	opts := f.opts
	opts.Symbols = pubs.Symbols()
	r, err := OpenPcap(f.path, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	pub, err := pubs.NewPublisher(opts.Name)
	if err != nil {
		return fmt.Errorf("feeds: pcap: %w", err)
	}
	defer f.publishStats(r)

	var (
		ev        codec.Event
		lastPkt   int64 = -1
		firstPkNs int64
		start     time.Time
		n         int
	)
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			// Declared on the error path only: rec escapes to the heap
			// through errors.As, so declared for every event it cost each
			// event an allocation.
			var rec *RecordError
			if errors.As(err, &rec) {
				pub.Reject(rec.Raw, rec.Reason(), rec.Pos, rec.Err)
				continue
			}
			return err
		}
		if pk := r.Packet(); pk != lastPkt {
			lastPkt = pk
			if n++; n&63 == 0 {
				f.publishStats(r)
				if err := ctx.Err(); err != nil {
					_ = pub.Flush()
					return err
				}
			}
			if opts.Speed > 0 {
				if start.IsZero() {
					start, firstPkNs = f.now(), r.PacketTimeNs()
				} else if err := f.pace(ctx, pub, start, r.PacketTimeNs()-firstPkNs); err != nil {
					_ = pub.Flush()
					return err
				}
			}
		}
		if err := pub.Publish(&ev); err != nil {
			return err
		}
	}
	if err := pub.Flush(); err != nil {
		return err
	}
	return ctx.Err()
}

// pace waits until capture time offset elapsed/Speed after start.
func (f *PcapFeed) pace(ctx context.Context, pub Publisher, start time.Time, elapsedNs int64) error {
	target := start.Add(time.Duration(float64(elapsedNs) / f.opts.Speed))
	d := target.Sub(f.now())
	if d < pcapPaceMin {
		return nil
	}
	if err := pub.Flush(); err != nil { // what is due is visible before we wait
		return err
	}
	return f.sleep(ctx, d)
}

func (f *PcapFeed) publishStats(r *PcapReader) {
	f.mu.Lock()
	f.stats = r.Stats()
	f.warn = r.Warning()
	f.mu.Unlock()
}

func pcapSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
