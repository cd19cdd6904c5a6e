package codec

import (
	"bytes"
	"errors"
)

// Exchange names, as `qstream replay --format` spells them.
const (
	ExchangeCoinbase = "coinbase"
	ExchangeBinance  = "binance"
	ExchangeKraken   = "kraken"
)

// MaxEventsPerMessage bounds the events one exchange message can yield (a
// Kraken trade array holds several trades). A message with more is rejected
// whole with ReasonOversize. A dst with cap(dst)-len(dst) >= MaxEventsPerMessage
// guarantees that Decode never allocates.
const MaxEventsPerMessage = 256

// MaxExchangeMessageLen bounds the raw size of one exchange message. Coinbase
// level2 snapshots, which the adapter skips, run to tens of kilobytes.
const MaxExchangeMessageLen = 1 << 20

// ErrUnknownExchange is returned by NewAdapter for a name it does not know.
var ErrUnknownExchange = errors.New("codec: unknown exchange")

// Adapter decodes the raw WebSocket messages of one exchange into Events.
// An Adapter is single-goroutine and reuses its parser, so decoding does
// not allocate after warm-up.
type Adapter interface {
	// Name is the exchange name (ExchangeCoinbase, ...).
	Name() string
	// Decode appends the events carried by msg to dst and returns the
	// extended slice. There are exactly three outcomes:
	//
	//   - events: err == nil and len(out) > len(dst).
	//   - skip:   err == nil and len(out) == len(dst). msg is a well-formed
	//     message that the adapter deliberately ignores (heartbeat,
	//     subscription acknowledgement, order-book update, an unclosed kline,
	//     a duplicate trade); LastType says which. Not an error.
	//   - error:  err != nil, a *Error owned by the adapter and valid until
	//     the next call; out == dst (no partial results: a message whose
	//     third trade is bad yields none of its trades).
	//
	// At most MaxEventsPerMessage events are appended. msg is not retained.
	Decode(msg []byte, dst []Event) ([]Event, error)
	// LastType names the message type of the last Decode ("match", "ticker",
	// "l2update", "aggTrade", "heartbeat", ...): a constant string, so
	// callers can count by it without allocating. "" if it was unknown.
	LastType() string
	// Stats returns the adapter's counters.
	Stats() AdapterStats
}

// AdapterStats counts what an Adapter has decoded.
type AdapterStats struct {
	Messages   uint64 // calls to Decode
	Events     uint64 // events appended
	Trades     uint64
	Quotes     uint64
	Bars       uint64
	Skipped    uint64 // messages with the skip outcome
	Errors     uint64 // messages with the error outcome
	Duplicates uint64 // trades dropped because their trade id was already seen (also counted in Skipped)
	Gaps       uint64 // trade-id gaps (a trade arrived after missing ones)
	Missing    uint64 // trade ids missing in those gaps
}

// NewAdapter returns the adapter for an exchange name with default options
// over the given symbol cache (nil: a private table) and source index.
func NewAdapter(name string, syms *SymbolCache, source uint16) (Adapter, error) {
	switch name {
	case ExchangeCoinbase:
		return NewCoinbase(CoinbaseOptions{Symbols: syms, Source: source}), nil
	case ExchangeBinance:
		return NewBinance(BinanceOptions{Symbols: syms, Source: source}), nil
	case ExchangeKraken:
		return NewKraken(KrakenOptions{Symbols: syms, Source: source}), nil
	}
	return nil, ErrUnknownExchange
}

// DetectExchange guesses which exchange a raw WebSocket message comes from,
// for `--format auto`. It looks only at the message's shape (no parse, no
// allocation) and returns ExchangeCoinbase, ExchangeBinance, ExchangeKraken,
// or "" when it cannot tell (feed it the next message then).
func DetectExchange(line []byte) string {
	b := bytes.TrimLeft(line, " \t\r\n")
	if len(b) == 0 {
		return ""
	}
	if b[0] == '[' {
		// Kraken v1 channel messages are arrays that start with a channel
		// id; Binance's "!ticker@arr" streams are arrays of objects.
		if r := bytes.TrimLeft(b[1:], " \t\r\n"); len(r) > 0 && r[0] == '{' {
			if bytes.Contains(b, []byte(`"e":`)) {
				return ExchangeBinance
			}
			return ""
		}
		return ExchangeKraken
	}
	if b[0] != '{' {
		return ""
	}
	switch {
	case bytes.Contains(b, []byte(`"stream":`)) && bytes.Contains(b, []byte(`"data":`)),
		bytes.Contains(b, []byte(`"e":"`)):
		return ExchangeBinance
	case bytes.Contains(b, []byte(`"event":`)):
		return ExchangeKraken
	case bytes.Contains(b, []byte(`"type":"`)) &&
		(bytes.Contains(b, []byte(`"product_id":"`)) || bytes.Contains(b, []byte(`"channels":`))):
		// Coinbase messages name a product (or, for subscriptions, channels);
		// qstream's own compact ticks ({"type":"trade","symbol":...}) carry a
		// type too but neither.
		return ExchangeCoinbase
	case bytes.Contains(b, []byte(`"u":`)) && bytes.Contains(b, []byte(`"b":`)) &&
		bytes.Contains(b, []byte(`"a":`)):
		return ExchangeBinance // spot bookTicker carries no event type
	}
	return ""
}

// exSideFlags maps a taker side to the aggressor flag.
func exSideFlags(buyer bool) Flags {
	if buyer {
		return FlagBuy
	}
	return FlagSell
}
