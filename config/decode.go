package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one error of a configuration file: "qstream.yaml:12:
// streams[0].windows[1]: ...". Line is 1-based (0 when the error is about a
// value the file does not give); Path is the field ("" for the file as a
// whole).
type Error struct {
	File string
	Line int
	Path string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors are the errors of one file, in the order found (file order within
// each pass: decoding, then validation). Load returns at most maxErrors.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Bounds on what Load reads.
const (
	maxFileSize = 4 << 20 // bytes of a configuration file
	maxNodes    = 1 << 18 // YAML nodes, aliases expanded
	maxDepth    = 64
	maxErrors   = 50
	maxStreams  = 256
)

// Stdin is the name Load gives standard input ("-").
const Stdin = "<stdin>"

// Load reads the configuration file path ("-": standard input, relative
// paths then resolved against the working directory), checks it and fills
// in the defaults. Its error is an Errors.
func Load(path string) (*Config, error) {
	var r io.Reader
	name, dir := path, filepath.Dir(path)
	if path == "-" {
		name, dir, r = Stdin, ".", os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, Errors{{File: path, Err: err}}
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, Errors{{File: name, Err: err}}
	}
	if len(data) > maxFileSize {
		return nil, Errors{{File: name, Err: fmt.Errorf("larger than %d bytes", maxFileSize)}}
	}
	return Parse(name, dir, data)
}

// Parse is Load on data read from the file name; relative input paths are
// resolved against dir.
func Parse(name, dir string, data []byte) (*Config, error) {
	d := &decoder{file: name, lines: map[string]int{}}
	c := Default()
	c.file, c.dir = name, dir
	d.document(data, &c)
	if len(d.errs) == 0 {
		d.validate(&c)
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return &c, nil
}

// decoder decodes a yaml.Node tree into a Config, collecting errors.
type decoder struct {
	file  string
	errs  Errors
	lines map[string]int // field path → line of its value
	nodes int
	// patternDocs are the inline pattern lists by path, as JSON with every
	// token on its line in the file.
	patternDocs map[string][]byte
}

func (d *decoder) fail(line int, path string, format string, a ...any) {
	if len(d.errs) == maxErrors {
		d.errs = append(d.errs, &Error{File: d.file, Err: fmt.Errorf("more than %d errors; stopped", maxErrors)})
	}
	if len(d.errs) > maxErrors {
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Err: fmt.Errorf(format, a...)})
}

// failErr reports err at path, on the line the file gives it.
func (d *decoder) failErr(path string, err error) {
	d.fail(d.line(path), path, "%s", strings.TrimSpace(err.Error()))
}

// line is the line of path's value, or of the nearest enclosing field the
// file has.
func (d *decoder) line(path string) int {
	for p := path; p != ""; {
		if l, ok := d.lines[p]; ok {
			return l
		}
		k := strings.LastIndexAny(p, ".[")
		if k <= 0 {
			break
		}
		p = p[:k]
	}
	return 0
}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrs are the messages of yaml.v3's parser, which prints its
// marks 0-based (the scanner's are 1-based); ops/pattern_yaml.go corrects
// them the same way.
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

// root parses data and returns its root node, or nil after reporting
// why there is none.
func (d *decoder) root(data []byte) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if yamlParserErrs[m[2]] {
				line = min(line+1, lastLine(data))
			}
			d.fail(line, "", "YAML: %s", m[2])
			return nil
		}
		d.fail(0, "", "YAML: %s", strings.TrimPrefix(msg, "yaml: "))
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		d.fail(0, "", "empty file: want a mapping with at least streams (see `qstream config example`)")
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		d.fail(root.Line, "", "empty file: want a mapping with at least streams (see `qstream config example`)")
		return nil
	}
	return root
}

func (d *decoder) document(data []byte, c *Config) {
	root := d.root(data)
	if root == nil {
		return
	}
	d.value(root, reflect.ValueOf(c).Elem(), "", 0)
	if len(d.errs) == 0 && len(c.Streams) == 0 {
		if _, given := d.lines["streams"]; given {
			d.fail(d.lines["streams"], "streams", "no streams: want at least one")
		} else {
			d.fail(root.Line, "", "no streams: want a list under streams (see `qstream config example`)")
		}
	}
}

// ParseStream reads one stream on its own: a StreamConfig mapping, as an
// item of a file's streams list (the body that a POST /api/streams would
// take), with the engine-wide defaults. Its errors are Load's, with paths
// relative to the stream ("windows[1]"); relative input paths are
// resolved against dir.
func ParseStream(name, dir string, data []byte) (*StreamConfig, error) {
	c, err := ParseStreamConfig(name, dir, data)
	if err != nil {
		return nil, err
	}
	return &c.Streams[0], nil
}

