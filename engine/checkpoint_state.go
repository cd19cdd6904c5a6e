package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"qstream/codec"
)

// ErrCheckpointState is wrapped by every error about the engine's own
// sections of a checkpoint: damaged, of an unknown version, or taken with a
// configuration this engine cannot load (another number of shards).
var ErrCheckpointState = errors.New("engine: bad checkpoint state")

var stateCRC = crc32.MakeTable(crc32.Castagnoli)

// Checkpoint section names.
const (
	sectionEngine = "engine"
	sectionOutput = "sink/output"
)

func shardSection(i int) string { return fmt.Sprintf("shard/%03d", i) }

// sourceState is what a checkpoint records about one publisher.
type sourceState struct {
	id       int    // publisher id in the process that wrote the checkpoint (frames carry it)
	name     string // the source's name: what a restarted feed resumes by
	closed   bool
	lsn      uint64 // every record of this publisher with an LSN <= lsn is in the state
	offset   uint64 // the largest Seq it published: the source offset to resume after
	maxTsNs  int64  // its watermark state, restored into the publisher of the same name
	sentWmNs int64
	// holds: at the cut the shards held this publisher's sentWmNs as its
	// watermark (it had sent one and was neither idle nor closed); recovery
	// holds it again before it replays the WAL after the cut.
	holds bool
	// offsetIDs: its message ids are its offsets (PublisherOptions), for
	// the recovery publisher of its name.
	offsetIDs bool
}

// engineState is the "engine" section: the publishers at the cut and the
// symbol table.
type engineState struct {
	// version is the section's format version as decoded (0: not
	// decoded; appendEngineState then writes the lowest that holds it).
	version uint16
	shards  int
	sources []sourceState
	symbols []string // names of ids 1..len
}

// Engine section, version 2, little-endian:
//
//	magic "QENG" | version u16 (2) | reserved u16 | shards u32 | nsources u32 | nsymbols u32 | reserved u32
//	nsources × { id u16 | flags u16 (bit 0: closed, bit 1: holds, bit 2: offset ids) | nameLen u16 | reserved u16 |
//	             lsn u64 | offset u64 | maxTs i64 | sentWm i64 | name }
//	nsymbols × { len u8 | name }
//	crc u32: CRC-32C of every byte above
//
// Version 1 is the same without flag bit 2 (no source declared offset
// ids then); it still loads, and a section without the flag is written as
// version 1, which builds from before version 2 read.
const (
	engStateMagic   = "QENG"
	engStateVersion = 2
	engStateHeader  = 24
	engSourceHeader = 40
)

// engSourceFlagsMax is the largest source flags word of each version.
var engSourceFlagsMax = [engStateVersion + 1]uint16{1: 3, 2: 7}

func appendEngineState(dst []byte, st *engineState) []byte {
	start := len(dst)
	le := binary.LittleEndian
	version := max(st.version, 1)
	for _, s := range st.sources {
		if s.offsetIDs {
			version = max(version, 2)
		}
	}
	dst = append(dst, engStateMagic...)
	dst = le.AppendUint16(dst, version)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint32(dst, uint32(st.shards))
	dst = le.AppendUint32(dst, uint32(len(st.sources)))
	dst = le.AppendUint32(dst, uint32(len(st.symbols)))
	dst = le.AppendUint32(dst, 0)
	for _, s := range st.sources {
		name := s.name
		if len(name) > maxSourceName {
			name = name[:maxSourceName]
		}
		var flags uint16
		if s.closed {
			flags |= 1
		}
		if s.holds {
			flags |= 2
		}
		if s.offsetIDs {
			flags |= 4
		}
		dst = le.AppendUint16(dst, uint16(s.id))
		dst = le.AppendUint16(dst, flags)
		dst = le.AppendUint16(dst, uint16(len(name)))
		dst = le.AppendUint16(dst, 0)
		dst = le.AppendUint64(dst, s.lsn)
		dst = le.AppendUint64(dst, s.offset)
		dst = le.AppendUint64(dst, uint64(s.maxTsNs))
		dst = le.AppendUint64(dst, uint64(s.sentWmNs))
		dst = append(dst, name...)
	}
	for _, n := range st.symbols {
		dst = append(dst, byte(len(n)))
		dst = append(dst, n...)
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], stateCRC))
}

func stateErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCheckpointState, fmt.Sprintf(format, a...))
}

