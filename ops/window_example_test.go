package ops_test

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"qstream/codec"
	"qstream/ops"
)

// exampleLine renders a result as the `--emit windows` line of DESIGN.md
// (the engine's JSON encoder does this for real).
func exampleLine(spec ops.WindowSpec, name string, o ops.Output) string {
	val := "null"
	switch {
	case spec.ValueIsObject():
		v := o.Values
		val = fmt.Sprintf(`{"open":%g,"high":%g,"low":%g,"close":%g,"volume":%g}`, v[0], v[1], v[2], v[3], v[4])
	case !math.IsNaN(o.Value):
		val = strconv.FormatFloat(o.Value, 'g', -1, 64)
	}
	return fmt.Sprintf(`{"window":%q,"symbol":%q,"start":%d,"end":%d,"count":%d,"value":%s,"timing":%q}`,
		spec.String(), name, o.StartNs, o.EndNs, o.Count, val, o.Timing)
}

func ExampleParseWindowSpecs() {
	specs, err := ops.ParseWindowSpecs("tumbling:1m:vwap,hopping:5m/1s:avg:volume,sliding:30s/1s:p99.9,session:10s:ohlcv,count:100:twap")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range specs {
		fmt.Printf("%-22s type=%-8s size=%-6s agg=%-5s field=%-6s object=%v\n", s, s.Type,
			ops.FormatWindowDuration(s.SizeNs), s.Agg, s.Field, s.ValueIsObject())
	}
	_, err = ops.ParseWindowSpecs("tumbling:1m:vwap,tumbling:1q:avg")
	fmt.Println(err)
	// Output:
	// tumbling:1m:vwap       type=tumbling size=1m     agg=vwap  field=price  object=false
	// hopping:5m/1s:avg:volume type=hopping  size=5m     agg=avg   field=volume object=false
	// sliding:30s/1s:p99.9   type=sliding  size=30s    agg=p99.9 field=price  object=false
	// session:10s:ohlcv      type=session  size=10s    agg=ohlcv field=price  object=true
	// count:100:twap         type=count    size=0s     agg=twap  field=price  object=false
	// ops: bad window spec "tumbling:1q:avg": size: bad duration "1q"
}

// A shard's use of the API: a watermark tracker per shard, one operator per
// spec, OnEvent for every trade and OnWatermark whenever the watermark
// advances; at the end of input the watermark goes to +∞.
func ExampleWindowOperator() {
	spec, _ := ops.ParseWindowSpec("tumbling:1s:vwap")
	op, err := ops.NewWindowOperator(0, spec, ops.WindowOptions{}, 16)
	if err != nil {
		fmt.Println(err)
		return
	}
	names := []string{"", "AAPL", "MSFT"}
	tr := ops.NewWatermarkTracker(1, 0, 0)
	var out []ops.Output
	trade := func(sym codec.Symbol, ms int64, price, vol float64) {
		ev := codec.Event{TsNs: ms * int64(time.Millisecond), Price: price, Volume: vol, Symbol: sym, Kind: codec.KindTrade}
		wm, advanced := tr.Observe(0, ev.TsNs, 0)
		out, _ = op.OnEvent(int(sym)-1, sym, &ev, wm, out) // slot = symbol − 1 here
		if advanced {
			out = op.OnWatermark(wm, ev.Seq, out)
		}
	}
	trade(1, 100, 189.20, 300)
	trade(2, 150, 410.00, 10)
	trade(1, 900, 189.30, 100)
	trade(1, 1500, 189.50, 50) // the watermark passes 1 s: the first windows fire
	wm, _ := tr.EndOfInput()
	out = op.OnWatermark(wm, 0, out) // end of input: everything open fires
	for _, o := range out {
		fmt.Println(exampleLine(spec, names[o.Symbol], o))
	}
	// Output:
	// {"window":"tumbling:1s:vwap","symbol":"AAPL","start":0,"end":1000000000,"count":2,"value":189.225,"timing":"on_time"}
	// {"window":"tumbling:1s:vwap","symbol":"MSFT","start":0,"end":1000000000,"count":1,"value":410,"timing":"on_time"}
	// {"window":"tumbling:1s:vwap","symbol":"AAPL","start":1000000000,"end":2000000000,"count":1,"value":189.5,"timing":"on_time"}
}

