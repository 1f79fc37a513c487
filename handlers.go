package porta

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Echo replies with the message itself.
var Echo Handler = HandlerFunc(func(w ResponseWriter, m *Message) { w.Write(m.Body) })

// errInvalidUTF8 is the reply of Upper to a message that is not UTF-8.
var errInvalidUTF8 = []byte("ERR invalid UTF-8")

// Upper replies with the message in Unicode upper case. A message that is
// not valid UTF-8 gets the reply "ERR invalid UTF-8"; the connection stays
// open. ASCII messages are converted in place, without allocating.
var Upper Handler = HandlerFunc(upper)

func upper(w ResponseWriter, m *Message) {
	body := m.Body
	for i, b := range body {
		if b >= utf8.RuneSelf {
			if !utf8.Valid(body[i:]) {
				w.Write(errInvalidUTF8)
				return
			}
			w.Write(bytes.ToUpper(body))
			return
		}
		if 'a' <= b && b <= 'z' {
			body[i] = b - ('a' - 'A')
		}
	}
	w.Write(body)
}

// Reply returns a Handler that answers every message with text.
func Reply(text string) Handler {
	reply := []byte(text)
	return HandlerFunc(func(w ResponseWriter, m *Message) { w.Write(reply) })
}

// HangUpOn returns a Handler that answers a message equal to word (compared
// case-insensitively, ignoring surrounding white space) with reply and then
// hangs up, and passes every other message to next. An empty word never
// matches, and an empty reply sends none.
func HangUpOn(word, reply string, next Handler) Handler {
	word = strings.TrimSpace(word)
	if word == "" {
		return next
	}
	return &hangUp{word: []byte(word), reply: []byte(reply), next: next}
}

var _ Handler = (*hangUp)(nil)

type hangUp struct {
	word, reply []byte
	next        Handler
}

func (h *hangUp) ServeMessage(w ResponseWriter, m *Message) {
	if !IsWord(m.Body, h.word) {
		h.next.ServeMessage(w, m)
		return
	}
	if len(h.reply) > 0 {
		w.Write(h.reply)
	}
	w.Close()
}

// IsWord reports whether body equals word, compared case-insensitively and
// ignoring white space around body. It does not allocate.
func IsWord(body, word []byte) bool {
	// Cheap length checks first: most messages are not the word. A
	// case-insensitive match pairs rune with rune, each of 1 to 4 bytes
	// (k and the 3-byte Kelvin sign K match), so the lengths of a match
	// are within a factor of 4; trimming only makes body shorter, and
	// does not touch a body whose ends are ASCII and not white space.
	if 4*len(body) < len(word) {
		return false
	}
	if n := len(body); n > 4*len(word) && asciiNonSpace(body[0]) && asciiNonSpace(body[n-1]) {
		return false
	}
	return bytes.EqualFold(bytes.TrimSpace(body), word)
}

// asciiNonSpace reports whether b is an ASCII byte that is not white
// space: a byte that bytes.TrimSpace never trims, nor starts a rune it
// trims.
func asciiNonSpace(b byte) bool {
	return b < utf8.RuneSelf && b != ' ' && (b < '\t' || b > '\r')
}

// Once returns a Handler that serves one message with next and then hangs
// up, so that each connection gets exactly one reply.
func Once(next Handler) Handler {
	return HandlerFunc(func(w ResponseWriter, m *Message) {
		next.ServeMessage(w, m)
		w.Close()
	})
}
