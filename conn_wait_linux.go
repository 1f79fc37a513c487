//go:build linux

package porta

import (
	"io"
	"os"
	"syscall"

	"github.com/porta-project/porta/frame"
)

// rawReader reads a connection's input without holding a read buffer
// while the connection waits, so that an idle connection costs no buffer
// memory, and with no more system calls than Go's own reads.
//
// It reads inside syscall.RawConn.Read: a non-blocking read into the
// decoder's buffer; only if nothing is there does it release the buffers
// and let the runtime's poller sleep until the socket is readable, then
// read again into a fresh buffer. Both steps happen in one RawConn.Read
// call, in which the poller cannot lose a readiness report: a separate
// "check, then wait" would (RawConn.Read resets the readiness state).
type rawReader struct {
	raw    syscall.RawConn
	dec    *frame.Decoder
	onIdle func()                // releases the buffers before sleeping
	fill   func(fd uintptr) bool // r.fillOnce, bound once per connection
	read   func([]byte) (int, error)
	fd     uintptr
	err    error // what the last fill returned
}

// errWouldBlock is what a non-blocking read returns when there is no
// input. It reports itself as a timeout, so the decoder does not keep it.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string { return "porta: no input yet" }
func (wouldBlock) Timeout() bool { return true }

// init prepares r for nc; it leaves r unused (raw nil) for connections
// without raw access, such as TLS, which read with a buffer held.
func (r *rawReader) init(nc any, dec *frame.Decoder, onIdle func()) {
	r.dec = dec
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	r.raw, r.onIdle = raw, onIdle
	r.fill, r.read = r.fillOnce, r.readFD
}

// Fill reads once into the decoder, as frame.Decoder.Fill does, waiting
// for input if there is none. It returns the read deadline's error if the
// deadline passes first.
func (r *rawReader) Fill() error {
	if r.raw == nil {
		return r.dec.Fill()
	}
	if err := r.raw.Read(r.fill); err != nil {
		if isTimeoutErr(err) {
			return err // a deadline: the caller decides
		}
		// Closed or failed: let the decoder keep the error for Decode,
		// as it keeps a failed read's.
		return r.dec.FillFrom(func([]byte) (int, error) { return 0, err })
	}
	return r.err
}

// fillOnce is called by the poller: before waiting, and after each
// readiness report. Returning true ends the wait.
func (r *rawReader) fillOnce(fd uintptr) bool {
	r.fd = fd
	r.err = r.dec.FillFrom(r.read)
	if r.err == errWouldBlock {
		r.onIdle()
		return false
	}
	return true
}

// readFD is one non-blocking read(2) of the connection's socket.
func (r *rawReader) readFD(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(r.fd), p)
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
		return n, nil
	}
}
