package news

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qstream/codec"
)

var testAnalyzer = Default()

func analyze(headline, body string, tagged ...string) *Result {
	var r Result
	testAnalyzer.Analyze(&r, []byte(headline), []byte(body), tagged)
	return &r
}

// checkEntities asserts the entities' symbols and texts, and that every
// entity's [Start, End) in Text is its text.
func checkEntities(t *testing.T, r *Result, want ...string) {
	t.Helper()
	var got []string
	for _, e := range r.Entities {
		got = append(got, e.Symbol+"="+string(r.Text[e.Start:e.End]))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%q: entities %v, want %v", r.Text, got, want)
	}
}

func TestOffsetsIntoHeadlineNewlineBody(t *testing.T) {
	h, b := "Nvidia and $AMD rise", "Shares of Advanced Micro Devices (NASDAQ: AMD) and NVDA rose."
	r := analyze(h, b)
	if string(r.Text) != h+"\n"+b || r.HeadlineLen != len(h) {
		t.Fatalf("Text %q HeadlineLen %d", r.Text, r.HeadlineLen)
	}
	checkEntities(t, r, "NVDA=Nvidia", "AMD=$AMD", "AMD=Advanced Micro Devices", "AMD=AMD", "NVDA=NVDA")
	// the offsets, written out: body offsets are shifted by len(headline)+1
	want := [][2]int{{0, 6}, {11, 15}, {21 + 10, 21 + 32}, {21 + 42, 21 + 45}, {21 + 51, 21 + 55}}
	for i, e := range r.Entities {
		if e.Start != want[i][0] || e.End != want[i][1] {
			t.Errorf("entity %d [%d,%d), want %v", i, e.Start, e.End, want[i])
		}
	}
	// without a body there is no separator
	r = analyze("Tesla slips", "")
	if string(r.Text) != "Tesla slips" {
		t.Errorf("Text %q", r.Text)
	}
	// UTF-8 before a mention: offsets count bytes
	r = analyze("Größter Gewinn für Microsoft", "")
	checkEntities(t, r, "MSFT=Microsoft")
	if r.Entities[0].Start != len("Größter Gewinn für ") {
		t.Errorf("start %d, want %d bytes", r.Entities[0].Start, len("Größter Gewinn für "))
	}
}

func TestCashtags(t *testing.T) {
	checkEntities(t, analyze("$AAPL $aapl $Msft $BRK.B and $XBT", ""),
		"AAPL=$AAPL", "AAPL=$aapl", "MSFT=$Msft", "BRK.B=$BRK.B", "BTC=$XBT")
	// money is no cashtag; an unknown cashtag is nothing unless tagged
	checkEntities(t, analyze("Deal worth $5 billion for $ZZZZ", ""))
	checkEntities(t, analyze("Deal worth $5 billion for $zzzz", "", "ZZZZ"), "ZZZZ=$zzzz")
	// ambiguous tickers count as cashtags, in parentheses and after an exchange
	checkEntities(t, analyze("$T up; AT&T (T) and NYSE: T", ""), "T=$T", "T=AT&T", "T=T", "T=T")
	// but not bare, and not after a colon that is not an exchange's
	checkEntities(t, analyze("T shares and V and Note: T", ""))
}

func TestWordBoundaries(t *testing.T) {
	// tickers and names only as whole tokens
	checkEntities(t, analyze("AAPLX and XAAPL and MSFTs and Teslas and Microsofty", ""))
	checkEntities(t, analyze("Pineapple prices and Fordham University", ""))
	// lower-case tickers are words, not tickers; bare tickers need capitals
	checkEntities(t, analyze("nvda and amd and Nvda", ""))
	// possessives and punctuation around names
	checkEntities(t, analyze("Microsoft's cloud, (Tesla), \"Nvidia\"-led rally; Lowe's.", ""),
		"MSFT=Microsoft", "TSLA=Tesla", "NVDA=Nvidia", "LOW=Lowe")
	// multi-word names win over their first word, and a longer alias over a shorter one
	checkEntities(t, analyze("Bank of America and Bitcoin Cash beat Bitcoin", ""),
		"BAC=Bank of America", "BCH=Bitcoin Cash", "BTC=Bitcoin")
	// punctuation between the words of a name does not matter
	checkEntities(t, analyze("Coca Cola and Coca-Cola and T-Mobile", ""),
		"KO=Coca Cola", "KO=Coca-Cola", "TMUS=T-Mobile")
	// a name does not span a sentence
	checkEntities(t, analyze("He spoke of Bank. Of America we know little.", ""))
}

