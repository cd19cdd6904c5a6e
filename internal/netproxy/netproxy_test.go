package netproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// echoServer echoes every connection on loopback and counts what it got.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
	received atomic.Int64
	wg       sync.WaitGroup
}

func newEcho(t testing.TB) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			e.accepted.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						e.received.Add(int64(n))
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.wg.Wait()
	})
	return e
}

func newProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg on c and reads it back within a second.
func roundTrip(c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// silent asserts that c reads nothing for d: the read times out.
func silent(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read during the partition: %d bytes, %v; want a timeout", n, err)
	}
}

// closedByPeer asserts that reading c ends with EOF or ECONNRESET within a second.
func closedByPeer(t *testing.T, c net.Conn, wantReset bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	var b [64]byte
	var err error
	for err == nil {
		_, err = c.Read(b[:])
	}
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case errors.Is(err, io.EOF) && !wantReset:
	default:
		t.Fatalf("read: %v; want ECONNRESET%s", err, map[bool]string{false: " or EOF", true: ""}[wantReset])
	}
}

func TestForwardsBothWays(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB: several buffers each way
	for _, msg := range []string{"hello", string(big)} {
		if err := roundTrip(c, msg); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(5 + len(big))
	// A pump counts its bytes after its write returns, which may be after
	// the echo has reached the client.
	deadline := time.Now().Add(time.Second)
	for st := p.Stats(); (st.BytesUp != want || st.BytesDown != want) && time.Now().Before(deadline); st = p.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	st := p.Stats()
	if st.Accepted != 1 || st.Active != 1 || st.BytesUp != want || st.BytesDown != want || st.DroppedUp+st.DroppedDown != 0 {
		t.Fatalf("stats %+v, want 1 connection and %d bytes each way", st, want)
	}
	// A client's half-close reaches the server, whose close reaches the client.
	c.(*net.TCPConn).CloseWrite()
	closedByPeer(t, c, false)
}

func TestPartitionBlackholesThenHeal(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	old := dial(t, p.Addr())
	if err := roundTrip(old, "before"); err != nil {
		t.Fatal(err)
	}
	p.Partition()
	// The open connection: writes succeed, nothing reaches the server,
	// nothing comes back, and it is not closed.
	if _, err := old.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	silent(t, old, 300*time.Millisecond)
	// A new connection is accepted but goes nowhere.
	fresh := dial(t, p.Addr())
	if _, err := fresh.Write([]byte("lost too")); err != nil {
		t.Fatal(err)
	}
	silent(t, fresh, 300*time.Millisecond)
	if e.received.Load() != int64(len("before")) || e.accepted.Load() != 1 {
		t.Fatalf("the server got %d bytes on %d connections during the partition, want 6 on 1", e.received.Load(), e.accepted.Load())
	}
	st := p.Stats()
	if st.Blackholed != 2 || st.DroppedUp != uint64(len("lost")+len("lost too")) || st.Active != 2 {
		t.Fatalf("stats %+v: want 2 blackholed connections, 12 bytes dropped", st)
	}

	p.Heal()
	closedByPeer(t, old, false) // cut connections are closed at Heal
	closedByPeer(t, fresh, false)
	c := dial(t, p.Addr())
	if err := roundTrip(c, "after"); err != nil {
		t.Fatalf("a new connection after Heal: %v", err)
	}
	if st := p.Stats(); st.Active != 1 {
		t.Fatalf("stats after Heal %+v, want 1 active connection", st)
	}
}

// TestPartitionDropsServerBytes: what the server sends during a partition
// never reaches the client.
func TestPartitionDropsServerBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			srv <- c
		}
	}()
	p := newProxy(t, ln.Addr().String())
	c := dial(t, p.Addr())
	s := <-srv
	defer s.Close()
	p.Partition()
	if _, err := s.Write([]byte("unseen")); err != nil {
		t.Fatal(err)
	}
	silent(t, c, 300*time.Millisecond)
	deadline := time.Now().Add(time.Second)
	for p.Stats().DroppedDown != 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := p.Stats(); st.DroppedDown != 6 || st.BytesDown != 0 {
		t.Fatalf("stats %+v, want 6 bytes dropped down and none forwarded", st)
	}
}

func TestResetClosesAndRefuses(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	if err := roundTrip(c, "x"); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	closedByPeer(t, c, true)
	// New connections are reset at once.
	c2, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err == nil {
		defer c2.Close()
		closedByPeer(t, c2, false)
	}
	p.Heal()
	if err := roundTrip(dial(t, p.Addr()), "y"); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	if st := p.Stats(); st.ResetConns != 2 {
		t.Fatalf("stats %+v, want 2 connections reset", st)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	e := newEcho(t)
	p, err := New("127.0.0.1:0", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	if err := roundTrip(c, "x"); err != nil {
		t.Fatal(err)
	}
	p.Partition()
	dial(t, p.Addr()) // blackholed
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, c, false)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial after Close succeeded")
	}
}

func TestDialFailureResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newProxy(t, target)
	// The client sees the reset as a failed connect or on its first read.
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		defer c.Close()
		closedByPeer(t, c, false)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial: %v, want success or ECONNRESET", err)
	}
	deadline := time.Now().Add(time.Second)
	for p.Stats().DialErrors == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := p.Stats(); st.DialErrors != 1 {
		t.Fatalf("stats %+v, want 1 dial error", st)
	}
}

const testNATS = "127.0.0.1:4222"

// TestNATSClientAcrossPartition: a nats.go client connected through the
// proxy notices a partition by its pings alone, its JetStream KV update
// fails, and it reconnects after Heal.
func TestNATSClientAcrossPartition(t *testing.T) {
	direct, err := nats.Connect("nats://"+testNATS, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server with JetStream is not reachable at %s: %v (start it with `make services`)", testNATS, err)
	}
	defer direct.Close()
	djs, err := jetstream.New(direct)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bucket := fmt.Sprintf("netproxy_%d_%d", os.Getpid(), time.Now().UnixNano()%1e12)
	if _, err := djs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	defer djs.DeleteKeyValue(context.Background(), bucket)

	p := newProxy(t, testNATS)
	const pingInterval, maxPingsOut = 200 * time.Millisecond, 2
	disconnected := make(chan time.Time, 4)
	reconnected := make(chan time.Time, 4)
	nc, err := nats.Connect("nats://"+p.Addr(), nats.Timeout(time.Second),
		nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(maxPingsOut),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.ReconnectJitter(0, 0),
		nats.IgnoreDiscoveredServers(), nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { disconnected <- time.Now() }),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- time.Now() }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "lease", []byte("a:1"))
	if err != nil {
		t.Fatal(err)
	}

	cut := time.Now()
	p.Partition()
	uctx, ucancel := context.WithTimeout(ctx, 2*time.Second)
	_, uerr := kv.Update(uctx, "lease", []byte("a:2"), rev)
	ucancel()
	if uerr == nil {
		t.Fatal("a KV Update through the partition succeeded")
	}
	// nats.go declares the connection stale when a ping timer fires with
	// MaxPingsOut pings unanswered: at most (MaxPingsOut+1) intervals after
	// the cut, plus scheduling.
	bound := (maxPingsOut+1)*pingInterval + 500*time.Millisecond
	select {
	case at := <-disconnected:
		if d := at.Sub(cut); d > bound {
			t.Fatalf("disconnected %v after the partition, want within %v", d, bound)
		} else {
			t.Logf("disconnected %v after the partition (PingInterval %v, MaxPingsOut %d); Update failed with %v", d.Round(time.Millisecond), pingInterval, maxPingsOut, uerr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still %v 5 s after the partition", nc.Status())
	}
	if s := nc.Status(); s == nats.CONNECTED {
		t.Fatalf("status %v after the disconnect", s)
	}
	// Reconnect attempts during the partition are blackholed as well.
	time.Sleep(300 * time.Millisecond)
	if s := nc.Status(); s == nats.CONNECTED {
		t.Fatalf("status %v during the partition", s)
	}

	healed := time.Now()
	p.Heal()
	select {
	case at := <-reconnected:
		t.Logf("reconnected %v after Heal", at.Sub(healed).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("not reconnected 10 s after Heal: %v", nc.Status())
	}
	// The update that failed did not happen: the revision is still current.
	if _, err := kv.Update(ctx, "lease", []byte("a:2"), rev); err != nil {
		t.Fatalf("KV Update after Heal: %v", err)
	}
}

// BenchmarkRoundTrip: a 64-byte echo round trip on loopback, direct (the
// baseline) and through the proxy; the difference is the proxy's two extra
// hops per direction.
func BenchmarkRoundTrip(b *testing.B) {
	e := newEcho(b)
	p := newProxy(b, e.ln.Addr().String())
	msg := bytes.Repeat([]byte("x"), 64)
	got := make([]byte, len(msg))
	for _, bc := range []struct{ name, addr string }{{"direct", e.ln.Addr().String()}, {"proxy", p.Addr()}} {
		b.Run(bc.name, func(b *testing.B) {
			c := dial(b, bc.addr)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
			}
			if !bytes.Equal(got, msg) {
				b.Fatalf("echo %q", got)
			}
		})
	}
}
