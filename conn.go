package porta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/porta-project/porta/frame"
)

// conn is one stream connection being served. Only its own goroutine, or
// the event loop it waits in (see eventLoop), touches its fields, except
// nc (Close and SetReadDeadline are safe for concurrent use), cancel, and
// stats (see connCounters).
type conn struct {
	srv        *Server
	ls         *listenerStats // the listener's counts
	ip         netip.Addr     // the peer's IP, for MaxConnsPerIP; invalid for Unix
	nc         net.Conn
	dec        *frame.Decoder
	handler    Handler
	msg        Message
	resp       response
	out        []byte      // framed replies not yet written
	outBuf     *outBuffer  // the pooled array behind out, while held
	hungUp     bool        // the handler asked to close
	tls        bool        // a TLS connection, its handshake done
	rec        *recordConn // under a TLS connection from ListenTLS: its frame clock
	recAt      time.Time   // when the bytes of the last read through rec began to arrive
	werr       error       // the write error that ended writing
	closeErr   error       // why the connection ended, for the close log line
	ctxMu      sync.Mutex  // guards ctx, cancel and ended
	ctx        context.Context
	cancel     context.CancelFunc
	ended      bool // the connection has closed: a new context starts cancelled
	stats      connCounters
	opened     time.Time
	idleSince  atomic.Int64 // Unix nanoseconds when the connection last waited for input
	poll       pollLoop     // runs the loop inside the poller, holding no buffer while waiting
	busy       atomic.Bool  // serving input inside the poller (see pollLoop)
	parkID     uint64       // the connection's number in the parker, once parked
	parkDue    bool         // the read deadline is the time to park
	parkFailed bool         // parking was refused: do not try again
	parkSoon   bool         // resumed after a long park: park again once answered
	parkedAt   int64        // Unix nanoseconds when the connection last parked
	loopOK     bool         // may wait in an event loop (see eventLoop)
	batchAt    *time.Time   // while an event loop serves the connection (see inLoop), its clock reading for the batch
	handOff    bool         // replies the socket would not take wait to be written, on a goroutine
	loopID     uint64       // the connection's number in its event loop
	draining   bool         // has seen the shutdown with a frame in progress
	drainFrom  uint64       // msgsIn then: the next message completes that frame

	idleTimeout, frameTimeout, writeTimeout time.Duration
	readDeadline, writeDeadline             time.Time // as last set on nc
	frameStart                              time.Time // first byte of the incomplete frame
}

func newConn(s *Server, nc net.Conn, ls *listenerStats) *conn {
	c := &conn{
		srv:          s,
		ls:           ls,
		nc:           nc,
		handler:      s.handler(),
		opened:       time.Now(),
		idleTimeout:  orDefault(s.IdleTimeout, DefaultIdleTimeout),
		frameTimeout: orDefault(s.FrameTimeout, DefaultFrameTimeout),
		writeTimeout: orDefault(s.WriteTimeout, DefaultWriteTimeout),
	}
	c.dec = frame.NewDecoder(nc, s.Framing, s.maxMessageSize())
	c.dec.SetReadSize(s.readSize())
	c.msg = Message{RemoteAddr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr(), conn: c}
	c.resp.c = c
	c.poll.init(c)
	c.initLoop()
	c.idleSince.Store(c.opened.UnixNano())
	return c
}

// serve runs the connection until it ends, then closes and logs it; or
// until it parks (see parkDelay), after which the parker calls serve
// again, resumed, when input arrives.
//
// The connection's goroutine stays shallow while it serves, so that its
// stack stays at the 2 KiB minimum: a goroutine stack that ever grew
// stays 4 KiB for as long as its goroutine waits. Its opening is logged
// by the accept loop for that reason (logOpened).
func (c *conn) serve(resumed bool) {
	reason := CloseError
	defer func() {
		if p := recover(); p != nil {
			c.recovered(p)
			reason = ClosePanic
		}
		if reason != closeParked { // a parked connection is the parker's now
			c.finish(reason)
		}
	}()
	if resumed {
		// The deadline that parked the connection has passed: a read
		// would fail at once.
		now := time.Now()
		c.parkSoon = now.UnixNano()-c.parkedAt >= int64(c.srv.parkDelay())
		c.readDeadline = aLongTimeAgo
		c.armReadDeadline(now)
	} else if r, ok := c.handshake(); !ok {
		reason = r
		return
	}
	reason = c.loop()
}

// inLoop reports whether an event loop is serving c now: it must not
// wait.
func (c *conn) inLoop() bool { return c.batchAt != nil }

