package news

import (
	"unicode"
	"unicode/utf8"
)

// token is one word of the analysed text. start and end are byte offsets
// into Result.Text; a cashtag's span includes its '$'. word is the id of the
// lower-cased word (the cashtag without '$') in the Analyzer's vocabulary, or
// -1 when the vocabulary does not hold it.
type token struct {
	start, end int32
	word       int32
	sent       int32  // index of the sentence in Result.sents
	hash       uint64 // hashLower of the word (without a cashtag's '$')
	flags      uint16
	role       uint8   // roleNone, roleNeg, roleIntens, roleClause: set by the lexicon pass
	mult       float32 // an intensifier's factor
}

// token flags.
const (
	fCap    uint16 = 1 << iota // the first letter is upper case
	fUpper                     // every letter is upper case (and there is one)
	fCash                      // a cashtag: '$' then a letter
	fSent                      // the first token of a sentence
	fClause                    // a clause break (, ; : . ! ? newline, dash) lies between the previous token and this one
	fHead                      // the token lies in the headline
	fPoss                      // followed by 's (the possessive, removed from the token)
	fParen                     // directly enclosed in parentheses: "(T)"
	fColon                     // a ':' lies between the previous token and this one
	fEntity                    // part of an accepted entity (not scored for sentiment)
	fDot                       // holds an internal '.' (U.S, BRK.B, 3.5)
)

// sentence holds the statistics that say whether a sentence is in title case
// (or all capitals), where capitalisation says nothing about proper nouns.
type sentence struct {
	words, caps int32 // words of 4+ letters after the first, not dictionary names; how many capitalised
}

func (s sentence) titleCase() bool { return s.words == 0 || s.caps*10 >= s.words*5 }

const maxWordLen = 48 // longer tokens are not looked up

func isAlnum(c byte) bool { return byteClass[c]&(cUpper|cLower|cDigit) != 0 }

// byte classes of ASCII bytes (0 for every other byte).
const (
	cUpper uint8 = 1 << iota
	cLower
	cDigit
)

var byteClass = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = cUpper
		t[c+'a'-'A'] = cLower
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	return t
}()

// lowerByte maps ASCII upper case to lower case and keeps every other byte.
var lowerByte = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] = byte(i) + 'a' - 'A'
		}
	}
	return t
}()

// FNV-1a over the lower-cased bytes of a word: the vocabulary's hash.
const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
)

func hashLower(w []byte) uint64 { return hashMore(fnvOffset, w) }

// hashMore continues hashLower's hash h over w.
func hashMore(h uint64, w []byte) uint64 {
	for _, c := range w {
		h = (h ^ uint64(lowerByte[c])) * fnvPrime
	}
	return h
}

// wordRune reports whether the rune at text[i] (non-ASCII) is a letter or
// digit, and its size. U+2019 (’) reports apostrophe.
func wordRune(text []byte, i int) (letter, apos bool, size int) {
	r, size := utf8.DecodeRune(text[i:])
	if r == '’' {
		return false, true, size
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r), false, size
}

// isWordAt reports whether text[i] starts a letter or digit.
func isWordAt(text []byte, i int) bool {
	if i >= len(text) {
		return false
	}
	c := text[i]
	if c < utf8.RuneSelf {
		return isAlnum(c)
	}
	l, _, _ := wordRune(text, i)
	return l
}

// abbreviations whose trailing '.' does not end a sentence (lower case).
var abbreviations = [...]string{"inc", "corp", "co", "ltd", "mr", "ms", "mrs", "dr", "jr", "sr", "st", "vs", "no", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "est", "approx", "bros", "plc", "cos"}

func isAbbrev(w []byte) bool {
	if len(w) == 1 {
		return true // an initial: J. Smith
	}
	for _, a := range abbreviations {
		if len(a) == len(w) && eqFold(w, a) {
			return true
		}
	}
	return false
}

// eqFold compares ASCII case-insensitively; a is lower case.
func eqFold(w []byte, a string) bool {
	for i := 0; i < len(a); i++ {
		c := w[i]
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		if c != a[i] {
			return false
		}
	}
	return true
}

