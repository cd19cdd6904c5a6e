package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a child process that listens on a TCP address it prints on
// stderr ("... listening on HOST:PORT"): `qstream run --feed tcp` or
// `qstream bench ref`. Its stdout is the output path under test.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stdout io.ReadCloser
	tail   *tailLines
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

var listeningRe = regexp.MustCompile(`listening on (\S+)`)

// serverStartTimeout bounds a child's start until it prints its address.
const serverStartTimeout = 30 * time.Second

// startServer starts bin with args in dir and waits until it prints the
// address it listens on.
func startServer(bin string, args []string, dir string) (*server, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	s := &server{cmd: cmd, tail: &tailLines{max: 40}, exited: make(chan struct{})}
	var err error
	if s.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	addrc := make(chan string, 1)
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			s.tail.add(line)
			if m := listeningRe.FindStringSubmatch(line); m != nil && !sent {
				addrc <- m[1]
				sent = true
			}
		}
	}()
	go func() {
		<-stderrDone // Wait closes the pipes: read them to the end first
		s.err = cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.addr = <-addrc:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("bench: %s %s exited before listening: %v\n%s", bin, strings.Join(args, " "), s.err, s.tail)
	case <-time.After(serverStartTimeout):
		s.kill()
		return nil, fmt.Errorf("bench: %s did not listen within %s\n%s", bin, serverStartTimeout, s.tail)
	}
}

// stop sends SIGTERM (a clean stop) and waits for the exit, killing the
// process after timeout. It returns Wait's error when the stop was clean
// and an error saying so otherwise.
func (s *server) stop(timeout time.Duration) error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.err
	case <-time.After(timeout):
		s.kill()
		return fmt.Errorf("bench: %s did not stop within %s; killed\n%s", s.cmd.Path, timeout, s.tail)
	}
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// tailLines keeps the last max lines of a child's stderr, for errors.
type tailLines struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *tailLines) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

func (t *tailLines) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// runChild runs bin with args to completion and returns its stdout and
// stderr; a failure's error carries the stderr.
func runChild(bin string, args []string, dir string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return out, errb.Bytes(), fmt.Errorf("bench: %s %s: %w\n%s", bin, strings.Join(args, " "), err, errb.String())
	}
	return out, errb.Bytes(), nil
}
