package sinks

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"qstream/codec"
	"qstream/internal/testvectors"
	"qstream/ops"
)

// redisTestAddr is the server of `make services`; QSTREAM_TEST_REDIS_ADDR
// points the tests and benchmarks at another one (a private server to
// profile on).
var redisTestAddr = cmp.Or(os.Getenv("QSTREAM_TEST_REDIS_ADDR"), "127.0.0.1:6379")

// redisTestClient returns a client of the shared test server, failing the
// test when it does not answer.
func redisTestClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisTestAddr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("redis-server at %s does not answer (%v): start it with `make services`", redisTestAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// redisTestSymbol returns a symbol name no other test (or run) uses.
func redisTestSymbol(t testing.TB, tag string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	return "qs_" + name + "_" + tag + "_" + hex.EncodeToString(b[:])
}

// redisTestEnv is a writer environment over a fresh symbol table holding
// syms, with the given indicators and windows.
func redisTestEnv(t testing.TB, indicators []string, windows []WindowMeta, syms ...string) (Env, []codec.Symbol) {
	t.Helper()
	tab := codec.NewSymbolTable(0)
	ids := make([]codec.Symbol, len(syms))
	for i, s := range syms {
		id, err := tab.InternString(s)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return Env{JSONL: JSONLConfig{Symbols: tab, Indicators: indicators, Windows: windows}}, ids
}

// newTestRedis opens a writer on raw and deletes, at the end of the test,
// the keys of syms (feature keys, and window keys of env's specs).
func newTestRedis(t testing.TB, raw string, env Env, syms ...string) *RedisWriter {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewRedis(u, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v (start the server with `make services`)", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	if len(syms) > 0 && strings.Contains(raw, redisTestAddr) {
		c := redisTestClient(t)
		t.Cleanup(func() {
			var keys []string
			for _, s := range syms {
				keys = append(keys, "features:"+s+":realtime")
				for _, m := range env.JSONL.Windows {
					keys = append(keys, "window:"+m.Name+":"+s)
				}
			}
			for len(keys) > 0 {
				n := min(len(keys), 1000)
				if err := c.Del(context.Background(), keys[:n]...).Err(); err != nil {
					t.Error(err)
				}
				keys = keys[n:]
			}
		})
	}
	return w
}

// redisSub is a subscription of the test to some channels.
type redisSub struct {
	t  testing.TB
	c  *redis.Client
	ps *redis.PubSub
}

func subscribe(t testing.TB, c *redis.Client, channels ...string) *redisSub {
	t.Helper()
	ctx := context.Background()
	ps := c.Subscribe(ctx, channels...)
	for range channels {
		if _, err := ps.ReceiveTimeout(ctx, 2*time.Second); err != nil {
			t.Fatalf("subscribe %v: %v", channels, err)
		}
	}
	t.Cleanup(func() { ps.Close() })
	return &redisSub{t: t, c: c, ps: ps}
}

// drain returns every message received so far: it publishes a sentinel on
// the subscription's first channel and reads up to it. Redis delivers to a
// subscriber in publishing order, so a message published before drain is
// called arrives before the sentinel.
func (s *redisSub) drain(channel string) []*redis.Message {
	s.t.Helper()
	ctx := context.Background()
	const sentinel = "qstream-test-sentinel"
	if err := s.c.Publish(ctx, channel, sentinel).Err(); err != nil {
		s.t.Fatal(err)
	}
	var got []*redis.Message
	for {
		m, err := s.ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			s.t.Fatalf("waiting for the sentinel: %v", err)
		}
		msg, ok := m.(*redis.Message)
		if !ok {
			continue
		}
		if msg.Channel == channel && msg.Payload == sentinel {
			return got
		}
		got = append(got, msg)
	}
}

func indOut(sym codec.Symbol, ts int64, seq uint64, price, volume float64, vals ...float64) ops.Output {
	o := ops.Output{Kind: ops.OutIndicators, Symbol: sym, TsNs: ts, Seq: seq, Price: price, Volume: volume,
		NValues: uint8(len(vals)), Key: seq*7919 + uint64(sym)}
	copy(o.Values[:], vals)
	return o
}

func winOut(op uint16, sym codec.Symbol, start, end, count int64, value float64, timing ops.Timing) ops.Output {
	return ops.Output{Kind: ops.OutWindow, Op: op, Symbol: sym, StartNs: start, EndNs: end, Count: count,
		Value: value, Timing: timing, Seq: uint64(end), Key: uint64(end)<<2 | uint64(timing)}
}

func get(t testing.TB, c *redis.Client, key string) string {
	t.Helper()
	v, err := c.Get(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

func write(t testing.TB, w *RedisWriter, outs ...ops.Output) {
	t.Helper()
	if err := w.WriteBatch(context.Background(), outs); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

func TestNewRedisURI(t *testing.T) {
	env, _ := redisTestEnv(t, nil, nil)
	ok := []struct {
		raw  string
		addr string
		db   int
		ttl  time.Duration
	}{
		{"redis://127.0.0.1:6379", "127.0.0.1:6379", 0, 60 * time.Second},
		{"redis://localhost", "localhost:6379", 0, 60 * time.Second},
		{"redis://h:7000/3?ttl=5s", "h:7000", 3, 5 * time.Second},
		{"redis://[::1]:6380/0?ttl=1500ms", "[::1]:6380", 0, 1500 * time.Millisecond},
		{"redis://:secret@h:1/", "h:1", 0, 60 * time.Second},
	}
	for _, tc := range ok {
		u, err := url.Parse(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		w, err := NewRedis(u, env)
		if err != nil {
			t.Errorf("NewRedis(%s): %v", tc.raw, err)
			continue
		}
		if w.Addr() != tc.addr || w.opts.DB != tc.db || w.TTL() != tc.ttl {
			t.Errorf("NewRedis(%s) = addr %s db %d ttl %v, want %s %d %v", tc.raw, w.Addr(), w.opts.DB, w.TTL(),
				tc.addr, tc.db, tc.ttl)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}
	bad := []struct{ raw, want string }{
		{"nats://h:4222", "redis://"},
		{"redis://", "no host"},
		{"redis://h:0", "port"},
		{"redis://h:99999", "port"},
		{"redis://h:x", ""}, // url.Parse refuses it already
		{"redis://h/x", "database"},
		{"redis://h/-1", "database"},
		{"redis://h?ttl=0s", "ttl"},
		{"redis://h?ttl=500ms", "ttl"},
		{"redis://h?ttl=1000h", "ttl"},
		{"redis://h?ttl=1.5ms", "ttl"},
		{"redis://h?ttl=soon", "ttl"},
		{"redis://h?ttl=1s&ttl=2s", "ttl"},
		{"redis://h?tls=true", `unknown parameter "tls"`},
		{"redis://h?ttl=1s&pool=3", `unknown parameter "pool"`},
		{"redis://h#frag", "want redis://"},
	}
	for _, tc := range bad {
		u, err := url.Parse(tc.raw)
		if err != nil {
			continue
		}
		if _, err := NewRedis(u, env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewRedis(%s) = %v, want an error with %q", tc.raw, err, tc.want)
		}
	}
	u, _ := url.Parse("redis://h")
	if _, err := NewRedis(u, Env{}); err == nil {
		t.Error("NewRedis without a symbol table: no error")
	}
}

// binanceTrades reads the Binance futures trades of the shared test data
// (tardis.dev CSV: timestamp in microseconds, amount).
func binanceTrades(t testing.TB, sym codec.Symbol, n int) []codec.Event {
	t.Helper()
	raw, err := testvectors.Read("trades/binance_futures_btcusdt_trades.csv")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Scan() // header: exchange,symbol,timestamp,local_timestamp,id,side,price,amount
	var evs []codec.Event
	for sc.Scan() && len(evs) < n {
		f := strings.Split(sc.Text(), ",")
		us, err1 := strconv.ParseInt(f[2], 10, 64)
		price, err2 := strconv.ParseFloat(f[6], 64)
		amount, err3 := strconv.ParseFloat(f[7], 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("trade line %d: %v", len(evs)+2, err)
		}
		evs = append(evs, codec.Event{Kind: codec.KindTrade, Symbol: sym, TsNs: us * 1000, Price: price,
			Volume: amount, Seq: uint64(len(evs) + 1)})
	}
	if len(evs) < n {
		t.Fatalf("%d trades in the test data, want %d", len(evs), n)
	}
	return evs
}

// TestRedisValuesEqualComputed runs the real indicators and windows over
// recorded trades, writes their outputs in batches, and checks the feature
// key field by field against the last output and against an independent
// computation (SMA and VWAP from the trades), the window keys against the
// --output lines, and what was published on each channel.
func TestRedisValuesEqualComputed(t *testing.T) {
	c := redisTestClient(t)
	name := redisTestSymbol(t, "btc")
	specs, err := ops.ParseIndicators("sma:5,ema:12,rsi:14,vwap,vwap:14")
	if err != nil {
		t.Fatal(err)
	}
	wspecs, err := ops.ParseWindowSpecs("tumbling:1s:ohlcv,count:50:avg")
	if err != nil {
		t.Fatal(err)
	}
	var indNames []string
	for _, s := range specs {
		indNames = append(indNames, s.Name())
	}
	var metas []WindowMeta
	for _, s := range wspecs {
		metas = append(metas, WindowMeta{Name: s.String(), Object: s.ValueIsObject()})
	}
	env, ids := redisTestEnv(t, indNames, metas, name)
	sym := ids[0]
	p, err := ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: wspecs,
		MaxSymbolID: 16})
	if err != nil {
		t.Fatal(err)
	}
	evs := binanceTrades(t, sym, 3000)
	var outs []ops.Output
	wm := int64(math.MinInt64)
	for i := range evs {
		outs, _ = p.OnEvent(&evs[i], wm, outs)
		if evs[i].TsNs > wm {
			wm = evs[i].TsNs
			outs = p.OnWatermark(wm, evs[i].Seq, outs)
		}
	}
	outs = p.OnWatermark(math.MaxInt64, evs[len(evs)-1].Seq, outs)

	w := newTestRedis(t, "redis://"+redisTestAddr+"?ttl=30s", env, name)
	sub := subscribe(t, c, "features:"+name, "windows:"+name)
	const batch = 100
	for b := 0; b < len(outs); b += batch {
		write(t, w, outs[b:min(b+batch, len(outs))]...)
	}
	// What must have been written and published, from the outputs.
	var lastInd ops.Output
	lastWin := map[uint16]ops.Output{}
	nInd, nWin := 0, 0
	var pubFeat, pubWin []string
	jw := NewJSONLWriter(nil, env.JSONL)
	for b := 0; b < len(outs); b += batch {
		var newest *ops.Output
		for i := b; i < min(b+batch, len(outs)); i++ {
			o := &outs[i]
			switch o.Kind {
			case ops.OutIndicators:
				nInd++
				if newest == nil || o.TsNs > newest.TsNs || o.TsNs == newest.TsNs && o.Seq >= newest.Seq {
					newest = o
				}
			case ops.OutWindow:
				nWin++
				lastWin[o.Op] = *o
				pubWin = append(pubWin, string(jw.AppendOutput(nil, o)))
			}
		}
		if newest != nil {
			lastInd = *newest
			pubFeat = append(pubFeat, string(w.appendFeatures(nil, newest, name)))
		}
	}
	if nWin < 10 || nInd != len(evs) {
		t.Fatalf("%d indicator and %d window outputs from %d trades: the pipeline did not run as expected", nInd, nWin, len(evs))
	}

	// The feature key, field by field.
	raw := get(t, c, "features:"+name+":realtime")
	var got map[string]any
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("features key %q: %v", raw, err)
	}
	wantKeys := append([]string{"symbol", "ts", "price", "volume"}, append(indNames, "seq")...)
	if len(got) != len(wantKeys) {
		t.Errorf("features key has %d fields, want %d: %s", len(got), len(wantKeys), raw)
	}
	pos := -1
	for _, k := range wantKeys {
		i := strings.Index(raw, `"`+k+`":`)
		if i <= pos {
			t.Errorf("field %q missing or out of order in %s", k, raw)
		}
		pos = i
	}
	num := func(k string) float64 {
		n, ok := got[k].(json.Number)
		if !ok {
			t.Fatalf("field %q = %v, want a number", k, got[k])
		}
		f, err := n.Float64()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if got["symbol"] != name || got["ts"].(json.Number).String() != strconv.FormatInt(lastInd.TsNs, 10) ||
		got["seq"].(json.Number).String() != strconv.FormatUint(lastInd.Seq, 10) {
		t.Errorf("features key %s: symbol, ts or seq differ from the last output (ts %d seq %d)", raw, lastInd.TsNs, lastInd.Seq)
	}
	if num("price") != lastInd.Price || num("volume") != lastInd.Volume {
		t.Errorf("features key %s: price/volume differ from %v/%v", raw, lastInd.Price, lastInd.Volume)
	}
	for i, k := range indNames {
		if v := num(k); v != lastInd.Values[i] {
			t.Errorf("features key: %s = %v, the indicator computed %v", k, v, lastInd.Values[i])
		}
	}
	// Independent: SMA(5) of the last five prices, session VWAP.
	last := evs[len(evs)-1]
	if lastInd.Seq != last.Seq {
		t.Fatalf("last indicator output has seq %d, the last trade %d", lastInd.Seq, last.Seq)
	}
	var sma, pv, v float64
	for _, e := range evs[len(evs)-5:] {
		sma += e.Price / 5
	}
	for _, e := range evs {
		pv += e.Price * e.Volume
		v += e.Volume
	}
	if d := math.Abs(num("sma_5")-sma) / sma; d > 1e-12 {
		t.Errorf("sma_5 = %v, recomputed %v", num("sma_5"), sma)
	}
	if d := math.Abs(num("vwap")-pv/v) / (pv / v); d > 1e-9 {
		t.Errorf("vwap = %v, recomputed %v", num("vwap"), pv/v)
	}
	if num("price") != last.Price || num("volume") != last.Volume {
		t.Errorf("price/volume %v/%v, the last trade %v/%v", num("price"), num("volume"), last.Price, last.Volume)
	}

	// Window keys: the --output line of the last firing of each spec.
	for op, m := range metas {
		o := lastWin[uint16(op)]
		want := string(jw.AppendOutput(nil, &o))
		if got := get(t, c, "window:"+m.Name+":"+name); got != want {
			t.Errorf("window:%s:%s = %s, want %s", m.Name, name, got, want)
		}
	}

	// Published: one feature object per batch (conflated), every window.
	msgs := sub.drain("features:" + name)
	var gotFeat, gotWin []string
	for _, m := range msgs {
		switch m.Channel {
		case "features:" + name:
			gotFeat = append(gotFeat, m.Payload)
		case "windows:" + name:
			gotWin = append(gotWin, m.Payload)
		}
	}
	if strings.Join(gotFeat, "\n") != strings.Join(pubFeat, "\n") {
		t.Errorf("features channel: %d messages, want %d (one per batch)", len(gotFeat), len(pubFeat))
	}
	if strings.Join(gotWin, "\n") != strings.Join(pubWin, "\n") {
		t.Errorf("windows channel: %d messages, want the %d window lines in order", len(gotWin), len(pubWin))
	}
	if gotFeat[len(gotFeat)-1] != raw {
		t.Errorf("last feature message %s, key %s", gotFeat[len(gotFeat)-1], raw)
	}
	st := w.Stats()
	if st.Conflated != uint64(nInd-len(pubFeat)) || st.Written != uint64(len(pubFeat)+len(pubWin)) ||
		st.Stale != 0 || st.Duplicate != 0 {
		t.Errorf("stats %+v, want conflated %d written %d", st, nInd-len(pubFeat), len(pubFeat)+len(pubWin))
	}
	t.Logf("%d trades, %d outputs: %+v", len(evs), len(outs), st)
}

// TestRedisIdempotentTTL writes one batch twice: one key, the same value,
// nothing published the second time, and the expiry set.
func TestRedisIdempotentTTL(t *testing.T) {
	c := redisTestClient(t)
	a, b := redisTestSymbol(t, "a"), redisTestSymbol(t, "b")
	env, ids := redisTestEnv(t, []string{"sma_2", "vwap"}, []WindowMeta{{Name: "tumbling:1s:sum"}}, a, b)
	w := newTestRedis(t, "redis://"+redisTestAddr+"/0?ttl=5s", env, a, b)
	sub := subscribe(t, c, "features:"+a, "features:"+b, "windows:"+a)
	batch := []ops.Output{
		indOut(ids[0], 1_000, 1, 10.5, 2, math.NaN(), 10.5),
		indOut(ids[1], 1_000, 2, 20, 1, math.NaN(), 20),
		indOut(ids[0], 2_000, 3, 11.5, 2, 11, 11),
		winOut(0, ids[0], 0, 1e9, 2, 22, ops.TimingOnTime),
	}
	write(t, w, batch...)
	va, vb := get(t, c, "features:"+a+":realtime"), get(t, c, "features:"+b+":realtime")
	vw := get(t, c, "window:tumbling:1s:sum:"+a)
	wantA := fmt.Sprintf(`{"symbol":%q,"ts":2000,"price":11.5,"volume":2,"sma_2":11,"vwap":11,"seq":3}`, a)
	if va != wantA {
		t.Errorf("features:%s:realtime = %s, want %s", a, va, wantA)
	}
	wantW := fmt.Sprintf(`{"window":"tumbling:1s:sum","symbol":%q,"start":0,"end":1000000000,"count":2,"value":22,"timing":"on_time"}`, a)
	if vw != wantW {
		t.Errorf("window key = %s, want %s", vw, wantW)
	}
	if n := len(sub.drain("features:" + a)); n != 3 {
		t.Errorf("first write published %d messages, want 3", n)
	}
	write(t, w, batch...)
	if get(t, c, "features:"+a+":realtime") != va || get(t, c, "features:"+b+":realtime") != vb ||
		get(t, c, "window:tumbling:1s:sum:"+a) != vw {
		t.Error("writing the batch again changed a value")
	}
	if msgs := sub.drain("features:" + a); len(msgs) != 0 {
		t.Errorf("writing the batch again published %d messages, first %s", len(msgs), msgs[0].Payload)
	}
	n, err := c.Exists(context.Background(), "features:"+a+":realtime", "features:"+b+":realtime").Result()
	if err != nil || n != 2 {
		t.Errorf("EXISTS = %d, %v; want 2", n, err)
	}
	for _, s := range []string{a, b} {
		pttl, err := c.PTTL(context.Background(), "features:"+s+":realtime").Result()
		if err != nil || pttl <= 0 || pttl > 5*time.Second {
			t.Errorf("PTTL features:%s:realtime = %v, %v; want in (0, 5s]", s, pttl, err)
		}
	}
	if pttl, _ := c.PTTL(context.Background(), "window:tumbling:1s:sum:"+a).Result(); pttl != -1 {
		t.Errorf("PTTL of the window key = %v, want none (-1)", pttl)
	}
	st := w.Stats()
	if st.Duplicate != 3 || st.Written != 3 || st.Conflated != 2 || st.Published != 3 {
		t.Errorf("stats %+v, want written 3 dup 3 conflated 2 published 3", st)
	}
	if s := string(w.AppendStatus(nil)); s != " written=3 published=3 conflated=2 stale=0 dup=3 script_loads=1" {
		t.Errorf("status %q", s)
	}
}

// TestRedisNeverBackwards writes newer outputs, then older ones (a replay,
// a late firing): the keys keep the newer values and nothing is published.
func TestRedisNeverBackwards(t *testing.T) {
	c := redisTestClient(t)
	a := redisTestSymbol(t, "a")
	env, ids := redisTestEnv(t, []string{"sma_5"}, []WindowMeta{{Name: "tumbling:1s:avg"}}, a)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, a)
	sym := ids[0]
	fk, wk := "features:"+a+":realtime", "window:tumbling:1s:avg:"+a
	sub := subscribe(t, c, "features:"+a, "windows:"+a)
	// ts near 2^62: beyond a double's exact integers, as nanoseconds are.
	const ts = int64(1) << 62
	newest := indOut(sym, ts+1, 5, 3, 1, 3)
	write(t, w, newest)
	want := get(t, c, fk)
	sub.drain("features:" + a)
	older := []ops.Output{
		indOut(sym, ts, 9, 1, 1, 1),            // older ts, larger seq
		indOut(sym, ts+1, 4, 2, 1, 2),          // same ts, smaller seq
		indOut(sym, -5, 100, 2, 1, 2),          // negative ts
		indOut(sym, ts+1-1000, 1<<63, 2, 1, 2), // the largest seq
	}
	for _, o := range older {
		write(t, w, o)
		if got := get(t, c, fk); got != want {
			t.Fatalf("after ts %d seq %d: key %s, want %s", o.TsNs, o.Seq, got, want)
		}
	}
	if msgs := sub.drain("features:" + a); len(msgs) != 0 {
		t.Errorf("stale outputs published %d messages: %s", len(msgs), msgs[0].Payload)
	}
	if st := w.Stats(); st.Stale != uint64(len(older)) {
		t.Errorf("stale = %d, want %d", st.Stale, len(older))
	}
	// Newer by seq only, then by ts: written.
	write(t, w, indOut(sym, ts+1, 6, 4, 1, 4))
	write(t, w, indOut(sym, ts+1000, 1, 5, 1, 5))
	if got := get(t, c, fk); !strings.Contains(got, `"ts":4611686018427388904,`) || !strings.HasSuffix(got, `"seq":1}`) {
		t.Errorf("key %s, want ts %d seq 1", got, ts+1000)
	}
	if n := len(sub.drain("features:" + a)); n != 2 {
		t.Errorf("newer outputs published %d messages, want 2", n)
	}

	// Windows: (end, early < on_time < late, count).
	const s = int64(1e9)
	steps := []struct {
		o       ops.Output
		applied bool
	}{
		{winOut(0, sym, 10*s, 11*s, 3, 1, ops.TimingEarly), true},
		{winOut(0, sym, 10*s, 11*s, 5, 2, ops.TimingOnTime), true},
		{winOut(0, sym, 10*s, 11*s, 4, 9, ops.TimingEarly), false},  // early after final
		{winOut(0, sym, 10*s, 11*s, 6, 3, ops.TimingLate), true},    // late re-firing
		{winOut(0, sym, 10*s, 11*s, 5, 2, ops.TimingOnTime), false}, // replayed final pane
		{winOut(0, sym, 10*s, 11*s, 7, 4, ops.TimingLate), true},    // the next late re-firing
		{winOut(0, sym, 10*s, 11*s, 6, 3, ops.TimingLate), false},   // replayed late re-firing
		{winOut(0, sym, 11*s, 12*s, 1, 5, ops.TimingOnTime), true},  // the next window
		{winOut(0, sym, 10*s, 11*s, 8, 6, ops.TimingLate), false},   // a late firing of the older window
	}
	jw := NewJSONLWriter(nil, env.JSONL)
	var cur string
	stale0 := w.Stats().Stale
	for i, st := range steps {
		write(t, w, st.o)
		line := string(jw.AppendOutput(nil, &st.o))
		if st.applied {
			cur = line
		}
		if got := get(t, c, wk); got != cur {
			t.Fatalf("step %d: window key %s, want %s", i, got, cur)
		}
		msgs := sub.drain("features:" + a)
		if st.applied && (len(msgs) != 1 || msgs[0].Channel != "windows:"+a || msgs[0].Payload != line) {
			t.Errorf("step %d: published %v, want %s on windows:%s", i, msgs, line, a)
		}
		if !st.applied && len(msgs) != 0 {
			t.Errorf("step %d: not applied but published %s", i, msgs[0].Payload)
		}
	}
	if got := w.Stats().Stale - stale0; got != 4 {
		t.Errorf("%d window outputs counted stale, want 4", got)
	}
}

// TestRedisConflation checks the count of conflated outputs and that the
// newest output of each symbol, not the last, is the one written.
func TestRedisConflation(t *testing.T) {
	c := redisTestClient(t)
	syms := []string{redisTestSymbol(t, "a"), redisTestSymbol(t, "b"), redisTestSymbol(t, "c")}
	env, ids := redisTestEnv(t, []string{"ema_3"}, nil, syms...)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, syms...)
	sub := subscribe(t, c, "features:"+syms[0], "features:"+syms[1], "features:"+syms[2])
	var batch []ops.Output
	seq := uint64(0)
	for i := 0; i < 40; i++ {
		for k := range 3 {
			if i >= 10*(k+1) { // symbol k gets 10(k+1) outputs
				continue
			}
			seq++
			batch = append(batch, indOut(ids[k], int64(100+i), seq, float64(i), 1, float64(i)))
		}
	}
	// An out-of-order output last: not the newest, so not the one kept.
	seq++
	batch = append(batch, indOut(ids[2], 50, seq, -1, 1, -1))
	write(t, w, batch...)
	if st := w.Stats(); st.Conflated != uint64(len(batch)-3) || st.Written != 3 {
		t.Errorf("stats %+v, want conflated %d written 3", st, len(batch)-3)
	}
	msgs := sub.drain("features:" + syms[0])
	if len(msgs) != 3 {
		t.Fatalf("%d messages published, want 3", len(msgs))
	}
	for k, s := range syms {
		want := fmt.Sprintf(`"ts":%d,"price":%d,`, 100+10*(k+1)-1, 10*(k+1)-1)
		if got := get(t, c, "features:"+s+":realtime"); !strings.Contains(got, want) {
			t.Errorf("symbol %d: %s, want the newest (%s)", k, got, want)
		}
	}
	if s := string(w.AppendStatus(nil)); !strings.Contains(s, fmt.Sprintf(" conflated=%d stale=0", len(batch)-3)) {
		t.Errorf("status %q", s)
	}
}

// TestRedisPatternsNews checks the publish-only channels: the --output
// line on patterns:{symbol} and news, once per output.
func TestRedisPatternsNews(t *testing.T) {
	c := redisTestClient(t)
	a := redisTestSymbol(t, "a")
	env, ids := redisTestEnv(t, nil, nil, a)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, a)
	sub := subscribe(t, c, "patterns:"+a, "news")
	pat := ops.Output{Kind: ops.OutPattern, Symbol: ids[0], Seq: 7, TsNs: 70}
	news := ops.Output{Kind: ops.OutNews, Seq: 8, TsNs: 80}
	write(t, w, pat, news)
	jw := NewJSONLWriter(nil, env.JSONL)
	var got []string
	for _, m := range sub.drain("patterns:" + a) {
		if m.Channel == "news" && m.Payload != string(jw.AppendOutput(nil, &news)) {
			continue // another test's or program's news
		}
		got = append(got, m.Channel+" "+m.Payload)
	}
	want := []string{"patterns:" + a + " " + string(jw.AppendOutput(nil, &pat)), "news " + string(jw.AppendOutput(nil, &news))}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := w.Stats(); st.Published != 2 || st.Written != 0 {
		t.Errorf("stats %+v, want published 2 written 0", st)
	}
}

// TestRedisPoison: a key another program made a hash is refused for its
// output only; an output the writer cannot name is poison before anything.
func TestRedisPoison(t *testing.T) {
	c := redisTestClient(t)
	a, b := redisTestSymbol(t, "a"), redisTestSymbol(t, "b")
	env, ids := redisTestEnv(t, []string{"sma_5"}, nil, a, b)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, a, b)
	if err := c.HSet(context.Background(), "features:"+b+":realtime", "x", "1").Err(); err != nil {
		t.Fatal(err)
	}
	batch := []ops.Output{indOut(ids[0], 1, 1, 1, 1, 1), indOut(ids[1], 2, 2, 2, 2, 2), indOut(ids[0], 3, 3, 3, 3, 3)}
	err := w.WriteBatch(context.Background(), batch)
	var pe *PoisonError
	if !errors.As(err, &pe) || pe.Index != 1 || pe.Reason != codec.ReasonBadType || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("WriteBatch = %v, want a poison output 1 (WRONGTYPE)", err)
	}
	if IsTransient(err) {
		t.Error("a poison output is transient")
	}
	// seq 1 conflated into seq 3, which the framework retries after the
	// poison output: counted once, now.
	if st := w.Stats(); st.Conflated != 1 || st.Written != 1 {
		t.Errorf("stats %+v, want conflated 1 written 1", st)
	}
	write(t, w, batch[2:]...)
	if st := w.Stats(); st.Conflated != 1 || st.Duplicate != 1 {
		t.Errorf("after the retry of the rest: stats %+v, want conflated 1 dup 1", st)
	}
	if got := get(t, c, "features:"+a+":realtime"); !strings.HasSuffix(got, `"seq":3}`) {
		t.Errorf("the other symbol's key %s, want seq 3", got)
	}
	unknown := indOut(ids[1]+1000, 5, 5, 5, 5, 5)
	err = w.WriteBatch(context.Background(), []ops.Output{indOut(ids[0], 4, 4, 4, 4, 4), unknown})
	if !errors.As(err, &pe) || pe.Index != 1 || pe.Reason != codec.ReasonUnknownSymbol {
		t.Fatalf("WriteBatch with an unknown symbol = %v, want a poison output 1", err)
	}
	if got := get(t, c, "features:"+a+":realtime"); !strings.HasSuffix(got, `"seq":4}`) {
		t.Errorf("the output before the poison one was not written: %s", got)
	}
}

