//go:build linux

package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// T13: network faults injected with iptables, inside a network namespace
// of the test's own, so that the host's rules are never touched. The
// server and the client run in this process (so -race covers them); their
// sockets are made on a thread switched into the namespace.
const (
	t13ClientError = time.Second      // reset -> client error
	t13Settle      = 2 * time.Second  // reset -> server closed, goroutines and fds back
	t13Idle        = 2 * time.Second  // server IdleTimeout in the blackhole case
	t13IdleSlack   = time.Second      // closed at idle timeout ± this
	t13ClientWait  = time.Second      // the blackholed client's deadline
	t13LossMsgs    = 10000            // echoed through 5 % loss
	t13LossWindow  = 64               // unanswered messages at most
	t13LossTimeout = 40 * time.Second // for the whole loss case
	t13Goroutines  = 2                // ± of baseline
)

// procNetns is a network namespace made for one test.
type procNetns struct {
	name string
}

// procNewNetns makes a network namespace with its loopback up, deleted
// when the test ends, and checks that iptables works in it. It skips the
// test when that cannot be done: not root, no ip or iptables, or no
// namespaces.
func procNewNetns(t *testing.T) *procNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("T13 needs root: it makes a network namespace and sets iptables rules in it")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("T13 needs ip (iproute2)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("T13 needs iptables (apt-get install -y iptables; .ci/run installs it)")
	}
	n := &procNetns{name: fmt.Sprintf("porta-t13-%d-%08x", os.Getpid(), rand.Uint32())}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Skipf("T13 cannot make a network namespace: ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	if out, err := n.exec("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("bringing lo up in %s: %v: %s", n.name, err, out)
	}
	if out, err := n.exec("iptables", "-w", "-L", "INPUT", "-n"); err != nil {
		t.Skipf("T13: iptables does not work in a network namespace here: %v: %s", err, out)
	}
	return n
}

// exec runs a command inside the namespace.
func (n *procNetns) exec(args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
}

