package reliability_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// The rows of the T1 table. Each case runs for every framing in its list
// (all three when the list is nil) and over tcp and unix.
var (
	lineLen  = []frame.Framing{frame.Line, frame.Length}
	lenOnly  = []frame.Framing{frame.Length}
	lineOnly = []frame.Framing{frame.Line}
)

func t1Cases() []t1Case {
	return []t1Case{
		{num: 1, name: "max_plus_1", run: func(e *t1Env) { e.oversize(t1Max + 1) }},
		{num: 2, name: "10x_max", run: func(e *t1Env) { e.oversize(10 * t1Max) }},
		{num: 3, name: "100MiB_no_newline", framings: lineLen, run: func(e *t1Env) {
			prefix, limit := []byte(nil), t1Max+1
			if e.f == frame.Length {
				prefix, limit = lengthPrefix(t1StreamMax), 0
			}
			s, crossed, written := e.streamTooLong(e.dial(), prefix, limit, 0)
			e.checkStream(s, crossed, written)
			e.expect(porta.CloseTooLong, 0, crossed, t1CloseWithin+t1Linger)
		}},
		{num: 3, name: "heap_100_parallel", framings: lineOnly, ownIdle: 10 * time.Second, run: func(e *t1Env) { e.heapCase() }},
		{num: 4, name: "prefix_max_plus_1", framings: lenOnly, run: func(e *t1Env) { e.prefixOnly(t1Max + 1) }},
		{num: 5, name: "prefix_0xFFFFFFFF", framings: lenOnly, run: func(e *t1Env) {
			heap0 := heapAfterGC()
			e.prefixOnly(0xFFFFFFFF)
			if g := growth(heap0, heapAfterGC()); g > sizeMiB {
				e.t.Errorf("heap grew by %d bytes after a 4 GiB prefix", g)
			}
		}},
		{num: 6, name: "empty_message", framings: lineLen, run: func(e *t1Env) {
			e.modelCase(e.frames("", "ping", ""))
		}},
		{num: 7, name: "truncated_prefix", framings: lenOnly, run: func(e *t1Env) {
			e.modelCase([]byte{0, 0}) // 2 of 4 bytes, then the end
		}},
		{num: 8, name: "truncated_body", framings: lineLen, run: func(e *t1Env) {
			// Length: a 10-byte frame with 5 bytes, then the end. Line: a
			// last line without '\n', which Line defines as a message.
			in := append(lengthPrefix(10), "abcde"...)
			if e.f == frame.Line {
				in = []byte("abcde")
			}
			e.modelCase(in)
		}},
		{num: 9, name: "invalid_utf8", run: func(e *t1Env) {
			bad := []string{"\xff\xfe", "\xc0\xaf", "\xed\xa0\x80"}
			if e.f == frame.Raw {
				var pairs []string
				for _, b := range bad {
					pairs = append(pairs, b, "ERR invalid UTF-8")
				}
				e.roundTrips(append(pairs, "ok", "OK")...)
				return
			}
			e.modelCase(e.frames(append(bad, "ok")...))
		}},
		{num: 10, name: "nul_bytes", run: func(e *t1Env) {
			e.modelCase(e.frames("a\x00b\x00c", "\x00"))
		}},
		{num: 11, name: "cr_lf_crlf", run: func(e *t1Env) {
			if e.f == frame.Line {
				// CR alone is data; LF ends a line; CRLF ends a line and the
				// CR is dropped; a CR before CRLF stays in the message.
				e.modelCase([]byte("cr\ronly\nlf\ncrlf\r\n\r\ncrcr\r\r\n"))
				return
			}
			e.modelCase(e.frames("a\rb", "c\nd", "e\r\n", "\r"))
		}},
		{num: 12, name: "1MiB_random_binary", run: func(e *t1Env) {
			in := randomBytes(12, sizeMiB)
			if e.f == frame.Raw {
				e.rawBinaryCase(in)
				return
			}
			e.modelCase(in)
		}},
		{num: 13, name: "zero_byte_connection", run: func(e *t1Env) {
			nc := e.dial()
			nc.Close()
			e.expect(porta.ClosePeer, 0, time.Now(), t1CloseWithin)
		}},
		{num: 14, name: "idle", run: func(e *t1Env) {
			nc := e.dial()
			opened := time.Now()
			r := startReader(nc)
			<-r.done
			nc.Close()
			if r.err != nil || r.reply.Len() > 0 {
				e.t.Errorf("idle connection got %q, %v; want a clean end of stream", r.reply.Bytes(), r.err)
			}
			if d := r.ended.Sub(opened); d < t1Idle-50*time.Millisecond || d > t1Idle+time.Second {
				e.t.Errorf("idle connection closed after %v, want %v + at most 1 s", d.Round(time.Millisecond), t1Idle)
			}
			e.expect(porta.CloseIdle, 0, opened, t1Idle+time.Second)
		}},
		{num: 15, name: "half_close_after_3", run: func(e *t1Env) {
			if e.f == frame.Raw {
				e.roundTrips("one", "ONE", "two", "TWO", "three", "THREE")
				return
			}
			e.modelCase(e.frames("one", "two", "three"))
		}},
		{num: 16, name: "reset_mid_message", run: func(e *t1Env) {
			// A reset counts as peer_closed wherever it falls (the doc of
			// ClosePeer: "closed its side (or reset)"). Over Unix there is
			// no reset: the abortive close is a plain close, an end of
			// stream in the middle of the frame: truncated for Length,
			// and for Line a last line without '\n', served as a message.
			partial := []byte("partial")
			if e.f == frame.Length {
				partial = append(lengthPrefix(100), "0123456789"...)
			}
			at := e.abort(partial)
			reason := porta.ClosePeer // a reset, wherever it falls
			if e.network == "unix" && e.f == frame.Length {
				reason = porta.CloseTruncated
			}
			e.expect(reason, -1, at, t1CloseWithin)
		}},
		{num: 17, name: "reset_before_reply", run: func(e *t1Env) {
			at := e.abort(e.frames("hello"))
			e.expect(porta.ClosePeer, -1, at, t1CloseWithin)
		}},
		{num: 18, name: "close_mid_pipeline", run: func(e *t1Env) {
			if e.f == frame.Raw {
				// One read is one message: the close word must come alone.
				nc := e.dial()
				defer nc.Close()
				nc.Write([]byte("one"))
				readN(e.t, nc, "ONE")
				nc.Write([]byte("close"))
				sent := time.Now()
				r := startReader(nc)
				<-r.done
				checkBytes(e.t, "reply to close", r.reply.Bytes(), []byte("bye"))
				e.expect(porta.CloseHangUp, 2, sent, t1CloseWithin)
				return
			}
			in := e.frames("one", "two", "close", "three", "four")
			want, reason, served := e.model(in)
			s := e.exchange(in, false) // no half-close: the server hangs up
			e.check(s, want)
			e.expect(reason, served, s.sent, t1CloseWithin)
		}},
		{num: 19, name: "tls_client_hello", run: func(e *t1Env) {
			hello := tlsClientHello(e.t)
			if e.f == frame.Raw {
				e.rawBinaryCase(hello)
				return
			}
			e.modelCase(hello)
		}},
		{num: 20, name: "plaintext_to_tls_port", framings: lineOnly, tls: true, run: func(e *t1Env) {
			// The handshake fails on the first record: no reply in
			// plaintext (at most a TLS alert), and a close. The
			// framing does not matter before the handshake: Line only.
			s := e.exchange(e.frames("hello"), false)
			if s.writeErr != nil || s.readErr != nil {
				e.t.Errorf("write: %v; read: %v", s.writeErr, s.readErr)
			}
			if len(s.reply) > 0 && s.reply[0] != 0x15 {
				e.t.Errorf("plaintext to the TLS port got %q, want nothing or a TLS alert", s.reply)
			}
			if d := s.ended.Sub(s.sent); d > t1CloseWithin {
				e.t.Errorf("server closed %v after the plaintext, want within %v", d.Round(time.Millisecond), t1CloseWithin)
			}
			e.expect(porta.CloseTLSHandshake, 0, s.sent, t1CloseWithin)
		}},
		{num: 21, name: "proxy_header_is_data", run: func(e *t1Env) { e.proxyHeaderIsData() }},
		{num: 22, name: "proxy_v1_no_crlf", skip: "PROXY protocol not implemented (T10 comes later)"},
		{num: 23, name: "proxy_v2_length_65535", skip: "PROXY protocol not implemented (T10 comes later)"},
		{num: 24, name: "pipelined_10000", run: func(e *t1Env) {
			msgs := make([]string, 10000)
			for i := range msgs {
				msgs[i] = fmt.Sprintf("req-%05d", i)
			}
			if e.f == frame.Raw {
				e.modelCase([]byte(strings.Join(msgs, " ")))
				return
			}
			e.modelCase(e.frames(msgs...))
		}},
	}
}

