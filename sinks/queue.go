package sinks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"qstream/ops"
)

// FullPolicy is what a sink does with an output when its memory queue is
// full.
type FullPolicy uint8

// Full-queue policies.
const (
	// FullSpill appends the output to the sink's spill file on local disk
	// (bounded by Policy.SpillMax; past it the sink blocks). The writer
	// drains the memory queue, then the spill, in output order, so a sink
	// that is down catches up after the outage with every output exactly
	// once, and a checkpoint references the spill instead of copying it.
	FullSpill FullPolicy = iota
	// FullBlock makes the engine's collector wait for room: backpressure
	// reaches the shards and the feeds. Nothing is lost; a dead sink stalls
	// the stream (and, through the collector, every other sink).
	FullBlock
	// FullShed drops the output and counts it (SinkStats.Shed). For sinks
	// whose consumers want the latest value rather than every value (a live
	// WebSocket fan-out); the sink then is not exactly-once.
	FullShed
)

func (p FullPolicy) String() string {
	switch p {
	case FullBlock:
		return "block"
	case FullShed:
		return "shed"
	}
	return "spill"
}

// ParseFullPolicy parses "spill", "block" or "shed".
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "spill":
		return FullSpill, nil
	case "block":
		return FullBlock, nil
	case "shed":
		return FullShed, nil
	}
	return 0, fmt.Errorf("full=%q: want spill, block or shed", s)
}

// entry is one queued output with its ordinal: the position of the output
// in everything the Set was handed since the start of the stream (restored
// from checkpoints, so it is the same after a recovery).
type entry struct {
	ord uint64
	out ops.Output
}

// On-disk records of the spill and carry files: the ordinal, the output's
// bytes (ops.Output is fixed-size and pointer-free) and a CRC-32C of both,
// padded to 8 bytes. The files are local to the host that wrote them.
const (
	outSize    = int(unsafe.Sizeof(ops.Output{}))
	recordSize = 8 + outSize + 8
	recSize64  = int64(recordSize)
	fileMagic  = "QSNK"
	headerSize = 16 // magic, version u16, 2 reserved, record size u32, 4 reserved
	fileVer    = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func putRecord(dst []byte, e *entry) {
	binary.LittleEndian.PutUint64(dst, e.ord)
	copy(dst[8:8+outSize], unsafe.Slice((*byte)(unsafe.Pointer(&e.out)), outSize))
	binary.LittleEndian.PutUint32(dst[8+outSize:], crc32.Checksum(dst[:8+outSize], castagnoli))
	binary.LittleEndian.PutUint32(dst[12+outSize:], 0)
}

func getRecord(src []byte, e *entry) error {
	if binary.LittleEndian.Uint32(src[8+outSize:]) != crc32.Checksum(src[:8+outSize], castagnoli) {
		return errors.New("checksum mismatch")
	}
	e.ord = binary.LittleEndian.Uint64(src)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e.out)), outSize), src[8:8+outSize])
	return nil
}

func putHeader(dst []byte) {
	copy(dst, fileMagic)
	binary.LittleEndian.PutUint16(dst[4:], fileVer)
	binary.LittleEndian.PutUint16(dst[6:], 0)
	binary.LittleEndian.PutUint32(dst[8:], uint32(recordSize))
	binary.LittleEndian.PutUint32(dst[12:], 0)
}

