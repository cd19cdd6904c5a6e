package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/wal"
)

const walCoinbaseCapture = "../../../shared/testdata/exchange/coinbase_ws_capture.txt"

func needShared(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("shared test data %s is missing (expected beside the repository, see ../shared/testdata/SOURCES.md): %v", path, err)
	}
}

// writeWAL publishes the events of input (read as `qstream replay` reads
// it, numbered by pump) through an engine with a WAL in dir, and returns
// how many events it logged.
func writeWAL(t *testing.T, dir, input, format string) int {
	t.Helper()
	w, err := engine.OpenWAL(dir, wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Config{Shards: 1, Durability: w, Logger: quietLog(),
		Processors: func(int) (engine.Processor, error) { return nopProcessor{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := openReader(format, input, in, codec.ParserOptions{Symbols: e.Symbols()}, walFrom{})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := e.NewPublisher("replay")
	dlq, _, _ := openDLQ("", io.Discard)
	if err := pump(r, pub, dlq, nil); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	e.Stop(context.Background())
	n := int(pub.Published())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

type nopProcessor struct{}

func (nopProcessor) OnEvent(_ *codec.Event, _ int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	return dst, codec.ReasonNone
}
func (nopProcessor) OnWatermark(_ int64, _ uint64, dst []ops.Output) []ops.Output { return dst }

// Replaying a WAL gives byte for byte what replaying the input that filled
// it gives: here the real Coinbase capture and the project's JSONL ticks.
func TestReplayWALMatchesItsInput(t *testing.T) {
	needShared(t, walCoinbaseCapture)
	for _, tc := range []struct{ input, format string }{
		{walCoinbaseCapture, "auto"},
		{"testdata/ticks.jsonl", "jsonl"},
	} {
		dir := filepath.Join(t.TempDir(), "wal")
		n := writeWAL(t, dir, tc.input, tc.format)
		args := []string{"--indicators", "sma:3,ema:5,rsi:3,vwap,vwap:3", "--windows", "tumbling:1s:ohlcv,count:3:avg", "--emit", "indicators,windows"}
		want, stderr, rc := qstream(t, append([]string{"replay", "--input", tc.input, "--format", tc.format}, args...)...)
		if rc != 0 {
			t.Fatalf("replay %s: %d\n%s", tc.input, rc, stderr)
		}
		got, stderr, rc := qstream(t, append([]string{"replay", "--input", dir, "--format", "wal"}, args...)...)
		if rc != 0 {
			t.Fatalf("replay --format wal: %d\n%s", rc, stderr)
		}
		if got != want || len(got) == 0 {
			t.Fatalf("%s: WAL replay differs from the input's (%d events logged):\n got %d bytes\nwant %d bytes", tc.input, n, len(got), len(want))
		}
		auto, _, _ := qstream(t, append([]string{"replay", "--input", dir}, args...)...)
		if auto != want {
			t.Fatalf("%s: --format auto does not recognise the WAL directory", tc.input)
		}
	}
}

func TestReplayWALFromAPoint(t *testing.T) {
	needShared(t, walCoinbaseCapture)
	dir := filepath.Join(t.TempDir(), "wal")
	n := writeWAL(t, dir, walCoinbaseCapture, "auto")
	// The oracle: every event with its LSN (not dense: control records
	// share the log).
	type logged struct {
		lsn uint64
		ts  int64
	}
	var all []logged
	r, err := engine.OpenWALEvents(dir, engine.WALEventsOptions{Symbols: codec.NewSymbolTable(64)})
	if err != nil {
		t.Fatal(err)
	}
	var ev codec.Event
	for r.Next(&ev) == nil {
		all = append(all, logged{r.LSN(), ev.TsNs})
	}
	r.Close()
	if len(all) != n || n < 100 {
		t.Fatalf("%d events read, %d logged", len(all), n)
	}
	messages := func(extra ...string) int {
		out, stderr, rc := qstream(t, append([]string{"replay", "--input", dir, "--format", "wal", "--emit", "stats"}, extra...)...)
		var st struct{ Messages int }
		if rc != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("replay %v: exit %d\n%s%s", extra, rc, out, stderr)
		}
		return st.Messages
	}
	if got := messages(); got != n {
		t.Fatalf("whole WAL: %d messages, want %d", got, n)
	}
	if got := messages("--from-lsn", strconv.FormatUint(all[100].lsn, 10)); got != n-100 {
		t.Fatalf("--from-lsn %d: %d messages, want %d", all[100].lsn, got, n-100)
	}
	// From an event time: the first event at or after it, then the rest in
	// arrival order.
	cut := all[len(all)/2].ts
	first := 0
	for first < len(all) && all[first].ts < cut {
		first++
	}
	if got := messages("--from-time", strconv.FormatInt(cut, 10)); got != n-first {
		t.Fatalf("--from-time %d: %d messages, want %d", cut, got, n-first)
	}
	if got := messages("--from-time", time.Unix(0, cut).UTC().Format(time.RFC3339Nano)); got != n-first {
		t.Fatalf("--from-time as RFC 3339: %d messages, want %d", got, n-first)
	}
	lines := replayEvents(t, dir, "--from-time", strconv.FormatInt(cut, 10))
	if len(lines) == 0 || lines[0].ts < cut {
		t.Fatalf("--from-time: first output %+v before %d", lines, cut)
	}
	if _, stderr, rc := qstream(t, "replay", "--input", dir, "--format", "wal", "--from-lsn", "5", "--from-time", "1"); rc != 2 {
		t.Fatalf("both --from-lsn and --from-time: exit %d\n%s", rc, stderr)
	}
}

type replayed struct {
	symbol string
	ts     int64
	price  float64
}

// replayEvents replays a WAL and returns the indicator lines' identity.
func replayEvents(t *testing.T, dir string, extra ...string) []replayed {
	t.Helper()
	out, stderr, rc := qstream(t, append([]string{"replay", "--input", dir, "--format", "wal", "--indicators", "sma:2", "--emit", "indicators"}, extra...)...)
	if rc != 0 {
		t.Fatalf("replay: %d\n%s", rc, stderr)
	}
	var res []replayed
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var v struct {
			Symbol string  `json:"symbol"`
			Ts     int64   `json:"ts"`
			Price  float64 `json:"price"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		res = append(res, replayed{v.Symbol, v.Ts, v.Price})
	}
	return res
}

func TestWALInspect(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "wal")
	writeWAL(t, dir, "testdata/ticks.jsonl", "jsonl")
	out, stderr, rc := qstream(t, "wal", "inspect", "--records", dir)
	if rc != 0 || !strings.Contains(out, "status: ok") || !strings.Contains(out, "events,") || !strings.Contains(out, "checkpoints: none found") {
		t.Fatalf("inspect: exit %d\n%s\n%s", rc, out, stderr)
	}
	// A flipped bit in the middle of the log: refused, with the segment
	// and offset named.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit in the middle of the log (valid records follow it).
	const flipAt = 600
	b[flipAt] ^= 0x04
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, rc = qstream(t, "wal", "inspect", dir)
	m := regexp.MustCompile(regexp.QuoteMeta(filepath.Base(segs[0])) + ` at offset (\d+): checksum`).FindStringSubmatch(out)
	if rc != 1 || !strings.Contains(out, "CORRUPT") || m == nil || !strings.Contains(out, "valid record follows") {
		t.Fatalf("inspect of a corrupt WAL: exit %d\n%s", rc, out)
	}
	if off, _ := strconv.Atoi(m[1]); off > flipAt || off < 32 || off%8 != 0 {
		t.Fatalf("corruption reported at offset %d for a bit flipped at %d", off, flipAt)
	}
	if _, _, rc := qstream(t, "wal", "inspect"); rc != 2 {
		t.Fatalf("inspect without a directory: exit %d", rc)
	}
}

// qstream run with the WAL: a failed fsync ends the process with status 1
// (never retried), and the next start recovers and completes with the same
// output as a run that never failed.
func TestRunFsyncFailureExitsAndRecovers(t *testing.T) {
	bin := qstreamBinary(t)
	run := func(dir string, env ...string) (string, int) {
		cmd := exec.Command(bin, "run", "--count", "200000", "--rate", "0", "--shards", "1", "--max-symbols", "256",
			"--status-interval", "1h", "--output", "out.jsonl", "--checkpoint-interval", "20ms")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stderr.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stderr.String(), 0
	}
	ref := t.TempDir()
	if s, rc := run(ref); rc != 0 {
		t.Fatalf("reference run: exit %d\n%s", rc, s)
	}
	dir := t.TempDir()
	s, rc := run(dir, "QSTREAM_FAILPOINT=wal-sync-eio:5")
	if rc != 1 || !strings.Contains(s, "fdatasync") || !strings.Contains(s, "never retried; exiting with status 1") {
		t.Fatalf("run with a failing fsync: exit %d\n%s", rc, s)
	}
	s, rc = run(dir)
	if rc != 0 || !strings.Contains(s, "qstream: recovered from") {
		t.Fatalf("restart: exit %d\n%s", rc, s)
	}
	want, _ := os.ReadFile(filepath.Join(ref, "out.jsonl"))
	got, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	if len(want) == 0 || !sameLines(got, want) {
		t.Fatalf("output after the failure and restart (%d bytes) differs from the uninterrupted run's (%d bytes)", len(got), len(want))
	}
	// The data directory is what `make run` leaves: inspect it.
	out, _, rc := qstream(t, "wal", "inspect", filepath.Join(dir, defaultWALDir))
	if rc != 0 || !strings.Contains(out, "recovery would load checkpoint") {
		t.Fatalf("inspect after the run: exit %d\n%s", rc, out)
	}
}

// sameLines compares two JSON Lines outputs as multisets (shards deliver in
// any order).
func sameLines(a, b []byte) bool {
	count := map[string]int{}
	for _, l := range bytes.Split(a, []byte("\n")) {
		count[string(l)]++
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		count[string(l)]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
