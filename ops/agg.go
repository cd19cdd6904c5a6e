package ops

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// AggregationKind is a window aggregation (the specification's
// AggregationFunction variants).
type AggregationKind uint8

// Aggregations. The zero value is invalid.
const (
	AggCount        AggregationKind = iota + 1 // number of trades
	AggSum                                     // Σ x
	AggAvg                                     // Σ x / n
	AggMin                                     // min x
	AggMax                                     // max x
	AggStdDev                                  // population standard deviation (Welford/Chan, numerically stable)
	AggStdDevSample                            // sample standard deviation (n−1); null for one trade
	AggPercentile                              // nearest-rank percentile: exact up to PercentileExactMax trades, Sketch above
	AggVWAP                                    // Σ x·volume / Σ volume; null when Σ volume = 0
	AggTWAP                                    // Σ x_i·(t_{i+1}−t_i) / (end−t_first), the last trade weighted until the window end
	AggOHLCV                                   // open, high, low, close of x and Σ volume (Output.Values[0:5])
	AggCustom                                  // a registered AggregationFunc over WindowStats
)

var aggKindNames = [...]string{"", "count", "sum", "avg", "min", "max", "stddev", "stddev_samp", "percentile", "vwap", "twap", "ohlcv", "custom"}

func (k AggregationKind) String() string {
	if k != 0 && int(k) < len(aggKindNames) {
		return aggKindNames[k]
	}
	return "invalid"
}

// MaxAggParams bounds the parameters of a custom aggregation.
const MaxAggParams = 4

// Aggregation is a parsed AGG: a kind plus its parameters.
type Aggregation struct {
	Kind AggregationKind
	// PercentileMilli is the percentile in thousandths of a percent for
	// AggPercentile: p95 = 95000, p99.9 = 99900; in (0, 100000].
	PercentileMilli int32
	// Name and Params of an AggCustom: `name` or `name(p1;p2)`.
	Name    string
	Params  [MaxAggParams]float64
	NParams uint8
}

// String renders the AGG text: "avg", "p99.9", "band(2)".
func (a Aggregation) String() string {
	switch a.Kind {
	case AggPercentile:
		q := strconv.FormatFloat(float64(a.PercentileMilli)/1000, 'f', -1, 64)
		return "p" + q
	case AggCustom:
		if a.NParams == 0 {
			return a.Name
		}
		var b strings.Builder
		b.WriteString(a.Name)
		b.WriteByte('(')
		for i := 0; i < int(a.NParams); i++ {
			if i > 0 {
				b.WriteByte(';')
			}
			b.WriteString(strconv.FormatFloat(a.Params[i], 'g', -1, 64))
		}
		b.WriteByte(')')
		return b.String()
	}
	return a.Kind.String()
}

// ParseAggregation parses an AGG: count, sum, avg, min, max, stddev,
// stddev_samp, pNN or pNN.NNN (0 < NN <= 100, nearest rank), vwap, twap,
// ohlcv, or a registered custom name with optional parameters
// `name(p1;p2)` (at most MaxAggParams finite numbers).
func ParseAggregation(s string) (Aggregation, error) {
	switch s {
	case "count":
		return Aggregation{Kind: AggCount}, nil
	case "sum":
		return Aggregation{Kind: AggSum}, nil
	case "avg":
		return Aggregation{Kind: AggAvg}, nil
	case "min":
		return Aggregation{Kind: AggMin}, nil
	case "max":
		return Aggregation{Kind: AggMax}, nil
	case "stddev":
		return Aggregation{Kind: AggStdDev}, nil
	case "stddev_samp":
		return Aggregation{Kind: AggStdDevSample}, nil
	case "vwap":
		return Aggregation{Kind: AggVWAP}, nil
	case "twap":
		return Aggregation{Kind: AggTWAP}, nil
	case "ohlcv":
		return Aggregation{Kind: AggOHLCV}, nil
	}
	if len(s) > 1 && s[0] == 'p' && s[1] >= '0' && s[1] <= '9' {
		q, ok := aggParsePercentile(s[1:])
		if !ok {
			return Aggregation{}, fmt.Errorf("bad percentile %q (want pNN or pNN.N with 0 < NN <= 100, at most 3 decimals)", s)
		}
		return Aggregation{Kind: AggPercentile, PercentileMilli: q}, nil
	}
	name, params := s, ""
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return Aggregation{}, fmt.Errorf("bad aggregation %q: unbalanced parentheses", s)
		}
		name, params = s[:i], s[i+1:len(s)-1]
	}
	a := Aggregation{Kind: AggCustom, Name: name}
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			if int(a.NParams) == MaxAggParams {
				return Aggregation{}, fmt.Errorf("aggregation %q: more than %d parameters", s, MaxAggParams)
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || !winFinite(v) {
				return Aggregation{}, fmt.Errorf("aggregation %q: bad parameter %q", s, p)
			}
			a.Params[a.NParams] = v
			a.NParams++
		}
	}
	if err := a.validate(); err != nil {
		return Aggregation{}, err
	}
	return a, nil
}

