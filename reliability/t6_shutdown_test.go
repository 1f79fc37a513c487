package reliability_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

// T6: graceful shutdown of porta serve under pipelined load. Whatever the
// moment of the SIGTERM, every message the server counted as received is
// answered in full (the replies the clients received, all complete, add up
// to messages_in and messages_out of the final "stopped" line), the
// server stops listening and hangs up idle connections within 100 ms of
// acting on the signal, removes its Unix socket, and exits 0 within the
// drain timeout + 1 s. A frame held open past the drain timeout is cut at
// it (exit status still 0); a second signal stops the server at once
// (exit status 1). Requests the server never read are not lost replies:
// they were never received.
const (
	t6Iterations  = 20
	t6Clients     = 200                    // pipelining clients; every fourth on the Unix socket
	t6IdleClients = 10                     // idle between frames at the signal; half on the Unix socket
	t6Window      = 32                     // replies a pipelining client may be waiting for
	t6Batch       = 4                      // most requests in one batch
	t6Interval    = 20 * time.Millisecond  // between batches: 200 requests/s per client
	t6MinLoad     = 200 * time.Millisecond // the signal comes at a random moment
	t6MaxLoad     = 800 * time.Millisecond // between these, after the load starts
	t6Drain       = 2 * time.Second        // --drain-timeout of the iterations
	t6Prompt      = 100 * time.Millisecond // listener closed, idle connections closed
	t6ExitSlack   = time.Second            // exit within drain timeout + this
	t6IOTimeout   = 15 * time.Second       // bounds every client read and write
	t6ProbeFor    = t6Drain + t6ExitSlack  // the longest the observer polls
)

// procPipeliner is a client that pipelines requests on one connection: a
// writer sends a batch of up to t6Batch requests every t6Interval, keeping
// at most t6Window unanswered, and a reader checks each reply against its
// request, until the server closes the connection.
type procPipeliner struct {
	id   int
	conn net.Conn

	// Written by the reader, read after done.
	replies   int       // complete replies, each equal to its request
	truncated int       // a partial reply at the end of the stream
	mismatch  string    // the first reply that differed from its request
	readErr   error     // what ended the stream, nil for a clean end
	endAt     time.Time // when the stream ended
	writeErr  error     // written by the writer

	done chan struct{} // closed when reader and writer have returned
}

// procPipeMsg is request seq of client id: unique, of varying length.
func procPipeMsg(dst []byte, id, seq int) []byte {
	dst = fmt.Appendf(dst, "c%d-%d-", id, seq)
	for i := range (seq*7 + id) % 64 {
		dst = append(dst, byte('a'+(seq+i)%26))
	}
	return dst
}

// procStartPipeliner dials addr and starts pipelining on it.
func procStartPipeliner(t *testing.T, id int, addr porta.Addr) *procPipeliner {
	t.Helper()
	c, err := net.DialTimeout(addr.Network, addr.Address, 5*time.Second)
	if err != nil {
		t.Fatalf("client %d: %v", id, err)
	}
	p := &procPipeliner{id: id, conn: c, done: make(chan struct{})}
	tokens := make(chan struct{}, t6Window)
	for range t6Window {
		tokens <- struct{}{}
	}
	readerDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // reader
		defer wg.Done()
		defer close(readerDone)
		c.SetReadDeadline(time.Now().Add(t6IOTimeout))
		br := bufio.NewReaderSize(c, 16<<10)
		var want []byte
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				if len(line) > 0 {
					p.truncated++
				}
				if err != io.EOF {
					p.readErr = err
				}
				break
			}
			want = procPipeMsg(want[:0], id, p.replies)
			if !bytes.Equal(line[:len(line)-1], want) {
				p.mismatch = fmt.Sprintf("reply %d = %q, want %q", p.replies, line, want)
				break
			}
			p.replies++
			tokens <- struct{}{} // never blocks: one token per request sent
		}
		p.endAt = time.Now()
	}()
	go func() { // writer
		defer wg.Done()
		tick := time.NewTicker(t6Interval)
		defer tick.Stop()
		var buf []byte
		for seq := 0; ; {
			select {
			case <-tick.C:
			case <-readerDone:
				return
			}
			select {
			case <-tokens:
			case <-readerDone:
				return
			}
			n := 1
		more:
			for n < t6Batch {
				select {
				case <-tokens:
					n++
				default:
					break more
				}
			}
			buf = buf[:0]
			for range n {
				buf = append(procPipeMsg(buf, id, seq), '\n')
				seq++
			}
			// In two writes split at a random byte, so that the server
			// often holds part of a frame when the signal comes.
			c.SetWriteDeadline(time.Now().Add(t6IOTimeout))
			cut := rand.N(len(buf)) + 1
			for _, part := range [][]byte{buf[:cut], buf[cut:]} {
				if _, err := c.Write(part); err != nil {
					p.writeErr = err
					return
				}
			}
		}
	}()
	go func() {
		wg.Wait()
		c.Close()
		close(p.done)
	}()
	return p
}

