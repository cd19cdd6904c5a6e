package codec_test

import (
	"errors"
	"fmt"

	"qstream/codec"
)

func ExampleParser_ParseJSON() {
	p := codec.NewParser(codec.ParserOptions{Symbols: codec.NewSymbolTable(0), Source: 1})
	var ev codec.Event
	msg := []byte(`{"type":"trade","symbol":"AAPL","ts":1700000000123456789,"price":189.23,"volume":300,"bid":189.22,"ask":189.24,"status":"open","id":"t-1"}`)
	if err := p.ParseJSON(msg, &ev); err != nil {
		panic(err)
	}
	fmt.Println(ev.Kind, p.Symbols().Name(ev.Symbol), ev.TsNs, ev.Price, ev.Volume, ev.Bid, ev.Ask, ev.Status)

	err := p.ParseJSON([]byte(`{"type":"trade","symbol":"AAPL","ts":1,"price":"NaN","volume":1}`), &ev)
	var ce *codec.Error
	if errors.As(err, &ce) {
		fmt.Println(ce.Reason, ce.Field)
	}
	// Output:
	// trade AAPL 1700000000123456789 189.23 300 189.22 189.24 open
	// bad_number price
}

func ExampleParser_News() {
	p := codec.NewParser(codec.ParserOptions{})
	var ev codec.Event
	msg := []byte(`{"type":"news","id":"n1","ts":"2024-01-02T14:30:00Z","source":"wire","headline":"Apple beats","symbols":["AAPL","MSFT"]}`)
	if err := p.ParseJSON(msg, &ev); err != nil {
		panic(err)
	}
	a := p.News() // valid until the next ParseJSON
	fmt.Println(ev.Kind, ev.TsNs, string(a.Headline), len(a.Symbols), p.Symbols().Name(ev.Symbol))
	// Output: news 1704205800000000000 Apple beats 2 AAPL
}

func ExampleCSVParser() {
	c := codec.NewCSVParser(codec.ParserOptions{})
	if err := c.ParseHeader([]byte("symbol,ts,price,volume")); err != nil {
		panic(err)
	}
	var ev codec.Event
	for _, row := range []string{"AAPL,2024-01-02T14:30:00.5Z,189.23,300", "AAPL,1,-5,1"} {
		if err := c.ParseRow([]byte(row), &ev); err != nil {
			fmt.Println(codec.ReasonOf(err))
			continue
		}
		fmt.Println(ev.Kind, ev.TsNs, ev.Price, ev.Volume)
	}
	// Output:
	// trade 1704205800500000000 189.23 300
	// bad_price
}

func ExampleParseDecimal() {
	for _, s := range []string{"189.23", "0.00250000", "NaN", "1,5"} {
		f, err := codec.ParseDecimal([]byte(s))
		fmt.Println(f, err)
	}
	// Output:
	// 189.23 <nil>
	// 0.0025 <nil>
	// 0 codec: bad_number: NaN or infinity
	// 0 codec: bad_number: not a decimal number
}

func ExampleParseTimestamp() {
	for _, s := range []string{"1700000000123456789", "2024-01-02T09:30:00.123-05:00", "2024-02-30T00:00:00Z"} {
		ns, err := codec.ParseTimestamp([]byte(s))
		fmt.Println(ns, err)
	}
	// Output:
	// 1700000000123456789 <nil>
	// 1704205800123000000 <nil>
	// 0 codec: bad_timestamp: timestamp out of range
}

func ExampleAppendFrame() {
	ev := codec.Event{Kind: codec.KindTrade, TsNs: 1700000000123456789, Symbol: 1, Price: 189.23, Volume: 300}
	buf := codec.AppendFrame(make([]byte, 0, codec.FrameSize), &ev)

	var back codec.Event
	n, err := codec.DecodeFrame(buf, &back)
	fmt.Println(len(buf), n, err, back == ev)

	buf[50] ^= 1 // corrupt the body
	_, err = codec.DecodeFrame(buf, &back)
	fmt.Println(codec.ReasonOf(err), err == codec.ErrFrameChecksum)
	// Output:
	// 136 136 <nil> true
	// checksum true
}
