package sinks

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"qstream/codec"
	"qstream/ops"
)

// DeadLetterRecord is what the dead-letter writer records about a rejected
// input: why, where from, and the input itself (raw bytes for parse-time
// rejections, the decoded event for operator-time ones such as `late`).
type DeadLetterRecord struct {
	Reason codec.Reason
	Feed   string
	Pos    codec.Position
	Err    error
	Raw    []byte
	Event  *codec.Event
	Output *ops.Output // an output a sink rejected as poison
}

// DLQWriter writes dead letters as JSON Lines:
//
//	{"reason":"bad_price","feed":"replay","line":7,"offset":120,"error":"...","raw":"..."}
//
// raw is a JSON string when the input is valid UTF-8 and raw_b64 (base64)
// otherwise; operator-time rejections carry "event" with seq, symbol, ts,
// price and volume instead. It is safe for concurrent use. Errors are sticky.
type DLQWriter struct {
	mu      sync.Mutex
	w       *bufio.Writer
	buf     []byte
	symbols *codec.SymbolTable
	err     error
	n       uint64
}

// NewDLQWriter returns a writer over w.
func NewDLQWriter(w io.Writer, symbols *codec.SymbolTable) *DLQWriter {
	return &DLQWriter{w: bufio.NewWriterSize(w, 32<<10), symbols: symbols}
}

// Write records one dead letter.
func (d *DLQWriter) Write(r *DeadLetterRecord) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	b := AppendDeadLetterJSON(d.buf[:0], r, d.symbols)
	b = append(b, '\n')
	d.buf = b
	if _, err := d.w.Write(b); err != nil {
		d.err = fmt.Errorf("sinks: dlq: %w", err)
		return d.err
	}
	d.n++
	return nil
}

// AppendDeadLetterJSON appends the JSON object of r (DLQWriter's line,
// without the newline). symbols names the event's symbol; nil leaves it out.
func AppendDeadLetterJSON(b []byte, r *DeadLetterRecord, symbols *codec.SymbolTable) []byte {
	b = append(b, `{"reason":`...)
	b = AppendString(b, r.Reason.String())
	b = append(b, `,"feed":`...)
	b = AppendString(b, r.Feed)
	if r.Pos.Line > 0 {
		b = append(b, `,"line":`...)
		b = strconv.AppendInt(b, r.Pos.Line, 10)
	}
	if r.Pos.Offset >= 0 {
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, r.Pos.Offset, 10)
	}
	if r.Err != nil {
		b = append(b, `,"error":`...)
		b = AppendString(b, r.Err.Error())
	}
	if r.Raw != nil {
		if utf8.Valid(r.Raw) {
			b = append(b, `,"raw":`...)
			b = AppendString(b, string(r.Raw))
		} else {
			b = append(b, `,"raw_b64":"`...)
			b = base64.StdEncoding.AppendEncode(b, r.Raw)
			b = append(b, '"')
		}
	}
	if ev := r.Event; ev != nil {
		b = append(b, `,"event":{"seq":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
		b = append(b, `,"kind":`...)
		b = AppendString(b, ev.Kind.String())
		if symbols != nil {
			b = append(b, `,"symbol":`...)
			b = AppendString(b, symbols.Name(ev.Symbol))
		}
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, ev.TsNs, 10)
		b = append(b, `,"price":`...)
		b = AppendFloat(b, ev.Price)
		b = append(b, `,"volume":`...)
		b = AppendFloat(b, ev.Volume)
		b = append(b, '}')
	}
	if o := r.Output; o != nil {
		b = append(b, `,"output":{"kind":`...)
		b = strconv.AppendUint(b, uint64(o.Kind), 10)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, o.Seq, 10)
		b = append(b, `,"key":"`...)
		b = appendHex64(b, o.Key)
		if symbols != nil {
			b = append(b, `","symbol":`...)
			b = AppendString(b, symbols.Name(o.Symbol))
		} else {
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendHex64 appends v as 16 lower-case hex digits.
func appendHex64(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xF])
	}
	return b
}

// Count returns how many records were written.
func (d *DLQWriter) Count() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// Flush writes buffered records.
func (d *DLQWriter) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		if err := d.w.Flush(); err != nil {
			d.err = fmt.Errorf("sinks: dlq: %w", err)
		}
	}
	return d.err
}
