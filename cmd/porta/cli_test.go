package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The CLI tests run the porta binary, built once by TestMain, as users do:
// as subprocesses talking to each other over loopback TCP, UDP and Unix
// sockets in per-test temporary directories. Each test checks stdout,
// stderr and the exit status.

// portaBin is the path of the binary under test, built by TestMain.
var portaBin string

// Bounds on the subprocesses, generous for -race on a loaded machine; a
// passing test waits for none of them.
const (
	cmdTimeout  = 20 * time.Second // the longest any subprocess may live
	waitTimeout = 10 * time.Second // the longest a test waits for some output
	stopTimeout = 5 * time.Second  // the longest a server may take to stop
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "porta-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the build directory:", err)
		os.Exit(1)
	}
	// Everyone may enter the directory, so that a test running as root
	// can run the binary as the user nobody (TestServePermissionDenied)
	// without copying it: a copy written by this process could fail to
	// start with "text file busy" while a parallel test forks.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "opening the build directory:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	portaBin = filepath.Join(dir, "porta")
	if err := buildPorta(portaBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// buildPorta builds the command in the current directory into bin, with
// the race detector when the tests themselves run with it, so that a race
// in the server or client fails the test that ran it (exit status 66).
func buildPorta(bin string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building porta: %w", err)
	}
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("building porta: %v\n%s", err, out)
	}
	return nil
}

// portaEnv is the environment of the porta subprocesses. A binary built
// with -race sleeps for a second at exit unless told not to.
func portaEnv() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// syncBuffer is an output stream that tests can wait on while a process
// is still writing to it.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer's contents satisfy ok, for at most
// timeout, and returns them and whether they did.
func (b *syncBuffer) waitFor(timeout time.Duration, ok func(string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		s, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		if ok(s) {
			return s, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return s, false
		}
	}
}

// waitForText waits until the buffer contains text and fails the test if
// it does not within waitTimeout.
func (b *syncBuffer) waitForText(t *testing.T, what, text string) string {
	t.Helper()
	s, ok := b.waitFor(waitTimeout, func(s string) bool { return strings.Contains(s, text) })
	if !ok {
		t.Fatalf("%s did not show %q within %v; it holds:\n%s", what, text, waitTimeout, s)
	}
	return s
}

// result is what a finished command did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runPorta runs the binary with args and stdin to completion, within
// cmdTimeout.
func runPorta(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runCommand(t, stdin, portaBin, args...)
}

// runCommand runs a program with args and stdin to completion, within
// cmdTimeout.
func runCommand(t *testing.T, stdin, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = portaEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(t, err)}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: did not finish within %v\n%v", filepath.Base(name), strings.Join(args, " "), cmdTimeout, r)
	}
	checkNoRace(t, filepath.Base(name), r.stderr)
	return r
}

// exitCode returns the exit status that err of Run or Wait reports.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("running a command: %v", err)
	return -1
}

func checkNoRace(t *testing.T, what, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("%s: the race detector reported:\n%s", what, stderr)
	}
}

// want checks a finished command's exit status and its exact stdout.
func (r result) want(t *testing.T, code int, stdout string) {
	t.Helper()
	if r.code != code || r.stdout != stdout {
		t.Fatalf("got %v\nwant exit status %d and stdout:\n%s", r, code, stdout)
	}
}

// oneLine checks that stderr is exactly one line containing each of
// texts, and returns it.
func (r result) oneLine(t *testing.T, texts ...string) string {
	t.Helper()
	line, ok := strings.CutSuffix(r.stderr, "\n")
	if !ok || strings.Contains(line, "\n") {
		t.Fatalf("stderr should be exactly one line; got %v", r)
	}
	for _, text := range texts {
		if !strings.Contains(line, text) {
			t.Fatalf("stderr should mention %q; got %v", text, r)
		}
	}
	return line
}

// server is a running "porta serve".
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	addrs  []string // as printed on the Listening lines, in order
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	code   int           // its exit status, once done is closed
}

// startServe starts "porta serve" on addrs with flags, waits for one
// Listening line per address and returns the server. A cleanup stops it
// with SIGTERM and checks that it exits with status 0, unless the test
// has ended it already.
func startServe(t *testing.T, addrs []string, flags ...string) *server {
	t.Helper()
	s := launchServe(t, addrs, flags...)
	s.waitListening(len(addrs))
	t.Cleanup(func() {
		select {
		case <-s.done:
			return // the test ended it and checked how
		default:
		}
		if code := s.stop(syscall.SIGTERM); code != 0 {
			t.Errorf("porta serve: exit status %d after SIGTERM, want 0\nstderr:\n%s", code, s.stderr)
		}
	})
	return s
}

// launchServe starts "porta serve" without waiting for it to listen.
func launchServe(t *testing.T, addrs []string, flags ...string) *server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	args := append(append([]string{"serve"}, flags...), addrs...)
	s := &server{
		t:      t,
		cmd:    exec.CommandContext(ctx, portaBin, args...),
		stdout: newSyncBuffer(),
		stderr: newSyncBuffer(),
		done:   make(chan struct{}),
	}
	s.cmd.Env = portaEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	s.cmd.WaitDelay = time.Second
	if err := s.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting porta serve: %v", err)
	}
	go func() {
		err := s.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			s.code = ee.ExitCode()
		default:
			s.code = -1
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel() // kills it if still running
		<-s.done
		checkNoRace(t, "porta serve", s.stderr.String())
	})
	return s
}

// waitListening waits for n Listening lines on stdout and records their
// addresses.
func (s *server) waitListening(n int) {
	s.t.Helper()
	out, ok := s.stdout.waitFor(waitTimeout, func(out string) bool {
		return strings.Count(out, "\n") >= n
	})
	if !ok {
		s.t.Fatalf("porta serve did not print %d Listening lines within %v\nstdout:\n%s\nstderr:\n%s", n, waitTimeout, out, s.stderr)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		addr, ok := strings.CutPrefix(line, "Listening on ")
		if !ok {
			s.t.Fatalf("porta serve: stdout line %q, want \"Listening on ADDR\"", line)
		}
		s.addrs = append(s.addrs, addr)
	}
}

// addr returns the first address the server listens on, in URL form.
func (s *server) addr() string { return s.addrs[0] }

// hostPort returns the first address as host:port, for TCP clients.
func (s *server) hostPort() string {
	hp, ok := strings.CutPrefix(s.addr(), "tcp://")
	if !ok {
		s.t.Fatalf("first address %q is not TCP", s.addr())
	}
	return hp
}

// signal sends sig to the server.
func (s *server) signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signalling porta serve: %v", err)
	}
}

// wait waits up to timeout for the server to exit and returns its status;
// it fails the test if it does not exit.
func (s *server) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Fatalf("porta serve did not exit within %v\nstderr:\n%s", timeout, s.stderr)
		return -1
	}
}

// stop sends sig and waits for the server to exit.
func (s *server) stop(sig os.Signal) int {
	s.t.Helper()
	s.signal(sig)
	return s.wait(stopTimeout)
}

// freeAddr returns a loopback TCP address on which nothing listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// sockPath returns the path of a Unix socket in the test's temporary
// directory. Socket paths are limited to 107 bytes; where t.TempDir's is
// too long for that, a shorter temporary directory is used instead.
func sockPath(t *testing.T, name string) string {
	t.Helper()
	if path := filepath.Join(t.TempDir(), name); len(path) < 100 {
		return path
	}
	dir, err := os.MkdirTemp("", "porta")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}