// recovered counts and logs a handler's panic p, recovered by the
// connection's goroutine or its event loop.
func (c *conn) recovered(p any) {
	// The panic skipped pollLoop.stepOnce's reset, and the socket's read
	// lock is released: the connection must not pass for one inside a
	// step, whose send may use the descriptor (Close closes a busy one's
	// socket in the background).
	c.busy.Store(false)
	c.batchAt = nil
	c.srv.counters.panics.Add(1)
	c.srv.logger().Error("handler panic", "peer", addrString(c.nc.RemoteAddr()), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
}

// resume starts a goroutine for c, taken out of the parker or an event
// loop.
func (c *conn) resume() {
	go c.serve(true)
}

// Not reasons to close: parkNow is what the loop's steps return when the
// connection should park, loopNow when it should wait in an event loop,
// handOffNow when an event loop must give it back to a goroutine, and
// closeParked what the loop returns once it is the parker's or a loop's.
const (
	handOffNow  = CloseReason(^uint8(0) - 3)
	loopNow     = CloseReason(^uint8(0) - 2)
	parkNow     = CloseReason(^uint8(0) - 1)
	closeParked = CloseReason(^uint8(0))
)

// listenerAddr returns the local address in URL form, tls:// for a TLS
// connection.
func (c *conn) listenerAddr() string {
	if _, ok := c.nc.(*tls.Conn); ok {
		return FormatAddr(tlsAddr{c.nc.LocalAddr()})
	}
	return FormatAddr(c.nc.LocalAddr())
}

// handshake runs the server side of a TLS connection's handshake (other
// connections have none) within the handshake timeout, and returns false
// with the reason to close if it did not complete.
func (c *conn) handshake() (CloseReason, bool) {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return 0, true
	}
	timeout := orDefault(c.srv.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	if timeout == 0 {
		timeout = c.idleTimeout
	}
	if timeout > 0 {
		tc.SetDeadline(time.Now().Add(timeout))
	}
	// Checked after arming, as in loop: from here on, a Shutdown wakes the
	// handshake's read with a deadline in the past.
	if c.srv.shuttingDown() {
		return CloseShutdown, false
	}
	if err := tc.Handshake(); err != nil {
		if c.srv.shuttingDown() {
			return CloseShutdown, false
		}
		if err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
			// The peer hung up between records, without an alert: most
			// often before its ClientHello, a port probe or a TCP health
			// check. Not a failed handshake.
			return ClosePeer, false
		}
		c.closeErr = err
		return CloseTLSHandshake, false
	}
	// Clearing the deadline may undo a Shutdown's wake-up; loop checks
	// the shutdown flag before its first read.
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.msg.TLS, c.tls = &st, true
	if rc, ok := tc.NetConn().(*recordConn); ok && c.frameTimeout > 0 {
		c.rec = rc
		rc.setFrameTimeout(c.frameTimeout)
	}
	return 0, true
}

// context returns the connection's context, made on first use: most
// handlers never ask for it, and an idle connection should not carry one.
func (c *conn) context() context.Context {
	c.ctxMu.Lock()
	defer c.ctxMu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
		if c.ended {
			c.cancel()
		}
	}
	return c.ctx
}

// cancelContext cancels the connection's context, now or when it is made.
func (c *conn) cancelContext() {
	c.ctxMu.Lock()
	defer c.ctxMu.Unlock()
	c.ended = true
	if c.cancel != nil {
		c.cancel()
	}
}

// logOpened logs the connection's opening; see serve for why the accept
// loop calls it.
func (c *conn) logOpened() {
	c.srv.logger().Info("connection opened", "peer", addrString(c.nc.RemoteAddr()), "listener", c.listenerAddr())
}

// loop reads, decodes and answers messages until the connection must end,
// and returns why.
func (c *conn) loop() CloseReason {
	for {
		reason, done := c.poll.serve()
		if !done {
			continue
		}
		if reason == loopNow {
			if c.toLoop() {
				return closeParked // c is the loop's now: touch nothing
			}
			c.loopOK = false // the loops are stopping: wait here
			continue
		}
		if reason != parkNow {
			return reason
		}
		c.releaseBuffers()
		if c.park() {
			return closeParked // c is the parker's now: touch nothing
		}
		// Stopping, or epoll failed: wait here.
		c.parkFailed, c.parkSoon = true, false
		c.armReadDeadline(time.Now())
	}
}

