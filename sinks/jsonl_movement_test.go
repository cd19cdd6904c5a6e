package sinks

import (
	"bytes"
	"encoding/json"
	"testing"

	"qstream/codec"
	"qstream/ops"
)

// A movement up and one down, through a pipeline, as JSON Lines: the exact
// lines, their channel, and no allocation per line.
func TestJSONLMovementLines(t *testing.T) {
	specs, err := ops.ParseMovements("1m:1%,30s:0.5%")
	if err != nil {
		t.Fatal(err)
	}
	syms := codec.NewSymbolTable(16)
	btc, _ := syms.InternString("BTC-USD")
	p, err := ops.NewPipeline(ops.PipelineConfig{Movements: specs, MaxSymbolID: 16})
	if err != nil {
		t.Fatal(err)
	}
	var outs []ops.Output
	// ts in ns chosen beyond float64's exact range: reference_ts must be exact.
	const t0 = 1700000000123456789
	for i, tp := range []struct {
		dt int64
		px float64
	}{{0, 100}, {30e9, 100.4}, {60e9, 101.25}, {95e9, 99.5}} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: btc, Seq: uint64(i + 1), TsNs: t0 + tp.dt, Price: tp.px, Volume: 1}
		outs, _ = p.OnEvent(&ev, 0, outs)
	}
	var buf bytes.Buffer
	w := NewJSONLWriter(&buf, JSONLConfig{Symbols: syms, Kinds: map[ops.OutKind]bool{ops.OutMovement: true}})
	if err := w.HandleOutputs(outs); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	// At 60 s: 1m vs 100 (+1.25 %), 30s vs 100.4 (+0.846...%). At 95 s:
	// 1m vs 100.4 (at 30 s): −0.896 % < 1 %, re-armed only (below 0.5 %);
	// 30s vs 101.25 (at 60 s): −1.728 %, re-armed and fired down. change_pct
	// is the float64 (p−r)/r·100, not the exact decimal.
	want := `{"movement":"1m:1%","symbol":"BTC-USD","ts":1700000060123456789,"price":101.25,"reference_price":100,"reference_ts":1700000000123456789,"change_pct":1.25,"direction":"up"}
{"movement":"30s:0.5%","symbol":"BTC-USD","ts":1700000060123456789,"price":101.25,"reference_price":100.4,"reference_ts":1700000030123456789,"change_pct":0.8466135458167273,"direction":"up"}
{"movement":"30s:0.5%","symbol":"BTC-USD","ts":1700000095123456789,"price":99.5,"reference_price":101.25,"reference_ts":1700000060123456789,"change_pct":-1.728395061728395,"direction":"down"}
`
	if buf.String() != want {
		t.Fatalf("lines:\n%s\nwant:\n%s", buf.String(), want)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil || len(m) != 8 {
			t.Fatalf("line %s: %v", line, err)
		}
	}
	if Channel(ops.OutMovement) != "movements" {
		t.Fatalf("channel %q", Channel(ops.OutMovement))
	}
	line := make([]byte, 0, 512)
	if a := testing.AllocsPerRun(200, func() {
		for i := range outs {
			line = w.AppendOutput(line[:0], &outs[i])
		}
	}); a != 0 {
		t.Fatalf("%v allocations per batch of movement lines", a)
	}
}
