package codec_test

import (
	"fmt"

	"qstream/codec"
)

// Decode has three outcomes: events appended, a deliberate skip (nothing
// appended, no error), or an error with a reason.
func ExampleCoinbase_Decode() {
	c := codec.NewCoinbase(codec.CoinbaseOptions{})
	dst := make([]codec.Event, 0, codec.MaxEventsPerMessage)
	for _, msg := range []string{
		`{"type":"match","trade_id":5,"side":"sell","size":"0.25","price":"100.5","product_id":"BTC-USD","sequence":70,"time":"2024-01-02T14:30:00.5Z"}`,
		`{"type":"l2update","product_id":"BTC-USD","changes":[["buy","100.4","2"]],"time":"2024-01-02T14:30:00.6Z"}`,
		`{"type":"match","trade_id":6,"side":"buy","size":"1","price":"oops","product_id":"BTC-USD","sequence":72,"time":"2024-01-02T14:30:01Z"}`,
	} {
		out, err := c.Decode([]byte(msg), dst[:0])
		switch {
		case err != nil:
			fmt.Printf("%s: error %s\n", c.LastType(), codec.ReasonOf(err))
		case len(out) == 0:
			fmt.Printf("%s: skipped\n", c.LastType())
		default:
			ev := out[0]
			fmt.Printf("%s: %s %v x %v at %d, buyer aggressor %v\n", c.LastType(), ev.Kind, ev.Price, ev.Volume, ev.TsNs, ev.Flags&codec.FlagBuy != 0)
		}
	}
	// Output:
	// match: trade 100.5 x 0.25 at 1704205800500000000, buyer aggressor true
	// l2update: skipped
	// match: error bad_number
}

func ExampleKraken_Decode() {
	k := codec.NewKraken(codec.KrakenOptions{})
	msg := `[993,[["354.04000000","0.28245396","1618678150.826417","s","m",""],["353.81000000","1.71754604","1618678150.827816","s","m",""]],"trade","XMR/USD"]`
	out, err := k.Decode([]byte(msg), nil)
	if err != nil {
		panic(err)
	}
	for _, ev := range out {
		fmt.Println(ev.Kind, ev.Price, ev.Volume, ev.TsNs, ev.Flags&codec.FlagLast != 0)
	}
	// Output:
	// trade 354.04 0.28245396 1618678150826417000 false
	// trade 353.81 1.71754604 1618678150827816000 true
}

func ExampleDetectExchange() {
	for _, line := range []string{
		`{"type":"ticker","product_id":"BTC-USD","best_bid":"1","best_ask":"2"}`,
		`{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}`,
		`[993,[["354.1","0.5","1618678142.5","s","l",""]],"trade","XMR/USD"]`,
		`{"hello":"world"}`,
	} {
		fmt.Printf("%q\n", codec.DetectExchange([]byte(line)))
	}
	// Output:
	// "coinbase"
	// "binance"
	// "kraken"
	// ""
}

// A WebSocket client keeps a SeqTracker per connection and reports the gap
// it finds after a reconnect.
func ExampleSeqTracker() {
	tab := codec.NewSymbolTable(0)
	btc, _ := tab.InternString("BTC-USD")
	tr := codec.NewSeqTracker(codec.SeqStrict)
	for _, id := range []uint64{100, 101, 105, 105} {
		st, missing := tr.Observe(btc, id)
		fmt.Println(id, st, missing)
	}
	// Output:
	// 100 first 0
	// 101 in_order 0
	// 105 gap 3
	// 105 duplicate 0
}