// redisServer is a redis-server of the test's own, on port in dir.
type redisServer struct {
	cmd  *exec.Cmd
	port int
	dir  string
}

func startRedisServer(t testing.TB, dir string, port int) *redisServer {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v (install it with `make services`)", err)
	}
	s := &redisServer{cmd: cmd, port: port, dir: dir}
	t.Cleanup(s.kill)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), MaxRetries: -1, DisableIdentity: true, Protocol: 2})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c.Ping(context.Background()).Err() == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d does not answer", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// TestRedisServerRestart kills the writer's server under it: the write
// fails with a transient error; once a new server is up on the same port the
// next write succeeds, after loading the script again (NOSCRIPT).
func TestRedisServerRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	srv := startRedisServer(t, dir, port)
	a := redisTestSymbol(t, "a")
	env, ids := redisTestEnv(t, []string{"sma_5"}, nil, a)
	w := newTestRedis(t, fmt.Sprintf("redis://127.0.0.1:%d", port), env)
	write(t, w, indOut(ids[0], 1, 1, 1, 1, 1))
	srv.kill()
	err := w.WriteBatch(context.Background(), []ops.Output{indOut(ids[0], 2, 2, 2, 2, 2)})
	if err == nil || !IsTransient(err) {
		t.Fatalf("WriteBatch with the server down = %v, want a transient error", err)
	}
	startRedisServer(t, dir, port)
	write(t, w, indOut(ids[0], 3, 3, 3, 3, 3))
	if st := w.Stats(); st.ScriptLoads != 2 || st.Written != 2 {
		t.Errorf("stats %+v, want 2 script loads (Open, after NOSCRIPT) and 2 written", st)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), DisableIdentity: true, Protocol: 2})
	defer c.Close()
	if got := get(t, c, "features:"+a+":realtime"); !strings.HasSuffix(got, `"seq":3}`) {
		t.Errorf("key after the restart %s, want seq 3", got)
	}
}

