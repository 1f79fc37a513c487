package porta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porta-project/porta/internal/parkdelay"
)

// Tests of event loops: the connections of a handler that never blocks
// wait for input in the server's loops, without goroutines, and leave them
// for a goroutine when a step cannot finish without waiting. They are
// internal tests, to see the loops' sets; they reuse the parking tests'
// helpers.

// skipWithoutLoops skips the test in a run that turns the loops off.
func skipWithoutLoops(t *testing.T) {
	t.Helper()
	if parkdelay.LoopsOff {
		t.Skipf("event loops are off in this run (%s is set)", parkdelay.EnvVar)
	}
}

// oneLoop makes the servers the test starts have one event loop, so that
// all their connections share it.
func oneLoop(t *testing.T) {
	t.Helper()
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}

// loopedCount returns how many connections wait in s's event loops.
func loopedCount(s *Server) int {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	n := 0
	for _, l := range loops {
		l.mu.Lock()
		n += len(l.conns)
		l.mu.Unlock()
	}
	return n
}

// loopCount returns how many event loops s has.
func loopCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.loops)
}

// checkWaitsHoldNoBuffers makes s fail t when a connection waits in a loop
// with a reply buffer or buffered input; it checks on the loop's
// goroutine, which owns the connection.
func checkWaitsHoldNoBuffers(t *testing.T, s *Server) {
	s.testHookLoopWait = func(c *conn) {
		if c.outBuf != nil || c.out != nil || c.dec.Buffered() != 0 {
			t.Errorf("a connection waits in a loop with a reply buffer (%v) or %d bytes of input", c.outBuf != nil, c.dec.Buffered())
		}
	}
}

// TestLoopServes checks that the connections of a non-blocking handler
// wait in the event loops, holding no goroutine and no buffer, and are
// served from there.
func TestLoopServes(t *testing.T) {
	skipWithoutLoops(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			const n = 40
			s := &Server{}
			checkWaitsHoldNoBuffers(t, s)
			before := runtime.NumGoroutine()
			cs := waitingClientsOn(t, s, network, n, loopedCount)
			// The server's accept loop, parker and loops are goroutines
			// too; the connections must not keep theirs.
			waitUntil(t, "the connections' goroutines to end", func() bool { return runtime.NumGoroutine() < before+n/4 })
			for round := range 3 {
				for i, c := range cs {
					c.exchange(t, fmt.Sprint("round ", round, " client ", i))
				}
				if got := loopedCount(s); got != n {
					t.Fatalf("%d connections in the loops after round %d, want %d", got, round, n)
				}
			}
			if got := parkedCount(s); got != 0 {
				t.Errorf("%d connections parked, want 0: they wait in the loops", got)
			}
			if st := s.Stats(); st.ConnsOpen != n || st.MessagesIn != 4*n {
				t.Errorf("ConnsOpen, MessagesIn = %d, %d; want %d, %d", st.ConnsOpen, st.MessagesIn, n, 4*n)
			}
			// A reply is counted once written, which may be just after the
			// peer has it.
			waitUntil(t, "every reply to be counted", func() bool { return s.Stats().MessagesOut == 4*n })
		})
	}
}

// TestLoopOnlyNonBlocking checks which handlers get event loops: those
// marked as never blocking, porta's own, and wrappers of them; not others.
func TestLoopOnlyNonBlocking(t *testing.T) {
	skipWithoutLoops(t)
	for _, tc := range []struct {
		name    string
		handler Handler
		loops   bool
	}{
		{"default", nil, true},
		{"Echo", Echo, true},
		{"Upper", Upper, true},
		{"Reply", Reply("accepted"), true},
		{"HangUpOn Echo", HangUpOn("close", "closed", Echo), true},
		{"Once Upper", Once(Upper), true},
		{"NonBlocking func", NonBlocking(mayBlockEcho), true},
		{"func", mayBlockEcho, false},
		{"HangUpOn func", HangUpOn("close", "closed", mayBlockEcho), false},
		{"Once func", Once(mayBlockEcho), false},
		{"LogMessages Echo", LogMessages(discardLogger)(Echo), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Handler: tc.handler, parkAfter: time.Hour}
			nw, addr := parkServer(t, s, "tcp")
			c := parkDial(t, nw, addr)
			c.Write([]byte("hi\n"))
			if _, err := c.r.ReadString('\n'); err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if !tc.loops {
				time.Sleep(20 * time.Millisecond) // time to join a loop, were there one
				if loopCount(s) != 0 || loopedCount(s) != 0 {
					t.Fatalf("%d loops, %d connections in them; want none", loopCount(s), loopedCount(s))
				}
				return
			}
			if loopCount(s) != runtime.GOMAXPROCS(0) {
				t.Errorf("%d loops, want one per processor (%d)", loopCount(s), runtime.GOMAXPROCS(0))
			}
			if _, once := tc.handler.(once); once {
				c.expectEnd(t) // hung up after its reply
				return
			}
			waitUntil(t, "the connection to wait in a loop", func() bool { return loopedCount(s) == 1 })
		})
	}
}

