package sinks

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"unicode/utf8"

	"qstream/codec"
	"qstream/ops"
)

// jsonStringCases hold what a writer may be handed from outside the parsers
// (an old WAL, a flag, an error text): invalid UTF-8 of every kind, control
// characters, quotes, and valid multi-byte text that must pass unchanged.
var jsonStringCases = []string{
	"AAPL",
	"",
	"A\xffB",
	"\xc3",
	"\xed\xa0\x80",
	"\xc0\xaf",
	"\xf4\x90\x80\x80", // beyond U+10FFFF
	"A\x00B\x1f\x7f",
	"tab\there\nnew\rline",
	`quote " and \ backslash`,
	"Ä-EUR 株式 😀",
	"\u2028\u2029",
	"\x80\x80\x80abc\xe2\x82",
}

// checkJSONString asserts that AppendString(s) is valid UTF-8 JSON that
// decodes to what encoding/json makes of s (each invalid byte becomes
// U+FFFD): the oracle.
func checkJSONString(t *testing.T, s string) {
	t.Helper()
	got := AppendString(nil, s)
	if !utf8.Valid(got) || !json.Valid(got) {
		t.Fatalf("AppendString(%q) = %q: not valid UTF-8 JSON", s, got)
	}
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("AppendString(%q) = %q: %v", s, got, err)
	}
	ref, _ := json.Marshal(s)
	var want string
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	if back != want {
		t.Fatalf("AppendString(%q) decodes to %q, encoding/json's to %q", s, back, want)
	}
	if utf8.ValidString(s) && back != s {
		t.Fatalf("valid text %q changed to %q", s, back)
	}
}

func TestAppendStringAlwaysValid(t *testing.T) {
	for _, s := range jsonStringCases {
		checkJSONString(t, s)
	}
	// Plain ASCII is copied as it is; control characters become \u00XX.
	if got := string(AppendString(nil, "A\x01\x7f\"")); got != `"A\u0001\u007f\""` {
		t.Fatalf("got %s", got)
	}
	if got := string(AppendString(nil, "A\xffB")); got != `"A\ufffdB"` {
		t.Fatalf("got %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range jsonStringCases {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func TestAppendStringAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendString(buf[:0], "A\xffB\x01 株式")
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// Every JSON line the product writes stays valid UTF-8 JSON when a symbol
// name, a feed name, an error text or a window name holds invalid bytes or
// control characters: output lines, dead-letter lines, `dlq show`.
func TestWritersEscapeInvalidText(t *testing.T) {
	const bad = "B\xffAD\x01\n"
	symbols := codec.NewSymbolTable(8)
	sym, err := symbols.InternString(bad) // the table takes any bytes (an old WAL)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(what string, b []byte) {
		t.Helper()
		if !utf8.Valid(b) || !json.Valid(b) {
			t.Fatalf("%s: not valid UTF-8 JSON: %q", what, b)
		}
	}
	w := NewJSONLWriter(nil, JSONLConfig{Symbols: symbols, Indicators: []string{"sma_5", "odd\xff"},
		Windows: []WindowMeta{{Name: "tumbling:1s:vwap" + bad}}})
	vals := [ops.MaxValues]float64{1, math.NaN()}
	for _, o := range []ops.Output{
		{Kind: ops.OutIndicators, Symbol: sym, Seq: 1, TsNs: 2, Price: 3, Volume: 4, NValues: 2, Values: vals},
		{Kind: ops.OutWindow, Symbol: sym, Op: 0, StartNs: 1, EndNs: 2, Count: 3, Value: 4},
		{Kind: ops.OutPattern, Symbol: sym, Seq: 5},
	} {
		valid("output", w.AppendOutput(nil, &o))
	}
	ev := codec.Event{Kind: codec.KindTrade, Symbol: sym, Price: 1, Volume: 2}
	out := ops.Output{Kind: ops.OutIndicators, Symbol: sym}
	rec := DeadLetterRecord{Reason: codec.ReasonMalformed, Feed: "feed" + bad, Err: errors.New("codec: " + bad),
		Raw: []byte("{\"symbol\":\"" + bad + "\"}"), Event: &ev, Output: &out}
	valid("dead letter", AppendDeadLetterJSON(nil, &rec, symbols))
	rec.Raw = []byte("ctl\x01\x7f only")
	valid("dead letter with control characters", AppendDeadLetterJSON(nil, &rec, symbols))
	e := DLQEntry{Reason: codec.ReasonLate, Feed: bad, Symbol: bad, Err: bad, Raw: []byte(bad), HasEvent: true, Event: ev, HasOutput: true}
	valid("dlq show", e.AppendJSON(nil))
	e.Raw = nil // an operator-time rejection: the tick is rebuilt as JSON
	valid("dlq re-injected tick", e.AppendInput(nil))
}
