package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/config"
)

// TestConfigCheck: `qstream config check` prints "FILE: ok (N streams)"
// with status 0, or the located errors with status 2; `config example`
// prints a file that checks.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		args           []string
		rc             int
		stdout, stderr string
	}{
		{[]string{"config", "check", "../../examples/qstream.yaml"}, 0, "../../examples/qstream.yaml: ok (1 stream)\n", ""},
		{[]string{"config", "check", "../../examples/minimal.yaml"}, 0, "../../examples/minimal.yaml: ok (1 stream)\n", ""},
		{[]string{"config", "check", "../../examples/streams.yaml"}, 0, "../../examples/streams.yaml: ok (2 streams)\n", ""},
		{[]string{"config", "check", write("two.yaml", "streams: [{name: a, parallelism: 1}, {name: b, parallelism: 1}]\n")}, 0, "two.yaml: ok (2 streams)\n", ""},
		{[]string{"config", "check", write("twoshards.yaml", "streams: [{name: a}, {name: b, parallelism: 1}]\n")}, 2, "", "twoshards.yaml: streams: stream \"b\": parallelism (--shards) is 1, but the streams share the engine of the first stream, which has 0\n"},
		{[]string{"config", "check", write("bad.yaml", "streams:\n  - name: a\n    windows: [tumbling:1m:avg, \"tumbling:0s:vwap\"]\n    sinks: [\"redis://h:6379/x\"]\n")}, 2, "",
			"bad.yaml:3: streams[0].windows[1]: \"tumbling:0s:vwap\": size: duration \"0s\" outside 1ns..366d\n" +
				"bad.yaml:4: streams[0].sinks[0]: sinks: redis: redis://h:6379/x: database \"x\" is not a number in 0..65536\n"},
		{[]string{"config", "check", filepath.Join(dir, "missing.yaml")}, 2, "", "missing.yaml: open "},
		{[]string{"config", "check", write("empty.yaml", "")}, 2, "", "empty.yaml: empty file: want a mapping with at least streams"},
		// Caught by run's own checks after the file's: the pipeline refuses
		// the state this many windows per symbol would take.
		{[]string{"config", "check", write("state.yaml", "max_symbols: 100000000\nstreams: [{windows: [\"sliding:1h:p99\"], window_options: {max_buffered: 100000000}}]\n")}, 2, "", "state.yaml: streams[0] (stream-1): "},
		{[]string{"config", "check"}, 2, "", "Usage:"},
		{[]string{"config", "frobnicate"}, 2, "", `qstream config: unknown subcommand "frobnicate"`},
		{[]string{"config"}, 2, "", "Usage:"},
	} {
		stdout, stderr, rc := qstream(t, tc.args...)
		stdout = strings.ReplaceAll(stdout, dir+"/", "")
		stderr = strings.ReplaceAll(stderr, dir+"/", "")
		if rc != tc.rc || stdout != tc.stdout || !strings.HasPrefix(stderr, tc.stderr) || (tc.stderr == "" && stderr != "") {
			t.Errorf("qstream %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr beginning %q",
				strings.Join(tc.args, " "), rc, stdout, stderr, tc.rc, tc.stdout, tc.stderr)
		}
	}
	stdout, _, rc := qstream(t, "config", "example")
	if rc != 0 || stdout != config.Example {
		t.Fatalf("config example: exit %d, output differs from config.Example", rc)
	}
	// The example through standard input, as `qstream config example |
	// qstream config check -`.
	cmd := exec.Command(qstreamBinary(t), "config", "check", "-")
	cmd.Stdin = strings.NewReader(stdout)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "<stdin>: ok (1 stream)\n" {
		t.Fatalf("config check - < example: %v: %s", err, out)
	}
	cmd = exec.Command(qstreamBinary(t), "config", "check", "-")
	cmd.Stdin = strings.NewReader("streams:\n  - bogus: 1\n")
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.HasPrefix(string(out), "<stdin>:2: streams[0].bogus: unknown field") {
		t.Fatalf("config check - < bad: %v: %s", err, out)
	}
}

