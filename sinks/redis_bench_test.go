package sinks

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"qstream/ops"
)

// redisBenchSymbols is how many distinct symbols the benchmarks write: more
// than a batch, so that conflation does not hide any work.
const (
	redisBenchSymbols = 10_000
	redisBenchBatch   = 1_000
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
// go test -run X -bench RedisSink -benchtime 200000x ./sinks
func BenchmarkRedisSink(b *testing.B) {
	c := redisTestClient(b)
	var ceiling float64
	b.Run("redis-benchmark-pipelined-SET", func(b *testing.B) {
		if _, err := exec.LookPath("redis-benchmark"); err != nil {
			b.Fatalf("redis-benchmark: %v (it comes with redis-server: `make services`)", err)
		}
		// One run of redis-benchmark whatever b.N is (it sets its own
		// request count); ns/op would be meaningless, req/s is the figure.
		out, err := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-t", "set", "-P", "64",
			"-n", "200000", "-q").CombinedOutput()
		if err != nil {
			b.Fatalf("redis-benchmark: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`SET: ([0-9.]+) requests per second`).FindSubmatch(out)
		if m == nil {
			b.Fatalf("redis-benchmark printed no SET rate:\n%s", out)
		}
		ceiling, _ = strconv.ParseFloat(string(m[1]), 64)
		if ceiling <= 0 {
			b.Fatalf("redis-benchmark: SET rate %q", m[1])
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(ceiling, "req/s")
	})

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
