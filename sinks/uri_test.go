package sinks

import (
	"strings"
	"testing"
	"time"

	"qstream/codec"
)

func TestParseSinkURI(t *testing.T) {
	u, pol, err := ParseSinkURI("redis://127.0.0.1:6379/2?ttl=30s&full=block&buffer=500&spill_max=2MiB&linger=1ms&breaker_timeout=3s", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Get("ttl") != "30s" || u.Query().Has("full") || u.Path != "/2" {
		t.Fatalf("writer URL %s: want ttl kept, framework parameters removed", u)
	}
	if pol.Full != FullBlock || pol.Buffer != 500 || pol.SpillMax != 2<<20 || pol.Linger != time.Millisecond || pol.BreakerTimeout != 3*time.Second {
		t.Fatalf("policy %+v", pol)
	}
	for _, bad := range []string{
		"redis://h:1?full=maybe", "redis://h:1?buffer=-1", "redis://h:1?buffer=99999999", "redis://h:1?linger=soon",
		"redis://h:1?spill_max=12XB", "redis://h:1?batch=1&batch=2", "127.0.0.1:6379", "redis:///nohost",
	} {
		if _, _, err := ParseSinkURI(bad, Policy{}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	u, _, err = ParseSinkURI("ws://u:secret@127.0.0.1:9000/feed?token=abc", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if r := redact(u); strings.Contains(r, "secret") || strings.Contains(r, "abc") {
		t.Fatalf("redacted name %s shows a secret", r)
	}
	if _, err := OpenSink("nosuch://h:1", Env{}, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "unknown scheme") {
		t.Fatalf("unknown scheme: %v", err)
	}
}

// Every writer refuses a parameter it does not know, naming it.
func TestSinkURIUnknownParameter(t *testing.T) {
	env := Env{JSONL: JSONLConfig{Symbols: codec.NewSymbolTable(16)}}
	for _, raw := range []string{
		"redis://127.0.0.1:6379/0?timout=5s", "clickhouse+http://127.0.0.1:8123/db?timout=5s",
		"clickhouse://127.0.0.1:9000/db?timout=5s", "nats://127.0.0.1:4222?timout=5s", "ws://127.0.0.1:0/s?timout=5s",
	} {
		if _, err := OpenSink(raw, env, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "timout") {
			t.Errorf("%s: %v, want an error naming the parameter", raw, err)
		}
	}
}

// A writer's own repeatable parameter (ws origin=) survives the framework's
// parsing.
func TestParseSinkURIKeepsRepeatedWriterParameters(t *testing.T) {
	u, _, err := ParseSinkURI("ws://127.0.0.1:0/s?origin=a.example&origin=b.example&buffer=10", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query()["origin"]; len(got) != 2 {
		t.Fatalf("origin = %v, want both", got)
	}
}