// TestRedisOpenRefused: a server that is not there fails Open with a
// transient error (the framework retries it), not a panic or a hang.
func TestRedisOpenRefused(t *testing.T) {
	env, _ := redisTestEnv(t, nil, nil)
	u, _ := url.Parse(fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)))
	w, err := NewRedis(u, env)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Open(context.Background()); err == nil || !IsTransient(err) {
		t.Fatalf("Open = %v, want a transient error", err)
	}
}

// TestRedisEncodeAllocs: encoding a batch (conflation, values, keys,
// command arguments) allocates nothing once the buffers have grown.
func TestRedisEncodeAllocs(t *testing.T) {
	syms := []string{"AAPL", "MSFT", `odd"name`}
	env, ids := redisTestEnv(t, []string{"sma_5", "ema_12", "rsi_14", "vwap"}, []WindowMeta{{Name: "tumbling:1m:ohlcv", Object: true}}, syms...)
	u, _ := url.Parse("redis://127.0.0.1:1")
	w, err := NewRedis(u, env)
	if err != nil {
		t.Fatal(err)
	}
	var batch []ops.Output
	for i := range 600 {
		batch = append(batch, indOut(ids[i%3], int64(i), uint64(i), 100+float64(i)/7, 1.5, 1, 2, math.NaN(), 4))
		if i%50 == 0 {
			o := winOut(0, ids[i%3], 0, int64(i), 3, 1, ops.TimingOnTime)
			o.NValues = 5
			batch = append(batch, o)
		}
	}
	if err := w.encode(batch); err != nil {
		t.Fatal(err)
	}
	if len(w.ents) != 3+12 || len(w.chunks) != 1 {
		t.Fatalf("%d entries in %d chunks, want 15 in 1", len(w.ents), len(w.chunks))
	}
	// The arguments that spare the script parsing: where "ts" is in each
	// feature object (the escaped name moves it), the version of each output.
	layout := ""
	for _, e := range w.ents {
		layout += string(e.mode)
		o, v := &batch[e.idx], string(w.arena[e.off:e.end])
		v1, v2 := string(w.arena[e.v1Off:e.v1End]), string(w.arena[e.v2Off:e.v2End])
		switch e.mode {
		case 'f':
			from, _ := strconv.Atoi(string(e.sym.tsFrom))
			to, _ := strconv.Atoi(string(e.sym.tsTo))
			if from != strings.Index(v, `"ts":`) || to != from+25 || v1 != strconv.FormatInt(o.TsNs, 10) {
				t.Errorf("feature %s: TSFROM %d TSTO %d TS %s", v, from, to, v1)
			}
		case 'w':
			if v1 != strconv.FormatInt(o.EndNs, 10) || v2 != strconv.FormatInt(o.Count, 10) || e.rank != 1 {
				t.Errorf("window %s: END %s COUNT %s RANK %d", v, v1, v2, e.rank)
			}
		}
	}
	if got := string(w.arena[w.chunks[0].lyOff:w.chunks[0].lyEnd]); got != layout || layout != strings.Repeat("w", 12)+"fff" {
		t.Errorf("layout %q, entries %q", got, layout)
	}
	allocs := testing.AllocsPerRun(50, func() {
		if err := w.encode(batch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("encode allocated %.1f times per batch", allocs)
	}
	// The feature object of one output: exact.
	got := string(w.appendFeatures(nil, &batch[0], syms[0]))
	want := `{"symbol":"AAPL","ts":0,"price":100,"volume":1.5,"sma_5":1,"ema_12":2,"rsi_14":null,"vwap":4,"seq":0}`
	if got != want {
		t.Errorf("features %s, want %s", got, want)
	}
}

// TestRedisVersionAcrossWidths: the script reads the stored ts at the
// offset the symbol fixes, 26 bytes wide; versions whose ts have more or
// fewer digits than the new one, or a sign, compare as integers. The
// symbol needs escaping, which moves the offset.
func TestRedisVersionAcrossWidths(t *testing.T) {
	c := redisTestClient(t)
	a := redisTestSymbol(t, "a") + `"q\u`
	env, ids := redisTestEnv(t, []string{"sma_5"}, nil, a)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, a)
	key := "features:" + a + ":realtime"
	steps := []struct {
		ts      int64
		seq     uint64
		applied bool
	}{
		{99, 1, true},
		{100, 1, true},  // one digit more
		{99, 5, false},  // one digit fewer
		{1000, 1, true}, // again
		{999, 9, false}, // fewer, larger digits
		{-1, 9, false},  // negative
		{1e18, 1, true}, // 19 digits
		{1e18 - 1, 2, false},
		{math.MaxInt64, 1, true},
		{math.MaxInt64, 0, false}, // same ts, smaller seq
		{math.MaxInt64, 2, true},  // same ts, larger seq
		{math.MinInt64, 3, false}, // 20 bytes: the widest ts
		{math.MaxInt64 - 1, 3, false},
	}
	var cur string
	for i, st := range steps {
		o := indOut(ids[0], st.ts, st.seq, 1, 1, 1)
		before := w.Stats()
		write(t, w, o)
		after := w.Stats()
		if st.applied {
			cur = string(w.appendFeatures(nil, &o, a))
		}
		if got := get(t, c, key); got != cur {
			t.Fatalf("step %d (ts %d seq %d): key %s, want %s", i, st.ts, st.seq, got, cur)
		}
		if st.applied && after.Written != before.Written+1 || !st.applied && after.Stale != before.Stale+1 {
			t.Errorf("step %d (ts %d seq %d): stats %+v after %+v, applied %v", i, st.ts, st.seq, after, before, st.applied)
		}
	}

	// From the widest negative ts upwards, on a fresh key.
	b := redisTestSymbol(t, "b")
	env, ids = redisTestEnv(t, []string{"sma_5"}, nil, b)
	w = newTestRedis(t, "redis://"+redisTestAddr, env, b)
	for i, ts := range []int64{math.MinInt64, math.MinInt64 + 1, -1e18, -99, 0, 7} {
		o := indOut(ids[0], ts, 1, 1, 1, 1)
		write(t, w, o)
		if got, want := get(t, c, "features:"+b+":realtime"), string(w.appendFeatures(nil, &o, b)); got != want {
			t.Fatalf("step %d (ts %d): key %s, want %s", i, ts, got, want)
		}
	}
	if st := w.Stats(); st.Written != 6 || st.Stale != 0 {
		t.Errorf("stats %+v, want 6 written", st)
	}
}

// TestRedisForeignValues: a key that holds what this writer did not write
// (another layout, not JSON, an empty string) is compared as the JSON it
// holds, if any: by its first "ts" (and its "seq"), else it is overwritten.
func TestRedisForeignValues(t *testing.T) {
	c := redisTestClient(t)
	ctx := context.Background()
	a := redisTestSymbol(t, "a")
	env, ids := redisTestEnv(t, []string{"sma_5"}, nil, a)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, a)
	key := "features:" + a + ":realtime"
	steps := []struct {
		stored  string
		ts      int64
		seq     uint64
		applied bool
	}{
		{"hello", 5, 1, true},
		{"", 5, 1, true},
		{strings.Repeat("x", 300), 5, 1, true},
		{`{"ts":5000,"symbol":"` + a + `","seq":7}`, 4000, 9, false}, // another field order: its ts
		{`{"ts":5000,"symbol":"` + a + `","seq":7}`, 6000, 1, true},
		{`{"ts":5000,"symbol":"` + a + `","seq":7}`, 5000, 6, false}, // same ts: its seq
		{`{"ts":5000,"symbol":"` + a + `","seq":7}`, 5000, 8, true},
		{`{"symbol":"` + a + `","ts":5000}`, 5000, 1, true},       // no seq: overwritten
		{`{"symbol":"` + a + `","ts":50x0,"seq":1}`, 1, 1, false}, // its first "ts": 50
		{`{"symbol":"` + a + `","ts":50x0,"seq":1}`, 60, 1, true},
	}
	for i, st := range steps {
		if err := c.Set(ctx, key, st.stored, 0).Err(); err != nil {
			t.Fatal(err)
		}
		o := indOut(ids[0], st.ts, st.seq, 1, 1, 1)
		write(t, w, o)
		want := st.stored
		if st.applied {
			want = string(w.appendFeatures(nil, &o, a))
		}
		if got := get(t, c, key); got != want {
			t.Errorf("step %d: stored %q, wrote ts %d seq %d: key %s, want %s", i, st.stored, st.ts, st.seq, got, want)
		}
	}
	if st := w.Stats(); st.Written != 7 || st.Stale != 3 {
		t.Errorf("stats %+v, want 7 written 3 stale", st)
	}
}

