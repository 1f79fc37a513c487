//go:build linux

package bench

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// feedReader is a connection's reader for its frame.Decoder: it returns
// the pending bytes, handed over from the read buffer, then reads the
// socket.
type feedReader struct {
	fd      int
	pending []byte
}

func (f *feedReader) Read(p []byte) (int, error) {
	if len(f.pending) > 0 {
		n := copy(p, f.pending)
		f.pending = f.pending[n:]
		return n, nil
	}
	return fdReader(f.fd).Read(p)
}

// fdReader reads a nonblocking socket for a frame.Decoder. A read that
// would block returns errWouldBlock, which the decoder, taking it for a
// timeout, does not keep.
type fdReader int

func (fd fdReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := rawRead(int(fd), p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != 0:
			return 0, os.NewSyscallError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// wouldBlock is the error of a read with nothing to read.
type wouldBlock struct{}

func (wouldBlock) Error() string { return "read would block" }
func (wouldBlock) Timeout() bool { return true }

var errWouldBlock error = wouldBlock{}

// rawRead and rawWrite call recv(2) and send(2) (with MSG_NOSIGNAL, so
// that a closed peer is an EPIPE error, not a signal) without telling the
// Go scheduler, which is safe and cheaper for nonblocking sockets: they
// never block. recv(2) (recvfrom(2) with no address) rather than
// read(2), as send(2) rather than write(2): it skips the file layer's
// work for each call, which a thousand connections' reads, one per
// reply, feel most.
//
// They are small enough to be inlined. Each return that was pending
// across a system call is mispredicted, the kernel having worn out the
// return predictor on its way, so the fewer calls stand between the
// event loop and the system call, the better: for the same reason they
// call syscall.RawSyscall6, not unix.RawSyscall6, which reaches it through
// an ABI wrapper. p must not be empty (recv(2) would return 0, as at the
// end of the stream).
func rawRead(fd int, p []byte) (n int, err syscall.Errno) {
	r, _, err := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	return int(r), err
}

func rawWrite(fd int, p []byte) (n int, err syscall.Errno) {
	r, _, err := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	return int(r), err
}

// rawEpollWait is epoll_wait(2) without telling the Go scheduler.
func rawEpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
