package codec

import (
	"github.com/valyala/fastjson"
)

// CoinbaseOptions configures a Coinbase adapter.
type CoinbaseOptions struct {
	Symbols *SymbolCache // interns product ids ("BTC-USD"); nil: a private table
	Source  uint16       // stamped into Event.Source
	// KeepDuplicates emits a match whose trade_id is not after the last one
	// seen for its product. By default such a trade is dropped (skip
	// outcome, counted in Stats().Duplicates): after a reconnect Coinbase
	// re-sends the last trade as a last_match, which must not count twice.
	KeepDuplicates bool
}

// Coinbase decodes Coinbase Exchange WebSocket messages (the public
// ws-feed: matches and ticker channels).
//
// Mapping:
//
//   - match, last_match → KindTrade. Price ← price, Volume ← size, TsNs ←
//     time (RFC 3339), Seq ← sequence, IDHash ← hash("coinbase", product,
//     trade_id). Coinbase's `side` is the maker's side, so the aggressor is
//     the other one: side "sell" (a buyer lifted a resting sell) gives
//     FlagBuy, side "buy" gives FlagSell. last_match (the last trade before
//     the subscription, sent on every (re)subscribe) carries FlagLast.
//   - ticker → KindQuote. Bid/Ask ← best_bid/best_ask (with FlagHasBid/
//     FlagHasAsk), BidSize/AskSize ← best_bid_size/best_ask_size when
//     present, Price ← price and Volume ← last_size (the last trade,
//     informational: a ticker is a quote, not a trade), Seq ← sequence,
//     TsNs ← time. A ticker without time is rejected (ReasonMissingField).
//   - subscriptions, heartbeat, l2update, snapshot, status, error, and the
//     full channel's received/open/done/change/activate → skip.
//   - any other type → ReasonUnknownKind.
//
// Trade ids are consecutive per product, so every match and last_match
// goes through a SeqStrict tracker on trade_id: Stats().Gaps and Missing
// count trades lost (across a reconnect, say), and duplicates are dropped
// unless KeepDuplicates. `sequence` is per product across all channels and
// skips numbers on the matches and ticker channels by design; it is kept in
// Event.Seq for a SeqMonotonic tracker (see SeqTracker).
type Coinbase struct {
	exBase
	keepDup bool
	trades  *SeqTracker
	gap     uint64
}

// NewCoinbase returns a Coinbase adapter.
func NewCoinbase(opts CoinbaseOptions) *Coinbase {
	c := &Coinbase{keepDup: opts.KeepDuplicates, trades: NewSeqTracker(SeqStrict)}
	c.init(ExchangeCoinbase, opts.Symbols, opts.Source)
	return c
}

// Coinbase message types; LastType returns these constants.
const (
	cbMatch         = "match"
	cbLastMatch     = "last_match"
	cbTicker        = "ticker"
	cbSubscriptions = "subscriptions"
	cbHeartbeat     = "heartbeat"
	cbL2Update      = "l2update"
	cbSnapshot      = "snapshot"
	cbStatus        = "status"
	cbError         = "error"
	cbReceived      = "received"
	cbOpen          = "open"
	cbDone          = "done"
	cbChange        = "change"
	cbActivate      = "activate"
)

// cbSkipped lists the types that are decoded to nothing.
var cbSkipped = [...]string{cbSubscriptions, cbHeartbeat, cbL2Update, cbSnapshot,
	cbStatus, cbError, cbReceived, cbOpen, cbDone, cbChange, cbActivate}

// Gap returns how many trade ids were missing just before the trade of the
// last Decode (0 if none): the number to report after a reconnect.
func (c *Coinbase) Gap() uint64 { return c.gap }

// Decode implements Adapter. It appends at most one event.
func (c *Coinbase) Decode(msg []byte, dst []Event) ([]Event, error) {
	c.gap = 0
	v, ok := c.begin(msg)
	if !ok {
		return c.fail(dst)
	}
	if v.Type() != fastjson.TypeObject {
		c.setErr(ReasonMalformed, "", "want a JSON object")
		return c.fail(dst)
	}
	typ, ok := c.str(v, "type")
	if !ok {
		return c.fail(dst)
	}
	switch string(typ) {
	case cbMatch:
		c.lastType = cbMatch
		return c.match(v, dst, false)
	case cbLastMatch:
		c.lastType = cbLastMatch
		return c.match(v, dst, true)
	case cbTicker:
		c.lastType = cbTicker
		return c.ticker(v, dst)
	}
	for _, s := range cbSkipped {
		if string(typ) == s {
			return c.skip(dst, s)
		}
	}
	c.setErr(ReasonUnknownKind, "type", "not a Coinbase message type this adapter knows")
	return c.fail(dst)
}