// procIdleClient is a connection that exchanged one message and then waits,
// idle between frames, for the server to close it.
type procIdleClient struct {
	conn  net.Conn
	endAt time.Time // when its read ended
	err   error     // what ended it, nil for a clean end of stream
	done  chan struct{}
}

func procStartIdle(t *testing.T, id int, addr porta.Addr) *procIdleClient {
	t.Helper()
	c, err := net.DialTimeout(addr.Network, addr.Address, 5*time.Second)
	if err != nil {
		t.Fatalf("idle client %d: %v", id, err)
	}
	c.SetDeadline(time.Now().Add(t6IOTimeout))
	msg := fmt.Sprintf("idle %d", id)
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		t.Fatalf("idle client %d: %v", id, err)
	}
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != msg+"\n" {
		t.Fatalf("idle client %d: reply %q, %v", id, line, err)
	}
	ic := &procIdleClient{conn: c, done: make(chan struct{})}
	go func() {
		defer close(ic.done)
		defer c.Close()
		n, err := br.Read(make([]byte, 1))
		ic.endAt = time.Now()
		if n > 0 {
			err = errors.New("unexpected data")
		} else if err == io.EOF {
			err = nil
		}
		ic.err = err
	}()
	return ic
}

// The T6 observer is the test binary run again as a separate, lightly
// loaded process (TestT6Observer), holding the idle connections and probing
// the listeners. The test process itself runs 400 busy client goroutines,
// under -race, on the same two cores as the server: its own scheduling
// delays would be measured along with porta's.
//
// After the signal the observer polls, about every millisecond, each
// listener (a connection attempt) and each idle connection (a non-blocking
// peek for end of stream), and reports for each the start of the last poll
// that found it open and the end of the first poll that found it closed.
// The first is proof that it was still open then; the second is when it
// was seen closed, which a stall of the observer itself can delay.
//
// Protocol: the environment variable procObserverEnv holds
// "TCPADDR|UNIXPATH|N". The observer opens N idle connections (alternating
// TCP and Unix), exchanges one message on each, prints "ready", and waits
// for a line on stdin, which the test writes right after signalling the
// server. It then polls until everything is closed (at most t6ProbeFor)
// and prints one line for each listener and connection, with wall-clock
// times in Unix nanoseconds (0 for never):
//
//	T6OBS probe NETWORK LASTOPEN FIRSTCLOSED HOW
//	T6OBS idle I LASTOPEN FIRSTCLOSED HOW
//
// where HOW is the error that showed it closed ("EOF" for a clean end of
// stream), or "open" if it never closed.
const procObserverEnv = "PORTA_T6_OBSERVER"

// procWatch is one thing the observer polls.
type procWatch struct {
	kind, name          string
	poll                func() (open bool, how string)
	lastOpen, firstShut time.Time
	how                 string
}

