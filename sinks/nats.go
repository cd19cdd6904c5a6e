package sinks

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"qstream/codec"
	"qstream/ops"
)

// Defaults and bounds of the NATS writer's URL parameters.
const (
	DefaultNATSTimeout    = 5 * time.Second
	MaxNATSTimeout        = 5 * time.Minute
	DefaultNATSMaxPending = 4096
	MaxNATSMaxPending     = 1 << 16
	// MaxNATSOriginLen bounds the origin parameter (a header value).
	MaxNATSOriginLen = 128
	// natsRecheck is how long a subject's JetStream verdict (a stream
	// captures it or not) is trusted before it is asked again, so a stream
	// created or deleted while the sink runs is noticed.
	natsRecheck = 30 * time.Second
)

// NATS JetStream modes (the jetstream URL parameter).
const (
	natsJSAuto = iota // ask the server per subject
	natsJSOn          // every subject is captured by a stream
	natsJSOff         // core NATS only
)

// NATSWriter publishes outputs to NATS (DESIGN.md "Sinks"):
//
//	nats://HOST:PORT[?jetstream=auto|on|off][&timeout=5s][&max_pending=4096][&origin=NAME]
//
// Each output goes to the subject qstream.<kind>.<symbol> (kind as Channel
// names it), with the JSON line of the --output file as payload and the
// header Nats-Msg-Id set to the output key in decimal, so that a JetStream
// stream capturing the subject drops a repeated output within its duplicate
// window.
//
// origin=NAME (or the option WithNATSOrigin) adds the header
// Qstream-Origin: NAME to every message, the same on all of them, so that a
// reader can tell which writer (an instance of a group, say) published an
// output. NAME is 1 to 128 bytes of printable ASCII without spaces. The
// header does not take part in de-duplication: JetStream drops a repeated
// Nats-Msg-Id whatever its origin.
//
// WriteBatch returns once the server has the batch. How depends on whether
// a JetStream stream captures the subject:
//
//   - captured: JetStream asynchronous publish, then WriteBatch waits for
//     every publish acknowledgement (the message is stored, or recognised
//     as a duplicate: counted as such);
//   - not captured: core publish, then a flush (PING/PONG) proves the server
//     read everything before it.
//
// jetstream=auto (the default) asks the server, the first time a subject is
// used, which stream captures it (the JetStream API's stream names with a
// subject filter), caches the answer per subject and asks again after 30 s
// or when a publish gets no JetStream response (the stream was deleted).
// jetstream=on sends every output through JetStream (an output whose
// subject no stream captures then fails with a transient error); off uses
// core NATS only (a stream still stores and de-duplicates what it captures,
// but nothing waits for it to have stored it). A server without JetStream
// counts as "no stream captures anything" in auto mode; but once JetStream
// has answered this writer, no response from its API (a leader election in
// a cluster) is a transient error, retried, never a fall back to core NATS
// that would count as written what no stream stores.
//
// A subject token may not hold '.', '*', '>' or white space, so a symbol is
// escaped, never rejected: each of those bytes, '%' itself, and any byte
// outside printable ASCII is written as %XX (upper-case hex of the byte), so
// BRK.B publishes to qstream.indicators.BRK%2EB; the payload carries the
// symbol unescaped. An output whose symbol id the table does not hold is a
// *PoisonError (codec.ReasonUnknownSymbol), as is one whose payload exceeds
// the server's maximum (codec.ReasonOversize).
//
// At most max_pending messages are unacknowledged at a time: a larger batch
// is published and confirmed in chunks of max_pending. timeout bounds each
// chunk's wait for its acknowledgements or flush; a server that went away
// makes WriteBatch fail within it (the connection keeps reconnecting, with
// no reconnect buffer, so publishes fail at once while it is down and the
// framework's retry succeeds once it is back). Errors of a connection that
// is down or slow wrap ErrTransient.
type NATSWriter struct {
	url        string
	mode       int
	timeout    time.Duration
	maxPending int
	origin     []string // the Qstream-Origin header's value; nil: no header
	env        Env

	nc *nats.Conn
	js jetstream.JetStream

	enc      *JSONLWriter // only its encoder (AppendOutput) is used
	arena    []byte       // payloads of the chunk in flight
	ends     []int        // end offset of each payload in arena
	msgs     []nats.Msg   // one per chunk slot; Header maps reused
	futures  []jetstream.PubAckFuture
	subjects [ops.OutKinds][]natsSubject // by ops.OutKind, then symbol id

	// sawJS: JetStream has answered a question of this writer (auto
	// mode), so a later "no responders" is an outage, not its absence.
	sawJS bool

	// Counters; AppendStatus may run on another goroutine.
	published, acked, duplicates, coreMsgs atomic.Uint64
}

