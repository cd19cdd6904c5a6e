package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file reads pattern files in YAML as well as JSON. A YAML file is
// converted to the JSON of ParsePatterns (through yaml.v3's Node API, which
// keeps each node's line) and validated by it, so both formats share one
// validator; its errors are then mapped back to the YAML line of the
// pattern and, where the message names one, of the field:
//
//	- id: btc_up
//	  type: price_breakout
//	  threshold: 0.02
//	  timeframe: 5m
//	  symbols: [BTCUSDT]
//	- id: dip_rebound
//	  type: sequence
//	  within: 30s
//	  steps:
//	    - {name: dip, where: ["rsi_14 < 30"]}
//	    - {name: rebound, where: ["price > vwap"]}
//
// Scalars keep their YAML types: 0.02 is a number, 5m and "0.02" are
// strings (so `threshold: "0.02"` is a wrong type, as in JSON). Anchors and
// aliases are expanded (at most maxYAMLNodes nodes in all); merge keys
// (<<), custom tags, non-string keys and duplicate keys are errors.

// PatternFileError is an error of ParsePatternsFile located in the file:
// "patterns.yaml:7: field \"threshold\": ...". Line is 1-based (0 when
// unknown), Field the field the message is about ("" when none). It wraps
// the underlying error, which wraps ErrPatternSpec.
type PatternFileError struct {
	File  string
	Line  int
	Field string
	Err   error
}

func (e *PatternFileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(strings.TrimPrefix(e.Err.Error(), ErrPatternSpec.Error()+": "))
	return b.String()
}

func (e *PatternFileError) Unwrap() error { return e.Err }

// maxYAMLNodes bounds the nodes a YAML pattern file expands to (aliases
// included), against alias bombs.
const maxYAMLNodes = 1 << 18

// ParsePatternsFile reads the pattern file name with contents data: YAML
// when name ends in .yaml or .yml, or when its first non-blank byte is
// neither '[' nor '{' (and its name does not end in .json); JSON otherwise.
// Both go through ParsePatterns. Every error names the file; those of a
// YAML file are *PatternFileError with the line of the pattern or field.
// All wrap ErrPatternSpec.
func ParsePatternsFile(name string, data []byte) ([]PatternSpec, error) {
	if !isYAMLPatterns(name, data) {
		specs, err := ParsePatterns(data)
		if err != nil {
			return nil, &PatternFileError{File: name, Err: err}
		}
		return specs, nil
	}
	js, lines, err := yamlPatternsToJSON(name, data)
	if err != nil {
		return nil, err
	}
	specs, err := ParsePatterns(js)
	if err != nil {
		return nil, lines.locate(name, err)
	}
	return specs, nil
}

func isYAMLPatterns(name string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return true
	case ".json":
		return false
	}
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	return len(t) == 0 || (t[0] != '[' && t[0] != '{')
}

// yamlLines remembers where each pattern and each of its fields is: per
// pattern, its line and the lines of its field paths ("threshold",
// "steps", "steps[1]", "steps[1].where").
type yamlLines struct {
	list  int
	items []int
	paths []map[string]int
}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrs are the messages of yaml.v3's parser (parserc.go), whose
// line numbers it prints 0-based; the scanner's are 1-based.
var yamlParserErrs = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
}

// yamlLastLine is the 1-based number of the last line that is not blank.
func yamlLastLine(data []byte) int {
	last := 1
	for i, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			last = i + 1
		}
	}
	return last
}

// yamlPatternsToJSON converts a YAML list of mappings to JSON.
func yamlPatternsToJSON(name string, data []byte) ([]byte, *yamlLines, error) {
	fail := func(line int, field, format string, a ...any) error {
		return &PatternFileError{File: name, Line: line, Field: field, Err: fmt.Errorf("%w: %s", ErrPatternSpec, fmt.Sprintf(format, a...))}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if yamlParserErrs[m[2]] {
				// yaml.v3 prints the parser's (not the scanner's) marks
				// 0-based; at the end of the input the mark is on a line
				// past the last one.
				line = min(line+1, yamlLastLine(data))
			}
			return nil, nil, fail(line, "", "yaml: %s", m[2])
		}
		return nil, nil, fail(0, "", "%s", msg)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil, fail(1, "", "empty file: want a list of patterns")
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		return nil, nil, fail(root.Line, "", "the file must be a list of patterns (a YAML sequence of mappings)")
	}
	c := &yamlConv{fail: fail}
	lines := &yamlLines{list: root.Line}
	out := []byte{'['}
	for i, item := range root.Content {
		if item = c.deref(item); item.Kind != yaml.MappingNode {
			return nil, nil, fail(item.Line, "", "pattern #%d: want a mapping of fields", i+1)
		}
		if i > 0 {
			out = append(out, ',')
		}
		lines.items = append(lines.items, item.Line)
		c.paths = map[string]int{}
		var err error
		if out, err = c.node(out, item, "", 0); err != nil {
			return nil, nil, err
		}
		lines.paths = append(lines.paths, c.paths)
	}
	return append(out, ']'), lines, nil
}

// yamlConv converts nodes to JSON.
type yamlConv struct {
	fail  func(line int, field, format string, a ...any) error
	paths map[string]int
	nodes int
}

