package sinks

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go"
	chdata "github.com/ClickHouse/clickhouse-go/lib/data"

	"qstream/ops"
)

// ClickHouse table names (DESIGN.md "Sinks"), one per output kind.
const (
	CHTableIndicators = "qstream_indicators"
	CHTableWindows    = "qstream_windows"
	CHTablePatterns   = "qstream_patterns"
	CHTableNews       = "qstream_news"
	CHTableEvents     = "qstream_events"
	CHTableMovements  = "qstream_movements"
)

// Server error codes on which the writer creates its tables again.
const (
	chUnknownTable    = 60
	chUnknownDatabase = 81
)

// Bounds of one INSERT: a WriteBatch sends one INSERT per table, split into
// several when a table's rows exceed either bound.
const (
	chInsertRowsMax  = 100_000
	chInsertBytesMax = 16 << 20
)

// ClickHouseWriter writes outputs into ClickHouse tables, one INSERT per
// table per WriteBatch (see chInsertRowsMax, chInsertBytesMax). Tables are
// ReplacingMergeTree ordered by the output key with seq as the version, so
// an output written twice (a retried batch, a replay after a crash) is one
// row under SELECT ... FINAL, and of two outputs with one key (an on-time
// window firing and its late re-firing) the later-sequenced one stays,
// whatever order they arrived in.
//
// Two protocols, because both have to work against Debian's
// clickhouse-server 18.16 and current servers:
//
//   - clickhouse+http://HOST:8123/DB is the HTTP interface with RowBinary
//     bodies encoded here by hand: no dependency, and the HTTP interface and
//     RowBinary have not changed since long before 18.16. clickhouse-go v2
//     is not an option: its batch Append fails against 18.16 ("expected 0
//     arguments") and its HTTP protocol sends the setting
//     client_protocol_version, which 18.16 rejects as unknown.
//   - clickhouse://HOST:9000/DB is the native protocol through clickhouse-go
//     v1.5.4's direct (columnar) API: v1 speaks an old client revision that
//     18.16 and current servers accept, and its column writers take typed
//     values without boxing one per row (the lead measured 100k rows in
//     44 ms against 18.16). Its cost: it builds a fresh block (column
//     buffers grown from empty) per INSERT, about 250 allocations and twice
//     the block's bytes per insert whatever the row count. A native client
//     written here would save that, at the price of owning the handshake
//     and packet protocol of every server version.
//
// User and password come from the URL's user info; ?timeout=DURATION bounds
// each request (default 30 s). The database is created if it is missing.
//
// Errors: a refused or broken connection and an HTTP 5xx are transient
// (ErrTransient); any other server error (an HTTP 4xx, a native exception) is
// a system error that counts towards the breaker. No output can be poison:
// every column is typed binary that any value of ops.Output fits. After an
// error on the native connection it is closed and reopened by the next call.
// An unknown table or database (dropped, or a server restarted on empty
// storage) is transient too: the next WriteBatch runs Open again first.
//
// Encoding reuses per-table buffers: after the first batches, WriteBatch
// allocates per request (the HTTP request; clickhouse-go's block, see
// above), never per row. The request bounds (rows, bytes) hold for both
// protocols.
type ClickHouseWriter struct {
	native  bool
	db      string
	timeout time.Duration
	names   []string // indicator column names, as env.JSONL.Indicators
	jsonl   *JSONLWriter
	tables  [6]chTable // by kind-1

	// HTTP
	client *http.Client
	base   string // http://host:port/?user=..&password=..&query=
	body   bytes.Reader

	// native
	dsn  string
	conn clickhouse.Clickhouse

	rowsMax, bytesMax int
	scratch           []byte
	rows, inserts     atomic.Uint64 // acknowledged, for AppendStatus
	missing           bool          // a table or the database vanished: Open again before writing
	idx               []int32       // positions of one kind's outputs in the batch
}

type chTable struct {
	name   string
	kind   ops.OutKind
	cols   []chCol
	insert string // INSERT INTO db.t (cols) — without FORMAT/VALUES
	buf    []byte // RowBinary body (HTTP)
}

