package codec

import (
	"encoding/binary"
)

// IEX-TP v1 segments carrying IEX TOPS 1.6 and DEEP 1.0.
//
// A segment (one UDP payload) is a 40-byte little-endian header
//
//	off size field
//	  0    1 version (1)
//	  1    1 reserved
//	  2    2 message protocol id (0x8003 TOPS, 0x8004 DEEP)
//	  4    4 channel id
//	  8    4 session id
//	 12    2 payload length (bytes after the header)
//	 14    2 message count
//	 16    8 stream offset (byte offset of this payload in the session's stream)
//	 24    8 first message sequence number (1-based, per session)
//	 32    8 send time (ns since the epoch)
//
// followed by message count messages, each a 2-byte length and that many
// bytes, the first of which is the message type. A segment with no messages
// is a heartbeat; its offset and sequence are those of the next message.
// Prices are 8-byte signed fixed point with 4 implied decimals, sizes 4-byte
// unsigned, timestamps 8-byte ns since the epoch, symbols 8 bytes of ASCII
// padded with spaces.

// IEX-TP constants.
const (
	IEXHeaderLen    = 40     // bytes of the IEX-TP header
	IEXVersion      = 1      // the only IEX-TP version
	IEXProtocolTOPS = 0x8003 // message protocol id of TOPS
	IEXProtocolDEEP = 0x8004 // message protocol id of DEEP
)

// IEX message types (the first byte of every message).
const (
	IEXSystemEvent       = 'S'
	IEXSecurityDirectory = 'D'
	IEXTradingStatus     = 'H'
	IEXOperationalHalt   = 'O'
	IEXShortSaleStatus   = 'P'
	IEXSecurityEvent     = 'E'
	IEXQuoteUpdate       = 'Q' // TOPS only
	IEXTradeReport       = 'T'
	IEXOfficialPrice     = 'X'
	IEXTradeBreak        = 'B'
	IEXAuctionInfo       = 'A'
	IEXPriceLevelBuy     = '8' // DEEP only
	IEXPriceLevelSell    = '5' // DEEP only
)

// IEXMessageTypes lists every message type the decoder knows, for reports.
var IEXMessageTypes = [...]byte{IEXSystemEvent, IEXSecurityDirectory, IEXTradingStatus,
	IEXOperationalHalt, IEXShortSaleStatus, IEXSecurityEvent, IEXQuoteUpdate, IEXTradeReport,
	IEXOfficialPrice, IEXTradeBreak, IEXAuctionInfo, IEXPriceLevelBuy, IEXPriceLevelSell}

// Bits of the flag byte of a trade report or trade break (Aux bits 8–15).
const (
	IEXSaleIntermarketSweep   = 0x80 // ISO
	IEXSaleExtendedHours      = 0x40 // outside regular market hours
	IEXSaleOddLot             = 0x20
	IEXSaleTradeThroughExempt = 0x10
	IEXSaleSinglePriceCross   = 0x08 // an auction trade
)

// Bits of the flag byte of a quote update (Aux bits 8–15).
const (
	IEXQuoteSymbolUnavailable = 0x80 // halted, paused or otherwise not trading on IEX
	IEXQuotePrePostMarket     = 0x40 // outside the regular market session
)

// Bits of the flag byte of a security directory message (Aux bits 8–15).
const (
	IEXSecurityTest       = 0x80
	IEXSecurityWhenIssued = 0x40
	IEXSecurityETP        = 0x20
)

// IEXEventProcessingComplete is the DEEP price level event flag (Aux bits
// 8–15) that marks the last update of one atomic book change.
const IEXEventProcessingComplete = 0x1

// IEXMessageTypeOf returns the IEX message type an IEXDecoder recorded in
// Event.Aux (bits 0–7).
func IEXMessageTypeOf(aux uint64) byte { return byte(aux) }

// IEXCodeOf returns the message's flag or code byte recorded in Event.Aux
// (bits 8–15): sale condition flags, trading status, system event code, ...
func IEXCodeOf(aux uint64) byte { return byte(aux >> 8) }

