package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/valyala/fastjson"
)

// RefVWAP is the single-loop reference of the throughput benchmark
// (`qstream bench ref-vwap`): one goroutine reads JSON trades with bufio,
// parses each with fastjson and keeps a tumbling VWAP window per symbol in
// a map, writing a line per closed window in the shape of `qstream replay
// --emit windows` ({"window","symbol","start","end","count","value",
// "timing"}). A symbol's window closes when one of its trades falls in a
// later window (the watermark, the largest event time seen, has then
// passed its end) and at the end of the input, which gives the engine's set
// of windows for input in event-time order; the order of the lines may
// differ. It returns the trades read and the windows written.
func RefVWAP(in io.Reader, out io.Writer, windowNs int64, spec string) (trades, windows int64, err error) {
	if windowNs <= 0 {
		return 0, 0, errors.New("bench: ref-vwap: window must be positive")
	}
	type window struct {
		start   int64
		pv, vol float64
		n       int64
		open    bool
		sym     string
	}
	r := bufio.NewReaderSize(in, 1<<20)
	w := bufio.NewWriterSize(out, 1<<20)
	var p fastjson.Parser
	bySym := map[string]*window{}
	var buf []byte
	emit := func(s *window) error {
		buf = append(buf[:0], `{"window":"`...)
		buf = append(buf, spec...)
		buf = append(buf, `","symbol":"`...)
		buf = append(buf, s.sym...)
		buf = append(buf, `","start":`...)
		buf = strconv.AppendInt(buf, s.start, 10)
		buf = append(buf, `,"end":`...)
		buf = strconv.AppendInt(buf, s.start+windowNs, 10)
		buf = append(buf, `,"count":`...)
		buf = strconv.AppendInt(buf, s.n, 10)
		buf = append(buf, `,"value":`...)
		if s.vol > 0 {
			buf = strconv.AppendFloat(buf, s.pv/s.vol, 'g', -1, 64)
		} else {
			buf = append(buf, "null"...)
		}
		buf = append(buf, `,"timing":"on_time"}`+"\n"...)
		windows++
		_, err := w.Write(buf)
		return err
	}
	for {
		line, rerr := r.ReadSlice('\n')
		if len(line) > 0 && !errors.Is(rerr, bufio.ErrBufferFull) {
			v, perr := p.ParseBytes(line)
			if perr == nil && string(v.GetStringBytes("type")) == "trade" {
				sym := v.GetStringBytes("symbol")
				ts := v.GetInt64("ts")
				price, vol := v.GetFloat64("price"), v.GetFloat64("volume")
				s := bySym[string(sym)] // no allocation for the lookup
				if s == nil {
					s = &window{sym: string(sym)}
					bySym[s.sym] = s
				}
				start := ts - ((ts%windowNs)+windowNs)%windowNs
				if s.open && start != s.start {
					if err := emit(s); err != nil {
						return trades, windows, err
					}
					s.open = false
				}
				if !s.open {
					s.start, s.pv, s.vol, s.n, s.open = start, 0, 0, 0, true
				}
				s.pv += price * vol
				s.vol += vol
				s.n++
				trades++
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return trades, windows, fmt.Errorf("bench: ref-vwap: %w", rerr)
		}
	}
	open := make([]*window, 0, len(bySym))
	for _, s := range bySym {
		if s.open {
			open = append(open, s)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].sym < open[j].sym })
	for _, s := range open {
		if err := emit(s); err != nil {
			return trades, windows, err
		}
	}
	return trades, windows, w.Flush()
}
