package config

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RunArgs returns the `qstream run` flags equivalent to stream number
// stream (0-based) with the engine-wide settings: --feed always, and every
// other flag whose value differs from its default, as --name=value. Paths
// the configuration reads are resolved against the file's directory.
//
// Inline patterns have no flag form: RunArgs writes them, as the JSON list
// of a --patterns file, to a new temporary file that --patterns names;
// Cleanup removes it. A Config from Load has been validated; RunArgs
// checks only the stream number.
func (c *Config) RunArgs(stream int) ([]string, error) {
	return c.runArgs(stream, nil)
}

// StreamArgs is RunArgs without files: a stream's inline patterns are
// returned as a JSON list (the --patterns file's content) instead of
// written to a file that --patterns names, so that the result can be
// stored (a stream's definition in a checkpoint). patterns is nil when the
// stream has no inline patterns.
func (c *Config) StreamArgs(stream int) (args []string, patterns []byte, err error) {
	args, err = c.runArgs(stream, &patterns)
	return args, patterns, err
}

func (c *Config) runArgs(stream int, inline *[]byte) ([]string, error) {
	if stream < 0 || stream >= len(c.Streams) {
		return nil, fmt.Errorf("config: %s: no stream %d (the file has %d)", c.file, stream, len(c.Streams))
	}
	var a args
	def := Default()
	a.str("wait", c.Wait, def.Wait)
	a.str("pin", c.Pin, def.Pin)
	a.int("max-symbols", int64(c.MaxSymbols), int64(def.MaxSymbols))
	a.int("dedup-horizon", int64(c.DedupHorizon), int64(def.DedupHorizon))
	a.str("wal-dir", c.WAL.Dir, def.WAL.Dir)
	a.str("sync", c.WAL.Sync, def.WAL.Sync)
	a.int("group-records", int64(c.WAL.GroupRecords), int64(def.WAL.GroupRecords))
	a.dur("group-interval", c.WAL.GroupInterval, def.WAL.GroupInterval)
	a.str("checkpoint-dir", c.Checkpoint.Dir, def.Checkpoint.Dir)
	a.bool("final-checkpoint", c.Checkpoint.Final, def.Checkpoint.Final)
	a.str("sink-dir", c.SinkDir, def.SinkDir)
	a.dur("sink-drain", c.SinkDrain, def.SinkDrain)
	a.dur("status-interval", c.StatusInterval, def.StatusInterval)
	a.dur("duration", c.Duration, def.Duration)
	a.str("http", c.HTTP.Addr, def.HTTP.Addr)
	a.bool("dashboard", c.HTTP.Dashboard, def.HTTP.Dashboard)
	a.dur("stop-timeout", c.HTTP.StopTimeout, def.HTTP.StopTimeout)

	s, ds := &c.Streams[stream], DefaultStream()
	if err := c.sourceArgs(&a, &s.Source); err != nil {
		return nil, err
	}
	a.str("mode", s.ProcessingMode, ds.ProcessingMode)
	a.int("shards", int64(s.Parallelism), int64(ds.Parallelism))
	a.int("batch-size", int64(s.BatchSize), int64(ds.BatchSize))
	a.dur("batch-timeout", s.MaxLatency, ds.MaxLatency)
	a.dur("checkpoint-interval", s.CheckpointInterval, ds.CheckpointInterval)
	dlq := s.ErrorHandling.DeadLetterDir
	if s.ErrorHandling.Policy == PolicyLog {
		dlq = ""
	}
	a.str("dlq-dir", dlq, ds.ErrorHandling.DeadLetterDir)
	a.str("dlq-nats-url", s.ErrorHandling.NATSURL, "")
	a.str("dlq-nats-subject", s.ErrorHandling.NATSSubject, "")
	a.dur("out-of-orderness", s.EventTime.OutOfOrderness, 0)
	a.dur("allowed-lateness", s.EventTime.AllowedLateness, 0)
	a.dur("idle-timeout", s.EventTime.IdleTimeout, 0)
	a.list("indicators", s.Indicators, ds.Indicators)
	a.str("ema-seed", s.IndicatorOptions.EMASeed, ds.IndicatorOptions.EMASeed)
	a.dur("vwap-session", s.IndicatorOptions.VWAPSession, ds.IndicatorOptions.VWAPSession)
	a.dur("vwap-session-offset", s.IndicatorOptions.VWAPSessionOffset, 0)
	a.list("windows", s.Windows, nil)
	wo, dwo := &s.WindowOptions, &ds.WindowOptions
	a.str("window-emit", wo.Emit, dwo.Emit)
	a.int("early-every-n", int64(wo.EarlyEveryN), 0)
	a.dur("early-every", wo.EarlyEvery, 0)
	a.int("max-open-windows", int64(wo.MaxOpen), int64(dwo.MaxOpen))
	a.int("max-buffered", int64(wo.MaxBuffered), int64(dwo.MaxBuffered))
	a.int("percentile-exact-max", int64(wo.PercentileExactMax), int64(dwo.PercentileExactMax))
	a.dur("symbol-ttl", wo.SymbolTTL, 0)
	if len(s.Patterns) > 0 && inline != nil {
		*inline = patternsJSON(s.Patterns)
	} else if len(s.Patterns) > 0 {
		path, err := c.writePatterns(s.Patterns)
		if err != nil {
			return nil, err
		}
		a.str("patterns", path, "")
	} else {
		a.str("patterns", c.path(s.PatternsFile), "")
	}
	a.int("pattern-max-trades", int64(s.PatternMaxTrades), int64(ds.PatternMaxTrades))
	a.list("movements", s.Movements, nil)
	a.int("movement-max-trades", int64(s.MovementMaxTrades), int64(ds.MovementMaxTrades))
	a.str("news-entities", c.path(s.News.Entities), "")
	a.str("news-lexicon", c.path(s.News.Lexicon), "")
	a.str("news-events", c.path(s.News.Events), "")
	for _, u := range s.Sinks {
		a.set("sink", u)
	}
	a.list("emit", s.Emit, ds.Emit)
	a.str("output", s.Output, "")
	return a.out, nil
}

