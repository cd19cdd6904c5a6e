package sinks

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"qstream/ops"
)

// redisBenchSymbols is how many distinct symbols the benchmarks write: more
// than a batch, so that conflation does not hide any work.
const (
	redisBenchSymbols = 10_000
	redisBenchBatch   = 1_000
)

// The feed of BenchmarkRedisSinkFromSet: the engine's collector hands the
// sinks batches of redisSetBatch outputs, here over redisSetSymbols symbols.
const (
	redisSetSymbols = 1_000
	redisSetBatch   = 256
)

// BenchmarkRedisSink measures, in one run against the server of
// `make services`:
//
//   - redis-benchmark-pipelined-SET: the ceiling, redis-benchmark's SET
//     pipelined 64 deep (req/s);
//   - go-redis-pipelined-SET-PX: the same feature objects SET with PX from
//     go-redis in one pipeline per batch, without the version check: what
//     the script costs;
//   - writer: RedisWriter.WriteBatch of batches of redisBenchBatch indicator
//     outputs over redisBenchSymbols symbols, each newer than the key holds
//     (keys/s, and its ratio to the ceiling).
//
// Run the ceiling first (sub-benchmarks run in order):
// go test -run X -bench 'RedisSink$' -benchtime 200000x ./sinks (RedisSink alone also
// runs BenchmarkRedisSinkFromSet).
func BenchmarkRedisSink(b *testing.B) {
	c := redisTestClient(b)
	var ceiling float64
	b.Run("redis-benchmark-pipelined-SET", func(b *testing.B) { ceiling = redisBenchCeiling(b) })

	names := make([]string, redisBenchSymbols)
	keys := make([]string, redisBenchSymbols)
	base := redisTestSymbol(b, "")
	for i := range names {
		names[i] = base + strconv.Itoa(i)
		keys[i] = "features:" + names[i] + ":realtime"
	}
	env, ids := redisTestEnv(b, []string{"sma_5", "sma_20", "ema_12", "rsi_14", "vwap", "vwap_14"}, nil, names...)
	w := newTestRedis(b, "redis://"+redisTestAddr, env, names...)
	batch := make([]ops.Output, 0, redisBenchBatch)
	fill := func(i int, ts int64) ops.Output {
		p := 100 + float64(i%977)/8
		return indOut(ids[i%redisBenchSymbols], ts, uint64(ts), p, 0.25, p-0.5, p-0.25, p+0.125, 55.5, p-1, p)
	}
	ts := int64(1) // increases across runs: every write is newer than the key
	expectKeys := func(b *testing.B, n int) {
		b.Helper()
		n = min(n, redisBenchSymbols)
		pipe := c.Pipeline()
		var cmds []*redis.IntCmd
		for i := 0; i < n; i += 500 {
			cmds = append(cmds, pipe.Exists(context.Background(), keys[i:min(i+500, n)]...))
		}
		if _, err := pipe.Exec(context.Background()); err != nil {
			b.Fatal(err)
		}
		got := int64(0)
		for _, cmd := range cmds {
			got += cmd.Val()
		}
		if got != int64(n) {
			b.Fatalf("%d of the %d keys written exist", got, n)
		}
	}

	b.Run("go-redis-pipelined-SET-PX", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		var arena []byte
		var offs []int
		for i := 0; i < b.N; {
			n := min(redisBenchBatch, b.N-i)
			arena, offs = arena[:0], offs[:0]
			for j := range n {
				o := fill(i+j, ts)
				ts++
				offs = append(offs, len(arena))
				arena = w.appendFeatures(arena, &o, names[(i+j)%redisBenchSymbols])
			}
			offs = append(offs, len(arena))
			pipe := c.Pipeline()
			for j := range n {
				pipe.Set(ctx, keys[(i+j)%redisBenchSymbols], arena[offs[j]:offs[j+1]], w.ttl)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			i += n
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		b.StopTimer()
		expectKeys(b, b.N)
	})

	b.Run("writer", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		before := w.Stats()
		for i := 0; i < b.N; {
			n := min(redisBenchBatch, b.N-i)
			batch = batch[:0]
			for j := range n {
				batch = append(batch, fill(i+j, ts))
				ts++
			}
			if err := w.WriteBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			i += n
		}
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "keys/s")
		if ceiling > 0 {
			b.ReportMetric(rate/ceiling, "ratio-to-SET")
		}
		b.StopTimer()
		st := w.Stats()
		if got := st.Written - before.Written; got != uint64(b.N) || st.Stale != before.Stale ||
			st.Conflated != before.Conflated {
			b.Fatalf("%d keys written of %d outputs (stats %+v)", got, b.N, st)
		}
		expectKeys(b, b.N)
	})
}

