package news

import (
	"encoding/json"
	"fmt"
	"testing"
)

// FuzzAnalyze checks the invariants of any analysis: spans lie in Text, in
// order, not overlapping, on the text they name; sentiment in [-1, 1],
// relevance in [0, 1], one per symbol; the JSON line is valid JSON.
func FuzzAnalyze(f *testing.F) {
	for _, c := range labelledSet {
		f.Add(c.headline, c.body, "AAPL")
	}
	f.Add("$AAPL (T) NYSE: V didn’t fall", "Größter\xff Gewinn — Apple's $ZZ '", "ZZ")
	f.Add("", "", "")
	f.Add("...$$$'s 's -- \n\n Apple", "Inc. U.S. J.P. Morgan.", "")
	f.Fuzz(func(t *testing.T, h, body, tag string) {
		var tagged []string
		if tag != "" {
			tagged = []string{tag}
		}
		var r Result
		testAnalyzer.Analyze(&r, []byte(h), []byte(body), tagged)
		for _, tk := range r.toks {
			w := r.Text[tk.start:tk.end]
			if tk.flags&fCash != 0 {
				w = w[1:]
			}
			if tk.hash != hashLower(w) {
				t.Fatalf("token %q hash %x, want %x", w, tk.hash, hashLower(w))
			}
		}
		prevEnd := 0
		for _, e := range r.Entities {
			if e.Start < prevEnd || e.End <= e.Start || e.End > len(r.Text) {
				t.Fatalf("entity %+v after %d in %d bytes", e, prevEnd, len(r.Text))
			}
			prevEnd = e.End
			found := false
			for _, s := range r.Symbols {
				found = found || s == e.Symbol
			}
			if !found {
				t.Fatalf("entity %s not among symbols %v", e.Symbol, r.Symbols)
			}
		}
		for _, e := range r.Events {
			if e.End <= e.Start || e.End > len(r.Text) {
				t.Fatalf("event %+v", e)
			}
		}
		if r.Sentiment < -1 || r.Sentiment > 1 || len(r.Relevance) != len(r.Symbols) {
			t.Fatalf("sentiment %v relevance %v symbols %v", r.Sentiment, r.Relevance, r.Symbols)
		}
		for _, v := range r.Relevance {
			if v < 0 || v > 1 {
				t.Fatalf("relevance %v", r.Relevance)
			}
		}
		line := AppendJSON(nil, []byte(h), 1, &r)
		if !json.Valid(line) {
			t.Fatalf("invalid JSON %s", line)
		}
	})
}

func ExampleAnalyzer_Analyze() {
	a := Default()
	var res Result // reuse one Result per goroutine
	a.Analyze(&res, []byte("Apple beats estimates, raises guidance"),
		[]byte("Shares of $AAPL rose sharply; Microsoft did not comment."), []string{"AAPL"})
	for _, e := range res.Entities {
		fmt.Printf("%s %q [%d,%d)\n", e.Symbol, res.Text[e.Start:e.End], e.Start, e.End)
	}
	fmt.Println(string(AppendJSON(nil, []byte("n1"), 1700000000000000000, &res)))
	// Output:
	// AAPL "Apple" [0,5)
	// AAPL "$AAPL" [49,54)
	// MSFT "Microsoft" [69,78)
	// {"id":"n1","ts":1700000000000000000,"symbols":["AAPL","MSFT"],"entities":[{"text":"Apple","symbol":"AAPL","start":0,"end":5},{"text":"$AAPL","symbol":"AAPL","start":49,"end":54},{"text":"Microsoft","symbol":"MSFT","start":69,"end":78}],"sentiment":0.7309,"relevance":{"AAPL":1,"MSFT":0.1797},"events":[{"type":"earnings_beat","evidence":"beats estimates"},{"type":"guidance_raise","evidence":"raises guidance"}]}
}
