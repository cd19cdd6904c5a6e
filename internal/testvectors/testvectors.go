// Package testvectors reads the third-party indicator reference vectors in
// ../shared/testdata/indicators (see its SOURCES.md) for conformance tests:
// TA-Lib.NETCore's atoz.json (TA-Lib conventions) and Tulip Indicators'
// atoz.txt (EMA seeded with the first input). It is used only by tests.
package testvectors

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Case is one reference vector: an indicator ("sma", "ema", "rsi"), its
// period, the inputs, the expected outputs as printed (to know their
// precision) and the input index of the first output.
type Case struct {
	Source string // "talib" or "tulip"
	Name   string // lower-case indicator name
	Period int
	Input  []float64
	Want   []string
	First  int
}

// Wanted returns the expected outputs as numbers.
func (c Case) Wanted() ([]float64, error) {
	out := make([]float64, len(c.Want))
	for i, w := range c.Want {
		f, err := strconv.ParseFloat(w, 64)
		if err != nil {
			return nil, fmt.Errorf("testvectors: %s %s: output %q: %w", c.Source, c.Name, w, err)
		}
		out[i] = f
	}
	return out, nil
}

// Tolerance is 1e-4, or half a unit of the last decimal the reference prints
// when it prints fewer than four: the book's SMA and Tulip's EMA are rounded
// to 3 decimals, so no implementation can be closer than that to them.
func (c Case) Tolerance() float64 {
	decimals := 0
	for _, w := range c.Want {
		if _, frac, ok := strings.Cut(w, "."); ok {
			decimals = max(decimals, len(frac))
		}
	}
	return max(1e-4, 0.5*math.Pow(10, -float64(decimals))) + 1e-12
}

// Dir returns the shared third-party test data directory: the one named by
// $QSTREAM_SHARED_TESTDATA, or else "shared/testdata" beside the repository
// checkout, found by walking up from the working directory (a package
// directory or the repository root). When none is found it returns the
// conventional relative path, so that the test opening it fails naming it.
func Dir() string {
	if d := os.Getenv("QSTREAM_SHARED_TESTDATA"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "shared", "testdata")
	}
	for {
		cand := filepath.Join(dir, "..", "shared", "testdata")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return filepath.Clean(cand)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join("..", "shared", "testdata")
		}
		dir = parent
	}
}

// Path returns the path of rel under Dir, or an error that says where the
// data is expected when it is absent.
func Path(rel string) (string, error) {
	p := filepath.Join(Dir(), rel)
	if _, err := os.Stat(p); err != nil {
		return p, fmt.Errorf("testvectors: %s is missing (%v): the third-party test data lives in ../shared/testdata beside the repository checkout (or $QSTREAM_SHARED_TESTDATA); see its SOURCES.md", rel, err)
	}
	return p, nil
}

// Read returns the content of a file under Dir.
func Read(rel string) ([]byte, error) {
	p, err := Path(rel)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

var names = []string{"sma", "ema", "rsi"}

// TALib parses atoz.json and returns its Sma, Ema and Rsi cases and, counted
// independently of the decoder, how many of each the file holds.
func TALib(raw []byte) ([]Case, map[string]int, error) {
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
		return nil, nil, fmt.Errorf("testvectors: talib: %w", err)
	}
	present := map[string]int{}
	for _, m := range regexp.MustCompile(`"name"\s*:\s*"(Sma|Ema|Rsi)"`).FindAllSubmatch(raw, -1) {
		present[strings.ToLower(string(m[1]))]++
	}
	var cases []Case
	for _, c := range file.Cases {
		name := strings.ToLower(c.Name)
		if name != "sma" && name != "ema" && name != "rsi" {
			continue
		}
		if len(c.Inputs) != 1 || len(c.Options) != 1 || len(c.Outputs) != 1 || len(c.Range) != 2 || c.Range[1] != len(c.Inputs[0]) {
			return nil, nil, fmt.Errorf("testvectors: talib %s: unexpected case shape: %d inputs, options %v, %d outputs, range %v",
				c.Name, len(c.Inputs), c.Options, len(c.Outputs), c.Range)
		}
		want := make([]string, len(c.Outputs[0]))
		for i, n := range c.Outputs[0] {
			want[i] = n.String()
		}
		cases = append(cases, Case{Source: "talib", Name: name, Period: int(c.Options[0]), Input: c.Inputs[0], Want: want, First: c.Range[0]})
	}
	return cases, present, nil
}

// Tulip parses atoz.txt and returns its sma, ema and rsi blocks and, counted
// independently of the parser, how many of each the file holds. A block is a
// "name options" line, comment lines starting with '#', then one {v,...}
// line per input and one per output; outputs are right-aligned.
func Tulip(raw []byte) ([]Case, map[string]int, error) {
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
				return nil, nil, fmt.Errorf("testvectors: tulip: vector outside a block or unterminated: %.40q", line)
			}
			b := &blocks[len(blocks)-1]
			b.vectors = append(b.vectors, strings.Split(line[1:len(line)-1], ","))
		default:
			f := strings.Fields(line)
			blocks = append(blocks, block{name: f[0], options: f[1:]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	var cases []Case
	for _, b := range blocks {
		if b.name != "sma" && b.name != "ema" && b.name != "rsi" {
			continue
		}
		if len(b.options) != 1 || len(b.vectors) != 2 {
			return nil, nil, fmt.Errorf("testvectors: tulip %s: want one option and two vectors, got %v and %d", b.name, b.options, len(b.vectors))
		}
		period, err := strconv.Atoi(b.options[0])
		if err != nil {
			return nil, nil, fmt.Errorf("testvectors: tulip %s: option %q: %w", b.name, b.options[0], err)
		}
		in := make([]float64, len(b.vectors[0]))
		for i, s := range b.vectors[0] {
			if in[i], err = strconv.ParseFloat(s, 64); err != nil {
				return nil, nil, fmt.Errorf("testvectors: tulip %s: input %q: %w", b.name, s, err)
			}
		}
		cases = append(cases, Case{Source: "tulip", Name: b.name, Period: period, Input: in, Want: b.vectors[1], First: len(in) - len(b.vectors[1])})
	}
	return cases, present, nil
}

// CheckCounts reports an error unless every indicator appears at least once
// and every case present in the file was checked.
func CheckCounts(source string, present, checked map[string]int) error {
	for _, n := range names {
		if present[n] == 0 || checked[n] != present[n] {
			return fmt.Errorf("testvectors: %s %s: checked %d cases, the file has %d (want all, and at least one)", source, n, checked[n], present[n])
		}
	}
	return nil
}
