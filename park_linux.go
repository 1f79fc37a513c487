//go:build linux

package porta

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/porta-project/porta/internal/parkdelay"
)

// A connection that has waited parkdelay.Default (1 s) for input without
// receiving any parks: its goroutine ends, and the server's parker, one
// epoll set for all parked connections, starts a new one when input
// arrives. An idle connection then costs its socket and its state, not a
// goroutine and its stack.

// parkDelay is how long the server's connections wait before they park:
// Server.parkAfter if a test set it, else parkdelay.Default (which test
// suites may shorten for a whole run).
func (s *Server) parkDelay() time.Duration {
	if s.parkAfter > 0 {
		return s.parkAfter
	}
	return parkdelay.Default
}

// parker watches the parked connections of one server. Its epoll set is
// itself waited on by Go's poller (as an os.File), so that the parker
// needs no thread of its own; its read deadline wakes it to close
// connections that have been idle for the server's IdleTimeout.
type parker struct {
	srv    *Server
	ep     *os.File // the epoll instance
	epfd   int
	raw    syscall.RawConn
	mu     sync.Mutex
	conns  map[uint64]*conn // parked connections by park number
	next   uint64           // the last park number given
	closed bool             // the server is stopping: nothing parks any more
	events [64]syscall.EpollEvent
	wait   func(fd uintptr) bool // p.collect, bound once
	woken  []*conn               // connections to resume, reused
}

// canPark reports whether c may park: a raw connection (TCP or Unix, no
// TLS) whose idle timeout, if any, is longer than the park delay.
func (c *conn) canPark() bool {
	return c.poll.raw != nil && (c.idleTimeout <= 0 || c.idleTimeout > c.srv.parkDelay())
}

// park hands c to the server's parker and reports whether it did; from
// then on, c belongs to the parker and its goroutine must end without
// touching it.
func (c *conn) park() bool {
	p := c.srv.parker()
	if p == nil {
		return false
	}
	return p.add(c)
}

// parker returns the server's parker, starting it on first use (Serve
// starts it); nil if the server is stopping or epoll fails.
func (s *Server) parker() *parker {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.park != nil || s.shuttingDown() {
		return s.park
	}
	ep, epfd, raw, err := newEpollFile("porta-parker")
	if err != nil {
		return nil
	}
	p := &parker{srv: s, ep: ep, epfd: epfd, raw: raw, conns: make(map[uint64]*conn)}
	p.wait = p.collect
	s.park = p
	go p.run(orDefault(s.IdleTimeout, DefaultIdleTimeout))
	return p
}

// newEpollFile makes an epoll set that Go's poller waits on, as a file
// (named name), and returns it with its descriptor and raw access.
func newEpollFile(name string) (*os.File, int, syscall.RawConn, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, 0, nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, 0, nil, err
	}
	ep := os.NewFile(uintptr(epfd), name)
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, 0, nil, err
	}
	return ep, epfd, raw, nil
}

// add parks c: it watches c's socket for input, once.
func (p *parker) add(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	op := syscall.EPOLL_CTL_MOD
	if c.parkID == 0 {
		p.next++
		c.parkID, op = p.next, syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(c.parkID),
		Pad:    int32(c.parkID >> 32),
	}
	var err error
	if cerr := c.poll.raw.Control(func(fd uintptr) { err = syscall.EpollCtl(p.epfd, op, int(fd), &ev) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return false
	}
	c.parkedAt = time.Now().UnixNano()
	p.conns[c.parkID] = c
	return true
}

// run resumes parked connections as their input arrives, and closes
// those idle for idleTimeout, checking every eighth of it, until the
// parker is stopped.
func (p *parker) run(idleTimeout time.Duration) {
	scan := newIdleScan(p.ep, idleTimeout)
	for {
		err := p.raw.Read(p.wait)
		if err != nil && !isTimeoutErr(err) {
			return // stopped
		}
		p.resume()
		// Let the resumed connections run (each answers its input and
		// parks again) before collecting more, so that a burst of input
		// on many parked connections does not start a goroutine for each
		// at once: the runtime keeps every goroutine it ever had.
		runtime.Gosched()
		if cutoff, due := scan.due(time.Now()); due {
			p.expire(cutoff)
		}
	}
}

// collect takes the connections that have input off the parked set, up
// to one batch of events, into p.woken; it returns false to wait.
func (p *parker) collect(fd uintptr) bool {
	for {
		n, err := syscall.EpollWait(int(fd), p.events[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if n <= 0 {
			return len(p.woken) > 0
		}
		p.mu.Lock()
		for _, ev := range p.events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if c, ok := p.conns[id]; ok {
				delete(p.conns, id)
				p.woken = append(p.woken, c)
			}
		}
		p.mu.Unlock()
		return true
	}
}

// resume starts a goroutine for each connection collected.
func (p *parker) resume() {
	for i, c := range p.woken {
		c.resume()
		p.woken[i] = nil
	}
	p.woken = p.woken[:0]
}

// expire closes the parked connections idle since before cutoff.
func (p *parker) expire(cutoff int64) {
	p.mu.Lock()
	p.woken = takeIdle(p.conns, cutoff, p.woken)
	p.mu.Unlock()
	for i, c := range p.woken {
		go c.finish(CloseIdle)
		p.woken[i] = nil
	}
	p.woken = p.woken[:0]
}

// idleScan wakes a goroutine that waits on an epoll file (the parker, an
// event loop) every eighth of the idle timeout, with the file's read
// deadline, to close the connections idle for longer.
type idleScan struct {
	ep      *os.File
	timeout time.Duration // zero or negative: no idle timeout, no scan
	every   time.Duration
	next    time.Time
}

// newIdleScan arms ep's first wake-up.
func newIdleScan(ep *os.File, timeout time.Duration) idleScan {
	s := idleScan{ep: ep, timeout: timeout, every: max(timeout/8, 10*time.Millisecond)}
	if timeout > 0 {
		s.next = time.Now().Add(s.every)
		ep.SetReadDeadline(s.next)
	}
	return s
}

// due reports whether a scan is due at now; if it is, it arms the next
// wake-up and returns the cutoff, in Unix nanoseconds: the connections
// idle since before it are to be closed.
func (s *idleScan) due(now time.Time) (cutoff int64, due bool) {
	if s.timeout <= 0 {
		return 0, false
	}
	if now.Before(s.next) {
		return 0, false
	}
	s.next = now.Add(s.every)
	s.ep.SetReadDeadline(s.next)
	return now.Add(-s.timeout).UnixNano(), true
}

// takeIdle moves the connections of set idle since before cutoff (Unix
// nanoseconds) to idle, and returns it.
func takeIdle(set map[uint64]*conn, cutoff int64, idle []*conn) []*conn {
	for id, c := range set {
		if c.idleSince.Load() <= cutoff {
			delete(set, id)
			idle = append(idle, c)
		}
	}
	return idle
}

// takeAll empties set and returns its connections.
func takeAll(set map[uint64]*conn) []*conn {
	all := make([]*conn, 0, len(set))
	for id, c := range set {
		delete(set, id)
		all = append(all, c)
	}
	return all
}

// stopParking ends parking for a stopping server: the parked connections
// get their goroutines back, to see the shutdown or their closed socket,
// and the parker stops.
func (s *Server) stopParking() {
	s.mu.Lock()
	p := s.park
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	parked := takeAll(p.conns)
	p.mu.Unlock()
	for _, c := range parked {
		c.resume()
	}
	p.ep.Close()
}
