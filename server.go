package porta

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/porta-project/porta/frame"
)

// Defaults of the Server's fields; each is what a zero field means.
const (
	// DefaultMaxConns is the default limit on open stream connections;
	// ten thousand stays within a typical 20,000-descriptor limit.
	DefaultMaxConns = 10000
	// DefaultIdleTimeout closes connections silent for five minutes.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultFrameTimeout bounds the time from the first byte of a frame
	// to its last, so that a slowloris peer cannot hold a connection.
	DefaultFrameTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds each write to a peer; a peer that does
	// not read for this long is a slow consumer and is closed.
	DefaultWriteTimeout = 10 * time.Second
)

// A Server serves messages on stream listeners (TCP, Unix) and datagram
// sockets (UDP), passing each message to its Handler.
//
// The zero value is a usable server: it echoes line or raw messages on
// 127.0.0.1:8000. Each field's comment gives the meaning of its zero value.
// Fields must not be changed once serving has begun. A Server is safe for
// concurrent use by its methods.
type Server struct {
	// Addr is the address ListenAndServe listens on, in the syntax of
	// ParseAddr. Empty means DefaultAddr (127.0.0.1:8000).
	Addr string

	// Handler answers the messages. Nil means Echo.
	Handler Handler

	// Framing delimits messages on stream connections. The zero value,
	// frame.Auto, chooses Line or Raw per connection from its first read.
	// UDP ignores it: one datagram is one message.
	Framing frame.Framing

	// MaxMessageSize is the largest message accepted, in bytes. Zero means
	// frame.DefaultMaxSize (64 KiB); the highest value is 16 MiB. A larger
	// message gets the reply "ERR message too long (limit N bytes)" and
	// its connection is closed.
	MaxMessageSize int

	// ReadSize is the most bytes one Raw read takes as a message. Zero
	// means frame.DefaultReadSize (1024).
	ReadSize int

	// MaxConns limits the open stream connections. Zero means
	// DefaultMaxConns; negative means no limit. A connection over the
	// limit gets "ERR too many connections" and is closed.
	MaxConns int

	// IdleTimeout closes a connection from which nothing was received for
	// this long. Zero means DefaultIdleTimeout; negative means never. The
	// close may come up to an eighth of the timeout early or late: timers
	// are moved only when an eighth stale, and idle connections that have
	// given up their goroutine (see docs/concurrency.md) are checked every
	// eighth of the timeout.
	IdleTimeout time.Duration

	// FrameTimeout closes a connection whose started frame does not
	// complete within this long of its first byte. Zero means
	// DefaultFrameTimeout; negative means never.
	FrameTimeout time.Duration

	// WriteTimeout closes a connection whose peer does not take a write
	// within this long. Zero means DefaultWriteTimeout; negative means
	// never.
	//
	// On Linux, a connection that a timeout (idle, frame or write)
	// closes while its peer has not acknowledged all it was sent is
	// reset, not closed in order, so that its socket does not linger in
	// the kernel, retrying a peer that does not read.
	WriteTimeout time.Duration

	// MaxConnsPerIP limits the open TCP connections from one IP address.
	// Zero means no limit. A connection over the limit gets
	// "ERR too many connections" and is closed.
	MaxConnsPerIP int

	// Allow, when not empty, admits TCP peers and UDP senders only from
	// these prefixes. Nil admits every address. An IPv4 peer matches an
	// IPv6 prefix that holds its IPv4-mapped form (::ffff:a.b.c.d).
	Allow []netip.Prefix

	// Deny refuses TCP peers and UDP senders from these prefixes,
	// whatever Allow says: deny wins. A refused peer is closed without a
	// reply; a refused sender's datagram is dropped unanswered.
	// Unix-socket peers have no IP address and are never filtered. A
	// listener of another kind is filtered when its peers' addresses
	// read as an IP address and port ("192.0.2.1:5000").
	Deny []netip.Prefix

	// TLSConfig is the TLS configuration with which ListenAndServe
	// serves a tls:// Addr; it must hold a certificate (see
	// NewServerTLSConfig and ListenTLS). Nil means that a tls:// Addr
	// fails with ErrNoCertificate. Serve uses its listener as it is.
	TLSConfig *tls.Config

	// TLSHandshakeTimeout closes a TLS connection whose handshake does
	// not complete within this long of its start (reason
	// CloseTLSHandshake). Zero means DefaultTLSHandshakeTimeout;
	// negative means none, which leaves the IdleTimeout to end a silent
	// handshake.
	TLSHandshakeTimeout time.Duration

	// Logger receives one line per connection opened and closed, and
	// errors. Nil means no logging.
	Logger *slog.Logger

	mu        sync.Mutex
	listeners map[*net.Listener]*listenerStats
	packets   map[net.PacketConn]*packetSocket
	conns     map[*conn]struct{}
	park      *parker       // idle connections without goroutines (Linux; started by Serve)
	loops     []*eventLoop  // waiting connections of a non-blocking handler (Linux; started by Serve)
	loopNext  atomic.Uint32 // the loop the next connection to wait in one joins, modulo len(loops)
	parkAfter time.Duration // tests: the park delay, if not parkdelay.Default
	// testHookCloseIdle, if set, runs when Close has seen a connection
	// idle and is about to close its socket (see conn.closeNow).
	testHookCloseIdle func(*conn)
	// testHookLoopStart, if set, runs first on each event loop's
	// goroutine.
	testHookLoopStart func()
	// testHookLoopWait, if set, runs on an event loop's goroutine when a
	// connection it served waits in it again.
	testHookLoopWait func(*conn)
	inShutdown       atomic.Bool
	closed           atomic.Bool           // Close was called: connections serve no more input
	refusals         map[net.Conn]struct{} // refusals being written (see refuse)
	active           sync.WaitGroup        // running connection, packet and refusal loops
	counters         counters
	perIP            ipCounts
}

