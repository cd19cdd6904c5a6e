package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
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

	"qstream/checkpoint"
)

// The crash harness: `qstream run` as a separate process over a
// deterministic feed (the seeded synthetic market, --count messages) with
// the WAL on, killed with SIGKILL again and again - at random moments by
// the harness, and at named points by the failpoints compiled into the
// binary (QSTREAM_FAILPOINT: before a WAL write, before a sync, after a sync
// before the acknowledgement, during a checkpoint) - and restarted until it
// completes. Then its output file and final operator state are compared
// with an uninterrupted run's:
//
//   - 0 acknowledged messages lost: each restart resumes after an offset at
//     or past every offset acknowledged (--ack-file) before the kill, and
//     the final output holds every output of the uninterrupted run;
//   - 0 duplicate outputs after key dedup: no two different lines with one
//     output key (for indicator lines: symbol and seq), and no key missing
//     or extra; the file is rewound to each checkpoint's mark by recovery,
//     so even raw duplicates are counted (and expected to be 0);
//   - identical final state: the shard sections of the checkpoint taken when
//     the feed completes (--final-checkpoint) are byte-identical.
//
// Each restart also re-sends the last --resend messages before its resume
// offset (an at-least-once upstream); the dedup set must drop them.
//
// `make test` runs the short form: QSTREAM_CRASH_KILLS (default 5) kills
// over QSTREAM_CRASH_MESSAGES (default 1,000,000) messages, which with the
// 5 of each feed harness (crash_feeds_test.go) makes 20 kills across feeds;
// `make crash-test` runs 50 in each harness, 200 in all. QSTREAM_CRASH_SEED
// repeats a run.
func TestCrashRecovery(t *testing.T) {
	kills := envInt(t, "QSTREAM_CRASH_KILLS", 5)
	messages := envInt(t, "QSTREAM_CRASH_MESSAGES", 1_000_000)
	seed := uint64(envInt(t, "QSTREAM_CRASH_SEED", int(time.Now().UnixNano()&0xFFFFFFF)))
	t.Logf("crash harness: %d kills over %d messages, QSTREAM_CRASH_SEED=%d", kills, messages, seed)
	rng := rand.New(rand.NewPCG(seed, 77))
	bin := qstreamBinary(t)

	refDir := t.TempDir()
	ref := crashRun(t, bin, refDir, messages, "", 0, 0)
	if ref.exit != 0 {
		t.Fatalf("reference run failed (%v):\n%s", ref.err, ref.tail())
	}
	want, wantDups := readCrashOutputs(t, filepath.Join(refDir, "out.jsonl"))
	if wantDups != 0 || len(want) == 0 {
		t.Fatalf("reference run: %d outputs, %d duplicates", len(want), wantDups)
	}
	wantState := finalState(t, refDir, ref.stderr)
	wantEnd := newestState(t, refDir) // Stop's checkpoint: the state after the end of input
	refTook := ref.took
	t.Logf("reference run: %d outputs in %s", len(want), refTook.Round(time.Millisecond))

	byPoint := map[string]int{}
	done := 0
	for cycle := 0; done < kills; cycle++ {
		dir := keepDir(t, fmt.Sprintf("cycle%d", cycle))
		acked := uint64(0)
		var last *procResult
		for inc := 0; ; inc++ {
			if inc > 4*kills+20 {
				t.Fatalf("cycle %d: no completion after %d incarnations", cycle, inc)
			}
			var fp string
			var killAfter time.Duration
			if rng.IntN(2) == 0 && done < kills {
				fp = randomFailpoint(rng)
			} else if done < kills {
				// Anywhere in a run, recovery included.
				killAfter = time.Duration(5+rng.IntN(int(refTook.Milliseconds())+60)) * time.Millisecond
			}
			res := crashRun(t, bin, dir, messages, fp, killAfter, acked)
			last = res
			if inc > 0 {
				// A process killed before it finished recovering prints no
				// resume line, nor one that recovered before any publisher
				// registered; once something was acknowledged it must.
				if res.resumed < 0 && acked > 0 && strings.Contains(res.stderr, "qstream: running:") {
					t.Fatalf("cycle %d incarnation %d: %d acknowledged but no resume offset:\n%s", cycle, inc, acked, res.tail())
				}
				if res.resumed >= 0 && uint64(res.resumed) < acked {
					t.Fatalf("cycle %d incarnation %d: resumed after offset %d, but %d was acknowledged before the kill: acknowledged messages lost",
						cycle, inc, res.resumed, acked)
				}
			}
			acked = max(acked, maxAck(t, filepath.Join(dir, "acks")))
			if res.exit == 0 {
				break
			}
			if !res.killed {
				t.Fatalf("cycle %d incarnation %d: exit %v (failpoint %q), not a kill:\n%s", cycle, inc, res.err, fp, res.tail())
			}
			done++
			if fp != "" && res.failpoint {
				byPoint[strings.SplitN(fp, ":", 2)[0]]++
			} else {
				byPoint["random"]++
			}
		}
		got, dups := readCrashOutputs(t, filepath.Join(dir, "out.jsonl"))
		if dups != 0 {
			t.Errorf("cycle %d: %d duplicate lines in the output (same key, same line)", cycle, dups)
		}
		missing, extra := 0, 0
		for k, h := range want {
			if g, ok := got[k]; !ok {
				missing++
			} else if g != h {
				t.Fatalf("cycle %d: an output differs from the uninterrupted run's (key hash %x)", cycle, k)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				extra++
			}
		}
		if missing != 0 || extra != 0 {
			t.Fatalf("cycle %d: %d outputs missing, %d extra (of %d)", cycle, missing, extra, len(want))
		}
		// The final checkpoint holds the state before the end of input,
		// unless an incarnation was killed after Stop's checkpoint (the state
		// after the end) became durable: the last one then resumes an
		// ended input, and its final checkpoint holds that state.
		gotState := finalState(t, dir, last.stderr)
		if diff := diffStates(gotState, wantState); diff != "" {
			if diffStates(gotState, wantEnd) != "" {
				t.Fatalf("cycle %d: final state differs from the uninterrupted run: %s", cycle, diff)
			}
		}
		if diff := diffStates(newestState(t, dir), wantEnd); diff != "" {
			t.Fatalf("cycle %d: the state after the end of input differs from the uninterrupted run: %s", cycle, diff)
		}
		t.Logf("cycle %d: complete after %d kills so far; outputs and final state identical; last ack %d", cycle, done, acked)
	}
	t.Logf("kills by point: %v", byPoint)
}

