package codec

import (
	"fmt"
	"testing"
)

// TestScanFlatKeyOrder: the key order scanFlat remembers from one message
// is only a guess; messages whose keys differ from the previous message's
// (other order, a longer key with the same start, an escape, unknown keys,
// more than it remembers) parse as they do on a fresh parser.
func TestScanFlatKeyOrder(t *testing.T) {
	msgs := []string{
		jsonTick,
		`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3}`,
		`{"symbol":"AAPL","type":"trade","ts":1,"price":2,"volume":3}`,
		`{"type":"trade","symbolx":"AAPL","symbol":"MSFT","ts":1,"price":2,"volume":3}`,
		`{"type":"trade","symbo":"AAPL","symbol":"MSFT","ts":1,"price":2,"volume":3}`,
		`{"type":"trade","sym\u0062ol":"AAPL","ts":1,"price":2,"volume":3}`,
		`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"price":4}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"type":"trade","symbol":"X","ts":1,"price":2,"volume":3}`,
		`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"x":"","y":""}`,
		`{"type":"trade","symbol":"AAPL","ts":1,"price":2}`,
		`{"type" : "trade" , "symbol":"AAPL","ts":1,"price":2,"volume":3}`,
		`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"id":"t","status":"open"}`,
		`{"type":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3,"id":"t","status":"open`,
		`{"typ":"trade","symbol":"AAPL","ts":1,"price":2,"volume":3}`,
	}
	describe := func(p *Parser, msg string) string {
		var ev Event
		err := p.ParseJSON([]byte(msg), &ev)
		return fmt.Sprintf("%+v %v", ev, err)
	}
	tab := NewSymbolTable(0)
	reused := NewParser(ParserOptions{Symbols: tab})
	for round := range 3 {
		for i, m := range msgs {
			want := describe(NewParser(ParserOptions{Symbols: tab}), m)
			if got := describe(reused, m); got != want {
				t.Fatalf("round %d, message %d %s:\n got %s\nwant %s", round, i, m, got, want)
			}
		}
	}
}
