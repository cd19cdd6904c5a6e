package sinks

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"qstream/codec"
	"qstream/ops"
)

// Bounds of the ttl parameter of a redis:// sink URI: the expiry of the
// feature cache keys.
const (
	RedisTTLDefault = 60 * time.Second
	RedisTTLMin     = time.Second
	RedisTTLMax     = 30 * 24 * time.Hour
)

// redisChunkMax bounds the entries of one EVALSHA call: the script runs
// atomically, so a chunk is also the longest time (about a millisecond,
// 4-6 µs an entry) the writer keeps the server from serving anyone else.
// Larger chunks would not be cheaper per entry: the script's cost is its
// commands and arguments, not the call (measured at 64, 256 and 1000).
const redisChunkMax = 256

// RedisWriter is the Writer of a redis:// sink: the feature cache and the
// channels of DESIGN.md "Sinks".
//
//   - An indicator output (one per trade) sets features:{symbol}:realtime to
//     {"symbol","ts","price","volume",<indicators as in --emit indicators>,"seq"}
//     with the URI's ttl, and PUBLISHes the same object on features:{symbol}.
//   - A window result sets window:{spec}:{symbol} (no expiry: a 1h window's
//     latest result outlives any cache ttl) to its --output line and
//     PUBLISHes that line on windows:{symbol}.
//   - Pattern matches are PUBLISHed on patterns:{symbol}, news on news, as
//     their --output lines.
//
// A key never moves backwards: every keyed write goes through one Lua
// script (redis_lua.go) that writes only a value newer than the one the
// key holds, by a version read from the JSON (features: ts, then seq;
// windows: end, then the pane timing early < on_time < late, then count),
// and PUBLISHes only what it wrote. The writer passes the new value's
// version with it, and where its symbol puts "ts" in a feature object, so
// the script reads 26 bytes of the stored object rather than all of it
// and never parses the new one. A replayed output (the same bytes) is a
// duplicate, an older one stale; neither is written nor published, and
// both are counted. A consequence for windows:{symbol}: a late re-firing of
// a window older than the latest one kept, or a final pane that arrives
// after an early pane of a later window, is not published (counted stale).
// Pattern matches and news have no key to compare with: a replay after a
// crash publishes them again (at least once).
//
// Conflation: within one WriteBatch, the indicator outputs of a symbol
// conflate to its newest one (largest (ts, seq), the later of equals),
// which is the one the script would have kept had they all been written;
// the others are neither written nor published, and counted (conflated).
// The framework's batching between flushes sets how much conflates.
//
// Errors: a refused or lost connection, a timeout and the server states that
// heal (LOADING, BUSY, OOM, READONLY, TRYAGAIN, MASTERDOWN, CLUSTERDOWN)
// wrap ErrTransient; the framework retries the batch whole, which the
// versioned writes make harmless. A key Redis refuses for one output (it
// holds another type: WRONGTYPE) is a *PoisonError naming that output; so
// is an output the writer cannot name (a symbol the table does not hold, a
// window Op without a spec, an unknown kind). Anything else (a script
// error) is a system error.
//
// Encoding allocates nothing in steady state: values, keys and command
// arguments live in buffers reused from batch to batch (key and channel
// names are built once per symbol and window spec). go-redis allocates per
// command (one per chunk of redisChunkMax outputs) and per reply.
//
// Open, WriteBatch and Close are called from one goroutine; AppendStatus
// and Stats may be called from any.
type RedisWriter struct {
	opts redis.Options
	ttl  time.Duration
	env  Env

	client *redis.Client
	closed bool
	sha    string
	shaArg any

	jsonl *JSONLWriter // the --output line of windows, patterns, news

	names []string          // symbol names by id, refreshed from the table on a miss
	syms  []redisSymNames   // by symbol id
	wins  map[uint64][]byte // op<<32 | symbol → window:{spec}:{symbol}

	// Conflation: best[sym] is the index in the batch of the newest
	// indicator output of sym when stamp[sym] == gen.
	best       []int32
	stamp      []uint32
	gen        uint32
	nconflated uint64

	arena  []byte
	ents   []redisEntry
	bufs   []redisArg
	args   []any
	chunks []redisChunk
	ttlArg redisArg
	run    []int // chunk indices of one pipeline
	retry  []int
	cmds   []*redis.Cmd

	written, published, conflated, stale, dup, scriptLoads atomic.Uint64
}