// TestLoopMidFrame checks that a connection with a frame in progress
// leaves the loop for a goroutine, which finishes the frame under its
// frame timeout, and comes back once answered.
func TestLoopMidFrame(t *testing.T) {
	skipWithoutLoops(t)
	t.Run("completed", func(t *testing.T) {
		s := &Server{}
		nw, addr := parkServer(t, s, "tcp")
		c := parkDial(t, nw, addr)
		c.exchange(t, "first")
		waitUntil(t, "the connection to wait in a loop", func() bool { return loopedCount(s) == 1 })
		if _, err := c.Write([]byte("hal")); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the connection to leave the loop", func() bool { return loopedCount(s) == 0 })
		time.Sleep(20 * time.Millisecond)
		if got := loopedCount(s); got != 0 {
			t.Fatalf("%d in the loop with a frame in progress, want 0", got)
		}
		if _, err := c.Write([]byte("f\n")); err != nil {
			t.Fatal(err)
		}
		if got, err := c.r.ReadString('\n'); err != nil || got != "half\n" {
			t.Fatalf("reply %q, %v; want \"half\"", got, err)
		}
		waitUntil(t, "the connection to come back to the loop", func() bool { return loopedCount(s) == 1 })
	})
	t.Run("frame timeout", func(t *testing.T) {
		s := &Server{FrameTimeout: 200 * time.Millisecond}
		nw, addr := parkServer(t, s, "tcp")
		c := parkDial(t, nw, addr)
		c.exchange(t, "first")
		waitUntil(t, "the connection to wait in a loop", func() bool { return loopedCount(s) == 1 })
		start := time.Now()
		if _, err := c.Write([]byte("never ends")); err != nil {
			t.Fatal(err)
		}
		c.expectEnd(t)
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("closed after %v, want about the 200ms frame timeout", d)
		}
		waitUntil(t, "the close to be counted", func() bool { return s.Stats().ConnsOpen == 0 })
		if got := s.Stats().Closed[CloseFrameTimeout]; got != 1 {
			t.Errorf("Closed[frame_timeout] = %d, want 1", got)
		}
	})
}

// bigReply answers every message with 32 KiB, so that a peer that does not
// read soon fills its socket.
var bigReply = Reply(strings.Repeat("r", 32<<10))

// fillSocket sends 4 KiB messages to a server that answers each with
// bigReply, reading nothing, until the server's writes have blocked: its
// replies fill both sockets and it stops reading, so the sends stall too.
// It returns how many messages it began, and the rest of the last one if
// its send stalled partway: the caller sends that while it reads.
func fillSocket(t *testing.T, c *parkClient) (sent int, rest []byte) {
	t.Helper()
	msg := []byte(strings.Repeat("m", 4095) + "\n")
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	defer c.SetWriteDeadline(time.Now().Add(parkWait))
	for ; sent < 10000; sent++ {
		if n, err := c.Write(msg); err != nil {
			if n > 0 { // a partial message
				return sent + 1, msg[n:]
			}
			return sent, nil // the server no longer reads
		}
	}
	t.Fatal("the server read 40 MB of messages without its replies being read")
	return 0, nil
}