// TestConfigDefaultsAreTheFlags: each default of the configuration is the
// default of the run flag it maps to, so leaving a field out of the file
// and leaving the flag off the command line are the same.
func TestConfigDefaultsAreTheFlags(t *testing.T) {
	fs := runFlagSet(&runFlags{}, io.Discard)
	c, s := config.Default(), config.DefaultStream()
	eh := s.ErrorHandling
	wo := s.WindowOptions
	dur := func(d time.Duration) string { return d.String() }
	itoa := strconv.Itoa
	for flag, want := range map[string]string{
		"wait": c.Wait, "pin": c.Pin, "max-symbols": itoa(c.MaxSymbols), "dedup-horizon": itoa(c.DedupHorizon),
		"wal-dir": c.WAL.Dir, "sync": c.WAL.Sync, "group-records": itoa(c.WAL.GroupRecords), "group-interval": dur(c.WAL.GroupInterval),
		"checkpoint-dir": c.Checkpoint.Dir, "final-checkpoint": "false", "sink-dir": c.SinkDir, "sink-drain": dur(c.SinkDrain),
		"status-interval": dur(c.StatusInterval), "duration": dur(c.Duration),
		"mode": s.ProcessingMode, "shards": itoa(s.Parallelism), "batch-size": itoa(s.BatchSize), "batch-timeout": dur(s.MaxLatency),
		"checkpoint-interval": dur(s.CheckpointInterval), "dlq-dir": eh.DeadLetterDir, "dlq-nats-url": eh.NATSURL, "dlq-nats-subject": eh.NATSSubject,
		"out-of-orderness": dur(s.EventTime.OutOfOrderness), "allowed-lateness": dur(s.EventTime.AllowedLateness), "idle-timeout": dur(s.EventTime.IdleTimeout),
		"indicators": strings.Join(s.Indicators, ","), "ema-seed": s.IndicatorOptions.EMASeed,
		"vwap-session": dur(s.IndicatorOptions.VWAPSession), "vwap-session-offset": dur(s.IndicatorOptions.VWAPSessionOffset),
		"windows": strings.Join(s.Windows, ","), "window-emit": wo.Emit, "early-every-n": itoa(wo.EarlyEveryN), "early-every": dur(wo.EarlyEvery),
		"max-open-windows": itoa(wo.MaxOpen), "max-buffered": itoa(wo.MaxBuffered), "percentile-exact-max": itoa(wo.PercentileExactMax),
		"symbol-ttl": dur(wo.SymbolTTL), "patterns": s.PatternsFile, "pattern-max-trades": itoa(s.PatternMaxTrades),
		"movements": strings.Join(s.Movements, ","), "movement-max-trades": itoa(s.MovementMaxTrades),
		"news-entities": s.News.Entities, "news-lexicon": s.News.Lexicon, "news-events": s.News.Events,
		"emit": strings.Join(s.Emit, ","), "output": s.Output,
		"dashboard": strconv.FormatBool(c.HTTP.Dashboard), "stop-timeout": dur(c.HTTP.StopTimeout),
	} {
		fl := fs.Lookup(flag)
		if fl == nil {
			t.Errorf("no run flag --%s", flag)
			continue
		}
		if fl.DefValue != want {
			t.Errorf("--%s: flag default %q, configuration default %q", flag, fl.DefValue, want)
		}
	}
	// The feeds' defaults, through a file that names every feed.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.pcap"), nil, 0o644)
	p := filepath.Join(dir, "feeds.yaml")
	os.WriteFile(p, []byte(`streams:
  - source:
      synthetic:
      tcp: {addr: "127.0.0.1:0"}
      ws: {url: "wss://x", exchange: kraken}
      webhook: {addr: "127.0.0.1:0"}
      jetstream: {stream: S, subject_prefix: s, partitions: 1}
      pcap: {path: c.pcap}
`), 0o644)
	cf, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := cf.RunArgs(0)
	want := []string{"--feed=synthetic,tcp,ws,webhook,jetstream,pcap", "--tcp-addr=127.0.0.1:0", "--ws-url=wss://x", "--ws-exchange=kraken",
		"--webhook-addr=127.0.0.1:0", "--js-stream=S", "--js-subject-prefix=s", "--js-partitions=1", "--pcap=" + filepath.Join(dir, "c.pcap")}
	if !slices.Equal(args, want) {
		t.Fatalf("a file of feed defaults gives flags other than the required ones:\n%q\nwant\n%q", args, want)
	}
}

// TestConfigEmitNames: the emit values the file accepts are run's.
func TestConfigEmitNames(t *testing.T) {
	for _, e := range config.EmitNames {
		if _, err := parseEmit(e); err != nil {
			t.Errorf("config accepts emit %q, run does not: %v", e, err)
		}
	}
	if _, err := parseEmit("stats"); err != nil || slices.Contains(config.EmitNames, "stats") {
		t.Error("stats is replay's, not run's")
	}
}

