package ops

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Conformance against third-party reference vectors from "Technical Analysis
// from A to Z" (Achelis) as published by TA-Lib.NETCore (TA-Lib conventions)
// and Tulip Indicators (EMA seeded with the first input). The files live
// beside the repository in ../shared/testdata; see its SOURCES.md.

// indSharedTestdata is ../shared/testdata relative to the repository root,
// seen from this package's directory (ops/).
const indSharedTestdata = "../../shared/testdata"

// indReadTestdata returns the content of a shared reference file, failing
// the test with directions when it is absent.
func indReadTestdata(t *testing.T, rel string) []byte {
	t.Helper()
	path := filepath.Join(indSharedTestdata, rel)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reference data %s is missing (%v): the shared testdata directory must sit beside the repository checkout as ../shared/testdata; see its SOURCES.md", path, err)
	}
	return b
}

// indRefCase is one reference vector: the inputs, the expected outputs (as
// printed, to know their precision) and the index of the first output.
type indRefCase struct {
	source string
	spec   IndicatorSpec
	seed   EMASeed
	input  []float64
	want   []string
	first  int
}

// check feeds c.input to a fresh set and compares every output: NaN before
// c.first, the reference value from there on. The tolerance is 1e-4, or half
// a unit in the last decimal the reference prints when it prints fewer than
// four (the book's SMA and Tulip's EMA are rounded to 3 decimals, so no
// implementation can be closer than that to them).
func (c indRefCase) check(t *testing.T) {
	t.Helper()
	if c.first < 0 || c.first+len(c.want) != len(c.input) {
		t.Fatalf("%s %s: %d outputs from index %d do not end at the last of %d inputs", c.source, c.spec, len(c.want), c.first, len(c.input))
	}
	decimals := 0
	want := make([]float64, len(c.want))
	for i, w := range c.want {
		f, err := strconv.ParseFloat(w, 64)
		if err != nil {
			t.Fatalf("%s %s: output %q: %v", c.source, c.spec, w, err)
		}
		want[i] = f
		if _, frac, ok := strings.Cut(w, "."); ok {
			decimals = max(decimals, len(frac))
		}
	}
	tol := max(1e-4, 0.5*math.Pow(10, -float64(decimals))) + 1e-12
	set, err := NewIndicatorSet([]IndicatorSpec{c.spec}, IndicatorOptions{EMASeed: c.seed}, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 1)
	for i, x := range c.input {
		set.Update(0, int64(i), x, 1, out)
		got := out[0]
		if i < c.first {
			if !math.IsNaN(got) {
				t.Errorf("%s %s seed=%s: input %d: got %v, want null (warm-up)", c.source, c.spec, c.seed, i, got)
			}
			continue
		}
		if w := want[i-c.first]; !(math.Abs(got-w) <= tol) {
			t.Errorf("%s %s seed=%s: input %d: got %.6f, want %s (±%g)", c.source, c.spec, c.seed, i, got, c.want[i-c.first], tol)
		}
	}
}

var indTalibNames = map[string]IndicatorKind{"Sma": IndSMA, "Ema": IndEMA, "Rsi": IndRSI}

