package porta_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// running is a server serving one listener for a test, with Serve's result
// at hand.
type running struct {
	srv  *porta.Server
	addr string

	once sync.Once
	done chan error
	err  error
}

// serve listens on a fresh address of network ("tcp", "unix" or "udp") and
// serves srv on it. The server is closed when the test ends.
func serve(t *testing.T, srv *porta.Server, network string) *running {
	t.Helper()
	r := &running{srv: srv, done: make(chan error, 1)}
	switch network {
	case "tcp":
		l, err := porta.Listen("tcp://127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.addr = porta.FormatAddr(l.Addr())
		go func() { r.done <- srv.Serve(l) }()
	case "unix":
		l, err := porta.Listen("unix://" + filepath.Join(t.TempDir(), "s.sock"))
		if err != nil {
			t.Fatal(err)
		}
		r.addr = porta.FormatAddr(l.Addr())
		go func() { r.done <- srv.Serve(l) }()
	case "udp":
		pc, err := porta.ListenPacket("udp://127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.addr = porta.FormatAddr(pc.LocalAddr())
		go func() { r.done <- srv.ServePacket(pc) }()
	default:
		t.Fatalf("unknown network %q", network)
	}
	t.Cleanup(func() {
		srv.Close()
		r.serveErr(t)
	})
	return r
}

// serveErr waits for Serve to return and returns its error.
func (r *running) serveErr(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
		case <-time.After(10 * time.Second):
			r.err = errors.New("Serve did not return within 10s")
		}
	})
	return r.err
}

// dial connects to the server with framing f and bounds its I/O.
func (r *running) dial(t *testing.T, f frame.Framing) *porta.ClientConn {
	t.Helper()
	d := porta.Dialer{Framing: f, Timeout: ioTimeout}
	c, err := d.DialContext(context.Background(), r.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// shutdownAsync starts a Shutdown with a context of timeout and returns
// where its result will arrive.
func shutdownAsync(srv *porta.Server, timeout time.Duration) <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ch <- srv.Shutdown(ctx)
	}()
	return ch
}

// TestShutdownInFlight shuts a server down at a random moment while 50
// clients pipeline messages as fast as they can, and checks that no reply
// is lost or garbled: every message the server read was answered.
func TestShutdownInFlight(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		network := streamNetworks[i%len(streamNetworks)]
		f := []frame.Framing{frame.Line, frame.Length}[i/2%2]
		delay := time.Duration(rand.Int64N(int64(300 * time.Millisecond)))
		t.Run(fmt.Sprintf("%d/%s/%s/%v", i, network, f, delay.Round(time.Millisecond)), func(t *testing.T) {
			t.Parallel()
			testShutdownInFlight(t, network, f, delay)
		})
	}
}

