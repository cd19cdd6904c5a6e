package feeds

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"qstream/codec"
	"qstream/ops"
)

// checkSeqsAndKeys checks that the indicator outputs have the Seqs 1..n,
// each once, and n distinct keys.
func checkSeqsAndKeys(t *testing.T, outs []ops.Output, n int) {
	t.Helper()
	seqs := map[uint64]bool{}
	keys := map[uint64]bool{}
	for _, o := range outs {
		seqs[o.Seq] = true
		keys[o.Key] = true
	}
	if len(outs) != n || len(seqs) != n || len(keys) != n {
		t.Fatalf("%d indicator outputs with %d distinct seqs and %d distinct keys, want %d of each", len(outs), len(seqs), len(keys), n)
	}
	for s := uint64(1); s <= uint64(n); s++ {
		if !seqs[s] {
			t.Fatalf("no output with seq %d: seqs are not the source offsets 1..%d", s, n)
		}
	}
}

// postWebhook sends one signed delivery and fails unless it is accepted.
func postWebhook(t *testing.T, wh *Webhook, delivery, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s%s", wh.Addr(), wh.cfg.Path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	SetWebhookHeaders(req.Header, whSecret, time.Now(), delivery, []byte(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("delivery %s: status %d", delivery, res.StatusCode)
	}
}

// Item 7 of issue 8: webhook events carried Seq 0, so every indicator output
// of a symbol had the same key. Now each has its source offset as Seq
// (continuing after a restart) and its own key. The events carry no ids, so
// the keys are by offset.
func TestWebhookSeqsAndKeys(t *testing.T) {
	dir, out := t.TempDir(), &engSink{}
	k := 0
	life := func(clean bool) {
		r := openEngRig(t, dir, out)
		wh, err := NewWebhook(WebhookConfig{Addr: "127.0.0.1:0", Secret: whSecret, Logger: tcpQuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		stop := runFeed(t, wh, r.pubs, wh.Ready())
		for range 5 {
			var b strings.Builder
			b.WriteByte('[')
			for i := range 10 {
				k++
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"type":"trade","symbol":"AAPL","ts":%d,"price":%d.5,"volume":1}`, engTsBase+int64(k)*int64(time.Millisecond), 100+k%7)
			}
			b.WriteByte(']')
			postWebhook(t, wh, fmt.Sprintf("d-%d", k), b.String())
		}
		stop()
		r.stop(t, clean)
	}
	life(false) // a crash
	life(true)
	checkSeqsAndKeys(t, out.of(ops.OutIndicators, 0), 100)
}

// krTrades is a Kraken v1 trade message with n trades of XBT/USD from
// trade number k0 on; Kraken trades carry no sequence number.
func krTrades(k0, n int) string {
	var b strings.Builder
	b.WriteString(`[0,[`)
	for i := range n {
		k := k0 + i
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `["%d.10000","0.5","1700000000.%06d","s","l",""]`, 40000+k%13, k)
	}
	b.WriteString(`],"trade","XBT/USD"]`)
	return b.String()
}

// Item 7: WebSocket events from an exchange without sequence numbers
// (Kraken) carried Seq 0 too. Each output now has its own Seq and key.
func TestWSSeqsAndKeys(t *testing.T) {
	srv := newWSTestServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		for m := range 5 {
			if err := c.Write(ctx, websocket.MessageText, []byte(krTrades(1+10*m, 10))); err != nil {
				t.Errorf("server write: %v", err)
				return
			}
		}
		_, _, _ = c.Read(ctx) // hold the connection until the client leaves
	})
	out := &engSink{}
	r := openEngRig(t, t.TempDir(), out)
	cfg := wsTestConfig(srv.url())
	cfg.NewAdapter = func(syms *codec.SymbolTable) (WSAdapter, error) {
		return codec.NewKraken(codec.KrakenOptions{Symbols: codec.NewSymbolCache(syms)}), nil
	}
	f, err := NewWSFeed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWSFeed(t, f, r.pubs)
	waitEng(t, 10*time.Second, "50 indicator outputs", func() bool { return len(out.of(ops.OutIndicators, 0)) == 50 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	r.stop(t, true)
	checkSeqsAndKeys(t, out.of(ops.OutIndicators, 0), 50)
}
