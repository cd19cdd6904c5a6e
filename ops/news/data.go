package news

import (
	"bufio"
	"bytes"
	_ "embed" // the default data files
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The default data files, written for qstream and reviewed with the code.
var (
	//go:embed data/entities.txt
	defaultEntities []byte
	//go:embed data/lexicon.txt
	defaultLexicon []byte
	//go:embed data/events.txt
	defaultEvents []byte
)

// Data names the three data files an Analyzer is built from. A nil reader
// means the embedded default.
type Data struct {
	Entities io.Reader // the dictionary (data/entities.txt format)
	Lexicon  io.Reader // the sentiment lexicon (data/lexicon.txt format)
	Events   io.Reader // the event rules (data/events.txt format)
}

// maxPhraseTokens bounds the tokens of a dictionary alias or lexicon phrase.
const maxPhraseTokens = 8

// wordInfo is what the vocabulary knows of one lower-cased word.
type wordInfo struct {
	ticker   int32 // the dictionary symbol this word is a ticker of, or -1
	entStart bool  // starts an alias in the entity trie
	lexStart bool  // starts a phrase in the lexicon trie
	cue      bool  // a company cue word
	exchange bool  // an exchange name (NYSE: T)
	finance  bool  // starts a sentiment term of the lexicon
	evRules  []int32
}

// trie is a phrase trie over word ids; node 0 is the root.
type trie struct {
	edges map[uint64]int32
	term  [][]int32 // per node: values of the phrases ending there, in file order
}

func newTrie() trie { return trie{edges: map[uint64]int32{}, term: [][]int32{nil}} }

func trieKey(node, word int32) uint64 { return uint64(uint32(node))<<32 | uint64(uint32(word)) }

func (t *trie) insert(words []int32, v int32) {
	node := int32(0)
	for _, w := range words {
		k := trieKey(node, w)
		next, ok := t.edges[k]
		if !ok {
			next = int32(len(t.term))
			t.term = append(t.term, nil)
			t.edges[k] = next
		}
		node = next
	}
	t.term[node] = append(t.term[node], v)
}

type symbolEntry struct {
	name        string
	ambigTicker bool // the bare ticker is a common word: only $T, (T), NYSE: T
}

type alias struct {
	sym       int32
	ambiguous bool
}

// lexicon entry kinds.
const (
	lexSentiment uint8 = iota
	lexNeg
	lexIntens
	lexClause
)

type lexEntry struct {
	kind   uint8
	weight float64 // the sentiment weight or the intensifier factor
}

type slot struct {
	words []int32 // alternatives
	gap   int     // other tokens allowed before this slot
}

type rule struct {
	typ   int32
	veto  bool
	slots []slot
}

// vocab interns lower-cased words to dense ids.
func (a *Analyzer) intern(w string) int32 {
	if id, ok := a.words[w]; ok {
		return id
	}
	id := int32(len(a.info))
	a.words[w] = id
	a.info = append(a.info, wordInfo{ticker: -1})
	return id
}

// phraseWords tokenizes a phrase as text is tokenized and interns its words.
func (a *Analyzer) phraseWords(p string) ([]int32, error) {
	toks, _ := tokenize([]byte(p), 0, nil, nil)
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty phrase %q", p)
	}
	if len(toks) > maxPhraseTokens {
		return nil, fmt.Errorf("phrase %q has more than %d words", p, maxPhraseTokens)
	}
	ws := make([]int32, len(toks))
	for i, t := range toks {
		s := t.start
		if t.flags&fCash != 0 {
			return nil, fmt.Errorf("phrase %q: a cashtag is matched from the ticker", p)
		}
		ws[i] = a.intern(string(appendLower(nil, []byte(p[s:t.end]))))
	}
	return ws, nil
}

// dataLines calls fn with each non-empty, non-comment line and its number.
func dataLines(name string, r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("news: %s line %d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("news: %s: %w", name, err)
	}
	return nil
}

