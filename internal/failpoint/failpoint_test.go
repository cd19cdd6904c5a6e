package failpoint

import (
	"os"
	"path/filepath"
	"testing"

	"qstream/wal"
)

func withFakeKill(t *testing.T) *int {
	t.Helper()
	n := 0
	old := kill
	kill = func() { n++ }
	t.Cleanup(func() { kill = old; Disarm() })
	return &n
}

func TestParseArmsAtNthHit(t *testing.T) {
	kills := withFakeKill(t)
	if err := Parse("wal-before-sync:3, ack-after-sync"); err != nil {
		t.Fatal(err)
	}
	if !WALBeforeSync.Armed() || !AckAfterSync.Armed() || WALAfterSync.Armed() {
		t.Fatal("wrong points armed")
	}
	WALAfterSync.Hit() // unarmed: never counts
	for i := 1; i <= 2; i++ {
		WALBeforeSync.Hit()
		if *kills != 0 {
			t.Fatalf("killed at hit %d, want at 3", i)
		}
	}
	WALBeforeSync.Hit()
	if *kills != 1 {
		t.Fatalf("kills = %d after the 3rd hit, want 1", *kills)
	}
	WALBeforeSync.Hit() // past N: no second kill
	if *kills != 1 || WALBeforeSync.Hits() != 4 {
		t.Fatalf("kills %d hits %d, want 1 and 4", *kills, WALBeforeSync.Hits())
	}
	AckAfterSync.Hit() // default count 1
	if *kills != 2 {
		t.Fatalf("ack-after-sync:1 did not fire")
	}
	if WALAfterSync.Hits() != 0 {
		t.Fatal("an unarmed point counted a hit")
	}
}

func TestErrorPointFailsOnce(t *testing.T) {
	kills := withFakeKill(t)
	if err := Parse("wal-sync-eio:2"); err != nil {
		t.Fatal(err)
	}
	got := []bool{WALSyncEIO.Fail(), WALSyncEIO.Fail(), WALSyncEIO.Fail()}
	WALSyncEIO.Hit()
	if got[0] || !got[1] || got[2] || *kills != 0 {
		t.Fatalf("Fail sequence %v, kills %d; want false true false and no kill", got, *kills)
	}
}

func TestParseRejects(t *testing.T) {
	withFakeKill(t)
	for _, bad := range []string{"nope:1", "wal-before-sync:0", "wal-before-sync:x", "wal-before-sync:-2"} {
		if err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if err := Parse(""); err != nil || Any() {
		t.Fatalf("empty spec: err %v, armed %v", err, Any())
	}
}

// The FS wrapper fires the WAL points around segment writes and syncs and
// the checkpoint points around checkpoint files, and nowhere else.
func TestFSFiresWhereFilesAreWritten(t *testing.T) {
	kills := withFakeKill(t)
	if err := Parse("wal-before-write:1,wal-before-sync:1,wal-after-sync:1,checkpoint-write:1,checkpoint-rename:1"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fs := FS(wal.OSFS{})
	other, err := fs.OpenFile(filepath.Join(dir, "x.txt"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	other.WriteAt([]byte("abc"), 0)
	other.Datasync()
	other.Close()
	if *kills != 0 {
		t.Fatal("a point fired on an unrelated file")
	}
	seg, err := fs.OpenFile(filepath.Join(dir, "0000000000000001.wal"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	seg.WriteAt([]byte("abc"), 0) // a segment header
	if *kills != 0 {
		t.Fatal("a segment header write fired wal-before-write")
	}
	seg.WriteAt([]byte("abc"), 32)
	if *kills != 1 || WALBeforeWrite.Hits() != 1 {
		t.Fatalf("segment write: kills %d", *kills)
	}
	seg.Datasync()
	if *kills != 3 {
		t.Fatalf("segment sync: kills %d, want 3 (before and after)", *kills)
	}
	seg.Close()
	tmp := filepath.Join(dir, "0000000000000001.ckpt.tmp")
	ck, err := fs.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ck.WriteAt([]byte("0123456789"), 0); n != 10 || err != nil {
		t.Fatalf("checkpoint write: %d %v", n, err)
	}
	ck.Close()
	if *kills != 4 {
		t.Fatalf("checkpoint write: kills %d", *kills)
	}
	if b, _ := os.ReadFile(tmp); string(b) != "0123456789" {
		t.Fatalf("split write wrote %q", b)
	}
	if err := fs.Rename(tmp, filepath.Join(dir, "0000000000000001.ckpt")); err != nil {
		t.Fatal(err)
	}
	if *kills != 5 {
		t.Fatalf("checkpoint rename: kills %d", *kills)
	}
}

func BenchmarkHitDisarmed(b *testing.B) {
	Disarm()
	for i := 0; i < b.N; i++ {
		WALBeforeWrite.Hit()
	}
}