// TestRedisMixedChunks: one batch of features, windows and pattern matches
// spanning three EVALSHA chunks, a window key of the wrong type in the
// second: every other output is written, published and counted, the
// poison one named; written again, the keys are duplicates.
func TestRedisMixedChunks(t *testing.T) {
	c := redisTestClient(t)
	ctx := context.Background()
	const n = 400
	syms := make([]string, n)
	base := redisTestSymbol(t, "")
	for i := range syms {
		syms[i] = base + strconv.Itoa(i)
	}
	metas := []WindowMeta{{Name: "tumbling:1s:avg"}}
	env, ids := redisTestEnv(t, []string{"sma_5", "vwap"}, metas, syms...)
	w := newTestRedis(t, "redis://"+redisTestAddr+"?ttl=7s", env, syms...)
	const s = int64(1e9)
	var batch []ops.Output
	const poisonSym = 201 // has a window output (201 % 3 == 0), in the second chunk
	poison := -1
	nWin, nPat := 0, 0
	for i := range n {
		batch = append(batch, indOut(ids[i], int64(1000+i), uint64(i), float64(i), 1, float64(i), 2))
		if i%3 == 0 {
			batch = append(batch, winOut(0, ids[i], 10*s, 11*s, int64(i+1), float64(i), ops.TimingOnTime))
			nWin++
		}
		if i%5 == 0 {
			batch = append(batch, ops.Output{Kind: ops.OutPattern, Symbol: ids[i], Seq: uint64(i), TsNs: int64(i)})
			nPat++
		}
		// A newer feature output of the same symbol later in the batch.
		if i%7 == 0 {
			batch = append(batch, indOut(ids[i], int64(2000+i), uint64(i), float64(-i), 1, float64(-i), 2))
		}
	}
	for i := range batch {
		if o := &batch[i]; o.Kind == ops.OutWindow && o.Symbol == ids[poisonSym] {
			poison = i
		}
	}
	if poison < 0 {
		t.Fatal("no window output for the poison symbol")
	}
	pkey := "window:tumbling:1s:avg:" + syms[poisonSym]
	if err := c.HSet(ctx, pkey, "x", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Del(context.Background(), pkey) })
	if err := w.encode(batch); err != nil || len(w.chunks) != 3 {
		t.Fatalf("encode: %v, %d chunks, want 3", err, len(w.chunks))
	}
	if e := slices.IndexFunc(w.ents, func(e redisEntry) bool { return e.idx == poison }); e/redisChunkMax != 1 {
		t.Fatalf("the poison output is entry %d, want one of the second chunk", e)
	}
	idx := map[codec.Symbol]int{}
	for i, id := range ids {
		idx[id] = i
	}
	// Conflated: the indicator outputs that are not their symbol's newest.
	best := map[codec.Symbol]int{}
	for i := range batch {
		if o := &batch[i]; o.Kind == ops.OutIndicators {
			if b, ok := best[o.Symbol]; !ok || o.TsNs >= batch[b].TsNs {
				best[o.Symbol] = i
			}
		}
	}
	conflatedBefore, conflated := uint64(0), uint64(0)
	for i := range batch {
		if o := &batch[i]; o.Kind == ops.OutIndicators && best[o.Symbol] != i {
			conflated++
			if i < poison {
				conflatedBefore++
			}
		}
	}
	if conflated != uint64(len(batch)-n-nWin-nPat) || conflatedBefore == 0 {
		t.Fatalf("conflated %d (%d before the poison output), want %d", conflated, conflatedBefore, len(batch)-n-nWin-nPat)
	}
	err := w.WriteBatch(ctx, batch)
	var pe *PoisonError
	if !errors.As(err, &pe) || pe.Index != poison || pe.Reason != codec.ReasonBadType {
		t.Fatalf("WriteBatch = %v, want output %d poison (WRONGTYPE)", err, poison)
	}
	check := func() {
		t.Helper()
		jw := NewJSONLWriter(nil, env.JSONL)
		for i := range batch {
			if o := &batch[i]; o.Kind == ops.OutWindow && i != poison {
				k := "window:tumbling:1s:avg:" + syms[idx[o.Symbol]]
				if got, want := get(t, c, k), string(jw.AppendOutput(nil, o)); got != want {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
			}
		}
		for i, s := range syms {
			o := &batch[best[ids[i]]]
			if got, want := get(t, c, "features:"+s+":realtime"), string(w.appendFeatures(nil, o, s)); got != want {
				t.Errorf("symbol %d: %s, want %s", i, got, want)
			}
		}
	}
	check()
	if st := w.Stats(); st.Written != uint64(n+nWin-1) || st.Published != uint64(n+nWin-1+nPat) ||
		st.Conflated != conflatedBefore || st.Stale != 0 || st.Duplicate != 0 {
		t.Errorf("stats %+v, want written %d published %d conflated %d", st, n+nWin-1, n+nWin-1+nPat, conflatedBefore)
	}
	// The framework goes on after the poison output; then the whole batch
	// again (a replay): duplicates, and the patterns published again.
	write(t, w, batch[poison+1:]...)
	c.Del(ctx, pkey)
	write(t, w, batch...)
	check()
	st := w.Stats()
	if st.Stale != 0 || st.Written != uint64(n+nWin) || st.Conflated != 2*conflated {
		t.Errorf("stats %+v, want written %d (the poison window once its key is free), conflated %d", st, n+nWin, 2*conflated)
	}
	if pttl, err := c.PTTL(ctx, "features:"+syms[0]+":realtime").Result(); err != nil || pttl <= 0 || pttl > 7*time.Second {
		t.Errorf("PTTL = %v, %v; want in (0, 7s]", pttl, err)
	}
}