// randomFailpoint picks a named crash point and a hit count that a run
// reaches most of the time.
func randomFailpoint(rng *rand.Rand) string {
	points := []struct {
		name string
		max  int
	}{
		{"wal-before-write", 400}, {"wal-before-sync", 400}, {"wal-after-sync", 400},
		{"ack-after-sync", 120}, {"checkpoint-write", 6}, {"checkpoint-rename", 6}, {"checkpoint-prune", 6},
	}
	p := points[rng.IntN(len(points))]
	return fmt.Sprintf("%s:%d", p.name, 1+rng.IntN(p.max))
}

type procResult struct {
	exit      int
	err       error
	killed    bool // ended by SIGKILL
	failpoint bool // a failpoint fired
	resumed   int64
	stderr    string
	took      time.Duration
}

func (r *procResult) tail() string {
	s := r.stderr
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

var resumeRE = regexp.MustCompile(`qstream: resume synthetic after offset (\d+)`)

// crashRun runs `qstream run` once in dir; fp arms a failpoint, killAfter
// > 0 sends SIGKILL after that long.
func crashRun(t *testing.T, bin, dir string, messages int, fp string, killAfter time.Duration, acked uint64) *procResult {
	t.Helper()
	cmd := exec.Command(bin, "run",
		"--count", strconv.Itoa(messages), "--rate", "0", "--seed", "7", "--symbols", "100", "--max-symbols", "256",
		"--shards", "2", "--status-interval", "1h", "--windows", "tumbling:100us:ohlcv,hopping:1ms/250us:vwap,session:50us:count,sliding:200us/50us:max",
		"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"),
		"--checkpoint-interval", "40ms", "--output", filepath.Join(dir, "out.jsonl"),
		"--ack-file", filepath.Join(dir, "acks"), "--ack-every", "4096", "--resend", "1000", "--final-checkpoint")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "QSTREAM_FAILPOINT="+fp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var timer *time.Timer
	if killAfter > 0 {
		timer = time.AfterFunc(killAfter, func() { cmd.Process.Signal(syscall.SIGKILL) })
	}
	hang := time.AfterFunc(3*time.Minute, func() { cmd.Process.Signal(syscall.SIGKILL) })
	err := cmd.Wait()
	took := time.Since(start)
	hang.Stop()
	if timer != nil {
		timer.Stop()
	}
	if took >= 3*time.Minute {
		t.Fatalf("qstream run hung for 3 minutes (failpoint %q):\n%s", fp, stderr.String())
	}
	res := &procResult{err: err, stderr: stderr.String(), resumed: -1, took: took}
	logf, _ := os.OpenFile(filepath.Join(dir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	fmt.Fprintf(logf, "=== failpoint %q kill after %s: %v\n%s", fp, killAfter, err, res.stderr)
	logf.Close()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.killed = true
		}
	} else if err != nil {
		t.Fatal(err)
	}
	res.failpoint = strings.Contains(res.stderr, "failpoint: ")
	if m := resumeRE.FindStringSubmatch(res.stderr); m != nil {
		res.resumed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return res
}

// readCrashOutputs reads an output file: a hash of each line by its output key,
// and how many lines repeat a key with the same content. A torn last line
// (no newline: the process was killed while writing it) is ignored. Two
// different lines with one key fail the test.
//
// The key of an indicator line ({"seq":N,"symbol":S,...}) is its seq and
// symbol, which is what ops.OutputKey hashes (with the process-local symbol
// id); other lines are keyed by their whole content.
func readCrashOutputs(t *testing.T, path string) (map[uint64]uint64, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[uint64]uint64, 1<<20)
	dups := 0
	r := bufio.NewReaderSize(f, 1<<20)
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			t.Fatalf("%s line %d: longer than 1 MiB", path, n)
		}
		if err != nil {
			break // io.EOF, with a torn last line or none
		}
		line = line[:len(line)-1]
		key := line
		if i := bytes.Index(line, []byte(`,"ts":`)); bytes.HasPrefix(line, []byte(`{"seq":`)) && i > 0 {
			key = line[:i]
		}
		k, h := hash64(key), hash64(line)
		if prev, ok := out[k]; ok {
			if prev != h {
				t.Fatalf("%s line %d: two different outputs with one key: %s", path, n, key)
			}
			dups++
		}
		out[k] = h
	}
	return out, dups
}

