package control

import (
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"qstream/codec"
	"qstream/engine"
)

// latencyBoundsNs are the upper bounds of qstream_latency_seconds: 1-2.5-5
// steps from 1 µs to 10 s (the engine clamps latencies at 10 s).
var latencyBoundsNs = func() []int64 {
	var b []int64
	for d := int64(1000); d <= 10_000_000_000; d *= 10 {
		b = append(b, d)
		if d < 10_000_000_000 {
			b = append(b, d*5/2, d*5)
		}
	}
	return b
}()

// collector is the Prometheus Collector of one stream: every value is read
// from the engine, the feeds and the sinks when Prometheus scrapes, so the
// hot path pays nothing for metrics.
type collector struct {
	s *Server

	messages, processed, outputs, delivered *prometheus.Desc
	errors, deadLetters                     *prometheus.Desc
	latency                                 *prometheus.Desc
	watermarkLag, eventLag                  *prometheus.Desc
	sinkQueue, sinkBreaker, sinkWritten     *prometheus.Desc
	sinkShed                                *prometheus.Desc
	feedBytes                               *prometheus.Desc
	ringLen, ringCap, ringOccupancy         *prometheus.Desc
	checkpoints, checkpointFailures         *prometheus.Desc
	checkpointDuration, checkpointBytes     *prometheus.Desc
	walLastLSN, walDurableLSN               *prometheus.Desc
	paused, ready, symbols                  *prometheus.Desc
}

func newCollector(s *Server) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		s:                  s,
		messages:           d("qstream_messages_total", "Events accepted from each feed (its engine publishers; replayed WAL records count under their source).", "stream", "feed"),
		processed:          d("qstream_processed_total", "Events processed by the shards (watermarks excluded).", "stream"),
		outputs:            d("qstream_outputs_total", "Outputs produced by the shards.", "stream"),
		delivered:          d("qstream_delivered_total", "Outputs handed to the output handler.", "stream"),
		errors:             d("qstream_errors_total", "Rejected inputs that are errors (malformed, invalid, oversize...), by reason.", "reason"),
		deadLetters:        d("qstream_dead_letters_total", "Every rejection sent to the dead letters (errors, late, duplicate, gaps), by reason.", "reason"),
		latency:            d("qstream_latency_seconds", "Latency from ingest to each stage since the start (shard: operators done; sink: output handler accepted).", "stage"),
		watermarkLag:       d("qstream_watermark_lag_seconds", "Wall clock minus the stream's event-time watermark (the lowest shard watermark).", "stream"),
		eventLag:           d("qstream_event_time_lag_seconds", "Wall clock minus the newest event time the feeds published.", "stream"),
		sinkQueue:          d("qstream_sink_queue", "Outputs waiting for the sink, in memory and spilled.", "sink"),
		sinkBreaker:        d("qstream_sink_breaker_open", "1 while the sink's circuit breaker is open.", "sink"),
		sinkWritten:        d("qstream_sink_written_total", "Outputs the sink's destination acknowledged.", "sink"),
		sinkShed:           d("qstream_sink_shed_total", "Outputs dropped by the sink's shed policy on a full queue.", "sink"),
		feedBytes:          d("qstream_feed_bytes_total", "Bytes read by each feed (feeds that count them).", "stream", "feed"),
		ringLen:            d("qstream_ring_len", "Values waiting in the shards' rings.", "stream", "ring"),
		ringCap:            d("qstream_ring_capacity", "Capacity of the shards' rings.", "stream", "ring"),
		ringOccupancy:      d("qstream_ring_occupancy_ratio", "Occupancy of the shards' rings (len / capacity).", "stream", "ring"),
		checkpoints:        d("qstream_checkpoints_total", "Checkpoints taken.", "stream"),
		checkpointFailures: d("qstream_checkpoint_failures_total", "Checkpoints that failed.", "stream"),
		checkpointDuration: d("qstream_checkpoint_duration_seconds", "Duration of the last checkpoint.", "stream"),
		checkpointBytes:    d("qstream_checkpoint_size_bytes", "Size of the last checkpoint.", "stream"),
		walLastLSN:         d("qstream_wal_last_lsn", "The last WAL record appended.", "stream"),
		walDurableLSN:      d("qstream_wal_durable_lsn", "The last WAL record synced.", "stream"),
		paused:             d("qstream_paused", "1 while the stream is paused.", "stream"),
		ready:              d("qstream_ready", "1 once recovery is done and the feeds are up.", "stream"),
		symbols:            d("qstream_symbols", "Interned symbols.", "stream"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.messages, c.processed, c.outputs, c.delivered, c.errors, c.deadLetters,
		c.latency, c.watermarkLag, c.eventLag, c.sinkQueue, c.sinkBreaker, c.sinkWritten, c.sinkShed, c.feedBytes,
		c.ringLen, c.ringCap, c.ringOccupancy, c.checkpoints, c.checkpointFailures, c.checkpointDuration,
		c.checkpointBytes, c.walLastLSN, c.walDurableLSN, c.paused, c.ready, c.symbols} {
		ch <- d
	}
}

