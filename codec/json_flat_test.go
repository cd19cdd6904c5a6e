package codec

import (
	"bytes"
	"fmt"
	"math"
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
		`{"type":"x"}`, `{"type":1}`, `{"ts":1}`, `{"ts":1,"ts":2}`, `{"type":"trade","ts":1,"ts\"":2}`,
		`{"type":"trade","typ\u0065":"quote","symbol":"AAPL","ts":1,"price":2,"volume":3}`,
		`{"message_id":"m","timestamp":1,"payload":{"MarketData":{"symbol":"A","price":1,"volume":1}}}`,
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

// TestScanNumberOracle: what jsonScanNumber reads on the way is bit for bit
// what ParseDecimal and ParseTimestamp return for the token, and the token
// ends where fastjson's does.
func TestScanNumberOracle(t *testing.T) {
	tokens := []string{
		"0", "-0", "5", "5.", "-5.", "0.5", "-.5", "00012", "189.23", "-189.23", "1e5", "1.5e-3", "1-2", "1.2.3", "--1",
		"1700000000123456789", "9223372036854775807", "9223372036854775808", "18446744073709551615", "99999999999999999999",
		"12345678.12345678901", "1234567890123456789", "0.0000000000000000000001", "0.00000000000000000000001",
		"9007199254740993", "9007199254740992", "-9007199254740993.5", "123456789012345678.9", "1.7976931348623157",
	}
	for i := range 2000 {
		tokens = append(tokens, fmt.Sprintf("%d", uint64(i)*0x9E3779B97F4A7C15>>uint(i%64)), fmt.Sprintf("%.*f", i%12, float64(i)*1.37-500))
	}
	floats, ints := 0, 0
	for _, tok := range tokens {
		for _, tail := range []string{"", ",", "}", " ", `,"volume":12345}`, `}` + "\n", "\"\x80\xff0123456789"} {
			msg := []byte(tok + tail)
			end, n := jsonScanNumber(msg, 0)
			if end != len(tok) {
				t.Fatalf("%q: token ends at %d, want %d", msg, end, len(tok))
			}
			if n.kind&jsonNumFloat != 0 {
				x, err := ParseDecimal([]byte(tok))
				if err != nil || math.Float64bits(x) != math.Float64bits(n.f) {
					t.Fatalf("%q: read %v, ParseDecimal %v %v", tok, n.f, x, err)
				}
				floats++
			}
			if n.kind&jsonNumInt != 0 {
				x, err := ParseTimestamp([]byte(tok))
				if err != nil || x != n.i {
					t.Fatalf("%q: read %v, ParseTimestamp %v %v", tok, n.i, x, err)
				}
				ints++
			}
		}
	}
	if floats < 4000 || ints < 1000 {
		t.Fatalf("only %d floats and %d integers read on the way", floats, ints)
	}
}

// TestFlatValueOracle: the eight-bytes-at-a-time string scan agrees with the
// byte loop for every position of the closing quote or a backslash, and
// bytes at or above 0x80 around them.
func TestFlatValueOracle(t *testing.T) {
	for n := range 40 {
		for _, end := range []string{`"`, `\"`, `\\`, ``} {
			for _, fill := range []byte{'a', 0x80, 0xff, 0x21, 0x5b} {
				for _, tail := range []string{"", `,"x":1}`, `"`} {
					msg := []byte("\"" + string(bytes.Repeat([]byte{fill}, n)) + end + tail)
					s1, n1, ok1 := jsonFlatValue(msg, 1)
					s2, n2, ok2 := jsonFlatString(msg, 1)
					if string(s1) != string(s2) || n1 != n2 || ok1 != ok2 {
						t.Fatalf("%q: SWAR %q %d %v, bytes %q %d %v", msg, s1, n1, ok1, s2, n2, ok2)
					}
				}
			}
		}
	}
}
