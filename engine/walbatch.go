package engine

import (
	"encoding/binary"
	"errors"
	"math"
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
// event of the batch, the symbol as a varint, and (version 2) the prices
// and sizes as the decimals they were quoted in: a trade takes about 20
// bytes instead of 160 (a record per fixed frame), 92 (a record per compact
// frame) or 36 (version 1). The WAL's throughput is bounded by the bytes it
// writes: at version 1's 43 bytes an event of the synthetic mix, this
// machine's disk (500 MB/s with fdatasync) held a durable run to 10-11M
// events a second, 0.7x of the run without the WAL, while the same run with
// its WAL on tmpfs matched it.
//
//	batch:  version u8 (2; 1 is still read) | reserved u8 | source u16 (publisher id) | count u32 | count × event
//	event:  mask u16 (bit i: word i present, as in the compact frame; bit 14: TextLen;
//	        bit 15 (version 2): IDHash is the offset's id, codec.HashID of
//	        Seq's decimal digits, and not stored; bit 3 is then clear)
//	        kind u8 | status u8 | flags u8 | symbol uvarint
//	        words in mask order: TsNs, IngestNs and Seq as zigzag varints of the
//	        difference from the previous event's value (0 before the first;
//	        an absent word's value is 0); IDHash 8 bytes little-endian
//	        (never the offset's id: bit 15 says that);
//	        Price, Volume, Bid, Ask, BidSize, AskSize, Open, High, Low each a
//	        decimal: uvarint d, the float m/10^e for m = d>>4, e = d&15 <= 8
//	        (see decimalOf: the shortest such m, e; canonical), or d = 15 and
//	        the float's 8 bytes little-endian when it is not such a decimal;
//	        Aux uvarint
//	        TextLen uvarint when present
//	        (version 1: every word after the first three 8 bytes little-endian)
//
// Older WALs (version 1 batches, one compact or fixed frame per RecordEvent)
// replay as before.

const (
	batchVersion   = 2
	batchVersionV1 = 1 // every fixed word 8 bytes; still decoded
	batchHeader    = 8
	// batchEventMax bounds one encoded event (every word present, the
	// longest varints, every float raw).
	batchEventMax = 2 + 3 + binary.MaxVarintLen32 + 3*binary.MaxVarintLen64 + 8 + decimalWords*9 + binary.MaxVarintLen64 + binary.MaxVarintLen32
	// batchBytesMax bounds a batch below the WAL's record limit.
	batchBytesMax = 32 << 10
)

// batchPrev is the delta state of a batch being encoded or decoded: the
// previous event's first three words (TsNs, IngestNs, Seq); and the hasher
// of offset ids (a cache, not state of the format: reset keeps it).
type batchPrev struct {
	ts, ingest, seq uint64
	ids             codec.DecimalIDHasher
}

// reset starts the delta state of a new batch.
func (p *batchPrev) reset() { p.ts, p.ingest, p.seq = 0, 0, 0 }

// offsetID is the id of an event whose id is its offset (the decimal digits
// of seq, hashed by codec.HashID): a version 2 batch leaves such an id out.
func (p *batchPrev) offsetID(seq uint64) uint64 { return p.ids.Hash(seq) }

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
	// The fixed words, unrolled: constant bits, no loop counter. An id that
	// is the offset's is left out (bit 15).
	if id := words[3]; id != 0 {
		if id == prev.offsetID(seq) {
			mask |= 1 << 15
		} else {
			off, mask = putWord(b, off, mask, id, 3)
		}
	}
	// The floats: the test for zero inline (most of them are, in a trade
	// or a quote), the decimal out of line. A trade's (no word after
	// Volume) without the loop: 2 ns of 25.
	if words[6]|words[7]|words[8]|words[9]|words[10]|words[11]|words[12]|words[13] == 0 {
		if w := words[4]; w != 0 {
			off = putDecimal(b, off, w)
			mask |= 1 << 4
		}
		if w := words[5]; w != 0 {
			off = putDecimal(b, off, w)
			mask |= 1 << 5
		}
	} else {
		for i := firstDecimalWord; i < firstDecimalWord+decimalWords; i++ {
			if w := words[i]; w != 0 {
				off = putDecimal(b, off, w)
				mask |= 1 << i
			}
		}
		if aux := words[13]; aux != 0 {
			off += putUvarint(b[off:], aux)
			mask |= 1 << 13
		}
	}
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

// The float words a batch stores as decimals: Price (word 4) to Low (12).
const (
	firstDecimalWord = 4
	decimalWords     = 9
	decimalRaw       = 15 // the low nibble of a float stored as its 8 bytes
	decimalMaxExp    = 8
	// decimalMax bounds the floats tried as decimals of up to 8 places:
	// below it f*1e8 is within a quarter of the integer it should be, so
	// rounding finds every such decimal; above it only whole numbers are
	// (below 2^53, where a float64 holds every integer).
	decimalMax = 0x1p50 / 1e8
)

var pow10 = [decimalMaxExp + 1]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// decimalOf returns the decimal m/10^e (e <= 8, m < 2^53, m not a multiple
// of 10 when e > 0) whose float64 quotient is exactly f, with the fewest
// places, and ok; or false when f has none (it is negative, -0, NaN, an
// infinity, has more than 8 places, or is a fraction above decimalMax).
// The encoder's and the decoder's check: a batch has one encoding.
func decimalOf(f float64) (m, e uint64, ok bool) {
	// Whole numbers (sizes, volumes) are themselves, without a division.
	// One or two places (prices in cents: the usual words) take one
	// candidate: f times 100, rounded, when its quotient by 100 reads back
	// as f, is the decimal of f with two places, and a trailing zero drops
	// a place (two cannot: f would be whole).
	if f > 0 && f < decimalMax {
		if math.Trunc(f) == f {
			return uint64(f), 0, true
		}
		if x := math.RoundToEven(f * 100); x/100 == f {
			if m = uint64(x); m%10 == 0 {
				return m / 10, 1, true
			}
			return m, 2, true
		}
	}
	return decimalOfSlow(f)
}

// decimalOfSlow is decimalOf for the floats that are no decimal of up to
// two places: more places, whole numbers above decimalMax, or none.
func decimalOfSlow(f float64) (m, e uint64, ok bool) {
	if !(f > 0 && f < 0x1p53) {
		return 0, 0, false
	}
	if f >= decimalMax {
		if math.Trunc(f) == f {
			return uint64(f), 0, true
		}
		return 0, 0, false
	}
	// Then 4 and 8 places: each candidate that reads back is a decimal of
	// that many places (and of more than two), and rounding f times the
	// scale finds it when there is one (below decimalMax).
	if x := math.RoundToEven(f * 1e4); x/1e4 == f {
		if m = uint64(x); m%10 == 0 {
			return m / 10, 3, true
		}
		return m, 4, true
	}
	if x := math.RoundToEven(f * 1e8); x/1e8 == f {
		m, e = uint64(x), 8
		if m%100 == 0 {
			m, e = m/100, 6
		}
		if m%10 == 0 {
			m, e = m/10, e-1
		}
		return m, e, true
	}
	return 0, 0, false
}

// putDecimal writes w, a float word that is not zero, at b[off:] as a
// decimal (or raw) and returns the offset after it.
func putDecimal(b *[batchEventMax]byte, off int, w uint64) int {
	if m, e, ok := decimalOf(math.Float64frombits(w)); ok {
		d := m<<4 | e
		if d-1<<14 < 1<<21-1<<14 { // 3 bytes (a price in cents from 10.24 to 1310.71): without binary.PutUvarint's loop
			b[off], b[off+1], b[off+2] = byte(d)|0x80, byte(d>>7)|0x80, byte(d>>14)
			return off + 3
		}
		return off + putUvarint(b[off:], d)
	}
	b[off] = decimalRaw
	binary.LittleEndian.PutUint64(b[off+1:], w)
	return off + 9
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
	v1       bool // a version 1 batch
	prev     batchPrev
}

// Reset starts reading payload. It returns ErrBadBatch for a bad header.
func (b *EventBatch) Reset(payload []byte) error {
	*b = EventBatch{}
	if len(payload) < batchHeader || (payload[0] != batchVersion && payload[0] != batchVersionV1) || payload[1] != 0 {
		return ErrBadBatch
	}
	b.p, b.off, b.v1 = payload, batchHeader, payload[0] == batchVersionV1
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
	n, err := decodeBatchEvent(b.p[b.off:], &b.prev, ev, b.v1)
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

func decodeBatchEvent(b []byte, prev *batchPrev, ev *codec.Event, v1 bool) (int, error) {
	if len(b) < 5 {
		return 0, ErrBadBatch
	}
	mask := binary.LittleEndian.Uint16(b)
	kind, status := codec.Kind(b[2]), codec.Status(b[3])
	offsetID := mask>>15 != 0
	if (offsetID && (v1 || mask&(1<<3) != 0)) || !codec.ValidKindStatus(kind, status) {
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
	if offsetID {
		words[3] = prev.offsetID(words[2])
	}
	for i := len(deltas); i < len(words); i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		if !v1 && i >= firstDecimalWord {
			n, err := decodeWord(b[off:], &words[i], i == firstDecimalWord+decimalWords)
			if err != nil {
				return 0, err
			}
			off += n
			continue
		}
		if len(b)-off < 8 {
			return 0, ErrBadBatch
		}
		if words[i] = binary.LittleEndian.Uint64(b[off:]); words[i] == 0 {
			return 0, ErrBadBatch
		}
		if i == 3 && !v1 && words[i] == prev.offsetID(words[2]) {
			return 0, ErrBadBatch // an offset's id is never stored
		}
		off += 8
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

// decodeWord decodes a version 2 word at b into w: Aux (aux) as a uvarint,
// a float as a decimal or raw; only the canonical encoding of a non-zero
// word is accepted.
func decodeWord(b []byte, w *uint64, aux bool) (int, error) {
	d, n := uvarint(b)
	if n <= 0 {
		return 0, ErrBadBatch
	}
	if aux {
		if d == 0 {
			return 0, ErrBadBatch
		}
		*w = d
		return n, nil
	}
	if d == decimalRaw {
		if len(b)-n < 8 {
			return 0, ErrBadBatch
		}
		*w = binary.LittleEndian.Uint64(b[n:])
		if _, _, ok := decimalOf(math.Float64frombits(*w)); ok || *w == 0 {
			return 0, ErrBadBatch // a decimal is never stored raw
		}
		return n + 8, nil
	}
	m, e := d>>4, d&15
	if e > decimalMaxExp || m == 0 || m >= 1<<53 {
		return 0, ErrBadBatch
	}
	f := float64(m) / pow10[e]
	if !shortCanonical(m, e, f) {
		if m2, e2, ok := decimalOf(f); !ok || m2 != m || e2 != e {
			return 0, ErrBadBatch // not the shortest decimal of its float
		}
	}
	*w = math.Float64bits(f)
	return n, nil
}

// shortCanonical reports, without decimalOf, that the decimal m/10^e
// (0 < m < 2^53, e <= 8), whose float is f, is the one decimalOf gives f
// in the usual cases: a whole number, or one or two places without a
// trailing zero below decimalMax (f times 100 is then within a quarter of
// the integer m*10^(2-e), which decimalOf's first candidate finds). False
// says nothing: decodeWord asks decimalOf. A version 2 batch of trades and
// quotes in cents decodes in 34 ns an event instead of 38
// (BenchmarkDecodeEventBatch; version 1: 24).
func shortCanonical(m, e uint64, f float64) bool {
	return e == 0 || e <= 2 && m%10 != 0 && f < decimalMax
}