// iexMinLen is the length of each known message type (type byte included).
// Longer messages are accepted and decoded by their known prefix, as the
// specifications allow fields to be appended.
var iexMinLen = [256]uint8{
	IEXSystemEvent:       10,
	IEXSecurityDirectory: 31,
	IEXTradingStatus:     22,
	IEXOperationalHalt:   18,
	IEXShortSaleStatus:   19,
	IEXSecurityEvent:     18,
	IEXQuoteUpdate:       42,
	IEXTradeReport:       38,
	IEXOfficialPrice:     26,
	IEXTradeBreak:        38,
	IEXAuctionInfo:       80,
	IEXPriceLevelBuy:     30,
	IEXPriceLevelSell:    30,
}

// IEXHeader is a decoded IEX-TP segment header.
type IEXHeader struct {
	Version      uint8
	ProtocolID   uint16
	ChannelID    uint32
	SessionID    uint32
	PayloadLen   uint16
	MessageCount uint16
	StreamOffset uint64
	FirstSeq     uint64 // sequence number of the first message (of the next one, in a heartbeat)
	SendTimeNs   int64
}

// NextOffset is the stream offset the following segment should have.
func (h *IEXHeader) NextOffset() uint64 { return h.StreamOffset + uint64(h.PayloadLen) }

// NextSeq is the sequence number the following segment should start with.
func (h *IEXHeader) NextSeq() uint64 { return h.FirstSeq + uint64(h.MessageCount) }

// Errors of segment headers. They are shared, immutable values: ParseIEXHeader
// returns them without allocating. Do not modify them.
var (
	errIEXShort    = &Error{Reason: ReasonMalformed, Detail: "iex: segment shorter than the IEX-TP header", Offset: 0}
	errIEXVersion  = &Error{Reason: ReasonMalformed, Field: "version", Detail: "iex: unsupported IEX-TP version", Offset: 0}
	errIEXProtocol = &Error{Reason: ReasonUnknownKind, Field: "message_protocol_id", Detail: "iex: not TOPS (0x8003) or DEEP (0x8004)", Offset: 2}
	errIEXLength   = &Error{Reason: ReasonMalformed, Field: "payload_length", Detail: "iex: payload length does not match the segment", Offset: 12}
	errIEXCount    = &Error{Reason: ReasonMalformed, Field: "message_count", Detail: "iex: payload without messages or messages without payload", Offset: 14}
)

// ParseIEXHeader decodes and validates the IEX-TP header of a segment: the
// version, a TOPS or DEEP protocol id, and a payload length that accounts for
// every byte after the header.
func ParseIEXHeader(seg []byte) (IEXHeader, error) {
	if len(seg) < IEXHeaderLen {
		return IEXHeader{}, errIEXShort
	}
	h := IEXHeader{
		Version:      seg[0],
		ProtocolID:   binary.LittleEndian.Uint16(seg[2:]),
		ChannelID:    binary.LittleEndian.Uint32(seg[4:]),
		SessionID:    binary.LittleEndian.Uint32(seg[8:]),
		PayloadLen:   binary.LittleEndian.Uint16(seg[12:]),
		MessageCount: binary.LittleEndian.Uint16(seg[14:]),
		StreamOffset: binary.LittleEndian.Uint64(seg[16:]),
		FirstSeq:     binary.LittleEndian.Uint64(seg[24:]),
		SendTimeNs:   int64(binary.LittleEndian.Uint64(seg[32:])),
	}
	switch {
	case h.Version != IEXVersion:
		return h, errIEXVersion
	case h.ProtocolID != IEXProtocolTOPS && h.ProtocolID != IEXProtocolDEEP:
		return h, errIEXProtocol
	case int(h.PayloadLen) != len(seg)-IEXHeaderLen:
		return h, errIEXLength
	case (h.MessageCount == 0) != (h.PayloadLen == 0):
		return h, errIEXCount
	}
	return h, nil
}

// IEXOptions configures an IEXDecoder.
type IEXOptions struct {
	Symbols *SymbolCache // interns symbols; nil: a private table
	Source  uint16       // stamped into Event.Source
	Flags   Flags        // OR-ed into every event (FlagReplay for captures)
}

