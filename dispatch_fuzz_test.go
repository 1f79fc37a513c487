package porta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/porta-project/porta/frame"
)

// FuzzHandlerDispatch feeds arbitrary bytes as a client's stream to a
// server connection, from the read loop through the decoder, the handler
// (HangUpOn("close", "bye", Upper)) and the replies to the close, with each
// framing and a fuzzed read size. The connection runs on a scripted
// in-memory net.Conn, served on the fuzzing goroutine (no sockets, no
// goroutines, no timing: about ten thousand inputs a second), which
// delivers the input whole, then split in two reads at a fuzzed offset,
// each followed by the end of the stream. It checks that:
//
//   - nothing panics (a panic anywhere in the loop would be recovered and
//     counted as a handler panic, so Stats().Panics must stay 0);
//   - the connection never holds more than one maximal frame of an
//     incomplete message (MaxMessageSize plus the framing's bytes), nor a
//     read buffer larger than that or the initial page, nor a write larger
//     than the flush threshold plus one reply;
//   - every reply answers a message: the reply stream is exactly what a
//     frame.Decoder makes of the same reads, answered by the handler, then
//     the ERR naming the limit for a message over it;
//   - the connection ends with the defined CloseReason (peer_closed,
//     truncated, too_long or hangup; never error or panic);
//   - with Line and Length, split invariance: both deliveries give the same
//     replies and end. (Raw and Auto are defined by their reads: each read
//     is a message, and the first read decides Auto.)
//
// The seed corpus in testdata/fuzz/FuzzHandlerDispatch holds the T1 cases
// scaled to the fuzz limit, plus valid frames of every framing.
func FuzzHandlerDispatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, split uint16) {
		fr := frame.Framing(mode & 3)
		readSize := dispatchReadSizes[mode>>2&3]
		k := int(split) % (len(data) + 1)

		whole := dispatchRun(t, fr, readSize, [][]byte{data})
		parts := dispatchRun(t, fr, readSize, [][]byte{data[:k], data[k:]})
		if fr == frame.Line || fr == frame.Length {
			if !bytes.Equal(whole.out, parts.out) || whole.reason != parts.reason || whole.msgs != parts.msgs {
				t.Fatalf("%v, split at %d: whole gave %q (%v, %d messages); split gave %q (%v, %d messages)",
					fr, k, whole.out, whole.reason, whole.msgs, parts.out, parts.reason, parts.msgs)
			}
		}
	})
}

// dispatchMax is the fuzz server's message limit: small, so that inputs
// reach it.
const dispatchMax = 64

// dispatchReadSizes are the Raw read sizes the fuzzer chooses from.
var dispatchReadSizes = [4]int{1, 7, dispatchMax, frame.DefaultReadSize}

// dispatchInitialBuf is frame's initial read buffer, one page: a decoder
// may hold that much however small its limit.
const dispatchInitialBuf = 4 << 10

type dispatchResult struct {
	out    []byte
	reason CloseReason
	msgs   uint64
}

// dispatchRun serves pieces (then the end of the stream) on a fresh
// server with framing fr, taking the connection through the steps of the
// accept loop (admit, newConn, trackConn) and serving it on this goroutine,
// so that nothing depends on scheduling and the coverage the fuzzer sees
// is the input's. It checks the result against the model.
func dispatchRun(t *testing.T, fr frame.Framing, readSize int, pieces [][]byte) dispatchResult {
	s := &Server{
		Handler:        HangUpOn("close", "bye", Upper),
		Framing:        fr,
		MaxMessageSize: dispatchMax,
		ReadSize:       readSize,
	}
	nc := &dispatchConn{r: dispatchReader{pieces: pieces}}
	ip, _, ok := s.admit(nc)
	if !ok {
		t.Fatal("connection not admitted")
	}
	c := newConn(s, nc, &listenerStats{})
	c.ip = ip
	nc.c = c
	if !s.trackConn(c) {
		t.Fatal("connection not tracked")
	}
	c.serve(false) // its whole life: read, decode, answer, close
	if nc.failure != "" {
		t.Fatal(nc.failure)
	}

	st := s.Stats()
	if st.Panics != 0 {
		t.Fatalf("%v: the connection panicked (recovered as a handler panic)", fr)
	}
	if !nc.closed || st.ConnsOpen != 0 {
		t.Fatalf("%v: connection not closed (closed %v, %d open)", fr, nc.closed, st.ConnsOpen)
	}
	var res dispatchResult
	n := 0
	for r, count := range st.Closed {
		if count > 0 {
			res.reason, n = CloseReason(r), n+int(count)
		}
	}
	if n != 1 {
		t.Fatalf("%v: %d closes counted, want 1", fr, n)
	}
	res.out, res.msgs = nc.out.Bytes(), st.MessagesIn

	want := dispatchModel(t, fr, readSize, pieces)
	if !bytes.Equal(res.out, want.out) || res.reason != want.reason || res.msgs != want.msgs {
		t.Fatalf("%v, read size %d, pieces %q: server sent %q and ended %v after %d messages; the model: %q, %v, %d",
			fr, readSize, pieces, res.out, res.reason, res.msgs, want.out, want.reason, want.msgs)
	}
	switch res.reason {
	case ClosePeer, CloseTruncated, CloseTooLong, CloseHangUp:
	default:
		t.Fatalf("%v: ended with %v", fr, res.reason)
	}
	return res
}

