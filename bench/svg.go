package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart geometry, in SVG user units (pixels).
const (
	chartWidth   = 860
	chartHeight  = 500
	marginLeft   = 80
	marginRight  = 30
	marginTop    = 56
	marginBottom = 64
	plotWidth    = chartWidth - marginLeft - marginRight
	plotHeight   = chartHeight - marginTop - marginBottom
	// chartDecades is the x axis's extent: percentiles up to 99.999%,
	// where 1/(1-p) is 10^5.
	chartDecades = 5
)

// seriesColors are the series' colours, in order; they repeat after eight.
var seriesColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// percentileTicks are the x axis's labelled percentiles.
var percentileTicks = []struct {
	p     float64
	label string
}{{50, "50%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {99.999, "99.999%"}}

// WriteSVG draws the latency distributions of results as an SVG chart, in
// the way HdrHistogram plots are drawn: the x axis is the percentile on a
// logarithmic scale of 1/(1-p), labelled 50%, 90%, 99%, 99.9%, 99.99% and
// 99.999%; the y axis is the latency. Each result is one series: a <path>
// of class "series" whose id is "series-N-LABEL" and whose data-label is
// the result's label. Results without a distribution are drawn as empty
// series.
func WriteSVG(w io.Writer, results ...*Result) error {
	if len(results) == 0 {
		return errors.New("bench: no results to draw")
	}
	maxUs := 0.0
	for _, r := range results {
		for _, pt := range r.Latency.Distribution {
			maxUs = max(maxUs, pt.Micros)
		}
	}
	top, step := niceScale(maxUs)
	unit, div := "µs", 1.0
	switch {
	case top >= 2e6:
		unit, div = "s", 1e6
	case top >= 2e3:
		unit, div = "ms", 1e3
	}
	xOf := func(p float64) float64 {
		x := float64(chartDecades)
		if p < 100 {
			x = min(math.Log10(100/(100-p)), chartDecades)
		}
		return marginLeft + x/chartDecades*plotWidth
	}
	yOf := func(us float64) float64 { return marginTop + plotHeight - us/top*plotHeight }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, chartHeight)
	title := "Latency by percentile"
	if r := results[0]; r.Conns > 0 {
		title += ": " + r.shape()
	}
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15">%s</text>`+"\n", marginLeft, esc(title))

	// Grid and axes.
	b.WriteString(`<g class="grid" stroke="#dddddd" stroke-width="1">` + "\n")
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", marginLeft, yOf(v), marginLeft+plotWidth, yOf(v))
	}
	for _, t := range percentileTicks {
		x := xOf(t.p)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", x, marginTop, x, marginTop+plotHeight)
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333333"/>`+"\n",
		marginLeft, marginTop, plotWidth, plotHeight)
	b.WriteString(`<g class="x-axis" text-anchor="middle">` + "\n")
	for _, t := range percentileTicks {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", xOf(t.p), marginTop+plotHeight+18, esc(t.label))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">Percentile</text>`+"\n", marginLeft+plotWidth/2, chartHeight-16)
	b.WriteString("</g>\n")
	b.WriteString(`<g class="y-axis" text-anchor="end">` + "\n")
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f">%s</text>`+"\n", marginLeft-8, yOf(v)+4, esc(trimFloat(v/div)))
	}
	fmt.Fprintf(&b, `<text x="20" y="%d" transform="rotate(-90 20 %d)" text-anchor="middle">Latency (%s)</text>`+"\n",
		marginTop+plotHeight/2, marginTop+plotHeight/2, esc(unit))
	b.WriteString("</g>\n")

	// Series and legend.
	for i, r := range results {
		color := seriesColors[i%len(seriesColors)]
		label := r.Label
		if label == "" {
			label = fmt.Sprintf("run %d", i+1)
		}
		var d strings.Builder
		for j, pt := range r.Latency.Distribution {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, xOf(pt.Percentile), yOf(pt.Micros))
		}
		fmt.Fprintf(&b, `<path class="series" id="%s" data-label="%s" d="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></path>`+"\n",
			esc(seriesID(i, label)), esc(label), strings.TrimSpace(d.String()), color, esc(label))
		ly := marginTop + 16 + 18*i
		lx := marginLeft + 14
		fmt.Fprintf(&b, `<g class="legend"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`, lx, ly-4, lx+22, ly-4, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s  p50 %s  p99 %s  p99.9 %s  max %s</text></g>`+"\n", lx+30, ly, esc(label),
			esc(usText(r.Latency.P50)), esc(usText(r.Latency.P99)), esc(usText(r.Latency.P999)), esc(usText(r.Latency.Max)))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// seriesID makes an XML id for series i from its label: letters, digits,
// '-' and '_' kept, anything else turned into '-'.
func seriesID(i int, label string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "series-%d-", i)
	for _, c := range label {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// niceScale returns the top of an axis from 0 that holds v, and the step
// of about five ticks, both round numbers (1, 2 or 5 times a power of
// ten).
func niceScale(v float64) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 0.2
	}
	raw := v / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / pow; {
	case f <= 1:
		step = pow
	case f <= 2:
		step = 2 * pow
	case f <= 5:
		step = 5 * pow
	default:
		step = 10 * pow
	}
	return math.Ceil(v/step) * step, step
}

// trimFloat formats a tick value without needless decimals.
func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