func TestAmbiguousNames(t *testing.T) {
	for _, c := range []struct {
		h, body string
		tagged  []string
		want    []string
	}{
		{"apple prices at the market", "", nil, nil},                                              // lower case: the fruit
		{"Apple pie recipe", "", nil, nil},                                                        // capitalised only as the first word
		{"Apple Pie Recipes For Fall", "", nil, nil},                                              // title case says nothing
		{"Apple shares rise", "", nil, []string{"AAPL=Apple"}},                                    // a cue word
		{"Apple beats estimates", "", nil, []string{"AAPL=Apple"}},                                // a finance word follows
		{"Apple pie recipe", "", []string{"AAPL"}, []string{"AAPL=Apple"}},                        // tagged
		{"Apple's new phone", "", nil, []string{"AAPL=Apple"}},                                    // possessive
		{"We like Apple for the long run", "", nil, []string{"AAPL=Apple"}},                       // capitalised in running text
		{"Apple event", "Apple Inc. will present", nil, []string{"AAPL=Apple", "AAPL=Apple Inc"}}, // named unambiguously elsewhere
		{"Visa and Mastercard", "", nil, []string{"V=Visa", "MA=Mastercard"}},                     // listed with a company
		{"A travel visa", "", nil, nil},
		{"Target practice at the range", "", nil, nil},
	} {
		checkEntities(t, analyze(c.h, c.body, c.tagged...), c.want...)
	}
}

func sentimentOf(h, body string) float64 { return analyze(h, body).Sentiment }

func TestNegation(t *testing.T) {
	pos := sentimentOf("Results were strong", "")
	neg := sentimentOf("Results were not strong", "")
	if !(pos > 0 && neg < 0) {
		t.Fatalf("strong %v, not strong %v: negation must flip", pos, neg)
	}
	// the negated term keeps NegationScale of its weight: tanh(0.6) vs tanh(-0.45)
	if math.Abs(pos-round4(math.Tanh(0.6))) > 1e-9 || math.Abs(neg-round4(math.Tanh(-0.75*0.6))) > 1e-9 {
		t.Errorf("strong %v not strong %v", pos, neg)
	}
	for _, c := range []struct {
		h    string
		sign int
	}{
		{"Company fails to beat estimates", -1},
		{"Sales never declined", +1},
		{"Shares didn't fall", +1},
		{"Shares didn’t fall", +1}, // U+2019 apostrophe
		{"No growth this year", -1},
		{"Without a loss this quarter", +1},
		{"Not only growth", -1},               // a double meaning the window does not see: still a flip
		{"Not surprising, shares fell", -1},   // the comma closes the negator's clause
		{"Not a problem but shares fell", -1}, // "but" does too
		{"Company not in talks, profit surged", +1},
		{"Not the earnings: they said nothing, not ever, and shares rose", +1},
		{"It was never, ever going to collapse", -1}, // comma: "never" does not reach "collapse"
		{"We avoided a loss", +1},
		{"Not not strong", +1}, // two negators cancel
	} {
		s := sentimentOf(c.h, "")
		if (c.sign > 0 && s <= 0) || (c.sign < 0 && s >= 0) {
			t.Errorf("%q: sentiment %v, want sign %d", c.h, s, c.sign)
		}
	}
	// a negator beyond 3 tokens does not reach
	if s := sentimentOf("Not that the company ever said profit", ""); s <= 0 {
		t.Errorf("far negator flipped: %v", s)
	}
}

