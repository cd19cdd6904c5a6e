package feeds_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"qstream/codec"
	"qstream/feeds"
)

// A cryptofeed recording: the connection and our subscription are counted,
// received messages are decoded, bad lines are reported with their number.
func ExampleNewCaptureReader() {
	rec := `wss://ws.kraken.com <-> 1618678132.368463
wss://ws.kraken.com <- 1618678132.83097: {"event":"subscribe","pair":["XMR/USD"],"subscription":{"name":"trade"}}
1618678133.5561652: {"event":"heartbeat"}
1618678150.8565571: [993,[["354.04000000","0.28245396","1618678150.826417","s","m",""],["353.81000000","1.71754604","1618678150.827816","s","m",""]],"trade","XMR/USD"]
1618678151.1: [993,[["-1","1","1618678151.0","b","m",""]],"trade","XMR/USD"]
`
	r, err := feeds.NewCaptureReader(strings.NewReader(rec), feeds.CaptureOptions{Exchange: "auto"})
	if err != nil {
		panic(err)
	}
	for {
		var ev codec.Event
		err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		var bad *feeds.RecordError
		if errors.As(err, &bad) {
			fmt.Println("line", bad.Pos.Line, bad.Reason())
			continue
		}
		fmt.Println(ev.Kind, ev.Price, ev.Volume)
	}
	st := r.Stats()
	fmt.Println(r.Exchange(), st.Trades, st.Skipped, st.Errors)
	// Output:
	// trade 354.04 0.28245396
	// trade 353.81 1.71754604
	// line 5 bad_price
	// kraken 2 1 1
}
