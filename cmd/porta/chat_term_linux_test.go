//go:build linux

package main

import (
	"bufio"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// More terminal tests of chat: how a session ends (signals, Ctrl-D with
// replies still on their way, connection errors) and the terminal's size.

// signal sends sig to the chat process.
func (c *chatSession) signal(sig os.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signalling porta chat: %v", err)
	}
}

// resize sets the terminal's width, as a window manager does; the kernel
// sends SIGWINCH to chat.
func (c *chatSession) resize(cols uint16) {
	c.t.Helper()
	rc, err := c.master.SyscallConn()
	if err != nil {
		c.t.Fatal(err)
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols})
	}); err != nil {
		c.t.Fatal(err)
	}
	if ioctlErr != nil {
		c.t.Fatalf("resizing the terminal: %v", ioctlErr)
	}
}

func TestChatTerminalSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := startServe(t, []string{"127.0.0.1:0"})
			c := startChat(t, s.addr())
			c.waitCount(chatPrompt, 1)
			c.typeKeys("hello")
			c.waitCount("hello", 1)
			c.signal(sig)
			c.waitExit(1) // and the terminal is restored
			c.waitCount("porta: chat stopped by signal: "+sig.String()+"\r\n", 1)
		})
	}
}

func TestChatTerminalSize(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	c := startChatCols(t, 40, s.addr())
	c.waitCount(chatPrompt, 1)
	// The line editor wraps a long line at the terminal's width: after
	// the 2-column prompt and 38 letters.
	c.typeKeys(strings.Repeat("x", 45))
	c.waitCount("x", 45)
	if screen := c.screen.String(); !regexp.MustCompile(`> x{38}\r\nx{7}`).MatchString(screen) {
		t.Fatalf("the line is not wrapped at 40 columns:\n%q", screen)
	}
	// A wider terminal: the editor redraws the line unwrapped, and wraps
	// at the new width.
	c.resize(60)
	c.waitCount("> "+strings.Repeat("x", 45), 1)
	c.typeKeys(strings.Repeat("x", 20))
	if _, ok := c.screen.waitFor(waitTimeout, regexp.MustCompile(`x{58}\r\nx{7}`).MatchString); !ok {
		t.Fatalf("the line is not wrapped at 60 columns after the resize:\n%q", c.screen)
	}
	c.typeKeys("\x15\x04") // Ctrl-U clears the line, Ctrl-D ends the session
	c.waitExit(0)
}

// slowServer serves TCP (network "tcp") or UDP ("udp") on loopback and
// answers each message with "reply: " and the message, after delay. Its
// TCP connections close once the client has closed its sending side and
// the replies are written.
func slowServer(t *testing.T, network string, delay time.Duration) string {
	t.Helper()
	if network == "udp" {
		done := make(chan struct{})
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(done)
			buf := make([]byte, 1024)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				time.Sleep(delay)
				pc.WriteTo(append([]byte("reply: "), buf[:n]...), from)
			}
		}()
		t.Cleanup(func() { pc.Close(); <-done })
		return "udp://" + pc.LocalAddr().String()
	}
	return oneConnServer(t, func(nc net.Conn) {
		lines := bufio.NewScanner(nc)
		for lines.Scan() {
			time.Sleep(delay)
			if _, err := nc.Write([]byte("reply: " + lines.Text() + "\n")); err != nil {
				return
			}
		}
	})
}

func TestChatTerminalCtrlDWaitsForReplies(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			addr := slowServer(t, network, 300*time.Millisecond)
			// A long --timeout: the session ends when the server has
			// hung up (TCP) or answered every message (UDP).
			c := startChat(t, addr, "--timeout", "1m")
			c.waitCount(chatPrompt, 1)
			c.typeKeys("one\r")
			c.waitCount("one", 1)
			c.typeKeys("two\r\x04")
			c.waitCount("Connection to server closed", 1)
			c.waitExit(0)
			c.checkEnd()
			screen := c.screen.String()
			for _, want := range []string{"reply: one", "reply: two"} {
				if !strings.Contains(screen, want) {
					t.Errorf("the terminal does not show %q:\n%q", want, screen)
				}
			}
		})
	}
}

func TestChatTerminalCtrlDTimeout(t *testing.T) {
	t.Parallel()
	// A server that neither answers nor hangs up: Ctrl-D waits --timeout
	// for the replies, then ends the session.
	c := startChat(t, silentServer(t), "--timeout", "300ms")
	c.waitCount(chatPrompt, 1)
	c.typeKeys("hello\r\x04")
	c.waitCount("Connection to server closed", 1)
	c.waitExit(0)
	c.checkEnd()
}

func TestChatTerminalCtrlC(t *testing.T) {
	t.Parallel()
	// Ctrl-C ends the session at once, without waiting for replies.
	c := startChat(t, silentServer(t), "--timeout", "1m")
	c.waitCount(chatPrompt, 1)
	c.typeKeys("hello\r\x03")
	c.waitCount("Connection to server closed", 1)
	c.waitExit(0)
	c.checkEnd()

	// So does Ctrl-C while Ctrl-D waits for them.
	c = startChat(t, silentServer(t), "--timeout", "1m")
	c.waitCount(chatPrompt, 1)
	c.typeKeys("hello\r\x04")
	c.waitCount("hello", 1)
	c.typeKeys("\x03")
	c.waitCount("Connection to server closed", 1)
	c.waitExit(0)
	c.checkEnd()
}

// resetServer accepts one TCP connection, reads a line and resets the
// connection.
func resetServer(t *testing.T) string {
	t.Helper()
	return oneConnServer(t, func(nc net.Conn) {
		bufio.NewReader(nc).ReadString('\n')
		nc.(*net.TCPConn).SetLinger(0)
	})
}

func TestChatTerminalConnectionErrors(t *testing.T) {
	t.Parallel()
	udp := "udp://" + freeUDPAddr(t)
	tests := []struct {
		name, addr, want string
	}{
		{"reset", resetServer(t), "closed the connection before replying"},
		{"udp refused", udp, "connection refused: nothing is listening on " + udp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := startChat(t, tt.addr)
			c.waitCount(chatPrompt, 1)
			c.typeKeys("hello\r")
			c.waitExit(1)
			// The error is the last line, printed once the terminal is
			// restored.
			c.waitCount("porta: ", 1)
			c.waitCount(tt.want+"\r\n", 1)
			if screen := c.screen.String(); strings.Contains(screen, "Connection to server closed") {
				t.Errorf("the terminal shows a clean end after an error:\n%q", screen)
			}
		})
	}
}

func TestChatTerminalRawEmpty(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	c := startChat(t, s.addr(), "--framing", "raw")
	c.waitCount(chatPrompt, 1)
	// Raw framing has no bytes to send for an empty line: chat says so
	// and the session goes on.
	c.typeKeys("\r")
	c.waitCount("raw framing cannot send an empty message", 1)
	c.typeKeys("hi there\r")
	c.waitCount("hi there", 2)
	c.typeKeys("\x04")
	c.waitCount("Connection to server closed", 1)
	c.waitExit(0)
}
