package porta_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/portatest"
)

// dialFrom connects to a TCP server address from the local IP from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	a, err := porta.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", a.Address)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoOnce sends one line and checks its echo.
func echoOnce(t *testing.T, c net.Conn, r *bufio.Reader, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("reply = %q, %v; want %q", got, err, msg+"\n")
	}
}

// readAllWithin reads until EOF, failing if that takes longer than d.
func readAllWithin(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("want the server to close within %v: %v (read %q)", d, err, b)
	}
	return string(b)
}

func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	srv := portatest.Start(t, &porta.Server{MaxConnsPerIP: 10}, "tcp")

	held := make([]net.Conn, 10)
	for i := range held {
		held[i] = dialFrom(t, "127.0.0.2", srv.Addr)
		echoOnce(t, held[i], bufio.NewReader(held[i]), "hi")
	}
	over := dialFrom(t, "127.0.0.2", srv.Addr)
	start := time.Now()
	if got := readAllWithin(t, over, time.Second); got != "ERR too many connections\n" {
		t.Fatalf("11th connection from 127.0.0.2 got %q, want the refusal", got)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refusal took %v; want it at once", d)
	}

	other := dialFrom(t, "127.0.0.3", srv.Addr)
	echoOnce(t, other, bufio.NewReader(other), "from .3")

	st := srv.Stats()
	if st.Rejected[porta.RejectMaxConnsPerIP] != 1 || st.ConnsRejected != 1 {
		t.Errorf("rejected = %v (total %d), want 1 by max_conns_per_ip", st.Rejected, st.ConnsRejected)
	}

	// One of the ten leaves: 127.0.0.2 may connect again.
	held[0].Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.2", srv.Addr)
		c.SetDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "again\n")
		if got, err := bufio.NewReader(c).ReadString('\n'); err == nil && got == "again\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("127.0.0.2 still refused after one of its connections closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAllowDeny(t *testing.T) {
	t.Parallel()
	srv := portatest.Start(t, &porta.Server{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/29")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32")},
	}, "tcp")

	for _, tc := range []struct {
		from    string
		allowed bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.6", true},
		{"127.0.0.5", false}, // in Allow too: deny wins
		{"127.0.0.9", false}, // outside Allow
	} {
		c := dialFrom(t, tc.from, srv.Addr)
		if tc.allowed {
			echoOnce(t, c, bufio.NewReader(c), "hello")
			continue
		}
		io.WriteString(c, "hello\n")
		// Closed without a reply: end of stream, or a reset because the
		// server closed with our message unread. Never a timeout.
		c.SetReadDeadline(time.Now().Add(time.Second))
		got, err := io.ReadAll(c)
		if len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Errorf("denied peer %s got %q, %v; want a close without reply", tc.from, got, err)
		}
	}
	if got := srv.Stats().Rejected[porta.RejectDenied]; got != 2 {
		t.Errorf("Rejected[denied] = %d, want 2", got)
	}
}

// TestFiltersMappedPrefixes: a prefix written in IPv4-mapped IPv6 form
// (::ffff:127.0.0.1/128) covers the IPv4 peers it maps, in Deny as in
// Allow: a deny rule in that form must not be bypassed.
func TestFiltersMappedPrefixes(t *testing.T) {
	t.Parallel()
	denied := portatest.Start(t, &porta.Server{
		Deny: []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.5/128"), netip.MustParsePrefix("::ffff:127.0.0.16/124")},
	}, "tcp")
	allowed := portatest.Start(t, &porta.Server{
		Allow: []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.0/125")},
	}, "tcp")
	for _, tc := range []struct {
		srv     *portatest.Server
		from    string
		allowed bool
	}{
		{denied, "127.0.0.1", true},
		{denied, "127.0.0.5", false},
		{denied, "127.0.0.20", false},
		{allowed, "127.0.0.6", true},
		{allowed, "127.0.0.9", false},
	} {
		c := dialFrom(t, tc.from, tc.srv.Addr)
		io.WriteString(c, "hello\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := bufio.NewReader(c).ReadString('\n')
		if (got == "hello\n") != tc.allowed {
			t.Errorf("peer %s got %q; allowed should be %v", tc.from, got, tc.allowed)
		}
	}
}

func TestFiltersIgnoreUnixPeers(t *testing.T) {
	t.Parallel()
	srv := portatest.Start(t, &porta.Server{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
	}, "unix")
	c := srv.Dial(0)
	if reply, err := c.Exchange([]byte("local")); err != nil || string(reply) != "local" {
		t.Fatalf("unix peer: %q, %v", reply, err)
	}
}

// wrappedAddr is a listener's own address type, as a wrapping listener
// may give its connections; its text is an IP address and port.
type wrappedAddr string

func (a wrappedAddr) Network() string { return "wrapped" }
func (a wrappedAddr) String() string  { return string(a) }

// wrappingListener gives its connections' peers a wrappedAddr.
type wrappingListener struct{ net.Listener }

type wrappedConn struct{ net.Conn }

func (c wrappedConn) RemoteAddr() net.Addr { return wrappedAddr(c.Conn.RemoteAddr().String()) }

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

// TestFiltersWrappedAddr: Deny applies to a peer whose address is not a
// *net.TCPAddr but reads as an IP address and port, as from a wrapping
// listener; such peers were let through unfiltered.
func TestFiltersWrappedAddr(t *testing.T) {
	t.Parallel()
	l, err := porta.Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &porta.Server{Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(wrappingListener{l}) }()
	t.Cleanup(func() { srv.Close(); <-done })
	c := dialFrom(t, "127.0.0.1", porta.FormatAddr(l.Addr()))
	io.WriteString(c, "hello\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("denied peer got %q, %v; want a close without reply", got, err)
	}
	if n := srv.Stats().Rejected[porta.RejectDenied]; n != 1 {
		t.Errorf("Rejected[denied] = %d, want 1", n)
	}
}

func TestRejectReasonStrings(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range porta.RejectReasons() {
		s := r.String()
		if s == "unknown" || seen[s] {
			t.Errorf("reason %d has label %q", r, s)
		}
		seen[s] = true
	}
	if len(seen) != 3 {
		t.Errorf("got %d reasons, want 3", len(seen))
	}
}