// TestLoopFullSocket checks that replies the socket will not take are not
// written by the loop: the connection leaves it for a goroutine, other
// connections of the loop are served meanwhile, and every reply arrives,
// in order, once the peer reads.
func TestLoopFullSocket(t *testing.T) {
	skipWithoutLoops(t)
	oneLoop(t)
	s := &Server{Handler: HangUpOn("close", "closed", bigReply), MaxMessageSize: 1 << 20}
	nw, addr := parkServer(t, s, "tcp")
	stuck, other := parkDial(t, nw, addr), parkDial(t, nw, addr)
	want := strings.Repeat("r", 32<<10) + "\n"
	for _, c := range []*parkClient{stuck, other} {
		c.Write([]byte("x\n"))
		if got, err := c.r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("reply of %d bytes, %v; want %d", len(got), err, len(want))
		}
	}
	waitUntil(t, "both connections to wait in the loop", func() bool { return loopedCount(s) == 2 })
	sent, rest := fillSocket(t, stuck)
	if got := loopedCount(s); got != 1 {
		t.Errorf("%d connections in the loop while one has replies waiting, want 1", got)
	}
	// The loop is not held up by the stuck connection.
	other.Write([]byte("x\n"))
	if got, err := other.r.ReadString('\n'); err != nil || got != want {
		t.Fatalf("other connection: reply of %d bytes, %v; want %d", len(got), err, len(want))
	}
	// The sends wait for the server to read, which waits for this test
	// to read the replies.
	go stuck.Write(append(rest, "close\n"...))
	for i := range sent {
		if got, err := stuck.r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("reply %d of %d: %d bytes, %v; want %d", i+1, sent, len(got), err, len(want))
		}
	}
	if got, err := io.ReadAll(stuck.r); err != nil || string(got) != "closed\n" {
		t.Fatalf("after the replies: %q, %v; want \"closed\", then the end", got, err)
	}
}

// TestLoopSlowConsumer checks that the write timeout still ends a peer
// that takes no replies: the goroutine that the loop handed it to writes
// under the deadline.
func TestLoopSlowConsumer(t *testing.T) {
	skipWithoutLoops(t)
	s := &Server{Handler: bigReply, WriteTimeout: 200 * time.Millisecond}
	nw, addr := parkServer(t, s, "tcp")
	c := parkDial(t, nw, addr)
	fillSocket(t, c)
	waitUntil(t, "the close to be counted", func() bool { return s.Stats().ConnsOpen == 0 })
	if got := s.Stats().Closed[CloseSlowConsumer]; got != 1 {
		t.Errorf("Closed[slow_consumer] = %d, want 1 (closes: %v)", got, s.Stats().Closed)
	}
}

// TestLoopIdleTimeout checks that a connection waiting in a loop is closed
// at its idle timeout.
func TestLoopIdleTimeout(t *testing.T) {
	skipWithoutLoops(t)
	checkIdleTimeout(t, &Server{}, loopedCount)
}

// TestLoopShutdown checks that Shutdown ends the connections waiting in
// loops, as idle ones, and returns; and that the loops end empty.
func TestLoopShutdown(t *testing.T) {
	skipWithoutLoops(t)
	s := &Server{}
	checkShutdownEnds(t, s, waitingClients(t, s, 20, loopedCount))
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	for i, l := range loops {
		l.mu.Lock()
		closed, left := l.closed, len(l.conns)
		l.mu.Unlock()
		if !closed || left != 0 {
			t.Errorf("loop %d: closed %v with %d connections; want closed, empty", i, closed, left)
		}
	}
}

// TestLoopClose checks that Close ends the connections waiting in loops
// and counts them closed.
func TestLoopClose(t *testing.T) {
	skipWithoutLoops(t)
	s := &Server{}
	checkCloseEnds(t, s, waitingClients(t, s, 20, loopedCount))
}

// TestLoopStoppedBeforeStart checks that loops that Close stops before
// their goroutines first run end at once: arming the first idle scan must
// not undo the stop's wake-up (it did, and such loops lived until their
// first scan, an eighth of IdleTimeout later).
func TestLoopStoppedBeforeStart(t *testing.T) {
	skipWithoutLoops(t)
	start := make(chan struct{})
	s := &Server{Handler: Echo, IdleTimeout: time.Hour, testHookLoopStart: func() { <-start }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	var loops []*eventLoop
	waitUntil(t, "the loops to start", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		loops = s.loops
		return len(loops) > 0
	})
	s.Close()
	close(start)
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	waitUntil(t, "the stopped loops to end", func() bool {
		for _, l := range loops {
			if _, err := l.ep.Stat(); !errors.Is(err, os.ErrClosed) {
				return false // not closed by run yet
			}
		}
		return true
	})
}

