package engine

import (
	"encoding/binary"
	"errors"
	"slices"

	"qstream/codec"
)

// Event batches: a Publisher logs the events it publishes as batches, one
// WAL record (RecordEventBatch) per run of events that become visible to the
// shards together (a ring claim filling up, a Flush, a cut, a Close), so the
// invariant of single-event records holds at batch granularity: an event is
// in the WAL before any shard can see it. The record's own header and
// checksum cover the batch, and inside it an event is its compact fields
// (codec.AppendCompactFrame's words, zero words left out) with the event
// time, the ingest stamp and the offset as varint deltas from the previous
// event of the batch and the symbol as a varint: a trade takes about 36 bytes
// instead of 160 (a record per fixed frame) or 92 (a record per compact
// frame). The WAL's throughput is bounded by the bytes it writes.
//
//	batch:  version u8 (1) | reserved u8 | source u16 (publisher id) | count u32 | count × event
//	event:  mask u16 (bit i: word i present, as in the compact frame; bit 14: TextLen)
//	        kind u8 | status u8 | flags u8 | symbol uvarint
//	        words in mask order: TsNs, IngestNs and Seq as zigzag varints of the
//	        difference from the previous event's value (0 before the first;
//	        an absent word's value is 0), the others 8 bytes little-endian
//	        TextLen uvarint when present
//
// Older WALs (one compact or fixed frame per RecordEvent) replay as before.

const (
	batchVersion = 1
	batchHeader  = 8
	// batchEventMax bounds one encoded event (every word present, the
	// longest varints).
	batchEventMax = 2 + 3 + binary.MaxVarintLen32 + 3*binary.MaxVarintLen64 + 11*8 + binary.MaxVarintLen32
	// batchBytesMax bounds a batch below the WAL's record limit.
	batchBytesMax = 32 << 10
)

// batchPrev is the delta state of a batch being encoded or decoded: the
// previous event's first three words (TsNs, IngestNs, Seq).
type batchPrev struct{ ts, ingest, seq uint64 }

func (p *batchPrev) deltas() [3]*uint64 { return [3]*uint64{&p.ts, &p.ingest, &p.seq} }

// ErrBadBatch is returned for an event batch record that does not decode.
var ErrBadBatch = errors.New("engine: bad event batch record")

func zig(d uint64) uint64   { return (d << 1) ^ uint64(int64(d)>>63) }
func unzig(z uint64) uint64 { return (z >> 1) ^ -(z & 1) }

// beginBatch starts a batch of publisher source into dst.
func beginBatch(dst []byte, source int) []byte {
	return append(dst, batchVersion, 0, byte(source), byte(source>>8), 0, 0, 0, 0)
}

// appendBatchEvent appends ev to the batch in dst. It writes into dst's
// spare capacity through one array of batchEventMax bytes (growing dst
// only when less is left), with the mask put in front last, so an event
// costs no per-byte append; the bytes are those of the format above (the
// test oracle appendBatchEventRef is the plain transcription). The fixed
// words are unrolled (constant mask bits, no loop counter: a fifth off the
// looped version in BenchmarkAppendBatchEvent); storing every word
// unconditionally with a branch-free mask measured 50% slower than the
// branches, which the usual trade and quote shapes predict well.
func appendBatchEvent(dst []byte, prev *batchPrev, ev *codec.Event) []byte {
	n := len(dst)
	if cap(dst)-n < batchEventMax {
		dst = slices.Grow(dst, batchEventMax)
	}
	b := (*[batchEventMax]byte)(dst[n : n+batchEventMax])
	words := codec.EventWords(ev)
	ts, ingest, seq := words[0], words[1], words[2]
	b[2], b[3], b[4] = byte(ev.Kind), byte(ev.Status), byte(ev.Flags)
	off := 5 + putUvarint(b[5:], uint64(ev.Symbol))
	mask := nz(ts) | nz(ingest)<<1 | nz(seq)<<2
	if ts != 0 {
		off += putUvarint(b[off:], zig(ts-prev.ts))
	}
	if ingest != 0 {
		off += putUvarint(b[off:], zig(ingest-prev.ingest))
	}
	if seq != 0 {
		off += putUvarint(b[off:], zig(seq-prev.seq))
	}
	prev.ts, prev.ingest, prev.seq = ts, ingest, seq
	// The fixed words, unrolled: constant bits, no loop counter.
	off, mask = putWord(b, off, mask, words[3], 3)
	off, mask = putWord(b, off, mask, words[4], 4)
	off, mask = putWord(b, off, mask, words[5], 5)
	off, mask = putWord(b, off, mask, words[6], 6)
	off, mask = putWord(b, off, mask, words[7], 7)
	off, mask = putWord(b, off, mask, words[8], 8)
	off, mask = putWord(b, off, mask, words[9], 9)
	off, mask = putWord(b, off, mask, words[10], 10)
	off, mask = putWord(b, off, mask, words[11], 11)
	off, mask = putWord(b, off, mask, words[12], 12)
	off, mask = putWord(b, off, mask, words[13], 13)
	if ev.TextLen != 0 {
		mask |= 1 << 14
		off += putUvarint(b[off:], uint64(ev.TextLen))
	}
	b[0], b[1] = byte(mask), byte(mask>>8)
	return dst[:n+off]
}

