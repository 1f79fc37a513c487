package main

import (
	"net"
	"strings"
	"testing"
)

// The tests of messages that a framing cannot carry, and of a framing
// that the server does not speak.

func TestSendLineArgNewline(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	// Line framing would send "one\ntwo" as two messages and pair every
	// later reply with the wrong message.
	r := runPorta(t, "", "send", s.addr(), "one\ntwo", "three")
	r.want(t, 2, "")
	r.oneLine(t, "porta send:", "message 1", "newline", "--framing len")

	// Length framing carries it.
	s = startServe(t, []string{"127.0.0.1:0"}, "--framing", "len")
	r = runPorta(t, "", "send", "--framing", "len", s.addr(), "one\ntwo", "three")
	r.want(t, 0, "one\ntwo\nthree\n")
}

func TestSendRawEmpty(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0", "udp://127.0.0.1:0"})
	tcp, udp := s.addrs[0], s.addrs[1]

	// Over a stream, raw framing has no bytes to send for an empty
	// message, and its reply would never come.
	r := runPorta(t, "", "send", "--framing", "raw", tcp, "x", "")
	r.want(t, 2, "")
	r.oneLine(t, "porta send:", "raw framing cannot send an empty message", "message 2")

	r = runPorta(t, "a\n\nb\n", "send", "--framing", "raw", tcp)
	r.want(t, 1, "a\n")
	r.oneLine(t, "porta: ", "raw framing cannot send an empty message", "line 2 of the input")

	// An empty datagram is a message, and gets an empty reply.
	r = runPorta(t, "", "send", "--framing", "raw", udp, "x", "", "y")
	r.want(t, 0, "x\n\ny\n")
	r = runPorta(t, "a\n\nb\n", "send", udp)
	r.want(t, 0, "a\n\nb\n")
}

// lineServer accepts one TCP connection and answers each of its reads
// with "hello\n", whatever it holds: a line server that knows nothing of
// length framing.
func lineServer(t *testing.T) string {
	t.Helper()
	return oneConnServer(t, func(nc net.Conn) {
		buf := make([]byte, 1024)
		for {
			if _, err := nc.Read(buf); err != nil {
				return
			}
			if _, err := nc.Write([]byte("hello\n")); err != nil {
				return
			}
		}
	})
}

// oneConnServer listens on a free loopback TCP port, serves the first
// connection with serve (and closes it after), until the test ends, and
// returns the address.
func oneConnServer(t *testing.T, serve func(nc net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		serve(nc)
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestSendLenAgainstLineServer(t *testing.T) {
	t.Parallel()
	// "hell" read as a length prefix is 1.7 GB: the error says that the
	// server may not speak len framing, not only to raise --max-msg.
	r := runPorta(t, "", "send", "--framing", "len", lineServer(t), "hi")
	r.want(t, 1, "")
	r.oneLine(t, "porta: ", "too long", "--max-msg", "porta serve --framing len")

	for _, cmd := range []string{"send", "chat"} {
		r := runPorta(t, "", "help", cmd)
		r.want(t, 0, r.stdout)
		if !strings.Contains(r.stdout, "len needs a server in len framing (porta serve --framing len)") {
			t.Errorf("porta help %s does not say that len framing needs a len server:\n%s", cmd, r.stdout)
		}
	}
}
