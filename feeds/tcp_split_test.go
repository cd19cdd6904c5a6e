package feeds

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"qstream/codec"
)

// tcpSplitMsg is one message seen by a splitter walk.
type tcpSplitMsg struct {
	msg string
	pos Position
}

// tcpSplitOracle splits the whole input at once, the simple way. bad is
// errTCPOversize or errTCPUnaligned when the stream must be abandoned.
func tcpSplitOracle(format TCPFormat, max int, in []byte) (msgs []tcpSplitMsg, bad error) {
	off := 0
	var n int64
	if format == TCPAuto && len(in) > 0 {
		format = TCPLines
		if in[0] == codec.FrameMagic {
			format = TCPFrames
		}
	}
	for off < len(in) {
		rest := in[off:]
		switch format {
		case TCPLines:
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				if len(rest) > max {
					return msgs, errTCPOversize
				}
				return msgs, nil
			}
			if i > max {
				return msgs, errTCPOversize
			}
			n++
			msgs = append(msgs, tcpSplitMsg{string(bytes.TrimSuffix(rest[:i], []byte("\r"))), Position{Line: n, Offset: int64(off)}})
			off += i + 1
		case TCPFrames:
			if rest[0] != codec.FrameMagic {
				return msgs, errTCPUnaligned
			}
			if len(rest) < 4 {
				return msgs, nil
			}
			l := int(binary.LittleEndian.Uint16(rest[2:]))
			if l < 4 {
				return msgs, errTCPUnaligned
			}
			if l > max {
				return msgs, errTCPOversize
			}
			if len(rest) < l {
				return msgs, nil
			}
			n++
			msgs = append(msgs, tcpSplitMsg{string(rest[:l]), Position{Offset: int64(off)}})
			off += l
		}
	}
	return msgs, nil
}

// tcpSplitChunks feeds in to a splitter in the given chunks.
func tcpSplitChunks(format TCPFormat, max int, chunks [][]byte) (msgs []tcpSplitMsg, bad error) {
	s := newTCPSplitter(format, max)
	for _, c := range chunks {
		s.Begin(c)
		for {
			m, ok, err := s.Next()
			if err != nil {
				return msgs, err
			}
			if !ok {
				break
			}
			msgs = append(msgs, tcpSplitMsg{string(m), s.Pos()})
		}
	}
	return msgs, nil
}

func tcpSplitAt(in []byte, cuts []int) [][]byte {
	var chunks [][]byte
	prev := 0
	for _, c := range cuts {
		chunks = append(chunks, in[prev:c])
		prev = c
	}
	return append(chunks, in[prev:])
}

func checkTCPSplit(t *testing.T, format TCPFormat, max int, in []byte, chunks [][]byte) {
	t.Helper()
	want, wantOver := tcpSplitOracle(format, max, in)
	got, gotOver := tcpSplitChunks(format, max, chunks)
	if gotOver != wantOver || len(got) != len(want) {
		t.Fatalf("%v max %d, %d chunks: got %d msgs, error %v; want %d msgs, error %v",
			format, max, len(chunks), len(got), gotOver, len(want), wantOver)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v max %d, %d chunks: msg %d = %+v, want %+v", format, max, len(chunks), i, got[i], want[i])
		}
	}
}

// tcpTestFrame appends a frame-shaped message (the codec frame header with
// the right length, any body) to dst: the splitter looks only at the header.
func tcpTestFrame(dst []byte, body []byte) []byte {
	dst = append(dst, codec.FrameMagic, codec.FrameVersion)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(4+len(body)))
	return append(dst, body...)
}

func tcpTestFrames(bodies ...string) []byte {
	var b []byte
	for _, p := range bodies {
		b = tcpTestFrame(b, []byte(p))
	}
	return b
}

// f is the raw frame of body, for expected values.
func tcpF(body string) string { return string(tcpTestFrames(body)) }

