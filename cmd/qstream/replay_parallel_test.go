package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"qstream/codec"
	"qstream/feeds"
)

// parallelTestInput builds JSON Lines that exercise every path of the
// parallel reader over several chunks: trades, quotes and bars of symbols
// that first appear all along the input (so that parse goroutines meet names
// not interned yet), compact news and StreamMessages (market data, news,
// signal, system and custom events: text), malformed and rejected lines of
// every kind, blank and whitespace lines, CRLF endings, lines over --max-line
// (rejected by the parser with their bytes), over the reader's limit (without
// them), one longer than a chunk, and a last line without its newline.
func parallelTestInput(lines int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	ts := int64(1_700_000_000_000_000_000)
	for i := range lines {
		ts += int64(r.IntN(20_000_000))
		sym := fmt.Sprintf("S%d", r.IntN(1+i/40)) // a new symbol every ~40 lines
		price := 100 + float64(r.IntN(10000))/100
		switch k := r.IntN(400); {
		case k < 300:
			fmt.Fprintf(&b, `{"type":"trade","symbol":%q,"ts":%d,"price":%g,"volume":%d,"bid":%g,"ask":%g,"status":"open","id":"t-%d"}`, sym, ts, price, 1+r.IntN(500), price-0.01, price+0.01, i)
		case k < 330:
			fmt.Fprintf(&b, `{"type":"quote","symbol":%q,"ts":%d,"bid":%g,"ask":%g}`, sym, ts, price-0.01, price+0.01)
		case k < 340:
			fmt.Fprintf(&b, `{"type":"bar","symbol":%q,"ts":%d,"open":%g,"high":%g,"low":%g,"close":%g,"volume":10}`, sym, ts, price, price+1, price-1, price)
		case k < 350:
			fmt.Fprintf(&b, `{"type":"news","id":"n%d","ts":%d,"source":"wire","headline":"%s beats estimates","body":"Shares of %s rose.","symbols":[%q,"NEW%d"]}`, i, ts, sym, sym, sym, i)
		case k < 355:
			fmt.Fprintf(&b, `{"message_id":"m%d","stream_id":"s1","timestamp":%d,"source":"t","message_type":"market_data","payload":{"MarketData":{"symbol":%q,"price":%g,"volume":3,"bid":null,"ask":null,"market_status":"Open"}},"metadata":{}}`, i, ts, sym, price)
		case k < 358:
			fmt.Fprintf(&b, `{"message_id":"m%d","timestamp":%d,"payload":{"NewsData":{"headline":"Fed holds","content":"%s and more","symbols":[%q]}}}`, i, ts, sym, sym)
		case k < 361:
			fmt.Fprintf(&b, `{"message_id":"m%d","timestamp":%d,"payload":{"TradingSignal":{"symbol":%q,"signal_type":"StrongBuy","strength":0.8,"price":%g}}}`, i, ts, sym, price)
		case k < 363:
			fmt.Fprintf(&b, `{"message_id":"m%d","timestamp":%d,"payload":{"SystemEvent":{"event_type":"halt","symbol":%q,"message":"halted"}}}`, i, ts, sym)
		case k < 365:
			fmt.Fprintf(&b, `{"message_id":"m%d","timestamp":%d,"payload":{"CustomEvent":{"event_type":"x","symbol":%q,"n":[1,2]}}}`, i, ts, sym)
		case k < 368:
			b.WriteString("this line is not JSON")
		case k < 371:
			fmt.Fprintf(&b, `{"type":"trade","symbol":%q,"ts":%d,"price":-1,"volume":1}`, sym, ts)
		case k < 373:
			fmt.Fprintf(&b, `{"type":"trade","symbol":%q,"ts":%d,"price":"NaN","volume":1}`, sym, ts)
		case k < 375:
			fmt.Fprintf(&b, `{"type":"trade","symbol":%q,"symbol":"X","ts":%d,"price":1,"volume":1}`, sym, ts)
		case k < 377:
			fmt.Fprintf(&b, `{"type":"trade","symbol":"bad\u0001sym","ts":%d,"price":1,"volume":1}`, ts)
		case k < 379:
			fmt.Fprintf(&b, `{"type":"launch","symbol":%q,"ts":%d}`, sym, ts)
		case k < 381:
			fmt.Fprintf(&b, `{"type":"trade","symbol":"","ts":%d,"price":1,"volume":1}`, ts)
		case k < 384:
			b.WriteString("   \t ")
		case k < 386:
			// Over --max-line 2000 (the parser rejects it, with its bytes).
			fmt.Fprintf(&b, `{"type":"trade","symbol":%q,"ts":%d,"price":1,"volume":1,"pad":"%s"}`, sym, ts, strings.Repeat("p", 2000+r.IntN(3000)))
		case k < 387:
			// Over the reader's limit (without its bytes).
			b.WriteString(strings.Repeat("x", 70_000+r.IntN(100_000)))
		case k < 388 && i%7 == 0:
			// Longer than a chunk.
			b.WriteString(strings.Repeat("y", parallelChunkBytes+r.IntN(parallelChunkBytes)))
		case k < 392:
			fmt.Fprintf(&b, `{"type":"trade","symbol":%q,"ts":%d,"price":%g,"volume":1}`+"\r", sym, ts, price)
		}
		if i < lines-1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// readAll reads every record of r and describes it on a line: an event with
// every field and its text, or a rejection with its position, raw bytes
// and error.
func readAll(t *testing.T, r feeds.Reader) string {
	t.Helper()
	tr, _ := r.(interface{ Text() []byte })
	var out strings.Builder
	var ev codec.Event
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			return out.String()
		}
		var re *feeds.RecordError
		switch {
		case errors.As(err, &re):
			fmt.Fprintf(&out, "reject %d@%d %s %q: %v\n", re.Pos.Line, re.Pos.Offset, re.Reason(), re.Raw, re.Err)
		case err != nil:
			t.Fatal(err)
		default:
			fmt.Fprintf(&out, "event %+v %q\n", ev, tr.Text())
		}
	}
}

