package bench

import (
	"encoding/json"
	"fmt"
	"io"
)

// The stamp lines written around a go test -bench output (`make bench`
// through `benchmd -stamp`, `qstream bench micro` itself): JSON after the
// prefix, one line each, saying where, when and by what command the run was
// made. go test writes no line starting with either; bench/benchmd reads
// them back.
const (
	StampPrefix    = "benchmd-stamp: "
	StampEndPrefix = "benchmd-stamp-end: "
)

// Stamp is the start stamp: the command and the machine at the start.
// Machine.LoadAvgEnd and CoresEnd come from the end stamp, a Machine of its
// own.
type Stamp struct {
	Command string  `json:"command"`
	Machine Machine `json:"machine"`
}

// WriteStamp writes the start stamp (when "start": this machine, now, cmd)
// or the end stamp (when "end": this machine's load average now). With
// probe, either records the cache-line round trip between two CPUs then
// (Machine.ProbeStart, trips a sample; 0: ProbeTrips).
func WriteStamp(w io.Writer, when, cmd string, probe bool, trips int) error {
	var line []byte
	var err error
	m := ThisMachine()
	if probe && (when == "start" || when == "end") {
		m.ProbeStart(0, trips)
	}
	switch when {
	case "start":
		line, err = json.Marshal(Stamp{Command: cmd, Machine: m})
		line = append([]byte(StampPrefix), line...)
	case "end":
		line, err = json.Marshal(m)
		line = append([]byte(StampEndPrefix), line...)
	default:
		return fmt.Errorf("bench: stamp %q: want start or end", when)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", line)
	return err
}
