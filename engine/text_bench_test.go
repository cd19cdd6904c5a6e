package engine

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"qstream/codec"
	"qstream/ops"
	"qstream/ops/news"
)

// countNews counts the news lines an engine delivers.
type countNews struct{ lines, bytes atomic.Int64 }

func (c *countNews) HandleOutputs(outs []ops.Output) error {
	for i := 0; i < len(outs); i += ops.GroupLen(&outs[i]) {
		if outs[i].Kind == ops.OutNews {
			c.lines.Add(1)
			c.bytes.Add(int64(outs[i].TextLen))
		}
	}
	return nil
}

// BenchmarkNewsThroughEngine: ~1 KiB articles published with their text
// (PublishText: 13 chunk events each) into 2 shards that both analyse
// every article (news is broadcast), the owner writing the news line
// (OutNews and its text outputs) to the collector. Reports articles/s; it
// fails unless every article gave its line.
func BenchmarkNewsThroughEngine(b *testing.B) {
	syms := codec.NewSymbolTable(64)
	for _, s := range []string{"AAPL", "MSFT", "NVDA", "TSLA"} {
		syms.InternString(s)
	}
	out := &countNews{}
	an := news.Default()
	e, err := New(Config{Shards: 2, Symbols: syms, Output: out, Processors: func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{News: an, SymbolNames: syms, MaxSymbolID: 64})
	}})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	p, _ := e.NewPublisher("bench")
	texts := make([][]byte, 64)
	for i := range texts {
		h := textHeadlines[i%len(textHeadlines)]
		var t []byte
		t = codec.AppendTextField(t, codec.TextID, fmt.Appendf(nil, "a%d", i))
		t = codec.AppendTextField(t, codec.TextHeadline, []byte(h))
		t = codec.AppendTextField(t, codec.TextSymbol, []byte([]string{"AAPL", "MSFT", "NVDA", "TSLA"}[i%4]))
		body := bytes.Repeat([]byte("Shares rose 3% after the company reported strong quarterly revenue, analysts said. "), 12)
		t = codec.AppendTextField(t, codec.TextBody, body[:1024-len(t)-3])
		texts[i] = t
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := codec.Event{Kind: codec.KindNews, Flags: codec.FlagBroadcast, Symbol: codec.Symbol(1 + i%4), TsNs: int64(i)}
		if err := p.PublishText(&ev, texts[i%len(texts)]); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()
	if err := e.Stop(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := out.lines.Load(); n != int64(b.N) {
		b.Fatalf("%d news lines for %d articles", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "articles/s")
}
