package porta_test

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// TestReplyToGonePeerNoSIGPIPE checks that a reply to a peer that has
// gone fails without raising SIGPIPE. A program that asks for SIGPIPE
// (signal.Notify) gets it for every write to a broken pipe or socket, on
// any descriptor; porta's sends must not add to those.
//
// Not parallel: the signal would reach this test from any test's write.
func TestReplyToGonePeerNoSIGPIPE(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGPIPE)
	defer signal.Stop(sigs)

	arrived, gone := make(chan struct{}), make(chan struct{})
	h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		close(arrived)
		<-gone
		w.Write(m.Body)
	})
	// A Unix socket: a send to a closed peer fails with EPIPE at once
	// (TCP first reports the reset).
	s := portatest.Start(t, &porta.Server{Handler: h, Framing: frame.Line}, "unix")
	nc := dialRaw(t, s)
	if _, err := nc.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(waitTimeout):
		t.Fatal("the message did not reach its handler")
	}
	nc.Close()
	close(gone)
	st := waitClosed(t, s)
	if st.Closed[porta.ClosePeer] != 1 {
		t.Errorf("closed by reason %v; want one peer_closed", st.Closed)
	}
	select {
	case <-sigs:
		t.Fatal("the reply to a gone peer raised SIGPIPE")
	case <-time.After(100 * time.Millisecond):
	}
}
