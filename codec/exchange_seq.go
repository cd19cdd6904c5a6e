package codec

// SeqMode says what a SeqTracker expects of consecutive sequence numbers.
type SeqMode uint8

// Sequence modes.
const (
	// SeqStrict expects last+1: anything larger is a gap. For numbers that
	// count every message of a key: Coinbase trade_id per product, Binance
	// aggTrade/trade ids, Coinbase `sequence` on the full channel.
	SeqStrict SeqMode = iota
	// SeqMonotonic expects only growth: larger numbers are in order, equal or
	// smaller ones are duplicates. For numbers shared with messages the feed
	// does not carry, such as Coinbase `sequence` on the matches and ticker
	// channels, which legitimately skips the numbers of other channels.
	SeqMonotonic
)

// SeqStatus is the verdict of SeqTracker.Observe.
type SeqStatus uint8

// Sequence verdicts.
const (
	SeqFirst     SeqStatus = iota + 1 // the first number seen for the key
	SeqInOrder                        // the expected next number
	SeqGap                            // numbers were skipped (SeqStrict only)
	SeqDuplicate                      // not after the last one: a replay or duplicate
)

func (s SeqStatus) String() string {
	switch s {
	case SeqFirst:
		return "first"
	case SeqInOrder:
		return "in_order"
	case SeqGap:
		return "gap"
	case SeqDuplicate:
		return "duplicate"
	}
	return "invalid"
}

// SeqStats counts a SeqTracker's verdicts.
type SeqStats struct {
	Observed   uint64
	Gaps       uint64 // SeqGap verdicts
	Missing    uint64 // numbers skipped over all gaps
	Duplicates uint64 // SeqDuplicate verdicts
}

// maxSeqKeys bounds a SeqTracker's key space: keys are interned symbol ids,
// which are dense and bounded by the symbol table's size.
const maxSeqKeys = 1 << 22

// SeqTracker detects sequence gaps and duplicates per key (an interned
// symbol: Coinbase sequences and trade ids are per product). It is what the
// WebSocket client uses to report gaps across a reconnect, and what the
// adapters use on trade ids. Single-goroutine.
//
// State is a slice indexed by Symbol, so Observe allocates only when a new,
// larger symbol id first appears (bounded by the symbol table). Keys at or
// above 1<<22 are not tracked (Observe reports SeqFirst).
type SeqTracker struct {
	mode  SeqMode
	keys  []seqKey // keys[sym]
	stats SeqStats
}

type seqKey struct {
	last uint64 // the largest number seen
	seen bool
}

// NewSeqTracker returns an empty tracker.
func NewSeqTracker(mode SeqMode) *SeqTracker { return &SeqTracker{mode: mode} }

// Observe records seq for key and returns its verdict and, for SeqGap, how
// many numbers were skipped. A duplicate does not move the expected number
// back; a gap moves it past seq.
func (t *SeqTracker) Observe(key Symbol, seq uint64) (SeqStatus, uint64) {
	t.stats.Observed++
	if int(key) >= len(t.keys) {
		if key >= maxSeqKeys {
			return SeqFirst, 0
		}
		t.grow(key)
	}
	k := &t.keys[key]
	if !k.seen {
		k.last, k.seen = seq, true
		return SeqFirst, 0
	}
	if seq <= k.last {
		t.stats.Duplicates++
		return SeqDuplicate, 0
	}
	missing := seq - k.last - 1
	k.last = seq
	if missing == 0 || t.mode == SeqMonotonic {
		return SeqInOrder, 0
	}
	t.stats.Gaps++
	t.stats.Missing += missing
	return SeqGap, missing
}

func (t *SeqTracker) grow(key Symbol) {
	n := max(2*len(t.keys), int(key)+1, 64)
	n = min(n, maxSeqKeys)
	keys := make([]seqKey, n)
	copy(keys, t.keys)
	t.keys = keys
}

// Last returns the last number seen for key (the largest, unless it was a
// duplicate) and whether any was.
func (t *SeqTracker) Last(key Symbol) (uint64, bool) {
	if int(key) < len(t.keys) && t.keys[key].seen {
		return t.keys[key].last, true
	}
	return 0, false
}

// Forget drops what the tracker knows about key, so the next number is
// SeqFirst (after a venue resets its sequences, for example).
func (t *SeqTracker) Forget(key Symbol) {
	if int(key) < len(t.keys) {
		t.keys[key] = seqKey{}
	}
}

// Stats returns the counters.
func (t *SeqTracker) Stats() SeqStats { return t.stats }
