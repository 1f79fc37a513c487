package porta

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/porta-project/porta/frame"
)

// flushThreshold is the amount of buffered replies, in bytes, past which
// the connection writes them out even while more input is waiting, so that
// a long pipeline never holds more than this much output.
const flushThreshold = 64 << 10

// outBufSize is the size of the reply buffer a connection takes from a
// shared pool when it has replies to write and gives back when it waits:
// room for a pipelined batch of small replies. Larger batches grow it.
const outBufSize = 4 << 10

// outBuffer is a pooled reply buffer.
type outBuffer [outBufSize]byte

var outPool = sync.Pool{New: func() any { return new(outBuffer) }}

// writeReply frames and buffers one reply; the ResponseWriter's Write.
func (c *conn) writeReply(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	if c.out == nil {
		if c.outBuf == nil {
			c.outBuf = outPool.Get().(*outBuffer)
		}
		c.out = c.outBuf[:0]
	}
	c.out = frame.Append(c.out, c.replyFraming(), p)
	c.stats.buffered(len(p))
	if len(c.out) >= flushThreshold {
		if err := c.flush(time.Now()); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// replyFraming is the framing of replies: the connection's own, and Line
// for an Auto connection that has not decided yet.
func (c *conn) replyFraming() frame.Framing {
	if f := c.dec.Framing(); f != frame.Auto {
		return f
	}
	return frame.Line
}

// flush writes the buffered replies in one write; now is the time.
func (c *conn) flush(now time.Time) error {
	if len(c.out) == 0 || c.werr != nil {
		return c.werr
	}
	c.stats.publishReceived() // a peer that has its reply finds its message counted
	if c.writeTimeout > 0 && !c.inLoop() {
		// As with reads, move the deadline only when it is an eighth stale.
		c.setWriteDeadline(now.Add(c.writeTimeout), c.writeTimeout/8)
	}
	n, err := c.poll.write(c.out)
	if err == nil && n < len(c.out) {
		if c.inLoop() {
			// The socket is full, and an event loop must not wait: the
			// rest is written by the connection's goroutine, under the
			// write deadline (see eventLoop).
			c.out = c.out[:copy(c.out, c.out[n:])]
			c.handOff = true
			return nil
		}
		_, err = c.nc.Write(c.out[n:])
	}
	if cap(c.out) > flushThreshold {
		c.out = nil // a burst of large replies: do not keep its buffer
	} else {
		c.out = c.out[:0]
	}
	if err != nil {
		c.werr = err
		c.stats.unsent()
	} else {
		c.stats.written()
		c.poll.wrote()
	}
	return err
}

// setWriteDeadline moves the write deadline to want, unless it is
// already no later than want and no more than slack before it.
func (c *conn) setWriteDeadline(want time.Time, slack time.Duration) {
	if cur := c.writeDeadline; cur.After(want) || cur.Before(want.Add(-slack)) {
		c.writeDeadline = want
		c.nc.SetWriteDeadline(want)
	}
}

// armTLSWriteDeadline bounds the writes crypto/tls makes from inside a
// TLS connection's next read: its answers to the peer's post-handshake
// messages, such as a TLS 1.3 key update that asks for one back. The
// deadline set at the last flush may have passed long before such a
// message arrives, and a failed answer would fail the next reply; so
// while a TLS connection reads, its writes may last until WriteTimeout
// after the read deadline (and have no deadline while the read has
// none). flush sets the deadline back to WriteTimeout from its own time:
// two deadline moves per batch on a TLS connection, none added on others.
func (c *conn) armTLSWriteDeadline() {
	if c.writeTimeout <= 0 {
		return
	}
	var want time.Time
	if !c.readDeadline.IsZero() {
		want = c.readDeadline.Add(c.writeTimeout)
	}
	c.setWriteDeadline(want, 0)
}

// writeReason names the end of a connection whose write failed.
func writeReason(err error) CloseReason {
	switch {
	case isTimeoutErr(err):
		return CloseSlowConsumer
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		return ClosePeer
	}
	return CloseError
}

// response is the ResponseWriter of a stream connection.
type response struct{ c *conn }

var _ ResponseWriter = (*response)(nil)

// Write sends p as one framed reply.
func (r *response) Write(p []byte) (int, error) {
	if r.c.hungUp {
		return 0, ErrHungUp
	}
	return r.c.writeReply(p)
}

// Close hangs up after the replies are flushed.
func (r *response) Close() error {
	r.c.hungUp = true
	return nil
}
