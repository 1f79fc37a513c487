package frame

import (
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
)

// step is one Read of a scriptReader: the bytes b, then err. When the
// caller's buffer is smaller than b, the rest of b comes in the next Reads
// and err only with its last byte. An empty b with a nil err is an empty read.
type step struct {
	b   string
	err error
}

// chunks returns one step per string, each without an error.
func chunks(ss ...string) []step {
	steps := make([]step, len(ss))
	for i, s := range ss {
		steps[i] = step{b: s}
	}
	return steps
}

// scriptReader is an io.Reader that plays its steps in order, then returns
// end (io.EOF when end is nil) forever.
type scriptReader struct {
	steps []step
	end   error
	reads int // number of Read calls
}

func (r *scriptReader) Read(p []byte) (int, error) {
	r.reads++
	if len(r.steps) == 0 {
		if r.end == nil {
			return 0, io.EOF
		}
		return 0, r.end
	}
	s := &r.steps[0]
	n := copy(p, s.b)
	s.b = s.b[n:]
	if len(s.b) > 0 {
		return n, nil
	}
	err := s.err
	r.steps = r.steps[1:]
	return n, err
}

// timeoutError is a read error reporting Timeout, like a passed deadline on
// a net.Conn.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var (
	// errBoom is a read error that ends a stream.
	errBoom = errors.New("test: connection reset")
	// errReadPastEnd ends a script whose decoder must stop reading before
	// it, such as one rejecting a length prefix before the body arrives.
	errReadPastEnd = errors.New("test: read past the expected end")
)

// hdr returns the Length framing's prefix for n.
func hdr(n uint32) string {
	return string(binary.BigEndian.AppendUint32(nil, n))
}

// maxSteps bounds the Decode and Fill calls of decodeAll, so that a decoder
// that stops making progress fails instead of hanging.
const maxSteps = 1 << 22

// decodeAll decodes d to the end of its stream with Decode and Fill,
// checking the decoder's invariants after every call, and returns the
// messages (copied) and the error that ended them. Timeouts returned by
// Fill are skipped, as a server would after setting a new deadline.
func decodeAll(tb testing.TB, d *Decoder) ([]string, error) {
	tb.Helper()
	return decode(tb, d, false)
}

// decode is decodeAll, calling Release before every Fill when release is
// set, as a server does before waiting on an idle connection, and checking
// that Release drops the buffer exactly when it is empty.
func decode(tb testing.TB, d *Decoder, release bool) ([]string, error) {
	tb.Helper()
	var msgs []string
	for range maxSteps {
		msg, ok, err := d.Decode()
		checkDecoder(tb, d, msg, ok, err)
		if ok {
			msgs = append(msgs, string(msg))
			continue
		}
		if err != nil {
			return msgs, err
		}
		if release {
			buffered, buf := d.Buffered(), d.buf
			d.Release()
			switch {
			case buffered == 0 && d.buf != nil:
				tb.Fatalf("Release kept the buffer of an empty decoder")
			case buffered > 0 && (d.Buffered() != buffered || &d.buf[0] != &buf[0]):
				tb.Fatalf("Release with %d bytes buffered changed the buffer", buffered)
			}
		}
		// A timeout from Fill is not kept: read on. Any other error is
		// kept and reported by Decode once the buffered messages are out.
		_ = d.Fill()
		checkBuffer(tb, d)
	}
	tb.Fatalf("decoder made no progress after %d calls", maxSteps)
	return nil, nil
}

// checkDecoder checks the invariants of d after a Decode that returned msg,
// ok and err.
func checkDecoder(tb testing.TB, d *Decoder, msg []byte, ok bool, err error) {
	tb.Helper()
	checkBuffer(tb, d)
	if ok && err != nil {
		tb.Fatalf("Decode returned a message and error %v", err)
	}
	if ok {
		if len(msg) > d.max {
			tb.Fatalf("message of %d bytes over max %d", len(msg), d.max)
		}
		if d.framing == Raw && (len(msg) == 0 || len(msg) > d.readSize) {
			tb.Fatalf("raw message of %d bytes, want 1 to %d", len(msg), d.readSize)
		}
	}
	if !ok && err == nil && d.Buffered() > 0 {
		// An incomplete frame is buffered: it is never more than one
		// maximal frame (max plus "\r\n" or the 4-byte prefix).
		switch d.framing {
		case Line:
			if d.Buffered() > d.max+1 {
				tb.Fatalf("%d bytes of an unfinished line buffered, max %d", d.Buffered(), d.max)
			}
		case Length:
			if d.Buffered() >= HeaderLen+d.max {
				tb.Fatalf("%d bytes of an unfinished frame buffered, max %d", d.Buffered(), d.max)
			}
		default:
			tb.Fatalf("%v decoder holds %d bytes but no message", d.framing, d.Buffered())
		}
	}
}

// checkBuffer checks that d's buffer bounds are consistent and that the
// buffer is no larger than one maximal frame (or the initial buffer).
func checkBuffer(tb testing.TB, d *Decoder) {
	tb.Helper()
	if !(0 <= d.start && d.start <= d.end && d.end <= len(d.buf)) {
		tb.Fatalf("buffer bounds: start %d, end %d, len %d", d.start, d.end, len(d.buf))
	}
	if d.framing == Line && d.scanned > d.end-d.start {
		tb.Fatalf("scanned %d > buffered %d", d.scanned, d.end-d.start)
	}
	// The buffer is the shared initial one or has grown to one maximal
	// frame (or one Raw read), never beyond.
	if limit := max(initialBufSize, d.frameCap(), d.readSize); len(d.buf) > limit {
		tb.Fatalf("buffer is %d bytes, over %d (max %d, %v)", len(d.buf), limit, d.max, d.framing)
	}
}

// sameResult reports whether two decodings gave the same messages and the
// same final error.
func sameResult(m1 []string, e1 error, m2 []string, e2 error) bool {
	return slices.Equal(m1, m2) && errors.Is(e1, e2) && errors.Is(e2, e1)
}
