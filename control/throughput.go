package control

import (
	"context"
	"time"
)

// Bounds of GET /api/streams/{id}/throughput?timeframe=D.
const (
	minTimeframe     = time.Second
	maxTimeframe     = time.Hour
	defaultTimeframe = time.Minute
)

// Run samples the engine's processed message count every SampleInterval
// until ctx is done. Run it in its own goroutine.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.SampleInterval)
	defer t.Stop()
	s.tp.Add(s.opts.Now(), s.eng.Stats().Messages)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.tp.Add(s.opts.Now(), s.eng.Stats().Messages)
		}
	}
}
