package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/feeds"
	"qstream/sinks"
)

// Feed names accepted by `qstream run --feed`.
const (
	feedSynthetic = "synthetic"
	feedTCP       = "tcp"
	feedWS        = "ws"
	feedWebhook   = "webhook"
	feedJetStream = "jetstream"
	feedPcap      = "pcap"
)

var feedNames = []string{feedSynthetic, feedTCP, feedWS, feedWebhook, feedJetStream, feedPcap}

// webhookSecretEnv names the environment variable that may hold the webhook
// secret. The secret is never a flag value: flags show up in ps and in shell
// history.
const webhookSecretEnv = "QSTREAM_WEBHOOK_SECRET"

// Bounds on what the feed flags accept.
const (
	maxWSSubscriptions    = 64       // --ws-subscribe messages
	maxWSSubscriptionSize = 64 << 10 // bytes of one subscription message
	maxSecretFileSize     = 4 << 10
)

// feedFlags are the flags of `qstream run` that choose and configure the
// feeds. register adds them to the run flag set; buildFeeds turns them into
// feeds.
type feedFlags struct {
	list string

	tcpAddr, tcpFormat string
	tcpAck             bool
	tcpLoops           int
	tcpLockThread      bool
	tcpIdleTimeout     time.Duration

	wsURL, wsExchange string
	wsSubscribe       stringList
	wsStaleAfter      time.Duration

	webhookAddr, webhookPath, webhookSecretFile string

	jsURL, jsStream, jsPrefix, jsOwned, jsDurable string
	jsPartitions                                  int
	jsAckWait                                     time.Duration

	pcapPath  string
	pcapSpeed float64

	aws awsFeedFlags // kinesis and sqs (feeds_aws.go)

	output string

	fs *flag.FlagSet // the set they were registered in, for "was it set"
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// register adds the feed flags to fs.
func (ff *feedFlags) register(fs *flag.FlagSet) {
	ff.fs = fs
	fs.StringVar(&ff.list, "feed", feedSynthetic, "comma-separated feeds to run, each on its own goroutine: "+strings.Join(feedNames, ", ")+
		" (--symbols, --rate, --seed and --count configure synthetic; each other feed has its flags below)")
	fs.StringVar(&ff.tcpAddr, "tcp-addr", "", "tcp feed: listen address host:port (port 0 picks one; the bound address is printed)")
	fs.StringVar(&ff.tcpFormat, "tcp-format", "auto", "tcp feed: wire format: lines (newline-delimited JSON ticks), frames (codec binary frames, length-prefixed), or auto (per connection, by its first byte)")
	fs.BoolVar(&ff.tcpAck, "tcp-ack", false, "tcp feed: after each read, once its messages are durable, send the connection's cumulative count ({\"ack\":N} line or an ack frame)")
	fs.IntVar(&ff.tcpLoops, "tcp-loops", 0, "tcp feed: gnet event loops, each with its own publisher (0: GOMAXPROCS)")
	fs.BoolVar(&ff.tcpLockThread, "tcp-lock-thread", true, "tcp feed: lock each event loop to an OS thread of its own, so that a loop woken from epoll_wait does not wait for the Go scheduler to find it a thread (lower latency; --tcp-lock-thread=false: a few per cent more saturated ingest)")
	fs.DurationVar(&ff.tcpIdleTimeout, "tcp-idle-timeout", feeds.DefaultTCPIdleTimeout, "tcp feed: close a connection that sent nothing for this long, so idle clients cannot hold every connection slot (counted; 0: never)")
	fs.StringVar(&ff.wsURL, "ws-url", "", "ws feed: ws:// or wss:// endpoint of the exchange")
	fs.StringVar(&ff.wsExchange, "ws-exchange", "", "ws feed: message format: coinbase, binance or kraken (gap detection: coinbase trade_id, binance trade/aggTrade ids; kraken has none)")
	fs.Var(&ff.wsSubscribe, "ws-subscribe", "ws feed: subscription message sent after every (re)connect: a JSON message, or @FILE with one JSON message per line; repeatable")
	fs.DurationVar(&ff.wsStaleAfter, "ws-stale-after", feeds.DefaultWSStaleAfter, "ws feed: reconnect when no message arrived for this long (negative disables)")
	fs.StringVar(&ff.webhookAddr, "webhook-addr", "", "webhook feed: listen address host:port of the HTTP endpoint")
	fs.StringVar(&ff.webhookPath, "webhook-path", feeds.DefaultWebhookPath, "webhook feed: path of the endpoint (POST, one JSON event or an array, HMAC-SHA256 signed)")
	fs.StringVar(&ff.webhookSecretFile, "webhook-secret-file", "", "webhook feed: file holding the HMAC secret (trailing newline ignored); else the environment variable "+webhookSecretEnv+". Never a flag value")
	fs.StringVar(&ff.jsURL, "js-url", "nats://127.0.0.1:4222", "jetstream feed: NATS server URL")
	fs.StringVar(&ff.jsStream, "js-stream", "", "jetstream feed: name of the stream (it must exist)")
	fs.StringVar(&ff.jsPrefix, "js-subject-prefix", "", "jetstream feed: partition p is the subject <prefix>.<p>; a symbol's partition is FNV-1a(symbol) mod --js-partitions")
	fs.IntVar(&ff.jsPartitions, "js-partitions", 0, "jetstream feed: number of partitions of the stream (1..4096)")
	fs.StringVar(&ff.jsOwned, "js-owned", "", "jetstream feed: partitions this instance consumes, e.g. 0-7 or 0,2,4 (empty: all); instances own disjoint sets")
	fs.StringVar(&ff.jsDurable, "js-durable", feeds.DefaultJetStreamDurable, "jetstream feed: base name of the durable consumers; partition p is consumed by <name>-p<p>, whose acknowledged position survives restarts")
	fs.DurationVar(&ff.jsAckWait, "js-ack-wait", feeds.DefaultJetStreamAckWait, "jetstream feed: the server redelivers a message not acknowledged within this long")
	fs.StringVar(&ff.pcapPath, "pcap", "", "pcap feed: capture of IEX TOPS/DEEP over UDP (pcap or pcapng, gzip or not); the feed ends at the end of the capture")
	ff.aws.register(fs)
	fs.Float64Var(&ff.pcapSpeed, "pcap-speed", 0, "pcap feed: 0 replays as fast as possible; otherwise at the captured pace times this factor (2: twice as fast)")
	fs.StringVar(&ff.output, "output", "", "write every operator output as JSON Lines (the replay format: seq, symbol, ts, price, volume, indicators) to this file, or - for standard output, flushed after each batch the collector delivers; empty: outputs are only counted. "+
		"With the WAL a file holds each output once across crashes (checkpoints record its length, recovery cuts it back and replays); standard output may repeat the outputs replayed after a crash")
}

// feedFlagOwners maps each feed-specific flag to the feed it configures:
// setting one without selecting its feed is a usage error, not silently
// ignored.
var feedFlagOwners = map[string]string{
	"tcp-addr": feedTCP, "tcp-format": feedTCP, "tcp-ack": feedTCP, "tcp-loops": feedTCP, "tcp-lock-thread": feedTCP, "tcp-idle-timeout": feedTCP,
	"ws-url": feedWS, "ws-exchange": feedWS, "ws-subscribe": feedWS, "ws-stale-after": feedWS,
	"webhook-addr": feedWebhook, "webhook-path": feedWebhook, "webhook-secret-file": feedWebhook,
	"js-url": feedJetStream, "js-stream": feedJetStream, "js-subject-prefix": feedJetStream, "js-partitions": feedJetStream,
	"js-owned": feedJetStream, "js-durable": feedJetStream, "js-ack-wait": feedJetStream,
	"pcap": feedPcap, "pcap-speed": feedPcap,
	"symbols": feedSynthetic, "rate": feedSynthetic, "seed": feedSynthetic, "count": feedSynthetic,
}

// feedSet is the feeds `qstream run` runs, built from the flags.
type feedSet struct {
	feeds []feeds.Feed
	descs []string // descriptions for the start-up line, by feed
	// producers is how many engine Publishers the feeds create at most
	// (engine.Config.MaxProducers must allow them).
	producers int
}

// buildFeeds builds the feeds selected by --feed from the flags. getenv
// reads the environment (os.Getenv; tests pass their own). Errors in the
// flags are usageErrors.
func buildFeeds(f *runFlags, getenv func(string) string) (*feedSet, error) {
	ff := &f.feeds
	selected := map[string]bool{}
	var order []string
	for _, name := range strings.Split(ff.list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		if !contains(feedNames, name) {
			return nil, usageError{fmt.Errorf("--feed: unknown feed %q (want %s)", name, strings.Join(feedNames, ", "))}
		}
		if selected[name] {
			return nil, usageError{fmt.Errorf("--feed: %s is listed twice", name)}
		}
		selected[name] = true
		order = append(order, name)
	}
	if len(order) == 0 {
		return nil, usageError{errors.New("--feed: no feed selected")}
	}
	var err error
	if ff.fs != nil {
		ff.fs.Visit(func(fl *flag.Flag) {
			if owner, ok := feedFlagOwners[fl.Name]; ok && !selected[owner] && err == nil {
				err = usageError{fmt.Errorf("--%s configures the %s feed, which --feed %q does not select", fl.Name, owner, ff.list)}
			}
		})
	}
	if err != nil {
		return nil, err
	}
	set := &feedSet{}
	for _, name := range order {
		var fd feeds.Feed
		producers := 1
		switch name {
		case feedSynthetic:
			fd, err = feeds.NewSynthetic(feeds.SyntheticOptions{Seed: f.seed, Symbols: f.symbols, Rate: f.rate, Count: f.count})
			if err != nil {
				err = usageError{err}
			}
		case feedTCP:
			fd, producers, err = buildTCP(ff)
		case feedWS:
			fd, err = buildWS(ff)
		case feedWebhook:
			fd, err = buildWebhook(ff, getenv)
		case feedJetStream:
			fd, producers, err = buildJetStream(ff)
		case feedPcap:
			fd, err = buildPcap(ff)
		default:
			fd, producers, err = buildAWSFeed(name, f)
		}
		if err != nil {
			return nil, err
		}
		set.feeds = append(set.feeds, fd)
		set.descs = append(set.descs, describeFeed(name, f))
		set.producers += producers
	}
	return set, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func buildTCP(ff *feedFlags) (feeds.Feed, int, error) {
	if ff.tcpAddr == "" {
		return nil, 0, usageError{errors.New("--feed tcp needs --tcp-addr")}
	}
	var format feeds.TCPFormat
	switch ff.tcpFormat {
	case "lines":
		format = feeds.TCPLines
	case "frames":
		format = feeds.TCPFrames
	case "auto", "":
		format = feeds.TCPAuto
	default:
		return nil, 0, usageError{fmt.Errorf("--tcp-format: %q is not lines, frames or auto", ff.tcpFormat)}
	}
	loops := ff.tcpLoops
	if loops < 0 || loops > 256 {
		return nil, 0, usageError{fmt.Errorf("--tcp-loops: %d outside 0..256", loops)}
	}
	if loops == 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	idle := ff.tcpIdleTimeout
	if idle <= 0 {
		idle = -1 // the flag's 0 is "never"; TCPConfig's 0 is the default
	}
	s, err := feeds.NewTCPServer(feeds.TCPConfig{Addr: ff.tcpAddr, Format: format, Ack: ff.tcpAck, EventLoops: loops, IdleTimeout: idle,
		SharedThreads: !ff.tcpLockThread})
	if err != nil {
		return nil, 0, usageError{err}
	}
	return s, loops, nil
}

func buildWS(ff *feedFlags) (feeds.Feed, error) {
	if ff.wsURL == "" {
		return nil, usageError{errors.New("--feed ws needs --ws-url")}
	}
	if !strings.HasPrefix(ff.wsURL, "ws://") && !strings.HasPrefix(ff.wsURL, "wss://") {
		return nil, usageError{fmt.Errorf("--ws-url: %q is not a ws:// or wss:// URL", ff.wsURL)}
	}
	exchange := strings.ToLower(ff.wsExchange)
	var gaps func(feeds.WSAdapter) feeds.GapDetector
	switch exchange {
	case codec.ExchangeCoinbase:
		gaps = feeds.AdapterGapDetector // trade_id per product; `sequence` skips on these channels
	case codec.ExchangeBinance:
		gaps = tradeSeqGapDetector // trade and aggTrade ids count every trade of a symbol
	case codec.ExchangeKraken:
		// Kraken v1 trades carry no sequence number.
	case "":
		return nil, usageError{errors.New("--feed ws needs --ws-exchange (coinbase, binance or kraken)")}
	default:
		return nil, usageError{fmt.Errorf("--ws-exchange: unknown exchange %q (want coinbase, binance or kraken)", ff.wsExchange)}
	}
	subs, err := readSubscriptions(ff.wsSubscribe)
	if err != nil {
		return nil, usageError{err}
	}
	w, err := feeds.NewWSFeed(feeds.WSConfig{
		URL:       ff.wsURL,
		Subscribe: subs,
		NewAdapter: func(symbols *codec.SymbolTable) (feeds.WSAdapter, error) {
			return codec.NewAdapter(exchange, codec.NewSymbolCache(symbols), 0)
		},
		NewGapDetector: gaps,
		StaleAfter:     ff.wsStaleAfter,
	})
	if err != nil {
		return nil, usageError{err}
	}
	return w, nil
}

// tradeSeqGapDetector checks Event.Seq of trades strictly per symbol; other
// events (Binance bookTicker update ids, klines) skip numbers by design and
// are not checked.
func tradeSeqGapDetector(a feeds.WSAdapter) feeds.GapDetector {
	return tradeOnly{feeds.SeqGapDetector(codec.SeqStrict)(a)}
}

type tradeOnly struct{ d feeds.GapDetector }

func (t tradeOnly) Check(ev *codec.Event) (feeds.SeqGap, bool) {
	if ev.Kind != codec.KindTrade {
		return feeds.SeqGap{}, false
	}
	return t.d.Check(ev)
}

// readSubscriptions turns the --ws-subscribe values into messages: a value
// is one JSON message, or @FILE naming a file of one JSON message per line
// (blank lines skipped). Every message must be valid JSON.
func readSubscriptions(values []string) ([][]byte, error) {
	var subs [][]byte
	add := func(msg []byte, where string) error {
		msg = bytes.TrimSpace(msg)
		if len(msg) == 0 {
			return nil
		}
		if len(msg) > maxWSSubscriptionSize {
			return fmt.Errorf("--ws-subscribe: %s: message of %d bytes over the %d-byte limit", where, len(msg), maxWSSubscriptionSize)
		}
		if !json.Valid(msg) {
			return fmt.Errorf("--ws-subscribe: %s: not a JSON message", where)
		}
		if len(subs) == maxWSSubscriptions {
			return fmt.Errorf("--ws-subscribe: more than %d messages", maxWSSubscriptions)
		}
		subs = append(subs, append([]byte(nil), msg...))
		return nil
	}
	for _, v := range values {
		path, isFile := strings.CutPrefix(v, "@")
		if !isFile {
			if err := add([]byte(v), "argument"); err != nil {
				return nil, err
			}
			continue
		}
		b, err := readBounded(path, maxWSSubscriptions*maxWSSubscriptionSize)
		if err != nil {
			return nil, fmt.Errorf("--ws-subscribe: %w", err)
		}
		for i, line := range bytes.Split(b, []byte("\n")) {
			if err := add(line, fmt.Sprintf("%s line %d", path, i+1)); err != nil {
				return nil, err
			}
		}
	}
	return subs, nil
}

// readBounded reads a whole file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: over %d bytes", path, limit)
	}
	return b, nil
}

