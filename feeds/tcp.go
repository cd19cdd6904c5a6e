package feeds

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"qstream/codec"
)

// JSONParser parses one JSON message into ev; *codec.Parser implements it.
// A JSONParser is used by one goroutine only.
type JSONParser interface {
	ParseJSON(msg []byte, ev *codec.Event) error
}

// codecParsers is the feeds' default NewParser: a codec.Parser per call,
// with the feed's source id and message bound (0: the codec's default).
func codecParsers(maxSize int, source uint16) func(*codec.SymbolTable) JSONParser {
	return func(symbols *codec.SymbolTable) JSONParser {
		return codec.NewParser(codec.ParserOptions{MaxMessageSize: maxSize, Source: source, Symbols: symbols})
	}
}

// TextParser is a JSONParser that keeps the text of the events it parses
// (codec.Parser.Text): feeds publish it with the event
// (engine.Publisher.PublishText), so news articles and the StreamMessage
// fields of signals, system and custom events reach the operators.
type TextParser interface {
	Text() []byte
}

// parsedText returns the text of the event p parsed last, if p keeps text.
func parsedText(p JSONParser) []byte {
	if tp, ok := p.(TextParser); ok {
		return tp.Text()
	}
	return nil
}

// Defaults of TCPConfig.
const (
	DefaultTCPMaxConns       = 1024
	DefaultTCPMaxMessageSize = 64 << 10
	DefaultTCPReadBufferSize = 256 << 10
	DefaultTCPStopTimeout    = 10 * time.Second
	DefaultTCPIdleTimeout    = 5 * time.Minute
)

// tcpRejectRawMax bounds the raw bytes handed to Reject for an oversize
// message: enough to recognise it, not the whole thing.
const tcpRejectRawMax = 256

// Errors of the TCP feed.
var (
	// ErrTCPConfig wraps every configuration error of NewTCPServer.
	ErrTCPConfig = errors.New("tcp: invalid config")
	// ErrTCPRunning is returned by a second call to Run.
	ErrTCPRunning = errors.New("tcp: server already started")
)

// TCPConfig configures a TCPServer.
type TCPConfig struct {
	// Name identifies the feed ("tcp" if empty); its Publishers are named
	// "<Name>/loop<i>".
	Name string
	// Addr is the listen address, "host:port" (port 0 picks one; see Addr).
	Addr string
	// Format is the wire format of the listener's connections: TCPLines,
	// TCPFrames, or TCPAuto (per connection, by its first byte).
	Format TCPFormat
	// Source is stored in Event.Source of every event.
	Source uint16
	// EventLoops is the number of gnet event loops (default GOMAXPROCS).
	EventLoops int
	// SharedThreads lets the event loops' goroutines move between OS
	// threads, as gnet's own default does. By default each loop is locked
	// to a thread of its own (gnet.WithLockOSThread; see Threading).
	SharedThreads bool
	// MaxConns bounds the open connections; more are accepted and closed at
	// once, counted in TCPStats.Refused. Default 1024.
	MaxConns int
	// MaxMessageSize bounds one line (without its newline) or one frame
	// (header included; codec frames are codec.FrameSize bytes). A larger
	// one closes its connection (TCPStats.Oversize). Default 64 KiB.
	MaxMessageSize int
	// ReadBufferSize is the size of each event loop's read buffer, i.e. the
	// most one read hands to the splitter (rounded up to a power of two by
	// gnet). Default 256 KiB.
	ReadBufferSize int
	// Ack makes the server send ack messages: after each read that yielded
	// messages, the loop calls Publisher.Barrier and then writes to the
	// connection the number of its messages the engine has durably taken
	// (published or rejected to the dead-letter output). See AppendTCPAck.
	Ack bool
	// NewParser returns the JSON parser of one event loop (TCPLines). Nil
	// means codec.NewParser with this config's limits and source.
	NewParser func(symbols *codec.SymbolTable) JSONParser
	// DecodeFrame decodes one whole frame (TCPFrames), as cut by its
	// header's length. Nil means codec.DecodeFrame, requiring that it use
	// every byte.
	DecodeFrame func(payload []byte, ev *codec.Event) error
	// Logger receives connection-level events (oversize closes, refused
	// connections); default slog.Default().
	Logger *slog.Logger
	// StopTimeout bounds the wait for the event loops when Run's context
	// ends. Default 10s.
	StopTimeout time.Duration
	// IdleTimeout closes a connection that has sent nothing for this long
	// (TCPStats.IdleClosed), so that idle clients cannot hold all MaxConns
	// slots. It is checked about every IdleTimeout/4 (at most every second),
	// so a connection is closed between IdleTimeout and IdleTimeout plus
	// that period after its last read. Default 5 minutes; negative turns
	// it off. Connections of a loop that is blocked publishing
	// (backpressure) are not idle.
	IdleTimeout time.Duration
}

