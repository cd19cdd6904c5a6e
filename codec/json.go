package codec

import (
	"errors"

	"github.com/valyala/fastjson"
)

// SignalType is the specification's TradingSignal signal type. A KindSignal
// event carries it in Aux.
type SignalType uint8

// Signal types; the JSON names are serde's (Buy, Sell, Hold, StrongBuy,
// StrongSell), matched ignoring case and '_'.
const (
	SignalUnknown SignalType = iota
	SignalBuy
	SignalSell
	SignalHold
	SignalStrongBuy
	SignalStrongSell
)

var signalNames = [...]string{"unknown", "buy", "sell", "hold", "strong_buy", "strong_sell"}

func (s SignalType) String() string {
	if int(s) < len(signalNames) {
		return signalNames[s]
	}
	return "unknown"
}

// ParseJSON parses one JSON message into ev. The accepted shapes are:
//
// Compact tick, one object with a "type":
//
//	{"type":"trade","symbol":"AAPL","ts":1700000000123456789,"price":189.23,"volume":300,
//	 "bid":189.22,"ask":189.24,"status":"open","id":"t-1"}
//
// The type selects the kind:
//
//   - "trade" → KindTrade: symbol, ts, price (> 0) and volume (>= 0) required.
//   - "quote" → KindQuote: symbol, ts and bid and/or ask required; price
//     (last price; 0 counts as absent) and volume optional.
//   - "bar" → KindBar: symbol, ts, open, high, low, close, volume required;
//     all prices > 0 with low <= open, close <= high; Price is the close.
//   - "news" → KindNews, see below.
//
// Optional on trades and quotes: "bid", "ask" (> 0; set FlagHasBid/FlagHasAsk),
// "bid_size", "ask_size" (>= 0), "status" (open, closed, halted, pre_market,
// after_hours, or the serde names below), "side" ("buy" or "sell": FlagBuy,
// FlagSell) and "id" (string or number; its HashID goes to IDHash). "ts" is
// integer nanoseconds or an RFC 3339 string (see ParseTimestamp). Numbers may
// also be sent as decimal strings ("189.23"); they are parsed exactly with
// ParseDecimal, and "NaN"/"Infinity" in either form are ReasonBadNumber.
//
// News article:
//
//	{"type":"news","id":"n1","ts":...,"source":"...","headline":"...","body":"...","symbols":["AAPL"]}
//
// id, ts and headline are required; source, body and symbols optional. The
// Event is KindNews with the first symbol (0 if none) and IDHash of id; the
// text is in News().
//
// StreamMessage, the specification's envelope in serde's default JSON form
// (recognised by a "payload" or "message_id" key):
//
//	{"message_id":"m1","stream_id":"s1","timestamp":"2024-01-02T14:30:00.123Z","source":"...",
//	 "message_type":"...","payload":{"MarketData":{...}},"metadata":{}}
//
// message_id, timestamp and payload are required; stream_id, source,
// message_type and metadata are not checked. IDHash is HashID(message_id).
// Event time is the payload's "timestamp" when it has one (the time of the
// market event), else the envelope's. The payload is an externally tagged
// enum, an object with exactly one key:
//
//   - MarketData {symbol, timestamp, price, volume, bid, ask, market_status}:
//     KindQuote when price and volume are null, absent or 0 and bid or ask is
//     set (serde writes a quote-only update of a non-optional f64 price as
//     0); otherwise KindTrade, validated as a compact trade. market_status is
//     PreMarket, Open, Closed, AfterHours or Halted (optional).
//   - NewsData {headline, content, source, symbols, sentiment, timestamp, id}:
//     KindNews. headline required; the article's ID is "id" if present, else
//     message_id; its Source is "source" if present, else the envelope's;
//     sentiment is an optional finite number.
//   - TradingSignal {symbol, signal_type, strength, price, timestamp}:
//     KindSignal. symbol and signal_type required; Aux = SignalType, FlagBuy
//     for Buy/StrongBuy, FlagSell for Sell/StrongSell, Volume = strength
//     (optional, finite), Price = price (optional, > 0).
//   - SystemEvent {event_type, symbol, message, severity, timestamp}:
//     KindSystem. event_type required, Aux = HashID(event_type); symbol
//     optional.
//   - CustomEvent: any JSON value: KindCustom. If it is an object, an
//     optional string "event_type" gives Aux = HashID(event_type) and an
//     optional "symbol" the Symbol.
//
// Null is the same as an absent field (serde's None). Unknown keys are
// ignored; a known key given twice is ReasonMalformed. Symbols go through the
// parser's SymbolCache: a name the table refuses (frozen universe, full
// table) is ReasonUnknownSymbol, except in news symbol lists, where it is
// counted in NewsArticle.SymbolsDropped.
//
// Text that is kept or hashed must be valid UTF-8, as JSON requires (RFC
// 8259): a symbol (anywhere, news lists included) that is not, or that holds
// a control character (see ValidSymbolName), and an id, message_id,
// event_type or news text (headline, body/content, source) that is not
// valid UTF-8 make the message ReasonMalformed, naming the field. So
// nothing that reaches an output can make it invalid JSON.
//
// ParseJSON overwrites every field of ev except Seq and IngestNs, which are
// the caller's, and sets Source from the options. On error ev holds partial
// results and must not be used; the error is a *Error owned by the parser,
// valid until its next call, with the Reason and (where one applies) the
// Field; a malformed message carries the byte Offset at which the JSON
// grammar fails. Messages over MaxMessageSize are rejected before parsing.
// Apart from malformed JSON (whose error fastjson builds) and first sightings
// of symbols, ParseJSON does not allocate, rejections included.
func (p *Parser) ParseJSON(msg []byte, ev *Event) error {
	p.newsOK = false
	p.evText = p.evText[:0]
	if len(msg) > p.maxSize {
		return p.fail(ReasonOversize, "", "message larger than MaxMessageSize")
	}
	p.tmp = p.tmp[:0]
	f := &p.top
	if p.noFlat || !p.scanShape(msg, f) && !p.scanFlatLearn(msg, f) {
		// The general path: anything the flat scanner does not take
		// (nesting, escapes, malformed input) goes through fastjson.
		v, err := p.jp.ParseBytes(msg)
		if err != nil {
			return p.failAt(ReasonMalformed, "", "invalid JSON", jsonErrorOffset(msg))
		}
		o := v.GetObject()
		if o == nil {
			return p.fail(ReasonBadType, "", "message is not a JSON object")
		}
		p.collect(f, o)
	}
	if f.dup != jkNone {
		return p.fail(ReasonMalformed, jsonKeyNames[f.dup], "duplicate key")
	}
	seq, ingest := ev.Seq, ev.IngestNs
	*ev = Event{Seq: seq, IngestNs: ingest, Source: p.source}
	if f.seen == jsonPlainTradeKeys && jsonPlainTrade(f) {
		return p.plainTrade(ev, f)
	}
	if f.has(jkPayload) || f.has(jkMessageID) {
		return p.streamMessage(ev, f)
	}
	return p.compact(ev, f)
}