func buildWebhook(ff *feedFlags, getenv func(string) string) (feeds.Feed, error) {
	if ff.webhookAddr == "" {
		return nil, usageError{errors.New("--feed webhook needs --webhook-addr")}
	}
	var secret []byte
	if ff.webhookSecretFile != "" {
		b, err := readBounded(ff.webhookSecretFile, maxSecretFileSize)
		if err != nil {
			return nil, usageError{fmt.Errorf("--webhook-secret-file: %w", err)}
		}
		secret = bytes.TrimRight(b, "\r\n")
	} else {
		secret = []byte(getenv(webhookSecretEnv))
	}
	if len(secret) == 0 {
		return nil, usageError{fmt.Errorf("--feed webhook needs a secret: --webhook-secret-file FILE or the environment variable %s", webhookSecretEnv)}
	}
	w, err := feeds.NewWebhook(feeds.WebhookConfig{Addr: ff.webhookAddr, Path: ff.webhookPath, Secret: secret})
	if err != nil {
		return nil, usageError{err}
	}
	return w, nil
}

func buildJetStream(ff *feedFlags) (feeds.Feed, int, error) {
	if ff.jsStream == "" || ff.jsPrefix == "" || ff.jsPartitions == 0 {
		return nil, 0, usageError{errors.New("--feed jetstream needs --js-stream, --js-subject-prefix and --js-partitions")}
	}
	if ff.jsPartitions < 1 || ff.jsPartitions > feeds.MaxJetStreamPartitions {
		return nil, 0, usageError{fmt.Errorf("--js-partitions: %d outside 1..%d", ff.jsPartitions, feeds.MaxJetStreamPartitions)}
	}
	owned, err := parsePartitions(ff.jsOwned, ff.jsPartitions)
	if err != nil {
		return nil, 0, usageError{fmt.Errorf("--js-owned: %w", err)}
	}
	j, err := feeds.NewJetStreamFeed(feeds.JetStreamConfig{
		URL: ff.jsURL, Stream: ff.jsStream, SubjectPrefix: ff.jsPrefix, Partitions: ff.jsPartitions,
		Owned: owned, Durable: ff.jsDurable, AckWait: ff.jsAckWait,
		// One engine instance per process: a redelivery lands in the same
		// process's window only while the process lives; after a restart
		// the engine's own dedup (issue #5) recognises it by message id.
	})
	if err != nil {
		return nil, 0, usageError{err}
	}
	return j, len(owned), nil
}