// TestT6Observer is the observer process of TestT6GracefulShutdown; run
// directly it skips.
func TestT6Observer(t *testing.T) {
	spec := os.Getenv(procObserverEnv)
	if spec == "" {
		t.Skip("the observer process of TestT6GracefulShutdown; runs only when started by it")
	}
	parts := strings.Split(spec, "|")
	var n int
	if len(parts) != 3 {
		t.Fatalf("bad %s %q", procObserverEnv, spec)
	}
	if _, err := fmt.Sscan(parts[2], &n); err != nil {
		t.Fatalf("bad %s %q", procObserverEnv, spec)
	}
	addrs := []porta.Addr{{Network: "tcp", Address: parts[0]}, {Network: "unix", Address: parts[1]}}
	var watches []*procWatch
	for _, a := range addrs {
		watches = append(watches, &procWatch{kind: "probe", name: a.Network, poll: func() (bool, string) {
			c, err := net.DialTimeout(a.Network, a.Address, 200*time.Millisecond)
			if err != nil {
				return false, err.Error()
			}
			c.Close()
			return true, ""
		}})
	}
	for i := range n {
		a := addrs[i%2]
		c, err := net.DialTimeout(a.Network, a.Address, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(t6IOTimeout))
		msg := fmt.Sprintf("observer %d", i)
		fmt.Fprintf(c, "%s\n", msg)
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != msg+"\n" {
			t.Fatalf("idle connection %d: reply %q, %v", i, line, err)
		}
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		watches = append(watches, &procWatch{kind: "idle", name: fmt.Sprint(i), poll: func() (bool, string) {
			var open bool
			var how string
			buf := make([]byte, 1)
			rc.Control(func(fd uintptr) {
				nr, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				switch {
				case err == syscall.EAGAIN:
					open = true
				case err != nil:
					how = err.Error()
				case nr == 0:
					how = "EOF"
				default:
					how = "unexpected data"
				}
			})
			return open, how
		}})
	}
	fmt.Println("T6OBS ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatalf("reading the go line: %v", err)
	}
	for start := time.Now(); time.Since(start) < t6ProbeFor; time.Sleep(time.Millisecond) {
		left := 0
		for _, w := range watches {
			if !w.firstShut.IsZero() {
				continue
			}
			at := time.Now()
			if open, how := w.poll(); open {
				w.lastOpen = at
				left++
			} else {
				w.firstShut, w.how = time.Now(), how
			}
		}
		if left == 0 {
			break
		}
	}
	ns := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	for _, w := range watches {
		if w.firstShut.IsZero() {
			w.how = "open"
		}
		fmt.Printf("T6OBS %s %s %d %d %s\n", w.kind, w.name, ns(w.lastOpen), ns(w.firstShut), w.how)
	}
}

// procObserver is a running observer process.
type procObserver struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *procLog
	done  chan struct{}
}

// procStartObserver starts an observer with n idle connections to the
// listeners tcp and unix, and waits until they are open.
func procStartObserver(t *testing.T, tcp, unix porta.Addr, n int) *procObserver {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestT6Observer$", "-test.v", "-test.timeout=60s")
	// A -race binary sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d", procObserverEnv, tcp.Address, unix.Address, n),
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	o := &procObserver{cmd: cmd, stdin: stdin, out: procNewLog(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		o.out.read(stdout)
		cmd.Wait()
		close(o.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-o.done:
		case <-time.After(t6IOTimeout):
			cmd.Process.Kill()
			<-o.done
		}
	})
	if _, ok := o.out.waitFor("T6OBS ready", 15*time.Second); !ok {
		t.Fatalf("the observer process did not get ready:\n%s", o.out)
	}
	return o
}

// start tells the observer that the signal was sent.
func (o *procObserver) start() { io.WriteString(o.stdin, "go\n") }

// procObserved is what the observer saw of one listener or connection.
type procObserved struct {
	lastOpen  time.Time // start of the last poll that found it open; zero if none
	firstShut time.Time // end of the first poll that found it closed; zero if none
	how       string    // the error that showed it closed, "EOF", or "open"
}

