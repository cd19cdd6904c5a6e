package engine_test

import (
	"context"
	"fmt"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
)

// A breakout pattern registered at run time, its matches read back on
// demand, and the engine's pattern list.
func ExampleEngine_RegisterPattern() {
	symbols := codec.NewSymbolTable(16)
	e, err := engine.New(engine.Config{
		Shards:  1,
		Symbols: symbols,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{SymbolNames: symbols, MaxSymbolID: 16})
		},
	})
	if err != nil {
		panic(err)
	}
	if err := e.Start(); err != nil {
		panic(err)
	}
	specs, err := ops.ParsePatterns([]byte(`[{"id":"btc_up","type":"price_breakout","threshold":0.02,"timeframe":"5m","symbols":["BTCUSDT"]}]`))
	if err != nil {
		panic(err)
	}
	id, err := e.RegisterPattern(specs[0])
	if err != nil {
		panic(err)
	}
	btc, _ := symbols.InternString("BTCUSDT")
	pub, _ := e.NewPublisher("example")
	for i, px := range []float64{100, 101, 100.5, 104, 103} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: btc, TsNs: int64(i) * int64(time.Minute), Price: px, Volume: 1}
		if err := pub.Publish(&ev); err != nil {
			panic(err)
		}
	}
	pub.Close()
	if err := e.Stop(context.Background()); err != nil {
		panic(err)
	}

	matches, err := e.DetectPatternMatches(id)
	if err != nil {
		panic(err)
	}
	for _, m := range matches {
		fmt.Printf("%s at %v, confidence %.2f:", m.Symbol, time.Duration(m.TsNs), m.Confidence)
		for _, d := range m.Details {
			fmt.Printf(" %s=%.2f", d.Name, d.Value)
		}
		fmt.Println()
	}
	for _, p := range e.ListPatterns() {
		fmt.Printf("pattern %d %q active=%v matches=%d\n", p.ID, p.Spec.ID, p.Active, p.Matches)
	}
	// Output:
	// BTCUSDT at 3m0s, confidence 0.74: current_price=104.00 historical_high=101.00 breakout_percentage=2.97
	// pattern 0 "btc_up" active=true matches=1
}
