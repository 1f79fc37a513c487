package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// The connections of the T1 cases: sending, reading until the server
// closes, the model of the replies, and case 3's streams.

// t1Session is what one connection of a case saw.
type t1Session struct {
	reply    []byte
	readErr  error     // nil: the reply ended in a clean end of stream
	writeErr error     // the error that stopped writing, if any
	sent     time.Time // the client had written everything (and half-closed)
	ended    time.Time // the server's close reached the client
}

// t1Reader reads nc until the server closes it.
type t1Reader struct {
	done  chan struct{}
	reply bytes.Buffer
	err   error
	ended time.Time
}

func startReader(nc net.Conn) *t1Reader {
	r := &t1Reader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 2*sizeKiB) // small: heapCase runs a hundred of these
		for {
			n, err := nc.Read(buf)
			r.reply.Write(buf[:n])
			if err != nil {
				r.ended = time.Now()
				if err != io.EOF {
					r.err = err
				}
				return
			}
		}
	}()
	return r
}

// exchange dials, writes input in one write (then half-closes, if asked)
// while reading everything the server sends until it closes the
// connection, then closes it.
func (e *t1Env) exchange(input []byte, halfClose bool) t1Session {
	nc := e.dial()
	defer nc.Close()
	r := startReader(nc)
	var s t1Session
	if len(input) > 0 {
		_, s.writeErr = nc.Write(input)
	}
	if halfClose && s.writeErr == nil {
		closeWrite(e.t, nc)
	}
	s.sent = time.Now()
	<-r.done
	s.reply, s.readErr, s.ended = r.reply.Bytes(), r.err, r.ended
	return s
}

// check fails the case unless s got exactly want, ended cleanly, and the
// server closed within t1CloseWithin of the end of the input.
func (e *t1Env) check(s t1Session, want []byte) {
	e.t.Helper()
	if s.writeErr != nil {
		e.t.Errorf("write: %v", s.writeErr)
	}
	if s.readErr != nil {
		e.t.Errorf("reading the replies: %v after %d bytes", s.readErr, len(s.reply))
	}
	checkBytes(e.t, "reply stream", s.reply, want)
	if d := s.ended.Sub(s.sent); d > t1CloseWithin {
		e.t.Errorf("server closed %v after the input, want within %v", d.Round(time.Millisecond), t1CloseWithin)
	}
}

// checkBytes fails unless got equals want, describing the first
// difference.
func checkBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: %d bytes, want %d; first difference at %d: got %q, want %q",
		what, len(got), len(want), i, excerpt(got, i), excerpt(want, i))
}

func excerpt(b []byte, i int) []byte {
	return b[min(i, len(b)):min(i+40, len(b))]
}

// upperReply is the reply of porta.Upper to body.
func upperReply(body []byte) []byte {
	if !utf8.Valid(body) {
		return []byte("ERR invalid UTF-8")
	}
	return bytes.ToUpper(body)
}

// model returns what the server must send for input, delivered whole and
// followed by the end of the stream, with Line or Length framing: the
// decoder's messages answered by the handler, then an ERR for a message
// over the limit. It also returns how the connection ends and the number
// of messages served.
func (e *t1Env) model(input []byte) ([]byte, porta.CloseReason, int) {
	if e.f == frame.Raw {
		e.t.Fatal("model: Raw messages depend on how reads split the stream")
	}
	var out []byte
	d := frame.NewDecoder(bytes.NewReader(input), e.f, t1Max)
	for n := 0; ; n++ {
		msg, err := d.Next()
		switch {
		case errors.Is(err, frame.ErrTooLong):
			return frame.Append(out, e.f, []byte(t1TooLong)), porta.CloseTooLong, n
		case err == io.EOF:
			return out, porta.ClosePeer, n
		case err == io.ErrUnexpectedEOF:
			return out, porta.CloseTruncated, n
		case err != nil:
			e.t.Fatalf("model: %v", err)
		}
		if porta.IsWord(msg, []byte("close")) {
			return frame.Append(out, e.f, []byte("bye")), porta.CloseHangUp, n + 1
		}
		out = frame.Append(out, e.f, upperReply(msg))
	}
}