// RedisStats are the counters of a RedisWriter.
type RedisStats struct {
	Written     uint64 // keys set (and published)
	Published   uint64 // messages published: keys set, pattern matches, news
	Conflated   uint64 // indicator outputs replaced by a newer one of the same batch
	Stale       uint64 // outputs older than what their key holds: not written
	Duplicate   uint64 // outputs whose key holds the same bytes: not written
	ScriptLoads uint64 // SCRIPT LOADs: at Open and after each NOSCRIPT
}

// redisSymNames are the key and channel names of one symbol, and where
// "ts" sits in its feature objects.
type redisSymNames struct {
	feat, winCh, patCh, movCh []byte
	tsAt                      int      // offset of the ts digits in a feature object
	tsFrom, tsTo              redisArg // TSFROM, TSTO of redisWriteScript
}

type redisEntry struct {
	idx      int  // in the batch
	mode     byte // 'f', 'w', 'p' (see redisWriteScript)
	key, ch  []byte
	sym      *redisSymNames
	off, end int // value in arena
	// Version arguments in arena: 'f' TS (v1); 'w' END (v1), COUNT (v2).
	v1Off, v1End, v2Off, v2End int
	rank                       byte // 'w': timing rank
	res                        byte // '1', '2', '3', 'E' (see redisWriteScript)
	err                        error
}

type redisChunk struct {
	first, n     int // ents[first : first+n]
	argLo, argHi int
	nkOff, nkEnd int // numkeys in arena
	lyOff, lyEnd int // layout in arena
}

// redisArg is a command argument that go-redis writes as it is
// (encoding.BinaryMarshaler). A pointer to it fits in an interface without
// allocating, as a []byte or string argument would not.
type redisArg []byte

func (a *redisArg) MarshalBinary() ([]byte, error) { return *a, nil }

var (
	redisArgEvalSha any = "evalsha"
	redisRankArgs       = [3]redisArg{redisArg("0"), redisArg("1"), redisArg("2")}
)

// redisRank is the rank of a pane timing in a window's version.
func redisRank(t ops.Timing) int {
	switch t {
	case ops.TimingEarly:
		return 0
	case ops.TimingLate:
		return 2
	}
	return 1
}