type chCol struct{ name, typ string }

// NewClickHouse returns a writer for u (clickhouse:// or clickhouse+http://,
// see ClickHouseWriter); it does not connect before Open.
func NewClickHouse(u *url.URL, env Env) (*ClickHouseWriter, error) {
	w := &ClickHouseWriter{timeout: 30 * time.Second, rowsMax: chInsertRowsMax, bytesMax: chInsertBytesMax}
	switch u.Scheme {
	case "clickhouse":
		w.native = true
	case "clickhouse+http":
	default:
		return nil, fmt.Errorf("sinks: clickhouse: scheme %q is not clickhouse or clickhouse+http", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("sinks: clickhouse: %q has no host", u.Redacted())
	}
	w.db = strings.Trim(u.Path, "/")
	if w.db == "" {
		w.db = "default"
	}
	if strings.ContainsAny(w.db, "/`\\") {
		return nil, fmt.Errorf("sinks: clickhouse: bad database name %q", w.db)
	}
	q, err := queryParams("clickhouse", u)
	if err != nil {
		return nil, err
	}
	for k := range q {
		if k != "timeout" {
			return nil, fmt.Errorf("sinks: clickhouse: unknown parameter %s (want timeout)", k)
		}
	}
	if s := q.Get("timeout"); s != "" {
		if w.timeout, err = durationParam("clickhouse", "timeout", s, time.Nanosecond, 0); err != nil {
			return nil, err
		}
	}
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	if w.native {
		q := url.Values{}
		if user != "" {
			q.Set("username", user)
			q.Set("password", pass)
		}
		secs := strconv.FormatFloat(w.timeout.Seconds(), 'f', -1, 64)
		q.Set("read_timeout", secs)
		q.Set("write_timeout", secs)
		w.dsn = "tcp://" + u.Host + "?" + q.Encode()
	} else {
		q := url.Values{}
		if user != "" {
			q.Set("user", user)
			q.Set("password", pass)
		}
		w.base = "http://" + u.Host + "/?"
		if len(q) > 0 {
			w.base += q.Encode() + "&"
		}
		w.base += "query="
		w.client = &http.Client{Timeout: w.timeout}
	}

	fixed := map[string]bool{"symbol": true, "ts": true, "price": true, "volume": true, "seq": true, "key": true}
	for _, n := range env.JSONL.Indicators {
		if fixed[n] || n == "" {
			return nil, fmt.Errorf("sinks: clickhouse: indicator name %q clashes with a column of %s", n, CHTableIndicators)
		}
		fixed[n] = true
	}
	w.names = env.JSONL.Indicators
	jcfg := env.JSONL
	jcfg.Kinds = nil
	w.jsonl = NewJSONLWriter(io.Discard, jcfg)

	ind := []chCol{{"symbol", "String"}, {"ts", "Int64"}, {"price", "Float64"}, {"volume", "Float64"}}
	for _, n := range w.names {
		ind = append(ind, chCol{n, "Nullable(Float64)"})
	}
	ind = append(ind, chCol{"seq", "UInt64"}, chCol{"key", "UInt64"})
	win := []chCol{{"window", "String"}, {"symbol", "String"}, {"start", "Int64"}, {"end", "Int64"},
		{"count", "UInt64"}, {"value", "Nullable(Float64)"}, {"value_json", "String"}, {"timing", "String"},
		{"seq", "UInt64"}, {"key", "UInt64"}}
	payload := []chCol{{"symbol", "String"}, {"ts", "Int64"}, {"payload", "String"}, {"seq", "UInt64"}, {"key", "UInt64"}}
	w.tables = [6]chTable{
		{name: CHTableIndicators, kind: ops.OutIndicators, cols: ind},
		{name: CHTableWindows, kind: ops.OutWindow, cols: win},
		{name: CHTablePatterns, kind: ops.OutPattern, cols: payload},
		{name: CHTableNews, kind: ops.OutNews, cols: payload},
		{name: CHTableEvents, kind: ops.OutEvent, cols: payload},
		{name: CHTableMovements, kind: ops.OutMovement, cols: payload},
	}
	for i := range w.tables {
		t := &w.tables[i]
		t.insert = w.tableSQL("INSERT INTO", t, false)
	}
	return w, nil
}

// table returns the quoted db.name of table name.
func (w *ClickHouseWriter) table(name string) string { return chIdent(w.db) + "." + chIdent(name) }

// tableSQL returns "verb db.t (c1, c2, ...)", each column with its type if
// typed.
func (w *ClickHouseWriter) tableSQL(verb string, t *chTable, typed bool) string {
	var b strings.Builder
	b.WriteString(verb + " " + w.table(t.name) + " (")
	for j, c := range t.cols {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString(chIdent(c.name))
		if typed {
			b.WriteString(" " + c.typ)
		}
	}
	b.WriteString(")")
	return b.String()
}

// chIdent quotes a ClickHouse identifier with backquotes.
func chIdent(s string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
}

// chString quotes a ClickHouse string literal.
func chString(s string) string {
	return "'" + strings.NewReplacer("\\", "\\\\", "'", "\\'").Replace(s) + "'"
}

// Open connects, creates the database and the tables if they are missing,
// and adds to an existing qstream_indicators the indicator columns it lacks.
func (w *ClickHouseWriter) Open(ctx context.Context) error {
	if err := w.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+chIdent(w.db)); err != nil {
		return err
	}
	for i := range w.tables {
		create := w.tableSQL("CREATE TABLE IF NOT EXISTS", &w.tables[i], true) + " ENGINE = ReplacingMergeTree(`seq`) ORDER BY `key`"
		if err := w.exec(ctx, create); err != nil {
			return err
		}
	}
	t := &w.tables[0]
	have, err := w.columns(ctx, t.name)
	if err != nil {
		return err
	}
	for _, c := range t.cols {
		if have[c.name] {
			continue
		}
		err := w.exec(ctx, "ALTER TABLE "+w.table(t.name)+" ADD COLUMN "+chIdent(c.name)+" "+c.typ)
		if err != nil {
			// Another writer may have added it meanwhile.
			if again, err2 := w.columns(ctx, t.name); err2 != nil || !again[c.name] {
				return err
			}
		}
	}
	return nil
}