// TCPServer is the TCP feed: a gnet/v2 server that reads newline-delimited
// JSON or codec binary frames (see TCPFormat) from many connections and
// publishes the events.
//
// # Threading
//
// gnet runs EventLoops event loops, each a goroutine that owns a set of
// connections, locked to an OS thread of its own unless SharedThreads is
// set. A loop waits in epoll_wait, a system call; Go's scheduler hands the
// P of a thread blocked in a system call to another thread, and an unlocked
// loop that wakes up has to find a P, often on another thread it wakes
// with a futex. On a loaded machine that hopping dominated the feed's
// latency: end to end at 50k-100k msgs/s over loopback on two vCPUs (`qstream
// bench e2e`), p50 37-100 µs and p90 about 2 ms unlocked, 27-36 µs and
// 60-200 µs locked (BENCHMARKS.md). A loop's thread stays its own while
// it waits, which costs a thread per loop, and saturated ingest is a few
// per cent slower (BenchmarkTCPIngest). Each loop gets its own Publisher (created on the loop's
// goroutine when its first connection opens) and its own parser, kept in a
// table indexed by loop; each connection's state lives in a slot of a table
// of MaxConns slots, preallocated by NewTCPServer and reached through the
// gnet connection's context. Nothing on the read path takes a lock, looks up
// a map or allocates after warm-up.
//
// # Reads and partial messages
//
// On every read, OnTraffic takes all buffered bytes (gnet's Peek), cuts them
// into messages and consumes them all (Discard). A message cut by the read
// boundary is copied into the connection's carry buffer (bounded by
// MaxMessageSize) and completed from the next read; so gnet's own inbound
// buffer stays empty and Peek never copies. Malformed messages go to
// Publisher.Reject with the connection's line number (TCPLines) and stream
// offset, and the connection stays open. A message over MaxMessageSize, or a
// frame stream that lost alignment, closes the connection: it is logged,
// counted and rejected (ReasonOversize or ReasonMalformed, with its first
// 256 bytes). A partial message still carried when a connection closes (the
// client stopped mid-line or mid-frame) is counted (TCPStats.Truncated) and
// rejected as ReasonMalformed with its bytes and position. Event.Source is
// TCPConfig.Source. Frames carry interned symbol ids, so a binary client
// must share the engine's symbol table (a frame whose id the table does not
// hold is rejected as unknown_symbol); JSON lines carry names.
//
// # Sequence numbers and dedup
//
// Event.Seq is left 0 (a frame's own Seq is cleared): the loop's Publisher
// numbers its events, continuing after a restart from the offset recovery
// restored, which is what lets a restarted loop send watermarks at once.
// The connection's line number and stream offset go into dead-letter
// positions only. The loops' Publishers are named "<Name>/loop<i>", one
// dedup scope: a message id resent on a new connection is a duplicate
// whichever loop the connection lands on. When a loop's last connection
// closes, its Publisher's source goes idle (SourceIdler), so that a loop the
// clients have left does not hold the engine's watermark back; its next
// connection's events make it count again.
//
// # Backpressure
//
// Publisher.Publish blocks while the target ring is full. The loop then
// waits inside OnTraffic and does not return to epoll, so it reads none of
// its sockets; the kernel receive buffers fill and TCP flow control stops
// the senders. Nothing is dropped and memory stays bounded. This stalls
// every connection of that loop, but they all publish through the loop's
// Publisher into the same rings, so they could not make progress anyway.
// The alternative, returning with the data left in gnet's inbound buffer and
// retrying later (Wake), does not stop the reading: gnet v2 keeps draining a
// readable socket into its elastic, unbounded inbound buffer and has no way
// to pause read interest on one connection. The wait ends when the shards
// free ring space or the engine stops (Publish returns ErrStopped; the
// connection is then closed). Run bounds its own shutdown by StopTimeout.
//
// # Acks
//
// With Ack set, after a read that yielded messages the loop makes them
// visible and notes the WAL position they end at (Publisher.Mark), and the
// loop's acker goroutine writes an ack with the connection's cumulative
// count once that position is durable (the WAL group commit). The loop goes
// on reading and publishing meanwhile: no connection of a loop waits for
// another's fsync, and an ack covers what was taken up to its read. Acks of
// a loop go out in order; at most tcpAckInFlight wait per loop (then the
// loop waits: backpressure). A Publisher without Mark (not the engine's)
// gets the old way: Barrier in the loop, then the write.
type TCPServer struct {
	cfg TCPConfig
	log *slog.Logger

	started atomic.Bool
	ready   chan struct{}
	addr    atomic.Pointer[net.TCPAddr]
	eng     gnet.Engine
	ctx     context.Context // Run's context: ends Barrier waits at shutdown
	pubs    Publishers

	mu        sync.Mutex // guards the fields below; taken on open and close only
	loopIdx   map[gnet.EventLoop]int
	loops     []tcpLoop // preallocated, EventLoops entries
	conns     []tcpConn // preallocated, MaxConns slots
	free      []int32   // free slots (a stack)
	nextID    uint64
	closed    tcpCounters // counters of closed connections
	accepted  uint64
	refused   uint64
	nClosed   uint64
	oversize  atomic.Uint64
	unaligned atomic.Uint64
	truncated atomic.Uint64
	idleClose uint64
	errLoop   error // first failure to set up a loop
}