// runArgsIn returns run flags that keep a run's state and output in dir;
// one shard, so that the order of the output lines is the input's (with
// several, lines of different shards interleave differently from run to
// run).
func runArgsIn(dir string) []string {
	return []string{"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"),
		"--dlq-dir", filepath.Join(dir, "dlq"), "--status-interval", "1h", "--shards", "1", "--output", filepath.Join(dir, "out.jsonl")}
}

// runOutput runs `qstream run args` in-process and fails the test unless it
// exits 0.
func runOutput(t *testing.T, args ...string) {
	t.Helper()
	_, stderr, rc := qstream(t, append([]string{"run"}, args...)...)
	if rc != 0 {
		t.Fatalf("qstream run %s: exit %d\n%s", strings.Join(args, " "), rc, stderr)
	}
}

// TestRunConfigSameOutput: `run --config examples/minimal.yaml --count N`
// writes the same output as the flags that say the same.
func TestRunConfigSameOutput(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	runOutput(t, append([]string{"--config", "../../examples/minimal.yaml", "--count", "20000"}, runArgsIn(a)...)...)
	runOutput(t, append([]string{"--feed", "synthetic", "--symbols", "10", "--rate", "0", "--windows", "tumbling:1s:ohlcv", "--count", "20000"}, runArgsIn(b)...)...)
	outA, outB := readFile(t, filepath.Join(a, "out.jsonl")), readFile(t, filepath.Join(b, "out.jsonl"))
	if len(outA) == 0 || !bytes.Contains(outA, []byte(`"window":"tumbling:1s:ohlcv"`)) || !bytes.Contains(outA, []byte(`"sma_5"`)) {
		t.Fatalf("run --config wrote %d bytes without windows and indicators", len(outA))
	}
	if !bytes.Equal(outA, outB) {
		t.Fatalf("run --config and the equivalent flags differ: %d and %d bytes", len(outA), len(outB))
	}
	// Without --config the file's settings are not there: the embedded
	// defaults (100 symbols, no windows).
	c := t.TempDir()
	runOutput(t, append([]string{"--count", "2000", "--rate", "0"}, runArgsIn(c)...)...)
	if outC := readFile(t, filepath.Join(c, "out.jsonl")); bytes.Contains(outC, []byte(`"window"`)) {
		t.Fatal("run without --config has windows")
	}
}

// TestRunConfigOverrides: a flag after --config overrides the file's value;
// a flag before it is overridden by the file.
func TestRunConfigOverrides(t *testing.T) {
	a := t.TempDir()
	runOutput(t, append([]string{"--config", "../../examples/minimal.yaml", "--count", "5000", "--windows", "count:100:sum", "--indicators", ""}, runArgsIn(a)...)...)
	out := readFile(t, filepath.Join(a, "out.jsonl"))
	if !bytes.Contains(out, []byte(`"window":"count:100:sum"`)) || bytes.Contains(out, []byte(`tumbling:1s:ohlcv`)) || bytes.Contains(out, []byte(`"sma_5"`)) {
		t.Fatalf("--windows and --indicators after --config did not replace the file's:\n%.300s", out)
	}
	b := t.TempDir()
	runOutput(t, append([]string{"--windows", "count:100:sum", "--config", "../../examples/minimal.yaml", "--count", "5000"}, runArgsIn(b)...)...)
	out = readFile(t, filepath.Join(b, "out.jsonl"))
	if !bytes.Contains(out, []byte(`tumbling:1s:ohlcv`)) || bytes.Contains(out, []byte(`count:100:sum`)) {
		t.Fatal("--windows before --config was not replaced by the file's windows")
	}
}

// TestRunConfigInlinePatterns: inline patterns run as the same list in a
// --patterns file does, and their temporary file is removed at the end.
func TestRunConfigInlinePatterns(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	patterns := "- {id: up, type: technical_signal, signal: sma_cross, fast: 5, slow: 20}\n- {id: vol, type: volume_spike, multiplier: 1.5, baseline: 2s}\n"
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(patterns), 0o644)
	cfg := "streams:\n  - source:\n      synthetic: {symbols: 5, rate: 0, seed: 3}\n    emit: [patterns]\n    patterns:\n" +
		"      " + strings.ReplaceAll(strings.TrimSpace(patterns), "\n", "\n      ") + "\n"
	os.WriteFile(filepath.Join(dir, "q.yaml"), []byte(cfg), 0o644)
	a, b := t.TempDir(), t.TempDir()
	runOutput(t, append([]string{"--config", filepath.Join(dir, "q.yaml"), "--count", "20000"}, runArgsIn(a)...)...)
	runOutput(t, append([]string{"--symbols", "5", "--rate", "0", "--seed", "3", "--emit", "patterns", "--patterns", filepath.Join(dir, "p.yaml"), "--count", "20000"}, runArgsIn(b)...)...)
	outA, outB := readFile(t, filepath.Join(a, "out.jsonl")), readFile(t, filepath.Join(b, "out.jsonl"))
	if !bytes.Contains(outA, []byte(`"pattern":"up"`)) || !bytes.Contains(outA, []byte(`"pattern":"vol"`)) {
		t.Fatalf("no matches of both patterns in %d bytes", len(outA))
	}
	if !bytes.Equal(outA, outB) {
		t.Fatalf("inline patterns and the pattern file differ: %d and %d bytes", len(outA), len(outB))
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "qstream-patterns-*")); len(left) != 0 {
		t.Fatalf("inline patterns' file left: %v", left)
	}
}

