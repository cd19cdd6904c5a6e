package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/ops"
	"qstream/sinks"
)

// replayFlushEvery is how many events replay publishes between flushes; each
// flush advances the watermark. It is a constant so that the same input
// always gives the same output.
const replayFlushEvery = 256

// maxStderrErrors bounds how many bad records are described on stderr; all
// of them are counted and go to the dead-letter output.
const maxStderrErrors = 100

type replayFlags struct {
	input, format, emit, output, dlq string
	sinks                            sinkFlags
	ops                              operatorFlags
	outOfOrderness, idleTimeout      time.Duration
	shards, maxSymbols, maxLine      int
	parseThreads                     int
	fromLSN                          uint64 // --format wal (wal.go)
	fromTime                         string
}

func replayFlagSet(f *replayFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.input, "input", "", "input file, or - for standard input (required)")
	fs.StringVar(&f.format, "format", "auto", "input format: auto|jsonl|csv|pcap|wal|archive|coinbase|binance|kraken (pcap: IEX TOPS/DEEP over UDP, pcap or pcapng, gzip or not; wal: a qstream WAL directory; archive: an archive://DIR sink's directory or one of its files; exchanges: raw WebSocket lines or cryptofeed recordings)")
	fs.Uint64Var(&f.fromLSN, "from-lsn", 0, "--format wal: replay the events from this LSN on")
	fs.StringVar(&f.fromTime, "from-time", "", "--format wal: replay from the first event whose event time is at or after this (RFC 3339 or integer nanoseconds)")
	f.ops.register(fs, false)
	f.sinks.register(fs, 30*time.Second, false)
	fs.DurationVar(&f.outOfOrderness, "out-of-orderness", 0, "the watermark is the largest event time seen minus this")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 0, "a source silent this long (processing time) stops holding the watermark back; 0 disables")
	fs.StringVar(&f.emit, "emit", "indicators", "what to write: indicators|windows|patterns|movements|news|events|stats|all, or a comma-separated list (patterns need --patterns FILE, movements --movements SPECS; news is the analysis of each article; events are signal, system and custom events)")
	fs.StringVar(&f.output, "output", "-", "output file, or - for standard output")
	fs.StringVar(&f.dlq, "dlq", "", "dead-letter output file (JSON Lines, one rejected record each with its reason); empty: counted and reported on stderr only")
	fs.IntVar(&f.shards, "shards", 1, "number of shards; the output is the same for a given number of shards")
	fs.IntVar(&f.maxSymbols, "max-symbols", 1<<16, "capacity of the symbol table; symbols beyond it are rejected as unknown_symbol")
	fs.IntVar(&f.parseThreads, "parse-threads", runtime.GOMAXPROCS(0), "goroutines that parse JSON Lines input, the publishing one included (one per core by default); the events reach the shards in input order, so the output is the same for any number; 1 parses on the reading goroutine")
	fs.IntVar(&f.maxLine, "max-line", feeds.DefaultMaxLine, "largest accepted line or message in bytes; longer ones are rejected as oversize")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: qstream replay --input PATH|- [flags]

Replays a finite input through the operators on event time and writes JSON
Lines: one object per output, in input order per symbol. The same input and
flags always give byte-identical output. Bad records are reported on stderr
with their line number, counted, sent to the dead-letter output, and the run
goes on; the exit status is non-zero only when the input cannot be read.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	var f replayFlags
	fs := replayFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.input == "" {
		fmt.Fprintln(stderr, "qstream replay: --input is required (a path, or - for standard input)")
		return 2
	}
	if err := replay(&f, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "qstream replay: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks errors in the flags, reported with exit status 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

type emitSet struct {
	kinds map[ops.OutKind]bool
	stats bool
}

func parseEmit(s string) (emitSet, error) {
	e := emitSet{kinds: map[ops.OutKind]bool{}}
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "indicators":
			e.kinds[ops.OutIndicators] = true
		case "windows":
			e.kinds[ops.OutWindow] = true
		case "patterns":
			e.kinds[ops.OutPattern] = true
		case "movements":
			e.kinds[ops.OutMovement] = true
		case "news":
			e.kinds[ops.OutNews] = true
		case "events":
			e.kinds[ops.OutEvent] = true
		case "stats":
			e.stats = true
		case "all":
			e.kinds[ops.OutIndicators] = true
			e.kinds[ops.OutWindow] = true
			e.kinds[ops.OutPattern] = true
			e.kinds[ops.OutMovement] = true
			e.kinds[ops.OutNews] = true
			e.kinds[ops.OutEvent] = true
			e.stats = true
		default:
			return e, fmt.Errorf("--emit: unknown output %q (want indicators, windows, patterns, movements, news, events, stats or all)", part)
		}
	}
	return e, nil
}

