package sinks

import (
	"qstream/internal/testvectors"

	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qstream/codec"
	"qstream/ops"
	"qstream/wal"
)

var sinksTestdata = testvectors.Dir()

// realRawLines returns the first n received messages of the real Coinbase
// capture: what a feed would dead-letter raw.
func realRawLines(t testing.TB, n int) [][]byte {
	t.Helper()
	path := filepath.Join(sinksTestdata, "exchange/coinbase_ws_capture.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("shared test data %s is missing (expected beside the repository, see ../shared/testdata/SOURCES.md): %v", path, err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(out) < n {
		line := sc.Bytes()
		if i := bytes.Index(line, []byte(": {")); i > 0 {
			out = append(out, append([]byte(nil), line[i+2:]...))
		}
	}
	if len(out) < n {
		t.Fatalf("%s: only %d messages", path, len(out))
	}
	return out
}

func sampleRecords(t testing.TB, symbols *codec.SymbolTable) []DeadLetterRecord {
	sym, _ := symbols.InternString("BTC-USD")
	lines := realRawLines(t, 3)
	ev := codec.Event{Kind: codec.KindTrade, Symbol: sym, Seq: 17, TsNs: 1618650000123456789, Price: 61234.5, Volume: 0.25, IDHash: 99, Status: codec.StatusOpen}
	quote := codec.Event{Kind: codec.KindQuote, Symbol: sym, Seq: 18, TsNs: 1618650000123456790, Bid: 1, Ask: 2, Flags: codec.FlagHasBid | codec.FlagHasAsk}
	out := ops.Output{Kind: ops.OutWindow, Symbol: sym, Seq: 5, Key: 0xDEADBEEF, TsNs: 42}
	return []DeadLetterRecord{
		{Reason: codec.ReasonBadPrice, Feed: "coinbase", Pos: codec.Position{Line: 3, Offset: 120}, Err: errors.New("codec: bad_price"), Raw: lines[0]},
		{Reason: codec.ReasonMalformed, Feed: "tcp", Pos: codec.Position{Offset: 7}, Raw: []byte{0xF5, 0xFF, 0x00, 'x'}},
		{Reason: codec.ReasonLate, Feed: "synthetic", Pos: codec.Position{Offset: -1}, Event: &ev},
		{Reason: codec.ReasonDuplicate, Feed: "synthetic", Pos: codec.Position{Offset: -1}, Event: &quote},
		{Reason: codec.ReasonBadPrice, Feed: "output", Pos: codec.Position{Offset: -1}, Output: &out, Err: errors.New("sink: rejected")},
		{Reason: codec.ReasonOversize, Feed: strings.Repeat("f", 300), Pos: codec.Position{Line: 9, Offset: -1},
			Raw: bytes.Repeat([]byte("y"), DLQMaxRaw+10), Err: errors.New(strings.Repeat("e", 2000))},
	}
}