// aggParsePercentile parses "95", "99.9", "99.999", "100" into thousandths.
func aggParsePercentile(s string) (int32, bool) {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if intPart == "" || len(intPart) > 3 || (hasFrac && (frac == "" || len(frac) > 3)) {
		return 0, false
	}
	var q int64
	for _, c := range intPart {
		if c < '0' || c > '9' {
			return 0, false
		}
		q = q*10 + int64(c-'0')
	}
	q *= 1000
	scale := int64(100)
	for _, c := range frac {
		if c < '0' || c > '9' {
			return 0, false
		}
		q += int64(c-'0') * scale
		scale /= 10
	}
	if q <= 0 || q > 100000 {
		return 0, false
	}
	return int32(q), true
}

func (a Aggregation) validate() error {
	switch a.Kind {
	case AggCount, AggSum, AggAvg, AggMin, AggMax, AggStdDev, AggStdDevSample, AggVWAP, AggTWAP, AggOHLCV:
		return nil
	case AggPercentile:
		if a.PercentileMilli <= 0 || a.PercentileMilli > 100000 {
			return fmt.Errorf("percentile %d/1000 outside (0, 100]", a.PercentileMilli)
		}
		return nil
	case AggCustom:
		f := aggLookup(a.Name)
		if f == nil {
			return fmt.Errorf("unknown aggregation %q (built in: count, sum, avg, min, max, stddev, stddev_samp, pNN, vwap, twap, ohlcv; registered: %s)",
				a.Name, strings.Join(RegisteredAggregations(), ", "))
		}
		if int(a.NParams) > MaxAggParams {
			return fmt.Errorf("aggregation %q: too many parameters", a.Name)
		}
		if _, err := f(a.Params[:a.NParams]); err != nil {
			return fmt.Errorf("aggregation %q: %w", a.Name, err)
		}
		return nil
	}
	return errors.New("unknown aggregation")
}

// aggMask says which parts of an aggState an operator maintains.
type aggMask uint16

const (
	aggNeedSum aggMask = 1 << iota // Σx (Neumaier-compensated)
	aggNeedVol                     // Σv
	aggNeedPV                      // Σx·v
	aggNeedMom                     // Welford mean and M2
	aggNeedMin                     // min x
	aggNeedMax                     // max x
	aggNeedFL                      // first and last trade by event time
	aggNeedTW                      // TWAP integral (with aggNeedFL)

	aggInvertibleMask = aggNeedSum | aggNeedVol | aggNeedPV
	aggStatsMask      = aggNeedSum | aggNeedVol | aggNeedPV | aggNeedMom | aggNeedMin | aggNeedMax | aggNeedFL
)

// aggMaskOf returns what an aggregation needs, and whether it is invertible
// (the window can subtract an evicted pane instead of recombining).
func aggMaskOf(k AggregationKind) (m aggMask, invertible bool) {
	switch k {
	case AggCount, AggPercentile:
		return 0, true
	case AggSum, AggAvg:
		return aggNeedSum, true
	case AggVWAP:
		return aggNeedPV | aggNeedVol, true
	case AggMin:
		return aggNeedMin, false
	case AggMax:
		return aggNeedMax, false
	case AggStdDev, AggStdDevSample:
		return aggNeedMom, false
	case AggTWAP:
		return aggNeedFL | aggNeedTW, false
	case AggOHLCV:
		return aggNeedFL | aggNeedMin | aggNeedMax | aggNeedVol, false
	}
	return aggStatsMask, false // custom: every summary statistic
}

// aggState is the fixed-size, pointer-free summary of a set of trades that
// every window is built from: a pane of a tumbling or hopping window, a
// session, a count chunk, or a prefix/suffix in a sliding aggregator. Which
// fields are live depends on the operator's aggMask. Two states of
// adjacent time ranges merge (merge) and, for the invertible parts, subtract
// (sub). Fields are exported for encoding/binary checkpoints only.
type aggState struct {
	N               int64
	Sum, SumC       float64 // Σx and its Neumaier compensation
	Vol, VolC       float64 // Σv
	PV, PVC         float64 // Σx·v
	Mean, M2        float64 // Welford
	Min, Max        float64
	FirstTs, LastTs int64
	First, Last     float64 // x of the first and last trade by (event time, arrival)
	Integ           float64 // Σ x_i·(t_{i+1}−t_i) over consecutive trades inside
}

