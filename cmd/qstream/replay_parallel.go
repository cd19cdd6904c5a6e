package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"qstream/codec"
	"qstream/feeds"
)

// Parallel parsing of JSON Lines for `qstream replay --parse-threads N`.
//
// Parsing is most of replay's work (the shards' operators are a fraction of
// it), so one reader goroutine cannot keep them busy. Here the input is cut
// into chunks of whole lines, parsed by N goroutines, and handed to the
// publishing goroutine (pump) in input order through parallelJSONL.Next, a
// feeds.Reader like the sequential LineReader. The output is byte-identical
// to the sequential path: the same events with the same Seq, the same
// rejections with the same reasons, line numbers and offsets, in the same
// order.
//
//	read goroutine ──chunk──▶ work ──▶ N-1 parse goroutines (mark chunk ready)
//	      └────────chunk (in input order)──▶ order ──▶ Next (the pump goroutine)
//
// The publishing goroutine is the N-th parser. A chunk is parsed by whoever
// claims it first (parseChunk.claimed): Next parses the chunk it needs
// itself when no parse goroutine has started on it, and while the one it
// needs is being parsed elsewhere it parses the next unclaimed chunk ahead
// instead of waiting. On a machine with as many cores as busy goroutines,
// a publisher that only published would sit in the run queue behind the
// parse goroutines whenever a chunk became ready (the scheduler does not
// favour it), and every shard would wait on it; parsing on the goroutine
// that needs the result keeps the critical path running, and the parse
// goroutines fill the idle time of the cores (of the shards, which park).
//
// # Symbols
//
// Symbol ids decide shard routing, so they must be assigned in input order,
// as the sequential parser assigns them. The parse goroutines use lookup-only
// parsers (codec.ParserOptions.LookupOnly): they take the id of a name the
// table already holds and never add one. A line naming a symbol the table
// does not hold yet is handed on unparsed and parsed again by Next, on the
// publishing goroutine, with an interning parser, in input order. Every name
// is therefore interned by one goroutine at the first line that names it, so
// ids are the sequential ones on every run, whatever the goroutines'
// timing, and a table that is full or frozen rejects exactly the lines it
// rejects sequentially. Re-parsing costs a line per new symbol and chunk
// parsed before the publisher reached it: the first chunks of an input with
// many symbols, bounded by the number of chunks in flight.
//
// # Bounds
//
// A chunk of a read input holds max(parallelChunkBytes, twice the line limit)
// bytes; a chunk of a mapped input is the lines that end within
// parallelChunkBytes of its start (or one longer line, rejected as over the
// limit). At most parallelInFlight(threads) chunks exist: the read goroutine
// waits for a free one, so memory is bounded (see maxParseThreads) and a
// slow publisher slows the reading.

// parallelChunkBytes is the input size of one chunk: large enough that the
// hand-offs (a few channel operations per chunk) cost nothing per line, small
// enough that a chunk's lines and parsed events (about twice its size) stay
// in the cache between the core that parses them and the one that
// publishes them. A read (not mapped) input needs chunks of at least twice
// the line limit, 128 KiB by default.
const parallelChunkBytes = 64 << 10

// parallelInFlight is the number of chunks a replay with threads parse
// goroutines holds: one being read, one being published, and two per parse
// goroutine, so no goroutine waits on another's hand-off in steady state.
func parallelInFlight(threads int) int { return 2*threads + 2 }

// bufioWrapSize is the size of the bufio.Reader openReader puts over the
// input; the line limit of the sequential path depends on it (see
// lineLimit).
const bufioWrapSize = 64 << 10

// lineLimit is the longest line (without its '\n') that the sequential path's
// LineReader reads whole; longer ones are ReasonOversize records without raw
// bytes. The LineReader asks bufio for maxLine+1 bytes of buffer, and bufio
// hands back openReader's own reader when that one is at least as large, so
// the limit is the larger of the two, less the newline. Lines between maxLine
// and this limit reach the parser, which rejects them as oversize with their
// bytes; the parallel path does the same.
func lineLimit(maxLine int) int {
	if maxLine <= 0 {
		maxLine = feeds.DefaultMaxLine
	}
	return max(maxLine+1, bufioWrapSize) - 1
}