// NewRedis validates u, redis://[USER:PASSWORD@]HOST[:PORT][/DB][?ttl=DUR]
// (port 6379 by default, DB 0, ttl RedisTTLDefault within
// [RedisTTLMin, RedisTTLMax]), and returns a writer; it does not connect
// (Open does). An unknown query parameter is an error naming it.
func NewRedis(u *url.URL, env Env) (*RedisWriter, error) {
	if u == nil || u.Scheme != "redis" {
		return nil, fmt.Errorf("sinks: redis: want a redis:// URI")
	}
	if u.Opaque != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sinks: redis: %s: want redis://HOST:PORT[/DB][?ttl=DUR]", u.Redacted())
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, fmt.Errorf("sinks: redis: %s: no host", u.Redacted())
	}
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return nil, fmt.Errorf("sinks: redis: %s: empty port", u.Redacted())
		}
		port = "6379"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("sinks: redis: %s: port %q outside 1..65535", u.Redacted(), port)
	}
	db := 0
	if p := strings.TrimPrefix(u.Path, "/"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1<<16 {
			return nil, fmt.Errorf("sinks: redis: %s: database %q is not a number in 0..65536", u.Redacted(), p)
		}
		db = n
	}
	ttl := RedisTTLDefault
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("sinks: redis: %s: query: %w", u.Redacted(), err)
	}
	for name, vals := range q {
		switch name {
		case "ttl":
			if len(vals) != 1 {
				return nil, fmt.Errorf("sinks: redis: %s: ttl given %d times", u.Redacted(), len(vals))
			}
			d, err := time.ParseDuration(vals[0])
			if err != nil {
				return nil, fmt.Errorf("sinks: redis: %s: ttl: %w", u.Redacted(), err)
			}
			if d < RedisTTLMin || d > RedisTTLMax || d%time.Millisecond != 0 {
				return nil, fmt.Errorf("sinks: redis: %s: ttl %v outside [%v, %v] or finer than a millisecond",
					u.Redacted(), d, RedisTTLMin, RedisTTLMax)
			}
			ttl = d
		default:
			return nil, fmt.Errorf("sinks: redis: %s: unknown parameter %q (known: ttl)", u.Redacted(), name)
		}
	}
	if env.JSONL.Symbols == nil {
		return nil, errors.New("sinks: redis: no symbol table to name keys with")
	}
	if len(env.JSONL.Indicators) > ops.MaxValues {
		return nil, fmt.Errorf("sinks: redis: %d indicators, at most %d", len(env.JSONL.Indicators), ops.MaxValues)
	}
	w := &RedisWriter{
		opts: redis.Options{
			Addr:     net.JoinHostPort(host, port),
			DB:       db,
			Protocol: 2,
			// The framework retries (with backoff, through the breaker);
			// retrying inside go-redis too would only hide an outage.
			MaxRetries:               -1,
			DialTimeout:              2 * time.Second,
			DialerRetries:            1,
			ReadTimeout:              5 * time.Second,
			WriteTimeout:             5 * time.Second,
			PoolSize:                 2,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		},
		ttl:  ttl,
		env:  env,
		wins: make(map[uint64][]byte),
	}
	if u.User != nil {
		w.opts.Username = u.User.Username()
		w.opts.Password, _ = u.User.Password()
	}
	sum := sha1.Sum([]byte(redisWriteScript))
	w.sha = hex.EncodeToString(sum[:])
	w.shaArg = w.sha
	w.ttlArg = strconv.AppendInt(nil, ttl.Milliseconds(), 10)
	w.jsonl = NewJSONLWriter(io.Discard, env.JSONL)
	return w, nil
}

// TTL returns the expiry of the feature cache keys.
func (w *RedisWriter) TTL() time.Duration { return w.ttl }

// Addr returns the server's host:port.
func (w *RedisWriter) Addr() string { return w.opts.Addr }

// Open implements Writer: it loads the write script, which is also the
// check that the server answers. It may be called again after a failure.
func (w *RedisWriter) Open(ctx context.Context) error {
	if w.closed {
		return ErrClosed
	}
	if w.client == nil {
		w.client = redis.NewClient(&w.opts)
	}
	return w.loadScript(ctx)
}

func (w *RedisWriter) loadScript(ctx context.Context) error {
	sha, err := w.client.ScriptLoad(ctx, redisWriteScript).Result()
	if err != nil {
		return redisError("script load", err)
	}
	if sha != w.sha {
		return fmt.Errorf("sinks: redis: script load: server sha1 %s, want %s", sha, w.sha)
	}
	w.scriptLoads.Add(1)
	return nil
}

// Close implements Writer.
func (w *RedisWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.client == nil {
		return nil
	}
	return w.client.Close()
}

// Stats returns the writer's counters.
func (w *RedisWriter) Stats() RedisStats {
	return RedisStats{
		Written:     w.written.Load(),
		Published:   w.published.Load(),
		Conflated:   w.conflated.Load(),
		Stale:       w.stale.Load(),
		Duplicate:   w.dup.Load(),
		ScriptLoads: w.scriptLoads.Load(),
	}
}

// AppendStatus implements StatusWriter.
func (w *RedisWriter) AppendStatus(dst []byte) []byte {
	s := w.Stats()
	dst = append(dst, " written="...)
	dst = strconv.AppendUint(dst, s.Written, 10)
	dst = append(dst, " published="...)
	dst = strconv.AppendUint(dst, s.Published, 10)
	dst = append(dst, " conflated="...)
	dst = strconv.AppendUint(dst, s.Conflated, 10)
	dst = append(dst, " stale="...)
	dst = strconv.AppendUint(dst, s.Stale, 10)
	dst = append(dst, " dup="...)
	dst = strconv.AppendUint(dst, s.Duplicate, 10)
	dst = append(dst, " script_loads="...)
	return strconv.AppendUint(dst, s.ScriptLoads, 10)
}