// tcpLoop is the state of one event loop, touched only by its goroutine
// once set up.
type tcpLoop struct {
	idx     int
	pub     Publisher
	claimer claimingPublisher // pub, when it hands out ring slots to parse into; else nil
	slots   tcpSlots          // claimer's slots of the read being consumed
	parser  JSONParser
	decode  func([]byte, *codec.Event) error
	symbols *codec.SymbolTable // the engine's: frames are checked against it
	ev      codec.Event
	ackBuf  []byte
	acker   *tcpAcker // nil: acks are written in the loop after Barrier
	stopped bool      // the Publisher returned ErrStopped
	conns   int       // open connections, under TCPServer.mu
	// busy is set while the loop is inside OnTraffic (perhaps blocked on
	// backpressure): its connections are not idle then.
	busy atomic.Bool
}

// tcpConn is one connection slot. The splitter and the unexported plain
// fields belong to the loop goroutine; the counters are atomics so that
// Stats can read them from anywhere.
type tcpConn struct {
	loop   *tcpLoop
	slot   int32
	split  tcpSplitter
	taken  uint64 // messages published or rejected
	acked  uint64 // count in the last ack sent
	id     uint64
	gen    atomic.Uint64 // id, for the acker: an ack of a closed connection must not count for the next in its slot
	remote string
	c      tcpCounters

	// Idle tracking, under TCPServer.mu (set by open, read by closeIdle).
	conn      gnet.Conn
	idleBytes uint64    // c.bytes at the last check that saw it move
	idleSince time.Time // when it last moved (or the connection opened)
	idleShut  bool      // closed for idleness; the close is pending
}

type tcpCounters struct {
	messages atomic.Uint64
	bytes    atomic.Uint64
	rejects  atomic.Uint64
	errors   atomic.Uint64
	acked    atomic.Uint64
}

func (c *tcpCounters) reset() {
	c.messages.Store(0)
	c.bytes.Store(0)
	c.rejects.Store(0)
	c.errors.Store(0)
	c.acked.Store(0)
}

// TCPConnStats are the counters of one open connection.
type TCPConnStats struct {
	ID       uint64 // connection number, from 1, in accept order (refused ones get none)
	Remote   string
	Loop     int
	Messages uint64 // events published
	Bytes    uint64 // bytes read
	Rejects  uint64 // malformed messages sent to Publisher.Reject
	Errors   uint64 // oversize messages and publish failures (each closes the connection)
	Acked    uint64 // count carried by the last ack sent
}

// TCPStats is a snapshot of a TCPServer's counters.
type TCPStats struct {
	Open     int    // open connections
	Accepted uint64 // connections accepted (including refused ones)
	Refused  uint64 // connections closed at once because MaxConns were open
	Closed   uint64 // connections closed (refused ones excluded)
	Oversize uint64 // connections closed for an oversize message
	// Unaligned counts TCPFrames connections closed because the stream was
	// not at a frame header (wrong magic byte).
	Unaligned uint64
	// Truncated counts connections that closed inside a message (a half
	// line or half frame, rejected to the dead-letter output).
	Truncated uint64
	// IdleClosed counts connections closed after IdleTimeout without data.
	IdleClosed uint64
	// Totals over open and closed connections.
	Messages, Bytes, Rejects, Errors uint64
	Conns                            []TCPConnStats // the open connections, by ID
}

// NewTCPServer validates cfg, applies defaults and preallocates the
// connection table.
func NewTCPServer(cfg TCPConfig) (*TCPServer, error) {
	if cfg.Name == "" {
		cfg.Name = "tcp"
	}
	if cfg.Format != TCPLines && cfg.Format != TCPFrames && cfg.Format != TCPAuto {
		return nil, fmt.Errorf("%w: Format must be TCPLines, TCPFrames or TCPAuto", ErrTCPConfig)
	}
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Addr is empty", ErrTCPConfig)
	}
	cfg.Addr = strings.TrimPrefix(cfg.Addr, "tcp://")
	if cfg.EventLoops <= 0 {
		cfg.EventLoops = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultTCPMaxConns
	}
	if cfg.MaxConns > 1<<20 {
		return nil, fmt.Errorf("%w: MaxConns %d over 1<<20", ErrTCPConfig, cfg.MaxConns)
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultTCPMaxMessageSize
	}
	if cfg.MaxMessageSize > 1<<30 {
		return nil, fmt.Errorf("%w: MaxMessageSize %d over 1 GiB", ErrTCPConfig, cfg.MaxMessageSize)
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = DefaultTCPReadBufferSize
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultTCPStopTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultTCPIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewParser == nil {
		cfg.NewParser = codecParsers(cfg.MaxMessageSize, cfg.Source)
	}
	if cfg.DecodeFrame == nil {
		cfg.DecodeFrame = decodeCodecFrame
	}
	s := &TCPServer{
		cfg:     cfg,
		log:     cfg.Logger.With("feed", cfg.Name),
		ready:   make(chan struct{}),
		loopIdx: make(map[gnet.EventLoop]int, cfg.EventLoops),
		loops:   make([]tcpLoop, 0, cfg.EventLoops),
		conns:   make([]tcpConn, cfg.MaxConns),
		free:    make([]int32, cfg.MaxConns),
	}
	carryCap := min(cfg.MaxMessageSize+TCPFrameHeaderSize, 4<<10)
	for i := range s.conns {
		s.conns[i].slot = int32(i)
		s.conns[i].split = newTCPSplitter(cfg.Format, cfg.MaxMessageSize)
		s.conns[i].split.carry = make([]byte, 0, carryCap)
		s.free[i] = int32(cfg.MaxConns - 1 - i) // pop from the end: slot 0 first
	}
	return s, nil
}