// results waits for the observer to finish and returns what it saw of the
// listeners, by network, and of the idle connections, in order.
func (o *procObserver) results(t *testing.T) (map[string]procObserved, []procObserved) {
	t.Helper()
	select {
	case <-o.done:
	case <-time.After(t6IOTimeout):
		t.Fatalf("the observer process did not finish:\n%s", o.out)
	}
	probes := map[string]procObserved{}
	var idle []procObserved
	wall := func(ns int64) time.Time {
		if ns == 0 {
			return time.Time{}
		}
		return time.Unix(0, ns)
	}
	for _, ln := range o.out.snapshot() {
		f := strings.SplitN(ln.text, " ", 6)
		if len(f) != 6 || f[0] != "T6OBS" {
			continue
		}
		var open, shut int64
		if _, err := fmt.Sscan(f[3], &open); err != nil {
			t.Fatalf("bad observer line %q", ln.text)
		}
		if _, err := fmt.Sscan(f[4], &shut); err != nil {
			t.Fatalf("bad observer line %q", ln.text)
		}
		r := procObserved{wall(open), wall(shut), f[5]}
		switch f[1] {
		case "probe":
			probes[f[2]] = r
		case "idle":
			idle = append(idle, r)
		}
	}
	if len(probes) != 2 {
		t.Fatalf("the observer reported %d listeners, want 2:\n%s", len(probes), o.out)
	}
	return probes, idle
}

// procShutdownRun is what one T6 iteration measured.
type procShutdownRun struct {
	signalAfter time.Duration // of load
	replies     uint64        // received by the clients
	lost        int64         // messages_out minus replies received
	truncated   int
	delivery    time.Duration // SIGTERM sent -> "shutting down" logged
	// From "shutting down" to the last time a listener (TCP or Unix) or
	// idle connection was seen open, and to the first time it was seen
	// closed; the slowest of each.
	listenerOpen, listenerShut time.Duration
	idleOpen, idleShut         time.Duration
	exit                       time.Duration // SIGTERM sent -> exit
}

