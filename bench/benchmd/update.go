package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"qstream/bench"
)

// The generated blocks of BENCHMARKS.md, by marker name (markers.go).
const (
	blockMustShow   = "must-show"
	blockMachine    = "machine"
	blockPackages   = "packages"
	blockE2E        = "e2e"
	blockThroughput = "throughput"
)

// ErrInput reports a missing or unreadable result file.
var ErrInput = errors.New("input")

// updateInputs names the file to rewrite and the result files of one make
// bench. cmd is the command of the go test -bench output when it has no
// stamp (output written before make bench stamped it).
type updateInputs struct {
	doc, results, e2e, throughput, svg string
	cmd                                string
}

// reports are the parsed result files.
type reports struct {
	run *rawRun
	e2e *bench.E2EReport
	tp  *bench.ThroughputReport
}

// updateFile rewrites the blocks of in.doc from the result files. Nothing
// is written unless every input is there and every block is found.
func updateFile(in updateInputs) error {
	for _, f := range []struct{ flag, path string }{{"-update", in.doc}, {"-results", in.results}, {"-e2e", in.e2e}, {"-throughput", in.throughput}, {"-svg", in.svg}} {
		if f.path == "" {
			return fmt.Errorf("%w: -update needs %s", ErrInput, f.flag)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInput, f.flag, err)
		}
	}
	rep, err := load(in)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(in.doc)
	if err != nil {
		return err
	}
	out, err := rewrite(doc, blocks(in, rep))
	if err != nil {
		return fmt.Errorf("%s: %w", in.doc, err)
	}
	if bytes.Equal(out, doc) {
		return nil
	}
	return writeFileAtomic(in.doc, out)
}

func load(in updateInputs) (*reports, error) {
	var rep reports
	f, err := os.Open(in.results)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	rep.run, err = parse(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInput, in.results, err)
	}
	if len(rep.run.results) == 0 {
		return nil, fmt.Errorf("%w: %s: no benchmark results", ErrInput, in.results)
	}
	rep.e2e = new(bench.E2EReport)
	if err := readJSON(in.e2e, rep.e2e); err != nil {
		return nil, err
	}
	if len(rep.e2e.Results) == 0 {
		return nil, fmt.Errorf("%w: %s: no results (not a qstream bench e2e report?)", ErrInput, in.e2e)
	}
	rep.tp = new(bench.ThroughputReport)
	if err := readJSON(in.throughput, rep.tp); err != nil {
		return nil, err
	}
	if len(rep.tp.Results) == 0 {
		return nil, fmt.Errorf("%w: %s: no results (not a qstream bench throughput report?)", ErrInput, in.throughput)
	}
	return &rep, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a report of another shape is the wrong file
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInput, path, err)
	}
	return nil
}

// blocks renders every block. The output depends on the inputs alone (no
// clock, no host), so that an update is repeatable.
func blocks(in updateInputs, rep *reports) map[string]string {
	render := func(f func(w io.Writer)) string {
		var b strings.Builder
		f(&b)
		return b.String()
	}
	svgLink := in.svg
	if rel, err := filepath.Rel(filepath.Dir(in.doc), in.svg); err == nil {
		svgLink = rel
	}
	svgLink = filepath.ToSlash(svgLink)
	srcs := sources(in, rep)
	return map[string]string{
		blockMustShow: render(func(w io.Writer) {
			fmt.Fprint(w, "Computed by `benchmd -update` from the result files of the last `make bench` (never from Markdown): "+
				"each ratio is of two figures measured in the same run, the medians of its repeats. Machine, dates and commands: next section.\n\n")
			writeMustShow(w, mustShow(rep.run, rep.e2e, rep.tp))
			fmt.Fprintf(w, "\n%s", machinesLine(srcs))
		}),
		blockMachine:    render(func(w io.Writer) { writeMachines(w, srcs) }),
		blockPackages:   render(func(w io.Writer) { writePackages(w, in, rep.run) }),
		blockE2E:        render(func(w io.Writer) { bench.WriteE2EMarkdown(w, rep.e2e, svgLink) }),
		blockThroughput: render(func(w io.Writer) { bench.WriteThroughputMarkdown(w, rep.tp) }),
	}
}

// source is one of the runs of make bench, as its result file records it.
type source struct {
	what, command, files string
	machine              bench.Machine
	partial              bool // only CPU and OS are known (an unstamped go test output)
}

