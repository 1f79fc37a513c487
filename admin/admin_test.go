package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/admin"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/metrics"
	"github.com/porta-project/porta/portatest"
)

// ioTimeout bounds every client read and write, so that a server that
// fails to answer fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// newAdmin serves the admin handler of srv for the test.
func newAdmin(t *testing.T, srv *porta.Server, m *metrics.Metrics) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(admin.New(srv, m))
	t.Cleanup(ts.Close)
	return ts
}

// get fetches path from ts and returns the status and body.
func get(t *testing.T, ts *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := ts.Client().Get(ts.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// snapshot fetches /api/snapshot.
func snapshot(t *testing.T, ts *httptest.Server) admin.Snapshot {
	t.Helper()
	code, body := get(t, ts, "/api/snapshot")
	if code != http.StatusOK {
		t.Fatalf("GET /api/snapshot: status %d", code)
	}
	var s admin.Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("GET /api/snapshot: %v in %s", err, body)
	}
	return s
}

// scrapeMetrics fetches /metrics and parses it.
func scrapeMetrics(t *testing.T, ts *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, ts, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the first series of a counter or gauge.
func metricValue(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return -1
	}
	m := f.GetMetric()[0]
	if f.GetType() == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
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

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{}
	ts := newAdmin(t, srv, nil)
	if code, body := get(t, ts, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\"", code, body)
	}
	if code, body := get(t, ts, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready\n" {
		t.Errorf("/readyz before serving = %d %q, want 503 \"not ready\"", code, body)
	}
	portatest.Start(t, srv, "tcp")
	waitFor(t, "the server to serve its listener", srv.Ready)
	if code, body := get(t, ts, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz while serving = %d %q, want 200 \"ready\"", code, body)
	}
	resp, err := ts.Client().Post(ts.URL+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d, want 405", resp.StatusCode)
	}
}

