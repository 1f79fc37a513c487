package porta

import (
	"net"
	"testing"
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