// jsonPlainTradeKeys are the keys of the plainest compact trade, and
// nothing else: {"type":"trade","symbol":..,"ts":..,"price":..,"volume":..}.
const jsonPlainTradeKeys = 1<<jkType | 1<<jkSymbol | 1<<jkTs | 1<<jkPrice | 1<<jkVolume

// jsonPlainTrade reports whether f, holding exactly jsonPlainTradeKeys, is
// a trade whose ts, price and volume the flat scanner has already read as
// numbers (jsonNum): the message plainTrade takes. It has no side effects,
// so that anything else goes down the general path untouched.
func jsonPlainTrade(f *jsonFields) bool {
	typ, sym, ts := &f.vals[jkType], &f.vals[jkSymbol], &f.vals[jkTs]
	price, vol := &f.vals[jkPrice], &f.vals[jkVolume]
	return f.present == jsonPlainTradeKeys &&
		typ.t == fastjson.TypeString && string(typ.raw) == "trade" &&
		sym.t == fastjson.TypeString &&
		ts.t == fastjson.TypeNumber && ts.num.kind&jsonNumInt != 0 &&
		price.t == fastjson.TypeNumber && price.num.kind&jsonNumFloat != 0 &&
		vol.t == fastjson.TypeNumber && vol.num.kind&jsonNumFloat != 0
}

// plainTrade is compact and tick for the message jsonPlainTrade accepts,
// without their lookups of keys it does not have: the same checks in the
// same order (the symbol is interned before the price and volume are
// checked, as tick does), so the same event or the same error. The fuzz
// test's oracle, the fastjson path, never takes it.
func (p *Parser) plainTrade(ev *Event, f *jsonFields) error {
	ev.Kind = KindTrade
	ev.TsNs = f.vals[jkTs].num.i
	var err error
	if ev.Symbol, err = p.symbol(f.vals[jkSymbol].raw, "symbol"); err != nil {
		return err
	}
	price, volume := f.vals[jkPrice].num.f, f.vals[jkVolume].num.f
	if err := p.checkPrice(price, "price"); err != nil {
		return err
	}
	if err := p.checkVolume(volume, "volume"); err != nil {
		return err
	}
	ev.Price, ev.Volume = price, volume
	return nil
}