// recKind says what a parsed line became.
type recKind uint8

const (
	recEvent    recKind = iota // rec.ev is the event; text in chunk.text
	recReject                  // the line is rejected with rec.err
	recReparse                 // the line names a symbol not interned yet: Next parses it
	recOversize                // the line is over lineLimit: rejected without its bytes
)

// parsedLine is one non-blank line of a chunk after parsing. It is kept
// small (the publishing goroutine reads each one from another core's cache):
// rejections keep their error in chunk.errs.
type parsedLine struct {
	ev     codec.Event
	offset int64 // within the input (what LineReader reports)
	line   int32 // within the chunk, 1-based
	// from, to: the event's text in chunk.text (recEvent), or the line in
	// chunk.buf (recReject, recReparse)
	from, to int32
	err      int32 // recReject: the error is chunk.errs[err]
	kind     recKind
}

// parseChunk is a run of whole lines of the input and, once parsed, what
// they became.
type parseChunk struct {
	buf      []byte // whole lines; the last one may lack its '\n' (end of input)
	offset   int64  // of buf[0] in the input
	oversize bool   // buf is empty: the chunk is one line over the limit, at offset
	readErr  error  // the input could not be read further after this chunk
	eof      bool   // no chunk follows

	lines int // lines in buf (blank ones included), set by parse
	recs  []parsedLine
	errs  []codec.Error
	text  []byte
	// claimed is set by the goroutine that parses the chunk (a parse
	// goroutine or Next, whichever comes first) and cleared by the reader
	// when it hands the chunk out with new lines. A parse goroutine that
	// claims it signals ready when recs are filled; Next parsing it itself
	// sets parsed instead.
	claimed atomic.Bool
	ready   chan struct{} // parse goroutine → Next: recs are filled (capacity 1)
	parsed  bool          // Next's: recs are filled (by Next, or ready received)
}

// parallelJSONL is a feeds.Reader of JSON Lines that parses on several
// goroutines; see the comment at the top of the file. Next, Text and Close
// are for one goroutine (the pump's).
type parallelJSONL struct {
	in      io.Reader
	closer  io.Closer
	opts    codec.ParserOptions
	limit   int
	threads int

	mapped []byte       // the input file mapped into memory, or nil: read from in
	unmap  func() error // releases mapped

	free  chan *parseChunk
	work  chan *parseChunk
	order chan *parseChunk
	quit  chan struct{}
	wg    sync.WaitGroup // the parse goroutines
	// readerDone is closed when the reader goroutine returns.
	readerDone chan struct{}

	cur     *parseChunk   // the chunk Next is handing out
	pos     int           // next record of cur
	ahead   []*parseChunk // received from order after cur, in input order
	own     *codec.Parser // Next's lookup-only parser (chunks it parses itself)
	owned   int           // chunks Next parsed itself (tests)
	lineAt  int64         // lines of the chunks before cur
	done    bool
	reparse *codec.Parser // the interning parser: lines with new symbols
	text    []byte        // the text of the event Next returned last
	rerr    feeds.RecordError
	cerr    codec.Error
	tooLong codec.Error
}

