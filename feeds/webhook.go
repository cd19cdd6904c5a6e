package feeds

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"qstream/codec"
)

// Webhook request headers. The signature is
//
//	X-Qstream-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, timestamp + "." + body)>
//
// where timestamp is the X-Qstream-Timestamp header exactly as sent (Unix
// seconds, decimal) and body the raw request body. X-Qstream-Delivery is the
// sender's unique id of the delivery (1 to 128 bytes); a retry of the same
// delivery reuses it.
const (
	WebhookTimestampHeader = "X-Qstream-Timestamp"
	WebhookSignatureHeader = "X-Qstream-Signature"
	WebhookDeliveryHeader  = "X-Qstream-Delivery"
)

// Limits and defaults of WebhookConfig.
const (
	DefaultWebhookPath              = "/webhook"
	DefaultWebhookTolerance         = 5 * time.Minute
	DefaultWebhookMaxBodyBytes      = 1 << 20
	DefaultWebhookMaxEvents         = 1000
	DefaultWebhookReplayCapacity    = 100_000
	DefaultWebhookConcurrency       = 16
	DefaultWebhookAcceptTimeout     = 10 * time.Second
	DefaultWebhookReadHeaderTimeout = 5 * time.Second
	DefaultWebhookReadTimeout       = 30 * time.Second
	DefaultWebhookIdleTimeout       = 60 * time.Second
	DefaultWebhookMaxHeaderBytes    = 16 << 10
	WebhookMaxDeliveryIDLen         = 128
	webhookSignaturePrefix          = "sha256="
	webhookGroupMax                 = 64 // requests made durable by one Barrier, at most
)

// ErrWebhookConfig wraps every configuration error of NewWebhook.
var ErrWebhookConfig = errors.New("webhook: invalid config")

// WebhookConfig configures a Webhook: the specification's
// ApiWebhook { endpoint, port } is Path and Addr.
type WebhookConfig struct {
	// Name identifies the feed ("webhook" if empty) and names its Publisher.
	Name string
	// Addr is the listen address, "host:port" (port 0 picks one; see Addr).
	Addr string
	// Path is the endpoint (default "/webhook"); other paths get 404.
	Path string
	// Secret is the HMAC-SHA256 key shared with the sender. Required.
	Secret []byte
	// Tolerance is how far the signed timestamp may be from Now, either way
	// (default 5 minutes). Delivery ids are remembered for as long as their
	// timestamp is within it, which is what makes replays detectable.
	Tolerance time.Duration
	// MaxBodyBytes bounds a request body (default 1 MiB): 413 beyond it.
	MaxBodyBytes int64
	// MaxEvents bounds the events of one request (default 1000): 413 beyond.
	MaxEvents int
	// ReplayCapacity bounds the delivery ids remembered (default 100,000).
	// When that many unexpired ids are held, new deliveries get 503 with
	// Retry-After rather than a replay window with holes.
	ReplayCapacity int
	// Concurrency bounds the requests being parsed or waiting for
	// durability at once (default 16); each holds a parser and an event
	// buffer. A request that finds none free within AcceptTimeout gets 503.
	Concurrency int
	// AcceptTimeout bounds a request's wait for a free slot and then for
	// its events to become durable (default 10s): 503 after it.
	AcceptTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are the http.Server's
	// (defaults 5s, 30s, 60s): a client that dribbles its headers is cut
	// off after ReadHeaderTimeout, one that dribbles its body gets 408.
	// WriteTimeout defaults to ReadTimeout + AcceptTimeout + 5s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request headers (default 16 KiB).
	MaxHeaderBytes int
	// Now is the processing-time clock for the tolerance (default time.Now).
	Now func() time.Time
	// Source is stored in Event.Source of every event.
	Source uint16
	// NewParser returns a JSON parser; one per concurrent request. Nil means
	// codec.NewParser with MaxBodyBytes as the message limit.
	NewParser func(symbols *codec.SymbolTable) JSONParser
	// Logger receives start, stop and publisher failures; default
	// slog.Default().
	Logger *slog.Logger
}

