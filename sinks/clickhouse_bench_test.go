package sinks

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go"

	"qstream/ops"
)

const chBenchBatch = 10_000

// chBenchOutputs returns one batch of indicator outputs (three indicators,
// some NaN) for the benchmarks.
func chBenchOutputs() []ops.Output {
	outs := make([]ops.Output, chBenchBatch)
	for i := range outs {
		o := &outs[i]
		o.Kind, o.Symbol, o.Seq, o.TsNs = ops.OutIndicators, 0, uint64(i), 1_700_000_000_000_000_000+int64(i)
		o.Price, o.Volume, o.NValues = 100+float64(i%1000)/100, float64(i%7), 3
		o.Values[0], o.Values[1], o.Values[2] = o.Price-0.5, o.Price+0.25, math.NaN()
		if i%10 == 0 {
			o.Values[0] = math.NaN()
		}
	}
	return outs
}

// chBenchKeys gives iteration it's batch keys no other iteration has.
func chBenchKeys(outs []ops.Output, it int) {
	for i := range outs {
		outs[i].Key = uint64(it)*chBenchBatch + uint64(i) + 1
	}
}

func (s chServer) checkCount(b *testing.B, db string, want int) {
	b.Helper()
	got := strings.TrimSpace(s.query(b, "SELECT count() FROM "+db+"."+CHTableIndicators+" FINAL"))
	if got != strconv.Itoa(want) {
		b.Fatalf("%s.%s holds %s rows under FINAL, want %d", db, CHTableIndicators, got, want)
	}
}

// BenchmarkClickHouse measures rows/s of indicator outputs into ClickHouse
// through ClickHouseWriter.WriteBatch (10k outputs per batch: encoding and
// the INSERT), per scheme, against a bare client insert of the same rows in
// the same run: http/Baseline POSTs a RowBinary body encoded before the
// timer, native/Baseline sends a clickhouse-go v1 block filled from values
// prepared before the timer. A scheme's Writer and Baseline run next to each
// other, so that they share the machine's load. Each run checks under FINAL
// that every row arrived.
func BenchmarkClickHouse(b *testing.B) {
	s := sharedClickHouse(b)
	env := chTestEnv(b, "sma_2", "ema_3", "rsi_14")
	b.Run("native/Writer", func(b *testing.B) { chBenchWriter(b, s, env, "clickhouse") })
	b.Run("native/Baseline", func(b *testing.B) { chBenchBaselineNative(b, s, env) })
	b.Run("http/Writer", func(b *testing.B) { chBenchWriter(b, s, env, "clickhouse+http") })
	b.Run("http/Baseline", func(b *testing.B) { chBenchBaselineHTTP(b, s, env) })
}

// chBenchWriter is the Writer sub-benchmark of scheme.
func chBenchWriter(b *testing.B, s chServer, env Env, scheme string) {
	db := s.testDB(b)
	w := openCH(b, s.sinkURL(scheme, db), env)
	outs := chBenchOutputs()
	ctx := context.Background()
	chBenchKeys(outs, 0)
	if err := w.WriteBatch(ctx, outs); err != nil { // warm the buffers
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for it := 1; it <= b.N; it++ {
		chBenchKeys(outs, it)
		if err := w.WriteBatch(ctx, outs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*chBenchBatch)/b.Elapsed().Seconds(), "rows/s")
	s.checkCount(b, db, (b.N+1)*chBenchBatch)
}

// chBenchBaselineHTTP POSTs a RowBinary body of the same rows encoded
// before the timer: the plainest HTTP insert.
func chBenchBaselineHTTP(b *testing.B, s chServer, env Env) {
	db := s.testDB(b)
	w := openCH(b, s.sinkURL("clickhouse+http", db), env) // the same table
	outs := chBenchOutputs()
	u := "http://" + s.httpAddr + "/?query=" + url.QueryEscape(w.tables[0].insert+" FORMAT RowBinary")
	var (
		body []byte
		rd   bytes.Reader
	)
	b.ReportAllocs()
	b.ResetTimer()
	for it := range b.N {
		b.StopTimer() // the baseline's rows are encoded before its insert
		chBenchKeys(outs, it)
		body = body[:0]
		for i := range outs {
			body = w.appendRowBinary(body, outs[i:])
		}
		rd.Reset(body)
		b.StartTimer()
		resp, err := http.Post(u, "application/octet-stream", &rd)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*chBenchBatch)/b.Elapsed().Seconds(), "rows/s")
	s.checkCount(b, db, b.N*chBenchBatch)
}

// chBenchBaselineNative sends a clickhouse-go v1 block of the same rows
// filled from values prepared before the timer: the plainest native insert.
func chBenchBaselineNative(b *testing.B, s chServer, env Env) {
	db := s.testDB(b)
	w := openCH(b, s.sinkURL("clickhouse+http", db), env) // the same table
	insert := w.tables[0].insert + " VALUES"
	conn, err := clickhouse.OpenDirect("tcp://" + s.nativeAddr + "?block_size=1000000")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	outs := chBenchOutputs()
	sym := env.JSONL.Symbols.Name(0)
	vals := make([][3]*float64, len(outs))
	for i := range outs {
		for j := range 3 {
			if v := outs[i].Values[j]; !math.IsNaN(v) {
				vals[i][j] = &outs[i].Values[j]
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for it := range b.N {
		conn.Begin()
		if _, err := conn.Prepare(insert); err != nil {
			b.Fatal(err)
		}
		block, err := conn.Block()
		if err != nil {
			b.Fatal(err)
		}
		block.Reserve()
		base := uint64(it) * chBenchBatch
		for i := range outs {
			o := &outs[i]
			block.WriteString(0, sym)
			block.WriteInt64(1, o.TsNs)
			block.WriteFloat64(2, o.Price)
			block.WriteFloat64(3, o.Volume)
			block.WriteFloat64Nullable(4, vals[i][0])
			block.WriteFloat64Nullable(5, vals[i][1])
			block.WriteFloat64Nullable(6, vals[i][2])
			block.WriteUInt64(7, o.Seq)
			block.WriteUInt64(8, base+uint64(i)+1)
		}
		block.NumRows = chBenchBatch
		if err := conn.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*chBenchBatch)/b.Elapsed().Seconds(), "rows/s")
	s.checkCount(b, db, b.N*chBenchBatch)
}

// BenchmarkClickHouseEncode measures the writer's share of an insert: the
// RowBinary encoding of one output (three indicators), which must not
// allocate.
func BenchmarkClickHouseEncode(b *testing.B) {
	env := chTestEnv(b, "sma_2", "ema_3", "rsi_14")
	w, err := NewClickHouse(&url.URL{Scheme: "clickhouse+http", Host: chHTTPAddr, Path: "/x"}, env)
	if err != nil {
		b.Fatal(err)
	}
	outs := chBenchOutputs()
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	b.ResetTimer()
	rows := 0
	for i := range b.N {
		if len(buf) > 1<<20-256 {
			buf = buf[:0]
		}
		buf = w.appendRowBinary(buf, outs[i%len(outs):])
		rows++
	}
	b.StopTimer()
	if rows != b.N || len(buf) == 0 {
		b.Fatalf("encoded %d rows, want %d", rows, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
