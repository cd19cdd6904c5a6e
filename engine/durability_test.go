package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/wal"
)

// gateFS holds every fdatasync of a WAL segment until the test opens the
// gate, and can make syncs fail.
type gateFS struct {
	wal.OSFS
	mu     sync.Mutex
	open   bool
	cond   *sync.Cond
	fail   atomic.Bool
	synced atomic.Int64
}

func newGateFS() *gateFS {
	g := &gateFS{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gateFS) setOpen(v bool) {
	g.mu.Lock()
	g.open = v
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *gateFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	f, err := g.OSFS.OpenFile(name, flag, perm)
	if err != nil || !(strings.HasSuffix(name, ".wal") || strings.HasSuffix(name, ".wal.tmp")) {
		return f, err
	}
	return gateFile{File: f, g: g}, nil
}

type gateFile struct {
	wal.File
	g *gateFS
}

func (f gateFile) Datasync() error {
	f.g.mu.Lock()
	for !f.g.open {
		f.g.cond.Wait()
	}
	f.g.mu.Unlock()
	if f.g.fail.Load() {
		return errors.New("EIO (injected)")
	}
	f.g.synced.Add(1)
	return f.File.Datasync()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Barrier - what feeds wait on before acknowledging upstream - returns only
// after the fdatasync that covers the published events.
func TestBarrierWaitsForCoveringSync(t *testing.T) {
	for _, pol := range []wal.SyncPolicy{wal.SyncGroup, wal.SyncNone} {
		t.Run(pol.String(), func(t *testing.T) {
			g := newGateFS()
			g.setOpen(true) // segment creation syncs pass
			w, err := OpenWAL(t.TempDir(), wal.Options{Sync: pol, FS: g, SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			e, err := New(Config{Shards: 1, Processors: func(int) (Processor, error) { return nopProc{}, nil }, Durability: w, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			e.Start()
			sym, _ := e.Symbols().InternString("AAPL")
			p, _ := e.NewPublisher("feed")
			g.setOpen(false)
			before := g.synced.Load()
			for i := 1; i <= 100; i++ {
				ev := trade(uint64(i), sym, int64(i))
				if err := p.Publish(&ev); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- p.Barrier(context.Background()) }()
			if pol == wal.SyncGroup {
				select {
				case err := <-done:
					t.Fatalf("Barrier returned (%v) before any sync", err)
				case <-time.After(50 * time.Millisecond):
				}
			}
			g.setOpen(true)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if pol == wal.SyncGroup && g.synced.Load() == before {
				t.Fatal("Barrier returned without a sync")
			}
			if d := w.DurableLSN(); d < p.lastLSN {
				t.Fatalf("durable LSN %d below the last appended %d after Barrier", d, p.lastLSN)
			}
			p.Close()
			stop(t, e)
		})
	}
}

// A failed fsync is never retried: the WAL fails for good, OnFatal runs
// (in the binary: exit, recover on restart), Barrier returns the error and
// nothing more is accepted.
func TestFailedSyncIsFatal(t *testing.T) {
	g := newGateFS()
	g.setOpen(true)
	fatal := make(chan error, 4)
	dir := t.TempDir()
	w, err := OpenWAL(dir, wal.Options{FS: g, SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 64 << 10,
		OnFatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Shards: 1, Processors: func(int) (Processor, error) { return nopProc{}, nil }, Durability: w, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	sym, _ := e.Symbols().InternString("AAPL")
	p, _ := e.NewPublisher("feed")
	ev := trade(1, sym, 1)
	if err := p.Publish(&ev); err != nil {
		t.Fatal(err)
	}
	if err := p.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.fail.Store(true)
	ev = trade(2, sym, 2)
	p.Publish(&ev)
	err = p.Barrier(context.Background())
	if !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("Barrier after a failed sync: %v, want wal.ErrFailed", err)
	}
	select {
	case ferr := <-fatal:
		if !errors.Is(ferr, wal.ErrFailed) {
			t.Fatalf("OnFatal got %v", ferr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnFatal was not called")
	}
	synced := g.synced.Load()
	ev = trade(3, sym, 3)
	if err := p.Publish(&ev); !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("Publish after the failure: %v", err)
	}
	if g.synced.Load() != synced {
		t.Fatal("the failed sync was retried")
	}
	p.Detach()
	stop(t, e)
	w.Close()
	// Restart: recovery finds the acknowledged event.
	g.fail.Store(false)
	w, err = OpenWAL(dir, wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e, _ = New(Config{Shards: 1, Processors: func(int) (Processor, error) { return nopProc{}, nil }, Durability: w, Logger: quietLogger()})
	rep, err := e.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sources["feed"] < 1 {
		t.Fatalf("acknowledged event lost: %+v", rep)
	}
	stop(t, e)
}

// With a *WAL the log holds everything replay needs: symbols before their
// first use, the publisher's registration and its watermarks.
func TestWALHoldsControlRecords(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWAL(dir, wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := New(Config{Shards: 2, Processors: func(int) (Processor, error) { return nopProc{}, nil }, Durability: w, Logger: quietLogger()})
	e.Start()
	a, _ := e.Symbols().InternString("A")
	b, _ := e.Symbols().InternString("B")
	p, _ := e.NewPublisher("feed")
	for i, sym := range []codec.Symbol{b, a, b} {
		ev := trade(uint64(i+1), sym, int64(100*(i+1)))
		p.Publish(&ev)
		p.Flush()
	}
	p.Close()
	stop(t, e)
	w.Close()
	rd, err := wal.OpenReader(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []string
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Type {
		case RecordSource:
			_, name, _ := DecodeSourceRecord(rec.Payload)
			got = append(got, "source "+string(name))
		case RecordSymbol:
			_, name, _ := DecodeSymbolRecord(rec.Payload)
			got = append(got, "symbol "+string(name))
		case RecordWatermark:
			_, wm, _, _ := DecodeWatermarkRecord(rec.Payload)
			got = append(got, "wm "+itoa(wm))
		case RecordEvent:
			var ev codec.Event
			codec.DecodeStoredFrame(rec.Payload, &ev)
			got = append(got, "event "+itoa(ev.TsNs))
		case RecordEventBatch:
			if err := DecodeEventBatch(rec.Payload, func(ev *codec.Event) error {
				got = append(got, "event "+itoa(ev.TsNs))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := "source feed,symbol A,symbol B,event 100,wm 100,event 200,wm 200,event 300,wm 300"
	if strings.Join(got, ",") != want {
		t.Fatalf("WAL records:\n %s\nwant\n %s", strings.Join(got, ","), want)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
