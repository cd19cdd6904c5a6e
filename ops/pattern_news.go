package ops

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"qstream/codec"
	"qstream/ops/news"
)

// news_impact: a join of the news and market streams by symbol on event
// time. An article at event time T arms pattern P for each symbol S it is
// about (news.Result.Symbols: tagged or found in its text) when
//
//   - |sentiment| >= P.SentimentThreshold and sentiment != 0 (its sign is the
//     direction of the move looked for), and
//   - P has no Keywords, or one of them occurs in the headline or body
//     (ASCII case-insensitive, on word boundaries), and
//   - P has no Symbols, or S is one of them.
//
// The reference price is S's last trade before the article in this
// pipeline's arrival order, or, when S has not traded yet, S's first trade
// after it. A later trade of S at time t with T <= t <= T + P.TimeframeNs and
// a move (price − ref)/ref of at least P.Move in the sentiment's direction
// matches once, and disarms; a trade after T + timeframe disarms it too. A
// newer qualifying article about S re-arms P for S with its own time and
// reference. Armed entries are bounded (maxNewsArmed per pipeline; the one
// closest to expiry makes room, counted in NewsImpactDropped).
//
// Confidence = 0.5·min(1, |sentiment|) + 0.5·min(1, |move| / (2·P.Move)):
// half from how strong the article's tone is, half from how far the move
// went past the threshold (saturating at twice it).
//
// Details: sentiment, reference_price, current_price, move_percentage
// (signed, in percent), news_ts (the article's event time).

// maxNewsArmed bounds the armed (pattern, symbol) entries of one pipeline.
const maxNewsArmed = 4096

// nimpEntry is one armed (pattern, symbol).
type nimpEntry struct {
	symHash uint64 // codec.HashID of the symbol's name
	newsTs  int64
	expNs   int64
	sent    float64
	ref     float64 // NaN until the first trade after the article
	pat     uint16  // index into newsImpactSet.specs
	slot    int32   // the symbol's slot, or -1 while it has none
	next    int32   // next entry of the same slot (or of the unslotted list); -1 ends
}

// newsImpactSet is the pipeline's news_impact detector.
type newsImpactSet struct {
	specs   []PatternSpec
	ops     []uint16   // Op (index in the pipeline's pattern list) of specs[i]
	kw      [][][]byte // lower-cased keywords of specs[i]
	symSet  []map[uint64]bool
	ents    []nimpEntry
	free    int32   // head of the free list (through next); -1 none
	head    []int32 // per slot: first armed entry; -1 none
	loose   int32   // entries whose symbol has no slot here yet
	lastPx  []float64
	hashOf  []uint64 // per slot: HashID of its symbol name (0: not computed)
	bySym   map[uint64]int32
	names   SymbolNamer
	armed   int
	dropped uint64
}

// NewsImpactDropped counts armed entries evicted to make room.
func (p *Pipeline) NewsImpactDropped() uint64 {
	if p.nimp == nil {
		return 0
	}
	return p.nimp.dropped
}

func newNewsImpactSet(specs []PatternSpec, ops []uint16, names SymbolNamer, maxSlots int) (*newsImpactSet, error) {
	if names == nil {
		return nil, fmt.Errorf("%w: news_impact patterns need the symbol names (PipelineConfig.SymbolNames)", ErrPipelineConfig)
	}
	n := &newsImpactSet{specs: specs, ops: ops, names: names, free: -1, loose: -1,
		ents:   make([]nimpEntry, 0, maxNewsArmed),
		head:   make([]int32, maxSlots),
		lastPx: make([]float64, maxSlots),
		hashOf: make([]uint64, maxSlots),
		bySym:  make(map[uint64]int32, min(maxSlots, 1<<16)),
	}
	for i := range n.head {
		n.head[i] = -1
		n.lastPx[i] = math.NaN()
	}
	for _, s := range specs {
		var kws [][]byte
		for _, k := range s.Keywords {
			kws = append(kws, []byte(strings.ToLower(k)))
		}
		n.kw = append(n.kw, kws)
		var set map[uint64]bool
		if len(s.Symbols) > 0 {
			set = map[uint64]bool{}
			for _, sym := range s.Symbols {
				set[codec.HashID([]byte(sym))] = true
			}
		}
		n.symSet = append(n.symSet, set)
	}
	return n, nil
}

