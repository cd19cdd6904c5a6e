package feeds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"qstream/codec"
)

// WSAdapter decodes one raw WebSocket message of an exchange into events,
// appending them to dst; codec.Adapter (codec.NewCoinbase, NewBinance,
// NewKraken) implements it. A message it deliberately ignores (heartbeat,
// subscription acknowledgement) yields no events and no error. An error is
// a *codec.Error with a Reason, and then no events. Single-goroutine.
type WSAdapter interface {
	Decode(msg []byte, dst []codec.Event) ([]codec.Event, error)
}

// Defaults of WSConfig.
const (
	DefaultWSMaxMessageSize = codec.MaxExchangeMessageLen
	DefaultWSMaxEvents      = codec.MaxEventsPerMessage
	DefaultWSPingInterval   = 15 * time.Second
	DefaultWSPongTimeout    = 10 * time.Second
	DefaultWSStaleAfter     = 30 * time.Second
	DefaultWSDialTimeout    = 10 * time.Second
)

// Errors of the WebSocket feed.
var (
	// ErrWSConfig wraps every configuration error of NewWSFeed.
	ErrWSConfig = errors.New("ws: invalid config")
	// ErrWSStale ends a session in which no message arrived for StaleAfter.
	ErrWSStale = errors.New("ws: stale: no message within the staleness limit")
	// ErrWSPing ends a session whose ping got no pong within PongTimeout.
	ErrWSPing = errors.New("ws: no pong")
	// ErrWSOversize ends a session that received a message over
	// MaxMessageSize (the library closes it with status 1009).
	ErrWSOversize = errors.New("ws: message over the size limit")
)

// WSConfig configures a WSFeed.
type WSConfig struct {
	// Name identifies the feed ("ws" if empty) and names its Publisher.
	Name string
	// URL is the ws:// or wss:// endpoint.
	URL string
	// Header is sent with the handshake (API keys, origin).
	Header http.Header
	// HTTPClient performs the handshake; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Subscribe lists the messages sent, in order and as text, after every
	// connect: the subscription, and the resubscription after a reconnect.
	Subscribe [][]byte
	// NewAdapter returns the decoder for this feed's messages, once per Run,
	// over the engine's symbol table. Required.
	NewAdapter func(symbols *codec.SymbolTable) (WSAdapter, error)
	// NewGapDetector returns the sequence checker for the adapter's events
	// (see SeqGapDetector and AdapterGapDetector); nil means none. It is
	// kept across reconnects, so it reports what a disconnection lost.
	NewGapDetector func(a WSAdapter) GapDetector
	// OnGap, if set, is called (on the feed's goroutine) for every gap.
	OnGap func(SeqGap)
	// Source is stored in Event.Source of every event.
	Source uint16
	// MaxMessageSize bounds one message; a larger one ends the session (the
	// message is rejected with ReasonOversize) and the feed reconnects.
	// Default 1 MiB.
	MaxMessageSize int
	// MaxEvents is the capacity of the decode buffer; adapters append at most
	// codec.MaxEventsPerMessage events per message. Default 256.
	MaxEvents int
	// PingInterval is the period of keepalive pings; each must be answered
	// within PongTimeout or the session ends. Negative disables pings.
	// Defaults 15s and 10s.
	PingInterval, PongTimeout time.Duration
	// StaleAfter ends a session in which no message arrived for this long
	// (time spent waiting in Publish does not count). Negative disables.
	// Default 30s.
	StaleAfter time.Duration
	// DialTimeout bounds the handshake plus the subscription writes.
	// Default 10s.
	DialTimeout time.Duration
	// Backoff spaces the reconnects. A session that received at least one
	// message resets the count of consecutive failures.
	Backoff Backoff
	// JitterSeed seeds the backoff jitter (0: random).
	JitterSeed uint64
	// Logger receives connects, disconnects and gaps; default slog.Default().
	Logger *slog.Logger
}