// dispatchModel decodes the same reads with a frame.Decoder and answers
// each message as HangUpOn("close", "bye", Upper) does.
func dispatchModel(t *testing.T, fr frame.Framing, readSize int, pieces [][]byte) dispatchResult {
	d := frame.NewDecoder(&dispatchReader{pieces: pieces}, fr, dispatchMax)
	d.SetReadSize(readSize)
	var res dispatchResult
	for {
		msg, err := d.Next()
		switch {
		case errors.Is(err, frame.ErrTooLong):
			res.out = frame.Append(res.out, dispatchReplyFraming(d), fmt.Appendf(nil, "ERR message too long (limit %d bytes)", dispatchMax))
			res.reason = CloseTooLong
			return res
		case err == io.EOF:
			res.reason = ClosePeer
			return res
		case err == io.ErrUnexpectedEOF:
			res.reason = CloseTruncated
			return res
		case err != nil:
			t.Fatalf("model: %v", err)
		}
		res.msgs++
		reply := []byte("ERR invalid UTF-8")
		if IsWord(msg, []byte("close")) {
			res.out = frame.Append(res.out, dispatchReplyFraming(d), []byte("bye"))
			res.reason = CloseHangUp
			return res
		}
		if utf8.Valid(msg) {
			reply = bytes.ToUpper(msg)
		}
		res.out = frame.Append(res.out, dispatchReplyFraming(d), reply)
	}
}

func dispatchReplyFraming(d *frame.Decoder) frame.Framing {
	if f := d.Framing(); f != frame.Auto {
		return f
	}
	return frame.Line
}

// dispatchReader delivers pieces, each in as many reads as the reader asks
// for, then io.EOF on a read of its own.
type dispatchReader struct {
	pieces [][]byte
	i, off int
}

func (r *dispatchReader) Read(p []byte) (int, error) {
	for r.i < len(r.pieces) && r.off == len(r.pieces[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	if r.i == len(r.pieces) {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[r.i][r.off:])
	r.off += n
	return n, nil
}

// dispatchConn is the client's side of the script as a net.Conn: reads
// come from the pieces, writes are collected. Each Read and Write checks
// what the connection holds, and keeps the first failure.
type dispatchConn struct {
	c       *conn // the server's connection
	r       dispatchReader
	out     bytes.Buffer
	closed  bool
	failure string
}

func (nc *dispatchConn) fail(format string, args ...any) {
	if nc.failure == "" {
		nc.failure = fmt.Sprintf(format, args...)
	}
}

// Read checks, before each read the decoder asks for, that the connection
// holds at most one maximal frame of an incomplete message and a buffer no
// larger than that or the initial page.
func (nc *dispatchConn) Read(p []byte) (int, error) {
	d := nc.c.dec
	frameCap := dispatchMax + 2 // "\r\n"
	if d.Framing() == frame.Length {
		frameCap = dispatchMax + frame.HeaderLen
	}
	held := d.Buffered()
	if held > frameCap {
		nc.fail("%v: %d bytes of an incomplete message held, over one maximal frame (%d)", d.Framing(), held, frameCap)
	}
	if limit := max(dispatchInitialBuf, frameCap); held+len(p) > limit {
		nc.fail("%v: a read buffer of %d bytes, over %d", d.Framing(), held+len(p), limit)
	}
	return nc.r.Read(p)
}

func (nc *dispatchConn) Write(p []byte) (int, error) {
	if limit := flushThreshold + 2*dispatchMax + 64; len(p) > limit {
		nc.fail("a write of %d bytes, over %d", len(p), limit)
	}
	if nc.closed {
		return 0, net.ErrClosed
	}
	return nc.out.Write(p)
}

func (nc *dispatchConn) Close() error { nc.closed = true; return nil }
func (nc *dispatchConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000}
}
func (nc *dispatchConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (nc *dispatchConn) SetDeadline(time.Time) error      { return nil }
func (nc *dispatchConn) SetReadDeadline(time.Time) error  { return nil }
func (nc *dispatchConn) SetWriteDeadline(time.Time) error { return nil }