// parsePartitions parses a list like "0-7", "0,2,4" or "0-3,8,10-11" of
// partitions in [0, n), sorted and without repeats; "" means all of them.
func parsePartitions(s string, n int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	seen := make(map[int]bool)
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("%q is not a partition number or range", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a range lo-hi with lo <= hi", part)
			}
		}
		if a < 0 || b >= n {
			return nil, fmt.Errorf("%q outside 0..%d", part, n-1)
		}
		for p := a; p <= b; p++ {
			if seen[p] {
				return nil, fmt.Errorf("partition %d is listed twice", p)
			}
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out, nil
}

func buildPcap(ff *feedFlags) (feeds.Feed, error) {
	if ff.pcapPath == "" {
		return nil, usageError{errors.New("--feed pcap needs --pcap PATH")}
	}
	if ff.pcapSpeed < 0 {
		return nil, usageError{fmt.Errorf("--pcap-speed: %g is negative", ff.pcapSpeed)}
	}
	if _, err := os.Stat(ff.pcapPath); err != nil {
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	return feeds.NewPcapFeed(ff.pcapPath, feeds.PcapOptions{Speed: ff.pcapSpeed}), nil
}

// describe names the feeds for the start-up line. The descriptions are
// made when the feeds are built, so they hold when a feed is wrapped later
// (the durable synthetic feed).
func (s *feedSet) describe(*runFlags) string { return strings.Join(s.descs, ", ") }

// describeFeed describes the feed called name as the flags configure it.
func describeFeed(name string, f *runFlags) string {
	ff := &f.feeds
	switch name {
	case feedSynthetic:
		return fmt.Sprintf("synthetic feed of %d symbols at %s msg/s", f.symbols, rateString(f.rate))
	case feedTCP:
		return fmt.Sprintf("tcp feed on %s (%s)", ff.tcpAddr, ff.tcpFormat)
	case feedWS:
		return fmt.Sprintf("%s WebSocket feed %s", ff.wsExchange, ff.wsURL)
	case feedWebhook:
		return fmt.Sprintf("webhook on %s%s", ff.webhookAddr, ff.webhookPath)
	case feedJetStream:
		return fmt.Sprintf("jetstream feed %s partitions %s of %d", ff.jsStream, ownedString(ff.jsOwned), ff.jsPartitions)
	case feedPcap:
		return fmt.Sprintf("pcap replay of %s", ff.pcapPath)
	}
	if d := describeAWSFeed(name, f); d != "" {
		return d
	}
	return name
}

func ownedString(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

// run runs every feed on its own goroutine and returns once all have
// returned: a finite feed (pcap, synthetic with --count) ends by itself, the
// others when ctx is done. The first feed that fails cancels the others and
// its error is returned. A feed that returns ctx's own error because ctx
// ended has not failed. Listening feeds print their bound address on
// stderr once they listen.
func (s *feedSet) run(ctx context.Context, pubs feeds.Publishers, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, fd := range s.feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fd.Run(ctx, pubs)
			if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				err = nil
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("feed %s: %w", fd.Name(), err)
				}
				mu.Unlock()
				cancel()
			}
		}()
		if l, ok := fd.(interface {
			Ready() <-chan struct{}
			Addr() *net.TCPAddr
		}); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-l.Ready():
					fmt.Fprintf(stderr, "qstream: %s: listening on %s\n", fd.Name(), l.Addr())
				case <-ctx.Done():
				}
			}()
		}
	}
	wg.Wait()
	return first
}

