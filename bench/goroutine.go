package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/porta-project/porta/frame"
)

// goEngine runs each connection on its own goroutine with the net package:
// the portable engine.
type goEngine struct {
	p       *plan
	conns   []*gconn
	recs    []*recorder
	ctx     context.Context // cancelled by cancel, for dials and sleeps
	cancelF context.CancelFunc
}

// gconn is one connection of the goroutine engine. In the open model a
// writer goroutine sends on schedule while the connection's goroutine
// reads; mu guards the session and the read deadline between them, and
// between them and cancel.
type gconn struct {
	e    *goEngine
	ss   *session
	rec  *recorder
	mu   sync.Mutex
	nc   net.Conn
	dec  *frame.Decoder
	rbuf []byte    // Raw framing's read buffer
	rdl  time.Time // the read deadline as last set
	wdl  time.Time // the write deadline as last set (closed model)
	room chan struct{}
}

// aLongTimeAgo is a deadline in the past, which wakes blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

func newGoroutineEngine(p *plan) *goEngine {
	e := &goEngine{p: p}
	e.ctx, e.cancelF = context.WithCancel(context.Background())
	for id := range p.Conns {
		rec := newRecorder(true)
		c := &gconn{e: e, ss: newSession(p, rec, id), rec: rec, room: make(chan struct{}, 1)}
		e.conns = append(e.conns, c)
		e.recs = append(e.recs, rec)
	}
	return e
}

func (e *goEngine) name() string           { return EngineGoroutine }
func (e *goEngine) recorders() []*recorder { return e.recs }

func (e *goEngine) cancel() {
	e.cancelF()
	for _, c := range e.conns {
		c.mu.Lock()
		if c.nc != nil {
			c.nc.SetDeadline(aLongTimeAgo)
			c.rdl = aLongTimeAgo
		}
		c.mu.Unlock()
	}
}

func (e *goEngine) run(connected func()) {
	defer e.cancelF()
	var up, done sync.WaitGroup
	up.Add(len(e.conns))
	done.Add(len(e.conns))
	pending := make(chan struct{}, maxDials)
	for _, c := range e.conns {
		go func() {
			defer done.Done()
			c.run(up.Done, pending)
		}()
	}
	up.Wait()
	connected()
	done.Wait()
}

// maxDials bounds the connection attempts in flight, so that an unpaced
// ramp does not flood the listen backlog.
const maxDials = 256

// run carries the connection through the whole run.
func (c *gconn) run(connected func(), pending chan struct{}) {
	p := c.ss.p
	if !c.dial(pending) {
		c.ss.stopped = true
		connected()
		return
	}
	connected()
	defer c.nc.Close()
	<-p.start
	c.ss.started = true
	if p.stop.Load() {
		return
	}
	if p.Framing == frame.Raw {
		c.rbuf = make([]byte, frame.DefaultReadSize)
	} else {
		c.dec = frame.NewDecoder(c.nc, p.Framing, p.maxReply)
	}
	ok := false
	if p.Rate > 0 {
		ok = c.runOpen()
	} else {
		ok = c.runClosed()
	}
	if ok && p.Hold > 0 && !p.stop.Load() {
		c.hold()
	}
	c.rec.publish()
}

