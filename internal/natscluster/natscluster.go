// Package natscluster gives tests the three-server NATS JetStream cluster
// that scripts/nats-cluster.sh runs on loopback (servers n1, n2, n3; client
// ports 4241-4243, monitoring 8241-8243; cluster qstream-test), and the
// crashes they need: Kill is a SIGKILL of one server, Restart starts it again
// on the same configuration and store.
//
// Tests that use it talk to the real cluster and fail (never skip) when it
// is down, with the command that starts it: `make services` or
// `./scripts/nats-cluster.sh start`. The cluster is shared by every test
// package that uses it, and go test runs packages in parallel processes, so
// Require holds the cluster for the calling test until it ends (an
// exclusive lock on a file beside the servers' stores): tests that use the
// cluster run one at a time, and one's Kill never lands in the middle of
// another. A test that kills a server restarts it before it ends
// (t.Cleanup), and names its streams and buckets uniquely.
package natscluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Size is the number of servers; they are numbered 1..Size.
const Size = 3

// Ports of server i (1..Size) are base+i.
const (
	clientPortBase = 4240
	httpPortBase   = 8240
)

// startHint is how a failure says to start the cluster.
const startHint = "start it with `./scripts/nats-cluster.sh start` or `make services`"

// URL returns the client URL of server i (1..Size).
func URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", clientPortBase+i) }

// URLs returns the client URLs of the three servers, n1 first.
func URLs() []string {
	u := make([]string, Size)
	for i := range u {
		u[i] = URL(i + 1)
	}
	return u
}

// Name returns the server name of server i ("n1" for 1).
func Name(i int) string { return fmt.Sprintf("n%d", i) }

// Index returns the number of the server called name (as a stream's
// ClusterInfo.Leader names it), or 0 for a name not in the cluster.
func Index(name string) int {
	for i := 1; i <= Size; i++ {
		if name == Name(i) {
			return i
		}
	}
	return 0
}

// Require takes the cluster for t until it ends (waiting, at most 5
// minutes, for a test of another package to release it), checks that every
// server answers and that JetStream works (it creates and deletes a small
// R3 stream), and returns the comma-joined client URLs for nats.Connect.
// On failure it calls t.Fatalf with how to start the cluster.
func Require(t testing.TB) string {
	t.Helper()
	hold(t)
	for i := 1; i <= Size; i++ {
		nc, err := nats.Connect(URL(i), nats.Timeout(2*time.Second), nats.NoReconnect())
		if err != nil {
			t.Fatalf("natscluster: server %s is not reachable at %s: %v (%s)", Name(i), URL(i), err, startHint)
		}
		nc.Close()
	}
	nc, err := nats.Connect(strings.Join(URLs(), ","), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("natscluster: connect: %v (%s)", err, startHint)
	}
	defer nc.Close()
	if err := checkJetStream(nc); err != nil {
		t.Fatalf("natscluster: JetStream does not work on the cluster at %s: %v (%s)", strings.Join(URLs(), ","), err, startHint)
	}
	return strings.Join(URLs(), ",")
}

// lockWaitMax bounds how long Require waits for another test to release
// the cluster.
const lockWaitMax = 5 * time.Minute

var (
	heldMu sync.Mutex
	held   = map[string]bool{} // names of the tests of this process that hold the cluster
)

// hold takes the cluster for t until it ends: an exclusive flock on
// Dir()/lock, released in t.Cleanup (so after the test's own clean-ups
// registered later, such as a Restart). A test that holds it already, or
// whose parent test does, does not take it again.
func hold(t testing.TB) {
	t.Helper()
	name := t.Name()
	heldMu.Lock()
	for h := range held {
		if name == h || strings.HasPrefix(name, h+"/") {
			heldMu.Unlock()
			return
		}
	}
	heldMu.Unlock()
	if err := os.MkdirAll(Dir(), 0o755); err != nil {
		t.Fatalf("natscluster: %v", err)
	}
	path := filepath.Join(Dir(), "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("natscluster: %v", err)
	}
	deadline := time.Now().Add(lockWaitMax)
	for tries := 0; ; tries++ {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			t.Fatalf("natscluster: lock %s: %v", path, err)
		}
		// A server started by a process that held the lock (flock(1)
		// without -o, a shell's exec 3<lock) inherits it and never lets
		// go: say so at once rather than after lockWaitMax.
		if tries%40 == 0 {
			if servers := lockServers(path); len(servers) > 0 {
				f.Close()
				t.Fatalf("natscluster: the cluster's lock %s is held open by nats-server processes %v, which inherited it "+
					"from the process that started them; restart the cluster: ./scripts/nats-cluster.sh stop && ./scripts/nats-cluster.sh start", path, servers)
			}
		}
		if time.Now().After(deadline) {
			owner, _ := os.ReadFile(path)
			f.Close()
			t.Fatalf("natscluster: another test has held the cluster for %s (%s names the last taker: %s; open by pids %v)",
				lockWaitMax, path, strings.TrimSpace(string(owner)), lockHolders(path))
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt(fmt.Appendf(nil, "pid %d test %s since %s\n", os.Getpid(), name, time.Now().UTC().Format(time.RFC3339)), 0)
	heldMu.Lock()
	held[name] = true
	heldMu.Unlock()
	t.Cleanup(func() {
		heldMu.Lock()
		delete(held, name)
		heldMu.Unlock()
		f.Close() // releases the flock
	})
}

// lockHolders returns "pid (command)" of every other process that has
// path open, from /proc.
func lockHolders(path string) []string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == self {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && l == path {
				comm, _ := os.ReadFile(filepath.Join(p, "comm"))
				out = append(out, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
				break
			}
		}
	}
	return out
}

