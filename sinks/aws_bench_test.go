package sinks

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"qstream/internal/awstest"
)

// Throughput out of qstream into the local AWS stand-ins: the sns:// writer
// (fauxqs) with PublishBatch against one Publish per output (the path an
// endpoint without PublishBatch takes: the baseline), and the archive's S3
// uploader (s3rver). Each checks that the server took every output or
// file.

func benchSNS(b *testing.B, single bool) {
	ep := awstest.SQS(b) // fauxqs serves SNS with PublishBatch
	awstest.SetEnv(b)
	env := natsEnv(b, "AAPL", "MSFT", "BRK.B", "BTC-USD")
	u, _ := url.Parse("sns://" + snsPrefixB() + "?endpoint=" + url.QueryEscape(ep))
	w, err := NewSNS(u, env)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	w.noBatch.Store(single)
	outs := natsOutputs(256, 4, 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(outs) {
		if err := w.WriteBatch(ctx, outs[:min(len(outs), b.N-done)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w.published.Load() != uint64(b.N) || single != (w.singles.Load() == uint64(b.N)) {
		b.Fatalf("published %d of %d (%d singly)", w.published.Load(), b.N, w.singles.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "outputs/s")
}

func snsPrefixB() string { return fmt.Sprintf("qsb-%d", time.Now().UnixNano()%1e9) }

// BenchmarkSNSPublishBatch: outputs in PublishBatch calls of 10.
func BenchmarkSNSPublishBatch(b *testing.B) { benchSNS(b, false) }

// BenchmarkSNSPublishSingle: the baseline, one Publish per output.
func BenchmarkSNSPublishSingle(b *testing.B) { benchSNS(b, true) }

// BenchmarkS3UploadArchive: one iteration is one archived event; the
// archive (files of 1 MiB of records) is written before the timer, the
// upload of its files and manifest is timed.
func BenchmarkS3UploadArchive(b *testing.B) {
	loc := s3TestLocation(b)
	dir := b.TempDir()
	a, err := OpenArchive(dir, ArchiveOptions{MaxFileBytes: 1 << 20, Symbols: archiveTable(b), Logger: quietArchiveLog()})
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= b.N; i++ {
		ev := archiveEvent(i)
		if err := a.Append(&ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		b.Fatal(err)
	}
	u, err := NewS3Uploader(dir, loc, S3UploaderOptions{Logger: quietArchiveLog()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := u.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	m := u.Manifest()
	if len(m.Files) == 0 || m.Files[len(m.Files)-1].Last != uint64(b.N) {
		b.Fatalf("manifest ends at %v, want %d", m.Files, b.N)
	}
	st := u.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(st.Bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
}
