package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"qstream/codec"
)

// ErrSequenceState is wrapped by every error of the sequence detector's
// LoadState.
var ErrSequenceState = errors.New("ops: bad sequence state")

// Sequence state encoding, version 1, little-endian, floats as IEEE-754
// bits (a restore is bit-exact):
//
//	magic     [4]byte "QSEQ"
//	version   u16 (1), reserved u16 (0)
//	config    u64, codec.HashID of the sequence patterns and their Ops
//	nslots    u32, slots that follow (up to the last one with state)
//	stats     6 × u64: late, dropped, expired, broken, cancelled, skipped
//	slots     nslots × {
//	            init u8, seen u8, 6 zero bytes, lastTs i64, symbol u32, nruns u32, nvals u32, 4 zero bytes,
//	            vals nvals × u64,
//	            runs nruns × { seen u64, nparts u32, 4 zero bytes,
//	                           parts nparts × { n0 u64, nl u64, key u64, k u8, confirmed u8, 6 zero bytes,
//	                                            k × { ts i64, price u64 } } } }
//	indicator u64 length + IndicatorSet.AppendState when conditions use indicators
//	crc       u32, CRC-32C of every byte above
//
// A slot's patterns are worked out again from its symbol on load; the
// deadlines the watermark waits for are recomputed from the partial matches.
const (
	seqStateMagic   = "QSEQ"
	seqStateVersion = 1
)

func (sq *seqSet) configHash() uint64 {
	var b []byte
	for _, pat := range sq.pats {
		b = fmt.Appendf(b, "%d:%+v|", pat.op, sq.specs[pat.op])
	}
	return codec.HashID(b)
}

// AppendState appends the detector's state.
func (sq *seqSet) AppendState(dst []byte) []byte {
	start := len(dst)
	le := binary.LittleEndian
	n := 0
	for i := range sq.slots {
		if sq.slots[i].init {
			n = i + 1
		}
	}
	dst = append(dst, seqStateMagic...)
	dst = le.AppendUint16(dst, seqStateVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, sq.configHash())
	dst = le.AppendUint32(dst, uint32(n))
	s := &sq.stats
	for _, v := range []uint64{s.Late, s.Dropped, s.Expired, s.Broken, s.Cancelled, s.Skipped} {
		dst = le.AppendUint64(dst, v)
	}
	for i := range sq.slots[:n] {
		st := &sq.slots[i]
		var init, seen byte
		if st.init {
			init = 1
		}
		if st.seen {
			seen = 1
		}
		dst = append(dst, init, seen, 0, 0, 0, 0, 0, 0)
		dst = le.AppendUint64(dst, uint64(st.lastTs))
		dst = le.AppendUint32(dst, uint32(st.sym))
		dst = le.AppendUint32(dst, uint32(len(st.runs)))
		dst = le.AppendUint32(dst, uint32(len(st.vals)))
		dst = le.AppendUint32(dst, 0)
		for _, v := range st.vals {
			dst = le.AppendUint64(dst, math.Float64bits(v))
		}
		for r := range st.runs {
			run := &st.runs[r]
			dst = le.AppendUint64(dst, run.seen)
			dst = le.AppendUint32(dst, uint32(len(run.parts)))
			dst = le.AppendUint32(dst, 0)
			for k := range run.parts {
				pt := &run.parts[k]
				dst = le.AppendUint64(dst, pt.n0)
				dst = le.AppendUint64(dst, pt.nl)
				dst = le.AppendUint64(dst, pt.key)
				var conf byte
				if pt.confirmed {
					conf = 1
				}
				dst = append(dst, pt.k, conf, 0, 0, 0, 0, 0, 0)
				for j := 0; j < int(pt.k); j++ {
					dst = le.AppendUint64(dst, uint64(pt.ts[j]))
					dst = le.AppendUint64(dst, math.Float64bits(pt.px[j]))
				}
			}
		}
	}
	if sq.ind != nil {
		at := len(dst)
		dst = le.AppendUint64(dst, 0)
		dst = sq.ind.AppendState(dst)
		le.PutUint64(dst[at:], uint64(len(dst)-at-8))
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], pipeCRCTable))
}

