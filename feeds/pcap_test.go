package feeds

import (
	"qstream/internal/testvectors"

	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"qstream/codec"
)

// The IEX sample capture, from the shared third-party test data beside the
// repository (../shared/testdata from the repository root).
var pcapSamplePath = filepath.Join(testvectors.Dir(), "pcap", "iex_tops16_sample.pcap.gz")

// pcapSampleCounts are the per-type message counts of the sample (SOURCES.md).
var pcapSampleCounts = map[byte]uint64{
	'Q': 27217, 'T': 6390, 'P': 7802, 'O': 7801, 'H': 7803, 'A': 642, 'D': 10, 'S': 6, 'B': 3,
}

const pcapSampleMessages = 57674

func pcapNeedSample(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(pcapSamplePath); err != nil {
		tb.Fatalf("IEX sample capture missing: %v (the shared third-party test data is expected at %s, "+
			"../shared/testdata from the repository root; see SOURCES.md there)", err, pcapSamplePath)
	}
}

type pcapTestPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// pcapSamplePackets reads the sample's packets with pcapgo directly.
func pcapSamplePackets(tb testing.TB) []pcapTestPacket {
	pcapNeedSample(tb)
	f, err := os.Open(pcapSamplePath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f) // pcapgo's classic reader undoes gzip itself
	if err != nil {
		tb.Fatal(err)
	}
	var pkts []pcapTestPacket
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return pkts
		}
		if err != nil {
			tb.Fatal(err)
		}
		pkts = append(pkts, pcapTestPacket{ci, data})
	}
}

