//go:build linux

package porta

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// pollLoop runs a connection's loop inside syscall.RawConn.Read, so that
// the connection makes as few system calls as an event loop's and holds
// no buffer while it waits.
//
// Go's poller is edge-triggered, and RawConn.Read resets its readiness
// state when it starts: a goroutine that reads, returns, and calls Read
// again to wait could miss input that arrived in between, so the usual
// loop must see a read fail with EAGAIN before every wait. Inside one
// RawConn.Read call the readiness state is kept, and for TCP the kernel
// says how much input is left: the loop reads with recvmsg(2) and the
// TCP_INQ option, serves the messages, sends the replies and, if the
// read left nothing behind (no data, and no end of stream, which TCP_INQ
// counts as input) and a write has succeeded since (so no reset had
// arrived either: it would have failed the write), returns to the poller
// without another read. Input that arrives after that read makes the
// poller report the socket readable again, whether the report comes before
// the wait or after it. One read and one send per message, as a
// level-triggered epoll server makes. Other reads (Unix sockets, a read
// with no reply after it) go on until EAGAIN. An event loop's step reads
// with recv(2) and a rule of its own (see loopRead).
//
// Handlers therefore run inside RawConn.Read, holding the socket's read
// lock; Server.Close does not wait for a busy connection's socket (see
// conn.closeNow).
type pollLoop struct {
	c       *conn
	raw     syscall.RawConn
	step    func(fd uintptr) bool // r.stepOnce, bound once per connection
	read    func([]byte) (int, error)
	fd      uintptr
	inq     bool // TCP_INQ is on: reads report the input left
	drained bool // the last read left no input behind, and a write succeeded since
	inqZero bool // the last read left no input behind
	hup     bool // an event loop's report for this step named the peer's end or an error
	woken   bool // this call of step follows a wait in the poller
	reason  CloseReason
	done    bool
}

// init prepares r for c; it leaves r unused (raw nil) for connections
// other than the net package's own TCP and Unix ones, such as TLS or a
// wrapper from a custom listener (whose Read may hold data of its own),
// which read through their Read with a buffer held.
func (r *pollLoop) init(c *conn) {
	r.c = c
	var sc syscall.Conn
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		sc = nc
	case *net.UnixConn:
		sc = nc
	default:
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	r.raw = raw
	r.step, r.read = r.stepOnce, r.readFD
	if _, ok := c.nc.(*net.TCPConn); ok {
		raw.Control(func(fd uintptr) {
			r.inq = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpInq, 1) == nil
		})
	}
}

// serve runs the connection's loop until it ends or, for a raw
// connection, until its read deadline passes (timedOut decides).
func (r *pollLoop) serve() (CloseReason, bool) {
	if r.raw == nil {
		return r.c.run()
	}
	r.done, r.woken = false, false
	err := r.raw.Read(r.step)
	if r.done || err == nil {
		return r.reason, true
	}
	if isTimeoutErr(err) {
		return r.c.timedOut()
	}
	// Closed or failed: the decoder keeps the error, and the loop, with
	// no complete message buffered, ends with it.
	r.c.dec.FillFrom(func([]byte) (int, error) { return 0, err })
	r.drained = false
	return r.c.run()
}

// stepOnce is called by the poller: first, and after each readiness
// report. Returning true ends the wait.
func (r *pollLoop) stepOnce(fd uintptr) bool {
	r.fd, r.drained, r.inqZero = fd, false, false
	r.c.busy.Store(true) // before run reads Server.closed: see conn.closeNow
	r.reason, r.done = r.c.run()
	r.c.busy.Store(false)
	if !r.done {
		r.c.releaseBuffers()
		r.woken = true // the next call follows a wait
		if r.c.loopable() {
			r.reason, r.done = loopNow, true // wait in an event loop
		}
	}
	return r.done
}

// fill reads once into the decoder: a non-blocking read for a raw
// connection, which returns errWouldBlock if there is no input.
func (r *pollLoop) fill() error {
	if r.raw == nil {
		return r.c.dec.Fill()
	}
	return r.c.dec.FillFrom(r.read)
}

