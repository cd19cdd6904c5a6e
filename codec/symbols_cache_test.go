package codec

import (
	"errors"
	"fmt"
	"testing"
)

// TestSymbolCacheTable: the cache's own hash table gives the table's ids for
// many names (through several growths), the same ids again, and known names
// without allocating.
func TestSymbolCacheTable(t *testing.T) {
	tab := NewSymbolTable(1 << 16)
	c := NewSymbolCache(tab)
	names := make([][]byte, 5000)
	for i := range names {
		// 2 to 64 bytes: tails of every length after whole words.
		names[i] = fmt.Appendf(nil, "S%d%s", i, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[:i%(MaxSymbolLen-4)])
	}
	for round := range 2 {
		for i, n := range names {
			id, err := c.Intern(n)
			if err != nil {
				t.Fatalf("round %d, %q: %v", round, n, err)
			}
			if want, ok := tab.Lookup(n); !ok || id != want || int(id) != i+1 {
				t.Fatalf("round %d, %q: id %d, table %d %v, want %d", round, n, id, want, ok, i+1)
			}
		}
	}
	if allocs := testing.AllocsPerRun(100, func() {
		for _, n := range names[:64] {
			if _, err := c.Intern(n); err != nil {
				t.Fatal(err)
			}
		}
	}); allocs != 0 {
		t.Fatalf("%v allocations per lookup of known names", allocs)
	}
	if _, err := c.Intern([]byte("bad\x01")); !errors.Is(err, ErrInvalidSymbol) {
		t.Fatalf("invalid name: %v", err)
	}
	if _, err := c.Intern(nil); !errors.Is(err, ErrUnknownSymbol) {
		t.Fatalf("empty name: %v", err)
	}
}

// TestLookupSymbolCache: a lookup-only cache never adds names; it finds
// what the table holds, including names added after it missed them.
func TestLookupSymbolCache(t *testing.T) {
	tab := NewSymbolTable(4)
	if _, err := tab.InternString("A"); err != nil {
		t.Fatal(err)
	}
	c := NewLookupSymbolCache(tab)
	if id, err := c.Intern([]byte("A")); err != nil || id != 1 {
		t.Fatalf("A: %d %v", id, err)
	}
	if _, err := c.Intern([]byte("B")); err != ErrSymbolNotInterned {
		t.Fatalf("B before it is interned: %v", err)
	}
	if tab.Len() != 1 {
		t.Fatalf("the table holds %d names", tab.Len())
	}
	if _, err := c.Intern([]byte("bad\x01")); !errors.Is(err, ErrInvalidSymbol) {
		t.Fatalf("invalid name: %v", err)
	}
	if _, err := tab.InternString("B"); err != nil {
		t.Fatal(err)
	}
	if id, err := c.Intern([]byte("B")); err != nil || id != 2 {
		t.Fatalf("B after it is interned: %d %v", id, err)
	}
	tab.Freeze()
	if _, err := c.Intern([]byte("C")); err != ErrSymbolNotInterned {
		t.Fatalf("C on a frozen table: %v", err)
	}

	// A lookup-only parser hands the message back rather than rejecting it.
	p := NewParser(ParserOptions{Symbols: tab, LookupOnly: true})
	var ev Event
	if err := p.ParseJSON([]byte(`{"type":"trade","symbol":"D","ts":1,"price":1,"volume":1}`), &ev); err != ErrSymbolNotInterned {
		t.Fatalf("trade of a new symbol: %v", err)
	}
	if err := p.ParseJSON([]byte(`{"type":"news","id":"n","ts":1,"headline":"h","symbols":["A","E"]}`), &ev); err != ErrSymbolNotInterned {
		t.Fatalf("news naming a new symbol: %v", err)
	}
	if err := p.ParseJSON([]byte(`{"type":"trade","symbol":"B","ts":1,"price":-1,"volume":1}`), &ev); ReasonOf(err) != ReasonBadPrice {
		t.Fatalf("bad price of a known symbol: %v", err)
	}
	if err := p.ParseJSON([]byte(`{"type":"trade","symbol":"B","ts":1,"price":2,"volume":1}`), &ev); err != nil || ev.Symbol != 2 {
		t.Fatalf("trade of a known symbol: %v %+v", err, ev)
	}
}
