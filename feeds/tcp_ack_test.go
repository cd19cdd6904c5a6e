package feeds

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/wal"
)

// slowSyncFS is the OS file system whose fdatasync takes delay: a slow
// disk, or a busy one.
type slowSyncFS struct {
	wal.OSFS
	delay time.Duration
	syncs atomic.Int64
}

func (f *slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &slowSyncFile{File: file, fs: f}, nil
}

type slowSyncFile struct {
	wal.File
	fs *slowSyncFS
}

func (f *slowSyncFile) Datasync() error {
	time.Sleep(f.fs.delay)
	f.fs.syncs.Add(1)
	return f.File.Datasync()
}

// A connection's ack waits for its messages' fsync; the other connections
// of its event loop do not: with a 400 ms fsync, a second client's message
// on the same (only) loop is processed long before the first client's ack
// arrives, and both acks come, each after its own messages are durable.
// (Before, the loop waited in Barrier and read nothing else meanwhile.)
func TestTCPAckDoesNotHoldTheLoop(t *testing.T) {
	dir := t.TempDir()
	fs := &slowSyncFS{delay: 400 * time.Millisecond}
	w, err := engine.OpenWAL(filepath.Join(dir, "wal"), wal.Options{FS: fs, SegmentSize: 1 << 20, MaxRecordSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	specs, _ := ops.ParseIndicators("sma:2")
	out := &engSink{}
	e, err := engine.New(engine.Config{
		Shards:  1,
		Symbols: codec.NewSymbolTable(64),
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 64})
		},
		Output:     out,
		Durability: w,
		Logger:     quietSlog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	pubs := &engPubs{e: e}
	s, err := NewTCPServer(TCPConfig{Addr: "127.0.0.1:0", Format: TCPLines, EventLoops: 1, Ack: true, Logger: tcpQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runFeed(t, s, pubs, s.Ready())
	defer func() { stop(); pubs.detachAll() }()

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	a, aAcks := dial()
	b, bAcks := dial()
	ackAt := make(chan time.Time, 2)
	readAck := func(r *bufio.Reader, c net.Conn, want string) {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Errorf("ack %q, %v; want %s", line, err, want)
		}
		ackAt <- time.Now()
	}
	start := time.Now()
	if _, err := a.Write([]byte(engTrade("AAA", 1, time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	go readAck(aAcks, a, `{"ack":1}`)
	time.Sleep(20 * time.Millisecond) // A's read is in; its fsync has begun
	if _, err := b.Write([]byte(engTrade("BBB", 1, time.Millisecond) + engTrade("BBB", 2, time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	go readAck(bAcks, b, `{"ack":2}`)
	// B's messages reach the operators while A's fsync goes on.
	var bSeen time.Duration
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n := 0
		for _, o := range out.all() {
			if e.Symbols().Name(o.Symbol) == "BBB" {
				n++
			}
		}
		if n == 2 {
			bSeen = time.Since(start)
			break
		}
	}
	first, second := <-ackAt, <-ackAt
	firstAck := first.Sub(start)
	if bSeen == 0 {
		t.Fatal("B's messages were not processed")
	}
	if bSeen >= firstAck || firstAck < 300*time.Millisecond {
		t.Fatalf("B's messages processed after %s, the first ack came after %s: the loop waited for A's fsync", bSeen, firstAck)
	}
	if second.Before(first) || fs.syncs.Load() == 0 {
		t.Fatalf("acks out of order or no fsync: %v %v, %d syncs", first, second, fs.syncs.Load())
	}
	t.Logf("B processed after %s; acks after %s and %s (fsync %s)", bSeen, firstAck, second.Sub(start), fs.delay)
}
