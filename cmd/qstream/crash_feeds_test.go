package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qstream/codec"
	"qstream/feeds"
)

// The crash harnesses of the acknowledging network feeds (issue 8, "Must
// show"): TestCrashTCPLines, TestCrashTCPFrames and TestCrashWebhook. The
// JetStream one is TestJetStreamTwoProcessesExactlyOnce; the synthetic
// feed's is TestCrashRecovery (crash_test.go), whose helpers these reuse.
//
// Each runs `qstream run` as a separate process on a fixed address with
// the WAL, checkpoints and dead letters in one data directory, indicators
// and four window types, and an at-least-once client that gives every
// message an id. The process is killed with SIGKILL at random moments
// (half of the incarnations also arm a failpoint of the synthetic harness,
// which kills the process at a named point when it is reached first), or
// now and then stopped cleanly (SIGTERM) between the kills, and restarted
// on the SAME address and data directory, again and again; after
// the last kill it runs until the client has every message acknowledged,
// and is then stopped with SIGTERM. The client resends everything it has
// no acknowledgement for after each restart: the TCP client on new
// connections, the webhook client as redeliveries with the same delivery
// ids. Then:
//
//   - no acknowledged message lost and none processed twice: each input
//     message has exactly one indicator line (an indicator line names its
//     message by symbol and event time, unique per message here);
//   - no output key twice (see outputKey);
//   - no dead letters but `duplicate` (the resent messages): no `late`
//     (event times are close together across connections and the
//     out-of-orderness covers what the client can have in flight), no
//     `oversize`;
//   - the output equals `qstream replay` of the same messages in the order
//     each connection (webhook worker) sent them - their order of
//     generation, in which every connection's messages keep their order:
//     indicator lines per symbol in order, window lines as a set. The
//     fields ignored are listed at canonicalLine.
//
// A clean stop suspends the stream (open windows stay open for the next
// start) where a replay ends its input (every window fires). So the last
// message of every connection is a sentinel far ahead in event time: it
// moves the live watermark past every window of the other messages, and
// the window lines compared are those that end at or before that
// watermark, on both sides.
//
// QSTREAM_CRASH_KILLS sets the kills of each harness (default 5 each in
// `make test`, which with the synthetic harness's 5 makes 20; `make
// crash-test` runs 50 each, 200 in all); QSTREAM_CRASH_SEED repeats a run;
// QSTREAM_CRASH_KEEP=1 keeps the data directory of a failing run.

const (
	feedCrashConns       = 4   // TCP connections (webhook workers)
	feedCrashSymsPerConn = 4   // disjoint symbols per connection
	feedCrashInFlight    = 500 // unacknowledged messages per connection, at most
	feedCrashBatch       = 25  // messages per write (webhook: per delivery)
	feedCrashStepNs      = 200_000
	feedCrashJumpEvery   = 2000           // every this many messages event time jumps
	feedCrashJumpNs      = 50_000_000     // by this much, so that sessions close
	feedCrashSentinelNs  = 10_000_000_000 // the sentinels' distance ahead
	feedCrashBaseNs      = 1_700_000_000_000_000_000
	feedCrashOOO         = "1s"
	feedCrashOONs        = 1_000_000_000
	feedCrashIndicators  = "sma:5,ema:12,rsi:14,vwap"
	feedCrashWindows     = "tumbling:1s:ohlcv,hopping:2s/500ms:vwap,session:20ms:count,sliding:500ms/100ms:max"
	feedCrashRatePerConn = 3000 // messages per second and connection the client sends at most
	// feedCrashPatterns are the harnesses' patterns: one of each kind,
	// absence included, on the schedule's scale (a message every 200µs per
	// harness, prices moving up to ±1 per trade around 100).
	feedCrashPatterns = `[
 {"id":"up","type":"price_breakout","threshold":0.01,"timeframe":"20ms"},
 {"id":"down","type":"price_breakout","direction":"down","threshold":0.01,"timeframe":"20ms"},
 {"id":"vol","type":"volume_spike","multiplier":2.5,"baseline":"20ms"},
 {"id":"golden","type":"technical_signal","signal":"sma_cross","fast":3,"slow":8},
 {"id":"rsi","type":"technical_signal","signal":"rsi_cross","period":6,"overbought":75,"oversold":25},
 {"id":"dip_back","type":"sequence","within":"10ms","steps":[{"name":"dip","where":["rsi_6 < 30"]},{"name":"back","where":["rsi_6 > 60"]}]},
 {"id":"no_bounce","type":"sequence","within":"5ms","steps":[{"name":"drop","where":["price < sma_8"]},{"name":"bounce","absent":true,"where":["price > sma_8"]}]},
 {"id":"news","type":"news_impact","sentiment_threshold":0.1,"timeframe":"20ms","move":0.003}]`
)

// feedMsg is one message of a harness's schedule.
type feedMsg struct {
	g      int // index in the schedule: its id is "m-<g>"
	conn   int // connection (webhook worker) that sends it; -1: the TCP priming connection
	symbol string
	symID  codec.Symbol // TCP frames: the id the priming interned
	ts     int64
	price  float64
	volume float64
	// sentinel: the last message of its connection, far ahead in event
	// time; sent once every other message is acknowledged, since it makes
	// whatever arrives after it on the same event loop late.
	sentinel bool
	// news: the message is a news article tagged with symbol (JSON
	// harnesses): its text travels as chunk events through the WAL.
	news bool
}

// feedNewsHeadlines are the articles' headlines, %s the symbol; the body
// repeats the headline's tone and grows with g, so texts span 1 to ~12
// chunks.
var feedNewsHeadlines = []string{
	"%s beats earnings estimates and raises guidance",
	"%s shares plunge after regulators open a probe",
	"Analysts upgrade %s on strong demand",
	"%s misses revenue forecasts, cuts outlook",
}

func (m *feedMsg) id() string { return "m-" + strconv.Itoa(m.g) }

