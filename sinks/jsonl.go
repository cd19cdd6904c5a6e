// Package sinks is qstream's output side. The engine hands its outputs to one
// handler, a Set: the primary output (the --output file, FileOutput, under a
// Guard's retries and breaker) and the asynchronous sinks (Sink: a bounded
// queue with a spill, batching, retries, a breaker, checkpoint marks), each
// writing through a Writer: Redis (the feature cache), ClickHouse, NATS,
// WebSocket clients. The archive records raw input events; DeadLetters fans
// rejected inputs out to stderr, the DLQ segments or file and NATS. Every
// writer encodes outputs with the JSON Lines encoder of this file, so a
// sink's payload is the --output line.
package sinks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"qstream/codec"
	"qstream/internal/jsontext"
	"qstream/ops"
)

// WindowMeta describes one window operator for the encoder.
type WindowMeta struct {
	Name   string // the spec as the user wrote it: the "window" value
	Object bool   // the value is an OHLCV object rather than a number
}

// PatternMeta describes one pattern for the encoder of its matches.
type PatternMeta struct {
	ID      string   // the "pattern" value
	Type    string   // the "type" value: price_breakout, volume_spike, technical_signal
	Signal  string   // technical_signal only: written first in the details as "signal"
	Details []string // keys of Output.Values[0:NValues]; a "direction" value of +1/−1 is written "up"/"down"
	Times   []bool   // per detail: an event time carried as int64 bits (ops.PatternSpec.DetailIsTime), written as an integer
}

// PatternMetas returns the encoder's description of pipeline patterns,
// indexed as their Op.
func PatternMetas(specs []ops.PatternSpec) []PatternMeta {
	metas := make([]PatternMeta, len(specs))
	for i, s := range specs {
		metas[i] = PatternMeta{ID: s.ID, Type: s.Type.String(), Details: s.DetailNames(), Times: s.DetailIsTime()}
		if s.Type == ops.PatTechnical {
			metas[i].Signal = s.Signal.String()
		}
	}
	return metas
}

// JSONLConfig tells the encoder how to name what it writes.
type JSONLConfig struct {
	Symbols    *codec.SymbolTable
	Indicators []string      // JSON keys of the indicator values, in order (sma_5, vwap, ...)
	Windows    []WindowMeta  // indexed by Output.Op of window outputs
	Patterns   []PatternMeta // indexed by Output.Op of pattern matches
	// Kinds selects which outputs are written; others are skipped.
	Kinds map[ops.OutKind]bool
}

// JSONLWriter encodes outputs as JSON Lines, one object per output, without
// allocating per output. Errors are sticky, as with bufio.Writer.
type JSONLWriter struct {
	cfg   JSONLConfig
	w     *bufio.Writer
	buf   []byte
	names []string // symbol names by id, refreshed from the table on a miss
	keys  [][]byte // `,"sma_5":` prefixes
	pats  []jsonlPattern
	err   error
	lines uint64
}

// NewJSONLWriter returns a writer over w with a 64 KiB buffer.
func NewJSONLWriter(w io.Writer, cfg JSONLConfig) *JSONLWriter {
	j := &JSONLWriter{cfg: cfg, w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 4096)}
	for _, k := range cfg.Indicators {
		j.keys = append(j.keys, append(AppendString([]byte{','}, k), ':'))
	}
	for _, m := range cfg.Patterns {
		p := jsonlPattern{head: append(AppendString(append(AppendString([]byte(`{"pattern":`), m.ID), `,"type":`...), m.Type), `,"symbol":`...)}
		sep := byte('{')
		if m.Signal != "" {
			p.signal = append(AppendString([]byte(`{"signal":`), m.Signal), ',')
			sep = 0
		}
		for i, d := range m.Details {
			k := AppendString(nil, d)
			if sep != 0 && i == 0 {
				k = append([]byte{sep}, k...)
			} else if i > 0 {
				k = append([]byte{','}, k...)
			}
			p.keys = append(p.keys, append(k, ':'))
			p.dir = append(p.dir, d == "direction")
			p.time = append(p.time, i < len(m.Times) && m.Times[i])
		}
		j.pats = append(j.pats, p)
	}
	return j
}

