package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"qstream/codec"
	"qstream/ops"
)

func TestStreamMetricsLagThroughput(t *testing.T) {
	symbols := codec.NewSymbolTable(8)
	e, err := New(Config{Shards: 2, Symbols: symbols, Processors: func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{MaxSymbolID: 8})
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.StreamMetrics("nope"); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("StreamMetrics of an unknown stream: %v", err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	p, _ := e.NewPublisher("feed")
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i := range 100 {
		ev := codec.Event{Kind: codec.KindTrade, Symbol: codec.Symbol(1 + i%4), TsNs: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), Price: 1, Volume: 1}
		symbols.InternString(string(rune('A' + i%4)))
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := e.StreamMetrics(DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		if m.Messages == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics say %d messages, want 100", m.Messages)
		}
		time.Sleep(5 * time.Millisecond)
	}
	now := t0.Add(time.Minute)
	var l Lag
	for {
		if l, err = e.ProcessingLag(DefaultStream, now); err != nil {
			t.Fatal(err)
		}
		if l.HasWatermark || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !l.HasEvents || l.EventTime != time.Minute-99*time.Millisecond {
		t.Fatalf("event-time lag %+v, want 1m − 99ms", l)
	}
	if !l.HasWatermark || l.Watermark != time.Minute-99*time.Millisecond {
		t.Fatalf("watermark lag %+v, want 1m − 99ms (no out-of-orderness)", l)
	}
	// Throughput from the samples (injected, into an engine that is not
	// started, rather than waited for).
	idle, err := New(Config{Shards: 1, Symbols: codec.NewSymbolTable(8), Processors: func(int) (Processor, error) {
		return ops.NewPipeline(ops.PipelineConfig{MaxSymbolID: 8})
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := idle.ThroughputStats(DefaultStream, time.Minute); ok {
		t.Fatal("a rate without samples")
	}
	for i := range 11 {
		idle.streamList()[0].tput.Add(t0.Add(time.Duration(i)*time.Second), uint64(i)*500)
	}
	tp, ok, err := idle.ThroughputStats(DefaultStream, 4*time.Second)
	if err != nil || !ok || tp.Messages != 2000 || tp.Seconds != 4 || tp.PerSecond != 500 {
		t.Fatalf("throughput over 4s: %+v %v %v", tp, ok, err)
	}
	for _, bad := range []time.Duration{0, time.Millisecond, 2 * time.Hour} {
		if _, _, err := e.ThroughputStats(DefaultStream, bad); err == nil {
			t.Errorf("timeframe %s accepted", bad)
		}
	}
	if _, _, err := e.ThroughputStats("other", time.Minute); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("another stream: %v", err)
	}
	// The running engine samples by itself.
	for e.streamList()[0].tput.Samples() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.streamList()[0].tput.Samples() < 1 {
		t.Fatal("the running engine took no throughput sample")
	}
	if err := e.PauseStream(DefaultStream); err != nil || !e.StreamPaused(DefaultStream) {
		t.Fatalf("PauseStream: %v, paused %v", err, e.StreamPaused(DefaultStream))
	}
	if err := e.ResumeStream(DefaultStream); err != nil || e.StreamPaused(DefaultStream) {
		t.Fatalf("ResumeStream: %v, paused %v", err, e.StreamPaused(DefaultStream))
	}
	if err := e.PauseStream("other"); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("PauseStream(other): %v", err)
	}
	p.Close()
	if err := e.StopStream(context.Background(), "other"); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("StopStream(other): %v", err)
	}
	if err := e.StopStream(context.Background(), DefaultStream); err != nil {
		t.Fatal(err)
	}
}
