//go:build linux

package bench

import (
	"os"

	"golang.org/x/sys/unix"
)

// startTimer creates the open model's schedule timer.
func (l *eloop) startTimer() error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("timerfd_create", err)
	}
	l.tfd = fd
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: timerIndex}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// slotTime returns the time of the loop's schedule slot j: the slots go
// round the loop's connections, each of which has its own schedule.
func (l *eloop) slotTime(j uint64) int64 {
	m := uint64(len(l.conns))
	return l.conns[j%m].ss.scheduled(j / m)
}

// advance makes the messages scheduled up to now due, sends what the
// pipelines allow, and sets the timer for the next slot.
func (l *eloop) advance(now int64) {
	p := l.p
	end := firstLate(l.slot, func(j uint64) bool {
		t := l.slotTime(j)
		return t > now || t >= p.mEnd
	})
	// The slots from l.slot to end are due: each of the first m names a
	// connection, and so does every m-th after it.
	m := uint64(len(l.conns))
	for j := l.slot; j < end && j < l.slot+m; j++ {
		c := l.conns[j%m]
		if c.state == stateOpen && !c.ss.stopped {
			c.ss.due += int((end - j + m - 1) / m)
			if !c.isDue {
				c.isDue = true
				l.dirty = append(l.dirty, c)
			}
		}
	}
	l.slot = end
	l.nextSlot = l.slotTime(end)
	for _, c := range l.dirty {
		c.isDue = false
		if c.state == stateOpen {
			l.pump(c, now)
			l.settle(c)
		}
	}
	l.dirty = l.dirty[:0]
	if l.nextSlot < p.mEnd && l.nextSlot != l.armed {
		l.armed = l.nextSlot
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(l.nextSlot-now, 1))}
		unix.TimerfdSettime(l.tfd, 0, &spec, nil)
	}
}
