package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests of "porta serve": limits, addresses, Unix socket files,
// shutdown by word and by signal, and the logs.

// dialLine connects to a TCP server, sends msg as a line and reads its
// reply line, proving that the server has accepted and serves the
// connection, which the test keeps open.
func dialLine(t *testing.T, hostPort, msg string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostPort, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	want := msg + "\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("held connection: got %q, %v; want %q", got, err, want)
	}
	c.SetDeadline(time.Time{})
	return c
}

func TestServeOnce(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--once")
	runPorta(t, "", "send", s.addr(), "one").want(t, 0, "one\n")
	runPorta(t, "", "send", s.addr(), "two").want(t, 0, "two\n")
	// A second message on the same connection finds it closed.
	r := runPorta(t, "", "send", s.addr(), "three", "four")
	r.want(t, 1, "three\n")
	r.oneLine(t, "porta: "+s.addr()+" closed the connection before replying")
	s.stderr.waitForText(t, "serve stderr", "reason=hangup")
}

func TestMaxMsg(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--max-msg", "8")
	// The first message is short, so that auto framing sees a whole line
	// in the first read and chooses line framing.
	r := runPorta(t, "", "send", s.addr(), "hi", "12345678", "123456789", "after")
	r.want(t, 1, "hi\n12345678\nERR message too long (limit 8 bytes)\n")
	r.oneLine(t, "porta: "+s.addr()+" closed the connection before replying")
	s.stderr.waitForText(t, "serve stderr", "reason=too_long")
}

func TestMaxConns(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--max-conns", "1")
	dialLine(t, s.hostPort(), "held")

	// The refusal reaches the client as the reply to its message.
	r := runPorta(t, "", "send", s.addr(), "hello")
	r.want(t, 0, "ERR too many connections\n")
	// With more to send, the client then says that the server hung up.
	r = runPorta(t, "", "send", s.addr(), "hello", "again")
	r.want(t, 1, "ERR too many connections\n")
	r.oneLine(t, "closed the connection before replying")
	s.stderr.waitForText(t, "serve stderr", `msg="connection refused"`)
}

func TestServeAddressInUse(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	r := runPorta(t, "", "serve", s.hostPort())
	r.want(t, 1, "")
	r.oneLine(t, "address already in use", s.hostPort())
	// The first server is unharmed.
	runPorta(t, "", "send", s.addr(), "still there").want(t, 0, "still there\n")
}

func TestServeFailsWhole(t *testing.T) {
	t.Parallel()
	// When one address fails, the ones opened before it are closed again,
	// and their socket files removed.
	path := sockPath(t, "first.sock")
	r := runPorta(t, "", "serve", "unix://"+path, "foo://x")
	r.want(t, 1, "")
	r.oneLine(t, "bad address")
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file of the opened address: %v, want it removed", err)
	}
}

func TestServeManyAddresses(t *testing.T) {
	t.Parallel()
	path := sockPath(t, "porta.sock")
	s := startServe(t, []string{"127.0.0.1:0", "unix://" + path, "udp://127.0.0.1:0"}, "--mode", "upper")
	if len(s.addrs) != 3 ||
		!strings.HasPrefix(s.addrs[0], "tcp://127.0.0.1:") ||
		s.addrs[1] != "unix://"+path ||
		!strings.HasPrefix(s.addrs[2], "udp://127.0.0.1:") {
		t.Fatalf("Listening on %q, want tcp, unix and udp addresses in order", s.addrs)
	}
	for _, a := range s.addrs {
		if strings.HasSuffix(a, ":0") {
			t.Errorf("Listening on %s: want the real port, not 0", a)
		}
		runPorta(t, "", "send", a, "hello", a).want(t, 0, "HELLO\n"+strings.ToUpper(a)+"\n")
	}
}

func TestUnixSocketRemovedOnExit(t *testing.T) {
	t.Parallel()
	path := sockPath(t, "porta.sock")
	s := startServe(t, []string{"unix://" + path})
	runPorta(t, "", "send", s.addr(), "hello").want(t, 0, "hello\n")
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0\nstderr:\n%s", code, s.stderr)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after exit: %v, want it removed", err)
	}
}

func TestUnixSocketStaleReplaced(t *testing.T) {
	t.Parallel()
	path := sockPath(t, "porta.sock")
	// A server that crashed leaves its socket file behind.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	s := startServe(t, []string{"unix://" + path})
	runPorta(t, "", "send", s.addr(), "hello").want(t, 0, "hello\n")
}

func TestUnixSocketLiveRefused(t *testing.T) {
	t.Parallel()
	path := sockPath(t, "porta.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := runPorta(t, "", "serve", "unix://"+path)
	r.want(t, 1, "")
	r.oneLine(t, "address already in use", path)
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the live server's socket file: %v, want it left alone", err)
	}
}

