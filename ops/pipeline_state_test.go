package ops

import (
	"qstream/internal/testvectors"

	"bufio"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"qstream/codec"
)

// pipeTestdata is the shared third-party data beside the repository.
var pipeTestdata = testvectors.Dir()

// realTradeEvents turns the real Binance trades into events spread over a few
// symbols, with a quote after every seventh trade.
func realTradeEvents(t testing.TB) []codec.Event {
	t.Helper()
	path := filepath.Join(pipeTestdata, "trades/binance_futures_btcusdt_trades.csv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("shared test data %s is missing (expected beside the repository, see ../shared/testdata/SOURCES.md): %v", path, err)
	}
	defer f.Close()
	var evs []codec.Event
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	seq := uint64(0)
	for sc.Scan() {
		c := strings.Split(sc.Text(), ",")
		if len(c) < 8 {
			t.Fatalf("bad line %q", sc.Text())
		}
		us, _ := strconv.ParseInt(c[2], 10, 64)
		price, _ := strconv.ParseFloat(c[6], 64)
		vol, _ := strconv.ParseFloat(c[7], 64)
		seq++
		sym := codec.Symbol(1 + seq%5)
		evs = append(evs, codec.Event{Kind: codec.KindTrade, Symbol: sym, Seq: seq, TsNs: us * 1000, Price: price, Volume: vol})
		if seq%7 == 0 {
			seq++
			evs = append(evs, codec.Event{Kind: codec.KindQuote, Symbol: sym, Seq: seq, TsNs: us * 1000,
				Bid: price - 0.5, Ask: price + 0.5, Flags: codec.FlagHasBid | codec.FlagHasAsk})
		}
	}
	if len(evs) < 9999 {
		t.Fatalf("read %d events from %s", len(evs), path)
	}
	return evs
}

func statePipeline(t testing.TB) *Pipeline {
	t.Helper()
	specs, err := ParseIndicators(DefaultIndicators + ",vwap:14")
	if err != nil {
		t.Fatal(err)
	}
	wins, err := ParseWindowSpecs("tumbling:1m:ohlcv,session:5s:count,sliding:30s/5s:avg,count:7:vwap")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: wins, MaxSymbolID: 64, MaxSlots: 8})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runEvents runs evs through p with a watermark every 64 events (so that
// windows fire).
func runEvents(p *Pipeline, evs []codec.Event) []Output {
	var out []Output
	for i := range evs {
		out, _ = p.OnEvent(&evs[i], 0, out)
		if evs[i].Seq%64 == 0 {
			out = p.OnWatermark(evs[i].TsNs, evs[i].Seq, out)
		}
	}
	return out
}

func sameOutputs(t *testing.T, got, want []Output) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d outputs, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		for k := range g.Values {
			if math.Float64bits(g.Values[k]) != math.Float64bits(w.Values[k]) {
				t.Fatalf("output %d value %d: %v, want %v", i, k, g.Values[k], w.Values[k])
			}
		}
		g.Values, w.Values = [MaxValues]float64{}, [MaxValues]float64{}
		if g != w {
			t.Fatalf("output %d: %+v, want %+v", i, g, w)
		}
	}
}