// modelCase sends input whole, then half-closes, and checks the replies
// and the close against the model. With Raw framing, where one read is one
// message, input must be ASCII: its replies, whatever the reads, are then
// its upper case.
func (e *t1Env) modelCase(input []byte) {
	e.t.Helper()
	if e.f == frame.Raw {
		if !isASCII(input) {
			e.t.Fatal("modelCase: Raw input must be ASCII; use rawBinaryCase")
		}
		s := e.exchange(input, true)
		e.check(s, bytes.ToUpper(input))
		e.expect(porta.ClosePeer, -1, s.sent, t1CloseWithin)
		return
	}
	want, reason, served := e.model(input)
	s := e.exchange(input, true)
	e.check(s, want)
	e.expect(reason, served, s.sent, t1CloseWithin)
}

// rawBinaryCase sends arbitrary bytes to a Raw server, where how reads
// split them decides the messages: it checks that the server took every
// byte, sent everything it logged as sent, and closed cleanly.
func (e *t1Env) rawBinaryCase(input []byte) {
	e.t.Helper()
	start := e.logs.kept() // any earlier connection of the case has closed
	s := e.exchange(input, true)
	if s.writeErr != nil || s.readErr != nil {
		e.t.Errorf("write: %v; read: %v", s.writeErr, s.readErr)
	}
	e.expect(porta.ClosePeer, -1, s.sent, t1CloseWithin)
	recs := e.waitCloses(start, 1)
	if len(recs) != 1 {
		return
	}
	r := recs[0]
	if in, out, msgs := r.uint("bytes_in"), r.uint("bytes_out"), r.uint("messages"); in != uint64(len(input)) ||
		out != uint64(len(s.reply)) || msgs < uint64(len(input)/frame.DefaultReadSize) {
		e.t.Errorf("server took %d bytes in %d messages and sent %d; client sent %d and received %d",
			in, msgs, out, len(input), len(s.reply))
	}
}

