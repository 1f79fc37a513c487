//go:build linux

package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// T3: slowloris, idle connections and slow readers, each beside a control
// client doing 200 requests/s on the same server.
//
// The slowloris and idle floods open t3Conns connections over TCP (fewer
// over Unix, t3UnixConns, to keep the test short: the server code is the
// same) at t3RampRate per second, within the listen backlog. The client
// side uses no goroutine per connection: one goroutine dials, and the test
// goroutine watches every connection through an epoll set of its own and
// trickles the slowloris bytes. The server runs one goroutine per
// connection; as each connection is closed 2 s after it opens, about 2,000
// are open at once, far below the race detector's limit of 8,128 live
// goroutines, so the full 5,000 run under -race too. With -short, 200 do.
const (
	t3Conns        = 5000
	t3UnixConns    = 500
	t3ShortConns   = 200
	t3RampRate     = 1000                   // connections per second
	t3FrameTimeout = 2 * time.Second        // slowloris server
	t3SlowIdle     = 10 * time.Second       // slowloris server: longer than any trickle gap
	t3IdleTimeout  = 2 * time.Second        // idle server
	t3WriteTimeout = time.Second            // slow-read server
	t3Late         = time.Second            // how late after its timeout a connection may close
	t3Early        = 250 * time.Millisecond // how early: the client notes a start after its dial or write returns, which a loaded scheduler can delay
	t3TrickleMin   = 500 * time.Millisecond // a slowloris byte every 0.5-1 s
	t3SlowReaders  = 100
)

func t3Count(network string) int {
	switch {
	case testing.Short():
		return t3ShortConns
	case network == "unix":
		return t3UnixConns
	}
	return t3Conns
}

// TestT3Slowloris: every connection sends one byte of a line at once,
// then one more every 0.5-1 s, and never ends the line. Each must be
// closed by the frame timeout, t3FrameTimeout after its first byte (+1 s at
// most); Stats().Closed[frame_timeout] must count them all; the server may
// run at most 2 goroutines per open connection; the control client must
// see no error.
func TestT3Slowloris(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := &porta.Server{Framing: frame.Line, FrameTimeout: t3FrameTimeout, IdleTimeout: t3SlowIdle}
			t3Flood(t, srv, network, t3Count(network), true, porta.CloseFrameTimeout, t3FrameTimeout)
		})
	}
}

// TestT3Idle: connections that send nothing are closed at the idle
// timeout (t3IdleTimeout after connecting, +1 s at most), all counted as
// idle_timeout, beside an unaffected control client.
func TestT3Idle(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := &porta.Server{Framing: frame.Line, IdleTimeout: t3IdleTimeout}
			t3Flood(t, srv, network, t3Count(network), false, porta.CloseIdle, t3IdleTimeout)
		})
	}
}

// slowConn is one connection of a flood.
type slowConn struct {
	nc     net.Conn
	fd     int
	start  time.Time // its first byte was written (slowloris), or it connected
	next   time.Time // its next slowloris byte is due
	closed time.Time // the server's close reached it
}

