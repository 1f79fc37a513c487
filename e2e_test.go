package porta_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// TestMatrix runs every built-in mode over every transport and framing,
// checking each reply exactly.
func TestMatrix(t *testing.T) {
	t.Parallel()
	const maxSize = 300 // within one Raw read, so a Raw message arrives whole
	big := strings.Repeat("abcdefghij", maxSize/10)

	type transport struct {
		network string
		framing frame.Framing
	}
	var transports []transport
	for _, network := range []string{"tcp", "tcp6", "unix"} {
		for _, f := range []frame.Framing{frame.Line, frame.Length, frame.Raw, frame.Auto} {
			transports = append(transports, transport{network, f})
		}
	}
	transports = append(transports, transport{"udp", frame.Auto}) // UDP ignores framing

	modes := []struct {
		name  string
		h     porta.Handler
		reply func(string) string
	}{
		{"echo", porta.Echo, func(s string) string { return s }},
		{"upper", porta.Upper, strings.ToUpper},
		{"reply", porta.Reply("accepted"), func(string) string { return "accepted" }},
	}

	for _, tr := range transports {
		for _, mode := range modes {
			name := tr.network + "/" + tr.framing.String() + "/" + mode.name
			if tr.network == "udp" {
				name = "udp/" + mode.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := &porta.Server{Handler: mode.h, Framing: tr.framing, MaxMessageSize: maxSize}
				s := portatest.Start(t, srv, tr.network)
				c := dial(t, s, tr.framing)
				msgs := []string{"hello", "", "héllo wörld", big, "x y z"}
				for _, msg := range msgs {
					if msg == "" && tr.framing == frame.Raw && tr.network != "udp" {
						continue // a stream read is never empty
					}
					// One message at a time: with Raw a read is a message.
					exchange(t, c, msg, mode.reply(msg))
				}
			})
		}
	}
}

// TestAutoFraming checks that Auto answers a client in its own style: a
// client that ends its messages with '\n' gets lines, and one that sends
// bare bytes, like sock.send(b"hi"); sock.recv(1024), gets bare bytes.
func TestAutoFraming(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Framing: frame.Auto}, network)

			lc := dialRaw(t, s)
			if _, err := lc.Write([]byte("hi\nthere\n")); err != nil {
				t.Fatal(err)
			}
			readExactly(t, lc, "hi\nthere\n")

			rc := dialRaw(t, s)
			if _, err := rc.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1024)
			n, err := rc.Read(buf)
			if err != nil || string(buf[:n]) != "hi" {
				t.Fatalf("raw client read %q, %v; want %q", buf[:n], err, "hi")
			}
			// Nothing follows the reply: no delimiter was added.
			rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := rc.Read(buf); n != 0 || !isTimeout(err) {
				t.Fatalf("after the reply read %q, %v; want nothing", buf[:n], err)
			}
		})
	}
}

// TestUpperInvalidUTF8 checks that Upper refuses invalid UTF-8 in words and
// keeps the connection open.
func TestUpperInvalidUTF8(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Handler: porta.Upper, Framing: frame.Line}, network)
			c := dial(t, s, frame.Line)
			exchange(t, c, "\xff\xfe", "ERR invalid UTF-8")
			exchange(t, c, "still here", "STILL HERE")
			exchange(t, c, "caf\xc3", "ERR invalid UTF-8")
			exchange(t, c, "café", "CAFÉ")
		})
	}
}

// TestLineFraming checks how Line framing splits the byte stream.
func TestLineFraming(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Framing: frame.Line}, network)

			t.Run("many in one write", func(t *testing.T) {
				nc := dialRaw(t, s)
				if _, err := nc.Write([]byte("one\ntwo\n\nthree\n")); err != nil {
					t.Fatal(err)
				}
				readExactly(t, nc, "one\ntwo\n\nthree\n")
			})

			t.Run("byte by byte", func(t *testing.T) {
				nc := dialRaw(t, s)
				msg := "split into single bytes"
				for i := range len(msg) {
					if _, err := nc.Write([]byte{msg[i]}); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Millisecond)
				}
				if _, err := nc.Write([]byte("\n")); err != nil {
					t.Fatal(err)
				}
				readExactly(t, nc, msg+"\n")
				// One message, one reply: nothing else arrives.
				nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				buf := make([]byte, 64)
				if n, err := nc.Read(buf); n != 0 || !isTimeout(err) {
					t.Fatalf("extra reply %q, %v", buf[:n], err)
				}
			})

			t.Run("CRLF", func(t *testing.T) {
				nc := dialRaw(t, s)
				if _, err := nc.Write([]byte("a\r\nbc\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				readExactly(t, nc, "a\nbc\n\n")
			})
		})
	}
}

