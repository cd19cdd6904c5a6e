package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// The servers of the sink tests: the shared Redis and ClickHouse that
// `make services` starts, and NATS servers of the tests' own (a test that
// stops its server must not stop anyone else's).

const (
	redisAddr   = "127.0.0.1:6379"
	chHTTPAddr  = "127.0.0.1:8123"
	chNativeURL = "127.0.0.1:9000"
)

func redisClient(t *testing.T, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr, DB: db})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis-server is not reachable on %s (%v): start it with `make services`", redisAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// chQuery runs one statement over ClickHouse's HTTP interface and returns
// the response body.
func chQuery(t *testing.T, query string) string {
	t.Helper()
	resp, err := http.Post("http://"+chHTTPAddr+"/", "text/plain", strings.NewReader(query))
	if err != nil {
		t.Fatalf("clickhouse-server is not reachable on %s (%v): start it with `make services`", chHTTPAddr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("clickhouse: %s: %s: %s", query, resp.Status, b)
	}
	return string(b)
}

// chDatabase returns a fresh database name, dropped at cleanup.
func chDatabase(t *testing.T) string {
	t.Helper()
	db := fmt.Sprintf("qstream_e2e_%d", rand.Uint32())
	chQuery(t, "SELECT 1")
	t.Cleanup(func() {
		http.Post("http://"+chHTTPAddr+"/", "text/plain", strings.NewReader("DROP DATABASE IF EXISTS "+db))
	})
	return db
}

// chRows returns the rows of a query as JSON objects (FORMAT JSONEachRow).
func chRows(t *testing.T, query string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(chQuery(t, query+" FORMAT JSONEachRow")), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(line))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("clickhouse row %q: %v", line, err)
		}
		rows = append(rows, m)
	}
	return rows
}

func chCount(t *testing.T, query string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(chQuery(t, query)))
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// natsServer is a nats-server with JetStream of the test's own, on a fixed
// port and store directory so that it can be stopped and started again.
type natsServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	if _, err := exec.LookPath("nats-server"); err != nil {
		t.Fatalf("nats-server is not installed: run `make services` (it installs Debian's nats-server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &natsServer{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", filepath.Join(s.dir, "js"),
		"-l", filepath.Join(s.dir, "nats.log"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if nc, err := nats.Connect(s.url(), nats.Timeout(time.Second)); err == nil {
			js, _ := jetstream.New(nc)
			_, jerr := js.AccountInfo(context.Background())
			nc.Close()
			if jerr == nil {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "nats.log"))
	s.t.Fatalf("nats-server on port %d did not start:\n%s", s.port, log)
}

func (s *natsServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// stream creates a JetStream stream capturing every qstream subject, with a
// de-duplication window on Nats-Msg-Id.
func (s *natsServer) stream(t *testing.T, name string) {
	t.Helper()
	nc, err := nats.Connect(s.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{"qstream.>"},
		Duplicates: 10 * time.Minute, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
}

// natsMessage is one stored message of a stream.
type natsMessage struct {
	subject, id, data string
}

// openStream connects to the server and looks the stream up.
func (s *natsServer) openStream(name string) (*nats.Conn, jetstream.Stream, int, error) {
	nc, err := nats.Connect(s.url())
	if err != nil {
		return nil, nil, 0, err
	}
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		nc.Close()
		return nil, nil, 0, err
	}
	info, err := st.Info(context.Background())
	if err != nil {
		nc.Close()
		return nil, nil, 0, err
	}
	return nc, st, int(info.State.Msgs), nil
}

// messages reads every message of the stream.
func (s *natsServer) messages(t *testing.T, name string) []natsMessage {
	t.Helper()
	nc, st, n, err := s.openStream(name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	defer nc.Close()
	var out []natsMessage
	if n == 0 {
		return nil
	}
	c, err := st.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for len(out) < n {
		batch, err := c.Fetch(min(n-len(out), 10000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, natsMessage{subject: m.Subject(), id: m.Headers().Get("Nats-Msg-Id"), data: string(m.Data())})
			got++
		}
		if got == 0 {
			t.Fatalf("stream %s: fetched %d of %d messages: %v", name, len(out), n, batch.Error())
		}
	}
	return out
}

// count returns the stream's message count, -1 while it cannot be read.
func (s *natsServer) count(t *testing.T, name string) int {
	nc, _, n, err := s.openStream(name)
	if err != nil {
		return -1
	}
	nc.Close()
	return n
}

// diffMultiset describes how two multisets of lines differ (empty: equal).
func diffMultiset(got, want []string) string {
	count := map[string]int{}
	for _, l := range want {
		count[l]++
	}
	for _, l := range got {
		count[l]--
	}
	var b bytes.Buffer
	shown := 0
	for l, c := range count {
		if c != 0 && shown < 5 {
			fmt.Fprintf(&b, "  %+d × %s\n", -c, l)
			shown++
		}
	}
	if b.Len() == 0 && len(got) != len(want) {
		return fmt.Sprintf("%d lines vs %d", len(got), len(want))
	}
	return b.String()
}
