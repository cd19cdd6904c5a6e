package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes the host a report was measured on.
type Machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	LoadAvg    string `json:"loadavg"`     // at the start of the run
	LoadAvgEnd string `json:"loadavg_end"` // at its end (SetEnd)
	Date       string `json:"date"`        // UTC, RFC 3339
	// The cache-line round trip between two CPUs (coreprobe.go) at the
	// start of the run (ProbeStart) and at its end (SetEnd, when the start
	// was probed); CoresNote says why a probe is missing.
	Cores     *CoreProbe `json:"cores,omitempty"`
	CoresEnd  *CoreProbe `json:"cores_end,omitempty"`
	CoresNote string     `json:"cores_note,omitempty"`
}

// ThisMachine describes the current host.
func ThisMachine() Machine {
	m := Machine{
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Date: time.Now().UTC().Format(time.RFC3339),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	m.LoadAvg = loadAvg()
	return m
}

// ProbeStart measures the cache-line round trip between two CPUs at the
// start of a run: ProbeCores with samples and trips (0: ProbeSamples,
// ProbeTrips, 20-100 ms of two busy threads).
func (m *Machine) ProbeStart(samples, trips int) {
	if samples <= 0 {
		samples = ProbeSamples
	}
	if trips <= 0 {
		trips = ProbeTrips
	}
	m.Cores = m.probe(samples, trips)
}

// SetEnd records the load average at the end of the run, and the
// cache-line round trip (as many samples and trips as at the start) when
// the start had it: a shared machine's load and its cores' round trip
// during a run say how far to trust its figures.
func (m *Machine) SetEnd() {
	m.LoadAvgEnd = loadAvg()
	if m.Cores != nil {
		m.CoresEnd = m.probe(m.Cores.Samples, m.Cores.Trips)
	}
}

func (m *Machine) probe(samples, trips int) *CoreProbe {
	p, err := ProbeCores(samples, trips)
	if err != nil {
		m.CoresNote = err.Error()
		return nil
	}
	return &p
}

// Text is the probe in a line: "95 ns (89-171 ns over 7 samples of 20000
// round trips, CPUs 0 and 1)".
func (p *CoreProbe) Text() string {
	if p == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.0f ns (%.0f-%.0f ns over %d samples of %d round trips, CPUs %d and %d)",
		p.MedianNs, p.MinNs, p.MaxNs, p.Samples, p.Trips, p.CPUs[0], p.CPUs[1])
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// Markdown is the machine as a list for the results files.
func (m Machine) Markdown() string {
	var b strings.Builder
	b.WriteString("- CPU: " + m.CPU + ", " + itoa(m.CPUs) + " logical CPUs (GOMAXPROCS " + itoa(m.GOMAXPROCS) + ")\n")
	b.WriteString("- Go: " + m.Go + " " + m.OS + "; kernel " + m.Kernel + "\n")
	b.WriteString("- Load average (1, 5, 15 min) at the start: " + m.LoadAvg)
	if m.LoadAvgEnd != "" {
		b.WriteString("; at the end: " + m.LoadAvgEnd)
	}
	b.WriteString("; measured " + m.Date + "\n")
	if t := m.CoresText(); t != "" {
		b.WriteString("- Cache-line round trip between two CPUs " + t + "\n")
	}
	return b.String()
}

// CoresText is the core probes of the run, "at the start: 95 ns (...); at
// the end: 480 ns (...)", with the note of a probe that failed; empty if
// the run was not probed.
func (m Machine) CoresText() string {
	if m.Cores == nil && m.CoresNote == "" {
		return ""
	}
	t := "at the start: " + m.Cores.Text()
	if m.CoresEnd != nil {
		t += "; at the end: " + m.CoresEnd.Text()
	}
	if m.CoresNote != "" {
		t += " (" + m.CoresNote + ")"
	}
	return t
}
