package sinks

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"qstream/ops"
)

// WriterOutput writes operator outputs as JSON Lines to an io.Writer
// (`qstream run --output -`: standard output) and flushes after every batch
// the collector delivers, so a reader of a pipe sees each batch at once. It
// keeps no checkpoint mark: what went into a pipe cannot be rewound. Errors
// are sticky (JSONLWriter's).
type WriterOutput struct {
	w *JSONLWriter
}

// NewWriterOutput returns an output over w.
func NewWriterOutput(w io.Writer, cfg JSONLConfig) *WriterOutput {
	return &WriterOutput{w: NewJSONLWriter(w, cfg)}
}

// HandleOutputs implements engine.OutputHandler.
func (o *WriterOutput) HandleOutputs(outs []ops.Output) error {
	if err := o.w.HandleOutputs(outs); err != nil {
		return err
	}
	return o.w.Flush()
}

// Flush writes what is buffered (nothing after a successful HandleOutputs)
// and returns the sticky error.
func (o *WriterOutput) Flush() error { return o.w.Flush() }

// FileOutput is the --output file of `qstream run`: JSON Lines, flushed to the file after
// every batch (so what was delivered is there even if the process is
// killed, perhaps with a torn last line), and an engine.CheckpointedOutput:
// a checkpoint syncs the file and records its length as the high-water
// mark; recovery rewinds the file to the mark of the checkpoint it starts
// from, and the WAL replay writes the rest again. So with the WAL on, a
// crash leaves each output in the file once, and a torn line is cut off.
//
// Nothing changes the file before a start has succeeded. It is opened
// without truncating, and its content stays as it is
//
//   - until the first HandleOutputs or CheckpointOutput of a fresh run (no
//     recovery), or Begin, which empty it;
//   - during a recovery: RestoreOutput only checks the mark, and the
//     replay's outputs go to a staging file beside it (.NAME.recovery).
//     The recovery's own checkpoint (the first CheckpointOutput after
//     RestoreOutput, taken only once the replay succeeded) commits them: the
//     file is cut back to the mark, the staged outputs are appended and
//     synced. A recovery that fails before (a damaged WAL, an interrupt)
//     leaves the file byte-identical; Close removes the staging file.
//
// Write errors are sticky and permanent (Permanent): after a failed
// write the file may end in a torn line, which only a recovery (the rewind
// to the last mark) can repair, so retrying is never right. The error
// names the path and wraps the system error (errors.Is(err,
// syscall.ENOSPC) holds).
//
// HandleOutputs runs on the engine's collector goroutine; CheckpointOutput,
// RestoreOutput, Begin and Close may come from others (a mutex orders them).
type FileOutput struct {
	mu    sync.Mutex // HandleOutputs (collector) vs checkpoint and recovery calls
	path  string
	f     *os.File
	w     *JSONLWriter
	cw    countingWriter // writes to f, or to stage while staging
	state fileOutputState
	mark  int64    // staging: where the file is cut back to at the commit
	stage *os.File // staging: the replay's outputs
	err   error    // sticky
}

type fileOutputState uint8

const (
	fileUntouched fileOutputState = iota // the previous content is still there
	fileStaging                          // RestoreOutput was called; the commit is pending
	fileLive                             // this run writes the file
)

// countingWriter counts the bytes written through it: the output's offset.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fileOutputMarkLen is the size of a FileOutput high-water mark: the file
// offset as a little-endian uint64.
const fileOutputMarkLen = 8

// fail makes err sticky, naming the file, and returns it.
func (o *FileOutput) fail(err error) error {
	if o.err == nil {
		o.err = Permanent(fmt.Errorf("output %s: %w", o.path, err))
	}
	return o.err
}

// liveLocked makes sure the file is this run's: a fresh run empties it the
// first time, a recovery commits its staged outputs.
func (o *FileOutput) liveLocked() error {
	if o.err != nil {
		return o.err
	}
	switch o.state {
	case fileUntouched:
		if err := o.rewindLocked(0); err != nil {
			return o.fail(err)
		}
		o.state = fileLive
	case fileStaging:
		if err := o.commitLocked(); err != nil {
			return o.fail(err)
		}
		o.state = fileLive
	}
	return nil
}

func (o *FileOutput) rewindLocked(off int64) error {
	if err := o.f.Truncate(off); err != nil {
		return err
	}
	if _, err := o.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	o.cw.w, o.cw.n = o.f, off
	return nil
}