// ParseStreamConfig is ParseStream's stream in a Config of its own with the
// engine-wide defaults, for RunArgs and StreamArgs.
func ParseStreamConfig(name, dir string, data []byte) (*Config, error) {
	d := &decoder{file: name, lines: map[string]int{}}
	c := Default()
	c.file, c.dir = name, dir
	const at = "streams[0]"
	if root := d.root(data); root != nil {
		c.Streams = []StreamConfig{DefaultStream()}
		d.value(root, reflect.ValueOf(&c.Streams[0]).Elem(), at, 0)
	}
	if len(d.errs) == 0 {
		d.validate(&c)
	}
	if len(d.errs) > 0 {
		for _, e := range d.errs {
			e.Path = strings.TrimPrefix(strings.TrimPrefix(e.Path, at), ".")
		}
		return nil, d.errs
	}
	if len(c.Streams) == 0 {
		return nil, Errors{&Error{File: name, Line: 1, Err: errors.New("an empty stream definition")}}
	}
	return &c, nil
}

func lastLine(data []byte) int {
	last := 1
	for i, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			last = i + 1
		}
	}
	return last
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// what names the kind of value n is, for "want X, got Y".
func what(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing (null)"
	case "!!bool":
		return "a boolean " + n.Value
	case "!!int":
		return "an integer " + n.Value
	case "!!float":
		return "a number " + n.Value
	case "!!str":
		return strconv.Quote(n.Value)
	}
	return "a " + n.ShortTag() + " value"
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	patternsType = reflect.TypeOf([]Pattern(nil))
)

// feedDefaults fill in a feed's defaults when its key is present.
var feedDefaults = map[reflect.Type]func() reflect.Value{
	reflect.TypeOf(SyntheticSource{}): func() reflect.Value { return reflect.ValueOf(defaultSynthetic()) },
	reflect.TypeOf(TCPSource{}):       func() reflect.Value { return reflect.ValueOf(defaultTCP()) },
	reflect.TypeOf(WSSource{}):        func() reflect.Value { return reflect.ValueOf(defaultWS()) },
	reflect.TypeOf(WebhookSource{}):   func() reflect.Value { return reflect.ValueOf(defaultWebhook()) },
	reflect.TypeOf(JetStreamSource{}): func() reflect.Value { return reflect.ValueOf(defaultJetStream()) },
	reflect.TypeOf(PcapSource{}):      func() reflect.Value { return reflect.ValueOf(defaultPcap()) },
}

// value decodes n into v; path names v in errors.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int) {
	n = deref(n)
	if n == nil {
		return
	}
	if d.nodes++; d.nodes > maxNodes || depth > maxDepth {
		if d.nodes == maxNodes+1 || depth == maxDepth+1 {
			d.fail(n.Line, path, "more than %d YAML nodes or deeper than %d levels (aliases expanded)", maxNodes, maxDepth)
		}
		return
	}
	if _, ok := d.lines[path]; !ok && path != "" {
		d.lines[path] = n.Line
	}
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	t := v.Type()
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
			d.fail(n.Line, path, "want a duration such as 250ms, 10s or 5m, got %s", what(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n.Line, path, "want a duration such as 250ms, 10s or 5m: %s", strings.TrimPrefix(err.Error(), "time: "))
			return
		}
		v.SetInt(int64(dur))
		return
	case t == patternsType:
		d.patterns(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if null {
			return // the defaults
		}
		d.mapping(n, v, path, depth)
	case reflect.Pointer:
		// A feed: present (even empty or null) means run it.
		p := feedDefaults[t.Elem()]()
		if !null {
			d.mapping(n, p.Elem(), path, depth)
		}
		v.Set(p)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n.Line, path, "want a list ([] for none), got %s", what(n))
			return
		}
		if t.Elem().Kind() == reflect.Struct && len(n.Content) > maxStreams {
			d.fail(n.Line, path, "%d streams, at most %d", len(n.Content), maxStreams)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if t.Elem() == reflect.TypeOf(StreamConfig{}) {
				s.Index(i).Set(reflect.ValueOf(DefaultStream()))
			}
			d.value(item, s.Index(i), path+"["+strconv.Itoa(i)+"]", depth+1)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.fail(n.Line, path, "want a string, got %s", what(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n.Line, path, "want true or false, got %s", what(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.fail(n.Line, path, "want an integer, got %s", what(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil {
			d.fail(n.Line, path, "want an integer >= 0, got %s", what(n))
			return
		}
		v.SetUint(u)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil ||
			math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n.Line, path, "want a number, got %s", what(n))
			return
		}
		v.SetFloat(f)
	default:
		panic("config: no decoding for " + t.String()) // a bug: a field type without a case
	}
}

// fieldNames returns the yaml names of t's fields, in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("yaml"); tag != "" {
			names = append(names, tag)
		}
	}
	return names
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("yaml") == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "want a mapping of fields (%s), got %s", strings.Join(fieldNames(v.Type()), ", "), what(n))
		return
	}
	seen := map[string]int{}
	for k := 0; k+1 < len(n.Content); k += 2 {
		key, val := deref(n.Content[k]), n.Content[k+1]
		if key.Kind != yaml.ScalarNode || key.ShortTag() != "!!str" {
			if key.ShortTag() == "!!merge" {
				d.fail(key.Line, path, "merge keys (<<) are not supported")
			} else {
				d.fail(key.Line, path, "a key must be a string, got %s", what(key))
			}
			continue
		}
		sub := key.Value
		if path != "" {
			sub = path + "." + key.Value
		}
		if first, dup := seen[key.Value]; dup {
			d.fail(key.Line, sub, "given twice (first on line %d)", first)
			continue
		}
		seen[key.Value] = key.Line
		f, ok := fieldByTag(v, key.Value)
		if !ok {
			d.fail(key.Line, sub, "unknown field (want one of %s)", strings.Join(fieldNames(v.Type()), ", "))
			continue
		}
		d.value(val, f, sub, depth+1)
	}
}