// WSFeed is a WebSocket client feed for exchange-style endpoints. Run dials
// URL, sends the Subscribe messages, and reads: each message is decoded by
// the adapter into a preallocated buffer, every event goes through the gap
// detector and is published, and the Publisher is flushed after each
// message. Reads use a context without deadline and a buffer of
// MaxMessageSize, so a message costs no allocation in the feed (the adapter
// and the websocket library may have their own).
//
// Keepalive and staleness run on two helper goroutines per session, which
// end the session by closing the connection; the read loop then returns and
// Run reconnects after a Backoff delay with full jitter (bounded by
// Backoff.MaxAttempts, or unbounded), resubscribes, and carries on with the
// same gap detector. Staleness is detected without reading the clock per
// message: the read loop counts messages and the watchdog compares counts.
// While the read loop waits in Publish (backpressure), neither pings nor
// staleness fire: the silence is ours, not the server's.
//
// A gap is counted (WSStats.Gaps, Missing), logged, passed to OnGap and
// sent to Publisher.Reject with ReasonSequenceGap, the message that revealed
// it and its position (Line = message number in the feed); the event itself
// is published.
//
// Events are published with Seq 0, after the gap check has used the
// exchange's numbers: the engine's Publisher gives the feed one increasing
// source offset, which output keys and restarts rely on.
type WSFeed struct {
	cfg WSConfig
	log *slog.Logger

	// Set up by Run, then owned by its goroutine.
	pub     Publisher
	adapter WSAdapter
	gaps    GapDetector
	buf     []byte
	dst     []codec.Event
	msgNo   int64

	// Shared with the session's helper goroutines.
	publishing atomic.Bool // the read loop is inside Publish/Flush
	endReason  atomic.Pointer[error]

	st wsCounters
}

type wsCounters struct {
	dials, connects, dialErrors, subscribes       atomic.Uint64
	messages, events, rejects, skipped            atomic.Uint64
	gaps, missing, stale, pings, pingFails, overs atomic.Uint64
}

// WSStats is a snapshot of a WSFeed's counters.
type WSStats struct {
	Dials        uint64 // connection attempts
	Connects     uint64 // sessions established (handshake and subscription done)
	DialErrors   uint64 // attempts that failed before the session was up
	Subscribes   uint64 // subscription messages sent
	Messages     uint64 // messages received
	Events       uint64 // events published
	Rejects      uint64 // messages the adapter rejected
	Skipped      uint64 // messages that yielded no event (heartbeats, acks)
	Gaps         uint64 // sequence gaps reported
	Missing      uint64 // sequence numbers missing in those gaps
	Stale        uint64 // sessions ended by the staleness watchdog
	Pings        uint64 // pings answered
	PingFailures uint64 // sessions ended by a ping without pong
	Oversize     uint64 // sessions ended by an oversize message
}

// NewWSFeed validates cfg and applies defaults.
func NewWSFeed(cfg WSConfig) (*WSFeed, error) {
	if cfg.Name == "" {
		cfg.Name = "ws"
	}
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is empty", ErrWSConfig)
	}
	if cfg.NewAdapter == nil {
		return nil, fmt.Errorf("%w: NewAdapter is nil", ErrWSConfig)
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultWSMaxMessageSize
	}
	if cfg.MaxMessageSize > 64<<20 {
		return nil, fmt.Errorf("%w: MaxMessageSize %d over 64 MiB", ErrWSConfig, cfg.MaxMessageSize)
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultWSMaxEvents
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultWSPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultWSPongTimeout
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = DefaultWSStaleAfter
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultWSDialTimeout
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &WSFeed{cfg: cfg, log: cfg.Logger.With("feed", cfg.Name, "url", cfg.URL)}, nil
}

// Name implements Feed.
func (w *WSFeed) Name() string { return w.cfg.Name }

// Stats returns a snapshot of the counters; safe to call at any time.
func (w *WSFeed) Stats() WSStats {
	s := &w.st
	return WSStats{
		Dials: s.dials.Load(), Connects: s.connects.Load(), DialErrors: s.dialErrors.Load(),
		Subscribes: s.subscribes.Load(), Messages: s.messages.Load(), Events: s.events.Load(),
		Rejects: s.rejects.Load(), Skipped: s.skipped.Load(), Gaps: s.gaps.Load(), Missing: s.missing.Load(),
		Stale: s.stale.Load(), Pings: s.pings.Load(), PingFailures: s.pingFails.Load(), Oversize: s.overs.Load(),
	}
}