func hash64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func maxAck(t *testing.T, path string) uint64 {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var m uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, err := strconv.ParseUint(line, 10, 64); err == nil && v > m {
			m = v // a torn last line parses short or not at all: never larger
		}
	}
	return m
}

var finalRE = regexp.MustCompile(`qstream: final checkpoint (\d+) at LSN`)

// finalState returns the shard sections of the checkpoint the completing
// incarnation took when the feed ended.
func finalState(t *testing.T, dir, stderr string) map[string][]byte {
	t.Helper()
	m := finalRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no final checkpoint line:\n%s", stderr)
	}
	id, _ := strconv.ParseUint(m[1], 10, 64)
	path := filepath.Join(dir, "ckpt", fmt.Sprintf("%016x.ckpt", id))
	return shardSections(t, path, stderr)
}

// newestState returns the shard sections of the newest checkpoint in dir:
// after a completed run, the one Stop took after the end of input.
func newestState(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	infos, err := checkpoint.List(filepath.Join(dir, "ckpt"))
	if err != nil || len(infos) == 0 {
		t.Fatalf("no checkpoint in %s: %v", dir, err)
	}
	var newest *checkpoint.Info
	for i, in := range infos {
		if in.Err == nil && (newest == nil || in.ID > newest.ID) {
			newest = &infos[i]
		}
	}
	if newest == nil {
		t.Fatalf("no valid checkpoint in %s: %+v", dir, infos)
	}
	return shardSections(t, newest.Path, "")
}

// diffStates says how two sets of shard sections differ ("" if not).
func diffStates(got, want map[string][]byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d shard sections, want %d", len(got), len(want))
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			return name + ": " + diffShardState(got[name], data)
		}
	}
	return ""
}

func shardSections(t *testing.T, path, stderr string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		infos, _ := checkpoint.List(filepath.Dir(path))
		t.Fatalf("%v; the directory holds %+v; stderr:\n%s", err, infos, stderr)
	}
	ck, err := checkpoint.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, s := range ck.Sections {
		if strings.HasPrefix(s.Name, "shard/") {
			out[s.Name] = s.Data
		}
	}
	return out
}

// diffShardState says which part of two shard sections (engine's
// checkpoint_state.go layout) differs.
func diffShardState(got, want []byte) string {
	le := binary.LittleEndian
	parts := func(b []byte) (wm uint64, dedup, proc []byte) {
		if len(b) < 44 {
			return 0, nil, b
		}
		dl := int(le.Uint32(b[24:]))
		if 32+dl+8 > len(b) {
			return 0, nil, b
		}
		return le.Uint64(b[16:]), b[32 : 32+dl], b[32+dl+8 : len(b)-4]
	}
	gw, gd, gp := parts(got)
	ww, wd, wp := parts(want)
	var d []string
	if gw != ww {
		d = append(d, fmt.Sprintf("watermark %d, want %d", int64(gw), int64(ww)))
	}
	if !bytes.Equal(gd, wd) {
		d = append(d, fmt.Sprintf("dedup set (%d bytes, want %d)", len(gd), len(wd)))
	}
	if !bytes.Equal(gp, wp) {
		first := 0
		for first < min(len(gp), len(wp)) && gp[first] == wp[first] {
			first++
		}
		d = append(d, fmt.Sprintf("processor state (%d bytes, want %d; first difference at byte %d)", len(gp), len(wp), first))
	}
	return strings.Join(d, "; ")
}

// keepDir is t.TempDir, except that with QSTREAM_CRASH_KEEP=1 a failing
// test leaves the directory (WAL, checkpoints, output, stderr.log of every
// incarnation) for inspection.
func keepDir(t *testing.T, name string) string {
	if os.Getenv("QSTREAM_CRASH_KEEP") == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "qstream-crash-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q is not a non-negative integer", name, v)
	}
	return n
}
