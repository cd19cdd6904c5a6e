package codec

import (
	"encoding/json"
	"testing"
	"time"
)

// jsonStdTick is what encoding/json needs to decode the same compact tick:
// the baseline of BenchmarkParseTick (DESIGN.md budget: >= 4x faster).
type jsonStdTick struct {
	Type   string  `json:"type"`
	Symbol string  `json:"symbol"`
	Ts     int64   `json:"ts"`
	Price  float64 `json:"price"`
	Volume float64 `json:"volume"`
	Bid    float64 `json:"bid"`
	Ask    float64 `json:"ask"`
	Status string  `json:"status"`
	ID     string  `json:"id"`
}

// BenchmarkParseTick parses the compact tick of DESIGN.md with a warm symbol
// cache. Budget: 0 allocs/op and >= 4x BenchmarkParseTickStdlib.
func BenchmarkParseTick(b *testing.B) {
	p := NewParser(ParserOptions{})
	msg := []byte(jsonTick)
	var ev Event
	if err := p.ParseJSON(msg, &ev); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ParseJSON(msg, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseTickStdlib is the baseline: encoding/json into a plain
// struct (no validation, no interning), same message, same run.
func BenchmarkParseTickStdlib(b *testing.B) {
	msg := []byte(jsonTick)
	var tk jsonStdTick
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := json.Unmarshal(msg, &tk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseStreamMessage parses a StreamMessage with a MarketData payload.
func BenchmarkParseStreamMessage(b *testing.B) {
	p := NewParser(ParserOptions{})
	msg := []byte(jsonStreamMD)
	var ev Event
	if err := p.ParseJSON(msg, &ev); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ParseJSON(msg, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseTickVsStdlib interleaves ParseJSON and encoding/json in
// chunks of 64 messages, so that load from other processes on a shared
// machine hits both alike, and reports the speed-up as x_stdlib (budget:
// >= 4). One op is one chunk of each.
func BenchmarkParseTickVsStdlib(b *testing.B) {
	const chunk = 64
	p := NewParser(ParserOptions{})
	msg := []byte(jsonTick)
	var ev Event
	var tk jsonStdTick
	if err := p.ParseJSON(msg, &ev); err != nil {
		b.Fatal(err)
	}
	var ours, std time.Duration
	for b.Loop() {
		t0 := time.Now()
		for range chunk {
			_ = p.ParseJSON(msg, &ev)
		}
		t1 := time.Now()
		for range chunk {
			_ = json.Unmarshal(msg, &tk)
		}
		ours += t1.Sub(t0)
		std += time.Since(t1)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N*chunk), "ns/tick")
	b.ReportMetric(float64(std.Nanoseconds())/float64(b.N*chunk), "ns/stdlib")
	b.ReportMetric(float64(std)/float64(ours), "x_stdlib")
}