func TestDLQStoreRoundTrip(t *testing.T) {
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(t, symbols)
	dir := t.TempDir()
	d, err := OpenDLQ(dir, DLQOptions{}, symbols)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := d.Write(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenDLQReader(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var e DLQEntry
	for i, want := range recs {
		if err := r.Next(&e); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if e.LSN != uint64(i+1) || e.Reason != want.Reason || e.Pos != want.Pos || e.Key != DLQKey(&want) {
			t.Fatalf("record %d: %+v", i, e)
		}
		wantFeed := want.Feed
		if len(wantFeed) > DLQMaxFeed {
			wantFeed = wantFeed[:DLQMaxFeed]
		}
		if e.Feed != wantFeed {
			t.Fatalf("record %d: feed %q", i, e.Feed)
		}
		switch {
		case len(want.Raw) > DLQMaxRaw:
			if !e.RawTruncated || !e.ErrTruncated || len(e.Raw) != DLQMaxRaw || len(e.Err) != DLQMaxError {
				t.Fatalf("oversize record not truncated as flagged: raw %d err %d", len(e.Raw), len(e.Err))
			}
		case want.Raw != nil:
			if !bytes.Equal(e.Raw, want.Raw) || e.RawTruncated {
				t.Fatalf("record %d raw %q", i, e.Raw)
			}
		}
		if want.Event != nil && (!e.HasEvent || e.Event != *want.Event || e.Symbol != "BTC-USD") {
			t.Fatalf("record %d event %+v symbol %q", i, e.Event, e.Symbol)
		}
		if want.Output != nil && (!e.HasOutput || e.Output.Key != want.Output.Key || e.Output.Seq != 5 || e.Output.Kind != ops.OutWindow) {
			t.Fatalf("record %d output %+v", i, e.Output)
		}
		var js map[string]any
		if err := json.Unmarshal(e.AppendJSON(nil), &js); err != nil {
			t.Fatalf("record %d: AppendJSON is not JSON: %v", i, err)
		}
		if js["reason"] != want.Reason.String() || js["lsn"].(float64) != float64(i+1) {
			t.Fatalf("record %d JSON %v", i, js)
		}
	}
	if err := r.Next(&e); err != io.EOF {
		t.Fatalf("after the last record: %v", err)
	}
}

// Re-injection rebuilds a generic JSON tick that the codec parses back to
// the rejected event.
func TestDLQEntryInputParsesBack(t *testing.T) {
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(t, symbols)
	for _, i := range []int{2, 3} {
		var e DLQEntry
		if err := DecodeDLQRecord(AppendDLQRecord(nil, &recs[i], "BTC-USD"), &e); err != nil {
			t.Fatal(err)
		}
		line := e.AppendInput(nil)
		p := codec.NewParser(codec.ParserOptions{Symbols: symbols})
		var ev codec.Event
		if err := p.ParseJSON(line, &ev); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		want := *recs[i].Event
		if ev.Kind != want.Kind || ev.Symbol != want.Symbol || ev.TsNs != want.TsNs || ev.Price != want.Price ||
			ev.Volume != want.Volume || ev.Bid != want.Bid || ev.Ask != want.Ask {
			t.Fatalf("%s parsed to %+v, want %+v", line, ev, want)
		}
	}
	var e DLQEntry
	DecodeDLQRecord(AppendDLQRecord(nil, &recs[0], ""), &e)
	if !bytes.Equal(e.AppendInput(nil), recs[0].Raw) {
		t.Fatal("a raw dead letter is not re-injected as it arrived")
	}
}

// Retention keeps at most MaxBytes of segments and counts what it drops.
func TestDLQStoreRetention(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDLQ(dir, DLQOptions{WAL: wal.Options{SegmentSize: 256 << 10}, MaxBytes: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Repeat([]byte("z"), 1000)
	for i := 0; i < 5000; i++ {
		if err := d.Write(&DeadLetterRecord{Reason: codec.ReasonMalformed, Feed: "f", Pos: codec.Position{Offset: int64(i)}, Raw: raw}); err != nil {
			t.Fatal(err)
		}
	}
	d.Sync()
	if n := len(d.w.Segments()); int64(n)*(256<<10) > 1<<20 {
		t.Fatalf("%d segments of 256 KiB kept, bound 1 MiB", n)
	}
	if d.Dropped() == 0 || d.Count() != 5000 {
		t.Fatalf("count %d dropped %d", d.Count(), d.Dropped())
	}
	d.Close()
}

func TestDecodeDLQRecordRejects(t *testing.T) {
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(t, symbols)
	good := AppendDLQRecord(nil, &recs[2], "BTC-USD")
	var e DLQEntry
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"extended":  append(append([]byte(nil), good...), 0),
		"magic":     append([]byte("XDLQ"), good[4:]...),
		"reason":    func() []byte { c := append([]byte(nil), good...); c[5] = 200; return c }(),
		"flags":     func() []byte { c := append([]byte(nil), good...); c[6] = 0x80; return c }(),
		"frame":     func() []byte { c := append([]byte(nil), good...); c[dlqHeader+20] ^= 1; return c }(),
	} {
		if err := DecodeDLQRecord(b, &e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeDLQRecord: no panic, no allocation beyond the record's own
// size, and whatever decodes re-encodes to the same bytes. Seeded with
// records of real captured messages.
func FuzzDecodeDLQRecord(f *testing.F) {
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(f, symbols)
	for i := range recs[:5] {
		f.Add(AppendDLQRecord(nil, &recs[i], "BTC-USD"))
	}
	for _, line := range realRawLines(f, 20)[3:] {
		f.Add(AppendDLQRecord(nil, &DeadLetterRecord{Reason: codec.ReasonMalformed, Feed: "coinbase", Raw: line, Pos: codec.Position{Offset: -1}}, ""))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e DLQEntry
		if err := DecodeDLQRecord(b, &e); err != nil {
			return
		}
		e.AppendJSON(nil)
		e.AppendInput(nil)
	})
}

// Against the real nats-server the integration tests use (make services).
func TestDLQNATS(t *testing.T) {
	const url = "nats://127.0.0.1:4222"
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server is not reachable at %s (%v): start it with `make services` (scripts/services.sh)", url, err)
	}
	defer nc.Close()
	subject := "qstream.test.dlq." + strings.ReplaceAll(t.Name(), "/", "_") + time.Now().Format("150405.000000000")
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(t, symbols)
	d, err := NewDLQNATS(nc, subject, symbols)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs[:5] {
		if err := d.Write(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range recs[:5] {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		want := AppendDeadLetterJSON(nil, &recs[i], symbols)
		if !bytes.Equal(msg.Data, want) {
			t.Fatalf("message %d: %s, want %s", i, msg.Data, want)
		}
		var js map[string]any
		if err := json.Unmarshal(msg.Data, &js); err != nil {
			t.Fatalf("message %d is not JSON: %v", i, err)
		}
	}
	if d.Sent() != 5 || d.Failed() != 0 {
		t.Fatalf("sent %d failed %d", d.Sent(), d.Failed())
	}
}