// jsonKey names the object keys any shape reads. Values of keys that a shape
// does not use are ignored.
type jsonKey uint8

const (
	jkNone jsonKey = iota
	jkType
	jkSymbol
	jkTs
	jkTimestamp
	jkPrice
	jkVolume
	jkBid
	jkAsk
	jkBidSize
	jkAskSize
	jkStatus
	jkMarketStatus
	jkID
	jkMessageID
	jkSide
	jkOpen
	jkHigh
	jkLow
	jkClose
	jkSource
	jkHeadline
	jkBody
	jkContent
	jkSymbols
	jkSentiment
	jkPayload
	jkSignalType
	jkStrength
	jkEventType
	jkStreamID
	jkMessageType
	jkMetadata
	jkCount
)

// jsonKeyNames are the keys as they appear in JSON, used as Error.Field.
var jsonKeyNames = [jkCount]string{
	jkNone:         "",
	jkType:         "type",
	jkSymbol:       "symbol",
	jkTs:           "ts",
	jkTimestamp:    "timestamp",
	jkPrice:        "price",
	jkVolume:       "volume",
	jkBid:          "bid",
	jkAsk:          "ask",
	jkBidSize:      "bid_size",
	jkAskSize:      "ask_size",
	jkStatus:       "status",
	jkMarketStatus: "market_status",
	jkID:           "id",
	jkMessageID:    "message_id",
	jkSide:         "side",
	jkOpen:         "open",
	jkHigh:         "high",
	jkLow:          "low",
	jkClose:        "close",
	jkSource:       "source",
	jkHeadline:     "headline",
	jkBody:         "body",
	jkContent:      "content",
	jkSymbols:      "symbols",
	jkSentiment:    "sentiment",
	jkPayload:      "payload",
	jkSignalType:   "signal_type",
	jkStrength:     "strength",
	jkEventType:    "event_type",
	jkStreamID:     "stream_id",
	jkMessageType:  "message_type",
	jkMetadata:     "metadata",
}

// jsonKeyOf maps a key to its slot; the switch on string(k) does not allocate.
func jsonKeyOf(k []byte) jsonKey {
	switch string(k) {
	case "type":
		return jkType
	case "symbol":
		return jkSymbol
	case "ts":
		return jkTs
	case "timestamp":
		return jkTimestamp
	case "price":
		return jkPrice
	case "volume":
		return jkVolume
	case "bid":
		return jkBid
	case "ask":
		return jkAsk
	case "bid_size":
		return jkBidSize
	case "ask_size":
		return jkAskSize
	case "status":
		return jkStatus
	case "market_status":
		return jkMarketStatus
	case "id":
		return jkID
	case "message_id":
		return jkMessageID
	case "side":
		return jkSide
	case "open":
		return jkOpen
	case "high":
		return jkHigh
	case "low":
		return jkLow
	case "close":
		return jkClose
	case "source":
		return jkSource
	case "headline":
		return jkHeadline
	case "body":
		return jkBody
	case "content":
		return jkContent
	case "symbols":
		return jkSymbols
	case "sentiment":
		return jkSentiment
	case "payload":
		return jkPayload
	case "signal_type":
		return jkSignalType
	case "strength":
		return jkStrength
	case "event_type":
		return jkEventType
	case "stream_id":
		return jkStreamID
	case "message_type":
		return jkMessageType
	case "metadata":
		return jkMetadata
	}
	return jkNone
}

// jsonVal is the value of one known key: its JSON type, the text of a
// string (unescaped) or number, and for objects and arrays the fastjson
// value. The slices point into the message, fastjson's copy of it or p.tmp,
// and are valid until the next ParseJSON.
type jsonVal struct {
	raw []byte
	v   *fastjson.Value
	t   fastjson.Type
	num jsonNum // a number's value, when the flat scanner read it (else kind 0)
}