// patterns keeps each inline pattern as JSON in which every token is on
// the line it has in the file, so that ops.ParsePatternsFile, reading that
// JSON as YAML, reports the file's lines.
func (d *decoder) patterns(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "want a list of patterns ([] for none), got %s", what(n))
		return
	}
	out := make([]Pattern, 0, len(n.Content))
	e := &lineJSON{line: 1}
	e.at(n.Line)
	e.buf = append(e.buf, '[')
	for i, item := range n.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode {
			d.fail(item.Line, path+"["+strconv.Itoa(i)+"]", "want a mapping of pattern fields (id, type, ...), got %s", what(item))
			continue
		}
		if len(out) > 0 {
			e.buf = append(e.buf, ',')
		}
		start := len(e.buf)
		if err := e.node(item, 0); err != nil {
			d.fail(e.errLine, path+"["+strconv.Itoa(i)+"]", "%v", err)
			return
		}
		var c bytes.Buffer
		if err := json.Compact(&c, e.buf[start:]); err != nil {
			panic("config: inline pattern to JSON: " + err.Error()) // a bug of lineJSON
		}
		out = append(out, Pattern{JSON: c.Bytes(), Line: item.Line})
	}
	e.buf = append(e.buf, ']')
	if d.patternDocs == nil {
		d.patternDocs = map[string][]byte{}
	}
	d.patternDocs[path] = e.buf
	v.Set(reflect.ValueOf(out))
}

// lineJSON writes a node as JSON, starting each token on its node's line
// (relative to the first) where the order of lines allows.
type lineJSON struct {
	buf     []byte
	line    int // the line buf ends on
	nodes   int
	errLine int
}

func (e *lineJSON) at(line int) {
	for ; e.line < line; e.line++ {
		e.buf = append(e.buf, "\n "...)
	}
}

func (e *lineJSON) node(n *yaml.Node, depth int) error {
	n = deref(n)
	if e.nodes++; e.nodes > maxNodes || depth > maxDepth {
		e.errLine = n.Line
		return fmt.Errorf("more than %d nodes or deeper than %d levels", maxNodes, maxDepth)
	}
	e.at(n.Line)
	switch n.Kind {
	case yaml.MappingNode:
		e.buf = append(e.buf, '{')
		for k := 0; k+1 < len(n.Content); k += 2 {
			if k > 0 {
				e.buf = append(e.buf, ',')
			}
			key := deref(n.Content[k])
			if key.Kind != yaml.ScalarNode {
				e.errLine = key.Line
				return errors.New("a key must be a string")
			}
			e.at(key.Line)
			kb, _ := json.Marshal(key.Value)
			e.buf = append(e.buf, kb...)
			e.buf = append(e.buf, ": "...)
			if err := e.node(n.Content[k+1], depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
	case yaml.SequenceNode:
		e.buf = append(e.buf, '[')
		for k, item := range n.Content {
			if k > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.node(item, depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			e.buf = append(e.buf, "null"...)
		case "!!bool", "!!int", "!!float":
			var x any
			if err := n.Decode(&x); err != nil {
				e.errLine = n.Line
				return err
			}
			if f, ok := x.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
				e.errLine = n.Line
				return fmt.Errorf("%s is not a finite number", n.Value)
			}
			b, err := json.Marshal(x)
			if err != nil {
				e.errLine = n.Line
				return err
			}
			e.buf = append(e.buf, b...)
		default:
			b, _ := json.Marshal(n.Value)
			e.buf = append(e.buf, b...)
		}
	default:
		e.errLine = n.Line
		return errors.New("unsupported YAML node")
	}
	return nil
}
