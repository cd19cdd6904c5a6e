package news

import (
	"bytes"
	"math"

	"qstream/codec"
)

// Analyzer holds the matchers built once from the data files: a vocabulary
// that interns every lower-cased word of the dictionary, lexicon and rules to
// a dense id, a phrase trie over word ids for the entity aliases and one for
// the lexicon, and the event rules indexed by their first word. It is
// read-only after New.
type Analyzer struct {
	words map[string]int32 // used while building; vocab serves lookups
	vocab vocab
	info  []wordInfo

	syms     []symbolEntry
	symIndex map[string]int32
	aliases  []alias
	ent      trie

	lex        trie
	lexEntries []lexEntry

	rules      []rule
	eventTypes []string
}

// Entity is one mention of a symbol: Result.Text[Start:End] is the text
// that names it (a cashtag's span includes the '$').
type Entity struct {
	Symbol     string
	Start, End int

	amb       bool  // an ambiguous alias awaiting support
	tok, ntok int32 // its tokens
	sym       int32 // index into Result.Symbols
}

// Event is one market event: Result.Text[Start:End] is its evidence.
type Event struct {
	Type       string
	Start, End int
}

// Result is the analysis of one article. It is owned by the caller and
// reused: Analyze overwrites it, and every slice in it (Text, Symbols,
// Entities, Relevance, Events) stays valid until the next Analyze on it. The
// strings in it are the dictionary's or the caller's tagged symbols, never
// built per article.
type Result struct {
	// Text is the analysed text, the headline, then when the body is not
	// empty a '\n' and the body. Every offset is a byte offset into Text;
	// body offsets are therefore shifted by HeadlineLen+1.
	Text        []byte
	HeadlineLen int

	// Symbols are the tagged symbols in the order given, then the symbols
	// found in the text and not tagged, in order of first mention.
	Symbols []string
	// Relevance[i] is the relevance of Symbols[i], in [0, 1].
	Relevance []float64
	// Entities are the accepted mentions in text order, not overlapping.
	Entities []Entity
	// Sentiment is the article's tone in [-1, 1].
	Sentiment float64
	// Events are the market events found, the first match of each type, in
	// text order.
	Events []Event

	toks   []token
	sents  []sentence
	stats  []symStat
	terms  []term
	evm    []evMatch
	tagged []string
	extra  int // tagged symbols the dictionary lacks
}

type symStat struct {
	dict   int32 // dictionary index, or -1
	tagged bool
	firm   bool // has an unambiguous mention
	head   bool
	count  int32
	first  int32 // byte offset of the first mention
}

type term struct {
	first, last int32 // tokens
	weight      float64
}

type evMatch struct {
	rule        int32
	first, last int32 // tokens
}

// Span returns Text[start:end].
func (r *Result) Span(start, end int) []byte { return r.Text[start:end] }

// Analysis constants; see the package documentation for the formulas.
const (
	// NegationScale multiplies a negated term: the sign flips, the
	// magnitude shrinks ("not good" is weaker than "bad").
	NegationScale = -0.75
	// HeadlineWeight is the headline's share of the sentiment; the body
	// has 1-HeadlineWeight when it is not empty.
	HeadlineWeight = 2.0 / 3
	negWindow      = 3 // tokens before a term that a negator reaches
	intensBefore   = 2 // tokens before a term that an intensifier reaches
	intensAfter    = 1 // tokens after it
	cueWindow      = 2 // tokens either side of an ambiguous name searched for a cue
)

// Analyze analyses one article into res. headline and body are the article's
// text (not kept: Text is a copy); tagged are the symbols the article is
// tagged with (kept as given in Symbols). It allocates only while res grows
// to the largest article seen.
func (a *Analyzer) Analyze(res *Result, headline, body []byte, tagged []string) {
	res.Text = append(res.Text[:0], headline...)
	res.HeadlineLen = len(headline)
	if len(body) > 0 {
		res.Text = append(res.Text, '\n')
		res.Text = append(res.Text, body...)
	}
	res.Symbols = res.Symbols[:0]
	res.Relevance = res.Relevance[:0]
	res.Entities = res.Entities[:0]
	res.Events = res.Events[:0]
	res.stats = res.stats[:0]
	res.extra = 0
	res.Sentiment = 0
	res.toks, res.sents = tokenize(res.Text, len(headline), res.toks[:0], res.sents[:0])
	a.lookup(res)
	for _, t := range tagged {
		a.addSymbol(res, t, true)
	}
	a.entities(res)
	a.sentiment(res)
	a.events(res)
	relevance(res)
}

