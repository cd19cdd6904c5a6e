package main

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// A generated block of a Markdown file is the lines between a begin marker
// and its end marker, each marker alone on its line:
//
//	<!-- bench:begin NAME -->
//	(generated; rewritten by every update)
//	<!-- bench:end NAME -->
//
// The markers are HTML comments, so they do not show when the file is
// rendered. Blocks do not nest and each name appears once.
const (
	markerStart = "<!-- bench:"
	beginPrefix = "<!-- bench:begin "
	endPrefix   = "<!-- bench:end "
	markerEnd   = " -->"
)

// ErrMarkers reports markers that do not delimit the expected blocks.
var ErrMarkers = errors.New("markers")

// rewrite replaces the body of every block of doc with blocks[name]: an
// empty line, the content, an empty line. Every byte outside the bodies,
// marker lines included, is kept as it is. It fails, changing nothing, on a
// marker that is malformed, nested, unclosed, repeated, of a name blocks does
// not have, or when a name of blocks has no block in doc.
func rewrite(doc []byte, blocks map[string]string) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(doc))
	seen := map[string]bool{}
	open, openLine := "", 0
	for n, line := range bytes.SplitAfter(doc, []byte("\n")) {
		lineNo := n + 1
		text := strings.TrimRight(string(line), "\r\n")
		kind, name, err := marker(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrMarkers, lineNo, err)
		}
		switch kind {
		case "":
			if open == "" {
				out.Write(line)
			}
			continue // a line of an old body: dropped
		case "begin":
			if open != "" {
				return nil, fmt.Errorf("%w: line %d: begin of %q inside %q (begun on line %d)", ErrMarkers, lineNo, name, open, openLine)
			}
			if seen[name] {
				return nil, fmt.Errorf("%w: line %d: a second block %q", ErrMarkers, lineNo, name)
			}
			body, ok := blocks[name]
			if !ok {
				return nil, fmt.Errorf("%w: line %d: unknown block %q (known: %s)", ErrMarkers, lineNo, name, strings.Join(names(blocks), ", "))
			}
			seen[name] = true
			open, openLine = name, lineNo
			out.Write(line)
			if !bytes.HasSuffix(line, []byte("\n")) {
				out.WriteString("\n")
			}
			out.WriteString("\n")
			out.WriteString(body)
			if body != "" && !strings.HasSuffix(body, "\n") {
				out.WriteString("\n")
			}
			out.WriteString("\n")
		case "end":
			if open != name {
				if open == "" {
					return nil, fmt.Errorf("%w: line %d: end of %q with no block open", ErrMarkers, lineNo, name)
				}
				return nil, fmt.Errorf("%w: line %d: end of %q inside %q (begun on line %d)", ErrMarkers, lineNo, name, open, openLine)
			}
			open = ""
			out.Write(line)
		}
	}
	if open != "" {
		return nil, fmt.Errorf("%w: block %q begun on line %d never ends", ErrMarkers, open, openLine)
	}
	var missing []string
	for _, name := range names(blocks) {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: no block for %s (add `%sNAME -->` and `%sNAME -->` lines)", ErrMarkers, strings.Join(missing, ", "), beginPrefix, endPrefix)
	}
	return out.Bytes(), nil
}

// marker parses one line: kind "" for a line that is no marker, else
// "begin" or "end" and the block's name. A line that starts like a marker
// but is not one exactly is an error, so that a typo cannot leave a block
// unreplaced.
func marker(line string) (kind, name string, err error) {
	if !strings.HasPrefix(strings.TrimSpace(line), markerStart) {
		return "", "", nil
	}
	var prefix string
	switch {
	case strings.HasPrefix(line, beginPrefix):
		kind, prefix = "begin", beginPrefix
	case strings.HasPrefix(line, endPrefix):
		kind, prefix = "end", endPrefix
	default:
		return "", "", fmt.Errorf("malformed marker %q: want %sNAME%s or %sNAME%s at the start of the line", line, beginPrefix, markerEnd, endPrefix, markerEnd)
	}
	name, ok := strings.CutSuffix(strings.TrimPrefix(line, prefix), markerEnd)
	if !ok || name == "" || strings.ContainsAny(name, " \t<>") {
		return "", "", fmt.Errorf("malformed marker %q: want %sNAME%s", line, prefix, markerEnd)
	}
	return kind, name, nil
}

func names(blocks map[string]string) []string {
	s := make([]string, 0, len(blocks))
	for k := range blocks {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}
