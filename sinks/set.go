package sinks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"qstream/engine"
	"qstream/ops"
)

// Set is the engine's output handler: the primary output (the --output
// file or standard output, written on the engine's collector goroutine
// under its Guard) and the asynchronous sinks, each fed every output in the
// same order.
//
// # Exactly once across crashes
//
// Every output gets an ordinal: its position in the stream of outputs since
// the first WAL record. A checkpoint's cut (CheckpointOutput) is a point in
// that stream, N. For each sink the mark records what the sink had not
// acknowledged at the cut: the outputs in flight and in its memory queue are
// written to a carry file (carry-<N>.q, synced), the ones in its spill are
// referenced by position (the spill is synced). Recovery (RestoreOutput)
// puts them back in front of the sink's queue and the WAL replay produces
// the outputs from N on, so each sink resumes where it stopped: nothing it
// was handed is lost, and what it may have written twice (acknowledged by
// the server after the checkpoint, or before a crash without an
// acknowledgement) carries the same output key, which every writer applies
// idempotently. A sink added since the checkpoint gets the outputs from N.
//
// Checkpoints never wait for a sink: a dead server does not hold back the
// WAL's truncation nor the stream; its outputs wait in the spill.
type Set struct {
	primary engine.OutputHandler
	pcp     engine.CheckpointedOutput
	sinks   []*Sink
	next    uint64 // ordinal of the next output; collector goroutine and cut only

	stop      chan struct{} // closed by Close: FullBlock pushes give up
	closeOnce sync.Once

	only    map[ops.OutKind]bool // nil: every kind goes to the sinks
	scratch []ops.Output

	lastCut atomic.Uint64 // s.next at the last CheckpointOutput (gate.go)
}

// Carry files kept per sink beyond the newest: older checkpoints
// (engine.CheckpointConfig.Keep, default 2) still reference theirs.
const carryKeep = 8

// setMarkVersion is the version of the Set's checkpoint mark.
const setMarkVersion = 1

// NewSet returns the output of the engine: primary (nil for none) and the
// sinks (each with its own state folder, see SinkDir).
func NewSet(primary engine.OutputHandler, sinks []*Sink) *Set {
	s := &Set{primary: primary, sinks: sinks, stop: make(chan struct{})}
	s.pcp, _ = primary.(engine.CheckpointedOutput)
	return s
}

// SinkDir returns the state folder of a sink named name under dir.
func SinkDir(dir, name string) string {
	var b strings.Builder
	for _, r := range name {
		if b.Len() >= 64 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return filepath.Join(dir, fmt.Sprintf("%s-%08x", b.String(), h.Sum32()))
}

// OnlyKinds restricts what the asynchronous sinks get to these kinds (the
// primary output filters for itself). Call it before Start.
func (s *Set) OnlyKinds(kinds map[ops.OutKind]bool) { s.only = kinds }

// Sinks returns the asynchronous sinks.
func (s *Set) Sinks() []*Sink { return s.sinks }

// Start starts the sinks' writer goroutines. Call it before the engine's
// recovery: the replay's outputs go through the sinks.
func (s *Set) Start() {
	for _, k := range s.sinks {
		k.Start()
	}
}

// HandleOutputs implements engine.OutputHandler.
func (s *Set) HandleOutputs(outs []ops.Output) error {
	if s.primary != nil {
		if err := s.primary.HandleOutputs(outs); err != nil {
			return err
		}
	}
	if s.only != nil {
		s.scratch = s.scratch[:0]
		keep := false
		for i := range outs {
			if k := outs[i].Kind; k != ops.OutText { // a line's text goes with it
				keep = s.only[k]
			}
			if keep {
				s.scratch = append(s.scratch, outs[i])
			}
		}
		outs = s.scratch
	}
	for _, k := range s.sinks {
		if err := k.push(s.next, outs, s.stop); err != nil {
			return fmt.Errorf("sink %s: %w", k.name, err)
		}
	}
	s.next += uint64(len(outs))
	return nil
}

// CheckpointOutput implements engine.CheckpointedOutput.
func (s *Set) CheckpointOutput() ([]byte, error) {
	s.lastCut.Store(s.next)
	mark := []byte{setMarkVersion}
	var pm []byte
	if s.pcp != nil {
		var err error
		if pm, err = s.pcp.CheckpointOutput(); err != nil {
			return nil, err
		}
	}
	mark = binary.LittleEndian.AppendUint32(mark, uint32(len(pm)))
	mark = append(mark, pm...)
	mark = binary.LittleEndian.AppendUint64(mark, s.next)
	mark = binary.LittleEndian.AppendUint16(mark, uint16(len(s.sinks)))
	for _, k := range s.sinks {
		m, err := k.checkpoint(s.next)
		if err != nil {
			return nil, err
		}
		mark = binary.LittleEndian.AppendUint16(mark, uint16(len(k.name)))
		mark = append(mark, k.name...)
		mark = m.append(mark)
	}
	return mark, nil
}

// sinkMark is one sink's part of a checkpoint mark.
type sinkMark struct {
	hwm        uint64 // the lowest ordinal not acknowledged at the cut
	carry      uint64 // carry file id; 0: none (ids are cut ordinals + 1)
	spill      bool
	gen        uint64
	rOff, wOff int64
}

const sinkMarkLen = 8 + 8 + 1 + 8 + 8 + 8

func (m sinkMark) append(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, m.hwm)
	dst = binary.LittleEndian.AppendUint64(dst, m.carry)
	if m.spill {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.LittleEndian.AppendUint64(dst, m.gen)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.rOff))
	return binary.LittleEndian.AppendUint64(dst, uint64(m.wOff))
}

