package porta

import (
	"context"
	"crypto/tls"
	"net"
)

// A Handler answers messages.
//
// ServeMessage is called once for each message a connection (or a UDP
// socket) receives, in order and one at a time per connection: from the
// connection's goroutine, or, for a handler marked NonBlocking, from an
// event loop that serves many connections in turn. It replies
// through w: each Write sends one framed reply, and Close hangs up after the
// replies are flushed. A handler that writes nothing sends no reply.
//
// m and w are valid only during the call: a handler that keeps m.Body or
// uses w after returning must copy the body and must not write.
type Handler interface {
	ServeMessage(w ResponseWriter, m *Message)
}

// HandlerFunc adapts an ordinary function to the Handler interface.
type HandlerFunc func(w ResponseWriter, m *Message)

// ServeMessage calls f(w, m).
func (f HandlerFunc) ServeMessage(w ResponseWriter, m *Message) { f(w, m) }

// A Message is one message received by the server, without its framing.
type Message struct {
	// Body is the message, without delimiter or length prefix. It aliases
	// the connection's read buffer: it is valid only during ServeMessage,
	// and the handler may modify it in place.
	Body []byte

	// RemoteAddr is the address of the peer that sent the message.
	RemoteAddr net.Addr

	// LocalAddr is the address of the listener or socket that received it.
	LocalAddr net.Addr

	// TLS describes the TLS connection that carried the message: its
	// version, and the client's verified certificates under mutual TLS.
	// It is nil for other connections.
	TLS *tls.ConnectionState

	ctx  context.Context // a datagram's context
	conn *conn           // a stream message's connection, which makes its context on first use
}

// Context returns the message's context. It is cancelled when the
// connection closes: after the connection's last message, on Server.Close,
// and when a Shutdown gives up waiting. It is never nil.
func (m *Message) Context() context.Context {
	if m.conn != nil {
		return m.conn.context()
	}
	if m.ctx == nil {
		return context.Background()
	}
	return m.ctx
}

// A ResponseWriter sends replies to the peer of one connection (for UDP, to
// the sender of one datagram). It is valid only during ServeMessage and is
// not safe for concurrent use.
type ResponseWriter interface {
	// Write sends p as one reply, framed as the connection frames its
	// messages. Replies are buffered and flushed together when the
	// connection has no more input waiting, so a pipelining peer gets
	// them in few packets. Write returns ErrHungUp after Close, and the
	// connection's write error once writing has failed.
	Write(p []byte) (int, error)

	// Close hangs up: the replies written so far are flushed, the
	// connection is closed, and no further message of it is served. For
	// UDP, Close only ends the current exchange.
	Close() error
}
