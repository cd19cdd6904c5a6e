package codec

import "bytes"

// CSVMaxColumns bounds the columns of a CSV header.
const CSVMaxColumns = 64

// CSV column roles.
const (
	csvIgnore uint8 = iota
	csvTs
	csvSymbol
	csvPrice
	csvVolume
	csvBid
	csvAsk
	csvBidSize
	csvAskSize
	csvID
	csvRoleCount
)

var csvRoleNames = [csvRoleCount]string{"", "ts", "symbol", "price", "volume", "bid", "ask", "bid_size", "ask_size", "id"}

// csvRoleOf maps a header name (already trimmed) to its role, ignoring case.
func csvRoleOf(name []byte) uint8 {
	for r := csvTs; r < csvRoleCount; r++ {
		if decEqualFold(name, csvRoleNames[r]) {
			return r
		}
	}
	switch {
	case decEqualFold(name, "timestamp"), decEqualFold(name, "time"):
		return csvTs
	case decEqualFold(name, "size"), decEqualFold(name, "qty"), decEqualFold(name, "quantity"):
		return csvVolume
	}
	return csvIgnore
}

// CSVParser parses CSV ticks (`--format csv`): a header row naming the
// columns, then one tick per row:
//
//	ts,symbol,price,volume,bid,ask
//	1700000000123456789,AAPL,189.23,300,189.22,189.24
//	2024-01-02T14:30:00.123Z,MSFT,370.5,10,,
//
// Columns are found by header name (case-insensitive), so their order is
// free: ts (or timestamp, time), symbol, price, volume (or size, qty,
// quantity) are required, and bid, ask, bid_size, ask_size and id are
// optional; other columns are ignored. ts is integer nanoseconds or RFC 3339
// (ParseTimestamp); numbers are decimals parsed exactly (ParseDecimal).
//
// A row with a price is a KindTrade (price > 0, volume >= 0 required); a row
// whose price and volume are empty (or 0) but which has a bid or ask is a
// KindQuote, as for JSON MarketData. An empty optional field is absent.
//
// The dialect is simple: fields are separated by ',', spaces around a field
// are trimmed, a trailing "\n" or "\r\n" is ignored. Quoted fields are not
// supported: a '"' anywhere is rejected with ReasonMalformed, and so is a
// symbol or id that is not valid UTF-8 (or a symbol with a control
// character: ValidSymbolName), since both reach JSON output. Use one
// CSVParser per input; it is not safe for concurrent use.
type CSVParser struct {
	parserCore
	roles   [CSVMaxColumns]uint8
	ncols   int
	haveHdr bool
}

// NewCSVParser returns a CSVParser; ParseHeader must be called before
// ParseRow.
func NewCSVParser(opts ParserOptions) *CSVParser {
	c := &CSVParser{}
	c.init(opts)
	return c
}

// Symbols returns the shared symbol table behind the parser.
func (c *CSVParser) Symbols() *SymbolTable { return c.syms.Table() }