// Run connects and reads until ctx is done (it then returns nil), the
// engine stops (ErrStopped), or Backoff.MaxAttempts consecutive attempts
// fail (an error wrapping ErrRetriesExhausted). Call it once.
func (w *WSFeed) Run(ctx context.Context, pubs Publishers) error {
	pub, err := pubs.NewPublisher(w.cfg.Name)
	if err != nil {
		return fmt.Errorf("ws: %s: publisher: %w", w.cfg.Name, err)
	}
	adapter, err := w.cfg.NewAdapter(pubs.Symbols())
	if err != nil {
		return fmt.Errorf("ws: %s: adapter: %w", w.cfg.Name, err)
	}
	w.pub, w.adapter = pub, adapter
	if w.cfg.NewGapDetector != nil {
		w.gaps = w.cfg.NewGapDetector(adapter)
	}
	w.buf = make([]byte, w.cfg.MaxMessageSize+1) // +1: see readMessage
	w.dst = make([]codec.Event, 0, w.cfg.MaxEvents)
	rnd := newJitterRand(w.cfg.JitterSeed)
	failures := 0
	for {
		got, err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrStopped) {
			return fmt.Errorf("ws: %s: %w", w.cfg.Name, ErrStopped)
		}
		if got > 0 {
			failures = 0
		}
		failures++
		if w.cfg.Backoff.Exhausted(failures) {
			return fmt.Errorf("ws: %s: %w after %d attempts: %v", w.cfg.Name, ErrRetriesExhausted, failures, err)
		}
		d := w.cfg.Backoff.Delay(failures-1, rnd)
		w.log.Warn("ws: disconnected; reconnecting", "err", err, "messages", got, "attempt", failures, "delay", d)
		if sleepCtx(ctx, d) != nil {
			return nil
		}
	}
}

// session runs one connection: dial, subscribe, read until it ends. It
// returns the number of messages it read and why it ended.
func (w *WSFeed) session(ctx context.Context) (int64, error) {
	w.st.dials.Add(1)
	dctx, cancel := context.WithTimeout(ctx, w.cfg.DialTimeout)
	conn, _, err := websocket.Dial(dctx, w.cfg.URL, &websocket.DialOptions{
		HTTPClient: w.cfg.HTTPClient,
		HTTPHeader: w.cfg.Header,
	})
	if err != nil {
		cancel()
		w.st.dialErrors.Add(1)
		return 0, fmt.Errorf("ws: dial: %w", err)
	}
	// The library's limit is one byte above ours: it fails a read at the
	// limit even when the message ends there, and readMessage needs to see
	// the end of a message of exactly MaxMessageSize bytes.
	conn.SetReadLimit(int64(w.cfg.MaxMessageSize) + 1)
	for _, sub := range w.cfg.Subscribe {
		if err := conn.Write(dctx, websocket.MessageText, sub); err != nil {
			cancel()
			conn.CloseNow()
			w.st.dialErrors.Add(1)
			return 0, fmt.Errorf("ws: subscribe: %w", err)
		}
		w.st.subscribes.Add(1)
	}
	cancel()
	w.st.connects.Add(1)
	w.log.Info("ws: connected", "subscriptions", len(w.cfg.Subscribe))

	w.endReason.Store(nil)
	sctx, scancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if w.cfg.StaleAfter > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); w.watchStale(sctx, conn) }()
	}
	if w.cfg.PingInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); w.keepalive(sctx, conn) }()
	}
	wg.Add(1)
	go func() { // ctx done: end the read
		defer wg.Done()
		<-sctx.Done()
		conn.CloseNow()
	}()
	start := w.msgNo
	err = w.readLoop(conn)
	scancel()
	wg.Wait()
	conn.CloseNow()
	if r := w.endReason.Load(); r != nil {
		err = *r
	}
	return w.msgNo - start, err
}

// end records why a helper goroutine ended the session and closes it.
func (w *WSFeed) end(conn *websocket.Conn, reason error) {
	w.endReason.CompareAndSwap(nil, &reason)
	conn.CloseNow()
}

