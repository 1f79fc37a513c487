package porta

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// NonBlocking returns h marked as a handler that never blocks: its
// ServeMessage replies only through its ResponseWriter, does no other I/O,
// takes no lock that is held for long, and does not wait on channels,
// timers or other goroutines.
//
// On Linux, the server then serves the connections of a marked handler,
// while they wait for input, from a few event loops (one per processor)
// instead of a goroutine each: it wakes once for input on many
// connections and calls the handler for each in turn, which saves a
// goroutine switch per message. Handlers of connections in different
// loops still run at the same time. A marked handler that blocks stalls
// every connection of its loop meanwhile. Replies never block a loop:
// those the socket will not take now are written by a goroutine.
//
// Echo, Upper and Reply's handlers are marked, and so are HangUpOn's and
// Once's when the handler they wrap is. Other wrappers, such as
// middleware, are not: mark the outermost handler, if the whole chain
// never blocks.
func NonBlocking(h Handler) Handler {
	if isNonBlocking(h) {
		return h
	}
	return nonBlockingHandler{h}
}

// nonBlocker is implemented by the handlers that may be marked as never
// blocking (see NonBlocking).
type nonBlocker interface {
	nonBlocking() bool
}

// isNonBlocking reports whether h is marked as never blocking.
func isNonBlocking(h Handler) bool {
	nb, ok := h.(nonBlocker)
	return ok && nb.nonBlocking()
}

// nonBlockingHandler is NonBlocking's mark on a handler.
type nonBlockingHandler struct{ Handler }

func (nonBlockingHandler) nonBlocking() bool { return true }

// nonBlockingFunc is a handler function that never blocks.
type nonBlockingFunc func(w ResponseWriter, m *Message)

func (f nonBlockingFunc) ServeMessage(w ResponseWriter, m *Message) { f(w, m) }
func (nonBlockingFunc) nonBlocking() bool                           { return true }

// Echo replies with the message itself.
var Echo Handler = echo{}

// echo is Echo's type: a method rather than a nonBlockingFunc's closure,
// one call less per message.
type echo struct{}

func (echo) ServeMessage(w ResponseWriter, m *Message) { w.Write(m.Body) }
func (echo) nonBlocking() bool                         { return true }

// errInvalidUTF8 is the reply of Upper to a message that is not UTF-8.
var errInvalidUTF8 = []byte("ERR invalid UTF-8")

// Upper replies with the message in Unicode upper case. A message that is
// not valid UTF-8 gets the reply "ERR invalid UTF-8"; the connection stays
// open. ASCII messages are converted in place, without allocating.
var Upper Handler = nonBlockingFunc(upper)

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
	return nonBlockingFunc(func(w ResponseWriter, m *Message) { w.Write(reply) })
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

func (h *hangUp) nonBlocking() bool { return isNonBlocking(h.next) }

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
	return once{next}
}

type once struct{ next Handler }

func (o once) ServeMessage(w ResponseWriter, m *Message) {
	o.next.ServeMessage(w, m)
	w.Close()
}

func (o once) nonBlocking() bool { return isNonBlocking(o.next) }