// Allowed lateness: a trade behind the watermark by at most the lateness
// re-fires its window as a late update; a later one is refused with
// ReasonLate for the caller's dead-letter output, and counted.
func ExampleWindowOperator_lateness() {
	spec, _ := ops.ParseWindowSpec("tumbling:1s:ohlcv")
	op, _ := ops.NewWindowOperator(0, spec, ops.WindowOptions{AllowedLatenessNs: int64(500 * time.Millisecond)}, 1)
	ms := int64(time.Millisecond)
	var out []ops.Output
	feed := func(tsMs int64, price float64, wmMs int64) {
		ev := codec.Event{TsNs: tsMs * ms, Price: price, Volume: 1, Symbol: 1, Kind: codec.KindTrade}
		var reason codec.Reason
		out, reason = op.OnEvent(0, 1, &ev, wmMs*ms, out)
		if reason != codec.ReasonNone {
			fmt.Printf("trade at %dms refused: %s\n", tsMs, reason)
		}
		out = op.OnWatermark(wmMs*ms, 0, out)
	}
	feed(100, 10, 100)
	feed(1200, 11, 1200) // the watermark passes 1 s: [0, 1s) fires on time
	feed(800, 12, 1200)  // 400 ms behind: within lateness, re-fires [0, 1s)
	feed(300, 13, 1200)  // 900 ms behind: refused
	for _, o := range out {
		fmt.Println(exampleLine(spec, "X", o))
	}
	fmt.Println("late refused:", op.Counters().Late)
	// Output:
	// trade at 300ms refused: late
	// {"window":"tumbling:1s:ohlcv","symbol":"X","start":0,"end":1000000000,"count":1,"value":{"open":10,"high":10,"low":10,"close":10,"volume":1},"timing":"on_time"}
	// {"window":"tumbling:1s:ohlcv","symbol":"X","start":0,"end":1000000000,"count":2,"value":{"open":10,"high":12,"low":10,"close":12,"volume":2},"timing":"late"}
	// late refused: 1
}

// Partial answers the specification's AggregateWindow on demand: the
// current value of each open window, and PartialStats lets any summary
// aggregation be applied to it.
func ExampleWindowOperator_Partial() {
	spec, _ := ops.ParseWindowSpec("session:30s:avg")
	op, _ := ops.NewWindowOperator(0, spec, ops.WindowOptions{}, 1)
	for i, p := range []float64{10, 11, 15} {
		ev := codec.Event{TsNs: int64(i) * int64(time.Second), Price: p, Volume: 1, Symbol: 1, Kind: codec.KindTrade}
		op.OnEvent(0, 1, &ev, ev.TsNs, nil)
	}
	for _, o := range op.Partial(0, nil) {
		fmt.Printf("open session: %d trades, avg %.2f (%s)\n", o.Count, o.Value, o.Timing)
	}
	for _, st := range op.PartialStats(0, nil) {
		fmt.Printf("sum %.0f, count %.0f\n", st.Value(ops.AggSum), st.Value(ops.AggCount))
	}
	// Output:
	// open session: 3 trades, avg 12.00 (early)
	// sum 36, count 3
}

// Custom aggregations are named Go functions over the window's summary,
// registered once at start-up and used in specs like the built-in ones.
func ExampleRegisterAggregation() {
	err := ops.RegisterAggregation("midrange", func(params []float64) (ops.AggregationFunc, error) {
		if len(params) != 0 {
			return nil, errors.New("midrange takes no parameters")
		}
		return func(s *ops.WindowStats) float64 { return (s.Min + s.Max) / 2 }, nil
	})
	if err != nil && !errors.Is(err, ops.ErrAggregationExists) { // tests may run twice
		fmt.Println(err)
		return
	}
	spec, _ := ops.ParseWindowSpec("count:3:midrange")
	op, _ := ops.NewWindowOperator(0, spec, ops.WindowOptions{}, 1)
	var out []ops.Output
	for i, p := range []float64{10, 14, 11} {
		ev := codec.Event{TsNs: int64(i), Price: p, Volume: 1, Symbol: 1, Kind: codec.KindTrade}
		out, _ = op.OnEvent(0, 1, &ev, 0, out)
	}
	fmt.Println(out[0].Value)
	// Output: 12
}

// One source going quiet does not stall the shard's watermark once it has
// been idle longer than the timeout; it holds the watermark again when it
// resumes.
func ExampleWatermarkTracker() {
	sec := int64(time.Second)
	tr := ops.NewWatermarkTracker(2, 0, 5*sec) // 2 sources, no disorder, 5 s idle timeout
	tr.Observe(0, 100*sec, 0)
	tr.Observe(1, 100*sec, 0)
	wm, _ := tr.Observe(0, 110*sec, 3*sec)
	fmt.Println("source 1 quiet for 3s:", wm/sec)
	wm, _ = tr.Observe(0, 120*sec, 8*sec)
	fmt.Println("source 1 quiet for 8s:", wm/sec)
	tr.Observe(1, 121*sec, 9*sec)
	wm, _ = tr.Observe(0, 130*sec, 9*sec)
	fmt.Println("source 1 back:", wm/sec)
	// Output:
	// source 1 quiet for 3s: 100
	// source 1 quiet for 8s: 120
	// source 1 back: 121
}