// status returns the per-feed part of the status line: the counters that
// are cheap to read while the feeds run.
func (s *feedSet) status() string {
	var b strings.Builder
	for _, fd := range s.feeds {
		switch fd := fd.(type) {
		case *feeds.TCPServer:
			st := fd.Stats()
			fmt.Fprintf(&b, " | tcp conns %d msgs %d rej %d", st.Open, st.Messages, st.Rejects)
		case *feeds.WSFeed:
			st := fd.Stats()
			fmt.Fprintf(&b, " | ws msgs %d events %d rej %d gaps %d connects %d", st.Messages, st.Events, st.Rejects, st.Gaps, st.Connects)
		case *feeds.Webhook:
			st := fd.Stats()
			fmt.Fprintf(&b, " | webhook reqs %d accepted %d events %d rej %d", st.Requests, st.Accepted, st.Events, webhookRejected(st))
		case *feeds.JetStreamFeed:
			st := fd.Stats()
			fmt.Fprintf(&b, " | jetstream msgs %d acked %d rej %d redelivered %d dup %d", st.Fetched, st.Acked, st.Rejected, st.Redelivered, st.Duplicates)
		case *feeds.PcapFeed:
			st := fd.Stats()
			fmt.Fprintf(&b, " | pcap events %d err %d gaps %d missing %d overlaps %d dup %d resets %d",
				st.Events, st.Errors, st.Gaps, st.MissingMessages, st.Overlaps, st.DuplicateSegments, st.Resets)
		case interface{ statusLine() string }:
			b.WriteString(fd.statusLine())
		}
	}
	return b.String()
}

