// Command goepoll is epoll_echo.c written in Go: a single-threaded,
// level-triggered epoll echo server on raw system calls, with no net
// package, no netpoller and no goroutine per connection. It is the
// comparison peer that tells what Go costs over C with the runtime's
// poller out of the way: the ceiling for an event-loop engine in porta.
//
// Its system calls are raw (syscall.RawSyscall6): the scheduler does not
// hear of them, as it does not of the C server's. Through syscall.Syscall
// every call would pass through the scheduler's entersyscall and
// exitsyscall, and each blocking epoll_wait longer than 20 µs would have
// the runtime's monitor thread take the processor away and give it back,
// a cost the C server does not pay. The loop's goroutine holds its
// processor while it blocks in epoll_wait; the signal handler's goroutine
// still runs, since the runtime preempts the loop (its signal interrupts
// the wait with EINTR).
//
//	go build -o goepoll ./goepoll   (from bench/peers)
//	./goepoll -addr 127.0.0.1:0
//
// Prints "Listening on tcp://HOST:PORT" once listening and runs until
// SIGINT or SIGTERM, then exits 0. As epoll_echo does, it reads once per
// readiness report and writes the bytes back; a partial write switches the
// connection to EPOLLOUT until its buffer is drained.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"unsafe"
)

const bufSize = 64 << 10

// listener and listenerFile hold the listening socket for the life of
// the process: once unreachable, the garbage collector's finalizers would
// close both descriptors, and with them the socket the loop accepts on.
var (
	listener     net.Listener
	listenerFile *os.File
)

type conn struct {
	fd       int
	off, end int  // unwritten bytes are buf[off:end]
	out      bool // waiting for EPOLLOUT, not reading
	buf      [bufSize]byte
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address HOST:PORT")
	flag.Parse()

	ln, err := net.Listen("tcp4", *addr)
	if err != nil {
		log.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File() // a blocking dup, made non-blocking below
	if err != nil {
		log.Fatal(err)
	}
	listener, listenerFile = ln, f
	lfd := int(f.Fd())
	if err := syscall.SetNonblock(lfd, true); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	fmt.Printf("Listening on tcp://%s\n", ln.Addr())
	os.Stdout.Sync()
	go func() { <-sig; os.Exit(0) }()

	runtime.LockOSThread()
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	ctl(epfd, syscall.EPOLL_CTL_ADD, lfd, syscall.EPOLLIN)
	conns := map[int]*conn{}
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := epollWait(epfd, events)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				accept(epfd, lfd, conns)
				continue
			}
			c := conns[fd]
			if ev.Events&syscall.EPOLLOUT != 0 {
				flush(epfd, c, conns)
				continue
			}
			m, err := read(fd, c.buf[:])
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			if m <= 0 {
				closeConn(c, conns)
				continue
			}
			c.off, c.end = 0, m
			flush(epfd, c, conns)
		}
	}
}

func ctl(epfd, op, fd int, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(epfd, op, fd, &ev); err != nil {
		log.Fatal(err)
	}
}

func accept(epfd, lfd int, conns map[int]*conn) {
	for {
		fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN, or an aborted connection
		}
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		conns[fd] = &conn{fd: fd}
		ctl(epfd, syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLIN)
	}
}

// flush writes c's pending bytes; on a partial write it waits for
// EPOLLOUT (and stops reading), and goes back to EPOLLIN once drained.
func flush(epfd int, c *conn, conns map[int]*conn) {
	for c.off < c.end {
		m, err := send(c.fd, c.buf[c.off:c.end])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			if !c.out {
				c.out = true
				ctl(epfd, syscall.EPOLL_CTL_MOD, c.fd, syscall.EPOLLOUT)
			}
			return
		}
		if err != nil {
			closeConn(c, conns)
			return
		}
		c.off += m
	}
	c.off, c.end = 0, 0
	if c.out {
		c.out = false
		ctl(epfd, syscall.EPOLL_CTL_MOD, c.fd, syscall.EPOLLIN)
	}
}

func closeConn(c *conn, conns map[int]*conn) {
	delete(conns, c.fd)
	syscall.Close(c.fd)
}

// epollWait waits for events without a timeout, as epoll_wait(2) on a raw
// system call.
func epollWait(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0) // timeout -1
	return result(n, errno)
}

// read is read(2) on a raw system call.
func read(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return result(n, errno)
}

// send is send(2) with MSG_NOSIGNAL, as the C server's, on a raw system
// call.
func send(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_NOSIGNAL, 0, 0)
	return result(n, errno)
}

// result turns a raw system call's return values into a count and an
// error, as the syscall package's wrappers return them.
func result(n uintptr, errno syscall.Errno) (int, error) {
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}