// TestParallelReaderSequential: the parallel reader returns exactly what the
// sequential LineReader returns (events, symbol ids, texts, rejections with
// their positions, raw bytes and errors) for any number of parse goroutines,
// for short reads, with a symbol table that fills up, and at the edges.
func TestParallelReaderSequential(t *testing.T) {
	big := parallelTestInput(30_000, 1)
	if len(big) < 8*parallelChunkBytes {
		t.Fatalf("input of %d bytes: too few chunks", len(big))
	}
	type input struct {
		name string
		data []byte
	}
	inputs := []input{
		{"mixed", big},
		{"empty", nil},
		{"newline", []byte("\n")},
		{"blank", []byte("\n \n\t\r\n")},
		{"no final newline", []byte(`{"type":"trade","symbol":"A","ts":1,"price":1,"volume":1}`)},
		{"final CRLF", []byte("{\"type\":\"trade\",\"symbol\":\"A\",\"ts\":1,\"price\":1,\"volume\":1}\r\n")},
		{"only oversize", bytes.Repeat([]byte("z"), 3*parallelChunkBytes)},
		{"oversize then line", append(bytes.Repeat([]byte("z"), 2*parallelChunkBytes), "\n{\"type\":\"trade\",\"symbol\":\"A\",\"ts\":1,\"price\":1,\"volume\":1}\n"...)},
		{"at the limit", append(bytes.Repeat([]byte(" "), lineLimit(0)), "\n"+strings.Repeat(" ", lineLimit(0)+1)+"\nx\n"...)},
	}
	dir := t.TempDir()
	for i, in := range inputs {
		path := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(path, in.data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, maxLine := range []int{0, 2000} {
			for _, maxSymbols := range []int{1 << 16, 60} {
				read := func(r io.Reader, threads int) string {
					opts := codec.ParserOptions{Symbols: codec.NewSymbolTable(maxSymbols), MaxMessageSize: maxLine}
					fr, err := openReaderThreads("jsonl", "", r, opts, walFrom{}, threads)
					if err != nil {
						t.Fatal(err)
					}
					defer fr.Close()
					return readAll(t, fr)
				}
				want := read(bytes.NewReader(in.data), 1)
				for _, threads := range []int{2, 3, 8} {
					for _, how := range []string{"read", "short reads", "mapped file"} {
						var r io.Reader = bytes.NewReader(in.data)
						switch how {
						case "short reads":
							r = iotest.HalfReader(r)
						case "mapped file":
							r = openFile(t, path)
						}
						if got := read(r, threads); got != want {
							t.Fatalf("%s, --max-line %d, %d symbols, %d threads, %s: differs from the sequential reader\n%s",
								in.name, maxLine, maxSymbols, threads, how, firstDiffShort(got, want))
						}
					}
				}
				if in.name == "mixed" && maxSymbols == 60 && !strings.Contains(want, "unknown_symbol") {
					t.Fatal("the input does not fill the symbol table")
				}
			}
		}
	}
}

// TestParallelReaderPublisherParses: the goroutine that calls Next parses
// the chunks no parse goroutine has claimed. With no parse goroutine at all
// it parses every chunk itself and still returns what the sequential reader
// returns; with parse goroutines the result is the same whoever parsed what.
func TestParallelReaderPublisherParses(t *testing.T) {
	data := parallelTestInput(20_000, 4)
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := func() codec.ParserOptions {
		return codec.ParserOptions{Symbols: codec.NewSymbolTable(1 << 16)}
	}
	want := readAll(t, feeds.NewJSONLReader(bytes.NewReader(data), opts()))
	for _, threads := range []int{1, 2} {
		for _, mapped := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(data)
			var file *os.File
			if mapped {
				file = openFile(t, path)
				r = file
			}
			pr := newParallelJSONL(r, file, opts(), threads)
			got := readAll(t, pr)
			if err := pr.Close(); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("%d threads, mapped %v: differs from the sequential reader\n%s", threads, mapped, firstDiffShort(got, want))
			}
			min := len(data) / (4 * parallelChunkBytes) // chunks hold at least a quarter of their size here
			if threads == 1 && pr.owned < min {
				t.Fatalf("no parse goroutine, mapped %v: Next parsed %d chunks itself, want all (at least %d)", mapped, pr.owned, min)
			}
		}
	}
}

