package sinks

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"qstream/codec"
	"qstream/ops"
)

// WSServer is the ws:// sink: a WebSocket server whose clients subscribe to
// channels (indicators, windows, patterns, news) and symbols and receive each
// matching output as its JSON line with "channel" added (see the protocol in
// ws_proto.go). It implements Writer and StatusWriter.
//
// WriteBatch never waits for a client. It encodes each output once, however
// many clients get it, and hands the encoded message to each subscriber's
// bounded queue; a writer goroutine per client drains its queue onto the
// connection. A client whose queue is full is conflated: the newest output
// of a (channel, operator, symbol) replaces the one of the same key still
// queued, so a client that falls behind gets the latest values rather than a
// backlog. A client is closed with status 1008 (policy violation) when it
// stays behind: its queue has not drained to half since it filled for longer
// than the stall bound (stall=, default 5s), or it is full of distinct keys so
// that conflation cannot make room (choose queue= above the number of keys a
// client subscribes to). Pings every ping= (default 20s) drop a client that
// does not answer within pong= (default 10s).
//
// Per client there are three goroutines: the HTTP handler reads requests, a
// writer drains the queue, a pinger sleeps between pings. Close stops them
// all: clients get a close frame with status 1001 (going away) and
// wsCloseGrace to answer it, then their connections are closed.
type WSServer struct {
	cfg    wsConfig
	logger *slog.Logger
	enc    *JSONLWriter // AppendOutput only; sink goroutine only
	table  *codec.SymbolTable
	kinds  [wsKinds + 1]bool // kinds written (env.JSONL.Kinds)
	suffix [wsChannels][]byte

	// Sink goroutine only (WriteBatch).
	names   []string // symbol names by id, refreshed from table on a miss
	touched []*wsClient

	mu      sync.Mutex // guards what follows, the index and every client's sub
	ln      net.Listener
	srv     *http.Server
	closed  bool
	conns   int // handshakes in progress plus clients: bounded by max_clients
	clients map[*wsClient]struct{}
	idx     wsIndex

	wg sync.WaitGroup // the HTTP server and every client goroutine

	nclients   atomic.Int64
	sent       atomic.Uint64
	conflated  atomic.Uint64
	closedSlow atomic.Uint64
	closedPing atomic.Uint64
	rejected   atomic.Uint64
	badReqs    atomic.Uint64
	queueMax   atomic.Int64
}

// WSStats are the counters of a WSServer.
type WSStats struct {
	Clients     int64  // connected clients
	Sent        uint64 // messages written to clients (data only, not replies)
	Conflated   uint64 // queued messages replaced by a newer one of the same key, over all clients
	ClosedSlow  uint64 // clients closed with 1008 for staying behind (or leaving wsRepliesMax replies unread)
	ClosedPing  uint64 // clients dropped for not answering a ping in time
	Rejected    uint64 // handshakes refused: token, origin, capacity, not a WebSocket request
	BadRequests uint64 // client requests answered with {"error":...}
	QueueLenMax int64  // the longest any client's queue has been
}

// Defaults and bounds of the ws:// options.
const (
	wsQueueDefault      = 1024
	wsQueueMax          = 1 << 20
	wsPingDefault       = 20 * time.Second
	wsPongDefault       = 10 * time.Second
	wsStallDefault      = 5 * time.Second
	wsMaxMsgDefault     = 4 << 10
	wsMaxMsgMin         = 64
	wsMaxMsgMax         = 1 << 20
	wsMaxSymbolsDefault = 1024
	wsMaxSymbolsMax     = 1 << 16
	wsMaxClientsDefault = 1024
	wsMaxClientsMax     = 1 << 16
	wsSndbufMax         = 64 << 20

	// wsCloseGrace bounds a close handshake (and so Close): after it the
	// connection is closed whether the client answered or not.
	wsCloseGrace = 2 * time.Second
	// wsWriteRoundMax bounds the messages a writer takes off its queue at
	// once (and so holds outside the queue's bound while writing them).
	wsWriteRoundMax = 256
	// wsRepliesMax bounds the replies queued for a client; a client that
	// sends requests without reading the replies is closed with 1008.
	wsRepliesMax = 16
)