func (c *Coinbase) match(v *fastjson.Value, dst []Event, last bool) ([]Event, error) {
	product, ok := c.str(v, "product_id")
	if !ok {
		return c.fail(dst)
	}
	price, ok := c.price(v, "price")
	if !ok {
		return c.fail(dst)
	}
	size, ok := c.size(v, "size")
	if !ok {
		return c.fail(dst)
	}
	ts, ok := c.time(v)
	if !ok {
		return c.fail(dst)
	}
	tradeID, ok := c.uint(v, "trade_id")
	if !ok {
		return c.fail(dst)
	}
	seq, ok := c.uint(v, "sequence")
	if !ok {
		return c.fail(dst)
	}
	side, ok := c.str(v, "side")
	if !ok {
		return c.fail(dst)
	}
	var flags Flags
	switch string(side) {
	case "sell": // the maker sold: the taker bought
		flags = FlagBuy
	case "buy":
		flags = FlagSell
	default:
		c.setErr(ReasonBadType, "side", `want "buy" or "sell"`)
		return c.fail(dst)
	}
	if last {
		flags |= FlagLast
	}
	sym, ok := c.symbol(product, "product_id")
	if !ok {
		return c.fail(dst)
	}
	status, missing := c.trades.Observe(sym, tradeID)
	switch status {
	case SeqGap:
		c.gap = missing
		c.stats.Gaps++
		c.stats.Missing += missing
	case SeqDuplicate:
		if !c.keepDup {
			c.stats.Duplicates++
			return c.skip(dst, c.lastType)
		}
	}
	from := len(dst)
	dst = append(dst, Event{
		TsNs:   ts,
		Seq:    seq,
		IDHash: exHashID(ExchangeCoinbase, product, 't', tradeID),
		Price:  price,
		Volume: size,
		Symbol: sym,
		Source: c.source,
		Kind:   KindTrade,
		Flags:  flags,
	})
	return c.done(dst, from)
}

func (c *Coinbase) ticker(v *fastjson.Value, dst []Event) ([]Event, error) {
	product, ok := c.str(v, "product_id")
	if !ok {
		return c.fail(dst)
	}
	ts, ok := c.time(v)
	if !ok {
		return c.fail(dst)
	}
	seq, ok := c.uint(v, "sequence")
	if !ok {
		return c.fail(dst)
	}
	ev := Event{TsNs: ts, Seq: seq, Source: c.source, Kind: KindQuote}
	// A ticker on an empty side omits or nulls best_bid/best_ask; the
	// quote is still valid for the other side.
	if x := v.Get("best_bid"); x != nil && x.Type() != fastjson.TypeNull {
		if ev.Bid, ok = c.decimalValue(x, "best_bid"); !ok {
			return c.fail(dst)
		}
		ev.Flags |= FlagHasBid
	}
	if x := v.Get("best_ask"); x != nil && x.Type() != fastjson.TypeNull {
		if ev.Ask, ok = c.decimalValue(x, "best_ask"); !ok {
			return c.fail(dst)
		}
		ev.Flags |= FlagHasAsk
	}
	if x := v.Get("best_bid_size"); x != nil && x.Type() != fastjson.TypeNull {
		if ev.BidSize, ok = c.decimalValue(x, "best_bid_size"); !ok {
			return c.fail(dst)
		}
	}
	if x := v.Get("best_ask_size"); x != nil && x.Type() != fastjson.TypeNull {
		if ev.AskSize, ok = c.decimalValue(x, "best_ask_size"); !ok {
			return c.fail(dst)
		}
	}
	if x := v.Get("price"); x != nil && x.Type() != fastjson.TypeNull {
		if ev.Price, ok = c.decimalValue(x, "price"); !ok {
			return c.fail(dst)
		}
	}
	if x := v.Get("last_size"); x != nil && x.Type() != fastjson.TypeNull {
		if ev.Volume, ok = c.decimalValue(x, "last_size"); !ok {
			return c.fail(dst)
		}
	}
	if (ev.Flags&FlagHasBid != 0 && !(ev.Bid > 0)) || (ev.Flags&FlagHasAsk != 0 && !(ev.Ask > 0)) {
		c.setErr(ReasonBadPrice, "best_bid", "quote prices must be > 0")
		return c.fail(dst)
	}
	if ev.BidSize < 0 || ev.AskSize < 0 || ev.Volume < 0 {
		c.setErr(ReasonBadVolume, "", "quote sizes must be >= 0")
		return c.fail(dst)
	}
	if ev.Symbol, ok = c.symbol(product, "product_id"); !ok {
		return c.fail(dst)
	}
	from := len(dst)
	dst = append(dst, ev)
	return c.done(dst, from)
}

func (c *Coinbase) time(v *fastjson.Value) (int64, bool) {
	s, ok := c.str(v, "time")
	if !ok {
		return 0, false
	}
	ts, err := ParseTimestamp(s)
	if err != nil {
		c.setErr(ReasonBadTimestamp, "time", "want RFC 3339")
		return 0, false
	}
	return ts, true
}