// decodeEngineState decodes an engine section; it checks every bound before
// allocating, so damage costs at most the section's own size.
func decodeEngineState(src []byte) (*engineState, error) {
	le := binary.LittleEndian
	if len(src) < engStateHeader+4 {
		return nil, stateErr("engine section of %d bytes", len(src))
	}
	if string(src[:4]) != engStateMagic {
		return nil, stateErr("not an engine section")
	}
	v := le.Uint16(src[4:])
	if v < 1 || v > engStateVersion {
		return nil, stateErr("engine section version %d, this build reads 1 to %d", v, engStateVersion)
	}
	body := src[:len(src)-4]
	if crc32.Checksum(body, stateCRC) != le.Uint32(src[len(body):]) {
		return nil, stateErr("engine section checksum mismatch")
	}
	if le.Uint16(src[6:]) != 0 || le.Uint32(src[20:]) != 0 {
		return nil, stateErr("engine section reserved bytes")
	}
	shards, nsrc, nsym := le.Uint32(src[8:]), le.Uint32(src[12:]), le.Uint32(src[16:])
	if shards < 1 || shards > MaxShards || nsrc > MaxProducersMax || uint64(nsrc)*engSourceHeader+uint64(nsym)*2 > uint64(len(body)-engStateHeader) {
		return nil, stateErr("engine section counts out of range (%d shards, %d sources, %d symbols)", shards, nsrc, nsym)
	}
	st := &engineState{version: v, shards: int(shards), sources: make([]sourceState, 0, nsrc), symbols: make([]string, 0, nsym)}
	off := engStateHeader
	for i := uint32(0); i < nsrc; i++ {
		if len(body)-off < engSourceHeader {
			return nil, stateErr("source %d truncated", i)
		}
		h := body[off:]
		flags, nl := le.Uint16(h[2:]), int(le.Uint16(h[4:]))
		if flags > engSourceFlagsMax[v] || le.Uint16(h[6:]) != 0 || nl > maxSourceName || len(body)-off-engSourceHeader < nl {
			return nil, stateErr("source %d header", i)
		}
		st.sources = append(st.sources, sourceState{
			id:        int(le.Uint16(h)),
			closed:    flags&1 != 0,
			holds:     flags&2 != 0,
			offsetIDs: flags&4 != 0,
			lsn:       le.Uint64(h[8:]),
			offset:    le.Uint64(h[16:]),
			maxTsNs:   int64(le.Uint64(h[24:])),
			sentWmNs:  int64(le.Uint64(h[32:])),
			name:      string(h[engSourceHeader : engSourceHeader+nl]),
		})
		off += engSourceHeader + nl
	}
	for i := uint32(0); i < nsym; i++ {
		if off >= len(body) {
			return nil, stateErr("symbol %d truncated", i+1)
		}
		n := int(body[off])
		if n == 0 || n > codec.MaxSymbolLen || len(body)-off-1 < n {
			return nil, stateErr("symbol %d length %d", i+1, n)
		}
		st.symbols = append(st.symbols, string(body[off+1:off+1+n]))
		off += 1 + n
	}
	if off != len(body) {
		return nil, stateErr("%d trailing bytes in the engine section", len(body)-off)
	}
	return st, nil
}

// Shard section, version 1, little-endian:
//
//	magic "QSHD" | version u16 (1) | reserved u16 | shard u32 | shards u32 | watermark i64 |
//	dedupLen u32 | reserved u32 | dedup state | procLen u64 | processor state | crc u32
//
// The dedup state is the shard's dedupSet (count, horizon, keys oldest
// first; empty when dedup is off); the processor state is what its
// StatefulProcessor.AppendState wrote.
const (
	shardStateMagic   = "QSHD"
	shardStateVersion = 1
	shardStateHeader  = 32
)

// shardState is a decoded shard section; dedup and proc alias the input.
type shardState struct {
	shard, shards int
	wmNs          int64
	dedup, proc   []byte
}

