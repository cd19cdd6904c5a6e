package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qstream/codec"
	"qstream/sinks"
)

func TestDLQCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dlq")
	symbols := codec.NewSymbolTable(8)
	sym, _ := symbols.InternString("AAPL")
	store, err := sinks.OpenDLQ(dir, sinks.DLQOptions{}, symbols)
	if err != nil {
		t.Fatal(err)
	}
	late := codec.Event{Kind: codec.KindTrade, Symbol: sym, Seq: 9, TsNs: 1700000000000000000, Price: 189.5, Volume: 10, Status: codec.StatusOpen}
	recs := []sinks.DeadLetterRecord{
		{Reason: codec.ReasonBadPrice, Feed: "tcp", Pos: codec.Position{Line: 3, Offset: 77}, Err: errors.New("codec: bad_price: field \"price\""),
			Raw: []byte(`{"type":"trade","symbol":"AAPL","ts":1,"price":-1,"volume":1}`)},
		{Reason: codec.ReasonLate, Feed: "synthetic", Pos: codec.Position{Offset: -1}, Event: &late},
		{Reason: codec.ReasonLate, Feed: "synthetic", Pos: codec.Position{Offset: -1}, Event: &late}, // a replay rejects it again
	}
	for i := range recs {
		if err := store.Write(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()

	out, stderr, rc := qstream(t, "dlq", "list", "--dir", dir)
	if rc != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "bad_price") || !strings.Contains(out, "line 3") ||
		!strings.Contains(stderr, "3 dead letters, bad_price 1, late 2") {
		t.Fatalf("list: exit %d\n%s\n%s", rc, out, stderr)
	}
	out, _, rc = qstream(t, "dlq", "list", "--dir", dir, "--reason", "late")
	if rc != 0 || strings.Count(out, "\n") != 3 || strings.Contains(out, "bad_price") {
		t.Fatalf("list --reason late:\n%s", out)
	}
	out, _, rc = qstream(t, "dlq", "show", "--dir", dir, "2")
	var shown map[string]any
	if rc != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["reason"] != "late" || shown["event"].(map[string]any)["symbol"] != "AAPL" {
		t.Fatalf("show 2: exit %d\n%s", rc, out)
	}
	path := filepath.Join(t.TempDir(), "reinject.jsonl")
	_, stderr, rc = qstream(t, "dlq", "replay", "--dir", dir, "--output", path)
	if rc != 0 || !strings.Contains(stderr, "re-injected 2, 1 repeated keys skipped") {
		t.Fatalf("replay: exit %d\n%s", rc, stderr)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != string(recs[0].Raw) {
		t.Fatalf("re-injected lines:\n%s", b)
	}
	// The rebuilt tick parses back to the rejected event.
	p := codec.NewParser(codec.ParserOptions{Symbols: symbols})
	var ev codec.Event
	if err := p.ParseJSON([]byte(lines[1]), &ev); err != nil || ev.Price != late.Price || ev.TsNs != late.TsNs || ev.Symbol != sym {
		t.Fatalf("%s parsed to %+v (%v)", lines[1], ev, err)
	}
	if _, _, rc := qstream(t, "dlq", "list", "--dir", dir, "--reason", "nonsense"); rc != 2 {
		t.Fatalf("unknown reason: exit %d", rc)
	}
}
