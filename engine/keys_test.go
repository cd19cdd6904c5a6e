package engine

import (
	"context"
	"testing"
	"time"

	"qstream/codec"
)

func TestDedupKeyStable(t *testing.T) {
	// Checkpoints hold dedup keys: written down once, never recomputed by
	// the code under test.
	for _, tc := range []struct {
		scope, id string
		want      uint64
	}{
		{"", "", 0x48218226ff3cd4bf},
		{"tcp", "t-1", 0x8839a6802f4f5aa1},
		{"webhook", "2001", 0x5c64789610944ba5},
	} {
		if got := dedupKey(codec.HashID([]byte(tc.scope)), codec.HashID([]byte(tc.id))); got != tc.want {
			t.Errorf("dedupKey(%q, %q) = %#x, want %#x", tc.scope, tc.id, got, tc.want)
		}
	}
}

func TestDedupScope(t *testing.T) {
	for name, want := range map[string]string{
		"tcp/loop0": "tcp", "tcp/loop12": "tcp", "js/p3": "js", "webhook": "webhook", "": "", "a/b/c": "a",
	} {
		if got := dedupScope(name); got != want {
			t.Errorf("dedupScope(%q) = %q, want %q", name, got, want)
		}
	}
}

// A source without offsets of its own (Seq 0: TCP, webhook, WebSocket) is
// numbered by its Publisher, and a restarted Publisher of the same name
// continues after the recovered offset: its first Flush sends a watermark
// at once (issue 8, item 1: before, the offset restarted at 1 and no
// watermark was sent until it passed the old one), never one behind what it
// sent before.
func TestPublisherOffsetsContinueAfterRestart(t *testing.T) {
	dir := t.TempDir()
	const base = int64(1_700_000_000_000_000_000)
	for life := range 2 {
		out := &memOutput{}
		r := openRig(t, dir, 1, out, 0)
		if _, err := r.e.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		if life == 0 {
			internSymbols(t, r.e, 2)
		}
		off, _ := r.e.SourceOffset("tcp/loop0")
		if want := uint64(101 * life); off != want {
			t.Fatalf("life %d: restored offset %d, want %d", life, off, want)
		}
		p, err := r.e.NewPublisher("tcp/loop0")
		if err != nil {
			t.Fatal(err)
		}
		sentBefore := p.sentWmNs
		for i := 1; i <= 100; i++ {
			k := int(off) + i
			ev := trade(0, 1, base+int64(k)*int64(time.Millisecond))
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
			if ev.Seq != uint64(k) {
				t.Fatalf("life %d: event %d got Seq %d, want %d", life, i, ev.Seq, k)
			}
			if i == 1 {
				if err := p.Flush(); err != nil {
					t.Fatal(err)
				}
				if want := base + int64(k)*int64(time.Millisecond); p.sentWmNs != want {
					t.Fatalf("life %d: watermark after the first event %d, want %d (sent before %d)", life, p.sentWmNs, want, sentBefore)
				}
			}
		}
		// An event behind the source's watermark sends none behind it.
		sent := p.sentWmNs
		old := trade(0, 2, base)
		if err := p.Publish(&old); err != nil {
			t.Fatal(err)
		}
		if err := p.Barrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p.sentWmNs < sent || old.Seq != off+101 {
			t.Fatalf("life %d: watermark %d after %d, seq %d", life, p.sentWmNs, sent, old.Seq)
		}
		if life == 0 {
			p.Detach() // a crash: nothing after the start's checkpoint is saved
		} else {
			p.Close()
		}
		stop(t, r.e)
		r.w.Close()
	}
}