// Webhook is the HTTP webhook feed: POST Path with one event (a JSON object
// in any shape codec.Parser accepts) or a JSON array of them, signed with
// HMAC-SHA256 (see WebhookSignatureHeader).
//
// A request is checked in this order, and the first failure answers it:
//
//	405 method_not_allowed   not a POST
//	413 body_too_large       Content-Length or the body over MaxBodyBytes (http.MaxBytesReader)
//	408 request_timeout      the body did not arrive within ReadTimeout
//	400 bad_timestamp        timestamp header missing or not Unix seconds
//	400 bad_delivery_id      delivery header missing or over 128 bytes
//	401 bad_signature        signature header missing, malformed or wrong (hmac.Equal)
//	401 stale_timestamp      timestamp further than Tolerance from now
//	409 replayed_delivery    delivery id already accepted within the tolerance window
//	409 delivery_in_progress the same delivery id is being processed by another request
//	503 replay_cache_full    ReplayCapacity unexpired ids held (Retry-After)
//	400 malformed_json       not a JSON object or array of objects
//	413 too_many_events      more than MaxEvents
//	422 no_events            an empty array
//	422 <reason>             an event the parser rejects (codec.Reason name; "index" says which)
//	503 unavailable          no slot, or the events were not made durable within AcceptTimeout
//	202                      {"accepted":N}: every event published and durable
//
// A request's events are accepted all or none: an invalid one fails the
// request (and goes to the dead-letter output), nothing of it is published.
// The delivery id is remembered only once the events are durable, so a
// sender may retry a failed delivery with the same id. Error bodies are
// {"error":"<code>","detail":"..."}.
//
// Concurrency: net/http runs handlers on many goroutines, but a Publisher
// is single-goroutine. Handlers parse in parallel (each with its own parser
// from a pool of Concurrency) and hand their events to one publishing
// goroutine over a bounded queue. That goroutine publishes every request it
// has queued, calls Publisher.Barrier once for all of them (group commit),
// and only then answers them; so 202 means durably accepted, and concurrent
// requests share the cost of a sync.
//
// Events are published with Seq 0: the Publisher numbers them, one source
// offset that continues after a restart (unique output keys, watermarks at
// once after a restart). Redelivered events are caught by the delivery id
// within the tolerance and, when they carry message ids, by the engine's
// dedup.
type Webhook struct {
	cfg WebhookConfig
	log *slog.Logger

	started atomic.Bool
	ready   chan struct{}
	addr    atomic.Pointer[net.TCPAddr]

	slots  chan *webhookSlot // free request slots (parser + buffers)
	queue  chan *webhookSlot // slots waiting for the publishing goroutine
	replay webhookReplay
	pubs   Publishers

	st webhookCounters
}

// webhookSlot is what one request holds while it is served: its parser,
// body buffer and events, and the channel its result comes back on.
type webhookSlot struct {
	parser JSONParser
	// texts holds the events' texts back to back; textEnd[i] is where
	// events[i]'s ends (its start is the previous one's end).
	texts   []byte
	textEnd []int
	body    []byte
	events  []codec.Event
	// A rejection to hand to Publisher.Reject instead of events.
	reject    bool
	rejRaw    []byte
	rejReason codec.Reason
	rejPos    Position
	rejErr    error
	// Set by the handler for the publishing goroutine.
	delivery string
	expires  int64 // Unix ns after which the delivery id is forgotten
	done     chan error
}

type webhookCounters struct {
	requests, accepted, events, badSignature, stale, replays atomic.Uint64
	oversize, timeouts, malformed, invalid, unavailable      atomic.Uint64
	barriers                                                 atomic.Uint64
}

// WebhookStats is a snapshot of a Webhook's counters.
type WebhookStats struct {
	Requests     uint64 // requests to Path
	Accepted     uint64 // requests answered 202
	Events       uint64 // events published and made durable
	BadSignature uint64 // 401 bad_signature
	Stale        uint64 // 401 stale_timestamp
	Replays      uint64 // 409
	Oversize     uint64 // 413
	Timeouts     uint64 // 408
	Malformed    uint64 // other 400s and 405
	Invalid      uint64 // 422
	Unavailable  uint64 // 503
	Barriers     uint64 // Publisher.Barrier calls (one per group of requests)
}

