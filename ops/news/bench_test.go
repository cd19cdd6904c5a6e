package news

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

type benchArticle struct {
	headline, body []byte
	tagged         []string
}

// benchArticles builds n realistic articles of about 1 KiB: a headline naming
// one or two companies with a finance verb, and a body of wire-style
// sentences with names, tickers, cashtags, figures, negations and event
// phrases. Deterministic.
func benchArticles(n int) []benchArticle {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"Apple", "Microsoft", "Nvidia", "Amazon", "Alphabet", "Meta Platforms", "Tesla", "JPMorgan",
		"Exxon Mobil", "Walmart", "Broadcom", "Eli Lilly", "Bank of America", "Coinbase", "Bitcoin", "Ethereum",
		"Goldman Sachs", "Intel", "Pfizer", "Boeing", "Netflix", "Salesforce", "Oracle", "Costco"}
	tickers := []string{"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "WMT", "AVGO", "LLY"}
	heads := []string{"%s beats estimates as demand surges", "%s shares fall after weak outlook", "%s raises guidance on strong sales",
		"%s to acquire rival in $4 billion deal", "Analysts upgrade %s on margin gains", "%s misses revenue forecast, cuts outlook",
		"%s wins FDA approval for new drug", "Trading in %s halted pending news", "%s and %s rally in late trading"}
	sents := []string{
		"Shares of %s rose %d%% in early trading after the company reported quarterly revenue of $%d billion.",
		"The results were not as weak as some investors had feared, analysts at a large bank wrote in a note.",
		"%s said it expects full-year revenue to grow significantly, citing strong demand for its products.",
		"Executives did not comment on the pending acquisition, which still needs regulatory approval.",
		"($%s) The stock has gained %d%% this year, outperforming the broader market by a wide margin.",
		"Competitors including %s and %s have also reported slowing growth in recent quarters.",
		"The company cut about %d jobs last year as part of a restructuring plan to reduce costs.",
		"Investors will watch the guidance closely; a weaker forecast could pressure shares further.",
		"Trading volume was roughly %d million shares, above the 30-day average, according to exchange data.",
		"%s (NASDAQ: %s) did not immediately respond to a request for comment on Tuesday.",
	}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	out := make([]benchArticle, n)
	for i := range out {
		h := pick(heads)
		var head string
		if strings.Count(h, "%s") == 2 {
			head = fmt.Sprintf(h, pick(names), pick(names))
		} else {
			head = fmt.Sprintf(h, pick(names))
		}
		var b strings.Builder
		for b.Len() < 1024-len(head)-120 {
			s := pick(sents)
			var args []any
			for k := 0; k+1 < len(s); k++ {
				if s[k] != '%' {
					continue
				}
				switch s[k+1] {
				case 's':
					if k > 0 && (s[k-1] == '$' || s[k-1] == ' ' && s[k-2] == ':') {
						args = append(args, pick(tickers))
					} else {
						args = append(args, pick(names))
					}
				case 'd':
					args = append(args, 1+rng.IntN(90))
				}
				k++
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, s, args...)
		}
		out[i] = benchArticle{headline: []byte(head), body: []byte(b.String()), tagged: []string{pick(tickers)}}
	}
	return out
}

// naive is the baseline: the same dictionary, lexicon and rules matched the
// obvious way, strings.Index per alias and lexicon phrase over the
// lower-cased text with a word-boundary check, and one regexp per event
// rule. It finds the same kind of things (no negation, no case rules).
type naive struct {
	aliases []string // lower case
	lex     []string
	weights []float64
	rules   []*regexp.Regexp
}