// jsonlPattern holds the precomputed parts of one pattern's match lines.
type jsonlPattern struct {
	head   []byte   // {"pattern":"id","type":"t","symbol":
	signal []byte   // {"signal":"sma_cross", or nil
	keys   [][]byte // {"current_price": then ,"historical_high": ...
	dir    []bool   // the detail is a direction
	time   []bool   // the detail is an event time (int64 bits)
}

// Lines returns how many lines were written.
func (j *JSONLWriter) Lines() uint64 { return j.lines }

// HandleOutputs implements engine.OutputHandler.
func (j *JSONLWriter) HandleOutputs(outs []ops.Output) error {
	if j.err != nil {
		return j.err
	}
	for i := 0; i < len(outs); i += ops.GroupLen(&outs[i]) {
		o := &outs[i]
		if j.cfg.Kinds != nil && !j.cfg.Kinds[o.Kind] {
			continue
		}
		j.buf = j.AppendGroup(j.buf[:0], outs[i:])
		j.buf = append(j.buf, '\n')
		if _, err := j.w.Write(j.buf); err != nil {
			j.err = fmt.Errorf("sinks: jsonl: %w", err)
			return j.err
		}
		j.lines++
	}
	return nil
}

// Flush writes buffered lines to the underlying writer.
func (j *JSONLWriter) Flush() error {
	if j.err != nil {
		return j.err
	}
	if err := j.w.Flush(); err != nil {
		j.err = fmt.Errorf("sinks: jsonl: %w", err)
	}
	return j.err
}

func (j *JSONLWriter) symbol(id codec.Symbol) string {
	if int(id) >= len(j.names) && j.cfg.Symbols != nil {
		j.names = j.cfg.Symbols.Names()
	}
	if int(id) < len(j.names) {
		return j.names[id]
	}
	return ""
}

// appendTradeFields appends the fields of an indicator output shared by the
// --output line and the Redis feature object:
// "symbol":S,"ts":T,"price":P,"volume":V followed by the indicators, keys
// holding their `,"name":` prefixes.
func appendTradeFields(dst []byte, name string, o *ops.Output, keys [][]byte) []byte {
	dst = append(dst, `"symbol":`...)
	dst = AppendString(dst, name)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, o.TsNs, 10)
	dst = append(dst, `,"price":`...)
	dst = AppendFloat(dst, o.Price)
	dst = append(dst, `,"volume":`...)
	dst = AppendFloat(dst, o.Volume)
	for i := 0; i < int(o.NValues) && i < len(keys); i++ {
		dst = append(dst, keys[i]...)
		dst = AppendFloat(dst, o.Values[i])
	}
	return dst
}

// AppendGroup appends the JSON object of outs[0] (without a newline). An
// output with text (news, signal, system and custom events) is a group:
// its line is the text its OutText outputs carry, which follow it in outs
// (see ops.GroupLen). Callers step over a group with ops.GroupLen.
func (j *JSONLWriter) AppendGroup(dst []byte, outs []ops.Output) []byte {
	switch outs[0].Kind {
	case ops.OutNews, ops.OutEvent:
		if n := len(dst); ops.GroupLen(&outs[0]) <= len(outs) {
			if dst = ops.AppendGroupText(dst, outs); len(dst) > n {
				return dst
			}
		}
	}
	return j.AppendOutput(dst, &outs[0])
}