// AnalyzeArticle is Analyze for a parsed article: its tagged symbols are
// named through names (nil: none). The names are kept in res until the next
// call.
func (a *Analyzer) AnalyzeArticle(res *Result, art *codec.NewsArticle, names *codec.SymbolTable) {
	res.tagged = res.tagged[:0]
	if names != nil {
		for _, s := range art.Symbols {
			if n := names.Name(s); n != "" {
				res.tagged = append(res.tagged, n)
			}
		}
	}
	a.Analyze(res, art.Headline, art.Body, res.tagged)
}

// lookup sets each token's word id and the sentences' title-case counts.
func (a *Analyzer) lookup(res *Result) {
	for i := range res.toks {
		t := &res.toks[i]
		ws := t.start
		if t.flags&fCash != 0 {
			ws++
		}
		w := res.Text[ws:t.end]
		if len(w) <= maxWordLen {
			t.word = a.vocab.find(t.hash, w)
		}
		if t.flags&(fSent|fCash) == 0 && len(w) >= 4 && (t.flags&fUpper != 0 || w[0]-'a' < 26 || w[0]-'A' < 26) {
			if t.word >= 0 && (a.info[t.word].entStart || a.info[t.word].ticker >= 0) {
				continue
			}
			s := &res.sents[t.sent]
			s.words++
			if t.flags&fCap != 0 {
				s.caps++
			}
		}
	}
}

// addSymbol returns the index of name in res.Symbols, adding it.
func (a *Analyzer) addSymbol(res *Result, name string, tagged bool) int32 {
	for i, s := range res.Symbols {
		if s == name {
			if tagged {
				res.stats[i].tagged = true
			}
			return int32(i)
		}
	}
	dict := int32(-1)
	if d, ok := a.symIndex[name]; ok {
		dict = d
	}
	if dict < 0 && tagged {
		res.extra++
	}
	res.Symbols = append(res.Symbols, name)
	res.stats = append(res.stats, symStat{dict: dict, tagged: tagged, first: -1})
	return int32(len(res.Symbols) - 1)
}

// dictSymbol returns the index in res.Symbols of dictionary symbol d.
func (a *Analyzer) dictSymbol(res *Result, d int32) int32 {
	for i := range res.stats {
		if res.stats[i].dict == d {
			return int32(i)
		}
	}
	return a.addSymbol(res, a.syms[d].name, false)
}

// entities finds the mentions: at each token the longest alias whose case
// rule holds, else a ticker; ambiguous names are then kept only if supported.
func (a *Analyzer) entities(res *Result) {
	toks := res.toks
	for i := 0; i < len(toks); {
		t := &toks[i]
		if t.word < 0 {
			a.extraTag(res, i)
			i++
			continue
		}
		inf := &a.info[t.word]
		if t.flags&fCash != 0 {
			if inf.ticker >= 0 {
				a.addEntity(res, a.dictSymbol(res, inf.ticker), i, 1, false)
			} else {
				a.extraTag(res, i)
			}
			i++
			continue
		}
		bestLen, best := 0, int32(-1)
		if inf.entStart {
			node := int32(0)
			for j := i; j < len(toks) && j-i < maxPhraseTokens; j++ {
				tj := &toks[j]
				if tj.word < 0 || tj.flags&fCash != 0 || (j > i && tj.flags&fSent != 0) {
					break
				}
				next, ok := a.ent.edges[trieKey(node, tj.word)]
				if !ok {
					break
				}
				node = next
				for _, al := range a.ent.term[node] {
					if !a.aliases[al].ambiguous || t.flags&(fCap|fUpper) != 0 {
						bestLen, best = j-i+1, al
						break
					}
				}
			}
		}
		if bestLen < 2 && inf.ticker >= 0 && a.tickerOK(res, i, inf.ticker) {
			a.addEntity(res, a.dictSymbol(res, inf.ticker), i, 1, false)
			i++
			continue
		}
		if best >= 0 {
			al := a.aliases[best]
			a.addEntity(res, a.dictSymbol(res, al.sym), i, bestLen, al.ambiguous)
			i += bestLen
			continue
		}
		a.extraTag(res, i)
		i++
	}
	a.resolve(res)
}