func (s *Server) handler() Handler {
	if s.Handler == nil {
		return Echo
	}
	return s.Handler
}

func (s *Server) maxMessageSize() int {
	if s.MaxMessageSize <= 0 {
		return frame.DefaultMaxSize
	}
	return min(s.MaxMessageSize, frame.MaxSizeLimit)
}

func (s *Server) readSize() int {
	if s.ReadSize <= 0 {
		return frame.DefaultReadSize
	}
	return s.ReadSize
}

func (s *Server) maxConns() int64 {
	if s.MaxConns == 0 {
		return DefaultMaxConns
	}
	return int64(s.MaxConns)
}

// orDefault resolves a timeout field: zero means def, negative means none.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return discardLogger
	}
	return s.Logger
}

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 1}))

// ListenAndServe listens on s.Addr and serves it until Shutdown or Close;
// a tls:// address is served with s.TLSConfig. It always returns a non-nil
// error: ErrServerClosed after Shutdown or Close.
func (s *Server) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	a, err := ParseAddr(addr)
	if err != nil {
		return err
	}
	if a.IsPacket() {
		pc, err := ListenPacket(addr)
		if err != nil {
			return err
		}
		return s.ServePacket(pc)
	}
	var l net.Listener
	if a.TLS {
		l, err = ListenTLS(addr, s.TLSConfig)
	} else {
		l, err = Listen(addr)
	}
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Accept backoff after a temporary error such as EMFILE: 5 ms doubling to
// 1 s, as net/http does, so that running out of descriptors never spins.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Serve accepts connections on l and serves each on its own goroutine until
// Shutdown or Close, after which it returns ErrServerClosed. Serve closes
// l when it returns. On Linux, the connections of a handler marked
// NonBlocking wait for input in the server's event loops instead, which
// serve their messages without a goroutine each (see NonBlocking).
func (s *Server) Serve(l net.Listener) error {
	ls := &listenerStats{addr: FormatAddr(l.Addr())}
	// The parker is part of a stream server's fixed cost, like the accept
	// loop: started here (before the server reports Ready) rather than at
	// the first idle connection, so that a server's goroutines and
	// descriptors do not grow by one later.
	s.parker()
	s.startLoops()
	if !s.trackListener(&l, ls) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&l, nil)
	defer l.Close()

	var backoff time.Duration
	var lastLog time.Time
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			if !isTemporary(err) {
				return err
			}
			s.counters.acceptErrors.Add(1)
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			if now := time.Now(); now.Sub(lastLog) >= time.Second {
				lastLog = now
				s.logger().Error("accept error; retrying", "listener", FormatAddr(l.Addr()), "err", err, "backoff", backoff)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ip, why, ok := s.admit(nc)
		if !ok {
			s.refuse(nc, why)
			continue
		}
		c := newConn(s, nc, ls)
		c.ip = ip
		if !s.trackConn(c) {
			s.release(ip)
			nc.Close()
			continue
		}
		c.logOpened()
		go c.serve(false)
	}
}