// newParallelJSONL starts reading r (closed by Close if it is an io.Closer)
// and parsing it on threads goroutines (at least 2; one is sequential and
// belongs to feeds.NewJSONLReader). opts are the sequential parser's.
//
// When file, the input behind r, is a regular file of which nothing has
// been consumed yet (r may have peeked at it), the file is mapped into memory
// and the chunks are slices of the mapping: no read system calls, no copy
// (mapInput). Otherwise (a pipe, standard input, tests) r is read.
func newParallelJSONL(r io.Reader, file *os.File, opts codec.ParserOptions, threads int) *parallelJSONL {
	n := parallelInFlight(threads)
	limit := lineLimit(opts.MaxMessageSize)
	p := &parallelJSONL{
		in:      r,
		opts:    opts,
		limit:   limit,
		threads: threads,
		free:    make(chan *parseChunk, n),
		// A chunk that Next parsed and released can be handed out again
		// before a parse goroutine has taken its earlier entry off work:
		// room for two entries per chunk, so the reader rarely waits.
		work:    make(chan *parseChunk, 2*n),
		order:   make(chan *parseChunk, n),
		ahead:   make([]*parseChunk, 0, n),
		quit:    make(chan struct{}),
		reparse: codec.NewParser(opts),
		tooLong: codec.Error{Reason: codec.ReasonOversize, Detail: "line over the size limit", Offset: -1},
	}
	if c, ok := r.(io.Closer); ok {
		p.closer = c
	}
	if file != nil {
		p.mapped, p.unmap = mapInput(file)
	}
	// A chunk holds parallelChunkBytes and, after the partial line carried
	// from the chunk before, still room for one line at the limit. Chunks
	// of a mapped input point into the mapping.
	size := max(parallelChunkBytes, 2*(limit+1))
	for range n {
		c := &parseChunk{ready: make(chan struct{}, 1)}
		if p.mapped == nil {
			c.buf = make([]byte, 0, size)
		}
		p.free <- c
	}
	popts := opts
	popts.LookupOnly = true
	p.own = codec.NewParser(popts)
	p.wg.Add(threads - 1)
	p.readerDone = make(chan struct{})
	if p.mapped != nil {
		go p.readMapped()
	} else {
		go p.read()
	}
	for range threads - 1 { // Next is the last parser
		go p.parse(codec.NewParser(popts))
	}
	return p
}

// read cuts the input into chunks of whole lines and hands each to the
// parse goroutines and, in input order, to Next. A line longer than a chunk
// can hold is over the limit: it becomes a chunk of its own marked
// oversize, and its bytes are skipped.
func (p *parallelJSONL) read() {
	defer close(p.readerDone)
	defer close(p.work)
	defer close(p.order)
	var carry []byte // the partial last line of the previous read
	var offset int64 // of carry[0] (or of the next byte read) in the input
	skipping := false
	for {
		var c *parseChunk
		select {
		case c = <-p.free:
		case <-p.quit:
			return
		}
		c.buf = append(c.buf[:0], carry...)
		c.offset, c.oversize, c.readErr, c.eof = offset, false, nil, false
		var err error
		for len(c.buf) < cap(c.buf) && err == nil {
			var n int
			n, err = p.in.Read(c.buf[len(c.buf):cap(c.buf)])
			c.buf = c.buf[:len(c.buf)+n]
		}
		if skipping {
			// The rest of an oversize line, up to its '\n'.
			nl := bytes.IndexByte(c.buf, '\n')
			skip := len(c.buf)
			if nl >= 0 {
				skip, skipping = nl+1, false
			}
			offset += int64(skip)
			c.buf = append(c.buf[:0], c.buf[skip:]...)
			c.offset = offset
		}
		last := len(c.buf)
		if err == nil {
			nl := bytes.LastIndexByte(c.buf, '\n')
			if nl < 0 && len(c.buf) == cap(c.buf) && !skipping {
				// No line end in a full chunk: one line over the limit.
				c.buf, c.oversize, skipping = c.buf[:0], true, true
				carry = carry[:0]
				offset = c.offset + int64(cap(c.buf))
				if !p.send(c) {
					return
				}
				continue
			}
			last = nl + 1 // 0 when nothing but a partial line (or nothing)
		}
		carry = append(carry[:0], c.buf[last:]...)
		c.buf = c.buf[:last]
		offset = c.offset + int64(last)
		switch {
		case err == io.EOF:
			c.eof = true
		case err != nil:
			c.readErr, c.eof = fmt.Errorf("feeds: read: %w", err), true
		}
		if !p.send(c) || c.eof {
			return
		}
	}
}

