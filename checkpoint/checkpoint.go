// Package checkpoint stores engine checkpoints: named, opaque sections
// (operator state, source offsets, sink high-water marks, the dedup set -
// whatever the engine puts there) together with the WAL LSN they cover, in a
// versioned binary file with a checksum, written atomically.
//
// # Files
//
// A checkpoint directory holds <ID as 16 lower-case hex digits>.ckpt files;
// IDs increase with every Write, so the newest checkpoint has the largest ID.
// Write encodes into <name>.tmp, fsyncs it, renames it to <name> and fsyncs
// the directory: a crash at any point leaves either the complete new file or
// none (a leftover .tmp is ignored by LoadLatest and List and removed by
// Prune). LoadLatest returns the newest checkpoint that decodes and verifies,
// reporting each newer one it had to skip and why.
//
// # Format (version 1, little-endian)
//
//	header, 48 bytes:
//	0  magic     "QCKP"
//	4  version   u16 (1)
//	6  flags     u16 (0)
//	8  id        u64, equal to the number in the file name
//	16 lsn       u64, the WAL LSN covered: every record <= lsn is in the state
//	24 created   i64, wall-clock nanoseconds at Write (informational)
//	32 sections  u32, at most MaxSections
//	36 reserved  u32 (0)
//	40 length    u64, the file's total length
//	then per section:
//	0  nameLen   u16, 1..MaxNameLen
//	2  reserved  u16 (0)
//	4  dataLen   u32, at most MaxSectionSize
//	8  name, zero-padded to a multiple of 8
//	   data, zero-padded to a multiple of 8
//	trailer, 8 bytes:
//	0  crc       u32, CRC-32C (Castagnoli) of every byte before the trailer
//	4  magic     "PKCQ"
//
// Names are unique within a checkpoint. Every bound is checked before any
// allocation, so a damaged file costs at most its own size in memory.
//
// # Retention
//
// Prune(dir, keep) keeps the newest keep valid checkpoints. The oldest kept
// one's LSN is the oldest point recovery may restart from, so WAL segments
// are deletable below it: after Prune, call wal.Writer.DeleteBefore(kept[0].LSN+1).
package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"qstream/codec"
)