// decodeCodecFrame decodes one frame cut from a TCPFrames stream, which
// must be exactly one codec frame.
func decodeCodecFrame(payload []byte, ev *codec.Event) error {
	n, err := codec.DecodeFrame(payload, ev)
	if err != nil {
		return err
	}
	if n != len(payload) {
		return errTCPFrameTrailing
	}
	return nil
}

// errTCPFrameSymbol rejects a frame whose interned symbol id the engine's
// symbol table does not hold: frames carry ids, not names, so the sender
// must share the table (or register the names first, e.g. with JSON lines).
var errTCPFrameSymbol = &codec.Error{Reason: codec.ReasonUnknownSymbol, Detail: "frame symbol id is not in the engine's symbol table"}

// checkFrameSymbol rejects a decoded frame whose symbol id is unknown, so
// that it is dead-lettered and counted instead of failing the Publisher
// (the WAL refuses to log an event whose symbol it cannot name). Ids are
// dense from 1; 0 is allowed only for kinds without a symbol.
func checkFrameSymbol(symbols *codec.SymbolTable, ev *codec.Event) error {
	if int(ev.Symbol) > symbols.Len() {
		return errTCPFrameSymbol
	}
	if ev.Symbol == 0 {
		switch ev.Kind {
		case codec.KindTrade, codec.KindQuote, codec.KindBar, codec.KindBook, codec.KindStatus:
			return errTCPFrameSymbol
		}
	}
	return nil
}

var errTCPFrameTrailing = &codec.Error{Reason: codec.ReasonMalformed, Detail: "frame length differs from codec.FrameSize", Offset: 2}

// Name implements Feed.
func (s *TCPServer) Name() string { return s.cfg.Name }

// Ready is closed once the server listens; Addr is valid from then on.
func (s *TCPServer) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound listen address, or nil before Ready.
func (s *TCPServer) Addr() *net.TCPAddr { return s.addr.Load() }