func testShutdownInFlight(t *testing.T, network string, f frame.Framing, delay time.Duration) {
	const (
		clients     = 50
		maxMessages = 10000
		maxDuration = 2 * time.Second
	)
	r := serve(t, &porta.Server{Framing: f}, network)
	conns := make([]*porta.ClientConn, clients)
	for i := range conns {
		conns[i] = r.dial(t, f)
		// Accepted and served before the shutdown: a connection still in
		// the listener's queue is refused when the listener closes.
		exchange(t, conns[i], "ready", "ready")
	}

	var replies atomic.Uint64
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			defer c.Close()
			readerDone := make(chan struct{})
			// The writer sends until the reader meets the end of stream,
			// as a pipelining client does, or until its bounds.
			var writer sync.WaitGroup
			defer writer.Wait()
			defer close(readerDone)
			writer.Go(func() {
				stop := time.Now().Add(maxDuration)
				for j := 0; j < maxMessages && time.Now().Before(stop); j++ {
					select {
					case <-readerDone:
						return
					default:
					}
					if err := c.Send(fmt.Appendf(nil, "client %d message %d", i, j)); err != nil {
						return // the server has closed: expected
					}
				}
			})
			// Read every reply, in order, until the server closes.
			for j := 0; ; j++ {
				got, err := c.Receive()
				if err == io.EOF {
					return
				}
				if want := fmt.Sprintf("client %d message %d", i, j); err != nil || string(got) != want {
					t.Errorf("client %d: reply %d = %q, %v; want %q", i, j, got, err, want)
					return
				}
				replies.Add(1)
			}
		})
	}

	time.Sleep(delay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	wg.Wait()

	if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	st := r.srv.Stats()
	st.MessagesIn -= clients // the "ready" exchanges
	st.MessagesOut -= clients
	if got := replies.Load(); got != st.MessagesOut || st.MessagesOut != st.MessagesIn {
		t.Errorf("clients got %d replies; server read %d messages and sent %d replies; want all equal",
			got, st.MessagesIn, st.MessagesOut)
	}
	if st.ConnsOpen != 0 || st.Closed[porta.CloseShutdown] != clients {
		t.Errorf("ConnsOpen = %d, Closed = %v; want 0 open and %d closed by the shutdown", st.ConnsOpen, st.Closed, clients)
	}
	t.Logf("%d replies before and during the drain", replies.Load())

	d := porta.Dialer{Timeout: time.Second}
	if c, err := d.DialContext(context.Background(), r.addr); err == nil {
		c.Close()
		t.Error("dial succeeded after Shutdown")
	}
}

// TestShutdownIdle checks that Shutdown closes an idle connection at once,
// and returns as soon as its peer has gone.
func TestShutdownIdle(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			r := serve(t, &porta.Server{Framing: frame.Line}, network)
			c := r.dial(t, frame.Line)
			exchange(t, c, "hi", "hi")

			start := time.Now()
			result := shutdownAsync(r.srv, 10*time.Second)
			expectEOF(t, c)
			if d := time.Since(start); d > promptly {
				t.Errorf("idle connection closed %v after Shutdown", d)
			}
			c.Close()
			select {
			case err := <-result:
				if err != nil {
					t.Errorf("Shutdown = %v", err)
				}
			case <-time.After(promptly):
				t.Fatal("Shutdown did not return once the idle peer had gone")
			}
			if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
			if got := r.srv.Stats().Closed[porta.CloseShutdown]; got != 1 {
				t.Errorf("Closed[CloseShutdown] = %d, want 1", got)
			}
		})
	}
}

// startFrame sends a message and the start of another in one write, and
// waits for the first reply: the server then holds the incomplete frame.
func startFrame(t *testing.T, c *porta.ClientConn) {
	t.Helper()
	if _, err := c.Conn().Write([]byte("x\nabc")); err != nil {
		t.Fatal(err)
	}
	expectReply(t, c, "x")
}

// TestShutdownMidFrame checks that a connection in the middle of a frame
// may finish it during the drain and gets its reply.
func TestShutdownMidFrame(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			r := serve(t, &porta.Server{Framing: frame.Line}, network)
			c := r.dial(t, frame.Line)
			startFrame(t, c)

			result := shutdownAsync(r.srv, 10*time.Second)
			time.Sleep(50 * time.Millisecond) // let Shutdown begin draining
			select {
			case err := <-result:
				t.Fatalf("Shutdown returned %v with a frame in progress", err)
			default:
			}
			if _, err := c.Conn().Write([]byte("def\n")); err != nil {
				t.Fatal(err)
			}
			expectReply(t, c, "abcdef")
			expectEOF(t, c)
			c.Close()
			select {
			case err := <-result:
				if err != nil {
					t.Errorf("Shutdown = %v", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("Shutdown did not return after the frame was answered")
			}
		})
	}
}

