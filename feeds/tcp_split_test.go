package feeds

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// tcpSplitMsg is one message seen by a splitter walk.
type tcpSplitMsg struct {
	msg string
	pos Position
}

// tcpSplitOracle splits the whole input at once, the simple way.
func tcpSplitOracle(format TCPFormat, max int, in []byte) (msgs []tcpSplitMsg, oversize bool) {
	off := 0
	var n int64
	for off < len(in) {
		rest := in[off:]
		switch format {
		case TCPLines:
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				return msgs, len(rest) > max
			}
			if i > max {
				return msgs, true
			}
			n++
			msgs = append(msgs, tcpSplitMsg{string(bytes.TrimSuffix(rest[:i], []byte("\r"))), Position{Line: n, Offset: int64(off)}})
			off += i + 1
		case TCPFrames:
			if len(rest) < 4 {
				return msgs, false
			}
			l := int(binary.LittleEndian.Uint32(rest))
			if uint64(uint32(l)) > uint64(max) {
				return msgs, true
			}
			if len(rest) < 4+l {
				return msgs, false
			}
			n++
			msgs = append(msgs, tcpSplitMsg{string(rest[4 : 4+l]), Position{Offset: int64(off)}})
			off += 4 + l
		}
	}
	return msgs, false
}

// tcpSplitChunks feeds in to a splitter in the given chunks.
func tcpSplitChunks(format TCPFormat, max int, chunks [][]byte) (msgs []tcpSplitMsg, oversize bool) {
	s := newTCPSplitter(format, max)
	for _, c := range chunks {
		s.Begin(c)
		for {
			m, ok, err := s.Next()
			if err != nil {
				if err != errTCPOversize {
					panic(err)
				}
				return msgs, true
			}
			if !ok {
				break
			}
			msgs = append(msgs, tcpSplitMsg{string(m), s.Pos()})
		}
	}
	return msgs, false
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
		t.Fatalf("%v max %d, %d chunks: got %d msgs oversize=%v, want %d msgs oversize=%v",
			format, max, len(chunks), len(got), gotOver, len(want), wantOver)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v max %d, %d chunks: msg %d = %+v, want %+v", format, max, len(chunks), i, got[i], want[i])
		}
	}
}

func tcpTestFrames(payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b = AppendTCPFrame(b, []byte(p))
	}
	return b
}

func TestTCPSplitterTable(t *testing.T) {
	tests := []struct {
		name     string
		format   TCPFormat
		max      int
		in       []byte
		want     []string
		oversize bool
	}{
		{"lines", TCPLines, 64, []byte("a\nbb\r\n\nccc\n"), []string{"a", "bb", "", "ccc"}, false},
		{"lines tail kept", TCPLines, 64, []byte("a\nbb"), []string{"a"}, false},
		{"line at limit", TCPLines, 3, []byte("abc\nd\n"), []string{"abc", "d"}, false},
		{"line over limit", TCPLines, 3, []byte("ab\nabcd\nx\n"), []string{"ab"}, true},
		{"tail over limit", TCPLines, 3, []byte("ab\nabcd"), []string{"ab"}, true},
		{"frames", TCPFrames, 64, tcpTestFrames("x", "hello", ""), []string{"x", "hello", ""}, false},
		{"frame tail kept", TCPFrames, 64, tcpTestFrames("x", "hello")[:9], []string{"x"}, false},
		{"frame at limit", TCPFrames, 5, tcpTestFrames("hello", "a"), []string{"hello", "a"}, false},
		{"frame over limit", TCPFrames, 4, tcpTestFrames("a", "hello", "b"), []string{"a"}, true},
		{"huge length", TCPFrames, 1 << 20, []byte{0xff, 0xff, 0xff, 0xff, 1}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, over := tcpSplitChunks(tc.format, tc.max, [][]byte{tc.in})
			var msgs []string
			for _, m := range got {
				msgs = append(msgs, m.msg)
			}
			if fmt.Sprint(msgs) != fmt.Sprint(tc.want) || over != tc.oversize {
				t.Fatalf("got %q oversize=%v, want %q oversize=%v", msgs, over, tc.want, tc.oversize)
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
		format := TCPLines
		if trial%2 == 1 {
			format = TCPFrames
		}
		max := 1 + rnd.IntN(40)
		var in []byte
		for m := rnd.IntN(20); m > 0; m-- {
			p := make([]byte, rnd.IntN(max+3))
			for i := range p {
				p[i] = byte('a' + rnd.IntN(26))
				if format == TCPFrames && rnd.IntN(8) == 0 {
					p[i] = '\n'
				}
			}
			if format == TCPLines {
				if rnd.IntN(4) == 0 {
					p = append(p, '\r')
				}
				in = append(append(in, p...), '\n')
			} else {
				in = AppendTCPFrame(in, p)
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
				in = AppendTCPFrame(in, []byte(p))
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
	f.Add([]byte("{\"type\":\"trade\",\"symbol\":\"AAPL\",\"ts\":1,\"price\":1,\"volume\":1}\n{\"x\":1}\r\n"), []byte{3, 17, 1}, uint16(128), false)
	f.Add(tcpTestFrames("frame one", "", "frame three"), []byte{1, 1, 1, 2, 9}, uint16(64), true)
	f.Add(tcpTestFrames("abc", "defgh"), []byte{4}, uint16(4), true)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0}, []byte{2}, uint16(1000), true)
	f.Add([]byte("no newline at all, just a long tail"), []byte{5, 5}, uint16(8), false)
	f.Fuzz(func(t *testing.T, in []byte, cutBytes []byte, max16 uint16, frames bool) {
		format := TCPLines
		if frames {
			format = TCPFrames
		}
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
