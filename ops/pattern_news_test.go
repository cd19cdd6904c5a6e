package ops

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"qstream/codec"
	"qstream/ops/news"
)

const niT0 = int64(1_700_000_000_000_000_000)

// niPipeline is a pipeline with the given news_impact patterns over the
// symbols AAPL (1), MSFT (2), TSLA (3), NVDA (4).
func niPipeline(t *testing.T, patterns string) (*Pipeline, *codec.SymbolTable) {
	t.Helper()
	syms := codec.NewSymbolTable(16)
	for _, s := range []string{"AAPL", "MSFT", "TSLA", "NVDA"} {
		if _, err := syms.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := ParsePatterns([]byte(patterns))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(PipelineConfig{Patterns: specs, News: news.Default(), SymbolNames: syms, MaxSymbolID: 16})
	if err != nil {
		t.Fatal(err)
	}
	return p, syms
}

func niArticle(headline string, symbols ...string) []byte {
	var b []byte
	b = codec.AppendTextField(b, codec.TextID, []byte("n-"+headline[:min(8, len(headline))]))
	b = codec.AppendTextField(b, codec.TextHeadline, []byte(headline))
	for _, s := range symbols {
		b = codec.AppendTextField(b, codec.TextSymbol, []byte(s))
	}
	return b
}

// niRun feeds steps to p: a string is an article at that time, a float a
// trade of sym. It returns the pattern matches.
type niStep struct {
	ms    int64
	sym   codec.Symbol
	price float64
	text  []byte
}

func niRun(t *testing.T, p *Pipeline, steps []niStep) []Output {
	t.Helper()
	var matches []Output
	var out []Output
	for i, s := range steps {
		ev := codec.Event{Seq: uint64(i + 1), TsNs: niT0 + s.ms*1e6, Symbol: s.sym}
		var reason codec.Reason
		if s.text != nil {
			ev.Kind, ev.Flags, ev.TextLen = codec.KindNews, codec.FlagBroadcast|codec.FlagPrimary, uint32(len(s.text))
			out, reason = p.OnText(&ev, s.text, math.MinInt64, out[:0])
		} else {
			ev.Kind, ev.Price, ev.Volume = codec.KindTrade, s.price, 1
			out, reason = p.OnEvent(&ev, math.MinInt64, out[:0])
		}
		if reason != codec.ReasonNone {
			t.Fatalf("step %d: %v", i, reason)
		}
		for _, o := range out {
			if o.Kind == OutPattern {
				matches = append(matches, o)
			}
		}
	}
	return matches
}

func TestNewsImpact(t *testing.T) {
	const pat = `[{"id":"ni","type":"news_impact","sentiment_threshold":0.3,"timeframe":"10s","move":0.01}]`
	good := niArticle("Apple beats earnings estimates and raises guidance", "AAPL")
	bad := niArticle("Apple shares plunge after weak iPhone sales and guidance cut", "AAPL")
	for _, tc := range []struct {
		name    string
		pattern string
		steps   []niStep
		want    int     // matches
		move    float64 // move_percentage of the first
	}{
		{"positive news then a 1.5% rise", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 100.5, nil}, {3000, 1, 101.5, nil}, {4000, 1, 103, nil}}, 1, 1.5},
		{"negative news then a 2% fall", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, bad}, {2000, 1, 98, nil}}, 1, -2},
		{"just below the move", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 100.99, nil}}, 0, 0},
		{"the move against the sentiment", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 95, nil}}, 0, 0},
		{"outside the timeframe", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {11001, 1, 110, nil}}, 0, 0},
		{"at the end of the timeframe", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {11000, 1, 110, nil}}, 1, 10},
		{"the wrong symbol moves", pat, []niStep{{0, 1, 100, nil}, {0, 2, 300, nil}, {1000, 0, 0, good}, {2000, 2, 330, nil}}, 0, 0},
		{"sentiment below the threshold", `[{"id":"ni","type":"news_impact","sentiment_threshold":0.99,"timeframe":"10s","move":0.01}]`,
			[]niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 110, nil}}, 0, 0},
		{"no trade before: the first one after is the reference", pat, []niStep{{1000, 0, 0, good}, {2000, 1, 100, nil}, {3000, 1, 101, nil}}, 1, 1},
		{"keyword present", `[{"id":"ni","type":"news_impact","keywords":["Guidance"],"timeframe":"10s","move":0.01}]`,
			[]niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}}, 1, 2},
		{"keyword absent", `[{"id":"ni","type":"news_impact","keywords":["merger"],"timeframe":"10s","move":0.01}]`,
			[]niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}}, 0, 0},
		{"keyword only inside a word", `[{"id":"ni","type":"news_impact","keywords":["beat"],"timeframe":"10s","move":0.01}]`,
			[]niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}}, 0, 0},
		{"restricted to another symbol", `[{"id":"ni","type":"news_impact","symbols":["MSFT"],"timeframe":"10s","move":0.01}]`,
			[]niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}}, 0, 0},
		{"a symbol found in the text, not tagged", pat, []niStep{{0, 3, 200, nil}, {1000, 0, 0, niArticle("Tesla beats delivery estimates, shares rally")}, {2000, 3, 204, nil}}, 1, 2},
		{"fires once per article", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}, {3000, 1, 103, nil}, {4000, 1, 104, nil}}, 1, 2},
		{"a newer article re-arms", pat, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}, {3000, 0, 0, good}, {4000, 1, 104, nil}}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := niPipeline(t, tc.pattern)
			m := niRun(t, p, tc.steps)
			if len(m) != tc.want {
				t.Fatalf("%d matches, want %d: %+v", len(m), tc.want, m)
			}
			if tc.want == 0 {
				return
			}
			o := m[0]
			if math.Abs(o.Values[3]-tc.move) > 1e-9 {
				t.Errorf("move_percentage %v, want %v", o.Values[3], tc.move)
			}
			if !(o.Value > 0 && o.Value <= 1) || o.NValues != 5 || o.Op != 0 {
				t.Errorf("match %+v", o)
			}
			if SeqDetailTime(o.Values[4]) > o.TsNs {
				t.Errorf("news_ts %d after the match at %d", SeqDetailTime(o.Values[4]), o.TsNs)
			}
		})
	}
}

func TestNewsImpactSpecErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{`[{"id":"a","type":"news_impact","move":0.01}]`, "timeframe: missing"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m"}]`, "move: missing"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m","move":-1}]`, "move: -1 outside"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m","move":0.01,"sentiment_threshold":2}]`, "sentiment_threshold: 2 outside"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m","move":0.01,"keywords":[]}]`, "keywords: want a non-empty list"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m","move":0.01,"keywords":[""]}]`, "keywords:"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m","move":0.01,"threshold":0.1}]`, "threshold: not a parameter of news_impact"},
		{`[{"id":"a","type":"news_impact","timeframe":"1m","move":0.01,"steps":[]}]`, "steps/within: not parameters"},
	} {
		_, err := ParsePatterns([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.file, err, tc.want)
		}
	}
	// A pipeline refuses news_impact without an analyser.
	specs, _ := ParsePatterns([]byte(`[{"id":"a","type":"news_impact","timeframe":"1m","move":0.01}]`))
	if _, err := NewPipeline(PipelineConfig{Patterns: specs, SymbolNames: codec.NewSymbolTable(4), MaxSymbolID: 4}); err == nil {
		t.Fatal("news_impact without News: accepted")
	}
}

// A snapshot taken with articles armed restores to a pipeline that matches
// exactly as the uninterrupted one, also when the symbol gets its slot
// only after the restore.
func TestNewsImpactStateRoundTrip(t *testing.T) {
	const pat = `[{"id":"up","type":"news_impact","timeframe":"1m","move":0.005},{"id":"any","type":"volume_spike","multiplier":3,"baseline":"1m"}]`
	steps := []niStep{{0, 1, 100, nil}, {0, 2, 300, nil},
		{1000, 0, 0, niArticle("Apple and Microsoft beat estimates; Tesla rallies", "AAPL")}}
	rest := []niStep{{2000, 1, 101, nil}, {2500, 3, 200, nil}, {3000, 2, 303, nil}, {4000, 3, 202, nil}}
	whole, _ := niPipeline(t, pat)
	want := niRun(t, whole, append(append([]niStep{}, steps...), rest...))
	if len(want) < 2 {
		t.Fatalf("reference: %d matches, want matches on restored and new slots", len(want))
	}
	a, _ := niPipeline(t, pat)
	niRun(t, a, steps)
	snap := a.AppendState(nil)
	b, _ := niPipeline(t, pat)
	if err := b.LoadState(snap); err != nil {
		t.Fatal(err)
	}
	if string(b.AppendState(nil)) != string(snap) {
		t.Fatal("a restored pipeline snapshots differently")
	}
	// niRun numbers events from 1: continue the numbering of the whole run.
	var got []Output
	var out []Output
	for i, s := range rest {
		ev := codec.Event{Kind: codec.KindTrade, Seq: uint64(len(steps) + i + 1), TsNs: niT0 + s.ms*1e6, Symbol: s.sym, Price: s.price, Volume: 1}
		out, _ = b.OnEvent(&ev, math.MinInt64, out[:0])
		for _, o := range out {
			if o.Kind == OutPattern {
				got = append(got, o)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restore:\n%v\nwant\n%v", got, want)
	}
}

func TestNewsImpactTradeAllocs(t *testing.T) {
	p, _ := niPipeline(t, `[{"id":"ni","type":"news_impact","timeframe":"1h","move":0.5}]`)
	niRun(t, p, []niStep{{0, 1, 100, nil}, {1, 0, 0, niArticle("Apple beats earnings estimates", "AAPL")}})
	ev := codec.Event{Kind: codec.KindTrade, Symbol: 1, TsNs: niT0 + 5e6, Price: 101, Volume: 1, Seq: 9}
	out := make([]Output, 0, 8)
	text := niArticle("Microsoft beats earnings estimates", "MSFT")
	nev := codec.Event{Kind: codec.KindNews, Flags: codec.FlagBroadcast | codec.FlagPrimary, TsNs: niT0 + 6e6, Seq: 10, TextLen: uint32(len(text))}
	p.OnText(&nev, text, math.MinInt64, out[:0]) // grows the analysis scratch
	if n := testing.AllocsPerRun(200, func() {
		out, _ = p.OnEvent(&ev, math.MinInt64, out[:0])
		out, _ = p.OnText(&nev, text, math.MinInt64, out[:0])
	}); n != 0 {
		t.Fatalf("%v allocations per trade and article with news_impact armed", n)
	}
}

func TestNewsImpactNotAddedAtRunTime(t *testing.T) {
	p, _ := niPipeline(t, `[{"id":"ni","type":"news_impact","timeframe":"10s","move":0.01}]`)
	specs, err := ParsePatterns([]byte(`[{"id":"ni2","type":"news_impact","timeframe":"10s","move":0.01}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddPattern(specs[0]); err == nil || !strings.Contains(err.Error(), "run time") {
		t.Fatalf("AddPattern(news_impact): %v", err)
	}
	// A configured one can be removed: its matches stop.
	if err := p.RemovePattern(0); err != nil {
		t.Fatal(err)
	}
	good := niArticle("Apple beats earnings estimates and raises guidance", "AAPL")
	if m := niRun(t, p, []niStep{{0, 1, 100, nil}, {1000, 0, 0, good}, {2000, 1, 102, nil}}); len(m) != 0 {
		t.Fatalf("a removed news_impact pattern matched: %v", m)
	}
}