// WriteBatch implements Writer.
func (w *RedisWriter) WriteBatch(ctx context.Context, outs []ops.Output) error {
	if w.closed {
		return ErrClosed
	}
	if w.client == nil {
		return errors.New("sinks: redis: write before Open")
	}
	perr := w.encode(outs)
	if len(w.chunks) > 0 {
		if err := w.exec(ctx); err != nil {
			return err
		}
	}
	var first *PoisonError
	var written, published, stale, dup uint64
	for i := range w.ents {
		e := &w.ents[i]
		switch {
		case e.err != nil:
			if first == nil {
				reason := codec.ReasonMalformed
				if strings.HasPrefix(e.err.Error(), "WRONGTYPE") {
					reason = codec.ReasonBadType
				}
				first = &PoisonError{Index: e.idx, Reason: reason,
					Err: fmt.Errorf("sinks: redis: %s: %w", e.key, e.err)}
			}
		case e.res == '1':
			published++
			if e.mode != 'p' {
				written++
			}
		case e.res == '2':
			dup++
		case e.res == '3':
			stale++
		}
	}
	w.written.Add(written)
	w.published.Add(published)
	w.stale.Add(stale)
	w.dup.Add(dup)
	var pe *PoisonError
	switch {
	case first != nil:
		pe = first
	case perr != nil:
		pe = perr
	default:
		w.conflated.Add(w.nconflated)
		return nil
	}
	// The framework retries the outputs after the poison one: count only
	// what conflated before it.
	n := uint64(0)
	for i := range outs[:pe.Index] {
		if o := &outs[i]; o.Kind == ops.OutIndicators && w.best[o.Symbol] != int32(i) {
			n++
		}
	}
	w.conflated.Add(n)
	return pe
}

// exec runs the chunks of the encoded batch in one pipeline, and once
// more those that met NOSCRIPT (a restarted server), after loading the
// script again. It fills the entries' results.
func (w *RedisWriter) exec(ctx context.Context) error {
	w.run = w.run[:0]
	for i := range w.chunks {
		w.run = append(w.run, i)
	}
	for attempt := 0; ; attempt++ {
		pipe := w.client.Pipeline()
		w.cmds = w.cmds[:0]
		for _, c := range w.run {
			ch := &w.chunks[c]
			w.cmds = append(w.cmds, pipe.Do(ctx, w.args[ch.argLo:ch.argHi]...))
		}
		_, _ = pipe.Exec(ctx) // each command's error is read below
		w.retry = w.retry[:0]
		for j, cmd := range w.cmds {
			ch := &w.chunks[w.run[j]]
			v, err := cmd.Result()
			if err != nil {
				if redis.HasErrorPrefix(err, "NOSCRIPT") {
					w.retry = append(w.retry, w.run[j])
					continue
				}
				return redisError("evalsha", err)
			}
			if err := w.results(ch, v); err != nil {
				return err
			}
		}
		if len(w.retry) == 0 {
			return nil
		}
		if attempt > 0 {
			return errors.New("sinks: redis: NOSCRIPT right after SCRIPT LOAD")
		}
		if err := w.loadScript(ctx); err != nil {
			return err
		}
		if w.env.Logger != nil {
			w.env.Logger.Info("sinks: redis: write script loaded again after NOSCRIPT (server restarted)",
				"addr", w.opts.Addr)
		}
		w.run = append(w.run[:0], w.retry...)
	}
}