// Run serves until ctx is done, then closes every connection and returns
// nil; it returns an error if the server cannot listen or does not stop
// within StopTimeout. Run may be called once.
func (s *TCPServer) Run(ctx context.Context, pubs Publishers) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrTCPRunning
	}
	s.pubs = pubs
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = runCtx
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(&tcpHandler{s: s}, "tcp://"+s.cfg.Addr,
			gnet.WithNumEventLoop(s.cfg.EventLoops),
			gnet.WithReadBufferCap(s.cfg.ReadBufferSize),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			// SO_REUSEADDR: a restarted engine (after kill -9 too) binds
			// its address at once, with the old connections in TIME_WAIT.
			// Not SO_REUSEPORT: a second live server on the address must
			// fail, not share the connections.
			gnet.WithReuseAddr(true),
			gnet.WithReusePort(false),
			gnet.WithLogger(gnetLogger{s.log}),
			gnet.WithLockOSThread(!s.cfg.SharedThreads),
		)
	}()
	select {
	case err := <-errc:
		if err == nil {
			err = errors.New("stopped before it was started")
		}
		return fmt.Errorf("tcp: %s: %w", s.cfg.Addr, err)
	case <-s.ready:
	}
	if s.cfg.IdleTimeout > 0 {
		go s.idleLoop(runCtx)
	}
	select {
	case err := <-errc: // the engine stopped by itself
		s.stopAckers()
		if err != nil {
			return fmt.Errorf("tcp: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	cancel() // ends Barrier waits in the loops and the ackers'
	stopCtx, stop := context.WithTimeout(context.Background(), s.cfg.StopTimeout)
	defer stop()
	if err := s.eng.Stop(stopCtx); err != nil {
		return fmt.Errorf("tcp: stop: %w", err)
	}
	select {
	case err := <-errc:
		s.stopAckers() // the loops have returned: nothing queues any more
		if err != nil {
			return fmt.Errorf("tcp: %w", err)
		}
	case <-stopCtx.Done():
		return fmt.Errorf("tcp: stop: %w", stopCtx.Err())
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *TCPServer) Stats() TCPStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := TCPStats{
		Accepted:   s.accepted,
		Refused:    s.refused,
		Closed:     s.nClosed,
		Oversize:   s.oversize.Load(),
		Unaligned:  s.unaligned.Load(),
		Truncated:  s.truncated.Load(),
		IdleClosed: s.idleClose,
		Messages:   s.closed.messages.Load(),
		Bytes:      s.closed.bytes.Load(),
		Rejects:    s.closed.rejects.Load(),
		Errors:     s.closed.errors.Load(),
	}
	for i := range s.conns {
		cs := &s.conns[i]
		if cs.id == 0 {
			continue
		}
		c := TCPConnStats{
			ID: cs.id, Remote: cs.remote, Loop: cs.loop.idx,
			Messages: cs.c.messages.Load(), Bytes: cs.c.bytes.Load(),
			Rejects: cs.c.rejects.Load(), Errors: cs.c.errors.Load(), Acked: cs.c.acked.Load(),
		}
		st.Messages += c.Messages
		st.Bytes += c.Bytes
		st.Rejects += c.Rejects
		st.Errors += c.Errors
		st.Conns = append(st.Conns, c)
	}
	st.Open = len(st.Conns)
	sortTCPConnStats(st.Conns)
	return st
}

func sortTCPConnStats(cs []TCPConnStats) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].ID < cs[j-1].ID; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// open assigns a slot (and, at the loop's first connection, the loop's
// Publisher and parser) to a new connection. It runs on the loop's
// goroutine.
func (s *TCPServer) open(c gnet.Conn, remote string) (*tcpConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted++
	el := c.EventLoop()
	if s.errLoop != nil {
		return nil, s.errLoop
	}
	li, ok := s.loopIdx[el]
	if !ok {
		if len(s.loops) == cap(s.loops) {
			// gnet runs exactly EventLoops loops; a new one is a bug.
			s.errLoop = fmt.Errorf("tcp: more than %d event loops", cap(s.loops))
			return nil, s.errLoop
		}
		li = len(s.loops)
		name := s.cfg.Name + "/loop" + strconv.Itoa(li)
		pub, err := s.pubs.NewPublisher(name)
		if err != nil {
			return nil, fmt.Errorf("tcp: publisher %s: %w", name, err)
		}
		s.loops = s.loops[:li+1] // within the preallocated capacity: loops never move
		l := &s.loops[li]
		l.idx, l.pub, l.decode, l.symbols = li, pub, s.cfg.DecodeFrame, s.pubs.Symbols()
		if mp, ok := pub.(markingPublisher); ok && s.cfg.Ack {
			l.acker = newTCPAcker(s, mp)
		}
		l.claimer, _ = pub.(claimingPublisher)
		if s.cfg.Format != TCPFrames {
			l.parser = s.cfg.NewParser(s.pubs.Symbols())
		}
		s.loopIdx[el] = li
	}
	if len(s.free) == 0 {
		s.refused++
		return nil, nil
	}
	slot := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	cs := &s.conns[slot]
	s.nextID++
	cs.loop, cs.id, cs.remote = &s.loops[li], s.nextID, remote
	cs.gen.Store(s.nextID)
	s.loops[li].conns++
	cs.taken, cs.acked = 0, 0
	cs.conn, cs.idleBytes, cs.idleSince, cs.idleShut = c, 0, time.Now(), false
	cs.split.reset()
	cs.c.reset()
	return cs, nil
}

// release returns a closed connection's slot, adding its counters to the
// closed totals. It returns the connection's loop when that was the loop's
// last open connection.
func (s *TCPServer) release(cs *tcpConn) (emptied *tcpLoop) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := cs.loop; l != nil {
		if l.conns--; l.conns == 0 {
			emptied = l
		}
	}
	s.closed.messages.Add(cs.c.messages.Load())
	s.closed.bytes.Add(cs.c.bytes.Load())
	s.closed.rejects.Add(cs.c.rejects.Load())
	s.closed.errors.Add(cs.c.errors.Load())
	s.nClosed++
	cs.id, cs.remote, cs.loop, cs.conn = 0, "", nil, nil
	s.free = append(s.free, cs.slot)
	return emptied
}

// loopIdle tells the engine that loop l has no connection left: its
// Publisher's source goes idle (SourceIdler), so that its watermark does not
// hold the engine's back while the clients are on other loops or away; the
// next connection's events make it count again. It runs on l's goroutine.
func (s *TCPServer) loopIdle(l *tcpLoop) {
	ip, ok := l.pub.(SourceIdler)
	if !ok || l.stopped {
		return
	}
	if err := ip.Idle(); err != nil {
		s.log.Warn("tcp: marking the loop's source idle failed", "loop", l.idx, "err", err)
	}
}

