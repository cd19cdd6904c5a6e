package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"qstream/bench"
	"qstream/codec"
)

// The replay benchmark of issue 12: `qstream replay` of 2M JSON trades with a
// 1 s tumbling VWAP against the least a program can do for the same result in
// one goroutine (bufio, fastjson and a map), timed back to back in every
// iteration so that the ratio is a same-run figure.
const (
	benchReplayTrades  = 2_000_000
	benchReplaySymbols = 100
	benchReplayStepNs  = 100_000 // event time between trades: 200 s of trades
	benchReplayTs0     = 1_700_000_000_000_000_000
)

// benchReplayFile writes the input into the benchmark's temporary
// directory (removed when it ends; the timer is not running yet).
func benchReplayFile(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "trades.jsonl")
	if err := writeBenchTrades(path, benchReplayTrades); err != nil {
		b.Fatal(err)
	}
	return path
}

// writeBenchTrades writes n compact trades (the ~130-byte tick of the
// contract) over benchReplaySymbols symbols in event-time order.
func writeBenchTrades(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var line []byte
	ts := int64(benchReplayTs0)
	for i := range n {
		ts += benchReplayStepNs
		cents := 10000 + (i*7919)%5000
		line = append(line[:0], `{"type":"trade","symbol":"SYM`...)
		line = strconv.AppendInt(line, int64(i%benchReplaySymbols), 10)
		line = append(line, `","ts":`...)
		line = strconv.AppendInt(line, ts, 10)
		line = append(line, `,"price":`...)
		line = appendCents(line, cents)
		line = append(line, `,"volume":`...)
		line = strconv.AppendInt(line, int64(1+(i*31)%500), 10)
		line = append(line, `,"bid":`...)
		line = appendCents(line, cents-1)
		line = append(line, `,"ask":`...)
		line = appendCents(line, cents+1)
		line = append(line, `,"status":"open","id":"t-`...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, "\"}\n"...)
		if _, err := w.Write(line); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchReplayWindows counts the (symbol, 1 s window) pairs that hold
// trades in writeBenchTrades' input of n trades: the results expected.
func benchReplayWindows(n int) int {
	seen := make(map[[2]int64]bool)
	ts := int64(benchReplayTs0)
	for i := range n {
		ts += benchReplayStepNs
		seen[[2]int64{int64(i % benchReplaySymbols), ts / int64(time.Second)}] = true
	}
	return len(seen)
}

func appendCents(b []byte, cents int) []byte {
	b = strconv.AppendInt(b, int64(cents/100), 10)
	b = append(b, '.')
	c := cents % 100
	b = append(b, byte('0'+c/10), byte('0'+c%10))
	return b
}

// cpuNs returns the user and system CPU time of who (RUSAGE_SELF or
// RUSAGE_CHILDREN, the children waited for) in nanoseconds.
func cpuNs(who int) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// lineCounter counts the lines written through it.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// singleLoopVWAP is the baseline: bench.RefVWAP (`qstream bench ref-vwap`,
// one goroutine with bufio, fastjson and a map) over the input file. It
// returns the number of window results written.
func singleLoopVWAP(path string, out io.Writer) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	_, windows, err := bench.RefVWAP(f, out, int64(time.Second), "tumbling:1s:vwap")
	return int(windows), err
}

// BenchmarkReplayVWAP: each iteration runs the single-loop baseline, then
// `qstream replay --windows tumbling:1s:vwap --emit windows` in-process on the
// same 2M trades, and reports both times and the ratio (x-vs-loop: how many
// times faster replay is). It fails unless both wrote the same number of
// window results and that number is what the input holds.
//
// QSTREAM_BENCH_BINS="old=/path/to/qstream,new=/path/to/qstream" adds the
// same replay through those binaries (exec, output counted through a pipe),
// timed in the same iteration: the before/after figures of a change.
func BenchmarkReplayVWAP(b *testing.B) {
	path := benchReplayFile(b)
	wantResults := benchReplayWindows(benchReplayTrades)
	type bin struct{ name, path string }
	var bins []bin
	if s := os.Getenv("QSTREAM_BENCH_BINS"); s != "" {
		for _, kv := range strings.Split(s, ",") {
			name, p, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("QSTREAM_BENCH_BINS: %q is not name=path", kv)
			}
			bins = append(bins, bin{name, p})
		}
	}
	// The default --parse-threads (one per core); the binaries' own defaults.
	args := []string{"replay", "--input", path, "--format", "jsonl", "--windows", "tumbling:1s:vwap", "--emit", "windows"}
	// Wall time is the figure; CPU time (user+system, of this process for
	// the loop and the in-process replay, of the child for a binary) is
	// reported beside it because the machine is shared: it says how much
	// work each did, whatever the other processes took.
	var loopNs, replayNs, loopCPU, replayCPU int64
	binNs := make([]int64, len(bins))
	binCPU := make([]int64, len(bins))
	b.ResetTimer()
	for range b.N {
		var lc lineCounter
		c0 := cpuNs(syscall.RUSAGE_SELF)
		t0 := time.Now()
		n, err := singleLoopVWAP(path, &lc)
		loopNs += int64(time.Since(t0))
		loopCPU += cpuNs(syscall.RUSAGE_SELF) - c0
		if err != nil {
			b.Fatal(err)
		}
		if n != wantResults || lc.n != n {
			b.Fatalf("single loop: %d results (%d lines), want %d", n, lc.n, wantResults)
		}

		var out lineCounter
		var stderr bytes.Buffer
		c0 = cpuNs(syscall.RUSAGE_SELF)
		t0 = time.Now()
		rc := realMain(args, &out, &stderr)
		replayNs += int64(time.Since(t0))
		replayCPU += cpuNs(syscall.RUSAGE_SELF) - c0
		if rc != 0 {
			b.Fatalf("replay: exit status %d: %s", rc, stderr.String())
		}
		if out.n != n {
			b.Fatalf("replay wrote %d window results, the single loop %d", out.n, n)
		}

		for i, bn := range bins {
			var bout lineCounter
			cmd := exec.Command(bn.path, args...)
			cmd.Stdout = &bout
			cmd.Stderr = &stderr
			c0 := cpuNs(syscall.RUSAGE_CHILDREN)
			t0 = time.Now()
			err := cmd.Run()
			binNs[i] += int64(time.Since(t0))
			binCPU[i] += cpuNs(syscall.RUSAGE_CHILDREN) - c0
			if err != nil {
				b.Fatalf("%s: %v: %s", bn.name, err, stderr.String())
			}
			if bout.n != n {
				b.Fatalf("%s wrote %d window results, the single loop %d", bn.name, bout.n, n)
			}
		}
	}
	b.StopTimer()
	N := float64(b.N)
	b.ReportMetric(float64(loopNs)/N/1e6, "loop-ms")
	b.ReportMetric(float64(replayNs)/N/1e6, "replay-ms")
	b.ReportMetric(float64(loopNs)/float64(replayNs), "x-vs-loop")
	b.ReportMetric(float64(loopCPU)/N/1e6, "loop-cpu-ms")
	b.ReportMetric(float64(replayCPU)/N/1e6, "replay-cpu-ms")
	for i, bn := range bins {
		b.ReportMetric(float64(binNs[i])/N/1e6, bn.name+"-ms")
		b.ReportMetric(float64(loopNs)/float64(binNs[i]), bn.name+"-x-vs-loop")
		b.ReportMetric(float64(binCPU[i])/N/1e6, bn.name+"-cpu-ms")
	}
	b.ReportMetric(float64(benchReplayTrades)*N/(float64(replayNs)/1e9), "replay-trades/s")
}

