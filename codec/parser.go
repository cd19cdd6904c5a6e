package codec

import (
	"errors"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// DefaultMaxMessageSize is the message size limit when ParserOptions leaves
// it zero.
const DefaultMaxMessageSize = 64 << 10

// parserWarmMax bounds the buffers NewParser sizes up front.
const parserWarmMax = 1 << 20

// ParserOptions configure a Parser or CSVParser.
type ParserOptions struct {
	// MaxMessageSize bounds one JSON message or CSV line in bytes; longer
	// input is rejected with ReasonOversize before it is parsed. Zero or
	// negative means DefaultMaxMessageSize.
	MaxMessageSize int
	// Source is stored in Event.Source of every event parsed.
	Source uint16
	// Symbols is the engine's shared symbol table. Nil gives the parser a
	// private table of the default capacity (tests, tools).
	Symbols *SymbolTable
	// LookupOnly: the parser never adds a name to Symbols. A message that
	// names a symbol the table does not hold yet (in any field, news symbol
	// lists included) makes the Parse call return ErrSymbolNotInterned, as
	// soon as the parse gets there: everything checked before it was
	// checked alike, nothing after it was. The caller parses that message
	// again with an interning parser (see NewLookupSymbolCache for why).
	LookupOnly bool
}

// parserCore is the state every line/message parser shares: the symbol
// cache, the reused rejection and the limits.
type parserCore struct {
	syms    *SymbolCache
	err     Error
	maxSize int
	source  uint16
}

func (c *parserCore) init(opts ParserOptions) {
	c.maxSize = opts.MaxMessageSize
	if c.maxSize <= 0 {
		c.maxSize = DefaultMaxMessageSize
	}
	c.source = opts.Source
	t := opts.Symbols
	if t == nil {
		t = NewSymbolTable(0)
	}
	if opts.LookupOnly {
		c.syms = NewLookupSymbolCache(t)
	} else {
		c.syms = NewSymbolCache(t)
	}
	c.err.Offset = -1
}

// fail fills the parser-owned error and returns it.
func (c *parserCore) fail(r Reason, field, detail string) error {
	return c.err.set(r, field, detail)
}

// failAt is fail with a byte offset within the message.
func (c *parserCore) failAt(r Reason, field, detail string, off int) error {
	c.err.set(r, field, detail)
	c.err.Offset = off
	return &c.err
}

// failFrom copies a shared sentinel (ParseDecimal's, ParseTimestamp's) into
// the parser-owned error and names the field.
func (c *parserCore) failFrom(e *Error, field string) error {
	c.err = *e
	c.err.Field = field
	c.err.Offset = -1
	return &c.err
}

// symbol interns name through the per-parser cache; known names do not
// allocate.
func (c *parserCore) symbol(name []byte, field string) (Symbol, error) {
	id, err := c.syms.Intern(name)
	if err == nil {
		return id, nil
	}
	switch {
	case err == ErrSymbolNotInterned:
		return 0, err // not a rejection (LookupOnly)
	case errors.Is(err, ErrInvalidSymbol):
		return 0, c.fail(ReasonMalformed, field, symbolInvalidDetail)
	case len(name) == 0:
		return 0, c.fail(ReasonUnknownSymbol, field, "empty symbol")
	case len(name) > MaxSymbolLen:
		return 0, c.fail(ReasonUnknownSymbol, field, "symbol longer than MaxSymbolLen")
	case errors.Is(err, ErrSymbolTableFull):
		return 0, c.fail(ReasonUnknownSymbol, field, "symbol table full")
	}
	return 0, c.fail(ReasonUnknownSymbol, field, "symbol not in the configured universe")
}

// symbolInvalidDetail is the Error.Detail of a symbol that ValidSymbolName
// refuses.
const symbolInvalidDetail = "symbol is not valid UTF-8 or holds a control character"

// checkText rejects a name or id that is not valid UTF-8 (ReasonMalformed):
// such bytes cannot be written into JSON output as they are, and an id that
// differs from what the producer meant would not deduplicate. utf8.Valid
// reads ASCII eight bytes at a time and does not allocate.
func (c *parserCore) checkText(b []byte, field string) error {
	if !utf8.Valid(b) {
		return c.fail(ReasonMalformed, field, "not valid UTF-8")
	}
	return nil
}

// checkPrice rejects a price that is not > 0 (NaN and ±Inf never get here:
// ParseDecimal rejects them).
func (c *parserCore) checkPrice(x float64, field string) error {
	if x <= 0 {
		return c.fail(ReasonBadPrice, field, "price must be > 0")
	}
	return nil
}

// checkVolume rejects a negative size.
func (c *parserCore) checkVolume(x float64, field string) error {
	if x < 0 {
		return c.fail(ReasonBadVolume, field, "volume must be >= 0")
	}
	return nil
}

// Parser parses JSON messages (the compact tick, the specification's
// StreamMessage and news articles; see ParseJSON) into Events. Use one per
// feed goroutine: it is not safe for concurrent use. It reuses one
// fastjson.Parser, a per-parser SymbolCache and its own buffers, so parsing a
// message with known symbols allocates nothing.
//
// A flat object of plain scalars (the compact tick, most messages) is read
// by a small scanner straight into the field table, skipping the
// construction of fastjson's tree, which is most of the cost; everything else
// (nested objects such as StreamMessage, arrays, escapes, malformed input)
// goes through fastjson. Both paths fill the same table and share every
// check after it, and a fuzz test holds them to identical results.
type Parser struct {
	parserCore
	jp       fastjson.Parser
	tmp      []byte // number text of the fastjson path
	top, sub jsonFields
	noFlat   bool // tests: force the fastjson path
	// keyOrder holds the keys of the last flat message, in order (jkNone
	// for a key not in jsonKeyNames): scanFlat's guess for the next one.
	keyOrder [16]jsonKey
	// shape is the layout of the last flat message that scanShape can
	// match whole; flatSeen records scanFlat's values for learnShape.
	shape    jsonShape
	flatSeen jsonFlatSeen
	news     NewsArticle
	newsBuf  []byte // the current article's text; grows to the largest article seen
	newsSyms [MaxNewsSymbols]Symbol
	newsOK   bool
	evText   []byte // the last event's text (text.go); grows to the largest seen
}

// NewParser returns a Parser configured by opts. It pre-sizes the JSON
// parser's buffers for MaxMessageSize, so the first large message does not
// allocate on the hot path.
func NewParser(opts ParserOptions) *Parser {
	p := &Parser{tmp: make([]byte, 0, 256)}
	p.init(opts)
	p.news.reset(&p.newsSyms)
	p.warm()
	return p
}

// warm grows the fastjson parser's copy buffer to MaxMessageSize (at most
// parserWarmMax) and its value cache to a few hundred values by parsing a
// padded array once. Larger messages grow the buffers on first sight.
func (p *Parser) warm() {
	const values = 256
	size := min(p.maxSize, parserWarmMax)
	if size < 2*values+2 {
		return
	}
	b := make([]byte, 0, size)
	b = append(b, '[')
	for i := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '0')
	}
	b = append(b, ']')
	for len(b) < size {
		b = append(b, ' ')
	}
	_, _ = p.jp.ParseBytes(b)
}

// Text returns the text (see text.go) of the event parsed by the last
// ParseJSON call, or nil when it has none: news articles, and signal,
// system and custom events of a StreamMessage carry one; market data does
// not. ev.TextLen is its length. The slice is owned by the parser and valid
// until its next ParseJSON call; Publisher.PublishText takes both.
func (p *Parser) Text() []byte {
	if len(p.evText) == 0 {
		return nil
	}
	return p.evText
}

// Symbols returns the shared symbol table behind the parser.
func (p *Parser) Symbols() *SymbolTable { return p.syms.Table() }

// News returns the article parsed by the last ParseJSON call if that call
// returned a KindNews event without error, and nil otherwise. The article and
// its slices are owned by the parser and valid until the next ParseJSON call.
func (p *Parser) News() *NewsArticle {
	if !p.newsOK {
		return nil
	}
	return &p.news
}