// TestRunConfigRefusals: a second stream that asks for another engine, a bad file, --config twice or
// without a file: exit 2 with the reason, before anything starts.
func TestRunConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	two := filepath.Join(dir, "two.yaml")
	os.WriteFile(two, []byte("streams: [{name: a}, {name: b, parallelism: 3}]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("streams:\n  - parallelism: -1\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", two}, "qstream run: stream \"b\": parallelism (--shards) is 3, but the streams share the engine of the first stream, which has 1"},
		{[]string{"--config=" + bad}, "qstream run: " + bad + ":2: streams[0].parallelism: -1 outside 0..256"},
		{[]string{"--config", two, "-config", bad}, "qstream run: --config given twice"},
		{[]string{"--count", "5", "--config"}, "qstream run: --config needs a file"},
	} {
		_, stderr, rc := qstream(t, append(append([]string{"run"}, runArgsIn(dir)...), tc.args...)...)
		if rc != 2 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("run %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), rc, stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); !os.IsNotExist(err) {
		t.Fatalf("a refused --config created the WAL: %v", err)
	}
}

// TestFindConfigFlag reads run's arguments as the flag package does.
func TestFindConfigFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		at      int
		file    string
		n       int
		wantErr bool
	}{
		{[]string{"--count", "5"}, -1, "", 0, false},
		{[]string{"--config", "f.yaml", "--count", "5"}, 0, "f.yaml", 2, false},
		{[]string{"--count", "5", "-config=f.yaml"}, 2, "f.yaml", 1, false},
		{[]string{"--output", "--config", "--count", "5"}, -1, "", 0, false}, // --config is --output's value
		{[]string{"--tcp-ack", "--config", "f.yaml"}, 1, "f.yaml", 2, false}, // a boolean takes no value
		{[]string{"--count", "5", "--", "--config", "f.yaml"}, -1, "", 0, false},
		{[]string{"--config", "a", "--config", "b"}, 0, "", 0, true},
	} {
		at, file, n, err := findConfigFlag(tc.args)
		if (err != nil) != tc.wantErr || (err == nil && (at != tc.at || file != tc.file || n != tc.n)) {
			t.Errorf("%q: at %d file %q n %d err %v; want %d %q %d err %t", tc.args, at, file, n, err, tc.at, tc.file, tc.n, tc.wantErr)
		}
	}
}

// TestOverriddenByFlags: a list flag after --config replaces the file's
// list; --feed after it drops the settings of the file's other feeds.
func TestOverriddenByFlags(t *testing.T) {
	file := []string{"--feed=tcp", "--tcp-addr=127.0.0.1:9000", "--tcp-ack=true", "--sink=redis://h:6379", "--sink=nats://h:4222", "--windows=tumbling:1m:avg"}
	for _, tc := range []struct{ after, want []string }{
		{nil, file},
		{[]string{"--sink", "nats://other:4222"}, []string{"--feed=tcp", "--tcp-addr=127.0.0.1:9000", "--tcp-ack=true", "--windows=tumbling:1m:avg"}},
		{[]string{"--feed", "synthetic", "--count", "10"}, []string{"--feed=tcp", "--sink=redis://h:6379", "--sink=nats://h:4222", "--windows=tumbling:1m:avg"}},
		{[]string{"--feed", "tcp,synthetic"}, file},
		{[]string{"--no-such-flag"}, file}, // left to run's parse, which reports it
	} {
		if got := overriddenByFlags(file, tc.after); !slices.Equal(got, tc.want) {
			t.Errorf("after %q: %q, want %q", tc.after, got, tc.want)
		}
	}
}