// IEXStats counts what an IEXDecoder has seen.
type IEXStats struct {
	Segments   uint64      // segments whose header was valid
	Heartbeats uint64      // of those, segments without messages
	Messages   uint64      // messages framed (every type, unknown ones too; not those passed over by Skip)
	Events     uint64      // events produced
	Unknown    uint64      // messages of a type this decoder does not know: skipped, as the specification asks
	Errors     uint64      // errors returned (headers, framing, short messages, symbols)
	ByType     [256]uint64 // messages framed, by type byte
}

// IEXDecoder decodes IEX-TP segments into Events, one message at a time,
// without allocating (after a symbol's first sight). Single-goroutine.
//
// Usage: Reset(segment), then Next(&ev) until it returns false. The
// segment is read in place and must stay unchanged until the next Reset.
//
// Mapping to Event (TsNs ← the message timestamp, Seq ← its sequence
// number, Symbol ← the trimmed 8-byte symbol; Aux bits 0–7 hold the message
// type and bits 8–15 its first field, the flag or code byte, so Aux alone
// tells what a KindStatus or KindSystem event was):
//
//	Q quote update     KindQuote  Bid/BidSize/Ask/AskSize; FlagHasBid/FlagHasAsk when that side's
//	                              price is non-zero. Status: Halted if IEXQuoteSymbolUnavailable,
//	                              else Open in the regular session, else PreMarket before 17:00 UTC
//	                              (noon New York) and AfterHours after.
//	T trade report     KindTrade  Price, Volume ← size; Aux 8–15 sale condition flags (IEXSale*);
//	                              IDHash ← the IEX trade id.
//	B trade break      KindCustom Price, Volume of the broken trade; IDHash ← its trade id (the
//	                              IDHash of the trade it cancels); Aux 8–15 its sale flags. Not a
//	                              KindTrade, so nothing that aggregates trades counts it.
//	8 / 5 price level  KindBook   Price, Volume ← size (0: the level is gone); FlagBuy ('8') or
//	                              FlagSell ('5'); Aux 8–15 the event flags (IEXEventProcessingComplete).
//	H trading status   KindStatus Aux 8–15 status ('H','O','P','T'), Aux 16–47 the 4-byte reason;
//	                              Status Open for 'T', Halted otherwise.
//	O operational halt KindStatus Aux 8–15 'O' (halted: Status Halted) or 'N' (Status Unknown).
//	P short sale test  KindStatus Aux 8–15 status (0/1), Aux 16–23 detail (' ','A','C','D','N').
//	S system event     KindSystem Symbol 0; Aux 8–15 the event ('O','S','R','M','E','C');
//	                              Status PreMarket for 'S', Open for 'R', AfterHours for 'M',
//	                              Closed for 'E' and 'C'.
//	D security dir.    KindSystem Price ← adjusted POC price, Volume ← round lot size; Aux 8–15
//	                              flags (IEXSecurity*), Aux 16–23 LULD tier.
//	E security event   KindSystem Aux 8–15 the event ('O' opening, 'C' closing process complete).
//	X official price   KindSystem Price; Aux 8–15 price type ('Q' opening, 'M' closing).
//	A auction info     KindSystem Price ← reference price, Volume ← paired shares, BidSize ←
//	                              imbalance shares, Open ← indicative clearing price, High ←
//	                              auction book clearing price, Low ← collar reference price,
//	                              Bid/Ask ← lower/upper auction collar (FlagHasBid/Ask unset:
//	                              they are collars, not a quote); Aux 8–15 auction type, 16–23
//	                              imbalance side, 24–31 extension number, 32–63 scheduled
//	                              auction time (s since the epoch).
//
// The last message of a segment carries FlagLast. Unknown message types are
// counted and passed over.
type IEXDecoder struct {
	syms   *SymbolCache
	source uint16
	flags  Flags

	hdr   IEXHeader
	buf   []byte // the segment's payload
	pos   int    // next message's length prefix in buf
	idx   int    // messages framed so far in this segment
	lost  bool   // framing was lost: the rest of the segment is unreadable
	raw   []byte // the last message framed
	err   Error
	stats IEXStats
	// symCache is a direct-mapped cache from the raw 8 symbol bytes (as a
	// uint64) to the interned id, in front of the SymbolCache's string map:
	// IEX symbols are fixed-width, so a hit is one multiply and a compare.
	symCache [iexSymCacheSize]iexSymEntry
}

