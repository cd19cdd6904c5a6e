package ops

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"qstream/codec"
)

// This file holds the patterns added and removed at run time (the engine's
// RegisterPattern and RemovePattern): Pipeline.AddPattern,
// Pipeline.RemovePattern and what OnEvent and OnWatermark do for them.
//
// # Semantics
//
// A pattern added at run time gets the next Op after every pattern the
// pipeline ever had (configured ones first), so Ops are never reused and
// output keys stay unique; the Ops of existing patterns do not change. It
// has a detector of its own whose per-symbol state starts empty: from its
// addition on, it produces exactly what a pipeline configured with that
// pattern alone (same options, same symbol names) would produce for the
// events and watermarks that follow, with its Op. A removed pattern stops
// matching at once; its Op is retired. A removed configured built-in pattern
// leaves the plans (its trailing sets and indicators, shared with others,
// stay up to date); the matches of a removed configured sequence pattern are
// dropped as they are produced.
//
// # Checkpoints
//
// A pipeline that had run-time changes writes, after its other operator
// states, a record of them followed by the added detectors' states. Only a
// pipeline with the same changes, made in the same order, loads it (the
// engine records the changes in its checkpoints and makes them again
// before loading: engine/defs.go); any other fails with
// ErrRuntimePatternState rather than restoring state under the wrong
// patterns.

// Errors of AddPattern and RemovePattern (invalid specs wrap ErrPatternSpec).
var (
	// ErrPatternIDTaken: an active pattern of the pipeline has the spec's id.
	ErrPatternIDTaken = errors.New("ops: pattern id already in use")
	// ErrNoPattern: no active pattern has the Op (never added, or removed).
	ErrNoPattern = errors.New("ops: no such active pattern")
	// ErrRuntimePatternState is wrapped by LoadState errors of snapshots
	// taken after patterns were added or removed at run time.
	ErrRuntimePatternState = errors.New("ops: the snapshot was taken after patterns were added or removed at run time, and this pipeline has not had the same changes")
)

// patRuntime is the pipeline's record of run-time pattern changes.
type patRuntime struct {
	specs    []PatternSpec // every Op: the configured patterns, then the added ones
	retired  []bool        // by Op
	nretired int
	added    []patAdded // the active added patterns, in Op order
}

// patAdded is the detector of one pattern added at run time: a built-in
// pattern set or a sequence set holding just it.
type patAdded struct {
	op  uint16
	pat *patternSet
	seq *seqSet
}

// Validate checks a spec built in Go with the rules ParsePatterns applies to
// a pattern file; errors wrap ErrPatternSpec.
func (s PatternSpec) Validate() error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("%w: pattern %q: %w", ErrPatternSpec, s.ID, err)
	}
	return nil
}

// PatternActive reports whether pattern op exists and was not removed.
func (p *Pipeline) PatternActive(op uint16) bool {
	if p.rt != nil {
		return int(op) < len(p.rt.specs) && !p.rt.retired[op]
	}
	return int(op) < len(p.cfg.Patterns)
}

func (p *Pipeline) runtime() *patRuntime {
	if p.rt == nil {
		p.rt = &patRuntime{specs: slices.Clone(p.cfg.Patterns), retired: make([]bool, len(p.cfg.Patterns))}
	}
	return p.rt
}

// AddPattern adds a built-in or sequence pattern at run time and returns its
// Op (see the file comment for its semantics). It allocates the pattern's
// detector: its per-symbol state for the symbols that appear, and for a
// technical pattern or a sequence with indicator conditions an IndicatorSet
// of MaxSlots symbols, as a configured pattern has. Call it from the
// goroutine that owns the pipeline. Its detector's state is in the
// pipeline's snapshots, which load only into a pipeline that had the same
// changes (see the file comment).
func (p *Pipeline) AddPattern(spec PatternSpec) (uint16, error) {
	if spec.Type == PatNewsImpact {
		return 0, fmt.Errorf("%w: pattern %q: news_impact patterns are configured at start (--patterns); adding one at run time is not supported", ErrPatternSpec, spec.ID)
	}
	if err := spec.Validate(); err != nil {
		return 0, err
	}
	if len(spec.Symbols) > 0 && p.cfg.SymbolNames == nil {
		return 0, fmt.Errorf("%w: pattern %q: symbols given but the pipeline has no SymbolNames", ErrPatternSpec, spec.ID)
	}
	specs := p.cfg.Patterns
	if p.rt != nil {
		specs = p.rt.specs
	}
	if len(specs) >= MaxPatterns {
		return 0, fmt.Errorf("%w: the pipeline had %d patterns, at most %d", ErrPatternSpec, len(specs), MaxPatterns)
	}
	for op, s := range specs {
		if s.ID == spec.ID && p.PatternActive(uint16(op)) {
			return 0, fmt.Errorf("%w: %q is pattern %d", ErrPatternIDTaken, spec.ID, op)
		}
	}
	op := uint16(len(specs))
	a := patAdded{op: op}
	if spec.Type == PatSequence {
		// The sequence set compiles the patterns of a list indexed by Op;
		// this one holds only the new pattern, at its Op.
		list := make([]PatternSpec, int(op)+1)
		list[op] = spec
		sq, err := newSeqSet(list, p.cfg.IndicatorOptions, p.cfg.SymbolNames, p.cfg.MaxSlots)
		if err != nil {
			return 0, err
		}
		sq.slots = nil // grown as symbols appear (growSeqSlots)
		a.seq = sq
	} else {
		ps, err := newPatternSetSlots([]PatternSpec{spec}, p.cfg.PatternOptions, p.cfg.IndicatorOptions, p.cfg.SymbolNames, p.cfg.MaxSlots, 0)
		if err != nil {
			return 0, err
		}
		ps.opOf = []uint16{op}
		a.pat = ps
	}
	rt := p.runtime()
	rt.specs = append(rt.specs, spec)
	rt.retired = append(rt.retired, false)
	rt.added = append(rt.added, a)
	return op, nil
}

