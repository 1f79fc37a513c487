package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/admin"
	"github.com/porta-project/porta/metrics"
)

// Bounds of the admin HTTP server: generous for a scraper or a browser,
// short enough that an idle or stalled client cannot hold it.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	// adminWriteTimeout bounds a response; the event stream of the
	// dashboard sets a deadline of its own for each event instead.
	adminWriteTimeout = 30 * time.Second
	adminIdleTimeout  = 2 * time.Minute
	adminMaxHeader    = 16 << 10
	// adminStopTimeout bounds the wait for requests in flight on exit.
	adminStopTimeout = 2 * time.Second
)

// adminServer is the HTTP server of "porta serve --admin": metrics, health
// checks and the dashboard of package admin. A nil *adminServer is off,
// and its methods do nothing.
type adminServer struct {
	ln  net.Listener
	srv *porta.Server
	m   *metrics.Metrics
}

// listenAdmin opens the admin address (see adminAddr) and instruments
// srv's handler for the latency metrics, so it must be called before srv
// serves. An empty addr means no admin server: nil, nil.
func listenAdmin(addr string, srv *porta.Server) (*adminServer, error) {
	if addr == "" {
		return nil, nil
	}
	hostPort, err := adminAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // such as "bind: address already in use"
		}
		return nil, fmt.Errorf("cannot serve --admin on %s: %v", hostPort, err)
	}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(srv.Handler)
	return &adminServer{ln: ln, srv: srv, m: m}, nil
}

// adminAddr resolves the --admin flag to a host:port to listen on. A bare
// port or a missing host means 127.0.0.1: the admin endpoints reveal the
// server's connections, so other interfaces must be asked for by name,
// such as 0.0.0.0:9090.
func adminAddr(s string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("bad --admin address %q: %s (want HOST:PORT or :PORT, such as 127.0.0.1:9090)", s, why)
	}
	if strings.Contains(s, "://") {
		return bad("give the address without a scheme")
	}
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return bad(ae.Err)
		}
		return bad(err.Error())
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return bad("the port must be a number from 0 to 65535")
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// loopbackHostsOnly guards an admin server bound to loopback against DNS
// rebinding, where a web page whose name has come to resolve to 127.0.0.1
// reads the endpoints (the server's peers among them) from a browser on
// this machine: only requests that name the server by an IP address or
// "localhost", or name no host at all (HTTP/1.0, which browsers do not
// send), are served; others get 421 Misdirected Request.
func loopbackHostsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" || strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") || net.ParseIP(host) != nil {
			next.ServeHTTP(w, r)
			return
		}
		http.Error(w, "porta: the admin endpoints answer requests for localhost or an IP address only", http.StatusMisdirectedRequest)
	})
}

// serve starts serving the admin endpoints, prints
// "Admin on http://HOST:PORT" (the real port for :0) and returns the
// function that stops the server; call it once the porta server has shut
// down, so that /readyz reports the drain.
func (a *adminServer) serve(e *env) (stop func()) {
	if a == nil {
		return func() {}
	}
	// Ending the base context ends the dashboards' event streams, which
	// would otherwise hold Shutdown until its timeout.
	ctx, cancel := context.WithCancel(context.Background())
	var h http.Handler = admin.New(a.srv, a.m)
	if ta, ok := a.ln.Addr().(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		h = loopbackHostsOnly(h)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeader,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if a.srv.Logger != nil {
		hs.ErrorLog = slog.NewLogLogger(a.srv.Logger.Handler(), slog.LevelWarn)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(a.ln) // returns ErrServerClosed once stopped
	}()
	fmt.Fprintf(e.stdout, "Admin on http://%s\n", a.ln.Addr())
	return func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), adminStopTimeout)
		defer scancel()
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
		<-done
	}
}

// close closes the listener of an admin server that is not served, as
// when the porta listeners fail to open; after serve's stop it does
// nothing.
func (a *adminServer) close() {
	if a != nil {
		a.ln.Close()
	}
}