// jsonLine is the message as a generic JSON tick, without a newline.
func (m *feedMsg) jsonLine() string {
	if m.news {
		h := fmt.Sprintf(feedNewsHeadlines[m.g%len(feedNewsHeadlines)], m.symbol)
		body := strings.Repeat("The company said results were strong and shares rose. ", m.g%17)
		return fmt.Sprintf(`{"type":"news","id":%q,"ts":%d,"source":"wire","headline":%q,"body":%q,"symbols":[%q]}`, m.id(), m.ts, h, body, m.symbol)
	}
	return fmt.Sprintf(`{"type":"trade","symbol":%q,"ts":%d,"price":%s,"volume":%s,"id":%q}`,
		m.symbol, m.ts, strconv.FormatFloat(m.price, 'f', -1, 64), strconv.FormatFloat(m.volume, 'f', -1, 64), m.id())
}

// frame is the message as a codec binary frame: Seq is its schedule
// position (from 1), IDHash the hash of its id, as a well-behaved binary
// upstream that numbers its messages sends them.
func (m *feedMsg) frame(dst []byte) []byte {
	ev := codec.Event{Kind: codec.KindTrade, TsNs: m.ts, Seq: uint64(m.g) + 1, IDHash: codec.HashID([]byte(m.id())),
		Price: m.price, Volume: m.volume, Symbol: m.symID}
	return codec.AppendFrame(dst, &ev)
}

func feedCrashSymbol(conn, j int) string { return fmt.Sprintf("C%dS%d", conn, j) }

// feedSchedule builds n messages (sentinels included): message g goes to
// connection g mod conns and the connection's symbols in turn, with event
// time rising with g (a jump every feedCrashJumpEvery, so sessions close),
// and the last message of every connection is a sentinel
// feedCrashSentinelNs ahead. With priming, the first messages are one
// trade per symbol for the priming connection (conn -1), which interns the
// symbols in the order of the ids the frames use.
//
// With news, about one body message in 97 is a news article instead of a
// trade (of the same connection and symbol).
func feedSchedule(n, conns int, priming, news bool, rng *rand.Rand) (msgs []feedMsg, watermarkNs int64) {
	nSyms := conns * feedCrashSymsPerConn
	ids := map[string]codec.Symbol{}
	for c := range conns {
		for j := range feedCrashSymsPerConn {
			ids[feedCrashSymbol(c, j)] = codec.Symbol(len(ids) + 1)
		}
	}
	tsOf := func(g int) int64 {
		return feedCrashBaseNs + int64(g)*feedCrashStepNs + int64(g/feedCrashJumpEvery)*feedCrashJumpNs
	}
	price := make([]float64, nSyms)
	for i := range price {
		price[i] = 100 + float64(i)
	}
	add := func(conn int, sym string, ts int64) {
		k := int(ids[sym]) - 1
		price[k] = max(1, price[k]+float64(rng.IntN(201)-100)/100)
		price[k] = float64(int64(price[k]*100+0.5)) / 100 // cents
		msgs = append(msgs, feedMsg{g: len(msgs), conn: conn, symbol: sym, symID: ids[sym], ts: ts,
			price: price[k], volume: float64(1 + rng.IntN(500))})
	}
	if priming {
		for c := range conns {
			for j := range feedCrashSymsPerConn {
				add(-1, feedCrashSymbol(c, j), tsOf(len(msgs)))
			}
		}
	}
	body := n - conns - len(msgs)
	for i := range body {
		c := i % conns
		sym := feedCrashSymbol(c, (i/conns)%feedCrashSymsPerConn)
		if news && i%97 == 50 {
			msgs = append(msgs, feedMsg{g: len(msgs), conn: c, symbol: sym, symID: ids[sym], ts: tsOf(len(msgs)), news: true})
			continue
		}
		add(c, sym, tsOf(len(msgs)))
	}
	sentinel := tsOf(len(msgs)) + feedCrashSentinelNs
	for c := range conns {
		add(c, feedCrashSymbol(c, 0), sentinel+int64(c))
		msgs[len(msgs)-1].sentinel = true
	}
	return msgs, sentinel - feedCrashOONs
}

// feedProc is one incarnation of `qstream run`.
type feedProc struct {
	cmd     *exec.Cmd
	stderr  string // path of its stderr
	done    chan struct{}
	err     error // Wait's, once done is closed
	started time.Time
}

// startFeedProc starts `qstream run args...` in dir with the extra
// environment, its stderr in dir/stderr.<inc>.
func startFeedProc(t *testing.T, bin, dir string, inc int, args, env []string) *feedProc {
	t.Helper()
	p := &feedProc{stderr: filepath.Join(dir, fmt.Sprintf("stderr.%d", inc)), done: make(chan struct{})}
	f, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append([]string{"run"}, args...)...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.started = time.Now()
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *feedProc) text() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