// tickerOK reports whether token i, equal to dictionary symbol d's ticker
// ignoring case, is a bare ticker: written in capitals, and for a ticker that
// is a common word, in parentheses or after "NYSE:".
func (a *Analyzer) tickerOK(res *Result, i int, d int32) bool {
	t := &res.toks[i]
	if t.flags&fUpper == 0 {
		return false
	}
	if !a.syms[d].ambigTicker {
		return true
	}
	if t.flags&fParen != 0 {
		return true
	}
	if t.flags&fColon != 0 && i > 0 {
		p := &res.toks[i-1]
		return p.word >= 0 && a.info[p.word].exchange
	}
	return false
}

// extraTag matches token i against the tagged symbols the dictionary does not
// hold: as a cashtag (any case) or a bare capitalised token of 3+ bytes.
func (a *Analyzer) extraTag(res *Result, i int) bool {
	t := &res.toks[i]
	if res.extra == 0 || t.flags&(fCash|fUpper) == 0 {
		return false
	}
	w := res.Text[t.start:t.end]
	cash := t.flags&fCash != 0
	if cash {
		w = w[1:]
	} else if len(w) < 3 {
		return false
	}
	for k := range res.stats {
		st := &res.stats[k]
		if st.dict >= 0 || !st.tagged {
			continue
		}
		name := res.Symbols[k]
		if len(name) != len(w) {
			continue
		}
		if (cash && bytes.EqualFold(w, []byte(name))) || string(w) == name {
			a.addEntity(res, int32(k), i, 1, false)
			return true
		}
	}
	return false
}

func (a *Analyzer) addEntity(res *Result, sym int32, tok, ntok int, amb bool) {
	t0, t1 := &res.toks[tok], &res.toks[tok+ntok-1]
	res.Entities = append(res.Entities, Entity{
		Symbol: res.Symbols[sym], Start: int(t0.start), End: int(t1.end),
		amb: amb, tok: int32(tok), ntok: int32(ntok), sym: sym,
	})
	if !amb {
		res.stats[sym].firm = true
	}
}

// resolve drops the ambiguous names without support and counts mentions.
func (a *Analyzer) resolve(res *Result) {
	kept := res.Entities[:0]
	for _, e := range res.Entities {
		if e.amb && !a.supported(res, &e) {
			continue
		}
		kept = append(kept, e)
		st := &res.stats[e.sym]
		st.count++
		if st.first < 0 {
			st.first = int32(e.Start)
		}
		if e.Start < res.HeadlineLen {
			st.head = true
		}
		for k := e.tok; k < e.tok+e.ntok; k++ {
			res.toks[k].flags |= fEntity
		}
	}
	res.Entities = kept
	// symbols found only through rejected names are dropped again
	n := 0
	for i := range res.Symbols {
		st := res.stats[i]
		if st.count == 0 && !st.tagged {
			continue
		}
		res.Symbols[n], res.stats[n] = res.Symbols[i], st
		n++
	}
	if n != len(res.Symbols) {
		res.Symbols, res.stats = res.Symbols[:n], res.stats[:n]
		for i := range res.Entities {
			e := &res.Entities[i]
			for k, s := range res.Symbols {
				if s == e.Symbol {
					e.sym = int32(k)
				}
			}
		}
	}
}