// RemovePattern stops pattern op from matching; its Op is never reused.
// Call it from the goroutine that owns the pipeline.
func (p *Pipeline) RemovePattern(op uint16) error {
	if !p.PatternActive(op) {
		return fmt.Errorf("%w: %d", ErrNoPattern, op)
	}
	rt := p.runtime()
	rt.retired[op] = true
	rt.nretired++
	if i := slices.IndexFunc(rt.added, func(a patAdded) bool { return a.op == op }); i >= 0 {
		rt.added = slices.Delete(rt.added, i, i+1)
		return nil
	}
	if int(op) < len(p.cfg.Patterns) && p.cfg.Patterns[op].Type != PatSequence && p.pat != nil {
		i := int(op)
		if p.patOps != nil {
			i = slices.Index(p.patOps, op)
		}
		p.pat.retire(i)
	}
	return nil
}

// sequences reports whether a sequence pattern was added.
func (rt *patRuntime) sequences() bool {
	return slices.ContainsFunc(rt.added, func(a patAdded) bool { return a.seq != nil })
}

// growSeqSlots makes slot addressable in an added sequence set.
func (p *Pipeline) growSeqSlots(sq *seqSet, slot int) {
	if slot < len(sq.slots) {
		return
	}
	n := min(p.cfg.MaxSlots, max(64, 2*len(sq.slots), slot+1))
	slots := make([]seqSlot, n)
	copy(slots, sq.slots)
	sq.slots = slots
}

// onEventRuntime is OnEvent for a pipeline with run-time pattern changes:
// the configured operators, then the added patterns, and the matches of
// removed patterns dropped.
func (p *Pipeline) onEventRuntime(ev *codec.Event, watermarkNs int64, dst []Output) ([]Output, codec.Reason) {
	rt := p.rt
	first := len(dst)
	p.rt = nil
	dst, reason := p.onEvent(ev, watermarkNs, dst)
	p.rt = rt
	switch ev.Kind {
	case codec.KindTrade, codec.KindQuote, codec.KindBar:
	default:
		return dst, reason
	}
	slot, ok := p.Slot(ev.Symbol)
	if !ok && ev.Kind == codec.KindBar && reason == codec.ReasonNone && rt.sequences() {
		// Without configured sequence patterns OnEvent ignores bars before
		// giving the symbol a slot; a pipeline configured with the added
		// sequence would not.
		if slot, ok = p.slot(ev.Symbol); !ok {
			reason = codec.ReasonUnknownSymbol
		}
	}
	if !ok {
		return dst, reason
	}
	for i := range rt.added {
		a := &rt.added[i]
		switch {
		case a.pat != nil && ev.Kind == codec.KindTrade:
			dst = p.runPatterns(a.pat, slot, ev, dst)
		case a.seq != nil:
			p.growSeqSlots(a.seq, slot)
			saved := p.seq // the sequence detector's methods work on p.seq
			p.seq = a.seq
			dst = p.onSequences(slot, ev, dst)
			p.seq = saved
		}
	}
	return rt.dropRetired(dst, first), reason
}

// onWatermarkRuntime is OnWatermark with the added sequence patterns.
func (p *Pipeline) onWatermarkRuntime(watermarkNs int64, seq uint64, dst []Output) []Output {
	rt := p.rt
	first := len(dst)
	p.rt = nil
	dst = p.OnWatermark(watermarkNs, seq, dst)
	p.rt = rt
	for i := range rt.added {
		if sq := rt.added[i].seq; sq != nil && p.nslots > 0 {
			p.growSeqSlots(sq, p.nslots-1)
			saved := p.seq
			p.seq = sq
			dst = p.seqOnWatermark(watermarkNs, seq, dst)
			p.seq = saved
		}
	}
	return rt.dropRetired(dst, first)
}

