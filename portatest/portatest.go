// Package portatest runs porta servers on loopback for tests, the way
// net/http/httptest runs HTTP servers.
package portatest

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// A Server is a porta.Server listening on a loopback address for a test.
type Server struct {
	// Server is the running server; its fields must not be changed.
	*porta.Server
	// Addr is the address to dial, such as "tcp://127.0.0.1:41234" or
	// "unix:///tmp/.../porta.sock".
	Addr string

	t    testing.TB
	done chan error
}

// NewServer starts an echo-by-default server with handler h on a free TCP
// port of 127.0.0.1 and stops it when the test ends. A nil h means
// porta.Echo.
func NewServer(t testing.TB, h porta.Handler) *Server {
	t.Helper()
	return Start(t, &porta.Server{Handler: h}, "tcp")
}

// Start serves srv for the test on a fresh loopback address of network:
// "tcp" or "tcp4" (127.0.0.1), "tcp6" ([::1]; the test is skipped where the
// machine has no IPv6 loopback), "unix" (a socket in t.TempDir()) or "udp"
// (127.0.0.1). The server is shut down gracefully when the test ends; a
// shutdown that takes over 10 s fails the test.
func Start(t testing.TB, srv *porta.Server, network string) *Server {
	t.Helper()
	var addr string
	switch network {
	case "tcp", "tcp4":
		addr = network + "://127.0.0.1:0"
	case "tcp6":
		addr = "tcp6://[::1]:0"
	case "udp", "udp4":
		addr = network + "://127.0.0.1:0"
	case "unix":
		addr = "unix://" + filepath.Join(t.TempDir(), "porta.sock")
	default:
		t.Fatalf("portatest: unknown network %q", network)
	}
	s := &Server{Server: srv, t: t, done: make(chan error, 1)}
	if network == "udp" || network == "udp4" {
		pc, err := porta.ListenPacket(addr)
		if err != nil {
			t.Fatalf("portatest: %v", err)
		}
		s.Addr = porta.FormatAddr(pc.LocalAddr())
		go func() { s.done <- srv.ServePacket(pc) }()
	} else {
		l, err := porta.Listen(addr)
		if err != nil {
			if network == "tcp6" {
				t.Skipf("portatest: no IPv6 loopback: %v", err)
			}
			t.Fatalf("portatest: %v", err)
		}
		s.Addr = porta.FormatAddr(l.Addr())
		go func() { s.done <- srv.Serve(l) }()
	}
	t.Cleanup(s.stop)
	return s
}

// stop shuts the server down and checks that it stopped as promised.
func (s *Server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		s.t.Errorf("portatest: shutdown: %v", err)
	}
	select {
	case err := <-s.done:
		if !errors.Is(err, porta.ErrServerClosed) {
			s.t.Errorf("portatest: serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(10 * time.Second):
		s.t.Errorf("portatest: serve did not return after shutdown")
	}
}

// Dial connects to the server with framing f (frame.Auto means Line), and
// closes the connection when the test ends. A failed dial fails the test
// that started the server (Start's t), with t.Fatal: call Dial and DialRaw
// from that test's goroutine, not from a subtest's or another goroutine.
func (s *Server) Dial(f frame.Framing) *porta.ClientConn {
	s.t.Helper()
	d := porta.Dialer{Framing: f, Timeout: 5 * time.Second}
	c, err := d.DialContext(context.Background(), s.Addr)
	if err != nil {
		s.t.Fatalf("portatest: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// DialRaw opens a plain network connection to the server, for tests that
// write bytes by hand, and closes it when the test ends.
func (s *Server) DialRaw() net.Conn {
	s.t.Helper()
	a, err := porta.ParseAddr(s.Addr)
	if err != nil {
		s.t.Fatalf("portatest: %v", err)
	}
	c, err := net.DialTimeout(a.Network, a.Address, 5*time.Second)
	if err != nil {
		s.t.Fatalf("portatest: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}