// natsSubject is the cached subject of one kind and symbol.
type natsSubject struct {
	subject   string
	js        bool      // a stream captures it
	checkedAt time.Time // zero: never asked
}

// NATSOriginHeader is the header that names the writer of a message (the
// origin parameter).
const NATSOriginHeader = "Qstream-Origin"

// NATSOption sets up a NATSWriter beyond its URL; NewNATS applies options
// after the URL's parameters, so an option wins over its parameter.
type NATSOption func(*NATSWriter) error

// WithNATSOrigin sets the Qstream-Origin header of every message to name,
// as the origin URL parameter does; "" removes it.
func WithNATSOrigin(name string) NATSOption {
	return func(w *NATSWriter) error {
		if name == "" {
			w.origin = nil
			return nil
		}
		if err := checkNATSOrigin(name); err != nil {
			return err
		}
		w.origin = []string{name}
		return nil
	}
}

// checkNATSOrigin accepts 1 to MaxNATSOriginLen bytes of printable ASCII
// without spaces (a header value that needs no escaping).
func checkNATSOrigin(name string) error {
	if name == "" || len(name) > MaxNATSOriginLen {
		return fmt.Errorf("sinks: nats: origin=%q: want 1 to %d bytes", name, MaxNATSOriginLen)
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f {
			return fmt.Errorf("sinks: nats: origin=%q: want printable ASCII without spaces", name)
		}
	}
	return nil
}

// NewNATS validates u (nats://HOST:PORT with the parameters above; anything
// else is an error) and applies opts, without connecting.
func NewNATS(u *url.URL, env Env, opts ...NATSOption) (*NATSWriter, error) {
	if u.Scheme != "nats" {
		return nil, fmt.Errorf("sinks: nats: scheme %q, want nats://HOST:PORT", u.Scheme)
	}
	if u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("sinks: nats: %q: want nats://HOST:PORT", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("sinks: nats: %q: unexpected path %q", u.Redacted(), u.Path)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("sinks: nats: %q: unexpected fragment", u.Redacted())
	}
	if env.JSONL.Symbols == nil {
		return nil, errors.New("sinks: nats: Env.JSONL.Symbols is required")
	}
	w := &NATSWriter{mode: natsJSAuto, timeout: DefaultNATSTimeout, maxPending: DefaultNATSMaxPending, env: env}
	q, err := queryParams("nats", u)
	if err != nil {
		return nil, err
	}
	for k, vs := range q {
		v := vs[0]
		switch k {
		case "jetstream":
			switch v {
			case "auto":
				w.mode = natsJSAuto
			case "on", "true":
				w.mode = natsJSOn
			case "off", "false":
				w.mode = natsJSOff
			default:
				return nil, fmt.Errorf("sinks: nats: jetstream=%q: want auto, on or off", v)
			}
		case "timeout":
			if w.timeout, err = durationParam("nats", k, v, time.Nanosecond, MaxNATSTimeout); err != nil {
				return nil, err
			}
		case "max_pending":
			if w.maxPending, err = intParam("nats", k, v, 1, MaxNATSMaxPending); err != nil {
				return nil, err
			}
		case "origin":
			if err := checkNATSOrigin(v); err != nil {
				return nil, err
			}
			w.origin = []string{v}
		default:
			return nil, fmt.Errorf("sinks: nats: unknown parameter %q (want jetstream, timeout, max_pending, origin)", k)
		}
	}
	for _, o := range opts {
		if err := o(w); err != nil {
			return nil, err
		}
	}
	c := *u
	c.RawQuery, c.Path = "", ""
	w.url = c.String()
	w.enc = NewJSONLWriter(nil, env.JSONL)
	w.msgs = make([]nats.Msg, 0, min(w.maxPending, 1024))
	return w, nil
}

// Open connects. The connection reconnects forever on its own.
func (w *NATSWriter) Open(ctx context.Context) error {
	if w.nc != nil {
		return nil
	}
	opts := []nats.Option{
		nats.Name("qstream-sink"),
		nats.Timeout(min(w.timeout, 10*time.Second)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1), // fail publishes at once while down: the framework retries
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Until(dl), time.Millisecond)))
	}
	nc, err := nats.Connect(w.url, opts...)
	if err != nil {
		return fmt.Errorf("sinks: nats: connect %s: %w (%w)", w.url, err, ErrTransient)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(w.maxPending), jetstream.WithPublishAsyncTimeout(w.timeout))
	if err != nil {
		nc.Close()
		return fmt.Errorf("sinks: nats: jetstream: %w", err)
	}
	w.nc, w.js = nc, js
	return nil
}