func (c *Config) sourceArgs(a *args, src *SourceConfig) error {
	var names []string
	if f := src.Synthetic; f != nil {
		names = append(names, "synthetic")
		d := defaultSynthetic()
		a.int("symbols", int64(f.Symbols), int64(d.Symbols))
		a.int("rate", int64(f.Rate), int64(d.Rate))
		a.uint("seed", f.Seed, d.Seed)
		a.int("count", f.Count, d.Count)
		a.str("ack-file", f.AckFile, d.AckFile)
		a.uint("ack-every", f.AckEvery, d.AckEvery)
		a.uint("resend", f.Resend, d.Resend)
		a.uint("flush-every", f.FlushEvery, d.FlushEvery)
	}
	if f := src.TCP; f != nil {
		names = append(names, "tcp")
		d := defaultTCP()
		a.str("tcp-addr", f.Addr, d.Addr)
		a.str("tcp-format", f.Format, d.Format)
		a.bool("tcp-ack", f.Ack, d.Ack)
		a.int("tcp-loops", int64(f.Loops), int64(d.Loops))
		a.bool("tcp-lock-thread", f.LockThread, d.LockThread)
		a.dur("tcp-idle-timeout", f.IdleTimeout, d.IdleTimeout)
	}
	if f := src.WS; f != nil {
		names = append(names, "ws")
		d := defaultWS()
		a.str("ws-url", f.URL, d.URL)
		a.str("ws-exchange", f.Exchange, d.Exchange)
		for _, m := range f.Subscribe {
			if file, ok := strings.CutPrefix(m, "@"); ok {
				m = "@" + c.path(file)
			}
			a.set("ws-subscribe", m)
		}
		a.dur("ws-stale-after", f.StaleAfter, d.StaleAfter)
	}
	if f := src.Webhook; f != nil {
		names = append(names, "webhook")
		d := defaultWebhook()
		a.str("webhook-addr", f.Addr, d.Addr)
		a.str("webhook-path", f.Path, d.Path)
		a.str("webhook-secret-file", c.path(f.SecretFile), d.SecretFile)
	}
	if f := src.JetStream; f != nil {
		names = append(names, "jetstream")
		d := defaultJetStream()
		a.str("js-url", f.URL, d.URL)
		a.str("js-stream", f.Stream, d.Stream)
		a.str("js-subject-prefix", f.SubjectPrefix, d.SubjectPrefix)
		a.int("js-partitions", int64(f.Partitions), int64(d.Partitions))
		a.str("js-owned", f.Owned, d.Owned)
		a.str("js-durable", f.Durable, d.Durable)
		a.dur("js-ack-wait", f.AckWait, d.AckWait)
	}
	if f := src.Pcap; f != nil {
		names = append(names, "pcap")
		a.str("pcap", c.path(f.Path), "")
		if f.Speed != 0 {
			a.set("pcap-speed", strconv.FormatFloat(f.Speed, 'g', -1, 64))
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("config: %s: a stream without feeds", c.file)
	}
	a.out = append([]string{"--feed=" + strings.Join(names, ",")}, a.out...)
	return nil
}

// writePatterns writes an inline pattern list as a --patterns JSON file.
func (c *Config) writePatterns(ps []Pattern) (string, error) {
	f, err := os.CreateTemp("", "qstream-patterns-*.json")
	if err != nil {
		return "", fmt.Errorf("config: inline patterns: %w", err)
	}
	c.tmp = append(c.tmp, f.Name())
	_, err = f.Write(patternsJSON(ps))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("config: inline patterns: %w", err)
	}
	return f.Name(), nil
}

// patternsJSON is an inline pattern list as a --patterns JSON file.
func patternsJSON(ps []Pattern) []byte {
	b := []byte{'['}
	for i, p := range ps {
		if i > 0 {
			b = append(b, ",\n "...)
		}
		b = append(b, p.JSON...)
	}
	return append(b, "]\n"...)
}

// Cleanup removes the files RunArgs wrote; call it once `run` has read
// its flags' files (it reads them at start).
func (c *Config) Cleanup() {
	for _, p := range c.tmp {
		os.Remove(p)
	}
	c.tmp = nil
}

// args builds a flag list, skipping values equal to their defaults.
type args struct{ out []string }

func (a *args) set(name, v string) { a.out = append(a.out, "--"+name+"="+v) }

func (a *args) str(name, v, def string) {
	if v != def {
		a.set(name, v)
	}
}

func (a *args) int(name string, v, def int64) {
	if v != def {
		a.set(name, strconv.FormatInt(v, 10))
	}
}

func (a *args) uint(name string, v, def uint64) {
	if v != def {
		a.set(name, strconv.FormatUint(v, 10))
	}
}

func (a *args) bool(name string, v, def bool) {
	if v != def {
		a.set(name, strconv.FormatBool(v))
	}
}

func (a *args) dur(name string, v, def time.Duration) {
	if v != def {
		a.set(name, v.String())
	}
}

func (a *args) list(name string, v, def []string) {
	if !slices.Equal(v, def) {
		a.set(name, strings.Join(v, ","))
	}
}
