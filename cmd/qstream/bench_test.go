package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"qstream/bench"
)

// TestBenchE2EReportComplete runs `qstream bench e2e` (the built binary, as
// a user would) briefly at a low rate with the park strategy and checks the
// report: every field present, percentiles ordered, and for the engine and
// the reference program alike every message sent received once and recorded
// once in the histogram. The generator sleeps between sends (no busy
// waiting in tests), so the figures themselves say little: this test checks
// the harness, BENCHMARKS.md the speed.
func TestBenchE2EReportComplete(t *testing.T) {
	const rate, seconds = 2000, 1.5
	bin := qstreamBinary(t)
	cmd := exec.Command(bin, "bench", "e2e", "--rates", "2k", "--duration", "1500ms", "--warmup", "0s",
		"--pace", "sleep", "--waits", "park", "--probe-cores=false", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("qstream bench e2e: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var rep bench.E2EReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	// Every field present in the JSON itself, not only defaulted by the decoder.
	var raw struct {
		Machine map[string]any   `json:"machine"`
		Results []map[string]any `json:"results"`
		Ratios  []map[string]any `json:"ratios"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cpu", "cpus", "go", "kernel", "date"} {
		if v, ok := raw.Machine[k]; !ok || v == "" {
			t.Errorf("machine.%s missing or empty", k)
		}
	}
	for _, k := range []string{"cores", "cores_end"} {
		if _, ok := raw.Machine[k]; ok {
			t.Errorf("machine.%s present with --probe-cores=false", k)
		}
	}
	resultKeys := []string{"target", "wait", "rate", "runs", "sent", "warmup", "received", "drops", "duplicates", "unknown",
		"send_rate", "recv_rate", "latency", "generator_lateness", "curve"}
	latencyKeys := []string{"count", "mean_us", "p50_us", "p90_us", "p99_us", "p99_9_us", "p99_99_us", "max_us"}
	for i, r := range raw.Results {
		for _, k := range resultKeys {
			if _, ok := r[k]; !ok {
				t.Errorf("results[%d].%s missing", i, k)
			}
		}
		lat, _ := r["latency"].(map[string]any)
		for _, k := range latencyKeys {
			if _, ok := lat[k]; !ok {
				t.Errorf("results[%d].latency.%s missing", i, k)
			}
		}
	}

	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2 (reference, engine park): %+v", len(rep.Results), rep.Results)
	}
	targets := map[string]bool{}
	for _, r := range rep.Results {
		targets[r.Target+"/"+r.Wait] = true
		name := r.Target + "/" + r.Wait
		if r.Error != "" {
			t.Errorf("%s: %s", name, r.Error)
			continue
		}
		if r.Rate != rate || r.Sent != int64(rate*seconds) {
			t.Errorf("%s: rate %d sent %d, want %d and %d", name, r.Rate, r.Sent, rate, int64(rate*seconds))
		}
		if r.Received != r.Sent || r.Drops != 0 || r.Duplicates != 0 || r.Unknown != 0 {
			t.Errorf("%s: sent %d received %d drops %d duplicates %d unknown %d, want every message once",
				name, r.Sent, r.Received, r.Drops, r.Duplicates, r.Unknown)
		}
		if r.Latency.Count != r.Sent-r.Warmup || r.Warmup != 0 {
			t.Errorf("%s: histogram holds %d values, want the %d messages sent (warm-up %d)", name, r.Latency.Count, r.Sent, r.Warmup)
		}
		if r.Lateness.Count != r.Sent {
			t.Errorf("%s: generator lateness of %d messages, want %d", name, r.Lateness.Count, r.Sent)
		}
		if !r.Latency.Ordered() || r.Latency.P50Us <= 0 || r.Latency.MeanUs <= 0 || r.Latency.MaxUs < r.Latency.MeanUs {
			t.Errorf("%s: percentiles not ordered or not positive: %+v", name, r.Latency)
		}
		if r.SendRate < rate/2 || r.SendRate > rate*2 || r.RecvRate <= 0 {
			t.Errorf("%s: send rate %.0f, receive rate %.0f for %d msg/s", name, r.SendRate, r.RecvRate, rate)
		}
		if len(r.Curve) == 0 || r.Curve[len(r.Curve)-1].Us != r.Latency.MaxUs {
			t.Errorf("%s: curve %v does not end at the max %.1f", name, r.Curve, r.Latency.MaxUs)
		}
		for i := 1; i < len(r.Curve); i++ {
			if r.Curve[i].Pct < r.Curve[i-1].Pct || r.Curve[i].Us < r.Curve[i-1].Us {
				t.Errorf("%s: curve not monotonic at %d: %v", name, i, r.Curve[i-1:i+1])
			}
		}
	}
	if !targets["reference/block"] || !targets["engine/park"] {
		t.Errorf("targets %v, want reference/block and engine/park", targets)
	}
	if len(rep.Ratios) != 1 || rep.Ratios[0].Wait != "park" || len(rep.Ratios[0].Ratio) != len(bench.PercentileNames) {
		t.Fatalf("ratios %+v, want one for park with %d entries", rep.Ratios, len(bench.PercentileNames))
	}
	for i, v := range rep.Ratios[0].Ratio {
		if v <= 0 {
			t.Errorf("ratio %s = %v, want > 0", bench.PercentileNames[i], v)
		}
	}
}

// TestBenchRefVWAPMatchesReplay checks that the throughput benchmark's
// single-loop reference does the replay's work: the same windows, with the
// same counts and values, as `qstream replay --windows tumbling:1s:vwap`
// on trades of several symbols (the order of the lines may differ).
func TestBenchRefVWAPMatchesReplay(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "trades.jsonl")
	var buf []byte
	for i := int64(0); i < 5000; i++ {
		buf = bench.AppendTrade(buf, i, 1_700_000_000_000_000_000+i*1_300_000, 7)
	}
	if err := os.WriteFile(input, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	var replayOut, refOut, errb bytes.Buffer
	if code := realMain([]string{"replay", "--input", input, "--format", "jsonl", "--windows", "tumbling:1s:vwap", "--emit", "windows"}, &replayOut, &errb); code != 0 {
		t.Fatalf("replay: %d\n%s", code, errb.String())
	}
	if code := realMain([]string{"bench", "ref-vwap", "--input", input, "--window", "tumbling:1s:vwap"}, &refOut, &errb); code != 0 {
		t.Fatalf("ref-vwap: %d\n%s", code, errb.String())
	}
	sorted := func(b []byte) []string {
		l := strings.Split(strings.TrimSpace(string(b)), "\n")
		sort.Strings(l)
		return l
	}
	got, want := sorted(refOut.Bytes()), sorted(replayOut.Bytes())
	if len(want) < 7*6 {
		t.Fatalf("replay wrote only %d windows", len(want))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reference windows differ from replay's:\nref %d lines, first %q\nreplay %d lines, first %q", len(got), got[0], len(want), want[0])
	}
}

// TestBenchThroughputReport runs `qstream bench throughput` small (one
// shard, one repeat) and checks that every target ran, did the same work as
// its baseline and has its ratios, and that the machine has its core probes
// (of 100 round trips a sample here: microseconds of busy threads).
func TestBenchThroughputReport(t *testing.T) {
	bin := qstreamBinary(t)
	cmd := exec.Command(bin, "bench", "throughput", "--shards", "1", "--run-count", "20000", "--trades", "20000", "--repeats", "1",
		"--probe-trips", "100", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("qstream bench throughput: %v\n%s\n%s", err, stderr.String(), stdout.String())
	}
	var rep bench.ThroughputReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	if runtime.NumCPU() > 1 {
		for i, p := range []*bench.CoreProbe{rep.Machine.Cores, rep.Machine.CoresEnd} {
			if p == nil || p.Trips != 100 || p.Samples != bench.ProbeSamples || p.MedianNs <= 0 {
				t.Errorf("core probe %d (start, end): %+v (%s)", i, p, rep.Machine.CoresNote)
			}
		}
	}
	byKey := map[string]bench.ThroughputResult{}
	for _, r := range rep.Results {
		byKey[r.Key()] = r
		if r.Error != "" || r.Rate <= 0 || len(r.Rates) != 1 {
			t.Errorf("%s: rate %v (%v), error %q", r.Key(), r.Rate, r.Rates, r.Error)
		}
	}
	want := map[string]string{ // result -> its baseline
		"run/shards=1/nowal": "", "run/shards=1/wal": "run/shards=1/nowal", "replay/shards=1": "reference", "reference": "",
	}
	for k, base := range want {
		r, ok := byKey[k]
		if !ok {
			t.Errorf("no result %s in %v", k, rep.Results)
			continue
		}
		if r.Baseline != base || (base != "" && r.Ratio <= 0) {
			t.Errorf("%s: baseline %q ratio %v, want baseline %q", k, r.Baseline, r.Ratio, base)
		}
		if k != "reference" && r.VsReference <= 0 {
			t.Errorf("%s: no ratio to the single loop", k)
		}
	}
	if rp, ref := byKey["replay/shards=1"], byKey["reference"]; rp.Outputs == 0 || rp.Outputs != ref.Outputs {
		t.Errorf("replay wrote %d windows, the reference %d", rp.Outputs, ref.Outputs)
	}
}

// TestBenchMicroRatios runs `qstream bench micro` on two benchmarks of the
// codec, a pair of benchmd's (the JSON tick parser and encoding/json), and
// checks that their same-run ratio comes out.
func TestBenchMicroRatios(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"bench", "micro", "--repo", repo, "--pkgs", "./codec", "--bench", "^BenchmarkParseTick(Stdlib)?$",
		"--benchtime", "20000x", "--count", "1", "--probe-trips", "100", "--json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("qstream bench micro: %d\n%s", code, stderr.String())
	}
	var out struct {
		Ratios []struct {
			Fast, Baseline string
			Ratio          float64
		} `json:"ratios"`
		Benchmarks []struct{ Name string } `json:"benchmarks"`
		Machine    *bench.Machine          `json:"machine"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	if len(out.Benchmarks) != 2 || len(out.Ratios) != 1 || out.Ratios[0].Fast != "codec.ParseTick" || out.Ratios[0].Ratio <= 0 {
		t.Fatalf("benchmarks %v ratios %+v, want the two and their ratio", out.Benchmarks, out.Ratios)
	}
	// The stamps: the command, the machine at the start and the end, with
	// the cores' round trip (100 round trips a sample here).
	m := out.Machine
	if m == nil || m.Date == "" || m.LoadAvg == "" || m.LoadAvgEnd == "" {
		t.Fatalf("machine %+v: want the stamps' date and load averages", m)
	}
	if runtime.NumCPU() > 1 && (m.Cores == nil || m.CoresEnd == nil || m.Cores.Trips != 100 || m.CoresEnd.Trips != 100) {
		t.Fatalf("machine %+v: want a core probe of 100 trips at the start and the end (%s)", m, m.CoresNote)
	}
}