// Format limits.
const (
	MaxSections    = 1024
	MaxNameLen     = 255
	MaxSectionSize = 1 << 30
	// MaxFileSize bounds a checkpoint file; LoadLatest does not read a
	// larger one.
	MaxFileSize = 4 << 30

	headerSize   = 48
	secHdrSize   = 8
	trailerSize  = 8
	version      = 1
	magic        = "QCKP"
	trailerMagic = "PKCQ"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors.
var (
	// ErrCorrupt is wrapped by every *CorruptError.
	ErrCorrupt = errors.New("checkpoint: corrupt")
	// ErrNoCheckpoint is returned by LoadLatest when no valid checkpoint
	// exists in the directory.
	ErrNoCheckpoint = errors.New("checkpoint: no valid checkpoint")
	// ErrLimit is returned by Encode and Write for a checkpoint over a
	// format limit (too many sections, a section or name too large).
	ErrLimit = errors.New("checkpoint: over a format limit")
	// ErrBadName is returned by Encode and Write for an empty or duplicate
	// section name.
	ErrBadName = errors.New("checkpoint: empty or duplicate section name")
	// ErrExists is returned by Write when a checkpoint with the ID exists.
	ErrExists = errors.New("checkpoint: a checkpoint with this ID exists")
)

// CorruptError says why a checkpoint file cannot be loaded.
type CorruptError struct {
	Path   string // the file, when known
	Offset int64  // byte offset of the problem
	Reason codec.Reason
	Detail string // a constant description
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("checkpoint: corrupt %s at offset %d: %s: %s", e.Path, e.Offset, e.Reason, e.Detail)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true and lets errors.As find a
// *codec.Error with the same Reason.
func (e *CorruptError) Unwrap() []error {
	return []error{ErrCorrupt, &codec.Error{Reason: e.Reason, Detail: e.Detail, Offset: int(e.Offset)}}
}

// Section is one named blob of state.
type Section struct {
	Name string
	Data []byte
}

// Checkpoint is the state of an engine at a WAL position.
type Checkpoint struct {
	ID        uint64 // 0 asks Write to assign the next ID
	LSN       uint64 // every WAL record with an LSN <= LSN is reflected in the sections
	CreatedNs int64  // 0 asks Write to stamp the wall clock
	Sections  []Section
}

// Set adds the section name or replaces its data. data is not copied.
func (c *Checkpoint) Set(name string, data []byte) {
	for i := range c.Sections {
		if c.Sections[i].Name == name {
			c.Sections[i].Data = data
			return
		}
	}
	c.Sections = append(c.Sections, Section{Name: name, Data: data})
}

// Get returns the data of section name.
func (c *Checkpoint) Get(name string) ([]byte, bool) {
	for _, s := range c.Sections {
		if s.Name == name {
			return s.Data, true
		}
	}
	return nil, false
}

func pad8(n int) int { return (n + 7) &^ 7 }

// EncodedSize is the file size c encodes to.
func EncodedSize(c *Checkpoint) int {
	n := headerSize + trailerSize
	for _, s := range c.Sections {
		n += secHdrSize + pad8(len(s.Name)) + pad8(len(s.Data))
	}
	return n
}

func validate(c *Checkpoint) error {
	if len(c.Sections) > MaxSections {
		return fmt.Errorf("%w: %d sections (max %d)", ErrLimit, len(c.Sections), MaxSections)
	}
	seen := make(map[string]struct{}, len(c.Sections))
	for _, s := range c.Sections {
		if len(s.Name) > MaxNameLen {
			return fmt.Errorf("%w: section name of %d bytes (max %d)", ErrLimit, len(s.Name), MaxNameLen)
		}
		if len(s.Data) > MaxSectionSize {
			return fmt.Errorf("%w: section %q of %d bytes (max %d)", ErrLimit, s.Name, len(s.Data), MaxSectionSize)
		}
		if _, dup := seen[s.Name]; dup || s.Name == "" {
			return fmt.Errorf("%w: %q", ErrBadName, s.Name)
		}
		seen[s.Name] = struct{}{}
	}
	if EncodedSize(c) > MaxFileSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrLimit, EncodedSize(c), int64(MaxFileSize))
	}
	return nil
}

// Encode appends the encoding of c to dst.
func Encode(dst []byte, c *Checkpoint) ([]byte, error) {
	if err := validate(c); err != nil {
		return dst, err
	}
	start := len(dst)
	total := EncodedSize(c)
	dst = slices.Grow(dst, total)[:start+total]
	b := dst[start:]
	clear(b) // padding and reserved bytes must be zero
	copy(b[0:4], magic)
	binary.LittleEndian.PutUint16(b[4:6], version)
	binary.LittleEndian.PutUint64(b[8:16], c.ID)
	binary.LittleEndian.PutUint64(b[16:24], c.LSN)
	binary.LittleEndian.PutUint64(b[24:32], uint64(c.CreatedNs))
	binary.LittleEndian.PutUint32(b[32:36], uint32(len(c.Sections)))
	binary.LittleEndian.PutUint64(b[40:48], uint64(total))
	off := headerSize
	for _, s := range c.Sections {
		binary.LittleEndian.PutUint16(b[off:], uint16(len(s.Name)))
		binary.LittleEndian.PutUint32(b[off+4:], uint32(len(s.Data)))
		off += secHdrSize
		copy(b[off:], s.Name)
		off += pad8(len(s.Name))
		copy(b[off:], s.Data)
		off += pad8(len(s.Data))
	}
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b[:off], castagnoli))
	copy(b[off+4:], trailerMagic)
	return dst, nil
}

// Decode parses and verifies an encoded checkpoint. Section data aliases
// data (no copy); names are copied. A bad input returns a *CorruptError
// (with an empty Path).
func Decode(data []byte) (*Checkpoint, error) { return decode(data, true) }

