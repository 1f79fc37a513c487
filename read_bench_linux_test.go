//go:build linux

package porta

import (
	"net"
	"syscall"
	"testing"
)

// The two reads of a connection's step, one 64-byte message each, with
// the peer's write that brings it: recvmsg(2) with TCP_INQ on a
// goroutine, recv(2) in an event loop. The difference between the two is
// the cost of the control message (see loopRead).
func BenchmarkReadOnGoroutine(b *testing.B) {
	benchmarkRead(b, func(fd uintptr, p []byte) (int, int, error) { return recvInq(fd, p) })
}

func BenchmarkReadInLoop(b *testing.B) {
	benchmarkRead(b, func(fd uintptr, p []byte) (int, int, error) {
		r := pollLoop{fd: fd}
		return r.loopRead(p)
	})
}

func benchmarkRead(b *testing.B, read func(fd uintptr, p []byte) (n, left int, err error)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	msg, p := make([]byte, 64), make([]byte, 4096)
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpInq, 1)
		for b.Loop() {
			if _, err := client.Write(msg); err != nil {
				b.Fatal(err)
			}
			for got := 0; got < len(msg); {
				n, _, err := read(fd, p)
				if err != nil && err != syscall.EAGAIN {
					b.Fatal(err)
				}
				got += n
			}
		}
	})
}