// jsonFields holds the values of one object's known keys, filled either by
// the flat scanner or from a fastjson object. A JSON null counts as absent.
// Only the bit masks are reset per object; vals[k] is valid when present has
// bit k.
type jsonFields struct {
	present uint64 // keys with a non-null value
	seen    uint64 // keys that occurred, null included (duplicate detection)
	dup     jsonKey
	vals    [jkCount]jsonVal
}

func (f *jsonFields) reset() { f.present, f.seen, f.dup = 0, 0, jkNone }

func (f *jsonFields) has(k jsonKey) bool { return f.present&(1<<k) != 0 }

// jsonFields' masks hold one bit per key.
var _ [64 - jkCount]struct{}

// add records key k; a repeated key is remembered in dup (the first one).
// It reports whether it stored the value in vals[k].
func (f *jsonFields) add(k jsonKey, t fastjson.Type, raw []byte, v *fastjson.Value) bool {
	bit := uint64(1) << k
	if f.seen&bit != 0 {
		if f.dup == jkNone {
			f.dup = k
		}
		return false
	}
	f.seen |= bit
	if t != fastjson.TypeNull {
		f.present |= bit
		f.vals[k] = jsonVal{raw: raw, v: v, t: t}
		return true
	}
	return false
}

// collect fills f from o in one pass over its keys. Number text is copied
// to p.tmp (fastjson keeps it unexported); p.tmp only grows for messages
// with more number text than ever before, bounded by MaxMessageSize.
func (p *Parser) collect(f *jsonFields, o *fastjson.Object) {
	f.reset()
	o.Visit(func(k []byte, v *fastjson.Value) {
		id := jsonKeyOf(k)
		if id == jkNone {
			return
		}
		t := v.Type()
		var raw []byte
		switch t {
		case fastjson.TypeString:
			raw, _ = v.StringBytes()
		case fastjson.TypeNumber:
			n := len(p.tmp)
			p.tmp = v.MarshalTo(p.tmp)
			raw = p.tmp[n:len(p.tmp):len(p.tmp)]
		}
		f.add(id, t, raw, v)
	})
}

// scalar returns the text of f's key k if it is a string or a number.
func (p *Parser) scalar(f *jsonFields, k jsonKey, want string) ([]byte, bool, error) {
	if !f.has(k) {
		return nil, false, nil
	}
	v := &f.vals[k]
	if v.t != fastjson.TypeString && v.t != fastjson.TypeNumber {
		return nil, false, p.fail(ReasonBadType, jsonKeyNames[k], want)
	}
	return v.raw, true, nil
}

// num returns the number in f's key k, given as a JSON number or a decimal
// string.
func (p *Parser) num(f *jsonFields, k jsonKey) (x float64, ok bool, err error) {
	text, ok, err := p.scalar(f, k, "want a number")
	if !ok {
		return 0, false, err
	}
	if n := &f.vals[k].num; n.kind&jsonNumFloat != 0 {
		return n.f, true, nil
	}
	x, e := ParseDecimal(text)
	if e != nil {
		return 0, false, p.failFrom(e.(*Error), jsonKeyNames[k])
	}
	return x, true, nil
}

// reqNum is num for a required key.
func (p *Parser) reqNum(f *jsonFields, k jsonKey) (float64, error) {
	x, ok, err := p.num(f, k)
	if err == nil && !ok {
		err = p.fail(ReasonMissingField, jsonKeyNames[k], "")
	}
	return x, err
}

// str returns the string in f's key k.
func (p *Parser) str(f *jsonFields, k jsonKey) ([]byte, bool, error) {
	if !f.has(k) {
		return nil, false, nil
	}
	if v := &f.vals[k]; v.t == fastjson.TypeString {
		return v.raw, true, nil
	}
	return nil, false, p.fail(ReasonBadType, jsonKeyNames[k], "want a string")
}

// text is str for a name, id or text that is kept or hashed: it must be
// valid UTF-8 (see checkText).
func (p *Parser) text(f *jsonFields, k jsonKey) ([]byte, bool, error) {
	b, ok, err := p.str(f, k)
	if ok {
		err = p.checkText(b, jsonKeyNames[k])
	}
	return b, ok, err
}

// reqText is text for a required key.
func (p *Parser) reqText(f *jsonFields, k jsonKey) ([]byte, error) {
	b, ok, err := p.text(f, k)
	if err == nil && !ok {
		err = p.fail(ReasonMissingField, jsonKeyNames[k], "")
	}
	return b, err
}

