package porta

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"syscall"
	"time"
)

// ServePacket serves datagrams on pc until Shutdown or Close, after which
// it returns ErrServerClosed. Each datagram is one message, and each reply
// is one datagram to its sender. Datagrams are served one at a time, in
// order of arrival; a datagram over MaxMessageSize gets the reply
// "ERR message too long (limit N bytes)" (on Windows, one that is more
// than a byte over is dropped unanswered: Windows fails its read without
// saying who sent it). Allow and Deny apply to the senders of UDP
// datagrams: a datagram from a sender they refuse is dropped unanswered
// (Stats.DatagramsDenied). A handler panic drops its datagram and is
// counted (Stats.Panics); since a sender can cause one with every
// datagram, at most one a second is logged with its stack, and the next
// record says how many were not. Shutdown answers the datagrams already
// waiting on the socket (up to 4,096) before ServePacket returns.
// ServePacket closes pc when it returns.
func (s *Server) ServePacket(pc net.PacketConn) error {
	ls := &listenerStats{addr: FormatAddr(pc.LocalAddr())}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !s.trackPacket(pc, &packetSocket{ls: ls, cancel: cancel}) {
		pc.Close()
		return ErrServerClosed
	}
	defer s.trackPacket(pc, nil)
	defer pc.Close()

	limit := s.maxMessageSize()
	buf := make([]byte, limit+1) // one byte more tells an oversized datagram
	w := &packetWriter{pc: pc, s: s}
	w.src.init(pc)
	m := &Message{LocalAddr: pc.LocalAddr(), ctx: ctx}
	h := s.handler()
	var panics panicLog
	defer panics.flush(s)
	filtered := len(s.Allow)+len(s.Deny) > 0
	var backoff time.Duration
	draining := -1 // datagrams left to answer during a shutdown; -1 before it
	for {
		if draining >= 0 {
			if draining == 0 || s.closed.Load() {
				return ErrServerClosed
			}
			draining--
			// Read what is queued: a deadline in the future lets the
			// read try the socket, which a past one does not.
			pc.SetReadDeadline(time.Now().Add(time.Millisecond))
		}
		n, peer, err := w.src.readFrom(pc, buf)
		if err != nil {
			if s.shuttingDown() {
				if draining < 0 && !s.closed.Load() && isTimeoutErr(err) {
					draining = shutdownDatagrams
					continue
				}
				return ErrServerClosed
			}
			if isDatagramTooLarge(err) {
				s.counters.msgsIn.Add(1)
				ls.messages.Add(1)
				continue
			}
			if !isTemporary(err) {
				return err
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if filtered && !s.permittedPacket(peer) {
			s.counters.datagramsDenied.Add(1)
			continue
		}
		s.counters.msgsIn.Add(1)
		s.counters.bytesIn.Add(uint64(min(n, limit)))
		ls.messages.Add(1)
		w.peer, w.hungUp = peer, false
		if n > limit {
			w.Write(fmt.Appendf(nil, "ERR message too long (limit %d bytes)", limit))
			continue
		}
		m.Body, m.RemoteAddr = buf[:n], peer
		s.servePacket(h, w, m, &panics)
	}
}

// servePacket runs the handler for one datagram, recovering a panic so
// that one bad datagram cannot stop the socket.
func (s *Server) servePacket(h Handler, w *packetWriter, m *Message, panics *panicLog) {
	defer func() {
		if p := recover(); p != nil {
			s.counters.panics.Add(1)
			panics.log(s, m.RemoteAddr, p)
		}
	}()
	h.ServeMessage(w, m)
}

// panicLog limits the records of one socket's handler panics to one a
// second: a stream peer must connect again for each panic it causes, but
// a UDP sender causes one with every datagram, and a stack per datagram
// would flood the log.
type panicLog struct {
	last       time.Time // when the last record was written
	suppressed int       // panics since then, not logged
}

// log records a recovered panic with its stack, unless one was logged
// less than a second ago; the record counts the panics suppressed since
// the one before.
func (pl *panicLog) log(s *Server, peer net.Addr, p any) {
	now := time.Now()
	if !pl.last.IsZero() && now.Sub(pl.last) < time.Second {
		pl.suppressed++
		return
	}
	args := []any{"peer", addrString(peer), "panic", fmt.Sprint(p), "stack", string(debug.Stack())}
	if pl.suppressed > 0 {
		args = append(args, "suppressed", pl.suppressed)
	}
	pl.last, pl.suppressed = now, 0
	s.logger().Error("handler panic", args...)
}

// flush logs the count of the panics suppressed since the last record,
// if any, when the socket stops serving.
func (pl *panicLog) flush(s *Server) {
	if pl.suppressed > 0 {
		s.logger().Error("handler panics not logged", "suppressed", pl.suppressed)
		pl.suppressed = 0
	}
}

// errWSAEMSGSIZE is Windows' error for a datagram larger than the buffer
// it was read into; other systems truncate the datagram and say who sent
// it. No other system has an error numbered so high.
const errWSAEMSGSIZE = syscall.Errno(10040)

// isDatagramTooLarge reports whether a read failed because its datagram
// did not fit the buffer.
func isDatagramTooLarge(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno == errWSAEMSGSIZE
}

// shutdownDatagrams bounds the datagrams a shutdown answers after it has
// begun: those already queued on the socket, and not a flood that goes on
// arriving.
const shutdownDatagrams = 4096

// permittedPacket reports whether Allow and Deny let the sender of a
// datagram in; senders without an IP address are not filtered.
func (s *Server) permittedPacket(peer net.Addr) bool {
	ip, ok := peerIP(peer)
	return !ok || s.permitted(ip)
}

// packetSocket is a datagram socket being served: its counts, and the
// cancel of its messages' context, which Close calls.
type packetSocket struct {
	ls     *listenerStats
	cancel context.CancelFunc
}

// trackPacket adds a datagram socket, or removes it when ps is nil;
// adding fails during shutdown.
func (s *Server) trackPacket(pc net.PacketConn, ps *packetSocket) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps == nil {
		delete(s.packets, pc)
		s.active.Done()
		return true
	}
	if s.shuttingDown() {
		return false
	}
	if s.packets == nil {
		s.packets = make(map[net.PacketConn]*packetSocket)
	}
	s.packets[pc] = ps
	s.active.Add(1)
	return true
}

// packetWriter is the ResponseWriter of a datagram socket: each Write
// sends one datagram to the sender of the current message.
type packetWriter struct {
	pc     net.PacketConn
	s      *Server
	peer   net.Addr
	src    replySource // the reply's source address, on a wildcard socket
	hungUp bool
}

var _ ResponseWriter = (*packetWriter)(nil)

// Write sends p as one datagram to the current message's sender.
func (w *packetWriter) Write(p []byte) (int, error) {
	if w.hungUp {
		return 0, ErrHungUp
	}
	n, err := w.src.writeTo(w.pc, p, w.peer)
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
