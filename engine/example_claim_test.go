package engine_test

import (
	"context"
	"fmt"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
	"qstream/sinks"
)

// A feed parses its messages straight into the events it claims in the
// ring, instead of parsing into an event of its own that Publish copies. A
// message that does not parse is rejected and its event reused: only the
// parsed ones are committed.
func ExamplePublisher_ClaimBatch() {
	symbols := codec.NewSymbolTable(16)
	specs, _ := ops.ParseIndicators("sma:2")
	var lines []string
	e, err := engine.New(engine.Config{
		Shards:  1,
		Symbols: symbols,
		Output:  &collectLines{cfg: sinks.JSONLConfig{Symbols: symbols, Indicators: []string{"sma_2"}}, lines: &lines},
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
	pub, _ := e.NewPublisher("example")
	parser := codec.NewParser(codec.ParserOptions{Symbols: symbols})
	msgs := []string{
		`{"type":"trade","symbol":"AAPL","ts":1,"price":189.5,"volume":10}`,
		`{"type":"trade","symbol":"AAPL","ts":2,"price":`, // cut short
		`{"type":"trade","symbol":"AAPL","ts":3,"price":190.5,"volume":5}`,
	}
	for len(msgs) > 0 {
		evs, err := pub.ClaimBatch(len(msgs))
		if err != nil {
			panic(err)
		}
		k := 0
		for len(msgs) > 0 && k < len(evs) {
			msg := []byte(msgs[0])
			msgs = msgs[1:]
			if err := parser.ParseJSON(msg, &evs[k]); err != nil {
				pub.Reject(msg, codec.ReasonOf(err), codec.Position{}, err)
				evs[k] = codec.Event{} // the next message goes into the same event
				continue
			}
			k++
		}
		if err := pub.CommitBatch(k); err != nil {
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
	st := e.Stats()
	fmt.Println("published", st.Published, "rejected", st.DeadLetters)
	// Output:
	// {"seq":1,"symbol":"AAPL","ts":1,"price":189.5,"volume":10,"sma_2":null}
	// {"seq":2,"symbol":"AAPL","ts":3,"price":190.5,"volume":5,"sma_2":190}
	// published 2 rejected 1
}