// NewWebhook validates cfg and applies defaults.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.Name == "" {
		cfg.Name = "webhook"
	}
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Addr is empty", ErrWebhookConfig)
	}
	if len(cfg.Secret) == 0 {
		return nil, fmt.Errorf("%w: Secret is empty", ErrWebhookConfig)
	}
	if cfg.Path == "" {
		cfg.Path = DefaultWebhookPath
	}
	if cfg.Path[0] != '/' {
		return nil, fmt.Errorf("%w: Path %q does not start with /", ErrWebhookConfig, cfg.Path)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Tolerance, DefaultWebhookTolerance)
	def(&cfg.AcceptTimeout, DefaultWebhookAcceptTimeout)
	def(&cfg.ReadHeaderTimeout, DefaultWebhookReadHeaderTimeout)
	def(&cfg.ReadTimeout, DefaultWebhookReadTimeout)
	def(&cfg.IdleTimeout, DefaultWebhookIdleTimeout)
	def(&cfg.WriteTimeout, cfg.ReadTimeout+cfg.AcceptTimeout+5*time.Second)
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultWebhookMaxBodyBytes
	}
	if cfg.MaxBodyBytes > 64<<20 {
		return nil, fmt.Errorf("%w: MaxBodyBytes %d over 64 MiB", ErrWebhookConfig, cfg.MaxBodyBytes)
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultWebhookMaxEvents
	}
	if cfg.ReplayCapacity <= 0 {
		cfg.ReplayCapacity = DefaultWebhookReplayCapacity
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultWebhookConcurrency
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultWebhookMaxHeaderBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewParser == nil {
		cfg.NewParser = codecParsers(int(cfg.MaxBodyBytes), cfg.Source)
	}
	w := &Webhook{
		cfg:   cfg,
		log:   cfg.Logger.With("feed", cfg.Name),
		ready: make(chan struct{}),
		slots: make(chan *webhookSlot, cfg.Concurrency),
		queue: make(chan *webhookSlot, cfg.Concurrency),
	}
	w.replay.init(cfg.ReplayCapacity)
	return w, nil
}

// Name implements Feed.
func (w *Webhook) Name() string { return w.cfg.Name }

// Ready is closed once the endpoint listens; Addr is valid from then on.
func (w *Webhook) Ready() <-chan struct{} { return w.ready }

// Addr returns the bound listen address, or nil before Ready.
func (w *Webhook) Addr() *net.TCPAddr { return w.addr.Load() }

// Stats returns a snapshot of the counters.
func (w *Webhook) Stats() WebhookStats {
	s := &w.st
	return WebhookStats{
		Requests: s.requests.Load(), Accepted: s.accepted.Load(), Events: s.events.Load(),
		BadSignature: s.badSignature.Load(), Stale: s.stale.Load(), Replays: s.replays.Load(),
		Oversize: s.oversize.Load(), Timeouts: s.timeouts.Load(), Malformed: s.malformed.Load(),
		Invalid: s.invalid.Load(), Unavailable: s.unavailable.Load(), Barriers: s.barriers.Load(),
	}
}

// Run listens on Addr and serves until ctx is done, then shuts the server
// down gracefully (in-flight requests are answered) and returns nil. Call
// it once.
func (w *Webhook) Run(ctx context.Context, pubs Publishers) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("webhook: already started")
	}
	pub, err := pubs.NewPublisher(w.cfg.Name)
	if err != nil {
		return fmt.Errorf("webhook: publisher: %w", err)
	}
	w.pubs = pubs
	for range w.cfg.Concurrency {
		w.slots <- &webhookSlot{
			parser: w.cfg.NewParser(pubs.Symbols()),
			events: make([]codec.Event, 0, w.cfg.MaxEvents),
			done:   make(chan error, 1),
		}
	}
	ln, err := net.Listen("tcp", w.cfg.Addr)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		w.addr.Store(a)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(w.cfg.Path, w.serveHTTP)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: w.cfg.ReadHeaderTimeout,
		ReadTimeout:       w.cfg.ReadTimeout,
		WriteTimeout:      w.cfg.WriteTimeout,
		IdleTimeout:       w.cfg.IdleTimeout,
		MaxHeaderBytes:    w.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
	}
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); w.publishLoop(pubCtx, pub) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	close(w.ready)
	w.log.Info("webhook: listening", "addr", ln.Addr().String(), "path", w.cfg.Path)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("webhook: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), w.cfg.AcceptTimeout+time.Second)
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	cancel()
	stopPub() // after Shutdown: in-flight requests were answered
	<-pubDone
	return runErr
}