const (
	iexSymCacheBits = 10
	iexSymCacheSize = 1 << iexSymCacheBits
)

type iexSymEntry struct {
	key uint64 // raw symbol bytes; 0 = empty (an all-NUL symbol is never cached)
	id  Symbol
}

// NewIEXDecoder returns a decoder.
func NewIEXDecoder(opts IEXOptions) *IEXDecoder {
	syms := opts.Symbols
	if syms == nil {
		syms = NewSymbolCache(NewSymbolTable(0))
	}
	return &IEXDecoder{syms: syms, source: opts.Source, flags: opts.Flags}
}

// Reset validates the header of seg and positions the decoder on its first
// message. After an error, Next returns false until the next Reset.
func (d *IEXDecoder) Reset(seg []byte) (IEXHeader, error) {
	d.buf, d.pos, d.idx, d.raw, d.lost = nil, 0, 0, nil, false
	h, err := ParseIEXHeader(seg)
	d.hdr = h
	if err != nil {
		d.hdr.MessageCount = 0
		d.stats.Errors++
		return h, err
	}
	d.buf = seg[IEXHeaderLen:]
	d.stats.Segments++
	if h.MessageCount == 0 {
		d.stats.Heartbeats++
	}
	return h, nil
}

// Header returns the header of the current segment.
func (d *IEXDecoder) Header() IEXHeader { return d.hdr }

// Raw returns the bytes of the last message framed by Next (type byte
// first), for error reports. Valid until the next Reset.
func (d *IEXDecoder) Raw() []byte { return d.raw }

// Stats returns the counters.
func (d *IEXDecoder) Stats() IEXStats { return d.stats }

// Count returns how many messages of type t have been framed.
func (d *IEXDecoder) Count(t byte) uint64 { return d.stats.ByType[t] }

// Remaining returns how many messages of the segment are not framed yet (0
// once framing is lost).
func (d *IEXDecoder) Remaining() int {
	if d.lost {
		return 0
	}
	return int(d.hdr.MessageCount) - d.idx
}

// Framed returns how many messages of the segment have been framed (decoded,
// skipped or rejected) and how many payload bytes they took. After a framing
// error these point at the message that could not be framed, so a caller
// tracking stream continuity knows where delivery stopped.
func (d *IEXDecoder) Framed() (messages, bytes int) { return d.idx, d.pos }

// FramingLost reports whether the current segment's framing was lost: a
// length prefix that overruns the payload or a count that does not match.
func (d *IEXDecoder) FramingLost() bool { return d.lost }

// Skip passes over the next n messages of the segment without decoding or
// counting them (messages already delivered from an overlapping segment).
func (d *IEXDecoder) Skip(n int) error {
	for ; n > 0 && d.Remaining() > 0; n-- {
		if _, ok := d.frame(); !ok {
			return &d.err
		}
	}
	return nil
}

// frame cuts the next message out of the payload. On a framing error it
// fills d.err, ends the segment and returns false.
func (d *IEXDecoder) frame() ([]byte, bool) {
	if d.pos+2 > len(d.buf) {
		return d.framingError("iex: message count exceeds the payload")
	}
	n := int(binary.LittleEndian.Uint16(d.buf[d.pos:]))
	if n == 0 || d.pos+2+n > len(d.buf) {
		return d.framingError("iex: message length overruns the payload")
	}
	m := d.buf[d.pos+2 : d.pos+2+n]
	d.pos += 2 + n
	d.idx++
	d.raw = m
	return m, true
}

func (d *IEXDecoder) framingError(detail string) ([]byte, bool) {
	d.err.set(ReasonMalformed, "message_length", detail)
	d.err.Offset = IEXHeaderLen + d.pos
	d.raw = d.buf[d.pos:]
	d.lost = true // the rest of the segment cannot be framed
	d.stats.Errors++
	return nil, false
}

