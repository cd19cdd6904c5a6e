package main

import (
	"qstream/internal/testvectors"

	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// qstream runs the command in-process and returns stdout, stderr and the exit status.
func qstream(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := realMain(args, &out, &errb)
	return out.String(), errb.String(), rc
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/qstream -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("output differs from %s (go test ./cmd/qstream -update, then review the diff):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestReplayGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"ticks_jsonl.golden", []string{"replay", "--input", "testdata/ticks.jsonl", "--indicators", "sma:3,ema:3,rsi:3,vwap,vwap:3", "--emit", "all"}},
		{"ticks_csv.golden", []string{"replay", "--input", "testdata/ticks.csv", "--indicators", "sma:3,ema:3,rsi:3,vwap,vwap:3", "--ema-seed", "first", "--emit", "indicators,stats"}},
		{"ticks_default.golden", []string{"replay", "--input", "testdata/ticks.jsonl", "--format", "jsonl"}},
		{"ticks_windows.golden", []string{"replay", "--input", "testdata/ticks.jsonl", "--emit", "windows",
			"--windows", "tumbling:1s:vwap,tumbling:1s:ohlcv,hopping:1s/500ms:count,sliding:500ms:max,session:200ms:count,count:2:avg:volume,tumbling:1s:p50,tumbling:1s:twap"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, _, rc := qstream(t, tc.args...)
			if rc != 0 {
				t.Fatalf("exit status %d", rc)
			}
			golden(t, tc.golden, out)
		})
	}
}

// TestReplayDeterministic: the same input gives byte-identical output on
// every run and with several shards, written to a file via --output.
func TestReplayDeterministic(t *testing.T) {
	dir := t.TempDir()
	var first []byte
	for i, shards := range []string{"1", "1", "2", "3"} {
		path := filepath.Join(dir, "out"+shards+".jsonl")
		_, _, rc := qstream(t, "replay", "--input", "testdata/ticks.jsonl", "--emit", "indicators", "--shards", shards, "--output", path)
		if rc != 0 {
			t.Fatalf("exit status %d", rc)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Fatal("empty output")
		}
		if i == 0 {
			first = got
		} else if !bytes.Equal(got, first) {
			t.Fatalf("run %d (--shards %s) differs:\n%s\nvs\n%s", i, shards, got, first)
		}
	}
}

// TestReplayBadLines: bad records are reported with their line numbers,
// counted, written to the dead-letter file, and the run succeeds.
func TestReplayBadLines(t *testing.T) {
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
	out, stderr, rc := qstream(t, "replay", "--input", "testdata/ticks.jsonl", "--emit", "stats", "--dlq", dlq)
	if rc != 0 {
		t.Fatalf("exit status %d", rc)
	}
	for _, want := range []string{"line 6: codec: malformed", "line 7: codec: bad_number", "line 8: codec: bad_price", "line 9: codec: bad_volume", "line 10: codec: unknown_kind"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out, `"errors":5,"dlq":5`) {
		t.Errorf("stats: %s", out)
	}
	b, err := os.ReadFile(dlq)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 {
		t.Fatalf("dead-letter file has %d records, want 5:\n%s", len(lines), b)
	}
	if !strings.HasPrefix(lines[0], `{"reason":"malformed","feed":"replay","line":6,`) || !strings.Contains(lines[0], `"raw":"this line is not JSON"`) {
		t.Errorf("first dead letter: %s", lines[0])
	}
}

func TestReplayExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"replay"}, 2, "--input is required"},
		{[]string{"replay", "--input", "testdata/does-not-exist"}, 1, "no such file"},
		{[]string{"replay", "--input", "testdata/ticks.jsonl", "--indicators", "sma:0"}, 2, "--indicators"},
		{[]string{"replay", "--input", "testdata/ticks.jsonl", "--emit", "everything"}, 2, "--emit"},
		{[]string{"replay", "--input", "testdata/ticks.jsonl", "--emit", "patterns"}, 2, "needs --patterns"},
		{[]string{"replay", "--input", "testdata/ticks.jsonl", "--ema-seed", "median"}, 2, "--ema-seed"},
		{[]string{"replay", "--input", "testdata/ticks.jsonl", "--format", "xml"}, 2, "--format"},
		{[]string{"nonsense"}, 2, "unknown command"},
	} {
		_, stderr, rc := qstream(t, tc.args...)
		if rc != tc.rc || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d stderr %q; want exit %d mentioning %q", tc.args, rc, stderr, tc.rc, tc.msg)
		}
	}
}

