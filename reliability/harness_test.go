package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// Helpers of the in-process tests (T1, T2, T3, T8): servers on loopback
// and Unix sockets, a well-behaved control client that runs beside the
// abuse, and baselines of goroutines, descriptors and heap.

// ioTimeout bounds every client read and write, so that a server that
// fails to answer or to close fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

const (
	sizeKiB = 1 << 10
	sizeMiB = 1 << 20
)

// startServer serves srv on a fresh address of network ("tcp", "unix" in
// t.TempDir(), or "udp", all on loopback) and shuts it down gracefully
// when the test ends.
func startServer(t testing.TB, srv *porta.Server, network string) *portatest.Server {
	t.Helper()
	return portatest.Start(t, srv, network)
}

// startTLSServer serves srv on a TLS listener on 127.0.0.1 with a fresh
// self-signed certificate and shuts it down gracefully when the test ends.
// It returns the tls:// address and a client configuration that trusts the
// certificate.
func startTLSServer(t testing.TB, srv *porta.Server) (addr string, client *tls.Config) {
	t.Helper()
	cfg, client := selfSignedPair(t)
	l, err := porta.ListenTLS("tls://127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.ServerName = "127.0.0.1"
	return serveListener(t, srv, l), client
}

// selfSignedPair returns a server TLS configuration with a fresh
// self-signed certificate and a client configuration that trusts it.
func selfSignedPair(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	server, _, err := porta.SelfSignedTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(server.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return server, &tls.Config{RootCAs: roots}
}

// serveListener serves srv on l and shuts it down gracefully when the
// test ends. It returns l's address in porta's syntax.
func serveListener(t testing.TB, srv *porta.Server, l net.Listener) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, porta.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return porta.FormatAddr(l.Addr())
}

// dialRaw opens a plain connection to addr (a porta address such as
// "tcp://127.0.0.1:1234"), bounds its I/O by ioTimeout and closes it when
// the test ends.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	a, err := porta.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout(a.Network, a.Address, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	nc.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { nc.Close() })
	return nc
}

// socketBuffers is a Control function that sets a socket's receive and
// send buffer sizes before it listens or connects. A receive buffer must
// be set before connecting: shrunk after the handshake, it is smaller
// than the window already advertised (see dialSmallBuffers).
func socketBuffers(rcv, snd int) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcv)
			if err == nil {
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, snd)
			}
		})
		return err
	}
}

// closeWrite half-closes nc: no more requests, replies still readable.
func closeWrite(t testing.TB, nc net.Conn) {
	t.Helper()
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T cannot half-close", nc)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
}

// resources are the process-wide counts that must return to their
// baseline after a test's connections close.
type resources struct {
	goroutines int // runtime.NumGoroutine
	fds        int // entries of /proc/self/fd, not counting the one reading it
}

func (r resources) String() string {
	return fmt.Sprintf("%d goroutines, %d fds", r.goroutines, r.fds)
}

// settleTimeout is how long after a test's connections close the server
// may take to close its side, and the goroutines and descriptors to come
// back to their baseline.
const settleTimeout = 2 * time.Second

// goroutineSlack is how many goroutines above its baseline a test may end
// with: a runtime or testing goroutine on its way out.
const goroutineSlack = 2

// measure returns the current counts.
func measure(t testing.TB) resources {
	t.Helper()
	n, err := countFDs()
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return resources{goroutines: runtime.NumGoroutine(), fds: n}
}

// countFDs returns the number of open descriptors of this process.
func countFDs() (int, error) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil // not f itself
}

// baseline returns the counts once they have held still for 50 ms (or
// after 2 s, whatever they are then), so that the tail of an earlier test
// does not end up in the baseline.
func baseline(t testing.TB) resources {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	last, still := measure(t), 0
	for still < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		cur := measure(t)
		if cur == last {
			still++
		} else {
			last, still = cur, 0
		}
	}
	return last
}

// waitBack waits up to within for the goroutines to be back to at most
// base + goroutineSlack and the descriptors to at most base, and fails the
// test if they are not. It returns the last counts. (Fewer than at the
// baseline is fine: something older than the test went away.)
func (base resources) waitBack(t testing.TB, within time.Duration, what string) resources {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cur := measure(t)
		if cur.goroutines <= base.goroutines+goroutineSlack && cur.fds <= base.fds {
			return cur
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %v after %v, baseline %v (allowed: goroutines +%d, fds +0)", what, cur, within, base, goroutineSlack)
			return cur
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heapAfterGC returns the live heap, in bytes, after two full collections:
// the second frees what became garbage while the first was marking, which
// matters while other goroutines are busy replacing buffers.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes returns the resident set size of the process (VmRSS), or 0 if
// it cannot be read.
func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			fields := bytes.Fields(v)
			if len(fields) > 0 {
				n, _ := strconv.ParseUint(string(fields[0]), 10, 64)
				return n * sizeKiB
			}
		}
	}
	return 0
}

// growth returns after - before, or 0 if the value shrank.
func growth(before, after uint64) uint64 {
	if after < before {
		return 0
	}
	return after - before
}

// The control client of the plan: a separate well-behaved client doing
// 200 requests/s, run throughout an abuse test. It records errors and
// latencies; checkControl compares its latency under abuse with its
// baseline.
const (
	controlInterval = 5 * time.Millisecond // 200 requests/s
	controlTimeout  = 2 * time.Second      // bounds one exchange
	// controlSlack is how much worse than its baseline the control
	// client's p99 may be under abuse. The plan's +20 ms (+10 ms for T3)
	// is a benchmark target; under -race on two cores a test can only
	// assert a generous bound, and reports the numbers.
	controlSlack = 200 * time.Millisecond
)

