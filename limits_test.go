package porta_test

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// TestMaxConns checks that a connection over the limit is refused in words
// and at once, and that a freed slot is served again.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{MaxConns: 3, Framing: frame.Line}, network)
			var conns [3]*porta.ClientConn
			for i := range conns {
				conns[i] = dial(t, s, frame.Line)
				exchange(t, conns[i], "in", "in") // accepted, in order
			}

			extra := dialRaw(t, s)
			start := time.Now()
			if got := readUntilEOF(t, extra); string(got) != "ERR too many connections\n" {
				t.Fatalf("4th connection got %q, want %q then EOF", got, "ERR too many connections\n")
			}
			if d := time.Since(start); d > promptly {
				t.Errorf("refusal took %v", d)
			}
			extra.Close()
			if st := s.Stats(); st.ConnsRejected != 1 || st.Closed[porta.CloseLimit] != 1 {
				t.Errorf("ConnsRejected = %d, Closed[CloseLimit] = %d; want 1 and 1", st.ConnsRejected, st.Closed[porta.CloseLimit])
			}
			for _, c := range conns {
				exchange(t, c, "still", "still")
			}

			conns[0].Close()
			waitFor(t, waitTimeout, "a slot to free", func() bool { return s.Stats().ConnsOpen < 3 })
			c := dial(t, s, frame.Line)
			exchange(t, c, "again", "again")
			if st := s.Stats(); st.ConnsRejected != 1 {
				t.Errorf("ConnsRejected = %d after a slot freed, want 1", st.ConnsRejected)
			}
		})
	}
}

// TestIdleTimeout checks that a silent connection is closed.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{IdleTimeout: 200 * time.Millisecond, Framing: frame.Line}
			s := portatest.Start(t, srv, network)

			talker := dial(t, s, frame.Line)
			exchange(t, talker, "hello", "hello")
			start := time.Now()
			expectEOF(t, talker)
			if d := time.Since(start); d > promptly {
				t.Errorf("idle connection closed after %v, want about 200ms", d)
			}

			silent := dialRaw(t, s) // never sends a byte
			start = time.Now()
			if got := readUntilEOF(t, silent); len(got) != 0 {
				t.Fatalf("silent connection got %q", got)
			}
			if d := time.Since(start); d > promptly {
				t.Errorf("silent connection closed after %v, want about 200ms", d)
			}

			st := waitClosed(t, s)
			if st.Closed[porta.CloseIdle] != 2 {
				t.Errorf("Closed[CloseIdle] = %d, want 2", st.Closed[porta.CloseIdle])
			}
		})
	}
}

// TestFrameTimeout checks that a frame left incomplete is cut off, while a
// client sending complete messages is left alone.
func TestFrameTimeout(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{
				FrameTimeout: 200 * time.Millisecond,
				IdleTimeout:  10 * time.Second,
				Framing:      frame.Line,
			}
			s := portatest.Start(t, srv, network)

			var wg sync.WaitGroup
			good := dial(t, s, frame.Line)
			wg.Go(func() {
				for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
					if got, err := good.Exchange([]byte("tick")); err != nil || string(got) != "tick" {
						t.Errorf("steady client: reply %q, %v", got, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			})

			expectPartialFrameCut(t, dialRaw(t, s))
			wg.Wait()
			exchange(t, good, "still open", "still open")

			waitFor(t, waitTimeout, "the close to be counted", func() bool { return s.Stats().ConnsOpen == 1 })
			st := s.Stats()
			if st.Closed[porta.CloseFrameTimeout] != 1 || st.ConnsOpen != 1 {
				t.Errorf("Closed[CloseFrameTimeout] = %d, ConnsOpen = %d; want 1 and 1", st.Closed[porta.CloseFrameTimeout], st.ConnsOpen)
			}
		})
	}
}

// TestSlowConsumer checks that a peer that never reads its replies is
// closed once a write has waited WriteTimeout, and that other peers are
// served meanwhile.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("z"), 64<<10)
	h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		if string(m.Body) == "big" {
			w.Write(big)
			return
		}
		w.Write(m.Body)
	})
	for _, network := range streamNetworks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{Handler: h, WriteTimeout: 200 * time.Millisecond, Framing: frame.Line}
			s := portatest.Start(t, srv, network)
			other := dial(t, s, frame.Line)
			exchange(t, other, "before", "before")

			// 2,000 requests ask for 128 MiB of replies, far more than the
			// socket buffers hold, and the client reads none of them.
			hog := dialRaw(t, s)
			if _, err := hog.Write(bytes.Repeat([]byte("big\n"), 2000)); err != nil {
				t.Fatal(err)
			}
			exchange(t, other, "during", "during")
			waitFor(t, waitTimeout, "the slow consumer to be closed", func() bool {
				return s.Stats().Closed[porta.CloseSlowConsumer] == 1
			})
			exchange(t, other, "after", "after")
			if got := s.Stats().ConnsOpen; got != 1 {
				t.Errorf("ConnsOpen = %d, want 1", got)
			}
		})
	}
}

// TestHalfClose checks that a client that closes its sending side still
// gets every reply, then end of stream.
func TestHalfClose(t *testing.T) {
	t.Parallel()
	for _, network := range streamNetworks {
		for _, f := range []frame.Framing{frame.Line, frame.Length} {
			t.Run(network+"/"+f.String(), func(t *testing.T) {
				t.Parallel()
				s := portatest.Start(t, &porta.Server{Handler: porta.Upper, Framing: f}, network)
				c := dial(t, s, f)
				for _, msg := range []string{"one", "two", "three"} {
					if err := c.Send([]byte(msg)); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				expectReply(t, c, "ONE")
				expectReply(t, c, "TWO")
				expectReply(t, c, "THREE")
				expectEOF(t, c)
				if st := waitClosed(t, s); st.Closed[porta.ClosePeer] != 1 || st.MessagesOut != 3 {
					t.Errorf("Closed[ClosePeer] = %d, MessagesOut = %d; want 1 and 3", st.Closed[porta.ClosePeer], st.MessagesOut)
				}
			})
		}
	}
}

// expectPartialFrameCut writes the start of a line to c and expects the
// server, whose frame or idle timeout is 200 ms, to close c without a
// reply about then.
func expectPartialFrameCut(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := readUntilEOF(t, c); len(got) != 0 {
		t.Fatalf("incomplete frame got %q", got)
	}
	if d := time.Since(start); d > promptly {
		t.Errorf("incomplete frame cut after %v, want about 200ms", d)
	}
}

// TestIdleTimeoutMidFrame checks that a connection that falls silent in the
// middle of a frame is closed as idle when the idle timeout ends it first:
// with no frame timeout, or one longer than the idle timeout. Only a frame
// that has run out of its own time counts as a frame timeout.
func TestIdleTimeoutMidFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		frame time.Duration
	}{
		{"no frame timeout", -1},
		{"longer frame timeout", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{IdleTimeout: 200 * time.Millisecond, FrameTimeout: tc.frame, Framing: frame.Line}
			s := portatest.Start(t, srv, "tcp")
			expectPartialFrameCut(t, dialRaw(t, s))
			st := waitClosed(t, s)
			if st.Closed[porta.CloseIdle] != 1 || st.Closed[porta.CloseFrameTimeout] != 0 {
				t.Errorf("Closed[idle_timeout] = %d, Closed[frame_timeout] = %d; want 1 and 0",
					st.Closed[porta.CloseIdle], st.Closed[porta.CloseFrameTimeout])
			}
		})
	}
}
