package bench

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms of the end-to-end benchmark: nanoseconds from 1 ns to
// latencyMaxNs, 3 significant digits. A value above the range is clamped to
// it (and so still counted), so a histogram's count is always the number of
// values recorded.
const (
	latencyMaxNs   = int64(60 * time.Second)
	latencySigFigs = 3
)

// NewLatencyHistogram returns an empty latency histogram (ns).
func NewLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxNs, latencySigFigs)
}

// RecordLatency records ns into h, clamped to the histogram's range.
func RecordLatency(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(1, ns), latencyMaxNs))
}

// Percentiles are the latency figures of one run, in microseconds (float,
// so that sub-microsecond floors keep their digits).
type Percentiles struct {
	Count  int64   `json:"count"` // values in the histogram
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p99_9_us"`
	P9999  float64 `json:"p99_99_us"`
	MaxUs  float64 `json:"max_us"`
}

// PercentilesOf reads the figures of h.
func PercentilesOf(h *hdrhistogram.Histogram) Percentiles {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return Percentiles{
		Count:  h.TotalCount(),
		MeanUs: h.Mean() / 1e3,
		P50Us:  us(h.ValueAtQuantile(50)),
		P90Us:  us(h.ValueAtQuantile(90)),
		P99Us:  us(h.ValueAtQuantile(99)),
		P999Us: us(h.ValueAtQuantile(99.9)),
		P9999:  us(h.ValueAtQuantile(99.99)),
		MaxUs:  us(h.Max()),
	}
}

// Ordered reports whether p50 <= p90 <= ... <= max, as percentiles of one
// histogram must be.
func (p Percentiles) Ordered() bool {
	v := p.values()
	for i := 1; i < len(v); i++ {
		if v[i] < v[i-1] {
			return false
		}
	}
	return true
}

func (p Percentiles) values() []float64 {
	return []float64{p.P50Us, p.P90Us, p.P99Us, p.P999Us, p.P9999, p.MaxUs}
}

// PercentileNames label Percentiles.values, in order.
var PercentileNames = []string{"p50", "p90", "p99", "p99.9", "p99.99", "max"}

// CurvePoint is one point of a latency percentile curve: the latency (µs)
// at percentile Pct.
type CurvePoint struct {
	Pct float64 `json:"pct"`
	Us  float64 `json:"us"`
}

// curveSteps is the resolution of Curve: points per decade of 1/(1-p).
const curveSteps = 10

// Curve samples h's percentile distribution from p0 to p99.999 (evenly in
// log10(1/(1-p)), the x axis of the usual HdrHistogram plot) and ends with
// the maximum at 100.
func Curve(h *hdrhistogram.Histogram) []CurvePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	var pts []CurvePoint
	for k := 0; k <= 5*curveSteps; k++ {
		pct := 100 * (1 - math.Pow(10, -float64(k)/curveSteps))
		v := h.ValueAtQuantile(pct)
		if k == 0 {
			v = h.Min() // ValueAtQuantile(0) is the bucket's lowest, possibly 0
		}
		pts = append(pts, CurvePoint{Pct: pct, Us: float64(v) / 1e3})
	}
	return append(pts, CurvePoint{Pct: 100, Us: float64(h.Max()) / 1e3})
}
