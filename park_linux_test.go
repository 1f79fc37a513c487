package porta

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of parking: idle connections give up their goroutines to the
// server's parker and get new ones when input arrives. They are internal
// tests, to set a short park delay and to see the parker's set.

const parkWait = 10 * time.Second // bounds every wait below; not a target

// mayBlockEcho echoes, but is not marked NonBlocking: its connections wait
// on goroutines, which park (a marked handler's wait in event loops).
var mayBlockEcho = HandlerFunc(func(w ResponseWriter, m *Message) { w.Write(m.Body) })

// parkServer starts s on a loopback TCP or Unix listener and returns its
// address; s is closed at the end of the test.
func parkServer(t *testing.T, s *Server, network string) (string, string) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = t.TempDir() + "/s.sock"
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return network, l.Addr().String()
}

type parkClient struct {
	net.Conn
	r *bufio.Reader
}

func parkDial(t *testing.T, network, addr string) *parkClient {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(parkWait))
	return &parkClient{c, bufio.NewReader(c)}
}

// exchange sends msg and checks that it comes back.
func (c *parkClient) exchange(t *testing.T, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("reply %q, %v; want %q", got, err, msg)
	}
}

// expectEnd checks that the server ends the connection.
func (c *parkClient) expectEnd(t *testing.T) {
	t.Helper()
	got, err := c.r.ReadString('\n')
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read %q, %v; want the connection ended", got, err)
	}
}

func parkedCount(s *Server) int {
	s.mu.Lock()
	p := s.park
	s.mu.Unlock()
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(parkWait); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestParkIdle checks that idle connections park, end their goroutines,
// and are served again, and park again, when input arrives.
func TestParkIdle(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			const n = 40
			s := &Server{Handler: mayBlockEcho, parkAfter: 20 * time.Millisecond}
			before := runtime.NumGoroutine()
			cs := waitingClientsOn(t, s, network, n, parkedCount)
			checkParkedHoldNoBuffers(t, s)
			// The server's accept loop and parker are goroutines too; the
			// connections must not keep theirs.
			waitUntil(t, "the connections' goroutines to end", func() bool { return runtime.NumGoroutine() < before+n/4 })
			for round := range 3 {
				for i, c := range cs {
					c.exchange(t, fmt.Sprint("round ", round, " client ", i))
				}
				waitUntil(t, "every connection to park again", func() bool { return parkedCount(s) == n })
				checkParkedHoldNoBuffers(t, s)
			}
			if st := s.Stats(); st.ConnsOpen != n || st.MessagesIn != 4*n {
				t.Errorf("ConnsOpen = %d, MessagesIn = %d; want %d and %d", st.ConnsOpen, st.MessagesIn, n, 4*n)
			}
		})
	}
}