// t3Flood opens n connections to a fresh server srv at t3RampRate, each
// trickling bytes of a line that never ends (trickle) or silent, and
// checks that every one is closed with reason within [timeout, timeout +
// t3Late] of its start.
func t3Flood(t *testing.T, srv *porta.Server, network string, n int, trickle bool, reason porta.CloseReason, timeout time.Duration) {
	s := startServer(t, srv, network)
	ctl := startControl(t, s.Addr, frame.Line)
	ctlBase := controlBaseline(ctl, 500*time.Millisecond)
	res := baseline(t)
	before := srv.Stats()
	a, _ := porta.ParseAddr(s.Addr)

	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatalf("epoll: %v", err)
	}
	epClosed := false
	closeEpoll := func() {
		if !epClosed {
			epClosed = true
			syscall.Close(epfd)
		}
	}
	defer closeEpoll()

	// The dialer: one goroutine, n connections at t3RampRate.
	newConns := make(chan *slowConn, n)
	dialErr := make(chan error, 1)
	stopDial := make(chan struct{})
	var dialer sync.WaitGroup
	dialer.Go(func() {
		defer close(newConns)
		start := time.Now()
		for i := range n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / t3RampRate)))
			select {
			case <-stopDial:
				return
			default:
			}
			nc, err := net.DialTimeout(a.Network, a.Address, 5*time.Second)
			if err != nil {
				dialErr <- err
				return
			}
			sc := &slowConn{nc: nc}
			if trickle {
				if _, err := nc.Write([]byte{'a'}); err != nil {
					nc.Close()
					dialErr <- err
					return
				}
			}
			sc.start = time.Now()
			newConns <- sc
		}
	})
	defer dialer.Wait()
	defer close(stopDial)

	var conns []*slowConn
	byFD := make(map[int]*slowConn)
	defer func() {
		for _, sc := range conns {
			if sc.closed.IsZero() {
				sc.nc.Close()
			}
		}
	}()
	rng := rand.New(rand.NewPCG(3, uint64(n)))
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64)
	open, dialing, unexpected := 0, true, 0
	maxGoroutines, maxOpen, worstExcess := 0, int64(0), -1<<31
	lastSample := time.Time{}
	deadline := time.Now().Add(time.Duration(n)*time.Second/t3RampRate + timeout + t3Late + 5*time.Second)

	for dialing || open > 0 {
		if time.Now().After(deadline) {
			t.Errorf("%d connections still open at the deadline", open)
			break
		}
		// New connections join the epoll set.
	drain:
		for {
			select {
			case sc, ok := <-newConns:
				if !ok {
					dialing = false
					break drain
				}
				raw, err := sc.nc.(syscall.Conn).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				raw.Control(func(fd uintptr) { sc.fd = int(fd) })
				ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(sc.fd)}
				if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, sc.fd, &ev); err != nil {
					t.Fatalf("epoll add: %v", err)
				}
				sc.next = sc.start.Add(t3TrickleMin + time.Duration(rng.Int64N(int64(t3TrickleMin))))
				conns = append(conns, sc)
				byFD[sc.fd] = sc
				open++
			default:
				break drain
			}
		}
		select {
		case err := <-dialErr:
			t.Fatalf("dialing connection %d: %v", len(conns)+1, err)
		default:
		}

		// Closed connections: the server never sends on these, so a
		// readable socket is the end of the stream or a reset.
		ne, err := syscall.EpollWait(epfd, events, 20)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			t.Fatalf("epoll wait: %v", err)
		}
		now := time.Now()
		for _, ev := range events[:max(ne, 0)] {
			sc := byFD[int(ev.Fd)]
			if sc == nil || !sc.closed.IsZero() {
				continue
			}
			m, rerr := syscall.Read(sc.fd, buf)
			if rerr == syscall.EAGAIN {
				continue
			}
			if m > 0 {
				unexpected++
				continue
			}
			sc.closed = now
			syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, sc.fd, nil)
			delete(byFD, sc.fd)
			sc.nc.Close()
			open--
		}

		// Slowloris bytes that are due.
		if trickle {
			for _, sc := range conns {
				if sc.closed.IsZero() && !now.Before(sc.next) {
					sc.nc.Write([]byte{'a'}) // fails once the server has closed: fine
					sc.next = now.Add(t3TrickleMin + time.Duration(rng.Int64N(int64(t3TrickleMin))))
				}
			}
		}

		// The server's goroutines: at most 2 per open connection. The
		// client adds two (the dialer and, in the baseline, this one).
		if now.Sub(lastSample) >= 100*time.Millisecond {
			lastSample = now
			g := runtime.NumGoroutine()
			o := srv.Stats().ConnsOpen - before.ConnsOpen
			maxGoroutines, maxOpen = max(maxGoroutines, g), max(maxOpen, o)
			worstExcess = max(worstExcess, g-(res.goroutines+1+2*int(o)))
		}
	}

	// Every connection closed within [timeout - t3Early, timeout + t3Late]
	// of its start.
	var lat []time.Duration
	for _, sc := range conns {
		if !sc.closed.IsZero() {
			lat = append(lat, sc.closed.Sub(sc.start))
		}
	}
	slices.Sort(lat)
	if len(conns) != n || len(lat) != n {
		t.Errorf("%d connections opened, %d closed; want %d", len(conns), len(lat), n)
	}
	if len(lat) > 0 {
		t.Logf("%s: %d connections ramped at %d/s; closed %v after their start at the earliest, %v median, %v at the latest (timeout %v); server goroutines peaked at %d with %d connections open",
			reason, len(lat), t3RampRate, lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond),
			lat[len(lat)-1].Round(time.Millisecond), timeout, maxGoroutines, maxOpen)
		if lat[0] < timeout-t3Early || lat[len(lat)-1] > timeout+t3Late {
			t.Errorf("connections closed between %v and %v after their start, want within [%v, %v]",
				lat[0], lat[len(lat)-1], timeout-t3Early, timeout+t3Late)
		}
	}
	if unexpected > 0 {
		t.Errorf("%d connections received data; the server should send nothing", unexpected)
	}
	if worstExcess > 0 {
		t.Errorf("goroutines exceeded baseline + 2 per open connection by %d", worstExcess)
	}
	waitOpen(t, srv, before.ConnsOpen)
	after := srv.Stats()
	for _, r := range porta.CloseReasons() {
		want := uint64(0)
		if r == reason {
			want = uint64(n)
		}
		if got := after.Closed[r] - before.Closed[r]; got != want {
			t.Errorf("Stats().Closed[%v] grew by %d, want %d", r, got, want)
		}
	}
	closeEpoll()
	res.waitBack(t, t1Settle, "goroutines and descriptors after the flood")
	checkControl(t, reason.String(), ctlBase, ctl.stop())
}

