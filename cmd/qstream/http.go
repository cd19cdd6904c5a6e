package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"qstream/control"
	"qstream/feeds"
	"qstream/sinks"
)

// httpFlags are run's control endpoint flags (package control).
type httpFlags struct {
	addr, token, streamName string
}

// defaultHTTPAddr is --http's default.
const defaultHTTPAddr = "127.0.0.1:8080"

// register adds the flags. --http's default is $QSTREAM_HTTP when it is set
// (also to ""), else defaultHTTPAddr: the test suite sets it to "" so that
// the many runs it starts do not compete for one port.
func (h *httpFlags) register(fs *flag.FlagSet) {
	addr := defaultHTTPAddr
	if v, ok := os.LookupEnv("QSTREAM_HTTP"); ok {
		addr = v
	}
	fs.StringVar(&h.addr, "http", addr, `address of the control endpoint: /healthz, /readyz, /metrics (Prometheus), /debug/pprof/ and the stream API under /api/streams (README "Control API"); "" turns it off; port 0 picks a free port (default $QSTREAM_HTTP if set)`)
	fs.StringVar(&h.token, "http-token", "", "bearer token every control endpoint but /healthz and /readyz requires (default $QSTREAM_HTTP_TOKEN; empty: none)")
	fs.StringVar(&h.streamName, "stream-name", control.StreamID, "the stream's name in the control API and the metrics' stream label")
}

// Timeouts of the control endpoint's server.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 2 * time.Minute // /debug/pprof/profile takes 30 s by default
	httpIdleTimeout       = 2 * time.Minute
	httpShutdownTimeout   = 5 * time.Second
)

// controlHTTP is run's control endpoint: bound at the start (a busy address
// fails the start at once), served once the engine exists, shut down at the
// end of the run. A nil *controlHTTP (--http "") does nothing.
type controlHTTP struct {
	ln     net.Listener
	srv    *http.Server
	ctl    *control.Server
	cancel context.CancelFunc // the throughput sampler
	served chan struct{}      // closed when Serve returned
}

// listenHTTP binds --http and prints the address it listens on.
func listenHTTP(f *httpFlags, stderr io.Writer) (*controlHTTP, error) {
	if f.addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w (another qstream? --http ADDR picks another address, --http \"\" turns the endpoint off)", f.addr, err)
	}
	fmt.Fprintf(stderr, "qstream: http: listening on %s\n", ln.Addr())
	return &controlHTTP{ln: ln}, nil
}

// httpToken is --http-token, else $QSTREAM_HTTP_TOKEN.
func httpToken(f *httpFlags, getenv func(string) string) string {
	if f.token != "" {
		return f.token
	}
	return getenv("QSTREAM_HTTP_TOKEN")
}

// serve starts serving the control API of opts.Engine.
func (c *controlHTTP) serve(opts control.Options, stderr io.Writer) error {
	if c == nil {
		return nil
	}
	ctl, err := control.New(opts)
	if err != nil {
		return err
	}
	c.ctl = ctl
	c.srv = &http.Server{
		Handler:           ctl.Handler(),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go ctl.Run(ctx)
	c.served = make(chan struct{})
	go func() {
		defer close(c.served)
		if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "qstream: http: %v\n", err)
		}
	}()
	return nil
}

// readyWhenFeedsUp marks the stream ready once every listening feed
// listens (the others are up once started), unless ctx ends first. Call it
// after recovery, when the feeds start.
func (c *controlHTTP) readyWhenFeedsUp(ctx context.Context, set *feedSet) {
	if c == nil || c.ctl == nil {
		return
	}
	go func() {
		for _, fd := range set.feeds {
			if l, ok := fd.(interface{ Ready() <-chan struct{} }); ok {
				select {
				case <-l.Ready():
				case <-ctx.Done():
					return
				}
			}
		}
		c.ctl.SetReady()
	}()
}

// stopping marks the stream stopped (/readyz 503, no more control calls).
func (c *controlHTTP) stopping() {
	if c != nil && c.ctl != nil {
		c.ctl.SetStopped()
	}
}

// close shuts the server down gracefully (requests in flight complete
// within httpShutdownTimeout) and closes the listener.
func (c *controlHTTP) close(stderr io.Writer) {
	if c == nil {
		return
	}
	if c.srv == nil {
		c.ln.Close()
		return
	}
	c.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil {
		fmt.Fprintf(stderr, "qstream: http: shutdown: %v\n", err)
		c.srv.Close()
	}
	<-c.served
}

// feedByteStats are the feeds' byte counters for the control metrics.
func (s *feedSet) byteStats() []control.FeedStats {
	var out []control.FeedStats
	for _, fd := range s.feeds {
		if t, ok := fd.(*feeds.TCPServer); ok {
			out = append(out, control.FeedStats{Name: fd.Name(), Bytes: t.Stats().Bytes})
		}
	}
	return out
}

// sinkStats are the asynchronous sinks' counters; nil without sinks.
func (o *outputSinks) sinkStats() []sinks.SinkStats {
	if o.set == nil {
		return nil
	}
	var out []sinks.SinkStats
	for _, k := range o.set.Sinks() {
		out = append(out, k.Stats())
	}
	return out
}

// guardStats reports the --output guard's counters, if there is one.
func guardStats(g *sinks.Guard) func() (sinks.GuardStats, bool) {
	return func() (sinks.GuardStats, bool) {
		if g == nil {
			return sinks.GuardStats{}, false
		}
		return g.Stats(), true
	}
}
