package porta_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

func TestParseAddr(t *testing.T) {
	t.Parallel()
	good := []struct {
		in     string
		want   porta.Addr
		packet bool
	}{
		{"127.0.0.1:8000", porta.Addr{Network: "tcp", Address: "127.0.0.1:8000"}, false},
		{"localhost:80", porta.Addr{Network: "tcp", Address: "localhost:80"}, false},
		{":8000", porta.Addr{Network: "tcp", Address: ":8000"}, false},
		{"[::1]:9", porta.Addr{Network: "tcp", Address: "[::1]:9"}, false},
		{"tcp://127.0.0.1:0", porta.Addr{Network: "tcp", Address: "127.0.0.1:0"}, false},
		{"tcp4://0.0.0.0:65535", porta.Addr{Network: "tcp4", Address: "0.0.0.0:65535"}, false},
		{"tcp6://[::1]:0", porta.Addr{Network: "tcp6", Address: "[::1]:0"}, false},
		{"udp://127.0.0.1:5353", porta.Addr{Network: "udp", Address: "127.0.0.1:5353"}, true},
		{"udp4://127.0.0.1:1", porta.Addr{Network: "udp4", Address: "127.0.0.1:1"}, true},
		{"udp6://[::1]:1", porta.Addr{Network: "udp6", Address: "[::1]:1"}, true},
		{"unix:///tmp/porta.sock", porta.Addr{Network: "unix", Address: "/tmp/porta.sock"}, false},
		{"unix://relative.sock", porta.Addr{Network: "unix", Address: "relative.sock"}, false},
	}
	for _, tt := range good {
		a, err := porta.ParseAddr(tt.in)
		if err != nil {
			t.Errorf("ParseAddr(%q): %v", tt.in, err)
			continue
		}
		if a != tt.want || a.IsPacket() != tt.packet {
			t.Errorf("ParseAddr(%q) = %+v (packet %v), want %+v (packet %v)", tt.in, a, a.IsPacket(), tt.want, tt.packet)
		}
		// String is the URL form, which parses back to the same address.
		s := a.String()
		if !strings.Contains(s, "://") {
			t.Errorf("%+v.String() = %q, want a URL form", a, s)
		}
		if b, err := porta.ParseAddr(s); err != nil || b != a {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %+v (round trip of %q)", s, b, err, a, tt.in)
		}
	}

	bad := []struct {
		in   string
		hint string // in the message, besides the address
	}{
		{"8000", "127.0.0.1:8000"},
		{"foo://x", `unknown scheme "foo"`},
		{"host:99999", "0 to 65535"},
		{"host:abc", "0 to 65535"},
		{"host:-1", "0 to 65535"},
		{"unix://", "missing socket path"},
		{"[::1", "host:port"},
		{"", "host:port"},
		{"tcp://my host:80", "bad host"},
	}
	for _, tt := range bad {
		a, err := porta.ParseAddr(tt.in)
		if err == nil {
			t.Errorf("ParseAddr(%q) = %+v, want an error", tt.in, a)
			continue
		}
		if !errors.Is(err, porta.ErrBadAddress) {
			t.Errorf("ParseAddr(%q) error %v does not wrap ErrBadAddress", tt.in, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tt.hint) || !strings.Contains(msg, fmt.Sprintf("%q", tt.in)) {
			t.Errorf("ParseAddr(%q) error %q; want it to quote the address and mention %q", tt.in, msg, tt.hint)
		}
	}
}

func TestFormatAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a    net.Addr
		want string
	}{
		{nil, ""},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000}, "tcp://127.0.0.1:8000"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "tcp://[::1]:9"},
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}, "udp://127.0.0.1:53"},
		{&net.UnixAddr{Name: "/tmp/porta.sock", Net: "unix"}, "unix:///tmp/porta.sock"},
		{&net.UnixAddr{Name: "/tmp/porta.sock", Net: "unixgram"}, "unix:///tmp/porta.sock"},
	}
	for _, tt := range tests {
		if got := porta.FormatAddr(tt.a); got != tt.want {
			t.Errorf("FormatAddr(%v) = %q, want %q", tt.a, got, tt.want)
		}
	}

	// A listener's formatted address is one that Dial and ParseAddr take.
	l, err := porta.Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := porta.FormatAddr(l.Addr())
	if a, err := porta.ParseAddr(s); err != nil || a.Network != "tcp" || a.Address != l.Addr().String() {
		t.Errorf("ParseAddr(FormatAddr(%v)) = %+v, %v", l.Addr(), a, err)
	}
}