// Next decodes the next message of the segment into ev (overwriting all of
// it). It returns false, nil at the end of the segment. A *Error reports a
// bad message; Next may be called again and goes on with the next one
// unless framing was lost (then it returns false).
func (d *IEXDecoder) Next(ev *Event) (bool, error) {
	for d.Remaining() > 0 {
		m, ok := d.frame()
		if !ok {
			return false, &d.err
		}
		t := m[0]
		d.stats.Messages++
		d.stats.ByType[t]++
		need := int(iexMinLen[t])
		if need == 0 {
			d.stats.Unknown++
			continue
		}
		seq := d.hdr.FirstSeq + uint64(d.idx-1)
		if len(m) < need {
			d.stats.Errors++
			d.err.set(ReasonMalformed, "message_length", "iex: message shorter than its type")
			d.err.Offset = IEXHeaderLen + d.pos - len(m)
			return false, &d.err
		}
		*ev = Event{
			TsNs:   int64(binary.LittleEndian.Uint64(m[2:])),
			Seq:    seq,
			Source: d.source,
			Flags:  d.flags,
			Aux:    uint64(t) | uint64(m[1])<<8,
		}
		if d.idx == int(d.hdr.MessageCount) {
			ev.Flags |= FlagLast
		}
		if t != IEXSystemEvent {
			if !d.symbol(ev, m[10:18]) {
				return false, &d.err
			}
		}
		d.fill(ev, t, m)
		d.stats.Events++
		return true, nil
	}
	if !d.lost && d.pos != len(d.buf) {
		d.lost = true
		d.stats.Errors++
		d.err.set(ReasonMalformed, "message_count", "iex: bytes after the last message")
		d.err.Offset = -1
		return false, &d.err
	}
	return false, nil
}

// symbol interns the space-padded 8-byte symbol of a message. IEX symbols
// are printable ASCII; any other byte (after the padding is trimmed) makes
// the message ReasonMalformed, so it never reaches JSON output.
func (d *IEXDecoder) symbol(ev *Event, b []byte) bool {
	key := binary.LittleEndian.Uint64(b)
	e := &d.symCache[(key*0x9E3779B97F4A7C15)>>(64-iexSymCacheBits)]
	if e.key == key && key != 0 {
		ev.Symbol = e.id
		return true
	}
	return d.symbolSlow(ev, b, e, key)
}

func (d *IEXDecoder) symbolSlow(ev *Event, b []byte, e *iexSymEntry, key uint64) bool {
	n := len(b)
	for n > 0 && (b[n-1] == ' ' || b[n-1] == 0) {
		n--
	}
	for _, c := range b[:n] {
		if c < 0x20 || c > 0x7e {
			d.stats.Errors++
			d.err.set(ReasonMalformed, "symbol", "iex: symbol holds a byte that is not printable ASCII")
			d.err.Offset = -1
			return false
		}
	}
	id, err := d.syms.Intern(b[:n])
	if err != nil {
		d.stats.Errors++
		d.err.set(ReasonUnknownSymbol, "symbol", "iex: empty symbol, not in the configured universe, or table full")
		d.err.Offset = -1
		return false
	}
	ev.Symbol = id
	e.key, e.id = key, id
	return true
}

// iexPrice converts 4-implied-decimal fixed point to float64: one correctly
// rounded division of two exact values, so the result is the float64 nearest
// to the decimal price (as strconv would parse it).
func iexPrice(b []byte) float64 {
	return float64(int64(binary.LittleEndian.Uint64(b))) / 1e4
}

func iexSize(b []byte) float64 { return float64(binary.LittleEndian.Uint32(b)) }

// nsPerDay and the 17:00 UTC split of the pre/post-market sessions.
const (
	nsPerDay      = 86400 * 1e9
	iexNoonNYUTC  = 17 * 3600 * 1e9 // noon in New York, EDT or EST, falls in 16:00–17:00 UTC
	iexPreOpenUTC = 8 * 3600 * 1e9  // 04:00 New York (EDT) is 08:00 UTC
)

