package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// The IEX sample's packets are Ethernet/IPv4 (no options)/UDP: the IEX-TP
// segment starts here.
const pcapSegAt = 14 + 20 + 8

type pcapPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

func pcapReadSample(t *testing.T) []pcapPacket {
	t.Helper()
	f, err := os.Open(sharedTestdata(t, "pcap/iex_tops16_sample.pcap.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []pcapPacket
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, pcapPacket{ci, data})
	}
}

func pcapMsgs(p pcapPacket) int { return int(binary.LittleEndian.Uint16(p.data[pcapSegAt+14:])) }

// pcapRestartHalfway rewrites the sequence numbers and stream offsets of the
// packets from the first data packet past half of the messages on, so that
// the stream starts again at 1 and 0 there (a sequence reset).
func pcapRestartHalfway(pkts []pcapPacket) {
	total := 0
	for _, p := range pkts {
		total += pcapMsgs(p)
	}
	n, at := 0, -1
	var seq0, off0 uint64
	for i := range pkts {
		seg := pkts[i].data[pcapSegAt:]
		if at < 0 && n >= total/2 && pcapMsgs(pkts[i]) > 0 {
			at, seq0, off0 = i, binary.LittleEndian.Uint64(seg[24:]), binary.LittleEndian.Uint64(seg[16:])
		}
		n += pcapMsgs(pkts[i])
		if at >= 0 {
			pkts[i].data = append([]byte(nil), pkts[i].data...)
			seg = pkts[i].data[pcapSegAt:]
			binary.LittleEndian.PutUint64(seg[24:], binary.LittleEndian.Uint64(seg[24:])-seq0+1)
			binary.LittleEndian.PutUint64(seg[16:], binary.LittleEndian.Uint64(seg[16:])-off0)
		}
	}
}

// pcapMerge returns a packet whose segment carries the messages of a's and
// then b's (consecutive segments), as one retransmitted segment.
func pcapMerge(a, b pcapPacket) pcapPacket {
	pa := a.data[pcapSegAt+40:]
	pb := b.data[pcapSegAt+40:]
	data := append([]byte(nil), a.data[:pcapSegAt+40]...)
	data = append(append(data, pa...), pb...)
	seg := data[pcapSegAt:]
	binary.LittleEndian.PutUint16(seg[12:], uint16(len(pa)+len(pb)))
	binary.LittleEndian.PutUint16(seg[14:], uint16(pcapMsgs(a)+pcapMsgs(b)))
	binary.BigEndian.PutUint16(data[14+2:], uint16(20+8+len(seg)))
	binary.BigEndian.PutUint16(data[14+20+4:], uint16(8+len(seg)))
	binary.BigEndian.PutUint16(data[14+20+6:], 0) // no UDP checksum
	ci := b.ci
	ci.CaptureLength, ci.Length = len(data), len(data)
	return pcapPacket{ci, data}
}

func pcapWriteFile(t *testing.T, pkts []pcapPacket) string {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "iex.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replayStats runs replay --emit stats on path and decodes the object.
func replayStats(t *testing.T, path string) (map[string]any, string) {
	t.Helper()
	out, stderr, rc := qstream(t, "replay", "--input", path, "--emit", "stats")
	if rc != 0 {
		t.Fatalf("replay: exit %d\n%s", rc, stderr)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats %q: %v", out, err)
	}
	return st, stderr
}

func checkSequence(t *testing.T, st map[string]any, want map[string]float64) {
	t.Helper()
	seq, ok := st["sequence"].(map[string]any)
	if !ok {
		t.Fatalf("stats without a sequence object: %v", st)
	}
	for k, v := range want {
		if seq[k] != v {
			t.Errorf("sequence %s = %v, want %v (%v)", k, seq[k], v, seq)
		}
	}
}

// The IEX sample with its sequence restarting at 1 halfway replays in full
// (SOURCES.md's counts), shows the reset in --emit stats and on stderr, and
// gives byte-identical output run to run; run --feed pcap decodes every
// message of it too and names the reset in its summary.
func TestReplayPcapSequenceReset(t *testing.T) {
	pkts := pcapReadSample(t)
	pcapRestartHalfway(pkts)
	path := pcapWriteFile(t, pkts)

	st, stderr := replayStats(t, path)
	if st["messages"] != 57674.0 || st["errors"] != 0.0 {
		t.Errorf("stats %v", st)
	}
	byType, _ := st["by_type"].(map[string]any)
	for k, v := range map[string]float64{"quote": 27217, "trade": 6390, "status": 23406, "system": 658, "custom": 3} {
		if byType[k] != v {
			t.Errorf("by_type %s = %v, want %v", k, byType[k], v)
		}
	}
	checkSequence(t, st, map[string]float64{"sessions": 1, "resets": 1, "gaps": 0, "missing": 0, "overlaps": 0,
		"duplicates": 0, "duplicate_messages": 0, "offset_mismatches": 0})
	if !strings.Contains(stderr, "sequence reset") {
		t.Errorf("no reset warning on stderr:\n%s", stderr)
	}

	args := []string{"replay", "--input", path, "--emit", "all", "--indicators", "sma:5,vwap", "--windows", "tumbling:1s:ohlcv"}
	a, _, rc := qstream(t, args...)
	b, _, _ := qstream(t, args...)
	if rc != 0 || a != b || strings.Count(a, "\n") < 6390 {
		t.Fatalf("replay: exit %d, %d and %d bytes, identical %t", rc, len(a), len(b), a == b)
	}

	r := startRun(t, "--feed", "pcap", "--pcap", path, "--status-interval", "2ms")
	out, err := r.wait(t, 60*time.Second)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{": 57674 messages", " events=57674 errors=0 ", " overlaps=0 duplicates=0 duplicate_messages=0 resets=1 ",
		" | pcap events "} { // the status line (several print before the end)
		if !strings.Contains(out, want) {
			t.Errorf("run's stderr lacks %q:\n%s", want, out)
		}
	}
}

// Gaps, an overlapping retransmission and an exact duplicate in the IEX
// sample are counted apart in --emit stats, and only the missing messages
// are missing.
func TestReplayPcapSequenceGapsOverlapsDuplicates(t *testing.T) {
	var data []pcapPacket
	for _, p := range pcapReadSample(t) {
		if pcapMsgs(p) > 0 {
			data = append(data, p)
		}
	}
	dropped := pcapMsgs(data[10]) + pcapMsgs(data[11])
	var pkts []pcapPacket
	for i, p := range data {
		switch i {
		case 10, 11: // lost: a gap
			continue
		case 31: // sent again with the segment before it: an overlap
			pkts = append(pkts, pcapMerge(data[30], p))
			continue
		}
		pkts = append(pkts, p)
		if i == 20 { // captured twice: a duplicate
			pkts = append(pkts, p)
		}
	}
	st, _ := replayStats(t, pcapWriteFile(t, pkts))
	if want := float64(57674 - dropped); st["messages"] != want || st["errors"] != 0.0 {
		t.Errorf("stats %v, want %v messages", st, want)
	}
	checkSequence(t, st, map[string]float64{"sessions": 1, "gaps": 1, "missing": float64(dropped), "overlaps": 1,
		"duplicates": 1, "duplicate_messages": float64(pcapMsgs(data[20]) + pcapMsgs(data[30])), "resets": 0})
}
