package main

import (
	"net"
	"testing"

	"github.com/porta-project/porta"
)

// recorder is a ResponseWriter that keeps what a handler does.
type recorder struct {
	replies []string
	closed  bool
}

func (r *recorder) Write(p []byte) (int, error) {
	r.replies = append(r.replies, string(p))
	return len(p), nil
}
func (r *recorder) Close() error { r.closed = true; return nil }

// TestShutdownWordOnlyFromLocalPeers: the shutdown word stops the server
// only when a loopback or Unix-socket peer sends it; from any other peer
// it is an ordinary message for the next handler.
func TestShutdownWordOnlyFromLocalPeers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		peer  net.Addr
		local bool
	}{
		{"loopback v4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, true},
		{"loopback v6", &net.TCPAddr{IP: net.IPv6loopback, Port: 4000}, true},
		{"unix", &net.UnixAddr{Name: "@", Net: "unix"}, true},
		{"udp loopback", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, true},
		{"private network", &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4000}, false},
		{"public v6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 4000}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			requested := make(chan struct{}, 1)
			h := shutdownOn([]byte("stop"), requested, porta.Echo)
			var w recorder
			h.ServeMessage(&w, &porta.Message{Body: []byte(" STOP "), RemoteAddr: tt.peer})
			select {
			case <-requested:
				if !tt.local {
					t.Fatalf("a shutdown was requested from %v", tt.peer)
				}
				if len(w.replies) != 1 || w.replies[0] != "closed" || !w.closed {
					t.Errorf("replies %q, closed %v; want \"closed\" and a hang-up", w.replies, w.closed)
				}
			default:
				if tt.local {
					t.Fatalf("no shutdown requested from %v", tt.peer)
				}
				if len(w.replies) != 1 || w.replies[0] != " STOP " || w.closed {
					t.Errorf("replies %q, closed %v; want the message echoed, connection open", w.replies, w.closed)
				}
			}
		})
	}
}
