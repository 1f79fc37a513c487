package bench

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/porta-project/porta/frame"
)

// A Result is the report of a run. Its JSON form (the field tags) is what
// "porta bench --json" prints and what WriteSVG's callers read back;
// latencies and connection times are in microseconds.
type Result struct {
	// Label names the run in reports and charts.
	Label string `json:"label"`
	// Addr is the address that was loaded.
	Addr string `json:"addr"`
	// Engine is the engine that carried the load: "epoll" or "goroutine".
	Engine string `json:"engine"`
	// Framing is the framing's name: "line", "len" or "raw".
	Framing string `json:"framing"`
	// Expect is the expectation, as Config.Expect spells it.
	Expect string `json:"expect"`
	// Conns is the number of connections.
	Conns int `json:"conns"`
	// Pipeline is the number of messages each connection kept
	// outstanding.
	Pipeline int `json:"pipeline"`
	// Size is the message body size in bytes, without the framing.
	Size int `json:"size"`
	// Rate is the open model's target in messages per second; zero for
	// the closed model.
	Rate float64 `json:"rate,omitempty"`
	// WarmupSeconds is the unmeasured time before the measured one.
	WarmupSeconds float64 `json:"warmup_seconds,omitempty"`

	// Messages is the number of correct replies in the measured time.
	Messages int64 `json:"messages"`
	// Seconds is the measured time: Config.Duration, or less if the run
	// was interrupted or every connection ended before it; with
	// Config.Messages, until the last reply counted.
	Seconds float64 `json:"seconds"`
	// MsgsPerSec is Messages per second of measured time.
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// MBPerSec is the framed messages' bytes (one direction) per second
	// of measured time, in megabytes of 10^6 bytes.
	MBPerSec float64 `json:"mb_per_sec"`

	// ErrorCount is the total of Errors.
	ErrorCount int64 `json:"error_count"`
	// Errors counts the errors by ErrorKind name; nil when there were
	// none. Errors in the warmup count too.
	Errors map[string]int64 `json:"errors,omitempty"`
	// Examples are the first few errors, in the order they happened.
	Examples []Example `json:"examples,omitempty"`

	// Latency summarises the correct replies' latencies.
	Latency Latency `json:"latency_us"`
	// Connect summarises the connection times.
	Connect Connect `json:"connect_us"`

	// Interrupted is set when the run was cancelled before its end.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Latency is a latency distribution in microseconds. All fields are zero
// when no reply was counted.
type Latency struct {
	// Min is the lowest latency.
	Min float64 `json:"min"`
	// Mean is the average latency.
	Mean float64 `json:"mean"`
	// P50 is the median: half of the replies took at most this long.
	P50 float64 `json:"p50"`
	// P90 is the 90th percentile.
	P90 float64 `json:"p90"`
	// P99 is the 99th percentile.
	P99 float64 `json:"p99"`
	// P999 is the 99.9th percentile.
	P999 float64 `json:"p99_9"`
	// Max is the highest latency.
	Max float64 `json:"max"`
	// Distribution is the latency at percentiles from 0 to 100, closer
	// together towards 100 (HdrHistogram's percentile ticks, 5 per
	// halving of the distance to 100%), for charts.
	Distribution []Point `json:"distribution,omitempty"`
}

// A Point is one point of a latency distribution: at most Micros
// microseconds for Percentile percent of the replies.
type Point struct {
	// Percentile is from 0 to 100.
	Percentile float64 `json:"p"`
	// Micros is the latency in microseconds.
	Micros float64 `json:"us"`
}

// Connect summarises the time connections took to open, in microseconds.
type Connect struct {
	// Count is the number of connections opened.
	Count int `json:"count"`
	// Min is the quickest connection's time.
	Min float64 `json:"min"`
	// Mean is the average connection time.
	Mean float64 `json:"mean"`
	// P50 is the median connection time.
	P50 float64 `json:"p50"`
	// P99 is the 99th percentile of the connection times.
	P99 float64 `json:"p99"`
	// Max is the slowest connection's time.
	Max float64 `json:"max"`
}

// An Example is one error of a run, for the report.
type Example struct {
	// Kind is the ErrorKind's name.
	Kind string `json:"kind"`
	// Conn is the connection's index, from 0.
	Conn int `json:"conn"`
	// Seq is the sequence number on the connection of the message whose
	// reply was due.
	Seq uint64 `json:"seq"`
	// Got is the reply, quoted and shortened, where there was one.
	Got string `json:"got,omitempty"`
	// Want is the expected reply, quoted and shortened.
	Want string `json:"want,omitempty"`
	// Err says more, such as the connection's error.
	Err string `json:"err,omitempty"`
	// At is when it happened, in seconds since the load started.
	At float64 `json:"at"`
}

// OK reports whether every message was answered correctly and no
// connection failed.
func (r *Result) OK() bool { return r.ErrorCount == 0 }

// distributionTicks is the number of distribution points per halving of
// the distance to 100%, as HdrHistogram's percentile output uses.
const distributionTicks = 5

// result merges the recorders of a run into its report. elapsed is the
// measured time.
func (p *plan) result(engine string, recs []*recorder, elapsed int64, interrupted bool) *Result {
	r := &Result{
		Label:         p.Label,
		Addr:          p.addr.String(),
		Engine:        engine,
		Framing:       p.Framing.String(),
		Expect:        p.expectName(),
		Conns:         p.Conns,
		Pipeline:      p.Pipeline,
		Size:          p.Size,
		Rate:          p.Rate,
		WarmupSeconds: p.Warmup.Seconds(),
		Seconds:       float64(max(elapsed, 0)) / 1e9,
		Interrupted:   interrupted,
	}
	lat := hdrhistogram.New(1, maxLatency, latencyDigits)
	conn := hdrhistogram.New(1, maxLatency, latencyDigits)
	var counts [numKinds]int64
	var examples []Example
	for _, rec := range recs {
		rec.flush()
		switch h := rec.lat.(type) {
		case *hdrhistogram.Histogram:
			lat.Merge(h)
		case *hdrhistogram.PackedHistogram:
			h.MergeInto(lat)
		}
		for _, c := range rec.connects {
			conn.RecordValue(min(max(c, 1), maxLatency))
		}
		for k, n := range rec.counts {
			counts[k] += n
		}
		examples = append(examples, rec.examples...)
		r.Messages += rec.messages
	}
	for k, n := range counts {
		if n > 0 {
			if r.Errors == nil {
				r.Errors = make(map[string]int64)
			}
			r.Errors[ErrorKind(k).String()] = n
			r.ErrorCount += n
		}
	}
	sort.SliceStable(examples, func(i, j int) bool { return examples[i].At < examples[j].At })
	if len(examples) > maxExamples {
		examples = examples[:maxExamples]
	}
	r.Examples = examples
	if r.Seconds > 0 {
		r.MsgsPerSec = float64(r.Messages) / r.Seconds
		r.MBPerSec = float64(r.Messages) * float64(p.wireSize) / r.Seconds / 1e6
	}
	if lat.TotalCount() > 0 {
		r.Latency = Latency{
			Min: micros(lat.Min()), Mean: lat.Mean() / 1e3,
			P50: micros(lat.ValueAtPercentile(50)), P90: micros(lat.ValueAtPercentile(90)),
			P99: micros(lat.ValueAtPercentile(99)), P999: micros(lat.ValueAtPercentile(99.9)),
			Max: micros(lat.Max()),
		}
		for _, b := range lat.CumulativeDistributionWithTicks(distributionTicks) {
			r.Latency.Distribution = append(r.Latency.Distribution, Point{Percentile: b.Quantile, Micros: micros(b.ValueAt)})
		}
	}
	if n := conn.TotalCount(); n > 0 {
		r.Connect = Connect{
			Count: int(n), Min: micros(conn.Min()), Mean: conn.Mean() / 1e3,
			P50: micros(conn.ValueAtPercentile(50)), P99: micros(conn.ValueAtPercentile(99)), Max: micros(conn.Max()),
		}
	}
	return r
}

func micros(ns int64) float64 { return float64(ns) / 1e3 }

// WriteText writes the result as a report for people: the load, the
// counts, throughput, latency percentiles, connection times and the first
// errors.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	model := "closed model"
	if r.Rate > 0 {
		model = fmt.Sprintf("open model at %s msgs/s", FormatCount(int64(r.Rate)))
	}
	fmt.Fprintf(&b, "%s (%s engine)\n", r.Label, r.Engine)
	fmt.Fprintf(&b, "  load        %s, expect %s, %s\n", r.shape(), r.Expect, model)
	warm := ""
	if r.WarmupSeconds > 0 {
		warm = fmt.Sprintf(" after %s warmup", seconds(r.WarmupSeconds))
	}
	interrupted := ""
	if r.Interrupted {
		interrupted = " (interrupted)"
	}
	fmt.Fprintf(&b, "  messages    %s in %s%s, %s errors%s\n", FormatCount(r.Messages), seconds(r.Seconds), warm, FormatCount(r.ErrorCount), interrupted)
	fmt.Fprintf(&b, "  throughput  %s msgs/s, %.2f MB/s\n", FormatCount(int64(r.MsgsPerSec+0.5)), r.MBPerSec)
	l := r.Latency
	fmt.Fprintf(&b, "  latency     min %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		usText(l.Min), usText(l.P50), usText(l.P90), usText(l.P99), usText(l.P999), usText(l.Max))
	c := r.Connect
	fmt.Fprintf(&b, "  connect     %d of %d connections, min %s  p50 %s  p99 %s  max %s\n",
		c.Count, r.Conns, usText(c.Min), usText(c.P50), usText(c.P99), usText(c.Max))
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors      %s\n", r.ErrorSummary())
		for _, ex := range r.Examples {
			fmt.Fprintf(&b, "    at %s conn %d message %d: %s", seconds(ex.At), ex.Conn, ex.Seq, ex.Kind)
			if ex.Err != "" {
				fmt.Fprintf(&b, ": %s", ex.Err)
			}
			b.WriteByte('\n')
			if ex.Got != "" {
				fmt.Fprintf(&b, "      got  %s\n", ex.Got)
			}
			if ex.Want != "" {
				fmt.Fprintf(&b, "      want %s\n", ex.Want)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shape describes the load's shape, such as "100 connections, pipeline 1,
// 63-byte line messages (64 bytes framed)".
func (r *Result) shape() string {
	s := fmt.Sprintf("%d connections, pipeline %d, %d-byte %s messages", r.Conns, r.Pipeline, r.Size, r.Framing)
	if f, err := frame.Parse(r.Framing); err == nil && frame.Overhead(f) > 0 {
		s += fmt.Sprintf(" (%d bytes framed)", r.Size+frame.Overhead(f))
	}
	return s
}

// usText formats microseconds with three significant digits and a unit.
func usText(us float64) string {
	d := time.Duration(us * 1e3)
	switch {
	case us == 0:
		return "0"
	case d < time.Millisecond:
		return strconv.FormatFloat(us, 'f', decimals(us), 64) + "µs"
	case d < time.Second:
		ms := us / 1e3
		return strconv.FormatFloat(ms, 'f', decimals(ms), 64) + "ms"
	}
	s := us / 1e6
	return strconv.FormatFloat(s, 'f', decimals(s), 64) + "s"
}

// decimals is how many decimals show three significant digits of v.
func decimals(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}

// seconds formats a time in seconds for the report.
func seconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 2, 64) + "s"
}

// group formats n with thousands separators: 1234567 as "1,234,567".

// ErrorSummary lists the error counts by kind, in name order, such as
// "missing 1, wrong 3"; empty when there were none.
func (r *Result) ErrorSummary() string {
	kinds := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = k + " " + FormatCount(r.Errors[k])
	}
	return strings.Join(parts, ", ")
}

// FormatCount formats n with thousands separators, such as "1,234,567",
// as the reports print counts.
func FormatCount(n int64) string {
	if n < 0 {
		return "-" + FormatCount(-n)
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
