//go:build linux

package porta

import (
	"syscall"
	"unsafe"
)

// idleWaiter lets a connection wait for input without holding a read
// buffer, so that an idle connection costs no buffer memory. It uses the
// runtime's poller through syscall.RawConn: a non-blocking peek tells
// whether input is already there; if not, the connection releases its
// buffers and sleeps until the socket is readable.
type idleWaiter struct {
	raw    syscall.RawConn
	check  func(fd uintptr) bool // c.readable, bound once per connection
	woken  bool                  // the poller has reported the socket readable
	onIdle func()                // releases the buffers before sleeping
	peek   [1]byte
}

// init prepares w for nc; it is a no-op for connections without raw
// access, such as TLS, which then wait inside their reads.
func (w *idleWaiter) init(nc any, onIdle func()) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	w.raw, w.onIdle = raw, onIdle
	w.check = w.readable
}

// wait blocks until the connection has input, end of stream or an error to
// report, or the read deadline passes (then it returns the deadline error).
// It returns nil at once where raw access is not available.
func (w *idleWaiter) wait() error {
	if w.raw == nil {
		return nil
	}
	w.woken = false
	return w.raw.Read(w.check)
}

// readable is called by the poller: first before waiting, then after each
// readiness report. Returning true ends the wait.
func (w *idleWaiter) readable(fd uintptr) bool {
	if w.woken {
		return true // readable now; a spurious report just makes the read wait
	}
	w.woken = true
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&w.peek[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != syscall.EAGAIN {
		return true // input, end of stream or an error: the read will tell
	}
	w.onIdle()
	return false
}
