package feeds

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"qstream/codec"
	"qstream/engine"
	"qstream/ops"
)

// plainPubs hands out the engine's Publishers behind the Publisher
// interface alone, so that the TCP loops publish copies (PublishText)
// instead of parsing into claimed ring slots.
type plainPubs struct{ *engPubs }

func (p plainPubs) NewPublisher(name string) (Publisher, error) {
	pub, err := p.engPubs.NewPublisher(name)
	if err != nil {
		return nil, err
	}
	return struct{ Publisher }{pub}, nil
}

// TestTCPClaimMatchesPublish: the TCP lines feed parsing into claimed ring
// slots (the engine's Publisher) gives the outputs, dead letters and
// counts that publishing copies gives, for a stream of trades of several
// symbols on two shards, malformed and blank lines, and news with text.
func TestTCPClaimMatchesPublish(t *testing.T) {
	var in strings.Builder
	good, bad := 0, 0
	for k := range 1500 {
		switch {
		case k%97 == 5:
			fmt.Fprintf(&in, `{"type":"news","id":"n%d","ts":%d,"source":"wire","headline":"AAPL beats","body":"%s","symbols":["AAPL"]}`+"\n",
				k, engTsBase+int64(k)*int64(time.Millisecond), strings.Repeat("strong quarter ", 1+k%40))
			good++
		case k%13 == 7:
			in.WriteString(`{"type":"trade","symbol":"S1","ts":` + "\n") // cut short
			bad++
		case k%29 == 3:
			in.WriteString("\n")
		default:
			in.WriteString(engTrade(fmt.Sprintf("S%d", k%7), k, time.Millisecond))
			good++
		}
	}
	run := func(claim bool) ([]string, engine.Stats) {
		specs, err := ops.ParseIndicators("sma:2")
		if err != nil {
			t.Fatal(err)
		}
		out, dl := &engSink{}, &engDL{}
		e, err := engine.New(engine.Config{
			Shards:  2,
			Symbols: codec.NewSymbolTable(64),
			Processors: func(int) (engine.Processor, error) {
				return ops.NewPipeline(ops.PipelineConfig{Indicators: specs, EmitIndicators: true, MaxSymbolID: 64, MaxSlots: 64})
			},
			Output:      out,
			DeadLetters: dl,
			Logger:      quietSlog(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		ep := &engPubs{e: e}
		var pubs Publishers = ep
		if !claim {
			pubs = plainPubs{ep}
		}
		s, err := NewTCPServer(TCPConfig{Addr: "127.0.0.1:0", Format: TCPLines, EventLoops: 1, Logger: tcpQuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		stop := runFeed(t, s, pubs, s.Ready())
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		data := []byte(in.String())
		for len(data) > 0 { // in pieces: lines split across reads
			n := min(len(data), 1+len(data)/7)
			if _, err := c.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
			time.Sleep(time.Millisecond)
		}
		c.Close()
		waitEng(t, 20*time.Second, "every line taken", func() bool {
			st := e.Stats()
			return st.Published == uint64(good) && dl.count(codec.ReasonMalformed) == bad
		})
		stop()
		ep.mu.Lock()
		for _, p := range ep.pubs {
			p.Close()
		}
		ep.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, o := range out.all() {
			o.IngestNs = 0
			lines = append(lines, fmt.Sprint(o))
		}
		slices.Sort(lines)
		return lines, e.Stats()
	}
	want, wantSt := run(false)
	got, gotSt := run(true)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("claimed slots: %d outputs, copies: %d (or they differ)", len(got), len(want))
	}
	if gotSt.Published != wantSt.Published || gotSt.Messages != wantSt.Messages || gotSt.DeadLetters != wantSt.DeadLetters ||
		fmt.Sprint(gotSt.ByKind) != fmt.Sprint(wantSt.ByKind) {
		t.Fatalf("stats: claimed %+v, copies %+v", gotSt, wantSt)
	}
	if gotSt.ByKind["news"] == 0 {
		t.Fatalf("no news processed: %+v", gotSt.ByKind)
	}
}