// aggNeumaier adds x to the compensated sum (s, c).
func aggNeumaier(s, c *float64, x float64) {
	t := *s + x
	if math.Abs(*s) >= math.Abs(x) {
		*c += (*s - t) + x
	} else {
		*c += (x - t) + *s
	}
	*s = t
}

// twMiddle reports whether a trade at ts lands strictly inside a's trades
// (after the first, before the last), where its TWAP effect needs its
// neighbours.
func (a *aggState) twMiddle(ts int64) bool {
	return a.N > 0 && ts >= a.FirstTs && ts < a.LastTs
}

// add folds one trade (x, volume v, time ts) into a. A trade at the same
// time as others sorts after them (arrival order). For aggNeedTW with
// a.twMiddle(ts), prevX must be the value of the trade just before it and
// nextTs the time of the trade just after it (from the sorted buffer).
func (a *aggState) add(m aggMask, x, v float64, ts int64, prevX float64, nextTs int64) {
	if m == aggNeedSum { // count, sum, avg: the common case, without the mask tests
		a.N++
		aggNeumaier(&a.Sum, &a.SumC, x)
		return
	}
	if m&aggNeedTW != 0 && a.N > 0 {
		switch {
		case ts >= a.LastTs:
			a.Integ += a.Last * float64(ts-a.LastTs)
		case ts < a.FirstTs:
			a.Integ += x * float64(a.FirstTs-ts)
		default:
			a.Integ += (x - prevX) * float64(nextTs-ts)
		}
	}
	if m&aggNeedFL != 0 {
		if a.N == 0 {
			a.First, a.FirstTs, a.Last, a.LastTs = x, ts, x, ts
		} else {
			if ts < a.FirstTs {
				a.First, a.FirstTs = x, ts
			}
			if ts >= a.LastTs {
				a.Last, a.LastTs = x, ts
			}
		}
	}
	if m&aggNeedMin != 0 && (a.N == 0 || x < a.Min) {
		a.Min = x
	}
	if m&aggNeedMax != 0 && (a.N == 0 || x > a.Max) {
		a.Max = x
	}
	a.N++
	if m&aggNeedSum != 0 {
		aggNeumaier(&a.Sum, &a.SumC, x)
	}
	if m&aggNeedVol != 0 {
		aggNeumaier(&a.Vol, &a.VolC, v)
	}
	if m&aggNeedPV != 0 {
		aggNeumaier(&a.PV, &a.PVC, x*v)
	}
	if m&aggNeedMom != 0 {
		d := x - a.Mean
		a.Mean += d / float64(a.N)
		a.M2 += d * (x - a.Mean)
	}
}

// merge folds b into a, where every trade of b comes after every trade of a
// in (event time, arrival) order; this matters for first/last and TWAP only.
func (a *aggState) merge(m aggMask, b *aggState) {
	if b.N == 0 {
		return
	}
	if a.N == 0 {
		*a = *b
		return
	}
	if m&aggNeedTW != 0 {
		a.Integ += b.Integ + a.Last*float64(b.FirstTs-a.LastTs)
	}
	if m&aggNeedFL != 0 {
		a.Last, a.LastTs = b.Last, b.LastTs
	}
	if m&aggNeedMin != 0 && b.Min < a.Min {
		a.Min = b.Min
	}
	if m&aggNeedMax != 0 && b.Max > a.Max {
		a.Max = b.Max
	}
	if m&aggNeedMom != 0 {
		na, nb := float64(a.N), float64(b.N)
		n := na + nb
		d := b.Mean - a.Mean
		a.Mean += d * nb / n
		a.M2 += b.M2 + d*d*na*nb/n
	}
	a.N += b.N
	if m&aggNeedSum != 0 {
		aggNeumaier(&a.Sum, &a.SumC, b.Sum)
		a.SumC += b.SumC
	}
	if m&aggNeedVol != 0 {
		aggNeumaier(&a.Vol, &a.VolC, b.Vol)
		a.VolC += b.VolC
	}
	if m&aggNeedPV != 0 {
		aggNeumaier(&a.PV, &a.PVC, b.PV)
		a.PVC += b.PVC
	}
}

