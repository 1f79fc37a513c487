package porta

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/porta-project/porta/frame"
)

// memConn is a net.Conn whose reads return the same pipelined batch of
// requests until a message budget is spent, and whose writes are counted
// and discarded: the connection loop with the network taken away.
type memConn struct {
	batch    []byte
	perBatch int // messages in batch
	left     int // messages still to deliver
	written  int
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	c.left -= c.perBatch
	return copy(p, c.batch), nil
}

func (c *memConn) Write(p []byte) (int, error)       { c.written += len(p); return len(p), nil }
func (c *memConn) Close() error                      { return nil }
func (c *memConn) LocalAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000} }
func (c *memConn) RemoteAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(t time.Time) error     { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error {
	return nil
}

// benchmarkHotPath measures the per-message cost of read, decode, handler,
// encode and flush for 64-byte messages, perBatch of them per read (1 is
// a lock-step client, 16 a pipelining one).
func benchmarkHotPath(b *testing.B, f frame.Framing, h Handler, perBatch int) {
	msg := make([]byte, 63)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	var batch []byte
	for range perBatch {
		batch = frame.Append(batch, f, msg)
	}
	srv := &Server{Handler: h, Framing: f}
	ls := &listenerStats{}
	mc := &memConn{batch: batch, perBatch: perBatch}

	// Warm up one connection's buffers, then measure a fresh one reusing
	// nothing but the pools, as a server does.
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	mc.left = b.N
	c := newConn(srv, mc, ls)
	b.ResetTimer()
	reason := c.loop()
	b.StopTimer()
	if reason != ClosePeer {
		b.Fatalf("loop ended with %v", reason)
	}
	if got := c.stats.msgsOut; got < uint64(b.N) {
		b.Fatalf("answered %d of %d messages", got, b.N)
	}
}

func BenchmarkHotPathLineEcho(b *testing.B)    { benchmarkHotPath(b, frame.Line, Echo, 1) }
func BenchmarkHotPathLineEchoP16(b *testing.B) { benchmarkHotPath(b, frame.Line, Echo, 16) }
func BenchmarkHotPathLenEcho(b *testing.B)     { benchmarkHotPath(b, frame.Length, Echo, 1) }
func BenchmarkHotPathLenEchoP16(b *testing.B)  { benchmarkHotPath(b, frame.Length, Echo, 16) }
func BenchmarkHotPathLineUpper(b *testing.B)   { benchmarkHotPath(b, frame.Line, Upper, 16) }
func BenchmarkHotPathLineCloseWord(b *testing.B) {
	benchmarkHotPath(b, frame.Line, HangUpOn("close", "closed", Echo), 16)
}