// readMapped is read for a mapped input: each chunk is the lines that end
// within parallelChunkBytes of its start (or one longer line, which parsing
// rejects as over the limit), a slice of the mapping.
func (p *parallelJSONL) readMapped() {
	defer close(p.readerDone)
	defer close(p.work)
	defer close(p.order)
	data := p.mapped
	for off := 0; ; {
		var c *parseChunk
		select {
		case c = <-p.free:
		case <-p.quit:
			return
		}
		end := len(data)
		if off+parallelChunkBytes < len(data) {
			if nl := bytes.LastIndexByte(data[off:off+parallelChunkBytes], '\n'); nl >= 0 {
				end = off + nl + 1
			} else if nl := bytes.IndexByte(data[off+parallelChunkBytes:], '\n'); nl >= 0 {
				end = off + parallelChunkBytes + nl + 1
			}
		}
		c.buf, c.offset, c.oversize, c.readErr, c.eof = data[off:end:end], int64(off), false, nil, end == len(data)
		if !p.send(c) || c.eof {
			return
		}
		off = end
	}
}

// send hands c to Next and, unless it needs no parsing, to a parse
// goroutine; false when Close stopped the reader.
func (p *parallelJSONL) send(c *parseChunk) bool {
	c.parsed = false
	if c.oversize || len(c.buf) == 0 {
		// Nothing to parse: claimed and ready before Next can see it.
		c.lines, c.recs, c.text = 0, c.recs[:0], c.text[:0]
		if c.oversize {
			c.lines = 1
			c.recs = append(c.recs, parsedLine{kind: recOversize, line: 1, offset: c.offset})
			c.errs = c.errs[:0]
		}
		c.claimed.Store(true)
		c.ready <- struct{}{}
		select {
		case p.order <- c:
			return true
		case <-p.quit:
			return false
		}
	}
	// Cleared after the writes above and in read: whoever claims the
	// chunk (an atomic read of this store) sees its new lines.
	c.claimed.Store(false)
	select {
	case p.order <- c:
	case <-p.quit:
		return false
	}
	if p.threads == 1 {
		return true // no parse goroutine: Next parses every chunk (tests)
	}
	select {
	case p.work <- c:
		return true
	case <-p.quit:
		return false
	}
}

// parse is one parse goroutine: it parses chunks with its own lookup-only
// parser until the reader stops or Close. It skips the chunks Next (or,
// for an entry of a chunk handed out again, another parse goroutine)
// claimed first.
func (p *parallelJSONL) parse(jp *codec.Parser) {
	defer p.wg.Done()
	for {
		select {
		case c, ok := <-p.work:
			if !ok {
				return
			}
			if !c.claimed.CompareAndSwap(false, true) {
				continue
			}
			p.parseChunk(jp, c)
			c.ready <- struct{}{}
		case <-p.quit:
			return
		}
	}
}

