package sinks

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"unicode/utf8"

	"qstream/codec"
	"qstream/ops"
)

// Dead-letter segment records. Each dead letter is one record of a WAL
// (package wal) in the DLQ directory, with this payload (version 1,
// little-endian):
//
//	0  magic    "QDLQ"
//	4  version  u8 (1)
//	5  reason   u8 (codec.Reason)
//	6  flags    u8: 1 event, 2 output, 4 raw truncated, 8 error truncated
//	7  reserved u8 (0)
//	8  line     i64 (0: not line-oriented)
//	16 offset   i64 (-1: unknown)
//	24 key      u64: the dead letter's deterministic key (DLQKey)
//	32 feedLen  u16 | symLen u16 | errLen u16 | reserved u16
//	40 rawLen   u32 | reserved u32
//	48 [event:  a codec frame, codec.FrameSize bytes]           flag 1
//	   [output: kind u8 | timing u8 | 6 zero | seq u64 | key u64 | ts i64] flag 2
//	   feed | symbol | error | raw
//
// Lengths are bounded (DLQMaxFeed, codec.MaxSymbolLen, DLQMaxError,
// DLQMaxRaw); longer errors and raw inputs are truncated and flagged, so a
// record never exceeds DLQMaxRecord.
const (
	dlqMagic      = "QDLQ"
	dlqVersion    = 1
	dlqHeader     = 48
	dlqOutputSize = 32

	dlqFlagEvent    = 1
	dlqFlagOutput   = 2
	dlqFlagRawTrunc = 4
	dlqFlagErrTrunc = 8

	// DLQMaxFeed, DLQMaxError and DLQMaxRaw bound the variable parts of a
	// dead-letter record.
	DLQMaxFeed  = 255
	DLQMaxError = 1024
	DLQMaxRaw   = 64 << 10
	// DLQMaxRecord bounds a whole record.
	DLQMaxRecord = dlqHeader + codec.FrameSize + dlqOutputSize + DLQMaxFeed + codec.MaxSymbolLen + DLQMaxError + DLQMaxRaw
)

// DLQKey is the deterministic key of a dead letter: a 64-bit FNV-1a of the
// feed, the reason, the position and, for an event or output, its
// identity. A replay that rejects the same input again produces the same
// key, so `qstream dlq` lists and re-injects it once.
func DLQKey(r *DeadLetterRecord) uint64 {
	h := fnv.New64a()
	var b [8]byte
	h.Write([]byte(r.Feed))
	h.Write([]byte{0, byte(r.Reason)})
	put := func(v uint64) { binary.LittleEndian.PutUint64(b[:], v); h.Write(b[:]) }
	put(uint64(r.Pos.Line))
	put(uint64(r.Pos.Offset))
	if ev := r.Event; ev != nil {
		put(ev.Seq)
		put(uint64(ev.TsNs))
		put(ev.IDHash)
		put(uint64(ev.Symbol))
	}
	if o := r.Output; o != nil {
		put(o.Key)
	}
	if r.Event == nil && r.Output == nil && r.Pos.Line == 0 && r.Pos.Offset < 0 {
		h.Write(r.Raw) // nothing else identifies it
	}
	return h.Sum64()
}

// AppendDLQRecord appends the record payload of r to dst. symbol is the
// name of the event's or output's symbol ("" if none).
func AppendDLQRecord(dst []byte, r *DeadLetterRecord, symbol string) []byte {
	le := binary.LittleEndian
	var flags byte
	if r.Event != nil {
		flags |= dlqFlagEvent
	}
	if r.Output != nil {
		flags |= dlqFlagOutput
	}
	feed := r.Feed
	if len(feed) > DLQMaxFeed {
		feed = feed[:DLQMaxFeed]
	}
	if len(symbol) > codec.MaxSymbolLen {
		symbol = symbol[:codec.MaxSymbolLen]
	}
	var errText string
	if r.Err != nil {
		errText = r.Err.Error()
	}
	if len(errText) > DLQMaxError {
		errText, flags = errText[:DLQMaxError], flags|dlqFlagErrTrunc
	}
	raw := r.Raw
	if len(raw) > DLQMaxRaw {
		raw, flags = raw[:DLQMaxRaw], flags|dlqFlagRawTrunc
	}
	dst = append(dst, dlqMagic...)
	dst = append(dst, dlqVersion, byte(r.Reason), flags, 0)
	dst = le.AppendUint64(dst, uint64(r.Pos.Line))
	dst = le.AppendUint64(dst, uint64(r.Pos.Offset))
	dst = le.AppendUint64(dst, DLQKey(r))
	dst = le.AppendUint16(dst, uint16(len(feed)))
	dst = le.AppendUint16(dst, uint16(len(symbol)))
	dst = le.AppendUint16(dst, uint16(len(errText)))
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint32(dst, uint32(len(raw)))
	dst = le.AppendUint32(dst, 0)
	if r.Event != nil {
		dst = codec.AppendFrame(dst, r.Event)
	}
	if o := r.Output; o != nil {
		dst = append(dst, byte(o.Kind), byte(o.Timing), 0, 0, 0, 0, 0, 0)
		dst = le.AppendUint64(dst, o.Seq)
		dst = le.AppendUint64(dst, o.Key)
		dst = le.AppendUint64(dst, uint64(o.TsNs))
	}
	dst = append(dst, feed...)
	dst = append(dst, symbol...)
	dst = append(dst, errText...)
	return append(dst, raw...)
}