func decodeShardState(src []byte) (shardState, error) {
	var st shardState
	le := binary.LittleEndian
	if len(src) < shardStateHeader+8+4 {
		return st, stateErr("shard section of %d bytes", len(src))
	}
	if string(src[:4]) != shardStateMagic {
		return st, stateErr("not a shard section")
	}
	if v := le.Uint16(src[4:]); v != shardStateVersion {
		return st, stateErr("shard section version %d, this build reads %d", v, shardStateVersion)
	}
	body := src[:len(src)-4]
	if crc32.Checksum(body, stateCRC) != le.Uint32(src[len(body):]) {
		return st, stateErr("shard section checksum mismatch")
	}
	if le.Uint16(src[6:]) != 0 || le.Uint32(src[28:]) != 0 {
		return st, stateErr("shard section reserved bytes")
	}
	st.shard, st.shards = int(le.Uint32(src[8:])), int(le.Uint32(src[12:]))
	st.wmNs = int64(le.Uint64(src[16:]))
	dl := uint64(le.Uint32(src[24:]))
	if st.shards < 1 || st.shards > MaxShards || st.shard >= st.shards || dl > uint64(len(body)-shardStateHeader-8) {
		return st, stateErr("shard section header out of range")
	}
	off := shardStateHeader
	st.dedup = body[off : off+int(dl)]
	off += int(dl)
	pl := le.Uint64(body[off:])
	off += 8
	if pl != uint64(len(body)-off) {
		return st, stateErr("processor state of %d bytes, %d remain", pl, len(body)-off)
	}
	st.proc = body[off:]
	return st, nil
}

// appendSnapshot appends the shard section of s: its first stream's state
// and its dedup set. Called on the shard's goroutine at a cut.
func (s *shard) appendSnapshot(dst []byte) []byte {
	return s.appendStreamSnapshot(dst, s.strs[0], true)
}

// appendStreamSnapshot appends a shard section holding ss's watermark and
// processor state, and the dedup set if withDedup (the first stream's
// section; the other streams' sections hold none: the set is the shard's).
func (s *shard) appendStreamSnapshot(dst []byte, ss *shardStream, withDedup bool) []byte {
	start := len(dst)
	le := binary.LittleEndian
	dst = append(dst, shardStateMagic...)
	dst = le.AppendUint16(dst, shardStateVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint32(dst, uint32(s.id))
	dst = le.AppendUint32(dst, uint32(len(s.e.shards)))
	dst = le.AppendUint64(dst, uint64(ss.wmNs))
	lenAt := len(dst)
	dst = le.AppendUint32(dst, 0)
	dst = le.AppendUint32(dst, 0)
	if s.dedup != nil && withDedup {
		dst = s.dedup.appendState(dst)
	}
	le.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-8))
	procAt := len(dst)
	dst = le.AppendUint64(dst, 0)
	if sp, ok := ss.proc.(StatefulProcessor); ok {
		dst = sp.AppendState(dst)
	}
	le.PutUint64(dst[procAt:], uint64(len(dst)-procAt-8))
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], stateCRC))
}

// restore loads a shard section into s. Precondition: the shard is not
// running. The dedup set and the processor each check their part before
// changing; an error leaves the engine to be discarded.
func (s *shard) restore(src []byte) error {
	return s.restoreStream(src, s.strs[0], true)
}

// restoreStream loads a section of appendStreamSnapshot into ss (and the
// dedup set if withDedup).
func (s *shard) restoreStream(src []byte, ss *shardStream, withDedup bool) error {
	st, err := decodeShardState(src)
	if err != nil {
		return err
	}
	if st.shard != s.id || st.shards != len(s.e.shards) {
		return stateErr("section of shard %d of %d loaded into shard %d of %d", st.shard, st.shards, s.id, len(s.e.shards))
	}
	sp, stateful := ss.proc.(StatefulProcessor)
	if !stateful && len(st.proc) > 0 {
		return stateErr("shard %d: the checkpoint holds processor state but the processor cannot load it", s.id)
	}
	switch {
	case !withDedup:
		if len(st.dedup) > 0 {
			return stateErr("shard %d: a stream's section holds a dedup set", s.id)
		}
	case s.dedup != nil && len(st.dedup) > 0:
		if err := s.dedup.loadState(st.dedup); err != nil {
			return err
		}
	case s.dedup != nil:
		s.dedup.reset()
	}
	if stateful {
		if err := sp.LoadState(st.proc); err != nil {
			return fmt.Errorf("engine: shard %d: %w", s.id, err)
		}
	}
	ss.wmNs = st.wmNs
	ss.wmPub.Store(st.wmNs)
	ss.wm.Restore(st.wmNs)
	return nil
}
