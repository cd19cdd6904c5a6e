package codec_test

import (
	"encoding/binary"
	"fmt"

	"qstream/codec"
)

// A segment with one TOPS trade report, built by hand: the IEX-TP header,
// then the length-prefixed message.
func ExampleIEXDecoder() {
	msg := []byte{codec.IEXTradeReport, codec.IEXSaleOddLot}
	msg = binary.LittleEndian.AppendUint64(msg, 1700000000123456789) // timestamp
	msg = append(msg, "ZIEXT   "...)                                 // symbol
	msg = binary.LittleEndian.AppendUint32(msg, 50)                  // size
	msg = binary.LittleEndian.AppendUint64(msg, 1892301)             // price 189.2301
	msg = binary.LittleEndian.AppendUint64(msg, 429974)              // trade id

	seg := []byte{codec.IEXVersion, 0}
	seg = binary.LittleEndian.AppendUint16(seg, codec.IEXProtocolTOPS)
	seg = binary.LittleEndian.AppendUint32(seg, 1)                  // channel
	seg = binary.LittleEndian.AppendUint32(seg, 7)                  // session
	seg = binary.LittleEndian.AppendUint16(seg, uint16(2+len(msg))) // payload length
	seg = binary.LittleEndian.AppendUint16(seg, 1)                  // message count
	seg = binary.LittleEndian.AppendUint64(seg, 0)                  // stream offset
	seg = binary.LittleEndian.AppendUint64(seg, 41)                 // first sequence number
	seg = binary.LittleEndian.AppendUint64(seg, 1700000000200000000)
	seg = binary.LittleEndian.AppendUint16(seg, uint16(len(msg)))
	seg = append(seg, msg...)

	tab := codec.NewSymbolTable(0)
	d := codec.NewIEXDecoder(codec.IEXOptions{Symbols: codec.NewSymbolCache(tab)})
	if _, err := d.Reset(seg); err != nil {
		panic(err)
	}
	var ev codec.Event
	for {
		ok, err := d.Next(&ev)
		if err != nil {
			panic(err)
		}
		if !ok {
			break
		}
		fmt.Printf("%s %s %v x %v seq %d id %d type %c odd lot %v\n", ev.Kind, tab.Name(ev.Symbol), ev.Price, ev.Volume,
			ev.Seq, ev.IDHash, codec.IEXMessageTypeOf(ev.Aux), codec.IEXCodeOf(ev.Aux)&codec.IEXSaleOddLot != 0)
	}
	// Output:
	// trade ZIEXT 189.2301 x 50 seq 41 id 429974 type T odd lot true
}
