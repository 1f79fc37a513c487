//go:build linux

package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/porta-project/porta/frame"
)

// Epoll engine limits.
const (
	// maxEvents is the most readiness events taken per epoll_wait, as in
	// the C reference client.
	maxEvents = 256
	// readSize is the buffer one read fills: 64 KiB, the C reference
	// client's; one per loop.
	readSize = 64 << 10
	// maxPendingConnects bounds a loop's connection attempts in flight,
	// so that an unpaced ramp does not flood the listen backlog.
	maxPendingConnects = 256
	// sweepInterval is how often a loop checks for timeouts and the end
	// of the run when no event wakes it, in nanoseconds (epoll_wait takes
	// milliseconds).
	sweepInterval = 50_000_000
	// timerIndex marks the schedule timer's events; connections' events
	// carry their index in the loop.
	timerIndex = -1
)

// epollEngine runs the connections in epoll loops, one per OS thread.
type epollEngine struct {
	p        *plan
	loops    []*eloop
	recs     []*recorder
	fam      int
	sockaddr func() unix.Sockaddr // the server's address, a new one for each loop
}

// eloop is one event loop and the connections it owns.
type eloop struct {
	e      *epollEngine
	p      *plan
	rec    *recorder
	epfd   int
	tfd    int // the open model's schedule timer, or -1
	sa     unix.Sockaddr
	conns  []*econn
	events []unix.EpollEvent
	rbuf   []byte // the read buffer
	obuf   []byte // where messages are built before they are written
	active int    // connections that are not done
	raw    bool   // waits for events without the scheduler (see wait)

	slot     uint64 // open model: the loop's next schedule slot
	nextSlot int64  // and its time
	armed    int64  // the slot time the timer is set for
	dirty    []*econn

	fullSince int64 // since when connect(2) finds the Unix backlog full; 0 if it does not
}

// econn is one connection of an epoll loop.
type econn struct {
	idx      int // in the loop
	fd       int
	ss       *session
	dec      *frame.Decoder // once the replies went wrong (see read)
	feed     feedReader
	out      []byte // framed messages; out[outOff:] is not written yet
	outOff   int
	wantOut  bool // EPOLLOUT is registered
	state    econnState
	since    int64 // when the connection attempt started
	retrying bool  // the attempt is retried (a full Unix backlog); since is the first try's
	settled  bool  // counted out of the loop's active connections
	isDue    bool  // on the loop's dirty list
}

type econnState uint8

const (
	stateIdle econnState = iota
	stateConnecting
	stateOpen
	stateClosed
)

// newEpollEngine returns the epoll engine for p, or false where it cannot
// carry p's address.
func newEpollEngine(p *plan) (engine, bool, error) {
	e := &epollEngine{p: p}
	if p.addr.TLS {
		return nil, false, nil // TLS runs on the goroutine engine
	}
	// A unix.Sockaddr is not safe for concurrent use (Connect writes
	// into it), so each loop gets its own.
	switch p.addr.Network {
	case "unix":
		e.fam = unix.AF_UNIX
		e.sockaddr = func() unix.Sockaddr { return &unix.SockaddrUnix{Name: p.addr.Address} }
	case "tcp", "tcp4", "tcp6":
		ta, err := net.ResolveTCPAddr(p.addr.Network, p.addr.Address)
		if err != nil {
			return nil, true, fmt.Errorf("bench: %w", err)
		}
		if ta.IP == nil {
			// No host (":8000"): the local system, as net.Dial has it,
			// over IPv4 unless the network says IPv6.
			ta.IP = net.IPv4(127, 0, 0, 1)
			if p.addr.Network == "tcp6" {
				ta.IP = net.IPv6loopback
			}
		}
		if ip4 := ta.IP.To4(); ip4 != nil {
			e.fam = unix.AF_INET
			e.sockaddr = func() unix.Sockaddr {
				sa := &unix.SockaddrInet4{Port: ta.Port}
				copy(sa.Addr[:], ip4)
				return sa
			}
		} else {
			var zone uint32
			if ta.Zone != "" {
				if ifi, err := net.InterfaceByName(ta.Zone); err == nil {
					zone = uint32(ifi.Index)
				}
			}
			e.fam = unix.AF_INET6
			e.sockaddr = func() unix.Sockaddr {
				sa := &unix.SockaddrInet6{Port: ta.Port, ZoneId: zone}
				copy(sa.Addr[:], ta.IP.To16())
				return sa
			}
		}
	default:
		return nil, false, nil
	}
	n := p.Loops
	if n == 0 {
		n = runtime.GOMAXPROCS(0) - 1 // leave a P for the rest of the process
	}
	n = max(1, min(n, p.Conns))
	for range n {
		l := &eloop{e: e, p: p, rec: newRecorder(false), epfd: -1, tfd: -1, sa: e.sockaddr(), events: make([]unix.EpollEvent, maxEvents)}
		l.rbuf = make([]byte, readSize)
		e.loops = append(e.loops, l)
		e.recs = append(e.recs, l.rec)
	}
	for id := range p.Conns {
		l := e.loops[id%n]
		c := &econn{idx: len(l.conns), fd: -1, ss: newSession(p, l.rec, id)}
		l.conns = append(l.conns, c)
	}
	return e, true, nil
}

