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