// readFD is one non-blocking read of the connection's socket. On a
// goroutine it is recvmsg(2) with TCP_INQ's count of the input left,
// where TCP_INQ is on, else read(2). In an event loop it is recv(2),
// which costs less than recvmsg(2), and a short read tells that it left
// the socket empty (see loopRead).
func (r *pollLoop) readFD(p []byte) (int, error) {
	r.inqZero, r.drained = false, false
	for {
		var n int
		var err error
		left := 1
		switch {
		case r.c.inLoop():
			n, left, err = r.loopRead(p)
		case r.inq:
			n, left, err = recvInq(r.fd, p)
		default:
			n, err = syscall.Read(int(r.fd), p)
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		r.inqZero = left == 0
		return n, nil
	}
}

// loopRead reads into p with recv(2) for an event loop, and returns the
// bytes read and 0 for the input left if the read left the socket empty,
// else 1. A read shorter than p emptied the socket's queue, whether TCP's
// or a Unix socket's; input that arrives later makes the edge-triggered
// set report the socket again. What a short read does not show is an end
// of stream or an error that arrived with the input; the loop's event
// reported those, in r.hup, and then the socket is read until it says so.
func (r *pollLoop) loopRead(p []byte) (n, left int, err error) {
	// A raw system call: the socket is non-blocking, so the call never
	// waits, and the scheduler need not hear of it.
	m, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, r.fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, 0, e
	}
	left = 1
	if int(m) < len(p) && !r.hup {
		left = 0
	}
	return int(m), left, nil
}

// tcpInq is TCP_INQ (Linux 4.18): recvmsg(2) reports the bytes left to
// read in a control message, and a non-zero count once the peer's end of
// stream has arrived, so that a reader knows when a read emptied the
// socket without reading again.
const tcpInq = 36

// recvInq reads into p with recvmsg(2) and returns the bytes read and the
// input left, as TCP_INQ reports it (1, "read again", without a report).
func recvInq(fd uintptr, p []byte) (n, left int, err error) {
	var ctl [4]uint64 // one control message with an int32: aligned for Cmsghdr
	iov := syscall.Iovec{Base: unsafe.SliceData(p)}
	iov.SetLen(len(p))
	msg := syscall.Msghdr{Iov: &iov, Iovlen: 1, Control: (*byte)(unsafe.Pointer(&ctl))}
	msg.SetControllen(syscall.CmsgSpace(4))
	// A raw system call: the socket is non-blocking, so the call never
	// waits, and the scheduler need not hear of it.
	r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), syscall.MSG_DONTWAIT)
	if e != 0 {
		return 0, 0, e
	}
	left = 1
	if int(msg.Controllen) >= syscall.CmsgLen(4) {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&ctl))
		if h.Level == syscall.IPPROTO_TCP && h.Type == tcpInq {
			left = int(*(*int32)(unsafe.Add(unsafe.Pointer(&ctl), syscall.CmsgLen(0))))
		}
	}
	return int(r), left, nil
}

// shutdown shuts the socket down in both directions without waiting for
// its read lock.
func (r *pollLoop) shutdown() {
	if r.raw != nil {
		r.raw.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
	}
}

// wrote notes a successful write: after a read that left no input, the
// socket is known to be empty.
func (r *pollLoop) wrote() { r.drained = r.inqZero }

// write writes as much of p as the socket takes now, with one
// non-blocking send(2) while the loop runs inside the poller (the caller
// writes the rest, waiting, through the connection); elsewhere it writes
// nothing. send(2) rather than write(2): it skips the file layer's work
// for each call (about 6% less server CPU per message with a thousand
// connections, see docs/PERFORMANCE.md), and with MSG_NOSIGNAL a reset
// peer fails the call with EPIPE without raising SIGPIPE. Errors are
// named "write", as net.Conn's are.
func (r *pollLoop) write(p []byte) (int, error) {
	if !r.c.busy.Load() { // not inside step: fd is not held open
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, r.fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0) // no address: send(2)
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, os.NewSyscallError("write", e)
	}
}