func (e *epollEngine) name() string           { return EngineEpoll }
func (e *epollEngine) recorders() []*recorder { return e.recs }
func (e *epollEngine) cancel()                {} // loops poll p.stop

func (e *epollEngine) run(connected func()) {
	var up, done sync.WaitGroup
	up.Add(len(e.loops))
	done.Add(len(e.loops))
	for _, l := range e.loops {
		go func() {
			defer done.Done()
			l.run(up.Done)
		}()
	}
	up.Wait()
	connected()
	done.Wait()
}

// run carries the loop's connections through the whole run.
func (l *eloop) run(connected func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.claimRawWait()
	defer l.releaseRawWait()
	defer l.closeAll()
	var err error
	l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		for _, c := range l.conns {
			l.connectFailed(c, os.NewSyscallError("epoll_create1", err), 0)
		}
		connected()
		return
	}
	l.connectAll()
	connected()
	<-l.p.start
	for _, c := range l.conns {
		c.ss.started = true
	}
	if l.p.stop.Load() {
		return
	}
	if l.p.Rate > 0 {
		if err := l.startTimer(); err != nil {
			for _, c := range l.conns {
				if c.state == stateOpen {
					l.closeConn(c, KindIO, err, l.p.now())
				}
			}
			return
		}
	}
	l.load()
	if l.p.Hold > 0 && !l.p.stop.Load() {
		l.hold()
	}
}

// load runs the warmup and the measured time, then drains the replies.
func (l *eloop) load() {
	p := l.p
	now := p.now()
	if p.Rate > 0 {
		l.nextSlot = l.slotTime(0)
		l.advance(now)
	} else {
		for _, c := range l.conns {
			if c.state == stateOpen {
				l.pump(c, now)
				l.settle(c)
			}
		}
	}
	lastSweep, ended := now, false
	for l.active > 0 && !p.stop.Load() {
		wait := int64(sweepInterval)
		if p.mEnd > now {
			wait = min(wait, p.mEnd-now)
		}
		n, err := l.wait(int((wait + 999_999) / 1_000_000))
		if err != nil {
			for _, c := range l.conns {
				if c.state == stateOpen {
					l.closeConn(c, KindIO, err, now)
				}
			}
			return
		}
		for _, ev := range l.events[:max(n, 0)] {
			if ev.Fd == timerIndex {
				var buf [8]byte
				unix.Read(l.tfd, buf[:])
				continue
			}
			now = p.now()
			l.handle(l.conns[ev.Fd], ev.Events, now)
		}
		now = p.now()
		if p.Rate > 0 {
			l.advance(now)
		}
		if now-lastSweep >= sweepInterval || (now >= p.mEnd && !ended) {
			lastSweep, ended = now, now >= p.mEnd
			l.sweep(now)
		}
		l.rec.publish()
	}
}

