// Package codec owns qstream's wire formats: the canonical Event every feed
// parses into, JSON (compact ticks and the specification's StreamMessage),
// CSV ticks, exchange adapters, the fixed-size binary frame and symbol
// interning. It knows nothing of execution or transport.
package codec

import (
	"unsafe"
)

// Kind says what an Event carries.
type Kind uint8

// Kinds of event. The zero value is invalid so that an Event that was never
// filled in is caught by validation.
const (
	KindInvalid   Kind = iota
	KindTrade          // a print: Price and Volume are the trade
	KindQuote          // top of book: Bid/Ask (and sizes); not a trade
	KindBar            // an OHLCV bar: Open, High, Low, Price (close), Volume
	KindBook           // a price-level update: Price, Volume (size), Flags side
	KindNews           // a news article; text lives in a NewsArticle beside it
	KindSignal         // the specification's TradingSignal
	KindSystem         // the specification's SystemEvent / venue system event
	KindCustom         // the specification's CustomEvent
	KindStatus         // trading status / halt for a symbol
	KindWatermark      // engine-internal: event time has advanced to TsNs
	KindText           // a chunk of the text of the event before it (see text.go)
	kindCount
)

var kindNames = [kindCount]string{
	KindInvalid:   "invalid",
	KindTrade:     "trade",
	KindQuote:     "quote",
	KindBar:       "bar",
	KindBook:      "book",
	KindNews:      "news",
	KindSignal:    "signal",
	KindSystem:    "system",
	KindCustom:    "custom",
	KindStatus:    "status",
	KindWatermark: "watermark",
	KindText:      "text",
}

// String returns the lower-case name used in JSON output and stats.
func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return "invalid"
}

// KindCount is the number of defined kinds; per-kind counters index by Kind.
const KindCount = int(kindCount)

// Status is the market status carried by a tick (the specification's
// MarketStatus).
type Status uint8

// Market statuses.
const (
	StatusUnknown Status = iota
	StatusPreMarket
	StatusOpen
	StatusClosed
	StatusAfterHours
	StatusHalted
	statusCount
)

var statusNames = [statusCount]string{"unknown", "pre_market", "open", "closed", "after_hours", "halted"}

func (s Status) String() string {
	if s < statusCount {
		return statusNames[s]
	}
	return "unknown"
}

// Flags are per-event bits.
type Flags uint8

// Event flags.
const (
	FlagHasBid Flags = 1 << iota // Bid is set
	FlagHasAsk                   // Ask is set
	FlagBuy                      // aggressor (or book side) is the buyer
	FlagSell                     // aggressor (or book side) is the seller
	FlagReplay                   // the event was re-read from a WAL or capture
	FlagLast                     // last event of a batch that the source groups (IEX packet, Coinbase last_match)
	// FlagBroadcast: the engine hands the event (and its text) to every
	// shard, not only the one that owns its Symbol (news: the symbols an
	// article is about are known only once its text is analysed).
	FlagBroadcast
	// FlagPrimary is set by the engine on the one copy of a broadcast event
	// that reaches the shard owning its Symbol: that copy emits the
	// event's own output; the others only update state.
	FlagPrimary
)

// Symbol is an interned instrument name. Ids are dense and start at 1; 0
// means "no symbol" (system events, news without a ticker).
type Symbol uint32

// Event is the canonical, fixed-size, pointer-free message that every feed
// parses into and every ring carries. It holds no pointers so the garbage
// collector never scans rings or per-symbol arrays of Events, and it copies
// with a plain assignment.
//
// Times are int64 nanoseconds since the Unix epoch (event time), except
// IngestNs, which is a monotonic processing-time stamp used only for latency
// metrics and is zero in replays.
//
// The layout puts everything a trade carries in the first cache line (the
// small fields, the times, the offset, the id, price and volume) and the
// quote, bar and kind-specific words in the second: a shard that consumes a
// trade where it lies in a ring pulls one line from the producer's core,
// not two. The fourteen 8-byte words TsNs..Aux are contiguous (the compact
// frame and the text chunks view them as words and bytes).
type Event struct {
	Symbol Symbol
	Source uint16 // index of the feed that produced the event
	Kind   Kind
	Status Status
	Flags  Flags
	_      [3]byte
	// TextLen is the length of the event's text (see text.go) carried by
	// the KindText events that follow it; 0 when it has none.
	TextLen uint32

	TsNs     int64   // event time
	IngestNs int64   // processing time at ingest (monotonic ns); 0 if not measured
	Seq      uint64  // the source offset: increasing per source (0 = let the engine's Publisher number it); orders outputs
	IDHash   uint64  // stable 64-bit hash of the message id (0 if the message has none)
	Price    float64 // trade price, bar close, book level price
	Volume   float64 // trade size, bar volume, book level size (fractional for crypto)

	Bid     float64 // valid when FlagHasBid
	Ask     float64 // valid when FlagHasAsk
	BidSize float64
	AskSize float64
	Open    float64 // bars only
	High    float64 // bars only
	Low     float64 // bars only
	Aux     uint64  // kind-specific: news article slot, system event code, IEX sale condition flags
}

// A trade's fields end the first cache line; the second starts at Bid.
var (
	_ [0]struct{} = [unsafe.Offsetof(Event{}.Bid) - 64]struct{}{}
	_ [0]struct{} = [unsafe.Sizeof(Event{}) - 128]struct{}{}
)

// EventSize is the size of an Event in memory: two cache lines.
const EventSize = int(unsafe.Sizeof(Event{}))

// Reset zeroes e for reuse.
func (e *Event) Reset() { *e = Event{} }

// HasBid reports whether the bid is set.
func (e *Event) HasBid() bool { return e.Flags&FlagHasBid != 0 }

// HasAsk reports whether the ask is set.
func (e *Event) HasAsk() bool { return e.Flags&FlagHasAsk != 0 }
