package codec

import (
	"github.com/valyala/fastjson"
)

// BinanceOptions configures a Binance adapter.
type BinanceOptions struct {
	Symbols *SymbolCache // interns symbols ("BTCUSDT"); nil: a private table
	Source  uint16       // stamped into Event.Source
	// KlineUpdates emits every kline update. By default only closed klines
	// ("x":true) become bars: an open kline is re-sent every couple of
	// seconds with provisional values, and a consumer that treats each as
	// a bar would count the same interval many times.
	KlineUpdates bool
	// KeepDuplicates emits a trade whose id is not after the last one seen
	// for its symbol and stream type; by default it is dropped (skip
	// outcome, counted in Stats().Duplicates).
	KeepDuplicates bool
}

// Binance decodes Binance spot and USD-M futures market streams, bare or
// wrapped in the combined-stream envelope {"stream":"...","data":{...}}.
//
// Mapping:
//
//   - aggTrade → KindTrade. Price ← p, Volume ← q, TsNs ← T (trade time,
//     ms), Seq ← a (aggregate trade id), IDHash ← hash("binance", s, 'a', a).
//     m ("buyer is the maker") true means the seller was the aggressor:
//     FlagSell, else FlagBuy.
//   - trade → the same with Seq ← t and IDHash ← hash("binance", s, 't', t).
//   - kline → KindBar, closed klines only unless KlineUpdates. Open/High/
//     Low/Price(close)/Volume ← k.o/h/l/c/v, TsNs ← k.T (the kline's close
//     time, i.e. its end − 1 ms, the Flink convention for a window's
//     timestamp), Aux ← the interval in milliseconds (k.T − k.t + 1),
//     IDHash ← hash("binance", s, 'k', k.t, interval). An unclosed kline is
//     skipped with LastType "kline"; with KlineUpdates it is emitted and
//     the closing update carries FlagLast.
//   - bookTicker (futures, with "e", or spot, recognised by u/b/B/a/A) →
//     KindQuote. Bid/BidSize/Ask/AskSize ← b/B/a/A, Seq ← u (order book
//     update id). TsNs ← T or E; the spot stream carries no time at all, so
//     its quotes take the latest event time this adapter has decoded (0
//     before any): deterministic in replay and never ahead of the trades.
//   - subscription results ({"result":...,"id":...}), error replies
//     ({"code":...,"msg":...}), depthUpdate, depth snapshots, 24hrTicker,
//     24hrMiniTicker, markPriceUpdate and forceOrder → skip.
//   - other event types → ReasonUnknownKind.
//
// aggTrade and trade ids are consecutive per symbol: each goes through its
// own SeqStrict tracker (Stats().Gaps, Missing, Duplicates).
type Binance struct {
	exBase
	klineUpdates bool
	keepDup      bool
	agg, trd     *SeqTracker
	lastTsNs     int64
}

// NewBinance returns a Binance adapter.
func NewBinance(opts BinanceOptions) *Binance {
	b := &Binance{klineUpdates: opts.KlineUpdates, keepDup: opts.KeepDuplicates,
		agg: NewSeqTracker(SeqStrict), trd: NewSeqTracker(SeqStrict)}
	b.init(ExchangeBinance, opts.Symbols, opts.Source)
	return b
}

// Binance message types; LastType returns these constants.
const (
	bnAggTrade       = "aggTrade"
	bnTrade          = "trade"
	bnKline          = "kline"
	bnBookTicker     = "bookTicker"
	bnResult         = "result"
	bnError          = "error"
	bnDepthUpdate    = "depthUpdate"
	bnDepth          = "depth"
	bn24hrTicker     = "24hrTicker"
	bn24hrMiniTicker = "24hrMiniTicker"
	bnMarkPrice      = "markPriceUpdate"
	bnForceOrder     = "forceOrder"
)

