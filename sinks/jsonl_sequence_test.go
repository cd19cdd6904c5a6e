package sinks

import (
	"bytes"
	"testing"

	"qstream/codec"
	"qstream/ops"
)

// Sequence matches write their event times as exact integers (ns) and the
// absence's deadline. Confidence: 1 − 0.5·2.000000002 s/5 s.
func TestJSONLPatternSequenceLines(t *testing.T) {
	specs, err := ops.ParsePatterns([]byte(`[
		{"id":"fb","type":"sequence","within":"5s","steps":[{"name":"a","where":["price < 100"]},{"name":"b","where":["price > 101"]}]},
		{"id":"abs","type":"sequence","within":"1s","steps":[{"where":["price > 101"]},{"absent":true,"where":["price < 100"]}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	syms := codec.NewSymbolTable(16)
	aapl, _ := syms.InternString("AAPL")
	p, err := ops.NewPipeline(ops.PipelineConfig{Patterns: specs, SymbolNames: syms, MaxSymbolID: 16})
	if err != nil {
		t.Fatal(err)
	}
	var outs []ops.Output
	for i, ev := range []codec.Event{
		{TsNs: 1700000000123456789, Price: 99.5}, {TsNs: 1700000002123456791, Price: 101.25},
	} {
		ev.Kind, ev.Symbol, ev.Seq, ev.Volume = codec.KindTrade, aapl, uint64(i+1), 1
		outs, _ = p.OnEvent(&ev, 0, outs)
	}
	outs = p.OnWatermark(1<<62, 3, outs)
	var buf bytes.Buffer
	w := NewJSONLWriter(&buf, JSONLConfig{Symbols: syms, Patterns: PatternMetas(specs)})
	if err := w.HandleOutputs(outs); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	want := `{"pattern":"fb","type":"sequence","symbol":"AAPL","ts":1700000002123456791,"confidence":0.7999999998,"details":{"a_ts":1700000000123456789,"a_price":99.5,"b_ts":1700000002123456791,"b_price":101.25}}
{"pattern":"abs","type":"sequence","symbol":"AAPL","ts":1700000003123456791,"confidence":1,"details":{"s1_ts":1700000002123456791,"s1_price":101.25,"deadline":1700000003123456791}}
`
	if buf.String() != want {
		t.Fatalf("lines:\n%s\nwant:\n%s", buf.String(), want)
	}
}
