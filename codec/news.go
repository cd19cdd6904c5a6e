package codec

// MaxNewsSymbols bounds the symbols kept per news article.
const MaxNewsSymbols = 16

// NewsArticle is the text of a news event, kept beside its Event (which
// carries only the kind, time, first symbol and id hash). The Parser that
// produced it owns every slice in it: they stay valid until the Parser's next
// ParseJSON call. Use Clone to keep an article longer.
type NewsArticle struct {
	ID       []byte // the article id (compact "id"; StreamMessage: NewsData "id", else "message_id")
	Source   []byte // the publisher, e.g. "reuters"; may be empty
	Headline []byte
	Body     []byte // compact "body", NewsData "content"; may be empty

	// Symbols are the tickers the article is tagged with, interned, in input
	// order without duplicates, at most MaxNewsSymbols.
	Symbols []Symbol
	// SymbolsDropped counts tagged tickers that are not in Symbols: beyond
	// MaxNewsSymbols, or rejected by the symbol table (frozen universe, full
	// table, empty or over-long name). A ticker outside the universe does not
	// make an article bad input, so it is counted rather than rejected.
	SymbolsDropped int

	// Sentiment is the producer's sentiment score when HasSentiment
	// (NewsData "sentiment"; finite, otherwise the message is rejected).
	Sentiment    float64
	HasSentiment bool
}

// Clone returns a deep copy of a that does not share memory with the parser.
// It allocates; use it off the hot path.
func (a *NewsArticle) Clone() NewsArticle {
	c := *a
	c.ID = newsClone(a.ID)
	c.Source = newsClone(a.Source)
	c.Headline = newsClone(a.Headline)
	c.Body = newsClone(a.Body)
	c.Symbols = append([]Symbol(nil), a.Symbols...)
	return c
}

func newsClone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// reset empties a, keeping syms (the parser's fixed backing array) for Symbols.
func (a *NewsArticle) reset(syms *[MaxNewsSymbols]Symbol) {
	*a = NewsArticle{Symbols: syms[:0]}
}

// addSymbol appends id unless it is already present or the article is full.
func (a *NewsArticle) addSymbol(id Symbol) {
	for _, s := range a.Symbols {
		if s == id {
			return
		}
	}
	if len(a.Symbols) == MaxNewsSymbols {
		a.SymbolsDropped++
		return
	}
	a.Symbols = append(a.Symbols, id)
}
