//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porta-project/porta/frame"
)

// The terminal tests run chat on a pseudo-terminal, set up with Linux's
// ioctls.

// openPTY opens a new pseudo-terminal of 24 rows and cols columns and
// returns its master and slave ends, or skips the test if the system has
// none.
func openPTY(t *testing.T, cols uint16) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("cannot open /dev/ptmx (%v); the terminal chat tests need a pseudo-terminal", err)
	}
	// The ioctls go through SyscallConn, as Fd would put the master in
	// blocking mode, where closing it would not end a pending read.
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	var n int
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr != nil {
			return
		}
		if n, ioctlErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN); ioctlErr != nil {
			return
		}
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols})
	})
	if err = errors.Join(err, ioctlErr); err != nil {
		master.Close()
		t.Skipf("cannot set up a pseudo-terminal (%v); the terminal chat tests need one", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("cannot open the pseudo-terminal's slave /dev/pts/%d (%v)", n, err)
	}
	return master, slave
}

// termios returns the terminal settings of the pseudo-terminal whose
// master is m.
func termios(t *testing.T, m *os.File) *unix.Termios {
	t.Helper()
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var tio *unix.Termios
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) { tio, ioctlErr = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil {
		t.Fatal(err)
	}
	if ioctlErr != nil {
		t.Fatalf("reading the terminal settings: %v", ioctlErr)
	}
	return tio
}

// chatSession is "porta chat" running on a pseudo-terminal.
type chatSession struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File
	screen *syncBuffer // all the terminal showed
	done   chan struct{}
	code   int
	before *unix.Termios // the settings before chat started
}

// startChat runs "porta chat addr" with a pseudo-terminal of 80 columns
// as its controlling terminal, stdin, stdout and stderr.
func startChat(t *testing.T, addr string, flags ...string) *chatSession {
	t.Helper()
	return startChatCols(t, 80, addr, flags...)
}

// startChatCols is startChat on a terminal cols columns wide.
func startChatCols(t *testing.T, cols uint16, addr string, flags ...string) *chatSession {
	t.Helper()
	master, slave := openPTY(t, cols)
	before := termios(t, master)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	cmd := exec.CommandContext(ctx, portaBin, append(append([]string{"chat"}, flags...), addr)...)
	c := &chatSession{t: t, cmd: cmd, master: master, screen: newSyncBuffer(), done: make(chan struct{}), before: before}
	cmd.Env = append(portaEnv(), "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := cmd.Start()
	slave.Close() // the child has its own copies
	if err != nil {
		cancel()
		master.Close()
		t.Fatalf("starting porta chat: %v", err)
	}

	var reading sync.WaitGroup
	reading.Go(func() {
		// Ends with EIO once the child has exited, or when the master is
		// closed.
		io.Copy(c.screen, master)
	})
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			c.code = ee.ExitCode()
		default:
			c.code = -1
		}
		close(c.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
		master.Close()
		reading.Wait()
		checkNoRace(t, "porta chat", c.screen.String())
	})
	return c
}

// typeKeys writes keys to the terminal, as if typed.
func (c *chatSession) typeKeys(keys string) {
	c.t.Helper()
	if _, err := io.WriteString(c.master, keys); err != nil {
		c.t.Fatalf("typing %q: %v", keys, err)
	}
}

// waitCount waits until text has shown on the screen n times.
func (c *chatSession) waitCount(text string, n int) {
	c.t.Helper()
	screen, ok := c.screen.waitFor(waitTimeout, func(s string) bool { return strings.Count(s, text) >= n })
	if !ok {
		c.t.Fatalf("the terminal did not show %q %d times within %v; it shows:\n%q", text, n, waitTimeout, screen)
	}
}

// waitExit waits for chat to exit and checks its status and that it has
// restored the terminal's settings.
func (c *chatSession) waitExit(want int) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		c.t.Fatalf("porta chat did not exit within %v; the terminal shows:\n%q", stopTimeout, c.screen)
	}
	if c.code != want {
		c.t.Errorf("porta chat: exit status %d, want %d; the terminal shows:\n%q", c.code, want, c.screen)
	}
	after := termios(c.t, c.master)
	const modes = unix.ICANON | unix.ECHO | unix.ISIG
	if after.Lflag&modes != c.before.Lflag&modes {
		c.t.Errorf("terminal local modes after chat: %#x, want %#x as before", after.Lflag&modes, c.before.Lflag&modes)
	}
}

func TestChatTerminal(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--mode", "upper")
	c := startChat(t, s.addr())
	c.waitCount("Connected to "+s.addr(), 1)
	c.waitCount(chatPrompt, 1)

	c.typeKeys("hello\r")
	c.waitCount("HELLO", 1)
	// The up arrow brings back the last line; Enter sends it again.
	c.typeKeys("\x1b[A")
	c.waitCount("hello", 2) // the recalled line is shown at the prompt
	c.typeKeys("\r")
	c.waitCount("HELLO", 2)

	c.typeKeys("close\r")
	c.waitCount("Connection to server closed", 1)
	c.waitExit(0)
	screen := c.screen.String()
	// The reply comes on a line of its own, where the prompt was.
	if !regexp.MustCompile("(\r\n|\x1b\\[K)closed\r\n").MatchString(screen) {
		t.Errorf("the terminal does not show the reply \"closed\" on its own line:\n%q", screen)
	}
	c.checkEnd()
}

// checkEnd checks that the session's last output is its closing line,
// with no prompt left behind.
func (c *chatSession) checkEnd() {
	c.t.Helper()
	if screen := c.screen.String(); !strings.HasSuffix(screen, "Connection to server closed\r\n") {
		c.t.Errorf("the terminal should end with the line \"Connection to server closed\"; it shows:\n%q", screen)
	}
}

func TestChatTerminalCtrlD(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	c := startChat(t, s.addr())
	c.waitCount(chatPrompt, 1)
	c.typeKeys("hello there\r")
	c.waitCount("hello there", 2) // typed, then the reply
	c.typeKeys("\x04")
	c.waitCount("Connection to server closed", 1)
	c.waitExit(0)
	c.checkEnd()
	s.stderr.waitForText(t, "serve stderr", "reason=peer_closed messages=1")
}

// TestChatTerminalRepliesTogether checks that replies that arrive in one
// read are each shown whole: with length framing, a newline written past
// a reply would land on the next reply's length prefix.
func TestChatTerminalRepliesTogether(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		dec := frame.NewDecoder(nc, frame.Length, 0)
		if _, err := dec.Next(); err != nil {
			return
		}
		two := frame.Append(frame.Append(nil, frame.Length, []byte("first")), frame.Length, []byte("second"))
		nc.Write(two)
		io.Copy(io.Discard, nc)
	}()
	c := startChat(t, l.Addr().String(), "--framing", "len")
	c.waitCount(chatPrompt, 1)
	c.typeKeys("hi\r")
	c.waitCount("first", 1)
	c.waitCount("second", 1)
	c.typeKeys("\x04")
	c.waitExit(0)
	if screen := c.screen.String(); strings.Contains(screen, "too long") {
		t.Errorf("the terminal shows an error:\n%q", screen)
	}
}