func (p *feedProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// killedBySignal reports an exit by SIGKILL (the harness's or a
// failpoint's).
func (p *feedProc) killedBySignal() bool {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	return false
}

var listeningRE = regexp.MustCompile(`qstream: (tcp|webhook): listening on (\S+)`)

// waitListening waits until the process prints that its feed listens, and
// returns false if it exited first.
func (p *feedProc) waitListening(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if listeningRE.MatchString(p.text()) {
			return true
		}
		if p.exited() {
			return listeningRE.MatchString(p.text())
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			<-p.done
			t.Fatalf("qstream run did not listen within %s:\n%s", timeout, tail(p.text(), 30))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit.
func (p *feedProc) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("qstream run did not stop within 60s of SIGTERM:\n%s", tail(p.text(), 30))
		return nil
	}
}

// feedClient is the at-least-once sender of one harness: session sends
// every message not yet acknowledged to the process that listens now and
// returns when all are acknowledged or the process is gone.
type feedClient interface {
	session(ctx context.Context) error
	done() bool
	progress() string
}

// feedHarness is what differs between the feed harnesses.
type feedHarness struct {
	name     string
	messages int
	args     func(dir, addr string) []string // run's flags
	env      []string
	client   func(addr string, msgs []feedMsg, rng *rand.Rand) feedClient
	priming  bool
	news     bool // news articles among the trades (JSON harnesses)
}

// feedCrashMessages is the number of messages of a feed harness:
// QSTREAM_CRASH_FEED_MESSAGES, by default enough that most kills land
// while the client is sending (an incarnation lives for 0.8s on average).
func feedCrashMessages(t *testing.T) int {
	return envInt(t, "QSTREAM_CRASH_FEED_MESSAGES", max(40_000, 8_000*envInt(t, "QSTREAM_CRASH_KILLS", 5)))
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// feedCrashCommon are the run flags every feed harness shares: WAL,
// checkpoints (often, so kills land between them and recovery rewinds the
// output) and dead letters in dir, operators, the output file.
func feedCrashCommon(dir string) []string {
	return []string{"--shards", "2", "--status-interval", "1h", "--patterns", filepath.Join(dir, "patterns.json"),
		"--indicators", feedCrashIndicators, "--windows", feedCrashWindows, "--out-of-orderness", feedCrashOOO,
		"--wal-dir", filepath.Join(dir, "wal"), "--checkpoint-dir", filepath.Join(dir, "ckpt"), "--dlq-dir", filepath.Join(dir, "dlq"),
		"--checkpoint-interval", "200ms", "--output", filepath.Join(dir, "out.jsonl")}
}

func runFeedCrash(t *testing.T, h feedHarness) {
	kills := envInt(t, "QSTREAM_CRASH_KILLS", 5)
	seed := uint64(envInt(t, "QSTREAM_CRASH_SEED", int(time.Now().UnixNano()&0xFFFFFFF)))
	rng := rand.New(rand.NewPCG(seed, 78))
	bin := qstreamBinary(t)
	dir := keepDir(t, h.name)
	addr := freeLoopbackAddr(t)
	msgs, finalWm := feedSchedule(h.messages, feedCrashConns, h.priming, h.news, rng)
	if err := os.WriteFile(filepath.Join(dir, "patterns.json"), []byte(feedCrashPatterns), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d kills over %d messages on %s, QSTREAM_CRASH_SEED=%d", h.name, kills, len(msgs), addr, seed)
	client := h.client(addr, msgs, rand.New(rand.NewPCG(seed, 79)))

	byPoint := map[string]int{}
	done, cleanStops := 0, 0
	for inc := 1; ; inc++ {
		if inc > 5*kills+20 {
			t.Fatalf("no completion after %d incarnations: %s", inc, client.progress())
		}
		env := append([]string{"QSTREAM_FAILPOINT="}, h.env...)
		fp := ""
		killAfter := time.Duration(0)
		// Some incarnations between the kills end with a clean stop
		// (SIGTERM) instead: a stream suspended and resumed must go on
		// as one that was never stopped.
		clean := done < kills && rng.IntN(5) == 0
		if done < kills && !clean {
			if rng.IntN(2) == 0 {
				fp = randomFailpoint(rng)
				env = append([]string{"QSTREAM_FAILPOINT=" + fp}, h.env...)
			}
			// Anywhere in a run, recovery included; the timer also ends
			// a failpoint that the run does not reach.
			killAfter = time.Duration(30+rng.IntN(1500)) * time.Millisecond
		}
		stopAfter := time.Duration(0)
		if clean {
			stopAfter = time.Duration(rng.IntN(1000)) * time.Millisecond
		}
		p := startFeedProc(t, bin, dir, inc, h.args(dir, addr), env)
		var timer *time.Timer
		if killAfter > 0 {
			timer = time.AfterFunc(killAfter, func() { p.cmd.Process.Signal(syscall.SIGKILL) })
		}
		if !p.waitListening(t, 60*time.Second) {
			if timer != nil {
				timer.Stop()
			}
			if !p.killedBySignal() {
				// Not killed: it refused to start. A restart must be back
				// on the same address at once (issue 8, item 3).
				t.Fatalf("incarnation %d (after %d kills) exited before it listened on %s: %v:\n%s",
					inc, done, addr, p.err, tail(p.text(), 20))
			}
		} else {
			ctx, cancel := context.WithCancel(context.Background())
			sessErr := make(chan error, 1)
			go func() { sessErr <- client.session(ctx) }()
			if clean {
				select {
				case <-p.done:
				case <-time.After(stopAfter):
				}
				err := p.stop(t)
				cancel()
				<-sessErr
				if err != nil {
					t.Fatalf("incarnation %d: exit after SIGTERM: %v\n%s", inc, err, tail(p.text(), 30))
				}
				cleanStops++
				t.Logf("incarnation %d: stopped cleanly after %s: %s%s", inc, time.Since(p.started).Round(time.Millisecond), client.progress(), recoveryLines(p.text()))
				continue
			}
			if killAfter > 0 {
				<-p.done
				cancel()
				<-sessErr
			} else {
				deadline := time.After(120 * time.Second)
				var err error
				select {
				case err = <-sessErr:
				case <-deadline:
					cancel()
					err = errors.New("timed out after 120s")
				case <-p.done:
					cancel()
					err = fmt.Errorf("the process exited: %v", p.err)
				}
				cancel()
				if err != nil || !client.done() {
					t.Fatalf("last incarnation %d: not everything acknowledged (%v): %s\n%s", inc, err, client.progress(), tail(p.text(), 30))
				}
				if err := p.stop(t); err != nil {
					t.Fatalf("last incarnation %d: exit after SIGTERM: %v\n%s", inc, err, tail(p.text(), 30))
				}
				t.Logf("incarnation %d: %s; stopped cleanly%s", inc, client.progress(), recoveryLines(p.text()))
				break
			}
		}
		if timer != nil {
			timer.Stop()
		}
		if !p.killedBySignal() {
			t.Fatalf("incarnation %d: exit %v, not a kill:\n%s", inc, p.err, tail(p.text(), 30))
		}
		done++
		if strings.Contains(p.text(), "failpoint: ") {
			byPoint[strings.SplitN(fp, ":", 2)[0]]++
		} else {
			byPoint["random"]++
		}
		t.Logf("incarnation %d: killed after %s (failpoint %q): %s%s", inc, time.Since(p.started).Round(time.Millisecond), fp, client.progress(), recoveryLines(p.text()))
	}
	t.Logf("%d kills by point: %v; %d clean stops between them", done, byPoint, cleanStops)
	checkFeedCrashOutput(t, bin, dir, msgs, finalWm)
}

// recoveryLines picks what recovery reported from a run's stderr.
func recoveryLines(stderr string) string {
	var b strings.Builder
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "qstream: recovered from") || strings.HasPrefix(l, "qstream: resume ") {
			b.WriteString("\n\t" + l)
		}
	}
	return b.String()
}

// checkFeedCrashOutput compares the run's output with `qstream replay`
// of the messages and checks the dead letters.
func checkFeedCrashOutput(t *testing.T, bin, dir string, msgs []feedMsg, finalWm int64) {
	t.Helper()
	var in bytes.Buffer
	for i := range msgs {
		in.WriteString(msgs[i].jsonLine())
		in.WriteByte('\n')
	}
	inPath, wantPath := filepath.Join(dir, "replay-in.jsonl"), filepath.Join(dir, "replay-out.jsonl")
	if err := os.WriteFile(inPath, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "replay", "--input", inPath, "--format", "jsonl", "--indicators", feedCrashIndicators,
		"--windows", feedCrashWindows, "--out-of-orderness", feedCrashOOO, "--patterns", filepath.Join(dir, "patterns.json"),
		"--emit", "indicators,windows,news,patterns", "--output", wantPath).CombinedOutput()
	if err != nil {
		t.Fatalf("qstream replay: %v\n%s", err, out)
	}
	want := readFeedOutput(t, wantPath)
	got := readFeedOutput(t, filepath.Join(dir, "out.jsonl"))
	if got.torn {
		t.Errorf("the output ends with a torn line after a clean stop")
	}

	// Each message: exactly one indicator line.
	type symTs struct {
		sym string
		ts  int64
	}
	byMsg := make(map[symTs]int, len(msgs))
	nNews := 0
	for i := range msgs {
		if msgs[i].news {
			nNews++
			continue
		}
		byMsg[symTs{msgs[i].symbol, msgs[i].ts}] = msgs[i].g
	}
	count := make([]int, len(msgs))
	unknown := 0
	for _, l := range got.indicators {
		if g, ok := byMsg[symTs{l.symbol, l.ts}]; ok {
			count[g]++
		} else {
			unknown++
		}
	}
	var lost, twice []int
	for g, n := range count {
		if msgs[g].news {
			continue
		}
		switch {
		case n == 0:
			lost = append(lost, g)
		case n > 1:
			twice = append(twice, g)
		}
	}
	if len(lost) > 0 || len(twice) > 0 || unknown > 0 {
		t.Errorf("not exactly once: of %d acknowledged messages %d have no indicator line (first %v), %d more than one (first %v); %d lines for no message",
			len(msgs), len(lost), lost[:min(len(lost), 10)], len(twice), twice[:min(len(twice), 10)], unknown)
	}

	// No output key twice.
	keys := map[string]int{}
	first := map[string]string{} // key -> the first line's content
	dupKeys, dupLines, otherContent := 0, 0, 0
	var dupExample string
	for _, l := range append(append(append([]feedLine(nil), got.indicators...), got.windows...), got.news...) {
		keys[l.key]++
		if keys[l.key] == 1 {
			first[l.key] = l.canon
			continue
		}
		dupLines++
		if keys[l.key] == 2 {
			dupKeys++
		}
		if first[l.key] != l.canon {
			otherContent++ // another message or window under the same key
		}
		if dupExample == "" {
			dupExample = first[l.key] + " and " + l.raw
		}
	}
	if dupLines > 0 {
		t.Errorf("%d of %d output lines repeat the key of an earlier line (%d distinct keys; %d of them with other content: another message or window under the same key); e.g. %s",
			dupLines, len(got.indicators)+len(got.windows), dupKeys, otherContent, dupExample)
	}

	// News lines: one per article, each equal to the replay's.
	if len(want.news) != nNews {
		t.Errorf("the replay has %d news lines for %d articles", len(want.news), nNews)
	}
	wantNews := map[string]string{}
	for _, l := range want.news {
		wantNews[l.key] = l.canon
	}
	newsOK := 0
	for _, l := range got.news {
		if w, ok := wantNews[l.key]; !ok || w != l.canon {
			t.Errorf("news line not as the replay's:\n got %s\nwant %s", l.canon, w)
		} else {
			newsOK++
		}
	}
	if len(got.news) != len(want.news) {
		t.Errorf("%d news lines, the replay has %d", len(got.news), len(want.news))
	}
	if nNews > 0 {
		t.Logf("%d news lines equal to the replay's", newsOK)
	}

	// Pattern matches: those fired by a trade per symbol in order, and the
	// absences whose deadline the live run's watermark passed as a set,
	// as the replay's.
	var wantTrade, gotTrade, wantAbs, gotAbs []feedLine
	for _, l := range want.patterns {
		if l.end == 0 {
			wantTrade = append(wantTrade, l)
		} else {
			wantAbs = append(wantAbs, l)
		}
	}
	for _, l := range got.patterns {
		if l.end == 0 {
			gotTrade = append(gotTrade, l)
		} else {
			gotAbs = append(gotAbs, l)
		}
	}
	if wb, gb := bySymbol(wantTrade), bySymbol(gotTrade); !reflect.DeepEqual(wb, gb) {
		for sym, w := range wb {
			if g := gb[sym]; !reflect.DeepEqual(g, w) {
				t.Errorf("symbol %s: %d pattern matches, the replay %d (first differences: %v)", sym, len(g), len(w), firstDiff(strings.Join(g, "\n"), strings.Join(w, "\n")))
				break
			}
		}
	}
	wa, ga := windowSet(wantAbs, finalWm), windowSet(gotAbs, finalWm)
	if !reflect.DeepEqual(wa, ga) {
		t.Errorf("absences: %d, the replay %d", len(ga), len(wa))
	}
	byPattern := map[string]int{}
	for _, l := range want.patterns {
		var m map[string]any
		json.Unmarshal([]byte(l.raw), &m)
		byPattern[m["pattern"].(string)]++
	}
	t.Logf("pattern matches equal to the replay's: %d on trades, %d absences; the replay's by pattern %v", len(gotTrade), len(ga), byPattern)
	for _, id := range []string{"up", "down", "vol", "golden", "rsi", "dip_back", "no_bounce"} {
		if byPattern[id] == 0 {
			t.Errorf("pattern %s never matched in the replay: the harness tests nothing of it", id)
		}
	}

	// Indicator lines per symbol, in order, as the replay's.
	wantBySym, gotBySym := bySymbol(want.indicators), bySymbol(got.indicators)
	diffSyms := 0
	for sym, w := range wantBySym {
		g := gotBySym[sym]
		i := 0
		for i < min(len(g), len(w)) && g[i] == w[i] {
			i++
		}
		if i < len(g) || i < len(w) {
			diffSyms++
			if diffSyms <= 3 {
				gl, wl := "(none)", "(none)"
				if i < len(g) {
					gl = g[i]
				}
				if i < len(w) {
					wl = w[i]
				}
				t.Errorf("symbol %s: indicator lines differ from the replay's at line %d of %d (want %d):\n got %s\nwant %s", sym, i, len(g), len(w), gl, wl)
			}
		}
	}
	for sym := range gotBySym {
		if _, ok := wantBySym[sym]; !ok {
			t.Errorf("indicator lines of symbol %q, which the replay has not", sym)
		}
	}
	if diffSyms > 0 {
		t.Errorf("%d of %d symbols' indicator lines differ from the replay's", diffSyms, len(wantBySym))
	}

	// Window lines that end at or before the live run's final watermark,
	// as a set (with multiplicity), as the replay's.
	wantWin, gotWin := windowSet(want.windows, finalWm), windowSet(got.windows, finalWm)
	missing, extra, partial := 0, 0, 0
	var exMissing, exExtra string
	wantByID := map[string]string{}
	for c, n := range wantWin {
		wantByID[windowID(c)] = c
		if d := n - gotWin[c]; d > 0 {
			missing += d
			if exMissing == "" {
				exMissing = c
			}
		}
	}
	for c, n := range gotWin {
		if d := n - wantWin[c]; d > 0 {
			extra += d
			if exExtra == "" {
				exExtra = c
			}
			if w, ok := wantByID[windowID(c)]; ok && wantWin[w] > gotWin[w] {
				partial++ // the same window with other contents
			}
		}
	}
	nWant := 0
	for _, n := range wantWin {
		nWant += n
	}
	byType := map[string]int{}
	for c, n := range wantWin {
		if d := n - gotWin[c]; d > 0 {
			byType[strings.SplitN(windowID(c), ":", 2)[0]] += d
		}
	}
	if missing > 0 || extra > 0 {
		t.Errorf("window results: %d of the replay's %d missing (by type %v), %d not in the replay, %d of those a window of the replay with other contents (partial); e.g. missing %s; extra %s",
			missing, nWant, byType, extra, partial, exMissing, exExtra)
	} else {
		t.Logf("%d window results and %d indicator lines equal to the replay's", nWant, len(got.indicators))
	}
	if nWant == 0 {
		t.Errorf("the replay has no window result: the harness tests nothing")
	}

	// Dead letters: only the duplicates of resent messages.
	reasons := dlqReasons(t, bin, filepath.Join(dir, "dlq"))
	for r, n := range reasons {
		if r != "duplicate" {
			t.Errorf("%d dead letters with reason %q (only duplicates of resent messages are expected): %v", n, r, reasons)
		}
	}
	t.Logf("dead letters by reason: %v", reasons)
}

// feedLine is one output line.
type feedLine struct {
	symbol string
	ts     int64  // indicator lines: the trade's event time
	canon  string // canonicalLine
	key    string // outputKey
	raw    string
	end    int64 // window lines
}

type feedOutput struct {
	indicators, windows, news, patterns []feedLine
	torn                                bool
}

// readFeedOutput reads a JSON Lines output file of run or replay.
func readFeedOutput(t *testing.T, path string) feedOutput {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out feedOutput
	if len(b) > 0 && b[len(b)-1] != '\n' {
		out.torn = true
		b = b[:bytes.LastIndexByte(b, '\n')+1]
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		d := json.NewDecoder(strings.NewReader(raw))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s line %d: %v: %s", path, n, err, raw)
		}
		l := feedLine{raw: raw, canon: canonicalLine(m), key: outputKey(m)}
		l.symbol, _ = m["symbol"].(string)
		if _, ok := m["entities"]; ok {
			out.news = append(out.news, l)
			continue
		}
		if _, ok := m["pattern"]; ok {
			// An absence fires when the watermark passes its deadline:
			// end says when (as for a window); other matches fire on a
			// trade, whenever it is processed.
			if d, ok := m["details"].(map[string]any)["deadline"].(json.Number); ok {
				l.end, _ = d.Int64()
			}
			out.patterns = append(out.patterns, l)
			continue
		}
		if _, ok := m["window"]; ok {
			l.end, _ = m["end"].(json.Number).Int64()
			out.windows = append(out.windows, l)
			continue
		}
		if ts, ok := m["ts"].(json.Number); ok {
			l.ts, _ = ts.Int64()
		}
		out.indicators = append(out.indicators, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// canonicalLine is a line's content as compared with the replay: its JSON
// object with sorted keys and numbers as written, without the fields whose
// value legitimately differs between a live feed and a replay of its
// messages:
//
//   - "seq": the source offset of the trade, which a live feed numbers per
//     Publisher (each TCP event loop, the webhook), continuing across
//     restarts, while a replay numbers the lines of its input file;
//   - "key": the idempotency key, if a line carries one, which may encode
//     the source (a feed and its connection, or the replay's file).
//
// Both still have their own assertions: outputKey (no key twice) uses
// them.
func canonicalLine(m map[string]any) string {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if k != "seq" && k != "key" {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// outputKey is the output's idempotency key: its "key" field when the line
// has one; else what the engine's key is made of. An indicator output of a
// message with an id is keyed by (feed, message id) (engine/publisher.go),
// and every message here has an id and a (symbol, event time) of its own,
// so (symbol, ts) names its key; "seq" does not: it is the offset of the
// event loop's Publisher, and two loops number their events independently.
// A window line is keyed by (window, symbol, start, end; the firing ordinal
// is 0 for the on-time firings here, so a second line for one window is a
// key twice).
func outputKey(m map[string]any) string {
	if k, ok := m["key"]; ok {
		return fmt.Sprint("key ", k)
	}
	if w, ok := m["window"]; ok {
		return fmt.Sprint("window ", w, " ", m["symbol"], " ", m["start"], " ", m["end"])
	}
	if _, ok := m["entities"]; ok {
		return fmt.Sprint("news ", m["id"])
	}
	return fmt.Sprint("indicators ", m["symbol"], " ", m["ts"])
}

func bySymbol(lines []feedLine) map[string][]string {
	out := map[string][]string{}
	for _, l := range lines {
		out[l.symbol] = append(out[l.symbol], l.canon)
	}
	return out
}

// windowSet counts the canonical window lines that end at or before wm.
func windowSet(lines []feedLine, wm int64) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		if l.end <= wm {
			out[l.canon]++
		}
	}
	return out
}

// windowID names the window of a canonical window line: spec, symbol and
// bounds.
func windowID(canon string) string {
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(canon))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return canon
	}
	return fmt.Sprint(m["window"], " ", m["symbol"], " ", m["start"], " ", m["end"])
}

var dlqSummaryRE = regexp.MustCompile(`qstream dlq list: (\d+) dead letters(.*)`)

// dlqReasons counts the dead letters of a DLQ directory by reason, as
// `qstream dlq list` reports them.
func dlqReasons(t *testing.T, bin, dir string) map[string]int {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "dlq", "list", "--dir", dir)
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("qstream dlq list: %v\n%s", err, stderr.String())
	}
	m := dlqSummaryRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("qstream dlq list: no summary:\n%s", stderr.String())
	}
	out := map[string]int{}
	for _, part := range strings.Split(m[2], ",") {
		f := strings.Fields(part)
		if len(f) == 2 {
			n, _ := strconv.Atoi(f[1])
			out[f[0]] = n
		}
	}
	return out
}