// parseChunk parses every line of c, as LineReader.Next and the parser do
// one at a time: blank lines are counted and skipped, a trailing CR is
// dropped, a line over the limit is rejected without its bytes.
func (p *parallelJSONL) parseChunk(jp *codec.Parser, c *parseChunk) {
	c.recs, c.errs, c.text = c.recs[:0], c.errs[:0], c.text[:0]
	line := 0
	buf := c.buf
	for pos := 0; pos < len(buf); {
		end := len(buf)
		next := end
		if nl := bytes.IndexByte(buf[pos:], '\n'); nl >= 0 {
			end = pos + nl
			next = end + 1
		}
		line++
		content := buf[pos:end]
		start := pos
		pos = next
		if len(content) > p.limit {
			c.recs = append(c.recs, parsedLine{kind: recOversize, line: int32(line), offset: c.offset + int64(start)})
			continue
		}
		b := content // LineReader's bytes.TrimRight(b, "\r\n"), without building a cutset per line
		for len(b) > 0 && (b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
			b = b[:len(b)-1]
		}
		if len(b) == 0 || b[0] <= ' ' && len(bytes.TrimSpace(b)) == 0 {
			continue // blank (a line that starts with a byte above ' ' is not)
		}
		// A record of a reused chunk is not zeroed first (ParseJSON writes
		// every field of the event but Seq and IngestNs, which start at 0 as
		// after LineReader's Reset; the fields below are all set).
		if len(c.recs) < cap(c.recs) {
			c.recs = c.recs[:len(c.recs)+1]
		} else {
			c.recs = append(c.recs, parsedLine{})
		}
		r := &c.recs[len(c.recs)-1]
		r.line = int32(line)
		r.offset = c.offset + int64(next) - int64(len(b)) // where LineReader says the record starts
		r.ev.Seq, r.ev.IngestNs = 0, 0
		r.from, r.to, r.err = 0, 0, 0
		err := jp.ParseJSON(b, &r.ev)
		switch {
		case err == nil:
			r.kind = recEvent
			t := jp.Text()
			r.from = int32(len(c.text))
			c.text = append(c.text, t...)
			r.to = int32(len(c.text))
		case err == codec.ErrSymbolNotInterned:
			r.kind = recReparse
			r.from, r.to = int32(start), int32(start+len(b))
		default:
			r.kind = recReject
			r.from, r.to = int32(start), int32(start+len(b))
			r.err = int32(len(c.errs))
			var ce *codec.Error
			if errors.As(err, &ce) {
				c.errs = append(c.errs, *ce)
			} else {
				c.errs = append(c.errs, codec.Error{Reason: codec.ReasonMalformed, Detail: "invalid JSON", Offset: -1})
			}
		}
	}
	c.lines = line
}

// Next implements feeds.Reader: the next line's event, or a
// *feeds.RecordError for a rejected line (valid until the next call), in
// input order.
func (p *parallelJSONL) Next(ev *codec.Event) error {
	e, err := p.NextRef()
	if err == nil {
		*ev = *e
	}
	return err
}