// csvTrimLine drops a trailing "\n" or "\r\n" (or a lone "\r").
func csvTrimLine(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// csvNextField returns the field starting at line[i:] trimmed of spaces and
// tabs, its start offset, and the offset just past its separator (or
// len(line)+1 after the last field).
func csvNextField(line []byte, i int) (field []byte, start, next int) {
	end := i // a plain loop: fields are too short for bytes.IndexByte to pay off
	for end < len(line) && line[end] != ',' {
		end++
	}
	s, e := i, end
	for s < e && (line[s] == ' ' || line[s] == '\t') {
		s++
	}
	for e > s && (line[e-1] == ' ' || line[e-1] == '\t') {
		e--
	}
	return line[s:e], s, end + 1
}

// ParseHeader reads the header row. A UTF-8 byte order mark before it is
// skipped. Errors: ReasonMissingField (Field names the missing column),
// ReasonMalformed for a duplicate column, an empty name, quotes or more than
// CSVMaxColumns columns, ReasonOversize for a line over MaxMessageSize. The
// error is owned by the parser and valid until its next call.
func (c *CSVParser) ParseHeader(line []byte) error {
	c.haveHdr = false
	if len(line) > c.maxSize {
		return c.fail(ReasonOversize, "", "header larger than MaxMessageSize")
	}
	line = csvTrimLine(line)
	line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	if q := bytes.IndexByte(line, '"'); q >= 0 {
		return c.failAt(ReasonMalformed, "", "quoted fields are not supported", q)
	}
	var have [csvRoleCount]bool
	n := 0
	for i := 0; i <= len(line); {
		name, start, next := csvNextField(line, i)
		if n == CSVMaxColumns {
			return c.failAt(ReasonOversize, "", "more than CSVMaxColumns columns", start)
		}
		if len(name) == 0 {
			return c.failAt(ReasonMalformed, "", "empty column name", start)
		}
		r := csvRoleOf(name)
		if r != csvIgnore {
			if have[r] {
				return c.failAt(ReasonMalformed, csvRoleNames[r], "duplicate column", start)
			}
			have[r] = true
		}
		c.roles[n] = r
		n++
		i = next
	}
	for _, r := range [...]uint8{csvTs, csvSymbol, csvPrice, csvVolume} {
		if !have[r] {
			return c.fail(ReasonMissingField, csvRoleNames[r], "required column missing from the header")
		}
	}
	c.ncols = n
	c.haveHdr = true
	return nil
}

// ParseRow parses one data row into ev (see CSVParser for the rules). It
// overwrites every field of ev except Seq and IngestNs and sets Source. On
// error ev must not be used; the error is a *Error owned by the parser, valid
// until its next call, with the Reason, the column in Field and the byte
// Offset of the offending field within the line. It does not allocate
// except on the first sighting of a symbol.
func (c *CSVParser) ParseRow(line []byte, ev *Event) error {
	if !c.haveHdr {
		return c.fail(ReasonMalformed, "", "row before a valid header")
	}
	if len(line) > c.maxSize {
		return c.fail(ReasonOversize, "", "row larger than MaxMessageSize")
	}
	line = csvTrimLine(line)
	if len(line) == 0 {
		return c.failAt(ReasonMalformed, "", "empty row", 0)
	}
	if q := bytes.IndexByte(line, '"'); q >= 0 {
		return c.failAt(ReasonMalformed, "", "quoted fields are not supported", q)
	}
	seq, ingest := ev.Seq, ev.IngestNs
	*ev = Event{Seq: seq, IngestNs: ingest, Source: c.source}
	var price, volume, bid, ask float64
	var hasPrice, hasVolume, hasBid, hasAsk, hasTs bool
	var off [csvRoleCount]int // start offset of each column's field
	n := 0
	for i := 0; i <= len(line); n++ {
		field, start, next := csvNextField(line, i)
		i = next
		if n == c.ncols {
			return c.failAt(ReasonMalformed, "", "more fields than header columns", start)
		}
		r := c.roles[n]
		if r == csvIgnore || len(field) == 0 {
			continue
		}
		off[r] = start
		var err error
		switch r {
		case csvTs:
			if ev.TsNs, err = ParseTimestamp(field); err != nil {
				return c.csvFailFrom(err, r, start)
			}
			hasTs = true
		case csvSymbol:
			if ev.Symbol, err = c.symbol(field, "symbol"); err != nil {
				c.err.Offset = start
				return err
			}
		case csvID:
			if err := c.checkText(field, "id"); err != nil {
				c.err.Offset = start
				return err
			}
			ev.IDHash = HashID(field)
		default:
			x, err := ParseDecimal(field)
			if err != nil {
				return c.csvFailFrom(err, r, start)
			}
			switch r {
			case csvPrice:
				price, hasPrice = x, true
			case csvVolume:
				volume, hasVolume = x, true
			case csvBid:
				bid, hasBid = x, true
			case csvAsk:
				ask, hasAsk = x, true
			case csvBidSize:
				ev.BidSize = x
			case csvAskSize:
				ev.AskSize = x
			}
			if (r == csvVolume || r == csvBidSize || r == csvAskSize) && x < 0 {
				return c.failAt(ReasonBadVolume, csvRoleNames[r], "volume must be >= 0", start)
			}
			if (r == csvPrice || r == csvBid || r == csvAsk) && x < 0 {
				return c.failAt(ReasonBadPrice, csvRoleNames[r], "price must be > 0", start)
			}
		}
	}
	if n != c.ncols {
		return c.failAt(ReasonMalformed, "", "fewer fields than header columns", len(line))
	}
	if !hasTs {
		return c.fail(ReasonMissingField, "ts", "")
	}
	if ev.Symbol == 0 {
		return c.fail(ReasonMissingField, "symbol", "")
	}
	ev.Kind = KindTrade
	if (hasBid || hasAsk) && price == 0 && volume == 0 {
		ev.Kind = KindQuote
	}
	if ev.Kind == KindTrade {
		if !hasPrice {
			return c.fail(ReasonMissingField, "price", "")
		}
		if err := c.checkPrice(price, "price"); err != nil {
			c.err.Offset = off[csvPrice]
			return err
		}
		if !hasVolume {
			return c.fail(ReasonMissingField, "volume", "")
		}
	}
	ev.Price, ev.Volume = price, volume
	if hasBid {
		if err := c.checkPrice(bid, "bid"); err != nil {
			c.err.Offset = off[csvBid]
			return err
		}
		ev.Bid = bid
		ev.Flags |= FlagHasBid
	}
	if hasAsk {
		if err := c.checkPrice(ask, "ask"); err != nil {
			c.err.Offset = off[csvAsk]
			return err
		}
		ev.Ask = ask
		ev.Flags |= FlagHasAsk
	}
	return nil
}

// csvFailFrom copies a ParseDecimal/ParseTimestamp sentinel into the
// parser's error with the column and offset.
func (c *CSVParser) csvFailFrom(err error, role uint8, off int) error {
	c.failFrom(err.(*Error), csvRoleNames[role])
	c.err.Offset = off
	return &c.err
}
