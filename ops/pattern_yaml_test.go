package ops

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

const yamlTestJSON = `[
 {"id":"btc_up","type":"price_breakout","threshold":0.02,"timeframe":"5m","symbols":["BTCUSDT"]},
 {"id":"btc_dn","type":"price_breakout","direction":"down","threshold":0.02,"timeframe":"5m"},
 {"id":"vol","type":"volume_spike","multiplier":3,"baseline":"1m"},
 {"id":"golden","type":"technical_signal","signal":"sma_cross","fast":5,"slow":20},
 {"id":"rsi","type":"technical_signal","signal":"rsi_cross","period":14,"overbought":70,"oversold":30},
 {"id":"dip_rebound","type":"sequence","within":"30s","contiguity":"strict","max_partial":16,
  "steps":[{"name":"dip","kind":"trade","where":["rsi_14 < 30","price < vwap"]},{"name":"rebound","where":["price > vwap"]}]}]`

const yamlTestYAML = `# the same patterns as yamlTestJSON
- id: btc_up
  type: price_breakout
  threshold: 0.02
  timeframe: 5m
  symbols: [BTCUSDT]
- id: btc_dn
  type: price_breakout
  direction: down
  threshold: 2e-2
  timeframe: "5m"
- &vol
  id: vol
  type: volume_spike
  multiplier: 3
  baseline: 1m
- {id: golden, type: technical_signal, signal: sma_cross, fast: 5, slow: 20}
- id: rsi
  type: technical_signal
  signal: rsi_cross
  period: 14
  overbought: 70.0
  oversold: 30
- id: dip_rebound
  type: sequence
  within: 30s
  contiguity: strict
  max_partial: 16
  steps:
    - name: dip
      kind: trade
      where:
        - rsi_14 < 30
        - price < vwap
    - {name: rebound, where: ["price > vwap"]}
`

func TestParsePatternsFileYAMLEqualsJSON(t *testing.T) {
	want, err := ParsePatterns([]byte(yamlTestJSON))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p.yaml", "p.yml", "patterns"} {
		got, err := ParsePatternsFile(name, []byte(yamlTestYAML))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: YAML gives\n%+v\nJSON gives\n%+v", name, got, want)
		}
	}
	// JSON by content or by name, whatever the extension says otherwise.
	for _, name := range []string{"p.json", "patterns", "p.txt"} {
		got, err := ParsePatternsFile(name, []byte(yamlTestJSON))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s as JSON: %v", name, err)
		}
	}
	// JSON is YAML too: a .yaml file written as JSON reads the same.
	if got, err := ParsePatternsFile("p.yaml", []byte(yamlTestJSON)); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON in a .yaml file: %v", err)
	}
	// An alias repeats a mapping: its id is then used twice.
	dup := yamlTestYAML + "- *vol\n"
	if _, err := ParsePatternsFile("p.yaml", []byte(dup)); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("alias repeating a pattern: %v", err)
	}
}

