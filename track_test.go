package porta

import (
	"bufio"
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