func replay(f *replayFlags, stdout, stderr io.Writer) error {
	emit, err := parseEmit(f.emit)
	if err != nil {
		return usageError{err}
	}
	if f.shards < 1 || f.shards > engine.MaxShards {
		return usageError{fmt.Errorf("--shards: %d outside 1..%d", f.shards, engine.MaxShards)}
	}
	if f.parseThreads < 1 || f.parseThreads > maxParseThreads {
		return usageError{fmt.Errorf("--parse-threads: %d outside 1..%d", f.parseThreads, maxParseThreads)}
	}
	if f.maxSymbols < 1 || f.maxSymbols > 1<<24 {
		return usageError{fmt.Errorf("--max-symbols: %d outside 1..%d", f.maxSymbols, 1<<24)}
	}
	opers, err := f.ops.parse(f.maxSymbols, emit.kinds[ops.OutIndicators])
	if err != nil {
		return err
	}
	opers.withText(emit.kinds[ops.OutNews], emit.kinds[ops.OutEvent])
	if emit.kinds[ops.OutPattern] && f.ops.patterns == "" && f.emit != "all" {
		return usageError{fmt.Errorf("--emit patterns needs --patterns FILE")}
	}
	if emit.kinds[ops.OutMovement] && f.ops.movements == "" && f.emit != "all" {
		return usageError{fmt.Errorf("--emit movements needs --movements SPECS")}
	}

	out := stdout
	if f.output != "-" && f.output != "" {
		file, err := os.Create(f.output)
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		defer file.Close()
		out = file
	}
	dlq, closeDLQ, err := openDLQ(f.dlq, stderr)
	if err != nil {
		return err
	}
	defer closeDLQ()

	symbols := codec.NewSymbolTable(f.maxSymbols)
	jcfg := opers.jsonl()
	jcfg.Symbols, jcfg.Kinds = symbols, emit.kinds
	writer := sinks.NewJSONLWriter(out, jcfg)
	pipeCfg := opers.pipeline(symbols)
	cfg := engine.Config{
		Symbols:        symbols,
		Shards:         f.shards,
		Ordered:        true,
		MaxSymbols:     f.maxSymbols,
		OutOfOrderness: f.outOfOrderness,
		IdleTimeout:    f.idleTimeout,
		Processors: func(int) (engine.Processor, error) {
			return ops.NewPipeline(pipeCfg)
		},
		DeadLetters: dlq,
	}
	var primary engine.OutputHandler
	if len(emit.kinds) > 0 {
		primary = writer
	}
	var eng *engine.Engine
	logger := slog.New(slog.NewTextHandler(stderr, nil)) // sinks, archives, the pcap reader
	outSinks, err := openSinks(f.sinks.uris, jcfg, "", primary, poisonTo(&eng), logger)
	if err != nil {
		return err
	}
	defer outSinks.removeTmp()
	cfg.Output = outSinks.output(primary)
	eng, err = engine.New(cfg)
	if err != nil {
		return err
	}
	outSinks.start()
	arch, err := openArchives(outSinks.archive, eng.Symbols(), logger)
	if err != nil {
		return err
	}
	defer arch.close(stderr)

	in, err := openInput(f.input)
	if err != nil {
		return err
	}
	defer in.Close()
	from, err := parseWALFrom(f.fromLSN, f.fromTime)
	if err != nil {
		return err
	}
	reader, err := openReaderThreads(f.format, f.input, in, codec.ParserOptions{Symbols: eng.Symbols(), MaxMessageSize: f.maxLine}, from, f.parseThreads)
	if err != nil {
		return err
	}
	defer reader.Close()
	if pr, ok := reader.(*feeds.PcapReader); ok {
		pr.SetLogger(logger) // truncation, sequence resets
	}

	pub, err := eng.NewPublisher("replay")
	if err != nil {
		return err
	}
	if err := eng.Start(); err != nil {
		return err
	}
	var tap func(*codec.Event) error
	if len(outSinks.archive) > 0 {
		tap = arch.appendEvent
	}
	readErr := pump(reader, pub, dlq, tap)
	pub.Close()
	stopErr := eng.Stop(context.Background())
	if err := writer.Flush(); err != nil && stopErr == nil {
		stopErr = err
	}
	if err := outSinks.close(f.sinks.drain, stderr); err != nil && stopErr == nil {
		stopErr = err
	}
	if err := arch.close(stderr); err != nil && stopErr == nil {
		stopErr = err
	}
	if emit.stats {
		var seq *sequenceJSON
		if pr, ok := reader.(*feeds.PcapReader); ok {
			seq = pcapSequence(pr.Stats())
		}
		if err := writeStats(out, eng.Stats(), seq); err != nil && stopErr == nil {
			stopErr = err
		}
	}
	if readErr != nil {
		return readErr
	}
	return stopErr
}

