package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"qstream/codec"
	"qstream/feeds"
	"qstream/sinks"
)

// archiveCapture archives the events `qstream replay` reads from input, as
// the archive sink of a replay gets them (Append per event), in files of
// at most 64 KiB of records so that the archive spans several.
func archiveCapture(t *testing.T, dir, input, format string) int {
	t.Helper()
	symbols := codec.NewSymbolTable(1 << 16)
	a, err := sinks.OpenArchive(dir, sinks.ArchiveOptions{MaxFileBytes: 64 << 10, Symbols: symbols, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := openReader(format, input, in, codec.ParserOptions{Symbols: symbols}, walFrom{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ev codec.Event
	n := 0
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		var re *feeds.RecordError
		if errors.As(err, &re) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Append(&ev); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// archiveWAL archives a WAL written from input as `qstream run` does:
// following the WAL (offline here: the writer is closed).
func archiveWAL(t *testing.T, dir, input, format string) int {
	t.Helper()
	walDir := t.TempDir()
	n := writeWAL(t, walDir, input, format)
	a, err := sinks.OpenArchive(dir, sinks.ArchiveOptions{MaxFileBytes: 64 << 10, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // archive what is there, then return
	if err := sinks.FollowWAL(ctx, walDir, a, sinks.FollowOptions{Logger: quietLog()}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats().Events; got != uint64(n) {
		t.Fatalf("archived %d of the WAL's %d events", got, n)
	}
	return n
}

// TestReplayArchiveMatchesCapture: `qstream replay --format archive` of an
// archive of a real capture writes byte-identical output to `qstream
// replay` of the capture itself, whether the archive was made from the
// events a replay read or by following the WAL of a run; the archive spans
// several files, and a directory is detected without --format.
func TestReplayArchiveMatchesCapture(t *testing.T) {
	flags := []string{"--emit", "indicators,windows", "--indicators", "sma:5,ema:12,rsi:14,vwap,vwap:14",
		"--windows", "tumbling:1s:ohlcv,sliding:5s:vwap,count:10:avg:volume"}
	for _, tc := range []struct{ file, format string }{
		{"exchange/coinbase_ws_capture.txt", "auto"},
		{"exchange/kraken_trades_ws_capture.txt", "auto"},
		{"pcap/iex_tops16_sample.pcap.gz", "pcap"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			input := sharedTestdata(t, tc.file)
			want, stderr, rc := qstream(t, append([]string{"replay", "--input", input, "--format", tc.format}, flags...)...)
			if rc != 0 || len(want) == 0 {
				t.Fatalf("replay of the capture: exit %d, %d bytes: %s", rc, len(want), stderr)
			}
			fromReplay, fromWAL := t.TempDir(), t.TempDir()
			n := archiveCapture(t, fromReplay, input, tc.format)
			if m := archiveWAL(t, fromWAL, input, tc.format); m != n {
				t.Fatalf("the WAL holds %d events, the replay read %d", m, n)
			}
			for _, c := range []struct {
				dir  string
				args []string
			}{
				{fromReplay, []string{"--format", "archive"}},
				{fromWAL, nil}, // auto-detected
			} {
				files, _ := feeds.ListArchive(c.dir)
				if len(files) < 2 && n > 1000 {
					t.Fatalf("%d events in %d archive files: no rotation", n, len(files))
				}
				got, stderr, rc := qstream(t, append(append([]string{"replay", "--input", c.dir}, c.args...), flags...)...)
				if rc != 0 {
					t.Fatalf("replay of the archive: exit %d: %s", rc, stderr)
				}
				if got != want {
					t.Fatalf("replay of the archive %s (%d files) differs from the capture's:\n%s", c.dir, len(files), firstDiff(got, want))
				}
				var size int64
				for _, f := range files {
					if fi, err := os.Stat(f.Path); err == nil {
						size += fi.Size()
					}
				}
				t.Logf("%s: %d events in %d archive files (%.1f bytes/event compressed), %d output bytes identical", c.dir, n, len(files), float64(size)/float64(n), len(got))
			}
		})
	}
}

// firstDiff describes the first differing line.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got %s\nwant %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}

// TestReplayArchiveDamagedRecord: a damaged record is reported on stderr
// with its file and offset, counted as an error, and the replay goes on.
func TestReplayArchiveDamagedRecord(t *testing.T) {
	input := sharedTestdata(t, "exchange/coinbase_ws_capture.txt")
	dir := t.TempDir()
	n := archiveCapture(t, dir, input, "auto")
	files, _ := feeds.ListArchive(dir)
	f := files[0]
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(raw, nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	off := feeds.ArchiveHeaderSize // the first record
	plain[off+feeds.ArchiveRecordHeader+40] ^= 1
	enc, _ := zstd.NewWriter(nil)
	if err := os.WriteFile(f.Path, enc.EncodeAll(plain, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, rc := qstream(t, "replay", "--input", dir, "--format", "archive", "--emit", "stats")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	want := fmt.Sprintf("archive %s: offset %d: record checksum mismatch", f.Path, off)
	if !strings.Contains(stderr, want) {
		t.Fatalf("stderr lacks %q:\n%s", want, stderr)
	}
	if !strings.Contains(out, `"errors":1`) || !strings.Contains(out, fmt.Sprintf(`"messages":%d`, n-1)) {
		t.Fatalf("stats %s, want 1 error and %d messages", out, n-1)
	}
}