func TestIntensifiers(t *testing.T) {
	base := sentimentOf("Shares fell", "")
	for _, c := range []struct {
		h      string
		factor float64
	}{
		{"Shares fell sharply", 1.5},
		{"Shares sharply fell", 1.5},
		{"Shares significantly fell", 1.5},
		{"Shares fell slightly", 0.6},
		{"Shares very sharply fell", 1.5 * 1.3},
		{"Shares fell, sharply", 1}, // a clause break stops it
		{"Sharply higher yields, shares fell", 1},
	} {
		want := round4(math.Tanh(-0.7 * c.factor))
		if c.h == "Sharply higher yields, shares fell" {
			want = round4(math.Tanh(0.4*1.5 - 0.7))
		}
		if got := sentimentOf(c.h, ""); math.Abs(got-want) > 1e-9 {
			t.Errorf("%q: %v, want %v (base %v)", c.h, got, want, base)
		}
	}
	// intensified and negated
	if got, want := sentimentOf("Not significantly higher", ""), round4(math.Tanh(0.4*1.5*NegationScale)); got != want {
		t.Errorf("not significantly higher: %v, want %v", got, want)
	}
}

func TestSentimentFormula(t *testing.T) {
	// headline and body: HeadlineWeight·tanh(h) + (1-HeadlineWeight)·tanh(b/2)
	r := analyze("Profit surged", "Costs rose. Revenue fell.")
	h := 0.6 + 0.9
	b := 0.6 - 0.7
	want := round4(2.0/3*math.Tanh(h) + 1.0/3*math.Tanh(b/2))
	if r.Sentiment != want {
		t.Errorf("sentiment %v, want %v", r.Sentiment, want)
	}
	// bounded in [-1, 1] however many terms
	long := strings.Repeat("Shares soared sharply, profit surged to a record high. ", 100)
	if s := sentimentOf(long, long); s > 1 || s < 0.99 {
		t.Errorf("saturated sentiment %v", s)
	}
	// entities are not sentiment words: Block the company
	if s := sentimentOf("Block Inc. reports", ""); s != 0 {
		t.Errorf("company name scored: %v", s)
	}
}

func TestRelevance(t *testing.T) {
	r := analyze("Nvidia soars", "Nvidia said demand was strong. Nvidia and Intel both supply Dell.", "NVDA", "TSLA")
	want := map[string]float64{
		// 0.4·headline + 0.25·count/max + 0.2·(1-first/len) + 0.15·tagged
		"NVDA": 1,
		"TSLA": 0.15,
		"INTC": round4(0.25*1.0/3 + 0.2*(1-float64(strings.Index(string(r.Text), "Intel"))/float64(len(r.Text)))),
		"DELL": round4(0.25*1.0/3 + 0.2*(1-float64(strings.Index(string(r.Text), "Dell"))/float64(len(r.Text)))),
	}
	if strings.Join(r.Symbols, ",") != "NVDA,TSLA,INTC,DELL" {
		t.Fatalf("symbols %v", r.Symbols)
	}
	for i, s := range r.Symbols {
		if r.Relevance[i] != want[s] {
			t.Errorf("%s relevance %v, want %v", s, r.Relevance[i], want[s])
		}
	}
}

func eventTypes(r *Result) []string {
	var out []string
	for _, e := range r.Events {
		out = append(out, e.Type+"="+string(r.Text[e.Start:e.End]))
	}
	return out
}

