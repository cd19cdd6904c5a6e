package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ops/news"
	"qstream/wal"
)

// textRecorder is a TextProcessor that records what each shard receives.
type textRecorder struct {
	mu    *sync.Mutex
	shard int
	got   *[]textSeen
}

type textSeen struct {
	shard   int
	kind    codec.Kind
	seq     uint64
	primary bool
	text    string
}

func (r *textRecorder) OnEvent(ev *codec.Event, _ int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	r.mu.Lock()
	*r.got = append(*r.got, textSeen{shard: r.shard, kind: ev.Kind, seq: ev.Seq, primary: ev.Flags&codec.FlagPrimary != 0})
	r.mu.Unlock()
	return dst, codec.ReasonNone
}

func (r *textRecorder) OnText(ev *codec.Event, text []byte, _ int64, dst []ops.Output) ([]ops.Output, codec.Reason) {
	r.mu.Lock()
	*r.got = append(*r.got, textSeen{shard: r.shard, kind: ev.Kind, seq: ev.Seq, primary: ev.Flags&codec.FlagPrimary != 0, text: string(text)})
	r.mu.Unlock()
	return dst, codec.ReasonNone
}

func (r *textRecorder) OnWatermark(int64, uint64, []ops.Output) []ops.Output { return nil }

// Texts of every length around the chunk size reach the shards whole: a
// broadcast event reaches every shard, exactly one copy of it primary; any
// other event only its symbol's shard. A chunk of no event and an event
// whose chunks stop short are dead letters.
func TestTextGroupsReachTheShards(t *testing.T) {
	var mu sync.Mutex
	var got []textSeen
	syms := codec.NewSymbolTable(16)
	dl := &dlCollect{}
	e, err := New(Config{Shards: 3, Symbols: syms, DeadLetters: dl,
		Processors: func(shard int) (Processor, error) { return &textRecorder{mu: &mu, shard: shard, got: &got}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"A", "B", "C", "D"} {
		if _, err := syms.InternString(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	p, _ := e.NewPublisher("feed")
	lengths := []int{1, 79, 80, 81, 159, 160, 161, 1000, 5000}
	want := map[uint64]string{}
	for i, n := range lengths {
		text := []byte(strings.Repeat(string(rune('a'+i)), n))
		kind, flags := codec.KindSignal, codec.Flags(0)
		if i%2 == 0 {
			kind, flags = codec.KindNews, codec.FlagBroadcast
		}
		ev := codec.Event{Kind: kind, Flags: flags, Symbol: codec.Symbol(1 + i%4), TsNs: int64(i)}
		if err := p.PublishText(&ev, text); err != nil {
			t.Fatal(err)
		}
		want[ev.Seq] = string(text)
		tr := codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(1 + (i+1)%4), TsNs: int64(i), Price: 1, Volume: 1}
		if err := p.Publish(&tr); err != nil {
			t.Fatal(err)
		}
	}
	// A stray chunk, then an event whose chunks never come.
	stray := codec.Event{Kind: codec.KindNews, Symbol: 1, TextLen: 10, Seq: 900}
	var chunk codec.Event
	codec.SetTextChunk(&chunk, &stray, []byte("0123456789"), 0)
	if err := p.Publish(&chunk); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(&stray); err != nil { // TextLen 10, no chunks follow
		t.Fatal(err)
	}
	tr := codec.Event{Kind: codec.KindTrade, Symbol: 1, TsNs: 99, Price: 1, Volume: 1}
	if err := p.Publish(&tr); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	copies := map[uint64]int{}
	primaries := map[uint64]int{}
	for _, g := range got {
		if g.kind == codec.KindTrade {
			continue
		}
		w, ok := want[g.seq]
		if !ok {
			t.Fatalf("unexpected %v event seq %d on shard %d", g.kind, g.seq, g.shard)
		}
		if g.text != w {
			t.Fatalf("seq %d: text of %d bytes, want %d", g.seq, len(g.text), len(w))
		}
		copies[g.seq]++
		if g.primary {
			primaries[g.seq]++
		}
	}
	for seq := range want {
		i := int(seq-1) / 2
		if i%2 == 0 {
			if copies[seq] != 3 || primaries[seq] != 1 {
				t.Errorf("broadcast seq %d: %d copies, %d primary; want 3 and 1", seq, copies[seq], primaries[seq])
			}
		} else if copies[seq] != 1 || primaries[seq] != 0 {
			t.Errorf("signal seq %d: %d copies, %d primary; want 1 and 0", seq, copies[seq], primaries[seq])
		}
	}
	dl.mu.Lock()
	n := dl.n[codec.ReasonMalformed]
	dl.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d malformed dead letters, want 2 (the stray chunk and the event cut short)", n)
	}
}

// textPipelines are pipelines with news analysis, a news_impact pattern,
// event lines and a window: what text events feed.
func textPipelines(t testing.TB, syms *codec.SymbolTable) ProcessorFactory {
	pats, err := ops.ParsePatterns([]byte(`[{"id":"ni","type":"news_impact","sentiment_threshold":0.1,"timeframe":"10ms","move":0.002}]`))
	if err != nil {
		t.Fatal(err)
	}
	wins, err := ops.ParseWindowSpecs("tumbling:1ms:vwap")
	if err != nil {
		t.Fatal(err)
	}
	an := news.Default()
	return func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{Windows: wins, Patterns: pats, News: an, Events: true,
			SymbolNames: syms, MaxSymbolID: 64, MaxSlots: 64})
	}
}

