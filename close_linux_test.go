package porta

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestCloseServesNothingAfter checks the handover between Server.Close
// and a connection that it sees idle: Close closes such a connection's
// socket at once, which waits for any poller step of the connection under
// way. A step that starts after Close has begun, because input arrived
// just then, must serve nothing and return: were it to run a handler that
// blocks, Close would wait for it.
func TestCloseServesNothingAfter(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release) // before the cleanup's Close, should this one hang
			var served atomic.Int32
			s := &Server{parkAfter: time.Minute, Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
				if string(m.Body) == "block" {
					served.Add(1)
					<-release // a handler that ignores its context
				}
				w.Write(m.Body)
			})}
			_, addr := parkServer(t, s, network)
			c := parkDial(t, network, addr)
			c.exchange(t, "hi")
			waitUntil(t, "the connection to wait for input", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				for sc := range s.conns {
					return !sc.busy.Load()
				}
				return false
			})

			var hooked atomic.Bool
			s.testHookCloseIdle = func(*conn) {
				// Close has seen the connection idle. Its input arrives
				// now, and the poller wakes it while Close goes on.
				hooked.Store(true)
				c.Write([]byte("block\n"))
				// Give the connection the time to start its handler,
				// which it does at once without the handover.
				for start := time.Now(); served.Load() == 0 && time.Since(start) < 500*time.Millisecond; {
					time.Sleep(time.Millisecond)
				}
			}
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close is waiting for a handler that started after it")
			}
			if !hooked.Load() {
				t.Fatal("Close did not see the connection idle: the test proves nothing")
			}
			if n := served.Load(); n != 0 {
				t.Errorf("the handler ran %d times after Close began, want 0", n)
			}
			c.expectEnd(t)
		})
	}
}

// TestPanicClearsBusy checks that a connection whose handler panicked is
// not left marked busy. Busy means "inside a poller step, the socket held
// open": Close would then close the socket in the background, at once,
// while the connection's final flush sends on the descriptor number,
// which another socket may have taken by then.
func TestPanicClearsBusy(t *testing.T) {
	var s *Server
	busyAtLog := make(chan bool, 1)
	log := slog.New(hookHandler{func(r slog.Record) {
		if r.Message != "handler panic" {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			busyAtLog <- c.busy.Load()
		}
	}})
	s = &Server{Logger: log, Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		w.Write([]byte("before"))
		panic("boom")
	})}
	_, addr := parkServer(t, s, "tcp")
	c := parkDial(t, "tcp", addr)
	if _, err := c.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case busy := <-busyAtLog:
		if busy {
			t.Error("the connection is still marked busy after its handler panicked")
		}
	case <-time.After(parkWait):
		t.Fatal("no panic logged")
	}
	if got, err := c.r.ReadString('\n'); got != "before\n" {
		t.Errorf("read %q, %v; want the reply written before the panic", got, err)
	}
}

// hookHandler is a slog.Handler that passes each record to a function.
type hookHandler struct{ fn func(slog.Record) }

func (h hookHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error { h.fn(r); return nil }
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h hookHandler) WithGroup(string) slog.Handler                 { return h }
