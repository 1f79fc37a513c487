package porta

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// TestETIMEDOUTIsNoDeadline: a read or write that fails with ETIMEDOUT
// (keepalive or retransmission gave up on the peer) ends the connection
// as an error; only a deadline is a timeout. ETIMEDOUT calls itself a
// timeout, and was taken for a deadline: a read re-armed and went on, a
// write counted a slow consumer.
func TestETIMEDOUTIsNoDeadline(t *testing.T) {
	gaveUp := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	if isTimeoutErr(gaveUp) {
		t.Error("isTimeoutErr(ETIMEDOUT) = true, want false")
	}
	if !isTimeoutErr(deadline) {
		t.Error("isTimeoutErr(a passed deadline) = false, want true")
	}
	if r := writeReason(gaveUp); r != CloseError {
		t.Errorf("writeReason(ETIMEDOUT) = %v, want %v", r, CloseError)
	}
	if r := writeReason(deadline); r != CloseSlowConsumer {
		t.Errorf("writeReason(a passed deadline) = %v, want %v", r, CloseSlowConsumer)
	}
}
