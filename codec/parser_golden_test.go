package codec

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The golden tests parse the inputs in testdata/ and compare a readable
// rendering of every result with the .golden file beside them. After an
// intended change, regenerate with
//
//	go test ./codec -run Golden -update
//
// and review the diff.
func init() {
	// Other test files of the package may define -update as well; share it.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata/")
	}
}

func parserUpdateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// parserRenderEvent prints every field of ev that is set.
func parserRenderEvent(buf *bytes.Buffer, ev *Event, names *SymbolTable) {
	fmt.Fprintf(buf, "%s ts=%d", ev.Kind, ev.TsNs)
	if ev.Symbol != 0 {
		fmt.Fprintf(buf, " symbol=%s", names.Name(ev.Symbol))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"price", ev.Price}, {"volume", ev.Volume}, {"bid", ev.Bid}, {"ask", ev.Ask}, {"bid_size", ev.BidSize},
		{"ask_size", ev.AskSize}, {"open", ev.Open}, {"high", ev.High}, {"low", ev.Low}} {
		if f.v != 0 {
			fmt.Fprintf(buf, " %s=%v", f.name, f.v)
		}
	}
	if ev.Status != StatusUnknown {
		fmt.Fprintf(buf, " status=%s", ev.Status)
	}
	if ev.Flags != 0 {
		fmt.Fprintf(buf, " flags=%06b", ev.Flags)
	}
	if ev.IDHash != 0 {
		fmt.Fprintf(buf, " id_hash=%016x", ev.IDHash)
	}
	if ev.Aux != 0 {
		fmt.Fprintf(buf, " aux=%#x", ev.Aux)
	}
	fmt.Fprintf(buf, " source=%d seq=%d", ev.Source, ev.Seq)
}

func parserRenderErr(buf *bytes.Buffer, err error) {
	var ce *Error
	if !errors.As(err, &ce) {
		fmt.Fprintf(buf, "ERROR (not a codec.Error) %v", err)
		return
	}
	fmt.Fprintf(buf, "REJECT reason=%s field=%q offset=%d detail=%q", ce.Reason, ce.Field, ce.Offset, ce.Detail)
}

func parserCheckGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if parserUpdateGolden() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range max(len(gl), len(wl)) {
			var g, w []byte
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if !bytes.Equal(g, w) {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(run with -update after an intended change)", path, i+1, g, w)
			}
		}
	}
}

func TestParseJSONGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "json_cases.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser(ParserOptions{Source: 7})
	var out bytes.Buffer
	for i, line := range bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n")) {
		ev := Event{Seq: uint64(i + 1)}
		fmt.Fprintf(&out, "%d: ", i+1)
		if err := p.ParseJSON(line, &ev); err != nil {
			parserRenderErr(&out, err)
		} else {
			parserRenderEvent(&out, &ev, p.Symbols())
			if a := p.News(); a != nil {
				fmt.Fprintf(&out, "\n   news id=%q source=%q headline=%q body=%q symbols=", a.ID, a.Source, a.Headline, a.Body)
				for k, s := range a.Symbols {
					if k > 0 {
						out.WriteByte(',')
					}
					out.WriteString(p.Symbols().Name(s))
				}
				if a.HasSentiment {
					fmt.Fprintf(&out, " sentiment=%v", a.Sentiment)
				}
			}
		}
		out.WriteByte('\n')
	}
	parserCheckGolden(t, "json_cases.golden", out.Bytes())
}

func TestParseCSVGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "csv_cases.csv"))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCSVParser(ParserOptions{Source: 8})
	lines := bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n"))
	if err := c.ParseHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for i, line := range lines[1:] {
		ev := Event{Seq: uint64(i + 2)}
		fmt.Fprintf(&out, "%d: ", i+2)
		if err := c.ParseRow(line, &ev); err != nil {
			parserRenderErr(&out, err)
		} else {
			parserRenderEvent(&out, &ev, c.Symbols())
		}
		out.WriteByte('\n')
	}
	parserCheckGolden(t, "csv_cases.golden", out.Bytes())
}