var bnSkipped = [...]string{bnDepthUpdate, bn24hrTicker, bn24hrMiniTicker, bnMarkPrice, bnForceOrder}

// Decode implements Adapter. It appends at most one event.
func (b *Binance) Decode(msg []byte, dst []Event) ([]Event, error) {
	v, ok := b.begin(msg)
	if !ok {
		return b.fail(dst)
	}
	if v.Type() != fastjson.TypeObject {
		b.setErr(ReasonMalformed, "", "want a JSON object")
		return b.fail(dst)
	}
	if data := v.Get("data"); data != nil && v.Get("stream") != nil {
		if data.Type() != fastjson.TypeObject {
			b.setErr(ReasonBadType, "data", "want an object")
			return b.fail(dst)
		}
		v = data
	}
	e := v.Get("e")
	if e == nil {
		switch {
		case v.Get("u") != nil && v.Get("b") != nil && v.Get("a") != nil:
			b.lastType = bnBookTicker
			return b.bookTicker(v, dst)
		case v.Get("id") != nil && v.Get("result") != nil:
			return b.skip(dst, bnResult)
		case v.Get("code") != nil && v.Get("msg") != nil:
			return b.skip(dst, bnError)
		case v.Get("lastUpdateId") != nil:
			return b.skip(dst, bnDepth)
		}
		b.setErr(ReasonMissingField, "e", "not a Binance stream message")
		return b.fail(dst)
	}
	if e.Type() != fastjson.TypeString {
		b.setErr(ReasonBadType, "e", "want a string")
		return b.fail(dst)
	}
	typ, _ := e.StringBytes()
	switch string(typ) {
	case bnAggTrade:
		b.lastType = bnAggTrade
		return b.trade(v, dst, "a", 'a', b.agg)
	case bnTrade:
		b.lastType = bnTrade
		return b.trade(v, dst, "t", 't', b.trd)
	case bnKline:
		b.lastType = bnKline
		return b.kline(v, dst)
	case bnBookTicker:
		b.lastType = bnBookTicker
		return b.bookTicker(v, dst)
	}
	for _, s := range bnSkipped {
		if string(typ) == s {
			return b.skip(dst, s)
		}
	}
	b.setErr(ReasonUnknownKind, "e", "not a Binance event type this adapter knows")
	return b.fail(dst)
}

func (b *Binance) trade(v *fastjson.Value, dst []Event, idKey string, kind byte, seqs *SeqTracker) ([]Event, error) {
	symName, ok := b.str(v, "s")
	if !ok {
		return b.fail(dst)
	}
	price, ok := b.price(v, "p")
	if !ok {
		return b.fail(dst)
	}
	qty, ok := b.size(v, "q")
	if !ok {
		return b.fail(dst)
	}
	ts, ok := b.millis(v, "T")
	if !ok {
		return b.fail(dst)
	}
	id, ok := b.uint(v, idKey)
	if !ok {
		return b.fail(dst)
	}
	buyerMaker, ok := b.boolean(v, "m", "m")
	if !ok {
		return b.fail(dst)
	}
	sym, ok := b.symbol(symName, "s")
	if !ok {
		return b.fail(dst)
	}
	switch st, missing := seqs.Observe(sym, id); st {
	case SeqGap:
		b.stats.Gaps++
		b.stats.Missing += missing
	case SeqDuplicate:
		if !b.keepDup {
			b.stats.Duplicates++
			return b.skip(dst, b.lastType)
		}
	}
	b.lastTsNs = max(b.lastTsNs, ts)
	from := len(dst)
	dst = append(dst, Event{
		TsNs:   ts,
		Seq:    id,
		IDHash: exHashID(ExchangeBinance, symName, kind, id),
		Price:  price,
		Volume: qty,
		Symbol: sym,
		Source: b.source,
		Kind:   KindTrade,
		Flags:  exSideFlags(!buyerMaker),
	})
	return b.done(dst, from)
}

