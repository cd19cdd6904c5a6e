package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"qstream/codec"
)

// ErrPipelineState is wrapped by every Pipeline.LoadState error.
var ErrPipelineState = errors.New("ops: bad pipeline state")

// Pipeline state encoding, version 1, little-endian; floats as IEEE-754 bits
// so a restore is bit-exact:
//
//	magic     [4]byte "QPIP"
//	version   u16 (1)
//	reserved  u16 (0)
//	maxSymbol u32  (PipelineConfig.MaxSymbolID)
//	maxSlots  u32  (PipelineConfig.MaxSlots after defaults)
//	nslots    u32  slots in use
//	nsubs     u32  operator sub-states that follow: the indicator set if configured, then each window operator, then the pattern detector if configured, then the sequence detector if configured, then the movement operator if configured (last: a snapshot taken before movements existed lacks it and loads with empty movement state)
//	syms      nslots × u32, the symbol of each slot in slot order
//	quotes    nslots × { bid u64, ask u64, ts i64 }
//	subs      nsubs × { length u64, bytes }: IndicatorSet.AppendState, WindowOperator.AppendState...
//	crc       u32, CRC-32C (Castagnoli) of every byte above
//
// Only the slots in use are written for the pipeline's own arrays; operator
// sub-states carry their own versions and checksums. The symbol → slot index
// is derived from syms on load.
const (
	pipeStateMagic   = "QPIP"
	pipeStateVersion = 1
	pipeStateHeader  = 24
)

var pipeCRCTable = crc32.MakeTable(crc32.Castagnoli)

// AppendState appends a snapshot of the pipeline's whole state (slots, quote
// state and every operator's state) to dst, for checkpoints. It allocates
// only when dst lacks the capacity.
func (p *Pipeline) AppendState(dst []byte) []byte {
	start := len(dst)
	le := binary.LittleEndian
	dst = append(dst, pipeStateMagic...)
	dst = le.AppendUint16(dst, pipeStateVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint32(dst, uint32(p.cfg.MaxSymbolID))
	dst = le.AppendUint32(dst, uint32(p.cfg.MaxSlots))
	dst = le.AppendUint32(dst, uint32(p.nslots))
	subs := p.subStates()
	dst = le.AppendUint32(dst, uint32(len(subs)))
	for _, s := range p.syms[:p.nslots] {
		dst = le.AppendUint32(dst, uint32(s))
	}
	for _, q := range p.quotes[:p.nslots] {
		dst = le.AppendUint64(dst, math.Float64bits(q.bid))
		dst = le.AppendUint64(dst, math.Float64bits(q.ask))
		dst = le.AppendUint64(dst, uint64(q.tsNs))
	}
	for _, sub := range subs {
		at := len(dst)
		dst = le.AppendUint64(dst, 0)
		dst = sub.AppendState(dst)
		le.PutUint64(dst[at:], uint64(len(dst)-at-8))
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], pipeCRCTable))
}

