package metrics

import (
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/porta-project/porta"
)

// latencyBuckets are the upper bounds, in seconds, of the handler-latency
// histogram: 1, 2.5 and 5 times each power of ten from a microsecond to
// ten seconds, so that an in-memory handler (microseconds) and one that
// waits on a database (milliseconds to seconds) both get resolution.
var latencyBuckets = []float64{
	1e-6, 2.5e-6, 5e-6,
	1e-5, 2.5e-5, 5e-5,
	1e-4, 2.5e-4, 5e-4,
	1e-3, 2.5e-3, 5e-3,
	1e-2, 2.5e-2, 5e-2,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// Instrument wraps h in a Handler that serves each message with h and
// observes how long h took in the porta_handler_duration_seconds
// histogram; as a porta.Middleware it goes outermost in porta.Chain, to
// time the whole chain. A nil h means porta.Echo. The cost per message is
// one pair of time.Now calls and one histogram observation (and, rarely,
// an update of the window's maximum). A message whose handler panics is
// not observed; porta_panics_total counts it.
func (m *Metrics) Instrument(h porta.Handler) porta.Handler {
	if h == nil {
		h = porta.Echo
	}
	return &instrumented{next: h, m: m}
}

var _ porta.Handler = (*instrumented)(nil)

// instrumented is a Handler whose latency is measured.
type instrumented struct {
	next porta.Handler
	m    *Metrics
}

// ServeMessage serves m with the wrapped handler and observes its latency.
func (h *instrumented) ServeMessage(w porta.ResponseWriter, msg *porta.Message) {
	start := time.Now()
	h.next.ServeMessage(w, msg)
	h.m.observe(time.Since(start))
}

// observe counts one handler latency.
func (m *Metrics) observe(d time.Duration) {
	// The maximum first, the histogram after: Latency reads them in the
	// other order, so a message it counts is in its maximum too.
	// The maximum is written only when exceeded, which is rare once the
	// window has seen a few messages, so this is mostly one plain load.
	for n := int64(d); ; {
		cur := m.maxNano.Load()
		if n <= cur || m.maxNano.CompareAndSwap(cur, n) {
			break
		}
	}
	m.latency.Observe(d.Seconds())
}

// LatencyWindow is the span of recent time that Latency summarises: long
// enough to hold a few thousand messages on a busy server, short enough to
// show a change within seconds.
const LatencyWindow = 10 * time.Second

// Latency summarises the handler latencies observed by Instrument during
// a recent window, about LatencyWindow long.
type Latency struct {
	// Window is the span the figures cover: from the latest earlier call
	// of Latency made at least LatencyWindow ago (or from New) until now;
	// but from the first call after a pause of more than LatencyWindow
	// without calls, when that call is less than LatencyWindow ago.
	// Called every second, it is LatencyWindow or a second more, and less
	// in the first seconds after New or after such a pause; the first
	// call after a pause covers all of it.
	Window time.Duration
	// Count is the number of messages served in the window.
	Count uint64
	// P50, P90 and P99 are percentiles estimated from the histogram's
	// buckets, interpolating linearly within a bucket (as PromQL's
	// histogram_quantile does) and never above Max. They are zero when
	// Count is.
	P50, P90, P99 time.Duration
	// Max is the largest latency observed in the window, exactly.
	Max time.Duration
}

// Latency returns the percentiles and maximum of the handler latencies
// observed during the last LatencyWindow. It reads the histogram (a few
// microseconds) and is meant to be called about once a second, for a
// dashboard; calls from several goroutines share one history, and take
// their samples one at a time.
func (m *Metrics) Latency() Latency {
	// One call at a time takes its sample and adds it to the history:
	// a call that read the histogram after another took the maximum
	// would count a message without its latency in its maximum, and the
	// history would not be in time order.
	m.window.mu.Lock()
	now := time.Now()
	var pb dto.Metric
	if err := m.latency.Write(&pb); err != nil {
		m.window.mu.Unlock()
		return Latency{} // not for a histogram without exemplars
	}
	// After the histogram (see observe): a message counted there is in
	// this maximum, or in an earlier one.
	cur := latencySample{at: now, max: m.maxNano.Swap(0)}
	h := pb.GetHistogram()
	cur.count = h.GetSampleCount()
	cur.buckets = make([]uint64, len(latencyBuckets))
	for i, b := range h.GetBucket() {
		if i < len(cur.buckets) {
			cur.buckets[i] = b.GetCumulativeCount()
		}
	}
	base, peak := m.window.add(cur, now.Add(-LatencyWindow))
	m.window.mu.Unlock()

	lat := Latency{Window: now.Sub(base.at), Count: cur.count - base.count, Max: time.Duration(peak)}
	if lat.Count == 0 {
		return lat
	}
	delta := make([]uint64, len(cur.buckets))
	for i := range delta {
		delta[i] = cur.buckets[i] - base.buckets[i]
	}
	lat.P50 = quantile(0.50, delta, lat.Count, lat.Max)
	lat.P90 = quantile(0.90, delta, lat.Count, lat.Max)
	lat.P99 = quantile(0.99, delta, lat.Count, lat.Max)
	return lat
}

// latencySample is the histogram as read at one moment.
type latencySample struct {
	at      time.Time
	count   uint64
	buckets []uint64 // cumulative counts, one per bound of latencyBuckets
	max     int64    // the largest latency since the previous sample, in ns
}

// sampleSpacing is the least time between two kept samples but the
// newest: callers more frequent than this replace the newest sample
// instead of adding one, so the history holds at most
// LatencyWindow/sampleSpacing+2 samples.
const sampleSpacing = 500 * time.Millisecond

// latencyWindow is the recent history of latency samples, oldest first.
type latencyWindow struct {
	mu      sync.Mutex // held by Latency from its clock reading to add's return
	samples []latencySample
}

// init starts the history with an empty sample: nothing observed yet.
func (w *latencyWindow) init(now time.Time) {
	w.samples = []latencySample{{at: now, buckets: make([]uint64, len(latencyBuckets))}}
}

// add records cur and returns the baseline to subtract from it (the newest
// sample at or before cutoff, else the oldest) with the largest latency
// observed since that baseline, in ns. The caller holds w.mu.
//
// A baseline that the next sample follows more than LatencyWindow later
// is skipped for that sample: the call that took it, the first after a
// pause, covered the pause, and the calls after it cover the time since
// it, not the pause again until they are a window past it.
func (w *latencyWindow) add(cur latencySample, cutoff time.Time) (base latencySample, peak int64) {
	first := 0
	for i, s := range w.samples {
		if s.at.After(cutoff) {
			break
		}
		first = i
	}
	if first+1 < len(w.samples) && w.samples[first+1].at.Sub(w.samples[first].at) > LatencyWindow {
		first++
	}
	w.samples = append(w.samples[:0], w.samples[first:]...)
	// The newest sample is replaced while it is within sampleSpacing of
	// the one before it (not of cur: callers every 300 ms would then
	// replace it for ever, and the history would stop moving on).
	if n := len(w.samples); n > 1 && cur.at.Sub(w.samples[n-2].at) < sampleSpacing {
		cur.max = max(cur.max, w.samples[n-1].max)
		w.samples[n-1] = cur
	} else {
		w.samples = append(w.samples, cur)
	}
	for _, s := range w.samples[1:] {
		peak = max(peak, s.max)
	}
	return w.samples[0], peak
}

// quantile estimates the q-quantile of total observations counted in
// cumulative buckets (bounded by latencyBuckets and then +Inf) by linear
// interpolation within the bucket that holds it, capped at limit.
func quantile(q float64, cum []uint64, total uint64, limit time.Duration) time.Duration {
	rank := q * float64(total)
	for i, c := range cum {
		if float64(c) < rank {
			continue
		}
		lo, prev := 0.0, uint64(0)
		if i > 0 {
			lo, prev = latencyBuckets[i-1], cum[i-1]
		}
		v := lo + (latencyBuckets[i]-lo)*(rank-float64(prev))/float64(c-prev)
		return min(time.Duration(v*float64(time.Second)), limit)
	}
	return limit // beyond the last bound: the maximum is the best estimate
}