// TestLoopPeerEnds checks that a peer's close, half-close or reset
// reaches a connection waiting in a loop, and that the loop lets go of
// the connections it closed.
func TestLoopPeerEnds(t *testing.T) {
	skipWithoutLoops(t)
	s := &Server{}
	checkPeerEnds(t, s, waitingClients(t, s, 3, loopedCount))
	if got := loopedCount(s); got != 0 {
		t.Errorf("%d closed connections left in the loops", got)
	}
}

// TestLoopPanic checks that a panic in a handler served from a loop
// closes only its connection: the loop goes on serving the others.
func TestLoopPanic(t *testing.T) {
	skipWithoutLoops(t)
	oneLoop(t)
	s := &Server{Handler: NonBlocking(HandlerFunc(func(w ResponseWriter, m *Message) {
		if string(m.Body) == "boom" {
			panic("boom")
		}
		w.Write(m.Body)
	})), Logger: discardLogger}
	cs := waitingClients(t, s, 2, loopedCount)
	cs[0].Write([]byte("boom\n"))
	cs[0].expectEnd(t)
	cs[1].exchange(t, "still served")
	waitUntil(t, "the close to be counted", func() bool { return s.Stats().ConnsOpen == 1 })
	if st := s.Stats(); st.Panics != 1 || st.Closed[ClosePanic] != 1 {
		t.Errorf("Panics = %d, Closed[panic] = %d; want 1 and 1", st.Panics, st.Closed[ClosePanic])
	}
	if got := loopedCount(s); got != 1 {
		t.Errorf("%d connections in the loop, want the one left", got)
	}
}

