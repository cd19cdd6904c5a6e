package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// WriteE2ESVG draws the report's latency percentile curves, one panel per
// rate, each with the reference program and every engine wait strategy:
// the x axis is the percentile on the usual HdrHistogram scale
// (log10 of 1/(1-p): 0, 90, 99, 99.9, ...), the y axis the latency in µs,
// logarithmic. Written by hand: no plotting dependency.
func WriteE2ESVG(w io.Writer, rep *E2EReport) error {
	var rates []int
	for _, r := range rep.Results {
		if !slices.Contains(rates, r.Rate) {
			rates = append(rates, r.Rate)
		}
	}
	const (
		panelW, panelH       = 420, 300
		left, right, top, bt = 60, 15, 40, 45
	)
	cols := min(2, max(1, len(rates)))
	rows := (len(rates) + cols - 1) / cols
	width, height := cols*panelW, rows*panelH+40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" text-anchor="middle">qstream bench e2e: latency from intended send time by percentile (%s)</text>`+"\n", width/2, xmlEscape(rep.Machine.CPU))
	const xMax = 6.0 // the max is drawn at 6 decades
	for pi, rate := range rates {
		ox, oy := (pi%cols)*panelW, 30+(pi/cols)*panelH
		pw, ph := float64(panelW-left-right), float64(panelH-top-bt)
		// y range over every curve of the panel, in whole decades.
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, r := range rep.Results {
			if r.Rate != rate {
				continue
			}
			for _, p := range r.Curve {
				if p.Us > 0 {
					lo, hi = math.Min(lo, p.Us), math.Max(hi, p.Us)
				}
			}
		}
		if math.IsInf(lo, 1) {
			lo, hi = 1, 10
		}
		ylo, yhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if yhi <= ylo {
			yhi = ylo + 1
		}
		X := func(pct float64) float64 {
			d := xMax
			if pct < 100 {
				d = math.Min(5, math.Log10(1/(1-pct/100)))
			}
			return float64(ox+left) + pw*d/xMax
		}
		Y := func(v float64) float64 {
			f := (math.Log10(math.Max(v, 1e-3)) - ylo) / (yhi - ylo)
			return float64(oy+top) + ph*(1-min(1, max(0, f)))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" text-anchor="middle">%s msg/s</text>`+"\n", ox+left+int(pw/2), oy+top-10, num(float64(rate)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", ox+left, oy+top, pw, ph)
		for d := ylo; d <= yhi; d++ {
			y := Y(math.Pow(10, d))
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, ox+left, y, float64(ox+left)+pw, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+left-4, y+4, decadeLabel(d))
		}
		for i, lbl := range []string{"0", "90", "99", "99.9", "99.99", "99.999", "max"} {
			pct := 100 * (1 - math.Pow(10, -float64(i)))
			if lbl == "max" {
				pct = 100
			}
			x := X(pct)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`, x, oy+top, x, float64(oy+top)+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, float64(oy+top)+ph+14, lbl)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="middle">percentile</text>`+"\n", ox+left+int(pw/2), float64(oy+top)+ph+30)
		fmt.Fprintf(&b, `<text x="%d" y="%d" transform="rotate(-90 %d %d)" text-anchor="middle">latency</text>`+"\n", ox+14, oy+top+int(ph/2), ox+14, oy+top+int(ph/2))
		legend := 0
		for _, r := range rep.Results {
			if r.Rate != rate || len(r.Curve) == 0 {
				continue
			}
			color, dash := seriesStyle(r)
			var pts []string
			for _, p := range r.Curve {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", X(p.Pct), Y(p.Us)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
			ly := oy + top + 12 + 14*legend
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d">%s</text>`+"\n",
				ox+left+8, ly-4, ox+left+28, ly-4, color, dash, ox+left+32, ly, xmlEscape(seriesName(r)))
			legend++
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func seriesName(r E2EResult) string {
	if r.Target == TargetReference {
		return "reference (read, parse, write)"
	}
	return "qstream run, wait " + r.Wait
}

func seriesStyle(r E2EResult) (color, dash string) {
	if r.Target == TargetReference {
		return "#555", ` stroke-dasharray="5,3"`
	}
	switch r.Wait {
	case "park":
		return "#1f77b4", ""
	case "yield":
		return "#d62728", ""
	}
	return "#2ca02c", ""
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// decadeLabel names the latency 10^d µs.
func decadeLabel(d float64) string {
	switch {
	case d < 0:
		return strconv.FormatFloat(math.Pow(10, d), 'g', -1, 64) + "µs"
	case d < 3:
		return strconv.FormatFloat(math.Pow(10, d), 'f', 0, 64) + "µs"
	case d < 6:
		return strconv.FormatFloat(math.Pow(10, d-3), 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(math.Pow(10, d-6), 'f', 0, 64) + "s"
}