// publishLoop is the one goroutine that uses the Publisher. It takes every
// request queued, publishes their events (or rejections), makes them
// durable with one Barrier and answers them.
func (w *Webhook) publishLoop(ctx context.Context, pub Publisher) {
	group := make([]*webhookSlot, 0, webhookGroupMax)
	for {
		group = group[:0]
		select {
		case <-ctx.Done():
			return
		case s := <-w.queue:
			group = append(group, s)
		}
	more:
		for len(group) < webhookGroupMax {
			select {
			case s := <-w.queue:
				group = append(group, s)
			default:
				break more
			}
		}
		var err error
		n := 0
		for _, s := range group {
			if s.reject {
				pub.Reject(s.rejRaw, s.rejReason, s.rejPos, s.rejErr)
				continue
			}
			for i := range s.events {
				start := 0
				if i > 0 {
					start = s.textEnd[i-1]
				}
				if err = pub.PublishText(&s.events[i], s.texts[start:s.textEnd[i]]); err != nil {
					break
				}
				n++
			}
			if err != nil {
				break
			}
		}
		if err == nil && n > 0 {
			w.st.barriers.Add(1)
			err = pub.Barrier(ctx)
		}
		if err != nil {
			w.log.Error("webhook: events not made durable", "requests", len(group), "err", err)
		}
		now := w.cfg.Now().UnixNano()
		for _, s := range group {
			if !s.reject {
				if err == nil {
					w.replay.accept(s.delivery, s.expires, now)
				} else {
					w.replay.release(s.delivery)
				}
			}
			s.done <- err
		}
	}
}

// errWebhookTimeout is the result of a wait that AcceptTimeout ended.
var errWebhookTimeout = errors.New("webhook: not accepted within AcceptTimeout")

