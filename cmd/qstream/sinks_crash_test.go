package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashSinksExactlyOnce: `qstream run` with the WAL and three sinks
// (NATS with a JetStream stream, ClickHouse over HTTP, Redis) killed with
// SIGKILL at random moments and restarted on the same data directory until
// its finite feed completes. Each restart recovers every sink's
// unacknowledged outputs from the checkpoint (its carry file and spill) and
// the WAL replay; what a sink wrote twice carries the same key. The NATS
// server is down across two of the kills (and one start). At the end
// every sink holds each output of the --output file exactly once: the
// stream one message per line (payload = the line, Nats-Msg-Id unique),
// ClickHouse one row per indicator line and window line under FINAL with
// the same values, Redis the newest features per symbol.
func TestCrashSinksExactlyOnce(t *testing.T) {
	kills := envInt(t, "QSTREAM_SINK_CRASH_KILLS", 4)
	seed := uint64(envInt(t, "QSTREAM_CRASH_SEED", int(time.Now().UnixNano()&0xFFFFFFF)))
	t.Logf("%d kills, QSTREAM_CRASH_SEED=%d", kills, seed)
	rng := rand.New(rand.NewPCG(seed, 91))
	bin := qstreamBinary(t)
	ns := startNATS(t)
	ns.stream(t, "CRASH")
	db := chDatabase(t)
	rdb := redisClient(t, 12)
	rdb.FlushDB(t.Context())
	dir := t.TempDir()
	// About 2 s of feed per kill (kills land 0.4-2 s into a run), so that
	// the feed completes only after the last one.
	count := strconv.Itoa(max(150_000, 30_000*kills))
	args := []string{"run", "--count", count, "--rate", "15000", "--seed", "11", "--symbols", "30", "--max-symbols", "256",
		"--shards", "2", "--status-interval", "1h", "--windows", "tumbling:100ms:ohlcv,hopping:200ms/100ms:vwap",
		"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"),
		"--checkpoint-interval", "300ms", "--output", filepath.Join(dir, "out.jsonl"),
		"--sink", ns.url() + "?buffer=2048",
		"--sink", "clickhouse+http://" + chHTTPAddr + "/" + db + "?buffer=2048",
		"--sink", "redis://" + redisAddr + "/12?buffer=2048&ttl=1h"} // the check comes after minutes of kills: no key may expire first
	var logs bytes.Buffer
	done, killed := false, 0
	for i := 0; !done; i++ {
		if i > kills+10 {
			t.Fatalf("no completion after %d runs:\n%s", i, tail(logs.String(), 40))
		}
		// The NATS server is down during runs 1 and 2: that sink's outputs
		// wait in its queue and spill when the process is killed, and a
		// run starts with its server down.
		switch i {
		case 1:
			ns.stop()
		case 3:
			ns.start()
		}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var timer *time.Timer
		if killed < kills {
			timer = time.AfterFunc(time.Duration(400+rng.IntN(1600))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
		hang := time.AfterFunc(3*time.Minute, func() { cmd.Process.Signal(syscall.SIGKILL) })
		err := cmd.Wait()
		hang.Stop()
		if timer != nil {
			timer.Stop()
		}
		fmt.Fprintf(&logs, "=== run %d: %v\n%s", i, err, stderr.String())
		var ee *exec.ExitError
		switch {
		case err == nil:
			done = true
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
			killed++
		default:
			t.Fatalf("run %d: %v:\n%s", i, err, tail(stderr.String(), 30))
		}
	}
	if killed < kills {
		t.Fatalf("the feed completed after %d kills, want %d", killed, kills)
	}
	_, raw, torn := readOutputs(t, filepath.Join(dir, "out.jsonl"))
	if torn || len(raw) == 0 {
		t.Fatalf("output: %d lines, torn %v", len(raw), torn)
	}
	if d := diffMultiset(uniqueLines(raw), raw); d != "" {
		t.Fatalf("the output file repeats lines:\n%s", d)
	}

	// NATS: one message per output line.
	msgs := ns.messages(t, "CRASH")
	payloads := make([]string, len(msgs))
	ids := map[string]bool{}
	for i, m := range msgs {
		payloads[i] = m.data
		if ids[m.id] {
			t.Fatalf("Nats-Msg-Id %s twice", m.id)
		}
		ids[m.id] = true
	}
	if d := diffMultiset(payloads, raw); d != "" {
		t.Fatalf("stream: %d messages, output %d lines; differences:\n%s", len(payloads), len(raw), d)
	}

	// ClickHouse: one row per line under FINAL, with the line's values.
	ind := indicatorLines(t, raw)
	rows := chRows(t, "SELECT symbol, ts, price, volume, seq FROM "+db+".qstream_indicators FINAL")
	if len(rows) != len(ind) {
		t.Fatalf("ClickHouse: %d indicator rows under FINAL, output %d indicator lines", len(rows), len(ind))
	}
	for _, r := range rows {
		k := fmt.Sprint(r["symbol"], "/", r["seq"])
		l, ok := ind[k]
		if !ok {
			t.Fatalf("ClickHouse row %v is not an output line", r)
		}
		if num(t, r["ts"]) != num(t, l["ts"]) || num(t, r["price"]) != num(t, l["price"]) || num(t, r["volume"]) != num(t, l["volume"]) {
			t.Fatalf("ClickHouse row %v, output line %v", r, l)
		}
	}
	if n, w := chCount(t, "SELECT count() FROM "+db+".qstream_windows FINAL"), countKind(raw, `{"window":`); n != w {
		t.Fatalf("ClickHouse: %d window rows under FINAL, output %d window lines", n, w)
	}

	// Redis: the features of every symbol are its newest indicator line.
	checkRedisFeatures(t, rdb, ind, time.Hour) // ttl=1h
	t.Logf("%d kills; %d output lines: %d stream messages, %d ClickHouse indicator rows", killed, len(raw), len(msgs), len(rows))
}

func uniqueLines(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// num reads a JSON number or a quoted one (ClickHouse quotes 64-bit
// integers in JSON) as a float64.
func num(t *testing.T, v any) float64 {
	t.Helper()
	s := strings.Trim(fmt.Sprint(v), `"`)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("not a number: %v", v)
	}
	return f
}

// TestRunArchiveAcrossCrashes: `qstream run --sink archive://DIR` killed
// twice with SIGKILL and restarted until its finite feed completes archives
// every event once: `qstream replay --format archive` of that archive gives
// byte-identical output to the replay of an uninterrupted run's archive.
func TestRunArchiveAcrossCrashes(t *testing.T) {
	bin := qstreamBinary(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	archiveOf := func(kills int) string {
		dir := t.TempDir()
		args := []string{"run", "--count", "60000", "--rate", "20000", "--seed", "3", "--symbols", "20", "--status-interval", "1h",
			"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"),
			"--checkpoint-interval", "200ms", "--sink", "archive://" + filepath.Join(dir, "archive") + "?max_file_bytes=65536"}
		killed := 0
		for i := 0; ; i++ {
			if i > kills+5 {
				t.Fatalf("no completion after %d runs", i)
			}
			cmd := exec.Command(bin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if killed < kills {
				time.AfterFunc(time.Duration(300+rng.IntN(1200))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if err == nil {
				break
			}
			if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
				killed++
				continue
			}
			t.Fatalf("run %d: %v\n%s", i, err, tail(stderr.String(), 20))
		}
		if killed < kills {
			t.Fatalf("completed after %d kills, want %d", killed, kills)
		}
		return filepath.Join(dir, "archive")
	}
	want, _, rc := qstream(t, "replay", "--format", "archive", "--input", archiveOf(0), "--emit", "indicators,stats")
	if rc != 0 || !strings.Contains(want, `"messages":60000`) {
		t.Fatalf("replay of the uninterrupted run's archive: exit %d, stats %s", rc, tail(want, 1))
	}
	got, stderr, rc := qstream(t, "replay", "--format", "archive", "--input", archiveOf(2), "--emit", "indicators,stats")
	if rc != 0 {
		t.Fatalf("replay of the crashed run's archive: exit %d\n%s", rc, stderr)
	}
	if got != want {
		t.Fatalf("the archive of a run killed twice replays differently (%d vs %d bytes): stats %s vs %s",
			len(got), len(want), tail(got, 1), tail(want, 1))
	}
}

// TestRunSinkSpillDiskFull: a sink whose server is down spills to a disk
// that fills up. The run stops with status 1 and an error naming the spill
// file and ENOSPC (nothing is dropped silently; the WAL keeps the input);
// once the disk has room and the server is up, the restart recovers and the
// sink delivers every output of the --output file exactly once.
func TestRunSinkSpillDiskFull(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "sinkdisk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, disk, "1m")
	ns := startNATS(t)
	ns.stop() // down: the sink spills
	out := filepath.Join(dir, "out.jsonl")
	args := outputRunArgs(dir, "--count", "60000", "--rate", "20000", "--seed", "7", "--symbols", "10", "--checkpoint-interval", "100ms",
		"--output", out, "--sink-dir", disk, "--sink", ns.url()+"?buffer=1024")
	s, rc := runBinary(t, dir, time.Minute, args...)
	if rc == 0 || !strings.Contains(s, "spill") || !strings.Contains(s, disk) || !strings.Contains(s, syscall.ENOSPC.Error()) {
		t.Fatalf("run with a full spill disk: exit %d, want non-zero with an error naming the spill in %s and %q:\n%s", rc, disk, syscall.ENOSPC.Error(), tail(s, 20))
	}
	t.Logf("full spill disk: exit %d: %s", rc, tail(s, 2))
	if b, err := exec.Command("mount", "-o", "remount,size=256m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, b)
	}
	ns.start()
	ns.stream(t, "SPILL")
	s, rc = runBinary(t, dir, 2*time.Minute, args...)
	if rc != 0 || !strings.Contains(s, "qstream: recovered from") {
		t.Fatalf("restart with space: exit %d\n%s", rc, tail(s, 20))
	}
	t.Logf("restart: %s", regexp.MustCompile(`qstream: recovered from[^\n]*`).FindString(s))
	_, raw, torn := readOutputs(t, out)
	if torn || len(raw) == 0 {
		t.Fatalf("output: %d lines, torn %v", len(raw), torn)
	}
	msgs := ns.messages(t, "SPILL")
	payloads := make([]string, len(msgs))
	for i, m := range msgs {
		payloads[i] = m.data
	}
	if d := diffMultiset(payloads, raw); d != "" {
		t.Fatalf("stream: %d messages, output %d lines:\n%s", len(payloads), len(raw), d)
	}
}
