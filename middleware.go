package porta

import (
	"log/slog"
	"net"
)

// Middleware wraps a Handler with behaviour of its own, the way net/http
// middleware wraps an http.Handler.
type Middleware func(Handler) Handler

// Chain returns h wrapped by mw, the first middleware outermost: a message
// passes through mw[0], then mw[1], and so on, and last reaches h.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// LogMessages returns middleware that logs each message at Info level as
// "Received: <message>" with the peer's address, before passing it on.
func LogMessages(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(w ResponseWriter, m *Message) {
			log.Info("Received: "+string(m.Body), "peer", addrString(m.RemoteAddr))
			next.ServeMessage(w, m)
		})
	}
}

// IsLocal reports whether addr is a loopback IP address or a Unix socket
// address: a peer on the same machine.
func IsLocal(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UDPAddr:
		return a.IP.IsLoopback()
	}
	return false
}
