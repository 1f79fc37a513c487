package frame

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"
)

// initialBufSize is the buffer a Decoder starts with, in bytes: one page,
// enough for every message in a typical interactive or benchmark session.
// Larger messages grow the buffer, up to one maximal frame.
const initialBufSize = 4 << 10

// bufPool recycles initial-size buffers between decoders, so that an idle
// connection that has released its buffer costs no buffer memory.
// It holds array pointers, which go in and out of the pool without an
// allocation (a slice would need one for its header each time).
var bufPool = sync.Pool{New: func() any { return new([initialBufSize]byte) }}

// A Decoder splits the bytes of a stream into messages.
//
// Decode returns the next complete message already buffered, without
// reading; Fill performs exactly one Read. Keeping the two apart lets a
// server flush its replies, set deadlines and check for shutdown before
// every read. Next combines them for simple clients.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r        io.Reader
	framing  Framing
	max      int
	readSize int

	buf        []byte
	start, end int   // buf[start:end] holds the bytes not yet returned
	scanned    int   // Line: bytes of buf[start:end] known to hold no '\n'
	err        error // sticky end of the stream: io.EOF or a read error
	bad        error // sticky framing error: ErrTooLong
}

// NewDecoder returns a Decoder reading from r with framing f. maxSize is the
// largest message accepted, in bytes, excluding the framing's own bytes; a
// value <= 0 means DefaultMaxSize, and values over MaxSizeLimit are lowered
// to it. The Raw read size starts at DefaultReadSize (see SetReadSize).
func NewDecoder(r io.Reader, f Framing, maxSize int) *Decoder {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	maxSize = min(maxSize, MaxSizeLimit)
	return &Decoder{r: r, framing: f, max: maxSize, readSize: min(DefaultReadSize, maxSize)}
}

// SetReadSize sets the largest number of bytes one Raw message (one read)
// may hold. It applies to Raw, including an Auto stream that chose Raw. n
// is clamped to [1, maxSize].
func (d *Decoder) SetReadSize(n int) {
	d.readSize = max(1, min(n, d.max))
}

// Framing returns the decoder's framing. For Auto it returns Auto until the
// first read has decided between Line and Raw, and that choice afterwards.
func (d *Decoder) Framing() Framing { return d.framing }

// MaxSize returns the largest message the decoder accepts, in bytes.
func (d *Decoder) MaxSize() int { return d.max }

// Buffered returns the number of bytes read but not yet returned as
// messages. After Decode reports no message, a non-zero Buffered means a
// frame has started and is incomplete.
func (d *Decoder) Buffered() int { return d.end - d.start }

// Decode returns the next complete buffered message without reading.
//
// ok is false when no complete message is buffered: call Fill. err is
// ErrTooLong when a message exceeds the limit (for a length prefix, as soon
// as the prefix is read), and, once every buffered message has been
// returned, the error that ended the stream: io.EOF for a clean end,
// io.ErrUnexpectedEOF when it ended inside a frame, or the read error. With
// Line framing a final line without '\n' before a clean end is still
// returned as a message.
//
// The message aliases the decoder's buffer: it is valid only until the next
// call of Decode, Fill, Next or Release. The caller may modify it in place.
func (d *Decoder) Decode() (msg []byte, ok bool, err error) {
	if d.bad != nil {
		return nil, false, d.bad
	}
	switch d.framing {
	case Line:
		return d.decodeLine()
	case Length:
		return d.decodeLength()
	case Raw:
		// One read is one message, of at most the read size; only Auto's
		// deciding read can hold more, and is handed out in pieces.
		if d.end > d.start {
			n := min(d.end-d.start, d.readSize)
			msg = d.buf[d.start : d.start+n]
			d.start += n
			return msg, true, nil
		}
	}
	return nil, false, d.err
}

func (d *Decoder) decodeLine() ([]byte, bool, error) {
	pending := d.buf[d.start:d.end]
	if i := bytes.IndexByte(pending[d.scanned:], '\n'); i >= 0 {
		i += d.scanned
		msg := dropCR(pending[:i])
		d.start += i + 1
		d.scanned = 0
		if len(msg) > d.max {
			d.bad = ErrTooLong
			return nil, false, d.bad
		}
		return msg, true, nil
	}
	d.scanned = len(pending)
	// Without a '\n' the message is at least len(pending) bytes long, or one
	// less if the last byte is a '\r' that the '\n' may follow.
	if n := len(pending); n > d.max+1 || (n == d.max+1 && pending[n-1] != '\r') {
		d.bad = ErrTooLong
		return nil, false, d.bad
	}
	if d.err == io.EOF && len(pending) > 0 {
		d.start, d.scanned = d.end, 0
		return dropCR(pending), true, nil
	}
	return nil, false, d.endErr()
}

func (d *Decoder) decodeLength() ([]byte, bool, error) {
	pending := d.buf[d.start:d.end]
	if len(pending) < HeaderLen {
		return nil, false, d.endErr()
	}
	n := binary.BigEndian.Uint32(pending)
	if uint64(n) > uint64(d.max) {
		d.bad = ErrTooLong
		return nil, false, d.bad
	}
	if len(pending)-HeaderLen < int(n) {
		return nil, false, d.endErr()
	}
	d.start += HeaderLen + int(n)
	return pending[HeaderLen : HeaderLen+int(n)], true, nil
}

