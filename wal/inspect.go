package wal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"qstream/codec"
)

// SegmentReport describes one segment file.
type SegmentReport struct {
	Path       string
	FirstLSN   uint64
	LastLSN    uint64 // FirstLSN-1 when the segment holds no record
	Records    int64
	Used       int64 // bytes up to the end of the last good record (or the seal)
	Size       int64 // file size (the preallocated capacity, normally)
	Capacity   int64 // from the header
	MaxRecord  int   // from the header
	Sealed     bool
	Torn       *TornTail        // last segment only: what Open would truncate
	Corruption *CorruptionError // what makes Open refuse; nil if none
}

// Report is what Inspect found in a WAL directory. It is what
// `qstream wal inspect` prints.
type Report struct {
	Dir        string
	Segments   []SegmentReport
	FirstLSN   uint64 // first LSN on disk (0 if no segment)
	LastLSN    uint64 // last complete record (0 if none)
	Records    int64
	Torn       *TornTail        // a torn tail Open would copy aside and truncate
	Corruption *CorruptionError // the first corruption; Open would refuse to start
	TornCopies []string         // copies kept by earlier recoveries
	TempFiles  []string         // unfinished segment creations Open would remove
}

// Inspect scans the WAL in dir without modifying it and reports segments,
// LSN ranges, record counts, a torn tail and corruption by the same rules as
// Open. Damage is reported in the Report; the error is for a directory that
// cannot be read.
func Inspect(dir string) (*Report, error) { return InspectFS(OSFS{}, dir) }

// InspectFS is Inspect on a given file system.
func InspectFS(fs FS, dir string) (*Report, error) {
	ls, err := listDir(fs, dir)
	if err != nil {
		return nil, err
	}
	rep := &Report{Dir: dir, TornCopies: ls.torn, TempFiles: ls.temps}
	var sc scanner
	want := uint64(0)
	for i, s := range ls.segs {
		last := i == len(ls.segs)-1
		f, size, err := openScan(fs, &sc, s.path, os.O_RDONLY, s.first, last, true)
		if err != nil {
			return nil, err
		}
		sc.drain()
		f.Close()
		sr := SegmentReport{Path: s.path, FirstLSN: s.first, LastLSN: sc.expect - 1, Records: sc.records,
			Used: sc.off, Size: size, Capacity: sc.hdr.capacity, MaxRecord: sc.hdr.maxRecord, Sealed: sc.end == endSealed}
		if sc.expect == 0 { // the header was unreadable
			sr.LastLSN = s.first - 1
		}
		if i > 0 && s.first != want {
			sr.Corruption = &CorruptionError{Segment: s.path, Offset: 0, Reason: codec.ReasonSequenceGap, Detail: "segment first LSN does not follow the previous segment"}
		}
		switch sc.end {
		case endCorrupt:
			if sr.Corruption == nil {
				ce := sc.corrupt
				sr.Corruption = &ce
			}
		case endTorn:
			t := sc.torn
			sr.Torn = &t
			rep.Torn = &t
		}
		if sr.Corruption != nil && rep.Corruption == nil {
			rep.Corruption = sr.Corruption
		}
		want = sc.sealNext
		if sc.end != endSealed {
			want = sr.LastLSN + 1
		}
		rep.Records += sr.Records
		rep.Segments = append(rep.Segments, sr)
	}
	if n := len(rep.Segments); n > 0 {
		rep.FirstLSN = rep.Segments[0].FirstLSN
		rep.LastLSN = rep.Segments[n-1].LastLSN
	}
	return rep, nil
}

// WriteText prints the report for people: one line per segment, then the
// torn tail, corruption and leftover files, then the status line
// ("status: ok" or "status: CORRUPT: ..."), the verdict on the WAL alone.
func (r *Report) WriteText(w io.Writer) error {
	if err := r.WriteDetails(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "status: %s\n", map[bool]string{true: "ok", false: "CORRUPT: Open refuses to start"}[r.Corruption == nil])
	return err
}

// WriteDetails is WriteText without the status line, for a caller that
// judges more than the WAL (checkpoints) and writes one verdict for all.
func (r *Report) WriteDetails(w io.Writer) error {
	fmt.Fprintf(w, "wal %s: %d segments, LSN %d..%d, %d records\n", r.Dir, len(r.Segments), r.FirstLSN, r.LastLSN, r.Records)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "segment\tfirst\tlast\trecords\tused\tsize\tstate")
	for _, s := range r.Segments {
		state := "open"
		switch {
		case s.Corruption != nil:
			state = "CORRUPT"
		case s.Torn != nil:
			state = "torn tail"
		case s.Sealed:
			state = "sealed"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", filepath.Base(s.Path), s.FirstLSN, s.LastLSN, s.Records, s.Used, s.Size, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t := r.Torn; t != nil {
		fmt.Fprintf(w, "torn tail: %s at offset %d, %d bytes (%s: %s); Open keeps a copy and truncates it\n", t.Segment, t.Offset, t.Length, t.Reason, t.Detail)
	}
	for _, s := range r.Segments {
		if c := s.Corruption; c != nil {
			fmt.Fprintf(w, "corruption: %v\n", c)
		}
	}
	for _, p := range r.TornCopies {
		fmt.Fprintf(w, "torn copy kept: %s\n", p)
	}
	for _, p := range r.TempFiles {
		fmt.Fprintf(w, "unfinished segment (removed by Open): %s\n", p)
	}
	return nil
}