// TestShutdownPeerKeepsSending checks that a peer that goes on sending
// during a shutdown, each of its writes ending in the middle of a message,
// cannot hold its connection open: the frame in progress when the
// shutdown came is answered, and the connection then hangs up.
func TestShutdownPeerKeepsSending(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			r := serve(t, &porta.Server{Framing: frame.Line}, network)
			c := r.dial(t, frame.Line)
			startFrame(t, c)

			result := shutdownAsync(r.srv, 5*time.Second)
			time.Sleep(50 * time.Millisecond) // let Shutdown begin draining
			stop := make(chan struct{})
			go func() {
				if _, err := c.Conn().Write([]byte("def\nx")); err != nil {
					return
				}
				for { // each write completes a message and starts another
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					if _, err := c.Conn().Write([]byte("y\nx")); err != nil {
						return
					}
				}
			}()
			// The reply to the frame in progress, then (after the replies
			// to any complete message read with it) the end of the stream,
			// while the peer still sends.
			expectReply(t, c, "abcdef")
			for n := 0; ; n++ {
				got, err := c.Receive()
				if err == io.EOF {
					break
				}
				if err != nil || n == 100 {
					t.Fatalf("reply %d after the frame in progress: %q, %v; want the end of the stream soon", n+1, got, err)
				}
			}
			// The server discards what the peer still sends until it has
			// been silent for a second (linger), then closes.
			close(stop)
			select {
			case err := <-result:
				if err != nil {
					t.Fatalf("Shutdown = %v", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("Shutdown did not return after the peer stopped sending")
			}
		})
	}
}

// TestShutdownDeadline checks that a Shutdown whose context ends first
// closes the connections left and returns the context's error.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			r := serve(t, &porta.Server{Framing: frame.Line}, network)
			c := r.dial(t, frame.Line)
			startFrame(t, c) // and never finish it

			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := r.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > promptly {
				t.Errorf("Shutdown took %v with a 100ms context", d)
			}
			if got, err := c.Receive(); err == nil {
				t.Fatalf("stuck connection got %q, want it closed", got)
			} else if isTimeout(err) {
				t.Fatalf("stuck connection still open: %v", err)
			}
			if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
		})
	}
}

// TestClose checks that Close cuts every connection at once, idle or not.
func TestClose(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			r := serve(t, &porta.Server{Framing: frame.Line}, network)
			idle := r.dial(t, frame.Line)
			exchange(t, idle, "hi", "hi")
			busy := r.dial(t, frame.Line)
			startFrame(t, busy)

			start := time.Now()
			if err := r.srv.Close(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*porta.ClientConn{idle, busy} {
				if got, err := c.Receive(); err == nil || isTimeout(err) {
					t.Fatalf("after Close got %q, %v; want the connection closed", got, err)
				}
			}
			if d := time.Since(start); d > promptly {
				t.Errorf("Close took %v to cut the connections", d)
			}
			if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
			// Counted as shut down, not as failed reads.
			waitFor(t, waitTimeout, "the connections to be counted closed", func() bool { return r.srv.Stats().ConnsOpen == 0 })
			if st := r.srv.Stats(); st.Closed[porta.CloseShutdown] != 2 {
				t.Errorf("closed %v, want both connections closed by the shutdown", st.Closed)
			}
			// A closed server serves nothing new.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := r.srv.Serve(l); !errors.Is(err, porta.ErrServerClosed) {
				t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
			}
		})
	}
}

// TestCloseFromHandler checks that a handler may close its own server:
// Close returns, and the handler's peer and the others see their
// connections end, while the handler is still running.
func TestCloseFromHandler(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			closed := make(chan error, 1)
			release := make(chan struct{})
			var srv *porta.Server
			srv = &porta.Server{Framing: frame.Line, Handler: porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				if string(m.Body) != "stop" {
					w.Write(m.Body)
					return
				}
				closed <- srv.Close()
				<-release // still running: Close must not wait for it
			})}
			r := serve(t, srv, network)
			defer close(release)
			other := r.dial(t, frame.Line)
			exchange(t, other, "hi", "hi")
			c := r.dial(t, frame.Line)
			if err := c.Send([]byte("stop")); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Fatalf("Close = %v", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("Close called from a handler did not return")
			}
			for _, c := range []*porta.ClientConn{c, other} {
				if got, err := c.Receive(); err == nil || isTimeout(err) {
					t.Fatalf("after Close got %q, %v; want the connection closed", got, err)
				}
			}
			if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
		})
	}
}