// WriteBatch publishes outs and returns once the server has them (see the
// type's doc comment).
func (w *NATSWriter) WriteBatch(ctx context.Context, outs []ops.Output) error {
	if w.nc == nil {
		return fmt.Errorf("sinks: nats: not open: %w", ErrTransient)
	}
	for start := 0; start < len(outs); start += w.maxPending {
		end := min(start+w.maxPending, len(outs))
		for end < len(outs) && outs[end].Kind == ops.OutText {
			end++ // a news or event line's text goes with it
		}
		if err := w.writeChunk(ctx, outs[start:end], start); err != nil {
			return err
		}
	}
	return nil
}

// writeChunk publishes at most maxPending outputs; base is their index in
// the batch (for a PoisonError).
func (w *NATSWriter) writeChunk(ctx context.Context, outs []ops.Output, base int) error {
	// Encode every payload first: the arena may grow while encoding, and
	// JetStream keeps each message until it is acknowledged.
	w.arena, w.ends = w.arena[:0], w.ends[:0]
	for i := range outs {
		if outs[i].Kind != ops.OutText { // a text is encoded with its line's output
			w.arena = w.enc.AppendGroup(w.arena, outs[i:])
		}
		w.ends = append(w.ends, len(w.arena))
	}
	for len(w.msgs) < len(outs) {
		h := nats.Header{"Nats-Msg-Id": []string{""}}
		if w.origin != nil {
			h[NATSOriginHeader] = w.origin // shared by every message, never written
		}
		w.msgs = append(w.msgs, nats.Msg{Header: h})
	}
	w.futures = w.futures[:0]
	var core int
	var poison error
	var now time.Time
	begin := 0
	for i := range outs {
		o := &outs[i]
		if o.Kind == ops.OutText {
			continue
		}
		sub, perr := w.subject(ctx, o, &now)
		if perr != nil {
			if errors.Is(perr, ErrTransient) {
				return perr
			}
			poison = &PoisonError{Index: base + i, Reason: codec.ReasonOf(perr), Err: perr}
			break
		}
		m := &w.msgs[i]
		m.Subject, m.Reply = sub.subject, ""
		m.Data = w.arena[begin:w.ends[i]:w.ends[i]]
		begin = w.ends[i]
		m.Header["Nats-Msg-Id"][0] = strconv.FormatUint(o.Key, 10)
		if sub.js {
			f, err := w.js.PublishMsgAsync(m)
			if err != nil {
				return w.publishErr(i, base, err)
			}
			w.futures = append(w.futures, f)
		} else {
			if err := w.nc.PublishMsg(m); err != nil {
				return w.publishErr(i, base, err)
			}
			core++
		}
		w.published.Add(1)
	}
	deadline := time.Now().Add(w.timeout)
	if core > 0 {
		if err := w.nc.FlushTimeout(w.timeout); err != nil {
			return fmt.Errorf("sinks: nats: flush: %w (%w)", err, ErrTransient)
		}
		w.coreMsgs.Add(uint64(core))
	}
	if err := w.waitAcks(ctx, deadline); err != nil {
		return err
	}
	return poison
}

// publishErr classifies a failed publish of outs[i].
func (w *NATSWriter) publishErr(i, base int, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		// Earlier outputs of the chunk may still be pending: wait for them
		// first, so those before the poison count as written.
		if werr := w.waitAcks(context.Background(), time.Now().Add(w.timeout)); werr != nil {
			return werr
		}
		if werr := w.nc.FlushTimeout(w.timeout); werr != nil {
			return fmt.Errorf("sinks: nats: flush: %w (%w)", werr, ErrTransient)
		}
		return &PoisonError{Index: base + i, Reason: codec.ReasonOversize, Err: fmt.Errorf("sinks: nats: %w", err)}
	}
	w.abandon()
	return fmt.Errorf("sinks: nats: publish: %w (%w)", err, ErrTransient)
}

// abandon drops the chunk's messages and payloads after a failure: nats.go
// may still hold unresolved futures that point at them (and retry them), so
// the next chunk gets new ones rather than overwriting these.
func (w *NATSWriter) abandon() {
	w.futures = w.futures[:0]
	w.msgs, w.arena = nil, nil
}

