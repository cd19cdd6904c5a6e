package sinks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"qstream/feeds"
)

// DefaultS3UploadInterval is how often S3Uploader.Run looks for rotated
// archive files.
const DefaultS3UploadInterval = 5 * time.Second

// S3Uploader ships the complete files of an archive directory (an Archive
// rotates its <first>.qarc.partial into <first>-<last>.qarc) to S3, in the
// same format (feeds.ArchiveManifest): each file is uploaded as
// "<prefix>/<name>", then the manifest "<prefix>/manifest.json" is
// rewritten to list it, so a reader that goes by the manifest sees only
// whole files, in position order. The partial file is never uploaded; it
// goes once the Archive rotates it (by size or age). `qstream replay
// --format archive --input s3://BUCKET/PREFIX?...` reads the result.
//
// A restart reads the manifest back and uploads only what it does not list
// (an upload interrupted before the manifest named it is redone whole).
// With DeleteLocal a file is removed from the directory once the manifest
// that lists it is stored. Uploads are retried at the next Sync; errors are
// returned (and counted) but leave the manifest consistent.
type S3Uploader struct {
	dir         string
	loc         feeds.S3Location
	deleteLocal bool
	log         *slog.Logger

	client   *s3.Client
	manifest feeds.ArchiveManifest
	listed   map[string]bool
	loaded   bool

	files, bytes, errors atomic.Uint64
}

// S3UploaderOptions configure NewS3Uploader.
type S3UploaderOptions struct {
	// DeleteLocal removes uploaded files from the directory.
	DeleteLocal bool
	// Client, if set, is used instead of one built from the location.
	Client *s3.Client
	Logger *slog.Logger
}

// NewS3Uploader returns an uploader of dir's archive files to loc (an
// s3://BUCKET/PREFIX URL, see feeds.ParseS3URL). It does not connect.
func NewS3Uploader(dir, loc string, o S3UploaderOptions) (*S3Uploader, error) {
	l, err := feeds.ParseS3URL(loc)
	if err != nil {
		return nil, fmt.Errorf("sinks: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &S3Uploader{dir: dir, loc: l, deleteLocal: o.DeleteLocal, log: o.Logger, client: o.Client, listed: map[string]bool{}}, nil
}

// Location returns where the archive goes.
func (u *S3Uploader) Location() feeds.S3Location { return u.loc }

// Manifest returns a copy of the manifest as last stored.
func (u *S3Uploader) Manifest() feeds.ArchiveManifest {
	m := u.manifest
	m.Files = append([]feeds.ArchiveManifestFile(nil), m.Files...)
	return m
}

// Sync uploads every complete file the manifest does not list yet, in
// position order, storing the manifest after each. Not for concurrent use.
func (u *S3Uploader) Sync(ctx context.Context) error {
	if u.client == nil {
		c, err := feeds.NewS3Client(ctx, u.loc)
		if err != nil {
			return fmt.Errorf("sinks: s3: %w", err)
		}
		u.client = c
	}
	if !u.loaded {
		m, err := feeds.ReadArchiveManifest(ctx, u.client, u.loc)
		if err != nil {
			u.errors.Add(1)
			return fmt.Errorf("sinks: %w", err)
		}
		m.Version = 1
		u.manifest, u.loaded = m, true
		for _, f := range m.Files {
			u.listed[f.Name] = true
		}
	}
	files, err := feeds.ListArchive(u.dir)
	if err != nil {
		return fmt.Errorf("sinks: s3: %w", err)
	}
	for _, f := range files {
		if f.Partial {
			continue
		}
		name := feeds.ArchiveFileName(f.First, f.Last)
		if u.listed[name] {
			u.removeLocal(f.Path)
			continue
		}
		if err := u.upload(ctx, f, name); err != nil {
			u.errors.Add(1)
			return err
		}
	}
	return nil
}

func (u *S3Uploader) upload(ctx context.Context, f feeds.ArchiveFile, name string) error {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return fmt.Errorf("sinks: s3: %w", err)
	}
	sum := sha256.Sum256(b)
	if _, err := u.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(u.loc.Bucket), Key: aws.String(u.loc.Key(name)),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))), ContentType: aws.String("application/zstd")}); err != nil {
		return fmt.Errorf("sinks: s3: put %s: %w (%w)", name, err, ErrTransient)
	}
	m := u.manifest
	m.Files = append(append([]feeds.ArchiveManifestFile(nil), m.Files...), feeds.ArchiveManifestFile{Name: name, First: f.First, Last: f.Last,
		Bytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := u.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(u.loc.Bucket), Key: aws.String(u.loc.Key(feeds.ArchiveManifestName)),
		Body: bytes.NewReader(mb), ContentLength: aws.Int64(int64(len(mb))), ContentType: aws.String("application/json")}); err != nil {
		return fmt.Errorf("sinks: s3: put the manifest: %w (%w)", err, ErrTransient)
	}
	u.manifest = m
	u.listed[name] = true
	u.files.Add(1)
	u.bytes.Add(uint64(len(b)))
	u.removeLocal(f.Path)
	return nil
}

func (u *S3Uploader) removeLocal(path string) {
	if !u.deleteLocal {
		return
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		u.log.Warn("sinks: s3: remove an uploaded archive file", "path", path, "err", err)
	}
}

// Run calls Sync every interval (DefaultS3UploadInterval if <= 0) until
// ctx is done, then once more (with a bounded context) for what was
// rotated last. Failures are logged and retried at the next tick.
func (u *S3Uploader) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultS3UploadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			return u.Sync(fctx)
		case <-t.C:
			if err := u.Sync(ctx); err != nil && ctx.Err() == nil {
				u.log.Warn("sinks: s3: archive upload", "to", u.loc.String(), "err", err)
			}
		}
	}
}

// S3UploaderStats count what an uploader shipped.
type S3UploaderStats struct {
	Files, Bytes, Errors uint64
}

// Stats returns the counters.
func (u *S3Uploader) Stats() S3UploaderStats {
	return S3UploaderStats{Files: u.files.Load(), Bytes: u.bytes.Load(), Errors: u.errors.Load()}
}