func TestTCPSplitterTable(t *testing.T) {
	tests := []struct {
		name   string
		format TCPFormat
		max    int
		in     []byte
		want   []string
		bad    error
	}{
		{"lines", TCPLines, 64, []byte("a\nbb\r\n\nccc\n"), []string{"a", "bb", "", "ccc"}, nil},
		{"lines tail kept", TCPLines, 64, []byte("a\nbb"), []string{"a"}, nil},
		{"line at limit", TCPLines, 3, []byte("abc\nd\n"), []string{"abc", "d"}, nil},
		{"line over limit", TCPLines, 3, []byte("ab\nabcd\nx\n"), []string{"ab"}, errTCPOversize},
		{"tail over limit", TCPLines, 3, []byte("ab\nabcd"), []string{"ab"}, errTCPOversize},
		{"auto lines", TCPAuto, 64, []byte("{}\n\xf5\n"), []string{"{}", "\xf5"}, nil},
		{"frames", TCPFrames, 64, tcpTestFrames("x", "hello", ""), []string{tcpF("x"), tcpF("hello"), tcpF("")}, nil},
		{"auto frames", TCPAuto, 64, tcpTestFrames("x", "y"), []string{tcpF("x"), tcpF("y")}, nil},
		{"frame tail kept", TCPFrames, 64, tcpTestFrames("x", "hello")[:9], []string{tcpF("x")}, nil},
		{"frame at limit", TCPFrames, 9, tcpTestFrames("hello", "a"), []string{tcpF("hello"), tcpF("a")}, nil},
		{"frame over limit", TCPFrames, 8, tcpTestFrames("a", "hello", "b"), []string{tcpF("a")}, errTCPOversize},
		{"huge length", TCPFrames, 1 << 10, []byte{codec.FrameMagic, 1, 0xff, 0xff, 1}, nil, errTCPOversize},
		{"length under header", TCPFrames, 64, []byte{codec.FrameMagic, 1, 3, 0, 1}, nil, errTCPUnaligned},
		{"bad magic", TCPFrames, 64, append(tcpTestFrames("ok"), "{}\n"...), []string{tcpF("ok")}, errTCPUnaligned},
		{"bad magic in a short tail", TCPFrames, 64, append(tcpTestFrames("ok"), 'x'), []string{tcpF("ok")}, errTCPUnaligned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, over := tcpSplitChunks(tc.format, tc.max, [][]byte{tc.in})
			var msgs []string
			for _, m := range got {
				msgs = append(msgs, m.msg)
			}
			if fmt.Sprint(msgs) != fmt.Sprint(tc.want) || over != tc.bad {
				t.Fatalf("got %q, error %v; want %q, error %v", msgs, over, tc.want, tc.bad)
			}
			checkTCPSplit(t, tc.format, tc.max, tc.in, [][]byte{tc.in})
		})
	}
}

// Every message split at every byte boundary, and byte by byte, gives the
// same messages and positions as one read.
func TestTCPSplitterEveryBoundary(t *testing.T) {
	lines := []byte("{\"type\":\"trade\",\"symbol\":\"AAPL\"}\r\n\n{\"a\":1}\nlast-without-newline")
	frames := tcpTestFrames("first frame", "", "a longer third frame payload", "z")
	for _, tc := range []struct {
		format TCPFormat
		in     []byte
	}{{TCPLines, lines}, {TCPFrames, frames}} {
		for _, max := range []int{1, 4, 11, 28, 64} {
			for cut := 0; cut <= len(tc.in); cut++ {
				checkTCPSplit(t, tc.format, max, tc.in, tcpSplitAt(tc.in, []int{cut}))
			}
			for a := 0; a <= len(tc.in); a += 3 {
				for b := a; b <= len(tc.in); b += 5 {
					checkTCPSplit(t, tc.format, max, tc.in, tcpSplitAt(tc.in, []int{a, b}))
				}
			}
			bytewise := make([][]byte, len(tc.in))
			for i := range tc.in {
				bytewise[i] = tc.in[i : i+1]
			}
			checkTCPSplit(t, tc.format, max, tc.in, bytewise)
		}
	}
}

// Property: random streams cut at random points agree with the oracle.
func TestTCPSplitterRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 3000; trial++ {
		format := []TCPFormat{TCPLines, TCPFrames, TCPAuto}[trial%3]
		max := 1 + rnd.IntN(40)
		var in []byte
		for m := rnd.IntN(20); m > 0; m-- {
			p := make([]byte, rnd.IntN(max+3))
			for i := range p {
				p[i] = byte('a' + rnd.IntN(26))
				if format != TCPLines && rnd.IntN(8) == 0 {
					p[i] = '\n'
				}
			}
			switch {
			case format == TCPLines || format == TCPAuto && trial%2 == 0:
				if rnd.IntN(4) == 0 {
					p = append(p, '\r')
				}
				in = append(append(in, p...), '\n')
			default:
				in = tcpTestFrame(in, p)
			}
		}
		var cuts []int
		for c := rnd.IntN(6); c > 0 && len(in) > 0; c-- {
			cuts = append(cuts, rnd.IntN(len(in)+1))
		}
		slices.Sort(cuts)
		checkTCPSplit(t, format, max, in, tcpSplitAt(in, cuts))
	}
}