// socketPath returns a fresh socket path in a temporary directory.
func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "porta.sock")
}

func TestListenUnixStaleSocket(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	// A server that crashed leaves its socket file behind.
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket file missing: %v", err)
	}

	l, err := porta.Listen("unix://" + path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("dial the new listener: %v", err)
	}
	c.Close()
}

func TestListenUnixLiveSocket(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	l, err := porta.Listen("unix://" + path)
	if err == nil {
		l.Close()
		t.Fatal("Listen took over a live socket")
	}
	if !errors.Is(err, porta.ErrAddrInUse) {
		t.Fatalf("Listen over a live socket: %v, want ErrAddrInUse", err)
	}
	// The live server still answers.
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("live socket no longer answers: %v", err)
	}
	c.Close()
}

func TestListenUnixRegularFile(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := porta.Listen("unix://" + path)
	if err == nil {
		l.Close()
		t.Fatal("Listen replaced a regular file")
	}
	if !errors.Is(err, porta.ErrAddrInUse) {
		t.Errorf("Listen over a regular file: %v, want ErrAddrInUse", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Fatalf("regular file after Listen: %q, %v", b, err)
	}
}

func TestListenUnixRemovedAfterShutdown(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	srv := &porta.Server{}
	l, err := porta.Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	c, err := porta.Dial("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	exchange(t, c, "hi", "hi")
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, porta.ErrServerClosed) {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after shutdown: %v, want it removed", err)
	}
}

func TestListenTCPInUse(t *testing.T) {
	t.Parallel()
	l, err := porta.Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := porta.Listen("tcp://" + l.Addr().String())
	if err == nil {
		l2.Close()
		t.Fatal("two listeners on one TCP address")
	}
	if !errors.Is(err, porta.ErrAddrInUse) {
		t.Fatalf("Listen on a used address: %v, want ErrAddrInUse", err)
	}
}

func TestListenRejectsWrongKind(t *testing.T) {
	t.Parallel()
	if l, err := porta.Listen("udp://127.0.0.1:0"); !errors.Is(err, porta.ErrBadAddress) {
		if l != nil {
			l.Close()
		}
		t.Errorf("Listen(udp) = %v, want ErrBadAddress", err)
	}
	if pc, err := porta.ListenPacket("tcp://127.0.0.1:0"); !errors.Is(err, porta.ErrBadAddress) {
		if pc != nil {
			pc.Close()
		}
		t.Errorf("ListenPacket(tcp) = %v, want ErrBadAddress", err)
	}
}

func TestDialRefused(t *testing.T) {
	t.Parallel()
	// A port that was free a moment ago: nothing listens on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	for _, in := range []string{addr, "tcp://" + addr} {
		c, err := porta.Dial(in)
		if err == nil {
			c.Close()
			t.Fatalf("Dial(%q) succeeded with nothing listening", in)
		}
		if want := "porta: connection refused: nothing is listening on " + addr; err.Error() != want {
			t.Errorf("Dial(%q) error = %q, want %q", in, err, want)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("Dial(%q) error %v does not wrap ECONNREFUSED", in, err)
		}
	}

	if _, err := porta.Dial("8000"); !errors.Is(err, porta.ErrBadAddress) {
		t.Errorf("Dial(%q) = %v, want ErrBadAddress", "8000", err)
	}
}

// prefixListener hands out connections whose Read first returns a prefix
// of its own, as a listener that consumed a header (a PROXY line, say) and
// kept the rest of its read would.
type prefixListener struct {
	net.Listener
	prefix string
}

func (l prefixListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &prefixConn{TCPConn: nc.(*net.TCPConn), pending: []byte(l.prefix)}, nil
}

// prefixConn embeds *net.TCPConn, so it is a syscall.Conn; its Read is
// still the only way to its first bytes.
type prefixConn struct {
	*net.TCPConn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
}

// TestServeWrappedConn checks that the server reads a custom listener's
// connections through their Read, even when they expose the socket
// underneath (syscall.Conn): reading the socket directly would lose what
// the wrapper holds.
func TestServeWrappedConn(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &porta.Server{}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(prefixListener{l, "from the wrapper\n"}) }()
	t.Cleanup(func() { srv.Close(); <-done })
	c, err := porta.Dial("tcp://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Conn().SetDeadline(time.Now().Add(ioTimeout))
	if err := c.Send([]byte("from the client")); err != nil {
		t.Fatal(err)
	}
	expectReply(t, c, "from the wrapper")
	expectReply(t, c, "from the client")
}
