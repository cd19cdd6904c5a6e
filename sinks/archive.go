package sinks

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"qstream/codec"
	"qstream/feeds"
	"qstream/wal"
)

// Defaults and bounds of ArchiveOptions.
const (
	DefaultArchiveFileBytes = 256 << 20 // records' bytes before compression (~20-40 MiB on disk)
	MinArchiveFileBytes     = 4 << 10
	MaxArchiveFileBytes     = 4 << 30
	DefaultArchiveFileAge   = time.Hour
	MinArchiveFileAge       = 100 * time.Millisecond
	MaxArchiveFileAge       = 7 * 24 * time.Hour
	// archiveClockEvery is how many appends go by between clock reads
	// for rotation by age.
	archiveClockEvery = 1024
)

// ErrArchiveOrder is returned by AppendAt for a position at or below the
// last one archived.
var ErrArchiveOrder = errors.New("sinks: archive: position not after the last archived")

// ArchiveOptions configure OpenArchive.
type ArchiveOptions struct {
	// MaxFileBytes rotates a file once its records (before compression)
	// reach this many bytes. Default DefaultArchiveFileBytes; bounds
	// MinArchiveFileBytes..MaxArchiveFileBytes. It also bounds what a
	// restart re-reads to recover the partial file.
	MaxFileBytes int64
	// MaxFileAge rotates a file this long after its first record, checked
	// every 1024 appends and on Sync. Default an hour; bounds
	// MinArchiveFileAge..MaxArchiveFileAge.
	MaxFileAge time.Duration
	// Level is the zstd level (default zstd.SpeedDefault).
	Level zstd.EncoderLevel
	// Symbols names the events' symbol ids for Append (the engine's
	// table). AppendAt takes the name instead.
	Symbols *codec.SymbolTable
	// Logger reports recovery and rotation problems (default slog.Default()).
	Logger *slog.Logger
}

func (o ArchiveOptions) withDefaults() (ArchiveOptions, error) {
	if o.MaxFileBytes == 0 {
		o.MaxFileBytes = DefaultArchiveFileBytes
	}
	if o.MaxFileAge == 0 {
		o.MaxFileAge = DefaultArchiveFileAge
	}
	if o.MaxFileBytes < MinArchiveFileBytes || o.MaxFileBytes > MaxArchiveFileBytes {
		return o, fmt.Errorf("sinks: archive: MaxFileBytes %d outside %d..%d", o.MaxFileBytes, MinArchiveFileBytes, int64(MaxArchiveFileBytes))
	}
	if o.MaxFileAge < MinArchiveFileAge || o.MaxFileAge > MaxArchiveFileAge {
		return o, fmt.Errorf("sinks: archive: MaxFileAge %s outside %s..%s", o.MaxFileAge, MinArchiveFileAge, MaxArchiveFileAge)
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// ArchiveURL parses archive://DIR[?max_file_bytes=N][&max_file_age=DUR]
// [&level=fastest|default|better|best] (DIR relative as written, e.g.
// archive://data/archive, or absolute: archive:///var/qstream/archive).
// Unknown parameters are errors.
func ArchiveURL(u *url.URL) (dir string, o ArchiveOptions, err error) {
	if u.Scheme != "archive" {
		return "", o, fmt.Errorf("sinks: archive: scheme %q, want archive://DIR", u.Scheme)
	}
	dir = u.Host + u.Path
	if dir == "" {
		return "", o, errors.New("sinks: archive: archive://DIR needs a directory")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", o, fmt.Errorf("sinks: archive: query: %w", err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "max_file_bytes":
			if o.MaxFileBytes, err = strconv.ParseInt(v, 10, 64); err != nil {
				return "", o, fmt.Errorf("sinks: archive: max_file_bytes=%q: %w", v, err)
			}
		case "max_file_age":
			if o.MaxFileAge, err = time.ParseDuration(v); err != nil {
				return "", o, fmt.Errorf("sinks: archive: max_file_age=%q: %w", v, err)
			}
		case "level":
			var ok bool
			if ok, o.Level = zstd.EncoderLevelFromString(v); !ok {
				return "", o, fmt.Errorf("sinks: archive: level=%q: want fastest, default, better or best", v)
			}
		default:
			return "", o, fmt.Errorf("sinks: archive: unknown parameter %q (want max_file_bytes, max_file_age, level)", k)
		}
	}
	_, err = o.withDefaults()
	return dir, o, err
}

// ArchiveStats count what an Archive wrote (since it was opened).
type ArchiveStats struct {
	Events    uint64 // records appended
	Files     uint64 // files completed (rotations, Close, recovery)
	Bytes     uint64 // compressed bytes written
	Recovered uint64 // records recovered from a partial file on open
	Last      uint64 // the last position archived (0: none)
	Durable   uint64 // the last position synced to disk
}

// Archive writes raw input events to rotating zstd-compressed files in a
// directory, in the format feeds/archive.go describes: every record with its
// position, length and CRC-32C, files named by their first and last
// positions. Append, AppendAt, Sync and Close are for one goroutine; the
// counters (Last, Durable, Stats, AppendStatus) may be read from any.
//
// Crash safety: the file being written is <first>.qarc.partial; rotation
// (by size or age) and Close finish the zstd stream, fsync, and rename it to
// <first>-<last>.qarc, then fsync the directory. OpenArchive recovers a
// partial file left by a crash: its records up to the first damaged or
// truncated one are written to a complete file (through a .tmp name) and
// the partial file is removed (renamed to <name>.torn when it was cut), so the archive resumes at Last()+1 with no
// duplicate and, as long as its source still holds what followed (the WAL,
// see FollowWAL), no gap. Sync makes everything appended so far durable
// (it ends a zstd block, so the partial file decodes up to there).
type Archive struct {
	dir  string
	o    ArchiveOptions
	lock io.Closer

	enc     *zstd.Encoder
	f       *os.File
	cw      countWriter
	first   uint64 // first position of the open file (0: none open)
	rawSize int64
	opened  time.Time
	nAppend int

	rec     []byte
	nameBuf []byte
	names   []string
	last    uint64
	err     error // sticky

	// Counters, read by other goroutines (the status line, RetainLSN).
	events, files, bytes, recovered, lastPos, durable atomic.Uint64
}

type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

// OpenArchive opens (creating) the archive in dir, removes leftover .tmp
// files, recovers a partial file, and locks dir against a second writer.
func OpenArchive(dir string, opts ArchiveOptions) (*Archive, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sinks: archive: %w", err)
	}
	lock, err := wal.OSFS{}.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("sinks: archive: %w", err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(o.Level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("sinks: archive: %w", err)
	}
	a := &Archive{dir: dir, o: o, lock: lock, enc: enc, rec: make([]byte, 0, feeds.ArchiveRecordHeader+codec.FrameSize+codec.MaxSymbolLen),
		nameBuf: make([]byte, 0, codec.MaxSymbolLen)}
	a.cw.n = &a.bytes
	if err := a.recover(); err != nil {
		enc.Close()
		lock.Close()
		return nil, err
	}
	return a, nil
}

// recover finds the last archived position and turns a partial file into a
// complete one.
func (a *Archive) recover() error {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return fmt.Errorf("sinks: archive: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.Remove(filepath.Join(a.dir, e.Name())); err != nil {
				return fmt.Errorf("sinks: archive: %w", err)
			}
		}
	}
	files, err := feeds.ListArchive(a.dir)
	if err != nil {
		return err
	}
	var partial []feeds.ArchiveFile
	for _, f := range files {
		if f.Partial {
			partial = append(partial, f)
		} else {
			a.last = max(a.last, f.Last)
		}
	}
	for _, p := range partial {
		if err := a.recoverPartial(p); err != nil {
			return err
		}
	}
	a.lastPos.Store(a.last)
	a.durable.Store(a.last)
	return nil
}

