package feeds

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"qstream/codec"
)

func TestArchiveNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want ArchiveFile
		ok   bool
	}{
		{ArchiveFileName(1, 0x2a), ArchiveFile{First: 1, Last: 42}, true},
		{ArchivePartialName(43), ArchiveFile{First: 43, Partial: true}, true},
		{"0000000000000001-0000000000000000.qarc", ArchiveFile{}, false}, // last < first
		{"0000000000000001.qarc", ArchiveFile{}, false},
		{"000000000000001-000000000000002a.qarc", ArchiveFile{}, false},
		{"0000000000000001-000000000000002a.qarc.tmp", ArchiveFile{}, false},
		{"xyz.qarc.partial", ArchiveFile{}, false},
	} {
		got, ok := ParseArchiveName(tc.name)
		tc.want.Path = tc.name
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseArchiveName(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if ArchiveFileName(1, 0x2a) != "0000000000000001-000000000000002a.qarc" {
		t.Fatal(ArchiveFileName(1, 0x2a))
	}
}

// archiveStream returns the decompressed stream of a file with n records.
func archiveStream(n int) []byte {
	b := AppendArchiveHeader(nil, 1)
	for i := 1; i <= n; i++ {
		ev := codec.Event{TsNs: int64(i), Seq: uint64(i), Price: float64(i), Volume: 1, Kind: codec.KindTrade, Symbol: 1}
		b = AppendArchiveRecord(b, uint64(i), &ev, []byte("SYM"))
	}
	return b
}

// FuzzArchiveReader: any decompressed stream, compressed and read back,
// gives events or errors, never a panic; every event returned comes from a
// record whose checksum matched.
func FuzzArchiveReader(f *testing.F) {
	f.Add(archiveStream(3))
	f.Add(archiveStream(1)[:40])
	bad := archiveStream(2)
	bad[ArchiveHeaderSize] = 0xff
	f.Add(bad)
	enc, _ := zstd.NewWriter(nil)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, plain []byte) {
		path := filepath.Join(dir, ArchiveFileName(1, 1<<40))
		if err := os.WriteFile(path, enc.EncodeAll(plain, nil), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := OpenArchiveReader(path, ArchiveReaderOptions{Symbols: codec.NewSymbolTable(16)})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var ev codec.Event
		for i := 0; i < 1000; i++ {
			err := r.Next(&ev)
			var re *RecordError
			if err == nil || errors.As(err, &re) {
				continue
			}
			return
		}
	})
}

func TestArchiveReaderEmptyDir(t *testing.T) {
	if _, err := OpenArchiveReader(t.TempDir(), ArchiveReaderOptions{Symbols: codec.NewSymbolTable(1)}); err == nil {
		t.Fatal("an empty directory opened as an archive")
	}
	if IsArchive(t.TempDir()) {
		t.Fatal("an empty directory is an archive")
	}
	var ev codec.Event
	dir := t.TempDir()
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(dir, ArchiveFileName(1, 3)), enc.EncodeAll(archiveStream(3), nil), 0o644)
	r, err := OpenArchiveReader(dir, ArchiveReaderOptions{Symbols: codec.NewSymbolTable(4)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 1; i <= 3; i++ {
		if err := r.Next(&ev); err != nil || ev.Seq != uint64(i) {
			t.Fatalf("event %d: %v %+v", i, err, ev)
		}
	}
	if err := r.Next(&ev); err != io.EOF {
		t.Fatalf("after the last event: %v", err)
	}
}