// dial opens the connection, after its turn in the connect rate.
func (c *gconn) dial(pending chan struct{}) bool {
	p := c.ss.p
	if at := p.connectAt(c.ss.id); at > 0 {
		if !sleepUntil(c.e.ctx, p.base.Add(time.Duration(at)), nil) {
			return false // cancelled
		}
	}
	select {
	case pending <- struct{}{}:
	case <-c.e.ctx.Done():
		return false // cancelled
	}
	start := p.now()
	d := net.Dialer{Timeout: p.Timeout}
	nc, err := d.DialContext(c.e.ctx, p.addr.Network, p.addr.Address)
	if err == nil && p.addr.TLS {
		nc, err = tlsHandshake(c.e.ctx, nc, p)
	}
	<-pending
	if err != nil {
		if !p.stop.Load() {
			c.rec.fail(connectKind(err), 1, Example{Conn: c.ss.id, Err: err.Error()})
		}
		return false
	}
	c.rec.connects = append(c.rec.connects, p.now()-start)
	c.mu.Lock()
	c.nc = nc
	if p.stop.Load() {
		nc.SetDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
	return true
}

// runClosed carries the closed model: send what the pipeline has room
// for, read, repeat. It returns false if the connection failed.
func (c *gconn) runClosed() bool {
	p := c.ss.p
	var out []byte
	for {
		now := p.now()
		out = c.ss.appendMessages(out[:0], now)
		if len(out) > 0 {
			if !c.armWrite() {
				return false
			}
			if _, err := c.nc.Write(out); err != nil {
				return c.fail(err, now)
			}
		}
		if c.ss.done() {
			return true
		}
		if ok, alive := c.readOnce(); !alive {
			return false
		} else if !ok {
			continue
		}
		c.rec.publish()
	}
}

// armWrite bounds the closed model's next write by the reply timeout, so
// that a server that stops reading fails the connection instead of
// blocking it: the deadline moves when it has fallen an eighth of the
// timeout behind, under mu, so that it never replaces the deadline in the
// past that cancel sets. It returns false if the run is stopping.
func (c *gconn) armWrite() bool {
	p := c.ss.p
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.stop.Load() {
		return false
	}
	if want := time.Now().Add(p.Timeout); c.wdl.Before(want.Add(-p.Timeout / 8)) {
		c.wdl = want
		c.nc.SetWriteDeadline(want)
	}
	return true
}

// runOpen carries the open model: a writer goroutine sends on schedule
// while this one reads. It returns false if the connection failed.
func (c *gconn) runOpen() bool {
	wdone := make(chan struct{})
	rdone := make(chan struct{}) // the reader has ended: the writer stops waiting
	go func() {
		defer close(wdone)
		c.write(rdone)
	}()
	alive := true
	for {
		c.mu.Lock()
		done := c.ss.done()
		c.mu.Unlock()
		if done {
			break
		}
		if testHookOpenBeforeRead != nil {
			testHookOpenBeforeRead(c)
		}
		ok, a := c.readOnce()
		if !a {
			alive = false
			break
		}
		if ok {
			select {
			case c.room <- struct{}{}:
			default:
			}
			c.rec.publish()
		}
	}
	c.mu.Lock()
	c.ss.stopped = true
	c.nc.SetWriteDeadline(aLongTimeAgo) // wake a blocked writer
	c.mu.Unlock()
	close(rdone) // and a waiting one
	<-wdone
	return alive
}

// testHookOpenBeforeRead, if set (by tests), is called by the open
// model's reader before each read.
var testHookOpenBeforeRead func(c *gconn)

// write is the open model's writer: it sends the due messages that the
// pipeline has room for, then sleeps until the next is due or a reply
// makes room. It returns when readerDone closes.
func (c *gconn) write(readerDone <-chan struct{}) {
	p := c.ss.p
	var out []byte
	for {
		c.mu.Lock()
		now := p.now()
		next := c.ss.schedule(now)
		out = c.ss.appendMessages(out[:0], now)
		full := c.ss.due > 0
		if c.ss.stopped && c.ss.out == 0 {
			// Nothing more will come: wake the reader.
			c.nc.SetReadDeadline(aLongTimeAgo)
			c.rdl = aLongTimeAgo
		}
		stopped := c.ss.stopped
		c.mu.Unlock()
		if len(out) > 0 {
			if _, err := c.nc.Write(out); err != nil {
				c.mu.Lock()
				if !c.ss.stopped || c.ss.out > 0 {
					c.failLocked(err, p.now())
				}
				c.mu.Unlock()
				return
			}
		}
		if stopped {
			return
		}
		if full {
			select {
			case <-c.room:
			case <-readerDone:
				return
			case <-c.e.ctx.Done():
				return
			}
			continue
		}
		if !sleepUntil(c.e.ctx, p.base.Add(time.Duration(min(next, p.mEnd))), readerDone) {
			return
		}
	}
}

// readOnce reads once and checks the replies read. ok is true if it read
// something; alive is false if the connection ended.
func (c *gconn) readOnce() (ok, alive bool) {
	p := c.ss.p
	c.mu.Lock()
	if p.stop.Load() {
		c.mu.Unlock()
		return false, false
	}
	if c.ss.done() {
		// The open model's writer has stopped with no reply to wait
		// for, and may have woken this read already: re-arming would
		// undo its wake-up.
		c.mu.Unlock()
		return false, true
	}
	now := time.Now()
	if want := now.Add(p.Timeout); c.rdl.Before(want.Add(-p.Timeout / 8)) {
		c.rdl = want
		c.nc.SetReadDeadline(want)
	}
	c.mu.Unlock()

	var err error
	var n int
	if c.rbuf != nil {
		n, err = c.nc.Read(c.rbuf)
	} else {
		err = c.dec.Fill()
	}
	at := p.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rbuf != nil {
		if n > 0 && !c.ss.rawBytes(c.rbuf[:n], at) {
			c.failLocked(nil, at)
			return true, false
		}
		if err != nil && n == 0 {
			return c.readFailed(err, at)
		}
		return n > 0, true
	}
	if err != nil && isTimeout(err) {
		return c.readFailed(err, at)
	}
	for {
		msg, got, err := c.dec.Decode()
		if got {
			c.ss.reply(msg, at)
			continue
		}
		if err != nil {
			c.ss.decodeFailed(err, at)
			return true, false
		}
		return true, true
	}
}

// readFailed handles a read that returned nothing: a timeout that is only
// a wake-up, a reply timeout, or the end of the connection. c.mu is held.
func (c *gconn) readFailed(err error, at int64) (ok, alive bool) {
	p := c.ss.p
	if !isTimeout(err) {
		c.ss.end(ioKind(err), err, at)
		return false, false
	}
	switch {
	case p.stop.Load():
		return false, false
	case c.ss.done():
		return false, true
	case c.ss.timedOut(at):
		c.ss.end(KindTimeout, errTimeout(p.Timeout), at)
		return false, false
	}
	return false, true
}

// fail ends the connection after a write error.
func (c *gconn) fail(err error, now int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failLocked(err, now)
	return false
}

func (c *gconn) failLocked(err error, now int64) {
	if c.ss.p.stop.Load() {
		c.ss.end(0, nil, now)
	} else if err == nil {
		c.ss.end(KindWrong, nil, now)
	} else {
		c.ss.end(ioKind(err), err, now)
	}
	c.nc.SetDeadline(aLongTimeAgo)
	c.rdl = aLongTimeAgo
}

// hold keeps the connection open and idle for p.Hold, checking that
// nothing arrives on it.
func (c *gconn) hold() {
	p := c.ss.p
	p.holding.Store(true)
	c.mu.Lock()
	if p.stop.Load() {
		c.mu.Unlock()
		return
	}
	c.rdl = time.Now().Add(p.Hold)
	c.nc.SetReadDeadline(c.rdl)
	c.mu.Unlock()
	buf := make([]byte, 512)
	for {
		n, err := c.nc.Read(buf)
		at := p.now()
		if n > 0 {
			c.rec.fail(KindExtra, 1, Example{Conn: c.ss.id, Seq: c.ss.recvd, Got: quote(buf[:n]), At: c.ss.at(at)})
		}
		if err != nil {
			if !isTimeout(err) {
				c.rec.fail(ioKind(err), 1, Example{Conn: c.ss.id, Seq: c.ss.recvd, Err: err.Error(), At: c.ss.at(at)})
			}
			return
		}
	}
}

// sleepUntil sleeps until t, or until ctx is done or stop closes (a nil
// stop never does), and reports whether it slept until t.
func sleepUntil(ctx context.Context, t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// tlsHandshake runs the client side of a TLS handshake on nc within the
// connection timeout; it closes nc if the handshake fails.
func tlsHandshake(ctx context.Context, nc net.Conn, p *plan) (net.Conn, error) {
	var config *tls.Config
	if p.TLSConfig != nil {
		config = p.TLSConfig.Clone()
	} else {
		config = &tls.Config{}
	}
	if config.ServerName == "" {
		// As porta's client: the address's host, "localhost" for none.
		host, _, _ := net.SplitHostPort(p.addr.Address)
		if host == "" {
			host = "localhost"
		}
		config.ServerName = host
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	tc := tls.Client(nc, config)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}
