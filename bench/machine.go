package bench

import (
	"bufio"
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

// SetEnd records the load average at the end of the run: a shared
// machine's load during a run says how far to trust its figures.
func (m *Machine) SetEnd() { m.LoadAvgEnd = loadAvg() }

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
	return b.String()
}
