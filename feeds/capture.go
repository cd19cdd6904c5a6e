package feeds

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"qstream/codec"
)

// CaptureMaxLine is the default bound of a capture line: the largest
// exchange message plus room for a cryptofeed prefix.
const CaptureMaxLine = codec.MaxExchangeMessageLen + 1024

// ErrCaptureExchange is returned by OpenCapture and NewCaptureReader for an
// exchange name no adapter exists for.
var ErrCaptureExchange = errors.New("feeds: capture: unknown exchange (want coinbase, binance, kraken or auto)")

// CaptureOptions configures a CaptureReader.
type CaptureOptions struct {
	// Exchange selects the adapter: codec.ExchangeCoinbase, ExchangeBinance or
	// ExchangeKraken. "" or "auto" detects it from the capture's first URL
	// line (cryptofeed) or, failing that, from the first message that
	// codec.DetectExchange recognises; lines before that are record errors.
	Exchange string
	// Adapter, if set, is used instead (an adapter built with non-default
	// options); Exchange is then ignored.
	Adapter codec.Adapter
	Source  uint16             // stamped into Event.Source
	Symbols *codec.SymbolTable // nil: a private table
	MaxLine int                // bound of one line; 0: CaptureMaxLine
}

// CaptureStats counts what a CaptureReader has read.
type CaptureStats struct {
	Exchange string // the adapter in use ("" until detected)
	Lines    int64  // lines read, blank ones included
	Connects uint64 // cryptofeed "<url> <-> <ts>" lines
	Sent     uint64 // cryptofeed "<url> <- <ts>: <json>" lines (our own requests: not decoded)
	Messages uint64 // exchange messages handed to the adapter
	Events   uint64 // events returned
	Trades   uint64
	Quotes   uint64
	Bars     uint64
	Skipped  uint64 // messages the adapter deliberately ignored (heartbeats, book updates, ...)
	Errors   uint64 // record errors returned
	// ByType counts messages by the adapter's message type ("match",
	// "ticker", "l2update", "trade", "heartbeat", ...), whatever their
	// outcome; "" counts messages whose type could not be read.
	ByType map[string]uint64
	// Adapter is the adapter's own counters (trade-id gaps, duplicates).
	Adapter codec.AdapterStats
}

// CaptureReader is a Reader over recorded exchange WebSocket messages, for
// `qstream replay --format coinbase|binance|kraken`. Each line is either a
// raw message (a JSON object or array) or a line of cryptofeed's recording
// format:
//
//	<url> <-> <ts>             connected            (counted)
//	<url> <- <ts>: <json>      a message we sent    (counted, not decoded)
//	<ts>: <json>               a message received   (decoded)
//
// Messages go through the exchange's codec.Adapter; a message that yields
// several events (a Kraken trade array) is returned one event per Next.
// Events carry codec.FlagReplay. A bad line is a *RecordError with its line
// number; blank lines are passed over. No allocation per line after warm-up.
// Single-goroutine.
type CaptureReader struct {
	lr      *LineReader
	closer  io.Closer
	gz      *gzip.Reader
	adapter codec.Adapter
	syms    *codec.SymbolCache
	source  uint16
	pending []codec.Event
	next    int
	stats   CaptureStats
	lineErr codec.Error
	rerr    RecordError
	raw     []byte
}

// OpenCapture opens a recording (plain or gzip-compressed) for replay.
func OpenCapture(path string, opts CaptureOptions) (*CaptureReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("feeds: capture: %w", err)
	}
	r, err := NewCaptureReader(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewCaptureReader reads a recording from in (gzip is detected by its magic
// number). Close does not close in.
func NewCaptureReader(in io.Reader, opts CaptureOptions) (*CaptureReader, error) {
	syms := opts.Symbols
	if syms == nil {
		syms = codec.NewSymbolTable(0)
	}
	r := &CaptureReader{
		syms:    codec.NewSymbolCache(syms),
		source:  opts.Source,
		pending: make([]codec.Event, 0, codec.MaxEventsPerMessage),
	}
	r.stats.ByType = make(map[string]uint64, 16)
	switch {
	case opts.Adapter != nil:
		r.adapter = opts.Adapter
	case opts.Exchange == "" || opts.Exchange == "auto":
	default:
		a, err := codec.NewAdapter(opts.Exchange, r.syms, opts.Source)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", ErrCaptureExchange, opts.Exchange)
		}
		r.adapter = a
	}
	if r.adapter != nil {
		r.stats.Exchange = r.adapter.Name()
	}
	maxLine := opts.MaxLine
	if maxLine <= 0 {
		maxLine = CaptureMaxLine
	}
	br := bufio.NewReader(in)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("feeds: capture: gzip: %w", err)
		}
		r.gz = gz
		r.lr = NewLineReader(gz, nil, maxLine)
	} else {
		// Hide br's type: NewLineReader would reuse a bufio.Reader whose
		// buffer is already large enough, and its size is the line limit.
		r.lr = NewLineReader(struct{ io.Reader }{br}, nil, maxLine)
	}
	r.lineErr = codec.Error{Reason: codec.ReasonMalformed, Offset: -1,
		Detail: "capture: not a JSON message, a cryptofeed record or a connection line"}
	return r, nil
}