// rawWaiters counts the loops of the process that wait for events
// without the Go scheduler (see wait); at most GOMAXPROCS-1 do, so that
// one P is always left for the process's other goroutines, such as a
// server under test in the same process.
var rawWaiters atomic.Int64

// claimRawWait decides how the loop waits for events: directly, if a P
// can be spared for it, else through the scheduler.
func (l *eloop) claimRawWait() {
	if rawWaiters.Add(1) < int64(runtime.GOMAXPROCS(0)) {
		l.raw = true
		return
	}
	rawWaiters.Add(-1)
}

func (l *eloop) releaseRawWait() {
	if l.raw {
		rawWaiters.Add(-1)
		l.raw = false
	}
}

// wait waits up to msec milliseconds for events.
//
// A loop with l.raw calls epoll_wait(2) directly, as a C event loop does,
// keeping its P while it waits. Through the scheduler, a wait longer than
// sysmon's 20µs tick lets sysmon hand the P off when no other P is idle,
// and the return takes it back: at one connection, that is one or two
// extra context switches per message on the generator's CPU. A raw wait
// still ends at once for the runtime's preemption signal, which
// interrupts it with EINTR; wait then yields, so that the garbage
// collector and the run's other goroutines are never held up for long.
func (l *eloop) wait(msec int) (int, error) {
	var n int
	var err error
	if l.raw {
		n, err = rawEpollWait(l.epfd, l.events, msec)
		if err == unix.EINTR {
			runtime.Gosched()
		}
	} else {
		n, err = unix.EpollWait(l.epfd, l.events, msec)
	}
	switch {
	case err == unix.EINTR:
		return 0, nil
	case err != nil:
		return 0, os.NewSyscallError("epoll_wait", err)
	}
	return n, nil
}

// handle reacts to readiness of connection c.
//
// It reads as read does, but makes the read's system call itself: every
// call pending across a system call costs a mispredicted return (see
// rawRead), and replies are read once for every event.
func (l *eloop) handle(c *econn, events uint32, now int64) {
	if c.state != stateOpen {
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		var open bool
		if c.dec != nil {
			open = l.decode(c, now)
		} else {
			n, err := rawRead(c.fd, l.rbuf)
			open = l.received(c, n, err, now)
		}
		if !open {
			return
		}
		l.pump(c, now)
	} else if events&unix.EPOLLOUT != 0 {
		l.flush(c, now)
	}
	l.settle(c)
}

// read takes one read of replies and checks them. It returns false if the
// connection was closed.
//
// Replies are matched against the expected bytes as a stream (see
// session.stream), which is all a server that answers correctly ever
// needs. At the first byte that differs, the connection switches to a
// frame.Decoder for good, starting with the reply under way, so that
// wrong, reordered and extra replies are split and told apart.
func (l *eloop) read(c *econn, now int64) bool {
	if c.dec != nil {
		return l.decode(c, now)
	}
	n, err := rawRead(c.fd, l.rbuf)
	return l.received(c, n, err, now)
}

// received checks the replies that a read of n bytes into l.rbuf, which
// failed with err if it is not 0, brought. It returns false if the
// connection was closed.
func (l *eloop) received(c *econn, n int, err syscall.Errno, now int64) bool {
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return true
	case err != 0:
		l.closeConn(c, ioKind(err), os.NewSyscallError("read", err), now)
		return false
	case n == 0:
		err := io.EOF
		if c.ss.rawMatched > 0 {
			err = io.ErrUnexpectedEOF
		}
		l.closeConn(c, KindClosed, err, now)
		return false
	}
	if l.p.Framing == frame.Raw {
		if !c.ss.rawBytes(l.rbuf[:n], now) {
			l.closeConn(c, KindWrong, nil, now)
			return false
		}
		return true
	}
	m, ok := c.ss.stream(l.rbuf[:n], now)
	if ok {
		return true
	}
	c.feed.fd = c.fd
	c.feed.pending = append(append(c.feed.pending[:0], c.ss.partial()...), l.rbuf[m:n]...)
	c.ss.rawMatched = 0
	c.dec = frame.NewDecoder(&c.feed, l.p.Framing, l.p.maxReply)
	return l.decode(c, now)
}

