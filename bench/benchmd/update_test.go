package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qstream/bench"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the code")

// fixtureDoc is a hand-written document with the five blocks, old bodies
// in two of them, and text between and around them.
const fixtureDoc = `# BENCHMARKS

Hand-written intro, kept byte for byte.

## Must show

<!-- bench:begin must-show -->
stale figures
<!-- bench:end must-show -->

## Machine

<!-- bench:begin machine -->
<!-- bench:end machine -->

## Packages

<!-- bench:begin packages -->
| stale | table |
<!-- bench:end packages -->

<!-- bench:begin e2e -->
<!-- bench:end e2e -->

<!-- bench:begin throughput -->
<!-- bench:end throughput -->

## History

Dated hand-written analysis: 3.5x, missed.
`

// writeFixtures writes the result files of f and the document into the
// current directory (the test's own, t.Chdir) and returns the inputs.
func writeFixtures(t *testing.T, f fixture, stamped bool) updateInputs {
	t.Helper()
	if err := os.MkdirAll("bench", 0o755); err != nil {
		t.Fatal(err)
	}
	results := fixtureResults(f)
	if stamped {
		start := fixtureMachine("2030-01-02T02:00:00Z")
		start.LoadAvgEnd, start.CoresEnd = "", nil // what the end stamp brings
		s, err := json.Marshal(stamp{Command: "make bench BENCHTIME=1x", Machine: start})
		if err != nil {
			t.Fatal(err)
		}
		end, err := json.Marshal(bench.Machine{LoadAvg: "2.00 1.00 0.50", Cores: fixtureCores(130)})
		if err != nil {
			t.Fatal(err)
		}
		results = stampPrefix + string(s) + "\n" + results + stampEndPrefix + string(end) + "\n"
	}
	in := updateInputs{doc: "BENCHMARKS.md", results: "bench/results.txt", e2e: "bench/results-e2e.json",
		throughput: "bench/results-throughput.json", svg: "bench/e2e-latency.svg"}
	writeFile(t, in.results, []byte(results))
	writeJSONFile(t, in.e2e, fixtureE2E(f))
	writeJSONFile(t, in.throughput, fixtureThroughput(f))
	writeFile(t, in.svg, []byte("<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n"))
	writeFile(t, in.doc, []byte(fixtureDoc))
	return in
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUpdateGolden pins the whole generated document of the missed
// fixture (go test ./bench/benchmd -update rewrites the golden file; review
// its diff).
func TestUpdateGolden(t *testing.T) {
	golden, err := filepath.Abs(filepath.Join("testdata", "update.golden.md"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	in := writeFixtures(t, fixtureMissed, true)
	if err := updateFile(in); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, in.doc)
	if *updateGolden {
		writeFile(t, golden, got)
	}
	if want := readFile(t, golden); !bytes.Equal(got, want) {
		t.Fatalf("BENCHMARKS.md differs from %s (go test -update to accept):\n%s", golden, got)
	}
	if a, b := outside(t, fixtureDoc), outside(t, string(got)); a != b {
		t.Fatalf("the text outside the blocks changed:\n%s\nbecame\n%s", a, b)
	}
}

func TestUpdateFile(t *testing.T) {
	t.Chdir(t.TempDir())
	in := writeFixtures(t, fixtureMet, false)
	in.cmd = "make bench (fixture)"
	if err := updateFile(in); err != nil {
		t.Fatal(err)
	}
	once := readFile(t, in.doc)
	for _, s := range []string{
		"7 of 7 met.",
		"| 2.50x | >= 2x | met |",
		"![latency by percentile, per rate](bench/e2e-latency.svg)", // the plot beside the e2e table, relative to the document
		"`make bench (fixture)` (no stamp in the file",              // the command of an unstamped go test output
		"All three on one machine: Fixture CPU @ 1.00GHz",
		"| run | 1 | no | 3.00M |", // the throughput table
		"### engine",               // the package tables
		"Dated hand-written analysis: 3.5x, missed.",
	} {
		if !bytes.Contains(once, []byte(s)) {
			t.Errorf("the document lacks %q:\n%s", s, once)
		}
	}
	if bytes.Contains(once, []byte("stale")) {
		t.Errorf("an old body survived:\n%s", once)
	}
	if err := updateFile(in); err != nil {
		t.Fatal(err)
	}
	if twice := readFile(t, in.doc); !bytes.Equal(once, twice) {
		t.Fatalf("a second update changed the document:\n%s\n---\n%s", once, twice)
	}
}

func TestUpdateDifferentMachines(t *testing.T) {
	t.Chdir(t.TempDir())
	in := writeFixtures(t, fixtureMet, true)
	rep := fixtureThroughput(fixtureMet)
	rep.Machine.CPU = "Another CPU"
	writeJSONFile(t, in.throughput, rep)
	if err := updateFile(in); err != nil {
		t.Fatal(err)
	}
	if doc := readFile(t, in.doc); !bytes.Contains(doc, []byte("**The result files come from different machines")) {
		t.Fatalf("no warning of different machines:\n%s", doc)
	}
}

// TestUpdateRefuses checks that a missing input or marker fails and leaves
// the document as it was.
func TestUpdateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, in *updateInputs)
		want   error
	}{
		{"no e2e report", func(t *testing.T, in *updateInputs) { os.Remove(in.e2e) }, ErrInput},
		{"no throughput report", func(t *testing.T, in *updateInputs) { os.Remove(in.throughput) }, ErrInput},
		{"no go test output", func(t *testing.T, in *updateInputs) { os.Remove(in.results) }, ErrInput},
		{"no plot", func(t *testing.T, in *updateInputs) { os.Remove(in.svg) }, ErrInput},
		{"flag not given", func(t *testing.T, in *updateInputs) { in.throughput = "" }, ErrInput},
		{"go test output without results", func(t *testing.T, in *updateInputs) {
			writeFile(t, in.results, []byte("goos: linux\nPASS\n"))
		}, ErrInput},
		{"e2e file is the throughput report", func(t *testing.T, in *updateInputs) {
			writeJSONFile(t, in.e2e, fixtureThroughput(fixtureMet))
		}, ErrInput},
		{"two start stamps", func(t *testing.T, in *updateInputs) {
			b := readFile(t, in.results)
			first, _, _ := strings.Cut(string(b), "\n")
			writeFile(t, in.results, append([]byte(first+"\n"), b...))
		}, errStamp},
		{"a block's markers removed", func(t *testing.T, in *updateInputs) {
			doc := strings.Replace(fixtureDoc, "<!-- bench:begin throughput -->\n<!-- bench:end throughput -->\n", "", 1)
			writeFile(t, in.doc, []byte(doc))
		}, ErrMarkers},
		{"an end marker removed", func(t *testing.T, in *updateInputs) {
			doc := strings.Replace(fixtureDoc, "<!-- bench:end machine -->\n", "", 1)
			writeFile(t, in.doc, []byte(doc))
		}, ErrMarkers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			in := writeFixtures(t, fixtureMet, true)
			tc.break_(t, &in)
			before := readFile(t, "BENCHMARKS.md")
			err := updateFile(in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if after := readFile(t, "BENCHMARKS.md"); !bytes.Equal(before, after) {
				t.Fatalf("the document changed on a failed update")
			}
		})
	}
}

func TestStampRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := writeStamp(&b, "start", "make bench X=1", false); err != nil {
		t.Fatal(err)
	}
	b.WriteString("pkg: qstream/ring\nBenchmarkX-2 \t 10\t 5.0 ns/op\n")
	if err := writeStamp(&b, "end", "", false); err != nil {
		t.Fatal(err)
	}
	run, err := parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	if run.stamp == nil || run.stamp.Command != "make bench X=1" || run.stamp.Machine.Date == "" || run.stamp.Machine.CPUs == 0 {
		t.Fatalf("stamp %+v", run.stamp)
	}
	if _, err := os.Stat("/proc/loadavg"); err == nil && run.stamp.Machine.LoadAvgEnd == "" {
		t.Fatalf("no load average from the end stamp: %+v", run.stamp.Machine)
	}
	if run.stamp.Machine.Cores != nil || run.stamp.Machine.CoresEnd != nil {
		t.Fatalf("stamps written without probing carry a probe: %+v", run.stamp.Machine)
	}
	if len(run.results) != 1 || run.results[0].name != "X" {
		t.Fatalf("results %+v", run.results)
	}
	if err := writeStamp(&b, "middle", "", false); err == nil {
		t.Fatal("-stamp middle accepted")
	}
	// The end stamp's probe is the run's end probe.
	end := `{"loadavg":"1 2 3","cores":{"cpus":[0,1],"samples":7,"trips":20000,"median_ns":480,"min_ns":470,"max_ns":530}}`
	run, err = parse(strings.NewReader(stampPrefix + `{"command":"c","machine":{"cores":{"median_ns":95}}}` + "\n" + stampEndPrefix + end + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m := run.stamp.Machine; m.Cores == nil || m.Cores.MedianNs != 95 || m.CoresEnd == nil || m.CoresEnd.MedianNs != 480 || m.LoadAvgEnd != "1 2 3" {
		t.Fatalf("machine from the stamps: %+v", m)
	}
	if _, err := parse(strings.NewReader(stampEndPrefix + "{}\n")); !errors.Is(err, errStamp) {
		t.Fatalf("an end stamp alone: %v, want errStamp", err)
	}
}
