package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"qstream/ops"
)

// isConfigFile is the rule that tells configurations from the other files
// in examples/: a configuration's YAML root is a mapping; a pattern file
// (examples/patterns.yaml) is a list.
func isConfigFile(t *testing.T, data []byte) bool {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		t.Fatalf("not YAML: %v", err)
	}
	return doc.Content[0].Kind == yaml.MappingNode
}

// TestConfigExamplesLoad loads every configuration in examples/ and reads
// every other file there as the pattern file it is.
func TestConfigExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../examples/*")
	configs := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !isConfigFile(t, data) {
			if _, err := ops.ParsePatternsFile(f, data); err != nil {
				t.Errorf("%s: not a configuration, and not a pattern file: %v", f, err)
			}
			continue
		}
		configs++
		c, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for i := range c.Streams {
			if _, err := c.RunArgs(i); err != nil {
				t.Errorf("%s: RunArgs(%d): %v", f, i, err)
			}
		}
		c.Cleanup()
	}
	if configs < 2 {
		t.Fatalf("%d configurations in examples/, want at least qstream.yaml and minimal.yaml", configs)
	}
}

// TestConfigExample: the printed example loads, names every field of the
// configuration (active or, for the feeds other than synthetic, commented
// out), and every value it gives is the default (RunArgs gives no flag but
// --feed).
func TestConfigExample(t *testing.T) {
	c, err := Parse("example.yaml", ".", []byte(Example))
	if err != nil {
		t.Fatal(err)
	}
	args, err := c.RunArgs(0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--feed=synthetic"}; !slices.Equal(args, want) {
		t.Fatalf("the example's values are not all the defaults: RunArgs = %q, want %q", args, want)
	}
	var missing []string
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "" {
				continue
			}
			if !strings.Contains(Example, " "+tag+":") && !strings.HasPrefix(Example, tag+":") && !strings.Contains(Example, "\n"+tag+":") {
				missing = append(missing, path+tag)
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Pattern{}) {
				walk(ft, path+tag+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	if len(missing) > 0 {
		t.Fatalf("fields missing from the example: %v", missing)
	}
	// One comment per field line.
	for i, l := range strings.Split(Example, "\n") {
		if k, _, ok := strings.Cut(strings.TrimLeft(l, " -#"), ":"); ok && !strings.Contains(k, " ") && k != "" &&
			!strings.Contains(l, "#") && !strings.HasSuffix(strings.TrimSpace(l), ":") {
			t.Errorf("example line %d has no comment: %s", i+1, l)
		}
	}
}

// TestConfigErrors: each broken file gives its error with the line and the
// field.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown field", "streams:\n  - name: a\n    windowz: [tumbling:1m:avg]\n",
			"f.yaml:3: streams[0].windowz: unknown field (want one of name, source, "},
		{"unknown feed", "streams:\n  - source:\n      kafka: {}\n",
			"f.yaml:3: streams[0].source.kafka: unknown field (want one of synthetic, tcp, ws, webhook, jetstream, pcap)"},
		{"wrong type", "streams:\n  - name: a\n    parallelism: four\n",
			`f.yaml:3: streams[0].parallelism: want an integer, got "four"`},
		{"wrong type list", "streams:\n  - name: a\n    windows: tumbling:1m:avg\n",
			`f.yaml:3: streams[0].windows: want a list ([] for none), got "tumbling:1m:avg"`},
		{"string for number", "max_symbols: \"100\"\nstreams: [{name: a}]\n",
			`f.yaml:1: max_symbols: want an integer, got "100"`},
		{"bad duration", "streams:\n  - name: a\n    max_latency: 10\n",
			`f.yaml:3: streams[0].max_latency: want a duration such as 250ms, 10s or 5m: missing unit in duration "10"`},
		{"bad http address", "http:\n  addr: localhost\nstreams: [{name: a}]\n",
			`f.yaml:2: http.addr: "localhost": want HOST:PORT`},
		{"bad duration word", "wal:\n  group_interval: soon\nstreams: [{name: a}]\n",
			`f.yaml:2: wal.group_interval: want a duration such as 250ms, 10s or 5m: invalid duration "soon"`},
		{"bad window spec", "streams:\n  - name: a\n    windows:\n      - tumbling:1m:vwap\n      - tumbling:0s:vwap\n",
			`f.yaml:5: streams[0].windows[1]: "tumbling:0s:vwap": size: `},
		{"duplicate window", "streams:\n  - name: a\n    windows:\n      - tumbling:1m:vwap\n      - tumbling:1m:vwap\n",
			`f.yaml:5: streams[0].windows[1]: "tumbling:1m:vwap" is also windows[0]`},
		{"bad indicator", "streams:\n  - name: a\n    indicators: [sma:5, smaa:3]\n",
			`f.yaml:3: streams[0].indicators[1]: "smaa:3": unknown indicator`},
		{"bad movement", "streams:\n  - name: a\n    movements: [5m:1%, 5m]\n",
			`f.yaml:3: streams[0].movements[1]: `},
		{"bad sink scheme", "streams:\n  - name: a\n    sinks:\n      - redis://127.0.0.1:6379/0\n      - foo://127.0.0.1:1\n",
			`f.yaml:5: streams[0].sinks[1]: unknown scheme "foo" (want `},
		{"bad sink parameter", "streams:\n  - name: a\n    sinks:\n      - redis://127.0.0.1:6379/0?ttl=1ns\n",
			`f.yaml:4: streams[0].sinks[0]: sinks: redis: redis://127.0.0.1:6379/0?ttl=1ns: ttl 1ns outside [1s, 720h0m0s]`},
		{"duplicate sink", "streams:\n  - name: a\n    sinks: [\"nats://h:4222\", \"nats://h:4222\"]\n",
			`f.yaml:3: streams[0].sinks[1]: nats://h:4222 is also sinks[0]`},
		{"bad pattern", "streams:\n  - name: a\n    patterns:\n      - {id: v, type: volume_spike, multiplier: 3, baseline: 1m}\n" +
			"      - id: b\n        type: price_breakout\n        threshold: -0.02\n        timeframe: 5m\n",
			`f.yaml:7: streams[0].patterns[1].threshold: -0.02 outside 0..1e6`},
		{"pattern unknown field", "streams:\n  - name: a\n    patterns:\n      - id: b\n        type: price_breakout\n        threshld: 0.02\n",
			`f.yaml:6: streams[0].patterns[0].threshld: `},
		{"pattern not a mapping", "streams:\n  - name: a\n    patterns:\n      - price_breakout\n",
			`f.yaml:4: streams[0].patterns[0]: want a mapping of pattern fields (id, type, ...), got "price_breakout"`},
		{"patterns twice", "streams:\n  - name: a\n    patterns: [{id: v, type: volume_spike, multiplier: 3, baseline: 1m}]\n    patterns_file: p.yaml\n",
			`f.yaml:4: streams[0].patterns_file: give patterns inline or in patterns_file, not both`},
		{"patterns file missing", "streams:\n  - name: a\n    patterns_file: nothere.yaml\n",
			`f.yaml:3: streams[0].patterns_file: open ` + filepath.Join(dir, "nothere.yaml") + `: no such file or directory`},
		{"same name", "streams:\n  - name: a\n  - name: b\n  - name: a\n",
			`f.yaml:4: streams[2].name: "a" is also the name of streams[0]: stream names must be unique`},
		{"default name taken", "streams:\n  - name: stream-2\n  - {}\n",
			`f.yaml:3: streams[1].name: "stream-2" is also the name of streams[0]`},
		{"duplicate key", "streams:\n  - name: a\n    name: b\n", `f.yaml:3: streams[0].name: given twice (first on line 2)`},
		{"syntax", "streams:\n  - name: a\n   bad: indent\n", `f.yaml:2: YAML: did not find expected '-' indicator`},
		{"syntax flow", "streams: [{name: a}\nwal: {}\n", `f.yaml:2: YAML: did not find expected ',' or ']'`},
		{"tab", "streams:\n\t- name: a\n", `f.yaml:2: YAML: found character that cannot start any token`},
		{"empty file", "", `f.yaml: empty file: want a mapping with at least streams`},
		{"only comments", "# nothing yet\n", `f.yaml: empty file: want a mapping with at least streams`},
		{"no streams", "wal: {dir: \"\"}\n", `f.yaml:1: no streams: want a list under streams`},
		{"empty streams", "streams: []\n", `f.yaml:1: streams: no streams: want at least one`},
		{"not a mapping", "- name: a\n", `f.yaml:1: want a mapping of fields (wait, pin, `},
		{"no feed", "streams:\n  - name: a\n    source: {}\n", `f.yaml:3: streams[0].source: no feed: want one or more of synthetic, tcp, ws, webhook, jetstream, pcap`},
		{"tcp without addr", "streams:\n  - source:\n      tcp: {ack: true}\n", `f.yaml:3: streams[0].source.tcp.addr: required`},
		{"ws url", "streams:\n  - source:\n      ws: {url: http://x, exchange: coinbase}\n", `f.yaml:3: streams[0].source.ws.url: "http://x" is not a ws:// or wss:// URL`},
		{"mode", "streams:\n  - processing_mode: batch\n", `f.yaml:2: streams[0].processing_mode: unknown processing mode "batch" (want event-driven, real-time or micro-batch)`},
		{"policy", "streams:\n  - error_handling:\n      policy: log\n      dead_letter_dir: d\n",
			`f.yaml:4: streams[0].error_handling.dead_letter_dir: policy log keeps no dead-letter segments: leave dead_letter_dir out`},
		{"emit", "streams:\n  - emit: [indicators, stats]\n", `f.yaml:2: streams[0].emit[1]: "stats": want indicators, windows, patterns, movements, news, events, all`},
		{"emit all and more", "streams:\n  - emit: [all, windows]\n", `f.yaml:2: streams[0].emit: all goes alone: it is every output`},
		{"wait", "wait: busy\nstreams: [{}]\n", `f.yaml:1: wait: "busy" (want spin, yield or park)`},
		{"merge key", "base: &b {name: a}\nstreams: [{<<: *b}]\n", `f.yaml:1: base: unknown field`},
		{"several errors", "streams:\n  - parallelism: x\n    batch_size: y\n",
			"f.yaml:2: streams[0].parallelism: want an integer, got \"x\"\nf.yaml:3: streams[0].batch_size: want an integer, got \"y\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "f.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if err == nil {
				t.Fatalf("loaded: %+v", c)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T, want Errors", err)
			}
			got := strings.ReplaceAll(err.Error(), path, "f.yaml")
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("error:\n%s\nwant it to begin with:\n%s", got, tc.want)
			}
		})
	}
}

// TestConfigJSON: a .json file is read the same way; errors have lines.
func TestConfigJSON(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "q.json")
	os.WriteFile(good, []byte(`{
  "wal": {"dir": ""},
  "streams": [{"name": "j", "source": {"synthetic": {"count": 10, "rate": 0}},
               "windows": ["count:5:sum"], "emit": ["windows"]}]
}
`), 0o644)
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := c.RunArgs(0)
	want := []string{"--feed=synthetic", "--wal-dir=", "--rate=0", "--count=10", "--windows=count:5:sum", "--emit=windows"}
	if !slices.Equal(args, want) {
		t.Fatalf("RunArgs = %q, want %q", args, want)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{\"streams\": [{\"name\": \"j\",\n  \"parallelism\": \"2\"}]}\n"), 0o644)
	if _, err := Load(bad); err == nil || err.Error() != bad+`:2: streams[0].parallelism: want an integer, got "2"` {
		t.Fatalf("error %v", err)
	}
}

// TestConfigRunArgs pins the flags of examples/qstream.yaml and the inline
// patterns' file.
func TestConfigRunArgs(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	c, err := Load("../examples/qstream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	args, err := c.RunArgs(0)
	if err != nil {
		t.Fatal(err)
	}
	at := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "--patterns=") })
	if at < 0 {
		t.Fatalf("no --patterns: %q", args)
	}
	pfile := strings.TrimPrefix(args[at], "--patterns=")
	if filepath.Dir(pfile) != os.Getenv("TMPDIR") {
		t.Fatalf("inline patterns written to %s, want a file in $TMPDIR", pfile)
	}
	args[at] = "--patterns=FILE"
	want := []string{"--feed=tcp", "--tcp-addr=127.0.0.1:9000", "--tcp-format=lines", "--tcp-ack=true",
		"--shards=2", "--out-of-orderness=200ms", "--allowed-lateness=1s",
		"--indicators=sma:5,sma:20,ema:12,rsi:14,vwap,vwap:50", "--windows=tumbling:1m:ohlcv,sliding:30s/5s:p99",
		"--patterns=FILE", "--movements=5m:1%,1h:2%",
		"--sink=redis://127.0.0.1:6379/0?ttl=60s", "--sink=nats://127.0.0.1:4222",
		"--emit=indicators,windows,patterns,movements", "--output=qstream-data/outputs.jsonl"}
	// Only the values that differ from the defaults: the file's wal.dir,
	// sync, checkpoint.dir, dedup_horizon, idle_timeout, ... are defaults.
	if !slices.Equal(args, want) {
		t.Fatalf("RunArgs:\n%q\nwant\n%q", args, want)
	}
	data, err := os.ReadFile(pfile)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ops.ParsePatternsFile(pfile, data)
	if err != nil {
		t.Fatalf("the inline patterns' file: %v\n%s", err, data)
	}
	var ids []string
	for _, s := range specs {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []string{"breakout", "volume", "golden", "dip_back"}) {
		t.Fatalf("patterns %v", ids)
	}
	c.Cleanup()
	if _, err := os.Stat(pfile); !os.IsNotExist(err) {
		t.Fatalf("Cleanup left %s: %v", pfile, err)
	}
	if _, err := c.RunArgs(1); err == nil {
		t.Fatal("RunArgs(1) of a one-stream file")
	}
}

// TestConfigPathsAndDefaults: input files are relative to the file's
// directory; every feed's defaults are filled in when its key is present.
func TestConfigPathsAndDefaults(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "p.yaml"), []byte("- {id: v, type: volume_spike, multiplier: 3, baseline: 1m}\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "cap.pcap"), nil, 0o644)
	path := filepath.Join(sub, "q.yaml")
	os.WriteFile(path, []byte(`streams:
  - patterns_file: p.yaml
    source:
      pcap: {path: cap.pcap}
      jetstream: {stream: T, subject_prefix: t, partitions: 4}
      webhook: {addr: "127.0.0.1:0"}
      synthetic:
  - name: two
`), 0o644)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Streams[0]
	if s.Name != "stream-1" || c.Streams[1].Name != "two" {
		t.Fatalf("names %q %q", s.Name, c.Streams[1].Name)
	}
	if s.Source.Synthetic == nil || s.Source.Synthetic.FlushEvery != 256 || s.Source.Webhook == nil || s.Source.Webhook.Path != "/webhook" ||
		s.Source.JetStream.AckWait != 30*time.Second || s.Source.JetStream.Durable != "qstream" {
		t.Fatalf("source %+v", s.Source)
	}
	if c.Streams[1].Source.Synthetic == nil || c.Streams[1].Source.Synthetic.Rate != 100_000 {
		t.Fatalf("a stream without source is the default synthetic feed: %+v", c.Streams[1].Source)
	}
	args, _ := c.RunArgs(0)
	for _, want := range []string{"--feed=synthetic,webhook,jetstream,pcap", "--patterns=" + filepath.Join(sub, "p.yaml"), "--pcap=" + filepath.Join(sub, "cap.pcap"), "--js-partitions=4"} {
		if !slices.Contains(args, want) {
			t.Errorf("RunArgs %q lacks %q", args, want)
		}
	}
}

// FuzzParse: any input gives a Config or Errors, never a panic, and a
// Config that loads gives flags for each stream.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../examples/qstream.yaml", "../examples/minimal.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(Example))
	f.Add([]byte("a: &a [*a]\nstreams: [{name: *a}]\n"))
	f.Add([]byte(`{"streams":[{"patterns":[{"id":"x","type":"volume_spike","multiplier":3,"baseline":"1m"}]}]}`))
	dir := f.TempDir()
	f.Setenv("TMPDIR", dir)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", dir, data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || len(es) > maxErrors+1 {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		for i := range c.Streams {
			if _, err := c.RunArgs(i); err != nil {
				t.Fatal(err)
			}
		}
		c.Cleanup()
	})
}

// TestConfigReadmeExample: the configuration shown in README.md checks.
func TestConfigReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "### Configuration file")
	if !ok {
		t.Fatal(`README.md has no "Configuration file" section`)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in the section")
	}
	c, err := Parse("README.md", ".", []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Streams) != 1 || len(c.Streams[0].Sinks) != 2 || len(c.Streams[0].Patterns) != 1 {
		t.Fatalf("README example: %+v", c.Streams)
	}
}

// TestParseStream reads one StreamConfig on its own, as JSON.
func TestParseStream(t *testing.T) {
	s, err := ParseStream("body", ".", []byte(`{"name":"s1","source":{"synthetic":{"rate":0}},"windows":["tumbling:1m:avg"],"processing_mode":"micro-batch"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "s1" || s.ProcessingMode != "micro-batch" || s.Source.Synthetic.Rate != 0 || s.Source.Synthetic.Symbols != 100 || s.BatchSize != 256 {
		t.Fatalf("%+v", s)
	}
	_, err = ParseStream("body", ".", []byte("{\"name\":\"s1\",\n\"windows\":[\"tumbling:0s:avg\"]}"))
	if err == nil || err.Error() != `body:2: windows[0]: "tumbling:0s:avg": size: duration "0s" outside 1ns..366d` {
		t.Fatalf("error %v", err)
	}
	if _, err := ParseStream("body", ".", []byte(`{"nme":"x"}`)); err == nil || !strings.HasPrefix(err.Error(), "body:1: nme: unknown field") {
		t.Fatalf("error %v", err)
	}
}

// TestConfigEmptyPatternsWithFile: `patterns: []` (as the example has it)
// beside a patterns_file is no inline list.
func TestConfigEmptyPatternsWithFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("- {id: v, type: volume_spike, multiplier: 3, baseline: 1m}\n"), 0o644)
	c, err := Parse("q.yaml", dir, []byte("streams:\n  - patterns: []\n    patterns_file: p.yaml\n"))
	if err != nil {
		t.Fatal(err)
	}
	args, _ := c.RunArgs(0)
	if !slices.Contains(args, "--patterns="+filepath.Join(dir, "p.yaml")) {
		t.Fatalf("RunArgs %q", args)
	}
}

func TestConfigHTTP(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "q.yaml")
	if err := os.WriteFile(f, []byte("http:\n  addr: 127.0.0.1:0\n  dashboard: false\n  stop_timeout: 5s\nstreams: [{name: a}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	args, err := c.RunArgs(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--http=127.0.0.1:0", "--dashboard=false", "--stop-timeout=5s"} {
		if !slices.Contains(args, want) {
			t.Errorf("no %s in %q", want, args)
		}
	}
	// Left at its defaults, the section gives no flag (--http keeps its
	// own default, $QSTREAM_HTTP included).
	if err := os.WriteFile(f, []byte("streams: [{name: a}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(f); err != nil {
		t.Fatal(err)
	}
	args, _ = c.RunArgs(0)
	for _, a := range args {
		if strings.HasPrefix(a, "--http") || strings.HasPrefix(a, "--dashboard") || strings.HasPrefix(a, "--stop-timeout") {
			t.Errorf("defaults give %s", a)
		}
	}
}

// TestConfigTCPLockThread: the TCP feed's loops are locked to threads by
// default (no flag); lock_thread: false gives --tcp-lock-thread=false.
func TestConfigTCPLockThread(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string
	}{
		{"", []string{"--feed=tcp", "--tcp-addr=127.0.0.1:9000"}},
		{"lock_thread: true, ", []string{"--feed=tcp", "--tcp-addr=127.0.0.1:9000"}},
		{"lock_thread: false, ", []string{"--feed=tcp", "--tcp-addr=127.0.0.1:9000", "--tcp-lock-thread=false"}},
	} {
		src := "streams:\n  - name: s\n    source: {tcp: {" + tc.yaml + "addr: 127.0.0.1:9000}}\n"
		c, err := Parse("q.yaml", ".", []byte(src))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		args, err := c.RunArgs(0)
		if err != nil || !slices.Equal(args, tc.want) {
			t.Fatalf("%q: RunArgs = %q (%v), want %q", tc.yaml, args, err, tc.want)
		}
	}
	// A stream added through the API (POST /api/streams) gets the default too.
	c, err := ParseStreamConfig("POST /api/streams", ".", []byte(`{"name":"fx","source":{"tcp":{"addr":"127.0.0.1:9100"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if args, err := c.RunArgs(0); err != nil || slices.Contains(args, "--tcp-lock-thread=false") {
		t.Fatalf("API stream: RunArgs = %q (%v), want the loops locked (no --tcp-lock-thread=false)", args, err)
	}
}