// results fills the entries of chunk ch from the script's reply v: a
// string of one status byte per entry, then the error of each 'E'.
func (w *RedisWriter) results(ch *redisChunk, v any) error {
	arr, _ := v.([]any)
	var st string
	if len(arr) > 0 {
		st, _ = arr[0].(string)
	}
	if len(st) != ch.n {
		return fmt.Errorf("sinks: redis: evalsha: reply %T of %d elements, %d statuses for %d entries",
			v, len(arr), len(st), ch.n)
	}
	errs := arr[1:]
	for k := range ch.n {
		e := &w.ents[ch.first+k]
		switch c := st[k]; c {
		case '1', '2', '3':
			e.res = c
		case 'E':
			if len(errs) == 0 {
				return errors.New("sinks: redis: evalsha: reply with fewer errors than 'E' statuses")
			}
			r, ok := errs[0].(error)
			if !ok {
				return fmt.Errorf("sinks: redis: evalsha: reply error element %T", errs[0])
			}
			errs = errs[1:]
			if redisTransientReply(r.Error()) {
				return redisError("evalsha", r)
			}
			e.res, e.err = c, r
		default:
			return fmt.Errorf("sinks: redis: evalsha: reply status %q", c)
		}
	}
	if len(errs) != 0 {
		return fmt.Errorf("sinks: redis: evalsha: reply with %d errors more than 'E' statuses", len(errs))
	}
	return nil
}

// encode turns outs into the entries and EVALSHA argument lists of one
// pipeline, conflating indicator outputs per symbol. It stops at the first
// output it cannot name and returns a *PoisonError for it (the outputs
// before it are encoded). It does not allocate once its buffers have grown
// to the batch size and the symbols' names are cached.
func (w *RedisWriter) encode(outs []ops.Output) *PoisonError {
	w.arena, w.ents, w.chunks = w.arena[:0], w.ents[:0], w.chunks[:0]
	var perr *PoisonError
	n := len(outs)
	for i := range outs {
		if reason, err := w.check(&outs[i]); err != nil {
			n, perr = i, &PoisonError{Index: i, Reason: reason, Err: err}
			break
		}
	}
	outs = outs[:n]
	w.conflate(outs)
	for i := range outs {
		o := &outs[i]
		e := redisEntry{idx: i}
		e.off = len(w.arena)
		switch o.Kind {
		case ops.OutIndicators:
			if w.best[o.Symbol] != int32(i) {
				continue
			}
			sn := &w.syms[o.Symbol]
			e.mode, e.key, e.sym = 'f', sn.feat, sn
			w.arena = w.appendFeatures(w.arena, o, w.names[o.Symbol])
			e.end = len(w.arena)
			e.v1Off = e.off + sn.tsAt
			e.v1End = e.v1Off
			for w.arena[e.v1End] != ',' {
				e.v1End++
			}
		case ops.OutWindow:
			e.mode, e.key, e.ch = 'w', w.wins[uint64(o.Op)<<32|uint64(o.Symbol)], w.syms[o.Symbol].winCh
			w.arena = w.jsonl.AppendOutput(w.arena, o)
			e.end = len(w.arena)
			e.v1Off = len(w.arena)
			w.arena = strconv.AppendInt(w.arena, o.EndNs, 10)
			e.v1End, e.v2Off = len(w.arena), len(w.arena)
			w.arena = strconv.AppendInt(w.arena, o.Count, 10)
			e.v2End = len(w.arena)
			e.rank = byte(redisRank(o.Timing))
		case ops.OutPattern, ops.OutMovement:
			e.mode, e.ch = 'p', w.syms[o.Symbol].patCh
			if o.Kind == ops.OutMovement {
				e.ch = w.syms[o.Symbol].movCh
			}
			w.arena = w.jsonl.AppendOutput(w.arena, o)
			e.end = len(w.arena)
		case ops.OutNews, ops.OutEvent:
			e.mode, e.ch = 'p', redisNewsChannel
			if o.Kind == ops.OutEvent {
				e.ch = redisEventsChannel
			}
			w.arena = w.jsonl.AppendGroup(w.arena, outs[i:])
			e.end = len(w.arena)
		default: // OutText: part of the news or event line before it
			continue
		}
		w.ents = append(w.ents, e)
	}
	// Chunks, and the numkeys and layout arguments of each (in the arena
	// too).
	for first := 0; first < len(w.ents); first += redisChunkMax {
		c := redisChunk{first: first, n: min(redisChunkMax, len(w.ents)-first)}
		keys := 0
		c.lyOff = len(w.arena)
		for _, e := range w.ents[first : first+c.n] {
			if e.mode != 'p' {
				keys++
			}
			w.arena = append(w.arena, e.mode)
		}
		c.lyEnd = len(w.arena)
		c.nkOff = len(w.arena)
		w.arena = strconv.AppendInt(w.arena, int64(keys), 10)
		c.nkEnd = len(w.arena)
		w.chunks = append(w.chunks, c)
	}
	// Arguments, now that the arena no longer moves: per chunk EVALSHA sha
	// numkeys KEY... TTLMS LAYOUT ENTRY... (see redisWriteScript).
	need := 0
	for _, c := range w.chunks {
		need += 2 + 6*c.n // numkeys, layout; per entry at most a key and 5 arguments
	}
	w.bufs = slices.Grow(w.bufs[:0], need)[:need]
	w.args = w.args[:0]
	b := 0
	for ci := range w.chunks {
		c := &w.chunks[ci]
		c.argLo = len(w.args)
		w.bufs[b] = w.arena[c.nkOff:c.nkEnd]
		w.args = append(w.args, redisArgEvalSha, w.shaArg, &w.bufs[b])
		b++
		ents := w.ents[c.first : c.first+c.n]
		for i := range ents {
			if ents[i].mode != 'p' {
				w.bufs[b] = ents[i].key
				w.args = append(w.args, &w.bufs[b])
				b++
			}
		}
		w.bufs[b] = w.arena[c.lyOff:c.lyEnd]
		w.args = append(w.args, &w.ttlArg, &w.bufs[b])
		b++
		for i := range ents {
			e := &ents[i]
			switch e.mode {
			case 'f': // VALUE TSFROM TSTO TS
				w.bufs[b], w.bufs[b+1] = w.arena[e.off:e.end], w.arena[e.v1Off:e.v1End]
				w.args = append(w.args, &w.bufs[b], &e.sym.tsFrom, &e.sym.tsTo, &w.bufs[b+1])
				b += 2
			case 'w': // CHANNEL VALUE END RANK COUNT
				w.bufs[b], w.bufs[b+1] = e.ch, w.arena[e.off:e.end]
				w.bufs[b+2], w.bufs[b+3] = w.arena[e.v1Off:e.v1End], w.arena[e.v2Off:e.v2End]
				w.args = append(w.args, &w.bufs[b], &w.bufs[b+1], &w.bufs[b+2], &redisRankArgs[e.rank], &w.bufs[b+3])
				b += 4
			default: // CHANNEL VALUE
				w.bufs[b], w.bufs[b+1] = e.ch, w.arena[e.off:e.end]
				w.args = append(w.args, &w.bufs[b], &w.bufs[b+1])
				b += 2
			}
		}
		c.argHi = len(w.args)
	}
	return perr
}