// TestT3SlowRead: t3SlowReaders clients send requests flat out and never
// read the replies. The server's writes block once the client's receive
// window and the server's send buffer are full; each connection must be
// closed as a slow consumer within t3WriteTimeout + 1 s of its writes
// starting to block (the client measures from its last write that made
// progress: the server stopped reading no later than that). The heap and
// the RSS, with all of them blocked, may grow by at most 1 MiB per
// connection + 20 MiB, and the control client must see no error.
func TestT3SlowRead(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) { t3SlowRead(t, network) })
	}
}

// dialSmallBuffers dials a slow reader over TCP with small buffers, so
// that the replies back up, and the requests after them, within a few
// hundred KiB instead of the megabytes autotuning allows.
//
// The sizes are set before connecting. A receive buffer shrunk after the
// handshake is smaller than the window already advertised (which Linux
// never takes back): the server's replies inside that window are then
// dropped, the client's window falls to zero behind the server's next
// sequence number, and the client rejects every window update the server
// sends as out of window. Both sides then wait for ever: the server has
// read every request and queued every reply, so it is no slow consumer,
// and only its frame timeout ends the connection (seen in 1 run of 40).
func dialSmallBuffers(t *testing.T, addr string) net.Conn {
	t.Helper()
	a, err := porta.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 5 * time.Second, Control: socketBuffers(16*sizeKiB, 64*sizeKiB)}
	nc, err := d.Dial(a.Network, a.Address)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	nc.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { nc.Close() })
	return nc
}

