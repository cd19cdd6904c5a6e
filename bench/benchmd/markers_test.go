package main

import (
	"errors"
	"strings"
	"testing"
)

// markerDoc has two blocks with old bodies, and around them what a hand
// edit can hold: CRLF line ends, a marker's text inside prose, non-ASCII,
// trailing spaces and no final newline.
const markerDoc = "# Title\r\n" +
	"Prose that names `<!-- bench:begin a -->` inline is not a marker.  \n" +
	"<!-- bench:begin a -->\n" +
	"old body of a\n" +
	"\n" +
	"<!-- bench:end a -->\n" +
	"between: µs ÷ ±\t\n" +
	"<!-- bench:begin b -->\r\n" +
	"<!-- bench:end b -->\r\n" +
	"tail without a newline"

// markerGolden is markerDoc with the blocks rewritten: written down once,
// not recomputed by the code under test.
const markerGolden = "# Title\r\n" +
	"Prose that names `<!-- bench:begin a -->` inline is not a marker.  \n" +
	"<!-- bench:begin a -->\n" +
	"\n" +
	"new A\n" +
	"| x |\n" +
	"\n" +
	"<!-- bench:end a -->\n" +
	"between: µs ÷ ±\t\n" +
	"<!-- bench:begin b -->\r\n" +
	"\n" +
	"new B\n" +
	"\n" +
	"<!-- bench:end b -->\r\n" +
	"tail without a newline"

var markerBlocks = map[string]string{"a": "new A\n| x |\n", "b": "new B"}

func TestRewriteGolden(t *testing.T) {
	got, err := rewrite([]byte(markerDoc), markerBlocks)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != markerGolden {
		t.Fatalf("got\n%q\nwant\n%q", got, markerGolden)
	}
	// Every byte outside the bodies is the input's, in order.
	if a, b := outside(t, markerDoc), outside(t, string(got)); a != b {
		t.Fatalf("outside the blocks:\n%q\nbecame\n%q", a, b)
	}
}

// outside is doc without the bodies of its blocks (marker lines kept),
// found independently of rewrite: by the marker lines' exact text.
func outside(t *testing.T, doc string) string {
	t.Helper()
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(doc, "\n") {
		text := strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(text, "<!-- bench:begin "):
			in = true
			b.WriteString(line)
		case strings.HasPrefix(text, "<!-- bench:end "):
			in = false
			b.WriteString(line)
		case !in:
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestRewriteIdempotent(t *testing.T) {
	once, err := rewrite([]byte(markerDoc), markerBlocks)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := rewrite(once, markerBlocks)
	if err != nil {
		t.Fatal(err)
	}
	if string(once) != string(twice) {
		t.Fatalf("a second rewrite changed the file:\n%q\n%q", once, twice)
	}
}

func TestRewriteEmptyBlocks(t *testing.T) {
	doc := "<!-- bench:begin a -->\n<!-- bench:end a -->\n"
	got, err := rewrite([]byte(doc), map[string]string{"a": ""})
	if err != nil {
		t.Fatal(err)
	}
	if want := "<!-- bench:begin a -->\n\n\n<!-- bench:end a -->\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRewriteRejects(t *testing.T) {
	ab := map[string]string{"a": "A\n", "b": "B\n"}
	for _, tc := range []struct {
		name, doc string
	}{
		{"begin without end", "<!-- bench:begin a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n"},
		{"end without begin", "<!-- bench:end a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n"},
		{"unclosed at the end", "<!-- bench:begin a -->\n<!-- bench:end a -->\n<!-- bench:begin b -->\ntext\n"},
		{"nested", "<!-- bench:begin a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n<!-- bench:end a -->\n"},
		{"end of another block", "<!-- bench:begin a -->\n<!-- bench:end b -->\n"},
		{"repeated block", "<!-- bench:begin a -->\n<!-- bench:end a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n<!-- bench:begin a -->\n<!-- bench:end a -->\n"},
		{"unknown block", "<!-- bench:begin a -->\n<!-- bench:end a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n<!-- bench:begin c -->\n<!-- bench:end c -->\n"},
		{"missing block", "<!-- bench:begin a -->\n<!-- bench:end a -->\n"},
		{"no markers", "just text\n"},
		{"misspelt", "<!-- bench:begn a -->\n<!-- bench:begin a -->\n<!-- bench:end a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n"},
		{"unterminated comment", "<!-- bench:begin a\n<!-- bench:end a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n"},
		{"indented", "  <!-- bench:begin a -->\n<!-- bench:end a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n"},
		{"empty name", "<!-- bench:begin  -->\n<!-- bench:end a -->\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := rewrite([]byte(tc.doc), ab)
			if !errors.Is(err, ErrMarkers) {
				t.Fatalf("err = %v, want ErrMarkers", err)
			}
			t.Log(err)
			if out != nil {
				t.Fatalf("output %q with the error", out)
			}
		})
	}
}