// ---- TCP ----

// tcpClient is the at-least-once TCP sender: feedCrashConns connections
// (and, for frames, a priming lines connection before them), each sending
// its messages in schedule order, at most feedCrashInFlight of them
// unacknowledged. One goroutine writes to all of them in schedule order,
// so connections stay in step and event times arriving at the server stay
// close together; one goroutine per connection reads its cumulative acks.
// Every session uses new connections and starts each after its last
// acknowledged message.
type tcpClient struct {
	addr   string
	frames bool
	msgs   []feedMsg
	byConn [][]int // schedule indexes of each connection's messages, in order; [conns] is the priming connection
	rng    *rand.Rand

	mu         sync.Mutex
	cond       *sync.Cond
	acked      []int // per connection: how many of its messages are acknowledged
	sent       []int // per connection in this session: how many are sent
	reconnects int
}

func newTCPClient(addr string, msgs []feedMsg, frames bool, rng *rand.Rand) feedClient {
	c := &tcpClient{addr: addr, frames: frames, msgs: msgs, rng: rng, byConn: make([][]int, feedCrashConns+1),
		acked: make([]int, feedCrashConns+1), sent: make([]int, feedCrashConns+1)}
	c.cond = sync.NewCond(&c.mu)
	for i := range msgs {
		k := msgs[i].conn
		if k < 0 {
			k = feedCrashConns
		}
		c.byConn[k] = append(c.byConn[k], i)
	}
	return c
}