// columns returns the column names of table t.
func (w *ClickHouseWriter) columns(ctx context.Context, t string) (map[string]bool, error) {
	q := "SELECT name FROM system.columns WHERE database = " + chString(w.db) + " AND table = " + chString(t)
	names, err := w.query(ctx, q)
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m, nil
}

// WriteBatch implements Writer: one INSERT per table that has outputs in
// outs (more when a table's share exceeds the request bounds).
func (w *ClickHouseWriter) WriteBatch(ctx context.Context, outs []ops.Output) error {
	if w.missing {
		if err := w.Open(ctx); err != nil {
			return err
		}
		w.missing = false
	}
	for ti := range w.tables {
		t := &w.tables[ti]
		w.idx = w.idx[:0]
		for i := range outs {
			if outs[i].Kind == t.kind {
				w.idx = append(w.idx, int32(i))
			}
		}
		for start := 0; start < len(w.idx); {
			n, err := w.insert(ctx, t, outs, w.idx[start:])
			if err != nil {
				return err
			}
			w.rows.Add(uint64(n))
			w.inserts.Add(1)
			start += n
		}
	}
	return nil
}

// insert writes a prefix of the outputs outs[idx...] of table t in one
// INSERT and returns how many it wrote (at least one).
func (w *ClickHouseWriter) insert(ctx context.Context, t *chTable, outs []ops.Output, idx []int32) (int, error) {
	if w.native {
		return w.insertNative(ctx, t, outs, idx)
	}
	t.buf = t.buf[:0]
	n := 0
	for _, i := range idx {
		if n == w.rowsMax || (n > 0 && len(t.buf) >= w.bytesMax) {
			break
		}
		t.buf = w.appendRowBinary(t.buf, outs[i:])
		n++
	}
	w.body.Reset(t.buf)
	return n, w.post(ctx, t.insert+" FORMAT RowBinary", &w.body, nil)
}

