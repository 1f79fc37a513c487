//go:build linux

package porta_test

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

// TestPacketWildcardReplySource: a UDP socket bound to a wildcard address
// replies from the address each datagram was sent to, so that a connected
// client (which takes datagrams from that address only) gets its reply
// when it wrote to an address other than the one the kernel would pick,
// such as 127.0.0.2.
func TestPacketWildcardReplySource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen string
		to     []string
	}{
		{"udp://0.0.0.0:0", []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}},
		{"udp://[::]:0", []string{"127.0.0.2", "::1"}},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			t.Parallel()
			pc, err := porta.ListenPacket(tc.listen)
			if err != nil {
				t.Skipf("%s: %v", tc.listen, err)
			}
			srv := &porta.Server{Handler: porta.Upper}
			done := make(chan error, 1)
			go func() { done <- srv.ServePacket(pc) }()
			t.Cleanup(func() {
				srv.Close()
				if err := <-done; !errors.Is(err, porta.ErrServerClosed) {
					t.Errorf("ServePacket = %v", err)
				}
			})
			port := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
			for _, host := range tc.to {
				uc, err := net.Dial("udp", net.JoinHostPort(host, port))
				if err != nil {
					if host == "::1" {
						continue // no IPv6 loopback here
					}
					t.Fatal(err)
				}
				defer uc.Close()
				uc.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := uc.Write([]byte("hi " + host)); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				n, err := uc.Read(buf)
				if want := "HI " + host; err != nil || string(buf[:n]) != want {
					t.Errorf("to %s: reply %q, %v; want %q from the address written to", host, buf[:n], err, want)
				}
			}
		})
	}
}
