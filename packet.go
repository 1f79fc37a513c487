package porta

import (
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"time"
)

// ServePacket serves datagrams on pc until Shutdown or Close, after which
// it returns ErrServerClosed. Each datagram is one message, and each reply
// is one datagram to its sender. Datagrams are served one at a time, in
// order of arrival; a datagram over MaxMessageSize gets the reply
// "ERR message too long (limit N bytes)". ServePacket closes pc when it
// returns.
func (s *Server) ServePacket(pc net.PacketConn) error {
	ls := &listenerStats{addr: FormatAddr(pc.LocalAddr())}
	if !s.trackPacket(pc, ls) {
		pc.Close()
		return ErrServerClosed
	}
	defer s.trackPacket(pc, nil)
	defer pc.Close()

	limit := s.maxMessageSize()
	buf := make([]byte, limit+1) // one byte more tells an oversized datagram
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &packetWriter{pc: pc, s: s}
	m := &Message{LocalAddr: pc.LocalAddr(), ctx: ctx}
	h := s.handler()
	var backoff time.Duration
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			if !isTemporary(err) {
				return err
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.counters.msgsIn.Add(1)
		s.counters.bytesIn.Add(uint64(min(n, limit)))
		ls.messages.Add(1)
		w.peer, w.hungUp = peer, false
		if n > limit {
			w.Write(fmt.Appendf(nil, "ERR message too long (limit %d bytes)", limit))
			continue
		}
		m.Body, m.RemoteAddr = buf[:n], peer
		s.servePacket(h, w, m)
	}
}

// servePacket runs the handler for one datagram, recovering a panic so
// that one bad datagram cannot stop the socket.
func (s *Server) servePacket(h Handler, w *packetWriter, m *Message) {
	defer func() {
		if p := recover(); p != nil {
			s.counters.panics.Add(1)
			s.logger().Error("handler panic", "peer", addrString(m.RemoteAddr), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	h.ServeMessage(w, m)
}

// trackPacket adds a datagram socket with its counts, or removes it when
// ls is nil; adding fails during shutdown.
func (s *Server) trackPacket(pc net.PacketConn, ls *listenerStats) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls == nil {
		delete(s.packets, pc)
		s.active.Done()
		return true
	}
	if s.shuttingDown() {
		return false
	}
	if s.packets == nil {
		s.packets = make(map[net.PacketConn]*listenerStats)
	}
	s.packets[pc] = ls
	s.active.Add(1)
	return true
}

// packetWriter is the ResponseWriter of a datagram socket: each Write
// sends one datagram to the sender of the current message.
type packetWriter struct {
	pc     net.PacketConn
	s      *Server
	peer   net.Addr
	hungUp bool
}

var _ ResponseWriter = (*packetWriter)(nil)

// Write sends p as one datagram to the current message's sender.
func (w *packetWriter) Write(p []byte) (int, error) {
	if w.hungUp {
		return 0, ErrHungUp
	}
	n, err := w.pc.WriteTo(p, w.peer)
	if err == nil {
		w.s.counters.msgsOut.Add(1)
		w.s.counters.bytesOut.Add(uint64(n))
	}
	return n, err
}

// Close ends the current exchange: further writes for this datagram fail.
// A datagram socket has no connection to hang up.
func (w *packetWriter) Close() error {
	w.hungUp = true
	return nil
}