// isTemporary reports whether an accept error is worth retrying: running
// out of descriptors or buffers, or an interrupted or aborted accept.
func isTemporary(err error) bool {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
			syscall.EINTR, syscall.EAGAIN, syscall.ECONNABORTED, syscall.EPROTO, syscall.EPERM:
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rejectTimeout bounds the write of a refusal to a peer over a limit.
const rejectTimeout = time.Second

// reject tells a peer refused by a limit why, in the server's framing,
// and closes it.
func (s *Server) reject(nc net.Conn, why RejectReason) {
	s.logger().Warn("connection refused", "peer", addrString(nc.RemoteAddr()), "reason", why.String())
	f := s.Framing
	if f == frame.Auto {
		f = frame.Line
	}
	nc.SetDeadline(time.Now().Add(rejectTimeout))
	nc.Write(frame.Append(nil, f, []byte("ERR too many connections")))
	closeGracefully(nc, rejectTimeout)
}

func (s *Server) shuttingDown() bool { return s.inShutdown.Load() }

// trackListener adds a listener with its counts, or removes it when ls is
// nil; adding fails during shutdown.
func (s *Server) trackListener(l *net.Listener, ls *listenerStats) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls == nil {
		delete(s.listeners, l)
		return true
	}
	if s.shuttingDown() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]*listenerStats)
	}
	s.listeners[l] = ls
	return true
}

// Ready reports whether the server is serving at least one listener or
// socket and is not shutting down: whether a load balancer should send it
// traffic.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.shuttingDown() && len(s.listeners)+len(s.packets) > 0
}

// trackConn adds a connection and counts it accepted and open; it fails
// during shutdown, and then counts nothing (the connection is closed
// unserved).
func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	s.counters.connsTotal.Add(1)
	c.ls.total.Add(1)
	c.ls.open.Add(1)
	return true
}

// untrackConn removes a closed connection and counts its close. All of it
// happens under the lock that Stats and Conns take, so they always agree:
// a connection is open in both until it is closed in both, and its counts
// move into the totals in the same step, never counted twice or not at
// all.
func (s *Server) untrackConn(c *conn, reason CloseReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	c.stats.addTo(&s.counters)
	s.counters.closed[reason].Add(1)
	s.release(c.ip)
	c.ls.open.Add(-1)
	s.active.Done()
}

// Shutdown stops the server gracefully: it closes the listeners, lets
// every connection answer the messages it has received and flush its
// replies, closes connections as they fall idle, and waits for them all,
// and for the refusals of peers over a connection limit to end (each
// within its linger: a second of silence, ten at most). Connections in
// the middle of a frame may finish it. If ctx ends first,
// Shutdown closes whatever is left, as Close does, waits for the handlers
// still running to return (their messages' contexts are cancelled; a
// handler that ignores its context holds Shutdown up), and returns ctx's
// error. Once Shutdown has returned, no handler runs and Stats are final.
// Serve and ServePacket return ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.inShutdown.Store(true)
	s.closeListenersLocked()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	for pc := range s.packets {
		pc.SetReadDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()

	// Wake connections blocked in a read. Each one that sees the shutdown
	// flag finishes its buffered messages and closes; one that set its own
	// deadline before seeing the flag is woken by this one.
	for _, c := range conns {
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
	s.stopParking()
	s.stopLoops()

	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: it closes the listeners, the UDP sockets,
// every connection and every refusal under way, without flushing. Serve and ServePacket return
// ErrServerClosed. Use Shutdown to lose no reply.
//
// Sockets are closed outside the server's lock and without TLS
// close_notify alerts, which could block for seconds each on a peer that
// does not read.
func (s *Server) Close() error {
	s.mu.Lock()
	s.inShutdown.Store(true)
	s.closed.Store(true) // before any conn.busy is read: see conn.closeNow
	s.closeListenersLocked()
	packets := make([]net.PacketConn, 0, len(s.packets))
	for pc, ps := range s.packets {
		packets = append(packets, pc)
		ps.cancel() // a handler waiting on its message's context returns
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	refusals := make([]net.Conn, 0, len(s.refusals))
	for nc := range s.refusals {
		refusals = append(refusals, nc)
	}
	s.mu.Unlock()
	for _, pc := range packets {
		pc.Close()
	}
	for _, nc := range refusals {
		closeNow(nc)
	}
	for _, c := range conns {
		c.cancelContext()
		c.closeNow()
	}
	s.stopParking()
	s.stopLoops()
	return nil
}

func (s *Server) closeListenersLocked() {
	for l := range s.listeners {
		(*l).Close()
	}
}

// aLongTimeAgo is a deadline in the past, used to wake blocked reads.
var aLongTimeAgo = time.Unix(1, 0)