// oversize is cases 1 and 2: a message of n bytes, over the limit. Line
// and Length must answer the ERR naming the limit and close; Raw has no
// message to be too long (each read is one) and answers every byte.
func (e *t1Env) oversize(n int) {
	body := strings.Repeat("a", n)
	if e.f == frame.Raw {
		e.modelCase([]byte(body))
		return
	}
	e.modelCase(e.frames(body))
}

// prefixOnly is cases 4 and 5: a length prefix over the limit and nothing
// more. The ERR must come at once, before any body, and the server must
// close.
func (e *t1Env) prefixOnly(n uint32) {
	s := e.exchange(lengthPrefix(n), false)
	e.check(s, e.frames(t1TooLong))
	e.expect(porta.CloseTooLong, 0, s.sent, t1CloseWithin)
}

// abort writes in, then closes abortively: a reset over TCP (linger 0),
// a plain close over Unix. It returns when it closed.
func (e *t1Env) abort(in []byte) time.Time {
	nc := e.dial()
	if _, err := nc.Write(in); err != nil {
		e.t.Fatal(err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
	return time.Now()
}

// readN reads exactly len(want) bytes and checks them.
func readN(t testing.TB, nc net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	checkBytes(t, "reply", got, []byte(want))
}

// proxyHeaderIsData is case 21: on a listener without PROXY support a
// PROXY header is ordinary data, answered like any other, and the peer
// address stays the real one.
func (e *t1Env) proxyHeaderIsData() {
	v1 := "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"
	v2 := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), 192, 0, 2, 1, 192, 0, 2, 2, 0xdc, 0x04, 0x01, 0xbb)
	in := []byte(v1 + "hello\n")
	if e.f == frame.Length {
		in = append([]byte(v1), e.frames("hello")...) // "PROX" is a length prefix
	}

	if e.f == frame.Length {
		e.modelCase(in)
	} else {
		// While the connection is open, its peer is the real client.
		want := bytes.ToUpper(in) // Raw: whatever the reads, the upper case
		if e.f == frame.Line {
			want, _, _ = e.model(in)
		}
		nc := e.dial()
		nc.Write(in)
		readN(e.t, nc, string(want))
		for _, c := range e.srv.Conns() {
			if strings.Contains(c.Peer, "192.0.2.") {
				e.t.Errorf("peer address %q taken from the PROXY header", c.Peer)
			}
		}
		if e.network == "tcp" {
			found := false
			for _, c := range e.srv.Conns() {
				found = found || c.Peer == nc.LocalAddr().String()
			}
			if !found {
				e.t.Errorf("no open connection has the client's real address %v", nc.LocalAddr())
			}
		}
		nc.Close()
		e.expect(porta.ClosePeer, -1, time.Now(), t1CloseWithin)
	}
	e.waitCloses(e.logStart, 1)
	if e.f == frame.Raw {
		e.rawBinaryCase(v2)
		return
	}
	e.modelCase(v2)
}

// tlsClientHello returns the first record a crypto/tls client sends: its
// ClientHello.
func tlsClientHello(t testing.TB) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c1, &tls.Config{ServerName: "porta.test"}).Handshake()
		c1.Close()
	}()
	defer func() { c2.Close(); <-done }()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatalf("reading a ClientHello: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatalf("reading a ClientHello: %v", err)
	}
	if hdr[0] != 0x16 || len(body) == 0 || body[0] != 1 {
		t.Fatalf("not a ClientHello record: % x", hdr)
	}
	return append(hdr, body...)
}
