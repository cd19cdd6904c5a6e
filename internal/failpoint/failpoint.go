// Package failpoint holds named crash points for the crash harness. A point
// is compiled into the binary and armed only by the environment:
//
//	QSTREAM_FAILPOINT=name:N[,name:N...]
//
// arms each named point to kill the process with SIGKILL at its N-th hit
// (N >= 1). A SIGKILL cannot be caught, so the process dies exactly there, as
// it would in a power cut that spared the page cache: nothing is flushed,
// no deferred function runs. Before dying the point writes one line,
// "failpoint: <name> hit <N>", straight to file descriptor 2 so that the
// harness can tell a failpoint kill from a bug.
//
// Most points kill. An error point (WALSyncEIO) instead makes the
// operation at its N-th hit fail with EIO, once: what the process does about
// a failed fsync (exit, recover on restart) is then under test.
//
// An unarmed point costs one load of a bool that never changes after start-up
// and a predictable branch: Hit is inlined and its slow path is a separate
// function.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// EnvVar is the environment variable that arms points.
const EnvVar = "QSTREAM_FAILPOINT"

// Point is one named crash point.
type Point struct {
	name  string
	fails bool         // an error point: Fail reports the N-th hit instead of killing
	armed bool         // written only by init and Arm, before the points are used
	left  atomic.Int64 // hits left before the kill
	hits  atomic.Int64
}

// The crash points of the engine. Their names are what QSTREAM_FAILPOINT
// takes.
var (
	// WALBeforeWrite fires before a buffer of WAL records is written to a
	// segment file: the records are lost with the process.
	WALBeforeWrite = register("wal-before-write")
	// WALBeforeSync fires after the records are written (they are in the page
	// cache) and before fdatasync.
	WALBeforeSync = register("wal-before-sync")
	// WALAfterSync fires right after a successful fdatasync, before the
	// writer reports the records durable: nothing has been acknowledged.
	WALAfterSync = register("wal-after-sync")
	// AckAfterSync fires in a feed after Barrier returned (the records are
	// durable) and before the acknowledgement is sent upstream.
	AckAfterSync = register("ack-after-sync")
	// CheckpointWrite fires in the middle of writing a checkpoint's
	// temporary file: half of it is written.
	CheckpointWrite = register("checkpoint-write")
	// CheckpointRename fires after the temporary checkpoint file is synced
	// and before it is renamed into place.
	CheckpointRename = register("checkpoint-rename")
	// CheckpointPrune fires after a checkpoint is in place and before old
	// checkpoints and WAL segments are deleted.
	CheckpointPrune = register("checkpoint-prune")
	// WALSyncEIO makes the N-th fdatasync of a WAL segment fail with EIO
	// (an error point: the process is not killed).
	WALSyncEIO = registerError("wal-sync-eio")
)

var points = map[string]*Point{}

func register(name string) *Point {
	p := &Point{name: name}
	points[name] = p
	return p
}

func registerError(name string) *Point {
	p := register(name)
	p.fails = true
	return p
}

// Fail reports whether an armed error point is at its N-th hit (once).
func (p *Point) Fail() bool {
	if !p.armed {
		return false
	}
	p.hits.Add(1)
	if p.left.Add(-1) == 0 {
		_, _ = syscall.Write(2, []byte("failpoint: "+p.name+" fails\n"))
		return true
	}
	return false
}

// Names returns the names of every point.
func Names() []string {
	out := make([]string, 0, len(points))
	for n := range points {
		out = append(out, n)
	}
	return out
}

// Name returns the point's name.
func (p *Point) Name() string { return p.name }

// Armed reports whether the point is armed.
func (p *Point) Armed() bool { return p.armed }

// Hits returns how often an armed point was hit (unarmed points do not
// count).
func (p *Point) Hits() int64 { return p.hits.Load() }

// Hit kills the process if the point is armed and this is its N-th hit.
func (p *Point) Hit() {
	if p.armed && !p.fails {
		p.hit()
	}
}

// kill is replaced by tests.
var kill = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }

func (p *Point) hit() {
	n := p.hits.Add(1)
	if p.left.Add(-1) == 0 {
		line := "failpoint: " + p.name + " hit " + strconv.FormatInt(n, 10) + "\n"
		_, _ = syscall.Write(2, []byte(line))
		kill()
	}
}

// Any reports whether any point is armed.
func Any() bool {
	for _, p := range points {
		if p.armed {
			return true
		}
	}
	return false
}

// Parse arms the points named in spec ("name:N[,name:N...]"). It is called
// by the package's init with the environment variable; a process calls it
// itself only before any point is used (tests). An empty spec arms nothing.
func Parse(spec string) error {
	if strings.TrimSpace(spec) == "" {
		return nil
	}
	for _, item := range strings.Split(spec, ",") {
		name, count, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			count = "1"
		}
		p := points[name]
		if p == nil {
			return fmt.Errorf("failpoint: unknown point %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		n, err := strconv.ParseInt(count, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("failpoint: %s: hit count %q is not a positive integer", name, count)
		}
		p.left.Store(n)
		p.hits.Store(0)
		p.armed = true
	}
	return nil
}

// Disarm disarms every point and clears its hit count (tests).
func Disarm() {
	for _, p := range points {
		p.armed = false
		p.hits.Store(0)
	}
}

func init() {
	if err := Parse(os.Getenv(EnvVar)); err != nil {
		fmt.Fprintf(os.Stderr, "qstream: %s: %v\n", EnvVar, err)
		os.Exit(2)
	}
}
