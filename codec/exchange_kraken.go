package codec

import (
	"github.com/valyala/fastjson"
)

// KrakenOptions configures a Kraken adapter.
type KrakenOptions struct {
	Symbols *SymbolCache // interns pairs ("XBT/USD"); nil: a private table
	Source  uint16       // stamped into Event.Source
}

// Kraken decodes Kraken WebSocket API v1 public messages.
//
// Mapping:
//
//   - trade channel, [channelID, [[price, volume, time, side, orderType,
//     misc], ...], "trade", "PAIR"] → one KindTrade per inner array, in
//     order. Price/Volume ← the decimal strings, TsNs ← time
//     ("seconds.fraction", converted exactly), side "b" → FlagBuy, "s" →
//     FlagSell (Kraken's side is the taker's), the message's last trade
//     carries FlagLast. Kraken v1 trades have no id: IDHash is a hash of
//     the pair, the trade's raw fields and its index in the message, which
//     is stable across re-reads of the same message (dedup of replays) but
//     cannot tell two genuinely identical trades in different messages
//     apart. Seq is 0 (Kraken v1 carries no sequence).
//   - heartbeat, systemStatus, subscriptionStatus, ping, pong events →
//     skip; book, ticker, spread and ohlc channel arrays → skip.
//   - anything else → ReasonUnknownKind or ReasonMalformed.
//
// A message with more than MaxEventsPerMessage trades is rejected whole
// (ReasonOversize).
type Kraken struct {
	exBase
}

// NewKraken returns a Kraken adapter.
func NewKraken(opts KrakenOptions) *Kraken {
	k := &Kraken{}
	k.init(ExchangeKraken, opts.Symbols, opts.Source)
	return k
}

// Kraken message types; LastType returns these constants.
const (
	krTrade              = "trade"
	krHeartbeat          = "heartbeat"
	krSystemStatus       = "systemStatus"
	krSubscriptionStatus = "subscriptionStatus"
	krPing               = "ping"
	krPong               = "pong"
	krBook               = "book"
	krTicker             = "ticker"
	krSpread             = "spread"
	krOHLC               = "ohlc"
)

var krSkippedEvents = [...]string{krHeartbeat, krSystemStatus, krSubscriptionStatus, krPing, krPong}

// krSkippedChannels are matched as prefixes: "book-10", "ohlc-5".
var krSkippedChannels = [...]string{krBook, krTicker, krSpread, krOHLC}

// Decode implements Adapter. It appends up to MaxEventsPerMessage events.
func (k *Kraken) Decode(msg []byte, dst []Event) ([]Event, error) {
	v, ok := k.begin(msg)
	if !ok {
		return k.fail(dst)
	}
	switch v.Type() {
	case fastjson.TypeObject:
		ev, ok := k.str(v, "event")
		if !ok {
			return k.fail(dst)
		}
		for _, s := range krSkippedEvents {
			if string(ev) == s {
				return k.skip(dst, s)
			}
		}
		k.setErr(ReasonUnknownKind, "event", "not a Kraken event this adapter knows")
		return k.fail(dst)
	case fastjson.TypeArray:
	default:
		k.setErr(ReasonMalformed, "", "want a JSON object or array")
		return k.fail(dst)
	}
	arr, _ := v.Array()
	if len(arr) < 4 || arr[len(arr)-2].Type() != fastjson.TypeString || arr[len(arr)-1].Type() != fastjson.TypeString {
		k.setErr(ReasonMalformed, "", `want [channelID, data..., "channel", "pair"]`)
		return k.fail(dst)
	}
	channel, _ := arr[len(arr)-2].StringBytes()
	pair, _ := arr[len(arr)-1].StringBytes()
	if string(channel) != krTrade {
		for _, s := range krSkippedChannels {
			if len(channel) >= len(s) && string(channel[:len(s)]) == s {
				return k.skip(dst, s)
			}
		}
		k.setErr(ReasonUnknownKind, "channel", "not a Kraken channel this adapter knows")
		return k.fail(dst)
	}
	k.lastType = krTrade
	if len(arr) != 4 || arr[1].Type() != fastjson.TypeArray {
		k.setErr(ReasonMalformed, "", "want [channelID, [trades], \"trade\", pair]")
		return k.fail(dst)
	}
	trades, _ := arr[1].Array()
	if len(trades) > MaxEventsPerMessage {
		k.setErr(ReasonOversize, "", "more trades than MaxEventsPerMessage")
		return k.fail(dst)
	}
	if len(trades) == 0 {
		return k.skip(dst, krTrade)
	}
	sym, ok := k.symbol(pair, "pair")
	if !ok {
		return k.fail(dst)
	}
	from := len(dst)
	for i, t := range trades {
		ev, ok := k.trade(t, pair, i)
		if !ok {
			return k.fail(dst[:from])
		}
		ev.Symbol = sym
		dst = append(dst, ev)
	}
	dst[len(dst)-1].Flags |= FlagLast
	return k.done(dst, from)
}

// trade decodes one [price, volume, time, side, orderType, misc] array.
func (k *Kraken) trade(t *fastjson.Value, pair []byte, index int) (Event, bool) {
	if t.Type() != fastjson.TypeArray {
		k.setErr(ReasonBadType, "trade", "want an array")
		return Event{}, false
	}
	f, _ := t.Array()
	if len(f) < 4 {
		k.setErr(ReasonMissingField, "trade", "want [price, volume, time, side, ...]")
		return Event{}, false
	}
	for i := 0; i < 4; i++ {
		if f[i].Type() != fastjson.TypeString {
			k.setErr(ReasonBadType, "trade", "price, volume, time and side must be strings")
			return Event{}, false
		}
	}
	ps, _ := f[0].StringBytes()
	vs, _ := f[1].StringBytes()
	ts, _ := f[2].StringBytes()
	ss, _ := f[3].StringBytes()
	ev := Event{Source: k.source, Kind: KindTrade}
	var ok bool
	var err error
	if ev.Price, err = ParseDecimal(ps); err != nil {
		k.setErr(ReasonBadNumber, "price", "not a decimal")
		return Event{}, false
	}
	if !(ev.Price > 0) {
		k.setErr(ReasonBadPrice, "price", "price must be > 0")
		return Event{}, false
	}
	if ev.Volume, err = ParseDecimal(vs); err != nil {
		k.setErr(ReasonBadNumber, "volume", "not a decimal")
		return Event{}, false
	}
	if ev.Volume < 0 {
		k.setErr(ReasonBadVolume, "volume", "volume must be >= 0")
		return Event{}, false
	}
	if ev.TsNs, ok = exParseUnixFrac(ts); !ok {
		k.setErr(ReasonBadTimestamp, "time", `want "seconds.fraction"`)
		return Event{}, false
	}
	switch string(ss) {
	case "b":
		ev.Flags = FlagBuy
	case "s":
		ev.Flags = FlagSell
	default:
		k.setErr(ReasonBadType, "side", `want "b" or "s"`)
		return Event{}, false
	}
	h := exHashString(exFNVOffset, ExchangeKraken)
	h = exHashUint(h, 0xff)
	h = exHashBytes(h, pair)
	for _, s := range [...][]byte{ps, vs, ts, ss} {
		h = exHashUint(exHashBytes(h, s), 0xff)
	}
	ev.IDHash = exHashUint(h, uint64(index)) | 1
	return ev, true
}