// fill decodes the body of a message whose length has been checked.
func (d *IEXDecoder) fill(ev *Event, t byte, m []byte) {
	switch t {
	case IEXQuoteUpdate:
		ev.Kind = KindQuote
		ev.BidSize = iexSize(m[18:])
		ev.Bid = iexPrice(m[22:])
		ev.Ask = iexPrice(m[30:])
		ev.AskSize = iexSize(m[38:])
		if ev.Bid != 0 {
			ev.Flags |= FlagHasBid
		}
		if ev.Ask != 0 {
			ev.Flags |= FlagHasAsk
		}
		switch f := m[1]; {
		case f&IEXQuoteSymbolUnavailable != 0:
			ev.Status = StatusHalted
		case f&IEXQuotePrePostMarket == 0:
			ev.Status = StatusOpen
		default:
			if tod := ev.TsNs % nsPerDay; tod >= iexPreOpenUTC && tod < iexNoonNYUTC {
				ev.Status = StatusPreMarket
			} else {
				ev.Status = StatusAfterHours
			}
		}
	case IEXTradeReport, IEXTradeBreak:
		ev.Kind = KindTrade
		if t == IEXTradeBreak {
			ev.Kind = KindCustom
		}
		ev.Volume = iexSize(m[18:])
		ev.Price = iexPrice(m[22:])
		ev.IDHash = binary.LittleEndian.Uint64(m[30:])
	case IEXPriceLevelBuy, IEXPriceLevelSell:
		ev.Kind = KindBook
		ev.Volume = iexSize(m[18:])
		ev.Price = iexPrice(m[22:])
		if t == IEXPriceLevelBuy {
			ev.Flags |= FlagBuy
		} else {
			ev.Flags |= FlagSell
		}
	case IEXTradingStatus:
		ev.Kind = KindStatus
		ev.Aux |= uint64(binary.LittleEndian.Uint32(m[18:])) << 16
		if m[1] == 'T' {
			ev.Status = StatusOpen
		} else {
			ev.Status = StatusHalted
		}
	case IEXOperationalHalt:
		ev.Kind = KindStatus
		if m[1] == 'O' {
			ev.Status = StatusHalted
		}
	case IEXShortSaleStatus:
		ev.Kind = KindStatus
		ev.Aux |= uint64(m[18]) << 16
	case IEXSystemEvent:
		ev.Kind = KindSystem
		switch m[1] {
		case 'S':
			ev.Status = StatusPreMarket
		case 'R':
			ev.Status = StatusOpen
		case 'M':
			ev.Status = StatusAfterHours
		case 'E', 'C':
			ev.Status = StatusClosed
		}
	case IEXSecurityDirectory:
		ev.Kind = KindSystem
		ev.Volume = iexSize(m[18:])
		ev.Price = iexPrice(m[22:])
		ev.Aux |= uint64(m[30]) << 16
	case IEXSecurityEvent:
		ev.Kind = KindSystem
	case IEXOfficialPrice:
		ev.Kind = KindSystem
		ev.Price = iexPrice(m[18:])
	case IEXAuctionInfo:
		ev.Kind = KindSystem
		ev.Volume = iexSize(m[18:])   // paired shares
		ev.Price = iexPrice(m[22:])   // reference price
		ev.Open = iexPrice(m[30:])    // indicative clearing price
		ev.BidSize = iexSize(m[38:])  // imbalance shares
		ev.Aux |= uint64(m[42]) << 16 // imbalance side
		ev.Aux |= uint64(m[43]) << 24 // extension number
		ev.Aux |= uint64(binary.LittleEndian.Uint32(m[44:])) << 32
		ev.High = iexPrice(m[48:]) // auction book clearing price
		ev.Low = iexPrice(m[56:])  // collar reference price
		ev.Bid = iexPrice(m[64:])  // lower auction collar
		ev.Ask = iexPrice(m[72:])  // upper auction collar
	}
}

// DecodeSegment decodes a whole segment, appending its events to dst. It
// stops at the first error and returns the events decoded so far with it.
// A segment yields at most its MessageCount (<= 65535) events; for a
// zero-allocation call give dst that much spare capacity (the payload of an
// Ethernet frame holds fewer than 130 messages).
func (d *IEXDecoder) DecodeSegment(seg []byte, dst []Event) ([]Event, error) {
	if _, err := d.Reset(seg); err != nil {
		return dst, err
	}
	for {
		dst = append(dst, Event{})
		ok, err := d.Next(&dst[len(dst)-1])
		if !ok || err != nil {
			dst = dst[:len(dst)-1]
			if err != nil {
				return dst, err
			}
			return dst, nil
		}
	}
}