func TestT6GracefulShutdown(t *testing.T) {
	var runs []procShutdownRun
	for i := range t6Iterations {
		ok := t.Run(fmt.Sprintf("iteration-%02d", i), func(t *testing.T) {
			runs = append(runs, procShutdownIteration(t))
		})
		if !ok {
			break
		}
	}
	if len(runs) == 0 {
		return
	}
	var worst procShutdownRun
	var total uint64
	var lost int64
	var truncated int
	for _, r := range runs {
		total += r.replies
		lost += r.lost
		truncated += r.truncated
		worst.delivery = max(worst.delivery, r.delivery)
		worst.listenerOpen = max(worst.listenerOpen, r.listenerOpen)
		worst.listenerShut = max(worst.listenerShut, r.listenerShut)
		worst.idleOpen = max(worst.idleOpen, r.idleOpen)
		worst.idleShut = max(worst.idleShut, r.idleShut)
		worst.exit = max(worst.exit, r.exit)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	t.Logf("%d iterations, %d clients + %d idle each: %d replies, %d lost, %d truncated", len(runs), t6Clients, t6IdleClients, total, lost, truncated)
	t.Logf("worst: signal delivery %s; after it, listener last seen open %s, first seen closed %s; idle connection last seen open %s, first seen closed %s; exit %s after SIGTERM",
		ms(worst.delivery), ms(worst.listenerOpen), ms(worst.listenerShut), ms(worst.idleOpen), ms(worst.idleShut), ms(worst.exit))
}

func procShutdownIteration(t *testing.T) procShutdownRun {
	sock := filepath.Join(t.TempDir(), "porta.sock")
	srv := procStartServe(t, nil, []string{"127.0.0.1:0", "unix://" + sock},
		"--log-format", "json", "--framing", "line", "--drain-timeout", t6Drain.String())
	tcp, unix := srv.addrs[0], srv.addrs[1]
	if tcp.Network != "tcp" || unix.Network != "unix" {
		t.Fatalf("listening on %v, want a TCP and a Unix address", srv.addrs)
	}

	obs := procStartObserver(t, tcp, unix, t6IdleClients)
	clients := make([]*procPipeliner, 0, t6Clients)
	t.Cleanup(func() {
		// A failed iteration: make sure every goroutine ends.
		for _, c := range clients {
			c.conn.Close()
			<-c.done
		}
	})
	for i := range t6Clients {
		a := tcp
		if i%4 == 3 {
			a = unix
		}
		clients = append(clients, procStartPipeliner(t, i, a))
	}

	load := t6MinLoad + rand.N(t6MaxLoad-t6MinLoad)
	time.Sleep(load)
	sigAt := srv.signal(t, syscall.SIGTERM)
	obs.start()
	run := procShutdownRun{signalAfter: load}

	if !srv.waitExit(t6Drain + 10*time.Second) {
		t.Fatalf("porta serve did not exit within %v of SIGTERM", t6Drain+10*time.Second)
	}
	run.exit = srv.exitedAt.Sub(sigAt)
	if srv.exitCode != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0\nstderr:\n%s", srv.exitCode, srv.stderr)
	}
	if run.exit > t6Drain+t6ExitSlack {
		t.Errorf("exited %v after SIGTERM, want <= drain timeout %v + %v", run.exit, t6Drain, t6ExitSlack)
	}
	if srv.stderr.count("drain timeout") > 0 {
		t.Logf("the drain timed out: some connection was still busy %v after SIGTERM", t6Drain)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the Unix socket file is still there after exit: %v", err)
	}

	// Listeners refused new connections, and idle connections were closed,
	// promptly, as the observer saw them. The times are measured from the
	// server's "shutting down" line, the moment porta acts on the signal:
	// the delivery of the signal itself (kernel and Go runtime) is reported
	// apart, as on a shared machine it takes tens of milliseconds at times
	// even with no load at all, and seconds when other jobs starve the
	// machine. Times are wall clock.
	recs := srv.stderr.jsonRecords("shutting down")
	if len(recs) != 1 {
		t.Fatalf("want one \"shutting down\" line on stderr:\n%s", srv.stderr)
	}
	handledAt, ok := recs[0].time()
	if !ok {
		t.Fatalf("\"shutting down\" line without a time: %v", recs[0])
	}
	run.delivery = handledAt.Sub(sigAt.Round(0)) // bounded by the exit check above
	probes, idle := obs.results(t)
	// check judges one listener or idle connection: it must have been
	// seen closed, and must not have been seen open more than t6Prompt
	// after the server acted on the signal.
	check := func(what string, o procObserved, wantHow ...string) (open, shut time.Duration) {
		if !o.lastOpen.IsZero() {
			open = o.lastOpen.Sub(handledAt)
		}
		shut = o.firstShut.Sub(handledAt)
		if o.how == "open" {
			t.Errorf("%s still open %v after SIGTERM", what, t6ProbeFor)
			return open, shut
		}
		if !slices.ContainsFunc(wantHow, func(h string) bool { return strings.Contains(o.how, h) }) {
			t.Errorf("%s: %s, want %q", what, o.how, wantHow)
		}
		if open > t6Prompt {
			t.Errorf("%s was still open %v after the server acted on SIGTERM, want closed within %v", what, open, t6Prompt)
		}
		return open, shut
	}
	for network, p := range probes {
		// Refused, or reset by a listener closing under the probe.
		open, shut := check(network+" listener", p, syscall.ECONNREFUSED.Error(), syscall.ENOENT.Error(), syscall.ECONNRESET.Error())
		run.listenerOpen = max(run.listenerOpen, open)
		run.listenerShut = max(run.listenerShut, shut)
	}
	if len(idle) != t6IdleClients {
		t.Fatalf("the observer reported %d idle connections, want %d", len(idle), t6IdleClients)
	}
	for i, c := range idle {
		open, shut := check(fmt.Sprintf("idle connection %d", i), c, "EOF")
		run.idleOpen = max(run.idleOpen, open)
		run.idleShut = max(run.idleShut, shut)
	}

	// The clients end when the server closes their connections.
	timeout := time.After(t6IOTimeout)
	for _, c := range clients {
		select {
		case <-c.done:
		case <-timeout:
			t.Fatalf("client %d still running %v after the server exited", c.id, t6IOTimeout)
		}
	}
	resets := 0
	run.replies = t6IdleClients // the observer's exchanges
	for _, c := range clients {
		run.replies += uint64(c.replies)
		run.truncated += c.truncated
		if c.mismatch != "" {
			t.Errorf("client %d: %s", c.id, c.mismatch)
		}
		if c.readErr != nil {
			if !procIsReset(c.readErr) {
				t.Errorf("client %d: reading: %v, want end of stream", c.id, c.readErr)
			}
			resets++
		}
		if c.writeErr != nil && !procIsReset(c.writeErr) {
			t.Errorf("client %d: writing: %v, want success or a reset", c.id, c.writeErr)
		}
	}
	if run.truncated > 0 {
		t.Errorf("%d replies truncated mid-frame", run.truncated)
	}
	st, ok := srv.stopped()
	if !ok {
		t.Fatalf("no \"stopped\" line with the counts on stderr:\n%s", srv.stderr)
	}
	run.lost = int64(st.messagesOut) - int64(run.replies)
	if st.messagesIn != run.replies || st.messagesOut != run.replies {
		t.Errorf("clients received %d complete replies; server counted messages_in=%d messages_out=%d (lost %d)",
			run.replies, st.messagesIn, st.messagesOut, run.lost)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	t.Logf("SIGTERM after %v of load: %d replies (= messages_in %d = messages_out %d), %d resets; signal delivered in %s; listener open %s / closed %s, idle open %s / closed %s after it; exit %s after SIGTERM",
		load.Round(time.Millisecond), run.replies, st.messagesIn, st.messagesOut, resets, ms(run.delivery),
		ms(run.listenerOpen), ms(run.listenerShut), ms(run.idleOpen), ms(run.idleShut), ms(run.exit))
	return run
}

// TestT6DrainTimeout: a client that keeps a frame open past the drain
// timeout is closed at the timeout, and the exit status is still 0.
func TestT6DrainTimeout(t *testing.T) {
	const drain = time.Second
	sock := filepath.Join(t.TempDir(), "porta.sock")
	srv := procStartServe(t, nil, []string{"127.0.0.1:0", "unix://" + sock},
		"--log-format", "json", "--framing", "line", "--drain-timeout", drain.String(), "--frame-timeout", "0")
	tcp, unix := srv.addrs[0], srv.addrs[1]

	// Some load, which must drain in full, and one client holding half a
	// frame on each transport.
	clients := make([]*procPipeliner, 20)
	for i := range clients {
		clients[i] = procStartPipeliner(t, i, []porta.Addr{tcp, unix}[i%2])
	}
	var holders []*procIdleClient
	for i, a := range []porta.Addr{tcp, unix} {
		h := procStartIdle(t, 100+i, a)
		if _, err := io.WriteString(h.conn, "half a fra"); err != nil {
			t.Fatal(err)
		}
		holders = append(holders, h)
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.conn.Close()
			<-c.done
		}
		for _, h := range holders {
			h.conn.Close()
			<-h.done
		}
	})
	time.Sleep(300 * time.Millisecond)
	sigAt := srv.signal(t, syscall.SIGTERM)
	if !srv.waitExit(drain + 10*time.Second) {
		t.Fatalf("porta serve did not exit within %v of SIGTERM", drain+10*time.Second)
	}
	exit := srv.exitedAt.Sub(sigAt)
	if srv.exitCode != 0 {
		t.Errorf("exit status %d after the drain timeout, want 0 (docs/cli.md)\nstderr:\n%s", srv.exitCode, srv.stderr)
	}
	if exit > drain+t6ExitSlack {
		t.Errorf("exited %v after SIGTERM, want <= drain timeout %v + %v", exit, drain, t6ExitSlack)
	}
	if srv.stderr.count("drain timeout") != 1 {
		t.Errorf("no drain-timeout warning on stderr:\n%s", srv.stderr)
	}
	for i, h := range holders {
		<-h.done
		d := h.endAt.Sub(sigAt)
		// The connection is cut (end of stream or reset) at the timeout,
		// not before and not much after.
		if h.err != nil && !procIsReset(h.err) {
			t.Errorf("half-frame client %d: %v, want end of stream or reset", i, h.err)
		}
		if d < drain-50*time.Millisecond || d > drain+t6ExitSlack {
			t.Errorf("half-frame client %d closed %v after SIGTERM, want at the drain timeout %v", i, d, drain)
		}
		t.Logf("half-frame client %d closed %v after SIGTERM (%v)", i, d.Round(time.Millisecond), h.err)
	}
	var replies uint64 = uint64(len(holders)) // one exchange each
	truncated := 0
	for _, c := range clients {
		<-c.done
		replies += uint64(c.replies)
		truncated += c.truncated
		if c.mismatch != "" {
			t.Errorf("client %d: %s", c.id, c.mismatch)
		}
	}
	st, ok := srv.stopped()
	if !ok {
		t.Fatalf("no \"stopped\" line with the counts on stderr:\n%s", srv.stderr)
	}
	if truncated > 0 || st.messagesIn != replies || st.messagesOut != replies {
		t.Errorf("clients received %d complete replies (%d truncated); server counted messages_in=%d messages_out=%d",
			replies, truncated, st.messagesIn, st.messagesOut)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the Unix socket file is still there after exit: %v", err)
	}
	t.Logf("drain timeout %v: exit status %d %v after SIGTERM; %d replies = messages_out %d", drain, srv.exitCode, exit.Round(time.Millisecond), replies, st.messagesOut)
}