// tokenizer splits text into tokens. Words are runs of letters and digits;
// '.' and '&' join a word when a letter or digit follows ("BRK.B", "AT&T",
// "3.5"), an apostrophe joins one unless it starts a final possessive 's
// (dropped and flagged), '-' and every other byte separate words. '$' then a
// letter starts a cashtag. Sentences end at '.', '!', '?' followed by a space
// or the end (unless the word before is an abbreviation or has an inner '.')
// and at newlines; the headline is its own sentence.
func tokenize(text []byte, headLen int, toks []token, sents []sentence) ([]token, []sentence) {
	n := len(text)
	sent := int32(len(sents))
	sents = append(sents, sentence{})
	newSent := true
	clause := true
	colon := false
	for i := 0; i < n; {
		c := text[i]
		if c == ' ' {
			i++
			continue
		}
		start := i
		cash := false
		if c == '$' && isWordAt(text, i+1) && !(text[i+1]-'0' < 10) {
			cash = true
			i++
		}
		if !cash && !isWordAt(text, i) {
			// separators
			size := 1
			if c >= utf8.RuneSelf {
				r, sz := utf8.DecodeRune(text[i:])
				size = sz
				if r == '—' || r == '–' {
					clause = true
				}
			} else {
				switch c {
				case ',', ';':
					clause = true
				case ':':
					clause = true
					colon = true
				case '\n':
					newSent, clause = true, true
				case '.', '!', '?':
					clause = true
					if i+1 >= n || text[i+1] == ' ' || text[i+1] == '\n' || text[i+1] == '"' || text[i+1] == '\'' {
						if c != '.' || len(toks) == 0 || toks[len(toks)-1].end != int32(i) || !abbrevTok(text, &toks[len(toks)-1]) {
							newSent = true
						}
					}
				}
			}
			if i < headLen && i+size >= headLen {
				newSent, clause = true, true
			}
			i += size
			continue
		}
		if newSent && len(toks) > 0 {
			sent = int32(len(sents))
			sents = append(sents, sentence{})
		}
		var flags uint16
		if cash {
			flags |= fCash
		}
		seen, poss := uint8(0), false // seen: the classes of the letters
		firstLetter := uint8(0)
		h := fnvOffset
		for i < n {
			c := text[i]
			if cl := byteClass[c]; cl != 0 {
				seen |= cl
				if firstLetter == 0 {
					firstLetter = cl & (cUpper | cLower)
				}
				h = (h ^ uint64(lowerByte[c])) * fnvPrime
				i++
				continue
			}
			if c < utf8.RuneSelf {
				if (c == '.' || c == '&') && isWordAt(text, i+1) {
					if c == '.' {
						flags |= fDot
					}
					h = (h ^ uint64(c)) * fnvPrime
					i++
					continue
				}
				if c == '\'' {
					if i+1 < n && (text[i+1] == 's' || text[i+1] == 'S') && !isWordAt(text, i+2) {
						poss = true
						break
					}
					if isWordAt(text, i+1) {
						h = (h ^ uint64(c)) * fnvPrime
						i++
						continue
					}
				}
				break
			}
			l, apos, size := wordRune(text, i)
			if apos {
				if i+size < n && (text[i+size] == 's' || text[i+size] == 'S') && !isWordAt(text, i+size+1) {
					poss = true
					break
				}
				if isWordAt(text, i+size) {
					h = hashMore(h, text[i:i+size])
					i += size
					continue
				}
				break
			}
			if !l {
				break
			}
			r, _ := utf8.DecodeRune(text[i:])
			if unicode.IsUpper(r) {
				seen |= cUpper
				if firstLetter == 0 {
					firstLetter = cUpper
				}
			} else if unicode.IsLower(r) {
				seen |= cLower
				if firstLetter == 0 {
					firstLetter = cLower
				}
			}
			h = hashMore(h, text[i:i+size])
			i += size
		}
		end := i
		if poss {
			flags |= fPoss
			// skip 's (ASCII or U+2019 apostrophe)
			if text[i] == '\'' {
				i += 2
			} else {
				i += 4
			}
		}
		if firstLetter == cUpper {
			flags |= fCap
		}
		if seen&(cUpper|cLower) == cUpper {
			flags |= fUpper
		}
		if newSent {
			flags |= fSent
		}
		if clause {
			flags |= fClause
		}
		if colon {
			flags |= fColon
		}
		if start < headLen {
			flags |= fHead
		}
		if start > 0 && text[start-1] == '(' && end < n && text[end] == ')' {
			flags |= fParen
		}
		if len(toks) == cap(toks) {
			toks = append(toks, token{})[:len(toks)]
		}
		toks = toks[:len(toks)+1]
		toks[len(toks)-1] = token{start: int32(start), end: int32(end), word: -1, sent: sent, flags: flags, hash: h}
		newSent, clause, colon = false, false, false
	}
	return toks, sents
}

// abbrevTok reports whether the token t (just before a '.') is an
// abbreviation, an initial or a dotted word (U.S.), so that the '.' does not
// end the sentence.
func abbrevTok(text []byte, t *token) bool {
	if t.flags&fDot != 0 {
		return true
	}
	return isAbbrev(text[t.start:t.end])
}

// appendLower appends the lower-cased bytes of w (ASCII only; other bytes are
// kept) to dst.
func appendLower(dst, w []byte) []byte {
	for _, c := range w {
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