// redisFakeError is an error reply as go-redis returns one.
type redisFakeError string

func (e redisFakeError) Error() string { return string(e) }
func (redisFakeError) RedisError()     {}

// TestRedisReplyParse: the script's reply, one status byte per entry and
// the errors of the 'E' ones, is read exactly; anything else is an error.
func TestRedisReplyParse(t *testing.T) {
	env, _ := redisTestEnv(t, nil, nil)
	u, _ := url.Parse("redis://127.0.0.1:1")
	w, err := NewRedis(u, env)
	if err != nil {
		t.Fatal(err)
	}
	w.ents = make([]redisEntry, 6)
	ch := &redisChunk{first: 2, n: 4}
	wrong := redisFakeError("WRONGTYPE Operation against a key holding the wrong kind of value")
	if err := w.results(ch, []any{"1E23", wrong}); err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, e := range w.ents[2:] {
		got += string(e.res)
	}
	if got != "1E23" || w.ents[3].err != wrong || w.ents[2].err != nil || w.ents[0].res != 0 {
		t.Errorf("entries %q, errors %v %v", got, w.ents[2].err, w.ents[3].err)
	}
	bad := []struct {
		reply any
		want  string
	}{
		{[]any{"123"}, "3 statuses for 4 entries"},
		{[]any{"12345"}, "5 statuses"},
		{[]any{"1E23"}, "fewer errors"},
		{[]any{"1123", wrong}, "1 errors more"},
		{[]any{"1E23", "x"}, "error element string"},
		{[]any{"1x23"}, `status 'x'`},
		{[]any{int64(1), int64(1), int64(1), int64(1)}, "statuses for 4 entries"},
		{"1123", "statuses for 4 entries"},
		{[]any{}, "0 statuses"},
	}
	for _, tc := range bad {
		if err := w.results(ch, tc.reply); err == nil || !strings.Contains(err.Error(), tc.want) || IsTransient(err) {
			t.Errorf("results(%v) = %v, want an error with %q", tc.reply, err, tc.want)
		}
	}
	oom := redisFakeError("OOM command not allowed when used memory > 'maxmemory'.")
	if err := w.results(ch, []any{"1E23", oom}); err == nil || !IsTransient(err) {
		t.Errorf("results with an OOM entry = %v, want a transient error", err)
	}
}