// TestManyClientsPipelined has 200 clients each pipeline 100 distinct
// messages, all written before any reply is read, and checks every reply
// in order.
func TestManyClientsPipelined(t *testing.T) {
	t.Parallel()
	const clients, perClient = 200, 100
	for _, network := range streamNetworks {
		for _, f := range []frame.Framing{frame.Line, frame.Length} {
			t.Run(network+"/"+f.String(), func(t *testing.T) {
				t.Parallel()
				s := portatest.Start(t, &porta.Server{Framing: f}, network)
				conns := make([]*porta.ClientConn, clients)
				for i := range conns {
					conns[i] = dial(t, s, f)
				}
				var wg sync.WaitGroup
				for i, c := range conns {
					wg.Go(func() {
						for j := range perClient {
							if err := c.Send(fmt.Appendf(nil, "client %d message %d", i, j)); err != nil {
								t.Errorf("client %d: send %d: %v", i, j, err)
								return
							}
						}
						for j := range perClient {
							got, err := c.Receive()
							if want := fmt.Sprintf("client %d message %d", i, j); err != nil || string(got) != want {
								t.Errorf("client %d: reply %d = %q, %v; want %q", i, j, got, err, want)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

// TestCloseWord checks HangUpOn over the wire: the close word gets its
// reply and then end of stream, and nothing pipelined after it is served.
func TestCloseWord(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{Handler: porta.HangUpOn("close", "closed", porta.Echo), Framing: frame.Line}
			s := portatest.Start(t, srv, network)

			c := dial(t, s, frame.Line)
			exchange(t, c, "hello", "hello")
			exchange(t, c, " CLOSE ", "closed")
			expectEOF(t, c)

			nc := dialRaw(t, s)
			if _, err := nc.Write([]byte("a\nb\nclose\nc\n")); err != nil {
				t.Fatal(err)
			}
			if got := readUntilEOF(t, nc); string(got) != "a\nb\nclosed\n" {
				t.Fatalf("got %q, want %q then EOF", got, "a\nb\nclosed\n")
			}
		})
	}
}

// TestOnce checks that Once gives each connection one reply.
func TestOnce(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Handler: porta.Once(porta.Upper), Framing: frame.Line}, network)
			c := dial(t, s, frame.Line)
			exchange(t, c, "only", "ONLY")
			expectEOF(t, c)

			nc := dialRaw(t, s)
			if _, err := nc.Write([]byte("first\nsecond\n")); err != nil {
				t.Fatal(err)
			}
			if got := readUntilEOF(t, nc); string(got) != "FIRST\n" {
				t.Fatalf("got %q, want %q then EOF", got, "FIRST\n")
			}
		})
	}
}

// TestTooLong checks the size limit on every transport: an oversized
// message gets the ERR reply (and a stream is closed), while other
// clients and messages of exactly the limit are served.
func TestTooLong(t *testing.T) {
	t.Parallel()
	const limit = 16
	const errReply = "ERR message too long (limit 16 bytes)"
	exact := strings.Repeat("x", limit)

	for _, network := range streamNetworks {
		t.Run(network+"/line", func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Framing: frame.Line, MaxMessageSize: limit}, network)
			other := dial(t, s, frame.Line)
			exchange(t, other, "before", "before")

			c := dial(t, s, frame.Line)
			exchange(t, c, exact, exact)
			exchange(t, c, exact+"y", errReply)
			expectEOF(t, c)
			c.Close() // ends the server's linger

			exchange(t, other, "after", "after")
			exchange(t, other, exact, exact)
			if got := waitClosedReason(t, s, porta.CloseTooLong); got != 1 {
				t.Fatalf("Closed[CloseTooLong] = %d, want 1", got)
			}
		})

		t.Run(network+"/len", func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Framing: frame.Length, MaxMessageSize: limit}, network)
			other := dial(t, s, frame.Length)
			c := dial(t, s, frame.Length)
			exchange(t, c, exact, exact)
			// A prefix announcing 4 GiB is refused before any body arrives.
			if _, err := c.Conn().Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
				t.Fatal(err)
			}
			expectReply(t, c, errReply)
			expectEOF(t, c)
			exchange(t, other, exact, exact)
		})
	}

	t.Run("udp", func(t *testing.T) {
		t.Parallel()
		s := portatest.Start(t, &porta.Server{MaxMessageSize: limit}, "udp")
		c := dial(t, s, frame.Auto)
		exchange(t, c, exact+"y", errReply)
		exchange(t, c, exact, exact)
	})
}