func (b *Binance) kline(v *fastjson.Value, dst []Event) ([]Event, error) {
	symName, ok := b.str(v, "s")
	if !ok {
		return b.fail(dst)
	}
	k := v.Get("k")
	if k == nil {
		b.setErr(ReasonMissingField, "k", "")
		return b.fail(dst)
	}
	if k.Type() != fastjson.TypeObject {
		b.setErr(ReasonBadType, "k", "want an object")
		return b.fail(dst)
	}
	closed, ok := b.boolean(k, "x", "k.x")
	if !ok {
		return b.fail(dst)
	}
	var ev Event
	if ev.Open, ok = b.price(k, "o"); !ok {
		return b.fail(dst)
	}
	if ev.High, ok = b.price(k, "h"); !ok {
		return b.fail(dst)
	}
	if ev.Low, ok = b.price(k, "l"); !ok {
		return b.fail(dst)
	}
	if ev.Price, ok = b.price(k, "c"); !ok {
		return b.fail(dst)
	}
	if ev.Volume, ok = b.size(k, "v"); !ok {
		return b.fail(dst)
	}
	start, ok := b.millis(k, "t")
	if !ok {
		return b.fail(dst)
	}
	end, ok := b.millis(k, "T")
	if !ok {
		return b.fail(dst)
	}
	if end < start {
		b.setErr(ReasonBadTimestamp, "k.T", "kline ends before it starts")
		return b.fail(dst)
	}
	if !(ev.Low <= ev.Open && ev.Low <= ev.Price && ev.High >= ev.Open && ev.High >= ev.Price) {
		b.setErr(ReasonBadPrice, "k", "open/close outside low..high")
		return b.fail(dst)
	}
	if !closed && !b.klineUpdates {
		return b.skip(dst, bnKline)
	}
	interval := optStr(k, "i")
	sym, ok := b.symbol(symName, "s")
	if !ok {
		return b.fail(dst)
	}
	ev.TsNs = end
	ev.Aux = uint64((end-start)/1e6 + 1)
	ev.IDHash = exHashBytes(exHashID(ExchangeBinance, symName, 'k', uint64(start)), interval) | 1
	ev.Symbol = sym
	ev.Source = b.source
	ev.Kind = KindBar
	if closed {
		ev.Flags = FlagLast
	}
	b.lastTsNs = max(b.lastTsNs, ev.TsNs)
	from := len(dst)
	dst = append(dst, ev)
	return b.done(dst, from)
}

func (b *Binance) bookTicker(v *fastjson.Value, dst []Event) ([]Event, error) {
	symName, ok := b.str(v, "s")
	if !ok {
		return b.fail(dst)
	}
	ev := Event{Source: b.source, Kind: KindQuote, Flags: FlagHasBid | FlagHasAsk}
	if ev.Bid, ok = b.price(v, "b"); !ok {
		return b.fail(dst)
	}
	if ev.BidSize, ok = b.size(v, "B"); !ok {
		return b.fail(dst)
	}
	if ev.Ask, ok = b.price(v, "a"); !ok {
		return b.fail(dst)
	}
	if ev.AskSize, ok = b.size(v, "A"); !ok {
		return b.fail(dst)
	}
	if ev.Seq, ok = b.uint(v, "u"); !ok {
		return b.fail(dst)
	}
	switch {
	case v.Get("T") != nil:
		ev.TsNs, ok = b.millis(v, "T")
	case v.Get("E") != nil:
		ev.TsNs, ok = b.millis(v, "E")
	default:
		ev.TsNs = b.lastTsNs
	}
	if !ok {
		return b.fail(dst)
	}
	if ev.Symbol, ok = b.symbol(symName, "s"); !ok {
		return b.fail(dst)
	}
	b.lastTsNs = max(b.lastTsNs, ev.TsNs)
	from := len(dst)
	dst = append(dst, ev)
	return b.done(dst, from)
}