// A controlClient exchanges one message every controlInterval on one
// connection, and counts every failed or wrong exchange as an error (then
// reconnects, so that it keeps measuring).
type controlClient struct {
	addr  string
	d     porta.Dialer
	stopc chan struct{}
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	lat      []time.Duration // since the last cut
	errs     int
	firstErr error
	final    controlStats
}

// controlStats summarise the control client's exchanges over a period.
type controlStats struct {
	Requests int
	Errors   int
	FirstErr error
	P50, P99 time.Duration
	Max      time.Duration
}

func (s controlStats) String() string {
	str := fmt.Sprintf("%d requests, %d errors, p50 %v, p99 %v, max %v", s.Requests, s.Errors,
		s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.Max.Round(time.Microsecond))
	if s.FirstErr != nil {
		str += fmt.Sprintf(" (first error: %v)", s.FirstErr)
	}
	return str
}

// startControl connects a control client to addr with framing f and
// starts its exchanges; it is stopped when the test ends if not before.
// The server must answer a message with the message itself (Echo) or its
// upper case (Upper): the control messages are upper case.
func startControl(t testing.TB, addr string, f frame.Framing) *controlClient {
	t.Helper()
	return startControlTLS(t, addr, f, nil)
}

// startControlTLS is startControl with a TLS client configuration, for a
// tls:// address.
func startControlTLS(t testing.TB, addr string, f frame.Framing, cfg *tls.Config) *controlClient {
	t.Helper()
	c := &controlClient{
		addr:  addr,
		d:     porta.Dialer{Framing: f, Timeout: controlTimeout, TLSConfig: cfg},
		stopc: make(chan struct{}),
		done:  make(chan struct{}),
	}
	cc, err := c.dial()
	if err != nil {
		t.Fatalf("control client: %v", err)
	}
	go c.run(cc)
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *controlClient) dial() (*porta.ClientConn, error) {
	return c.d.DialContext(context.Background(), c.addr)
}

func (c *controlClient) run(cc *porta.ClientConn) {
	defer close(c.done)
	defer func() {
		if cc != nil {
			cc.Close()
		}
	}()
	tick := time.NewTicker(controlInterval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-c.stopc:
			return
		case <-tick.C:
		}
		if cc == nil {
			var err error
			if cc, err = c.dial(); err != nil {
				c.record(0, err)
				continue
			}
		}
		msg := []byte(fmt.Sprintf("CTL-%08d", i))
		start := time.Now()
		cc.SetDeadline(start.Add(controlTimeout))
		reply, err := cc.Exchange(msg)
		d := time.Since(start)
		if err == nil && !bytes.Equal(reply, msg) {
			err = fmt.Errorf("reply %q to %q", reply, msg)
		}
		if err != nil {
			cc.Close()
			cc = nil
		}
		c.record(d, err)
	}
}

func (c *controlClient) record(d time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errs++
		if c.firstErr == nil {
			c.firstErr = err
		}
		return
	}
	c.lat = append(c.lat, d)
}

// cut returns the statistics since the previous cut (or the start) and
// starts a new period.
func (c *controlClient) cut() controlStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := controlStats{Requests: len(c.lat) + c.errs, Errors: c.errs, FirstErr: c.firstErr}
	lat := slices.Clone(c.lat)
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		s.P50 = lat[(n-1)*50/100]
		s.P99 = lat[(n-1)*99/100]
		s.Max = lat[n-1]
	}
	c.lat, c.errs, c.firstErr = c.lat[:0], 0, nil
	return s
}

// stop ends the exchanges, closes the connection and returns the
// statistics since the last cut. Later calls return the same.
func (c *controlClient) stop() controlStats {
	c.once.Do(func() {
		close(c.stopc)
		<-c.done
		c.final = c.cut()
	})
	return c.final
}

// checkControl fails the test if the control client saw an error, made
// too few requests to tell anything, or had a p99 latency under load more
// than controlSlack worse than its baseline; it logs both.
func checkControl(t testing.TB, what string, base, load controlStats) {
	t.Helper()
	t.Logf("%s: control client baseline: %v", what, base)
	t.Logf("%s: control client under load: %v", what, load)
	if base.Errors > 0 || load.Errors > 0 {
		t.Errorf("%s: control client errors: %d at baseline, %d under load (first: %v, %v)",
			what, base.Errors, load.Errors, base.FirstErr, load.FirstErr)
	}
	if load.Requests < 10 {
		t.Errorf("%s: control client made only %d requests under load", what, load.Requests)
	}
	if load.P99 > base.P99+controlSlack {
		t.Errorf("%s: control client p99 %v under load, baseline %v: more than %v worse", what, load.P99, base.P99, controlSlack)
	}
}

// controlBaseline runs the control client alone for d and returns its
// statistics: the baseline of checkControl.
func controlBaseline(c *controlClient, d time.Duration) controlStats {
	c.cut()
	time.Sleep(d)
	return c.cut()
}

// isReset reports whether err is the peer resetting the connection or a
// write to a connection the peer has closed.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// waitOpen waits up to settleTimeout until the server has exactly open
// connections open, and fails the test if it does not get there.
func waitOpen(t testing.TB, s *porta.Server, open int64) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for s.Stats().ConnsOpen != open {
		if time.Now().After(deadline) {
			t.Errorf("%d connections open after %v, want %d", s.Stats().ConnsOpen, settleTimeout, open)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// isTimeout reports whether err is a passed deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