// LoadState replaces the pipeline's state with a snapshot made by
// AppendState (all of src) of a pipeline built with the same configuration.
// Everything is checked - checksum, configuration, slot table, and each
// operator's own snapshot - before anything changes: on error p is
// unchanged. Errors wrap ErrPipelineState (and the operator's own error).
func (p *Pipeline) LoadState(src []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrPipelineState, fmt.Sprintf(format, a...))
	}
	le := binary.LittleEndian
	if len(src) < pipeStateHeader+4 {
		return bad("%d bytes, shorter than a header", len(src))
	}
	if string(src[:4]) != pipeStateMagic {
		return bad("not a pipeline snapshot")
	}
	if v := le.Uint16(src[4:]); v != pipeStateVersion {
		return bad("version %d, this build reads %d", v, pipeStateVersion)
	}
	body := src[:len(src)-4]
	if got, want := crc32.Checksum(body, pipeCRCTable), le.Uint32(src[len(body):]); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	if le.Uint16(src[6:]) != 0 {
		return bad("non-zero reserved bytes")
	}
	maxSym, maxSlots := int(le.Uint32(src[8:])), int(le.Uint32(src[12:]))
	if maxSym != p.cfg.MaxSymbolID || maxSlots != p.cfg.MaxSlots {
		return bad("taken with %d symbols and %d slots, this pipeline has %d and %d", maxSym, maxSlots, p.cfg.MaxSymbolID, p.cfg.MaxSlots)
	}
	nslots, nsubs := int(le.Uint32(src[16:])), int(le.Uint32(src[20:]))
	subs := p.subStates()
	noMov := p.mov != nil && nsubs == len(subs)-1 // taken before movements: they restart empty
	if noMov {
		subs = subs[:nsubs]
	}
	if nsubs != len(subs) {
		if patRuntimeInState(body, nslots, nsubs) { // pattern_api.go
			return fmt.Errorf("%w: %w", ErrPipelineState, ErrRuntimePatternState)
		}
		return bad("%d operator states, this pipeline has %d", nsubs, len(subs))
	}
	if nslots > p.cfg.MaxSlots || len(body)-pipeStateHeader < nslots*(4+24) {
		return bad("%d slots in use, at most %d fit", nslots, p.cfg.MaxSlots)
	}
	off := pipeStateHeader
	syms := body[off : off+4*nslots]
	off += 4 * nslots
	quotes := body[off : off+24*nslots]
	off += 24 * nslots
	seen := make(map[codec.Symbol]bool, nslots)
	for i := 0; i < nslots; i++ {
		s := codec.Symbol(le.Uint32(syms[4*i:]))
		if s == 0 || int(s) > p.cfg.MaxSymbolID || seen[s] {
			return bad("slot %d holds symbol %d: zero, out of range or repeated", i, s)
		}
		seen[s] = true
	}
	states := make([][]byte, len(subs))
	for i := range subs {
		if len(body)-off < 8 {
			return bad("operator state %d truncated", i)
		}
		n := le.Uint64(body[off:])
		off += 8
		if n > uint64(len(body)-off) {
			return bad("operator state %d of %d bytes, %d remain", i, n, len(body)-off)
		}
		states[i] = body[off : off+int(n)]
		off += int(n)
	}
	if off != len(body) {
		return bad("%d trailing bytes", len(body)-off)
	}
	// Each operator checks its snapshot completely before changing. When a
	// later one refuses, the earlier ones are put back from a copy of their
	// state taken first, so that a failed LoadState leaves p unchanged.
	if p.pat != nil {
		// The pattern state is per slot of the snapshot: its plans follow
		// from the snapshot's symbols.
		p.pat.loadSyms = make([]codec.Symbol, nslots)
		for i := range p.pat.loadSyms {
			p.pat.loadSyms[i] = codec.Symbol(le.Uint32(syms[4*i:]))
		}
		defer func() { p.pat.loadSyms = nil }()
	}
	if p.rt != nil {
		// The run-time patterns' detectors too (pattern_api.go); a
		// sequence set's slots must hold the snapshot's.
		loadSyms := make([]codec.Symbol, nslots)
		for i := range loadSyms {
			loadSyms[i] = codec.Symbol(le.Uint32(syms[4*i:]))
		}
		for _, a := range p.rt.added {
			if a.pat != nil {
				a.pat.loadSyms = loadSyms
				if nslots > len(a.pat.slots) {
					a.pat.growSlots(nslots - 1)
				}
			} else if nslots > 0 {
				p.growSeqSlots(a.seq, nslots-1)
			}
		}
		defer func() {
			for _, a := range p.rt.added {
				if a.pat != nil {
					a.pat.loadSyms = nil
				}
			}
		}()
	}
	var backup [][]byte
	if len(subs) > 1 {
		backup = make([][]byte, len(subs))
		for i, sub := range subs {
			backup[i] = sub.AppendState(nil)
		}
	}
	for i, sub := range subs {
		if err := sub.LoadState(states[i]); err != nil {
			for j := 0; j < i; j++ {
				if rerr := subs[j].LoadState(backup[j]); rerr != nil {
					panic(fmt.Sprintf("ops: restoring operator %d's own snapshot failed: %v", j, rerr)) // a bug
				}
			}
			if p.nimp != nil {
				p.nimp.rebuildSlots(p)
			}
			return fmt.Errorf("%w: operator state %d: %w", ErrPipelineState, i, err)
		}
	}
	if p.nimp != nil {
		defer p.nimp.rebuildSlots(p)
	}
	if noMov {
		p.mov.reset()
	}
	for i := range p.slotOf {
		p.slotOf[i] = -1
	}
	clear(p.syms)
	clear(p.quotes)
	for i := 0; i < nslots; i++ {
		s := codec.Symbol(le.Uint32(syms[4*i:]))
		p.syms[i] = s
		p.slotOf[s] = int32(i)
		q := quotes[24*i:]
		p.quotes[i] = quoteState{
			bid:  math.Float64frombits(le.Uint64(q)),
			ask:  math.Float64frombits(le.Uint64(q[8:])),
			tsNs: int64(le.Uint64(q[16:])),
		}
	}
	p.nslots = nslots
	return nil
}

// stateful is an operator whose state a checkpoint carries.
type stateful interface {
	AppendState(dst []byte) []byte
	LoadState(src []byte) error
}

// subStates lists the pipeline's operators in snapshot order: the indicator
// set, then the window operators in spec order, then the pattern detector,
// the sequence detector, the news_impact detector, the movement operator
// and the record of run-time pattern changes (which refuses to load).
func (p *Pipeline) subStates() []stateful {
	subs := p.subsBuf[:0] // reused: snapshots allocate nothing once it has grown
	if p.ind != nil {
		subs = append(subs, p.ind)
	}
	for _, w := range p.windows {
		subs = append(subs, w)
	}
	if p.pat != nil {
		subs = append(subs, p.pat)
	}
	if p.seq != nil {
		subs = append(subs, p.seq)
	}
	if p.nimp != nil {
		subs = append(subs, p.nimp)
	}
	if p.mov != nil {
		subs = append(subs, p.mov) // last: older snapshots without it still load (LoadState)
	}
	if p.rt != nil {
		subs = append(subs, p.rt) // a record that refuses to load (pattern_api.go)
	}
	p.subsBuf = subs
	return subs
}