// A pipeline restored from a snapshot taken at any point continues exactly
// as the original: the oracle is the uninterrupted pipeline.
func TestPipelineStateRestoreContinuesIdentically(t *testing.T) {
	evs := realTradeEvents(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, cut := range []int{0, 1, 2, 13, len(evs) / 2, len(evs) - 1, rng.IntN(len(evs)), rng.IntN(len(evs))} {
		orig := statePipeline(t)
		runEvents(orig, evs[:cut])
		snap := orig.AppendState(nil)
		if again := orig.AppendState(nil); string(again) != string(snap) {
			t.Fatalf("cut %d: two snapshots of the same state differ", cut)
		}
		restored := statePipeline(t)
		// Give the restored pipeline different state first: LoadState must
		// replace all of it.
		runEvents(restored, evs[len(evs)-50:])
		if err := restored.LoadState(snap); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if string(restored.AppendState(nil)) != string(snap) {
			t.Fatalf("cut %d: snapshot of the restored pipeline differs", cut)
		}
		if restored.Symbols() != orig.Symbols() {
			t.Fatalf("cut %d: %d symbols, want %d", cut, restored.Symbols(), orig.Symbols())
		}
		sameOutputs(t, runEvents(restored, evs[cut:]), runEvents(orig, evs[cut:]))
		if restored.quotes[0] != orig.quotes[0] {
			t.Fatalf("cut %d: quote state %+v, want %+v", cut, restored.quotes[0], orig.quotes[0])
		}
	}
}

func TestPipelineStateRejects(t *testing.T) {
	evs := realTradeEvents(t)
	p := statePipeline(t)
	runEvents(p, evs[:500])
	snap := p.AppendState(nil)
	before := p.AppendState(nil)

	other := func(cfg PipelineConfig) *Pipeline {
		q, err := NewPipeline(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	specs, _ := ParseIndicators(DefaultIndicators + ",vwap:14")
	fewer, _ := ParseIndicators("sma:5")
	for name, tc := range map[string]struct {
		p   *Pipeline
		src []byte
	}{
		"empty":           {p, nil},
		"truncated":       {p, snap[:len(snap)-9]},
		"flipped bit":     {p, flip(snap, 100)},
		"bad magic":       {p, flip(snap, 0)},
		"more slots":      {other(PipelineConfig{Indicators: specs, MaxSymbolID: 64, MaxSlots: 9}), snap},
		"other symbols":   {other(PipelineConfig{Indicators: specs, MaxSymbolID: 65, MaxSlots: 8}), snap},
		"other specs":     {other(PipelineConfig{Indicators: fewer, MaxSymbolID: 64, MaxSlots: 8}), snap},
		"no indicators":   {other(PipelineConfig{MaxSymbolID: 64, MaxSlots: 8}), snap},
		"trailing bytes":  {p, withCRC(append(append([]byte(nil), snap[:len(snap)-4]...), 0, 0, 0, 0, 0, 0, 0, 0))},
		"repeated symbol": {p, withCRC(setU32(snap, pipeStateHeader+4, 2))},
	} {
		err := tc.p.LoadState(tc.src)
		if !errors.Is(err, ErrPipelineState) {
			t.Errorf("%s: err %v, want ErrPipelineState", name, err)
		}
	}
	if string(p.AppendState(nil)) != string(before) {
		t.Fatal("a rejected LoadState changed the pipeline")
	}
}

// A snapshot whose last operator (a window) refuses to load leaves every
// operator as it was, the indicators loaded before it included.
func TestPipelineStateFailedLoadChangesNothing(t *testing.T) {
	evs := realTradeEvents(t)
	src := statePipeline(t)
	runEvents(src, evs[:3000])
	snap := src.AppendState(nil)
	// The last sub-state is the count window's: damage a byte in it, and
	// fix the pipeline's own checksum so that only the window refuses.
	bad := append([]byte(nil), snap...)
	bad[len(bad)-40] ^= 0x01
	withCRC(bad)
	p := statePipeline(t)
	runEvents(p, evs[5000:6000])
	before := p.AppendState(nil)
	if err := p.LoadState(bad); !errors.Is(err, ErrPipelineState) || !errors.Is(err, ErrWindowState) {
		t.Fatalf("damaged window state: %v, want a window state error", err)
	}
	if string(p.AppendState(nil)) != string(before) {
		t.Fatal("a LoadState that failed in its last operator changed the pipeline")
	}
	if err := p.LoadState(snap); err != nil {
		t.Fatal(err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x10
	return c
}

func setU32(b []byte, at int, v uint32) []byte {
	c := append([]byte(nil), b...)
	c[at], c[at+1], c[at+2], c[at+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return c
}

// withCRC recomputes the trailing checksum, so that the structure checks
// behind it are reached.
func withCRC(b []byte) []byte {
	n := len(b) - 4
	crc := crcOf(b[:n])
	b[n], b[n+1], b[n+2], b[n+3] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	return b
}

func crcOf(b []byte) uint32 { return crc32Castagnoli(b) }

// The pipeline's own part of a snapshot and the indicator set's do not
// allocate (window operators' snapshots do: they are not hot-path work).
func TestPipelineAppendStateAllocs(t *testing.T) {
	specs, _ := ParseIndicators(DefaultIndicators)
	p, err := NewPipeline(PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 64, MaxSlots: 8})
	if err != nil {
		t.Fatal(err)
	}
	runEvents(p, realTradeEvents(t)[:100])
	buf := p.AppendState(nil)
	if n := testing.AllocsPerRun(20, func() { buf = p.AppendState(buf[:0]) }); n != 0 {
		t.Fatalf("AppendState into a large enough buffer allocates %.0f times", n)
	}
}

// fuzzPipeline is a small pipeline (two slots, two indicators, one count
// window) so that snapshots stay short: the fuzzer minimises every new
// input, and minimising a 6 KB one takes it the whole run. The window
// decoder has its own fuzz test (FuzzWindowLoadState).
func fuzzPipeline(tb testing.TB) *Pipeline {
	specs, _ := ParseIndicators("sma:2,vwap")
	wins, _ := ParseWindowSpecs("count:3:sum")
	p, err := NewPipeline(PipelineConfig{Indicators: specs, EmitIndicators: true, Windows: wins, MaxSymbolID: 16, MaxSlots: 2})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// FuzzPipelineLoadState: LoadState never panics, and whatever it accepts
// snapshots back to the same bytes and runs. Seeded with snapshots of real
// trades. One pipeline serves every input (a refused LoadState leaves it
// unchanged).
func FuzzPipelineLoadState(f *testing.F) {
	evs := realTradeEvents(f)
	for i := range evs {
		evs[i].Symbol = 1 + evs[i].Symbol%2
	}
	for _, n := range []int{0, 1, 5, 700} {
		p := fuzzPipeline(f)
		runEvents(p, evs[:n])
		f.Add(p.AppendState(nil))
	}
	var p *Pipeline
	f.Fuzz(func(t *testing.T, src []byte) {
		if p == nil {
			p = fuzzPipeline(t)
		}
		if err := p.LoadState(src); err != nil {
			return
		}
		if got := p.AppendState(nil); string(got) != string(src) {
			t.Fatalf("accepted snapshot re-encodes differently")
		}
		runEvents(p, evs[:50]) // and the restored state is usable
	})
}

func crc32Castagnoli(b []byte) uint32 { return crc32.Checksum(b, pipeCRCTable) }
