package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/ops"
	"qstream/ops/news"
	"qstream/ring"
	"qstream/sinks"
)

// badStreamName says what is wrong with the name of stream i, or "": the
// engine's stream ids are 1..64 letters, digits, '_', '-' and '.', and
// "default" names the first stream only.
func badStreamName(name string, i int) string {
	switch {
	case name == string(engine.DefaultStream):
		if i > 0 {
			return `"default" names the first stream`
		}
		return ""
	case len(name) > engine.MaxStreamIDLen:
		return fmt.Sprintf("longer than %d bytes", engine.MaxStreamIDLen)
	case engine.ValidStreamID(engine.StreamID(name)) != nil:
		return "want letters, digits, '_', '-' and '.' only"
	}
	return ""
}

// EmitNames are the outputs a stream's emit list may name (`run --emit`).
var EmitNames = []string{"indicators", "windows", "patterns", "movements", "news", "events", "all"}

// validate checks the decoded values with the parsers of the run flags;
// errors name the field and its line.
func (d *decoder) validate(c *Config) {
	if _, err := ring.ParseStrategy(c.Wait); err != nil {
		d.failErr("wait", trimPrefix(err))
	}
	if !validPin(c.Pin) {
		d.fail(d.line("pin"), "pin", "%q: want \"\", auto or a list of CPU numbers like 2,3", c.Pin)
	}
	d.positive("max_symbols", int64(c.MaxSymbols))
	d.nonNegative("dedup_horizon", int64(c.DedupHorizon))
	switch c.WAL.Sync {
	case "group", "always", "none":
	default:
		d.fail(d.line("wal.sync"), "wal.sync", "%q: want group, always or none", c.WAL.Sync)
	}
	d.positive("wal.group_records", int64(c.WAL.GroupRecords))
	d.positive("wal.group_interval", int64(c.WAL.GroupInterval))
	d.nonNegative("sink_drain", int64(c.SinkDrain))
	d.positive("status_interval", int64(c.StatusInterval))
	if c.HTTP.Addr != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
			d.failErr("http.addr", fmt.Errorf("%q: want HOST:PORT (\"\" turns the endpoint off): %w", c.HTTP.Addr, err))
		}
	}
	d.positive("http.stop_timeout", int64(c.HTTP.StopTimeout))
	d.nonNegative("duration", int64(c.Duration))

	names := map[string]string{}
	for i := range c.Streams {
		s := &c.Streams[i]
		p := "streams[" + strconv.Itoa(i) + "]"
		if s.Name == "" {
			if _, given := d.lines[p+".name"]; given {
				d.fail(d.line(p+".name"), p+".name", "empty: leave it out for the default stream-%d", i+1)
			}
			s.Name = "stream-" + strconv.Itoa(i+1)
		}
		if msg := badStreamName(s.Name, i); msg != "" {
			d.fail(d.line(p+".name"), p+".name", "%q: %s", s.Name, msg)
		} else if first, dup := names[s.Name]; dup {
			d.fail(d.line(p+".name"), p+".name", "%q is also the name of %s: stream names must be unique", s.Name, first)
		} else {
			names[s.Name] = p
		}
		d.stream(c, s, p)
	}
}

func (d *decoder) positive(path string, v int64) {
	if v <= 0 {
		d.fail(d.line(path), path, "must be > 0")
	}
}

func (d *decoder) nonNegative(path string, v int64) {
	if v < 0 {
		d.fail(d.line(path), path, "must be >= 0")
	}
}

var pinList = regexp.MustCompile(`^\s*\d+\s*(,\s*\d+\s*)*$`)

func validPin(s string) bool { return s == "" || s == "auto" || pinList.MatchString(s) }

// trimPrefix drops a package's "pkg: bad thing: " sentinel from a message
// whose path already says what is bad.
func trimPrefix(err error) error {
	msg := err.Error()
	for _, sentinel := range []error{ops.ErrBadWindowSpec, ops.ErrIndicatorSpec, ops.ErrMovementSpec, ops.ErrPatternSpec, ring.ErrStrategy} {
		s := sentinel.Error()
		if rest, ok := strings.CutPrefix(msg, s); ok {
			return errors.New(strings.TrimPrefix(strings.TrimPrefix(rest, ":"), " "))
		}
	}
	msg = strings.TrimPrefix(msg, "engine: ")
	return errors.New(msg)
}

// path resolves a file the configuration reads against its directory.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// readable checks that the file at path (a field's value) can be read.
func (d *decoder) readable(c *Config, field, p string) {
	if p == "" {
		return
	}
	f, err := os.Open(c.path(p))
	if err != nil {
		d.failErr(field, err)
		return
	}
	f.Close()
}