// TestIndicatorConformanceTALib checks every Sma, Ema and Rsi case of the
// TA-Lib.NETCore file (EMA seeded with the SMA, the default).
func TestIndicatorConformanceTALib(t *testing.T) {
	raw := indReadTestdata(t, "indicators/talib_netcore_atoz.json")
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	var file struct {
		Cases []struct {
			Name    string
			Inputs  [][]float64
			Options []float64
			Outputs [][]json.Number
			Range   []int
		} `json:"_"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("talib_netcore_atoz.json: %v", err)
	}
	// Count the cases independently of the decoder, so a decoding slip that
	// finds nothing cannot pass.
	present := map[string]int{}
	for _, m := range regexp.MustCompile(`"name"\s*:\s*"(Sma|Ema|Rsi)"`).FindAllSubmatch(raw, -1) {
		present[string(m[1])]++
	}
	checked := map[string]int{}
	for _, c := range file.Cases {
		kind, ok := indTalibNames[c.Name]
		if !ok {
			continue
		}
		if len(c.Inputs) != 1 || len(c.Options) != 1 || len(c.Outputs) != 1 || len(c.Range) != 2 || c.Range[1] != len(c.Inputs[0]) {
			t.Fatalf("%s: unexpected case shape: %d inputs, options %v, %d outputs, range %v", c.Name, len(c.Inputs), c.Options, len(c.Outputs), c.Range)
		}
		want := make([]string, len(c.Outputs[0]))
		for i, n := range c.Outputs[0] {
			want[i] = n.String()
		}
		indRefCase{
			source: "talib " + c.Name,
			spec:   IndicatorSpec{Kind: kind, Period: int(c.Options[0])},
			seed:   EMASeedSMA,
			input:  c.Inputs[0],
			want:   want,
			first:  c.Range[0],
		}.check(t)
		checked[c.Name]++
	}
	for name := range indTalibNames {
		if present[name] == 0 || checked[name] != present[name] {
			t.Errorf("talib %s: checked %d cases, the file has %d (want all, and at least one)", name, checked[name], present[name])
		}
	}
	t.Logf("talib: checked %v", checked)
}

var indTulipNames = map[string]IndicatorKind{"sma": IndSMA, "ema": IndEMA, "rsi": IndRSI}

// TestIndicatorConformanceTulip checks every sma, ema and rsi block of
// Tulip's atoz.txt (EMA seeded with the first input). A block is a
// "name options" line, comment lines starting with '#', then one {v,...}
// line per input and one per output; outputs are right-aligned.
func TestIndicatorConformanceTulip(t *testing.T) {
	raw := indReadTestdata(t, "indicators/tulip_atoz.txt")
	present := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^(sma|ema|rsi) `).FindAllSubmatch(raw, -1) {
		present[string(m[1])]++
	}

	type block struct {
		name    string
		options []string
		vectors [][]string
	}
	var blocks []block
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '{':
			if len(blocks) == 0 || !strings.HasSuffix(line, "}") {
				t.Fatalf("tulip: vector outside a block or unterminated: %.40q", line)
			}
			b := &blocks[len(blocks)-1]
			b.vectors = append(b.vectors, strings.Split(line[1:len(line)-1], ","))
		default:
			f := strings.Fields(line)
			blocks = append(blocks, block{name: f[0], options: f[1:]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	checked := map[string]int{}
	for _, b := range blocks {
		kind, ok := indTulipNames[b.name]
		if !ok {
			continue
		}
		if len(b.options) != 1 || len(b.vectors) != 2 {
			t.Fatalf("tulip %s: want one option and two vectors (input, output), got %v and %d", b.name, b.options, len(b.vectors))
		}
		period, err := strconv.Atoi(b.options[0])
		if err != nil {
			t.Fatalf("tulip %s: option %q: %v", b.name, b.options[0], err)
		}
		in := make([]float64, len(b.vectors[0]))
		for i, s := range b.vectors[0] {
			if in[i], err = strconv.ParseFloat(s, 64); err != nil {
				t.Fatalf("tulip %s: input %q: %v", b.name, s, err)
			}
		}
		indRefCase{
			source: "tulip " + b.name,
			spec:   IndicatorSpec{Kind: kind, Period: period},
			seed:   EMASeedFirst,
			input:  in,
			want:   b.vectors[1],
			first:  len(in) - len(b.vectors[1]),
		}.check(t)
		checked[b.name]++
	}
	for name := range indTulipNames {
		if present[name] == 0 || checked[name] != present[name] {
			t.Errorf("tulip %s: checked %d cases, the file has %d (want all, and at least one)", name, checked[name], present[name])
		}
	}
	t.Logf("tulip: checked %v", checked)
}