var textHeadlines = []string{
	"Apple beats earnings estimates and raises guidance",
	"Microsoft shares plunge after regulators open antitrust probe",
	"Nvidia surges on record data center demand",
	"Tesla misses delivery targets, stock tumbles",
	"Apple and Microsoft announce partnership; analysts upgrade both",
}

// textStream is trades on four symbols the news dictionary knows, with
// news articles and signals among them; item i has Seq i+1.
type textItem struct {
	ev   codec.Event
	text []byte
}

func textStream(n int, seed uint64) []textItem {
	rng := rand.New(rand.NewPCG(seed, 3))
	price := [5]float64{0, 190, 370, 480, 240}
	items := make([]textItem, n)
	for i := range items {
		ts := 1_700_000_000_000_000_000 + int64(i)*20_000
		sym := codec.Symbol(1 + rng.IntN(4))
		it := textItem{ev: codec.Event{Seq: uint64(i + 1), TsNs: ts, Symbol: sym}}
		switch r := rng.IntN(40); {
		case r == 0:
			h := textHeadlines[rng.IntN(len(textHeadlines))]
			var b []byte
			b = codec.AppendTextField(b, codec.TextID, fmt.Appendf(nil, "n%d", i))
			b = codec.AppendTextField(b, codec.TextHeadline, []byte(h))
			b = codec.AppendTextField(b, codec.TextBody, bytes.Repeat([]byte("The company said demand was strong. "), rng.IntN(30)))
			it.ev.Kind, it.ev.Flags, it.text = codec.KindNews, codec.FlagBroadcast, b
			it.ev.IDHash = codec.HashID(fmt.Appendf(nil, "n%d", i))
		case r == 1:
			var b []byte
			b = codec.AppendTextField(b, codec.TextMessageID, fmt.Appendf(nil, "m%d", i))
			b = codec.AppendTextField(b, codec.TextMetadata, []byte(`{"model":"m1"}`))
			b = codec.AppendTextField(b, codec.TextPayload, []byte(`{"signal_type":"Buy"}`))
			it.ev.Kind, it.text = codec.KindSignal, b
			it.ev.IDHash = codec.HashID(fmt.Appendf(nil, "m%d", i))
		default:
			price[sym] *= 1 + (rng.Float64()-0.45)/200
			it.ev.Kind, it.ev.Price, it.ev.Volume = codec.KindTrade, price[sym], float64(1+rng.IntN(9))
			it.ev.IDHash = codec.HashID(fmt.Appendf(nil, "t%d", i))
		}
		items[i] = it
	}
	return items
}

// outputLines turns outputs into key → line, a group's line being its
// header's fields and its text, and fails on a key given two lines.
func outputLines(t testing.TB, outs []ops.Output) map[uint64]string {
	t.Helper()
	m := map[uint64]string{}
	for i := 0; i < len(outs); i += ops.GroupLen(&outs[i]) {
		o := outs[i]
		if o.Kind == ops.OutText {
			t.Fatalf("output %d: a text chunk without its line", i)
		}
		if ops.GroupLen(&o) > len(outs)-i {
			t.Fatalf("output %d: a group cut short", i)
		}
		text := string(ops.AppendGroupText(nil, outs[i:]))
		o.IngestNs = 0
		line := fmt.Sprint(o) + text
		if prev, ok := m[o.Key]; ok && prev != line {
			t.Fatalf("key %x: two outputs\n%s\n%s", o.Key, prev, line)
		}
		m[o.Key] = line
	}
	return m
}