// reqStr is str for a required key.
func (p *Parser) reqStr(f *jsonFields, k jsonKey) ([]byte, error) {
	b, ok, err := p.str(f, k)
	if err == nil && !ok {
		err = p.fail(ReasonMissingField, jsonKeyNames[k], "")
	}
	return b, err
}

// ts returns the timestamp in f's key k: integer nanoseconds (a JSON integer
// or a digit string) or an RFC 3339 string.
func (p *Parser) ts(f *jsonFields, k jsonKey) (int64, bool, error) {
	text, ok, err := p.scalar(f, k, "want a number or a string")
	if !ok {
		return 0, false, err
	}
	if n := &f.vals[k].num; n.kind&jsonNumInt != 0 {
		return n.i, true, nil
	}
	t, e := ParseTimestamp(text)
	if e != nil {
		return 0, false, p.failFrom(e.(*Error), jsonKeyNames[k])
	}
	return t, true, nil
}

// reqTs is ts for a required key.
func (p *Parser) reqTs(f *jsonFields, k jsonKey) (int64, error) {
	t, ok, err := p.ts(f, k)
	if err == nil && !ok {
		err = p.fail(ReasonMissingField, jsonKeyNames[k], "")
	}
	return t, err
}

// idHash returns HashID of f's key k, a string or a number (hashed as written).
func (p *Parser) idHash(f *jsonFields, k jsonKey) (uint64, bool, error) {
	text, ok, err := p.scalar(f, k, "want a string or a number")
	if !ok {
		return 0, false, err
	}
	h, ascii := hashIDASCII(text)
	if !ascii {
		if err := p.checkText(text, jsonKeyNames[k]); err != nil {
			return 0, false, err
		}
	}
	return h, true, nil
}

// sym interns the symbol in f's key k; required reports a missing key.
func (p *Parser) sym(f *jsonFields, k jsonKey, required bool) (Symbol, error) {
	b, ok, err := p.str(f, k)
	if err != nil {
		return 0, err
	}
	if !ok {
		if required {
			return 0, p.fail(ReasonMissingField, jsonKeyNames[k], "")
		}
		return 0, nil
	}
	return p.symbol(b, jsonKeyNames[k])
}

// status parses a market status: the compact names (open, closed, halted,
// pre_market, after_hours) and serde's (Open, Closed, Halted, PreMarket,
// AfterHours), ignoring case, '_' and '-'.
func (p *Parser) status(f *jsonFields, k jsonKey) (Status, error) {
	b, ok, err := p.str(f, k)
	if err != nil || !ok {
		return StatusUnknown, err
	}
	if len(b) == 4 && string(b) == "open" {
		return StatusOpen, nil // the usual value, without folding
	}
	var buf [16]byte
	n, fits := jsonFoldName(&buf, b)
	if fits {
		switch string(buf[:n]) {
		case "open":
			return StatusOpen, nil
		case "closed":
			return StatusClosed, nil
		case "halted":
			return StatusHalted, nil
		case "premarket":
			return StatusPreMarket, nil
		case "afterhours":
			return StatusAfterHours, nil
		case "unknown":
			return StatusUnknown, nil
		}
	}
	return StatusUnknown, p.fail(ReasonUnknownKind, jsonKeyNames[k], "unknown market status")
}