// endErr is the error Decode reports when no complete message is buffered:
// nil while the stream is open, io.ErrUnexpectedEOF for a clean end inside a
// frame, otherwise the error that ended the stream.
func (d *Decoder) endErr() error {
	if d.err == io.EOF && d.end > d.start {
		return io.ErrUnexpectedEOF
	}
	return d.err
}

func dropCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// Fill performs one Read from the underlying reader into the buffer. Call
// it only after Decode has reported that no complete message is buffered.
//
// It returns nil when it read something, even if the read also returned an
// error; that error is kept and reported by Decode once the buffered
// messages are drained. It returns the error itself when nothing was read.
// A timeout error (one with a Timeout method reporting true, such as a
// passed deadline on a net.Conn) is returned but not kept, so the caller
// may set a new deadline and call Fill again.
func (d *Decoder) Fill() error {
	return d.FillFrom(d.r.Read)
}

// FillFrom is Fill with read in place of the reader's Read: it calls read
// exactly once, with the buffer space to fill (never empty), unless the
// stream has already ended. It lets a caller read by other means, such as
// a non-blocking system call, and still use the decoder's buffer and
// limits.
func (d *Decoder) FillFrom(read func(p []byte) (int, error)) error {
	if d.bad != nil {
		return d.bad
	}
	if d.err != nil {
		return d.err
	}
	if d.framing == Raw && d.end > d.start {
		return nil // a whole read is already buffered as the next message
	}
	p := d.space()
	if len(p) == 0 {
		// A maximal frame is buffered and still incomplete.
		d.bad = ErrTooLong
		return d.bad
	}
	n, err := read(p)
	d.end += n
	if d.framing == Auto && n > 0 {
		d.framing = Raw
		if bytes.IndexByte(p[:n], '\n') >= 0 {
			d.framing = Line
		}
	}
	if err != nil && !isTimeout(err) {
		d.err = err
	}
	if n > 0 {
		return nil
	}
	return err
}

// space makes room for the next read and returns the slice to read into.
func (d *Decoder) space() []byte {
	if d.start == d.end {
		d.start, d.end, d.scanned = 0, 0, 0
	}
	if d.buf == nil {
		d.buf = bufPool.Get().(*[initialBufSize]byte)[:]
	}
	if d.framing == Raw || d.framing == Auto {
		// One read is one message: read into an empty buffer, at most
		// readSize bytes. Auto's first read decides the framing, so it
		// takes up to a page, or one maximal line if that is smaller:
		// a first line longer than the read size must still be seen
		// whole to be taken for a line (and held to the size limit).
		size := d.readSize
		if d.framing == Auto {
			size = max(size, min(initialBufSize, d.frameCap()))
		}
		if len(d.buf) < size {
			d.buf = make([]byte, size)
		}
		return d.buf[d.end : d.end+size]
	}
	if d.end == len(d.buf) {
		if d.start > 0 {
			copy(d.buf, d.buf[d.start:d.end])
			d.end -= d.start
			d.start = 0
		} else {
			// Full with one incomplete frame: grow towards one maximal
			// frame. Decode has already rejected anything larger.
			if len(d.buf) >= d.frameCap() {
				return nil
			}
			n := 2 * len(d.buf)
			if n+n/2 > d.frameCap() {
				// Close to one maximal frame: go straight to it. A last
				// step of a few bytes (64 KiB, then 64 KiB + 2 for Line)
				// would copy a whole frame and hold two of them at once,
				// over 2 x the limit per connection.
				n = d.frameCap()
			}
			grown := make([]byte, n)
			copy(grown, d.buf[:d.end])
			d.buf = grown
		}
	}
	return d.buf[d.end:]
}

// frameCap is the size of the largest frame the decoder accepts.
func (d *Decoder) frameCap() int {
	if d.framing == Length {
		return HeaderLen + d.max
	}
	return d.max + 2 // "\r\n"
}

// Next returns the next message, reading as needed. It returns io.EOF at a
// clean end of the stream. The message is valid until the next call.
func (d *Decoder) Next() ([]byte, error) {
	for {
		msg, ok, err := d.Decode()
		if ok || err != nil {
			return msg, err
		}
		if err := d.Fill(); err != nil && isTimeout(err) {
			return nil, err
		}
	}
}

// Release returns the decoder's buffer to a shared pool if no bytes are
// buffered, so that an idle stream holds no buffer memory. The next Fill
// takes a buffer again. Release is a no-op while bytes are buffered.
func (d *Decoder) Release() {
	if d.buf == nil || d.end > d.start {
		return
	}
	if cap(d.buf) == initialBufSize {
		bufPool.Put((*[initialBufSize]byte)(d.buf[:initialBufSize]))
	}
	d.buf, d.start, d.end, d.scanned = nil, 0, 0, 0
}

// Reset discards all state and makes d read from r with framing f, keeping
// its limits and buffer.
func (d *Decoder) Reset(r io.Reader, f Framing) {
	d.r, d.framing = r, f
	d.start, d.end, d.scanned = 0, 0, 0
	d.err, d.bad = nil, nil
}

func isTimeout(err error) bool {
	t, ok := err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}