func openTextRig(t testing.TB, dir string, out *memOutput) *durableRig {
	t.Helper()
	w, err := OpenWAL(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 20, MaxRecordSize: 4 << 10, BufferSize: 256 << 10, GroupDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &durableRig{w: w, out: out, dl: &dlCollect{}}
	syms := codec.NewSymbolTable(64)
	r.e, err = New(Config{Shards: 2, Symbols: syms, Processors: textPipelines(t, syms), Output: out, DeadLetters: r.dl,
		Durability: w, Checkpoints: &CheckpointConfig{Dir: filepath.Join(dir, "ckpt")}, DedupHorizon: 4096,
		Ordered: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func publishText(t testing.TB, p *Publisher, items []textItem, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ev := items[i].ev
		if err := p.PublishText(&ev, items[i].text); err != nil {
			t.Fatal(err)
		}
		if ev.Seq%64 == 0 {
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// News lines, news_impact matches and event lines after crashes and
// recoveries (WAL replay of the text chunks, checkpoints of the pattern
// state, at-least-once re-sends deduplicated) equal one uninterrupted run's.
func TestTextRecoveryMatchesUninterruptedRun(t *testing.T) {
	items := textStream(6000, 7)
	ref := func() map[uint64]string {
		dir := t.TempDir()
		r := openTextRig(t, dir, &memOutput{})
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		internTextSymbols(t, r.e)
		p, _ := r.e.NewPublisher("feed")
		publishText(t, p, items, 0, len(items))
		p.Close()
		stop(t, r.e)
		r.w.Close()
		return outputLines(t, r.out.all())
	}()
	kinds := map[ops.OutKind]int{}
	for _, l := range ref {
		switch {
		case strings.Contains(l, `{"id":"n`):
			kinds[ops.OutNews]++
		case strings.Contains(l, `{"event":"signal"`):
			kinds[ops.OutEvent]++
		}
	}
	matches := 0
	for _, l := range ref {
		if strings.HasPrefix(l, fmt.Sprintf("{%d ", ops.OutPattern)) {
			matches++
		}
	}
	if kinds[ops.OutNews] < 50 || kinds[ops.OutEvent] < 50 || matches == 0 {
		t.Fatalf("reference run: %d news lines, %d event lines, %d news_impact matches: too few to test with", kinds[ops.OutNews], kinds[ops.OutEvent], matches)
	}

	dir := t.TempDir()
	out := &memOutput{}
	rng := rand.New(rand.NewPCG(11, 12))
	replayed := int64(0)
	for inc := 0; ; inc++ {
		r := openTextRig(t, dir, out)
		rep, err := r.e.Recover(context.Background())
		if err != nil {
			t.Fatalf("incarnation %d: %v", inc, err)
		}
		replayed += rep.Events
		t.Logf("incarnation %d: %+v", inc, rep)
		internTextSymbols(t, r.e)
		off, _ := r.e.SourceOffset("feed")
		p, _ := r.e.NewPublisher("feed")
		from := int(off)
		resend := min(from, rng.IntN(200))
		to := min(len(items), (from/64+1+rng.IntN(30))*64)
		last := inc >= 5 || to == len(items)
		if last {
			to = len(items)
		}
		for pos := from - resend; pos < to; {
			step := min(to, pos+1+rng.IntN(700))
			publishText(t, p, items, pos, step)
			pos = step
			if rng.IntN(2) == 0 {
				if _, err := r.e.Checkpoint(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		if last {
			p.Close()
			stop(t, r.e)
			r.w.Close()
			break
		}
		// A crash: the publisher is left open and Stop gives up at once,
		// so no final checkpoint is taken and recovery replays the WAL
		// after the last one (the output is rewound to its mark).
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.e.Stop(ctx); err == nil {
			t.Fatal("Stop with an open publisher and no time: no error")
		}
		r.w.Close()
	}
	if replayed == 0 {
		t.Fatal("no incarnation replayed WAL events: the test shows nothing about recovery")
	}
	t.Logf("%d events replayed from the WAL across recoveries", replayed)
	got := outputLines(t, out.all())
	if len(got) != len(ref) {
		t.Fatalf("%d outputs after recoveries, want %d", len(got), len(ref))
	}
	for k, w := range ref {
		if got[k] != w {
			t.Fatalf("output %x:\n got %s\nwant %s", k, got[k], w)
		}
	}
}

func internTextSymbols(t testing.TB, e *Engine) {
	for i, s := range []string{"AAPL", "MSFT", "NVDA", "TSLA"} {
		if id, err := e.Symbols().InternString(s); err != nil || id != codec.Symbol(i+1) {
			t.Fatalf("intern %s: %d %v", s, id, err)
		}
	}
}