// Next implements Reader.
func (r *CaptureReader) Next(ev *codec.Event) error {
	for {
		if r.next < len(r.pending) {
			*ev = r.pending[r.next]
			r.next++
			r.stats.Events++
			return nil
		}
		r.pending, r.next = r.pending[:0], 0
		line, err := r.lr.ReadLine()
		r.stats.Lines = r.lr.Line()
		if err != nil {
			if err == io.EOF {
				return err
			}
			if _, ok := err.(*RecordError); ok { // an oversize line
				r.stats.Errors++
			}
			return err
		}
		r.raw = line
		msg, ok := r.split(line)
		if !ok {
			r.stats.Errors++
			return r.recordError(&r.lineErr)
		}
		if msg == nil {
			continue // a connection or sent line
		}
		if r.adapter == nil && !r.detect(codec.DetectExchange(msg)) {
			r.stats.Errors++
			return r.recordError(errCaptureUndetected)
		}
		r.stats.Messages++
		out, err := r.adapter.Decode(msg, r.pending[:0])
		r.stats.ByType[r.adapter.LastType()]++
		if err != nil {
			r.stats.Errors++
			return r.recordError(err)
		}
		if len(out) == 0 {
			r.stats.Skipped++
			continue
		}
		for i := range out {
			out[i].Flags |= codec.FlagReplay
			switch out[i].Kind {
			case codec.KindTrade:
				r.stats.Trades++
			case codec.KindQuote:
				r.stats.Quotes++
			case codec.KindBar:
				r.stats.Bars++
			}
		}
		r.pending = out
	}
}

var errCaptureUndetected = &codec.Error{Reason: codec.ReasonUnknownKind, Offset: -1,
	Detail: "capture: cannot tell the exchange from this message; set the format"}

func (r *CaptureReader) recordError(err error) error {
	r.rerr = RecordError{Pos: codec.Position{Line: r.lr.Line(), Offset: -1}, Raw: r.raw, Err: err}
	return &r.rerr
}

// split classifies a line. It returns the message to decode, nil for a line
// that only counts (connected, sent), and ok=false for an unrecognised line.
func (r *CaptureReader) split(line []byte) (msg []byte, ok bool) {
	switch c := line[0]; {
	case c == '{' || c == '[':
		return line, true
	case c >= '0' && c <= '9':
		// "<ts>: <json>", ts being seconds with a fraction.
		i := 0
		for i < len(line) && (line[i] >= '0' && line[i] <= '9' || line[i] == '.') {
			i++
		}
		if i+2 < len(line) && line[i] == ':' && line[i+1] == ' ' {
			return line[i+2:], true
		}
		return nil, false
	}
	if i := bytes.Index(line, []byte(" <-> ")); i > 0 {
		r.stats.Connects++
		r.detectURL(line[:i])
		return nil, true
	}
	if i := bytes.Index(line, []byte(" <- ")); i > 0 {
		r.stats.Sent++
		r.detectURL(line[:i])
		return nil, true
	}
	return nil, false
}

// detectURL picks the adapter from a recording's endpoint, if not chosen.
func (r *CaptureReader) detectURL(url []byte) {
	if r.adapter != nil {
		return
	}
	for _, name := range [...]string{codec.ExchangeCoinbase, codec.ExchangeBinance, codec.ExchangeKraken} {
		if bytes.Contains(url, []byte(name)) {
			r.detect(name)
			return
		}
	}
}

func (r *CaptureReader) detect(name string) bool {
	if name == "" {
		return false
	}
	a, err := codec.NewAdapter(name, r.syms, r.source)
	if err != nil {
		return false
	}
	r.adapter = a
	r.stats.Exchange = name
	return true
}

// Exchange returns the name of the adapter in use ("" until detected).
func (r *CaptureReader) Exchange() string { return r.stats.Exchange }

// Line returns the number of the line of the last event or error.
func (r *CaptureReader) Line() int64 { return r.lr.Line() }

// Stats returns a copy of the counters.
func (r *CaptureReader) Stats() CaptureStats {
	st := r.stats
	st.ByType = make(map[string]uint64, len(r.stats.ByType))
	for k, v := range r.stats.ByType {
		st.ByType[k] = v
	}
	if r.adapter != nil {
		st.Adapter = r.adapter.Stats()
	}
	return st
}

// Close releases the input (and closes the file OpenCapture opened).
func (r *CaptureReader) Close() error {
	var err error
	if r.gz != nil {
		err = r.gz.Close()
	}
	if r.closer != nil {
		if cerr := r.closer.Close(); err == nil {
			err = cerr
		}
		r.closer = nil
	}
	return err
}