func (c *tcpClient) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.byConn {
		if c.acked[k] < len(c.byConn[k]) {
			return false
		}
	}
	return true
}

func (c *tcpClient) progress() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, a := range c.acked {
		n += a
	}
	return fmt.Sprintf("%d of %d acknowledged (per connection %v), %d reconnects", n, len(c.msgs), c.acked, c.reconnects)
}

// session reconnects after a failed connection (the process is gone, or
// closed one) until everything is acknowledged or ctx ends.
func (c *tcpClient) session(ctx context.Context) error {
	for {
		err := c.connect(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		c.mu.Lock()
		c.reconnects++
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// connect sends on one set of new connections.
func (c *tcpClient) connect(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The priming connection first: frames carry symbol ids, which the
	// engine has only once their names were interned by a JSON line.
	if k := feedCrashConns; len(c.byConn[k]) > 0 {
		if err := c.runConns(ctx, []int{k}, false); err != nil {
			return err
		}
	}
	// Dialled in a random order: which event loop a connection lands on
	// changes from session to session, as with any client that reconnects.
	conns := c.rng.Perm(feedCrashConns)
	return c.runConns(ctx, conns, c.frames)
}

// runConns dials the connections ks and sends their unacknowledged
// messages until all are acknowledged, ctx ends or a connection fails.
func (c *tcpClient) runConns(ctx context.Context, ks []int, frames bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	base := make(map[int]int, len(ks))
	for _, k := range ks {
		base[k] = c.acked[k]
		c.sent[k] = c.acked[k]
	}
	c.mu.Unlock()
	if c.allAcked(ks) {
		return nil
	}
	conns := map[int]net.Conn{}
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var d net.Dialer
	for _, k := range ks {
		nc, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		conns[k] = nc
	}
	errc := make(chan error, len(ks)+1)
	var wg sync.WaitGroup
	for _, k := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- c.readAcks(conns[k], k, base[k], frames)
			cancel()
		}()
	}
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
		for _, nc := range conns {
			nc.SetDeadline(time.Now()) // unblocks reads and writes
		}
	}()
	werr := c.write(ctx, conns, ks, frames)
	if werr == nil {
		// Everything sent: wait for the acknowledgements.
		c.mu.Lock()
		for !c.allAckedLocked(ks) && ctx.Err() == nil {
			c.cond.Wait()
		}
		c.mu.Unlock()
	}
	cancel()
	wg.Wait()
	if c.allAcked(ks) {
		return nil
	}
	if werr != nil {
		return werr
	}
	return <-errc
}