// TestLoopRace runs many connections whose messages come whole, split
// across pauses, or many at once, so that connections leave the loops and
// come back while others are served, and checks every reply.
func TestLoopRace(t *testing.T) {
	skipWithoutLoops(t)
	const conns, msgs = 30, 40
	s := &Server{}
	nw, addr := parkServer(t, s, "tcp")
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := parkDial(t, nw, addr)
		wg.Go(func() {
			for j := 0; j < msgs; {
				msg := fmt.Sprintf("client %d message %d %s", i, j, strings.Repeat("x", j))
				var batch []byte
				k := 1
				switch rand.IntN(3) {
				case 0: // whole
					batch = []byte(msg + "\n")
				case 1: // split, with a pause inside the frame
					half := len(msg) / 2
					if _, err := c.Write([]byte(msg[:half])); err != nil {
						errs <- err
						return
					}
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
					batch = []byte(msg[half:] + "\n")
				default: // pipelined
					k = 4
					batch = bytes.Repeat([]byte(msg+"\n"), k)
				}
				if _, err := c.Write(batch); err != nil {
					errs <- err
					return
				}
				for range k {
					got, err := c.r.ReadString('\n')
					if err != nil || got != msg+"\n" {
						errs <- fmt.Errorf("reply %q, %v; want %q", got, err, msg)
						return
					}
				}
				j += k
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLoopHandlerCloses checks that a handler run by a loop may call
// Server.Close: the loop is stopped without waiting for itself.
func TestLoopHandlerCloses(t *testing.T) {
	skipWithoutLoops(t)
	s := &Server{}
	s.Handler = NonBlocking(HandlerFunc(func(w ResponseWriter, m *Message) {
		if string(m.Body) == "stop" {
			s.Close()
			return
		}
		w.Write(m.Body)
	}))
	cs := waitingClients(t, s, 3, loopedCount)
	cs[0].Write([]byte("stop\n"))
	for _, c := range cs {
		c.expectEnd(t)
	}
	waitUntil(t, "every connection to be counted closed", func() bool { return s.Stats().ConnsOpen == 0 })
	if got := s.Stats().Closed[CloseShutdown]; got != 3 {
		t.Errorf("Closed[shutdown] = %d, want 3 (closes: %v)", got, s.Stats().Closed)
	}
}

// TestLoopManyReady checks a loop with more connections ready at once
// than one epoll_wait returns (128): it serves them in batches and
// answers every one. The handler holds the loop on purpose, to let the
// input of all the others arrive meanwhile, which is what a marked
// handler that blocks does to its loop.
func TestLoopManyReady(t *testing.T) {
	skipWithoutLoops(t)
	oneLoop(t)
	const n = 300
	held, release := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: NonBlocking(HandlerFunc(func(w ResponseWriter, m *Message) {
		if string(m.Body) == "hold" {
			close(held)
			<-release
		}
		w.Write(m.Body)
	}))}
	cs := waitingClients(t, s, n+1, loopedCount)
	cs[n].Write([]byte("hold\n"))
	<-held
	for i, c := range cs[:n] {
		if _, err := c.Write(fmt.Appendf(nil, "client %d\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // for the input to arrive
	close(release)
	if got, err := cs[n].r.ReadString('\n'); err != nil || got != "hold\n" {
		t.Fatalf("the holding client: reply %q, %v; want \"hold\"", got, err)
	}
	for i, c := range cs[:n] {
		want := fmt.Sprintf("client %d\n", i)
		if got, err := c.r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("client %d: reply %q, %v; want %q", i, got, err, want)
		}
	}
}

// TestLoopShutdownMidFrame checks a graceful shutdown of a connection that
// left its loop with a frame in progress: it finishes the frame, answers
// it and hangs up, losing no reply.
func TestLoopShutdownMidFrame(t *testing.T) {
	skipWithoutLoops(t)
	s := &Server{}
	c := waitingClients(t, s, 1, loopedCount)[0]
	if _, err := c.Write([]byte("hal")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the connection to leave the loop", func() bool { return loopedCount(s) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), parkWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	waitUntil(t, "the shutdown to begin", func() bool { return s.shuttingDown() })
	if _, err := c.Write([]byte("f\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.r.ReadString('\n'); err != nil || got != "half\n" {
		t.Fatalf("reply %q, %v; want \"half\"", got, err)
	}
	c.expectEnd(t)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if got := s.Stats().Closed[CloseShutdown]; got != 1 {
		t.Errorf("Closed[shutdown] = %d, want 1 (closes: %v)", got, s.Stats().Closed)
	}
}

// TestLoopEndWithInput checks that a loop sees a peer's end or reset that
// arrived together with its last message, while the loop was busy: a read
// of the message alone, shorter than its buffer, would pass for having
// emptied the socket, and the connection would wait for its idle timeout.
func TestLoopEndWithInput(t *testing.T) {
	skipWithoutLoops(t)
	oneLoop(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			held, release := make(chan struct{}), make(chan struct{})
			s := &Server{IdleTimeout: time.Hour, Handler: NonBlocking(HandlerFunc(func(w ResponseWriter, m *Message) {
				if string(m.Body) == "hold" {
					close(held)
					<-release
				}
				w.Write(m.Body)
			}))}
			cs := waitingClientsOn(t, s, network, 3, loopedCount)
			holding, ending, resetting := cs[0], cs[1], cs[2]
			holding.Write([]byte("hold\n"))
			<-held
			ending.Write([]byte("last\n"))
			ending.Conn.(interface{ CloseWrite() error }).CloseWrite()
			ends := 1
			if tc, ok := resetting.Conn.(*net.TCPConn); ok {
				resetting.Write([]byte("gone\n"))
				tc.SetLinger(0)
				tc.Close()
				ends++
			}
			time.Sleep(50 * time.Millisecond) // for the input and the ends to arrive
			close(release)
			if got, err := io.ReadAll(ending.r); err != nil || string(got) != "last\n" {
				t.Errorf("ending peer read %q, %v; want the reply, then the end", got, err)
			}
			waitUntil(t, "the ended connections to close", func() bool { return s.Stats().ConnsOpen == int64(3-ends) })
			if got := s.Stats().Closed[ClosePeer]; got != uint64(ends) {
				t.Errorf("Closed[peer_closed] = %d, want %d (closes: %v)", got, ends, s.Stats().Closed)
			}
		})
	}
}
