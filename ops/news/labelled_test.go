package news

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// labelled is one article written and labelled by hand for this test: the
// symbols a reader sees named in the text (not the tags; only symbols of the
// default dictionary's universe, so Walgreens or Hess are not labelled), the sign of its
// tone for the companies named (+, -, 0) and its market event types. The
// labels say what the article means, not what the analyzer returns.
type labelled struct {
	headline, body string
	tagged         []string
	entities       string // space-separated symbols
	sign           byte   // '+', '-', '0'
	events         string // space-separated event types
}

var labelledSet = []labelled{
	// positive
	{headline: "Apple beats estimates as iPhone sales surge", entities: "AAPL", sign: '+', events: "earnings_beat"},
	{headline: "Nvidia raises full-year revenue guidance on data center demand", entities: "NVDA", sign: '+', events: "guidance_raise"},
	{headline: "Microsoft shares climb to record high after strong cloud growth", entities: "MSFT", sign: '+'},
	{headline: "Eli Lilly wins FDA approval for obesity drug", entities: "LLY", sign: '+', events: "regulatory_approval"},
	{headline: "Goldman Sachs upgrades Tesla to buy, sees upside in energy storage", entities: "GS TSLA", sign: '+', events: "analyst_upgrade"},
	{headline: "Costco posts solid quarterly profit, membership fees rise", entities: "COST", sign: '+'},
	{headline: "$AMD rallies as new AI chips win major cloud customers", entities: "AMD", sign: '+'},
	{headline: "JPMorgan profit jumps 12% on higher interest income", entities: "JPM", sign: '+'},
	{headline: "Bitcoin soars past $100,000 as ETF inflows accelerate", entities: "BTC", sign: '+'},
	{headline: "Solana rebounds strongly after network upgrade", entities: "SOL", sign: '+'},
	{headline: "Broadcom results top expectations; company lifts dividend", entities: "AVGO", sign: '+', events: "earnings_beat"},
	{headline: "Walmart raises outlook after strong holiday sales", entities: "WMT", sign: '+', events: "guidance_raise"},
	{headline: "Netflix subscriber growth accelerates sharply in fourth quarter", entities: "NFLX", sign: '+'},
	{headline: "Meta Platforms surges after upbeat advertising forecast", entities: "META", sign: '+'},
	// negative
	{headline: "Intel misses estimates and cuts guidance as PC demand weakens", entities: "INTC", sign: '-', events: "earnings_miss guidance_cut"},
	{headline: "Boeing shares tumble after FAA grounds 737 MAX jets", entities: "BA", sign: '-'},
	{headline: "Morgan Stanley downgrades Nike to underweight on weak China sales", entities: "MS NKE", sign: '-', events: "analyst_downgrade"},
	{headline: "Pfizer slashes 2025 forecast, shares slide", entities: "PFE", sign: '-', events: "guidance_cut"},
	{headline: "Ether falls 8% as crypto selloff deepens", entities: "ETH", sign: '-'},
	{headline: "Dogecoin plunges after Musk comments", entities: "DOGE", sign: '-'},
	{headline: "UnitedHealth faces Justice Department investigation into billing", entities: "UNH", sign: '-'},
	{headline: "Starbucks sales decline for third straight quarter", entities: "SBUX", sign: '-'},
	{headline: "Disney results fall short of expectations as parks slow", entities: "DIS", sign: '-', events: "earnings_miss"},
	{headline: "Exxon Mobil profit drops sharply on weaker oil prices", entities: "XOM", sign: '-'},
	{headline: "CrowdStrike outage disrupts airlines and banks worldwide", entities: "CRWD", sign: '-'},
	{headline: "Wells Fargo fined $3 billion over sales practices", entities: "WFC", sign: '-'},
	// negated
	{headline: "Tesla fails to meet delivery expectations", entities: "TSLA", sign: '-'},
	{headline: "Amazon.com says holiday demand was not strong", entities: "AMZN", sign: '-'},
	{headline: "Oracle shares are no longer rising after the cloud deal", entities: "ORCL", sign: '-', events: ""},
	{headline: "Salesforce did not miss estimates, easing investor fears", entities: "CRM", sign: '+'},
	{headline: "Merck says trial showed no decline in efficacy", entities: "MRK", sign: '+'},
	{headline: "Coinbase has never been profitable in a bear market, CFO says", entities: "COIN", sign: '-'},
	// neutral
	{headline: "Alphabet to hold annual shareholder meeting on June 6", entities: "GOOGL", sign: '0'},
	{headline: "Visa names new chief technology officer", entities: "V", sign: '0'},
	{headline: "Procter & Gamble schedules earnings call for Tuesday", entities: "PG", sign: '0'},
	{headline: "Cisco to present at investor conference next week", entities: "CSCO", sign: '0'},
	{headline: "Home Depot opens distribution center in Texas", entities: "HD", sign: '0'},
	{headline: "Fed minutes due at 2 p.m. Wednesday", entities: "", sign: '0'},
	{headline: "Treasury yields little changed ahead of jobs data", entities: "", sign: '0'},
	// ambiguous company names
	{headline: "Apple pie and cider sales at farm stands in Vermont", entities: "", sign: '0'},
	{headline: "Shoppers target bargains at outlet malls", entities: "", sign: '0'},
	{headline: "Target shares rise after retailer reports strong comparable sales", entities: "TGT", sign: '+'},
	{headline: "Travelers apply for a visa before the trip to Brazil", entities: "", sign: '0'},
	{headline: "An avalanche closed the mountain pass on Sunday", entities: "", sign: '0'},
	{headline: "Investors bought Apple and Amazon after the Fed decision", entities: "AAPL AMZN", sign: '0'},
	{headline: "The oracle of the old story spoke in riddles", entities: "", sign: '0'},
	{headline: "Ford recalls 500,000 trucks over brake problems", entities: "F", sign: '-'},
	{headline: "APPLE PIE FESTIVAL DRAWS RECORD CROWDS", entities: "", sign: '+'},
	{headline: "Apple Unveils New iPhone Lineup At September Event", entities: "AAPL", sign: '0'},
	{headline: "Amazon rainforest fires spread across Brazil", entities: "", sign: '-'},
	{headline: "Stellar quarter for Amazon as cloud unit accelerates", entities: "AMZN", sign: '+'},
	// multiple entities
	{headline: "Microsoft and Nvidia gain while Intel and AMD slip", entities: "MSFT NVDA INTC AMD", sign: '0'},
	{headline: "Chevron to acquire Hess in $53 billion deal", entities: "CVX", sign: '0', events: "merger_acquisition"},
	{headline: "Visa and Mastercard hit with antitrust lawsuit over card fees", entities: "V MA", sign: '-'},
	{headline: "Bitcoin and Ethereum slump as Coinbase trading volume drops", entities: "BTC ETH COIN", sign: '-'},
	{headline: "Bank of America and Citigroup report higher trading revenue", entities: "BAC C", sign: '+'},
	// other events
	{headline: "Walgreens explores Chapter 11 filing amid mounting debt", entities: "", sign: '-', events: "bankruptcy"},
	{headline: "Spirit Airlines files for bankruptcy protection", entities: "", sign: '-', events: "bankruptcy"},
	{headline: "Nasdaq halts trading in Super Micro Computer shares pending news", entities: "SMCI", sign: '-', events: "trading_halt"},
	{headline: "Trading in GameStop was halted twice after volatility pause", entities: "", sign: '-', events: "trading_halt"},
	{headline: "Cisco agrees to buy Splunk for $28 billion", entities: "CSCO", sign: '0', events: "merger_acquisition"},
	{headline: "Gilead seeks FDA approval for HIV drug", entities: "GILD", sign: '0', events: ""},
	{headline: "FDA rejects Regeneron drug application", entities: "REGN", sign: '-', events: ""},
	{headline: "Moderna receives FDA clearance for updated COVID vaccine", entities: "MRNA", sign: '+', events: "regulatory_approval"},
	{headline: "Palantir upgraded to outperform at Jefferies", entities: "PLTR", sign: '+', events: "analyst_upgrade"},
	{headline: "Analysts downgrade Lowe's amid housing slowdown", entities: "LOW", sign: '-', events: "analyst_downgrade"},
	// with bodies
	{headline: "Merger talks confirmed", body: "Broadcom Inc. confirmed it is in talks to acquire VMware; shares of $AVGO rose 3% in early trading.", entities: "AVGO", sign: '+', events: "merger_acquisition"},
	{headline: "Quarterly update", body: "Alphabet Inc. reported revenue above expectations. Google Cloud grew 28% and YouTube ads were strong.", entities: "GOOGL", sign: '+', events: "earnings_beat"},
	{headline: "Company statement", body: "PayPal Holdings said it would cut 2,000 jobs, about 7% of its workforce, as growth slows.", entities: "PYPL", sign: '-'},
	{headline: "XRP jumps after court ruling", body: "Ripple Labs won a partial victory in its lawsuit with the SEC. XRP rose 70% on the day.", entities: "XRP", sign: '+'},
	{headline: "AAPL, MSFT lead tech higher", body: "Apple and Microsoft each rose more than 2%, lifting the Nasdaq to a record.", tagged: []string{"AAPL", "MSFT"}, entities: "AAPL MSFT", sign: '+'},
	{headline: "Chipmakers under pressure", body: "Shares of Micron Technology and Applied Materials fell after new export restrictions.", entities: "MU AMAT", sign: '-'},
	{headline: "Crypto market wrap", body: "Cardano and Polkadot were little changed while Chainlink edged higher.", entities: "ADA DOT LINK", sign: '+'},
}

