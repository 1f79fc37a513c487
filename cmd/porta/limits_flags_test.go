package main

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialFrom connects to hostPort from the local address from (127.0.0.0/8).
func dialFrom(t *testing.T, from, hostPort string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", hostPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// readUntilEOF reads what the server sends until it closes; a reset counts
// as a close.
func readUntilEOF(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// lineEcho sends msg as a line on c and checks that it comes back.
func lineEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	io.WriteString(c, msg+"\n")
	b := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg+"\n" {
		t.Fatalf("from %v: echo %q, %v; want %q", c.LocalAddr(), b, err, msg)
	}
}

// TestServeLimitFlags checks that serve's limit flags reach the server:
// --idle-timeout, --read-size, --max-conns-per-ip, --write-timeout,
// --allow and --deny.
func TestServeLimitFlags(t *testing.T) {
	t.Parallel()
	t.Run("idle-timeout", func(t *testing.T) {
		t.Parallel()
		s := startServe(t, []string{"127.0.0.1:0"}, "--idle-timeout", "300ms")
		c := dialFrom(t, "127.0.0.1", s.hostPort())
		start := time.Now()
		if got := readUntilEOF(t, c); got != "" {
			t.Fatalf("a silent connection got %q", got)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed after %v, want about 300ms", d)
		}
		s.stderr.waitForText(t, "porta serve's log", "reason=idle_timeout")
	})
	t.Run("read-size", func(t *testing.T) {
		t.Parallel()
		s := startServe(t, []string{"127.0.0.1:0"}, "--framing", "raw", "--read-size", "4", "-v")
		c := dialFrom(t, "127.0.0.1", s.hostPort())
		io.WriteString(c, "abcdefgh")
		got := make([]byte, 8)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "abcdefgh" {
			t.Fatalf("echo %q, %v", got, err)
		}
		// Raw messages of at most 4 bytes: the 8 bytes were two or more.
		s.stderr.waitForText(t, "porta serve's log", "Received: abcd")
	})
	t.Run("max-conns-per-ip", func(t *testing.T) {
		t.Parallel()
		s := startServe(t, []string{"127.0.0.1:0"}, "--max-conns-per-ip", "1")
		held := dialFrom(t, "127.0.0.2", s.hostPort())
		lineEcho(t, held, "hi")
		if got := readUntilEOF(t, dialFrom(t, "127.0.0.2", s.hostPort())); got != "ERR too many connections\n" {
			t.Errorf("second connection from 127.0.0.2 got %q", got)
		}
		other := dialFrom(t, "127.0.0.3", s.hostPort())
		lineEcho(t, other, "yo")
	})
	t.Run("write-timeout", func(t *testing.T) {
		t.Parallel()
		s := startServe(t, []string{"127.0.0.1:0"}, "--write-timeout", "300ms")
		// A 4 KiB receive buffer, set before connecting: shrunk after the
		// handshake, it would be smaller than the window already
		// advertised, and the kernel could drop replies inside that
		// window and then reject the server's window updates, leaving
		// the server waiting to read with no reply blocked.
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
			return err
		}}
		c, err := d.Dial("tcp", s.hostPort())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Send echoes without reading them, until the server's replies
		// fill both sockets' buffers and its write waits out the timeout.
		line := make([]byte, 8<<10)
		for i := range line {
			line[i] = 'x'
		}
		line[len(line)-1] = '\n'
		closed := func(log string) bool { return strings.Contains(log, "reason=slow_consumer") }
		// Well under the 10 s default, which a flag that did not reach
		// the server would leave in force.
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) && !closed(s.stderr.String()) {
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := c.Write(line); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				break // the server closed the connection
			}
		}
		if log, ok := s.stderr.waitFor(time.Until(deadline), closed); !ok {
			t.Fatalf("no slow_consumer close within 4s with --write-timeout 300ms; the log holds:\n%s", log)
		}
	})
	t.Run("allow and deny", func(t *testing.T) {
		t.Parallel()
		s := startServe(t, []string{"127.0.0.1:0"}, "--allow", "127.0.0.0/29", "--deny", "127.0.0.5")
		for _, tc := range []struct {
			from    string
			allowed bool
		}{{"127.0.0.4", true}, {"127.0.0.5", false}, {"127.0.0.9", false}} {
			c := dialFrom(t, tc.from, s.hostPort())
			io.WriteString(c, "hi\nclose\n")
			got := readUntilEOF(t, c)
			if want := map[bool]string{true: "hi\nclosed\n", false: ""}[tc.allowed]; got != want {
				t.Errorf("from %s: got %q, want %q", tc.from, got, want)
			}
		}
		s.stderr.waitForText(t, "porta serve's log", "connection denied")
	})
}
