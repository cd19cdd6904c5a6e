package sinks

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"qstream/feeds"
	"qstream/internal/awstest"
)

// s3TestLocation creates a bucket on the local s3rver and returns its
// s3:// URL with the endpoint (prefix "arch/x").
func s3TestLocation(t testing.TB) string {
	t.Helper()
	ep := awstest.S3(t)
	awstest.SetEnv(t)
	bucket := fmt.Sprintf("qs-%d", time.Now().UnixNano()%1e9)
	loc := "s3://" + bucket + "/arch/x?endpoint=" + url.QueryEscape(ep)
	l, err := feeds.ParseS3URL(loc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := feeds.NewS3Client(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return loc
}

// The archive's rotated files go to S3 with a manifest; a second Sync
// uploads nothing again; the archive reads back from s3:// as from the
// directory (the reader qstream replay --format archive uses); DeleteLocal
// removes the uploaded files.
func TestS3UploaderRoundTrip(t *testing.T) {
	loc := s3TestLocation(t)
	dir := t.TempDir()
	const n = 1000
	writeTestArchive(t, dir, ArchiveOptions{MaxFileBytes: 8 << 10, Symbols: archiveTable(t), Logger: quietArchiveLog()}, n)
	files := checkContiguous(t, dir, n)
	u, err := NewS3Uploader(dir, loc, S3UploaderOptions{Logger: quietArchiveLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := u.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	st := u.Stats()
	if st.Files != uint64(len(files)) || st.Errors != 0 {
		t.Fatalf("uploaded %d files of %d, %d errors", st.Files, len(files), st.Errors)
	}
	m := u.Manifest()
	if len(m.Files) != len(files) || m.Files[0].First != 1 || m.Files[len(m.Files)-1].Last != n {
		t.Fatalf("manifest %+v", m)
	}
	if err := u.Sync(ctx); err != nil || u.Stats().Files != st.Files {
		t.Fatalf("second Sync: %v, %d files uploaded in all", err, u.Stats().Files)
	}
	readArchive(t, loc, 1, n)
	// A new uploader (a restart) reads the manifest and uploads nothing
	// again; with DeleteLocal it removes what the manifest lists.
	u2, _ := NewS3Uploader(dir, loc, S3UploaderOptions{DeleteLocal: true, Logger: quietArchiveLog()})
	if err := u2.Sync(ctx); err != nil || u2.Stats().Files != 0 {
		t.Fatalf("restarted Sync: %v, %d uploads", err, u2.Stats().Files)
	}
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		if _, ok := feeds.ParseArchiveName(e.Name()); ok {
			t.Fatalf("%s left after DeleteLocal", e.Name())
		}
	}
	readArchive(t, loc, 1, n)
}

func TestS3URLErrors(t *testing.T) {
	for _, raw := range []string{"s3:///x", "http://b/x", "s3://b/x?path_style=maybe", "s3://b?colour=1", "s3://b?endpoint=localhost:1"} {
		if _, err := feeds.ParseS3URL(raw); err == nil {
			t.Errorf("ParseS3URL(%s): no error", raw)
		}
	}
	l, err := feeds.ParseS3URL("s3://b/p/q/?region=eu-west-1")
	if err != nil || l.Bucket != "b" || l.Prefix != "p/q" || l.Key("manifest.json") != "p/q/manifest.json" || l.PathStyle || l.AWS.Region != "eu-west-1" {
		t.Errorf("ParseS3URL: %+v %v", l, err)
	}
}
