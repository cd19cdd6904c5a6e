package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fastjson"
)

// The processes of the end-to-end benchmark besides the system under test:
// the open-loop load generator (RunLoad, `qstream bench load`) and the
// reference program (RunReference, `qstream bench ref`), the least a program
// can do on the same path: read a line, parse it, write a line.

// maxBenchSymbols bounds LoadConfig.Symbols: names are S000..S999.
const maxBenchSymbols = 1000

// AppendTrade appends trade i of the benchmark stream as a JSON line (the
// generic tick of DESIGN.md) to dst. Its ts is dueNs, the message's intended
// send time: the engine carries it to every output of the trade, so the
// receiver measures latency from it. symbols must be in 1..1000.
func AppendTrade(dst []byte, i, dueNs int64, symbols int) []byte {
	s := i % int64(symbols)
	dst = append(dst, `{"type":"trade","symbol":"S`...)
	dst = append(dst, byte('0'+s/100), byte('0'+s/10%10), byte('0'+s%10))
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, dueNs, 10)
	dst = append(dst, `,"price":`...)
	dst = strconv.AppendFloat(dst, 100+float64(i%97)/4, 'f', -1, 64)
	dst = append(dst, `,"volume":`...)
	dst = strconv.AppendInt(dst, 1+i%10, 10)
	return append(dst, "}\n"...)
}

// LoadConfig configures RunLoad.
type LoadConfig struct {
	Addr     string // the TCP feed, host:port
	Rate     int    // messages per second
	Messages int64  // how many
	StartNs  int64  // intended send time of the first (NowNs clock)
	Pacing   Pacing
	Symbols  int // 1..1000 (S000...)
}

// LoadSummary is what the load generator reports when it is done.
type LoadSummary struct {
	Sent int64 `json:"sent"`
	// SendRate is the achieved send rate: messages per second from the
	// first message's intended time to the last write.
	SendRate float64 `json:"send_rate"`
	// Lateness is how far behind its intended time each message left
	// (the generator's own share of the latency), and LatenessHist its
	// histogram, for merging runs.
	Lateness     Percentiles            `json:"lateness"`
	LatenessHist *hdrhistogram.Snapshot `json:"lateness_hist"`
}

// RunLoad connects to cfg.Addr and sends cfg.Messages trades (AppendTrade)
// on the open-loop schedule of cfg.Rate from cfg.StartNs, then closes the
// connection.
func RunLoad(cfg LoadConfig) (LoadSummary, error) {
	if cfg.Symbols < 1 || cfg.Symbols > maxBenchSymbols {
		return LoadSummary{}, fmt.Errorf("%w: symbols %d outside 1..%d", ErrTCPLoadConfig, cfg.Symbols, maxBenchSymbols)
	}
	if cfg.Pacing == PaceNanosleep {
		LockForNanosleep()
	}
	c, err := net.DialTimeout("tcp", cfg.Addr, 10*time.Second)
	if err != nil {
		return LoadSummary{}, fmt.Errorf("bench: load: %w", err)
	}
	defer c.Close()
	sent, err := RunTCPLoad(c, TCPLoad{
		Rate: cfg.Rate, Messages: cfg.Messages, StartNs: cfg.StartNs, Pacing: cfg.Pacing,
		Append: func(dst []byte, i, dueNs int64) []byte { return AppendTrade(dst, i, dueNs, cfg.Symbols) },
	})
	if err != nil {
		return LoadSummary{}, err
	}
	sched := NewOpenLoop(cfg.Rate, cfg.StartNs)
	late := NewLatencyHistogram()
	for i, s := range sent {
		RecordLatency(late, s-sched.Due(int64(i)))
	}
	sum := LoadSummary{Sent: int64(len(sent)), Lateness: PercentilesOf(late), LatenessHist: late.Export()}
	if n := len(sent); n > 1 {
		if span := sent[n-1] - cfg.StartNs; span > 0 {
			sum.SendRate = float64(n-1) / (float64(span) / 1e9)
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	return sum, nil
}

// ReferenceReadBuffer is the reference program's read buffer, the size of
// the engine's TCP feed's (feeds.DefaultTCPReadBufferSize).
const ReferenceReadBuffer = 256 << 10

// RunReference is the reference program: it listens on addr, reports the
// bound address to ready, and for every connection reads JSON lines, parses
// each with fastjson and writes one JSON line per trade to out
// ({"seq","symbol","ts","price","volume"}), flushed whenever the connection
// has no more buffered input (as the engine flushes its output per batch).
// It returns when ctx is done.
func RunReference(ctx context.Context, addr string, out io.Writer, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bench: ref: %w", err)
	}
	ready(ln.Addr())
	go func() { <-ctx.Done(); ln.Close() }()
	var mu sync.Mutex
	w := bufio.NewWriterSize(out, 64<<10)
	var seq int64
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				mu.Lock()
				defer mu.Unlock()
				return w.Flush()
			}
			return fmt.Errorf("bench: ref: %w", err)
		}
		go func() {
			defer c.Close()
			r := bufio.NewReaderSize(c, ReferenceReadBuffer)
			var p fastjson.Parser
			skip := false // inside a line longer than the buffer: skipped
			for {
				b, err := r.ReadSlice('\n')
				if errors.Is(err, bufio.ErrBufferFull) {
					skip = true
					continue
				}
				if err != nil {
					return
				}
				if skip {
					skip = false
					continue
				}
				v, perr := p.ParseBytes(b)
				if perr == nil {
					mu.Lock()
					seq++
					buf := w.AvailableBuffer()
					buf = append(buf, `{"seq":`...)
					buf = strconv.AppendInt(buf, seq, 10)
					buf = append(buf, `,"symbol":"`...)
					buf = append(buf, v.GetStringBytes("symbol")...)
					buf = append(buf, `","ts":`...)
					buf = strconv.AppendInt(buf, v.GetInt64("ts"), 10)
					buf = append(buf, `,"price":`...)
					buf = strconv.AppendFloat(buf, v.GetFloat64("price"), 'g', -1, 64)
					buf = append(buf, `,"volume":`...)
					buf = strconv.AppendFloat(buf, v.GetFloat64("volume"), 'g', -1, 64)
					buf = append(buf, "}\n"...)
					_, werr := w.Write(buf)
					if werr == nil && r.Buffered() == 0 {
						werr = w.Flush()
					}
					mu.Unlock()
					if werr != nil {
						return
					}
				}
			}
		}()
	}
}

// tsKey is what the receiver looks for in an output line.
var tsKey = []byte(`"ts":`)

// lineTs returns the integer after the first "ts": of line.
func lineTs(line []byte) (int64, bool) {
	i := bytes.Index(line, tsKey)
	if i < 0 {
		return 0, false
	}
	var v int64
	n := 0
	for _, c := range line[i+len(tsKey):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
		n++
	}
	return v, n > 0
}