// supported reports whether ambiguous name e refers to the company: its symbol
// is tagged or named unambiguously elsewhere, a cue word is near (cueWindow
// tokens either side), a finance word follows (a lexicon term or an event
// rule's first word within cueWindow tokens after it: "Apple beats"), another
// company is named unambiguously within cueWindow tokens, it carries a
// possessive, or it is capitalised in running text (not a sentence's first
// word, the sentence not in title case or capitals).
func (a *Analyzer) supported(res *Result, e *Entity) bool {
	st := &res.stats[e.sym]
	if st.tagged || st.firm {
		return true
	}
	toks := res.toks
	first, last := &toks[e.tok], &toks[e.tok+e.ntok-1]
	if last.flags&fPoss != 0 {
		return true
	}
	lo, hi := int(e.tok)-cueWindow, int(e.tok+e.ntok)+cueWindow
	for k := max(lo, 0); k < min(hi, len(toks)); k++ {
		if k >= int(e.tok) && k < int(e.tok+e.ntok) {
			continue
		}
		tk := &toks[k]
		if tk.sent != first.sent || tk.word < 0 {
			continue
		}
		inf := &a.info[tk.word]
		if inf.cue || (k > int(e.tok) && (inf.finance || len(inf.evRules) > 0)) {
			return true
		}
	}
	// another company named unambiguously next to it: "Visa and Mastercard"
	for i := range res.Entities {
		o := &res.Entities[i]
		if o.amb || o.sym == e.sym || toks[o.tok].sent != first.sent {
			continue
		}
		if int(o.tok) >= lo && int(o.tok) < hi {
			return true
		}
	}
	return first.flags&fSent == 0 && first.flags&fUpper == 0 && !res.sents[first.sent].titleCase()
}

// token roles set by the lexicon pass.
const (
	roleNone uint8 = iota
	roleNeg
	roleIntens
	roleClause
)

// sentiment scores the lexicon terms; see the package documentation.
func (a *Analyzer) sentiment(res *Result) {
	toks := res.toks
	res.terms = res.terms[:0]
	for i := range toks {
		toks[i].role, toks[i].mult = roleNone, 0
	}
	for i := 0; i < len(toks); {
		t := &toks[i]
		if t.flags&fEntity != 0 || t.word < 0 || !a.info[t.word].lexStart {
			if t.word < 0 && (res.Text[t.end-1]|0x20) == 't' && endsNT(res.Text[t.start:t.end]) {
				t.role = roleNeg
			}
			i++
			continue
		}
		node, bestLen, best := int32(0), 0, int32(-1)
		for j := i; j < len(toks) && j-i < maxPhraseTokens; j++ {
			tj := &toks[j]
			if tj.word < 0 || tj.flags&fEntity != 0 || (j > i && tj.flags&(fSent|fClause) != 0) {
				break
			}
			next, ok := a.lex.edges[trieKey(node, tj.word)]
			if !ok {
				break
			}
			node = next
			if v := a.lex.term[node]; len(v) > 0 {
				bestLen, best = j-i+1, v[0]
			}
		}
		if best < 0 {
			i++
			continue
		}
		e := a.lexEntries[best]
		last := i + bestLen - 1
		switch e.kind {
		case lexNeg:
			toks[last].role = roleNeg
		case lexIntens:
			toks[i].role, toks[i].mult = roleIntens, float32(e.weight)
			toks[last].role, toks[last].mult = roleIntens, float32(e.weight)
		case lexClause:
			for k := i; k <= last; k++ {
				toks[k].role = roleClause
			}
		default:
			res.terms = append(res.terms, term{first: int32(i), last: int32(last), weight: e.weight})
		}
		i += bestLen
	}
	var head, body float64
	bodyTokens := false
	for i := range toks {
		if toks[i].flags&fHead == 0 {
			bodyTokens = true
			break
		}
	}
	for _, tm := range res.terms {
		s := tm.weight * intensity(toks, int(tm.first), int(tm.last))
		if negated(toks, int(tm.first)) {
			s *= NegationScale
		}
		if toks[tm.first].flags&fHead != 0 {
			head += s
		} else {
			body += s
		}
	}
	var v float64
	if bodyTokens {
		v = HeadlineWeight*math.Tanh(head) + (1-HeadlineWeight)*math.Tanh(body/2)
	} else {
		v = math.Tanh(head)
	}
	res.Sentiment = round4(v)
}

// sameClause reports whether tokens j < k lie in one clause: no clause break
// before any token in (j, k] and no clause word among them.
func sameClause(toks []token, j, k int) bool {
	for m := j + 1; m <= k; m++ {
		if toks[m].flags&(fClause|fSent) != 0 || toks[m].sent != toks[j].sent {
			return false
		}
	}
	return true
}

