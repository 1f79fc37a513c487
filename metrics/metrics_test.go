package metrics_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/metrics"
	"github.com/porta-project/porta/portatest"
)

// ioTimeout bounds every client read and write, so that a server that
// fails to answer fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// TestCountsAfterExchange runs a known exchange (n echoed messages and the
// close word on one connection, one oversized message on another) and
// checks that every counter holds exactly what it should.
func TestCountsAfterExchange(t *testing.T) {
	t.Parallel()
	// Line framing: with Auto, a first read capped at MaxMessageSize
	// would see no newline in the oversized line and choose Raw.
	srv := &porta.Server{MaxMessageSize: 16, Framing: frame.Line}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(porta.HangUpOn("close", "closed", porta.Echo))
	s := portatest.Start(t, srv, "tcp")

	const n = 7
	var bytesIn, bytesOut int
	c := s.Dial(frame.Line)
	c.SetDeadline(time.Now().Add(ioTimeout))
	for i := range n {
		msg := fmt.Sprintf("message %d", i)
		exchange(t, c, msg, msg)
		bytesIn += len(msg)
		bytesOut += len(msg)
	}
	exchange(t, c, "close", "closed")
	bytesIn += len("close")
	bytesOut += len("closed")
	c.Close() // the server lingers for our close after hanging up

	long := s.Dial(frame.Line)
	long.SetDeadline(time.Now().Add(ioTimeout))
	tooLong := "ERR message too long (limit 16 bytes)"
	exchange(t, long, strings.Repeat("x", 17), tooLong)
	bytesOut += len(tooLong)
	long.Close()

	waitFor(t, "both connections closed", func() bool {
		st := srv.Stats()
		return st.ConnsOpen == 0 && st.Closed[porta.CloseHangUp] == 1 && st.Closed[porta.CloseTooLong] == 1
	})

	fams := scrape(t, m.Handler())
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"porta_connections_open", nil, 0},
		{"porta_connections_total", nil, 2},
		{"porta_listener_connections_open", []string{"listener", s.Addr}, 0},
		{"porta_listener_connections_total", []string{"listener", s.Addr}, 2},
		{"porta_connections_rejected_total", []string{"reason", "max_conns"}, 0},
		{"porta_connections_closed_total", []string{"reason", "hangup"}, 1},
		{"porta_connections_closed_total", []string{"reason", "too_long"}, 1},
		{"porta_connections_closed_total", []string{"reason", "peer_closed"}, 0},
		{"porta_connections_closed_total", []string{"reason", "shutdown"}, 0},
		{"porta_messages_received_total", nil, n + 1},
		{"porta_messages_sent_total", nil, n + 2},
		{"porta_received_bytes_total", nil, float64(bytesIn)},
		{"porta_sent_bytes_total", nil, float64(bytesOut)},
		{"porta_errors_total", []string{"kind", "too_long"}, 1},
		{"porta_errors_total", []string{"kind", "idle_timeout"}, 0},
		{"porta_errors_total", []string{"kind", "accept"}, 0},
		{"porta_slow_consumers_total", nil, 0},
		{"porta_panics_total", nil, 0},
		{"porta_ready", nil, 1},
	}
	for _, w := range want {
		if got := value(t, fams, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	if got, want := len(fams["porta_errors_total"].GetMetric()), len(metrics.Errors(srv.Stats())); got != want {
		t.Errorf("porta_errors_total has %d series, want %d", got, want)
	}
	for _, m := range fams["porta_errors_total"].GetMetric() {
		if kind := m.GetLabel()[0].GetValue(); kind == "hangup" || kind == "peer_closed" || kind == "shutdown" {
			t.Errorf("porta_errors_total counts %q, an orderly end", kind)
		}
	}
	if got := len(fams["porta_connections_closed_total"].GetMetric()); got != len(porta.CloseReasons()) {
		t.Errorf("porta_connections_closed_total has %d series, want one per close reason (%d)", got, len(porta.CloseReasons()))
	}

	h := fams["porta_handler_duration_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("porta_handler_duration_seconds is a %v, want a histogram", h.GetType())
	}
	hist := h.GetMetric()[0].GetHistogram()
	if got := hist.GetSampleCount(); got != n+1 {
		t.Errorf("porta_handler_duration_seconds_count = %d, want %d (every message the handler saw)", got, n+1)
	}
	if hist.GetSampleSum() <= 0 {
		t.Errorf("porta_handler_duration_seconds_sum = %v, want > 0", hist.GetSampleSum())
	}
	if lat := m.Latency(); lat.Count != n+1 || lat.Max <= 0 || lat.P50 > lat.P99 || lat.P99 > lat.Max {
		t.Errorf("Latency() = %+v, want Count %d and 0 < P50 <= P99 <= Max", lat, n+1)
	}
}

// TestRejectedCount checks the count of connections refused by MaxConns.
func TestRejectedCount(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{MaxConns: 1}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(porta.Echo)
	s := portatest.Start(t, srv, "tcp")

	first := s.Dial(frame.Line)
	first.SetDeadline(time.Now().Add(ioTimeout))
	exchange(t, first, "hello", "hello") // accepted and served
	second := s.Dial(frame.Line)
	second.SetDeadline(time.Now().Add(ioTimeout))
	if reply, err := second.Receive(); err != nil || string(reply) != "ERR too many connections" {
		t.Fatalf("second connection got %q, %v; want the refusal", reply, err)
	}
	second.Close()

	fams := scrape(t, m.Handler())
	if got := len(fams["porta_connections_rejected_total"].GetMetric()); got != len(porta.RejectReasons()) {
		t.Errorf("porta_connections_rejected_total has %d series, want one per reject reason (%d)", got, len(porta.RejectReasons()))
	}
	for _, w := range []struct {
		name, label, value string
		want               float64
	}{
		{"porta_connections_rejected_total", "reason", "max_conns", 1},
		{"porta_connections_closed_total", "reason", "limit", 1},
		{"porta_listener_connections_open", "listener", s.Addr, 1},
	} {
		if got := value(t, fams, w.name, w.label, w.value); got != w.want {
			t.Errorf("%s{%s=%q} = %v, want %v", w.name, w.label, w.value, got, w.want)
		}
	}
	if got := value(t, fams, "porta_connections_open"); got != 1 {
		t.Errorf("porta_connections_open = %v, want 1", got)
	}
}

// TestUDPDatagrams checks the per-socket datagram count and the message
// totals of a UDP socket.
func TestUDPDatagrams(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(porta.Echo)
	s := portatest.Start(t, srv, "udp")
	c := s.Dial(frame.Raw)
	c.SetDeadline(time.Now().Add(ioTimeout))
	for range 3 {
		exchange(t, c, "ping", "ping")
	}
	fams := scrape(t, m.Handler())
	if got := value(t, fams, "porta_listener_datagrams_total", "listener", s.Addr); got != 3 {
		t.Errorf("porta_listener_datagrams_total = %v, want 3", got)
	}
	if got := value(t, fams, "porta_messages_received_total"); got != 3 {
		t.Errorf("porta_messages_received_total = %v, want 3", got)
	}
	if fams["porta_listener_connections_total"] != nil {
		t.Errorf("a UDP socket has porta_listener_connections_total; want only datagrams")
	}
}

// TestListenerLabelNotUTF8 checks that a Unix socket whose path is not
// valid UTF-8 does not fail the scrape: a Prometheus label value must be
// UTF-8, and its bytes are replaced.
func TestListenerLabelNotUTF8(t *testing.T) {
	t.Parallel()
	l, err := porta.Listen("unix://" + t.TempDir() + "/s\xff.sock")
	if err != nil {
		t.Fatal(err)
	}
	srv := &porta.Server{}
	m := metrics.New(srv)
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	for !srv.Ready() {
		time.Sleep(time.Millisecond)
	}
	fams := scrape(t, m.Handler())
	f := fams["porta_listener_connections_total"]
	if f == nil || len(f.GetMetric()) != 1 || !strings.HasSuffix(f.GetMetric()[0].GetLabel()[0].GetValue(), "/s\uFFFD.sock") {
		t.Fatalf("porta_listener_connections_total = %v, want one listener ending in /s\uFFFD.sock", f)
	}
}

// TestExposition checks that /metrics parses as the Prometheus text format
// with legacy (strict) metric names, that every porta metric has help and
// the conventional name for its type, and that the Go and process
// collectors are there.
func TestExposition(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{}
	m := metrics.New(srv)
	fams := scrape(t, m.Handler())
	var porta int
	for name, f := range fams {
		if !strings.HasPrefix(name, "porta_") {
			continue
		}
		porta++
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if f.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total") {
			t.Errorf("%s ends in _total but is a %v", name, f.GetType())
		}
	}
	if porta < 10 {
		t.Errorf("only %d porta_ metric families exposed", porta)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "porta_handler_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("%s is missing from the exposition", name)
		}
	}
	if got := value(t, fams, "porta_ready"); got != 0 {
		t.Errorf("porta_ready = %v for a server not serving, want 0", got)
	}
}