// sub removes b from a for the invertible parts (count and the compensated
// sums). Only valid when m is within aggInvertibleMask and b was merged in.
func (a *aggState) sub(m aggMask, b *aggState) {
	if b.N == 0 {
		return
	}
	a.N -= b.N
	if m&aggNeedSum != 0 {
		aggNeumaier(&a.Sum, &a.SumC, -b.Sum)
		a.SumC -= b.SumC
	}
	if m&aggNeedVol != 0 {
		aggNeumaier(&a.Vol, &a.VolC, -b.Vol)
		a.VolC -= b.VolC
	}
	if m&aggNeedPV != 0 {
		aggNeumaier(&a.PV, &a.PVC, -b.PV)
		a.PVC -= b.PVC
	}
	if a.N == 0 {
		*a = aggState{}
	}
}

// twap returns the time-weighted average of a's trades over a window ending
// at endNs: each trade weighted by the time until the next one, the last one
// until endNs. When the weights sum to zero (every trade at endNs) it is the
// last trade's value; NaN for no trades.
func (a *aggState) twap(endNs int64) float64 {
	if a.N == 0 {
		return math.NaN()
	}
	total := endNs - a.FirstTs
	if total <= 0 {
		return a.Last
	}
	tail := endNs - a.LastTs
	if tail < 0 {
		tail = 0
	}
	return (a.Integ + a.Last*float64(tail)) / float64(total)
}

// WindowStats is the summary of one window handed to custom aggregations and
// returned by WindowOperator.PartialStats. Statistics the operator does not
// maintain for its aggregation are NaN (custom aggregations get all of them
// except TWAP and percentiles, which need the raw trades).
type WindowStats struct {
	StartNs, EndNs      int64
	Count               int64
	Sum, Mean           float64
	Min, Max            float64
	Variance            float64 // population variance
	Open, Close         float64 // the first and last trade by event time (ties: arrival order)
	FirstTsNs, LastTsNs int64
	Volume, VWAP        float64
	TWAP                float64
}

// fill sets s from a for a window [start, end) whose TWAP weighs the last
// trade until twEnd.
func (s *WindowStats) fill(m aggMask, a *aggState, start, end, twEnd int64) {
	nan := math.NaN()
	*s = WindowStats{StartNs: start, EndNs: end, Count: a.N,
		Sum: nan, Mean: nan, Min: nan, Max: nan, Variance: nan, Open: nan, Close: nan,
		Volume: nan, VWAP: nan, TWAP: nan}
	if a.N == 0 {
		return
	}
	n := float64(a.N)
	if m&aggNeedSum != 0 {
		s.Sum = a.Sum + a.SumC
		s.Mean = s.Sum / n
	}
	if m&aggNeedMom != 0 {
		s.Mean = a.Mean
		s.Variance = max(a.M2, 0) / n
	}
	if m&aggNeedMin != 0 {
		s.Min = a.Min
	}
	if m&aggNeedMax != 0 {
		s.Max = a.Max
	}
	if m&aggNeedFL != 0 {
		s.Open, s.Close, s.FirstTsNs, s.LastTsNs = a.First, a.Last, a.FirstTs, a.LastTs
	}
	if m&aggNeedVol != 0 {
		s.Volume = a.Vol + a.VolC
	}
	if m&aggNeedPV != 0 && m&aggNeedVol != 0 {
		if v := a.Vol + a.VolC; v != 0 {
			s.VWAP = (a.PV + a.PVC) / v
		}
	}
	if m&aggNeedTW != 0 {
		s.TWAP = a.twap(twEnd)
	}
}

// Value computes a summary aggregation (every kind but AggPercentile and
// AggCustom) from s; NaN when s lacks what it needs. It lets a caller apply
// any aggregation to PartialStats on demand (the specification's
// AggregateWindow(window, fn)).
func (s *WindowStats) Value(k AggregationKind) float64 {
	if s.Count == 0 {
		return math.NaN()
	}
	switch k {
	case AggCount:
		return float64(s.Count)
	case AggSum:
		return s.Sum
	case AggAvg:
		return s.Mean
	case AggMin:
		return s.Min
	case AggMax:
		return s.Max
	case AggStdDev:
		return math.Sqrt(s.Variance)
	case AggStdDevSample:
		if s.Count < 2 {
			return math.NaN()
		}
		return math.Sqrt(s.Variance * float64(s.Count) / float64(s.Count-1))
	case AggVWAP:
		return s.VWAP
	case AggTWAP:
		return s.TWAP
	case AggOHLCV:
		return s.Close
	}
	return math.NaN()
}