// appendRowBinary appends o as one RowBinary row of its table.
// o is outs[0]; an output with text has its OutText outputs after it.
func (w *ClickHouseWriter) appendRowBinary(dst []byte, outs []ops.Output) []byte {
	o := &outs[0]
	switch o.Kind {
	case ops.OutIndicators:
		dst = chAppendString(dst, w.jsonl.symbol(o.Symbol))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(o.TsNs))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(o.Price))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(o.Volume))
		for i := range w.names {
			v := math.NaN()
			if i < int(o.NValues) && i < ops.MaxValues {
				v = o.Values[i]
			}
			dst = chAppendNullable(dst, v)
		}
	case ops.OutWindow:
		meta := w.window(o)
		dst = chAppendString(dst, meta.Name)
		dst = chAppendString(dst, w.jsonl.symbol(o.Symbol))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(o.StartNs))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(o.EndNs))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(max(o.Count, 0)))
		dst = chAppendNullable(dst, o.Value)
		w.scratch = w.appendValueJSON(w.scratch[:0], meta, o)
		dst = binary.AppendUvarint(dst, uint64(len(w.scratch)))
		dst = append(dst, w.scratch...)
		dst = chAppendString(dst, o.Timing.String())
	default:
		dst = chAppendString(dst, w.jsonl.symbol(o.Symbol))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(o.TsNs))
		w.scratch = w.jsonl.AppendGroup(w.scratch[:0], outs)
		dst = binary.AppendUvarint(dst, uint64(len(w.scratch)))
		dst = append(dst, w.scratch...)
	}
	dst = binary.LittleEndian.AppendUint64(dst, o.Seq)
	return binary.LittleEndian.AppendUint64(dst, o.Key)
}

func (w *ClickHouseWriter) window(o *ops.Output) WindowMeta {
	if int(o.Op) < len(w.jsonl.cfg.Windows) {
		return w.jsonl.cfg.Windows[o.Op]
	}
	return WindowMeta{}
}

// appendValueJSON appends value_json of a window output: the OHLCV object
// as the --output line writes it ("null" for an empty window), nothing for
// a numeric window.
func (w *ClickHouseWriter) appendValueJSON(dst []byte, meta WindowMeta, o *ops.Output) []byte {
	if meta.Object && o.NValues >= 5 {
		return appendOHLCV(dst, &o.Values)
	}
	return dst
}

func chAppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// chAppendNullable appends a Nullable(Float64): NaN is NULL.
func chAppendNullable(dst []byte, v float64) []byte {
	if math.IsNaN(v) {
		return append(dst, 1)
	}
	dst = append(dst, 0)
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

// post sends one HTTP request with query q and body (nil: none). With out
// non-nil the response body is copied there.
func (w *ClickHouseWriter) post(ctx context.Context, q string, body io.Reader, out *bytes.Buffer) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.base+url.QueryEscape(q), body)
	if err != nil {
		return fmt.Errorf("sinks: clickhouse: %w", err)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL: the query can be long
		}
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("sinks: clickhouse: POST %s: %w", req.URL.Host, err)
		}
		return fmt.Errorf("sinks: clickhouse: POST %s: %w (%w)", req.URL.Host, err, ErrTransient)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if out != nil {
			_, err = out.ReadFrom(io.LimitReader(resp.Body, 64<<20))
		} else {
			_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		}
		if err != nil {
			return fmt.Errorf("sinks: clickhouse: reading the response: %w (%w)", err, ErrTransient)
		}
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	err = fmt.Errorf("sinks: clickhouse: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	if code := chHTTPErrorCode(resp.Header, msg); code == chUnknownTable || code == chUnknownDatabase {
		w.missing = true
		return fmt.Errorf("%w (%w)", err, ErrTransient)
	}
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%w (%w)", err, ErrTransient)
	}
	return err
}