// waitClosedReason waits for a connection to close with reason r and
// returns how many did.
// TestClientDatagramTooLong checks that a UDP reply over the client's
// MaxMessageSize is an ErrTooLong error, not a reply cut short: a read on
// a datagram socket drops the rest of a datagram without a word. A reply
// of exactly the limit is whole.
func TestClientDatagramTooLong(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() { // replies with as many bytes as the request asks
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			size, _ := strconv.Atoi(string(buf[:n]))
			pc.WriteTo(bytes.Repeat([]byte("x"), size), from)
		}
	}()
	d := porta.Dialer{MaxMessageSize: 50, Timeout: ioTimeout}
	c, err := d.DialContext(context.Background(), "udp://"+pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if got, err := c.Exchange([]byte("50")); err != nil || len(got) != 50 {
		t.Fatalf("a 50-byte reply with a 50-byte limit: %d bytes, %v", len(got), err)
	}
	if got, err := c.Exchange([]byte("51")); !errors.Is(err, frame.ErrTooLong) {
		t.Fatalf("a 51-byte reply with a 50-byte limit: %d bytes, %v; want ErrTooLong", len(got), err)
	}
}

func waitClosedReason(t *testing.T, s *portatest.Server, r porta.CloseReason) uint64 {
	t.Helper()
	waitFor(t, waitTimeout, "a connection to close as "+r.String(), func() bool { return s.Stats().Closed[r] > 0 })
	return s.Stats().Closed[r]
}

// TestHandlerPanic checks that a panicking handler closes only its own
// connection, and is counted and logged once with the peer's address.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	srv := &porta.Server{
		Framing: frame.Line,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Handler: porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
			if string(m.Body) == "boom" {
				panic("boom")
			}
			w.Write(m.Body)
		}),
	}
	s := portatest.Start(t, srv, "tcp")

	const others, perOther = 20, 50
	conns := make([]*porta.ClientConn, others)
	for i := range conns {
		conns[i] = dial(t, s, frame.Line)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			defer c.Close()
			for j := range perOther {
				msg := fmt.Sprintf("other %d says %d", i, j)
				got, err := c.Exchange([]byte(msg))
				if err != nil || string(got) != msg {
					t.Errorf("client %d: reply = %q, %v; want %q", i, got, err, msg)
					return
				}
			}
		})
	}

	victim := dial(t, s, frame.Line)
	exchange(t, victim, "fine", "fine")
	if err := victim.Send([]byte("boom")); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, victim)
	victim.Close()
	wg.Wait()

	st := waitClosed(t, s)
	if st.Panics != 1 || st.Closed[porta.ClosePanic] != 1 {
		t.Errorf("Panics = %d, Closed[ClosePanic] = %d; want 1 and 1", st.Panics, st.Closed[porta.ClosePanic])
	}
	if st.Closed[porta.ClosePeer] != others {
		t.Errorf("Closed[ClosePeer] = %d, want %d", st.Closed[porta.ClosePeer], others)
	}
	var panicLines []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "handler panic") {
			panicLines = append(panicLines, line)
		}
	}
	if len(panicLines) != 1 {
		t.Fatalf("logged %d panics, want 1:\n%s", len(panicLines), logs.String())
	}
	if peer := victim.Conn().LocalAddr().String(); !strings.Contains(panicLines[0], "peer="+peer) {
		t.Errorf("panic log line does not name the peer %s:\n%s", peer, panicLines[0])
	}
}

