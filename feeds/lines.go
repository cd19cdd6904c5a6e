package feeds

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"qstream/codec"
)

// DefaultMaxLine bounds a line of a line-oriented input (64 KiB).
const DefaultMaxLine = 64 << 10

// LineDecoder decodes one line into ev. Errors should be *codec.Error.
type LineDecoder func(line []byte, ev *codec.Event) error

// LineReader is a Reader over newline-delimited records: JSON Lines, CSV
// rows, recorded WebSocket messages. It skips blank lines, strips a trailing
// CR, and reports a line over the limit as ReasonOversize (skipping the rest
// of it) without buffering it whole.
type LineReader struct {
	br      *bufio.Reader
	closer  io.Closer
	decode  LineDecoder
	text    func() []byte // the text of the last decoded event (JSON Lines), or nil
	maxLine int
	line    int64
	offset  int64
	tooLong codec.Error
	raw     []byte
	rerr    RecordError
	header  func([]byte) error // consumes the first non-blank line, if set
}

// NewLineReader reads lines from r and decodes them with decode. maxLine <= 0
// means DefaultMaxLine. If r is an io.Closer, Close closes it.
func NewLineReader(r io.Reader, decode LineDecoder, maxLine int) *LineReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	lr := &LineReader{br: bufio.NewReaderSize(r, maxLine+1), decode: decode, maxLine: maxLine}
	if c, ok := r.(io.Closer); ok {
		lr.closer = c
	}
	lr.tooLong = codec.Error{Reason: codec.ReasonOversize, Detail: "line over the size limit", Offset: -1}
	return lr
}

// Line returns the number of the line read last (1-based).
func (lr *LineReader) Line() int64 { return lr.line }

// ReadLine returns the next non-blank line (without its newline), io.EOF at
// the end, or a *RecordError for an oversize line. The slice is valid until
// the next call.
func (lr *LineReader) ReadLine() ([]byte, error) {
	for {
		start := lr.offset
		b, err := lr.br.ReadSlice('\n')
		lr.offset += int64(len(b))
		if errors.Is(err, bufio.ErrBufferFull) {
			lr.line++
			// Skip the rest of the oversize line.
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = lr.br.ReadSlice('\n')
				lr.offset += int64(len(b))
			}
			if err != nil && err != io.EOF {
				return nil, fmt.Errorf("feeds: read: %w", err)
			}
			lr.rerr = RecordError{Pos: codec.Position{Line: lr.line, Offset: start}, Err: &lr.tooLong}
			return nil, &lr.rerr
		}
		if len(b) == 0 && err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("feeds: read: %w", err)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("feeds: read: %w", err)
		}
		lr.line++
		b = bytes.TrimRight(b, "\r\n")
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		lr.raw = b
		return b, nil
	}
}

// Next implements Reader.
func (lr *LineReader) Next(ev *codec.Event) error {
	b, err := lr.ReadLine()
	if err != nil {
		return err
	}
	if h := lr.header; h != nil {
		lr.header = nil
		if err := h(b); err != nil {
			return fmt.Errorf("feeds: header on line %d: %w", lr.line, err)
		}
		if b, err = lr.ReadLine(); err != nil {
			return err
		}
	}
	start := lr.offset - int64(len(b))
	ev.Reset()
	if err := lr.decode(b, ev); err != nil {
		lr.rerr = RecordError{Pos: codec.Position{Line: lr.line, Offset: start}, Raw: b, Err: err}
		return &lr.rerr
	}
	return nil
}

// Close closes the underlying reader if it is closable.
func (lr *LineReader) Close() error {
	if lr.closer != nil {
		return lr.closer.Close()
	}
	return nil
}

// NewJSONLReader reads JSON Lines (either JSON shape of the contract, and news).
func NewJSONLReader(r io.Reader, opts codec.ParserOptions) *LineReader {
	p := codec.NewParser(opts)
	lr := NewLineReader(r, p.ParseJSON, opts.MaxMessageSize)
	lr.text = p.Text
	return lr
}

// Text returns the text of the event the last Next decoded (news articles,
// signal, system and custom events of JSON Lines; see codec.Parser.Text),
// valid until the next call to Next; nil when it has none.
func (lr *LineReader) Text() []byte {
	if lr.text == nil {
		return nil
	}
	return lr.text()
}

// NewCSVReader reads CSV ticks: a header row, then ts,symbol,price,volume[,bid,ask].
// A header that cannot be used is an error of the whole input, not a record.
func NewCSVReader(r io.Reader, opts codec.ParserOptions) *LineReader {
	p := codec.NewCSVParser(opts)
	lr := NewLineReader(r, p.ParseRow, opts.MaxMessageSize)
	lr.header = p.ParseHeader
	return lr
}