// pump reads every record, numbering accepted events 1, 2, 3... in input
// order (their Seq), and publishes them, flushing at fixed counts so that
// watermarks advance at the same points on every run.
func pump(r feeds.Reader, pub *engine.Publisher, dlq *sinks.DeadLetters, tap func(*codec.Event) error) error {
	var seq uint64
	var own codec.Event // an event with text, published with it (PublishText copies it)
	tr, _ := r.(interface{ Text() []byte })
	// A reader that parses into memory of its own (replay_parallel.go)
	// hands out its event, so that it is copied once, into the ring.
	// Other readers decode straight into ring slots (pumpSlots).
	rr, _ := r.(interface{ NextRef() (*codec.Event, error) })
	sl := pumpSlots{pub: pub}
	// The parallel reader hands over runs of plain events (no text), which
	// go into claimed ring slots a run at a time (ClaimBatch, one copy, and
	// CommitBatch's stamp and account per event) instead of one Publish
	// each; the same events with the same Seq, flushed at the same counts.
	pr, _ := r.(*parallelJSONL)
	if tap != nil {
		pr = nil // the archive takes events one at a time
	}
	chunks := 0 // text chunks of the last event still to come (a WAL's): no flush inside a group
	for {
		if pr != nil {
			if n := pr.plainRun(replayFlushEvery - int(seq%replayFlushEvery)); n > 0 {
				evs, err := pub.ClaimBatch(n)
				if err != nil {
					return err
				}
				pr.takePlain(evs) // len(evs) <= n: the end of the ring's buffer
				for i := range evs {
					seq++
					evs[i].Seq = seq
				}
				if err := pub.CommitBatch(len(evs)); err != nil {
					return err
				}
				chunks = 0
				if seq%replayFlushEvery == 0 {
					if err := pub.Flush(); err != nil {
						return err
					}
				}
				continue
			}
		}
		var ev *codec.Event
		var err error
		if rr != nil {
			ev, err = rr.NextRef()
		} else if ev, err = sl.next(); err == nil {
			err = r.Next(ev)
		}
		if err == io.EOF {
			return sl.commit()
		}
		if err != nil {
			var re *feeds.RecordError
			if errors.As(err, &re) {
				pub.Reject(re.Raw, re.Reason(), re.Pos, re.Err)
				if rr == nil {
					*ev = codec.Event{} // the next record is decoded into it
				}
				continue
			}
			if rr == nil {
				_ = sl.commit() // what was decoded before is published
			}
			return fmt.Errorf("input: %w", err)
		}
		if ev.Kind != codec.KindText { // a WAL's text chunks keep their event's number
			seq++
			chunks = 0
			if text := (tr != nil && tr.Text() != nil); !text {
				chunks = codec.TextChunks(int(ev.TextLen))
			}
		} else if chunks > 0 {
			chunks--
		}
		ev.Seq = seq
		var text []byte
		if tr != nil {
			text = tr.Text()
		}
		if tap != nil {
			if err := tap(ev); err != nil { // before Publish, which may reuse the event
				return err
			}
			// The text goes into the archive as the chunk events that
			// follow the event in a WAL, so that the archive replays alike.
			var c codec.Event
			for off := 0; off < len(text); {
				off += codec.SetTextChunk(&c, ev, text, off)
				if err := tap(&c); err != nil {
					return err
				}
			}
		}
		switch {
		case rr != nil:
			err = pub.PublishText(ev, text)
		case len(text) == 0:
			sl.keep()
		default:
			// Its text's chunk events follow it: the decoded events
			// before it go first, then it with its text.
			own = *ev
			if err = sl.commit(); err == nil {
				err = pub.PublishText(&own, text)
			}
		}
		if err != nil {
			return err
		}
		if seq%replayFlushEvery == 0 && chunks == 0 {
			if err := sl.commit(); err != nil {
				return err
			}
			if err := pub.Flush(); err != nil {
				return err
			}
		}
	}
}

// pumpSlots hands pump the events a reader decodes into: ring slots
// claimed in batches (engine.Publisher.ClaimBatch), committed in input order
// before anything else is published (a flush, an event with text) and at
// the end. A slot whose record is rejected is decoded into again.
type pumpSlots struct {
	pub *engine.Publisher
	evs []codec.Event // the claim; evs[:k] hold decoded events
	k   int
}

// next returns the event to decode the next record into: evs[k].
func (s *pumpSlots) next() (*codec.Event, error) {
	if s.k == len(s.evs) {
		if err := s.commit(); err != nil {
			return nil, err
		}
		evs, err := s.pub.ClaimBatch(replayFlushEvery)
		if err != nil {
			return nil, err
		}
		s.evs = evs
	}
	return &s.evs[s.k], nil
}

