package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"qstream/bench"
)

// The stamp lines `make bench` writes around the go test -bench output
// (benchmd -stamp start, -stamp end): JSON after the prefix, one line each.
// go test writes no line starting with either.
const (
	stampPrefix    = "benchmd-stamp: "
	stampEndPrefix = "benchmd-stamp-end: "
)

// stamp says where, when and by what command a go test -bench run was made.
// Machine.LoadAvgEnd is filled from the end stamp, if any.
type stamp struct {
	Command string        `json:"command"`
	Machine bench.Machine `json:"machine"`
}

// writeStamp writes the start stamp (when "start": this machine, now, cmd)
// or the end stamp (when "end": this machine's load average now); with
// probe, either records the cache-line round trip between two CPUs then
// (bench.Machine.ProbeStart).
func writeStamp(w io.Writer, when, cmd string, probe bool) error {
	var line []byte
	var err error
	m := bench.ThisMachine()
	if probe && (when == "start" || when == "end") {
		m.ProbeStart(0, 0)
	}
	switch when {
	case "start":
		line, err = json.Marshal(stamp{Command: cmd, Machine: m})
		line = append([]byte(stampPrefix), line...)
	case "end":
		line, err = json.Marshal(m)
		line = append([]byte(stampEndPrefix), line...)
	default:
		return fmt.Errorf("-stamp %q: want start or end", when)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", line)
	return err
}

var errStamp = errors.New("bad stamp")

// readStamp takes one stamp line into run.
func (run *rawRun) readStamp(line string) error {
	if rest, ok := strings.CutPrefix(line, stampEndPrefix); ok {
		var m bench.Machine
		if err := json.Unmarshal([]byte(rest), &m); err != nil {
			return fmt.Errorf("%w: %q: %v", errStamp, line, err)
		}
		if run.stamp == nil {
			return fmt.Errorf("%w: an end stamp without a start stamp before it", errStamp)
		}
		run.stamp.Machine.LoadAvgEnd = m.LoadAvg
		run.stamp.Machine.CoresEnd = m.Cores
		if m.CoresNote != "" && run.stamp.Machine.CoresNote == "" {
			run.stamp.Machine.CoresNote = m.CoresNote
		}
		return nil
	}
	var s stamp
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, stampPrefix)), &s); err != nil {
		return fmt.Errorf("%w: %q: %v", errStamp, line, err)
	}
	if run.stamp != nil {
		return fmt.Errorf("%w: two start stamps (the output of two runs?)", errStamp)
	}
	run.stamp = &s
	return nil
}