// TestRegistriesAreSeparate checks that two servers' metrics do not share
// state: no global registry.
func TestRegistriesAreSeparate(t *testing.T) {
	t.Parallel()
	a, b := metrics.New(&porta.Server{}), metrics.New(&porta.Server{})
	if a.Registry() == b.Registry() {
		t.Fatal("two Metrics share a registry")
	}
	h := a.Instrument(nil)
	h.ServeMessage(discard{}, &porta.Message{Body: []byte("x")})
	if got := value(t, scrape(t, b.Handler()), "porta_handler_duration_seconds"); got != 0 {
		t.Errorf("b counted a's message: count %v", got)
	}
	if got := value(t, scrape(t, a.Handler()), "porta_handler_duration_seconds"); got != 1 {
		t.Errorf("a's histogram count = %v, want 1", got)
	}
}

// discard is a ResponseWriter that drops replies.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }

// exchange sends msg and checks its reply.
func exchange(t *testing.T, c *porta.ClientConn, msg, want string) {
	t.Helper()
	got, err := c.Exchange([]byte(msg))
	if err != nil {
		t.Fatalf("exchange %q: %v", msg, err)
	}
	if string(got) != want {
		t.Fatalf("reply to %q = %q, want %q", msg, got, want)
	}
}

// waitFor polls cond until it holds, failing the test after five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scrape gets h's exposition in the text format and parses it.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, rec.Body)
	}
	return fams
}

// value returns the value of the series of family name with the given
// label pairs (a histogram's sample count), failing the test if there is
// no such series.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("no series %s with labels %v", name, labels)
	return 0
}