// TestCloseStartsNoMoreHandlers checks that a connection starts no
// handler once Close has begun, for the messages it has already read: a
// handler closes the server on the first of three messages that arrive
// together, and the other two are not served.
func TestCloseStartsNoMoreHandlers(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var served []string
			var srv *porta.Server
			srv = &porta.Server{Framing: frame.Line, Handler: porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				mu.Lock()
				served = append(served, string(m.Body))
				mu.Unlock()
				if string(m.Body) == "stop" {
					srv.Close()
				}
				w.Write(m.Body)
			})}
			r := serve(t, srv, network)
			c := r.dial(t, frame.Line)
			if _, err := c.Conn().Write([]byte("stop\nafter\nand after\n")); err != nil {
				t.Fatal(err)
			}
			if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
				t.Fatalf("Serve = %v, want ErrServerClosed", err)
			}
			waitFor(t, waitTimeout, "the connection to close", func() bool { return srv.Stats().ConnsOpen == 0 })
			mu.Lock()
			defer mu.Unlock()
			if len(served) != 1 {
				t.Errorf("served %q, want only the message that closed the server", served)
			}
		})
	}
}

// TestCloseCountsShutdown checks that a connection that Close cuts in the
// middle of a frame is counted as closed by the shutdown, not as a
// truncated frame: the end of stream it read is Close's doing. (A line
// frame would not do: a last line without its newline is a message.)
func TestCloseCountsShutdown(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			var srv *porta.Server
			srv = &porta.Server{Framing: frame.Length, Handler: porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				srv.Close() // and no reply, whose write would fail first
			})}
			r := serve(t, srv, network)
			c := r.dial(t, frame.Length)
			// "stop", then half a frame: a length prefix and 2 of its 10 bytes.
			half := frame.Append(nil, frame.Length, []byte("0123456789"))[:6]
			if _, err := c.Conn().Write(append(frame.Append(nil, frame.Length, []byte("stop")), half...)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, waitTimeout, "the connection to close", func() bool {
				st := srv.Stats()
				return st.ConnsTotal == 1 && st.ConnsOpen == 0
			})
			if st := srv.Stats(); st.Closed[porta.CloseShutdown] != 1 {
				t.Errorf("closed %v, want one connection closed by the shutdown", st.Closed)
			}
		})
	}
}

// TestShutdownPacket checks that ServePacket stops on Shutdown.
func TestShutdownPacket(t *testing.T) {
	t.Parallel()
	r := serve(t, &porta.Server{Handler: porta.Upper}, "udp")
	c := r.dial(t, frame.Auto)
	exchange(t, c, "ping", "PING")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
		t.Errorf("ServePacket = %v, want ErrServerClosed", err)
	}
}

// TestShutdownKeepsLinger checks that Shutdown does not cut short the
// linger of a connection that has hung up: a peer still sending after the
// hang-up must not be reset, which would destroy replies it has not read.
// It runs on a Unix socket, where writing to a closed peer fails at once.
func TestShutdownKeepsLinger(t *testing.T) {
	t.Parallel()
	srv := &porta.Server{Handler: porta.HangUpOn("quit", "bye", porta.Echo), Framing: frame.Line}
	r := serve(t, srv, "unix")
	c := r.dial(t, frame.Line)
	exchange(t, c, "quit", "bye")
	expectEOF(t, c) // the server has sent its FIN and lingers

	result := shutdownAsync(srv, 10*time.Second)
	waitFor(t, waitTimeout, "the shutdown to begin", func() bool { return !srv.Ready() })
	time.Sleep(20 * time.Millisecond) // and to wake its connections

	// A peer that has not yet noticed the hang-up still sends.
	if err := c.Send([]byte("late")); err != nil {
		t.Fatalf("send during the linger: %v (the server closed instead of lingering)", err)
	}
	c.Close()
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(promptly):
		t.Fatal("Shutdown did not return once the peer had closed")
	}
}