func t3SlowRead(t *testing.T, network string) {
	srv := &porta.Server{Framing: frame.Line, WriteTimeout: t3WriteTimeout, IdleTimeout: ioTimeout, FrameTimeout: ioTimeout}
	var addr string
	if network == "tcp" {
		// Fixed 64 KiB socket buffers on the server's side, inherited from
		// the listening socket. With autotuning, the server's receive
		// buffer grows to megabytes, and a client can go on writing into
		// it long after the server stopped reading, which hides the
		// moment its writes really start blocking.
		lc := net.ListenConfig{Control: socketBuffers(64*sizeKiB, 64*sizeKiB)}
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = serveListener(t, srv, l)
	} else {
		addr = startServer(t, srv, network).Addr
	}
	ctl := startControl(t, addr, frame.Line)
	ctlBase := controlBaseline(ctl, 500*time.Millisecond)
	res := baseline(t)
	heap0, rss0 := heapAfterGC(), rssBytes()
	before := srv.Stats()

	// Requests: 1 KiB lines, 64 of them per write.
	line := append(bytes.Repeat([]byte{'x'}, sizeKiB-1), '\n')
	chunk := bytes.Repeat(line, 64)

	type reader struct {
		blocked, closed time.Time
		written         int
		err             error
	}
	readers := make([]reader, t3SlowReaders)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allBlocked := make(chan struct{})
	nBlocked := 0
	for i := range readers {
		var nc net.Conn
		if network == "tcp" {
			nc = dialSmallBuffers(t, addr)
		} else {
			nc = dialRaw(t, addr)
		}
		r := &readers[i]
		wg.Go(func() {
			defer nc.Close()
			lastProgress, off := time.Now(), 0
			end := time.Now().Add(ioTimeout)
			for time.Now().Before(end) {
				nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				n, err := nc.Write(chunk[off:])
				off = (off + n) % len(chunk)
				r.written += n
				if n > 0 {
					lastProgress, r.blocked = time.Now(), time.Time{}
				}
				if err == nil {
					continue
				}
				if isTimeout(err) {
					if r.blocked.IsZero() {
						r.blocked = lastProgress
						mu.Lock()
						if nBlocked++; nBlocked == t3SlowReaders {
							close(allBlocked)
						}
						mu.Unlock()
					}
					continue
				}
				r.closed, r.err = time.Now(), err
				return
			}
			r.err = errors.New("still open at the deadline")
		})
	}

	// With every writer blocked, the server holds the most: measure then.
	var heapPeak, rssPeak uint64
	select {
	case <-allBlocked:
		heapPeak, rssPeak = growth(heap0, heapAfterGC()), growth(rss0, rssBytes())
	case <-time.After(ioTimeout):
		t.Errorf("not all %d writers blocked within %v", t3SlowReaders, ioTimeout)
	}
	wg.Wait()

	var worst time.Duration
	total := 0
	for i, r := range readers {
		total += r.written
		if r.closed.IsZero() || !isReset(r.err) {
			t.Errorf("slow reader %d: writes ended with %v, want a reset by the server", i, r.err)
			continue
		}
		if r.blocked.IsZero() {
			t.Errorf("slow reader %d: closed without its writes blocking first", i)
			continue
		}
		worst = max(worst, r.closed.Sub(r.blocked))
	}
	bound := uint64(t3SlowReaders*sizeMiB + 20*sizeMiB)
	t.Logf("%d slow readers wrote %.1f MiB in all; closed at most %v after their writes blocked (write timeout %v); growth with all blocked: heap %.1f MiB, RSS %.1f MiB (bound %d MiB)",
		t3SlowReaders, float64(total)/sizeMiB, worst.Round(time.Millisecond), t3WriteTimeout,
		float64(heapPeak)/sizeMiB, float64(rssPeak)/sizeMiB, bound/sizeMiB)
	if worst > t3WriteTimeout+time.Second {
		t.Errorf("a slow reader was closed %v after its writes blocked, want within %v", worst, t3WriteTimeout+time.Second)
	}
	if heapPeak > bound {
		t.Errorf("heap grew by %d bytes, want at most %d", heapPeak, bound)
	}
	if rssPeak > bound && !raceEnabled {
		// Under -race the detector's shadow memory is in the RSS too.
		t.Errorf("RSS grew by %d bytes, want at most %d", rssPeak, bound)
	}
	waitOpen(t, srv, before.ConnsOpen)
	after := srv.Stats()
	for _, r := range porta.CloseReasons() {
		want := uint64(0)
		if r == porta.CloseSlowConsumer {
			want = t3SlowReaders
		}
		if got := after.Closed[r] - before.Closed[r]; got != want {
			t.Errorf("Stats().Closed[%v] grew by %d, want %d", r, got, want)
		}
	}
	res.waitBack(t, t1Settle, "goroutines and descriptors after the slow readers")
	checkControl(t, "slow read", ctlBase, ctl.stop())
}