// waitCloses waits up to t1Settle for n "connection closed" records from
// record index start on, and returns them.
func (e *t1Env) waitCloses(start, n int) []logRecord {
	deadline := time.Now().Add(t1Settle)
	for {
		recs := e.logs.since(start, "connection closed")
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// roundTrips sends each request in its own write and waits for its reply
// before the next, so that with Raw framing each is one message; then it
// half-closes and expects the end of the stream.
func (e *t1Env) roundTrips(pairs ...string) {
	e.t.Helper()
	nc := e.dial()
	defer nc.Close()
	for i := 0; i+1 < len(pairs); i += 2 {
		req, want := pairs[i], pairs[i+1]
		if _, err := nc.Write(e.frames(req)); err != nil {
			e.t.Fatalf("write %q: %v", req, err)
		}
		got := make([]byte, len(e.frames(want)))
		if _, err := io.ReadFull(nc, got); err != nil {
			e.t.Fatalf("reply to %q: %v", req, err)
		}
		checkBytes(e.t, fmt.Sprintf("reply to %q", req), got, e.frames(want))
	}
	closeWrite(e.t, nc)
	sent := time.Now()
	r := startReader(nc)
	<-r.done
	if r.err != nil || r.reply.Len() > 0 {
		e.t.Errorf("after the replies: %q, %v; want a clean end of stream", r.reply.Bytes(), r.err)
	}
	e.expect(porta.ClosePeer, len(pairs)/2, sent, t1CloseWithin)
}

// randomBytes returns n bytes from a seeded generator, so that a failure
// can be reproduced.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// lengthPrefix returns a Length framing prefix declaring n bytes.
func lengthPrefix(n uint32) []byte {
	return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// streamChunk is what case 3 streams, shared by every connection so that
// the client's own buffers do not count in heapCase's measurement.
var streamChunk = bytes.Repeat([]byte{'a'}, 64*sizeKiB)

// streamTooLong is case 3: after prefix, a stream of 'a' with no newline
// and no end, written until the server closes the connection (at most
// t1StreamMax bytes), pausing pace after each 64 KiB (heapCase: a
// hundred streams at full speed on two cores would measure the machine's
// scheduler more than the server). The server must answer the ERR naming the limit and
// close within t1CloseWithin of the stream crossing it.
func (e *t1Env) streamTooLong(nc net.Conn, prefix []byte, limit int, pace time.Duration) (s t1Session, crossed time.Time, written int) {
	if tc, ok := nc.(*net.TCPConn); ok {
		// A small send buffer: what sits in it when the server closes is
		// wasted work for the machine, not a test of the server.
		tc.SetWriteBuffer(128 * sizeKiB)
	}
	r := startReader(nc)
	chunk := streamChunk
	written, _ = nc.Write(prefix)
	for written < t1StreamMax {
		n, err := nc.Write(chunk)
		written += n
		if crossed.IsZero() && written > limit {
			crossed = time.Now()
		}
		if err != nil {
			s.writeErr = err
			break
		}
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	s.sent = time.Now()
	<-r.done
	s.reply, s.readErr, s.ended = r.reply.Bytes(), r.err, r.ended
	nc.Close()
	return s, crossed, written
}

// checkStream checks one case-3 connection: the exact ERR, then the end of
// the stream (a reset after the whole ERR is fine: the client was still
// sending), within t1CloseWithin of crossing the limit; writing stopped by
// the close, long before the end of the stream.
func (e *t1Env) checkStream(s t1Session, crossed time.Time, written int) {
	e.t.Helper()
	checkBytes(e.t, "reply", s.reply, e.frames(t1TooLong))
	if s.readErr != nil && !isReset(s.readErr) {
		e.t.Errorf("reading the reply: %v", s.readErr)
	}
	if d := s.ended.Sub(crossed); d > t1CloseWithin {
		e.t.Errorf("server closed %v after the stream crossed the limit, want within %v", d.Round(time.Millisecond), t1CloseWithin)
	}
	if s.writeErr == nil || written >= t1StreamMax {
		e.t.Errorf("the client wrote %d bytes (error %v): the server did not stop the stream", written, s.writeErr)
	} else if !isReset(s.writeErr) {
		e.t.Errorf("writing stopped with %v, want a reset or broken pipe", s.writeErr)
	}
}

// heapCase is criterion (b): t1Parallel connections each send a stream
// with no newline. While each holds an almost full frame, and while they
// stream past the limit, the heap after GC must stay within
// t1Parallel x 2 x max of where it started.
func (e *t1Env) heapCase() {
	t := e.t
	bound := uint64(t1Parallel * 2 * t1Max)
	heap0 := heapAfterGC()
	conns := make([]net.Conn, t1Parallel)
	almost := bytes.Repeat([]byte{'a'}, t1Max-1)
	for i := range conns {
		conns[i] = e.dial()
		if _, err := conns[i].Write(almost); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(ioTimeout)
	for e.srv.Stats().ConnsOpen < e.openBase+t1Parallel && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the server read what is on the wire
	if open := e.srv.Stats().ConnsOpen - e.openBase; open != t1Parallel {
		t.Fatalf("%d connections open, want %d holding an incomplete frame", open, t1Parallel)
	}
	held := growth(heap0, heapAfterGC())

	// Now stream past the limit on all of them at once, sampling the heap.
	var peak uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, growth(heap0, heapAfterGC()))
			select {
			case <-stopSampling:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int
	for _, nc := range conns {
		wg.Go(func() {
			s, crossed, written := e.streamTooLong(nc, nil, 1, time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			total += written
			e.checkStream(s, crossed, written)
			e.expect(porta.CloseTooLong, 0, crossed, t1CloseWithin+t1Linger)
		})
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	final := growth(heap0, heapAfterGC())
	t.Logf("heap growth: %.1f MiB with %d connections each holding %d bytes, peak %.1f MiB while streaming %.0f MiB in all, %.1f MiB after; bound %.1f MiB",
		float64(held)/sizeMiB, t1Parallel, len(almost), float64(peak)/sizeMiB, float64(total)/sizeMiB, float64(final)/sizeMiB, float64(bound)/sizeMiB)
	if held >= bound || peak >= bound {
		t.Errorf("heap grew by %d bytes holding and %d bytes at peak, want < %d (%d x 2 x %d)", held, peak, bound, t1Parallel, t1Max)
	}
}