// DLQEntry is a decoded dead-letter record.
type DLQEntry struct {
	LSN          uint64 // its position in the DLQ segments
	Reason       codec.Reason
	Feed         string
	Symbol       string
	Pos          codec.Position
	Key          uint64
	Err          string
	Raw          []byte // aliases the decoded payload
	HasEvent     bool
	Event        codec.Event
	HasOutput    bool
	Output       ops.Output // Kind, Timing, Seq, Key, TsNs
	RawTruncated bool
	ErrTruncated bool
}

func dlqBad(off int, detail string) error {
	return &codec.Error{Reason: codec.ReasonMalformed, Detail: detail, Offset: off}
}

// DecodeDLQRecord decodes a record payload into e. Raw aliases p; the
// strings are copies. It checks every length against p and the limits
// before using it.
func DecodeDLQRecord(p []byte, e *DLQEntry) error {
	le := binary.LittleEndian
	if len(p) < dlqHeader || len(p) > DLQMaxRecord {
		return dlqBad(0, "dead-letter record length out of range")
	}
	if string(p[:4]) != dlqMagic || p[4] != dlqVersion {
		return dlqBad(0, "not a version 1 dead-letter record")
	}
	reason, flags := codec.Reason(p[5]), p[6]
	if int(reason) >= codec.ReasonCount || flags&^0xF != 0 || p[7] != 0 || le.Uint16(p[38:]) != 0 || le.Uint32(p[44:]) != 0 {
		return dlqBad(5, "dead-letter record header fields out of range")
	}
	fl, sl, el, rl := int(le.Uint16(p[32:])), int(le.Uint16(p[34:])), int(le.Uint16(p[36:])), int(le.Uint32(p[40:]))
	if fl > DLQMaxFeed || sl > codec.MaxSymbolLen || el > DLQMaxError || rl > DLQMaxRaw {
		return dlqBad(32, "dead-letter record lengths above the limits")
	}
	need := dlqHeader + fl + sl + el + rl
	if flags&dlqFlagEvent != 0 {
		need += codec.FrameSize
	}
	if flags&dlqFlagOutput != 0 {
		need += dlqOutputSize
	}
	if need != len(p) {
		return dlqBad(32, "dead-letter record lengths do not add up to its size")
	}
	*e = DLQEntry{LSN: e.LSN, Reason: reason, Key: le.Uint64(p[24:]),
		Pos:          codec.Position{Line: int64(le.Uint64(p[8:])), Offset: int64(le.Uint64(p[16:]))},
		RawTruncated: flags&dlqFlagRawTrunc != 0, ErrTruncated: flags&dlqFlagErrTrunc != 0}
	off := dlqHeader
	if flags&dlqFlagEvent != 0 {
		if _, err := codec.DecodeFrame(p[off:], &e.Event); err != nil {
			return err
		}
		e.HasEvent = true
		off += codec.FrameSize
	}
	if flags&dlqFlagOutput != 0 {
		o := p[off:]
		if le.Uint32(o[2:])|uint32(le.Uint16(o[6:])) != 0 {
			return dlqBad(off, "dead-letter output reserved bytes")
		}
		e.HasOutput = true
		e.Output = ops.Output{Kind: ops.OutKind(o[0]), Timing: ops.Timing(o[1]), Seq: le.Uint64(o[8:]), Key: le.Uint64(o[16:]), TsNs: int64(le.Uint64(o[24:]))}
		off += dlqOutputSize
	}
	e.Feed = string(p[off : off+fl])
	off += fl
	e.Symbol = string(p[off : off+sl])
	off += sl
	e.Err = string(p[off : off+el])
	off += el
	e.Raw = p[off : off+rl : off+rl]
	return nil
}