func splitAlts(s string) []string {
	parts := strings.Split(s, "|")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (a *Analyzer) loadEntities(r io.Reader) error {
	return dataLines("entities", r, func(line string) error {
		head, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("want SYMBOL: alias | ..., got %q", line)
		}
		head = strings.TrimSpace(head)
		switch head {
		case "cue", "exchange":
			for _, p := range splitAlts(rest) {
				ws, err := a.phraseWords(p)
				if err != nil {
					return err
				}
				if len(ws) != 1 {
					return fmt.Errorf("%s %q must be one word", head, p)
				}
				if head == "cue" {
					a.info[ws[0]].cue = true
				} else {
					a.info[ws[0]].exchange = true
				}
			}
			return nil
		}
		amb := strings.HasSuffix(head, "~")
		name := strings.TrimSuffix(head, "~")
		if name == "" || strings.ContainsAny(name, " \t$") {
			return fmt.Errorf("bad symbol %q", head)
		}
		if _, dup := a.symIndex[name]; dup {
			return fmt.Errorf("symbol %s listed twice", name)
		}
		sym := int32(len(a.syms))
		a.syms = append(a.syms, symbolEntry{name: name, ambigTicker: amb})
		a.symIndex[name] = sym
		tickers := []string{name}
		for _, p := range splitAlts(rest) {
			if strings.HasPrefix(p, "@") {
				tickers = append(tickers, p[1:])
				continue
			}
			ambig := strings.HasPrefix(p, "~")
			ws, err := a.phraseWords(strings.TrimPrefix(p, "~"))
			if err != nil {
				return err
			}
			a.info[ws[0]].entStart = true
			a.ent.insert(ws, int32(len(a.aliases)))
			a.aliases = append(a.aliases, alias{sym: sym, ambiguous: ambig})
		}
		for _, tk := range tickers {
			if tk != strings.ToUpper(tk) {
				return fmt.Errorf("ticker %q must be upper case", tk)
			}
			ws, err := a.phraseWords(tk)
			if err != nil {
				return err
			}
			if len(ws) != 1 {
				return fmt.Errorf("ticker %q must be one token", tk)
			}
			if prev := a.info[ws[0]].ticker; prev >= 0 {
				return fmt.Errorf("ticker %s already belongs to %s", tk, a.syms[prev].name)
			}
			a.info[ws[0]].ticker = sym
		}
		return nil
	})
}

func (a *Analyzer) loadLexicon(r io.Reader) error {
	seen := map[string]bool{}
	return dataLines("lexicon", r, func(line string) error {
		kindField, rest, _ := strings.Cut(line, " ")
		e := lexEntry{}
		switch kindField {
		case "neg":
			e.kind = lexNeg
		case "clause":
			e.kind = lexClause
		case "int":
			f, r2, _ := strings.Cut(strings.TrimSpace(rest), " ")
			v, err := strconv.ParseFloat(f, 64)
			if err != nil || v <= 0 || v > 4 {
				return fmt.Errorf("bad intensifier factor %q", f)
			}
			e.kind, e.weight, rest = lexIntens, v, r2
		default:
			v, err := strconv.ParseFloat(kindField, 64)
			if err != nil || v < -1 || v > 1 || v == 0 {
				return fmt.Errorf("want neg, int, clause or a weight in [-1, 1], got %q", kindField)
			}
			e.kind, e.weight = lexSentiment, v
		}
		for _, p := range splitAlts(rest) {
			ws, err := a.phraseWords(p)
			if err != nil {
				return err
			}
			key := fmt.Sprint(ws)
			if seen[key] {
				return fmt.Errorf("phrase %q listed twice", p)
			}
			seen[key] = true
			a.info[ws[0]].lexStart = true
			if e.kind == lexSentiment {
				a.info[ws[0]].finance = true
			}
			a.lex.insert(ws, int32(len(a.lexEntries)))
			a.lexEntries = append(a.lexEntries, e)
		}
		return nil
	})
}