func decodeSinkMark(b []byte) sinkMark {
	return sinkMark{
		hwm:   binary.LittleEndian.Uint64(b),
		carry: binary.LittleEndian.Uint64(b[8:]),
		spill: b[16] == 1,
		gen:   binary.LittleEndian.Uint64(b[17:]),
		rOff:  int64(binary.LittleEndian.Uint64(b[25:])),
		wOff:  int64(binary.LittleEndian.Uint64(b[33:])),
	}
}

// checkpoint makes the sink's pending outputs durable for a cut at next.
func (k *Sink) checkpoint(next uint64) (sinkMark, error) {
	q := k.q
	q.mu.Lock()
	defer q.mu.Unlock()
	m := sinkMark{hwm: q.hwmLocked(next)}
	if k.dir == "" {
		if m.hwm != next {
			k.log.Warn("sink: checkpoint without a sink directory: its queued outputs are not kept", "sink", k.name)
		}
		return m, nil
	}
	id := next + 1
	wrote, err := q.writeCarryLocked(k.dir, id)
	if err != nil {
		return m, err
	}
	if wrote {
		m.carry = id
		pruneCarry(k.dir, carryKeep)
	}
	if q.sp != nil && q.sp.n > 0 {
		if err := q.sp.sync(); err != nil {
			return m, fmt.Errorf("sinks: spill %s: %w", q.sp.path(), err)
		}
		m.spill, m.gen, m.rOff, m.wOff = true, q.sp.gen, q.sp.rOff, q.sp.wOff
	}
	return m, nil
}

// RestoreOutput implements engine.CheckpointedOutput.
func (s *Set) RestoreOutput(hwm []byte) error {
	marks := map[string]sinkMark{}
	var pm []byte
	s.next = 0
	if hwm != nil {
		b := hwm
		if len(b) < 5 || b[0] != setMarkVersion {
			return errors.New("sinks: checkpoint mark: not a sink set's mark (version or length)")
		}
		n := int(binary.LittleEndian.Uint32(b[1:]))
		b = b[5:]
		if n > len(b) {
			return errors.New("sinks: checkpoint mark: truncated")
		}
		pm, b = b[:n], b[n:]
		if len(b) < 10 {
			return errors.New("sinks: checkpoint mark: truncated")
		}
		s.next = binary.LittleEndian.Uint64(b)
		count := int(binary.LittleEndian.Uint16(b[8:]))
		b = b[10:]
		for range count {
			if len(b) < 2 {
				return errors.New("sinks: checkpoint mark: truncated")
			}
			l := int(binary.LittleEndian.Uint16(b))
			if len(b) < 2+l+sinkMarkLen {
				return errors.New("sinks: checkpoint mark: truncated")
			}
			marks[string(b[2:2+l])] = decodeSinkMark(b[2+l:])
			b = b[2+l+sinkMarkLen:]
		}
	}
	if s.pcp != nil {
		if hwm == nil {
			pm = nil
		}
		if err := s.pcp.RestoreOutput(pm); err != nil {
			return err
		}
	}
	for _, k := range s.sinks {
		m, ok := marks[k.name]
		if err := k.restore(m, ok); err != nil {
			return fmt.Errorf("sink %s: %w", k.name, err)
		}
	}
	return nil
}