// lockServers returns the nats-server processes among lockHolders(path).
func lockServers(path string) []string {
	var out []string
	for _, h := range lockHolders(path) {
		if strings.HasSuffix(h, "(nats-server)") {
			out = append(out, h)
		}
	}
	return out
}

// checkJetStream creates and deletes a one-message R3 file stream.
func checkJetStream(nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("account info: %w", err)
	}
	name := fmt.Sprintf("NATSCLUSTER_PROBE_%d_%d", os.Getpid(), time.Now().UnixNano())
	subject := "natscluster.probe." + name
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject},
		Replicas: Size, Storage: jetstream.FileStorage, MaxMsgs: 1}); err != nil {
		return fmt.Errorf("create R%d stream: %w", Size, err)
	}
	_, perr := js.Publish(ctx, subject, []byte("probe"))
	if err := js.DeleteStream(ctx, name); err != nil {
		return fmt.Errorf("delete stream %s: %w", name, err)
	}
	if perr != nil {
		return fmt.Errorf("publish to an R%d stream: %w", Size, perr)
	}
	return nil
}

// Kill sends SIGKILL to server i (1..Size) and waits until it is gone and
// its client port no longer answers; a server that is not running is left
// so. Its store stays as the crash left it. Kill registers no restart: the
// caller restarts it (Restart), usually in t.Cleanup as well.
//
// The signal is sent from here (the pid file the script's configuration
// names), not through the script, so a test can time what follows it.
func Kill(t testing.TB, i int) {
	t.Helper()
	checkIndex(t, i)
	pid := serverPID(i)
	if pid == 0 {
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("natscluster: kill %s (pid %d): %v", Name(i), pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for serverPID(i) != 0 || answers(i) {
		if time.Now().After(deadline) {
			t.Fatalf("natscluster: %s (pid %d) still runs 10 s after SIGKILL", Name(i), pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Dir returns the directory of the cluster's configurations, stores and
// logs, as scripts/nats-cluster.sh computes it.
func Dir() string {
	if d := os.Getenv("NATSCLUSTER_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "qstream-natscluster")
}

// serverPID returns the pid of server i if it runs (its pid file names a
// live nats-server that is not a zombie), else 0.
func serverPID(i int) int {
	b, err := os.ReadFile(filepath.Join(Dir(), Name(i), "nats-server.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "nats-server" {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if j := bytes.LastIndexByte(stat, ')'); j < 0 || j+2 >= len(stat) || stat[j+2] == 'Z' {
		return 0
	}
	return pid
}

// answers reports whether server i accepts TCP connections on its client port.
func answers(i int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", clientPortBase+i), 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Restart starts server i again (killing it first if it runs) with the
// same configuration and store, and waits until it answers, sees the
// JetStream meta leader, and reports itself healthy: the server's /healthz
// answers 200 only once its JetStream assets (streams and consumers) are
// current with their leaders.
func Restart(t testing.TB, i int) {
	t.Helper()
	checkIndex(t, i)
	if out, err := script(t, "restart", fmt.Sprint(i)); err != nil {
		t.Fatalf("natscluster: restart %s: %v\n%s", Name(i), err, out)
	}
	if err := waitHealthy(i, 60*time.Second); err != nil {
		t.Fatalf("natscluster: restart %s: %v", Name(i), err)
	}
}

// Healthy reports whether server i answers its /healthz with 200 (it runs
// and its JetStream assets are current).
func Healthy(i int) bool {
	return healthz(i) == nil
}

// StreamState is a stream's state as one server's own store holds it.
type StreamState struct {
	Msgs     uint64 `json:"messages"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// LocalStreamState returns the state of the named stream (global account)
// in server i's own replica, from its /jsz monitoring endpoint: what that
// server has stored, whether or not it leads the stream. ok is false when
// the server holds no replica of it.
func LocalStreamState(i int, stream string) (st StreamState, ok bool, err error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true", httpPortBase+i))
	if err != nil {
		return st, false, fmt.Errorf("natscluster: %s /jsz: %w", Name(i), err)
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name  string      `json:"name"`
				State StreamState `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&jsz); err != nil {
		return st, false, fmt.Errorf("natscluster: %s /jsz: %w", Name(i), err)
	}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if s.Name == stream {
				return s.State, true, nil
			}
		}
	}
	return st, false, nil
}

func healthz(i int) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPortBase+i))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz %s: %s", resp.Status, strings.TrimSpace(b.String()))
	}
	return nil
}

// waitHealthy polls server i's /healthz every 100 ms until it answers 200.
func waitHealthy(i int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := healthz(i)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %s: %w", Name(i), within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkIndex(t testing.TB, i int) {
	t.Helper()
	if i < 1 || i > Size {
		t.Fatalf("natscluster: server %d: want 1..%d", i, Size)
	}
}

// script runs scripts/nats-cluster.sh with args (bounded by a minute).
func script(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	path, err := ScriptPath()
	if err != nil {
		t.Fatalf("natscluster: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, "bash", append([]string{path}, args...)...).CombinedOutput()
}

// ScriptPath returns the path of scripts/nats-cluster.sh, found by walking
// up from the working directory (a test runs in its package's directory)
// to the directory that holds go.mod.
func ScriptPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "scripts", "nats-cluster.sh")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("module root %s has no scripts/nats-cluster.sh: %w", dir, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
