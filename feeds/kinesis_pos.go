package feeds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// KinesisPosition is the saved position of one shard: the number of its
// last durable record (the feed's count, Event.Seq), that record's sequence
// number, and whether the shard was read to its end.
type KinesisPosition struct {
	N    uint64 `json:"n"`
	Seq  string `json:"seq,omitempty"`
	Done bool   `json:"done,omitempty"`
}

// kinesisPosFlushEvery bounds how often the position file is rewritten.
const kinesisPosFlushEvery = 100 * time.Millisecond

// maxKinesisPosFile bounds the position file read at start.
const maxKinesisPosFile = 16 << 20

// kinesisPositions is the position file of one stream,
// <dir>/kinesis-<stream>.pos: a JSON object {"stream":..,"shards":{id:
// KinesisPosition}}, replaced whole (temporary file, fsync, rename) at most
// every kinesisPosFlushEvery. It is shared by the shard goroutines. With
// an empty dir it only keeps positions in memory.
type kinesisPositions struct {
	path   string
	stream string

	mu        sync.Mutex
	shards    map[string]KinesisPosition
	dirty     bool
	lastFlush time.Time
}

type kinesisPosFile struct {
	Stream string                     `json:"stream"`
	Shards map[string]KinesisPosition `json:"shards"`
}

func newKinesisPositions(dir, stream string) *kinesisPositions {
	p := &kinesisPositions{stream: stream, shards: map[string]KinesisPosition{}}
	if dir != "" {
		p.path = filepath.Join(dir, "kinesis-"+sanitizeFileName(stream)+".pos")
	}
	return p
}

// sanitizeFileName keeps letters, digits, '-', '_' and '.' (stream names
// allow exactly these).
func sanitizeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// load reads the file, if there is one.
func (p *kinesisPositions) load() error {
	if p.path == "" {
		return nil
	}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kinesis: position file: %w", err)
	}
	if len(b) > maxKinesisPosFile {
		return fmt.Errorf("kinesis: position file %s: %d bytes, at most %d", p.path, len(b), maxKinesisPosFile)
	}
	var f kinesisPosFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("kinesis: position file %s: %w", p.path, err)
	}
	if f.Stream != p.stream {
		return fmt.Errorf("kinesis: position file %s is for stream %q, not %q", p.path, f.Stream, p.stream)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.Shards != nil {
		p.shards = f.Shards
	}
	return nil
}

func (p *kinesisPositions) get(id string) (KinesisPosition, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pos, ok := p.shards[id]
	return pos, ok
}

func (p *kinesisPositions) snapshot() map[string]KinesisPosition {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.shards)
}

// set records a shard's position (durable records only) and rewrites the
// file when the last write is older than kinesisPosFlushEvery; a reader
// that catches up calls flush for what set left for later. A failed write
// is retried at the next set or flush: the file is a hint.
func (p *kinesisPositions) set(id string, pos KinesisPosition, done bool) {
	pos.Done = done
	p.mu.Lock()
	p.shards[id] = pos
	p.dirty = true
	due := time.Since(p.lastFlush) >= kinesisPosFlushEvery
	p.mu.Unlock()
	if due {
		p.flush()
	}
}

// flush writes the file if anything changed since the last write.
func (p *kinesisPositions) flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.path == "" || !p.dirty {
		return nil
	}
	b, err := json.Marshal(kinesisPosFile{Stream: p.stream, Shards: p.shards})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p.path, b); err != nil {
		return fmt.Errorf("kinesis: position file: %w", err)
	}
	p.dirty = false
	p.lastFlush = time.Now()
	return nil
}

// writeFileAtomic replaces path with b: a temporary file in the same
// directory, synced, renamed over path, the directory synced.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