// deref follows aliases.
func (c *yamlConv) deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// node appends the JSON of n; path names it within its pattern.
func (c *yamlConv) node(dst []byte, n *yaml.Node, path string, depth int) ([]byte, error) {
	n = c.deref(n)
	if n == nil {
		return append(dst, "null"...), nil
	}
	if c.nodes++; c.nodes > maxYAMLNodes || depth > 64 {
		return nil, c.fail(n.Line, "", "more than %d nodes or deeper than 64 levels (aliases expanded)", maxYAMLNodes)
	}
	if path != "" {
		if _, ok := c.paths[path]; !ok {
			c.paths[path] = n.Line
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		dst = append(dst, '{')
		seen := map[string]int{}
		for k := 0; k+1 < len(n.Content); k += 2 {
			key, val := c.deref(n.Content[k]), n.Content[k+1]
			if key == nil || key.Kind != yaml.ScalarNode || key.ShortTag() != "!!str" {
				if key != nil && key.ShortTag() == "!!merge" {
					return nil, c.fail(key.Line, "", "merge keys (<<) are not supported")
				}
				line := n.Line
				if key != nil {
					line = key.Line
				}
				return nil, c.fail(line, "", "a key must be a string")
			}
			if first, dup := seen[key.Value]; dup {
				return nil, c.fail(key.Line, key.Value, "given twice (first on line %d)", first)
			}
			seen[key.Value] = key.Line
			sub := key.Value
			if path != "" {
				sub = path + "." + key.Value
			}
			c.paths[sub] = key.Line
			if k > 0 {
				dst = append(dst, ',')
			}
			kb, _ := json.Marshal(key.Value)
			dst = append(dst, kb...)
			dst = append(dst, ':')
			var err error
			if dst, err = c.node(dst, val, sub, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case yaml.SequenceNode:
		dst = append(dst, '[')
		for k, e := range n.Content {
			if k > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = c.node(dst, e, path+"["+strconv.Itoa(k)+"]", depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case yaml.ScalarNode:
		return c.scalar(dst, n, path)
	}
	return nil, c.fail(n.Line, path, "unsupported YAML node")
}

// scalar appends a scalar by its resolved tag.
func (c *yamlConv) scalar(dst []byte, n *yaml.Node, path string) ([]byte, error) {
	switch n.ShortTag() {
	case "!!null":
		return append(dst, "null"...), nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, c.fail(n.Line, path, "%v", err)
		}
		return strconv.AppendBool(dst, b), nil
	case "!!int", "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, c.fail(n.Line, path, "%v", err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, c.fail(n.Line, path, "%s is not a finite number", n.Value)
		}
		var i int64
		if n.ShortTag() == "!!int" && n.Decode(&i) == nil {
			return strconv.AppendInt(dst, i, 10), nil
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
	case "!!str", "!!timestamp", "!!binary":
		b, _ := json.Marshal(n.Value)
		return append(dst, b...), nil
	}
	return nil, c.fail(n.Line, path, "unsupported tag %s", n.Tag)
}

var (
	// pattern "id" (#3): rest, or pattern #3: rest
	yamlErrPattern = regexp.MustCompile(`pattern (?:"(?:[^"\\]|\\.)*" )?\(?#(\d+)\)?: (.*)$`)
	yamlErrUnknown = regexp.MustCompile(`unknown field "([^"]+)"`)
	yamlErrType    = regexp.MustCompile(`Go struct field [A-Za-z]+\.([A-Za-z_.]+) of type`)
	yamlErrField   = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?)(?:/[a-z_/]+)?: `)
)

// locate maps a ParsePatterns error about pattern i (and a field) to its
// YAML line.
func (l *yamlLines) locate(name string, err error) error {
	e := &PatternFileError{File: name, Line: l.list, Err: err}
	m := yamlErrPattern.FindStringSubmatch(err.Error())
	if m == nil {
		return e
	}
	i, _ := strconv.Atoi(m[1])
	if i < 1 || i > len(l.items) {
		return e
	}
	e.Line = l.items[i-1]
	rest, paths := m[2], l.paths[i-1]
	var field string
	switch {
	case yamlErrUnknown.MatchString(rest):
		field = yamlErrUnknown.FindStringSubmatch(rest)[1]
	case yamlErrType.MatchString(rest):
		field = yamlErrType.FindStringSubmatch(rest)[1]
	case yamlErrField.MatchString(rest):
		field = yamlErrField.FindStringSubmatch(rest)[1]
	default:
		return e
	}
	e.Field = field
	if !strings.ContainsAny(field, ".[") {
		if _, top := paths[field]; !top {
			// A nested field (an unknown key in a step): the first place
			// the file has it.
			best := 0
			for p, line := range paths {
				if strings.HasSuffix(p, "."+field) && (best == 0 || line < best) {
					best = line
				}
			}
			if best > 0 {
				e.Line = best
				return e
			}
		}
	}
	// The most specific path that the file has: steps[1].where, then
	// steps[1], then steps.
	for p := field; p != ""; {
		if line, ok := paths[p]; ok {
			e.Line = line
			break
		}
		if k := strings.LastIndexAny(p, ".["); k > 0 {
			p = p[:k]
		} else {
			break
		}
	}
	return e
}