// The channels of news lines and of event lines (signal, system, custom).
var redisNewsChannel, redisEventsChannel = []byte("news"), []byte("events")

// redisTSWidth is how many bytes of a stored feature object the write script
// reads to find its ts: `"ts":`, the longest int64 and a comma.
const redisTSWidth = len(`"ts":`) + len("-9223372036854775808") + 1

// check makes sure the writer can name o (its symbol, its window spec),
// caching the names of keys and channels on first sight.
func (w *RedisWriter) check(o *ops.Output) (codec.Reason, error) {
	switch o.Kind {
	case ops.OutIndicators, ops.OutWindow, ops.OutPattern, ops.OutMovement, ops.OutNews, ops.OutEvent, ops.OutText:
	default:
		return codec.ReasonUnknownKind, fmt.Errorf("sinks: redis: output kind %d", o.Kind)
	}
	if o.Kind == ops.OutNews || o.Kind == ops.OutEvent || o.Kind == ops.OutText {
		return codec.ReasonNone, nil // on the one channel "news" or "events": no symbol needed
	}
	if id := int(o.Symbol); id >= len(w.syms) || w.syms[id].feat == nil {
		if err := w.nameSymbol(o.Symbol); err != nil {
			return codec.ReasonUnknownSymbol, err
		}
	}
	if o.Kind == ops.OutWindow {
		k := uint64(o.Op)<<32 | uint64(o.Symbol)
		if _, ok := w.wins[k]; !ok {
			if int(o.Op) >= len(w.env.JSONL.Windows) {
				return codec.ReasonUnknownKind, fmt.Errorf("sinks: redis: window op %d without a spec", o.Op)
			}
			key := append([]byte("window:"), w.env.JSONL.Windows[o.Op].Name...)
			key = append(append(key, ':'), w.names[o.Symbol]...)
			w.wins[k] = key
		}
	}
	return codec.ReasonNone, nil
}