func webhookRejected(st feeds.WebhookStats) uint64 {
	return st.BadSignature + st.Stale + st.Replays + st.Oversize + st.Timeouts + st.Malformed + st.Invalid + st.Unavailable
}

// summary writes one line per feed with its final counters, as key=value
// pairs (scripts and the end-to-end tests read them).
func (s *feedSet) summary(w io.Writer) {
	for _, fd := range s.feeds {
		var b strings.Builder
		fmt.Fprintf(&b, "qstream: feed %s:", fd.Name())
		switch fd := fd.(type) {
		case *feeds.Synthetic:
			continue // the engine's summary says it all
		case *feeds.TCPServer:
			st := fd.Stats()
			fmt.Fprintf(&b, " accepted=%d refused=%d messages=%d bytes=%d rejects=%d errors=%d oversize=%d unaligned=%d truncated=%d idle_closed=%d",
				st.Accepted, st.Refused, st.Messages, st.Bytes, st.Rejects, st.Errors, st.Oversize, st.Unaligned, st.Truncated, st.IdleClosed)
		case *feeds.WSFeed:
			st := fd.Stats()
			fmt.Fprintf(&b, " dials=%d connects=%d messages=%d events=%d rejects=%d skipped=%d gaps=%d missing=%d stale=%d ping_failures=%d oversize=%d",
				st.Dials, st.Connects, st.Messages, st.Events, st.Rejects, st.Skipped, st.Gaps, st.Missing, st.Stale, st.PingFailures, st.Oversize)
		case *feeds.Webhook:
			st := fd.Stats()
			fmt.Fprintf(&b, " requests=%d accepted=%d events=%d bad_signature=%d stale=%d replays=%d oversize=%d timeouts=%d malformed=%d invalid=%d unavailable=%d",
				st.Requests, st.Accepted, st.Events, st.BadSignature, st.Stale, st.Replays, st.Oversize, st.Timeouts, st.Malformed, st.Invalid, st.Unavailable)
		case *feeds.JetStreamFeed:
			st := fd.Stats()
			fmt.Fprintf(&b, " fetched=%d published=%d rejected=%d redelivered=%d duplicates=%d acked=%d batches=%d ack_errors=%d fetch_errors=%d acked_seq=",
				st.Fetched, st.Published, st.Rejected, st.Redelivered, st.Duplicates, st.Acked, st.Batches, st.AckErrors, st.FetchErrors)
			parts := make([]int, 0, len(st.AckedSeq))
			for p := range st.AckedSeq {
				parts = append(parts, p)
			}
			sort.Ints(parts)
			for i, p := range parts {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "%d:%d", p, st.AckedSeq[p])
			}
		case *feeds.PcapFeed:
			st := fd.Stats()
			fmt.Fprintf(&b, " packets=%d segments=%d events=%d errors=%d skipped=%d not_iex=%d gaps=%d missing_messages=%d overlaps=%d duplicates=%d duplicate_messages=%d resets=%d truncated=%t",
				st.Packets, st.Segments, st.Events, st.Errors, st.Skipped, st.NotIEX, st.Gaps, st.MissingMessages,
				st.Overlaps, st.DuplicateSegments, st.DuplicateMessages, st.Resets, st.Truncated)
		default:
			continue
		}
		fmt.Fprintln(w, b.String())
	}
}

// openRunOutput opens the --output sink: nil (outputs only counted) for
// an empty path, standard output for "-" (a sinks.WriterOutput), else the
// file (a sinks.FileOutput), opened without truncating it. close flushes and
// closes it; call it after the engine has stopped.
func openRunOutput(path string, symbols *codec.SymbolTable, cfg sinks.JSONLConfig, stdout io.Writer) (engine.OutputHandler, func() error, error) {
	if path == "" {
		return nil, func() error { return nil }, nil
	}
	cfg.Symbols = symbols
	if path == "-" {
		out := sinks.NewWriterOutput(stdout, cfg)
		return out, out.Flush, nil
	}
	// Its directory is made as the WAL's is (qstream-data/ on a fresh
	// checkout); the file itself changes only once the start succeeded.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("--output: %w", err)
	}
	out, err := sinks.OpenFileOutput(path, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--output: %w", err)
	}
	return out, out.Close, nil
}