// iptables runs iptables inside the namespace and returns when the rule is
// in place.
func (n *procNetns) iptables(t *testing.T, args ...string) {
	t.Helper()
	if out, err := n.exec(append([]string{"iptables", "-w"}, args...)...); err != nil {
		t.Fatalf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// flush removes the namespace's INPUT rules, when the test ends.
func (n *procNetns) flushLater(t *testing.T) {
	t.Cleanup(func() {
		if out, err := n.exec("iptables", "-w", "-F", "INPUT"); err != nil {
			t.Errorf("iptables -F INPUT: %v: %s", err, out)
		}
	})
}

// hits returns the packet count of the INPUT rule whose text contains
// match, such as "REJECT" or "statistic".
func (n *procNetns) hits(t *testing.T, match string) uint64 {
	t.Helper()
	out, err := n.exec("iptables", "-w", "-L", "INPUT", "-v", "-n", "-x")
	if err != nil {
		t.Fatalf("iptables -L: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(line, match) {
			if p, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				return p
			}
		}
	}
	t.Fatalf("no INPUT rule matching %q:\n%s", match, out)
	return 0
}

// do runs fn on an OS thread switched into the namespace: sockets made by
// fn belong to the namespace and can be used from any goroutine.
func (n *procNetns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine, and
		// no other goroutine ever runs on it in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// procFaultServer is an in-process server listening inside a namespace.
type procFaultServer struct {
	srv  *porta.Server
	addr string // host:port
	port string
	done chan error
}

func procStartFaultServer(t *testing.T, n *procNetns, srv *porta.Server) *procFaultServer {
	t.Helper()
	var l net.Listener
	if err := n.do(func() (err error) {
		l, err = porta.Listen("127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &procFaultServer{srv: srv, addr: l.Addr().String(), done: make(chan error, 1)}
	_, s.port, _ = net.SplitHostPort(s.addr)
	go func() { s.done <- srv.Serve(l) }()
	// Serving, with its fixed goroutines and descriptors, before the
	// caller measures its baseline.
	for deadline := time.Now().Add(5 * time.Second); !srv.Ready(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not start serving")
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-s.done; !errors.Is(err, porta.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// dial connects to the server from inside the namespace.
func (s *procFaultServer) dial(t *testing.T, n *procNetns) net.Conn {
	t.Helper()
	var c net.Conn
	if err := n.do(func() (err error) {
		c, err = net.DialTimeout("tcp", s.addr, 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// procBaseline is the goroutine and descriptor count of this process.
type procBaseline struct{ goroutines, fds int }

func procMeasure(t *testing.T) procBaseline {
	t.Helper()
	fds, err := procFDs(0)
	if err != nil {
		t.Fatal(err)
	}
	return procBaseline{runtime.NumGoroutine(), fds}
}

// backWithin waits up to d for goroutines (± t13Goroutines) and
// descriptors (exactly) to return to b, and returns how long it took.
func (b procBaseline) backWithin(t *testing.T, since time.Time, d time.Duration) time.Duration {
	t.Helper()
	var now procBaseline
	for deadline := since.Add(d); ; time.Sleep(10 * time.Millisecond) {
		now = procMeasure(t)
		if procAbs(now.goroutines-b.goroutines) <= t13Goroutines && now.fds == b.fds {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Errorf("%v after the fault: %d goroutines (baseline %d ± %d), %d descriptors (baseline %d)",
				d, now.goroutines, b.goroutines, t13Goroutines, now.fds, b.fds)
			return time.Since(since)
		}
	}
}

// waitClosed waits up to d for the server to have no open connection and
// returns when that was seen.
func (s *procFaultServer) waitClosed(d time.Duration) (time.Time, bool) {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		if s.srv.Stats().ConnsOpen == 0 {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
	}
}

func TestT13FaultInjection(t *testing.T) {
	n := procNewNetns(t)
	t.Run("reset", func(t *testing.T) { procFaultReset(t, n) })
	t.Run("blackhole", func(t *testing.T) { procFaultBlackhole(t, n) })
	t.Run("loss", func(t *testing.T) { procFaultLoss(t, n) })
}

// procFaultReset: a reset in the middle of a stream. Once the connection
// carries traffic, every packet from the server's port is rejected with a
// TCP reset, which resets the server's socket; the client's next segment
// then meets no socket and the server's kernel resets the client. (RST
// packets are let through: the reject rule would drop the server's reset
// to the client too, as it comes from the same port.)
func procFaultReset(t *testing.T, n *procNetns) {
	s := procStartFaultServer(t, n, &porta.Server{Framing: frame.Line})
	base := procMeasure(t)
	c := s.dial(t, n)
	n.flushLater(t)

	type result struct {
		at  time.Time
		err error
	}
	ended := make(chan result, 2)
	c.SetDeadline(time.Now().Add(10 * time.Second)) // far beyond the bound: a timeout fails
	replies := make(chan struct{}, 1)
	go func() { // writer: a request every 5 ms
		for seq := 0; ; seq++ {
			if _, err := fmt.Fprintf(c, "m%d\n", seq); err != nil {
				ended <- result{time.Now(), err}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() { // reader: checks each reply
		br := bufio.NewReader(c)
		for seq := 0; ; seq++ {
			line, err := br.ReadString('\n')
			if err != nil {
				ended <- result{time.Now(), err}
				return
			}
			if want := fmt.Sprintf("m%d\n", seq); line != want {
				ended <- result{time.Now(), fmt.Errorf("reply %q, want %q", line, want)}
				return
			}
			select {
			case replies <- struct{}{}:
			default:
			}
		}
	}()
	select {
	case <-replies:
	case r := <-ended:
		t.Fatalf("before the fault: %v", r.err)
	}
	time.Sleep(100 * time.Millisecond)

	n.iptables(t, "-A", "INPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "ACCEPT")
	n.iptables(t, "-A", "INPUT", "-p", "tcp", "--sport", s.port, "-j", "REJECT", "--reject-with", "tcp-reset")
	faultAt := time.Now()

	first := <-ended
	c.Close() // stops the other goroutine
	<-ended
	clientAfter := first.at.Sub(faultAt)
	if !procIsReset(first.err) {
		t.Errorf("client: %v after %v, want a connection reset", first.err, clientAfter)
	} else if clientAfter > t13ClientError {
		t.Errorf("client saw the reset %v after the fault, want <= %v", clientAfter, t13ClientError)
	}
	closedAt, ok := s.waitClosed(t13Settle)
	if !ok {
		t.Fatalf("server still has %d connections open %v after the fault", s.srv.Stats().ConnsOpen, t13Settle)
	}
	st := s.srv.Stats()
	if st.Closed[porta.ClosePeer]+st.Closed[porta.CloseError] != 1 {
		t.Errorf("server closed the connection for %s, want peer_closed or error", procReasons(st))
	}
	back := base.backWithin(t, faultAt, t13Settle)
	if hits := n.hits(t, "REJECT"); hits == 0 {
		t.Errorf("the reject rule matched no packet: the fault was not injected")
	}
	t.Logf("reset: client got %q %v after the fault; server closed the connection (%s) after %v; goroutines and fds back after %v",
		first.err, clientAfter.Round(time.Millisecond), procReasons(st), closedAt.Sub(faultAt).Round(time.Millisecond), back.Round(time.Millisecond))
}

// procFaultBlackhole: the client's packets to the server vanish (a
// half-open connection). The server closes it at its idle timeout, and
// the client's own deadline reports a timeout rather than a hang.
func procFaultBlackhole(t *testing.T, n *procNetns) {
	s := procStartFaultServer(t, n, &porta.Server{Framing: frame.Line, IdleTimeout: t13Idle})
	base := procMeasure(t)
	nc := s.dial(t, n)
	n.flushLater(t)
	c := porta.NewClientConn(nc, &porta.Dialer{Framing: frame.Line})
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if reply, err := c.Exchange([]byte("hello")); err != nil || string(reply) != "hello" {
		t.Fatalf("exchange before the fault: %q, %v", reply, err)
	}
	lastRead := time.Now() // the server's last read was just before

	n.iptables(t, "-A", "INPUT", "-p", "tcp", "--dport", s.port, "-j", "DROP")
	faultAt := time.Now()

	c.SetDeadline(time.Now().Add(t13ClientWait))
	start := time.Now()
	reply, err := c.Exchange([]byte("ping"))
	waited := time.Since(start)
	switch {
	case err == nil:
		t.Errorf("client got a reply %q through the blackhole", reply)
	case !errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("client: %v after %v, want its deadline to pass", err, waited)
	case waited > t13ClientWait+500*time.Millisecond:
		t.Errorf("client reported the timeout after %v, want about %v", waited, t13ClientWait)
	}

	closedAt, ok := s.waitClosed(t13Idle + t13IdleSlack + time.Second)
	if !ok {
		t.Fatalf("server did not close the half-open connection within %v", t13Idle+t13IdleSlack+time.Second)
	}
	closedAfter := closedAt.Sub(lastRead)
	if closedAfter < t13Idle-t13IdleSlack || closedAfter > t13Idle+t13IdleSlack {
		t.Errorf("server closed the connection %v after its last read, want the idle timeout %v ± %v", closedAfter, t13Idle, t13IdleSlack)
	}
	st := s.srv.Stats()
	if st.Closed[porta.CloseIdle] != 1 {
		t.Errorf("server closed the connection for %s, want idle_timeout", procReasons(st))
	}
	nc.Close()
	back := base.backWithin(t, closedAt, t13Settle)
	if hits := n.hits(t, "DROP"); hits == 0 {
		t.Errorf("the drop rule matched no packet: the fault was not injected")
	}
	t.Logf("blackhole: client timed out after %v (%v); server closed the connection (%s) %v after its last read, %v after the fault; goroutines and fds back %v later",
		waited.Round(time.Millisecond), err, procReasons(st), closedAfter.Round(time.Millisecond), closedAt.Sub(faultAt).Round(time.Millisecond), back.Round(time.Millisecond))
}

// procFaultLoss: 5 % of the packets to the server are dropped; TCP
// retransmits, and every echo arrives intact and in order. Latency is
// reported, not asserted.
func procFaultLoss(t *testing.T, n *procNetns) {
	s := procStartFaultServer(t, n, &porta.Server{Framing: frame.Line})
	nc := s.dial(t, n)
	n.flushLater(t)
	retrans0 := procRetransSegs(t, n)
	n.iptables(t, "-A", "INPUT", "-p", "tcp", "--dport", s.port, "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP")

	start := time.Now()
	nc.SetDeadline(start.Add(t13LossTimeout))
	sent := make([]time.Time, t13LossMsgs)
	msg := func(dst []byte, seq int) []byte {
		dst = fmt.Appendf(dst, "%05d-", seq)
		for i := range 32 + seq%64 {
			dst = append(dst, byte('a'+(seq+i)%26))
		}
		return dst
	}
	tokens := make(chan struct{}, t13LossWindow)
	for range t13LossWindow {
		tokens <- struct{}{}
	}
	werr := make(chan error, 1)
	go func() {
		var buf []byte
		for seq := range t13LossMsgs {
			<-tokens
			buf = append(msg(buf[:0], seq), '\n')
			sent[seq] = time.Now()
			if _, err := nc.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	latencies := make([]time.Duration, 0, t13LossMsgs)
	br := bufio.NewReader(nc)
	var want []byte
	var readErr error
	for seq := range t13LossMsgs {
		line, err := br.ReadSlice('\n')
		if err != nil {
			readErr = fmt.Errorf("reply %d of %d: %w", seq, t13LossMsgs, err)
			break
		}
		if want = msg(want[:0], seq); !bytes.Equal(line[:len(line)-1], want) {
			readErr = fmt.Errorf("reply %d = %q, want %q", seq, line, want)
			break
		}
		latencies = append(latencies, time.Since(sent[seq]))
		tokens <- struct{}{}
	}
	elapsed := time.Since(start)
	if readErr != nil {
		nc.Close()
	}
	if err := <-werr; err != nil && readErr == nil {
		t.Errorf("writing: %v", err)
	}
	if readErr != nil {
		t.Fatalf("%v (after %v)", readErr, elapsed)
	}
	dropped := n.hits(t, "statistic")
	retrans := procRetransSegs(t, n) - retrans0
	if dropped == 0 {
		t.Errorf("the loss rule dropped no packet: the fault was not injected")
	}
	slices.Sort(latencies)
	t.Logf("loss: %d echoes intact and in order in %v through 5%% loss (%d packets dropped, %d segments retransmitted); latency p50 %v, p99 %v, max %v",
		len(latencies), elapsed.Round(time.Millisecond), dropped, retrans,
		procPercentile(latencies, 50).Round(time.Microsecond), procPercentile(latencies, 99).Round(time.Microsecond), latencies[len(latencies)-1].Round(time.Millisecond))
}

var procRetransRE = regexp.MustCompile(`(?m)^Tcp: .*$`)

// procRetransSegs returns the namespace's TCP RetransSegs counter.
func procRetransSegs(t *testing.T, n *procNetns) uint64 {
	t.Helper()
	out, err := n.exec("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("reading /proc/net/snmp: %v: %s", err, out)
	}
	lines := procRetransRE.FindAllString(string(out), 2)
	if len(lines) != 2 {
		t.Fatalf("no Tcp lines in /proc/net/snmp:\n%s", out)
	}
	names, values := strings.Fields(lines[0]), strings.Fields(lines[1])
	for i, name := range names {
		if name == "RetransSegs" && i < len(values) {
			v, _ := strconv.ParseUint(values[i], 10, 64)
			return v
		}
	}
	t.Fatalf("no RetransSegs in /proc/net/snmp:\n%s", out)
	return 0
}
