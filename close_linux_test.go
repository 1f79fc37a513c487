package porta

import (
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
