package porta_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// TestMain fails the run if a test leaves goroutines behind: a connection
// loop, a lingering close or a UDP loop that outlives its server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Time bounds of the tests, generous so that a loaded machine running the
// race detector does not fail them, and well apart from what they tell
// apart: a server that never acts runs into ioTimeout or a default timeout
// of minutes. They bound waits; they are not timing targets.
const (
	// ioTimeout bounds every client read and write, so that a server that
	// fails to answer fails the test instead of hanging it.
	ioTimeout = 10 * time.Second
	// waitTimeout bounds a poll for a server's state to change.
	waitTimeout = 10 * time.Second
	// promptly bounds what should take a moment, or a timeout of 200 ms.
	promptly = 3 * time.Second
)

// streamNetworks are the stream transports every stream behaviour runs on.
var streamNetworks = []string{"tcp", "unix"}

// dial connects to s with framing f and bounds the connection's I/O.
func dial(t *testing.T, s *portatest.Server, f frame.Framing) *porta.ClientConn {
	t.Helper()
	c := s.Dial(f)
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

// dialRaw opens a plain connection to s and bounds its I/O.
func dialRaw(t *testing.T, s *portatest.Server) net.Conn {
	t.Helper()
	c := s.DialRaw()
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

// expectReply receives one reply and checks it.
func expectReply(t *testing.T, c *porta.ClientConn, want string) {
	t.Helper()
	got, err := c.Receive()
	if err != nil {
		t.Fatalf("receive: %v (want reply %q)", err, want)
	}
	if string(got) != want {
		t.Fatalf("reply = %q, want %q", got, want)
	}
}

// exchange sends msg and checks its reply.
func exchange(t *testing.T, c *porta.ClientConn, msg, want string) {
	t.Helper()
	if err := c.Send([]byte(msg)); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
	expectReply(t, c, want)
}

// expectEOF checks that the server has closed the connection cleanly.
func expectEOF(t *testing.T, c *porta.ClientConn) {
	t.Helper()
	got, err := c.Receive()
	if err != io.EOF {
		t.Fatalf("receive = %q, %v; want io.EOF", got, err)
	}
}

// readUntilEOF reads nc until the server closes it and returns what came.
func readUntilEOF(t *testing.T, nc net.Conn) []byte {
	t.Helper()
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("read until EOF: got %q, then %v", b, err)
	}
	return b
}

// readExactly reads exactly len(want) bytes from nc and checks them.
func readExactly(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if n, err := io.ReadFull(nc, got); err != nil {
		t.Fatalf("read: got %q, then %v; want %q", got[:n], err, want)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// waitFor polls cond every few milliseconds until it holds, and fails the
// test if it does not within timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitClosed waits until the server has no connection open, so that its
// Stats are final.
func waitClosed(t *testing.T, s *portatest.Server) porta.Stats {
	t.Helper()
	waitFor(t, waitTimeout, "all connections to close", func() bool { return s.Stats().ConnsOpen == 0 })
	return s.Stats()
}

// isTimeout reports whether err is a passed deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, the target of a
// test's logger.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