// recoverPartial copies the readable records of p above a.last into a
// complete file and removes p.
func (a *Archive) recoverPartial(p feeds.ArchiveFile) error {
	sc, err := feeds.NewArchiveScanner()
	if err != nil {
		return err
	}
	defer sc.Close()
	var recovered, skipped uint64
	var why error
	if err := sc.Reset(p.Path, p.First); err != nil {
		why = err
	}
	for why == nil {
		r, err := sc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			why = err
			break
		}
		if r.Pos <= a.last {
			skipped++ // finalised before the crash, or a re-run of this recovery
			continue
		}
		if a.f == nil {
			if err := a.create(r.Pos, ".tmp"); err != nil {
				return err
			}
		}
		if _, err := a.enc.Write(r.Raw); err != nil {
			return a.fail(err)
		}
		a.rawSize += int64(len(r.Raw))
		a.last = r.Pos
		recovered++
	}
	if a.f != nil {
		if err := a.finish(); err != nil {
			return err
		}
	}
	// A file that ended cleanly (finished, not yet renamed) goes; a cut
	// one is kept aside as <name>.torn, as the WAL keeps its torn tails.
	kept := ""
	if why == nil {
		err = os.Remove(p.Path)
	} else {
		kept = p.Path + ".torn"
		err = os.Rename(p.Path, kept)
	}
	if err != nil {
		return fmt.Errorf("sinks: archive: %w", err)
	}
	if err := syncDir(a.dir); err != nil {
		return err
	}
	a.recovered.Add(recovered)
	a.o.Logger.Warn("sinks: archive: recovered the partial file of an interrupted run",
		"file", p.Path, "records", recovered, "already_archived", skipped, "ended_at", fmt.Sprint(why), "copy", kept)
	return nil
}