func sources(in updateInputs, rep *reports) []source {
	pkg := source{what: "package benchmarks (`go test -bench`)", files: "`" + filepath.ToSlash(in.results) + "`"}
	if s := rep.run.stamp; s != nil {
		pkg.command, pkg.machine = s.Command, s.Machine
	} else {
		pkg.command, pkg.partial = in.cmd, true
		pkg.machine = bench.Machine{CPU: rep.run.cpu}
		if rep.run.goos != "" {
			pkg.machine.OS = rep.run.goos + "/" + rep.run.goarch
		}
	}
	return []source{
		pkg,
		{what: "end to end (`qstream bench e2e`)", command: rep.e2e.Command, machine: rep.e2e.Machine,
			files: "`" + filepath.ToSlash(in.e2e) + "`, plot `" + filepath.ToSlash(in.svg) + "`"},
		{what: "throughput (`qstream bench throughput`)", command: rep.tp.Command, machine: rep.tp.Machine,
			files: "`" + filepath.ToSlash(in.throughput) + "`"},
	}
}

// sameMachine reports whether every source names the same machine (as far
// as each records it).
func sameMachine(srcs []source) bool {
	ref := srcs[len(srcs)-1].machine
	for _, s := range srcs {
		m := s.machine
		if m.CPU != ref.CPU || (m.OS != "" && m.OS != ref.OS) {
			return false
		}
		if !s.partial && (m.CPUs != ref.CPUs || m.GOMAXPROCS != ref.GOMAXPROCS || m.Go != ref.Go || m.Kernel != ref.Kernel) {
			return false
		}
	}
	return true
}

func machineText(m bench.Machine) string {
	return fmt.Sprintf("%s, %d logical CPUs (GOMAXPROCS %d); Go %s %s; kernel %s", m.CPU, m.CPUs, m.GOMAXPROCS, m.Go, m.OS, m.Kernel)
}

func orNotRecorded(s string) string {
	if s == "" {
		return "not recorded"
	}
	return s
}

// machinesLine is the one-line summary under the must-show table.
func machinesLine(srcs []source) string {
	var dates []string
	for _, s := range srcs {
		dates = append(dates, strings.SplitN(s.what, " (", 2)[0]+" "+orNotRecorded(s.machine.Date))
	}
	if !sameMachine(srcs) {
		return "**The result files come from different machines** (next section). Started: " + strings.Join(dates, "; ") + ".\n"
	}
	return "Machine: " + machineText(srcs[len(srcs)-1].machine) + ". Started (UTC): " + strings.Join(dates, "; ") + ".\n"
}

func writeMachines(w io.Writer, srcs []source) {
	if sameMachine(srcs) {
		fmt.Fprintf(w, "All three on one machine: %s.\n\n", machineText(srcs[len(srcs)-1].machine))
	} else {
		fmt.Fprint(w, "**The result files come from different machines:**\n\n")
		for _, s := range srcs {
			fmt.Fprintf(w, "- %s: %s\n", s.what, machineText(s.machine))
		}
		fmt.Fprint(w, "\n")
	}
	fmt.Fprint(w, "| run | command | started (UTC) | load average (1, 5, 15 min) at the start; at the end | cache-line round trip between two CPUs | result file |\n|---|---|---|---|---|---|\n")
	for _, s := range srcs {
		cmd := "not recorded"
		if s.command != "" {
			cmd = "`" + strings.ReplaceAll(s.command, "|", `\|`) + "`" // a | would end the cell
		}
		load := orNotRecorded(s.machine.LoadAvg) + "; " + orNotRecorded(s.machine.LoadAvgEnd)
		if s.partial {
			cmd += " (no stamp in the file: written before `make bench` recorded one)"
		}
		cores := "not measured"
		if s.machine.Cores != nil {
			cores = coresText(s.machine)
		}
		if s.machine.CoresNote != "" {
			cores += " (" + s.machine.CoresNote + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", s.what, cmd, orNotRecorded(s.machine.Date), load, cores, s.files)
	}
	fmt.Fprint(w, "\nThe round trip is the median of 7 samples of 20,000 of a cache line written by a thread on one CPU and answered by "+
		"a thread on the other (`bench.ProbeCores`): every cross-thread figure above is bounded by it, and on a shared VM it is the host's "+
		"(the same guest has measured 45-120 ns and 500-560 ns minutes apart, within one `make bench`).\n")
	fmt.Fprint(w, "\n`make bench` runs the three in this order, then `make bench-md`: `benchmd -update` rewrites the generated blocks "+
		"of this file from the result files and leaves the rest as it is; `make bench-md` alone redoes that from the files as they are.\n")
}

func writePackages(w io.Writer, in updateInputs, run *rawRun) {
	fmt.Fprintf(w, "From `%s`: the median of the runs of each benchmark; ratios against baselines measured in the same run.\n\n", filepath.ToSlash(in.results))
	writeTables(w, run)
}

// writeFileAtomic replaces path with b (a temporary file beside it, then a
// rename), keeping its permissions.
func writeFileAtomic(path string, b []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