// TestReadyzDuringDrain holds a connection in the middle of a frame, so
// that Shutdown has to wait for it, and checks that /readyz says 503 while
// the server drains.
func TestReadyzDuringDrain(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{Framing: frame.Line}
	ts := newAdmin(t, srv, nil)
	l, err := porta.Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	waitFor(t, "the server to serve its listener", srv.Ready)
	if code, _ := get(t, ts, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz while serving = %d, want 200", code)
	}

	c, err := porta.Dial(porta.FormatAddr(l.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	// One write holds a whole message and the start of the next, so that
	// once the reply to the first comes back, the server holds a partial
	// frame, which Shutdown lets the peer finish.
	if _, err := c.Conn().Write([]byte("ping\nhalf")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Receive(); err != nil || string(got) != "ping" {
		t.Fatalf("reply = %q, %v; want ping", got, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	waitFor(t, "/readyz to say 503", func() bool {
		code, _ := get(t, ts, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	time.Sleep(50 * time.Millisecond) // the drain lasts while the frame is open
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a frame still open", err)
	default:
	}
	if code, body := get(t, ts, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready\n" {
		t.Errorf("/readyz during the drain = %d %q, want 503 \"not ready\"", code, body)
	}
	if s := snapshot(t, ts); s.Ready || s.Totals.ConnsOpen != 1 {
		t.Errorf("snapshot during the drain: ready %v, %d open; want false, 1", s.Ready, s.Totals.ConnsOpen)
	}

	// Finish the frame: the server answers it and closes.
	if err := c.Send([]byte("-done")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Receive(); err != nil || string(got) != "half-done" {
		t.Fatalf("reply = %q, %v; want half-done", got, err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != porta.ErrServerClosed {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	if code, _ := get(t, ts, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after shutdown = %d, want 503", code)
	}
}

// TestSnapshot checks /api/snapshot against the server's own counts.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{Framing: frame.Line}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(porta.HangUpOn("close", "closed", porta.Echo))
	s := portatest.Start(t, srv, "tcp")
	ts := newAdmin(t, srv, m)

	old := s.Dial(frame.Line)
	old.SetDeadline(time.Now().Add(ioTimeout))
	for range 3 {
		if _, err := old.Exchange([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	young := s.Dial(frame.Line)
	young.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := young.Exchange([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	gone := s.Dial(frame.Line)
	gone.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := gone.Exchange([]byte("close")); err != nil {
		t.Fatal(err)
	}
	gone.Close()
	waitFor(t, "the hung-up connection to close", func() bool { return srv.Stats().Closed[porta.CloseHangUp] == 1 })

	snap := snapshot(t, ts)
	st := srv.Stats()
	want := admin.Totals{
		ConnsOpen: 2, ConnsTotal: 3, MessagesIn: 5, MessagesOut: 5,
		BytesIn: uint64(3*len("hello") + len("hi") + len("close")), BytesOut: uint64(3*len("hello") + len("hi") + len("closed")),
	}
	if snap.Totals != want {
		t.Errorf("totals = %+v, want %+v (Stats: %+v)", snap.Totals, want, st)
	}
	if !snap.Ready || time.Since(snap.Time) > time.Minute {
		t.Errorf("ready %v at %v, want ready now", snap.Ready, snap.Time)
	}
	if len(snap.Listeners) != 1 || snap.Listeners[0].Addr != s.Addr || snap.Listeners[0].ConnsTotal != 3 {
		t.Errorf("listeners = %+v, want %s with 3 accepted", snap.Listeners, s.Addr)
	}
	if len(snap.Closed) != len(porta.CloseReasons()) {
		t.Errorf("%d close reasons, want %d", len(snap.Closed), len(porta.CloseReasons()))
	}
	for _, r := range snap.Closed {
		want := uint64(0)
		if r.Reason == "hangup" {
			want = 1
		}
		if r.Count != want {
			t.Errorf("closed %s = %d, want %d", r.Reason, r.Count, want)
		}
	}
	if snap.Latency.Count != 5 || snap.Latency.Max <= 0 || snap.Latency.P99 > snap.Latency.Max {
		t.Errorf("latency = %+v, want 5 messages and p99 <= max", snap.Latency)
	}
	if len(snap.Conns) != 2 {
		t.Fatalf("%d connections listed, want 2", len(snap.Conns))
	}
	first, second := snap.Conns[0], snap.Conns[1]
	if first.MessagesIn != 3 || second.MessagesIn != 1 || first.Age < second.Age {
		t.Errorf("connections = %+v, want the older one (3 messages) first", snap.Conns)
	}
	if first.BytesOut != 15 || first.Listener != s.Addr || first.Peer != old.Conn().LocalAddr().String() {
		t.Errorf("first connection = %+v, want 15 bytes out from %s on %s", first, old.Conn().LocalAddr(), s.Addr)
	}
}

// TestSnapshotCapsConnections checks that a snapshot lists at most
// MaxConnRows connections, the oldest.
func TestSnapshotCapsConnections(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{}
	s := portatest.Start(t, srv, "tcp")
	ts := newAdmin(t, srv, nil)
	n := admin.MaxConnRows + 5
	for range n {
		s.DialRaw()
	}
	waitFor(t, "every connection to be served", func() bool { return len(srv.Conns()) == n })
	snap := snapshot(t, ts)
	if len(snap.Conns) != admin.MaxConnRows || snap.Totals.ConnsOpen != int64(n) {
		t.Fatalf("%d rows of %d open, want %d of %d", len(snap.Conns), snap.Totals.ConnsOpen, admin.MaxConnRows, n)
	}
	for i := 1; i < len(snap.Conns); i++ {
		if snap.Conns[i].Opened.Before(snap.Conns[i-1].Opened) {
			t.Fatalf("row %d opened before row %d: not the oldest first", i, i-1)
		}
	}
}

// TestEvents reads snapshots from /events and checks that the stream
// ends when the client goes away.
func TestEvents(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(nil)
	s := portatest.Start(t, srv, "tcp")
	ts := httptest.NewServer(admin.New(srv, m))
	closed := false
	defer func() {
		if !closed {
			ts.Close()
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/events", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	events := bufio.NewReader(resp.Body)
	next := func() admin.Snapshot {
		t.Helper()
		for {
			line, err := events.ReadBytes('\n')
			if err != nil {
				t.Fatalf("reading events: %v", err)
			}
			if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
				var s admin.Snapshot
				if err := json.Unmarshal(data, &s); err != nil {
					t.Fatalf("event %q: %v", data, err)
				}
				return s
			}
		}
	}

	first := next() // sent at once
	c := s.Dial(frame.Line)
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Exchange([]byte("tick")); err != nil {
		t.Fatal(err)
	}
	second := next() // a second later
	if gap := second.Time.Sub(first.Time); gap < 500*time.Millisecond || gap > 5*time.Second {
		t.Errorf("events %v apart, want about a second", gap)
	}
	if first.Totals.MessagesIn != 0 || second.Totals.MessagesIn != 1 || second.Totals.ConnsOpen != 1 {
		t.Errorf("totals went from %+v to %+v, want one message and one connection more", first.Totals, second.Totals)
	}

	// The client leaves: the stream must end, or Close would wait for it.
	cancel()
	resp.Body.Close()
	done := make(chan struct{})
	go func() { ts.Close(); close(done) }()
	select {
	case <-done:
		closed = true
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream kept running after its client left")
	}
}

// TestDashboardFiles checks that the page and its files are served from
// the binary, with a policy that forbids loading anything from elsewhere,
// and that they name nothing elsewhere.
func TestDashboardFiles(t *testing.T) {
	t.Parallel()
	ts := newAdmin(t, &porta.Server{}, nil)
	for _, path := range []string{"/", "/dashboard.js", "/dashboard.css"} {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s = %d with %d bytes", path, resp.StatusCode, len(body))
			continue
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		text := strings.ReplaceAll(string(body), "http://www.w3.org/2000/svg", "") // a name, not a fetch
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url("} {
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q: the dashboard must work offline", path, bad)
			}
		}
	}
	if code, body := get(t, ts, "/"); code != http.StatusOK || !strings.Contains(body, `id="conns-open"`) {
		t.Errorf("GET / = %d, without the dashboard", code)
	}
	if code, _ := get(t, ts, "/nothing-here"); code != http.StatusNotFound {
		t.Errorf("GET /nothing-here = %d, want 404", code)
	}
}

// TestEventsHead checks that a HEAD request of /events gets the headers
// and ends, instead of a stream that would send nothing forever.
func TestEventsHead(t *testing.T) {
	t.Parallel()
	ts := newAdmin(t, &porta.Server{}, nil)
	resp, err := ts.Client().Head(ts.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD /events = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
