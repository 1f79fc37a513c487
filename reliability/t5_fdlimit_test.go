package reliability_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// T5: descriptor exhaustion and recovery. porta serve runs with
// RLIMIT_NOFILE = 256 and gets 300 connections: it runs out of
// descriptors, must neither crash nor spin nor flood its log while it
// cannot accept, and must accept again as soon as descriptors are free.
const (
	t5Limit        = 256                     // RLIMIT_NOFILE of the server, soft and hard
	t5Conns        = 300                     // connections opened
	t5Freed        = 50                      // served connections closed to recover
	t5CPUWindow    = 5 * time.Second         // CPU measured over this, while saturated
	t5MaxCPU       = 0.10                    // of one core, over t5CPUWindow
	t5FirstLogs    = 10                      // accept-error lines allowed in the first second
	t5LaterLogs    = 2                       // and in each second after it
	t5Recovery     = 1500 * time.Millisecond // closing -> echo on a new connection
	t5IOTimeout    = 30 * time.Second        // bounds every client read
	t5SettleWindow = 300 * time.Millisecond  // no new echo for this long: saturated
)

func TestT5FDExhaustion(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("T5 needs prlimit (util-linux) to start the server with RLIMIT_NOFILE=256")
	}
	limit := fmt.Sprintf("--nofile=%d:%d", t5Limit, t5Limit)
	srv := procStartServe(t, []string{prlimit, limit}, []string{"127.0.0.1:0"},
		"--log-format", "json", "--framing", "line", "--admin", "127.0.0.1:0")
	addr := srv.addrs[0].Address
	adminLine, ok := srv.stdout.waitFor("Admin on http://", procStartTimeout)
	if !ok {
		t.Fatalf("no \"Admin on\" line on stdout:\n%s", srv.stdout)
	}
	admin := strings.TrimPrefix(adminLine.text, "Admin on http://")

	// Open every connection first (the kernel completes them from the
	// backlog whether or not porta accepts), then send one ping on each;
	// a connection is served once its echo is back.
	conns := make([]net.Conn, t5Conns)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	var mu sync.Mutex
	echoed := make([]bool, t5Conns)
	nEchoed := 0
	lastEcho := time.Now()
	var readers sync.WaitGroup
	t.Cleanup(readers.Wait) // after the connections close (cleanups run last-first)
	for i, c := range conns {
		ping := fmt.Sprintf("ping %d", i)
		if _, err := fmt.Fprintf(c, "%s\n", ping); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			c.SetReadDeadline(time.Now().Add(t5IOTimeout))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != ping+"\n" {
				return // closed by the test while waiting, or checked below
			}
			mu.Lock()
			echoed[i] = true
			nEchoed++
			lastEcho = time.Now()
			mu.Unlock()
		}()
	}

	// Saturated: the server has logged an accept error and no connection
	// has been served for t5SettleWindow.
	if _, ok := srv.stderr.waitFor("accept error", 10*time.Second); !ok {
		t.Fatalf("no accept error logged with %d connections and RLIMIT_NOFILE=%d\nstderr:\n%s", t5Conns, t5Limit, srv.stderr)
	}
	var served int
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		n, quiet := nEchoed, time.Since(lastEcho)
		mu.Unlock()
		if quiet >= t5SettleWindow {
			served = n
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections still being served 10 s after the first accept error (%d)", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fds, err := procFDs(srv.pid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("saturated: %d of %d connections served, server holds %d descriptors (limit %d)", served, t5Conns, fds, t5Limit)
	if served >= t5Conns || served < t5Freed {
		t.Fatalf("%d of %d connections served: the descriptor limit was not reached as intended", served, t5Conns)
	}
	if fds > t5Limit {
		t.Fatalf("server holds %d descriptors, over its limit %d", fds, t5Limit)
	}

	// CPU while saturated, averaged over t5CPUWindow.
	cpu0, err := procCPU(srv.pid())
	if err != nil {
		t.Fatal(err)
	}
	wall0 := time.Now()
	time.Sleep(t5CPUWindow)
	cpu1, err := procCPU(srv.pid())
	if err != nil {
		t.Fatalf("server gone while saturated: %v\nstderr:\n%s", err, srv.stderr)
	}
	wall := time.Since(wall0)
	share := float64(cpu1-cpu0) / float64(wall)
	t.Logf("server CPU while saturated: %v in %v = %.1f%% of one core", cpu1-cpu0, wall.Round(time.Millisecond), 100*share)
	if share > t5MaxCPU {
		t.Errorf("server used %.1f%% of a core while out of descriptors, want <= %.0f%% (accept loop spinning?)", 100*share, 100*t5MaxCPU)
	}
	if !srv.running() {
		t.Fatalf("server exited (status %d) while out of descriptors\nstderr:\n%s", srv.exitCode, srv.stderr)
	}

	// Accept-error log lines: a burst of at most t5FirstLogs in the first
	// second, then at most t5LaterLogs per second; each names EMFILE.
	errs := srv.stderr.jsonRecords("accept error; retrying")
	if len(errs) == 0 || len(errs) != srv.stderr.count("accept error") {
		t.Fatalf("accept-error lines are not JSON records with msg \"accept error; retrying\":\n%s", srv.stderr)
	}
	first, ok := errs[0].time()
	if !ok {
		t.Fatalf("accept-error line without a time: %v", errs[0])
	}
	perSecond := map[int]int{}
	last := 0
	for _, rec := range errs {
		at, ok := rec.time()
		if !ok {
			t.Fatalf("accept-error line without a time: %v", rec)
		}
		sec := int(at.Sub(first) / time.Second)
		perSecond[sec]++
		last = max(last, sec)
		if e, _ := rec["err"].(string); !strings.Contains(strings.ToLower(e), syscall.EMFILE.Error()) {
			t.Errorf("accept-error line does not name EMFILE (%q): %v", syscall.EMFILE.Error(), rec)
		}
	}
	t.Logf("accept-error lines: %d over %d s (first second %d)", len(errs), last+1, perSecond[0])
	if perSecond[0] > t5FirstLogs {
		t.Errorf("%d accept-error lines in the first second, want <= %d", perSecond[0], t5FirstLogs)
	}
	for sec := 1; sec <= last; sec++ {
		if perSecond[sec] > t5LaterLogs {
			t.Errorf("%d accept-error lines in second %d, want <= %d", perSecond[sec], sec, t5LaterLogs)
		}
	}

	// Recovery: close t5Freed served connections, and the connections
	// never served (still in the listen backlog, ahead of any new client:
	// they would otherwise take the freed descriptors first). A new
	// client must then be served within t5Recovery.
	closed := 0
	mu.Lock()
	for i, c := range conns {
		if !echoed[i] {
			c.Close()
		} else if closed < t5Freed {
			c.Close()
			closed++
		}
	}
	mu.Unlock()
	freedAt := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("new connection after freeing descriptors: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "after\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	recovery := time.Since(freedAt)
	if err != nil || line != "after\n" {
		t.Fatalf("new connection after freeing %d descriptors: reply %q, %v (after %v)\nstderr:\n%s", t5Conns-served+closed, line, err, recovery, srv.stderr)
	}
	t.Logf("recovery: a new client got its echo %v after %d served and %d waiting connections closed", recovery.Round(time.Millisecond), closed, t5Conns-served)
	if recovery > t5Recovery {
		t.Errorf("a new client waited %v for its echo after descriptors were freed, want <= %v", recovery, t5Recovery)
	}

	// The failed accepts are counted: porta_errors_total{kind="accept"}
	// on the admin endpoint has at least one per logged line (the log
	// shows at most one a second; each names EMFILE, checked above).
	acceptErrs, err := procMetric(admin, `porta_errors_total{kind="accept"}`)
	if err != nil {
		t.Fatalf("reading the accept-error metric: %v", err)
	}
	t.Logf("porta_errors_total{kind=\"accept\"} = %v", acceptErrs)
	if acceptErrs < float64(len(errs)) {
		t.Errorf("porta_errors_total{kind=\"accept\"} = %v, want at least the %d accept errors logged", acceptErrs, len(errs))
	}

	// Still alive, and stops cleanly.
	if !srv.running() {
		t.Fatalf("server exited (status %d)\nstderr:\n%s", srv.exitCode, srv.stderr)
	}
	srv.signal(t, syscall.SIGTERM)
	if !srv.waitExit(15 * time.Second) {
		t.Fatalf("server did not exit within 15 s of SIGTERM")
	}
	if srv.exitCode != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0\nstderr:\n%s", srv.exitCode, srv.stderr)
	}
}