// AppendOutput appends the JSON object of o (without a newline); for an
// output with text, whose line is in the outputs after it, use AppendGroup.
func (j *JSONLWriter) AppendOutput(dst []byte, o *ops.Output) []byte {
	switch o.Kind {
	case ops.OutIndicators:
		dst = append(dst, `{"seq":`...)
		dst = strconv.AppendUint(dst, o.Seq, 10)
		dst = append(dst, ',')
		dst = appendTradeFields(dst, j.symbol(o.Symbol), o, j.keys)
		return append(dst, '}')
	case ops.OutWindow:
		var meta WindowMeta
		if int(o.Op) < len(j.cfg.Windows) {
			meta = j.cfg.Windows[o.Op]
		}
		dst = append(dst, `{"window":`...)
		dst = AppendString(dst, meta.Name)
		dst = append(dst, `,"symbol":`...)
		dst = AppendString(dst, j.symbol(o.Symbol))
		dst = append(dst, `,"start":`...)
		dst = strconv.AppendInt(dst, o.StartNs, 10)
		dst = append(dst, `,"end":`...)
		dst = strconv.AppendInt(dst, o.EndNs, 10)
		dst = append(dst, `,"count":`...)
		dst = strconv.AppendInt(dst, o.Count, 10)
		dst = append(dst, `,"value":`...)
		if meta.Object && o.NValues >= 5 {
			dst = appendOHLCV(dst, &o.Values)
		} else {
			dst = AppendFloat(dst, o.Value)
		}
		dst = append(dst, `,"timing":"`...)
		dst = append(dst, o.Timing.String()...)
		return append(dst, `"}`...)
	case ops.OutMovement:
		return j.appendMovement(dst, o)
	}
	if o.Kind == ops.OutPattern && int(o.Op) < len(j.pats) {
		return j.appendPattern(dst, o, &j.pats[o.Op])
	}
	dst = append(dst, `{"kind":`...)
	dst = strconv.AppendUint(dst, uint64(o.Kind), 10)
	dst = append(dst, `,"symbol":`...)
	dst = AppendString(dst, j.symbol(o.Symbol))
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, o.Seq, 10)
	return append(dst, '}')
}

// appendPattern writes a match line (DESIGN.md "Patterns"):
// {"pattern":"id","type":"price_breakout","symbol":"X","ts":NS,"confidence":c,"details":{...}}.
func (j *JSONLWriter) appendPattern(dst []byte, o *ops.Output, p *jsonlPattern) []byte {
	dst = append(dst, p.head...)
	dst = AppendString(dst, j.symbol(o.Symbol))
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, o.TsNs, 10)
	dst = append(dst, `,"confidence":`...)
	dst = AppendFloat(dst, o.Value)
	dst = append(dst, `,"details":`...)
	n := min(int(o.NValues), len(p.keys))
	if n == 0 {
		if p.signal != nil {
			return append(append(dst, p.signal[:len(p.signal)-1]...), "}}"...)
		}
		return append(dst, "{}}"...)
	}
	dst = append(dst, p.signal...)
	for i := 0; i < n; i++ {
		dst = append(dst, p.keys[i]...)
		switch {
		case p.time[i]:
			dst = strconv.AppendInt(dst, ops.SeqDetailTime(o.Values[i]), 10)
		case !p.dir[i]:
			dst = AppendFloat(dst, o.Values[i])
		case o.Values[i] >= 0:
			dst = append(dst, `"up"`...)
		default:
			dst = append(dst, `"down"`...)
		}
	}
	return append(dst, "}}"...)
}

func appendOHLCV(dst []byte, v *[ops.MaxValues]float64) []byte {
	if math.IsNaN(v[0]) {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"open":`...)
	dst = AppendFloat(dst, v[0])
	dst = append(dst, `,"high":`...)
	dst = AppendFloat(dst, v[1])
	dst = append(dst, `,"low":`...)
	dst = AppendFloat(dst, v[2])
	dst = append(dst, `,"close":`...)
	dst = AppendFloat(dst, v[3])
	dst = append(dst, `,"volume":`...)
	dst = AppendFloat(dst, v[4])
	return append(dst, '}')
}

// AppendFloat appends f as encoding/json writes a float64 (shortest
// round-trip form, exponent only outside [1e-6, 1e21)), and null for NaN or
// ±Inf, which JSON cannot represent (internal/jsontext, which every output
// line is written with).
func AppendFloat(dst []byte, f float64) []byte { return jsontext.AppendFloat(dst, f) }

// AppendString appends s as a JSON string that is always valid UTF-8 JSON,
// whatever s holds: quotes and backslashes are escaped, control characters
// (C0 and DEL) are written as \u00XX, and every byte that is not part of a
// valid UTF-8 sequence becomes \ufffd (the replacement character, as
// encoding/json does). Parsers reject such names at the door (see
// codec.ValidSymbolName), so this is the guard for text that got in another
// way: an old WAL or checkpoint, a flag, an error message. It does not
// allocate beyond growing dst.
func AppendString(dst []byte, s string) []byte { return jsontext.AppendString(dst, s) }

// ErrClosed is returned by writers used after Close.
var ErrClosed = errors.New("sinks: closed")