// The splitter does not allocate once its carry buffer has grown.
func TestTCPSplitterNoAlloc(t *testing.T) {
	for _, format := range []TCPFormat{TCPLines, TCPFrames} {
		var in []byte
		for i := 0; i < 50; i++ {
			p := fmt.Sprintf("{\"type\":\"trade\",\"symbol\":\"S%d\",\"ts\":1,\"price\":1.5,\"volume\":%d}", i, i)
			if format == TCPLines {
				in = append(append(in, p...), '\n')
			} else {
				in = tcpTestFrame(in, []byte(p))
			}
		}
		chunks := tcpSplitAt(in, []int{7, 300, 301, 1000, len(in) - 3})
		s := newTCPSplitter(format, 1024)
		run := func() {
			n := 0
			for _, c := range chunks {
				s.Begin(c)
				for {
					_, ok, err := s.Next()
					if err != nil || !ok {
						break
					}
					n++
				}
			}
			if n != 50 {
				t.Fatalf("%v: %d messages, want 50", format, n)
			}
			s.reset()
		}
		run() // grows the carry buffer
		if a := testing.AllocsPerRun(100, run); a != 0 {
			t.Fatalf("%v: %v allocs per stream, want 0", format, a)
		}
	}
}

// FuzzTCPSplitter: any bytes, any limit, any chunking give exactly what the
// whole-input oracle gives, and never panic.
func FuzzTCPSplitter(f *testing.F) {
	ev := codec.Event{Kind: codec.KindTrade, TsNs: 1700000000123456789, Seq: 7, Price: 189.23, Volume: 300, Symbol: 1}
	realFrames := codec.AppendFrame(codec.AppendFrame(nil, &ev), &ev)
	f.Add([]byte("{\"type\":\"trade\",\"symbol\":\"AAPL\",\"ts\":1,\"price\":1,\"volume\":1}\n{\"x\":1}\r\n"), []byte{3, 17, 1}, uint16(128), uint8(0))
	f.Add(realFrames, []byte{1, 1, 1, 2, 9, 130}, uint16(1024), uint8(1))
	f.Add(realFrames, []byte{200}, uint16(1024), uint8(2))
	f.Add(tcpTestFrames("frame one", "", "frame three"), []byte{1, 1, 1, 2, 9}, uint16(64), uint8(1))
	f.Add(tcpTestFrames("abc", "defgh"), []byte{4}, uint16(8), uint8(1))
	f.Add([]byte{codec.FrameMagic, 1, 0xff, 0x7f, 0}, []byte{2}, uint16(1000), uint8(1))
	f.Add([]byte("no newline at all, just a long tail"), []byte{5, 5}, uint16(8), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, cutBytes []byte, max16 uint16, format8 uint8) {
		format := []TCPFormat{TCPLines, TCPFrames, TCPAuto}[format8%3]
		max := int(max16)
		var cuts []int
		at := 0
		for _, c := range cutBytes {
			at += int(c)
			if at > len(in) {
				break
			}
			cuts = append(cuts, at)
		}
		checkTCPSplit(t, format, max, in, tcpSplitAt(in, cuts))
	})
}

// FuzzTCPConsume drives the server's whole read path (split, parse or
// decode, publish or reject) with arbitrary bytes cut at arbitrary points:
// it must not panic, and every message is either published or rejected.
func FuzzTCPConsume(f *testing.F) {
	ev := codec.Event{Kind: codec.KindTrade, TsNs: 1700000000123456789, Seq: 7, Price: 189.23, Volume: 300, Symbol: 1}
	frame := codec.AppendFrame(nil, &ev)
	f.Add([]byte(`{"type":"trade","symbol":"AAPL","ts":1700000000123456789,"price":189.23,"volume":300,"id":"t-1"}`+"\n"+`{"type":"quote","symbol":"MSFT","ts":"2024-01-02T14:30:00Z","bid":1,"ask":2}`+"\nnot json\n"), []byte{10, 40}, uint8(0))
	f.Add(append(append([]byte{}, frame...), frame...), []byte{3, 140}, uint8(1))
	f.Add(append(frame[:100:100], frame...), []byte{50}, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, cutBytes []byte, format8 uint8) {
		format := []TCPFormat{TCPLines, TCPFrames, TCPAuto}[format8%3]
		s, err := NewTCPServer(TCPConfig{Format: format, Addr: "127.0.0.1:0", MaxConns: 1, MaxMessageSize: 1024})
		if err != nil {
			t.Fatal(err)
		}
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
		rec := newNetRecorder(t, false)
		pub, _ := rec.NewPublisher("fuzz")
		cs := &s.conns[0]
		cs.loop = &tcpLoop{pub: pub, parser: s.cfg.NewParser(rec.syms), decode: s.cfg.DecodeFrame, symbols: rec.syms}
		var cuts []int
		at := 0
		for _, c := range cutBytes {
			at += int(c)
			if at > len(in) {
				break
			}
			cuts = append(cuts, at)
		}
		for _, chunk := range tcpSplitAt(in, cuts) {
			if s.consume(cs, chunk) != 0 {
				break // closed: oversize or unaligned
			}
		}
		sn := rec.snapshot()
		if cs.taken != uint64(sn.published)+uint64(cs.c.rejects.Load()) || cs.c.messages.Load() != uint64(sn.published) {
			t.Fatalf("taken %d, published %d, rejects %d", cs.taken, sn.published, cs.c.rejects.Load())
		}
	})
}
