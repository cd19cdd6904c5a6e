package engine

import "time"

// shardCut is a shard's side of the cut protocol (see checkpoint.go). Owned
// by the shard goroutine.
type shardCut struct {
	req      *cutReq  // the cut being aligned; nil when none
	done     uint64   // the last completed epoch
	got      []bool   // per input: its cut event arrived
	snap     []byte   // the shard section of the last completed cut; read by the coordinator until the next
	streams  [][]byte // per stream index > 0: its section of that cut (nil: the stream has ended or is not there)
	outEmpty func() bool
}

// cutWanted reports whether the coordinator asks for a cut this shard has
// not started.
func (s *shard) cutWanted() bool {
	c := s.e.cut
	if c == nil || s.cut.req != nil {
		return false
	}
	r := c.cur.Load()
	return r != nil && r.epoch > s.cut.done
}

// cutPending reports whether a cut is asked for or in progress.
func (s *shard) cutPending() bool { return s.cut.req != nil || s.cutWanted() }

// cutHolds reports whether input src must not be read now: its cut event
// arrived, or its publisher was created after the cut began.
func (s *shard) cutHolds(src int) bool {
	r := s.cut.req
	if r == nil {
		return false
	}
	if src < len(s.cut.got) && s.cut.got[src] {
		return true
	}
	pubs := *s.e.pubs.Load()
	return src < len(pubs) && pubs[src].firstEpoch > r.epoch
}

func (s *shard) beginCut(r *cutReq) {
	s.cut.req = r
	for len(s.cut.got) < len(s.inputs) {
		s.cut.got = append(s.cut.got, false)
	}
	clear(s.cut.got)
}

// onCut records the cut event of epoch from input src.
func (s *shard) onCut(src int, epoch uint64) {
	if s.cut.req == nil {
		r := s.e.cut.cur.Load()
		if r == nil || r.epoch != epoch || epoch <= s.cut.done {
			return // not the cut in progress: nothing to align on
		}
		s.beginCut(r)
	}
	if epoch != s.cut.req.epoch {
		return
	}
	for len(s.cut.got) <= src {
		s.cut.got = append(s.cut.got, false)
	}
	s.cut.got[src] = true
}

// checkCut starts a requested cut and completes it once aligned. It runs on
// every turn of the shard loop when the engine is durable.
func (s *shard) checkCut() {
	if s.cut.req == nil {
		if !s.cutWanted() {
			return
		}
		s.beginCut(s.e.cut.cur.Load())
	}
	if s.cutAligned() {
		s.completeCut()
	}
}

// cutAligned reports whether every input has delivered the cut or cannot
// deliver anything from before it.
func (s *shard) cutAligned() bool {
	epoch := s.cut.req.epoch
	pubs := *s.e.pubs.Load()
	for i, p := range pubs {
		if p.firstEpoch > epoch {
			continue // created after the cut began: all of it is after the cut
		}
		if i >= len(s.inputs) {
			return false // not picked up yet
		}
		if i < len(s.cut.got) && s.cut.got[i] {
			continue
		}
		// Closed before the coordinator reached it: drain it. (ended is read
		// before injected: a Publisher that got the cut stored injected
		// before it could close.)
		if p.ended.Load() && p.injected.Load() < epoch && s.inputs[i].Len() == 0 {
			continue
		}
		return false
	}
	return true
}

func (s *shard) completeCut() {
	r := s.cut.req
	s.flushOutputs()
	if r.snapshot {
		s.cut.snap = s.appendSnapshot(s.cut.snap[:0])
		for len(s.cut.streams) < len(s.strs) {
			s.cut.streams = append(s.cut.streams, nil)
		}
		for i := 1; i < len(s.strs); i++ {
			if ss := s.strs[i]; ss != nil && !ss.ended {
				s.cut.streams[i] = s.appendStreamSnapshot(s.cut.streams[i][:0], ss, false)
			} else {
				s.cut.streams[i] = nil
			}
		}
	}
	if r.alignOutputs {
		if s.cut.outEmpty == nil {
			s.cut.outEmpty = s.outDelivered
		}
		for !s.outDelivered() {
			s.outWait.Wait(s.cut.outEmpty, time.Millisecond)
		}
	}
	s.e.cut.shardDone <- s.id
	if r.alignOutputs {
		<-r.release
	}
	s.cut.done = r.epoch
	s.cut.req = nil
	clear(s.cut.got)
}

// outDelivered reports whether every output the shard pushed has been
// handed to the output: its ring is empty and no collection step is under
// way. An empty ring alone is not enough: a step (of the collector
// goroutine or of another shard delivering inline) releases what it polled
// before its handler has taken it, and a sink mark taken then would leave
// those outputs after the mark while the checkpoint holds their effects.
// A step that starts after the ring was seen empty finds nothing of this
// shard's, which holds still until the mark is taken.
func (s *shard) outDelivered() bool {
	return s.out.Len() == 0 && s.e.collector.role.Load() == 0
}