// AppendJSON appends the entry as one JSON object (no newline): what
// `qstream dlq show` prints.
func (e *DLQEntry) AppendJSON(b []byte) []byte {
	b = append(b, `{"lsn":`...)
	b = strconv.AppendUint(b, e.LSN, 10)
	b = append(b, `,"key":"`...)
	b = appendHex64(b, e.Key)
	b = append(b, `","reason":`...)
	b = AppendString(b, e.Reason.String())
	b = append(b, `,"feed":`...)
	b = AppendString(b, e.Feed)
	if e.Pos.Line > 0 {
		b = append(b, `,"line":`...)
		b = strconv.AppendInt(b, e.Pos.Line, 10)
	}
	if e.Pos.Offset >= 0 {
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, e.Pos.Offset, 10)
	}
	if e.Err != "" {
		b = append(b, `,"error":`...)
		b = AppendString(b, e.Err)
	}
	if e.Raw != nil {
		if utf8.Valid(e.Raw) {
			b = append(b, `,"raw":`...)
			b = AppendString(b, string(e.Raw))
		} else {
			b = append(b, `,"raw_b64":"`...)
			b = base64.StdEncoding.AppendEncode(b, e.Raw)
			b = append(b, '"')
		}
		if e.RawTruncated {
			b = append(b, `,"raw_truncated":true`...)
		}
	}
	if e.HasEvent {
		ev := &e.Event
		b = append(b, `,"event":{"seq":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
		b = append(b, `,"kind":`...)
		b = AppendString(b, ev.Kind.String())
		b = append(b, `,"symbol":`...)
		b = AppendString(b, e.Symbol)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, ev.TsNs, 10)
		b = append(b, `,"price":`...)
		b = AppendFloat(b, ev.Price)
		b = append(b, `,"volume":`...)
		b = AppendFloat(b, ev.Volume)
		if ev.HasBid() {
			b = append(b, `,"bid":`...)
			b = AppendFloat(b, ev.Bid)
		}
		if ev.HasAsk() {
			b = append(b, `,"ask":`...)
			b = AppendFloat(b, ev.Ask)
		}
		b = append(b, '}')
	}
	if e.HasOutput {
		b = append(b, `,"output":{"kind":`...)
		b = strconv.AppendUint(b, uint64(e.Output.Kind), 10)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Output.Seq, 10)
		b = append(b, `,"key":"`...)
		b = appendHex64(b, e.Output.Key)
		b = append(b, `","symbol":`...)
		b = AppendString(b, e.Symbol)
		b = append(b, '}')
	}
	return append(b, '}')
}

// AppendInput appends what re-injecting the dead letter sends: the raw input
// as it arrived for parse-time rejections, or a compact JSON tick
// (DESIGN.md's generic tick) rebuilt from the event for operator-time ones.
// It returns dst unchanged for entries with neither (poison outputs).
func (e *DLQEntry) AppendInput(b []byte) []byte {
	if len(e.Raw) > 0 {
		return append(b, e.Raw...)
	}
	if !e.HasEvent {
		return b
	}
	ev := &e.Event
	b = append(b, `{"type":`...)
	b = AppendString(b, ev.Kind.String())
	b = append(b, `,"symbol":`...)
	b = AppendString(b, e.Symbol)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ev.TsNs, 10)
	if ev.Kind == codec.KindTrade || ev.Kind == codec.KindBar || ev.Price != 0 {
		b = append(b, `,"price":`...)
		b = AppendFloat(b, ev.Price)
		b = append(b, `,"volume":`...)
		b = AppendFloat(b, ev.Volume)
	}
	if ev.HasBid() {
		b = append(b, `,"bid":`...)
		b = AppendFloat(b, ev.Bid)
	}
	if ev.HasAsk() {
		b = append(b, `,"ask":`...)
		b = AppendFloat(b, ev.Ask)
	}
	if ev.Status != codec.StatusUnknown {
		b = append(b, `,"status":`...)
		b = AppendString(b, ev.Status.String())
	}
	return append(b, '}')
}
