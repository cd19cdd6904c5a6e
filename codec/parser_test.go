package codec

import (
	"errors"
	"runtime"
	"testing"
)

func TestParserOptionsDefaults(t *testing.T) {
	p := NewParser(ParserOptions{})
	if p.maxSize != DefaultMaxMessageSize {
		t.Fatalf("maxSize %d, want %d", p.maxSize, DefaultMaxMessageSize)
	}
	if p.Symbols() == nil {
		t.Fatal("nil symbol table with Symbols unset")
	}
	if p := NewParser(ParserOptions{MaxMessageSize: -5}); p.maxSize != DefaultMaxMessageSize {
		t.Fatalf("maxSize %d for a negative option, want %d", p.maxSize, DefaultMaxMessageSize)
	}
}

func TestParserSymbolRejections(t *testing.T) {
	tab := NewSymbolTable(1)
	p := NewParser(ParserOptions{Symbols: tab})
	var ev Event
	msg := func(sym string) []byte {
		return []byte(`{"type":"trade","symbol":"` + sym + `","ts":1,"price":2,"volume":3}`)
	}
	if err := p.ParseJSON(msg("A"), &ev); err != nil {
		t.Fatal(err)
	}
	e := parserWantErr(t, p.ParseJSON(msg("B"), &ev), ReasonUnknownSymbol, "symbol")
	if e.Detail != "symbol table full" {
		t.Fatalf("detail %q", e.Detail)
	}
	tab.Freeze()
	e = parserWantErr(t, p.ParseJSON(msg("C"), &ev), ReasonUnknownSymbol, "symbol")
	if e.Detail != "symbol not in the configured universe" {
		t.Fatalf("detail %q", e.Detail)
	}
	parserWantErr(t, p.ParseJSON(msg(""), &ev), ReasonUnknownSymbol, "symbol")
	long := make([]byte, MaxSymbolLen+1)
	for i := range long {
		long[i] = 'X'
	}
	parserWantErr(t, p.ParseJSON(msg(string(long)), &ev), ReasonUnknownSymbol, "symbol")
	// The known symbol still parses after the rejections.
	if err := p.ParseJSON(msg("A"), &ev); err != nil || tab.Name(ev.Symbol) != "A" {
		t.Fatalf("known symbol after rejections: %v, %q", err, tab.Name(ev.Symbol))
	}
}

func TestParserErrorIsOwnedAndReused(t *testing.T) {
	p := NewParser(ParserOptions{})
	var ev Event
	e1 := p.ParseJSON([]byte(`{"type":"trade"}`), &ev)
	e2 := p.ParseJSON([]byte(`{"type":"nope"}`), &ev)
	if e1 != e2 {
		t.Fatal("parser should return its one reused *Error")
	}
	if ReasonOf(e2) != ReasonUnknownKind {
		t.Fatalf("reason %s", ReasonOf(e2))
	}
	if !errors.Is(e2, &Error{Reason: ReasonUnknownKind}) {
		t.Fatal("errors.Is by reason")
	}
}

func TestParserLargeLimit(t *testing.T) {
	// A generous limit must not make NewParser allocate it up front.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p := NewParser(ParserOptions{MaxMessageSize: 1 << 30})
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4*parserWarmMax {
		t.Fatalf("NewParser allocated %d bytes", n)
	}
	var ev Event
	if err := p.ParseJSON([]byte(`{"type":"trade","symbol":"A","ts":1,"price":1,"volume":1}`), &ev); err != nil {
		t.Fatal(err)
	}
}
