package engine_test

import (
	"context"
	"fmt"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/sinks"
)

// A filter and a transform set on the stream at run time: only AAPL trades
// reach the indicators, with prices converted from cents.
func ExampleEngine_FilterStream() {
	symbols := codec.NewSymbolTable(16)
	specs, _ := ops.ParseIndicators("sma:2")
	var lines []string
	out := &collectLines{cfg: sinks.JSONLConfig{Symbols: symbols, Indicators: []string{"sma_2"}}, lines: &lines}
	e, err := engine.New(engine.Config{
		Shards:  1,
		Symbols: symbols,
		Output:  out,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, SymbolNames: symbols, MaxSymbolID: 16})
		},
	})
	if err != nil {
		panic(err)
	}
	if err := e.Start(); err != nil {
		panic(err)
	}
	if err := e.FilterStream(engine.DefaultStream, "kind == trade and symbol == AAPL"); err != nil {
		panic(err)
	}
	if err := e.TransformStream(engine.DefaultStream, "price = price / 100"); err != nil {
		panic(err)
	}
	aapl, _ := symbols.InternString("AAPL")
	msft, _ := symbols.InternString("MSFT")
	pub, _ := e.NewPublisher("example")
	for i, t := range []struct {
		sym   codec.Symbol
		cents float64
	}{{aapl, 18900}, {msft, 37010}, {aapl, 18950}} {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: t.sym, TsNs: int64(i), Price: t.cents, Volume: 1}
		if err := pub.Publish(&ev); err != nil {
			panic(err)
		}
	}
	pub.Close()
	if err := e.Stop(context.Background()); err != nil {
		panic(err)
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// {"seq":1,"symbol":"AAPL","ts":0,"price":189,"volume":1,"sma_2":null}
	// {"seq":3,"symbol":"AAPL","ts":2,"price":189.5,"volume":1,"sma_2":189.25}
}

// collectLines keeps the JSON lines of the outputs.
type collectLines struct {
	cfg   sinks.JSONLConfig
	lines *[]string
	w     *sinks.JSONLWriter
}

func (c *collectLines) HandleOutputs(outs []ops.Output) error {
	if c.w == nil {
		c.w = sinks.NewJSONLWriter(nil, c.cfg)
	}
	for i := 0; i < len(outs); i += ops.GroupLen(&outs[i]) {
		*c.lines = append(*c.lines, string(c.w.AppendGroup(nil, outs[i:])))
	}
	return nil
}