func (d *decoder) stream(c *Config, s *StreamConfig, p string) {
	d.source(c, s, p+".source")
	if s.ProcessingMode == "" {
		d.fail(d.line(p+".processing_mode"), p+".processing_mode", "empty: want event-driven, real-time or micro-batch")
	} else if _, err := engine.ParseMode(s.ProcessingMode); err != nil {
		d.failErr(p+".processing_mode", trimPrefix(err))
	}
	if s.Parallelism < 0 || s.Parallelism > engine.MaxShards {
		d.fail(d.line(p+".parallelism"), p+".parallelism", "%d outside 0..%d (0: usable CPUs minus one)", s.Parallelism, engine.MaxShards)
	}
	d.positive(p+".batch_size", int64(s.BatchSize))
	d.positive(p+".max_latency", int64(s.MaxLatency))
	d.nonNegative(p+".checkpoint_interval", int64(s.CheckpointInterval))

	eh := &s.ErrorHandling
	switch eh.Policy {
	case PolicyDeadLetter:
		if eh.DeadLetterDir == "" {
			d.fail(d.line(p+".error_handling.dead_letter_dir"), p+".error_handling.dead_letter_dir", "empty: give a directory, or policy log for stderr only")
		}
	case PolicyLog:
		if _, given := d.lines[p+".error_handling.dead_letter_dir"]; given {
			d.fail(d.line(p+".error_handling.dead_letter_dir"), p+".error_handling.dead_letter_dir", "policy log keeps no dead-letter segments: leave dead_letter_dir out")
		}
	default:
		d.fail(d.line(p+".error_handling.policy"), p+".error_handling.policy", "%q: want dead_letter or log", eh.Policy)
	}
	if (eh.NATSURL == "") != (eh.NATSSubject == "") {
		d.fail(d.line(p+".error_handling"), p+".error_handling", "nats_url and nats_subject go together")
	}

	d.nonNegative(p+".event_time.out_of_orderness", int64(s.EventTime.OutOfOrderness))
	d.nonNegative(p+".event_time.allowed_lateness", int64(s.EventTime.AllowedLateness))
	d.nonNegative(p+".event_time.idle_timeout", int64(s.EventTime.IdleTimeout))

	d.list(p+".indicators", s.Indicators, func(item string) error { _, err := ops.ParseIndicators(item); return err },
		func(all string) error { _, err := ops.ParseIndicators(all); return err })
	if _, err := ops.ParseEMASeed(s.IndicatorOptions.EMASeed); err != nil {
		d.failErr(p+".indicator_options.ema_seed", trimPrefix(err))
	}
	d.positive(p+".indicator_options.vwap_session", int64(s.IndicatorOptions.VWAPSession))
	d.nonNegative(p+".indicator_options.vwap_session_offset", int64(s.IndicatorOptions.VWAPSessionOffset))

	d.list(p+".windows", s.Windows, func(item string) error { _, err := ops.ParseWindowSpec(item); return err },
		func(all string) error { _, err := ops.ParseWindowSpecs(all); return err })
	wo := &s.WindowOptions
	if wo.Emit != "updates" && wo.Emit != "final" {
		d.fail(d.line(p+".window_options.emit"), p+".window_options.emit", "%q: want updates or final", wo.Emit)
	}
	d.nonNegative(p+".window_options.early_every_n", int64(wo.EarlyEveryN))
	d.nonNegative(p+".window_options.early_every", int64(wo.EarlyEvery))
	d.positive(p+".window_options.max_open", int64(wo.MaxOpen))
	d.positive(p+".window_options.max_buffered", int64(wo.MaxBuffered))
	d.positive(p+".window_options.percentile_exact_max", int64(wo.PercentileExactMax))
	d.nonNegative(p+".window_options.symbol_ttl", int64(wo.SymbolTTL))

	d.patternsCheck(c, s, p)
	d.positive(p+".pattern_max_trades", int64(s.PatternMaxTrades))
	d.list(p+".movements", s.Movements, func(item string) error { _, err := ops.ParseMovement(item); return err },
		func(all string) error { _, err := ops.ParseMovements(all); return err })
	d.positive(p+".movement_max_trades", int64(s.MovementMaxTrades))

	d.readable(c, p+".news.entities", s.News.Entities)
	d.readable(c, p+".news.lexicon", s.News.Lexicon)
	d.readable(c, p+".news.events", s.News.Events)
	if (s.News != NewsConfig{}) {
		if _, err := news.NewFromFiles(c.path(s.News.Entities), c.path(s.News.Lexicon), c.path(s.News.Events)); err != nil {
			d.failErr(p+".news", err)
		}
	}

	seenSinks := map[string]int{}
	for i, u := range s.Sinks {
		ip := p + ".sinks[" + strconv.Itoa(i) + "]"
		name, err := checkSink(u)
		if err != nil {
			// The path and line say which sink: drop "--sink URI: ".
			msg := err.Error()
			if rest, ok := strings.CutPrefix(msg, "--sink "); ok {
				if _, after, ok := strings.Cut(rest, ": "); ok {
					msg = after
				}
			}
			d.fail(d.line(ip), ip, "%s", msg)
			continue
		}
		if first, dup := seenSinks[name]; dup {
			d.fail(d.line(ip), ip, "%s is also sinks[%d]", name, first)
		}
		seenSinks[name] = i
	}

	for i, e := range s.Emit {
		if !slices.Contains(EmitNames, e) {
			ip := p + ".emit[" + strconv.Itoa(i) + "]"
			d.fail(d.line(ip), ip, "%q: want %s", e, strings.Join(EmitNames, ", "))
		}
	}
	if len(s.Emit) > 1 && slices.Contains(s.Emit, "all") {
		d.fail(d.line(p+".emit"), p+".emit", "all goes alone: it is every output")
	}
	if len(s.Emit) == 0 {
		d.fail(d.line(p+".emit"), p+".emit", "empty: want at least one of %s", strings.Join(EmitNames, ", "))
	}
}