func newNaive() *naive {
	n := &naive{}
	for _, line := range strings.Split(string(defaultEntities), "\n") {
		head, rest, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") || head == "cue" || head == "exchange" {
			continue
		}
		n.aliases = append(n.aliases, strings.ToLower(strings.TrimSuffix(head, "~")))
		for _, p := range splitAlts(rest) {
			n.aliases = append(n.aliases, strings.ToLower(strings.TrimLeft(p, "~@")))
		}
	}
	for _, line := range strings.Split(string(defaultLexicon), "\n") {
		f, rest, _ := strings.Cut(line, " ")
		var w float64
		if _, err := fmt.Sscan(f, &w); err != nil {
			continue
		}
		for _, p := range splitAlts(rest) {
			n.lex = append(n.lex, p)
			n.weights = append(n.weights, w)
		}
	}
	for _, line := range strings.Split(string(defaultEvents), "\n") {
		_, rest, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var re strings.Builder
		re.WriteString(`(?i)\b`)
		for k, f := range strings.Fields(rest) {
			if strings.HasPrefix(f, "...") {
				re.WriteString(`(?:\W+\w+){0,3}?`)
				continue
			}
			if k > 0 {
				re.WriteString(`\W+`)
			}
			re.WriteString(`(?:` + f + `)\b`)
		}
		n.rules = append(n.rules, regexp.MustCompile(re.String()))
	}
	return n
}

func boundary(s string, i int) bool {
	return i < 0 || i >= len(s) || !isAlnum(s[i])
}

func countWord(text, w string) int {
	c := 0
	for off := 0; ; {
		i := strings.Index(text[off:], w)
		if i < 0 {
			return c
		}
		i += off
		if boundary(text, i-1) && boundary(text, i+len(w)) {
			c++
		}
		off = i + 1
	}
}

func (n *naive) analyze(headline, body []byte) (entities int, sentiment float64, events int) {
	text := strings.ToLower(string(headline) + "\n" + string(body))
	for _, a := range n.aliases {
		entities += countWord(text, a)
	}
	for i, w := range n.lex {
		sentiment += float64(countWord(text, w)) * n.weights[i]
	}
	for _, re := range n.rules {
		if re.MatchString(text) {
			events++
		}
	}
	return entities, sentiment, events
}

// BenchmarkAnalyze measures articles/s for ~1 KiB articles (issue 10: at
// least 50k/s) with the JSON line encoded, and the naive baseline in the same
// run. Both check that they found entities in every article.
func BenchmarkAnalyze(b *testing.B) {
	arts := benchArticles(256)
	var total int
	for _, a := range arts {
		total += len(a.headline) + 1 + len(a.body)
	}
	b.Run("Analyzer", func(b *testing.B) {
		an := Default()
		var r Result
		buf := make([]byte, 0, 8192)
		entities, events := 0, 0
		b.ReportAllocs()
		b.SetBytes(int64(total / len(arts)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a := &arts[i%len(arts)]
			an.Analyze(&r, a.headline, a.body, a.tagged)
			buf = AppendJSON(buf[:0], []byte("id"), int64(i), &r)
			if len(r.Entities) == 0 {
				b.Fatalf("no entity in %q", a.headline)
			}
			entities += len(r.Entities)
			events += len(r.Events)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "articles/s")
		b.ReportMetric(float64(entities)/float64(b.N), "entities/article")
		b.ReportMetric(float64(events)/float64(b.N), "events/article")
	})
	b.Run("Baseline", func(b *testing.B) {
		nv := newNaive()
		b.ReportAllocs()
		b.SetBytes(int64(total / len(arts)))
		entities := 0
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a := &arts[i%len(arts)]
			e, _, _ := nv.analyze(a.headline, a.body)
			if e == 0 {
				b.Fatalf("no entity in %q", a.headline)
			}
			entities += e
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "articles/s")
		b.ReportMetric(float64(entities)/float64(b.N), "entities/article")
	})
}

func TestBenchArticles(t *testing.T) {
	arts := benchArticles(64)
	for _, a := range arts {
		n := len(a.headline) + 1 + len(a.body)
		if n < 900 || n > 1200 {
			t.Errorf("article of %d bytes: %q", n, a.body)
		}
		if strings.Contains(string(a.body), "%!") {
			t.Fatalf("format error: %s", a.body)
		}
	}
	t.Logf("example: %s\n%s", arts[0].headline, arts[0].body)
}