func (w *RedisWriter) nameSymbol(id codec.Symbol) error {
	if int(id) >= len(w.names) {
		w.names = w.env.JSONL.Symbols.Names()
	}
	if int(id) >= len(w.names) || w.names[id] == "" {
		return fmt.Errorf("sinks: redis: symbol id %d not in the table", id)
	}
	if int(id) >= len(w.syms) {
		w.syms = append(w.syms, make([]redisSymNames, len(w.names)-len(w.syms))...)
	}
	name := w.names[id]
	// The bytes of a feature object before `"ts":`: {"symbol":NAME,
	from := len(AppendString([]byte(`{"symbol":`), name)) + 1
	w.syms[id] = redisSymNames{
		feat:   []byte("features:" + name + ":realtime"),
		winCh:  []byte("windows:" + name),
		patCh:  []byte("patterns:" + name),
		movCh:  []byte("movements:" + name),
		tsAt:   from + len(`"ts":`),
		tsFrom: strconv.AppendInt(nil, int64(from), 10),
		tsTo:   strconv.AppendInt(nil, int64(from+redisTSWidth-1), 10),
	}
	return nil
}

// conflate marks in best the newest indicator output of each symbol of
// outs, and counts the others in nconflated (added to the counter once the
// batch is written: a retried batch counts once).
func (w *RedisWriter) conflate(outs []ops.Output) {
	w.gen++
	if w.gen == 0 { // wrapped: old stamps could collide
		clear(w.stamp)
		w.gen = 1
	}
	if need := len(w.syms); len(w.best) < need {
		w.best = append(w.best, make([]int32, need-len(w.best))...)
		w.stamp = append(w.stamp, make([]uint32, need-len(w.stamp))...)
	}
	w.nconflated = 0
	for i := range outs {
		o := &outs[i]
		if o.Kind != ops.OutIndicators {
			continue
		}
		s := o.Symbol
		if w.stamp[s] != w.gen {
			w.stamp[s], w.best[s] = w.gen, int32(i)
			continue
		}
		w.nconflated++
		if b := &outs[w.best[s]]; o.TsNs > b.TsNs || o.TsNs == b.TsNs && o.Seq >= b.Seq {
			w.best[s] = int32(i)
		}
	}
}

// appendFeatures appends the feature cache object of an indicator output:
// {"symbol","ts","price","volume",<indicators>,"seq"}. seq is last: the
// write script reads it there.
func (w *RedisWriter) appendFeatures(dst []byte, o *ops.Output, name string) []byte {
	dst = append(dst, '{')
	dst = appendTradeFields(dst, name, o, w.jsonl.keys)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, o.Seq, 10)
	return append(dst, '}')
}

// redisTransientReply reports whether a Redis error reply names a state
// of the server that heals by itself.
func redisTransientReply(msg string) bool {
	for _, p := range [...]string{"LOADING", "BUSY", "OOM", "READONLY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN",
		"NOREPLICAS"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// redisError wraps err of operation op, marked transient when it is a
// connection or a timeout problem or a server state that heals.
func redisError(op string, err error) error {
	var rerr redis.Error
	var nerr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("sinks: redis: %s: %w", op, err)
	case errors.As(err, &rerr):
		if redisTransientReply(rerr.Error()) {
			return fmt.Errorf("sinks: redis: %s: %w: %w", op, ErrTransient, err)
		}
		return fmt.Errorf("sinks: redis: %s: %w", op, err)
	case errors.As(err, &nerr), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return fmt.Errorf("sinks: redis: %s: %w: %w", op, ErrTransient, err)
	}
	return fmt.Errorf("sinks: redis: %s: %w", op, err)
}
