package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/sinks"
)

// Two streams on the same shards: the first computes a 2-trade SMA, the
// second, started at run time from a declarative definition, a VWAP per
// 1 s tumbling window. Each has its own publisher and output.
func ExampleEngine_StartStream() {
	symbols := codec.NewSymbolTable(16)
	var ticks, bars []string
	factory := func(cfg engine.StreamConfig) (engine.StreamParts, error) {
		var def struct{ Windows string }
		if err := json.Unmarshal(cfg.Spec, &def); err != nil {
			return engine.StreamParts{}, err
		}
		wins, err := ops.ParseWindowSpecs(def.Windows)
		if err != nil {
			return engine.StreamParts{}, err
		}
		return engine.StreamParts{
			Processors: func(int) (engine.Processor, error) {
				return ops.NewPipeline(ops.PipelineConfig{Windows: wins, SymbolNames: symbols, MaxSymbolID: 16})
			},
			Output: &collectLines{cfg: sinks.JSONLConfig{Symbols: symbols, Windows: []sinks.WindowMeta{{Name: wins[0].String()}}}, lines: &bars},
		}, nil
	}
	specs, _ := ops.ParseIndicators("sma:2")
	e, err := engine.New(engine.Config{
		Shards:     2,
		Symbols:    symbols,
		StreamName: "ticks",
		Output:     &collectLines{cfg: sinks.JSONLConfig{Symbols: symbols, Indicators: []string{"sma_2"}}, lines: &ticks},
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, SymbolNames: symbols, MaxSymbolID: 16})
		},
		StreamFactory: factory,
	})
	if err != nil {
		panic(err)
	}
	if err := e.Start(); err != nil {
		panic(err)
	}
	if _, err := e.StartStream(engine.StreamConfig{ID: "bars", Spec: json.RawMessage(`{"Windows":"tumbling:1s:vwap"}`)}); err != nil {
		panic(err)
	}
	aapl, _ := symbols.InternString("AAPL")
	pt, _ := e.NewPublisher("feed")
	pb, _ := e.NewStreamPublisher("bars", "feed")
	for i, price := range []float64{100, 102, 104} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: aapl, TsNs: int64(i) * 4e8, Price: price, Volume: float64(i + 1)}
		evb := ev
		if err := pt.Publish(&ev); err != nil {
			panic(err)
		}
		if err := pb.Publish(&evb); err != nil {
			panic(err)
		}
	}
	pt.Close()
	pb.Close()
	if err := e.Stop(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(strings.Join(ticks, "\n"))
	fmt.Println(strings.Join(bars, "\n"))
	for _, s := range e.Streams() {
		fmt.Println(s.ID, s.Dynamic)
	}
	// Output:
	// {"seq":1,"symbol":"AAPL","ts":0,"price":100,"volume":1,"sma_2":null}
	// {"seq":2,"symbol":"AAPL","ts":400000000,"price":102,"volume":2,"sma_2":101}
	// {"seq":3,"symbol":"AAPL","ts":800000000,"price":104,"volume":3,"sma_2":103}
	// {"window":"tumbling:1s:vwap","symbol":"AAPL","start":0,"end":1000000000,"count":3,"value":102.66666666666667,"timing":"on_time"}
	// ticks false
	// bars true
}
