// Package admin serves a porta.Server's metrics, health checks and live
// dashboard over HTTP, beside the server's own listeners.
//
// The handler returned by New answers:
//
//	/metrics       Prometheus exposition (see package metrics)
//	/healthz       200 "ok" while the process can answer at all
//	/readyz        200 "ready" while the server serves at least one
//	               listener and is not shutting down, else 503 "not ready"
//	/              the dashboard: a page embedded in the binary, with no
//	               external resources, that charts the server live
//	/events        server-sent events: one Snapshot in JSON per second
//	/api/snapshot  the same Snapshot, once
//
// The handler exposes connection details and runtime metrics: serve it on
// loopback, or behind authentication. docs/observability.md has the details.
package admin

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/metrics"
)

// dashboardFiles are the dashboard's page, script and style sheet.
//
//go:embed dashboard
var dashboardFiles embed.FS

// contentSecurityPolicy lets the dashboard load only its own files and
// talk only to its own origin: no CDN, no inline script, works offline.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// handler serves the admin endpoints of one server.
type handler struct {
	srv     *porta.Server
	m       *metrics.Metrics
	mux     *http.ServeMux
	streams chan struct{} // one token per open event stream

	mu       sync.Mutex
	lastAt   time.Time // when lastJSON was made
	lastJSON []byte    // the latest snapshot, shared by event streams
}

// New returns the admin handler of srv, whose metrics are m. A nil m
// means metrics.New(srv), which has no handler latencies: wrap the
// server's Handler with m.Instrument to get them. The handler is safe for
// concurrent use.
func New(srv *porta.Server, m *metrics.Metrics) http.Handler {
	if m == nil {
		m = metrics.New(srv)
	}
	h := &handler{srv: srv, m: m, mux: http.NewServeMux(), streams: make(chan struct{}, maxStreams)}
	static, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded directory exists: see the go:embed line
	}
	h.mux.Handle("GET /metrics", m.Handler())
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /events", h.events)
	h.mux.HandleFunc("GET /api/snapshot", h.snapshotOnce)
	h.mux.Handle("GET /", dashboard(http.FileServerFS(static)))
	return h
}

// ServeHTTP routes a request to its endpoint.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// dashboard adds the headers of the dashboard's files to next.
func dashboard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// healthz answers that the process is alive.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	plain(w, http.StatusOK, "ok")
}

// readyz answers whether the server should get traffic: not before it
// serves a listener, and not while it drains.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.srv.Ready() {
		plain(w, http.StatusOK, "ready")
		return
	}
	plain(w, http.StatusServiceUnavailable, "not ready")
}

// plain writes a short uncached text answer.
func plain(w http.ResponseWriter, code int, text string) {
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(text + "\n"))
}

// snapshotOnce answers with one Snapshot in JSON.
func (h *handler) snapshotOnce(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	w.Write(h.snapshotJSON())
}

// snapshotReuse is how long a snapshot is shared: several dashboards
// open at once cost one snapshot per tick, not one each.
const snapshotReuse = 200 * time.Millisecond

// snapshotJSON returns a recent Snapshot in JSON, with no newline in it.
func (h *handler) snapshotJSON() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := time.Now(); h.lastJSON == nil || now.Sub(h.lastAt) >= snapshotReuse {
		b, err := json.Marshal(takeSnapshot(h.srv, h.m, now))
		if err != nil {
			panic(err) // a Snapshot has only numbers, strings and times
		}
		h.lastAt, h.lastJSON = now, b
	}
	return h.lastJSON
}
