package sinks

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriterFactory builds a Writer from its --sink URI (the framework's own
// query parameters removed). It validates without connecting.
type WriterFactory func(u *url.URL, env Env) (Writer, error)

// writerFactories are the --sink schemes with a Writer. archive:// is not
// one (it records input events, not outputs): the caller handles it.
var writerFactories = map[string]WriterFactory{}

// registerWriter adds a scheme; called from the writers' init functions.
func registerWriter(scheme string, f WriterFactory) { writerFactories[scheme] = f }

// Schemes returns the --sink schemes with a Writer, sorted.
func Schemes() []string {
	var s []string
	for k := range writerFactories {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// The framework's query parameters, accepted on every --sink URI:
//
//	full=spill|block|shed  what a full memory queue does (FullPolicy)
//	buffer=N               memory queue length in outputs
//	spill_max=BYTES        spill file bound (suffixes KiB, MiB, GiB)
//	batch=N                most outputs per write
//	linger=DUR             wait for a batch to fill
//	retries=N              transient retries per batch
//	breaker_failures=N     consecutive failures that open the breaker
//	breaker_timeout=DUR    open breaker's wait before a probe
//	write_timeout=DUR      bound of one write
var policyParams = []string{"full", "buffer", "spill_max", "batch", "linger", "retries", "breaker_failures", "breaker_timeout", "write_timeout"}

// ParseSinkURI splits a --sink URI into the writer's URL (the framework's
// parameters removed) and the sink Policy. def is the scheme's default
// policy.
func ParseSinkURI(raw string, def Policy) (*url.URL, Policy, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, def, fmt.Errorf("--sink %q: %w", raw, err)
	}
	if u.Scheme == "" || u.Host == "" && u.Scheme != "archive" {
		return nil, def, fmt.Errorf("--sink %q: want SCHEME://HOST:PORT/... (schemes: %s, archive)", raw, strings.Join(Schemes(), ", "))
	}
	pol := def
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, pol, fmt.Errorf("--sink %s: query: %w", redact(u), err)
	}
	for _, k := range policyParams {
		if !q.Has(k) {
			continue
		}
		if n := len(q[k]); n > 1 {
			return nil, pol, fmt.Errorf("--sink %s: %s given %d times", redact(u), k, n)
		}
		v := q.Get(k)
		var perr error
		switch k {
		case "full":
			pol.Full, perr = ParseFullPolicy(v)
		case "buffer":
			pol.Buffer, perr = intParam("sink", k, v, 1, maxBuffer)
		case "batch":
			pol.BatchMax, perr = intParam("sink", k, v, 1, maxBatch)
		case "retries":
			pol.MaxRetries, perr = intParam("sink", k, v, 1, maxRetries)
		case "breaker_failures":
			var n int
			n, perr = intParam("sink", k, v, 1, 1000)
			pol.BreakerFailures = uint32(n)
		case "spill_max":
			pol.SpillMax, perr = parseBytes(v)
		case "linger":
			pol.Linger, perr = durationParam("sink", k, v, time.Nanosecond, time.Second)
		case "breaker_timeout":
			pol.BreakerTimeout, perr = durationParam("sink", k, v, time.Nanosecond, maxBreakerT)
		case "write_timeout":
			pol.WriteTimeout, perr = durationParam("sink", k, v, time.Nanosecond, time.Hour)
		}
		if perr != nil {
			return nil, pol, fmt.Errorf("--sink %s: %w", redact(u), perr)
		}
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	check := pol
	check.defaults()
	if err := check.Validate(); err != nil {
		return nil, pol, fmt.Errorf("--sink %s: %w", redact(u), err)
	}
	return u, pol, nil
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}} {
		if strings.HasSuffix(s, suf.s) {
			s, mult = strings.TrimSuffix(s, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size such as 512MiB")
	}
	return n * mult, nil
}

// redact returns u for messages and sink names: no password, no token.
func redact(u *url.URL) string {
	c := *u
	if q := c.Query(); q.Has("token") {
		q.Set("token", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}

// OpenSink builds the sink of a --sink URI: its Writer (not connected yet)
// under its Policy. stateDir holds the sinks' spill and checkpoint files
// (one folder per sink under it); poison receives outputs a writer can
// never write.
func OpenSink(raw string, env Env, stateDir string, poison PoisonFunc) (*Sink, error) {
	def := Policy{}
	if strings.HasPrefix(raw, "ws://") {
		// A live fan-out: the server conflates per client; a full queue
		// sheds rather than stalling or spilling stale ticks.
		def.Full = FullShed
	}
	u, pol, err := ParseSinkURI(raw, def)
	if err != nil {
		return nil, err
	}
	f, ok := writerFactories[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("--sink %s: unknown scheme %q (want %s or archive)", redact(u), u.Scheme, strings.Join(Schemes(), ", "))
	}
	w, err := f(u, env)
	if err != nil {
		return nil, fmt.Errorf("--sink %s: %w", redact(u), err)
	}
	if env.Gate != nil {
		w = &gatedWriter{Writer: w, gate: env.Gate}
	}
	name := redact(u)
	dir := ""
	if stateDir != "" {
		dir = SinkDir(stateDir, name)
	}
	return NewSink(name, w, pol, dir, poison, env.Logger)
}