// readLoop reads, decodes and publishes messages until the connection
// fails or is closed.
func (w *WSFeed) readLoop(conn *websocket.Conn) error {
	bg := context.Background() // no deadline: no per-read allocation; closing the conn ends a read
	for {
		_, r, err := conn.Reader(bg)
		if err != nil {
			return err
		}
		n, err := readMessage(r, w.buf)
		if err != nil {
			if errors.Is(err, ErrWSOversize) {
				w.st.overs.Add(1)
				w.msgNo++
				w.pub.Reject(w.buf[:min(n, tcpRejectRawMax)], codec.ReasonOversize, Position{Line: w.msgNo, Offset: -1}, ErrWSOversize)
				return ErrWSOversize
			}
			return err
		}
		w.msgNo++
		w.st.messages.Add(1) // also the staleness watchdog's progress count
		w.publishing.Store(true)
		err = w.handle(w.buf[:n])
		w.publishing.Store(false)
		if err != nil {
			return err
		}
	}
}

// readMessage reads one whole message into buf. A message that fills buf
// (more than MaxMessageSize bytes; buf has one byte more) is an
// ErrWSOversize; its rest is not read.
func readMessage(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if n == len(buf) {
			return n, ErrWSOversize
		}
	}
}

// handle decodes one message and publishes its events.
func (w *WSFeed) handle(msg []byte) error {
	events, err := w.adapter.Decode(msg, w.dst[:0])
	if err != nil {
		w.st.rejects.Add(1)
		w.pub.Reject(msg, codec.ReasonOf(err), Position{Line: w.msgNo, Offset: -1}, err)
		return nil
	}
	if len(events) == 0 {
		w.st.skipped.Add(1)
		return nil
	}
	for i := range events {
		ev := &events[i]
		ev.Source, ev.IngestNs = w.cfg.Source, 0
		if w.gaps != nil {
			if g, ok := w.gaps.Check(ev); ok {
				w.reportGap(msg, g)
			}
		}
		// An exchange's sequence numbers (per symbol, restarting with a
		// new connection) have served the gap check; Seq 0 lets the
		// engine's Publisher number the feed's events as one increasing
		// source offset (unique output keys, watermarks after a restart).
		ev.Seq = 0
		if err := w.pub.Publish(ev); err != nil {
			return err
		}
	}
	w.st.events.Add(uint64(len(events)))
	return w.pub.Flush()
}

func (w *WSFeed) reportGap(msg []byte, g SeqGap) {
	g.Msg = w.msgNo
	w.st.gaps.Add(1)
	w.st.missing.Add(g.Missing)
	w.log.Warn("ws: sequence gap", "symbol", g.Symbol, "missing", g.Missing, "last", g.Last, "next", g.Next, "message", g.Msg)
	w.pub.Reject(msg, codec.ReasonSequenceGap, Position{Line: w.msgNo, Offset: -1}, &SeqGapError{Gap: g})
	if w.cfg.OnGap != nil {
		w.cfg.OnGap(g)
	}
}

// watchStale ends the session when the message count has not moved for
// StaleAfter while the read loop was waiting for the network. It checks four
// times per StaleAfter.
func (w *WSFeed) watchStale(ctx context.Context, conn *websocket.Conn) {
	period := max(w.cfg.StaleAfter/4, time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	last, since := w.st.messages.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := w.st.messages.Load(); n != last || w.publishing.Load() {
				last, since = n, now
				continue
			}
			if now.Sub(since) >= w.cfg.StaleAfter {
				w.st.stale.Add(1)
				w.log.Warn("ws: stale; reconnecting", "silence", now.Sub(since).Round(time.Millisecond))
				w.end(conn, ErrWSStale)
				return
			}
		}
	}
}

// keepalive pings every PingInterval and ends the session when a pong does
// not come back within PongTimeout. Pongs are read by the read loop, so no
// ping is sent while it waits in Publish.
func (w *WSFeed) keepalive(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(w.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.publishing.Load() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, w.cfg.PongTimeout)
		err := conn.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if w.publishing.Load() {
				continue // the pong is queued behind a blocked Publish
			}
			w.st.pingFails.Add(1)
			w.log.Warn("ws: ping without pong; reconnecting", "err", err)
			w.end(conn, fmt.Errorf("%w: %v", ErrWSPing, err))
			return
		}
		w.st.pings.Add(1)
	}
}
