package porta

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestAcceptedDuringShutdownNotCounted checks that a connection accepted
// just as a shutdown begins, and closed unserved because the server no
// longer takes connections, is not counted: ConnsTotal stays the sum of
// the open and closed connections.
func TestAcceptedDuringShutdownNotCounted(t *testing.T) {
	s := &Server{}
	ls := &listenerStats{}
	s.inShutdown.Store(true)
	server, client := net.Pipe()
	defer client.Close()
	defer server.Close()
	if c := newConn(s, server, ls); s.trackConn(c) {
		t.Fatal("a connection was tracked during a shutdown")
	}
	if st := s.Stats(); st.ConnsTotal != 0 || ls.total.Load() != 0 || ls.open.Load() != 0 {
		t.Errorf("ConnsTotal %d, listener total %d and open %d; want 0 for a connection never served",
			st.ConnsTotal, ls.total.Load(), ls.open.Load())
	}
}

// TestRefusalsBounded checks that a flood of connections over MaxConns
// cannot take a goroutine and a descriptor each for the length of a
// refusal: at most maxRejecting of them are told "ERR too many
// connections" at once, and the others are closed without a word.
func TestRefusalsBounded(t *testing.T) {
	s := &Server{MaxConns: 1}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	held, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(held).ReadString('\n'); err != nil { // served: the one allowed
		t.Fatal(err)
	}

	// Refused peers that stay silent: each refusal lingers a second.
	const n = 3 * maxRejecting
	refused := make([]net.Conn, n)
	for i := range refused {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		refused[i] = c
	}
	told := 0
	for _, c := range refused {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		switch {
		case string(got) == "ERR too many connections\n":
			told++
		case len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)):
			t.Fatalf("a refused peer read %q, %v; want the refusal or the end", got, err)
		}
	}
	if told == 0 || told > maxRejecting {
		t.Errorf("%d of %d refused peers were told why, want 1 to %d", told, n, maxRejecting)
	}
	if st := s.Stats(); st.Rejected[RejectMaxConns] != n {
		t.Errorf("Rejected[max_conns] = %d, want %d", st.Rejected[RejectMaxConns], n)
	}
}

// refuseOne starts s with MaxConns 1 on a loopback port, takes the one
// connection allowed, and returns a second peer that has read its
// refusal, with the first; the server then lingers on the refused one
// (see closeGracefully).
func refuseOne(t *testing.T, s *Server) (held, refused net.Conn) {
	t.Helper()
	s.MaxConns = 1
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	held, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	if _, err := held.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(held).ReadString('\n'); err != nil { // served: the one allowed
		t.Fatal(err)
	}
	refused, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { refused.Close() })
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := bufio.NewReader(refused).ReadString('\n'); got != "ERR too many connections\n" {
		t.Fatalf("refused peer read %q, %v; want the refusal", got, err)
	}
	return held, refused
}

// refusalsUnderWay returns the number of refusals being written.
func (s *Server) refusalsUnderWay() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.refusals)
}

// TestCloseEndsRefusals: Close ends the refusals under way, as it ends
// connections, although a refused peer that keeps sending would hold its
// linger for ten seconds.
func TestCloseEndsRefusals(t *testing.T) {
	s := &Server{}
	_, refused := refuseOne(t, s)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a peer that keeps sending keeps the linger going
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				refused.Write([]byte("x"))
			}
		}
	}()
	if n := s.refusalsUnderWay(); n != 1 {
		t.Fatalf("%d refusals under way, want 1", n)
	}
	s.Close()
	deadline := time.Now().Add(3 * time.Second)
	for s.refusalsUnderWay() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a refusal was still under way 3 s after Close")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownWaitsForRefusals: Shutdown returns once the refusals under
// way have ended, so that none of the server's sockets or goroutines
// outlives it.
func TestShutdownWaitsForRefusals(t *testing.T) {
	s := &Server{}
	held, _ := refuseOne(t, s) // the refused peer is silent: its refusal lingers a second
	held.Close()               // the served one leaves: nothing else to wait for
	if n := s.refusalsUnderWay(); n != 1 {
		t.Fatalf("%d refusals under way, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.refusalsUnderWay(); n != 0 {
		t.Errorf("%d refusals under way after Shutdown returned, want 0", n)
	}
}
