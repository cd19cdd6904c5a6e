package feeds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// An archive in S3 (the s3 archive uploader of package sinks writes it):
// under s3://BUCKET/PREFIX, the archive files exactly as archive://DIR
// holds them ("<prefix>/<first>-<last>.qarc", zstd-compressed records,
// see sinks.Archive), and "<prefix>/manifest.json", an ArchiveManifest
// listing the complete files in position order with their size and
// SHA-256. A file enters the manifest only once it is uploaded whole, so a
// reader that goes by the manifest never sees a partial object.

// ArchiveManifestName is the manifest's object name under the prefix.
const ArchiveManifestName = "manifest.json"

// maxArchiveManifest bounds the manifest read.
const maxArchiveManifest = 64 << 20

// ArchiveManifest lists the files of an archive in S3.
type ArchiveManifest struct {
	Version int                   `json:"version"`
	Files   []ArchiveManifestFile `json:"files"`
}

// ArchiveManifestFile is one complete archive file.
type ArchiveManifestFile struct {
	Name   string `json:"name"` // <first>-<last>.qarc
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// S3Location is an s3://BUCKET[/PREFIX][?region=&endpoint=&profile=] URL.
type S3Location struct {
	Bucket, Prefix string
	AWS            AWSOptions
	// PathStyle addresses the bucket in the path (http://host/bucket/key):
	// what local S3 servers need; on by default with an endpoint
	// (path_style=false turns it off).
	PathStyle bool
}

// ParseS3URL parses raw; parameters other than region, endpoint, profile
// and path_style are an error.
func ParseS3URL(raw string) (S3Location, error) {
	var l S3Location
	u, err := url.Parse(raw)
	if err != nil {
		return l, fmt.Errorf("s3: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" {
		return l, fmt.Errorf("s3: %q: want s3://BUCKET[/PREFIX]", raw)
	}
	l.Bucket, l.Prefix = u.Host, strings.Trim(u.Path, "/")
	q := u.Query()
	if l.AWS, err = ParseAWSQuery(q); err != nil {
		return l, fmt.Errorf("s3: %w", err)
	}
	l.PathStyle = l.AWS.Endpoint != ""
	if q.Has("path_style") {
		switch q.Get("path_style") {
		case "true":
			l.PathStyle = true
		case "false":
			l.PathStyle = false
		default:
			return l, fmt.Errorf("s3: path_style=%q: want true or false", q.Get("path_style"))
		}
		q.Del("path_style")
	}
	for k := range q {
		return l, fmt.Errorf("s3: unknown parameter %q (want region, endpoint, profile, path_style)", k)
	}
	return l, nil
}

// Key returns the object key of name under the prefix.
func (l S3Location) Key(name string) string {
	if l.Prefix == "" {
		return name
	}
	return path.Join(l.Prefix, name)
}

// String is the location without its parameters.
func (l S3Location) String() string { return "s3://" + path.Join(l.Bucket, l.Prefix) }

// NewS3Client returns an S3 client for l (the configuration chain with its
// overrides).
func NewS3Client(ctx context.Context, l S3Location) (*s3.Client, error) {
	cfg, err := LoadAWSConfig(ctx, l.AWS)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = l.AWS.BaseEndpoint()
		o.UsePathStyle = l.PathStyle
		// Checksums only where the API requires them: local S3
		// implementations do not all know the newer trailing checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// ReadArchiveManifest reads the manifest; a missing one is an empty
// manifest (nothing uploaded yet).
func ReadArchiveManifest(ctx context.Context, c *s3.Client, l S3Location) (ArchiveManifest, error) {
	var m ArchiveManifest
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key(ArchiveManifestName))})
	if err != nil {
		var nk interface{ ErrorCode() string }
		if errors.As(err, &nk) && (nk.ErrorCode() == "NoSuchKey" || nk.ErrorCode() == "NotFound") {
			return ArchiveManifest{Version: 1}, nil
		}
		return m, fmt.Errorf("s3: manifest of %s: %w", l, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxArchiveManifest+1))
	if err != nil {
		return m, fmt.Errorf("s3: manifest of %s: %w", l, err)
	}
	if len(b) > maxArchiveManifest {
		return m, fmt.Errorf("s3: manifest of %s larger than %d bytes", l, maxArchiveManifest)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("s3: manifest of %s: %w", l, err)
	}
	return m, nil
}

// FetchS3Archive downloads the files the manifest lists into dir, checking
// each one's size and SHA-256, so that the archive reader reads them as a
// local archive directory.
func FetchS3Archive(ctx context.Context, l S3Location, dir string) (ArchiveManifest, error) {
	c, err := NewS3Client(ctx, l)
	if err != nil {
		return ArchiveManifest{}, err
	}
	m, err := ReadArchiveManifest(ctx, c, l)
	if err != nil {
		return m, err
	}
	for _, f := range m.Files {
		if _, ok := ParseArchiveName(f.Name); !ok || filepath.Base(f.Name) != f.Name {
			return m, fmt.Errorf("s3: manifest of %s names %q, not an archive file", l, f.Name)
		}
		if err := fetchS3File(ctx, c, l, f, filepath.Join(dir, f.Name)); err != nil {
			return m, err
		}
	}
	return m, nil
}

func fetchS3File(ctx context.Context, c *s3.Client, l S3Location, f ArchiveManifestFile, dst string) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key(f.Name))})
	if err != nil {
		return fmt.Errorf("s3: %s/%s: %w", l, f.Name, err)
	}
	defer out.Body.Close()
	w, err := os.Create(dst)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), out.Body)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("s3: %s/%s: %w", l, f.Name, err)
	}
	if n != f.Bytes || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("s3: %s/%s: %d bytes with SHA-256 %x, the manifest says %d bytes, %s", l, f.Name, n, h.Sum(nil), f.Bytes, f.SHA256)
	}
	return nil
}

// openS3ArchiveReader fetches the archive at raw (s3://...) into a
// temporary directory, removed by the reader's Close, and opens it.
func openS3ArchiveReader(raw string, o ArchiveReaderOptions) (*ArchiveReader, error) {
	l, err := ParseS3URL(raw)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	dir, err := os.MkdirTemp("", "qstream-s3-archive-")
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	m, err := FetchS3Archive(context.Background(), l, dir)
	if err == nil && len(m.Files) == 0 {
		err = fmt.Errorf("archive: %s: the manifest lists no files", l)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("archive: %w", err)
	}
	r, err := OpenArchiveReader(dir, o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.tmpDir = dir
	return r, nil
}