// negated reports whether an odd number of negators precede token first
// within negWindow tokens in its clause.
func negated(toks []token, first int) bool {
	neg := false
	for k := first - 1; k >= 0 && k >= first-negWindow; k-- {
		if !sameClause(toks, k, first) || toks[k].role == roleClause {
			break
		}
		if toks[k].role == roleNeg {
			neg = !neg
		}
	}
	return neg
}

// intensity is the product of the intensifier factors within intensBefore
// tokens before the term and intensAfter tokens after it, in its clause.
func intensity(toks []token, first, last int) float64 {
	m := 1.0
	for k := first - 1; k >= 0 && k >= first-intensBefore; k-- {
		if !sameClause(toks, k, first) || toks[k].role == roleClause {
			break
		}
		if toks[k].role == roleIntens {
			m *= float64(toks[k].mult)
		}
	}
	for k := last + 1; k < len(toks) && k <= last+intensAfter; k++ {
		if !sameClause(toks, last, k) || toks[k].role == roleClause {
			break
		}
		if toks[k].role == roleIntens {
			m *= float64(toks[k].mult)
		}
	}
	return m
}

func endsNT(w []byte) bool {
	return bytes.HasSuffix(w, []byte("n't")) || bytes.HasSuffix(w, []byte("n’t")) ||
		bytes.HasSuffix(w, []byte("N'T"))
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// events matches the rules at every token, drops the matches a veto or a
// negator cancels, and keeps the first match of each type.
func (a *Analyzer) events(res *Result) {
	toks := res.toks
	res.evm = res.evm[:0]
	for i := range toks {
		w := toks[i].word
		if w < 0 {
			continue
		}
		for _, ri := range a.info[w].evRules {
			if last, ok := a.matchRule(toks, &a.rules[ri], i); ok {
				res.evm = append(res.evm, evMatch{rule: ri, first: int32(i), last: int32(last)})
			}
		}
	}
	var seen uint64 // event types kept (the first 64 types are deduplicated by bit)
	for _, m := range res.evm {
		ru := &a.rules[m.rule]
		if ru.veto || negated(toks, int(m.first)) || a.vetoed(res, m) {
			continue
		}
		if ru.typ < 64 {
			if seen&(1<<ru.typ) != 0 {
				continue
			}
			seen |= 1 << ru.typ
		}
		res.Events = append(res.Events, Event{
			Type:  a.eventTypes[ru.typ],
			Start: int(toks[m.first].start), End: int(toks[m.last].end),
		})
	}
}

// vetoed reports whether a veto of m's type overlaps m or precedes it in the
// same clause.
func (a *Analyzer) vetoed(res *Result, m evMatch) bool {
	typ := a.rules[m.rule].typ
	for _, v := range res.evm {
		ru := &a.rules[v.rule]
		if !ru.veto || ru.typ != typ {
			continue
		}
		if v.first <= m.last && m.first <= v.last {
			return true
		}
		if v.last < m.first && sameClause(res.toks, int(v.last), int(m.first)) {
			return true
		}
	}
	return false
}

// matchRule matches ru at token i (whose word is in the first slot) and
// returns the index of the last token matched.
func (a *Analyzer) matchRule(toks []token, ru *rule, i int) (int, bool) {
	pos := i
	for _, s := range ru.slots[1:] {
		found := -1
		for p := pos + 1; p <= pos+1+s.gap && p < len(toks); p++ {
			if toks[p].sent != toks[i].sent {
				break
			}
			if w := toks[p].word; w >= 0 && slotHas(s.words, w) {
				found = p
				break
			}
		}
		if found < 0 {
			return 0, false
		}
		pos = found
	}
	return pos, true
}

func slotHas(words []int32, w int32) bool {
	for _, x := range words {
		if x == w {
			return true
		}
		if x > w {
			return false
		}
	}
	return false
}

// relevance scores each symbol; see the package documentation.
func relevance(res *Result) {
	var nmax int32
	for _, st := range res.stats {
		nmax = max(nmax, st.count)
	}
	n := float64(len(res.Text))
	for _, st := range res.stats {
		var r float64
		if st.head {
			r += 0.4
		}
		if st.count > 0 {
			r += 0.25 * float64(st.count) / float64(nmax)
			r += 0.2 * (1 - float64(st.first)/n)
		}
		if st.tagged {
			r += 0.15
		}
		res.Relevance = append(res.Relevance, round4(min(r, 1)))
	}
}
