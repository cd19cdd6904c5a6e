package engine

import (
	"testing"

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
