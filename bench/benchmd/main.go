// Command benchmd turns the output of `make bench` into BENCHMARKS.md.
//
// With -in it reads `go test -bench` output (with -count N) and writes its
// tables: the median of each metric per benchmark and the ratios against the
// baselines measured in the same run (bench/results.md; -json for programs):
//
//	go test -run '^$' -bench . -benchmem -count 5 ./... | tee bench.txt
//	go run ./bench/benchmd -in bench.txt -cmd "make bench" > results.md
//
// With -update it rewrites the generated blocks of a Markdown file from the
// result files of one `make bench` (see update.go), leaving every byte
// outside the blocks as it was:
//
//	benchmd -update BENCHMARKS.md -results bench/results.txt \
//	    -e2e bench/results-e2e.json -throughput bench/results-throughput.json \
//	    -svg bench/e2e-latency.svg
//
// With -stamp start|end it writes a line describing this machine and the
// time (and, at the start, -cmd) and the cache-line round trip between two
// of its CPUs then, which `make bench` puts around the
// `go test -bench` output so that -update can say where and when the package
// benchmarks ran.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	in := flag.String("in", "-", "go test -bench output to read")
	cmd := flag.String("cmd", "", "the command that produced the input (-in, -stamp start; with -update: only if -results has no stamp)")
	asJSON := flag.Bool("json", false, "write the medians and ratios as JSON instead of Markdown")
	update := flag.String("update", "", "rewrite the generated blocks of this Markdown file")
	resultsPath := flag.String("results", "", "with -update: go test -bench output of make bench (bench/results.txt)")
	e2ePath := flag.String("e2e", "", "with -update: the JSON report of qstream bench e2e")
	tpPath := flag.String("throughput", "", "with -update: the JSON report of qstream bench throughput")
	svgPath := flag.String("svg", "", "with -update: the latency plot of qstream bench e2e, linked beside its table")
	stampWhen := flag.String("stamp", "", "write the start or end stamp line (start|end) for make bench's raw output")
	probe := flag.Bool("probe-cores", true, "with -stamp: record the cache-line round trip between two CPUs (two busy threads for 20-100 ms)")
	flag.Parse()

	var err error
	switch {
	case *stampWhen != "":
		err = writeStamp(os.Stdout, *stampWhen, *cmd, *probe)
	case *update != "":
		err = updateFile(updateInputs{
			doc: *update, results: *resultsPath, e2e: *e2ePath, throughput: *tpPath, svg: *svgPath, cmd: *cmd,
		})
	default:
		err = tables(*in, *cmd, *asJSON)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmd:", err)
		os.Exit(1)
	}
}

// tables writes the tables of one go test -bench output (-in) to stdout.
func tables(in, cmd string, asJSON bool) error {
	if cmd == "" {
		cmd = "make bench"
	}
	var r io.Reader = os.Stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	run, err := parse(r)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(os.Stdout, run, cmd)
	}
	write(os.Stdout, run, cmd)
	return nil
}
