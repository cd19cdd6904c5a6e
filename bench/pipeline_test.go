package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/ops"
	"qstream/ring"
	"qstream/sinks"
)

// pipelineLines is how many distinct lines the pipeline benchmark cycles
// through (a power of two: the lap is i>>log2).
const (
	pipelineLinesLog2 = 16
	pipelineLines     = 1 << pipelineLinesLog2
	// pipelineStepNs is the event-time step between consecutive lines: one
	// lap of the lines spans pipelineLines·step = 4.096 s of event time, so
	// a 1 s tumbling window fires about four times per symbol per lap.
	pipelineStepNs = 62_500
	pipelineLapNs  = pipelineLines * pipelineStepNs
	pipelineSyms   = 256
)

// jsonTicks renders n synthetic trades and quotes as compact JSON lines,
// stepNs apart in event time (strictly increasing). It returns the lines
// and, per line, the event (symbol, kind, event time) each one parses to.
func jsonTicks(b testing.TB, n, symbols int, stepNs int64) ([][]byte, []codec.Event) {
	b.Helper()
	syn, err := feeds.NewSynthetic(feeds.SyntheticOptions{Seed: 42, Symbols: symbols, Count: int64(n), StepNs: stepNs})
	if err != nil {
		b.Fatal(err)
	}
	table := codec.NewSymbolTable(symbols)
	if err := syn.Intern(table); err != nil {
		b.Fatal(err)
	}
	lines := make([][]byte, 0, n)
	events := make([]codec.Event, 0, n)
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
		events = append(events, ev)
	}
	return lines, events
}

// countOutputs counts outputs by kind. It runs on the collector goroutine
// while the benchmark reads it, hence the atomics (one add per batch).
type countOutputs struct{ indicators, windows, other atomic.Uint64 }

func (c *countOutputs) HandleOutputs(outs []ops.Output) error {
	var ind, win, other uint64
	for i := range outs {
		switch outs[i].Kind {
		case ops.OutIndicators:
			ind++
		case ops.OutWindow:
			win++
		default:
			other++
		}
	}
	c.indicators.Add(ind)
	c.windows.Add(win)
	c.other.Add(other)
	return nil
}

// pipelineExpect computes what n messages of the benchmark must produce:
// the trades (one indicator output each) and the 1 s tumbling window results
// (per symbol, the number of distinct windows its trades fall in; event time
// rises strictly, so that is the number of window changes).
func pipelineExpect(events []codec.Event, n int, windowNs int64) (trades, windows uint64) {
	last := map[codec.Symbol]int64{}
	for i := 0; i < n; i++ {
		ev := &events[i&(pipelineLines-1)]
		if ev.Kind != codec.KindTrade {
			continue
		}
		trades++
		ts := ev.TsNs + int64(i>>pipelineLinesLog2)*pipelineLapNs
		w := ts / windowNs // event times are positive
		if prev, ok := last[ev.Symbol]; !ok || prev != w {
			last[ev.Symbol] = w
			windows++
		}
	}
	return trades, windows
}

// BenchmarkPipeline measures the in-process pipeline: parse JSON (one
// parser, the feed goroutine) → per-shard SPSC rings → shards computing the
// default indicators and a 1-second OHLCV tumbling window → collector. One op
// is one message; msgs/s is reported. (No pattern operator exists yet.)
//
// The benchmark cycles through 65,536 pre-rendered lines spanning 4.096 s of
// event time and, after parsing each line, moves its event time forward by
// one span per lap, so event time rises across the whole run: nothing is
// late, and windows fire throughout the run, not only at the end. At its end
// it checks that every message was processed, none was dead-lettered or late,
// every trade produced its indicator output, and the window produced exactly
// the results an oracle computes from the input, some of them before the end
// of input when the run spans more than two laps.
func BenchmarkPipeline(b *testing.B) {
	lines, events := jsonTicks(b, pipelineLines, pipelineSyms, pipelineStepNs)
	var bytes int
	for _, l := range lines {
		bytes += len(l)
	}
	const windowNs = int64(time.Second)
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
			pipes := make([]*ops.Pipeline, shards)
			eng, err := engine.New(engine.Config{
				Shards: shards, Mode: mode, Wait: wait, MaxSymbols: 1024,
				Processors: func(i int) (engine.Processor, error) {
					p, err := ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: windows, MaxSymbolID: 1024})
					pipes[i] = p
					return p, err
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
			b.SetBytes(int64(bytes / len(lines)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := parser.ParseJSON(lines[i&(pipelineLines-1)], &ev); err != nil {
					b.Fatal(err)
				}
				ev.TsNs += int64(i>>pipelineLinesLog2) * pipelineLapNs
				ev.Seq = uint64(i + 1)
				pub.Publish(&ev)
				if i&255 == 255 {
					pub.Flush()
				}
			}
			pub.Flush()
			windowsBeforeEnd := out.windows.Load()
			pub.Close()
			if err := eng.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			checkPipeline(b, eng, pipes, out, events, windowsBeforeEnd, windowNs)
		})
	}
}

// checkPipeline fails the benchmark unless the run did what its name says.
func checkPipeline(b *testing.B, eng *engine.Engine, pipes []*ops.Pipeline, out *countOutputs, events []codec.Event, windowsBeforeEnd uint64, windowNs int64) {
	b.Helper()
	st := eng.Stats()
	n := uint64(b.N)
	if st.Published != n || st.Messages != n {
		b.Fatalf("published %d, processed %d, want %d each", st.Published, st.Messages, n)
	}
	if st.DeadLetters != 0 || len(st.Rejected) != 0 {
		b.Fatalf("%d dead letters %v, want none", st.DeadLetters, st.Rejected)
	}
	var late, fired uint64
	for _, p := range pipes {
		for _, w := range p.Windows() {
			c := w.Counters()
			late += c.Late + c.Refused + c.BadValue
			fired += c.Fired
		}
	}
	if late != 0 {
		b.Fatalf("window operator refused %d trades (late, full, bad), want 0", late)
	}
	trades, wantWindows := pipelineExpect(events, b.N, windowNs)
	if got := out.indicators.Load(); got != trades {
		b.Fatalf("indicator outputs %d, want one per trade: %d", got, trades)
	}
	if got := out.windows.Load(); got != wantWindows || fired != wantWindows || wantWindows == 0 {
		b.Fatalf("window results delivered %d, fired %d, want %d (> 0)", got, fired, wantWindows)
	}
	if out.other.Load() != 0 || st.Delivered != trades+wantWindows {
		b.Fatalf("delivered %d outputs (%d of other kinds), want %d", st.Delivered, out.other.Load(), trades+wantWindows)
	}
	// Over more than two laps (8 s of event time) most windows close before
	// the end of input; at least one of them must have been delivered
	// before it (the collector may lag, so not all).
	if b.N > 2*pipelineLines && windowsBeforeEnd == 0 {
		b.Fatalf("no window fired before the end of input (%d messages, %d results at the end)", b.N, wantWindows)
	}
}
