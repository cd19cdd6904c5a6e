package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"qstream/feeds"
	"qstream/ring"
)

// pcapSampleMessages is the number of IEX messages in the sample capture
// (../shared/testdata/SOURCES.md).
const pcapSampleMessages = 57_674

// pcapSample returns the path of the shared IEX TOPS sample capture.
func pcapSample(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join("..", "..", "shared", "testdata", "pcap", "iex_tops16_sample.pcap.gz")
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("the IEX sample capture is missing: the shared testdata directory must sit beside the repository checkout as ../shared/testdata (see its SOURCES.md): %v", err)
	}
	return path
}

// replayPcapEngine replays the capture as fast as possible through a fresh
// engine (one shard, default indicators on the trades) and returns how many
// messages the shards processed and how long it took, from the start of
// the replay until the engine has drained.
func replayPcapEngine(tb testing.TB, path string) (uint64, time.Duration) {
	tb.Helper()
	out := newArrivals(-1) // counts only
	eng, _ := newIndicatorEngine(tb, out, ring.Park)
	pubs := &EnginePublishers{E: eng}
	start := time.Now()
	if err := feeds.NewPcapFeed(path, feeds.PcapOptions{}).Run(context.Background(), pubs); err != nil {
		tb.Fatal(err)
	}
	stopEngine(tb, eng, pubs)
	return eng.Stats().Messages, time.Since(start)
}

// BenchmarkPcapReplayEngine: IEX pcap replay (gzip, pcapgo, IEX-TP and TOPS
// decoding) through the engine, as fast as possible. One op is one replay of
// the sample capture; msgs/s counts its IEX messages. The parse-only figure
// is feeds' pcap benchmark.
func BenchmarkPcapReplayEngine(b *testing.B) {
	path := pcapSample(b)
	b.ReportAllocs()
	var total time.Duration
	for range b.N {
		n, took := replayPcapEngine(b, path)
		if n != pcapSampleMessages {
			b.Fatalf("the engine processed %d messages, want %d", n, pcapSampleMessages)
		}
		total += took
	}
	b.ReportMetric(float64(pcapSampleMessages*b.N)/total.Seconds(), "msgs/s")
}

// TestPcapReplayEngine: the benchmark's replay processes every message of
// the sample.
func TestPcapReplayEngine(t *testing.T) {
	if n, _ := replayPcapEngine(t, pcapSample(t)); n != pcapSampleMessages {
		t.Fatalf("the engine processed %d messages, want %d", n, pcapSampleMessages)
	}
}