func (w *Webhook) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	w.st.requests.Add(1)
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		w.fail(rw, http.StatusMethodNotAllowed, "method_not_allowed", "use POST", -1)
		return
	}
	if r.ContentLength > w.cfg.MaxBodyBytes {
		w.fail(rw, http.StatusRequestEntityTooLarge, "body_too_large", "Content-Length over the limit", -1)
		return
	}
	timer := time.NewTimer(w.cfg.AcceptTimeout)
	defer timer.Stop()
	var s *webhookSlot
	select {
	case s = <-w.slots:
	case <-timer.C:
		w.fail(rw, http.StatusServiceUnavailable, "unavailable", "all request slots busy", -1)
		return
	case <-r.Context().Done():
		return
	}
	pending := false // s is with the publishing goroutine: it must come back before the slot is reused
	defer func() {
		if pending {
			<-s.done
		}
		s.body, s.reject, s.rejRaw, s.rejErr, s.delivery = s.body[:0], false, nil, nil, ""
		w.slots <- s
	}()

	// The body first: the signature covers it.
	body, err := readBody(http.MaxBytesReader(rw, r.Body, w.cfg.MaxBodyBytes), s.body[:0], w.cfg.MaxBodyBytes)
	s.body = body[:0]
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			w.fail(rw, http.StatusRequestEntityTooLarge, "body_too_large", "body over the limit", -1)
		case errors.As(err, &ne) && ne.Timeout():
			w.fail(rw, http.StatusRequestTimeout, "request_timeout", "body not received in time", -1)
		default:
			w.fail(rw, http.StatusBadRequest, "body_read_error", "", -1)
		}
		return
	}

	tsText := r.Header.Get(WebhookTimestampHeader)
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || ts <= 0 || ts > 1<<40 {
		w.fail(rw, http.StatusBadRequest, "bad_timestamp", WebhookTimestampHeader+" must be Unix seconds", -1)
		return
	}
	delivery := r.Header.Get(WebhookDeliveryHeader)
	if delivery == "" || len(delivery) > WebhookMaxDeliveryIDLen {
		w.fail(rw, http.StatusBadRequest, "bad_delivery_id", WebhookDeliveryHeader+" must have 1 to 128 bytes", -1)
		return
	}
	if !w.signatureOK(r.Header.Get(WebhookSignatureHeader), tsText, body) {
		w.fail(rw, http.StatusUnauthorized, "bad_signature", "", -1)
		return
	}
	now := w.cfg.Now()
	tol := int64(w.cfg.Tolerance / time.Second)
	if d := now.Unix() - ts; d > tol || -d > tol {
		w.fail(rw, http.StatusUnauthorized, "stale_timestamp", "timestamp outside the tolerance", -1)
		return
	}
	switch w.replay.reserve(delivery, now.UnixNano()) {
	case replaySeen:
		w.fail(rw, http.StatusConflict, "replayed_delivery", "delivery already accepted", -1)
		return
	case replayPending:
		w.fail(rw, http.StatusConflict, "delivery_in_progress", "delivery being processed", -1)
		return
	case replayFull:
		rw.Header().Set("Retry-After", "1")
		w.fail(rw, http.StatusServiceUnavailable, "replay_cache_full", "too many deliveries within the tolerance", -1)
		return
	}
	reserved := true
	defer func() {
		if reserved {
			w.replay.release(delivery)
		}
	}()

	if code, reason, detail, idx := w.parse(s, body); code != 0 {
		if code == http.StatusUnprocessableEntity && idx >= 0 {
			// The invalid event goes to the dead-letter output, through the
			// publishing goroutine (the only user of the Publisher).
			pending = true
			w.queue <- s
			<-s.done
			pending = false
		}
		w.fail(rw, code, reason, detail, idx)
		return
	}

	s.delivery = delivery
	s.expires = (ts + tol + 1) * int64(time.Second)
	pending = true
	reserved = false // the publishing goroutine accepts or releases it now
	select {
	case w.queue <- s:
	case <-timer.C:
		pending, reserved = false, true
		w.fail(rw, http.StatusServiceUnavailable, "unavailable", "publisher queue full", -1)
		return
	}
	select {
	case err = <-s.done:
		pending = false
	case <-timer.C:
		err = errWebhookTimeout
	}
	if err != nil {
		w.fail(rw, http.StatusServiceUnavailable, "unavailable", "events not made durable", -1)
		return
	}
	w.st.accepted.Add(1)
	w.st.events.Add(uint64(len(s.events)))
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(http.StatusAccepted)
	_, _ = fmt.Fprintf(rw, `{"accepted":%d}`+"\n", len(s.events))
}

// parse fills s.events from body: one JSON object or an array of them.
// On failure it returns the HTTP status, error code and detail, and the
// index of the offending event (-1 if none); for an invalid event it also
// prepares s's rejection.
func (w *Webhook) parse(s *webhookSlot, body []byte) (code int, reason, detail string, idx int) {
	s.events = s.events[:0]
	s.texts, s.textEnd = s.texts[:0], s.textEnd[:0]
	it := jsonArrayIter{b: body}
	if err := it.start(); err != nil {
		return http.StatusBadRequest, "malformed_json", err.Error(), -1
	}
	for i := 0; ; i++ {
		elem, off, err := it.next()
		if err != nil {
			return http.StatusBadRequest, "malformed_json", err.Error(), -1
		}
		if elem == nil {
			break
		}
		if len(s.events) == w.cfg.MaxEvents {
			return http.StatusRequestEntityTooLarge, "too_many_events", "more than MaxEvents events", -1
		}
		s.events = append(s.events, codec.Event{})
		ev := &s.events[len(s.events)-1]
		if perr := s.parser.ParseJSON(elem, ev); perr != nil {
			r := codec.ReasonOf(perr)
			s.events = s.events[:0]
			s.reject, s.rejRaw, s.rejReason = true, elem, r
			s.rejPos, s.rejErr = Position{Offset: int64(off)}, perr
			return http.StatusUnprocessableEntity, r.String(), perr.Error(), i
		}
		ev.Source = w.cfg.Source
		s.texts = append(s.texts, parsedText(s.parser)...)
		s.textEnd = append(s.textEnd, len(s.texts))
	}
	if len(s.events) == 0 {
		return http.StatusUnprocessableEntity, "no_events", "the array is empty", -1
	}
	return 0, "", "", -1
}