// TestT6SecondSignal: a second signal during the drain stops the server
// within a second (exit status 1, as docs/cli.md says).
func TestT6SecondSignal(t *testing.T) {
	for _, second := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(second.String(), func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "porta.sock")
			srv := procStartServe(t, nil, []string{"127.0.0.1:0", "unix://" + sock},
				"--log-format", "json", "--framing", "line", "--drain-timeout", "30s", "--frame-timeout", "0")
			h := procStartIdle(t, 0, srv.addrs[0])
			t.Cleanup(func() { h.conn.Close(); <-h.done })
			if _, err := io.WriteString(h.conn, "half a fra"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // for the server to read it
			srv.signal(t, syscall.SIGTERM)
			if _, ok := srv.stderr.waitFor(`"shutting down"`, 5*time.Second); !ok {
				t.Fatalf("no shutting-down line after SIGTERM:\n%s", srv.stderr)
			}
			time.Sleep(200 * time.Millisecond)
			if !srv.running() {
				t.Fatalf("exited without waiting for the half frame:\n%s", srv.stderr)
			}
			at := srv.signal(t, second)
			if !srv.waitExit(5 * time.Second) {
				t.Fatalf("still running 5 s after a second signal")
			}
			d := srv.exitedAt.Sub(at)
			if d > time.Second {
				t.Errorf("exited %v after the second signal, want <= 1s", d)
			}
			if srv.exitCode != 1 {
				t.Errorf("exit status %d after a second signal, want 1 (docs/cli.md)", srv.exitCode)
			}
			if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the Unix socket file is still there after exit: %v", err)
			}
			t.Logf("second %v: exit status %d %v after it", second, srv.exitCode, d.Round(time.Millisecond))
		})
	}
}