type wsConfig struct {
	addr       string
	path       string
	token      string
	origins    []string
	queue      int
	ping, pong time.Duration
	stall      time.Duration
	maxMsg     int
	maxSymbols int
	maxClients int
	sndbuf     int
}

// NewWSServer returns a WebSocket server for ws://HOST:PORT/PATH (PATH
// defaults to /; port 0 picks a free port, see Addr). Options in the query:
//
//	token=T         clients must send "Authorization: Bearer T" (401 otherwise)
//	origin=P        allowed Origin host patterns (path.Match, as
//	                coder/websocket's AcceptOptions.OriginPatterns), comma
//	                separated or repeated; default: the request's own host
//	                only. Requests without an Origin (non-browsers) pass.
//	queue=N         per-client queue bound in messages (default 1024)
//	stall=D         close a client whose full queue has not drained to half
//	                for D with 1008 (default 5s)
//	ping=D          ping interval (default 20s)
//	pong=D          pong timeout (default 10s)
//	max_msg=N       largest client message in bytes (default 4096); larger
//	                closes the connection with 1009
//	max_symbols=N   symbols a client may subscribe to (default 1024)
//	max_clients=N   connected clients (default 1024); more get 503
//	sndbuf=N        SO_SNDBUF of client connections in bytes (default: the
//	                system's); bounds what the kernel holds beyond the queue
//
// Unknown options are errors.
func NewWSServer(u *url.URL, env Env) (*WSServer, error) {
	cfg, err := parseWSURL(u)
	if err != nil {
		return nil, err
	}
	s := &WSServer{
		cfg:     cfg,
		logger:  env.Logger,
		enc:     NewJSONLWriter(io.Discard, env.JSONL),
		table:   env.JSONL.Symbols,
		clients: make(map[*wsClient]struct{}),
		idx:     wsIndex{byName: make(map[string]*wsSubs)},
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	for k := ops.OutKind(1); k <= wsKinds; k++ {
		s.kinds[k] = env.JSONL.Kinds == nil || env.JSONL.Kinds[k]
	}
	for ch := range wsChannels {
		s.suffix[ch] = []byte(`,"channel":"` + wsChannelNames[ch] + `"}`)
	}
	return s, nil
}

func parseWSURL(u *url.URL) (wsConfig, error) {
	cfg := wsConfig{
		queue: wsQueueDefault, ping: wsPingDefault, pong: wsPongDefault, stall: wsStallDefault,
		maxMsg: wsMaxMsgDefault, maxSymbols: wsMaxSymbolsDefault, maxClients: wsMaxClientsDefault,
	}
	if u == nil {
		return cfg, errors.New("sinks: ws: no URL")
	}
	if u.Scheme != "ws" {
		return cfg, fmt.Errorf("sinks: ws: scheme %q: want ws://HOST:PORT/PATH (no TLS: put a proxy in front for wss)", u.Scheme)
	}
	if u.User != nil {
		return cfg, errors.New("sinks: ws: user info in the URL: use token=")
	}
	if u.Fragment != "" {
		return cfg, errors.New("sinks: ws: fragment in the URL")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return cfg, fmt.Errorf("sinks: ws: %q: want HOST:PORT: %w", u.Host, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil {
		return cfg, fmt.Errorf("sinks: ws: port %q: %w", port, err)
	} else if p == 0 && port != "0" {
		return cfg, fmt.Errorf("sinks: ws: port %q", port)
	}
	cfg.addr = net.JoinHostPort(host, port)
	cfg.path = u.Path
	if cfg.path == "" {
		cfg.path = "/"
	}
	q, err := queryParams("ws", u, "origin")
	if err != nil {
		return cfg, err
	}
	for key, vals := range q {
		if key == "origin" {
			for _, v := range vals {
				for p := range strings.SplitSeq(v, ",") {
					if p == "" {
						return cfg, errors.New("sinks: ws: origin: empty pattern")
					}
					if _, err := path.Match(p, ""); err != nil {
						return cfg, fmt.Errorf("sinks: ws: origin %q: %w", p, err)
					}
					cfg.origins = append(cfg.origins, p)
				}
			}
			continue
		}
		v := vals[0]
		switch key {
		case "token":
			if v == "" || strings.ContainsAny(v, " \t\r\n") {
				return cfg, errors.New("sinks: ws: token: empty or holds white space")
			}
			cfg.token = v
		case "queue":
			cfg.queue, err = intParam("ws", key, v, 1, wsQueueMax)
		case "max_msg":
			cfg.maxMsg, err = intParam("ws", key, v, wsMaxMsgMin, wsMaxMsgMax)
		case "max_symbols":
			cfg.maxSymbols, err = intParam("ws", key, v, 1, wsMaxSymbolsMax)
		case "max_clients":
			cfg.maxClients, err = intParam("ws", key, v, 1, wsMaxClientsMax)
		case "sndbuf":
			cfg.sndbuf, err = intParam("ws", key, v, 0, wsSndbufMax)
		case "ping":
			cfg.ping, err = durationParam("ws", key, v, time.Millisecond, time.Hour)
		case "pong":
			cfg.pong, err = durationParam("ws", key, v, time.Millisecond, time.Hour)
		case "stall":
			cfg.stall, err = durationParam("ws", key, v, time.Millisecond, time.Hour)
		default:
			return cfg, fmt.Errorf("sinks: ws: unknown option %q (want token, origin, queue, stall, ping, pong, max_msg, max_symbols, max_clients, sndbuf)", key)
		}
		if err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// Open binds the listener and starts serving. Calling it again after a
// success does nothing.
func (s *WSServer) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.ln != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.addr)
	if err != nil {
		return fmt.Errorf("sinks: ws: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, wsConnKey{}, c)
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.srv.Serve(wsListener{Listener: ln, sndbuf: s.cfg.sndbuf})
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("sinks: ws: server stopped", "err", err)
		}
	}()
	return nil
}

type wsConnKey struct{}

// Addr returns the address the server listens on, or nil before Open.
func (s *WSServer) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// WriteBatch fans outs out to the subscribed clients. It never waits for a
// client (it takes the server's and each client's mutex, which no one holds
// across network I/O) and returns an error only after Close.
func (s *WSServer) WriteBatch(_ context.Context, outs []ops.Output) error {
	nowNs := time.Now().UnixNano() // once per batch: the stall clock
	touched := s.touched[:0]
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if len(s.clients) == 0 {
		s.mu.Unlock()
		return nil
	}
	for i := range outs {
		o := &outs[i]
		if o.Kind == 0 || o.Kind > wsKinds || !s.kinds[o.Kind] {
			continue
		}
		ch := int(o.Kind) - 1
		all := s.idx.all[ch]
		var named []*wsClient
		if ss := s.symSubs(o.Symbol); ss != nil {
			named = ss.lists[ch]
		}
		if len(all) == 0 && len(named) == 0 {
			continue
		}
		m := s.encode(outs[i:], ch)
		n := int32(0)
		for _, cl := range all {
			if len(cl.pending) == 0 {
				touched = append(touched, cl)
			}
			cl.pending = append(cl.pending, m)
			n++
		}
		for _, cl := range named {
			if cl.sub.all[ch] {
				continue // has it from the wildcard
			}
			if len(cl.pending) == 0 {
				touched = append(touched, cl)
			}
			cl.pending = append(cl.pending, m)
			n++
		}
		m.refs.Store(n)
	}
	s.mu.Unlock()
	for _, cl := range touched {
		cl.enqueuePending(nowNs)
	}
	clear(touched)
	s.touched = touched[:0]
	return nil
}

// encode takes a message from the pool and writes o's JSON line with the
// channel into it, as a WebSocket frame.
// o is outs[0]; a news or event line's text follows it in outs.
func (s *WSServer) encode(outs []ops.Output, ch int) *wsMsg {
	o := &outs[0]
	m := wsMsgPool.Get().(*wsMsg)
	b := s.enc.AppendGroup(append(m.buf[:0], make([]byte, wsHeaderMax)...), outs)
	m.buf = append(b[:len(b)-1], s.suffix[ch]...) // AppendOutput ends with '}'
	m.setPayloadLen()
	m.key = uint64(ch)<<56 | uint64(o.Op)<<32 | uint64(o.Symbol)
	return m
}

// symSubs returns the subscribers of symbol id, or nil when it has no name.
// The caller holds s.mu.
func (s *WSServer) symSubs(id codec.Symbol) *wsSubs {
	if int(id) < len(s.idx.byID) {
		if ss := s.idx.byID[id]; ss != nil {
			return ss
		}
	}
	return s.symSubsSlow(id)
}

func (s *WSServer) symSubsSlow(id codec.Symbol) *wsSubs {
	if int(id) >= len(s.names) && s.table != nil {
		s.names = s.table.Names()
	}
	if int(id) >= len(s.names) || s.names[id] == "" {
		return nil
	}
	ss := s.idx.entry(s.names[id])
	ss.resolved = true
	if int(id) >= len(s.idx.byID) {
		s.idx.byID = append(s.idx.byID, make([]*wsSubs, int(id)+1-len(s.idx.byID))...)
	}
	s.idx.byID[id] = ss
	return ss
}

// Close stops the server and every client goroutine; clients get a close
// frame with 1001 and up to wsCloseGrace to answer it.
func (s *WSServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.srv
	clients := make([]*wsClient, 0, len(s.clients))
	for cl := range s.clients {
		clients = append(clients, cl)
	}
	s.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Close() // the listener and connections not yet upgraded
	}
	for _, cl := range clients {
		cl.stop(websocket.StatusGoingAway, "server shutting down")
	}
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("sinks: ws: close: %w", err)
	}
	return nil
}

// Stats returns the server's counters.
func (s *WSServer) Stats() WSStats {
	return WSStats{
		Clients:     s.nclients.Load(),
		Sent:        s.sent.Load(),
		Conflated:   s.conflated.Load(),
		ClosedSlow:  s.closedSlow.Load(),
		ClosedPing:  s.closedPing.Load(),
		Rejected:    s.rejected.Load(),
		BadRequests: s.badReqs.Load(),
		QueueLenMax: s.queueMax.Load(),
	}
}

// AppendStatus implements StatusWriter.
func (s *WSServer) AppendStatus(dst []byte) []byte {
	st := s.Stats()
	dst = append(dst, " clients="...)
	dst = strconv.AppendInt(dst, st.Clients, 10)
	dst = append(dst, " sent="...)
	dst = strconv.AppendUint(dst, st.Sent, 10)
	dst = append(dst, " conflated="...)
	dst = strconv.AppendUint(dst, st.Conflated, 10)
	dst = append(dst, " closed_slow="...)
	dst = strconv.AppendUint(dst, st.ClosedSlow, 10)
	dst = append(dst, " closed_ping="...)
	dst = strconv.AppendUint(dst, st.ClosedPing, 10)
	dst = append(dst, " rejected="...)
	dst = strconv.AppendUint(dst, st.Rejected, 10)
	return dst
}

func (s *WSServer) noteQueueLen(n int64) {
	for {
		old := s.queueMax.Load()
		if n <= old || s.queueMax.CompareAndSwap(old, n) {
			return
		}
	}
}

// serveHTTP authenticates a handshake, upgrades it and runs the client's
// read loop until the connection ends.
func (s *WSServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.cfg.path {
		s.rejected.Add(1)
		http.NotFound(w, r)
		return
	}
	if s.cfg.token != "" && !s.authorized(r) {
		s.rejected.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="qstream"`)
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	nc, _ := r.Context().Value(wsConnKey{}).(*wsConn)
	if nc == nil {
		http.Error(w, "not a qstream connection", http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	if s.closed || s.conns >= s.cfg.maxClients {
		s.mu.Unlock()
		s.rejected.Add(1)
		http.Error(w, "no capacity for another client", http.StatusServiceUnavailable)
		return
	}
	s.conns++
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conns--
		s.mu.Unlock()
		s.wg.Done()
	}()

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  s.cfg.origins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil { // Accept wrote the status (403 for a foreign origin)
		s.rejected.Add(1)
		return
	}
	conn.SetReadLimit(int64(s.cfg.maxMsg))
	cl := newWSClient(s, conn, nc)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.CloseNow()
		return
	}
	s.clients[cl] = struct{}{}
	s.nclients.Add(1)
	s.wg.Add(2)
	s.mu.Unlock()
	go cl.writeLoop()
	go cl.pingLoop()

	cl.readLoop()

	cl.stop(0, "")
	s.mu.Lock()
	s.idx.removeClient(cl)
	delete(s.clients, cl)
	s.nclients.Add(-1)
	s.mu.Unlock()
	<-cl.finished
}

func (s *WSServer) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(s.cfg.token)) == 1
}