// dropRetired removes the matches of removed patterns from dst[first:].
func (rt *patRuntime) dropRetired(dst []Output, first int) []Output {
	if rt.nretired == 0 {
		return dst
	}
	w := first
	for r := first; r < len(dst); r++ {
		if o := &dst[r]; o.Kind == OutPattern && int(o.Op) < len(rt.retired) && rt.retired[o.Op] {
			continue
		}
		if w != r {
			dst[w] = dst[r]
		}
		w++
	}
	return dst[:w]
}

// Run-time record encoding (a pipeline sub-state that never loads):
//
//	magic   [4]byte "QPRT"
//	version u16 (1), reserved u16 (0)
//	n       u32, then n × { op u16, removed u8, 0 u8, len u32, id bytes }:
//	        the Ops added or removed at run time
//	crc     u32, CRC-32C of every byte above
const patRuntimeMagic = "QPRT"

// AppendState appends the record of the run-time changes, then the state
// of each added pattern's detector (u64 length, its AppendState) in Op
// order.
func (rt *patRuntime) AppendState(dst []byte) []byte {
	start := len(dst)
	dst = rt.appendHeader(dst)
	le := binary.LittleEndian
	for _, a := range rt.added {
		at := len(dst)
		dst = le.AppendUint64(dst, 0)
		if a.pat != nil {
			dst = a.pat.AppendState(dst)
		} else {
			dst = a.seq.AppendState(dst)
		}
		le.PutUint64(dst[at:], uint64(len(dst)-at-8))
	}
	return le.AppendUint32(dst, crc32.Checksum(dst[start:], pipeCRCTable))
}

// appendHeader appends the list of the changes (the record without the
// detectors' states and the CRC).
func (rt *patRuntime) appendHeader(dst []byte) []byte {
	le := binary.LittleEndian
	dst = append(dst, patRuntimeMagic...)
	dst = le.AppendUint16(dst, 1)
	dst = le.AppendUint16(dst, 0)
	at := len(dst)
	dst = le.AppendUint32(dst, 0)
	n := 0
	for op := range rt.specs {
		added := slices.ContainsFunc(rt.added, func(a patAdded) bool { return a.op == uint16(op) })
		if !added && !rt.retired[op] {
			continue
		}
		var removed byte
		if rt.retired[op] {
			removed = 1
		}
		dst = le.AppendUint16(dst, uint16(op))
		dst = append(dst, removed, 0)
		dst = le.AppendUint32(dst, uint32(len(rt.specs[op].ID)))
		dst = append(dst, rt.specs[op].ID...)
		n++
	}
	le.PutUint32(dst[at:], uint32(n))
	return dst
}

// LoadState accepts only the record of the same run-time changes, which
// the engine makes again, in order, before it loads a checkpoint (see
// engine/defs.go), and then loads the added detectors' states; a pipeline
// without the changes refuses it (Pipeline.LoadState). Before it,
// Pipeline.LoadState gives the added pattern sets the snapshot's slots.
func (rt *patRuntime) LoadState(src []byte) error {
	le := binary.LittleEndian
	if len(src) < 4 || le.Uint32(src[len(src)-4:]) != crc32.Checksum(src[:len(src)-4], pipeCRCTable) {
		return fmt.Errorf("%w: run-time record: checksum mismatch", ErrPipelineState)
	}
	src = src[:len(src)-4]
	head := rt.appendHeader(nil)
	if !bytes.HasPrefix(src, head) {
		return ErrRuntimePatternState
	}
	src = src[len(head):]
	for _, a := range rt.added {
		if len(src) < 8 || uint64(len(src)-8) < le.Uint64(src) {
			return fmt.Errorf("%w: run-time record: truncated", ErrPipelineState)
		}
		n := le.Uint64(src)
		st := src[8 : 8+n]
		src = src[8+n:]
		var err error
		if a.pat != nil {
			err = a.pat.LoadState(st)
		} else {
			err = a.seq.LoadState(st)
		}
		if err != nil {
			return fmt.Errorf("run-time pattern %d: %w", a.op, err)
		}
	}
	if len(src) != 0 {
		return fmt.Errorf("%w: run-time record: %d trailing bytes", ErrPipelineState, len(src))
	}
	return nil
}

// patRuntimeInState reports whether a pipeline snapshot body (without its
// CRC) of nslots slots and nsubs operator states holds a run-time record,
// so that LoadState can say why it does not fit rather than only that the
// operator count differs. It only reads within body.
func patRuntimeInState(body []byte, nslots, nsubs int) bool {
	le := binary.LittleEndian
	if nslots < 0 || nslots > len(body) {
		return false
	}
	off := pipeStateHeader + nslots*(4+24)
	for range nsubs {
		if off < 0 || len(body)-off < 8 {
			return false
		}
		n := le.Uint64(body[off:])
		off += 8
		if n > uint64(len(body)-off) {
			return false
		}
		if n >= 4 && string(body[off:off+4]) == patRuntimeMagic {
			return true
		}
		off += int(n)
	}
	return false
}
