package engine

import (
	"qstream/codec"
)

// Stats is a point-in-time view of the engine's counters. Counters are read
// without stopping the shards, so the view is approximate while they run and
// exact after Stop.
type Stats struct {
	Messages    uint64            // events processed by the shards (watermarks excluded)
	ByKind      map[string]uint64 // processed events by kind
	Published   uint64            // events accepted by publishers
	Rejected    map[string]uint64 // rejections by reason (parse-time and operator-time)
	Errors      uint64            // parse-time rejections (malformed, invalid values, oversize...)
	DeadLetters uint64            // every rejection, parse-time and operator-time
	Outputs     uint64            // outputs produced by the shards
	Delivered   uint64            // outputs handed to the output handler
	Symbols     int               // interned symbols
	Shards      []ShardStats
	Durability  DurabilityStats // zero without a *WAL
}

// DurabilityStats describe the WAL and the checkpoints.
type DurabilityStats struct {
	LastLSN     uint64 // the last record appended
	DurableLSN  uint64 // the last record synced
	Checkpoints CheckpointStats
}

// ShardStats are one shard's counters and ring occupancy.
type ShardStats struct {
	Messages    uint64
	WatermarkNs int64 // the shard's event-time watermark; math.MinInt64 before the first
	InputLen    int   // values waiting in the shard's input rings
	InputCap    int
	OutputLen   int
	OutputCap   int
	// Chained counts the times a Publisher ran the shard's round on its own
	// goroutine while the shard thread slept (Config.Chain).
	Chained uint64
}

// Stats collects the counters.
func (e *Engine) Stats() Stats {
	st := Stats{ByKind: map[string]uint64{}, Rejected: map[string]uint64{}, Symbols: e.symbols.Len()}
	var byKind [codec.KindCount]uint64
	for _, s := range e.shards {
		var ss ShardStats
		for k := range s.byKind {
			n := s.byKind[k].Load()
			byKind[k] += n
			if codec.Kind(k) != codec.KindWatermark {
				ss.Messages += n
			}
		}
		ss.WatermarkNs = s.strPub[0].Load().wmPub.Load() // the first stream's
		ss.OutputLen, ss.OutputCap = s.out.Len(), s.out.Cap()
		ss.Chained = s.rounds.Load()
		for _, p := range *e.pubs.Load() {
			r := p.rings[s.id]
			ss.InputLen += r.Len()
			ss.InputCap += r.Cap()
		}
		st.Messages += ss.Messages
		st.Outputs += s.outputs.Load()
		st.Shards = append(st.Shards, ss)
	}
	for k, n := range byKind {
		if n > 0 && codec.Kind(k) != codec.KindWatermark {
			st.ByKind[codec.Kind(k).String()] = n
		}
	}
	for _, p := range *e.pubs.Load() {
		st.Published += p.published.Load()
	}
	for r := range e.rejected {
		st.addRejected(codec.Reason(r), e.rejected[r].Load())
	}
	st.Delivered = e.collector.delivered.Load()
	if e.wal != nil {
		st.Durability = DurabilityStats{LastLSN: e.wal.LastLSN(), DurableLSN: e.wal.DurableLSN(), Checkpoints: e.CheckpointStats()}
	}
	return st
}

// addRejected counts n rejections for reason: under Rejected and
// DeadLetters, and under Errors unless the reason is not an error (late,
// duplicate, sequence gap).
func (st *Stats) addRejected(reason codec.Reason, n uint64) {
	if n == 0 {
		return
	}
	st.Rejected[reason.String()] += n
	st.DeadLetters += n
	switch reason {
	case codec.ReasonLate, codec.ReasonDuplicate, codec.ReasonSequenceGap:
	default:
		st.Errors += n
	}
}

func (e *Engine) feedName(id int) string {
	pubs := *e.pubs.Load()
	if id >= 0 && id < len(pubs) {
		return pubs[id].name
	}
	return ""
}

func posOf(ev *codec.Event) codec.Position {
	return codec.Position{Offset: -1}
}

// PublisherStats describe one Publisher.
type PublisherStats struct {
	Name      string
	Published uint64 // events accepted
	// MaxEventNs is the largest event time the Publisher has flushed with a
	// watermark; math.MinInt64 before the first.
	MaxEventNs int64
	Replay     bool // a recovery publisher (its events come from the WAL)
	Ended      bool // closed or detached
}

// Publishers returns every Publisher's counters, in creation order. It reads
// atomics only; call it at scrape time.
func (e *Engine) Publishers() []PublisherStats {
	pubs := *e.pubs.Load()
	out := make([]PublisherStats, len(pubs))
	for i, p := range pubs {
		out[i] = PublisherStats{Name: p.name, Published: p.published.Load(), MaxEventNs: p.maxTsPub.Load(), Replay: p.replay, Ended: p.ended.Load()}
	}
	return out
}