// Broken files give errors that name the file, the line and, where there is
// one, the field.
func TestParsePatternsFileYAMLErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string // a prefix of the message
	}{
		{"bad indentation", "- id: a\n  type: price_breakout\n threshold: 0.1\n", "p.yaml:3: "},
		{"tab", "- id: a\n\ttype: price_breakout\n", "p.yaml:2: "},
		{"bad indentation, deeper", "- id: a\n  type: sequence\n  steps:\n    - where: []\n   - where: []\n", "p.yaml:5: "},
		{"bad indentation, last line", "- id: a\n  type: b\n  x: 1\n  y: 2\n z: 3\n", "p.yaml:5: "},
		{"unclosed flow at the end", "- id: a\n  symbols: [A,\n\n", "p.yaml:2: "},
		{"unclosed quote", "- id: a\n  type: \"b\n  c: 1\n", "p.yaml:2: "},
		{"undefined tag handle", "- id: a\n  type: b\n  c: !x!y 3\n", "p.yaml:3: "},
		{"unknown field", "- id: a\n  type: price_breakout\n  timeframe: 1m\n  thresold: 0.1\n", `p.yaml:4: field "thresold": `},
		{"wrong type", "- id: a\n  type: price_breakout\n  timeframe: 1m\n\n  threshold: high\n", `p.yaml:5: field "threshold": `},
		{"number as string", "- id: a\n  type: price_breakout\n  timeframe: 1m\n  threshold: \"0.1\"\n", `p.yaml:4: field "threshold": `},
		{"out of range", "- id: ok\n  type: volume_spike\n  multiplier: 2\n  baseline: 1m\n- id: a\n  type: price_breakout\n  timeframe: 1m\n  threshold: -1\n", `p.yaml:8: field "threshold": pattern "a" (#2): threshold: `},
		{"missing field", "- id: a\n  type: price_breakout\n  threshold: 0.1\n", `p.yaml:1: field "timeframe": `},
		{"bad duration", "- id: a\n  type: price_breakout\n  threshold: 0.1\n  timeframe: soon\n", `p.yaml:4: field "timeframe": `},
		{"sequence step", "- id: s\n  type: sequence\n  within: 1m\n  steps:\n    - where: [\"price < 1\"]\n    - where: [\"price >< 2\"]\n", `p.yaml:6: field "steps[1].where": `},
		{"sequence step kind", "- id: s\n  type: sequence\n  within: 1m\n  steps:\n    - where: [\"price < 1\"]\n    - kind: trades\n", `p.yaml:6: field "steps[1].kind": `},
		{"unknown field in a step", "- id: s\n  type: sequence\n  within: 1m\n  steps:\n    - where: [\"price < 1\"]\n    - name: b\n      wher: [\"price > 2\"]\n", `p.yaml:7: field "wher": `},
		{"wrong type in a step", "- id: s\n  type: sequence\n  within: 1m\n  steps:\n    - where: [\"price < 1\"]\n    - name: b\n      where: \"price > 2\"\n", `p.yaml:4: field "steps.where": `},
		{"duplicate id", "- {id: a, type: volume_spike, multiplier: 2, baseline: 1m}\n- {id: a, type: volume_spike, multiplier: 3, baseline: 1m}\n", `p.yaml:2: field "id": `},
		{"duplicate key", "- id: a\n  type: volume_spike\n  type: price_breakout\n", `p.yaml:3: field "type": given twice (first on line 2)`},
		{"not a list", "id: a\ntype: volume_spike\n", "p.yaml:1: the file must be a list"},
		{"item not a mapping", "- id: a\n- just text\n", "p.yaml:2: pattern #2: want a mapping"},
		{"empty", "# nothing\n", "p.yaml:1: empty file"},
		{"infinite", "- {id: a, type: volume_spike, multiplier: .inf, baseline: 1m}\n", `p.yaml:1: field "multiplier": .inf is not a finite number`},
		{"merge key", "- &b {type: volume_spike}\n- <<: *b\n  id: x\n", "p.yaml:2: merge keys"},
	} {
		_, err := ParsePatternsFile("p.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %q, want the prefix %q", tc.name, err, tc.want)
		}
		var fe *PatternFileError
		if !errors.Is(err, ErrPatternSpec) || !errors.As(err, &fe) || fe.File != "p.yaml" {
			t.Errorf("%s: %v is not a *PatternFileError wrapping ErrPatternSpec", tc.name, err)
		}
	}
	// JSON errors name the file too.
	if _, err := ParsePatternsFile("p.json", []byte(`[{"id":"a"}]`)); err == nil || !strings.HasPrefix(err.Error(), "p.json: ") || !errors.Is(err, ErrPatternSpec) {
		t.Errorf("JSON error %v", err)
	}
}

// An alias bomb (10^9 nodes once expanded) is refused, not expanded.
func TestParsePatternsFileYAMLAliasBomb(t *testing.T) {
	bomb := "- id: bomb\n  type: volume_spike\n  multiplier: 2\n  baseline: 1m\n  x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i < 9; i++ {
		prev := fmt.Sprintf("*a%d", i-1)
		bomb += fmt.Sprintf("  x%d: &a%d [%s%s]\n", i, i, strings.Repeat(prev+", ", 9), prev)
	}
	_, err := ParsePatternsFile("bomb.yaml", []byte(bomb))
	if err == nil || !errors.Is(err, ErrPatternSpec) || !strings.Contains(err.Error(), "nodes") {
		t.Fatalf("alias bomb: %v", err)
	}
}

// The example file of the repository parses.
func TestPatternsYAMLExample(t *testing.T) {
	data, err := os.ReadFile("../examples/patterns.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ParsePatternsFile("examples/patterns.yaml", data)
	if err != nil || len(specs) != 6 || specs[5].Type != PatSequence {
		t.Fatalf("examples/patterns.yaml: %d patterns, %v", len(specs), err)
	}
}
