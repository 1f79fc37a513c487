package bench

import (
	"bytes"
	"strconv"
)

// seqDigits is the most decimal digits of the sequence number at the start
// of each message body: 10^12 messages per connection before it wraps.
const seqDigits = 12

// filler is the text after the sequence number, repeated as needed. Letters
// only, so that an upper-casing server changes every filler byte and line
// framing never meets '\n' or '\r'.
const filler = "abcdefghijklmnopqrstuvwxyz"

// A body is a message body whose leading digits count up, like an
// odometer: next advances it without allocating. The same type holds the
// expected reply (upper-cased filler for Expect "upper").
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

// next advances the sequence number by one, wrapping at 10^digits.
func (m *body) next() {
	for i := m.digits - 1; i >= 0; i-- {
		if m.b[i] != '9' {
			m.b[i]++
			return
		}
		m.b[i] = '0'
	}
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

// current returns the sequence number that m holds.
func (m *body) current() uint64 {
	n, _ := m.seq(m.b)
	return n
}

// wrap is the modulus of the sequence numbers: 10^digits.
func (m *body) wrap() uint64 {
	w := uint64(1)
	for range m.digits {
		w *= 10
	}
	return w
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
