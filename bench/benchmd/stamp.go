package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"qstream/bench"
)

// The stamp lines around a go test -bench output (bench.WriteStamp).
const (
	stampPrefix    = bench.StampPrefix
	stampEndPrefix = bench.StampEndPrefix
)

// stamp says where, when and by what command a go test -bench run was made.
// Machine.LoadAvgEnd and CoresEnd are filled from the end stamp, if any.
type stamp = bench.Stamp

// writeStamp is bench.WriteStamp with the default probe (-stamp).
func writeStamp(w io.Writer, when, cmd string, probe bool) error {
	return bench.WriteStamp(w, when, cmd, probe, 0)
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