// run serves the buffered messages and reads more until the connection
// must end (done), or until it must wait for input (not done): its last
// read found the socket empty. A connection without non-blocking reads
// waits inside its reads and returns only when done.
func (c *conn) run() (reason CloseReason, done bool) {
	for {
		body, ok, err := c.dec.Decode()
		if ok {
			if c.srv.closed.Load() {
				// Close has begun: start no more handlers (see
				// conn.closeNow).
				return CloseShutdown, true
			}
			c.frameStart = time.Time{}
			c.serveMessage(body)
			if c.werr != nil {
				return writeReason(c.werr), true
			}
			if c.hungUp {
				return CloseHangUp, true
			}
			if c.handOff {
				return handOffNow, true
			}
			continue
		}
		if err != nil {
			return c.readFailed(err), true
		}

		if c.poll.woken && c.dec.Buffered() == 0 && len(c.out) == 0 {
			// Woken by the poller, with nothing buffered or to flush:
			// read at once, under the deadline armed before the wait.
			c.poll.woken = false
		} else if reason, done, wait := c.beforeRead(); done || wait {
			return reason, done
		}
		err = c.poll.fill()
		if err == nil && c.rec != nil {
			c.recAt = c.rec.taken()
		}
		switch {
		case err == errWouldBlock:
			return c.waitOrPark()
		case err == nil || !isTimeoutErr(err):
			continue // data, or an end that Decode reports in turn
		}
		if reason, done := c.timedOut(); done {
			return reason, true
		}
	}
}

// beforeRead flushes the replies and arms the read deadline when no
// complete message is buffered. It returns done to end the connection,
// or wait when the socket is known to be empty.
func (c *conn) beforeRead() (reason CloseReason, done, wait bool) {
	c.poll.woken = false
	// One clock reading serves the flush and the read (time.Now costs
	// tens of nanoseconds on some virtual machines), and an event loop's
	// one reading serves its whole batch.
	var now time.Time
	if c.inLoop() {
		now = *c.batchAt
	} else {
		now = time.Now()
	}
	if len(c.out) == 0 {
		c.stats.publishReceived() // else flush does, before its send
	}
	if err := c.flush(now); err != nil {
		return writeReason(err), true, false
	}
	c.idleSince.Store(now.UnixNano())
	if c.handOff {
		return handOffNow, true, false
	}
	if c.dec.Buffered() > 0 && c.frameStart.IsZero() {
		c.frameStart = now
		if !c.recAt.IsZero() {
			// Begun in the last read, whose bytes began to arrive at
			// recAt, maybe well before its TLS record was whole.
			c.frameStart = c.recAt
		}
	}
	c.armReadDeadline(now)
	if c.tls {
		c.armTLSWriteDeadline()
	}
	// Checked after arming: Shutdown sets the flag and then wakes every
	// connection, so either this sees the flag or the wake-up comes after
	// the deadline set above.
	if c.srv.shuttingDown() && c.drained() {
		return CloseShutdown, true, false
	}
	if c.poll.drained {
		reason, done = c.waitOrPark()
		return reason, done, !done
	}
	return 0, false, false
}

// drained reports, during a shutdown, whether the connection has
// answered all it must: every complete message it has read, and the frame
// that was in progress when it first saw the shutdown, if any. A frame
// begun after that may not hold the connection open, or a peer that keeps
// sending, its reads ending mid-message, would hold it open for ever.
func (c *conn) drained() bool {
	if c.dec.Buffered() == 0 {
		return true
	}
	if !c.draining {
		c.draining, c.drainFrom = true, c.stats.msgsIn
		return false
	}
	return c.stats.msgsIn > c.drainFrom // the frame in progress is done
}

// timedOut is called when a wait for input ended at the read deadline. It
// returns the reason to close, or not done if the wake-up came early,
// from Shutdown, which moved the deadline into the past.
func (c *conn) timedOut() (CloseReason, bool) {
	now := time.Now()
	if c.rec != nil && c.rec.frameExpired(now) {
		return CloseFrameTimeout, true // bytes of a TLS record, trickled
	}
	if c.readDeadline.IsZero() || now.Before(c.readDeadline) {
		// Re-arm the deadline now: a read fails at once while its
		// deadline is in the past.
		c.readDeadline = aLongTimeAgo
		c.armReadDeadline(now)
		return 0, false
	}
	if c.dec.Buffered() > 0 {
		// A frame is in progress, under the earlier of its own deadline
		// and the idle deadline: only the first is a frame timeout.
		if c.frameTimeout > 0 && !now.Before(c.frameStart.Add(c.frameTimeout)) {
			return CloseFrameTimeout, true
		}
		return CloseIdle, true
	}
	if c.parkDue {
		return parkNow, true
	}
	return CloseIdle, true
}

// waitOrPark is what run returns when the socket is empty: wait for
// input, or park at once if the connection was resumed after a long park
// and has nothing buffered (it has answered the input that woke it, and
// is likely to fall idle again). A connection resumed soon after parking
// is busy again, and waits on its goroutine. A connection that may wait
// in an event loop never parks: it joins a loop instead (stepOnce).
func (c *conn) waitOrPark() (CloseReason, bool) {
	if c.parkSoon && c.dec.Buffered() == 0 && !c.loopOK {
		c.parkSoon = false
		return parkNow, true
	}
	return 0, false
}

// errWouldBlock is what a non-blocking read returns when there is no
// input. It reports itself as a timeout, so the decoder does not keep it.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string { return "porta: no input yet" }
func (wouldBlock) Timeout() bool { return true }

