package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func textFields(t *testing.T, text []byte) map[byte][]string {
	t.Helper()
	m := map[byte][]string{}
	if err := TextFields(text, func(tag byte, val []byte) { m[tag] = append(m[tag], string(val)) }); err != nil {
		t.Fatalf("TextFields: %v", err)
	}
	return m
}

func TestTextOfStreamMessages(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      map[byte][]string
	}{
		{"compact news", `{"type":"news","id":"n1","ts":1,"source":"wire","headline":"Apple beats","body":"Shares rose.","symbols":["AAPL","MSFT"]}`,
			map[byte][]string{TextID: {"n1"}, TextSource: {"wire"}, TextHeadline: {"Apple beats"}, TextBody: {"Shares rose."}, TextSymbol: {"AAPL", "MSFT"}}},
		{"news data", `{"message_id":"m1","stream_id":"s9","message_type":"news","timestamp":"2024-01-02T14:30:00Z","source":"env","payload":{"NewsData":{"headline":"H","content":"C","symbols":["AAPL"],"sentiment":0.5}},"metadata":{"desk":"eq","n":[1,2]}}`,
			map[byte][]string{TextID: {"m1"}, TextMessageID: {"m1"}, TextStreamID: {"s9"}, TextMessageType: {"news"}, TextSource: {"env"}, TextHeadline: {"H"}, TextBody: {"C"}, TextSymbol: {"AAPL"},
				TextMetadata: {`{"desk":"eq","n":[1,2]}`}, TextSentiment: {"\x00\x00\x00\x00\x00\x00\xe0?"}}},
		{"signal", `{"message_id":"m2","stream_id":"s1","message_type":"signal","timestamp":"2024-01-02T14:30:00Z","payload":{"TradingSignal":{"symbol":"AAPL","signal_type":"Buy","strength":0.8}},"metadata":{"model":"m\u00e9"}}`,
			map[byte][]string{TextMessageID: {"m2"}, TextStreamID: {"s1"}, TextMessageType: {"signal"}, TextMetadata: {`{"model":"m\u00e9"}`},
				TextPayload: {`{"symbol":"AAPL","signal_type":"Buy","strength":0.8}`}}},
		{"custom any value", `{"message_id":"m3","timestamp":"2024-01-02T14:30:00Z","payload":{"CustomEvent":[1,"two",null]}}`,
			map[byte][]string{TextMessageID: {"m3"}, TextPayload: {`[1,"two",null]`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, p, err := jsonParse(t, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := textFields(t, p.Text())
			if len(got) != len(tc.want) {
				t.Fatalf("fields %q, want %q", got, tc.want)
			}
			for tag, w := range tc.want {
				if strings.Join(got[tag], "|") != strings.Join(w, "|") {
					t.Errorf("tag %d: %q, want %q", tag, got[tag], w)
				}
			}
			if int(ev.TextLen) != len(p.Text()) {
				t.Errorf("TextLen %d, text %d", ev.TextLen, len(p.Text()))
			}
		})
	}
	// Market data carries no text, and a parse clears the previous one.
	p := NewParser(ParserOptions{})
	var ev Event
	if err := p.ParseJSON([]byte(`{"type":"news","id":"n1","ts":1,"headline":"x"}`), &ev); err != nil || p.Text() == nil {
		t.Fatalf("news: %v %q", err, p.Text())
	}
	if err := p.ParseJSON([]byte(`{"type":"trade","symbol":"A","ts":1,"price":1,"volume":1}`), &ev); err != nil || p.Text() != nil || ev.TextLen != 0 {
		t.Fatalf("trade after news: %v %q %d", err, p.Text(), ev.TextLen)
	}
}

func TestTextBadInput(t *testing.T) {
	// Metadata that is not valid UTF-8 would make an output line invalid JSON.
	_, _, err := jsonParse(t, "{\"message_id\":\"m\",\"timestamp\":1,\"payload\":{\"SystemEvent\":{\"event_type\":\"halt\"}},\"metadata\":{\"k\":\"\xff\"}}")
	var ce *Error
	if !errors.As(err, &ce) || ce.Reason != ReasonMalformed || ce.Field != "metadata" {
		t.Fatalf("invalid UTF-8 metadata: %v", err)
	}
	// A body that would make the text longer than MaxText is cut on a rune
	// boundary and marked.
	p := NewParser(ParserOptions{MaxMessageSize: 4 * MaxText})
	body := strings.Repeat("é", MaxText/2+10)
	var ev Event
	if err := p.ParseJSON([]byte(`{"type":"news","id":"n","ts":1,"headline":"h","body":"`+body+`"}`), &ev); err != nil {
		t.Fatal(err)
	}
	if len(p.Text()) > MaxText {
		t.Fatalf("text %d bytes > MaxText", len(p.Text()))
	}
	f := textFields(t, p.Text())
	if _, ok := f[TextTruncated]; !ok || len(f[TextBody]) != 1 || !strings.HasPrefix(body, f[TextBody][0]) || len(f[TextBody][0])%2 != 0 {
		t.Fatalf("truncation: marked %v, body %d bytes", ok, len(f[TextBody][0]))
	}
	if TextFields([]byte{TextID, 5, 0, 'a'}, func(byte, []byte) {}) == nil {
		t.Fatal("a short field was accepted")
	}
}

func TestTextChunksRoundTrip(t *testing.T) {
	text := []byte(strings.Repeat("0123456789", 25)) // 250 bytes: 4 chunks
	head := Event{Kind: KindNews, TsNs: 5, Seq: 9, Symbol: 3, Source: 2, Flags: FlagBroadcast | FlagBuy, TextLen: uint32(len(text)), IDHash: 77}
	if TextChunks(len(text)) != 4 || TextChunks(0) != 0 || TextChunks(80) != 1 {
		t.Fatal("TextChunks")
	}
	var got []byte
	for off := 0; off < len(text); {
		var c Event
		off += SetTextChunk(&c, &head, text, off)
		if c.Kind != KindText || c.Seq != 9 || c.Symbol != 3 || c.Source != 2 || c.IDHash != 0 || c.Flags != FlagBroadcast || c.TsNs != 5 {
			t.Fatalf("chunk %+v", c)
		}
		// Chunks survive a frame round trip bit for bit.
		var d Event
		if _, err := DecodeFrame(AppendFrame(nil, &c), &d); err != nil || d != c {
			t.Fatalf("frame: %v", err)
		}
		got = append(got, TextChunk(&d)...)
	}
	if !bytes.Equal(got[:len(text)], text) {
		t.Fatal("chunks do not carry the text")
	}
}

func TestTextParseAllocs(t *testing.T) {
	p := NewParser(ParserOptions{})
	msg := []byte(`{"message_id":"m1","stream_id":"s9","timestamp":"2024-01-02T14:30:00Z","payload":{"NewsData":{"headline":"Apple beats","content":"Shares rose on strong iPhone sales.","symbols":["AAPL"]}},"metadata":{"desk":"eq"}}`)
	var ev Event
	if err := p.ParseJSON(msg, &ev); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := p.ParseJSON(msg, &ev); err != nil || p.Text() == nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocs per news message", n)
	}
}