// feedOf is the feed a Publisher belongs to: its name up to the first '/'
// (tcp/loop0 and jetstream/p3 are parts of the feeds tcp and jetstream), so
// the label's values are bounded by the feeds configured.
func feedOf(publisher string) string {
	if i := strings.IndexByte(publisher, '/'); i >= 0 {
		return publisher[:i]
	}
	return publisher
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	stream := s.opts.StreamName
	st := s.eng.Stats()
	now := s.opts.Now()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	// Per stream: the first under its name, the others under their ids.
	pubs := s.eng.Publishers()
	for _, info := range s.eng.Streams() {
		label := string(info.ID)
		if info.Index == 0 {
			label = stream
		} else if info.State == engine.StreamStopped {
			continue
		}
		byFeed := map[string]uint64{}
		for _, p := range pubs {
			if name, ok := ofStream(info, p.Name); ok {
				byFeed[feedOf(name)] += p.Published
			}
		}
		for _, f := range sortedKeys(byFeed) {
			counter(c.messages, float64(byFeed[f]), label, f)
		}
		m := st
		if len(pubs) > 0 && (info.Index != 0 || len(s.eng.Streams()) > 1) {
			var err error
			if m, err = s.eng.StreamMetrics(info.ID); err != nil {
				continue
			}
		}
		counter(c.processed, float64(m.Messages), label)
		counter(c.outputs, float64(m.Outputs), label)
		counter(c.delivered, float64(m.Delivered), label)
		if info.Index != 0 {
			if l, err := s.eng.ProcessingLag(info.ID, now); err == nil && l.HasWatermark {
				gauge(c.watermarkLag, l.Watermark.Seconds(), label)
			}
			gauge(c.paused, boolFloat(s.eng.StreamPaused(info.ID)), label)
		}
	}
	for _, r := range sortedKeys(st.Rejected) {
		n := float64(st.Rejected[r])
		counter(c.deadLetters, n, r)
		if isError(r) {
			counter(c.errors, n, r)
		}
	}

	hs := s.eng.LatencyHistograms(latencyBoundsNs)
	for i, h := range hs {
		buckets := make(map[float64]uint64, len(latencyBoundsNs))
		for j, b := range latencyBoundsNs {
			buckets[float64(b)/1e9] = h.Cumulative[j]
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, uint64(h.Count), h.SumNs/1e9, buckets, engine.StageNames[i])
	}

	if l, err := s.eng.ProcessingLag(engine.DefaultStream, now); err == nil {
		if l.HasWatermark {
			gauge(c.watermarkLag, l.Watermark.Seconds(), stream)
		}
		if l.HasEvents {
			gauge(c.eventLag, l.EventTime.Seconds(), stream)
		}
	}

	if s.opts.Sinks != nil {
		for _, k := range s.opts.Sinks() {
			gauge(c.sinkQueue, float64(k.Queued+k.Spilled), k.Name)
			gauge(c.sinkBreaker, boolFloat(k.Breaker == "open"), k.Name)
			counter(c.sinkWritten, float64(k.Written), k.Name)
			counter(c.sinkShed, float64(k.Shed), k.Name)
		}
	}
	if s.opts.Output != nil {
		if g, ok := s.opts.Output(); ok {
			gauge(c.sinkBreaker, boolFloat(g.Breaker == "open"), "output")
		}
	}
	if s.opts.Feeds != nil {
		for _, f := range s.opts.Feeds() {
			counter(c.feedBytes, float64(f.Bytes), stream, f.Name)
		}
	}

	r := rings(st)
	for _, k := range []struct {
		name     string
		len, cap int
	}{{"input", r.inLen, r.inCap}, {"output", r.outLen, r.outCap}} {
		gauge(c.ringLen, float64(k.len), stream, k.name)
		gauge(c.ringCap, float64(k.cap), stream, k.name)
		gauge(c.ringOccupancy, ratio(k.len, k.cap), stream, k.name)
	}

	if d := st.Durability; d.LastLSN > 0 || d.Checkpoints.Taken > 0 || d.Checkpoints.Failed > 0 {
		counter(c.checkpoints, float64(d.Checkpoints.Taken), stream)
		counter(c.checkpointFailures, float64(d.Checkpoints.Failed), stream)
		if d.Checkpoints.Taken > 0 {
			gauge(c.checkpointDuration, d.Checkpoints.LastTook.Seconds(), stream)
			gauge(c.checkpointBytes, float64(d.Checkpoints.LastBytes), stream)
		}
		gauge(c.walLastLSN, float64(d.LastLSN), stream)
		gauge(c.walDurableLSN, float64(d.DurableLSN), stream)
	}
	gauge(c.paused, boolFloat(s.eng.Paused() || s.eng.StreamPaused(engine.DefaultStream)), stream)
	gauge(c.ready, boolFloat(s.ready.Load() && !s.stopped.Load()), stream)
	gauge(c.symbols, float64(st.Symbols), stream)
}

// isError says whether a rejection reason is an error (engine.Stats.Errors
// counts the same ones): late events, duplicates and sequence gaps are
// dead letters but not errors.
func isError(reason string) bool {
	r, _ := codec.ParseReason(reason)
	switch r {
	case codec.ReasonLate, codec.ReasonDuplicate, codec.ReasonSequenceGap:
		return false
	}
	return true
}

type ringTotals struct{ inLen, inCap, outLen, outCap int }

func rings(st engine.Stats) ringTotals {
	var r ringTotals
	for _, sh := range st.Shards {
		r.inLen += sh.InputLen
		r.inCap += sh.InputCap
		r.outLen += sh.OutputLen
		r.outCap += sh.OutputCap
	}
	return r
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