// consume handles one read of connection cs: every complete message in buf
// is decoded and published (or rejected); a partial one is carried. It
// returns gnet.Close when the connection must be closed.
func (s *TCPServer) consume(cs *tcpConn, buf []byte) gnet.Action {
	l := cs.loop
	sp := &cs.split
	sp.Begin(buf)
	var published, rejected, errs uint64
	action := gnet.None
	for {
		msg, ok, err := sp.Next()
		if err != nil {
			s.closeBadStream(cs, msg, err)
			errs++
			action = gnet.Close
			break
		}
		if !ok {
			break
		}
		if sp.format == TCPLines && len(msg) == 0 {
			continue // blank line
		}
		ev := &l.ev
		if l.claimer != nil {
			// Parse straight into a ring slot (see tcpSlots).
			if ev, err = l.slots.next(l.claimer); err != nil {
				s.publishFailed(l, cs, err)
				errs++
				action = gnet.Close
				break
			}
		}
		var perr error
		if sp.format == TCPLines {
			ev.Seq, ev.IngestNs = 0, 0
			perr = l.parser.ParseJSON(msg, ev)
		} else if perr = l.decode(msg, ev); perr == nil {
			perr = checkFrameSymbol(l.symbols, ev)
		}
		if perr != nil {
			l.pub.Reject(msg, codec.ReasonOf(perr), sp.Pos(), perr)
			rejected++
			if l.claimer != nil {
				*ev = codec.Event{} // the next message is parsed into it
			}
			continue
		}
		// Seq 0: the Publisher assigns the loop's next source offset.
		ev.Seq, ev.Source, ev.IngestNs = 0, s.cfg.Source, 0
		var text []byte
		if sp.format == TCPLines {
			text = parsedText(l.parser)
		}
		switch {
		case l.claimer == nil:
			err = l.pub.PublishText(ev, text)
		case len(text) == 0:
			l.slots.k++
		default:
			// Its text's chunk events follow it: the events parsed
			// before it go first, then it with its text.
			l.ev = *ev
			if err = l.slots.commit(l.claimer); err == nil {
				err = l.pub.PublishText(&l.ev, text)
			}
		}
		if err != nil {
			s.publishFailed(l, cs, err)
			errs++
			action = gnet.Close
			break
		}
		published++
	}
	if l.claimer != nil {
		if err := l.slots.commit(l.claimer); err != nil && action == gnet.None {
			s.publishFailed(l, cs, err)
			errs++
			action = gnet.Close
		}
	}
	if published > 0 {
		if err := l.pub.Flush(); err != nil && action == gnet.None {
			s.publishFailed(l, cs, err)
			errs++
			action = gnet.Close
		}
	}
	cs.taken += published + rejected
	cs.c.bytes.Add(uint64(len(buf)))
	if published > 0 {
		cs.c.messages.Add(published)
	}
	if rejected > 0 {
		cs.c.rejects.Add(rejected)
	}
	if errs > 0 {
		cs.c.errors.Add(errs)
	}
	return action
}

// ack makes the connection's messages durable (Publisher.Barrier) and
// writes their count, if it changed since the last ack.
func (s *TCPServer) ack(c gnet.Conn, cs *tcpConn) gnet.Action {
	if cs.taken == cs.acked {
		return gnet.None
	}
	l := cs.loop
	if l.acker != nil {
		lsn, err := l.acker.pub.Mark()
		if err != nil {
			s.publishFailed(l, cs, err)
			cs.c.errors.Add(1)
			return gnet.Close
		}
		cs.acked = cs.taken
		l.acker.queue(tcpAckReq{conn: c, cs: cs, gen: cs.id, count: cs.taken, lsn: lsn, format: cs.split.format})
		return gnet.None
	}
	if err := l.pub.Barrier(s.ctx); err != nil {
		s.publishFailed(l, cs, err)
		cs.c.errors.Add(1)
		return gnet.Close
	}
	l.ackBuf = AppendTCPAck(l.ackBuf[:0], cs.split.format, cs.taken)
	cs.acked = cs.taken
	cs.c.acked.Store(cs.taken) // before the write: a client that has the ack sees it in Stats
	if _, err := c.Write(l.ackBuf); err != nil {
		cs.c.errors.Add(1)
		return gnet.Close
	}
	return gnet.None
}

// claimingPublisher is the engine's Publisher as a loop fills events in
// place: ClaimBatch hands out zeroed events in ring slots, CommitBatch
// publishes the first k (engine.Publisher.ClaimBatch).
type claimingPublisher interface {
	ClaimBatch(n int) ([]codec.Event, error)
	CommitBatch(k int) error
}

// tcpClaimMax bounds the events a loop claims at once.
const tcpClaimMax = 64

// tcpSlots are the ring slots a loop parses the messages of one read into:
// claimed in batches, committed in order before an event with text is
// published and at the end of the read (consume), so a message that fails
// to parse leaves its slot to the next one and nothing waits in a claim
// between reads.
type tcpSlots struct {
	evs []codec.Event // the claim; evs[:k] hold parsed events
	k   int
}

// next returns the event to parse the next message into: evs[k].
func (t *tcpSlots) next(c claimingPublisher) (*codec.Event, error) {
	if t.k == len(t.evs) {
		if err := t.commit(c); err != nil {
			return nil, err
		}
		evs, err := c.ClaimBatch(tcpClaimMax)
		if err != nil {
			return nil, err
		}
		t.evs = evs
	}
	return &t.evs[t.k], nil
}

