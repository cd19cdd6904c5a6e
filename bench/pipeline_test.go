package bench

import (
	"context"
	"fmt"
	"testing"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/ops"
	"qstream/ring"
	"qstream/sinks"
)

// jsonTicks renders n synthetic trades and quotes as compact JSON lines.
func jsonTicks(b testing.TB, n, symbols int) [][]byte {
	b.Helper()
	syn, err := feeds.NewSynthetic(feeds.SyntheticOptions{Seed: 42, Symbols: symbols, Count: int64(n)})
	if err != nil {
		b.Fatal(err)
	}
	table := codec.NewSymbolTable(symbols)
	if err := syn.Intern(table); err != nil {
		b.Fatal(err)
	}
	lines := make([][]byte, 0, n)
	var ev codec.Event
	for syn.Fill(&ev) {
		name := table.Name(ev.Symbol)
		var line string
		if ev.Kind == codec.KindTrade {
			line = fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%s,"volume":%s}`, name, ev.TsNs,
				sinks.AppendFloat(nil, ev.Price), sinks.AppendFloat(nil, ev.Volume))
		} else {
			line = fmt.Sprintf(`{"type":"quote","symbol":%q,"ts":%d,"bid":%s,"ask":%s}`, name, ev.TsNs,
				sinks.AppendFloat(nil, ev.Bid), sinks.AppendFloat(nil, ev.Ask))
		}
		lines = append(lines, []byte(line))
	}
	return lines
}

type countOutputs struct{ n uint64 }

func (c *countOutputs) HandleOutputs(outs []ops.Output) error { c.n += uint64(len(outs)); return nil }

// BenchmarkPipeline measures the in-process pipeline: parse JSON (one
// parser, the feed goroutine) → per-shard SPSC rings → shards computing the
// default indicators and a 1-second OHLCV tumbling window → collector. One op
// is one message; msgs/s is reported. (No pattern operator exists yet.)
func BenchmarkPipeline(b *testing.B) {
	lines := jsonTicks(b, 1<<16, 256)
	for _, c := range []struct {
		shards int
		wait   ring.Strategy
	}{{1, ring.Park}, {2, ring.Park}, {1, ring.Yield}, {2, ring.Yield}, {1, ring.Spin}, {2, ring.Spin}} {
		shards, wait := c.shards, c.wait
		mode := engine.ModeRealTime
		if wait == ring.Park {
			mode = engine.ModeEventDriven
		}
		b.Run(fmt.Sprintf("shards=%d/wait=%s", shards, wait), func(b *testing.B) {
			specs, _ := ops.ParseIndicators(ops.DefaultIndicators)
			windows, err := ops.ParseWindowSpecs("tumbling:1s:ohlcv")
			if err != nil {
				b.Fatal(err)
			}
			out := &countOutputs{}
			eng, err := engine.New(engine.Config{
				Shards: shards, Mode: mode, Wait: wait, MaxSymbols: 1024,
				Processors: func(int) (engine.Processor, error) {
					return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: windows, MaxSymbolID: 1024})
				},
				Output: out,
			})
			if err != nil {
				b.Fatal(err)
			}
			pub, _ := eng.NewPublisher("bench")
			parser := codec.NewParser(codec.ParserOptions{Symbols: eng.Symbols()})
			eng.Start()
			var ev codec.Event
			b.ReportAllocs()
			b.SetBytes(int64(len(lines[0])))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := parser.ParseJSON(lines[i&(len(lines)-1)], &ev); err != nil {
					b.Fatal(err)
				}
				ev.Seq = uint64(i + 1)
				pub.Publish(&ev)
				if i&255 == 255 {
					pub.Flush()
				}
			}
			pub.Close()
			if err := eng.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