// TestParkNotMidFrame checks that a connection in the middle of a frame
// does not park, and finishes the frame.
func TestParkNotMidFrame(t *testing.T) {
	s := &Server{Handler: mayBlockEcho, parkAfter: 5 * time.Millisecond}
	nw, addr := parkServer(t, s, "tcp")
	c := parkDial(t, nw, addr)
	c.exchange(t, "first")
	waitUntil(t, "the connection to park", func() bool { return parkedCount(s) == 1 })
	if _, err := c.Write([]byte("hal")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the connection to resume", func() bool { return parkedCount(s) == 0 })
	time.Sleep(50 * time.Millisecond) // ten park delays
	if got := parkedCount(s); got != 0 {
		t.Fatalf("%d parked with a frame in progress, want 0", got)
	}
	if _, err := c.Write([]byte("f\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.r.ReadString('\n'); err != nil || got != "half\n" {
		t.Fatalf("reply %q, %v; want \"half\"", got, err)
	}
}

// TestParkIdleTimeout checks that a parked connection is closed at its
// idle timeout, as a waiting one is.
func TestParkIdleTimeout(t *testing.T) {
	checkIdleTimeout(t, &Server{Handler: mayBlockEcho, parkAfter: 10 * time.Millisecond}, parkedCount)
}

// TestParkShutdown checks that Shutdown ends parked connections promptly,
// as idle ones, and returns.
func TestParkShutdown(t *testing.T) {
	s := &Server{Handler: mayBlockEcho, parkAfter: 10 * time.Millisecond}
	checkShutdownEnds(t, s, waitingClients(t, s, 20, parkedCount))
}

// TestParkClose checks that Close ends parked connections and counts
// them closed.
func TestParkClose(t *testing.T) {
	s := &Server{Handler: mayBlockEcho, parkAfter: 10 * time.Millisecond}
	checkCloseEnds(t, s, waitingClients(t, s, 20, parkedCount))
}

// TestParkPeerEnds checks that a peer's close, half-close or reset
// reaches a parked connection: a half-closing peer gets its reply, then
// the end.
func TestParkPeerEnds(t *testing.T) {
	s := &Server{Handler: mayBlockEcho, parkAfter: 10 * time.Millisecond}
	checkPeerEnds(t, s, waitingClients(t, s, 3, parkedCount))
}

// Checks shared by the parking and event-loop tests: count says how many
// of a server's connections wait without a goroutine (parkedCount,
// loopedCount).

// waitingClients starts s on TCP and returns n clients whose connections
// have each answered a message and now wait where count counts them.
func waitingClients(t *testing.T, s *Server, n int, count func(*Server) int) []*parkClient {
	t.Helper()
	return waitingClientsOn(t, s, "tcp", n, count)
}

// waitingClientsOn is waitingClients on network (tcp or unix).
func waitingClientsOn(t *testing.T, s *Server, network string, n int, count func(*Server) int) []*parkClient {
	t.Helper()
	nw, addr := parkServer(t, s, network)
	cs := make([]*parkClient, n)
	for i := range cs {
		cs[i] = parkDial(t, nw, addr)
		cs[i].exchange(t, fmt.Sprint("hello ", i))
	}
	waitUntil(t, "every connection to wait without a goroutine", func() bool { return count(s) == n })
	return cs
}

// checkIdleTimeout checks that a connection of s (whose IdleTimeout it
// sets) waiting where count counts it is closed at its idle timeout.
func checkIdleTimeout(t *testing.T, s *Server, count func(*Server) int) {
	t.Helper()
	s.IdleTimeout = 300 * time.Millisecond
	start := time.Now()
	c := waitingClients(t, s, 1, count)[0]
	c.expectEnd(t)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, want about the 300ms idle timeout", d)
	}
	waitUntil(t, "the close to be counted", func() bool { return s.Stats().ConnsOpen == 0 })
	if got := s.Stats().Closed[CloseIdle]; got != 1 {
		t.Errorf("Closed[idle_timeout] = %d, want 1", got)
	}
}

// checkShutdownEnds checks that Shutdown ends the waiting connections of
// cs promptly, as idle ones, and returns.
func checkShutdownEnds(t *testing.T, s *Server, cs []*parkClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), parkWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	for _, c := range cs {
		c.expectEnd(t)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if got := s.Stats().Closed[CloseShutdown]; got != uint64(len(cs)) {
		t.Errorf("Closed[shutdown] = %d, want %d", got, len(cs))
	}
}

// checkCloseEnds checks that Close ends the waiting connections of cs and
// counts them closed.
func checkCloseEnds(t *testing.T, s *Server, cs []*parkClient) {
	t.Helper()
	s.Close()
	for _, c := range cs {
		c.expectEnd(t)
	}
	waitUntil(t, "every connection to be counted closed", func() bool { return s.Stats().ConnsOpen == 0 })
}

// checkPeerEnds checks, with the three waiting connections of cs, that a
// peer's close, half-close or reset reaches a waiting connection: a
// half-closing peer gets its reply, then the end.
func checkPeerEnds(t *testing.T, s *Server, cs []*parkClient) {
	t.Helper()
	closing, halfClosing, resetting := cs[0], cs[1], cs[2]
	closing.Close()
	resetting.Conn.(*net.TCPConn).SetLinger(0)
	resetting.Close()
	halfClosing.Write([]byte("last\n"))
	halfClosing.Conn.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(halfClosing.r); err != nil || string(got) != "last\n" {
		t.Errorf("half-closed peer read %q, %v; want the reply, then the end", got, err)
	}
	waitUntil(t, "the connections to be counted closed", func() bool { return s.Stats().ConnsOpen == 0 })
	if got := s.Stats().Closed[ClosePeer]; got != 3 {
		t.Errorf("Closed[peer_closed] = %d, want 3", got)
	}
}

// TestParkRace runs many connections whose pauses straddle the park
// delay, so that input arrives while connections park and resume, and
// checks every reply.
func TestParkRace(t *testing.T) {
	const conns, msgs = 30, 40
	s := &Server{Handler: mayBlockEcho, parkAfter: time.Millisecond}
	nw, addr := parkServer(t, s, "tcp")
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := parkDial(t, nw, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range msgs {
				msg := fmt.Sprintf("client %d message %d %s", i, j, strings.Repeat("x", j))
				if _, err := c.Write([]byte(msg + "\n")); err != nil {
					errs <- err
					return
				}
				got, err := c.r.ReadString('\n')
				if err != nil || got != msg+"\n" {
					errs <- fmt.Errorf("reply %q, %v; want %q", got, err, msg)
					return
				}
				time.Sleep(time.Duration(rand.IntN(2500)) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkParkedHoldNoBuffers checks that no parked connection holds a reply
// buffer or buffered input.
func checkParkedHoldNoBuffers(t *testing.T, s *Server) {
	t.Helper()
	s.park.mu.Lock()
	defer s.park.mu.Unlock()
	for _, c := range s.park.conns {
		if c.outBuf != nil || c.out != nil || c.dec.Buffered() != 0 {
			t.Fatalf("a parked connection holds a reply buffer (%v) or %d bytes of input", c.outBuf != nil, c.dec.Buffered())
		}
	}
}

// TestParkSoon checks that a connection resumed after a long park parks
// again as soon as it has answered, and that one resumed soon after
// parking (busy again) keeps its goroutine for the park delay.
func TestParkSoon(t *testing.T) {
	const delay = 300 * time.Millisecond
	s := &Server{Handler: mayBlockEcho, parkAfter: delay}
	nw, addr := parkServer(t, s, "tcp")
	c := parkDial(t, nw, addr)
	c.exchange(t, "first")
	waitUntil(t, "the connection to park", func() bool { return parkedCount(s) == 1 })
	time.Sleep(delay) // a long park
	start := time.Now()
	c.exchange(t, "after a long park")
	waitUntil(t, "the connection to park again", func() bool { return parkedCount(s) == 1 })
	if d := time.Since(start); d >= delay/2 {
		t.Errorf("parked again after %v, want at once (well before the %v delay)", d, delay)
	}
	checkParkedHoldNoBuffers(t, s)
	c.exchange(t, "soon after parking")
	time.Sleep(delay / 4)
	if got := parkedCount(s); got != 0 {
		t.Errorf("parked %v after a reply that came soon after parking, want it kept for %v", delay/4, delay)
	}
	waitUntil(t, "the connection to park after its delay", func() bool { return parkedCount(s) == 1 })
}