// restore puts the outputs the sink had pending at the checkpoint back in
// its queue; without a mark the sink starts empty (its old files go).
func (k *Sink) restore(m sinkMark, ok bool) error {
	if k.dir == "" {
		return nil
	}
	q := k.q
	q.mu.Lock()
	defer q.mu.Unlock()
	var carry []entry
	if ok && m.carry != 0 {
		var err error
		if carry, err = readCarry(k.dir, m.carry); err != nil {
			return err
		}
	}
	// Everything else in the folder belongs to the run that crashed.
	keepSpill := ""
	if ok && m.spill {
		keepSpill = spillName(m.gen)
	}
	if ents, err := os.ReadDir(k.dir); err == nil {
		for _, e := range ents {
			name := e.Name()
			if name == keepSpill || (ok && m.carry != 0 && name == carryName(m.carry)) {
				continue
			}
			if strings.HasPrefix(name, "spill-") || strings.HasPrefix(name, "carry-") {
				os.Remove(filepath.Join(k.dir, name))
			}
		}
	}
	if len(carry) > len(q.ring) {
		q.ring = make([]entry, len(carry))
	}
	q.head, q.n = 0, 0
	for _, e := range carry {
		q.ring[q.n] = e
		q.n++
	}
	if ok && m.spill {
		if q.sp == nil {
			q.sp = newSpill(k.dir, k.pol.SpillMax) // the policy changed: drain the old spill first
		}
		found, err := q.sp.restore(m.gen, m.rOff, m.wOff)
		if err != nil {
			return err
		}
		if !found {
			k.log.Info("sink: the checkpoint's spill was delivered before the restart", "sink", k.name, "spill", spillName(m.gen))
		}
	} else if q.sp != nil {
		q.sp.gen = 0
	}
	q.noteDepth()
	signal(q.data)
	return nil
}

// Close stops the sinks after the engine has stopped: each delivers what
// it has queued until ctx ends. It returns an error naming the sinks that
// were left with outputs (kept in their spill and the last checkpoint when
// they have both, else lost).
func (s *Set) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.stop) })
	type res struct {
		name string
		n    int
		err  error
	}
	ch := make(chan res, len(s.sinks))
	for _, k := range s.sinks {
		go func() {
			n, err := k.Close(ctx)
			ch <- res{k.name, n, err}
		}()
	}
	var errs []error
	for range s.sinks {
		r := <-ch
		if r.n > 0 {
			errs = append(errs, fmt.Errorf("sink %s: %d outputs not delivered at stop", r.name, r.n))
		}
		if r.err != nil {
			errs = append(errs, fmt.Errorf("sink %s: close: %w", r.name, r.err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns every sink's counters.
func (s *Set) Stats() []SinkStats {
	out := make([]SinkStats, len(s.sinks))
	for i, k := range s.sinks {
		out[i] = k.Stats()
	}
	return out
}

// AppendStatus appends a short status of every sink for the status line:
// " | NAME state queue=N spill=N written=N ...".
func (s *Set) AppendStatus(dst []byte) []byte {
	for _, st := range s.Stats() {
		dst = fmt.Appendf(dst, " | %s %s q=%d", st.Name, st.State, st.Queued)
		if st.Spilled > 0 {
			dst = fmt.Appendf(dst, " spill=%d", st.Spilled)
		}
		dst = fmt.Appendf(dst, " delivered=%d", st.Written)
		if st.Retries > 0 || st.Errors > 0 {
			dst = fmt.Appendf(dst, " retries=%d errors=%d", st.Retries, st.Errors)
		}
		if st.Shed > 0 {
			dst = fmt.Appendf(dst, " shed=%d", st.Shed)
		}
		if st.Poisoned > 0 {
			dst = fmt.Appendf(dst, " poisoned=%d", st.Poisoned)
		}
		dst = append(dst, st.Writer...)
	}
	return dst
}