// LoadState replaces the detector's state with a snapshot of AppendState,
// checked completely first: on error the detector is unchanged.
func (sq *seqSet) LoadState(src []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrSequenceState, fmt.Sprintf(format, a...))
	}
	if len(src) < 24 || string(src[:4]) != seqStateMagic {
		return bad("not a sequence snapshot")
	}
	le := binary.LittleEndian
	body := src[:len(src)-4]
	if crc32.Checksum(body, pipeCRCTable) != le.Uint32(src[len(body):]) {
		return bad("checksum mismatch")
	}
	r := &patReader{b: body[4:]}
	if v := le.Uint16(r.take(2)); v != seqStateVersion {
		return bad("version %d, this build reads %d", v, seqStateVersion)
	}
	r.take(2)
	if h := r.u64(); h != sq.configHash() {
		return bad("taken with other sequence patterns")
	}
	n := int(r.u32())
	if n > len(sq.slots) {
		return bad("%d slots, the pipeline holds %d", n, len(sq.slots))
	}
	var stats SequenceStats
	for _, p := range []*uint64{&stats.Late, &stats.Dropped, &stats.Expired, &stats.Broken, &stats.Cancelled, &stats.Skipped} {
		*p = r.u64()
	}
	slots := make([]seqSlot, n)
	next := int64(math.MaxInt64)
	for i := range slots {
		flags := r.take(8)
		lastTs := int64(r.u64())
		sym := codec.Symbol(r.u32())
		nruns, nvals := int(r.u32()), int(r.u32())
		r.take(4)
		if flags[0] == 0 {
			if flags[1] != 0 || nruns != 0 || nvals != 0 {
				return bad("slot %d: state without patterns", i)
			}
			continue
		}
		st := &slots[i]
		sq.initSlot(st, sym)
		st.seen, st.lastTs = flags[1] == 1, lastTs
		if nruns != len(st.runs) || nvals != len(st.vals) {
			return bad("slot %d: %d patterns and %d indicators, its symbol has %d and %d", i, nruns, nvals, len(st.runs), len(st.vals))
		}
		for j := range st.vals {
			st.vals[j] = r.f64()
		}
		for k := range st.runs {
			pat := &sq.pats[st.apply[k]]
			run := &st.runs[k]
			run.seen = r.u64()
			np := int(r.u32())
			r.take(4)
			if np > pat.maxPart || np*40 > len(r.b) {
				return bad("slot %d pattern %d: %d partial matches, at most %d", i, pat.op, np, pat.maxPart)
			}
			if np > 0 {
				run.parts = make([]seqPart, np)
			}
			for q := range run.parts {
				pt := &run.parts[q]
				pt.n0, pt.nl, pt.key = r.u64(), r.u64(), r.u64()
				f := r.take(8)
				pt.k, pt.confirmed = f[0], f[1] == 1
				if pt.k < 1 || int(pt.k) > pat.npos || pt.n0 > pt.nl || pt.nl > run.seen || (pt.confirmed && !(pat.strict && int(pt.k) == pat.npos)) {
					return bad("slot %d pattern %d: partial match %d is inconsistent", i, pat.op, q)
				}
				prev := int64(math.MinInt64)
				for j := 0; j < int(pt.k); j++ {
					pt.ts[j], pt.px[j] = int64(r.u64()), r.f64()
					if pt.ts[j] < prev || pt.ts[j] > lastTs {
						return bad("slot %d pattern %d: partial match %d out of event-time order", i, pat.op, q)
					}
					prev = pt.ts[j]
				}
				if pat.absent && int(pt.k) == pat.npos {
					st.due = min(st.due, seqDeadline(pt.ts[0], pat.within))
				}
			}
		}
		next = min(next, st.due)
		if r.err != nil {
			return bad("slot %d: %v", i, r.err)
		}
	}
	indState, err := r.finish(sq.ind != nil)
	if err != nil {
		return bad("%v", err)
	}
	if sq.ind != nil {
		if err := sq.ind.LoadState(indState); err != nil {
			return fmt.Errorf("%w: %w", ErrSequenceState, err)
		}
	}
	clear(sq.slots)
	copy(sq.slots, slots)
	sq.stats = stats
	sq.nextDue = next
	return nil
}
