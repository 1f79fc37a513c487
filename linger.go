package porta

import (
	"crypto/tls"
	"net"
	"time"
)

// lingerTimeout and lingerMaxBytes bound how long a silent peer and how
// much input a closing connection keeps reading (and discarding) after
// sending its last reply and FIN. Closing a socket with unread input makes
// the kernel send a reset, which can destroy replies the peer has not read
// yet; lingering lets the peer read them first.
//
// lingerMaxFactor bounds the whole linger, so that a peer trickling input
// cannot keep a closing connection (and its goroutine) alive: ten times
// the silence a peer is allowed, ample for one still reading its replies.
const (
	lingerTimeout   = time.Second
	lingerMaxBytes  = 1 << 20
	lingerMaxFactor = 10
)

// closeGracefully half-closes nc, so the peer reads every reply and then
// end of stream, discards what the peer still sends until it closes or has
// been silent for timeout (at most lingerMaxBytes, and lingerMaxFactor
// times timeout, in all), and closes.
//
// A peer that still sends has not yet read up to the end of stream: it is
// behind on its replies, and closing now, with its input unread, would
// reset the connection and destroy the replies it has not yet read.
func closeGracefully(nc net.Conn, timeout time.Duration) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		buf := make([]byte, 4<<10)
		start := time.Now()
		last := start.Add(lingerMaxFactor * timeout)
		deadline := start.Add(timeout)
		for left := lingerMaxBytes; left > 0; {
			nc.SetReadDeadline(deadline)
			n, err := nc.Read(buf[:min(left, len(buf))])
			left -= n
			if n > 0 {
				deadline = time.Now().Add(timeout)
				if deadline.After(last) {
					deadline = last
				}
			}
			// Shutdown wakes readers with a deadline in the past; that
			// must not cut the linger short.
			if err != nil && (!isTimeoutErr(err) || !time.Now().Before(deadline)) {
				break
			}
		}
	}
	nc.Close()
}

// closeNow closes nc after a failed write. A TLS connection is closed
// without a close_notify alert: after a write timeout its stream may end
// in the middle of a record, which the alert would corrupt (the peer reads
// "bad record MAC"), and writing the alert to a peer that does not read
// blocks for up to five seconds, holding a slow consumer well past
// WriteTimeout.
func closeNow(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	nc.Close()
}

// resetIfStuck resets a connection that ends by a timeout (idle, frame or
// write) while its peer has not acknowledged all that was sent: such a
// peer is not taking its replies, and an orderly close would leave the
// socket in FIN-WAIT-1 behind it, holding up to a send buffer of kernel
// memory while the kernel retries a peer that does not read, for minutes
// after the connection is counted closed. A reset (SO_LINGER 0) drops the
// replies and frees the socket at once, as nginx's
// reset_timedout_connection does, but only for the connections that need
// it: a peer that has taken every reply gets the orderly close. It
// reports whether it closed nc.
func resetIfStuck(nc net.Conn) bool {
	tc := tcpConn(nc)
	if tc == nil || !unacked(tc) {
		return false
	}
	tc.SetLinger(0)
	tc.Close()
	return true
}

// tcpConn returns the TCP connection under nc, or nil: nc itself, or the
// connection under a TLS one.
func tcpConn(nc net.Conn) *net.TCPConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if rc, ok := nc.(*recordConn); ok {
		nc = rc.Conn
	}
	tc, _ := nc.(*net.TCPConn)
	return tc
}

// closeNow closes the connection's socket at once, for Server.Close. A
// busy connection (its loop running inside the poller, see pollLoop)
// holds its socket's read lock, and closing a socket waits for that lock:
// the socket is shut down now, so that the peer sees the end at once, and
// closed in the background when the connection's handler returns, so that
// a handler may call Server.Close.
//
// A connection seen idle is closed here, which is safe: Close sets
// Server.closed before it reads busy, and a connection sets busy
// (pollLoop.stepOnce) before it reads Server.closed, which it does
// before each message (conn.run), so one of the two sees the other: a
// connection that starts a step now runs no handler, and the close waits
// for one read at most.
func (c *conn) closeNow() {
	if c.busy.Load() {
		c.poll.shutdown()
		c.nc.SetDeadline(aLongTimeAgo)
		go closeNow(c.nc)
		return
	}
	if h := c.srv.testHookCloseIdle; h != nil {
		h(c)
	}
	closeNow(c.nc)
}
