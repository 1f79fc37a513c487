//go:build linux

package porta

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/porta-project/porta/internal/parkdelay"
)

// Connections whose handler never blocks (see NonBlocking) wait for input
// in an event loop rather than on a goroutine each. A server has one loop
// per processor (GOMAXPROCS), each an epoll set and a goroutine that waits
// on the set through Go's poller, as the parker does. When input arrives on
// many connections at once, the loop wakes once and serves each
// connection's messages in turn, inline: no goroutine is woken, scheduled
// and parked again for each message, which is most of what a goroutine per
// connection costs over an epoll server in C (see docs/PERFORMANCE.md).
//
// A connection enters its loop when its goroutine would wait for input
// with nothing buffered: no frame in progress and every reply written. Its
// goroutine then ends. The loop serves it with the same step as the poller
// (pollLoop.stepOnce) and hands it back to a new goroutine when the step
// cannot finish without waiting: a frame in progress (which its frame
// timeout bounds, on the goroutine's read deadline), or replies the socket
// would not take (which WriteTimeout bounds); the goroutine returns it to
// the loop when it next waits with nothing buffered. The loop closes the
// connections idle for IdleTimeout itself, checking every eighth of it.
// Shutdown and Close hand every connection back to a goroutine, to see the
// shutdown or its closed socket.
//
// Sockets are in the loop's set edge-triggered, as they are in Go's
// poller: input that arrives after a read that emptied the socket is
// reported again. In a loop, the step reads with recv(2) and takes a read
// shorter than its buffer for one that emptied the socket, unless the
// event that woke the loop named the peer's end or an error, which a
// short read does not show (see pollLoop.loopRead); on a goroutine it
// reads with recvmsg(2) and TCP_INQ, which counts an end as input.

// eventLoop serves its share of a server's waiting connections.
type eventLoop struct {
	srv    *Server
	ep     *os.File // the epoll instance
	raw    syscall.RawConn
	mu     sync.Mutex
	conns  map[uint64]*conn // the loop's connections by number
	next   uint64           // the last number given
	closed bool             // stopping: no connection enters any more
	events [128]syscall.EpollEvent
	ready  []*conn               // connections with input; the loop's goroutine only
	wait   func(fd uintptr) bool // l.collect, bound once
	step   func(fd uintptr)      // serves l.cur's input, bound once
	cur    *conn                 // the connection l.step serves
	now    time.Time             // when the batch being served was collected
}

// startLoops starts the server's event loops if its handler never blocks
// (Serve calls it before accepting); a loop that cannot get an epoll set
// is left out, and with none, connections wait on their goroutines.
func (s *Server) startLoops() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loops != nil || s.shuttingDown() || !isNonBlocking(s.handler()) || parkdelay.LoopsOff {
		return
	}
	idle := orDefault(s.IdleTimeout, DefaultIdleTimeout)
	s.loops = make([]*eventLoop, 0, runtime.GOMAXPROCS(0))
	for range cap(s.loops) {
		ep, _, raw, err := newEpollFile("porta-loop")
		if err != nil {
			break
		}
		l := &eventLoop{srv: s, ep: ep, raw: raw, conns: make(map[uint64]*conn)}
		l.wait = l.collect
		l.step = func(fd uintptr) { l.cur.poll.stepOnce(fd) }
		s.loops = append(s.loops, l)
		go l.run(idle)
	}
}

// stopLoops stops the server's event loops for Shutdown and Close: each
// hands its connections back to goroutines, closes its set and ends. It
// does not wait for them, so that a handler that a loop is running may
// call Close.
func (s *Server) stopLoops() {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	for _, l := range loops {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.ep.SetReadDeadline(aLongTimeAgo) // wakes the loop, which sees closed
	}
}

// stopped reports whether the loop has been stopped.
func (l *eventLoop) stopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// toLoop hands c, waiting for input with nothing buffered, to one of the
// server's event loops, and reports whether it did; from then on c
// belongs to the loop, and its goroutine must end without touching it.
func (c *conn) toLoop() bool {
	loops := c.srv.loops // set before the first connection, never changed
	if len(loops) == 0 {
		return false
	}
	return loops[c.srv.loopNext.Add(1)%uint32(len(loops))].add(c)
}

// initLoop decides whether c may wait in an event loop: whether the
// server has loops (its handler never blocks) and c reads its socket
// without a buffer held (pollLoop).
func (c *conn) initLoop() {
	c.loopOK = c.poll.raw != nil && len(c.srv.loops) > 0
}

// loopable reports whether c may wait in an event loop now: its handler
// never blocks, its socket is a raw one, and it has nothing buffered.
func (c *conn) loopable() bool {
	return c.loopOK && c.dec.Buffered() == 0 && len(c.out) == 0
}

// epollET is EPOLLET as a value of EpollEvent.Events, a uint32: package
// syscall declares the constant negative.
const epollET = 1 << 31

// add watches c's socket for input.
func (l *eventLoop) add(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	id := l.next + 1
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET,
		Fd:     int32(id),
		Pad:    int32(id >> 32),
	}
	if l.ctl(syscall.EPOLL_CTL_ADD, c, &ev) != nil {
		return false
	}
	l.next = id
	c.loopID = id
	l.conns[id] = c
	return true
}