// newSlot indexes a symbol's new slot and moves the entries armed for it
// before it had one.
func (n *newsImpactSet) newSlot(slot int, sym codec.Symbol) {
	h := codec.HashID([]byte(n.names.Name(sym)))
	n.hashOf[slot] = h
	n.bySym[h] = int32(slot)
	prev := int32(-1)
	for i := n.loose; i >= 0; {
		e := &n.ents[i]
		next := e.next
		if e.symHash == h {
			if prev < 0 {
				n.loose = next
			} else {
				n.ents[prev].next = next
			}
			e.slot, e.next = int32(slot), n.head[slot]
			n.head[slot] = i
		} else {
			prev = i
		}
		i = next
	}
}

// keywordIn reports whether kw occurs in text on word boundaries, ignoring
// case.
func keywordIn(text, kw []byte) bool {
	for i := 0; i+len(kw) <= len(text); i++ {
		if i > 0 && isWordByte(text[i-1]) {
			continue
		}
		if j := i + len(kw); j < len(text) && isWordByte(text[j]) {
			continue
		}
		if bytes.EqualFold(text[i:i+len(kw)], kw) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c >= 0x80
}

// onNews arms the patterns an analysed article qualifies for.
func (n *newsImpactSet) onNews(p *Pipeline, ev *codec.Event, res *news.Result, dst []Output) []Output {
	if res.Sentiment == 0 {
		return dst
	}
	for pi := range n.specs {
		s := &n.specs[pi]
		if math.Abs(res.Sentiment) < s.SentimentThreshold {
			continue
		}
		if kws := n.kw[pi]; len(kws) > 0 {
			found := false
			for _, k := range kws {
				if keywordIn(res.Text, k) {
					found = true
					break
				}
			}
			if !found {
				continue
			}
		}
		for _, sym := range res.Symbols {
			h := codec.HashID([]byte(sym))
			if n.symSet[pi] != nil && !n.symSet[pi][h] {
				continue
			}
			n.arm(uint16(pi), h, ev.TsNs, ev.TsNs+s.TimeframeNs, res.Sentiment)
		}
	}
	return dst
}

// arm sets (or resets) the entry of pattern pi for the symbol with hash h
// and returns its index.
func (n *newsImpactSet) arm(pi uint16, h uint64, ts, exp int64, sent float64) int32 {
	slot, ok := n.bySym[h]
	if !ok {
		slot = -1
	}
	ref := math.NaN()
	if slot >= 0 {
		ref = n.lastPx[slot]
	}
	list := &n.loose
	if slot >= 0 {
		list = &n.head[slot]
	}
	for i := *list; i >= 0; i = n.ents[i].next {
		if e := &n.ents[i]; e.pat == pi && e.symHash == h {
			e.newsTs, e.expNs, e.sent, e.ref = ts, exp, sent, ref
			return i
		}
	}
	var i int32
	switch {
	case n.free >= 0:
		i = n.free
		n.free = n.ents[i].next
	case len(n.ents) < maxNewsArmed:
		n.ents = append(n.ents, nimpEntry{})
		i = int32(len(n.ents) - 1)
	default:
		i = n.evict()
		n.dropped++
	}
	n.ents[i] = nimpEntry{symHash: h, newsTs: ts, expNs: exp, sent: sent, ref: ref, pat: pi, slot: slot, next: *list}
	*list = i
	n.armed++
	return i
}

// evict unlinks the entry that expires first and returns its index.
func (n *newsImpactSet) evict() int32 {
	best := int32(0)
	for i := range n.ents {
		if n.ents[i].expNs < n.ents[best].expNs || (n.ents[i].expNs == n.ents[best].expNs && i < int(best)) {
			best = int32(i)
		}
	}
	n.unlink(best)
	n.armed--
	return best
}

// unlink removes entry i from its list (not from the free list).
func (n *newsImpactSet) unlink(i int32) {
	e := &n.ents[i]
	list := &n.loose
	if e.slot >= 0 {
		list = &n.head[e.slot]
	}
	for j := list; *j >= 0; j = &n.ents[*j].next {
		if *j == i {
			*j = e.next
			return
		}
	}
}

// onTrade checks the symbol's armed entries against a trade and records its
// price as the next reference.
func (n *newsImpactSet) onTrade(p *Pipeline, slot int, ev *codec.Event, dst []Output) []Output {
	n.lastPx[slot] = ev.Price
	first := len(dst)
	defer func() {
		if m := dst[first:]; len(m) > 1 && !patSortedByOp(m) {
			patSortByOp(m) // one trade's matches in pattern order, as the other patterns'
		}
	}()
	for i := n.head[slot]; i >= 0; {
		e := &n.ents[i]
		next := e.next
		switch {
		case ev.TsNs > e.expNs:
			n.release(slot, i)
		case ev.TsNs < e.newsTs:
			// a trade from before the article, arriving after it
		case math.IsNaN(e.ref):
			e.ref = ev.Price
		default:
			s := &n.specs[e.pat]
			move := (ev.Price - e.ref) / e.ref
			if (e.sent > 0 && move >= s.Move) || (e.sent < 0 && -move >= s.Move) {
				conf := 0.5*math.Min(1, math.Abs(e.sent)) + 0.5*math.Min(1, math.Abs(move)/(2*s.Move))
				if s.Move == 0 {
					conf = 0.5*math.Min(1, math.Abs(e.sent)) + 0.5
				}
				dst = append(dst, Output{Kind: OutPattern, Op: n.ops[e.pat], Symbol: ev.Symbol, Seq: ev.Seq,
					Key: p.inputKey(OutPattern, n.ops[e.pat], ev), TsNs: ev.TsNs, Price: ev.Price, Volume: ev.Volume,
					Value: conf, NValues: 5, IngestNs: ev.IngestNs})
				v := &dst[len(dst)-1].Values
				v[0], v[1], v[2], v[3], v[4] = e.sent, e.ref, ev.Price, move*100, seqTimeValue(e.newsTs)
				n.release(slot, i)
			}
		}
		i = next
	}
	return dst
}

// release unlinks entry i of slot's list and frees it.
func (n *newsImpactSet) release(slot int, i int32) {
	n.unlink(i)
	n.ents[i] = nimpEntry{next: n.free, slot: -1}
	n.free = i
	n.armed--
	_ = slot
}

// news_impact state encoding (inside the pipeline snapshot), little-endian:
//
//	magic "QNIM", version u16 (1), dropped u64, nslots u32, lastPx nslots × u64,
//	armed u32, then armed × {pat u16, symHash u64, newsTs i64, expNs i64, sent u64, ref u64}
//
// in a deterministic order (by slot, then the loose list, each in list
// order); slot links and the free list are rebuilt on load.
const nimpMagic = "QNIM"

// AppendState implements stateful.
func (n *newsImpactSet) AppendState(dst []byte) []byte {
	le := binary.LittleEndian
	dst = append(dst, nimpMagic...)
	dst = le.AppendUint16(dst, 1)
	dst = le.AppendUint64(dst, n.dropped)
	dst = le.AppendUint32(dst, uint32(len(n.lastPx)))
	for _, px := range n.lastPx {
		dst = le.AppendUint64(dst, math.Float64bits(px))
	}
	dst = le.AppendUint32(dst, uint32(n.armed))
	put := func(i int32) {
		for ; i >= 0; i = n.ents[i].next {
			e := &n.ents[i]
			dst = le.AppendUint16(dst, e.pat)
			dst = le.AppendUint64(dst, e.symHash)
			dst = le.AppendUint64(dst, uint64(e.newsTs))
			dst = le.AppendUint64(dst, uint64(e.expNs))
			dst = le.AppendUint64(dst, math.Float64bits(e.sent))
			dst = le.AppendUint64(dst, math.Float64bits(e.ref))
		}
	}
	for _, h := range n.head {
		put(h)
	}
	put(n.loose)
	return dst
}

// LoadState implements stateful. Slots must already be restored (the
// pipeline loads its slots before its operators), so bySym and hashOf are
// rebuilt from them.
func (n *newsImpactSet) LoadState(src []byte) error {
	bad := errors.New("news_impact state: truncated or corrupt")
	le := binary.LittleEndian
	if len(src) < 18 || !bytes.Equal(src[:4], []byte(nimpMagic)) || le.Uint16(src[4:]) != 1 {
		return bad
	}
	dropped := le.Uint64(src[6:])
	ns := int(le.Uint32(src[14:]))
	src = src[18:]
	if ns != len(n.lastPx) || len(src) < 8*ns+4 {
		return bad
	}
	for i := range n.lastPx {
		n.lastPx[i] = math.Float64frombits(le.Uint64(src[8*i:]))
	}
	src = src[8*ns:]
	armed := int(le.Uint32(src))
	src = src[4:]
	if armed > maxNewsArmed || len(src) != armed*42 {
		return bad
	}
	n.ents, n.free, n.loose, n.armed, n.dropped = n.ents[:0], -1, -1, 0, dropped
	for i := range n.head {
		n.head[i] = -1
	}
	for k := 0; k < armed; k++ {
		r := src[42*k:]
		pat := le.Uint16(r)
		if int(pat) >= len(n.specs) {
			return bad
		}
		h := le.Uint64(r[2:])
		ts, exp := int64(le.Uint64(r[10:])), int64(le.Uint64(r[18:]))
		// Loose for now: rebuildSlots links them once the pipeline's
		// slots are restored.
		n.ents = append(n.ents, nimpEntry{symHash: h, newsTs: ts, expNs: exp, pat: pat, slot: -1, next: n.loose,
			sent: math.Float64frombits(le.Uint64(r[26:])), ref: math.Float64frombits(le.Uint64(r[34:]))})
		n.loose = int32(len(n.ents) - 1)
		n.armed++
	}
	return nil
}

// rebuildSlots re-indexes the pipeline's slots and links every armed entry
// to its symbol's slot (after the pipeline's state was loaded).
func (n *newsImpactSet) rebuildSlots(p *Pipeline) {
	clear(n.bySym)
	for s := 0; s < p.nslots; s++ {
		h := codec.HashID([]byte(n.names.Name(p.syms[s])))
		n.hashOf[s] = h
		n.bySym[h] = int32(s)
	}
	var live []int32
	collect := func(i int32) {
		for ; i >= 0; i = n.ents[i].next {
			live = append(live, i)
		}
	}
	for s := range n.head {
		collect(n.head[s])
		n.head[s] = -1
	}
	collect(n.loose)
	n.loose = -1
	// Relink in reverse so that each list keeps its order.
	for k := len(live) - 1; k >= 0; k-- {
		i := live[k]
		e := &n.ents[i]
		list := &n.loose
		e.slot = -1
		if s, ok := n.bySym[e.symHash]; ok {
			e.slot, list = s, &n.head[s]
		}
		e.next = *list
		*list = i
	}
}

// newsImpactSpec reads the parameters of a news_impact pattern:
// sentiment_threshold in [0, 1] (default 0: any non-neutral article),
// timeframe (required), move (a fraction ≥ 0, required: 0.01 is 1 %) and
// keywords (optional list of non-empty words or phrases).
func newsImpactSpec(s PatternSpec, pj *patternJSON, only func(...string) error) (PatternSpec, error) {
	s.Type = PatNewsImpact
	if err := only("timeframe"); err != nil {
		return s, err
	}
	if pj.Steps != nil || pj.Within != nil {
		return s, fmt.Errorf("steps/within: not parameters of %s", pj.Type)
	}
	if pj.Timeframe == nil {
		return s, errors.New("timeframe: missing")
	}
	var err error
	if s.TimeframeNs, err = patDuration("timeframe", pj.Timeframe); err != nil {
		return s, err
	}
	num := func(field string, v any, def float64, lo, hi float64) (float64, error) {
		if v == nil {
			if math.IsNaN(def) {
				return 0, fmt.Errorf("%s: missing", field)
			}
			return def, nil
		}
		f, ok := v.(float64)
		if !ok {
			return 0, fmt.Errorf("%s: want a number, got %T", field, v)
		}
		if !(f >= lo && f <= hi) {
			return 0, fmt.Errorf("%s: %v outside [%v, %v]", field, f, lo, hi)
		}
		return f, nil
	}
	if s.SentimentThreshold, err = num("sentiment_threshold", pj.SentimentThreshold, 0, 0, 1); err != nil {
		return s, err
	}
	if s.Move, err = num("move", pj.Move, math.NaN(), 0, 10); err != nil {
		return s, err
	}
	if pj.Keywords != nil {
		list, ok := pj.Keywords.([]any)
		if !ok || len(list) == 0 {
			return s, errors.New("keywords: want a non-empty list of strings")
		}
		for _, k := range list {
			ks, ok := k.(string)
			if !ok || strings.TrimSpace(ks) == "" || len(ks) > 256 {
				return s, fmt.Errorf("keywords: %v is not a word or phrase (1..256 bytes)", k)
			}
			s.Keywords = append(s.Keywords, ks)
		}
	}
	return s, nil
}
