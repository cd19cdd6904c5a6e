package ops

import (
	"fmt"
	"math"

	"qstream/codec"
)

// Sequence steps on movements. A step with "kind":"movement" matches an
// event of the movement operator (movement.go) of the symbol, with the
// fields price (the trade's price), volume (the trade's size), bid, ask,
// spread, mid (the top of book), the trade's indicators, and
// change_pct (the move in percent, signed: 1.5 is +1.5 %) and
// reference_price:
//
//	{"id":"drop_then_volume","type":"sequence","within":"5m",
//	 "steps":[{"name":"drop","kind":"movement","where":["change_pct <= -1"]},
//	          {"name":"spike","where":["volume > 10"]}]}
//
// The sequence detector sees a trade first, then the movements it
// triggered, in spec order, each at the trade's event time; a trade that was
// late for sequences gives none. A step matches the movements of every
// configured spec (a trade with two triggering specs is two events). Step
// details are NAME_ts (the trade's time) and NAME_price (its price). A
// pipeline with such a step and no movement specs is refused.

// checkSeqMovements refuses sequence steps on movements in a pipeline
// without movement specs: they could never match.
func (p *Pipeline) checkSeqMovements() error {
	if p.mov != nil {
		return nil
	}
	for i, s := range p.cfg.Patterns {
		if s.Type != PatSequence {
			continue
		}
		for k, st := range s.Sequence.Steps {
			if st.Kind == SeqMovement {
				return fmt.Errorf("%w: pattern %q (#%d): steps[%d].kind: movement, but no movement specs are configured (--movements)", ErrPatternSpec, s.ID, i+1, k)
			}
		}
	}
	return nil
}

// movementValue is a movement field of the event (NaN on other kinds).
func (x *seqEv) movementValue(f SeqField) float64 {
	if x.kind != SeqMovement {
		return math.NaN()
	}
	if f == SeqChangePct {
		return x.chg
	}
	return x.ref
}

// onSequenceMovement runs the sequence patterns with a movement step on the
// movement dst[i] of trade ev (which onSequences saw just before) and
// appends their matches.
func (p *Pipeline) onSequenceMovement(slot int, ev *codec.Event, i int, dst []Output) []Output {
	sq := p.seq
	st := &sq.slots[slot]
	if !st.init || !st.seen || st.lastTs != ev.TsNs {
		return dst // the trade was late for sequences
	}
	mv := dst[i]
	nan := math.NaN()
	x := seqEv{kind: SeqMovement, price: mv.Price, volume: ev.Volume, open: nan, high: nan, low: nan, bid: nan, ask: nan,
		vals: st.vals, chg: mv.Value * 100, ref: mv.Values[0]}
	if q := &p.quotes[slot]; q.bid != 0 {
		x.bid = q.bid
	}
	if q := &p.quotes[slot]; q.ask != 0 {
		x.ask = q.ask
	}
	first := len(dst)
	for k, pi := range st.apply {
		pat := &sq.pats[pi]
		if pat.kinds&SeqMovement == 0 {
			continue
		}
		run := &st.runs[k]
		dst = p.seqEvent(st, pat, run, &x, ev, dst)
		// A partial match started by this movement is keyed apart from
		// one started by its trade or by another spec's movement of the
		// same trade: the input key mixed with the movement spec.
		if n := len(run.parts); n > 0 && run.parts[n-1].n0 == run.seen {
			pt := &run.parts[n-1]
			pt.key = OutputKey(OutPattern, pat.op, ev.Symbol, pt.key, uint64(mv.Op)+1)
		}
	}
	if len(dst)-first > 1 {
		seqSortByTs(dst[first:])
	}
	return dst
}