func splitSet(s string) []string {
	f := strings.Fields(s)
	sort.Strings(f)
	return f
}

// NeutralBand is the sentiment magnitude below which the test reads a score
// as neutral (0).
const neutralBand = 0.05

func signOf(s float64) byte {
	switch {
	case s > neutralBand:
		return '+'
	case s < -neutralBand:
		return '-'
	}
	return '0'
}

// TestLabelledSet measures the analyzer on the hand-labelled set and asserts
// bars set before the measurement: entity precision and recall (symbols per
// article, micro-averaged) ≥ 0.9, sentiment sign accuracy ≥ 0.8, event type
// accuracy (the article's set of event types equal to the label's) ≥ 0.85.
func TestLabelledSet(t *testing.T) {
	const (
		minEntityP, minEntityR = 0.9, 0.9
		minSignAcc             = 0.8
		minEventAcc            = 0.85
	)
	if len(labelledSet) < 60 {
		t.Fatalf("labelled set has %d articles, want ≥ 60", len(labelledSet))
	}
	a := Default()
	var res Result
	var tp, fp, fn, signOK, eventOK int
	perType := map[string][3]int{} // tp, fp, fn
	for _, c := range labelledSet {
		a.Analyze(&res, []byte(c.headline), []byte(c.body), c.tagged)
		got := map[string]bool{}
		for _, e := range res.Entities {
			got[e.Symbol] = true
		}
		want := map[string]bool{}
		for _, s := range splitSet(c.entities) {
			want[s] = true
		}
		var miss, extra []string
		for s := range want {
			if got[s] {
				tp++
			} else {
				fn++
				miss = append(miss, s)
			}
		}
		for s := range got {
			if !want[s] {
				fp++
				extra = append(extra, s)
			}
		}
		gotSign := signOf(res.Sentiment)
		if gotSign == c.sign {
			signOK++
		}
		var gotEv []string
		for _, e := range res.Events {
			gotEv = append(gotEv, e.Type)
		}
		sort.Strings(gotEv)
		wantEv := splitSet(c.events)
		if strings.Join(gotEv, " ") == strings.Join(wantEv, " ") {
			eventOK++
		}
		wantEvSet := map[string]bool{}
		for _, e := range wantEv {
			wantEvSet[e] = true
		}
		gotEvSet := map[string]bool{}
		for _, e := range gotEv {
			gotEvSet[e] = true
			c := perType[e]
			if wantEvSet[e] {
				c[0]++
			} else {
				c[1]++
			}
			perType[e] = c
		}
		for _, e := range wantEv {
			if !gotEvSet[e] {
				c := perType[e]
				c[2]++
				perType[e] = c
			}
		}
		if len(miss)+len(extra) > 0 || gotSign != c.sign || strings.Join(gotEv, " ") != strings.Join(wantEv, " ") {
			t.Logf("%q: entities missed %v extra %v; sign %c (%.3f) want %c; events %v want %v",
				c.headline, miss, extra, gotSign, res.Sentiment, c.sign, gotEv, wantEv)
		}
	}
	n := len(labelledSet)
	p := float64(tp) / float64(tp+fp)
	r := float64(tp) / float64(tp+fn)
	signAcc := float64(signOK) / float64(n)
	eventAcc := float64(eventOK) / float64(n)
	report := fmt.Sprintf("%d articles: entity precision %.3f recall %.3f (tp %d fp %d fn %d); sentiment sign accuracy %.3f; event type accuracy %.3f",
		n, p, r, tp, fp, fn, signAcc, eventAcc)
	types := make([]string, 0, len(perType))
	for k := range perType {
		types = append(types, k)
	}
	sort.Strings(types)
	for _, k := range types {
		c := perType[k]
		report += fmt.Sprintf("\n  %-20s tp %d fp %d fn %d", k, c[0], c[1], c[2])
	}
	t.Log(report)
	fmt.Println(report)
	if p < minEntityP || r < minEntityR {
		t.Errorf("entity precision %.3f recall %.3f, want ≥ %.2f / %.2f", p, r, minEntityP, minEntityR)
	}
	if signAcc < minSignAcc {
		t.Errorf("sentiment sign accuracy %.3f, want ≥ %.2f", signAcc, minSignAcc)
	}
	if eventAcc < minEventAcc {
		t.Errorf("event type accuracy %.3f, want ≥ %.2f", eventAcc, minEventAcc)
	}
}