// commit publishes the parsed events and ends the claim.
func (t *tcpSlots) commit(c claimingPublisher) error {
	if len(t.evs) == 0 {
		return nil
	}
	err := c.CommitBatch(t.k)
	t.evs, t.k = nil, 0
	return err
}

// markingPublisher is the engine's Publisher as the ackers use it.
type markingPublisher interface {
	Mark() (uint64, error)
	WaitLSN(ctx context.Context, lsn uint64) error
}

// tcpAckInFlight bounds a loop's acks waiting for durability or for their
// write.
const tcpAckInFlight = 1024

// tcpAckReq is one ack to send once lsn is durable.
type tcpAckReq struct {
	conn   gnet.Conn
	cs     *tcpConn
	gen    uint64
	count  uint64
	lsn    uint64
	format TCPFormat
}

// tcpAcker is a loop's acker goroutine: it waits for each ack's WAL
// position to be durable, in order, and has gnet write the ack on the
// loop (AsyncWrite). Its buffers are preallocated slots returned by the
// write's callback; gnet allocates a small task per write (per ack, never
// per message).
type tcpAcker struct {
	s     *TCPServer
	pub   markingPublisher
	reqs  chan tcpAckReq
	free  chan int32
	slots []tcpAckSlot
	done  chan struct{}
}

type tcpAckSlot struct {
	buf     [TCPAckSize + 32]byte
	written gnet.AsyncCallback // returns the slot; made once
}

func newTCPAcker(s *TCPServer, pub markingPublisher) *tcpAcker {
	a := &tcpAcker{s: s, pub: pub, reqs: make(chan tcpAckReq, tcpAckInFlight), free: make(chan int32, tcpAckInFlight),
		slots: make([]tcpAckSlot, tcpAckInFlight), done: make(chan struct{})}
	for i := range a.slots {
		idx := int32(i)
		a.slots[i].written = func(gnet.Conn, error) error { a.free <- idx; return nil }
		a.free <- idx
	}
	go a.run()
	return a
}

// queue hands an ack to the acker; it waits while tcpAckInFlight are
// pending (backpressure on the loop, as a full ring is).
func (a *tcpAcker) queue(r tcpAckReq) { a.reqs <- r }

func (a *tcpAcker) run() {
	defer close(a.done)
	for r := range a.reqs {
		if err := a.pub.WaitLSN(a.s.ctx, r.lsn); err != nil {
			if a.s.ctx.Err() == nil {
				a.s.log.Warn("tcp: an ack's messages did not become durable; closing the connection", "err", err)
				_ = r.conn.Close()
			}
			continue
		}
		idx := <-a.free
		sl := &a.slots[idx]
		b := AppendTCPAck(sl.buf[:0], r.format, r.count)
		if r.cs.gen.Load() == r.gen {
			r.cs.c.acked.Store(r.count) // before the write: a client that has the ack sees it in Stats
		}
		if err := r.conn.AsyncWrite(b, sl.written); err != nil {
			a.free <- idx // not queued: the callback will not run
		}
	}
}

// stopAckers ends the ackers once the loops have stopped.
func (s *TCPServer) stopAckers() {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	for i := range loops {
		if a := loops[i].acker; a != nil {
			close(a.reqs)
			<-a.done
		}
	}
}

// Ack frames (TCPFrames connections). An ack frame is TCPAckSize bytes:
// TCPAckMagic, version 1, the length TCPAckSize as a little-endian uint16,
// then the count as a little-endian uint64.
const (
	TCPAckMagic = 0xF6
	TCPAckSize  = 12
)

// AppendTCPAck appends the ack message for count durably taken messages in
// the given format: for TCPLines the line `{"ack":<count>}` and a newline;
// for TCPFrames an ack frame (TCPAckMagic). Counts are cumulative per
// connection, from its start; rejected messages count (they reached the
// dead-letter output, and resending them would not help).
func AppendTCPAck(dst []byte, format TCPFormat, count uint64) []byte {
	if format == TCPFrames {
		dst = append(dst, TCPAckMagic, 1, TCPAckSize, 0)
		return binary.LittleEndian.AppendUint64(dst, count)
	}
	dst = append(dst, `{"ack":`...)
	dst = strconv.AppendUint(dst, count, 10)
	return append(dst, '}', '\n')
}

// closeBadStream reports a message over the size limit, or a frame stream
// out of alignment, before the connection is closed.
func (s *TCPServer) closeBadStream(cs *tcpConn, prefix []byte, err error) {
	off := cs.split.pendingOff()
	reason := codec.ReasonMalformed
	if err == errTCPOversize {
		reason = codec.ReasonOversize
		s.oversize.Add(1)
		s.log.Warn("tcp: closing connection: message over the size limit",
			"remote", cs.remote, "conn", cs.id, "limit", s.cfg.MaxMessageSize, "offset", off)
	} else {
		s.unaligned.Add(1)
		s.log.Warn("tcp: closing connection: frame stream not aligned",
			"remote", cs.remote, "conn", cs.id, "offset", off)
	}
	raw := prefix[:min(len(prefix), tcpRejectRawMax)]
	cs.loop.pub.Reject(raw, reason, Position{Offset: off}, err)
	cs.split.dropCarry() // reported here; not a truncated message at close
}

