package sinks

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"qstream/codec"
	"qstream/ops"
)

// patternTestOutputs runs a few crafted trades through a pipeline with one
// pattern of each type and returns its matches and the encoder config.
func patternTestOutputs(t *testing.T) ([]ops.Output, JSONLConfig) {
	t.Helper()
	specs, err := ops.ParsePatterns([]byte(`[
		{"id":"up","type":"price_breakout","threshold":0.01,"timeframe":"1m","symbols":["AAPL"]},
		{"id":"down \"q\"","type":"price_breakout","direction":"down","threshold":0.01,"timeframe":"1m"},
		{"id":"vol","type":"volume_spike","multiplier":2,"baseline":"1m"},
		{"id":"x","type":"technical_signal","signal":"sma_cross","fast":1,"slow":2}]`))
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
	for i, tv := range [][2]float64{{100, 10}, {99, 10}, {102, 50}, {98, 10}} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: aapl, Seq: uint64(i + 1), TsNs: int64(i+1) * 1e9, Price: tv[0], Volume: tv[1]}
		outs, _ = p.OnEvent(&ev, 0, outs)
	}
	return outs, JSONLConfig{Symbols: syms, Patterns: PatternMetas(specs)}
}

func TestJSONLPatternLines(t *testing.T) {
	outs, cfg := patternTestOutputs(t)
	var buf bytes.Buffer
	w := NewJSONLWriter(&buf, cfg)
	if err := w.HandleOutputs(outs); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	// Hand-checked: at 3 s H = 100 (2 %, twice the 1 % threshold: 1), mean
	// volume 10 (ratio 5); SMA1 102 crosses SMA2 100.5 from 99 < 99.5: gaps
	// 1.5 after, 0.5 before: 0.5+0.5·1.5/2 = 0.875. At 4 s L = 99: 1.0101 %
	// (0.50505), and the cross back down with gaps 2 and 1.5.
	want := `{"pattern":"up","type":"price_breakout","symbol":"AAPL","ts":3000000000,"confidence":1,"details":{"current_price":102,"historical_high":100,"breakout_percentage":2}}
{"pattern":"vol","type":"volume_spike","symbol":"AAPL","ts":3000000000,"confidence":1,"details":{"volume":50,"baseline_mean":10,"ratio":5}}
{"pattern":"x","type":"technical_signal","symbol":"AAPL","ts":3000000000,"confidence":0.875,"details":{"signal":"sma_cross","direction":"up","fast":102,"slow":100.5,"previous_fast":99,"previous_slow":99.5}}
{"pattern":"down \"q\"","type":"price_breakout","symbol":"AAPL","ts":4000000000,"confidence":0.5050505050505051,"details":{"current_price":98,"historical_low":99,"breakdown_percentage":1.0101010101010102}}
{"pattern":"x","type":"technical_signal","symbol":"AAPL","ts":4000000000,"confidence":0.7857142857142857,"details":{"signal":"sma_cross","direction":"down","fast":98,"slow":100,"previous_fast":102,"previous_slow":100.5}}
`
	if buf.String() != want {
		t.Fatalf("lines:\n%s\nwant:\n%s", buf.String(), want)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m struct {
			Pattern    string             `json:"pattern"`
			Confidence float64            `json:"confidence"`
			Details    map[string]any     `json:"details"`
			Extra      map[string]float64 `json:"-"`
		}
		if err := json.Unmarshal(line, &m); err != nil || m.Pattern == "" || len(m.Details) < 3 || m.Confidence < 0 || m.Confidence > 1 {
			t.Fatalf("line %s: %v %+v", line, err, m)
		}
	}
}

func TestJSONLPatternLineAllocs(t *testing.T) {
	outs, cfg := patternTestOutputs(t)
	w := NewJSONLWriter(&bytes.Buffer{}, cfg)
	buf := make([]byte, 0, 1024)
	if a := testing.AllocsPerRun(200, func() {
		for i := range outs {
			buf = w.AppendOutput(buf[:0], &outs[i])
		}
	}); a != 0 {
		t.Fatalf("%v allocations per batch of matches", a)
	}
	// A ratio of +Inf (a zero baseline) is null, not an invalid number.
	o := outs[1]
	if o.Op != 2 {
		t.Fatalf("output 1 is pattern %d, want the volume spike", o.Op)
	}
	o.Values[2] = math.Inf(1)
	if line := w.AppendOutput(nil, &o); !bytes.Contains(line, []byte(`"ratio":null`)) || !json.Valid(line) {
		t.Fatalf("line %s", line)
	}
}
