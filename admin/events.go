package admin

import (
	"fmt"
	"net/http"
	"time"
)

// Event stream settings.
const (
	// eventInterval is the time between two snapshots on /events: the
	// dashboard's refresh rate.
	eventInterval = time.Second
	// eventWriteTimeout bounds each event's write, so that a client that
	// stops reading does not hold its stream open.
	eventWriteTimeout = 10 * time.Second
	// eventRetry is how long a browser waits before reconnecting a broken
	// stream, in milliseconds.
	eventRetry = 2000
	// maxStreams limits the open event streams (dashboards), since each
	// holds a connection and a goroutine.
	maxStreams = 32
)

// events streams one Snapshot per second as server-sent events, until the
// client goes away, a write fails, or the request's context ends (as when
// the HTTP server shuts down with a base context it cancels).
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	select {
	case h.streams <- struct{}{}:
		defer func() { <-h.streams }()
	default:
		plain(w, http.StatusServiceUnavailable, "too many event streams")
		return
	}
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // for a proxy in front: do not buffer
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return // the headers only: a stream would send nothing forever
	}
	fmt.Fprintf(w, "retry: %d\n", eventRetry)

	ctx := r.Context()
	tick := time.NewTicker(eventInterval)
	defer tick.Stop()
	for {
		// Not every ResponseWriter has deadlines (a recorder has none).
		rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", h.snapshotJSON()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