// list checks each item of a list field with one, then the whole list
// (duplicates, limits) with all, as the flag's comma-separated value.
func (d *decoder) list(path string, items []string, one func(string) error, all func(string) error) {
	ok := true
	for i, item := range items {
		ip := path + "[" + strconv.Itoa(i) + "]"
		if strings.TrimSpace(item) == "" {
			d.fail(d.line(ip), ip, "empty item")
			ok = false
			continue
		}
		if err := one(item); err != nil {
			d.failErr(ip, trimPrefix(err))
			ok = false
			continue
		}
		for j := range i {
			if items[j] == item {
				d.fail(d.line(ip), ip, "%q is also %s[%d]", item, path[strings.LastIndexByte(path, '.')+1:], j)
				ok = false
			}
		}
	}
	if ok && len(items) > 0 {
		if err := all(strings.Join(items, ",")); err != nil {
			d.failErr(path, trimPrefix(err))
		}
	}
}

// checkSink validates a sink URI as `run --sink` does, without connecting
// and without creating anything; it returns the sink's name.
func checkSink(raw string) (string, error) {
	if strings.HasPrefix(raw, "archive://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", err
		}
		if _, _, err := sinks.ArchiveURL(u); err != nil {
			return "", err
		}
		return raw, nil
	}
	env := sinks.Env{JSONL: sinks.JSONLConfig{Symbols: codec.NewSymbolTable(1)}}
	// Writers connect in Open and spills create their directory on first
	// use: neither happens here.
	s, err := sinks.OpenSink(raw, env, filepath.Join(os.TempDir(), "qstream-config-check"), nil)
	if err != nil {
		return "", err
	}
	return s.Name(), nil
}

// patternsCheck validates the inline list (with ParsePatternsFile, on JSON
// that keeps the file's lines) or the patterns file.
func (d *decoder) patternsCheck(c *Config, s *StreamConfig, p string) {
	doc, inline := d.patternDocs[p+".patterns"]
	inline = inline && len(s.Patterns) > 0 // patterns: [] is none
	if inline && s.PatternsFile != "" {
		d.fail(d.line(p+".patterns_file"), p+".patterns_file", "give patterns inline or in patterns_file, not both")
		return
	}
	if s.PatternsFile != "" {
		data, err := os.ReadFile(c.path(s.PatternsFile))
		if err != nil {
			d.failErr(p+".patterns_file", err)
			return
		}
		if _, err := ops.ParsePatternsFile(c.path(s.PatternsFile), data); err != nil {
			d.failErr(p+".patterns_file", err) // names the pattern file and its line
		}
		return
	}
	if !inline {
		return
	}
	_, err := ops.ParsePatternsFile("inline.yaml", doc)
	if err == nil {
		return
	}
	path, line := p+".patterns", d.line(p+".patterns")
	msg := trimPrefix(err).Error()
	var pe *ops.PatternFileError
	if errors.As(err, &pe) {
		msg = trimPrefix(pe.Err).Error()
		if pe.Line > 0 {
			line = pe.Line
			// The pattern on or before that line.
			for i, pat := range s.Patterns {
				if pat.Line <= pe.Line {
					path = p + ".patterns[" + strconv.Itoa(i) + "]"
				}
			}
		}
		msg = patternPrefix.ReplaceAllString(msg, "")
		if pe.Field != "" {
			path += "." + pe.Field
			msg = strings.TrimPrefix(msg, pe.Field+": ")
		}
	}
	d.fail(line, path, "%s", msg)
}

