package sinks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

// The shared server that `make services` starts.
const (
	chHTTPAddr   = "127.0.0.1:8123"
	chNativeAddr = "127.0.0.1:9000"
)

// chServer is a ClickHouse server the tests can query over HTTP.
type chServer struct{ httpAddr, nativeAddr string }

func sharedClickHouse(t testing.TB) chServer {
	t.Helper()
	for _, a := range []string{chHTTPAddr, chNativeAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Fatalf("clickhouse-server is not reachable on %s (%v): start it with `make services`", a, err)
		}
		c.Close()
	}
	return chServer{chHTTPAddr, chNativeAddr}
}

// query runs q over HTTP and returns the response body; it fails the test
// on an error.
func (s chServer) query(t testing.TB, q string) string {
	t.Helper()
	out, err := s.tryQuery(q)
	if err != nil {
		t.Fatalf("clickhouse %q: %v", q, err)
	}
	return out
}

func (s chServer) tryQuery(q string) (string, error) {
	resp, err := http.Post("http://"+s.httpAddr+"/?query="+url.QueryEscape(q), "text/plain", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// testDB returns a fresh database name, dropped when the test ends.
func (s chServer) testDB(t testing.TB) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	db := "qstream_test_" + hex.EncodeToString(r[:])
	t.Cleanup(func() { _, _ = s.tryQuery("DROP DATABASE IF EXISTS " + db) })
	return db
}

// sinkURL returns the sink URI of db on s in scheme.
func (s chServer) sinkURL(scheme, db string) *url.URL {
	host := s.httpAddr
	if scheme == "clickhouse" {
		host = s.nativeAddr
	}
	return &url.URL{Scheme: scheme, Host: host, Path: "/" + db}
}

var chSchemes = []string{"clickhouse", "clickhouse+http"}

// chEachScheme runs f as a subtest per scheme, with a fresh database on s
// and a writer into it opened with the given indicators.
func chEachScheme(t *testing.T, s chServer, indicators []string, f func(t *testing.T, db string, env Env, w *ClickHouseWriter)) {
	for _, scheme := range chSchemes {
		t.Run(scheme, func(t *testing.T) {
			db := s.testDB(t)
			env := chTestEnv(t, indicators...)
			f(t, db, env, openCH(t, s.sinkURL(scheme, db), env))
		})
	}
}

func chTestEnv(t testing.TB, indicators ...string) Env {
	syms := codec.NewSymbolTable(16)
	for _, s := range []string{"BTC-USD", "ÄPFEL", `we"ird\sym`} {
		if _, err := syms.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	return Env{JSONL: JSONLConfig{
		Symbols:    syms,
		Indicators: indicators,
		Windows:    []WindowMeta{{Name: "tumbling(1m) mean(price)"}, {Name: "tumbling(1m) ohlcv", Object: true}},
	}}
}

func openCH(t testing.TB, u *url.URL, env Env) *ClickHouseWriter {
	t.Helper()
	w, err := NewClickHouse(u, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(context.Background()); err != nil {
		t.Fatalf("Open %s: %v", u, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// chOutputs returns n outputs of every kind with values that exercise every
// column: NaN indicators and window values, ohlcv objects (one empty), keys
// above 2^63, negative and large timestamps.
func chOutputs(n int, seed uint64) []ops.Output {
	r := mrand.New(mrand.NewPCG(seed, 7))
	outs := make([]ops.Output, 0, n)
	for i := range n {
		o := ops.Output{
			Symbol: codec.Symbol(i % 3),
			Seq:    uint64(1000 + i),
			Key:    r.Uint64() | uint64(i%2)<<63,
			TsNs:   1_700_000_000_000_000_000 + int64(i)*1_000_003,
		}
		switch i % 5 {
		case 0, 1:
			o.Kind = ops.OutIndicators
			o.Price = 100 + r.Float64()*1e3
			o.Volume = r.ExpFloat64()
			o.NValues = uint8(2 + i%2) // sometimes fewer values than indicators
			for j := range o.NValues {
				o.Values[j] = r.NormFloat64() * 1e-7
				if r.IntN(4) == 0 {
					o.Values[j] = math.NaN()
				}
			}
			if i == 0 {
				o.TsNs = -5
			}
		case 2:
			o.Kind = ops.OutWindow
			o.Op = uint16(i % 2)
			o.Timing = ops.Timing(i % 3)
			o.StartNs = o.TsNs - 60e9
			o.EndNs = o.TsNs
			o.Count = int64(r.IntN(1000))
			o.Value = r.Float64() * 5e22
			if o.Op == 1 {
				o.NValues = 5
				for j := range 5 {
					o.Values[j] = r.Float64() * 100
				}
				o.Value = o.Values[3]
				if i%4 == 3 {
					o.Values[0], o.Value, o.Count = math.NaN(), math.NaN(), 0
				}
			} else if i%7 == 2 {
				o.Value = math.NaN()
			}
		case 3:
			o.Kind = ops.OutPattern
			o.Op = 1
		case 4:
			o.Kind = ops.OutNews
		}
		outs = append(outs, o)
	}
	return outs
}

// chExpected returns the rows of outs as each table should hold them, keyed
// by the output key, in the JSON the server gives back (64-bit integers as
// strings, floats as numbers, NULL as nil).
func chExpected(env Env, outs []ops.Output) map[string]map[uint64]map[string]any {
	j := NewJSONLWriter(io.Discard, env.JSONL)
	want := map[string]map[uint64]map[string]any{
		CHTableIndicators: {}, CHTableWindows: {}, CHTablePatterns: {}, CHTableNews: {},
	}
	null := func(v float64) any {
		if math.IsNaN(v) {
			return nil
		}
		return v
	}
	for i := range outs {
		o := &outs[i]
		sym := env.JSONL.Symbols.Name(o.Symbol)
		row := map[string]any{"seq": strconv.FormatUint(o.Seq, 10), "key": strconv.FormatUint(o.Key, 10), "symbol": sym}
		switch o.Kind {
		case ops.OutIndicators:
			row["ts"] = strconv.FormatInt(o.TsNs, 10)
			row["price"], row["volume"] = o.Price, o.Volume
			for k, name := range env.JSONL.Indicators {
				row[name] = nil
				if k < int(o.NValues) {
					row[name] = null(o.Values[k])
				}
			}
			want[CHTableIndicators][o.Key] = row
		case ops.OutWindow:
			meta := env.JSONL.Windows[o.Op]
			row["window"] = meta.Name
			row["start"], row["end"] = strconv.FormatInt(o.StartNs, 10), strconv.FormatInt(o.EndNs, 10)
			row["count"] = strconv.FormatInt(o.Count, 10)
			row["value"] = null(o.Value)
			row["value_json"] = ""
			if meta.Object {
				if math.IsNaN(o.Values[0]) {
					row["value_json"] = "null"
				} else {
					row["value_json"] = fmt.Sprintf(`{"open":%s,"high":%s,"low":%s,"close":%s,"volume":%s}`,
						AppendFloat(nil, o.Values[0]), AppendFloat(nil, o.Values[1]), AppendFloat(nil, o.Values[2]),
						AppendFloat(nil, o.Values[3]), AppendFloat(nil, o.Values[4]))
				}
			}
			row["timing"] = o.Timing.String()
			want[CHTableWindows][o.Key] = row
		default:
			row["ts"] = strconv.FormatInt(o.TsNs, 10)
			row["payload"] = string(j.AppendOutput(nil, o)) // the --output line
			if o.Kind == ops.OutPattern {
				want[CHTablePatterns][o.Key] = row
			} else {
				want[CHTableNews][o.Key] = row
			}
		}
	}
	return want
}

// readTable returns the rows of db.table under FINAL, keyed by key.
func (s chServer) readTable(t testing.TB, db, table string) map[uint64]map[string]any {
	t.Helper()
	body := s.query(t, "SELECT * FROM "+db+"."+table+" FINAL FORMAT JSONEachRow")
	got := map[uint64]map[string]any{}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	for {
		var row map[string]any
		if err := dec.Decode(&row); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v in %q", table, err, body)
		}
		k, err := strconv.ParseUint(fmt.Sprint(row["key"]), 10, 64)
		if err != nil {
			t.Fatalf("%s: key %v: %v", table, row["key"], err)
		}
		if _, dup := got[k]; dup {
			t.Fatalf("%s: key %d twice under FINAL", table, k)
		}
		got[k] = row
	}
	return got
}

// checkTables compares every column of every row with want.
func (s chServer) checkTables(t testing.TB, db string, want map[string]map[uint64]map[string]any) {
	t.Helper()
	for table, rows := range want {
		got := s.readTable(t, db, table)
		if len(got) != len(rows) {
			t.Errorf("%s: %d rows under FINAL, want %d", table, len(got), len(rows))
		}
		for k, wr := range rows {
			gr, ok := got[k]
			if !ok {
				t.Errorf("%s: key %d missing", table, k)
				continue
			}
			if len(gr) != len(wr) {
				t.Errorf("%s key %d: columns %v, want %v", table, k, gr, wr)
			}
			for col, wv := range wr {
				gv := gr[col]
				switch wv := wv.(type) {
				case float64:
					n, ok := gv.(json.Number)
					f, err := n.Float64()
					if !ok || err != nil || f != wv {
						t.Errorf("%s key %d %s = %v, want %v", table, k, col, gv, wv)
					}
				case nil:
					if gv != nil {
						t.Errorf("%s key %d %s = %v, want NULL", table, k, col, gv)
					}
				default:
					if fmt.Sprint(gv) != fmt.Sprint(wv) {
						t.Errorf("%s key %d %s = %q, want %q", table, k, col, gv, wv)
					}
				}
			}
		}
	}
}

func TestClickHouseWritesComputedValues(t *testing.T) {
	s := sharedClickHouse(t)
	chEachScheme(t, s, []string{"sma_2", "ema_3", "rsi_14"}, func(t *testing.T, db string, env Env, w *ClickHouseWriter) {
		outs := chOutputs(200, 1)
		mustWriteBatch(t, w, outs)
		s.checkTables(t, db, chExpected(env, outs))
		if got := string(w.AppendStatus(nil)); got != " rows=200 inserts=4" {
			t.Errorf("status %q, want \" rows=200 inserts=4\"", got)
		}
		// One INSERT per table for the batch: four parts, one per table.
		parts := s.query(t, "SELECT count() FROM system.parts WHERE active AND database = '"+db+"'")
		if strings.TrimSpace(parts) != "4" {
			t.Errorf("%s parts after one batch, want 4 (one INSERT per table)", strings.TrimSpace(parts))
		}
	})
}

func TestClickHouseDuplicatesLeaveOneRow(t *testing.T) {
	s := sharedClickHouse(t)
	chEachScheme(t, s, []string{"sma_2", "ema_3"}, func(t *testing.T, db string, env Env, w *ClickHouseWriter) {
		outs := chOutputs(400, 2)
		write := func(outs []ops.Output, batch func() int) {
			for len(outs) > 0 {
				n := min(batch(), len(outs))
				mustWriteBatch(t, w, outs[:n])
				outs = outs[n:]
			}
		}
		write(outs, func() int { return 200 })
		write(outs, func() int { return 200 }) // a retried batch, a replay
		r := mrand.New(mrand.NewPCG(3, 3))
		shuffled := append([]ops.Output(nil), outs...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		write(shuffled, func() int { return 50 + r.IntN(200) })

		// A late re-firing shares its window's key; the higher seq
		// wins under FINAL whatever the order of arrival.
		onTime := outs[2]
		late := onTime
		late.Timing, late.Seq, late.Count, late.Value = ops.TimingLate, onTime.Seq+5000, onTime.Count+1, 42.5
		mustWriteBatch(t, w, []ops.Output{late})
		mustWriteBatch(t, w, []ops.Output{onTime})
		want := chExpected(env, append(append([]ops.Output(nil), outs...), late))
		s.checkTables(t, db, want)
	})
}

func TestClickHouseAddsMissingIndicatorColumn(t *testing.T) {
	s := sharedClickHouse(t)
	for _, scheme := range chSchemes {
		t.Run(scheme, func(t *testing.T) {
			db := s.testDB(t)
			old := chOutputs(50, 4)
			w1 := openCH(t, s.sinkURL(scheme, db), chTestEnv(t, "sma_2"))
			mustWriteBatch(t, w1, old)
			w1.Close()

			env := chTestEnv(t, "sma_2", "rsi_14", "odd name`x")
			w2 := openCH(t, s.sinkURL(scheme, db), env)
			cols := s.query(t, "SELECT name, type FROM system.columns WHERE database = '"+db+"' AND table = '"+CHTableIndicators+"' FORMAT TSV")
			for _, want := range []string{"rsi_14\tNullable(Float64)", "odd name`x\tNullable(Float64)"} {
				if !strings.Contains(cols, want+"\n") {
					t.Errorf("columns after Open:\n%s\nwant %q", cols, want)
				}
			}
			fresh := chOutputs(50, 5)
			for i := range fresh {
				fresh[i].Key ^= 0x5555 // distinct from old keys
			}
			mustWriteBatch(t, w2, fresh)
			// Rows written before the column existed read NULL in it.
			oldEnv := env
			want := chExpected(oldEnv, fresh)
			for k, row := range chExpected(chTestEnv(t, "sma_2"), old)[CHTableIndicators] {
				row["rsi_14"], row["odd name`x"] = nil, nil
				want[CHTableIndicators][k] = row
			}
			for _, tbl := range []string{CHTableWindows, CHTablePatterns, CHTableNews} {
				for k, row := range chExpected(oldEnv, old)[tbl] {
					want[tbl][k] = row
				}
			}
			s.checkTables(t, db, want)
			// Open again: nothing left to add, no error.
			openCH(t, s.sinkURL(scheme, db), env)
		})
	}
}

func TestClickHouseClosedPortIsTransient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, scheme := range chSchemes {
		w, err := NewClickHouse(&url.URL{Scheme: scheme, Host: addr, Path: "/qstream_nowhere"}, chTestEnv(t))
		if err != nil {
			t.Fatal(err)
		}
		err = w.Open(context.Background())
		if err == nil || !IsTransient(err) {
			t.Errorf("%s: Open on a closed port = %v, want a transient error", scheme, err)
		}
		err = w.WriteBatch(context.Background(), chOutputs(5, 1))
		if err == nil || !IsTransient(err) {
			t.Errorf("%s: WriteBatch on a closed port = %v, want a transient error", scheme, err)
		}
		w.Close()
	}
}

// ownClickHouse starts a clickhouse-server of the test's own in a temporary
// directory on free loopback ports; restart kills it (SIGKILL, a crash) and
// starts it again on the same ports and data, stop only kills it.
type ownClickHouse struct {
	chServer
	t    testing.TB
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startOwnClickHouse(t testing.TB) *ownClickHouse {
	bin := clickHouseServerBin(t)
	o := &ownClickHouse{t: t, dir: t.TempDir()}
	o.httpAddr, o.nativeAddr = freeAddr(t), freeAddr(t)
	_, hp, _ := net.SplitHostPort(o.httpAddr)
	_, np, _ := net.SplitHostPort(o.nativeAddr)
	users := "/etc/clickhouse-server/users.xml"
	if _, err := os.Stat(users); err != nil {
		t.Fatalf("%s missing (%v): install clickhouse-server with `make services`", users, err)
	}
	cfg := fmt.Sprintf(`<yandex>
  <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/err.log</errorlog></logger>
  <http_port>%[2]s</http_port><tcp_port>%[3]s</tcp_port><listen_host>127.0.0.1</listen_host>
  <path>%[1]s/data/</path><tmp_path>%[1]s/tmp/</tmp_path>
  <users_config>%[4]s</users_config><default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
</yandex>`, o.dir, hp, np, users)
	if err := os.WriteFile(filepath.Join(o.dir, "config.xml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	o.start(bin)
	t.Cleanup(o.stop)
	return o
}

// clickHouseServerBin finds the server binary, also when /usr/sbin is not
// on PATH.
func clickHouseServerBin(t testing.TB) string {
	if bin, err := exec.LookPath("clickhouse-server"); err == nil {
		return bin
	}
	if _, err := os.Stat("/usr/sbin/clickhouse-server"); err == nil {
		return "/usr/sbin/clickhouse-server"
	}
	t.Fatalf("clickhouse-server is not installed: install it with `make services`")
	return ""
}

func (o *ownClickHouse) start(bin string) {
	o.t.Helper()
	var out bytes.Buffer
	o.cmd = exec.Command(bin, "--config-file="+filepath.Join(o.dir, "config.xml"))
	o.cmd.Dir, o.cmd.Stdout, o.cmd.Stderr = o.dir, &out, &out
	if err := o.cmd.Start(); err != nil {
		o.t.Fatal(err)
	}
	o.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(o.cmd, o.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := o.tryQuery("SELECT 1"); err == nil {
			if c, err := net.Dial("tcp", o.nativeAddr); err == nil {
				c.Close()
				return
			}
		}
		select {
		case <-o.done:
			o.t.Fatalf("own clickhouse-server exited: %s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("own clickhouse-server did not answer in 20 s: %s", out.String())
		}
	}
}

func (o *ownClickHouse) stop() {
	if o.cmd != nil && o.cmd.Process != nil {
		_ = o.cmd.Process.Kill()
		<-o.done
		o.cmd = nil
	}
}

func TestClickHouseServerGoesAway(t *testing.T) {
	sharedClickHouse(t) // the package must be installed: the same hint
	srv := startOwnClickHouse(t)
	bin := clickHouseServerBin(t)
	chEachScheme(t, srv.chServer, []string{"sma_2", "ema_3"}, func(t *testing.T, db string, env Env, w *ClickHouseWriter) {
		ctx := context.Background()
		outs := chOutputs(300, 9)
		mustWriteBatch(t, w, outs[:100])
		srv.stop()
		err := w.WriteBatch(ctx, outs[100:200])
		if err == nil || !IsTransient(err) {
			t.Fatalf("WriteBatch with the server gone = %v, want a transient error", err)
		}
		t.Logf("server gone: %v", err)
		var pe *PoisonError
		if errors.As(err, &pe) {
			t.Fatalf("server gone reported as poison: %v", err)
		}
		srv.start(bin)
		// The framework retries the failed batch whole: same writer.
		if err := w.WriteBatch(ctx, outs[100:200]); err != nil {
			t.Fatalf("WriteBatch after the server returned: %v", err)
		}
		mustWriteBatch(t, w, outs[200:])
		srv.checkTables(t, db, chExpected(env, outs))
	})
}

func TestClickHouseSplitsLargeBatches(t *testing.T) {
	s := sharedClickHouse(t)
	chEachScheme(t, s, []string{"sma_2"}, func(t *testing.T, db string, env Env, w *ClickHouseWriter) {
		w.rowsMax, w.bytesMax = 70, 4096
		outs := chOutputs(1000, 11)
		mustWriteBatch(t, w, outs)
		s.checkTables(t, db, chExpected(env, outs))
		parts, _ := strconv.Atoi(strings.TrimSpace(s.query(t,
			"SELECT count() FROM system.parts WHERE database = '"+db+"' AND table = '"+CHTableIndicators+"'")))
		if parts < 400/70 {
			t.Errorf("%d parts of %s, want >= %d: the batch was not split", parts, CHTableIndicators, 400/70)
		}
	})
}

func TestClickHouseEncodeAllocatesNothing(t *testing.T) {
	env := chTestEnv(t, "sma_2", "ema_3")
	w, err := NewClickHouse(&url.URL{Scheme: "clickhouse+http", Host: chHTTPAddr, Path: "/x"}, env)
	if err != nil {
		t.Fatal(err)
	}
	outs := chOutputs(100, 1)
	buf := make([]byte, 0, 64<<10)
	w.scratch = make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(20, func() {
		buf = buf[:0]
		for i := range outs {
			buf = w.appendRowBinary(buf, outs[i:])
		}
	})
	if allocs != 0 {
		t.Errorf("RowBinary encoding of 100 outputs allocates %v times, want 0", allocs)
	}
}

func TestClickHouseRecreatesDroppedTables(t *testing.T) {
	s := sharedClickHouse(t)
	chEachScheme(t, s, []string{"sma_2"}, func(t *testing.T, db string, env Env, w *ClickHouseWriter) {
		ctx := context.Background()
		outs := chOutputs(100, 12)
		mustWriteBatch(t, w, outs[:50])
		s.query(t, "DROP DATABASE "+db) // a server restarted on empty storage
		err := w.WriteBatch(ctx, outs[50:])
		if err == nil || !IsTransient(err) {
			t.Fatalf("WriteBatch into a dropped database = %v, want a transient error", err)
		}
		if err := w.WriteBatch(ctx, outs[50:]); err != nil {
			t.Fatalf("WriteBatch retried: %v (the tables were not created again)", err)
		}
		s.checkTables(t, db, chExpected(env, outs[50:]))
	})
}

func TestCHHTTPErrorCode(t *testing.T) {
	for _, c := range []struct {
		hdr, msg string
		want     int
	}{
		{"", "Code: 60, e.displayText() = DB::Exception: Table x.y doesn't exist., e.what() = DB::Exception", 60},
		{"", "Code: 81. DB::Exception: Database x does not exist. (UNKNOWN_DATABASE)", 81},
		{"62", "Code: 62. DB::Exception: Syntax error", 62},
		{"", "Bad Gateway", -1},
		{"", "Code: x", -1},
	} {
		h := http.Header{}
		if c.hdr != "" {
			h.Set("X-ClickHouse-Exception-Code", c.hdr)
		}
		if got := chHTTPErrorCode(h, []byte(c.msg)); got != c.want {
			t.Errorf("chHTTPErrorCode(%q, %q) = %d, want %d", c.hdr, c.msg, got, c.want)
		}
	}
}
