package bench

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/porta-project/porta/frame"
)

// seqDigits is the most decimal digits of the sequence number at the start
// of each message body: 10^12 messages per connection before it wraps.
const seqDigits = 12

// filler is the text after the sequence number, repeated as needed. Letters
// only, so that an upper-casing server changes every filler byte and line
// framing never meets '\n' or '\r'.
const filler = "abcdefghijklmnopqrstuvwxyz"

// A body is a message body of message 0: the digits of its sequence number,
// then the filler (upper-cased for Expect "upper"). It is the template of
// messages and replies, and tells a reply of another message (see seq).
type body struct {
	b      []byte
	digits int // b[:digits] holds the sequence number
}

// newBody returns the body of message 0: size bytes, with the filler in
// upper case if upper is set.
func newBody(size int, upper bool) body {
	b := make([]byte, size)
	d := min(size, seqDigits)
	for i := range d {
		b[i] = '0'
	}
	for i := d; i < size; i++ {
		c := filler[(i-d)%len(filler)]
		if upper {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	return body{b: b, digits: d}
}

// seq returns the sequence number held in p, a body of the same shape as
// m, and whether p is such a body: the same length and filler, with digits
// where m has them.
func (m *body) seq(p []byte) (uint64, bool) {
	if len(p) != len(m.b) || !bytes.Equal(p[m.digits:], m.b[m.digits:]) {
		return 0, false
	}
	var n uint64
	for _, c := range p[:m.digits] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// wrap is the modulus of the sequence numbers: 10^digits.
func (m *body) wrap() uint64 {
	w := uint64(1)
	for range m.digits {
		w *= 10
	}
	return w
}

// A counter is the sequence number of the next message in seqDigits
// decimal digits, which count up like an odometer: next advances it and
// put writes it into a message without allocating. A message shows the
// last n digits, which wrap at 10^n.
//
// The digits are held as the 12 bytes they are in a message, in two
// integers, so that put is two stores and next, but for a carry, one
// addition: a byte-wise odometer in memory would make each put wait for
// the byte that next just wrote.
type counter struct {
	lo uint64 // digits 0 to 7, in memory order (little endian)
	hi uint32 // digits 8 to 11: the last digit is the top byte
	n  int
}

// zeros are the counter's digits at zero.
const zeros = "000000000000"

func newCounter(size int) counter {
	c := counter{n: min(size, seqDigits)}
	c.load([]byte(zeros))
	return c
}

func (c *counter) load(a []byte) {
	c.lo = binary.LittleEndian.Uint64(a)
	c.hi = binary.LittleEndian.Uint32(a[8:])
}

// next advances the counter by one.
func (c *counter) next() {
	if byte(c.hi>>24) != '9' {
		c.hi += 1 << 24
		return
	}
	c.carry()
}

// carry advances the counter from a last digit of 9. It stays a call, so
// that next is inlined.
//
//go:noinline
func (c *counter) carry() {
	if byte(c.hi>>16) != '9' { // x9 to (x+1)0, still in registers
		c.hi = c.hi - 9<<24 + 1<<16
		return
	}
	var a [seqDigits]byte
	c.store(a[:])
	for i := seqDigits - 1; i >= 0; i-- {
		if a[i] != '9' {
			a[i]++
			break
		}
		a[i] = '0'
	}
	c.load(a[:])
}

func (c *counter) store(a []byte) {
	binary.LittleEndian.PutUint64(a, c.lo)
	binary.LittleEndian.PutUint32(a[8:], c.hi)
}

// put writes the last n digits at the start of dst.
func (c *counter) put(dst []byte) {
	if c.n == seqDigits {
		c.store(dst)
		return
	}
	var a [seqDigits]byte
	c.store(a[:])
	copy(dst[:c.n], a[seqDigits-c.n:])
}

// blockSize is the most bytes of the templates that appendMessages copies
// from: a run of Pipeline framed messages, or as many as fit in 64 KiB.
const blockSize = 64 << 10

// templates are the framed message and the framed expected reply, repeated
// back to back, with the digits of the sequence number at zero: a batch
// of messages or replies is one copy and then one put per message.
type templates struct {
	msgs, replies []byte // units of settings.wireSize and of replyLen bytes
	replyLen      int    // bytes of one framed expected reply
	bodyAt        int    // where the body, and so the digits, start in both
	replyDigits   bool   // the reply carries the message's digits (echo and upper)
}

func newTemplates(s *settings) templates {
	t := templates{replyDigits: s.expect != expectText}
	if s.Framing == frame.Length {
		t.bodyAt = frame.HeaderLen
	}
	msg := frame.Append(nil, s.Framing, newBody(s.Size, false).b)
	reply := msg
	switch s.expect {
	case expectUpper:
		reply = frame.Append(nil, s.Framing, newBody(s.Size, true).b)
	case expectText:
		reply = frame.Append(nil, s.Framing, s.text)
	}
	t.replyLen = len(reply)
	t.msgs = repeat(msg, s.Pipeline)
	t.replies = repeat(reply, s.Pipeline)
	return t
}

// repeat returns unit repeated n times, or as many times as fit in
// blockSize, at least once.
func repeat(unit []byte, n int) []byte {
	n = max(1, min(n, blockSize/max(len(unit), 1)))
	return bytes.Repeat(unit, n)
}

// appendUnits appends n of the units that block repeats, each u bytes.
func appendUnits(dst, block []byte, n, u int) []byte {
	for n > 0 {
		k := min(n, len(block)/u)
		dst = append(dst, block[:k*u]...)
		n -= k
	}
	return dst
}

// copyUnits copies n of the units that block repeats, each u bytes, to
// the start of dst.
func copyUnits(dst, block []byte, n, u int) {
	for n > 0 {
		k := min(n, len(block)/u)
		dst = dst[copy(dst, block[:k*u]):]
		n -= k
	}
}

// exampleLen is the most bytes of a reply or message kept in an Example.
const exampleLen = 80

// quote returns p as a Go string literal, shortened to exampleLen bytes.
func quote(p []byte) string {
	if len(p) > exampleLen {
		return strconv.Quote(string(p[:exampleLen])) + "..."
	}
	return strconv.Quote(string(p))
}
