package sinks

import (
	"math"
	"testing"

	"qstream/feeds"
)

// The sender reads exactly what the TCP feed writes.
func TestParseTCPAckMatchesFeed(t *testing.T) {
	for _, n := range []uint64{0, 1, 42, 89_643, math.MaxUint64} {
		line := feeds.AppendTCPAck(nil, feeds.TCPLines, n)
		if got, ok := parseTCPAck(line); !ok || got != n {
			t.Fatalf("parseTCPAck(%q) = %d, %v; want %d", line, got, ok, n)
		}
	}
	for _, bad := range []string{"", "\n", `{"ack":}` + "\n", `{"ack":-1}` + "\n", `{"ack":1x}` + "\n", `{"error":"x"}` + "\n",
		`{"ack":18446744073709551616}` + "\n", `{"ack":1} ` + "\n"} {
		if n, ok := parseTCPAck([]byte(bad)); ok {
			t.Fatalf("parseTCPAck(%q) = %d, accepted", bad, n)
		}
	}
	if n, ok := parseTCPAck([]byte("{\"ack\":7}\r\n")); !ok || n != 7 {
		t.Fatalf("CRLF ack: %d %v", n, ok)
	}
}