func (w *Webhook) signatureOK(header, tsText string, body []byte) bool {
	if len(header) != len(webhookSignaturePrefix)+2*sha256.Size || header[:len(webhookSignaturePrefix)] != webhookSignaturePrefix {
		return false
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(header[len(webhookSignaturePrefix):])); err != nil {
		return false
	}
	var want [sha256.Size]byte
	webhookMAC(w.cfg.Secret, tsText, body, want[:0])
	return hmac.Equal(got[:], want[:])
}

func webhookMAC(secret []byte, tsText string, body []byte, dst []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tsText))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(dst)
}

// SignWebhook returns the X-Qstream-Signature value for a body sent with
// the given X-Qstream-Timestamp value (Unix seconds).
func SignWebhook(secret []byte, unixSeconds int64, body []byte) string {
	mac := webhookMAC(secret, strconv.FormatInt(unixSeconds, 10), body, nil)
	return webhookSignaturePrefix + hex.EncodeToString(mac)
}

// SetWebhookHeaders sets the timestamp, delivery and signature headers of a
// webhook request whose body is body: what a sender does.
func SetWebhookHeaders(h http.Header, secret []byte, at time.Time, delivery string, body []byte) {
	ts := at.Unix()
	h.Set(WebhookTimestampHeader, strconv.FormatInt(ts, 10))
	h.Set(WebhookDeliveryHeader, delivery)
	h.Set(WebhookSignatureHeader, SignWebhook(secret, ts, body))
	h.Set("Content-Type", "application/json")
}

func (w *Webhook) fail(rw http.ResponseWriter, code int, reason, detail string, idx int) {
	switch code {
	case http.StatusUnauthorized:
		if reason == "stale_timestamp" {
			w.st.stale.Add(1)
		} else {
			w.st.badSignature.Add(1)
		}
	case http.StatusConflict:
		w.st.replays.Add(1)
	case http.StatusRequestEntityTooLarge:
		w.st.oversize.Add(1)
	case http.StatusRequestTimeout:
		w.st.timeouts.Add(1)
	case http.StatusUnprocessableEntity:
		w.st.invalid.Add(1)
	case http.StatusServiceUnavailable:
		w.st.unavailable.Add(1)
	default:
		w.st.malformed.Add(1)
	}
	resp := struct {
		Error  string `json:"error"`
		Detail string `json:"detail,omitempty"`
		Index  *int   `json:"index,omitempty"`
	}{Error: reason, Detail: detail}
	if idx >= 0 {
		resp.Index = &idx
	}
	b, _ := json.Marshal(resp)
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	_, _ = rw.Write(append(b, '\n'))
}

// readBody reads r into buf (reused), at most limit bytes; MaxBytesReader
// reports a longer body.
func readBody(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) > limit {
				return buf, &http.MaxBytesError{Limit: limit}
			}
			nb := make([]byte, len(buf), min(limit+1, int64(max(2*cap(buf), 4096))))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// replay verdicts.
const (
	replayOK = iota
	replaySeen
	replayPending
	replayFull
)

// webhookReplay remembers delivery ids: pending while their request is
// processed, then accepted until their expiry (signed timestamp +
// tolerance). Bounded by capacity; expired ids are dropped in FIFO order.
type webhookReplay struct {
	mu    sync.Mutex
	cap   int
	ids   map[string]int64 // id → expiry (Unix ns); 0 while pending
	order []string         // accepted ids in acceptance order (a FIFO)
	head  int
}

func (c *webhookReplay) init(capacity int) {
	c.cap = capacity
	c.ids = make(map[string]int64, min(capacity, 1<<12))
}

func (c *webhookReplay) reserve(id string, now int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if exp, ok := c.ids[id]; ok {
		if exp == 0 {
			return replayPending
		}
		if exp > now {
			return replaySeen
		}
	}
	if len(c.ids) >= c.cap {
		return replayFull
	}
	c.ids[id] = 0
	return replayOK
}

func (c *webhookReplay) accept(id string, expires, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if expires <= now {
		delete(c.ids, id) // already outside the window: the timestamp check rejects replays
		return
	}
	c.ids[id] = expires
	c.order = append(c.order, id)
}

func (c *webhookReplay) release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.ids[id]; ok && exp == 0 {
		delete(c.ids, id)
	}
}