// commitLocked ends a recovery's staging: the file is cut back to the mark
// and the staged outputs are appended. A failure half-way leaves a file at
// least as long as the mark, so the checkpoint recovery started from still
// applies.
func (o *FileOutput) commitLocked() error {
	if err := o.w.Flush(); err != nil {
		return err
	}
	staged := o.cw.n - o.mark
	if err := o.rewindLocked(o.mark); err != nil {
		return err
	}
	if _, err := o.stage.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(o.f, io.LimitReader(o.stage, staged))
	o.cw.n += n
	if err == nil && n != staged {
		err = fmt.Errorf("staging file %s: %d of %d bytes", o.stage.Name(), n, staged)
	}
	if err != nil {
		return err
	}
	o.dropStage()
	return nil
}

func (o *FileOutput) dropStage() {
	if o.stage != nil {
		o.stage.Close()
		os.Remove(o.stage.Name())
		o.stage = nil
	}
}

// HandleOutputs implements engine.OutputHandler: outs are written and
// flushed to the file (or to the staging file during a recovery).
func (o *FileOutput) HandleOutputs(outs []ops.Output) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state == fileUntouched {
		if err := o.liveLocked(); err != nil {
			return err
		}
	}
	if o.err != nil {
		return o.err
	}
	if err := o.w.HandleOutputs(outs); err != nil {
		return o.fail(err)
	}
	if err := o.w.Flush(); err != nil {
		return o.fail(err)
	}
	return nil
}

// CheckpointOutput implements engine.CheckpointedOutput: every output
// handed over so far is made durable and the file's length is the mark.
// The first call after RestoreOutput commits the recovery (see FileOutput).
func (o *FileOutput) CheckpointOutput() ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.liveLocked(); err != nil {
		return nil, err
	}
	if err := o.w.Flush(); err != nil {
		return nil, o.fail(err)
	}
	if err := o.f.Sync(); err != nil {
		return nil, o.fail(err)
	}
	return binary.LittleEndian.AppendUint64(make([]byte, 0, fileOutputMarkLen), uint64(o.cw.n)), nil
}

// RestoreOutput implements engine.CheckpointedOutput: it checks the mark
// against the file (nil: the replay starts from the first record, the file
// will be emptied) and stages the replay's outputs; the file itself changes
// only at the commit (see FileOutput).
func (o *FileOutput) RestoreOutput(hwm []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != fileUntouched {
		return fmt.Errorf("output %s: RestoreOutput after the file was written", o.path)
	}
	var off int64
	if hwm != nil {
		if len(hwm) != fileOutputMarkLen {
			return fmt.Errorf("output: checkpoint mark of %d bytes, want %d", len(hwm), fileOutputMarkLen)
		}
		off = int64(binary.LittleEndian.Uint64(hwm))
		st, err := o.f.Stat()
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		if off < 0 || off > st.Size() {
			return fmt.Errorf("output: %s is %d bytes, shorter than the checkpoint's mark %d: it is not the output of the run that took the checkpoint, or was changed outside qstream (give that run's --output, or start with an empty --wal-dir)", o.path, st.Size(), off)
		}
	}
	dir, base := filepath.Split(o.path)
	stage, err := os.OpenFile(filepath.Join(dir, "."+base+".recovery"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("output: staging the recovery: %w", err)
	}
	o.stage, o.mark, o.state = stage, off, fileStaging
	o.cw.w, o.cw.n = stage, off
	return nil
}

// Begin is called once the engine has started (and recovered): a fresh run
// that delivers nothing still leaves an empty file, not the old content.
func (o *FileOutput) Begin() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state == fileUntouched {
		return o.liveLocked()
	}
	return o.err
}

// Close flushes and closes the file. A recovery that never committed leaves
// the file as it found it and removes its staging file. Call it after the
// engine has stopped.
func (o *FileOutput) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var err error
	switch o.state {
	case fileStaging:
		o.dropStage()
	case fileLive:
		if o.err == nil {
			if ferr := o.w.Flush(); ferr != nil {
				err = o.fail(ferr)
			}
		}
	}
	if cerr := o.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("output %s: %w", o.path, cerr)
	}
	return err
}

// OpenFileOutput opens path for a FileOutput, creating it if missing and
// without truncating it: nothing changes the file before a start has
// succeeded. An error is the *os.PathError of the open.
func OpenFileOutput(path string, cfg JSONLConfig) (*FileOutput, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	out := &FileOutput{path: path, f: f}
	out.cw.w = f
	out.w = NewJSONLWriter(&out.cw, cfg)
	return out, nil
}