// source checks the feeds and makes a source without any the default
// synthetic feed.
func (d *decoder) source(c *Config, s *StreamConfig, p string) {
	src := &s.Source
	if src.Synthetic == nil && src.TCP == nil && src.WS == nil && src.Webhook == nil && src.JetStream == nil && src.Pcap == nil {
		if _, given := d.lines[p]; given {
			d.fail(d.line(p), p, "no feed: want one or more of synthetic, tcp, ws, webhook, jetstream, pcap")
			return
		}
		src.Synthetic = defaultSynthetic()
	}
	if f := src.Synthetic; f != nil {
		q := p + ".synthetic"
		d.positive(q+".symbols", int64(f.Symbols))
		d.nonNegative(q+".rate", int64(f.Rate))
		d.nonNegative(q+".count", f.Count)
		if f.FlushEvery == 0 {
			d.fail(d.line(q+".flush_every"), q+".flush_every", "must be > 0")
		}
	}
	if f := src.TCP; f != nil {
		q := p + ".tcp"
		d.required(q+".addr", f.Addr)
		if f.Format != "lines" && f.Format != "frames" && f.Format != "auto" {
			d.fail(d.line(q+".format"), q+".format", "%q: want lines, frames or auto", f.Format)
		}
		if f.Loops < 0 || f.Loops > 256 {
			d.fail(d.line(q+".loops"), q+".loops", "%d outside 0..256 (0: GOMAXPROCS)", f.Loops)
		}
		d.nonNegative(q+".idle_timeout", int64(f.IdleTimeout))
	}
	if f := src.WS; f != nil {
		q := p + ".ws"
		if d.required(q+".url", f.URL) && !strings.HasPrefix(f.URL, "ws://") && !strings.HasPrefix(f.URL, "wss://") {
			d.fail(d.line(q+".url"), q+".url", "%q is not a ws:// or wss:// URL", f.URL)
		}
		switch strings.ToLower(f.Exchange) {
		case codec.ExchangeCoinbase, codec.ExchangeBinance, codec.ExchangeKraken:
		default:
			d.fail(d.line(q+".exchange"), q+".exchange", "%q: want coinbase, binance or kraken", f.Exchange)
		}
		for i, m := range f.Subscribe {
			ip := q + ".subscribe[" + strconv.Itoa(i) + "]"
			if file, ok := strings.CutPrefix(m, "@"); ok {
				d.readable(c, ip, file)
			} else if !json.Valid([]byte(m)) {
				d.fail(d.line(ip), ip, "not a JSON message (or @FILE)")
			}
		}
	}
	if f := src.Webhook; f != nil {
		q := p + ".webhook"
		d.required(q+".addr", f.Addr)
		if !strings.HasPrefix(f.Path, "/") {
			d.fail(d.line(q+".path"), q+".path", "%q does not start with /", f.Path)
		}
		d.readable(c, q+".secret_file", f.SecretFile)
	}
	if f := src.JetStream; f != nil {
		q := p + ".jetstream"
		d.required(q+".url", f.URL)
		d.required(q+".stream", f.Stream)
		d.required(q+".subject_prefix", f.SubjectPrefix)
		if f.Partitions < 1 || f.Partitions > feeds.MaxJetStreamPartitions {
			d.fail(d.line(q+".partitions"), q+".partitions", "%d outside 1..%d (required)", f.Partitions, feeds.MaxJetStreamPartitions)
		}
		if f.Owned != "" && !ownedList.MatchString(f.Owned) {
			d.fail(d.line(q+".owned"), q+".owned", "%q: want partitions like 0-7 or 0,2,4", f.Owned)
		}
		d.required(q+".durable", f.Durable)
		d.positive(q+".ack_wait", int64(f.AckWait))
	}
	if f := src.Pcap; f != nil {
		q := p + ".pcap"
		if d.required(q+".path", f.Path) {
			d.readable(c, q+".path", f.Path)
		}
		if f.Speed < 0 {
			d.fail(d.line(q+".speed"), q+".speed", "%g is negative", f.Speed)
		}
	}
}

// patternPrefix is the "pattern "id" (#2): " that ParsePatterns puts
// before a message: the path says which pattern.
var patternPrefix = regexp.MustCompile(`^pattern (?:"(?:[^"\\]|\\.)*" )?\(?#\d+\)?: `)

var ownedList = regexp.MustCompile(`^\s*\d+(\s*-\s*\d+)?\s*(,\s*\d+(\s*-\s*\d+)?\s*)*$`)

// required reports an empty required value; it returns whether v is set.
func (d *decoder) required(path, v string) bool {
	if v == "" {
		d.fail(d.line(path), path, "required")
		return false
	}
	return true
}