// decode parses data; verifyCRC false lets the fuzzer reach the structure
// checks, which must hold on their own.
func decode(data []byte, verifyCRC bool) (*Checkpoint, error) {
	bad := func(off int, r codec.Reason, detail string) (*Checkpoint, error) {
		return nil, &CorruptError{Offset: int64(off), Reason: r, Detail: detail}
	}
	if len(data) < headerSize+trailerSize {
		return bad(len(data), codec.ReasonMalformed, "shorter than a header and trailer")
	}
	if string(data[0:4]) != magic {
		return bad(0, codec.ReasonMalformed, "bad magic")
	}
	if v := binary.LittleEndian.Uint16(data[4:6]); v != version {
		return bad(4, codec.ReasonMalformed, "unsupported version")
	}
	if binary.LittleEndian.Uint64(data[40:48]) != uint64(len(data)) {
		return bad(40, codec.ReasonMalformed, "length field does not match the file size (truncated or extended)")
	}
	end := len(data) - trailerSize
	if string(data[end+4:]) != trailerMagic {
		return bad(end+4, codec.ReasonMalformed, "bad trailer magic")
	}
	if verifyCRC && binary.LittleEndian.Uint32(data[end:end+4]) != crc32.Checksum(data[:end], castagnoli) {
		return bad(end, codec.ReasonChecksum, "checksum mismatch")
	}
	if binary.LittleEndian.Uint16(data[6:8]) != 0 || binary.LittleEndian.Uint32(data[36:40]) != 0 {
		return bad(6, codec.ReasonMalformed, "non-zero flags or reserved bytes")
	}
	n := binary.LittleEndian.Uint32(data[32:36])
	if n > MaxSections || int(n) > (end-headerSize)/secHdrSize {
		return bad(32, codec.ReasonOversize, "section count above the limit or the file size")
	}
	c := &Checkpoint{
		ID:        binary.LittleEndian.Uint64(data[8:16]),
		LSN:       binary.LittleEndian.Uint64(data[16:24]),
		CreatedNs: int64(binary.LittleEndian.Uint64(data[24:32])),
		Sections:  make([]Section, 0, n),
	}
	off := headerSize
	for i := uint32(0); i < n; i++ {
		if end-off < secHdrSize {
			return bad(off, codec.ReasonMalformed, "section header past the end")
		}
		nl := int(binary.LittleEndian.Uint16(data[off:]))
		dl := int64(binary.LittleEndian.Uint32(data[off+4:]))
		switch {
		case binary.LittleEndian.Uint16(data[off+2:]) != 0:
			return bad(off+2, codec.ReasonMalformed, "non-zero reserved section bytes")
		case nl == 0 || nl > MaxNameLen:
			return bad(off, codec.ReasonMalformed, "section name length out of range")
		case dl > MaxSectionSize:
			return bad(off+4, codec.ReasonOversize, "section above the size limit")
		case int64(secHdrSize+pad8(nl))+int64(pad8(int(dl))) > int64(end-off):
			return bad(off, codec.ReasonMalformed, "section past the end")
		}
		off += secHdrSize
		name := data[off : off+nl]
		if !zero(data[off+nl : off+pad8(nl)]) {
			return bad(off+nl, codec.ReasonMalformed, "non-zero name padding")
		}
		off += pad8(nl)
		d := data[off : off+int(dl) : off+int(dl)]
		if !zero(data[off+int(dl) : off+pad8(int(dl))]) {
			return bad(off+int(dl), codec.ReasonMalformed, "non-zero data padding")
		}
		for _, s := range c.Sections {
			if s.Name == string(name) {
				return bad(off-pad8(nl), codec.ReasonMalformed, "duplicate section name")
			}
		}
		c.Sections = append(c.Sections, Section{Name: string(name), Data: d})
		off += pad8(int(dl))
	}
	if off != end {
		return bad(off, codec.ReasonMalformed, "bytes between the last section and the trailer")
	}
	return c, nil
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