func (a *Analyzer) loadEvents(r io.Reader) error {
	return dataLines("events", r, func(line string) error {
		head, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("want TYPE: slot ..., got %q", line)
		}
		head = strings.TrimSpace(head)
		ru := rule{veto: strings.HasPrefix(head, "!")}
		typ := strings.TrimPrefix(head, "!")
		if typ == "" || strings.ContainsAny(typ, " \"\\") {
			return fmt.Errorf("bad event type %q", head)
		}
		ru.typ = -1
		for i, t := range a.eventTypes {
			if t == typ {
				ru.typ = int32(i)
			}
		}
		if ru.typ < 0 {
			ru.typ = int32(len(a.eventTypes))
			a.eventTypes = append(a.eventTypes, typ)
		}
		gap := 0
		for _, f := range strings.Fields(rest) {
			if strings.HasPrefix(f, "...") {
				gap = 3
				if len(f) > 3 {
					g, err := strconv.Atoi(f[3:])
					if err != nil || g < 1 || g > 8 {
						return fmt.Errorf("bad gap %q", f)
					}
					gap = g
				}
				continue
			}
			s := slot{gap: gap}
			gap = 0
			for _, alt := range splitAlts(f) {
				ws, err := a.phraseWords(alt)
				if err != nil {
					return err
				}
				if len(ws) != 1 {
					return fmt.Errorf("slot alternative %q must be one word", alt)
				}
				s.words = append(s.words, ws[0])
			}
			ru.slots = append(ru.slots, s)
		}
		if len(ru.slots) == 0 || ru.slots[0].gap != 0 {
			return fmt.Errorf("rule %q must start with a slot", line)
		}
		if gap != 0 {
			return fmt.Errorf("rule %q ends with a gap", line)
		}
		idx := int32(len(a.rules))
		a.rules = append(a.rules, ru)
		for _, w := range ru.slots[0].words {
			a.info[w].evRules = append(a.info[w].evRules, idx)
		}
		return nil
	})
}

// New builds an Analyzer from d (nil readers: the embedded defaults). It is
// built once and is then read-only: safe for concurrent Analyze calls, each
// with its own Result.
func New(d Data) (*Analyzer, error) {
	a := &Analyzer{
		words:    map[string]int32{},
		symIndex: map[string]int32{},
		ent:      newTrie(),
		lex:      newTrie(),
	}
	pick := func(r io.Reader, def []byte) io.Reader {
		if r == nil {
			return bytes.NewReader(def)
		}
		return r
	}
	if err := a.loadEntities(pick(d.Entities, defaultEntities)); err != nil {
		return nil, err
	}
	if err := a.loadLexicon(pick(d.Lexicon, defaultLexicon)); err != nil {
		return nil, err
	}
	if err := a.loadEvents(pick(d.Events, defaultEvents)); err != nil {
		return nil, err
	}
	a.vocab = buildVocab(a.words)
	for _, ws := range a.rules {
		for _, s := range ws.slots {
			sort.Slice(s.words, func(i, j int) bool { return s.words[i] < s.words[j] })
		}
	}
	return a, nil
}

// NewFromFiles builds an Analyzer from data files on disk; an empty path
// means the embedded default for that file.
func NewFromFiles(entitiesPath, lexiconPath, eventsPath string) (*Analyzer, error) {
	var d Data
	for _, f := range []struct {
		path string
		dst  *io.Reader
	}{{entitiesPath, &d.Entities}, {lexiconPath, &d.Lexicon}, {eventsPath, &d.Events}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("news: %w", err)
		}
		*f.dst = bytes.NewReader(b)
	}
	return New(d)
}

// Default returns an Analyzer over the embedded data files. It panics if they
// do not parse, which the package tests rule out.
func Default() *Analyzer {
	a, err := New(Data{})
	if err != nil {
		panic(err)
	}
	return a
}

// Symbols returns the dictionary's symbols in file order.
func (a *Analyzer) Symbols() []string {
	out := make([]string, len(a.syms))
	for i, s := range a.syms {
		out[i] = s.name
	}
	return out
}

// EventTypes returns the event types of the rules in file order.
func (a *Analyzer) EventTypes() []string { return append([]string(nil), a.eventTypes...) }