// TestRedisTextGroups: a news line and an event line (outputs with text,
// the text in the OutText outputs after them) are published whole on
// "news" and "events"; a movement on "movements:<symbol>". Text outputs
// publish nothing of their own.
func TestRedisTextGroups(t *testing.T) {
	c := redisTestClient(t)
	a := redisTestSymbol(t, "a")
	env, ids := redisTestEnv(t, nil, nil, a)
	w := newTestRedis(t, "redis://"+redisTestAddr, env, a)
	sub := subscribe(t, c, "news", "events", "movements:"+a)
	newsLine := `{"id":"n-redis-groups","ts":80,"symbols":["X"],"entities":[],"sentiment":0.5,"relevance":{"X":1},"events":[],"pad":"` + strings.Repeat("é", 200) + `"}`
	eventLine := `{"event":"signal","symbol":null,"ts":90,"message_id":"e-redis-groups"}`
	var outs []ops.Output
	outs = ops.AppendTextGroup(outs, &ops.Output{Kind: ops.OutNews, Seq: 8, TsNs: 80, Key: 1}, []byte(newsLine))
	outs = ops.AppendTextGroup(outs, &ops.Output{Kind: ops.OutEvent, Seq: 9, TsNs: 90, Key: 2}, []byte(eventLine))
	mov := ops.Output{Kind: ops.OutMovement, Symbol: ids[0], Seq: 10, TsNs: 100, Key: 3, Price: 101, Value: 0.01, Count: int64(time.Minute), NValues: 3}
	mov.Values[0], mov.Values[2], mov.StartNs = 100, 0.01, 40
	outs = append(outs, mov)
	if len(outs) < 6 {
		t.Fatalf("%d outputs: the news line should take several text outputs", len(outs))
	}
	write(t, w, outs...)
	var got []string
	for _, m := range sub.drain("movements:" + a) {
		if (m.Channel == "news" || m.Channel == "events") && !strings.Contains(m.Payload, "redis-groups") {
			continue // another test's or program's
		}
		got = append(got, m.Channel+" "+m.Payload)
	}
	jw := NewJSONLWriter(nil, env.JSONL)
	want := []string{"news " + newsLine, "events " + eventLine, "movements:" + a + " " + string(jw.AppendOutput(nil, &mov))}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := w.Stats(); st.Published != 3 {
		t.Errorf("stats %+v, want published 3", st)
	}
}