// errTCPTruncated is the error of a partial message left at close.
var errTCPTruncated = &codec.Error{Reason: codec.ReasonMalformed, Detail: "tcp: connection closed inside a message (truncated)", Offset: -1}

// closeTruncated reports a partial message the connection's carry buffer still
// holds as it closes: the client stopped mid-line or mid-frame. It runs on
// the loop's goroutine (OnClose), which owns the loop's Publisher.
func (s *TCPServer) closeTruncated(cs *tcpConn) {
	sp := &cs.split
	if sp.Carried() == 0 || cs.loop == nil {
		return
	}
	s.truncated.Add(1)
	pos := sp.carriedPos()
	s.log.Warn("tcp: connection closed inside a message", "remote", cs.remote, "conn", cs.id,
		"bytes", sp.Carried(), "offset", pos.Offset)
	cs.loop.pub.Reject(sp.carry, codec.ReasonMalformed, pos, errTCPTruncated)
	cs.c.rejects.Add(1)
	sp.dropCarry()
}

// idleLoop closes idle connections until ctx ends.
func (s *TCPServer) idleLoop(ctx context.Context) {
	every := min(max(s.cfg.IdleTimeout/4, time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.closeIdle(now)
		}
	}
}

// closeIdle closes the connections that have read nothing for IdleTimeout.
// A connection's byte count is its activity; a loop inside OnTraffic
// (blocked on backpressure, say) keeps all its connections active. gnet's
// Conn.Close is safe from any goroutine and ignores a connection that has
// closed meanwhile.
func (s *TCPServer) closeIdle(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.conns {
		cs := &s.conns[i]
		if cs.id == 0 || cs.conn == nil || cs.idleShut {
			continue
		}
		if b := cs.c.bytes.Load(); b != cs.idleBytes || cs.loop.busy.Load() {
			cs.idleBytes, cs.idleSince = b, now
			continue
		}
		if now.Sub(cs.idleSince) < s.cfg.IdleTimeout {
			continue
		}
		cs.idleShut = true
		s.idleClose++
		s.log.Info("tcp: closing idle connection", "remote", cs.remote, "conn", cs.id, "idle", now.Sub(cs.idleSince).Round(time.Millisecond))
		_ = cs.conn.Close()
	}
}

func (s *TCPServer) publishFailed(l *tcpLoop, cs *tcpConn, err error) {
	if errors.Is(err, ErrStopped) || errors.Is(err, context.Canceled) {
		if !l.stopped {
			l.stopped = true
			s.log.Info("tcp: engine stopping; closing connections", "loop", l.idx)
		}
		return
	}
	s.log.Error("tcp: closing connection: publish failed", "remote", cs.remote, "conn", cs.id, "err", err)
}

// tcpHandler adapts TCPServer to gnet's callbacks, keeping them out of the
// server's exported API.
type tcpHandler struct {
	gnet.BuiltinEventEngine
	s *TCPServer
}

func (h *tcpHandler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				s.addr.Store(&net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port})
			case *unix.SockaddrInet6:
				s.addr.Store(&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port})
			}
		}
		_ = unix.Close(fd)
	}
	close(s.ready)
	return gnet.None
}

func (h *tcpHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	remote := ""
	if ra := c.RemoteAddr(); ra != nil {
		remote = ra.String()
	}
	cs, err := s.open(c, remote)
	if err != nil {
		s.log.Error("tcp: refusing connection", "remote", remote, "err", err)
		return nil, gnet.Close
	}
	if cs == nil {
		s.log.Warn("tcp: refusing connection: too many open", "remote", remote, "max", s.cfg.MaxConns)
		return nil, gnet.Close
	}
	c.SetContext(cs)
	return nil, gnet.None
}

func (h *tcpHandler) OnClose(c gnet.Conn, _ error) gnet.Action {
	if cs, ok := c.Context().(*tcpConn); ok && cs != nil {
		c.SetContext(nil)
		h.s.closeTruncated(cs)
		if l := h.s.release(cs); l != nil {
			h.s.loopIdle(l)
		}
	}
	return gnet.None
}

func (h *tcpHandler) OnTraffic(c gnet.Conn) gnet.Action {
	cs, ok := c.Context().(*tcpConn)
	if !ok || cs == nil {
		return gnet.Close
	}
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return gnet.None
	}
	l := cs.loop
	l.busy.Store(true)
	action := h.s.consume(cs, buf)
	_, _ = c.Discard(len(buf)) // all of it: the splitter carries any partial message
	if action == gnet.None && h.s.cfg.Ack {
		action = h.s.ack(c, cs)
	}
	l.busy.Store(false)
	return action
}

// gnetLogger routes gnet's own logging into slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) {
	g.l.Debug("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Infof(format string, args ...any) {
	g.l.Debug("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Warnf(format string, args ...any) {
	g.l.Warn("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Errorf(format string, args ...any) {
	g.l.Error("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.l.Error("gnet: fatal: " + fmt.Sprintf(format, args...))
}