// decode reads and checks replies through c's decoder: first what read
// handed over, then one read of the socket. It returns false if the
// connection was closed.
func (l *eloop) decode(c *econn, now int64) bool {
	for {
		if err := c.dec.Fill(); err != nil && isTimeout(err) {
			return true // nothing to read now
		}
		for {
			msg, ok, err := c.dec.Decode()
			if ok {
				c.ss.reply(msg, now)
				continue
			}
			if err != nil {
				c.ss.decodeFailed(err, now)
				l.closeConn(c, 0, nil, now)
				return false
			}
			break
		}
		if len(c.feed.pending) == 0 {
			return true
		}
	}
}

// pump appends the messages c may send now and writes them. They are
// built in the loop's buffer, which stays in cache, and only what the
// socket does not take is kept in the connection's own.
func (l *eloop) pump(c *econn, now int64) {
	if c.outOff < len(c.out) {
		c.out = c.ss.appendMessages(c.out, now) // behind what is waiting
		l.flush(c, now)
		return
	}
	out := c.ss.appendMessages(l.obuf[:0], now)
	l.obuf = out[:0]
	for len(out) > 0 {
		n, err := rawWrite(c.fd, out)
		switch {
		case err == unix.EAGAIN:
			c.out, c.outOff = append(c.out[:0], out...), 0
			l.setEvents(c, true)
			return
		case err == unix.EINTR:
			continue
		case err != 0:
			l.closeConn(c, ioKind(err), os.NewSyscallError("write", err), now)
			return
		}
		out = out[n:]
	}
}

// flush writes what c has waiting, as far as the socket takes it.
func (l *eloop) flush(c *econn, now int64) {
	for c.outOff < len(c.out) {
		n, err := rawWrite(c.fd, c.out[c.outOff:])
		switch {
		case err == unix.EAGAIN:
			if !c.wantOut {
				l.setEvents(c, true)
			}
			return
		case err == unix.EINTR:
			continue
		case err != 0:
			l.closeConn(c, ioKind(err), os.NewSyscallError("write", err), now)
			return
		}
		c.outOff += n
	}
	c.out, c.outOff = c.out[:0], 0
	if c.wantOut {
		l.setEvents(c, false)
	}
}

// settle takes a connection that is done out of the active count.
func (l *eloop) settle(c *econn) {
	if !c.settled && (c.state == stateClosed || c.ss.done()) {
		c.settled = true
		l.active--
	}
}

// sweep closes connections that waited too long for a reply and settles
// those that are done.
func (l *eloop) sweep(now int64) {
	for _, c := range l.conns {
		if c.state != stateOpen {
			continue
		}
		if c.ss.timedOut(now) {
			l.closeConn(c, KindTimeout, errTimeout(l.p.Timeout), now)
			continue
		}
		c.ss.checkStop(now)
		l.settle(c)
	}
}

// closeConn ends c with an error of kind k (none if err is nil).
func (l *eloop) closeConn(c *econn, k ErrorKind, err error, now int64) {
	c.ss.end(k, err, now)
	unix.Close(c.fd)
	c.fd = -1
	c.state = stateClosed
	l.settle(c)
}

// hold keeps the connections open and idle for p.Hold, still checking
// that nothing arrives on them.
func (l *eloop) hold() {
	p := l.p
	p.holding.Store(true)
	end := later(p.now(), p.Hold)
	for now := p.now(); now < end && !p.stop.Load(); now = p.now() {
		wait := min(end-now, sweepInterval)
		n, err := l.wait(int((wait + 999_999) / 1_000_000))
		if err != nil {
			return
		}
		for _, ev := range l.events[:max(n, 0)] {
			if ev.Fd != timerIndex {
				l.handle(l.conns[ev.Fd], ev.Events, p.now())
			}
		}
		l.rec.publish()
	}
}

func (l *eloop) closeAll() {
	for _, c := range l.conns {
		if c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
	}
	if l.tfd >= 0 {
		unix.Close(l.tfd)
	}
	if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
	l.rec.publish()
}