// TestMessageContextCancelled checks that a message's context ends when its
// connection closes.
func TestMessageContextCancelled(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			ctxs := make(chan context.Context, 1)
			h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				select {
				case ctxs <- m.Context():
				default:
				}
				w.Write(m.Body)
			})
			s := portatest.Start(t, &porta.Server{Handler: h, Framing: frame.Line}, network)
			c := dial(t, s, frame.Line)
			exchange(t, c, "hold", "hold")
			ctx := <-ctxs
			if err := ctx.Err(); err != nil {
				t.Fatalf("context ended while the connection is open: %v", err)
			}
			c.Close()
			select {
			case <-ctx.Done():
			case <-time.After(waitTimeout):
				t.Fatal("context not cancelled after the connection closed")
			}
		})
	}
}

// TestStats checks the counters after a known exchange.
func TestStats(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{Handler: porta.HangUpOn("quit", "bye", porta.Echo), Framing: frame.Line}
			s := portatest.Start(t, srv, network)

			a := dial(t, s, frame.Line)
			exchange(t, a, "hello", "hello")
			exchange(t, a, "hi", "hi")
			a.Close()

			b := dial(t, s, frame.Line)
			exchange(t, b, "abc", "abc")
			exchange(t, b, "quit", "bye")
			expectEOF(t, b)
			b.Close()

			got := countsOf(waitClosed(t, s))
			want := counts{
				ConnsTotal:  2,
				MessagesIn:  4,
				MessagesOut: 4,
				BytesIn:     uint64(len("hello") + len("hi") + len("abc") + len("quit")),
				BytesOut:    uint64(len("hello") + len("hi") + len("abc") + len("bye")),
			}
			want.Closed[porta.ClosePeer] = 1
			want.Closed[porta.CloseHangUp] = 1
			if got != want {
				t.Fatalf("Stats =\n%+v\nwant\n%+v", got, want)
			}
		})
	}

	t.Run("udp", func(t *testing.T) {
		t.Parallel()
		s := portatest.Start(t, &porta.Server{Handler: porta.Upper}, "udp")
		c := dial(t, s, frame.Auto)
		exchange(t, c, "ab", "AB")
		exchange(t, c, "cde", "CDE")
		// The reply is counted once sent, maybe after it arrived.
		waitFor(t, waitTimeout, "the replies to be counted", func() bool { return s.Stats().MessagesOut == 2 })
		got := countsOf(s.Stats())
		want := counts{MessagesIn: 2, MessagesOut: 2, BytesIn: 5, BytesOut: 5}
		if got != want {
			t.Fatalf("Stats =\n%+v\nwant\n%+v", got, want)
		}
	})
}

// TestStatsUnsentReply checks that a reply is counted in MessagesOut only
// once written: a reply whose write fails, because the peer has gone, is
// not counted, although its message is.
func TestStatsUnsentReply(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			entered, release := make(chan struct{}), make(chan struct{})
			released := false
			defer func() {
				if !released {
					close(release)
				}
			}()
			srv := &porta.Server{Framing: frame.Line, Handler: porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				if string(m.Body) == "wait" {
					close(entered)
					<-release
				}
				w.Write(m.Body)
			})}
			s := portatest.Start(t, srv, network)
			c := dialRaw(t, s)
			if _, err := io.WriteString(c, "hello\n"); err != nil {
				t.Fatal(err)
			}
			readExactly(t, c, "hello\n")
			if _, err := io.WriteString(c, "wait\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-entered:
			case <-time.After(waitTimeout):
				t.Fatal("the handler did not get the message")
			}
			// The peer goes while the handler runs: a TCP peer with a
			// reset, so that the reply's write fails, not the one after.
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			time.Sleep(20 * time.Millisecond) // for the reset to arrive
			close(release)
			released = true

			got := countsOf(waitClosed(t, s))
			want := counts{ConnsTotal: 1, MessagesIn: 2, MessagesOut: 1, BytesIn: uint64(len("hello") + len("wait")), BytesOut: uint64(len("hello"))}
			want.Closed[porta.ClosePeer] = 1
			if got != want {
				t.Fatalf("Stats =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestStatsMessageCountedBeforeReply checks that a message is counted in
// MessagesIn before its reply is sent, also when the reply goes out in
// the middle of a handler (a reply buffer over 64 KiB is written at once):
// a peer that has its reply finds its message counted.
func TestStatsMessageCountedBeforeReply(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	big := bytes.Repeat([]byte("x"), 100<<10)
	srv := &porta.Server{Framing: frame.Line, Handler: porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		w.Write(big)
		<-release // the handler is not done: no read, no batch end
	})}
	s := portatest.Start(t, srv, "tcp")
	c := dialRaw(t, s)
	if _, err := io.WriteString(c, "go\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big)+1)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got[:len(big)], big) {
		t.Fatalf("the reply did not arrive whole: %v", err)
	}
	if st := s.Stats(); st.MessagesIn != 1 {
		t.Errorf("with the reply received: MessagesIn %d, want 1", st.MessagesIn)
	}
	// A reply counts once its write has returned, which may be a moment
	// after the peer has read it.
	waitFor(t, waitTimeout, "the reply to be counted", func() bool { return s.Stats().MessagesOut == 1 })
}