// chHTTPErrorCode returns the server's error code of a failed HTTP request:
// the X-ClickHouse-Exception-Code header of current servers, else the
// "Code: NN" that starts the message (18.16 writes "Code: 60, e.displayText()
// = ...", current servers "Code: 60. DB::Exception: ..."); -1 if neither.
func chHTTPErrorCode(h http.Header, msg []byte) int {
	if v := h.Get("X-ClickHouse-Exception-Code"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	rest, ok := bytes.CutPrefix(bytes.TrimSpace(msg), []byte("Code: "))
	if !ok {
		return -1
	}
	n, i := 0, 0
	for ; i < len(rest) && i < 6 && rest[i] >= '0' && rest[i] <= '9'; i++ {
		n = n*10 + int(rest[i]-'0')
	}
	if i == 0 {
		return -1
	}
	return n
}

// exec runs a statement without a result.
func (w *ClickHouseWriter) exec(ctx context.Context, q string) error {
	if !w.native {
		return w.post(ctx, q, nil, nil)
	}
	if err := w.connect(); err != nil {
		return err
	}
	err := w.nativeStmt(ctx, q, func(st driver.Stmt) error {
		ex, ok := st.(driver.StmtExecContext)
		if !ok {
			return errors.New("driver statement without ExecContext")
		}
		_, err := ex.ExecContext(ctx, nil)
		return err
	})
	return w.nativeErr(err)
}

// query runs a query of one String column and returns its values.
func (w *ClickHouseWriter) query(ctx context.Context, q string) ([]string, error) {
	var vals []string
	if !w.native {
		var out bytes.Buffer
		if err := w.post(ctx, q+" FORMAT TabSeparatedRaw", nil, &out); err != nil {
			return nil, err
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if l != "" {
				vals = append(vals, l)
			}
		}
		return vals, nil
	}
	if err := w.connect(); err != nil {
		return nil, err
	}
	err := w.nativeStmt(ctx, q, func(st driver.Stmt) error {
		qc, ok := st.(driver.StmtQueryContext)
		if !ok {
			return errors.New("driver statement without QueryContext")
		}
		rows, err := qc.QueryContext(ctx, nil)
		if err != nil {
			return err
		}
		dest := make([]driver.Value, 1)
		for {
			if err := rows.Next(dest); err != nil {
				if err == io.EOF {
					return rows.Close()
				}
				rows.Close()
				return err
			}
			s, _ := dest[0].(string)
			vals = append(vals, s)
		}
	})
	return vals, w.nativeErr(err)
}

// connect opens the native connection if it is not open.
func (w *ClickHouseWriter) connect() error {
	if w.conn != nil {
		return nil
	}
	c, err := clickhouse.OpenDirect(w.dsn)
	if err != nil {
		return fmt.Errorf("sinks: clickhouse: connect: %w (%w)", err, ErrTransient)
	}
	w.conn = c
	return nil
}

// nativeStmt runs f on statement q inside the driver's transaction frame.
func (w *ClickHouseWriter) nativeStmt(ctx context.Context, q string, f func(driver.Stmt) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := w.conn.Begin(); err != nil {
		return err
	}
	st, err := w.conn.Prepare(q)
	if err != nil {
		return err
	}
	if err := f(st); err != nil {
		return err
	}
	return w.conn.Commit()
}

// nativeErr classifies an error of the native connection and drops the
// connection after one, since the protocol state is unknown then.
func (w *ClickHouseWriter) nativeErr(err error) error {
	if err == nil {
		return nil
	}
	if w.conn != nil {
		_ = w.conn.Close()
		w.conn = nil
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		if ex.Code == chUnknownTable || ex.Code == chUnknownDatabase {
			w.missing = true
			return fmt.Errorf("sinks: clickhouse: %w (%w)", err, ErrTransient)
		}
		return fmt.Errorf("sinks: clickhouse: %w", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sinks: clickhouse: %w", err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("sinks: clickhouse: %w (%w)", err, ErrTransient)
	}
	return fmt.Errorf("sinks: clickhouse: %w", err)
}

// insertNative writes a prefix of outs[idx...] as one native block.
func (w *ClickHouseWriter) insertNative(ctx context.Context, t *chTable, outs []ops.Output, idx []int32) (int, error) {
	if err := w.connect(); err != nil {
		return 0, err
	}
	n := 0
	err := w.nativeStmt(ctx, t.insert+" VALUES", func(driver.Stmt) error {
		block, err := w.conn.Block()
		if err != nil {
			return err
		}
		if len(block.Columns) != len(t.cols) {
			return fmt.Errorf("insert block has %d columns, want %d", len(block.Columns), len(t.cols))
		}
		block.Reserve()
		size := 0
		for _, i := range idx {
			if n == w.rowsMax || (n > 0 && size >= w.bytesMax) {
				break
			}
			rowBytes, err := w.writeNativeRow(block, outs[i:])
			if err != nil {
				return err
			}
			size += rowBytes
			n++
		}
		block.NumRows = uint64(n)
		return nil
	})
	return n, w.nativeErr(err)
}

// writeNativeRow appends o to the columns of block, in the order of the
// table's INSERT column list, and returns the bytes it added (as in
// RowBinary, near enough for the request bound).
func (w *ClickHouseWriter) writeNativeRow(b *chdata.Block, outs []ops.Output) (int, error) {
	o := &outs[0]
	c, strBytes := 0, 0
	// The column writers write into bytes.Buffers and never fail; the
	// first error, if any, is kept.
	var err error
	keep := func(e2 error) {
		if err == nil {
			err = e2
		}
		c++
	}
	str := func(v string) {
		strBytes += len(v)
		keep(b.WriteString(c, v))
	}
	raw := func(v []byte) {
		strBytes += len(v)
		keep(b.WriteBytes(c, v))
	}
	nullable := func(v float64) {
		if math.IsNaN(v) {
			keep(b.WriteFloat64Nullable(c, nil))
		} else {
			keep(b.WriteFloat64Nullable(c, &v))
		}
	}
	switch o.Kind {
	case ops.OutIndicators:
		str(w.jsonl.symbol(o.Symbol))
		keep(b.WriteInt64(c, o.TsNs))
		keep(b.WriteFloat64(c, o.Price))
		keep(b.WriteFloat64(c, o.Volume))
		for i := range w.names {
			v := math.NaN()
			if i < int(o.NValues) && i < ops.MaxValues {
				v = o.Values[i]
			}
			nullable(v)
		}
	case ops.OutWindow:
		meta := w.window(o)
		str(meta.Name)
		str(w.jsonl.symbol(o.Symbol))
		keep(b.WriteInt64(c, o.StartNs))
		keep(b.WriteInt64(c, o.EndNs))
		keep(b.WriteUInt64(c, uint64(max(o.Count, 0))))
		nullable(o.Value)
		w.scratch = w.appendValueJSON(w.scratch[:0], meta, o)
		raw(w.scratch)
		str(o.Timing.String())
	default:
		str(w.jsonl.symbol(o.Symbol))
		keep(b.WriteInt64(c, o.TsNs))
		w.scratch = w.jsonl.AppendGroup(w.scratch[:0], outs)
		raw(w.scratch)
	}
	keep(b.WriteUInt64(c, o.Seq))
	keep(b.WriteUInt64(c, o.Key))
	return 9*c + strBytes, err
}

// AppendStatus implements StatusWriter: rows and INSERTs acknowledged by
// the server (rows written again by a retry count again). It may be called
// concurrently with WriteBatch.
func (w *ClickHouseWriter) AppendStatus(dst []byte) []byte {
	dst = append(dst, " rows="...)
	dst = strconv.AppendUint(dst, w.rows.Load(), 10)
	dst = append(dst, " inserts="...)
	return strconv.AppendUint(dst, w.inserts.Load(), 10)
}

// Close implements Writer.
func (w *ClickHouseWriter) Close() error {
	if w.conn != nil {
		err := w.conn.Close()
		w.conn = nil
		return err
	}
	if w.client != nil {
		w.client.CloseIdleConnections()
	}
	return nil
}