// keep takes the event next returned into the batch.
func (s *pumpSlots) keep() { s.k++ }

// commit publishes the decoded events and ends the claim.
func (s *pumpSlots) commit() error {
	if len(s.evs) == 0 {
		return nil
	}
	err := s.pub.CommitBatch(s.k)
	s.evs, s.k = nil, 0
	return err
}

func openInput(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	if strings.HasPrefix(path, "s3://") {
		return io.NopCloser(strings.NewReader("")), nil // an archive in S3: the archive reader fetches it
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return f, nil
}

// openReader picks the decoder for format. auto looks at the file name and,
// failing that, at the first bytes: a pcap or pcapng magic number, a CSV
// header, an exchange's WebSocket message (or a cryptofeed recording line),
// else JSON Lines.
func openReader(format, path string, in io.Reader, opts codec.ParserOptions, from walFrom) (feeds.Reader, error) {
	return openReaderThreads(format, path, in, opts, from, 1)
}

// maxParseThreads bounds --parse-threads, and with it the memory of the
// chunks in flight (replay_parallel.go): 2·16+2 chunks of at most twice the
// line limit, whose parsed lines take at most ~85 times a chunk's bytes
// (a 168-byte record per 2-byte line).
const maxParseThreads = 16

// openReaderThreads is openReader with JSON Lines parsed on parseThreads
// goroutines when that is more than one (replay_parallel.go). The other
// formats are read by one goroutine: CSV has a header, the exchange
// adapters keep per-stream sequence state, pcap and WAL are binary.
func openReaderThreads(format, path string, in io.Reader, opts codec.ParserOptions, from walFrom, parseThreads int) (feeds.Reader, error) {
	if format == "wal" || (format == "auto" && isWALDir(path)) {
		return openWALReader(path, opts.Symbols, from)
	}
	if format == "archive" || (format == "auto" && feeds.IsArchive(path)) {
		r, err := feeds.OpenArchiveReader(path, feeds.ArchiveReaderOptions{Symbols: opts.Symbols})
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		return r, nil
	}
	br := bufio.NewReaderSize(in, 64<<10)
	if format == "auto" {
		format = detectFormat(path, br)
	}
	switch format {
	case "jsonl", "json":
		if parseThreads > 1 {
			file, _ := in.(*os.File) // mapped if it is a regular file
			return newParallelJSONL(br, file, opts, parseThreads), nil
		}
		return feeds.NewJSONLReader(br, opts), nil
	case "csv":
		return feeds.NewCSVReader(br, opts), nil
	case "pcap":
		return feeds.NewPcapReader(br, feeds.PcapOptions{Name: "replay", Symbols: opts.Symbols})
	case codec.ExchangeCoinbase, codec.ExchangeBinance, codec.ExchangeKraken, "capture":
		exchange := format
		if exchange == "capture" {
			exchange = "auto"
		}
		return feeds.NewCaptureReader(br, feeds.CaptureOptions{Exchange: exchange, Symbols: opts.Symbols, MaxLine: opts.MaxMessageSize})
	}
	return nil, usageError{fmt.Errorf("--format: unknown format %q (want auto, jsonl, csv, pcap, wal, archive, coinbase, binance or kraken)", format)}
}

func detectFormat(path string, br *bufio.Reader) string {
	name := strings.ToLower(path)
	switch {
	case strings.HasSuffix(name, ".csv"):
		return "csv"
	case strings.HasSuffix(name, ".pcap"), strings.HasSuffix(name, ".pcapng"), strings.HasSuffix(name, ".pcap.gz"), strings.HasSuffix(name, ".pcapng.gz"):
		return "pcap"
	}
	head, _ := br.Peek(4096)
	if len(head) >= 4 {
		switch binary.LittleEndian.Uint32(head) {
		case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1, 0x0a0d0d0a:
			return "pcap"
		}
		if head[0] == 0x1f && head[1] == 0x8b { // gzip: pcap.gz is the compressed input replay knows
			return "pcap"
		}
	}
	line, _, _ := bytes.Cut(head, []byte("\n"))
	line = bytes.TrimSpace(line)
	switch {
	case len(line) == 0:
		return "jsonl"
	case bytes.HasPrefix(line, []byte("ws://")) || bytes.HasPrefix(line, []byte("wss://")):
		return "capture" // a cryptofeed recording
	case line[0] != '{' && line[0] != '[' && bytes.Contains(line, []byte(",")):
		return "csv"
	}
	if ex := codec.DetectExchange(line); ex != "" {
		return ex
	}
	return "jsonl"
}