func TestEvents(t *testing.T) {
	for _, c := range []struct {
		h    string
		want string
	}{
		{"Apple beats Wall Street estimates", "earnings_beat=beats Wall Street"}, // the first slot word that fits ends it
		{"Intel misses analysts' revenue expectations", "earnings_miss=misses analysts' revenue expectations"},
		{"Nike raises its full-year outlook", "guidance_raise=raises its full-year outlook"},
		{"Ford cuts 2025 guidance", "guidance_cut=cuts 2025 guidance"},
		{"Chevron agrees to acquire Hess", "merger_acquisition=acquire"},
		{"HSBC upgrades Boeing", "analyst_upgrade=upgrades"},
		{"Citi downgrades Tesla to sell", "analyst_downgrade=downgrades"},
		{"FDA approves Lilly drug", "regulatory_approval=FDA approves"},
		{"Device wins FDA clearance", "regulatory_approval=wins FDA clearance"},
		{"Retailer files for Chapter 11 protection", "bankruptcy=Chapter 11"},
		{"Trading halted in shares of XYZ", "trading_halt=Trading halted"},
		{"Company seeks FDA approval", ""},                                                      // veto
		{"FDA rejects the application for approval", ""},                                        // veto across a gap
		{"Company did not miss estimates", ""},                                                  // negated
		{"Apple beats estimates. Apple beats estimates again", "earnings_beat=beats estimates"}, // first of a type
		{"Apple beats. Estimates were low", ""},                                                 // a rule never spans sentences
	} {
		got := strings.Join(eventTypes(analyze(c.h, "")), ";")
		if got != c.want {
			t.Errorf("%q: events %q, want %q", c.h, got, c.want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	r := analyze("Apple \"beats\" estimates", "Tesla\x01 rose; bad \xff byte", "AAPL")
	line := AppendJSON(nil, []byte("id\"1"), 1700000000123456789, r)
	var v struct {
		ID       string   `json:"id"`
		Ts       int64    `json:"ts"`
		Symbols  []string `json:"symbols"`
		Entities []struct {
			Text, Symbol string
			Start, End   int
		} `json:"entities"`
		Sentiment float64            `json:"sentiment"`
		Relevance map[string]float64 `json:"relevance"`
		Events    []struct{ Type, Evidence string }
	}
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if v.ID != "id\"1" || v.Ts != 1700000000123456789 || strings.Join(v.Symbols, ",") != "AAPL,TSLA" ||
		len(v.Entities) != 2 || v.Entities[0].Text != "Apple" || v.Entities[1].Symbol != "TSLA" ||
		v.Entities[1].Start != r.Entities[1].Start || v.Sentiment != r.Sentiment || v.Relevance["TSLA"] != r.Relevance[1] ||
		len(v.Events) != 1 || v.Events[0].Type != "earnings_beat" || v.Events[0].Evidence != `beats" estimates` {
		t.Errorf("decoded %+v from %s", v, line)
	}
	// worked by hand: sentiment 2/3·tanh(0.8 beats) + 1/3·tanh(0.6 rose / 2) = 0.5398;
	// AAPL 0.4+0.25+0.2·(1-0/47)+0.15 = 1; TSLA 0.25+0.2·(1-24/47) = 0.3479
	want := `{"id":"id\"1","ts":1700000000123456789,"symbols":["AAPL","TSLA"],"entities":[{"text":"Apple","symbol":"AAPL","start":0,"end":5},{"text":"Tesla","symbol":"TSLA","start":24,"end":29}],"sentiment":0.5398,"relevance":{"AAPL":1,"TSLA":0.3479},"events":[{"type":"earnings_beat","evidence":"beats\" estimates"}]}`
	if string(line) != want {
		t.Errorf("line\n%s\nwant\n%s", line, want)
	}
	// an empty result is still the full shape
	var empty Result
	testAnalyzer.Analyze(&empty, nil, nil, nil)
	if got := string(AppendJSON(nil, nil, 0, &empty)); got != `{"id":"","ts":0,"symbols":[],"entities":[],"sentiment":0,"relevance":{},"events":[]}` {
		t.Errorf("empty: %s", got)
	}
}

func TestAnalyzeArticle(t *testing.T) {
	tab := codec.NewSymbolTable(8)
	id, _ := tab.InternString("NVDA")
	art := codec.NewsArticle{Headline: []byte("Chip stocks rally"), Body: []byte("Nvidia led."), Symbols: []codec.Symbol{id}}
	var r Result
	testAnalyzer.AnalyzeArticle(&r, &art, tab)
	if strings.Join(r.Symbols, ",") != "NVDA" || len(r.Entities) != 1 || r.Relevance[0] <= 0.15 {
		t.Errorf("symbols %v entities %v relevance %v", r.Symbols, r.Entities, r.Relevance)
	}
}

func TestCustomFiles(t *testing.T) {
	dir := t.TempDir()
	ent := filepath.Join(dir, "e.txt")
	lex := filepath.Join(dir, "l.txt")
	ev := filepath.Join(dir, "v.txt")
	os.WriteFile(ent, []byte("cue: shares\nACME: Acme Corp. | ~Roadrunner\n"), 0o644)
	os.WriteFile(lex, []byte("+1 zoom\nneg nope\n"), 0o644)
	os.WriteFile(ev, []byte("launch: rocket ...2 launch\n"), 0o644)
	a, err := NewFromFiles(ent, lex, ev)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	a.Analyze(&r, []byte("Acme Corp rocket zoom launch; Apple beats"), nil, nil)
	if len(r.Entities) != 1 || r.Entities[0].Symbol != "ACME" || r.Sentiment != round4(math.Tanh(1)) ||
		len(r.Events) != 1 || r.Events[0].Type != "launch" {
		t.Errorf("%+v", r)
	}
	if strings.Join(a.EventTypes(), ",") != "launch" || strings.Join(a.Symbols(), ",") != "ACME" {
		t.Errorf("types %v symbols %v", a.EventTypes(), a.Symbols())
	}
	// an empty path keeps the embedded file
	if a, err := NewFromFiles("", lex, ""); err != nil || len(a.Symbols()) < 100 {
		t.Errorf("defaults: %v", err)
	}
	for _, bad := range []Data{
		{Entities: strings.NewReader("AAPL Apple\n")},
		{Entities: strings.NewReader("AAPL: Apple\nAAPL: Apple Inc.\n")},
		{Entities: strings.NewReader("AAPL: @aapl\n")},
		{Entities: strings.NewReader("AAPL: Apple\nAPL: @AAPL\n")},
		{Lexicon: strings.NewReader("+2 good\n")},
		{Lexicon: strings.NewReader("+0.5 good\n-0.5 good\n")},
		{Lexicon: strings.NewReader("int 0 very\n")},
		{Events: strings.NewReader("x: ... a\n")},
		{Events: strings.NewReader("x: a ...\n")},
		{Events: strings.NewReader("x: a ...99 b\n")},
	} {
		if _, err := New(bad); err == nil || !strings.HasPrefix(err.Error(), "news: ") {
			t.Errorf("%+v: err %v", bad, err)
		}
	}
	if _, err := NewFromFiles(filepath.Join(dir, "missing"), "", ""); err == nil {
		t.Error("missing file accepted")
	}
}

// TestDefaultData checks the embedded files: at least 100 stocks and the
// major crypto assets, each with a name.
func TestDefaultData(t *testing.T) {
	a := Default()
	syms := strings.Join(a.Symbols(), " ")
	for _, s := range []string{"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "BTC", "ETH", "SOL", "XRP", "DOGE", "USDT"} {
		if !strings.Contains(" "+syms+" ", " "+s+" ") {
			t.Errorf("%s missing", s)
		}
	}
	if n := len(a.Symbols()); n < 120 {
		t.Errorf("%d symbols", n)
	}
	named := map[int32]bool{}
	for _, al := range a.aliases {
		named[al.sym] = true
	}
	for i, s := range a.syms {
		if !named[int32(i)] {
			t.Errorf("%s has no name", s.name)
		}
	}
	if len(a.eventTypes) != 10 {
		t.Errorf("event types %v", a.eventTypes)
	}
}

// TestAnalyzeAllocs: after a warm-up, Analyze and AppendJSON allocate
// nothing per article.
func TestAnalyzeAllocs(t *testing.T) {
	arts := benchArticles(16)
	var r Result
	buf := make([]byte, 0, 4096)
	for _, a := range arts {
		testAnalyzer.Analyze(&r, a.headline, a.body, a.tagged)
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		a := arts[i%len(arts)]
		i++
		testAnalyzer.Analyze(&r, a.headline, a.body, a.tagged)
		buf = AppendJSON(buf[:0], []byte("id"), 1, &r)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per article", allocs)
	}
}