// BenchmarkParseChunk parses one chunk of `qstream bench throughput`'s
// trades (bench.AppendTrade, 100 symbols, ~80 bytes a line) as a parse
// goroutine does, with a lookup-only parser whose symbols are interned:
// the per-line parse cost of replay, reported as ns/line. It fails unless
// every line became an event.
func BenchmarkParseChunk(b *testing.B) {
	var buf []byte
	for i := int64(0); len(buf) < parallelChunkBytes-200; i++ {
		buf = bench.AppendTrade(buf, i, benchReplayTs0+i*500_000, benchReplaySymbols)
	}
	lines := bytes.Count(buf, []byte{'\n'})
	syms := codec.NewSymbolTable(1 << 16)
	p := &parallelJSONL{limit: lineLimit(0)}
	c := &parseChunk{buf: buf}
	p.parseChunk(codec.NewParser(codec.ParserOptions{Symbols: syms}), c) // interns
	jp := codec.NewParser(codec.ParserOptions{Symbols: syms, LookupOnly: true})
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		p.parseChunk(jp, c)
	}
	for _, r := range c.recs {
		if r.kind != recEvent {
			b.Fatalf("line %d: kind %d, want an event", r.line, r.kind)
		}
	}
	if len(c.recs) != lines {
		b.Fatalf("%d records, want %d", len(c.recs), lines)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(lines), "ns/line")
}