// putWord writes w, a fixed word, at b[off:] and sets its bit i in mask
// when it is not zero.
func putWord(b *[batchEventMax]byte, off int, mask, w uint64, i uint) (int, uint64) {
	if w != 0 {
		binary.LittleEndian.PutUint64(b[off:], w)
		return off + 8, mask | 1<<i
	}
	return off, mask
}

// nz is 1 when w is not zero, else 0, without a branch.
func nz(w uint64) uint64 { return (w | -w) >> 63 }

// putUvarint is binary.PutUvarint with its common short cases (a symbol,
// the deltas of consecutive events) inline and without a branch between 1
// and 2 bytes. It may write one byte past a 1-byte varint (a zero, which
// the caller overwrites or leaves past its slice's end).
// Precondition: len(b) >= 2 and len(b) >= the varint's length.
func putUvarint(b []byte, v uint64) int {
	if v < 1<<14 { // 1 or 2 bytes, without a branch between them
		hi := v >> 7
		c := (hi + 0x7f) >> 7 // 1 when hi != 0 (hi < 0x80)
		b[1] = byte(hi)
		b[0] = byte(v) | byte(c<<7)
		return 1 + int(c)
	}
	return binary.PutUvarint(b, v)
}

// finishBatch writes the event count into the batch's header.
func finishBatch(b []byte, count int) {
	binary.LittleEndian.PutUint32(b[4:], uint32(count))
}

// EventBatch reads the events of a RecordEventBatch payload in order.
// The payload must stay valid while it is read. It does not allocate.
type EventBatch struct {
	p        []byte
	off      int
	count, k uint32
	source   uint16
	prev     batchPrev
}

// Reset starts reading payload. It returns ErrBadBatch for a bad header.
func (b *EventBatch) Reset(payload []byte) error {
	*b = EventBatch{}
	if len(payload) < batchHeader || payload[0] != batchVersion || payload[1] != 0 {
		return ErrBadBatch
	}
	b.p, b.off = payload, batchHeader
	b.source = binary.LittleEndian.Uint16(payload[2:])
	b.count = binary.LittleEndian.Uint32(payload[4:])
	return nil
}

// Next decodes the next event into ev; false at the end of the batch. An
// event that does not decode, or bytes left after the last, is
// ErrBadBatch.
func (b *EventBatch) Next(ev *codec.Event) (bool, error) {
	if b.k == b.count {
		if b.p != nil && b.off != len(b.p) {
			return false, ErrBadBatch
		}
		return false, nil
	}
	n, err := decodeBatchEvent(b.p[b.off:], &b.prev, ev)
	if err != nil {
		b.k = b.count
		b.p = nil
		return false, err
	}
	b.off += n
	b.k++
	ev.Source = b.source
	return true, nil
}

// DecodeEventBatch calls each with every event of a RecordEventBatch
// payload, in order (the event is reused between calls). It stops at the
// first error of each, or returns ErrBadBatch for a payload that does not
// decode whole.
func DecodeEventBatch(p []byte, each func(ev *codec.Event) error) error {
	var b EventBatch
	if err := b.Reset(p); err != nil {
		return err
	}
	var ev codec.Event
	for {
		ok, err := b.Next(&ev)
		if err != nil || !ok {
			return err
		}
		if err := each(&ev); err != nil {
			return err
		}
	}
}

// uvarint is binary.Uvarint that refuses the non-minimal encodings
// (a last byte of zero after others), so a batch has one encoding.
func uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n > 1 && b[n-1] == 0 {
		return 0, 0
	}
	return v, n
}

func decodeBatchEvent(b []byte, prev *batchPrev, ev *codec.Event) (int, error) {
	if len(b) < 5 {
		return 0, ErrBadBatch
	}
	mask := binary.LittleEndian.Uint16(b)
	kind, status := codec.Kind(b[2]), codec.Status(b[3])
	if mask>>15 != 0 || !codec.ValidKindStatus(kind, status) {
		return 0, ErrBadBatch
	}
	*ev = codec.Event{Kind: kind, Status: status, Flags: codec.Flags(b[4])}
	off := 5
	sym, n := uvarint(b[off:])
	if n <= 0 || sym > 1<<32-1 {
		return 0, ErrBadBatch
	}
	ev.Symbol = codec.Symbol(sym)
	off += n
	words := codec.EventWords(ev)
	deltas := prev.deltas()
	for i, p := range deltas {
		if mask&(1<<i) != 0 {
			z, n := uvarint(b[off:])
			if n <= 0 {
				return 0, ErrBadBatch
			}
			off += n
			if words[i] = *p + unzig(z); words[i] == 0 {
				return 0, ErrBadBatch // a present word is never zero
			}
		}
		*p = words[i]
	}
	for i := len(deltas); i < len(words); i++ {
		if mask&(1<<i) != 0 {
			if len(b)-off < 8 {
				return 0, ErrBadBatch
			}
			if words[i] = binary.LittleEndian.Uint64(b[off:]); words[i] == 0 {
				return 0, ErrBadBatch
			}
			off += 8
		}
	}
	if mask&(1<<14) != 0 {
		tl, n := uvarint(b[off:])
		if n <= 0 || tl == 0 || tl > 1<<32-1 {
			return 0, ErrBadBatch
		}
		ev.TextLen = uint32(tl)
		off += n
	}
	return off, nil
}