func (c *tcpClient) allAcked(ks []int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allAckedLocked(ks)
}

// bodyAckedLocked reports whether every message of connections ks but
// their sentinels is acknowledged.
func (c *tcpClient) bodyAckedLocked(ks []int) bool {
	for _, k := range ks {
		n := len(c.byConn[k])
		if n > 0 && c.msgs[c.byConn[k][n-1]].sentinel {
			n--
		}
		if c.acked[k] < n {
			return false
		}
	}
	return true
}

func (c *tcpClient) allAckedLocked(ks []int) bool {
	for _, k := range ks {
		if c.acked[k] < len(c.byConn[k]) {
			return false
		}
	}
	return true
}

// write sends the unacknowledged messages of connections ks in schedule
// order, in batches, paced and bounded by the in-flight limit.
func (c *tcpClient) write(ctx context.Context, conns map[int]net.Conn, ks []int, frames bool) error {
	bufs := map[int][]byte{}
	pos := map[int]int{} // next index into byConn[k]
	c.mu.Lock()
	for _, k := range ks {
		pos[k] = c.acked[k]
	}
	c.mu.Unlock()
	flush := func(k int) error {
		if len(bufs[k]) == 0 {
			return nil
		}
		c.mu.Lock()
		c.sent[k] = pos[k] // before the write: its ack may come before Write returns
		c.mu.Unlock()
		_, err := conns[k].Write(bufs[k])
		bufs[k] = bufs[k][:0]
		return err
	}
	start := time.Now()
	sentTotal := 0
	for {
		// The connection whose next message comes first in the schedule.
		next := -1
		for _, k := range ks {
			if pos[k] < len(c.byConn[k]) && (next < 0 || c.byConn[k][pos[k]] < c.byConn[next][pos[next]]) {
				next = k
			}
		}
		if next < 0 {
			break
		}
		k := next
		m := &c.msgs[c.byConn[k][pos[k]]]
		if m.sentinel {
			// Everything else of these connections first: flush and wait.
			for _, j := range ks {
				if err := flush(j); err != nil {
					return err
				}
			}
		}
		c.mu.Lock()
		for (pos[k]-c.acked[k] >= feedCrashInFlight || m.sentinel && !c.bodyAckedLocked(ks)) && ctx.Err() == nil {
			c.cond.Wait()
		}
		c.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		if frames {
			bufs[k] = m.frame(bufs[k])
		} else {
			bufs[k] = append(append(bufs[k], m.jsonLine()...), '\n')
		}
		pos[k]++
		sentTotal++
		if pos[k]%feedCrashBatch == 0 || pos[k] == len(c.byConn[k]) || m.sentinel {
			if err := flush(k); err != nil {
				return err
			}
			// Pace: at most feedCrashRatePerConn per connection.
			if ahead := time.Duration(sentTotal)*time.Second/time.Duration(feedCrashRatePerConn*len(ks)) - time.Since(start); ahead > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(ahead):
				}
			}
		}
	}
	for _, k := range ks {
		if err := flush(k); err != nil {
			return err
		}
	}
	return nil
}