// NextRef is Next without the copy: the event is the one the parse
// goroutine wrote, in the chunk, valid (and the caller's to modify) until the
// next call. pump publishes it from there.
func (p *parallelJSONL) NextRef() (*codec.Event, error) {
	for {
		if p.cur != nil && p.pos < len(p.cur.recs) {
			r := &p.cur.recs[p.pos]
			p.pos++
			return p.record(r)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
}

// advance releases the current chunk and waits for the next one in input
// order.
func (p *parallelJSONL) advance() error {
	if c := p.cur; c != nil {
		p.cur = nil
		p.lineAt += int64(c.lines)
		if err := c.readErr; err != nil {
			p.done = true
			return err
		}
		if c.eof {
			p.done = true
		}
		p.free <- c // never blocks: the channel holds every chunk
	}
	if p.done {
		return io.EOF
	}
	var c *parseChunk
	if len(p.ahead) > 0 {
		c = p.ahead[0]
		p.ahead = append(p.ahead[:0], p.ahead[1:]...)
	} else {
		var ok bool
		if c, ok = <-p.order; !ok {
			p.done = true
			return io.EOF
		}
	}
	p.await(c)
	p.cur, p.pos = c, 0
	return nil
}

// await returns once c is parsed: by Next itself if no parse goroutine has
// claimed it. While a parse goroutine is on it, Next parses the chunks
// after it that nobody has claimed yet (keeping them in ahead), rather than
// waiting.
func (p *parallelJSONL) await(c *parseChunk) {
	if c.parsed {
		return
	}
	if c.claimed.CompareAndSwap(false, true) {
		p.parseOwn(c)
		return
	}
	for {
		select {
		case <-c.ready:
			c.parsed = true
			return
		default:
		}
		if !p.parseAhead() {
			<-c.ready
			c.parsed = true
			return
		}
	}
}

// parseAhead parses one chunk after the current one that nobody has
// claimed: one already in ahead, or the next on order if it is there
// without waiting. It reports whether it parsed one.
func (p *parallelJSONL) parseAhead() bool {
	for _, a := range p.ahead {
		if !a.parsed && a.claimed.CompareAndSwap(false, true) {
			p.parseOwn(a)
			return true
		}
	}
	for len(p.ahead) < cap(p.ahead) {
		var a *parseChunk
		select {
		case x, ok := <-p.order:
			if !ok {
				return false
			}
			a = x
		default:
			return false
		}
		p.ahead = append(p.ahead, a)
		if a.claimed.CompareAndSwap(false, true) {
			p.parseOwn(a)
			return true
		}
	}
	return false
}

// parseOwn parses c, which Next has claimed, on Next's goroutine.
func (p *parallelJSONL) parseOwn(c *parseChunk) {
	p.parseChunk(p.own, c)
	c.parsed = true
	p.owned++
}

// plainRun returns how many of the next records, at most max, are plain
// events in a row: parsed events without text, of the chunk at hand (0 when
// the next record is anything else or is in a chunk still to come, which
// NextRef handles).
func (p *parallelJSONL) plainRun(max int) int {
	c := p.cur
	if c == nil {
		return 0
	}
	n := 0
	for i := p.pos; n < max && i < len(c.recs); i++ {
		if r := &c.recs[i]; r.kind != recEvent || r.to > r.from || r.ev.TextLen != 0 || r.ev.Kind == codec.KindText {
			break
		}
		n++
	}
	return n
}

// takePlain copies the next len(dst) records, which plainRun has counted,
// into dst (ring slots claimed by pump) and moves past them.
func (p *parallelJSONL) takePlain(dst []codec.Event) {
	recs := p.cur.recs[p.pos : p.pos+len(dst)]
	for i := range dst {
		dst[i] = recs[i].ev
	}
	p.pos += len(dst)
	p.text = nil
}

func (p *parallelJSONL) record(r *parsedLine) (*codec.Event, error) {
	c := p.cur
	if r.kind == recEvent {
		p.text = nil
		if r.to > r.from {
			p.text = c.text[r.from:r.to]
		}
		return &r.ev, nil
	}
	pos := codec.Position{Line: p.lineAt + int64(r.line), Offset: r.offset}
	p.text = nil
	switch r.kind {
	case recOversize:
		p.rerr = feeds.RecordError{Pos: pos, Err: &p.tooLong}
		return nil, &p.rerr
	case recReject:
		p.cerr = c.errs[r.err]
		p.rerr = feeds.RecordError{Pos: pos, Raw: c.buf[r.from:r.to], Err: &p.cerr}
		return nil, &p.rerr
	}
	// recReparse: in input order, with the interning parser.
	raw := c.buf[r.from:r.to]
	ev := &r.ev
	ev.Reset()
	if err := p.reparse.ParseJSON(raw, ev); err != nil {
		p.rerr = feeds.RecordError{Pos: pos, Raw: raw, Err: err}
		return nil, &p.rerr
	}
	p.text = p.reparse.Text()
	return ev, nil
}

// Text returns the text of the event the last Next returned (see
// feeds.LineReader.Text), valid until the next call to Next; nil when it has
// none.
func (p *parallelJSONL) Text() []byte { return p.text }

// Close stops the goroutines and closes the input if it is closable. Every
// goroutine blocks only where it also watches quit (a chunk's ready channel
// has room for its one signal), except the reader of a read input inside
// Read: Close does not wait for that one (standard input may never return),
// which returns at the end of its Read. The reader of a mapped input does no
// I/O, and Close waits for it before it unmaps the input.
func (p *parallelJSONL) Close() error {
	select {
	case <-p.quit:
	default:
		close(p.quit)
		p.wg.Wait()
		if p.unmap != nil {
			<-p.readerDone
			// Nothing refers to the mapping any more: the goroutines have
			// returned, and what Next handed out is valid only until Close.
			p.cur, p.text, p.rerr = nil, nil, feeds.RecordError{}
			if err := p.unmap(); err != nil {
				return fmt.Errorf("input: unmap: %w", err)
			}
		}
	}
	if p.closer != nil {
		return p.closer.Close()
	}
	return nil
}