// pcapWrite writes packets as a classic pcap (or pcapng) file.
func pcapWrite(tb testing.TB, path string, ng bool, pkts []pcapTestPacket) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if ng {
		w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
		if err != nil {
			tb.Fatal(err)
		}
		for _, p := range pkts {
			ci := p.ci
			ci.InterfaceIndex = 0
			if err := w.WritePacket(ci, p.data); err != nil {
				tb.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			tb.Fatal(err)
		}
	} else {
		w := pcapgo.NewWriterNanos(&buf)
		if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
			tb.Fatal(err)
		}
		for _, p := range pkts {
			if err := w.WritePacket(p.ci, p.data); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if path != "" {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

func pcapGzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// pcapDrain reads all events of r; record errors are collected.
func pcapDrain(tb testing.TB, r Reader) (evs []codec.Event, recs []RecordError) {
	tb.Helper()
	for {
		var ev codec.Event
		err := r.Next(&ev)
		if err == io.EOF {
			return evs, recs
		}
		var rec *RecordError
		if errors.As(err, &rec) {
			recs = append(recs, snapshotRecordError(rec))
			continue
		}
		if err != nil {
			tb.Fatalf("Next: %v", err)
		}
		evs = append(evs, ev)
	}
}

// snapshotRecordError copies what a RecordError refers to (its raw bytes and
// error are only valid until the reader's next call) into a value that stays
// valid: Err becomes a copy of the *codec.Error, or a plain error.
func snapshotRecordError(rec *RecordError) RecordError {
	out := RecordError{Pos: rec.Pos, Raw: append([]byte(nil), rec.Raw...)}
	var ce *codec.Error
	if errors.As(rec.Err, &ce) {
		c := *ce
		out.Err = &c
	} else {
		out.Err = errors.New(rec.Err.Error())
	}
	return out
}

func pcapQuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPcapSampleCounts(t *testing.T) {
	pcapNeedSample(t)
	r, err := OpenPcap(pcapSamplePath, PcapOptions{Source: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	byType := map[byte]uint64{}
	var n uint64
	var lastSeq uint64
	var ev codec.Event
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
		n++
		byType[codec.IEXMessageTypeOf(ev.Aux)]++
		if ev.Seq != lastSeq+1 {
			t.Fatalf("event %d: sequence %d after %d", n, ev.Seq, lastSeq)
		}
		lastSeq = ev.Seq
		if ev.Source != 9 || ev.Flags&codec.FlagReplay == 0 || ev.TsNs <= 0 {
			t.Fatalf("event %d: %+v", n, ev)
		}
	}
	if n != pcapSampleMessages {
		t.Errorf("%d events, want %d", n, pcapSampleMessages)
	}
	for typ, want := range pcapSampleCounts {
		if byType[typ] != want {
			t.Errorf("type %c: %d events, want %d", typ, byType[typ], want)
		}
	}
	if len(byType) != len(pcapSampleCounts) {
		t.Errorf("types %v", byType)
	}
	st := r.Stats()
	if st.Packets != 13022 || st.Segments != 13022 || st.Events != pcapSampleMessages || st.IEX.Messages != pcapSampleMessages {
		t.Errorf("stats %+v", st)
	}
	for typ, want := range pcapSampleCounts {
		if st.IEX.ByType[typ] != want {
			t.Errorf("stats type %c: %d, want %d", typ, st.IEX.ByType[typ], want)
		}
	}
	if st.Sessions != 1 || st.Gaps != 0 || st.Overlaps != 0 || st.DuplicateSegments != 0 || st.Resets != 0 || st.OffsetMismatches != 0 || st.Truncated || st.Errors != 0 || r.Warning() != nil {
		t.Errorf("continuity %+v, warning %v", st, r.Warning())
	}
	if err := r.Next(&ev); err != io.EOF {
		t.Errorf("after the end: %v", err)
	}
}

func TestPcapPortFilter(t *testing.T) {
	pkts := pcapSamplePackets(t)[:200]
	data := pcapWrite(t, "", false, pkts)
	for _, tc := range []struct {
		port   uint16
		events bool
	}{{16642, true}, {0, true}, {10378, false}} {
		r, err := NewPcapReader(bytes.NewReader(data), PcapOptions{Port: tc.port})
		if err != nil {
			t.Fatal(err)
		}
		evs, recs := pcapDrain(t, r)
		if (len(evs) > 0) != tc.events || len(recs) != 0 {
			t.Errorf("port %d: %d events, %d errors", tc.port, len(evs), len(recs))
		}
		if !tc.events && r.Stats().Skipped != 200 {
			t.Errorf("port %d: skipped %d", tc.port, r.Stats().Skipped)
		}
	}
}

// A pcapng file, plain and gzipped, decodes to the same events as the
// classic pcap of the same packets.
func TestPcapNgMatchesPcap(t *testing.T) {
	pkts := pcapSamplePackets(t)[:300]
	dir := t.TempDir()
	classic := filepath.Join(dir, "a.pcap")
	ng := filepath.Join(dir, "a.pcapng")
	ngz := filepath.Join(dir, "a.pcapng.gz")
	pcapWrite(t, classic, false, pkts)
	ngBytes := pcapWrite(t, ng, true, pkts)
	if err := os.WriteFile(ngz, pcapGzip(ngBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func(path string) ([]codec.Event, []int64) {
		r, err := OpenPcap(path, PcapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var evs []codec.Event
		var times []int64
		for {
			var ev codec.Event
			err := r.Next(&ev)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
			times = append(times, r.PacketTimeNs())
		}
		return evs, times
	}
	want, wantTimes := read(classic)
	if len(want) < 500 {
		t.Fatalf("only %d events in 300 packets", len(want))
	}
	for _, path := range []string{ng, ngz} {
		got, times := read(path)
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", path, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] || times[i] != wantTimes[i] {
				t.Fatalf("%s: event %d differs:\n%+v\n%+v", path, i, got[i], want[i])
			}
		}
	}
	first := 0
	for pcapEventsOf(pkts[first:first+1]) == 0 {
		first++
	}
	if wantTimes[0] != pkts[first].ci.Timestamp.UnixNano() {
		t.Errorf("packet time %d, want %d (packet %d)", wantTimes[0], pkts[first].ci.Timestamp.UnixNano(), first)
	}
}

// pcapEventsOf counts the IEX messages in packets (an independent count from
// the segment headers).
func pcapEventsOf(pkts []pcapTestPacket) int {
	n := 0
	for _, p := range pkts {
		seg := p.data[14+20+8:]
		n += int(binary.LittleEndian.Uint16(seg[14:]))
	}
	return n
}

func TestPcapTruncatedLastRecord(t *testing.T) {
	pkts := pcapSamplePackets(t)[:120]
	// Make sure the last packet carries messages, so losing it shows.
	for pcapEventsOf(pkts[len(pkts)-1:]) == 0 {
		pkts = pkts[:len(pkts)-1]
	}
	full := pcapEventsOf(pkts)
	before := pcapEventsOf(pkts[:len(pkts)-1])
	classic := pcapWrite(t, "", false, pkts)
	ng := pcapWrite(t, "", true, pkts)
	last := len(pkts[len(pkts)-1].data)
	cases := []struct {
		name string
		data []byte
		want int
	}{
		{"inside the data", classic[:len(classic)-last/2], before},
		{"inside the record header", classic[:len(classic)-last-10], before},
		{"data missing entirely", classic[:len(classic)-last], before},
		{"pcapng inside the block", ng[:len(ng)-20], before},
		{"gzip cut short", pcapGzip(classic)[:len(pcapGzip(classic))-9], full},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cut.pcap")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := OpenPcap(path, PcapOptions{Logger: pcapQuietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			evs, recs := pcapDrain(t, r)
			if len(recs) != 0 {
				t.Fatalf("record errors: %v", recs[0].Err)
			}
			if tc.name == "gzip cut short" {
				// Only the gzip trailer is missing: every packet decodes.
				if len(evs) != tc.want {
					t.Errorf("%d events, want %d", len(evs), tc.want)
				}
			} else if len(evs) != tc.want {
				t.Errorf("%d events, want %d (all packets but the cut one)", len(evs), tc.want)
			}
			if !r.Stats().Truncated || !errors.Is(r.Warning(), ErrCaptureTruncated) {
				t.Errorf("no truncation warning: %+v %v", r.Stats(), r.Warning())
			}
		})
	}
	// The complete file has no warning.
	r, err := NewPcapReader(bytes.NewReader(classic), PcapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if evs, _ := pcapDrain(t, r); len(evs) != full || r.Warning() != nil {
		t.Errorf("complete: %d events (want %d), warning %v", len(evs), full, r.Warning())
	}
}

func TestPcapGapsAndOverlaps(t *testing.T) {
	var pkts []pcapTestPacket
	for _, p := range pcapSamplePackets(t) {
		if pcapEventsOf([]pcapTestPacket{p}) > 0 {
			pkts = append(pkts, p)
		}
		if len(pkts) == 40 {
			break
		}
	}
	total := pcapEventsOf(pkts)
	dropped := pcapEventsOf(pkts[10:12])
	dup := pcapEventsOf(pkts[20:21])
	// Drop packets 10 and 11, repeat packet 20 right after itself and again
	// after 25 (a late retransmission).
	var cap []pcapTestPacket
	for i, p := range pkts {
		if i == 10 || i == 11 {
			continue
		}
		cap = append(cap, p)
		if i == 20 || i == 25 {
			cap = append(cap, pkts[20])
		}
	}
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, cap)), PcapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs, recs := pcapDrain(t, r)
	if len(recs) != 0 {
		t.Fatal(recs[0].Err)
	}
	if len(evs) != total-dropped {
		t.Errorf("%d events, want %d", len(evs), total-dropped)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			t.Fatalf("event %d: seq %d after %d", i, evs[i].Seq, evs[i-1].Seq)
		}
	}
	st := r.Stats()
	if st.Gaps != 1 || st.MissingMessages != uint64(dropped) || st.MissingBytes == 0 ||
		st.Overlaps != 0 || st.DuplicateSegments != 2 || st.DuplicateMessages != uint64(2*dup) || st.Resets != 0 || st.OffsetMismatches != 0 {
		t.Errorf("continuity %+v (dropped %d, dup %d)", st, dropped, dup)
	}
}

// pcapUDP wraps payload in Ethernet/IPv4/UDP to port.
func pcapUDP(payload []byte, port uint16) []byte {
	b := make([]byte, 14+20+8, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 17
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func TestPcapBadRecords(t *testing.T) {
	pkts := pcapSamplePackets(t)[:50]
	good := pcapEventsOf(pkts)
	ts := pkts[0].ci
	mk := func(data []byte) pcapTestPacket {
		ci := ts
		ci.CaptureLength, ci.Length = len(data), len(data)
		return pcapTestPacket{ci, data}
	}
	// Corrupt the message length of the first message of a real segment.
	var corrupt []byte
	for _, p := range pkts {
		if pcapEventsOf([]pcapTestPacket{p}) > 1 {
			corrupt = append([]byte(nil), p.data...)
			break
		}
	}
	binary.LittleEndian.PutUint16(corrupt[14+20+8+40:], 60000)
	fragment := pcapUDP([]byte("whatever"), 16642)
	binary.BigEndian.PutUint16(fragment[14+6:], 0x2000) // more fragments
	cap := []pcapTestPacket{
		mk(pcapUDP([]byte("not an IEX segment at all, just text"), 16642)), // packet 0: record error
		mk([]byte{1, 2, 3}), // packet 1: too short for Ethernet: skipped
		mk(fragment),        // packet 2: skipped
		mk(append(make([]byte, 12), 0x86, 0xdd, 0)), // IPv6: skipped
		mk(corrupt), // packet 4: framing error
	}
	cap = append(cap, pkts...)
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, cap)), PcapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs, recs := pcapDrain(t, r)
	if len(evs) != good {
		t.Errorf("%d events, want %d", len(evs), good)
	}
	if len(recs) != 2 || recs[0].Pos.Offset != 0 || recs[1].Pos.Offset != 4 ||
		recs[0].Reason() != codec.ReasonMalformed || recs[1].Reason() != codec.ReasonMalformed || len(recs[0].Raw) == 0 {
		t.Fatalf("record errors %+v", recs)
	}
	if st := r.Stats(); st.Skipped != 3 || st.NotIEX != 1 || st.Errors != 2 {
		t.Errorf("stats %+v", st)
	}

	if _, err := NewPcapReader(bytes.NewReader([]byte("this is not a capture file")), PcapOptions{}); !errors.Is(err, ErrPcapFormat) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := NewPcapReader(bytes.NewReader(nil), PcapOptions{}); !errors.Is(err, ErrPcapFormat) {
		t.Errorf("empty: %v", err)
	}
	if _, err := OpenPcap(filepath.Join(t.TempDir(), "missing.pcap"), PcapOptions{}); err == nil {
		t.Error("missing file opened")
	}
}

func TestPcapReaderAllocs(t *testing.T) {
	// The uncompressed capture: compress/flate allocates a few times per
	// deflate block, which is the standard library's cost of reading a .gz,
	// not the reader's.
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, pcapSamplePackets(t))), PcapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: the sample introduces its 7,800 symbols (a first-sight
	// allocation each) in its first 31,203 messages.
	var ev codec.Event
	for i := 0; i < 32000; i++ {
		if err := r.Next(&ev); err != nil {
			t.Fatal(err)
		}
	}
	allocs := totalAllocs(12000, func() {
		if err := r.Next(&ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("12000 calls of Next allocate %.0f times", allocs)
	}
}

// totalAllocs returns the allocations of n calls of f, in total (after n
// warm-up calls). testing.AllocsPerRun reports a floored average, which would
// hide an allocation every few hundred calls.
func totalAllocs(n int, f func()) float64 {
	return testing.AllocsPerRun(1, func() {
		for i := 0; i < n; i++ {
			f()
		}
	})
}

// pcapTestPubs collects what a feed publishes.
type pcapTestPubs struct {
	syms *codec.SymbolTable
	mu   sync.Mutex
	evs  []codec.Event
	rej  []codec.Reason
	fl   int
}

func (p *pcapTestPubs) NewPublisher(string) (Publisher, error) { return p, nil }
func (p *pcapTestPubs) Symbols() *codec.SymbolTable            { return p.syms }
func (p *pcapTestPubs) Publish(ev *codec.Event) error {
	p.mu.Lock()
	p.evs = append(p.evs, *ev)
	p.mu.Unlock()
	return nil
}
func (p *pcapTestPubs) Flush() error                      { p.fl++; return nil }
func (p *pcapTestPubs) Barrier(ctx context.Context) error { return nil }
func (p *pcapTestPubs) Reject(raw []byte, reason codec.Reason, pos Position, err error) {
	p.rej = append(p.rej, reason)
}

func TestPcapFeedFastAndPaced(t *testing.T) {
	pkts := pcapSamplePackets(t)[:400]
	bad := pkts[0]
	bad.data = pcapUDP([]byte("garbage garbage garbage garbage garbage garbage"), 16642)
	bad.ci.CaptureLength, bad.ci.Length = len(bad.data), len(bad.data)
	path := filepath.Join(t.TempDir(), "feed.pcap")
	pcapWrite(t, path, false, append([]pcapTestPacket{bad}, pkts...))
	want := pcapEventsOf(pkts)

	// As fast as possible.
	pubs := &pcapTestPubs{syms: codec.NewSymbolTable(0)}
	f := NewPcapFeed(path, PcapOptions{Name: "iex"})
	var _ Feed = f
	if err := f.Run(context.Background(), pubs); err != nil {
		t.Fatal(err)
	}
	if len(pubs.evs) != want || len(pubs.rej) != 1 || pubs.rej[0] != codec.ReasonMalformed || f.Name() != "iex" {
		t.Fatalf("%d events (want %d), rejects %v", len(pubs.evs), want, pubs.rej)
	}
	if f.Stats().Events != uint64(want) || pubs.syms.Len() == 0 {
		t.Errorf("stats %+v, symbols %d", f.Stats(), pubs.syms.Len())
	}

	// Paced at 4x on a fake clock that only sleeping advances: the waits
	// add up to the captured span / 4 (less under 1 ms carried at the end).
	var clock time.Time = time.Unix(1e9, 0)
	var slept time.Duration
	var sleeps int
	fp := NewPcapFeed(path, PcapOptions{Speed: 4})
	fp.now = func() time.Time { return clock }
	fp.sleep = func(ctx context.Context, d time.Duration) error {
		if d < pcapPaceMin {
			t.Errorf("slept %v", d)
		}
		clock = clock.Add(d)
		slept += d
		sleeps++
		return nil
	}
	pubs2 := &pcapTestPubs{syms: codec.NewSymbolTable(0)}
	if err := fp.Run(context.Background(), pubs2); err != nil {
		t.Fatal(err)
	}
	// The clock starts at the first packet that yields an event.
	first, last := 0, len(pkts)-1
	for pcapEventsOf(pkts[first:first+1]) == 0 {
		first++
	}
	for pcapEventsOf(pkts[last:last+1]) == 0 {
		last--
	}
	span := pkts[last].ci.Timestamp.Sub(pkts[first].ci.Timestamp)
	wantSleep := span / 4
	if slept > wantSleep || slept < wantSleep-pcapPaceMin || sleeps == 0 {
		t.Errorf("slept %v in %d waits, want %v (span %v)", slept, sleeps, wantSleep, span)
	}
	if len(pubs2.evs) != want {
		t.Errorf("paced: %d events", len(pubs2.evs))
	}
	for i := range pubs.evs {
		if pubs.evs[i] != pubs2.evs[i] {
			t.Fatalf("paced event %d differs", i)
		}
	}

	// Cancellation while waiting ends Run with the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	fc := NewPcapFeed(path, PcapOptions{Speed: 1})
	fc.sleep = func(ctx context.Context, d time.Duration) error { cancel(); return pcapSleep(ctx, d) }
	if err := fc.Run(ctx, &pcapTestPubs{syms: codec.NewSymbolTable(0)}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func BenchmarkPcapReplay(b *testing.B) {
	pcapNeedSample(b)
	gz, err := os.ReadFile(pcapSamplePath)
	if err != nil {
		b.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	syms := codec.NewSymbolTable(0)
	run := func(data []byte) int {
		r, err := NewPcapReader(bytes.NewReader(data), PcapOptions{Symbols: syms})
		if err != nil {
			b.Fatal(err)
		}
		var ev codec.Event
		n := 0
		for {
			err := r.Next(&ev)
			if err == io.EOF {
				return n
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	for _, bc := range []struct {
		name string
		data []byte
	}{{"pcap", raw}, {"pcap.gz", gz}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			msgs := 0
			for i := 0; i < b.N; i++ {
				msgs += run(bc.data)
			}
			b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// FuzzPcapReader feeds arbitrary bytes to the reader as a capture: it must
// never panic or loop, whatever pcapgo makes of them, and Event.Seq must
// increase from event to event whatever the sequence numbers do. The seeds
// (pcapFuzzSeeds) are kept small and each run cheap: the fuzzer minimises
// every new interesting input, in time quadratic in its size, and reports
// no executions while it does (see pcapFuzzSeeds).
func FuzzPcapReader(f *testing.F) {
	for _, seed := range pcapFuzzSeeds(f) {
		f.Add(seed)
	}
	quiet := pcapQuietLogger()
	f.Fuzz(func(t *testing.T, data []byte) {
		pcapFuzzRun(t, data, quiet)
	})
}

// A corrupt pcapng cannot make the reader allocate without bound (the guard
// lowers interface snap lengths and rejects packets longer than their
// block), and a panic inside pcapgo becomes an error.
func TestPcapNgGuard(t *testing.T) {
	pkts := pcapSamplePackets(t)[:60]
	ng := pcapWrite(t, "", true, pkts)
	want, _ := pcapDrain(t, pcapMustReader(t, ng))

	// Block offsets: SHB, then the IDB, then the packets.
	shbLen := int(binary.LittleEndian.Uint32(ng[4:]))
	idb := shbLen
	if binary.LittleEndian.Uint32(ng[idb:]) != 1 {
		t.Fatalf("no IDB after the SHB")
	}
	epb := idb + int(binary.LittleEndian.Uint32(ng[idb+4:]))
	if binary.LittleEndian.Uint32(ng[epb:]) != 6 {
		t.Fatalf("no EPB after the IDB")
	}

	huge := append([]byte(nil), ng...)
	binary.LittleEndian.PutUint32(huge[idb+12:], 0xffffffff) // snap length
	got, _ := pcapDrain(t, pcapMustReader(t, huge))
	if len(got) != len(want) {
		t.Errorf("huge snap length: %d events, want %d", len(got), len(want))
	}

	long := append([]byte(nil), ng...)
	binary.LittleEndian.PutUint32(long[epb+20:], 0x7fffffff) // captured length
	r := pcapMustReader(t, long)
	var ev codec.Event
	if err := r.Next(&ev); err == nil || err == io.EOF || !errors.Is(err, errPcapngBlock) {
		t.Errorf("oversize packet: %v", err)
	}

	big := append([]byte(nil), ng...)
	binary.LittleEndian.PutUint32(big[epb+4:], pcapngMaxBlock+4) // block length
	r = pcapMustReader(t, big)
	if err := r.Next(&ev); !errors.Is(err, errPcapngBlock) {
		t.Errorf("oversize block: %v", err)
	}

	// An interface whose timestamp resolution is 10^-127 s makes pcapgo
	// divide by zero.
	var b []byte
	le := binary.LittleEndian
	b = le.AppendUint32(b, 0x0A0D0D0A)
	b = le.AppendUint32(b, 28)
	b = le.AppendUint32(b, 0x1A2B3C4D)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, 0xffffffffffffffff)
	b = le.AppendUint32(b, 28)
	b = le.AppendUint32(b, 1) // IDB
	b = le.AppendUint32(b, 32)
	b = le.AppendUint16(b, uint16(layers.LinkTypeEthernet))
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 65536)
	b = le.AppendUint16(b, 9) // if_tsresol
	b = le.AppendUint16(b, 1)
	b = append(b, 0x7f, 0, 0, 0)
	b = le.AppendUint32(b, 0) // end of options
	b = le.AppendUint32(b, 32)
	if _, err := NewPcapReader(bytes.NewReader(b), PcapOptions{}); !errors.Is(err, errPcapgoPanic) {
		t.Errorf("pcapgo panic: %v", err)
	}
}

func pcapMustReader(t *testing.T, data []byte) *PcapReader {
	t.Helper()
	r, err := NewPcapReader(bytes.NewReader(data), PcapOptions{Logger: pcapQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// iexTestStream builds the segments of one IEX-TP TOPS stream by hand: trade
// reports numbered by a test-wide id (kept in the trade id field, so that
// every event tells which message it was), sequence numbers, stream offsets
// and timestamps as a real stream advances them, each segment wrapped in
// Ethernet/IPv4/UDP.
type iexTestStream struct {
	channel, session uint32
	seq, off         uint64 // of the next message
	tsNs             int64  // of the next message
	id               *uint64
}

func newIEXTestStream(channel, session uint32, id *uint64) *iexTestStream {
	return &iexTestStream{channel: channel, session: session, seq: 1, tsNs: 1_700_000_000_000_000_000, id: id}
}

// iexTestTrade is a 38-byte trade report.
func iexTestTrade(tsNs int64, id uint64) []byte {
	m := make([]byte, 38)
	m[0] = codec.IEXTradeReport
	binary.LittleEndian.PutUint64(m[2:], uint64(tsNs))
	copy(m[10:18], "ZXZZT   ")
	binary.LittleEndian.PutUint32(m[18:], 100)
	binary.LittleEndian.PutUint64(m[22:], 101_2500)
	binary.LittleEndian.PutUint64(m[30:], id)
	return m
}

// iexTestSegment frames msgs as an IEX-TP segment.
func iexTestSegment(channel, session uint32, firstSeq, off uint64, msgs [][]byte) []byte {
	var payload []byte
	for _, m := range msgs {
		payload = binary.LittleEndian.AppendUint16(payload, uint16(len(m)))
		payload = append(payload, m...)
	}
	seg := make([]byte, codec.IEXHeaderLen, codec.IEXHeaderLen+len(payload))
	seg[0] = codec.IEXVersion
	binary.LittleEndian.PutUint16(seg[2:], codec.IEXProtocolTOPS)
	binary.LittleEndian.PutUint32(seg[4:], channel)
	binary.LittleEndian.PutUint32(seg[8:], session)
	binary.LittleEndian.PutUint16(seg[12:], uint16(len(payload)))
	binary.LittleEndian.PutUint16(seg[14:], uint16(len(msgs)))
	binary.LittleEndian.PutUint64(seg[16:], off)
	binary.LittleEndian.PutUint64(seg[24:], firstSeq)
	return append(seg, payload...)
}

// next returns the stream's next segment of n new trades (a heartbeat for
// n == 0) and advances the stream past it.
func (s *iexTestStream) next(n int) []byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		*s.id++
		msgs[i] = iexTestTrade(s.tsNs, *s.id)
		s.tsNs += 1000
	}
	seg := iexTestSegment(s.channel, s.session, s.seq, s.off, msgs)
	s.seq += uint64(n)
	s.off += uint64(len(seg) - codec.IEXHeaderLen)
	return seg
}

// restart makes the stream start again at sequence seq and stream offset
// off (a sequence reset); its timestamps go on from back (0: where they are).
func (s *iexTestStream) restart(seq, off uint64, backNs int64) {
	s.seq, s.off = seq, off
	s.tsNs -= backNs
}

// iexTestCapture wraps segments into packets (to port 10378, 1 µs apart).
func iexTestCapture(segs ...[]byte) []pcapTestPacket {
	pkts := make([]pcapTestPacket, len(segs))
	for i, seg := range segs {
		data := pcapUDP(seg, 10378)
		pkts[i] = pcapTestPacket{gopacket.CaptureInfo{Timestamp: time.Unix(1_700_000_000, int64(i)*1000),
			CaptureLength: len(data), Length: len(data)}, data}
	}
	return pkts
}

// iexTestIDs returns the trade ids of evs (which message each event was).
func iexTestIDs(evs []codec.Event) []uint64 {
	ids := make([]uint64, len(evs))
	for i := range evs {
		ids[i] = evs[i].IDHash
	}
	return ids
}

func pcapCheckSeqIncreasing(t *testing.T, evs []codec.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq <= evs[i-1].Seq {
			t.Fatalf("event %d: Seq %d after %d", i, evs[i].Seq, evs[i-1].Seq)
		}
	}
}

// pcapLogBuffer is a logger whose text output a test can read.
type pcapLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *pcapLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *pcapLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *pcapLogBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// A stream whose sequence numbers start again (a sequence reset) has every
// message of its new epoch decoded, with Event.Seq still increasing, the
// reset counted and logged once; copies of segments from before and after
// the reset are still duplicates.
func TestPcapSequenceReset(t *testing.T) {
	const before, after = 10, 15 // segments of 3 trades before and after the reset
	cases := []struct {
		name string
		// restart is where the stream starts again and how far back its
		// timestamps go; startSeq 0 starts a capture at sequence 1.
		startSeq, seq, off uint64
		backNs             int64
		gaps, missing      uint64
	}{
		// The new epoch's messages are newer than the old ones.
		{name: "to 1", seq: 1},
		// Timestamps start again too: a reset to 1 is told from a copy
		// of the first segment by its first message.
		{name: "to 1, timestamps back", seq: 1, backNs: 1_000_000},
		// Further back than any retransmission: a reset whatever the
		// timestamps (the capture began in the middle of the old epoch).
		{name: "beyond the window", startSeq: 5_000_000, seq: 100, off: 4000, backNs: 1_000_000, gaps: 1, missing: 99},
		// The new epoch's first segments were lost: not at 1, but its
		// messages are newer than anything the old epoch delivered.
		{name: "first segments lost", seq: 10, off: 400, gaps: 1, missing: 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var id uint64
			s := newIEXTestStream(1, 7, &id)
			if tc.startSeq != 0 {
				s.seq, s.off = tc.startSeq, 123_456_789
			}
			var segs [][]byte
			segs = append(segs, s.next(0)) // a heartbeat first
			for range before {
				segs = append(segs, s.next(3))
			}
			oldSeg := segs[3]
			wantIDs := make([]uint64, 0, 3*(before+after))
			for i := uint64(1); i <= id; i++ {
				wantIDs = append(wantIDs, i)
			}
			s.restart(tc.seq, tc.off, tc.backNs)
			segs = append(segs, s.next(0)) // the new epoch's heartbeat, behind the stream
			first := s.next(3)
			segs = append(segs, first)
			for i := range after - 1 {
				segs = append(segs, s.next(3))
				if i == 2 {
					// Late copies: duplicates. (A copy from before the
					// reset is a forward jump when the old epoch was
					// further on: it is only tried where it was not.)
					segs = append(segs, first)
					if tc.startSeq == 0 {
						segs = append(segs, oldSeg)
					}
				}
			}
			for i := id - 3*(after) + 1; i <= id; i++ {
				wantIDs = append(wantIDs, i)
			}
			var log pcapLogBuffer
			r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, iexTestCapture(segs...))),
				PcapOptions{Name: "iex", Logger: log.logger()})
			if err != nil {
				t.Fatal(err)
			}
			evs, recs := pcapDrain(t, r)
			if len(recs) != 0 {
				t.Fatal(recs[0].Err)
			}
			if got := iexTestIDs(evs); !slices.Equal(got, wantIDs) {
				t.Fatalf("%d events, messages %v\nwant %d: %v", len(evs), got, len(wantIDs), wantIDs)
			}
			pcapCheckSeqIncreasing(t, evs)
			if last := evs[3*before-1].Seq; evs[3*before].Seq != last+tc.seq {
				t.Errorf("first Seq after the reset %d, want %d (the last before it plus the new sequence number)", evs[3*before].Seq, last+tc.seq)
			}
			st := r.Stats()
			dups := uint64(2)
			if tc.startSeq != 0 {
				dups = 1
			}
			if st.Resets != 1 || st.Sessions != 1 || st.Gaps != tc.gaps || st.MissingMessages != tc.missing ||
				st.Overlaps != 0 || st.DuplicateSegments != dups || st.DuplicateMessages != 3*dups || st.Errors != 0 {
				t.Errorf("stats %+v", st)
			}
			logged := log.String()
			if n := strings.Count(logged, "sequence reset"); n != 1 {
				t.Errorf("%d reset warnings, want 1:\n%s", n, logged)
			}
			for _, want := range []string{"level=WARN", "feed=iex", "channel=1", "session=7", "packet=12",
				fmt.Sprintf("seq=%d", tc.seq), fmt.Sprintf("expected_seq=%d", max(tc.startSeq, 1)+3*before)} {
				if !strings.Contains(logged, want) {
					t.Errorf("warning lacks %q: %s", want, logged)
				}
			}
		})
	}
}

// Gaps, overlapping retransmissions and exact duplicates are told apart and
// counted; every new message is decoded once.
func TestPcapSequenceContinuity(t *testing.T) {
	var id uint64
	s := newIEXTestStream(1, 7, &id)
	seg1 := s.next(3) // 1-3
	seg2 := s.next(3) // 4-6
	s.next(3)         // 7-9: lost
	seg4 := s.next(3) // 10-12
	seg5 := s.next(3) // 13-15
	seg6 := s.next(3) // 16-18
	// 19: a message of a type the decoder does not know, the newest of
	// the stream (a copy of it is still a duplicate, not a reset).
	unknown := make([]byte, 20)
	unknown[0] = 'z'
	binary.LittleEndian.PutUint64(unknown[2:], uint64(s.tsNs+1e9))
	seg7 := iexTestSegment(1, 7, s.seq, s.off, [][]byte{unknown})
	s.seq, s.off = s.seq+1, s.off+22
	hb := s.next(0)                               // 20
	over := iexTestSegment(1, 7, 11, 0, [][]byte{ // 11-15 again, in one segment
		iexTestTrade(0, 11), iexTestTrade(0, 12), seg5[codec.IEXHeaderLen+2 : codec.IEXHeaderLen+40],
		seg5[codec.IEXHeaderLen+42 : codec.IEXHeaderLen+80], seg5[codec.IEXHeaderLen+82:]})
	binary.LittleEndian.PutUint64(over[16:], binary.LittleEndian.Uint64(seg4[16:])+40)
	staleHB := iexTestSegment(1, 7, 5, 160, nil)
	capture := iexTestCapture(seg1, seg2, seg4, over, seg6, seg6, seg1, staleHB, seg7, seg7, hb)
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, capture)), PcapOptions{Logger: pcapQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	evs, recs := pcapDrain(t, r)
	if len(recs) != 0 {
		t.Fatal(recs[0].Err)
	}
	want := []uint64{1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18}
	if got := iexTestIDs(evs); !slices.Equal(got, want) {
		t.Fatalf("messages %v, want %v", got, want)
	}
	for i, ev := range evs {
		if ev.Seq != want[i] { // one stream without a reset: Seq is the IEX sequence number
			t.Errorf("event %d: Seq %d, want %d", i, ev.Seq, want[i])
		}
	}
	st := r.Stats()
	if st.Gaps != 1 || st.MissingMessages != 3 || st.MissingBytes != 3*40 || st.Overlaps != 1 ||
		st.DuplicateSegments != 3 || st.DuplicateMessages != 2+3+3+1 || st.Resets != 0 || st.OffsetMismatches != 0 || st.IEX.Unknown != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Streams that interleave (channels of one capture) each keep their
// messages, and Event.Seq increases across them.
func TestPcapInterleavedStreamsSeq(t *testing.T) {
	var id uint64
	a, b := newIEXTestStream(1, 7, &id), newIEXTestStream(2, 7, &id)
	var segs [][]byte
	for range 5 {
		segs = append(segs, a.next(2), b.next(3))
	}
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, iexTestCapture(segs...))), PcapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := pcapDrain(t, r)
	if len(evs) != 25 {
		t.Fatalf("%d events, want 25", len(evs))
	}
	pcapCheckSeqIncreasing(t, evs)
	if st := r.Stats(); st.Sessions != 2 || st.Resets != 0 || st.Gaps != 0 || st.DuplicateMessages != 0 {
		t.Errorf("stats %+v", st)
	}
}

// pcapSampleWithReset returns the sample's packets with its sequence numbers
// and stream offsets made to start again at 1 and 0 halfway through its
// messages, and the index of the packet where they do.
func pcapSampleWithReset(tb testing.TB) ([]pcapTestPacket, int) {
	pkts := pcapSamplePackets(tb)
	const hdr = 14 + 20 + 8
	at, n := -1, 0
	var seq0, off0 uint64
	for i, p := range pkts {
		seg := p.data[hdr:]
		if at < 0 && n >= pcapSampleMessages/2 && binary.LittleEndian.Uint16(seg[14:]) > 0 {
			at, seq0, off0 = i, binary.LittleEndian.Uint64(seg[24:]), binary.LittleEndian.Uint64(seg[16:])
		}
		n += int(binary.LittleEndian.Uint16(seg[14:]))
		if at >= 0 {
			data := append([]byte(nil), p.data...)
			seg := data[hdr:]
			binary.LittleEndian.PutUint64(seg[24:], binary.LittleEndian.Uint64(seg[24:])-seq0+1)
			binary.LittleEndian.PutUint64(seg[16:], binary.LittleEndian.Uint64(seg[16:])-off0)
			pkts[i].data = data
		}
	}
	return pkts, at
}

// The real sample, its sequence restarting at 1 halfway: every one of its
// 57,674 messages still comes out, with the per-type counts of SOURCES.md.
func TestPcapSampleSequenceReset(t *testing.T) {
	pkts, at := pcapSampleWithReset(t)
	var log pcapLogBuffer
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, pkts)), PcapOptions{Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	evs, recs := pcapDrain(t, r)
	if len(recs) != 0 {
		t.Fatal(recs[0].Err)
	}
	if len(evs) != pcapSampleMessages {
		t.Errorf("%d events, want %d", len(evs), pcapSampleMessages)
	}
	byType := map[byte]uint64{}
	for i := range evs {
		byType[codec.IEXMessageTypeOf(evs[i].Aux)]++
	}
	if !maps.Equal(byType, pcapSampleCounts) {
		t.Errorf("by type %v, want %v", byType, pcapSampleCounts)
	}
	pcapCheckSeqIncreasing(t, evs)
	st := r.Stats()
	if st.Resets != 1 || st.Gaps != 0 || st.Overlaps != 0 || st.DuplicateSegments != 0 || st.DuplicateMessages != 0 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(log.String(), fmt.Sprintf("packet=%d seq=1 offset=0", at)) {
		t.Errorf("warning: %s", log.String())
	}
}

// Passing over duplicates allocates nothing either: the sample with every
// packet captured twice (two feed lines), from after the reset of
// pcapSampleWithReset on.
func TestPcapReaderAllocsDuplicates(t *testing.T) {
	pkts, _ := pcapSampleWithReset(t)
	twice := make([]pcapTestPacket, 0, 2*len(pkts))
	for _, p := range pkts {
		twice = append(twice, p, p)
	}
	r, err := NewPcapReader(bytes.NewReader(pcapWrite(t, "", false, twice)), PcapOptions{Logger: pcapQuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var ev codec.Event
	for i := 0; i < 32000; i++ { // past the reset and the symbols' first sight
		if err := r.Next(&ev); err != nil {
			t.Fatal(err)
		}
	}
	allocs := totalAllocs(12000, func() {
		if err := r.Next(&ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("12000 calls of Next allocate %.0f times", allocs)
	}
	if st := r.Stats(); st.Resets != 1 || st.DuplicateSegments < 5000 {
		t.Errorf("stats %+v", st)
	}
}

// PublishText publishes ev; the fake keeps no text.
func (p *pcapTestPubs) PublishText(ev *codec.Event, _ []byte) error { return p.Publish(ev) }