// create starts the file whose first position is first, named
// <first><suffix> until finish renames it.
func (a *Archive) create(first uint64, suffix string) error {
	name := feeds.ArchivePartialName(first)
	if suffix == ".tmp" {
		name += ".tmp"
	}
	f, err := os.OpenFile(filepath.Join(a.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return a.fail(err)
	}
	a.f, a.first, a.rawSize, a.opened, a.nAppend = f, first, 0, time.Now(), 0
	a.cw.w = f
	a.enc.Reset(a.cw)
	a.rec = feeds.AppendArchiveHeader(a.rec[:0], first)
	if _, err := a.enc.Write(a.rec); err != nil {
		return a.fail(err)
	}
	return nil
}

// finish ends the open file's stream, syncs it and renames it complete.
func (a *Archive) finish() error {
	if err := a.enc.Close(); err != nil {
		return a.fail(err)
	}
	if err := a.f.Sync(); err != nil {
		return a.fail(err)
	}
	old := a.f.Name()
	if err := a.f.Close(); err != nil {
		a.f = nil
		return a.fail(err)
	}
	a.f = nil
	if err := os.Rename(old, filepath.Join(a.dir, feeds.ArchiveFileName(a.first, a.last))); err != nil {
		return a.fail(err)
	}
	if err := syncDir(a.dir); err != nil {
		return a.fail(err)
	}
	a.files.Add(1)
	a.durable.Store(a.last)
	a.first = 0
	return nil
}

func (a *Archive) fail(err error) error {
	if a.err == nil {
		a.err = fmt.Errorf("sinks: archive: %w", err)
	}
	return a.err
}

// Append archives ev at position Last()+1, naming its symbol from
// ArchiveOptions.Symbols: the form for `qstream replay`, where the archive
// gets each event the replay reads.
func (a *Archive) Append(ev *codec.Event) error {
	id := int(ev.Symbol)
	if id >= len(a.names) && a.o.Symbols != nil {
		a.names = a.o.Symbols.Names()
	}
	var name string
	if id < len(a.names) {
		name = a.names[id]
	}
	return a.appendAt(a.last+1, ev, name, nil)
}

// AppendAt archives ev at position pos (> Last(); a WAL's LSN) with its
// symbol's name. It does not allocate (after the first file).
func (a *Archive) AppendAt(pos uint64, ev *codec.Event, name []byte) error {
	return a.appendAt(pos, ev, "", name)
}

func (a *Archive) appendAt(pos uint64, ev *codec.Event, name string, nameB []byte) error {
	if a.err != nil {
		return a.err
	}
	if pos <= a.last {
		return fmt.Errorf("%w: %d after %d", ErrArchiveOrder, pos, a.last)
	}
	if a.f == nil {
		if err := a.create(pos, ""); err != nil {
			return err
		}
	}
	if nameB == nil {
		a.nameBuf = append(a.nameBuf[:0], name...)
		nameB = a.nameBuf
	}
	rec := feeds.AppendArchiveRecord(a.rec[:0], pos, ev, nameB)
	a.rec = rec
	if _, err := a.enc.Write(rec); err != nil {
		return a.fail(err)
	}
	a.last = pos
	a.lastPos.Store(pos)
	a.events.Add(1)
	a.rawSize += int64(len(rec))
	a.nAppend++
	if a.rawSize >= a.o.MaxFileBytes {
		return a.finish()
	}
	if a.nAppend%archiveClockEvery == 0 && time.Since(a.opened) >= a.o.MaxFileAge {
		return a.finish()
	}
	return nil
}

// Sync makes every appended record durable (and rotates the open file when
// it is older than MaxFileAge). Call it periodically; FollowWAL does.
func (a *Archive) Sync() error {
	if a.err != nil {
		return a.err
	}
	if a.f == nil {
		return nil
	}
	if time.Since(a.opened) >= a.o.MaxFileAge {
		return a.finish()
	}
	if a.durable.Load() == a.last {
		return nil
	}
	if err := a.enc.Flush(); err != nil {
		return a.fail(err)
	}
	if err := a.f.Sync(); err != nil {
		return a.fail(err)
	}
	a.durable.Store(a.last)
	return nil
}

// Last returns the last archived position (0: none). Last, Durable, Stats
// and AppendStatus are safe to call from any goroutine.
func (a *Archive) Last() uint64 { return a.lastPos.Load() }

// Durable returns the last position known to be on disk.
func (a *Archive) Durable() uint64 { return a.durable.Load() }

// Stats returns the counters.
func (a *Archive) Stats() ArchiveStats {
	return ArchiveStats{Events: a.events.Load(), Files: a.files.Load(), Bytes: a.bytes.Load(),
		Recovered: a.recovered.Load(), Last: a.lastPos.Load(), Durable: a.durable.Load()}
}

// AppendStatus appends " events=N files=N bytes=N" for the status line.
func (a *Archive) AppendStatus(dst []byte) []byte {
	dst = append(dst, " events="...)
	dst = strconv.AppendUint(dst, a.events.Load(), 10)
	dst = append(dst, " files="...)
	dst = strconv.AppendUint(dst, a.files.Load(), 10)
	dst = append(dst, " bytes="...)
	dst = strconv.AppendUint(dst, a.bytes.Load(), 10)
	return dst
}

// Close completes the open file and releases the directory. The archive
// then holds only complete files.
func (a *Archive) Close() error {
	var err error
	if a.f != nil && a.err == nil {
		err = a.finish()
	}
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	a.enc.Close()
	if a.lock != nil {
		a.lock.Close()
		a.lock = nil
	}
	if err == nil {
		err = a.err
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sinks: archive: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sinks: archive: sync %s: %w", dir, err)
	}
	return nil
}