// readAcks reads connection k's cumulative acks: an ack of n means the
// first n messages sent on this connection, base+n of the connection's.
func (c *tcpClient) readAcks(nc net.Conn, k, base int, frames bool) error {
	r := bufio.NewReader(nc)
	for {
		var n uint64
		if frames {
			var b [feeds.TCPAckSize]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return err
			}
			if b[0] != feeds.TCPAckMagic || b[2] != feeds.TCPAckSize {
				return fmt.Errorf("connection %d: not an ack frame: % x", k, b)
			}
			n = binary.LittleEndian.Uint64(b[4:])
		} else {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return err
			}
			var a struct{ Ack *uint64 }
			if err := json.Unmarshal(line, &a); err != nil || a.Ack == nil {
				return fmt.Errorf("connection %d: not an ack line: %q", k, line)
			}
			n = *a.Ack
		}
		c.mu.Lock()
		if base+int(n) > c.sent[k] {
			c.mu.Unlock()
			return fmt.Errorf("connection %d: ack of %d, but only %d sent", k, base+int(n), c.sent[k])
		}
		if base+int(n) > c.acked[k] {
			c.acked[k] = base + int(n)
			c.cond.Broadcast()
		}
		c.mu.Unlock()
	}
}

func tcpHarness(t *testing.T, frames bool) feedHarness {
	name, format := "tcp-lines", "lines"
	if frames {
		// Auto rather than frames: the priming connection's JSON lines
		// intern the symbols the frames name by id (a frames-only listener
		// has no way to learn a symbol's name).
		name, format = "tcp-frames", "auto"
	}
	return feedHarness{
		name:     name,
		messages: feedCrashMessages(t),
		priming:  frames,
		news:     !frames,
		args: func(dir, addr string) []string {
			return append([]string{"--feed", "tcp", "--tcp-addr", addr, "--tcp-format", format, "--tcp-ack", "--tcp-loops", "2"},
				feedCrashCommon(dir)...)
		},
		client: func(addr string, msgs []feedMsg, rng *rand.Rand) feedClient {
			return newTCPClient(addr, msgs, frames, rng)
		},
	}
}

