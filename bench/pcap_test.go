package bench

import (
	"qstream/internal/feedhost"

	"qstream/internal/testvectors"

	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"qstream/codec"
	"qstream/feeds"
	"qstream/ring"
)

// pcapSampleMessages is the number of IEX messages in the sample capture
// (../shared/testdata/SOURCES.md).
const pcapSampleMessages = 57_674

// pcapSample returns the path of the shared IEX TOPS sample capture.
func pcapSample(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(testvectors.Dir(), "pcap", "iex_tops16_sample.pcap.gz")
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
	pubs := feedhost.New(eng)
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

// nopPublishers takes events and drops them: the feed's own costs, alone.
type nopPublishers struct{ syms *codec.SymbolTable }

type nopPublisher struct{ n int }

func (p *nopPublishers) NewPublisher(string) (feeds.Publisher, error) { return &nopPublisher{}, nil }
func (p *nopPublishers) Symbols() *codec.SymbolTable                  { return p.syms }
func (p *nopPublisher) Publish(*codec.Event) error                    { p.n++; return nil }
func (p *nopPublisher) PublishText(*codec.Event, []byte) error        { p.n++; return nil }
func (p *nopPublisher) Flush() error                                  { return nil }
func (p *nopPublisher) Barrier(context.Context) error                 { return nil }
func (p *nopPublisher) Reject([]byte, codec.Reason, feeds.Position, error) {
}

// TestPcapFeedAllocsPerMessage: a replay of the sample through
// feeds.PcapFeed allocates per run (opening the capture, gzip's Huffman
// tables, the reader's symbol cache filling with the sample's 8,055
// symbols), never per message. With the symbols already in the engine's
// table, a run allocates less than one object per five messages; an
// allocation per event (as a per-iteration errors.As target once cost)
// shows up as more than one per message.
func TestPcapFeedAllocsPerMessage(t *testing.T) {
	path := pcapSample(t)
	pubs := &nopPublishers{syms: codec.NewSymbolTable(benchMaxSymbols)}
	run := func() {
		if err := feeds.NewPcapFeed(path, feeds.PcapOptions{}).Run(context.Background(), pubs); err != nil {
			t.Fatal(err)
		}
	}
	run() // intern the symbols
	allocs := testing.AllocsPerRun(3, run)
	if perMsg := allocs / pcapSampleMessages; perMsg > 0.2 {
		t.Fatalf("%.0f allocations per replay of %d messages (%.2f per message): something allocates per message", allocs, pcapSampleMessages, perMsg)
	}
	t.Logf("%.0f allocations per replay of %d messages", allocs, pcapSampleMessages)
}