func TestShutdownWord(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--shutdown-word", "halt")
	runPorta(t, "", "send", s.addr(), "hello").want(t, 0, "hello\n")
	r := runPorta(t, "", "send", s.addr(), "HALT", "never sent")
	r.want(t, 0, "closed\n")
	if code := s.wait(stopTimeout); code != 0 {
		t.Fatalf("exit status %d after the shutdown word, want 0\nstderr:\n%s", code, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), `cause="shutdown word"`) {
		t.Errorf("stderr does not log the shutdown:\n%s", s.stderr)
	}
	runPorta(t, "", "send", s.addr(), "hello").want(t, 1, "")
}

func TestSIGTERMWithOpenConnections(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := startServe(t, []string{"127.0.0.1:0"})
			var conns []net.Conn
			for i := range 3 {
				conns = append(conns, dialLine(t, s.hostPort(), fmt.Sprint("held ", i)))
			}
			// Each open connection is closed cleanly: it reads the end of
			// the stream, and closes in turn.
			var wg sync.WaitGroup
			errs := make(chan error, len(conns))
			for _, c := range conns {
				wg.Go(func() {
					c.SetReadDeadline(time.Now().Add(waitTimeout))
					rest, err := io.ReadAll(c)
					if err != nil || len(rest) > 0 {
						errs <- fmt.Errorf("after the signal, read %q, %v; want the end of the stream", rest, err)
					}
					c.Close()
				})
			}
			if code := s.stop(sig); code != 0 {
				t.Errorf("exit status %d after %v with connections open, want 0\nstderr:\n%s", code, sig, s.stderr)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := strings.Count(s.stderr.String(), "reason=shutdown"); got != len(conns) {
				t.Errorf("%d connections closed for shutdown, want %d\nstderr:\n%s", got, len(conns), s.stderr)
			}
		})
	}
}

func TestSecondSignalDuringDrain(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--framing", "line", "--drain-timeout", "30s", "--frame-timeout", "0")
	c := dialLine(t, s.hostPort(), "hello")
	// Half a line holds the drain: the server waits for its end.
	if _, err := io.WriteString(c, "half a li"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // for the server to read it
	s.signal(syscall.SIGINT)
	s.stderr.waitForText(t, "serve stderr", `msg="shutting down"`)
	select {
	case <-s.done:
		t.Fatalf("the server stopped without waiting for the half frame\nstderr:\n%s", s.stderr)
	case <-time.After(200 * time.Millisecond):
	}
	start := time.Now()
	// serve.go: a second signal closes everything and exits with status
	// exitFailure.
	if code := s.stop(syscall.SIGINT); code != exitFailure {
		t.Errorf("exit status %d after a second signal, want %d\nstderr:\n%s", code, exitFailure, s.stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the second signal took %v to stop the server", d)
	}
	if !strings.Contains(s.stderr.String(), "second signal") {
		t.Errorf("stderr does not say why it stopped:\n%s", s.stderr)
	}
}

func TestVerboseLogsMessages(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "-v")
	runPorta(t, "", "send", s.addr(), "hello").want(t, 0, "hello\n")
	log := s.stderr.waitForText(t, "serve stderr", "connection closed")
	var received string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="Received: hello"`) {
			received = line
		}
	}
	if received == "" || !strings.Contains(received, "peer=127.0.0.1:") {
		t.Errorf("no \"Received: hello\" line with the peer on stderr:\n%s", log)
	}
	for _, want := range []string{`msg="connection opened" peer=127.0.0.1:`, "reason=peer_closed messages=1 bytes_in=5 bytes_out=5"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr does not show %q:\n%s", want, log)
		}
	}
}

func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--log-format", "json", "-v")
	runPorta(t, "", "send", s.addr(), "hello", "close").want(t, 0, "hello\nclosed\n")
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	seen := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSuffix(s.stderr.String(), "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", line, err)
		}
		msg, _ := rec["msg"].(string)
		seen[msg] = rec
	}
	opened, closed := seen["connection opened"], seen["connection closed"]
	if opened == nil || closed == nil || seen["Received: hello"] == nil {
		t.Fatalf("stderr lacks connection opened, Received: hello or connection closed:\n%s", s.stderr)
	}
	if peer, _ := opened["peer"].(string); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("connection opened: peer %v, want 127.0.0.1:PORT", opened["peer"])
	}
	if closed["reason"] != "hangup" || closed["messages"] != float64(2) || closed["peer"] != opened["peer"] {
		t.Errorf("connection closed: %v, want reason hangup after 2 messages from %v", closed, opened["peer"])
	}
}