// openFile opens path for the test: an *os.File, which a parallel reader
// maps into memory.
func openFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// firstDiffShort describes the first line where got and want differ, cut
// short (lines here can be longer than a chunk).
func firstDiffShort(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("record %d:\n got: %.400s\nwant: %.400s", i+1, gl, wl)
		}
	}
	return "same lines"
}

// TestReplayParseThreads: `qstream replay` writes byte-identical output,
// stderr and dead-letter file with 1 and several parse goroutines, on 1 and
// several shards, for indicators, windows, news and events, stats, and with
// a symbol table too small for the input.
func TestReplayParseThreads(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(input, parallelTestInput(12_000, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{
		{"--emit", "all", "--indicators", "sma:5,ema:12,rsi:14,vwap,vwap:14", "--windows", "tumbling:1s:vwap,sliding:5s/1s:p99"},
		{"--emit", "all", "--shards", "3", "--max-line", "2000"},
		{"--emit", "windows,news,events,stats", "--windows", "tumbling:1s:ohlcv", "--max-symbols", "60", "--shards", "2"},
	} {
		run := func(threads int) (out, stderr, dlq []byte) {
			outPath := filepath.Join(dir, "out"+strconv.Itoa(threads))
			dlqPath := filepath.Join(dir, "dlq"+strconv.Itoa(threads))
			args := append([]string{"replay", "--input", input, "--output", outPath, "--dlq", dlqPath, "--parse-threads", strconv.Itoa(threads)}, extra...)
			_, se, rc := qstream(t, args...)
			if rc != 0 {
				t.Fatalf("%v: exit status %d: %s", args, rc, se)
			}
			var err error
			if out, err = os.ReadFile(outPath); err != nil {
				t.Fatal(err)
			}
			if dlq, err = os.ReadFile(dlqPath); err != nil {
				t.Fatal(err)
			}
			return out, []byte(se), dlq
		}
		wantOut, wantErr, wantDLQ := run(1)
		if len(wantOut) == 0 || bytes.Count(wantDLQ, []byte("\n")) < 100 || !bytes.Contains(wantDLQ, []byte(`"line":`)) {
			t.Fatalf("%v: %d bytes of output, dead letters:\n%.2000s", extra, len(wantOut), wantDLQ)
		}
		for _, threads := range []int{2, 4} {
			out, stderr, dlq := run(threads)
			if !bytes.Equal(out, wantOut) {
				t.Fatalf("%v: output with %d parse threads differs from 1:\n%s", extra, threads, firstDiffShort(string(out), string(wantOut)))
			}
			if !bytes.Equal(stderr, wantErr) {
				t.Fatalf("%v: stderr with %d parse threads differs from 1:\n%s", extra, threads, firstDiffShort(string(stderr), string(wantErr)))
			}
			if !bytes.Equal(dlq, wantDLQ) {
				t.Fatalf("%v: dead letters with %d parse threads differ from 1:\n%s", extra, threads, firstDiffShort(string(dlq), string(wantDLQ)))
			}
		}
	}
}

// TestParallelReaderClose: closing the reader before the end of the input
// stops its goroutines (goleak-free) and closes the input.
func TestParallelReaderClose(t *testing.T) {
	data := parallelTestInput(20_000, 3)
	for _, after := range []int{0, 1, 500} {
		c := &closeCounter{Reader: bytes.NewReader(data)}
		r := newParallelJSONL(bufio.NewReader(c), nil, codec.ParserOptions{}, 3)
		r.closer = c
		var ev codec.Event
		for range after {
			if err := r.Next(&ev); err == io.EOF {
				t.Fatal("early EOF")
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if c.closed != 1 {
			t.Fatalf("input closed %d times", c.closed)
		}
	}
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// TestParallelReaderCloseBlockedRead: Close returns while the reader is
// blocked in a Read that does not return (standard input that stays open).
func TestParallelReaderCloseBlockedRead(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close() // lets the reader's Read return after the test
	r := newParallelJSONL(pr, nil, codec.ParserOptions{}, 2)
	go pw.Write([]byte("{\"type\":\"trade\",\"symbol\":\"A\",\"ts\":1,\"price\":1,\"volume\":1}\n"))
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a Read that does not return")
	}
}
