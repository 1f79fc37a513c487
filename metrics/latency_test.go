package metrics

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/porta-project/porta"
)

// TestLatencyPercentiles observes known latencies and checks the
// percentiles estimated from the buckets.
func TestLatencyPercentiles(t *testing.T) {
	m := New(&porta.Server{})
	if lat := m.Latency(); lat.Count != 0 || lat.P99 != 0 || lat.Max != 0 {
		t.Fatalf("Latency() before any message = %+v, want zeros", lat)
	}
	for range 90 {
		m.observe(8 * time.Microsecond) // bucket (5µs, 10µs]
	}
	for range 10 {
		m.observe(3 * time.Millisecond) // bucket (2.5ms, 5ms]
	}
	lat := m.Latency()
	if lat.Count != 100 {
		t.Errorf("Count = %d, want 100", lat.Count)
	}
	if lat.P50 <= 5*time.Microsecond || lat.P50 > 10*time.Microsecond {
		t.Errorf("P50 = %v, want within (5µs, 10µs]", lat.P50)
	}
	if lat.P90 != 10*time.Microsecond {
		t.Errorf("P90 = %v, want 10µs: the 90th observation tops its bucket", lat.P90)
	}
	if lat.P99 <= 2500*time.Microsecond || lat.P99 > 3*time.Millisecond {
		t.Errorf("P99 = %v, want within (2.5ms, 3ms]: its bucket, capped by the maximum", lat.P99)
	}
	if lat.Max != 3*time.Millisecond {
		t.Errorf("Max = %v, want 3ms", lat.Max)
	}

	m.observe(time.Minute) // beyond the last bucket
	if lat := m.Latency(); lat.Max != time.Minute || lat.Count != 101 {
		t.Errorf("after a 1-minute message: %+v, want Count 101 and Max 1m", lat)
	}
}

// TestLatencyWindow checks, on fake time, that Latency covers only the
// last LatencyWindow, and that frequent callers share one history.
func TestLatencyWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(&porta.Server{})
		for range 10 {
			m.observe(time.Millisecond)
		}
		time.Sleep(time.Second)
		if lat := m.Latency(); lat.Count != 10 || lat.Max != time.Millisecond || lat.Window != time.Second {
			t.Fatalf("after 1s: %+v, want Count 10, Max 1ms, Window 1s", lat)
		}

		time.Sleep(LatencyWindow + time.Second)
		if lat := m.Latency(); lat.Count != 0 || lat.Max != 0 {
			t.Fatalf("a window later: %+v, want nothing", lat)
		}

		m.observe(2 * time.Millisecond)
		for range 100 { // a burst of callers: one sample kept
			time.Sleep(time.Millisecond)
			if lat := m.Latency(); lat.Count != 1 || lat.Max != 2*time.Millisecond {
				t.Fatalf("burst: %+v, want Count 1, Max 2ms", lat)
			}
		}
		for range 60 {
			time.Sleep(time.Second)
			m.Latency()
		}
		m.window.mu.Lock()
		n := len(m.window.samples)
		m.window.mu.Unlock()
		if limit := int(LatencyWindow/sampleSpacing) + 2; n > limit {
			t.Errorf("history holds %d samples, want at most %d", n, limit)
		}
	})
}

// TestLatencyAfterPause checks, on fake time, that once Latency is
// called again after a pause (a dashboard opened on a server that has
// run for an hour), only the first call covers the pause: the next ones
// cover the time since that call, and not a message from long before.
func TestLatencyAfterPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(&porta.Server{})
		m.observe(time.Second)
		time.Sleep(time.Hour)
		if lat := m.Latency(); lat.Count != 1 || lat.Window != time.Hour {
			t.Fatalf("the first call after an hour: %+v, want the hour and its message", lat)
		}
		for i := 1; i < 12; i++ {
			time.Sleep(time.Second)
			m.observe(time.Millisecond)
			want := min(time.Duration(i)*time.Second, LatencyWindow)
			if lat := m.Latency(); lat.Window != want || lat.Max != time.Millisecond || lat.Count != uint64(want/time.Second) {
				t.Fatalf("%d s after it: %+v, want a window of %v with only its 1 ms messages", i, lat, want)
			}
		}
	})
}

// TestLatencyWindowFrequentCalls checks, on fake time, that the window
// moves on when Latency is called more often than samples are kept (every
// 300 ms, as several dashboards or a polling script do): a slow message
// leaves it once it is a window old.
func TestLatencyWindowFrequentCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := New(&porta.Server{})
		m.observe(50 * time.Millisecond)
		var lat Latency
		for range 50 { // 15 s
			time.Sleep(300 * time.Millisecond)
			lat = m.Latency()
		}
		if lat.Window > LatencyWindow+time.Second || lat.Count != 0 || lat.Max != 0 {
			t.Fatalf("15 s after the only message, called every 300 ms: %+v; want a window of about %v without it", lat, LatencyWindow)
		}
	})
}

// TestQuantileEdges checks the estimate at the ends of the bucket range.
func TestQuantileEdges(t *testing.T) {
	cum := make([]uint64, len(latencyBuckets))
	for i := range cum {
		cum[i] = 4 // all four observations in the first bucket, (0, 1µs]
	}
	if got := quantile(0.5, cum, 4, time.Second); got != 500*time.Nanosecond {
		t.Errorf("median of the first bucket = %v, want 500ns (its middle)", got)
	}
	if got := quantile(0.99, make([]uint64, len(latencyBuckets)), 4, 42*time.Second); got != 42*time.Second {
		t.Errorf("quantile beyond the last bucket = %v, want the maximum", got)
	}
}

// TestLatencyConcurrentCalls checks that callers of Latency at the same
// moment each find a message they count in their maximum: one must not
// read the histogram after another has taken the maximum and before that
// one has recorded it.
func TestLatencyConcurrentCalls(t *testing.T) {
	t.Parallel()
	const callers = 16
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
		m := New(&porta.Server{})
		m.observe(time.Second)
		var wg sync.WaitGroup
		var res [callers]Latency
		for j := range res {
			wg.Go(func() { res[j] = m.Latency() })
		}
		wg.Wait()
		for _, lat := range res {
			if lat.Count == 1 && lat.Max != time.Second {
				t.Fatalf("iteration %d: a call counted the 1 s message but returned %+v", i, lat)
			}
		}
	}
}
