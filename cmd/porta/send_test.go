package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests of "porta send": messages from arguments and stdin, the
// framings, and what the client says when a server is absent or silent.

func TestSendArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags []string
		args  []string
		want  string
	}{
		{"echo", nil, []string{"hello", "hello world", "ünï"}, "hello\nhello world\nünï\n"},
		{"upper", []string{"--mode", "upper"}, []string{"hello", "ünï ñ ω"}, "HELLO\nÜNÏ Ñ Ω\n"},
		{"text", []string{"--mode", "text"}, []string{"hello", "world"}, "accepted\naccepted\n"},
		{"text flag", []string{"--mode", "text", "--text", "got it, thanks"}, []string{"hello"}, "got it, thanks\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServe(t, []string{"127.0.0.1:0"}, tt.flags...)
			r := runPorta(t, "", append([]string{"send", s.addr()}, tt.args...)...)
			r.want(t, 0, tt.want)
			if r.stderr != "" {
				t.Errorf("stderr: %q, want none", r.stderr)
			}
		})
	}
}

func TestSendStdinLines(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--mode", "upper")
	// CRLF endings are dropped, an empty line is a message, and a last
	// line without a newline still counts.
	r := runPorta(t, "one\ntwo\r\n\nthree", "send", s.addr())
	r.want(t, 0, "ONE\nTWO\n\nTHREE\n")
	if r.stderr != "" {
		t.Errorf("stderr: %q, want none", r.stderr)
	}
}

func TestSendCloseWord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags []string
		input string
		want  string
	}{
		{"default", nil, "hello\nclose\nafter\n", "hello\nclosed\n"},
		{"trimmed any case", nil, "hello\n  CLose \t\nafter\n", "hello\nclosed\n"},
		{"own word", []string{"--close-word", "bye"}, "close\nbye\nafter\n", "close\nclosed\n"},
		{"disabled", []string{"--close-word", ""}, "close\nafter\n", "close\nafter\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServe(t, []string{"127.0.0.1:0"}, tt.flags...)
			r := runPorta(t, tt.input, "send", s.addr())
			r.want(t, 0, tt.want)
			if r.stderr != "" {
				t.Errorf("stderr: %q, want none", r.stderr)
			}
		})
	}
}

func TestFramingLength(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--framing", "len", "--mode", "upper")
	// Length framing carries newlines and empty messages.
	r := runPorta(t, "", "send", "--framing", "len", s.addr(), "hello", "two\nlines", "", "close", "never sent")
	r.want(t, 0, "HELLO\nTWO\nLINES\n\nclosed\n")
}

func TestFramingRawAgainstAuto(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	r := runPorta(t, "", "send", "--framing", "raw", s.addr(), "hello", "hello world", "close", "never sent")
	r.want(t, 0, "hello\nhello world\nclosed\n")
	if r.stderr != "" {
		t.Errorf("stderr: %q, want none", r.stderr)
	}
}

func TestSendRefused(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	r := runPorta(t, "", "send", addr, "hello")
	r.want(t, 1, "")
	if want := "porta: connection refused: nothing is listening on " + addr + "\n"; r.stderr != want {
		t.Errorf("stderr: %q, want %q", r.stderr, want)
	}

	path := sockPath(t, "none.sock")
	r = runPorta(t, "", "send", "unix://"+path, "hello")
	r.want(t, 1, "")
	r.oneLine(t, "nothing is listening on unix://"+path)
}

func TestSendWait(t *testing.T) {
	t.Parallel()
	sendWaitsForServer(t, freeAddr(t), "3s", "hello")
}

// sendWaitsForServer runs "porta send --wait WAIT ADDR MESSAGE..." with
// nothing listening on addr, starts a server there 300 ms later, and
// checks that send got every reply.
func sendWaitsForServer(t *testing.T, addr, wait string, messages ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, portaBin, append([]string{"send", "--wait", wait, addr}, messages...)...)
	cmd.Env = portaEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() { finished <- cmd.Wait() }()

	time.Sleep(300 * time.Millisecond) // the client is retrying meanwhile
	select {
	case err := <-finished:
		t.Fatalf("send --wait gave up before the server started: %v\nstderr: %s", err, &stderr)
	default:
	}
	startServe(t, []string{addr})
	select {
	case err := <-finished:
		r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(t, err)}
		r.want(t, 0, strings.Join(messages, "\n")+"\n")
	case <-time.After(waitTimeout):
		cmd.Process.Kill()
		<-finished
		t.Fatalf("send --wait did not finish within %v", waitTimeout)
	}
}

// silentServer accepts TCP connections and never replies.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	start := time.Now()
	r := runPorta(t, "", "send", "--timeout", "300ms", addr, "hello")
	r.want(t, 1, "")
	if want := "porta: no reply from " + addr + " within 300ms\n"; r.stderr != want {
		t.Errorf("stderr: %q, want %q", r.stderr, want)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("send gave up after %v, before its 300ms timeout", d)
	}
}

func TestSendWaitUntilDeadline(t *testing.T) {
	t.Parallel()
	// The retries back off up to 500ms; the last attempt is still made
	// at the deadline, not up to a backoff before it.
	addr := freeAddr(t)
	start := time.Now()
	r := runPorta(t, "", "send", "--wait", "1100ms", addr, "hello")
	elapsed := time.Since(start)
	r.want(t, 1, "")
	r.oneLine(t, "connection refused")
	if elapsed < 1100*time.Millisecond {
		t.Errorf("send --wait 1100ms gave up after %v", elapsed)
	}
}

// freeUDPAddr returns a loopback UDP address on which nothing listens.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestSendWaitUDP(t *testing.T) {
	t.Parallel()
	// A UDP "connection" always succeeds: the refusal comes with the
	// first reply, and --wait sends the first message again.
	sendWaitsForServer(t, "udp://"+freeUDPAddr(t), "5s", "hello", "world")

	// Without a server, it gives up at the deadline.
	r := runPorta(t, "", "send", "--wait", "300ms", "udp://"+freeUDPAddr(t), "hello")
	r.want(t, 1, "")
	r.oneLine(t, "porta: connection refused: nothing is listening on udp://")
}

func TestSendStdinError(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	dir, err := os.Open(t.TempDir()) // reading a directory fails
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, portaBin, "send", s.addr())
	cmd.Env = portaEnv()
	cmd.Stdin = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := result{code: exitCode(t, cmd.Run())}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	r.want(t, 1, "")
	if line := r.oneLine(t, "is a directory"); !strings.HasPrefix(line, "porta: reading input: ") {
		t.Errorf("stderr: %q, want it to start with \"porta: reading input: \"", line)
	}
}
