//go:build linux

package bench

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// connectAll opens the loop's connections, paced by the connect rate, and
// returns when each is open or has failed. Anything that arrives on an
// open connection meanwhile is read and counted as an extra reply.
func (l *eloop) connectAll() {
	p := l.p
	next, pending := 0, 0
	var lastSweep int64
	for !p.stop.Load() {
		now := p.now()
		wait := sweepInterval / 1_000_000
	starting:
		for next < len(l.conns) && pending < maxPendingConnects {
			c := l.conns[next]
			if at := p.connectAt(c.ss.id); at > now {
				wait = min(wait, int(min((at-now)/1_000_000+1, sweepInterval/1_000_000)))
				break starting
			}
			switch l.startConnect(c, now) {
			case connectRetry:
				wait = 1
				break starting
			case connectPending:
				pending++
			}
			next++
		}
		if pending == 0 && next == len(l.conns) {
			break
		}
		n, err := l.wait(wait)
		if err != nil {
			break
		}
		now = p.now()
		for _, ev := range l.events[:max(n, 0)] {
			c := l.conns[ev.Fd]
			switch c.state {
			case stateOpen:
				l.read(c, now)
				l.settle(c)
				continue
			case stateConnecting:
			default:
				continue
			}
			pending--
			soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr != 0 {
				err = syscall.Errno(soerr)
			}
			if err != nil {
				l.connectFailed(c, os.NewSyscallError("connect", err), now)
				continue
			}
			l.connectDone(c, now)
		}
		if now-lastSweep >= sweepInterval {
			lastSweep = now
			for _, c := range l.conns[:next] {
				if c.state == stateConnecting && now-c.since > int64(p.Timeout) {
					pending--
					l.connectFailed(c, fmt.Errorf("connect: no answer within %v: %w", p.Timeout, os.ErrDeadlineExceeded), now)
				}
			}
		}
	}
	for _, c := range l.conns {
		if c.state != stateConnecting && c.state != stateIdle {
			continue
		}
		if p.stop.Load() {
			l.abandon(c) // the run was cancelled: not the server's fault
		} else {
			l.connectFailed(c, errors.New("connect: abandoned after an epoll error"), p.now())
		}
	}
}

type connectOutcome uint8

const (
	connectDone connectOutcome = iota
	connectPending
	connectRetry
	connectFailed
)

// startConnect starts a nonblocking connection attempt.
func (l *eloop) startConnect(c *econn, now int64) connectOutcome {
	fd, err := unix.Socket(l.e.fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.connectFailed(c, os.NewSyscallError("socket", err), now)
		return connectFailed
	}
	if l.e.fam != unix.AF_UNIX {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if !c.retrying {
		c.since = now
	}
	c.fd = fd
	err = unix.Connect(fd, l.sa)
	switch {
	case err == nil:
		if l.register(c, unix.EPOLLIN) {
			l.connectDone(c, now)
		}
		return connectDone
	case err == unix.EINPROGRESS:
		if !l.register(c, unix.EPOLLOUT) {
			return connectFailed
		}
		c.state = stateConnecting
		return connectPending
	case err == unix.EAGAIN && l.e.fam == unix.AF_UNIX:
		// A Unix listener's backlog is full: try again shortly, until
		// it has been full for the connection timeout; then fail this
		// connection and the next ones at once, as net.Dial does.
		unix.Close(fd)
		c.fd = -1
		if l.fullSince == 0 {
			l.fullSince = now
		}
		if now-l.fullSince < int64(l.p.Timeout) {
			c.retrying = true
			return connectRetry
		}
		l.connectFailed(c, fmt.Errorf("connect: listen backlog full for %v: %w", l.p.Timeout, os.ErrDeadlineExceeded), now)
		return connectFailed
	}
	l.connectFailed(c, os.NewSyscallError("connect", err), now)
	return connectFailed
}

// register adds c's socket to the loop's epoll set.
func (l *eloop) register(c *econn, events uint32) bool {
	ev := unix.EpollEvent{Events: events, Fd: int32(c.idx)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		l.connectFailed(c, os.NewSyscallError("epoll_ctl", err), c.since)
		return false
	}
	return true
}

func (l *eloop) connectDone(c *econn, now int64) {
	l.fullSince = 0
	c.state = stateOpen
	l.rec.connects = append(l.rec.connects, now-c.since)
	l.setEvents(c, false)
	l.active++
}

func (l *eloop) connectFailed(c *econn, err error, now int64) {
	l.abandon(c)
	c.ss.rec.fail(connectKind(err), 1, Example{Conn: c.ss.id, Err: err.Error()})
}

// abandon closes a connection that is not open without counting an error.
func (l *eloop) abandon(c *econn) {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	c.state = stateClosed
	c.settled = true
	c.ss.stopped = true
}

// setEvents asks for readability, and writability too if out is set.
func (l *eloop) setEvents(c *econn, out bool) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.idx)}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	c.wantOut = out
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}