// redisBenchCeiling runs redis-benchmark's SET pipelined 64 deep against the
// test server once, whatever b.N is (it sets its own request count; ns/op
// would be meaningless), and reports and returns its rate (req/s).
func redisBenchCeiling(b *testing.B) float64 {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		b.Fatalf("redis-benchmark: %v (it comes with redis-server: `make services`)", err)
	}
	host, port, err := net.SplitHostPort(redisTestAddr)
	if err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-t", "set", "-P", "64",
		"-n", "200000", "-q").CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`SET: ([0-9.]+) requests per second`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("redis-benchmark printed no SET rate:\n%s", out)
	}
	ceiling, _ := strconv.ParseFloat(string(m[1]), 64)
	if ceiling <= 0 {
		b.Fatalf("redis-benchmark: SET rate %q", m[1])
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ceiling, "req/s")
	return ceiling
}

// BenchmarkRedisSinkFromSet measures what a redis:// sink absorbs end to
// end: a Set with one Sink (the default policy but full=block, so that the
// collector waits for room rather than spilling) over a RedisWriter, fed
// indicator outputs of redisSetSymbols symbols in batches of
// redisSetBatch through Set.HandleOutputs, as the engine's collector hands
// them; Set.Close waits for their delivery. b.N counts outputs. Reported:
// outputs/s absorbed, keys/s written (what is left after the writer's
// conflation within each batch it takes), next to redis-benchmark's
// pipelined SET ceiling of the same run.
//
//   - round-robin: symbol i%1000, the least conflation there can be (a
//     batch of 1024 outputs holds each symbol about once);
//   - zipf: symbols drawn Zipf(1.1) from a fixed seed, a few hot symbols
//     as markets have, where conflation pays.
//
// go test -run X -bench RedisSinkFromSet -benchtime 300000x ./sinks
func BenchmarkRedisSinkFromSet(b *testing.B) {
	var ceiling float64
	b.Run("redis-benchmark-pipelined-SET", func(b *testing.B) { ceiling = redisBenchCeiling(b) })
	for _, dist := range []string{"round-robin", "zipf"} {
		b.Run(dist, func(b *testing.B) {
			c := redisTestClient(b)
			names := make([]string, redisSetSymbols)
			base := redisTestSymbol(b, "")
			for i := range names {
				names[i] = base + strconv.Itoa(i)
			}
			env, ids := redisTestEnv(b, []string{"sma_5", "sma_20", "ema_12", "rsi_14", "vwap", "vwap_14"}, nil, names...)
			w := newTestRedis(b, "redis://"+redisTestAddr, env, names...)
			sink, err := NewSink("redis", w, Policy{Full: FullBlock}, "", nil, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			set := NewSet(nil, []*Sink{sink})
			set.Start()
			// The outputs, drawn before the clock starts.
			rnd := rand.New(rand.NewPCG(1, 2))
			zipf := rand.NewZipf(rnd, 1.1, 1, redisSetSymbols-1)
			outs := make([]ops.Output, b.N)
			newest := make([]int, redisSetSymbols)
			for i := range newest {
				newest[i] = -1
			}
			ts := time.Now().UnixNano()
			for i := range outs {
				s := i % redisSetSymbols
				if dist == "zipf" {
					s = int(zipf.Uint64())
				}
				p := 100 + float64(i%977)/8
				outs[i] = indOut(ids[s], ts+int64(i), uint64(i+1), p, 0.25, p-0.5, p-0.25, p+0.125, 55.5, p-1, p)
				newest[s] = i
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += redisSetBatch {
				if err := set.HandleOutputs(outs[i:min(i+redisSetBatch, b.N)]); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := set.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			sec := b.Elapsed().Seconds()
			st := w.Stats()
			if st.Written+st.Conflated != uint64(b.N) || st.Stale != 0 || st.Duplicate != 0 {
				b.Fatalf("%d outputs handed: writer stats %+v (written+conflated %d)", b.N, st, st.Written+st.Conflated)
			}
			if ss := sink.Stats(); ss.Written != uint64(b.N) || ss.Poisoned != 0 || ss.Errors != 0 {
				b.Fatalf("%d outputs handed: sink stats %+v", b.N, ss)
			}
			// Every symbol's key holds its newest output.
			pipe := c.Pipeline()
			cmds := make([]*redis.StringCmd, redisSetSymbols)
			for s := range names {
				cmds[s] = pipe.Get(context.Background(), "features:"+names[s]+":realtime")
			}
			_, _ = pipe.Exec(context.Background())
			seen := 0
			for s, cmd := range cmds {
				if newest[s] < 0 {
					if cmd.Err() != redis.Nil {
						b.Fatalf("symbol %d got no output but its key holds %q (%v)", s, cmd.Val(), cmd.Err())
					}
					continue
				}
				seen++
				want := string(w.appendFeatures(nil, &outs[newest[s]], names[s]))
				if got, err := cmd.Result(); err != nil || got != want {
					b.Fatalf("symbol %d: key %q (%v), want its newest output %s", s, got, err, want)
				}
			}
			b.ReportMetric(float64(b.N)/sec, "outputs/s")
			b.ReportMetric(float64(st.Written)/sec, "keys/s")
			b.ReportMetric(float64(seen), "symbols")
			if ceiling > 0 {
				b.ReportMetric(float64(st.Written)/sec/ceiling, "keys-ratio-to-SET")
			}
		})
	}
}
