// Package news is qstream's news analytics: for one article (headline, body
// and the tickers it is tagged with) it finds the entities (tickers and
// company names of a dictionary), scores the sentiment and each symbol's
// relevance, and detects market events with their evidence, into a
// caller-owned Result that AppendJSON writes as the DESIGN.md "News" line:
//
//	{"id","ts","symbols":[...],"entities":[{"text","symbol","start","end"}],
//	 "sentiment":s,"relevance":{"SYM":r},"events":[{"type","evidence"}]}
//
// # Data
//
// Three data files, written for qstream and embedded (go:embed), drive it;
// New and NewFromFiles take replacements. Their formats are described at the
// top of each file.
//   - data/entities.txt: the dictionary, 139 US large caps and ETFs and 23
//     crypto assets (emitted by asset code: BTC, ETH; mapping to a trading
//     pair is the caller's), with tickers, names and aliases.
//   - data/lexicon.txt: finance sentiment terms with weights in [-1, 1]
//     (Loughran-McDonald style word classes, our own selection), negators,
//     intensifiers and clause words.
//   - data/events.txt: phrase rules for ten event types (earnings_beat,
//     earnings_miss, guidance_raise, guidance_cut, merger_acquisition,
//     analyst_upgrade, analyst_downgrade, regulatory_approval, bankruptcy,
//     trading_halt) and vetoes.
//
// # Text and offsets
//
// The analysed text is Result.Text: the headline, then, when the body is not
// empty, one '\n' and the body. Offsets (Entity.Start/End, Event.Start/End)
// are byte offsets into it, end exclusive, so Text[Start:End] is the entity's
// text; body offsets are shifted by len(headline)+1.
//
// Tokens are runs of letters and digits (UTF-8 letters included); '.' and '&'
// inside a run join it (BRK.B, AT&T, 3.5), an apostrophe joins it (didn't)
// unless it starts a final possessive 's, which is dropped and remembered;
// '-' and other punctuation separate (so "Coca-Cola" and "Coca Cola" are the
// same two words). '$' before a letter makes a cashtag. Sentences end at
// '.', '!' or '?' before a space (not after an abbreviation such as Inc. or
// an initial) and at newlines; ',', ';', ':', dashes and the clause words of
// the lexicon (but, however, ...) end clauses.
//
// # Matching
//
// Every word of the three files is interned once into a vocabulary (an
// open-addressing table keyed by the FNV-1a hash of the lower-cased word,
// computed while tokenizing). Aliases and lexicon phrases form tries over word
// ids; event rules are indexed by their first word. One left-to-right pass per
// stage takes, at each token, the longest alias (or phrase) that starts there;
// matches do not overlap. The cost is linear in the text times the longest
// phrase (8 words), with one table probe per token.
//
// # Entity rules
//
//   - Tickers match as whole tokens: a cashtag ($AAPL, $aapl) always; a bare
//     token only in capitals (AAPL, not aapl); a ticker marked "~" in the
//     dictionary (T, V, F, ALL-like words) only as a cashtag, in parentheses
//     "(T)" or after an exchange and a colon "NYSE: T".
//   - Names match word by word ignoring case ("NVIDIA", "Nvidia"), never
//     inside a word (Pineapple) and never across a sentence.
//   - Names marked "~" are common words (Apple, Target, Visa, Oracle, Ether):
//     they must be capitalised (Apple, APPLE; never apple), and supported by
//     one of: the symbol is tagged; the symbol is also named unambiguously in
//     the article (AAPL, $AAPL, Apple Inc.); a cue word (shares, stock, CEO,
//     earnings, ...) within 2 words either side; a finance word (a lexicon
//     term or an event rule's first word: "Apple beats") within 2 words
//     after; another company named unambiguously within 2 words ("Visa and
//     Mastercard"); a possessive (Apple's); or capitalisation in running
//     text: not the sentence's first word, in a sentence that is not in title
//     case or capitals (where capitals say nothing). So "Apple pie recipe" and
//     "Apple Pie Recipes" name no company, "apple" never does.
//   - Tagged symbols that the dictionary lacks match as cashtags and as bare
//     capitalised tokens of 3+ bytes.
//   - Result.Symbols lists the tagged symbols in the order given, then the
//     symbols found and not tagged, in order of first mention.
//
// # Sentiment
//
// Each lexicon term (outside entities) at tokens [i, j] with weight w scores
//
//	t = w · Π m_k · (NegationScale if negated)
//
// where m_k are the factors of the intensifiers within 2 tokens before i or 1
// token after j in the same clause ("fell sharply", "sharply lower" ×1.5,
// "slightly" ×0.6), and the term is negated when an odd number of negators
// (not, no, never, without, fails to, n't, ...) lie within the 3 tokens
// before i in the same clause. NegationScale = -0.75: the sign flips and the
// magnitude shrinks. With h the sum of the headline's terms and b of the
// body's:
//
//	s = 2/3·tanh(h) + 1/3·tanh(b/2)   when the body has words,
//	s = tanh(h)                       otherwise,
//
// rounded to 4 decimals: the headline weighs twice the body, the body's sum
// is damped because bodies are long, and s lies in (-1, 1).
//
// # Relevance
//
// For each symbol in Result.Symbols, with H = 1 when named in the headline,
// n its mentions, n_max the most mentions of any symbol in the article, p the
// byte offset of its first mention and L = len(Text), T = 1 when tagged:
//
//	r = 0.4·H + 0.25·n/n_max + 0.2·(1 - p/L) + 0.15·T
//
// (the middle terms only when n > 0), at most 1, rounded to 4 decimals. A
// tagged symbol never named scores 0.15; the headline's main subject, named
// most and first and tagged, scores 1.
//
// # Events
//
// A rule is a sequence of word slots with alternatives and bounded gaps, all
// in one sentence ("raises ...4 guidance|outlook" matches "raises its
// full-year outlook"). A match is dropped when a negator lies within the 3
// tokens before it in its clause ("did not miss estimates") or when a veto
// of its type overlaps it or precedes it in its clause ("seeks FDA
// approval"). The first match of each type is kept; its evidence is the
// matched span, from the first slot's word to the last's.
//
// # Cost
//
// Analyze copies the text into the Result and allocates nothing once the
// Result's buffers have grown to the largest article (TestAnalyzeAllocs);
// AppendJSON appends only. BenchmarkAnalyze measures 1 KiB articles against a
// strings.Index/regexp baseline over the same data.
package news