// releaseBuffers gives the connection's buffers back to their pools
// before it waits for input (its replies are flushed by then), so that an
// idle connection holds no buffer memory. A reply buffer that grew past
// the pooled size is left to the garbage collector.
func (c *conn) releaseBuffers() {
	c.dec.Release()
	if c.outBuf != nil {
		outPool.Put(c.outBuf)
		c.outBuf = nil
	}
	c.out = nil
}

// serveMessage passes one message to the handler.
func (c *conn) serveMessage(body []byte) {
	c.stats.received(len(body))
	c.msg.Body = body
	c.handler.ServeMessage(&c.resp, &c.msg)
	c.msg.Body = nil
}

// readFailed answers a framing error and names the end of the stream.
func (c *conn) readFailed(err error) CloseReason {
	switch {
	case errors.Is(err, frame.ErrTooLong):
		c.writeReply(fmt.Appendf(nil, "ERR message too long (limit %d bytes)", c.dec.MaxSize()))
		return CloseTooLong
	case err == io.EOF:
		return ClosePeer
	case err == io.ErrUnexpectedEOF:
		return CloseTruncated
	case errors.Is(err, syscall.ECONNRESET):
		return ClosePeer
	}
	c.closeErr = err // not an end of stream: the close line says what
	return CloseError
}

// armReadDeadline sets the read deadline for the next read: the frame
// deadline while a frame is incomplete, else the idle deadline. The idle
// deadline is moved only when it has fallen an eighth of the timeout
// behind, so that a busy connection does not reset a timer on every read.
func (c *conn) armReadDeadline(now time.Time) {
	if c.inLoop() {
		return // the loop reads without waiting, and keeps the idle time itself
	}
	var want time.Time
	slack := time.Duration(0)
	if c.idleTimeout > 0 {
		want = now.Add(c.idleTimeout)
		slack = c.idleTimeout / 8
	}
	c.parkDue = false
	if c.frameTimeout > 0 && !c.frameStart.IsZero() {
		if fd := c.frameStart.Add(c.frameTimeout); want.IsZero() || fd.Before(want) {
			want, slack = fd, 0
		}
	} else if c.frameStart.IsZero() && !c.parkFailed && c.canPark() {
		d := c.srv.parkDelay()
		want, slack, c.parkDue = now.Add(d), d/8, true
	}
	cur := c.readDeadline
	if cur.Equal(want) || (!cur.IsZero() && !want.IsZero() && !cur.After(want) && !cur.Before(want.Add(-slack))) {
		return
	}
	c.readDeadline = want
	c.nc.SetReadDeadline(want)
}

// finish flushes what is left, closes the connection, counts and logs it.
func (c *conn) finish(reason CloseReason) {
	closed := c.srv.closed.Load()
	if closed && reason != ClosePanic && reason != CloseHangUp && reason != CloseTooLong {
		// The socket that Close cut failed a read or write, or ran into
		// the deadline in the past that Close set: an end, a reset, a
		// truncated frame or a timeout that Close caused.
		reason, c.closeErr = CloseShutdown, nil
	}
	if reason == CloseError && c.closeErr == nil {
		c.closeErr = c.werr // a write failed other than by the peer's end
	}
	c.flush(time.Now())
	c.cancelContext()
	switch {
	case (reason == CloseSlowConsumer || reason == CloseIdle || reason == CloseFrameTimeout) && resetIfStuck(c.nc):
		// A timeout, and the peer has not taken its replies: reset.
	case c.werr != nil, closed:
		// Nothing more can be sent, or Close wants no flush: the stream
		// may end mid-frame.
		closeNow(c.nc)
	case reason == CloseHangUp, reason == CloseTooLong, reason == CloseShutdown, reason == ClosePanic:
		// The peer may still be sending: let it read our last replies,
		// under the linger's bounds alone.
		if c.rec != nil {
			c.rec.setFrameTimeout(0)
		}
		closeGracefully(c.nc, lingerTimeout)
	default:
		c.nc.Close()
	}
	attrs := []any{
		"peer", addrString(c.nc.RemoteAddr()),
		"reason", reason.String(),
		"messages", c.stats.msgsIn,
		"bytes_in", c.stats.bytesIn,
		"bytes_out", c.stats.bytesOut,
		"duration", time.Since(c.opened).Round(time.Millisecond),
	}
	if c.closeErr != nil {
		attrs = append(attrs, "err", c.closeErr.Error())
	}
	c.srv.logger().Info("connection closed", attrs...)
	c.stats.publish()
	c.srv.untrackConn(c, reason)
}

// isTimeoutErr reports whether err is a deadline's. ETIMEDOUT, which
// calls itself a timeout too, is not: the kernel gave up on the peer
// (keepalive or retransmission), and the connection is over.
func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, syscall.ETIMEDOUT)
}