// remove takes c out of the loop, for a goroutine or to close it.
func (l *eventLoop) remove(c *conn) {
	l.mu.Lock()
	delete(l.conns, c.loopID)
	l.mu.Unlock()
	// A closed socket has left the set already: ctl fails, harmlessly.
	l.ctl(syscall.EPOLL_CTL_DEL, c, &syscall.EpollEvent{})
}

// ctl changes the set for c's socket, holding both descriptors open so
// that neither number can be another file's by then.
func (l *eventLoop) ctl(op int, c *conn, ev *syscall.EpollEvent) error {
	var err error
	cerr := l.raw.Control(func(epfd uintptr) {
		if cerr := c.poll.raw.Control(func(fd uintptr) { err = syscall.EpollCtl(int(epfd), op, int(fd), ev) }); cerr != nil {
			err = cerr
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// run serves the loop's connections as their input arrives, and closes
// those idle for idleTimeout, until the loop is stopped; then it hands
// its connections back to goroutines.
func (l *eventLoop) run(idleTimeout time.Duration) {
	if h := l.srv.testHookLoopStart; h != nil {
		h()
	}
	scan := newIdleScan(l.ep, idleTimeout)
	// Checked after the deadline moved, as after each scan below: a stop
	// that came before this goroutine ran had its wake-up undone by
	// newIdleScan, and would wait for the first scan.
	if !l.stopped() {
		l.serveBatches(&scan)
	}
	l.mu.Lock()
	l.closed = true
	conns := takeAll(l.conns)
	l.mu.Unlock()
	for _, c := range conns {
		c.resume()
	}
	l.ep.Close()
}

// serveBatches serves the batches of input until the loop is stopped or
// its set fails.
//
// It serves each batch outside the poller's call, and comes back to the
// poller, which polls the set once more before it waits: under load,
// input that arrived meanwhile is served at once, which costs one
// epoll_wait, where waiting first would cost the goroutine a park and a
// wake-up (2 to 3% more CPU a message at C=100, measured).
func (l *eventLoop) serveBatches(scan *idleScan) {
	for {
		// Read returns with a batch, at the deadline (time to check for
		// idle connections, or stopLoops's wake-up), or when the set
		// fails.
		err := l.raw.Read(l.wait)
		if err != nil && (!isTimeoutErr(err) || l.stopped()) {
			return
		}
		// One clock reading for the batch: it stamps the connections'
		// idle times (and any frame left in progress) a little early, by
		// the time it takes to serve the batch.
		l.now = time.Now()
		for i, c := range l.ready {
			l.serve(c)
			l.ready[i] = nil
		}
		l.ready = l.ready[:0]
		if cutoff, due := scan.due(l.now); due {
			l.expire(cutoff)
			// Checked after the deadline moved: stopLoops sets closed
			// before its wake-up, so either this sees closed or the
			// wake-up comes after the move.
			if l.stopped() {
				return
			}
		}
	}
}

// collect takes up to one batch of the connections that have input into
// l.ready; it returns false to wait.
func (l *eventLoop) collect(fd uintptr) bool {
	for {
		// A raw system call: it does not wait (timeout 0), so the
		// scheduler need not hear of it.
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, fd, uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || n == 0 {
			return false
		}
		l.mu.Lock()
		for _, ev := range l.events[:int(n)] {
			if c, ok := l.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; ok {
				c.poll.hup = ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
				l.ready = append(l.ready, c)
			}
		}
		l.mu.Unlock()
		return len(l.ready) > 0
	}
}

// serve runs one step of c on the loop's goroutine: it answers c's input
// and leaves c waiting in the loop, or takes c out of the loop, to a
// goroutine of its own or to close it.
func (l *eventLoop) serve(c *conn) {
	defer func() {
		if p := recover(); p != nil {
			l.cur = nil
			c.recovered(p)
			l.remove(c)
			go c.finish(ClosePanic)
		}
	}()
	r := &c.poll
	r.woken = true // the loop saw input: read at once
	c.batchAt, l.cur = &l.now, c
	err := r.raw.Control(l.step)
	c.batchAt, l.cur = nil, nil
	switch {
	case err != nil:
		// Closed under the loop, by Server.Close: the goroutine's read
		// fails, and it closes the connection.
		l.remove(c)
		c.resume()
	case !r.done || r.reason == handOffNow:
		// A frame in progress, or replies left to write: wait on a
		// goroutine, under its deadlines.
		l.remove(c)
		c.handOff = false
		c.resume()
	case r.reason == loopNow:
		// Answered: wait here.
		if h := l.srv.testHookLoopWait; h != nil {
			h(c)
		}
	default:
		l.remove(c)
		go c.finish(r.reason)
	}
}

// expire closes the loop's connections idle since before cutoff.
func (l *eventLoop) expire(cutoff int64) {
	l.mu.Lock()
	l.ready = takeIdle(l.conns, cutoff, l.ready)
	l.mu.Unlock()
	for i, c := range l.ready {
		l.ctl(syscall.EPOLL_CTL_DEL, c, &syscall.EpollEvent{})
		go c.finish(CloseIdle)
		l.ready[i] = nil
	}
	l.ready = l.ready[:0]
}