// expire drops accepted ids from the front of the FIFO while they are
// expired. An id accepted later with an earlier expiry waits its turn; it is
// harmless, since its timestamp is outside the tolerance by then.
func (c *webhookReplay) expire(now int64) {
	for c.head < len(c.order) {
		id := c.order[c.head]
		if exp, ok := c.ids[id]; ok && exp != 0 && exp > now {
			break
		}
		if exp, ok := c.ids[id]; ok && exp != 0 {
			delete(c.ids, id)
		}
		c.order[c.head] = ""
		c.head++
	}
	if c.head > 1024 && c.head*2 > len(c.order) {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// jsonArrayIter walks a request body that is either one JSON object or an
// array of objects, returning each object's raw bytes without parsing them
// (the parser does that). It checks only the structure it needs: balanced
// braces and brackets outside strings, commas between elements, nothing
// after the end.
type jsonArrayIter struct {
	b     []byte
	pos   int
	array bool
	first bool
	done  bool
}

var (
	errJSONNotObject  = errors.New("expected a JSON object or an array of objects")
	errJSONTrailing   = errors.New("data after the JSON value")
	errJSONUnclosed   = errors.New("unterminated JSON value")
	errJSONSeparator  = errors.New("expected ',' or ']' between array elements")
	errJSONUnbalanced = errors.New("mismatched brackets")
)

func (it *jsonArrayIter) skipSpace() {
	for it.pos < len(it.b) {
		switch it.b[it.pos] {
		case ' ', '\t', '\r', '\n':
			it.pos++
		default:
			return
		}
	}
}

func (it *jsonArrayIter) start() error {
	it.skipSpace()
	if it.pos == len(it.b) {
		return errJSONNotObject
	}
	switch it.b[it.pos] {
	case '[':
		it.array, it.first = true, true
		it.pos++
	case '{':
	default:
		return errJSONNotObject
	}
	return nil
}

// next returns the next object and its offset in the body, or nil at the
// end.
func (it *jsonArrayIter) next() ([]byte, int, error) {
	if it.done {
		return nil, 0, nil
	}
	it.skipSpace()
	if it.array {
		if it.pos == len(it.b) {
			return nil, 0, errJSONUnclosed
		}
		if it.b[it.pos] == ']' {
			it.pos++
			return nil, 0, it.finish()
		}
		if !it.first {
			if it.b[it.pos] != ',' {
				return nil, 0, errJSONSeparator
			}
			it.pos++
			it.skipSpace()
		}
		it.first = false
	}
	if it.pos == len(it.b) || it.b[it.pos] != '{' {
		return nil, 0, errJSONNotObject
	}
	start := it.pos
	end, err := jsonValueEnd(it.b, start)
	if err != nil {
		return nil, 0, err
	}
	it.pos = end
	if !it.array {
		if err := it.finish(); err != nil {
			return nil, 0, err
		}
	}
	return it.b[start:end], start, nil
}

func (it *jsonArrayIter) finish() error {
	it.done = true
	it.skipSpace()
	if it.pos != len(it.b) {
		return errJSONTrailing
	}
	return nil
}

// jsonMaxDepth bounds the nesting jsonValueEnd follows (fastjson's own
// limit is 300).
const jsonMaxDepth = 256

var errJSONDepth = errors.New("JSON nested too deeply")

// jsonValueEnd returns the end of the object or array starting at b[i],
// tracking nesting (and that each closing bracket matches its opener)
// outside strings.
func jsonValueEnd(b []byte, i int) (int, error) {
	var objects [jsonMaxDepth / 64]uint64 // bit d set: level d is an object
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			if depth == jsonMaxDepth {
				return 0, errJSONDepth
			}
			bit := uint64(1) << (depth % 64)
			if c == '{' {
				objects[depth/64] |= bit
			} else {
				objects[depth/64] &^= bit
			}
			depth++
		case '}', ']':
			if depth == 0 {
				return 0, errJSONUnbalanced
			}
			depth--
			if isObj := objects[depth/64]&(uint64(1)<<(depth%64)) != 0; isObj != (c == '}') {
				return 0, errJSONUnbalanced
			}
			if depth == 0 {
				return i + 1, nil
			}
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return 0, errJSONUnclosed
			}
		}
	}
	return 0, errJSONUnclosed
}