// waitAcks waits for the acknowledgement of every future of the chunk.
func (w *NATSWriter) waitAcks(ctx context.Context, deadline time.Time) error {
	if len(w.futures) == 0 {
		return nil
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var firstErr error
	for i, f := range w.futures {
		select {
		case ack := <-f.Ok():
			w.acked.Add(1)
			if ack.Duplicate {
				w.duplicates.Add(1)
			}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				w.forget(f.Msg().Subject) // the stream is gone: ask again
			}
		case <-t.C:
			n := len(w.futures)
			w.abandon()
			return fmt.Errorf("sinks: nats: %d of %d JetStream acknowledgements missing after %s: %w", n-i, n, w.timeout, ErrTransient)
		case <-ctx.Done():
			w.abandon()
			return fmt.Errorf("sinks: nats: %w", ctx.Err())
		}
	}
	w.futures = w.futures[:0]
	if firstErr != nil {
		w.abandon()
		return fmt.Errorf("sinks: nats: JetStream publish: %w (%w)", firstErr, ErrTransient)
	}
	return nil
}

// subject returns the cached subject of o, asking the server whether a
// stream captures it when due. *now is the clock read once per chunk.
func (w *NATSWriter) subject(ctx context.Context, o *ops.Output, now *time.Time) (*natsSubject, error) {
	k := int(o.Kind)
	if k >= len(w.subjects) {
		k = 0
	}
	id := int(o.Symbol)
	if id >= len(w.subjects[k]) {
		if id > w.env.JSONL.Symbols.Max() {
			return nil, &codec.Error{Reason: codec.ReasonUnknownSymbol, Detail: fmt.Sprintf("sinks: nats: symbol id %d outside the table", id), Offset: -1}
		}
		w.subjects[k] = append(w.subjects[k], make([]natsSubject, id+1-len(w.subjects[k]))...)
	}
	s := &w.subjects[k][id]
	if s.subject == "" {
		name := w.env.JSONL.Symbols.Name(o.Symbol)
		if o.Symbol == 0 && (o.Kind == ops.OutNews || o.Kind == ops.OutEvent) {
			name = "_" // an article or event about no symbol
		}
		if name == "" {
			return nil, &codec.Error{Reason: codec.ReasonUnknownSymbol, Detail: fmt.Sprintf("sinks: nats: symbol id %d has no name", id), Offset: -1}
		}
		s.subject = NATSSubject(o.Kind, name)
	}
	switch w.mode {
	case natsJSOn:
		s.js = true
		return s, nil
	case natsJSOff:
		return s, nil
	}
	if now.IsZero() {
		*now = time.Now()
	}
	if !s.checkedAt.IsZero() && now.Sub(s.checkedAt) < natsRecheck {
		return s, nil
	}
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	_, err := w.js.StreamNameBySubject(cctx, s.subject)
	cancel()
	switch {
	case err == nil:
		s.js = true
		w.sawJS = true
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s.js = false
		w.sawJS = true // JetStream answered
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		s.js = false
	case errors.Is(err, nats.ErrNoResponders) && !w.sawJS:
		s.js = false // a server without JetStream
	default:
		// Also no responders once JetStream has answered on this
		// connection: a leader election in a cluster, not a server
		// without JetStream. Publishing through core NATS now would count
		// as written what no stream stores.
		return nil, fmt.Errorf("sinks: nats: which stream captures %s: %w (%w)", s.subject, err, ErrTransient)
	}
	s.checkedAt = *now
	return s, nil
}

// forget drops the JetStream verdict of subject.
func (w *NATSWriter) forget(subject string) {
	for k := range w.subjects {
		for i := range w.subjects[k] {
			if w.subjects[k][i].subject == subject {
				w.subjects[k][i].checkedAt = time.Time{}
			}
		}
	}
}

// Close closes the connection.
func (w *NATSWriter) Close() error {
	if w.nc != nil {
		w.nc.Close()
		w.nc = nil
	}
	return nil
}

// AppendStatus implements StatusWriter.
func (w *NATSWriter) AppendStatus(dst []byte) []byte {
	dst = append(dst, " published="...)
	dst = strconv.AppendUint(dst, w.published.Load(), 10)
	dst = append(dst, " acked="...)
	dst = strconv.AppendUint(dst, w.acked.Load(), 10)
	dst = append(dst, " duplicates="...)
	dst = strconv.AppendUint(dst, w.duplicates.Load(), 10)
	dst = append(dst, " core="...)
	dst = strconv.AppendUint(dst, w.coreMsgs.Load(), 10)
	return dst
}

// NATSSubject returns the subject of an output of kind k about symbol:
// "qstream.<kind>.<escaped symbol>" (see NATSWriter for the escaping).
func NATSSubject(k ops.OutKind, symbol string) string {
	var b strings.Builder
	b.Grow(len("qstream.") + 12 + len(symbol))
	b.WriteString("qstream.")
	b.WriteString(Channel(k))
	b.WriteByte('.')
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(symbol); i++ {
		c := symbol[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
