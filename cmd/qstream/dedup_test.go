package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRunResendsDroppedByOffset: the durable synthetic feed's message ids
// are its offsets, and it says so (engine.PublisherOptions.OffsetIDs), so
// the messages it re-sends after a restart are duplicates whatever the dedup
// horizon: with --dedup-horizon 1 (one id remembered per shard) every one of
// the --resend messages is dead-lettered as a duplicate, and each indicator
// line is in the output once. Judged by id, all but about one of them would
// have passed.
func TestRunResendsDroppedByOffset(t *testing.T) {
	dir := t.TempDir()
	run := func(count, resend string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := []string{"--count", count, "--resend", resend, "--rate", "0", "--seed", "3", "--shards", "2", "--symbols", "20",
			"--max-symbols", "64", "--http", "", "--status-interval", "1h", "--dedup-horizon", "1",
			"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"),
			"--output", filepath.Join(dir, "out.jsonl")}
		if code := cmdRun(args, &stdout, &stderr); code != 0 {
			t.Fatalf("run --count %s: exit %d\n%s", count, code, stderr.String())
		}
	}
	run("20000", "0")
	run("25000", "1000") // resumes after offset 20000, from 19000 on

	var list, stderr bytes.Buffer
	if code := cmdDLQ([]string{"list", "--dir", filepath.Join(dir, "dlq")}, &list, &stderr); code != 0 {
		t.Fatalf("dlq list: exit %d\n%s", code, stderr.String())
	}
	dups := 0
	for _, line := range strings.Split(list.String(), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "duplicate" {
			dups++
		}
	}
	if dups != 1000 {
		t.Fatalf("%d duplicates dead-lettered, want the 1000 resent messages", dups)
	}
	out, err := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^\{"seq":(\d+),"symbol":"([^"]+)"`)
	seen := map[string]bool{}
	lines := 0
	for _, line := range strings.Split(string(out), "\n") {
		if m := key.FindStringSubmatch(line); m != nil {
			lines++
			if seen[m[1]+" "+m[2]] {
				t.Fatalf("indicator line of seq %s %s twice in the output", m[1], m[2])
			}
			seen[m[1]+" "+m[2]] = true
		}
	}
	if lines < 15000 {
		t.Fatalf("%d indicator lines: the runs did not produce their trades' lines", lines)
	}
}
