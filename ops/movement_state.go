package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"qstream/codec"
)

// ErrMovementState is wrapped by every error of the movement operator's
// LoadState.
var ErrMovementState = errors.New("ops: bad movement state")

// Movement state encoding, version 1, little-endian, floats as IEEE-754
// bits (a restore is bit-exact):
//
//	magic     [4]byte "QMOV"
//	version   u16 (1), reserved u16 (0)
//	config    u64, codec.HashID of the specs, the ring capacity bound and MaxStateBytes
//	nspecs    u32, nslots u32 (slots that follow)
//	stats     events u64, late u64, invalid u64, thinned u64
//	slots     nslots × { seen u8, 7 zero bytes, lastTs i64,
//	            rings nspecs × { dir i8, 3 zero bytes, n u32, capacity u32, 4 zero bytes,
//	                             ents n × { ts i64, price u64 } (front first) } }
//	crc       u32, CRC-32C of every byte above
//
// It is the last operator state of a pipeline snapshot (pipeline_state.go);
// a snapshot taken before movements existed has none, and a pipeline with
// movements loads it with empty movement state. A ring is rebuilt with its
// capacity (0, or a power of two from movRingInit to the bound), which
// decides when it grows or thins.
const (
	movStateMagic   = "QMOV"
	movStateVersion = 1
)

func (m *movementSet) configHash() uint64 {
	return codec.HashID(fmt.Appendf(nil, "%+v|%d|%d", m.specs, m.capN, m.budget))
}

// AppendState appends the operator's state for the slots it used.
func (m *movementSet) AppendState(dst []byte) []byte {
	start := len(dst)
	le := binary.LittleEndian
	dst = append(dst, movStateMagic...)
	dst = le.AppendUint16(dst, movStateVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, m.configHash())
	dst = le.AppendUint32(dst, uint32(len(m.specs)))
	dst = le.AppendUint32(dst, uint32(m.used))
	for _, v := range []uint64{m.stats.Events, m.stats.Late, m.stats.Invalid, m.stats.Thinned} {
		dst = le.AppendUint64(dst, v)
	}
	ns := len(m.specs)
	for slot := 0; slot < m.used; slot++ {
		var seen byte
		if m.seen[slot] {
			seen = 1
		}
		dst = append(dst, seen, 0, 0, 0, 0, 0, 0, 0)
		dst = le.AppendUint64(dst, uint64(m.lastTs[slot]))
		for i := range m.rings[slot*ns : (slot+1)*ns] {
			r := &m.rings[slot*ns+i]
			dst = append(dst, byte(r.dir), 0, 0, 0)
			dst = le.AppendUint32(dst, r.n)
			dst = le.AppendUint32(dst, uint32(len(r.ents)))
			dst = le.AppendUint32(dst, 0)
			for k := uint32(0); k < r.n; k++ {
				e := r.ents[(r.head+k)&uint32(len(r.ents)-1)]
				dst = le.AppendUint64(dst, uint64(e.ts))
				dst = le.AppendUint64(dst, math.Float64bits(e.price))
			}
		}
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], pipeCRCTable))
}

// LoadState replaces the operator's state with a snapshot of AppendState,
// checked completely first: on error the operator is unchanged.
func (m *movementSet) LoadState(src []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrMovementState, fmt.Sprintf(format, a...))
	}
	if len(src) < 60 || string(src[:4]) != movStateMagic {
		return bad("not a movement snapshot")
	}
	le := binary.LittleEndian
	body := src[:len(src)-4]
	if crc32.Checksum(body, pipeCRCTable) != le.Uint32(src[len(body):]) {
		return bad("checksum mismatch")
	}
	r := &patReader{b: body[4:]}
	if v := le.Uint16(r.take(2)); v != movStateVersion {
		return bad("version %d, this build reads %d", v, movStateVersion)
	}
	if le.Uint16(r.take(2)) != 0 {
		return bad("non-zero reserved bytes")
	}
	if r.u64() != m.configHash() {
		return bad("taken with other movement specs or limits")
	}
	ns, used := int(r.u32()), int(r.u32())
	if ns != len(m.specs) || used > len(m.seen) {
		return bad("%d specs and %d slots, this operator has %d and at most %d", ns, used, len(m.specs), len(m.seen))
	}
	var stats MovementStats
	for _, p := range []*uint64{&stats.Events, &stats.Late, &stats.Invalid, &stats.Thinned} {
		*p = r.u64()
	}
	seen := make([]bool, used)
	lastTs := make([]int64, used)
	rings := make([]movRing, used*ns)
	var bytes int64
	for slot := 0; slot < used; slot++ {
		f := r.take(8)
		seen[slot] = f[0] == 1
		if f[0] > 1 || string(f[1:]) != "\x00\x00\x00\x00\x00\x00\x00" {
			return bad("slot %d: bad flags", slot)
		}
		lastTs[slot] = int64(r.u64())
		for i := 0; i < ns; i++ {
			rg := &rings[slot*ns+i]
			h := r.take(4)
			rg.dir = int8(h[0])
			n, c := int(r.u32()), int(r.u32())
			if rg.dir < -1 || rg.dir > 1 || h[1] != 0 || h[2] != 0 || h[3] != 0 || r.u32() != 0 {
				return bad("slot %d spec %d: bad hysteresis state", slot, i)
			}
			if n > c || c > m.capN || (c != 0 && (c < movRingInit || c&(c-1) != 0)) || n*16 > len(r.b) || (c > 0 && !seen[slot]) {
				return bad("slot %d spec %d: %d trades in a ring of %d, at most %d", slot, i, n, c, m.capN)
			}
			if c == 0 {
				continue
			}
			bytes += 16 * int64(c-movRingInit)
			if bytes > m.budget {
				return bad("slot %d spec %d: the rings exceed %d bytes", slot, i, m.budget)
			}
			rg.ents = make([]movEnt, c)
			rg.n = uint32(n)
			prev := int64(math.MinInt64)
			for k := 0; k < n; k++ {
				e := movEnt{int64(r.u64()), r.f64()}
				if e.ts < prev || e.ts > lastTs[slot] || !(e.price > 0 && e.price <= math.MaxFloat64) {
					return bad("slot %d spec %d: trade %d out of order or not a price", slot, i, k)
				}
				prev = e.ts
				rg.ents[k] = e
			}
		}
		if r.err != nil {
			return bad("slot %d: %v", slot, r.err)
		}
	}
	if _, err := r.finish(false); err != nil {
		return bad("%v", err)
	}
	m.reset()
	copy(m.seen, seen)
	copy(m.lastTs, lastTs)
	copy(m.rings, rings)
	m.used, m.stats, m.bytes = used, stats, bytes
	return nil
}

// reset empties the operator (a pipeline snapshot without movement state).
func (m *movementSet) reset() {
	clear(m.seen)
	clear(m.lastTs)
	clear(m.rings)
	m.used, m.stats, m.bytes = 0, MovementStats{}, 0
}