// TestCrashTCPLines: JSON lines over several connections on two gnet
// loops, acknowledged (--tcp-ack), resent on new connections after each
// restart.
func TestCrashTCPLines(t *testing.T) { runFeedCrash(t, tcpHarness(t, false)) }

// TestCrashTCPFrames: the same with codec binary frames that carry the
// sender's sequence number and message id hash.
func TestCrashTCPFrames(t *testing.T) { runFeedCrash(t, tcpHarness(t, true)) }

// ---- webhook ----

const feedCrashWebhookSecret = "crash-harness-secret"

// webhookClient is the at-least-once webhook sender: feedCrashConns
// workers with disjoint symbols, each delivering its messages in order in
// deliveries of feedCrashBatch events, with a delivery id of their own.
// They go in rounds (every worker's next delivery, concurrently, then the
// next round once all were accepted), so event times stay close together.
// A delivery without a 202 (an error, a refused connection while the
// process restarts, a 503) is delivered again with the same id and body
// until it is accepted; a 409 replayed_delivery says it was accepted
// before.
type webhookClient struct {
	url        string
	deliveries [][][]int // per worker, per delivery: schedule indexes
	msgs       []feedMsg
	http       *http.Client

	mu        sync.Mutex
	round     int // deliveries [0, round) of every worker are accepted
	accepted  int
	redeliver int
}

func newWebhookClient(addr string, msgs []feedMsg, _ *rand.Rand) feedClient {
	c := &webhookClient{url: "http://" + addr + feeds.DefaultWebhookPath, msgs: msgs,
		deliveries: make([][][]int, feedCrashConns),
		http:       &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: feedCrashConns}}}
	sentinels := make([]int, feedCrashConns)
	for w := range feedCrashConns {
		var cur []int
		for i := range msgs {
			switch {
			case msgs[i].conn != w:
				continue
			case msgs[i].sentinel:
				sentinels[w] = i
				continue
			}
			cur = append(cur, i)
			if len(cur) == feedCrashBatch {
				c.deliveries[w] = append(c.deliveries[w], cur)
				cur = nil
			}
		}
		if len(cur) > 0 {
			c.deliveries[w] = append(c.deliveries[w], cur)
		}
	}
	// The sentinels in a round of their own, after every other delivery
	// was accepted: whatever arrives after one is late.
	last := c.rounds()
	for w := range feedCrashConns {
		for len(c.deliveries[w]) < last {
			c.deliveries[w] = append(c.deliveries[w], nil)
		}
		c.deliveries[w] = append(c.deliveries[w], []int{sentinels[w]})
	}
	return c
}

func (c *webhookClient) rounds() int {
	n := 0
	for _, d := range c.deliveries {
		n = max(n, len(d))
	}
	return n
}

func (c *webhookClient) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.round >= c.rounds()
}

func (c *webhookClient) progress() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d of %d rounds of deliveries accepted (%d requests accepted, %d redeliveries)", c.round, c.rounds(), c.accepted, c.redeliver)
}

func (c *webhookClient) session(ctx context.Context) error {
	c.http.CloseIdleConnections() // a restarted process: new connections
	for {
		c.mu.Lock()
		r := c.round
		c.mu.Unlock()
		if r >= c.rounds() {
			return nil
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, feedCrashConns)
		for w := range feedCrashConns {
			if len(c.deliveries[w][r]) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = c.deliver(ctx, w, r)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.round = r + 1
		c.mu.Unlock()
		// Pace as the TCP client does.
		if ahead := time.Duration(feedCrashBatch)*time.Second/feedCrashRatePerConn - time.Since(start); ahead > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(ahead):
			}
		}
	}
}

// deliver posts worker w's delivery r until it is accepted or ctx ends.
func (c *webhookClient) deliver(ctx context.Context, w, r int) error {
	var body bytes.Buffer
	body.WriteByte('[')
	for i, g := range c.deliveries[w][r] {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(c.msgs[g].jsonLine())
	}
	body.WriteByte(']')
	delivery := fmt.Sprintf("d-%d-%d", w, r)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.mu.Lock()
			c.redeliver++
			c.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(feedCrashWebhookSecret))
		mac.Write([]byte(ts + "."))
		mac.Write(body.Bytes())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body.Bytes()))
		if err != nil {
			return err
		}
		req.Header.Set(feeds.WebhookTimestampHeader, ts)
		req.Header.Set(feeds.WebhookDeliveryHeader, delivery)
		req.Header.Set(feeds.WebhookSignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue // the process is gone or restarting: deliver again
		}
		rb, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted:
			c.mu.Lock()
			c.accepted++
			c.mu.Unlock()
			return nil
		case resp.StatusCode == http.StatusConflict && bytes.Contains(rb, []byte("replayed_delivery")):
			return nil // accepted before, its 202 lost
		case resp.StatusCode == http.StatusConflict, resp.StatusCode == http.StatusServiceUnavailable:
			continue
		default:
			return fmt.Errorf("delivery %s: %d %s", delivery, resp.StatusCode, rb)
		}
	}
}

// TestCrashWebhook: signed deliveries of JSON trade arrays, redelivered
// with the same delivery ids (and the same events, with their ids) until
// accepted with 202.
func TestCrashWebhook(t *testing.T) {
	runFeedCrash(t, feedHarness{
		name:     "webhook",
		messages: feedCrashMessages(t),
		news:     true,
		env:      []string{webhookSecretEnv + "=" + feedCrashWebhookSecret},
		args: func(dir, addr string) []string {
			return append([]string{"--feed", "webhook", "--webhook-addr", addr}, feedCrashCommon(dir)...)
		},
		client: newWebhookClient,
	})
}