// jsonFoldName lower-cases ASCII b into buf, dropping '_', '-' and ' ';
// fits is false if b does not fit.
func jsonFoldName(buf *[16]byte, b []byte) (n int, fits bool) {
	for _, c := range b {
		switch {
		case c == '_' || c == '-' || c == ' ':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if n == len(buf) {
			return 0, false
		}
		buf[n] = c
		n++
	}
	return n, true
}

// side parses an aggressor side into FlagBuy / FlagSell.
func (p *Parser) side(f *jsonFields) (Flags, error) {
	b, ok, err := p.str(f, jkSide)
	if err != nil || !ok {
		return 0, err
	}
	switch {
	case decEqualFold(b, "buy"):
		return FlagBuy, nil
	case decEqualFold(b, "sell"):
		return FlagSell, nil
	}
	return 0, p.fail(ReasonUnknownKind, "side", "side must be buy or sell")
}

func (p *Parser) compact(ev *Event, f *jsonFields) error {
	typ, err := p.reqStr(f, jkType)
	if err != nil {
		return err
	}
	switch string(typ) {
	case "trade":
		ev.Kind = KindTrade
	case "quote":
		ev.Kind = KindQuote
	case "bar":
		ev.Kind = KindBar
	case "news":
		return p.compactNews(ev, f)
	default:
		return p.fail(ReasonUnknownKind, "type", "type must be trade, quote, bar or news")
	}
	if ev.TsNs, err = p.reqTs(f, jkTs); err != nil {
		return err
	}
	if ev.IDHash, _, err = p.idHash(f, jkID); err != nil {
		return err
	}
	if ev.Kind == KindBar {
		return p.bar(ev, f)
	}
	return p.tick(ev, f, jkStatus)
}

// tick fills a trade or quote from f; ev.Kind is KindTrade, KindQuote, or
// KindInvalid to decide by the MarketData rule (see ParseJSON).
func (p *Parser) tick(ev *Event, f *jsonFields, statusKey jsonKey) error {
	var err error
	if ev.Symbol, err = p.sym(f, jkSymbol, true); err != nil {
		return err
	}
	price, hasPrice, err := p.num(f, jkPrice)
	if err != nil {
		return err
	}
	volume, hasVolume, err := p.num(f, jkVolume)
	if err != nil {
		return err
	}
	bid, hasBid, err := p.num(f, jkBid)
	if err != nil {
		return err
	}
	ask, hasAsk, err := p.num(f, jkAsk)
	if err != nil {
		return err
	}
	if ev.Kind == KindInvalid {
		ev.Kind = KindTrade
		if (hasBid || hasAsk) && price == 0 && volume == 0 {
			ev.Kind = KindQuote
		}
	}
	switch ev.Kind {
	case KindTrade:
		if !hasPrice {
			return p.fail(ReasonMissingField, "price", "")
		}
		if err := p.checkPrice(price, "price"); err != nil {
			return err
		}
		if !hasVolume {
			return p.fail(ReasonMissingField, "volume", "")
		}
	case KindQuote:
		if !hasBid && !hasAsk {
			return p.fail(ReasonMissingField, "bid", "a quote needs bid and/or ask")
		}
		if hasPrice && price != 0 {
			if err := p.checkPrice(price, "price"); err != nil {
				return err
			}
		}
	}
	if err := p.checkVolume(volume, "volume"); err != nil {
		return err
	}
	ev.Price, ev.Volume = price, volume
	if hasBid {
		if err := p.checkPrice(bid, "bid"); err != nil {
			return err
		}
		ev.Bid = bid
		ev.Flags |= FlagHasBid
	}
	if hasAsk {
		if err := p.checkPrice(ask, "ask"); err != nil {
			return err
		}
		ev.Ask = ask
		ev.Flags |= FlagHasAsk
	}
	if ev.BidSize, _, err = p.num(f, jkBidSize); err != nil {
		return err
	}
	if err := p.checkVolume(ev.BidSize, "bid_size"); err != nil {
		return err
	}
	if ev.AskSize, _, err = p.num(f, jkAskSize); err != nil {
		return err
	}
	if err := p.checkVolume(ev.AskSize, "ask_size"); err != nil {
		return err
	}
	if ev.Status, err = p.status(f, statusKey); err != nil {
		return err
	}
	side, err := p.side(f)
	ev.Flags |= side
	return err
}

// bar fills an OHLCV bar from f.
func (p *Parser) bar(ev *Event, f *jsonFields) error {
	var err error
	if ev.Symbol, err = p.sym(f, jkSymbol, true); err != nil {
		return err
	}
	keys := [4]jsonKey{jkOpen, jkHigh, jkLow, jkClose}
	var ohlc [4]float64
	for i, k := range keys {
		if ohlc[i], err = p.reqNum(f, k); err != nil {
			return err
		}
		if err = p.checkPrice(ohlc[i], jsonKeyNames[k]); err != nil {
			return err
		}
	}
	open, high, low, cls := ohlc[0], ohlc[1], ohlc[2], ohlc[3]
	if low > high || open < low || open > high || cls < low || cls > high {
		return p.fail(ReasonBadPrice, "", "bar needs low <= open, close <= high")
	}
	if ev.Volume, err = p.reqNum(f, jkVolume); err != nil {
		return err
	}
	if err = p.checkVolume(ev.Volume, "volume"); err != nil {
		return err
	}
	ev.Open, ev.High, ev.Low, ev.Price = open, high, low, cls
	ev.Status, err = p.status(f, jkStatus)
	return err
}

// compactNews fills a news event and p.news from the top-level object.
func (p *Parser) compactNews(ev *Event, f *jsonFields) error {
	ev.Kind = KindNews
	a := &p.news
	a.reset(&p.newsSyms)
	var err error
	if a.ID, err = p.reqText(f, jkID); err != nil {
		return err
	}
	ev.IDHash = HashID(a.ID)
	if ev.TsNs, err = p.reqTs(f, jkTs); err != nil {
		return err
	}
	if a.Headline, err = p.reqText(f, jkHeadline); err != nil {
		return err
	}
	if a.Source, _, err = p.text(f, jkSource); err != nil {
		return err
	}
	if a.Body, _, err = p.text(f, jkBody); err != nil {
		return err
	}
	if err := p.newsSymbols(ev, f); err != nil {
		return err
	}
	return p.newsText(ev, nil, nil)
}

// newsSymbols reads the optional "symbols" array of f into p.news, sets
// ev.Symbol to the first one kept, makes the article's text parser-owned and
// marks the article valid.
func (p *Parser) newsSymbols(ev *Event, f *jsonFields) error {
	a := &p.news
	if f.has(jkSymbols) {
		v := &f.vals[jkSymbols]
		if v.t != fastjson.TypeArray {
			return p.fail(ReasonBadType, "symbols", "want an array of strings")
		}
		for _, s := range v.v.GetArray() {
			if s.Type() != fastjson.TypeString {
				return p.fail(ReasonBadType, "symbols", "want an array of strings")
			}
			name, _ := s.StringBytes()
			if len(a.Symbols) == MaxNewsSymbols {
				a.SymbolsDropped++
				continue
			}
			id, err := p.syms.Intern(name)
			if err == ErrSymbolNotInterned {
				return err // LookupOnly: not a rejection
			}
			if errors.Is(err, ErrInvalidSymbol) {
				return p.fail(ReasonMalformed, "symbols", symbolInvalidDetail)
			}
			if err != nil {
				a.SymbolsDropped++
				continue
			}
			a.addSymbol(id)
		}
	}
	if len(a.Symbols) > 0 {
		ev.Symbol = a.Symbols[0]
	}
	p.keepNewsText()
	p.newsOK = true
	return nil
}

// keepNewsText copies the article's text into the parser's news buffer: on
// the flat path it points into the caller's message, which the caller may
// reuse before it reads the article. The buffer grows only for an article
// larger than any before (bounded by MaxMessageSize).
func (p *Parser) keepNewsText() {
	a := &p.news
	if need := len(a.ID) + len(a.Source) + len(a.Headline) + len(a.Body); cap(p.newsBuf) < need {
		p.newsBuf = make([]byte, 0, max(need, 4<<10))
	}
	b := p.newsBuf[:0]
	keep := func(s []byte) []byte {
		if s == nil {
			return nil
		}
		n := len(b)
		b = append(b, s...)
		return b[n:len(b):len(b)]
	}
	a.ID = keep(a.ID)
	a.Source = keep(a.Source)
	a.Headline = keep(a.Headline)
	a.Body = keep(a.Body)
	p.newsBuf = b
}

// Payload variants of the StreamMessage enum.
const (
	jsonVariantNone = iota
	jsonVariantMarketData
	jsonVariantNewsData
	jsonVariantTradingSignal
	jsonVariantSystemEvent
	jsonVariantCustomEvent
	jsonVariantUnknown
)

func (p *Parser) streamMessage(ev *Event, f *jsonFields) error {
	id, err := p.reqText(f, jkMessageID)
	if err != nil {
		return err
	}
	ev.IDHash = HashID(id)
	envTs, err := p.reqTs(f, jkTimestamp)
	if err != nil {
		return err
	}
	ev.TsNs = envTs
	if !f.has(jkPayload) {
		return p.fail(ReasonMissingField, "payload", "")
	}
	pv := &f.vals[jkPayload]
	if pv.t != fastjson.TypeObject {
		return p.fail(ReasonBadType, "payload", "want an object with one variant key")
	}
	po := pv.v.GetObject()
	if po.Len() != 1 {
		return p.fail(ReasonMalformed, "payload", "payload must hold exactly one variant")
	}
	variant := jsonVariantNone
	var inner *fastjson.Value
	po.Visit(func(k []byte, v *fastjson.Value) {
		inner = v
		switch string(k) {
		case "MarketData":
			variant = jsonVariantMarketData
		case "NewsData":
			variant = jsonVariantNewsData
		case "TradingSignal":
			variant = jsonVariantTradingSignal
		case "SystemEvent":
			variant = jsonVariantSystemEvent
		case "CustomEvent":
			variant = jsonVariantCustomEvent
		default:
			variant = jsonVariantUnknown
		}
	})
	if variant == jsonVariantUnknown || inner == nil {
		return p.fail(ReasonUnknownKind, "payload", "unknown payload variant")
	}
	io := inner.GetObject()
	if variant == jsonVariantCustomEvent {
		ev.Kind = KindCustom
		if io == nil {
			// any JSON value is a valid CustomEvent
			return p.eventText(ev, f, id, inner, jkPayload)
		}
	} else if io == nil {
		return p.fail(ReasonBadType, "payload", "want an object")
	}
	g := &p.sub
	p.collect(g, io)
	if g.dup != jkNone {
		return p.fail(ReasonMalformed, jsonKeyNames[g.dup], "duplicate key")
	}
	t, ok, err := p.ts(g, jkTimestamp)
	if err != nil {
		return err
	}
	if ok {
		ev.TsNs = t
	}

	switch variant {
	case jsonVariantMarketData:
		ev.Kind = KindInvalid // decided by tick
		return p.tick(ev, g, jkMarketStatus)
	case jsonVariantNewsData:
		return p.newsData(ev, f, g, id)
	case jsonVariantTradingSignal:
		if err := p.signal(ev, g); err != nil {
			return err
		}
	case jsonVariantSystemEvent:
		ev.Kind = KindSystem
		et, err := p.reqText(g, jkEventType)
		if err != nil {
			return err
		}
		ev.Aux = HashID(et)
		if ev.Symbol, err = p.sym(g, jkSymbol, false); err != nil {
			return err
		}
	default: // CustomEvent object
		et, _, err := p.text(g, jkEventType)
		if err != nil {
			return err
		}
		ev.Aux = HashID(et)
		if ev.Symbol, err = p.sym(g, jkSymbol, false); err != nil {
			return err
		}
	}
	return p.eventText(ev, f, id, inner, jkPayload)
}

// newsData fills a news event from a NewsData payload g in the envelope f;
// messageID is the envelope's id, the article id when the payload has none.
func (p *Parser) newsData(ev *Event, f, g *jsonFields, messageID []byte) error {
	ev.Kind = KindNews
	a := &p.news
	a.reset(&p.newsSyms)
	var err error
	var ok bool
	if a.ID, ok, err = p.text(g, jkID); err != nil {
		return err
	}
	if !ok {
		a.ID = messageID
	}
	if a.Headline, err = p.reqText(g, jkHeadline); err != nil {
		return err
	}
	if a.Body, _, err = p.text(g, jkContent); err != nil {
		return err
	}
	if a.Source, ok, err = p.text(g, jkSource); err != nil {
		return err
	}
	if !ok {
		if a.Source, _, err = p.text(f, jkSource); err != nil {
			return err
		}
	}
	if a.Sentiment, a.HasSentiment, err = p.num(g, jkSentiment); err != nil {
		return err
	}
	if err := p.newsSymbols(ev, g); err != nil {
		return err
	}
	return p.newsText(ev, f, messageID)
}

// signal fills a KindSignal event from a TradingSignal payload g.
func (p *Parser) signal(ev *Event, g *jsonFields) error {
	ev.Kind = KindSignal
	var err error
	if ev.Symbol, err = p.sym(g, jkSymbol, true); err != nil {
		return err
	}
	st, err := p.reqStr(g, jkSignalType)
	if err != nil {
		return err
	}
	var buf [16]byte
	n, fits := jsonFoldName(&buf, st)
	var sig SignalType
	if fits {
		switch string(buf[:n]) {
		case "buy":
			sig, ev.Flags = SignalBuy, FlagBuy
		case "sell":
			sig, ev.Flags = SignalSell, FlagSell
		case "hold":
			sig = SignalHold
		case "strongbuy":
			sig, ev.Flags = SignalStrongBuy, FlagBuy
		case "strongsell":
			sig, ev.Flags = SignalStrongSell, FlagSell
		}
	}
	if sig == SignalUnknown {
		return p.fail(ReasonUnknownKind, "signal_type", "unknown signal type")
	}
	ev.Aux = uint64(sig)
	if ev.Volume, _, err = p.num(g, jkStrength); err != nil {
		return err
	}
	price, ok, err := p.num(g, jkPrice)
	if err != nil {
		return err
	}
	if ok {
		if err := p.checkPrice(price, "price"); err != nil {
			return err
		}
		ev.Price = price
	}
	return nil
}