// TestHelpNamesEveryFlag: each subcommand's help explains every flag.
func TestHelpNamesEveryFlag(t *testing.T) {
	out, _, rc := qstream(t, "--help")
	if rc != 0 || !strings.Contains(out, "replay") || !strings.Contains(out, "run") {
		t.Fatalf("qstream --help: exit %d\n%s", rc, out)
	}
	var rf replayFlags
	var runf runFlags
	for name, fs := range map[string]*flag.FlagSet{"replay": replayFlagSet(&rf, &bytes.Buffer{}), "run": runFlagSet(&runf, &bytes.Buffer{})} {
		_, stderr, rc := qstream(t, name, "--help")
		if rc != 0 {
			t.Fatalf("%s --help: exit %d", name, rc)
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(stderr, "-"+f.Name) || f.Usage == "" {
				t.Errorf("%s --help does not explain -%s", name, f.Name)
			}
		})
	}
}

// TestRunSyntheticCount: qstream run on a finite synthetic feed processes
// every message and prints a summary (WAL, checkpoints and dead letters in a
// temporary directory, not the package's).
func TestRunSyntheticCount(t *testing.T) {
	dir := t.TempDir()
	_, stderr, rc := qstream(t, "run", "--count", "50000", "--rate", "0", "--shards", "2", "--status-interval", "50ms",
		"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "checkpoints"), "--dlq-dir", filepath.Join(dir, "dlq"))
	if rc != 0 {
		t.Fatalf("exit status %d\n%s", rc, stderr)
	}
	if !strings.Contains(stderr, "stopped after") || !strings.Contains(stderr, ": 50000 messages") {
		t.Fatalf("summary missing or wrong:\n%s", stderr)
	}
}

// TestReplayCaptures: the IEX sample pcap and the exchange recordings replay
// through auto-detection with every message accounted for (counts from
// ../shared/testdata/SOURCES.md).
func TestReplayCaptures(t *testing.T) {
	for _, tc := range []struct {
		file, format string
		want         []string
	}{
		{"pcap/iex_tops16_sample.pcap.gz", "auto", []string{`"messages":57674`, `"quote":27217`, `"trade":6390`, `"status":23406`, `"system":658`, `"custom":3`, `"errors":0`}},
		{"pcap/iex_tops16_sample.pcap.gz", "pcap", []string{`"messages":57674`}},
		{"exchange/coinbase_ws_capture.txt", "auto", []string{`"trade":107`, `"quote":107`, `"errors":0`}},
		{"exchange/coinbase_ws_capture.txt", "coinbase", []string{`"trade":107`, `"quote":107`}},
		{"exchange/kraken_trades_ws_capture.txt", "auto", []string{`"errors":0`, `"trade":`}},
	} {
		path := sharedTestdata(t, tc.file)
		out, stderr, rc := qstream(t, "replay", "--input", path, "--format", tc.format, "--emit", "stats")
		if rc != 0 {
			t.Fatalf("%s: exit %d: %s", tc.file, rc, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s --format %s: stats lack %s:\n%s", tc.file, tc.format, w, out)
			}
		}
	}
}

func sharedTestdata(t *testing.T, rel string) string {
	t.Helper()
	path := filepath.Join(testvectors.Dir(), rel)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: the shared testdata directory must sit beside the repository checkout as ../shared/testdata (see its SOURCES.md): %v", rel, err)
	}
	return path
}

// TestReplayWindowsAcrossShards: window results are byte-identical run to
// run for a given --shards, and the same set of lines for any --shards (their
// order follows the shards' merge at equal input positions).
func TestReplayWindowsAcrossShards(t *testing.T) {
	args := func(shards string) []string {
		return []string{"replay", "--input", "testdata/ticks.jsonl", "--emit", "windows", "--shards", shards,
			"--windows", "tumbling:1s:vwap,hopping:1s/500ms:count,sliding:500ms:max,session:200ms:count"}
	}
	sorted := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	one, _, _ := qstream(t, args("1")...)
	for _, n := range []string{"2", "3"} {
		a, _, rc := qstream(t, args(n)...)
		b, _, _ := qstream(t, args(n)...)
		if rc != 0 || a == "" || a != b {
			t.Fatalf("--shards %s: exit %d, runs differ or empty", n, rc)
		}
		if sorted(a) != sorted(one) {
			t.Fatalf("--shards %s gives other window results than --shards 1:\n%s\nvs\n%s", n, a, one)
		}
	}
}