// TestStatsRepliesNeverGoDown checks that MessagesOut and BytesOut, read
// while a write to a peer that does not read blocks and then times out,
// never go down: the replies in the failed write are never counted, not
// counted first and taken back.
func TestStatsRepliesNeverGoDown(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Framing: frame.Line, WriteTimeout: 300 * time.Millisecond}, network)
			c := dialRaw(t, s)
			// Lines of 1,000 bytes, each answered while the last ones are
			// still buffered, until the server stops reading: its write
			// to this peer, which reads nothing, is then blocked.
			go func() {
				line := append(bytes.Repeat([]byte("x"), 999), '\n')
				for {
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
			var last porta.Stats
			for deadline := time.Now().Add(waitTimeout); ; {
				st := s.Stats()
				if st.MessagesOut < last.MessagesOut || st.BytesOut < last.BytesOut {
					t.Fatalf("MessagesOut went from %d to %d, BytesOut from %d to %d",
						last.MessagesOut, st.MessagesOut, last.BytesOut, st.BytesOut)
				}
				last = st
				if st.ConnsOpen == 0 && st.ConnsTotal == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the connection was not closed for its blocked write")
				}
			}
			if last.Closed[porta.CloseSlowConsumer] != 1 || last.MessagesOut == 0 || last.MessagesOut >= last.MessagesIn {
				t.Errorf("closed %v, %d messages in, %d out; want one slow consumer, and fewer replies written than messages read",
					last.Closed, last.MessagesIn, last.MessagesOut)
			}
		})
	}
}

// counts are the Stats a test checks exactly.
type counts struct {
	ConnsOpen                 int64
	ConnsTotal, ConnsRejected uint64
	MessagesIn, MessagesOut   uint64
	BytesIn, BytesOut, Panics uint64
	Closed                    [len(porta.Stats{}.Closed)]uint64
}

func countsOf(st porta.Stats) counts {
	return counts{
		ConnsOpen: st.ConnsOpen, ConnsTotal: st.ConnsTotal, ConnsRejected: st.ConnsRejected,
		MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut,
		BytesIn: st.BytesIn, BytesOut: st.BytesOut, Panics: st.Panics,
		Closed: st.Closed,
	}
}

// TestStatsConsistent checks that snapshots taken while connections close
// never lose a closing connection's counts: MessagesIn never goes down.
func TestStatsConsistent(t *testing.T) {
	t.Parallel()
	s := portatest.Start(t, &porta.Server{Framing: frame.Line}, "tcp")
	const clients, perClient = 8, 40

	stop := make(chan struct{})
	polled := make(chan error, 1)
	go func() {
		var last uint64
		for {
			select {
			case <-stop:
				polled <- nil
				return
			default:
			}
			st := s.Stats()
			if st.MessagesIn < last {
				polled <- fmt.Errorf("MessagesIn went from %d down to %d", last, st.MessagesIn)
				return
			}
			last = st.MessagesIn
		}
	}()

	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for j := range perClient {
				c, err := (&porta.Dialer{Timeout: ioTimeout}).DialContext(context.Background(), s.Addr)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				c.SetDeadline(time.Now().Add(ioTimeout))
				msg := fmt.Sprintf("%d/%d", i, j)
				got, err := c.Exchange([]byte(msg))
				c.Close()
				if err != nil || string(got) != msg {
					t.Errorf("reply = %q, %v; want %q", got, err, msg)
					return
				}
			}
		})
	}
	wg.Wait()
	st := waitClosed(t, s)
	close(stop)
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	if st.MessagesIn != clients*perClient || st.ConnsTotal != clients*perClient {
		t.Fatalf("MessagesIn = %d, ConnsTotal = %d; want %d each", st.MessagesIn, st.ConnsTotal, clients*perClient)
	}
}