func checkHeader(b []byte, name string) error {
	if len(b) < headerSize || string(b[:4]) != fileMagic {
		return fmt.Errorf("sinks: %s: not a sink queue file", name)
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != fileVer {
		return fmt.Errorf("sinks: %s: version %d, want %d", name, v, fileVer)
	}
	if rs := binary.LittleEndian.Uint32(b[8:]); int(rs) != recordSize {
		return fmt.Errorf("sinks: %s: records of %d bytes, this build writes %d (written by another qstream version)", name, rs, recordSize)
	}
	return nil
}

// queue is one sink's bounded queue: a ring of entries in memory, and,
// under FullSpill, a spill file for what does not fit. Order invariant:
// in-flight entries < ring entries < spill entries (by ordinal), because
// once spilling starts every new entry goes to the spill until it drained.
//
// The producer is the Set (on the engine's collector goroutine), the
// consumer the sink's runner goroutine, and checkpoints read it under the
// lock from the checkpointing goroutine.
type queue struct {
	mu     sync.Mutex
	ring   []entry
	head   int // index of the oldest ring entry
	n      int // ring entries
	policy FullPolicy

	// in flight: taken by the runner, not acknowledged yet. inflight[done:]
	// are pending.
	inflightOrd []uint64
	inflightOut []ops.Output
	done        int

	sp *spill // nil unless FullSpill

	closed bool
	data   chan struct{} // cap 1: something was pushed, or closed
	space  chan struct{} // cap 1: room was made, or closed (FullBlock producers)

	// counters (under mu)
	shed     uint64
	next     uint64 // the ordinal after the last one pushed
	spilled  uint64 // entries written to the spill, ever
	maxDepth int    // highest ring+spill depth seen
}

func newQueue(capacity int, policy FullPolicy, sp *spill) *queue {
	return &queue{
		ring:   make([]entry, capacity),
		policy: policy,
		sp:     sp,
		data:   make(chan struct{}, 1),
		space:  make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// errQueueClosed is returned by push after close.
var errQueueClosed = errors.New("sinks: queue closed")

// push appends outs with ordinals first, first+1, ... Under FullBlock it
// waits for room (stop, when closed, returns errQueueClosed); under
// FullShed it drops what does not fit; under FullSpill it writes to the
// spill file, and blocks only when that reached its limit.
func (q *queue) push(first uint64, outs []ops.Output, stop <-chan struct{}) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.next = first + uint64(len(outs))
	for i := 0; i < len(outs); {
		if q.closed {
			return errQueueClosed
		}
		spilling := q.sp != nil && q.sp.n > 0
		if !spilling && q.n < len(q.ring) {
			// Copy as many as fit into the ring.
			for i < len(outs) && q.n < len(q.ring) {
				e := &q.ring[(q.head+q.n)%len(q.ring)]
				e.ord = first + uint64(i)
				e.out = outs[i]
				q.n++
				i++
			}
			q.noteDepth()
			signal(q.data)
			continue
		}
		switch {
		case q.policy == FullShed:
			q.shed += uint64(len(outs) - i)
			return nil
		case q.sp != nil && q.sp.room():
			for i < len(outs) && q.sp.room() {
				if err := q.sp.append(first+uint64(i), &outs[i]); err != nil {
					return err
				}
				q.spilled++
				i++
			}
			q.noteDepth()
			signal(q.data)
			continue
		}
		// Block until the runner makes room.
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-stop:
			q.mu.Lock()
			return errQueueClosed
		}
		q.mu.Lock()
	}
	return nil
}

func (q *queue) noteDepth() {
	d := q.n
	if q.sp != nil {
		d += q.sp.n
	}
	q.maxDepth = max(q.maxDepth, d)
}

// depth returns the entries waiting: in flight, in the ring, in the spill.
func (q *queue) depth() (inflight, ring, spilled int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	inflight, ring = len(q.inflightOrd)-q.done, q.n
	if q.sp != nil {
		spilled = q.sp.n
	}
	return
}

// take moves up to max entries into the in-flight batch and returns their
// outputs. It returns nil when the queue is empty; the previous batch must
// have been acknowledged.
func (q *queue) take(max int) ([]ops.Output, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflightOrd, q.inflightOut, q.done = q.inflightOrd[:0], q.inflightOut[:0], 0
	// A batch never ends inside a group (an output and the text after it,
	// ops.GroupLen): owed counts the text outputs the last one still needs,
	// taken beyond max.
	owed := 0
	for q.n > 0 && (len(q.inflightOrd) < max || owed > 0) {
		e := &q.ring[q.head]
		q.inflightOrd = append(q.inflightOrd, e.ord)
		q.inflightOut = append(q.inflightOut, e.out)
		owed = textOwed(&e.out, owed)
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	for q.n == 0 && q.sp != nil && q.sp.n > 0 && (len(q.inflightOrd) < max || owed > 0) {
		first := len(q.inflightOut)
		var err error
		q.inflightOrd, q.inflightOut, err = q.sp.read(q.inflightOrd, q.inflightOut, limitOwed(max-len(q.inflightOrd), owed))
		if err != nil {
			return nil, err
		}
		for i := first; i < len(q.inflightOut); i++ {
			owed = textOwed(&q.inflightOut[i], owed)
		}
	}
	if len(q.inflightOrd) > 0 {
		signal(q.space)
	}
	return q.inflightOut, nil
}

// ack records that the first k in-flight outputs are handled (written,
// or dead-lettered).
func (q *queue) ack(k int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.done = min(max(q.done, k), len(q.inflightOrd))
	if q.sp != nil && q.done > 0 {
		q.sp.acked(q.inflightOrd[q.done-1] + 1)
	}
}

// hwm returns the lowest ordinal not handled yet, or next when nothing is
// pending.
func (q *queue) hwmLocked(next uint64) uint64 {
	switch {
	case q.done < len(q.inflightOrd):
		return q.inflightOrd[q.done]
	case q.n > 0:
		return q.ring[q.head].ord
	case q.sp != nil && q.sp.n > 0:
		return q.sp.firstOrd
	}
	return next
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.data)
	signal(q.space)
}

// spill is a sink's overflow file: records appended at the end, read from
// rOff. When everything in it has been read it starts a new generation
// (a new file); the old one is removed once every entry read from it has
// been acknowledged, so a checkpoint that references it stays valid until
// its entries were delivered.
type spill struct {
	dir      string
	max      int64 // bytes
	gen      uint64
	f        *os.File
	w        *bufio.Writer
	wOff     int64 // end of the data, buffered included
	rOff     int64 // next unread record
	n        int   // unread records
	firstOrd uint64
	lastOrd  uint64 // ordinal of the last record appended
	rbuf     []byte
	// retired generations waiting for their last ordinal's acknowledgement
	retired []retiredSpill
}

type retiredSpill struct {
	name    string
	lastOrd uint64
}

func spillName(gen uint64) string { return fmt.Sprintf("spill-%016x.q", gen) }

func newSpill(dir string, max int64) *spill {
	return &spill{dir: dir, max: max}
}

func (s *spill) room() bool { return s.wOff+recSize64 <= s.max+headerSize }

func (s *spill) path() string { return filepath.Join(s.dir, spillName(s.gen)) }

func (s *spill) open() error {
	if s.f != nil {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(s.path(), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	var h [headerSize]byte
	putHeader(h[:])
	if _, err := f.Write(h[:]); err != nil {
		f.Close()
		return err
	}
	s.f, s.w = f, bufio.NewWriterSize(f, 256<<10)
	s.wOff, s.rOff = headerSize, headerSize
	return nil
}

func (s *spill) append(ord uint64, o *ops.Output) error {
	if err := s.open(); err != nil {
		return fmt.Errorf("sinks: spill: %w", err)
	}
	var rec [recordSize]byte
	e := entry{ord: ord, out: *o}
	putRecord(rec[:], &e)
	if _, err := s.w.Write(rec[:]); err != nil {
		return fmt.Errorf("sinks: spill %s: %w", s.path(), err)
	}
	if s.n == 0 {
		s.firstOrd = ord
	}
	s.wOff += recSize64
	s.n++
	s.lastOrd = ord
	return nil
}

func (s *spill) read(ords []uint64, outs []ops.Output, max int) ([]uint64, []ops.Output, error) {
	if err := s.w.Flush(); err != nil {
		return ords, outs, fmt.Errorf("sinks: spill %s: %w", s.path(), err)
	}
	k := min(max, s.n)
	need := k * recordSize
	if cap(s.rbuf) < need {
		s.rbuf = make([]byte, need)
	}
	buf := s.rbuf[:need]
	if _, err := s.f.ReadAt(buf, s.rOff); err != nil {
		return ords, outs, fmt.Errorf("sinks: spill %s at %d: %w", s.path(), s.rOff, err)
	}
	var e entry
	for i := 0; i < k; i++ {
		if err := getRecord(buf[i*recordSize:], &e); err != nil {
			return ords, outs, fmt.Errorf("sinks: spill %s at %d: %w", s.path(), s.rOff+int64(i*recordSize), err)
		}
		ords = append(ords, e.ord)
		outs = append(outs, e.out)
	}
	s.rOff += int64(need)
	s.n -= k
	if s.n > 0 {
		s.firstOrd = ords[len(ords)-1] + 1 // ordinals in a spill are consecutive
	} else {
		// Drained: the next spill starts a new generation; this one goes
		// once its last entry is acknowledged.
		s.w.Flush()
		s.f.Close()
		s.retired = append(s.retired, retiredSpill{name: s.path(), lastOrd: s.lastOrd})
		s.f, s.w = nil, nil
		s.gen++
		s.wOff, s.rOff = 0, 0
	}
	return ords, outs, nil
}

// acked removes retired generations whose entries are all acknowledged
// (every ordinal below next).
func (s *spill) acked(next uint64) {
	for len(s.retired) > 0 && s.retired[0].lastOrd < next {
		os.Remove(s.retired[0].name)
		s.retired = s.retired[1:]
	}
}

// bytes returns the unread spill size.
func (s *spill) bytes() int64 { return int64(s.n) * recSize64 }

// sync makes the unread part durable for a checkpoint.
func (s *spill) sync() error {
	if s.f == nil {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.f.Sync()
}

// restore reopens generation gen for reading [rOff, wOff): the entries a
// checkpoint referenced. Records past wOff (outputs after the checkpoint's
// cut, which the WAL replay produces again) are cut off. A missing file was
// fully acknowledged before the crash (see acked): nothing to restore.
func (s *spill) restore(gen uint64, rOff, wOff int64) (bool, error) {
	s.gen = gen
	f, err := os.OpenFile(s.path(), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		s.gen++
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var h [headerSize]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		f.Close()
		return false, fmt.Errorf("sinks: %s: %w", s.path(), err)
	}
	if err := checkHeader(h[:], s.path()); err != nil {
		f.Close()
		return false, err
	}
	if (wOff-rOff)%recSize64 != 0 || rOff < headerSize {
		f.Close()
		return false, fmt.Errorf("sinks: %s: checkpoint range [%d, %d) is not whole records", s.path(), rOff, wOff)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return false, err
	}
	if st.Size() < wOff {
		f.Close()
		return false, fmt.Errorf("sinks: %s is %d bytes, shorter than the checkpoint's mark %d", s.path(), st.Size(), wOff)
	}
	if err := f.Truncate(wOff); err != nil {
		f.Close()
		return false, err
	}
	if _, err := f.Seek(wOff, io.SeekStart); err != nil {
		f.Close()
		return false, err
	}
	s.f, s.w = f, bufio.NewWriterSize(f, 256<<10)
	s.rOff, s.wOff = rOff, wOff
	s.n = int((wOff - rOff) / recSize64)
	if s.n > 0 {
		var rec [recordSize]byte
		var e entry
		if _, err := f.ReadAt(rec[:], rOff); err != nil {
			return false, err
		}
		if err := getRecord(rec[:], &e); err != nil {
			return false, fmt.Errorf("sinks: %s at %d: %w", s.path(), rOff, err)
		}
		s.firstOrd = e.ord
		if _, err := f.ReadAt(rec[:], wOff-recSize64); err != nil {
			return false, err
		}
		if err := getRecord(rec[:], &e); err != nil {
			return false, fmt.Errorf("sinks: %s at %d: %w", s.path(), wOff-recSize64, err)
		}
		s.lastOrd = e.ord
	}
	return true, nil
}

// close flushes and closes the file; it stays for the next start, which
// keeps what a checkpoint references and removes the rest.
func (s *spill) close() {
	if s.f != nil {
		s.w.Flush()
		s.f.Close()
		s.f = nil
	}
}

// writeCarry writes the pending in-memory entries (in flight and in the
// ring) to carry-<id>.q, synced: what a checkpoint needs of the queue that
// is not in the spill. It returns false when there was nothing to write.
func (q *queue) writeCarryLocked(dir string, id uint64) (bool, error) {
	pending := len(q.inflightOrd) - q.done + q.n
	if pending == 0 {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	name := filepath.Join(dir, carryName(id))
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	var rec [recordSize]byte
	putHeader(rec[:headerSize])
	w.Write(rec[:headerSize])
	var e entry
	for i := q.done; i < len(q.inflightOrd); i++ {
		e.ord, e.out = q.inflightOrd[i], q.inflightOut[i]
		putRecord(rec[:], &e)
		w.Write(rec[:])
	}
	for i := 0; i < q.n; i++ {
		putRecord(rec[:], &q.ring[(q.head+i)%len(q.ring)])
		w.Write(rec[:])
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("sinks: carry %s: %w", name, err)
	}
	return true, nil
}

func carryName(id uint64) string { return fmt.Sprintf("carry-%016x.q", id) }

// readCarry reads a carry file's entries.
func readCarry(dir string, id uint64) ([]entry, error) {
	name := filepath.Join(dir, carryName(id))
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("sinks: the checkpoint's queued outputs: %w (the sink's directory was changed outside qstream; remove the WAL directory to start afresh)", err)
	}
	if err := checkHeader(b, name); err != nil {
		return nil, err
	}
	b = b[headerSize:]
	if len(b)%recordSize != 0 {
		return nil, fmt.Errorf("sinks: %s: torn (%d bytes of records)", name, len(b))
	}
	out := make([]entry, len(b)/recordSize)
	for i := range out {
		if err := getRecord(b[i*recordSize:], &out[i]); err != nil {
			return nil, fmt.Errorf("sinks: %s record %d: %w", name, i, err)
		}
	}
	return out, nil
}

// pruneCarry removes carry files other than the newest keep.
func pruneCarry(dir string, keep int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var ids []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "carry-") || !strings.HasSuffix(name, ".q") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "carry-"), ".q"), 16, 64)
		if err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for len(ids) > keep {
		os.Remove(filepath.Join(dir, carryName(ids[0])))
		ids = ids[1:]
	}
}

// textOwed returns how many text outputs are still owed to the group being
// taken after o, given owed before it.
func textOwed(o *ops.Output, owed int) int {
	switch {
	case o.Kind == ops.OutText:
		return max(owed-1, 0)
	default:
		return ops.GroupLen(o) - 1
	}
}

// limitOwed is how many records to read from a spill: what the batch has
// room for, or at least what the last group still needs.
func limitOwed(room, owed int) int { return max(room, owed) }
