package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/porta-project/porta"
)

// chatPrompt is shown before each line the user types.
const chatPrompt = "> "

func runChat(e *env, args []string) int {
	fs := newFlagSet("chat", "ADDR")
	cfg := addClientFlags(fs)
	rest, code, ok := parseArgs(e, fs, args)
	if !ok {
		return code
	}
	if err := cfg.check(); err != nil {
		return usageFail(e, fs, "%v", err)
	}
	if len(rest) != 1 {
		return usageFail(e, fs, "want exactly one ADDR")
	}
	addr := rest[0]
	if code, ok := cfg.setupTLS(e, fs, addr); !ok {
		return code
	}
	c, err := cfg.dial(addr)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFailure
	}
	defer c.Close()

	in, isFile := e.stdin.(*os.File)
	if !isFile || !term.IsTerminal(int(in.Fd())) {
		// Not a person at a terminal: behave like send.
		return exchangeAll(e, c, addr, cfg.timeout, stdinLines(e.stdin, int(cfg.maxMsg)))
	}
	return chatTerminal(e, in, c, addr)
}

// chatTerminal runs an interactive session: a prompt with line editing and
// history, and replies printed as they arrive, above the prompt.
func chatTerminal(e *env, in *os.File, c *porta.ClientConn, addr string) int {
	state, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		fmt.Fprintf(e.stderr, "porta: cannot set up the terminal: %v\n", err)
		return exitFailure
	}
	defer term.Restore(int(in.Fd()), state)
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, e.stdout}, chatPrompt)
	fmt.Fprintf(t, "Connected to %s. Type a message and press Enter; Ctrl-D quits.\n", addr)

	// Replies arrive on their own goroutine, so that they show as soon as
	// they come, even while the user is typing.
	serverDone := make(chan error, 1)
	go func() {
		for {
			reply, err := c.Receive()
			if err != nil {
				serverDone <- err
				return
			}
			// A copy: the reply is the decoder's buffer, whose next byte
			// may be the start of the next reply.
			t.Write(append(reply[:len(reply):len(reply)], '\n'))
			if string(reply) == string(closedReply) {
				serverDone <- nil
				return
			}
		}
	}()
	lines := make(chan string)
	userDone := make(chan error, 1)
	go func() {
		for {
			line, err := t.ReadLine()
			if err != nil {
				userDone <- err
				return
			}
			lines <- line
		}
	}()

	for {
		select {
		case line := <-lines:
			if err := c.Send([]byte(line)); err != nil {
				fmt.Fprintln(t, replyError(addr, 0, err))
				return exitFailure
			}
		case err := <-serverDone:
			if err != nil && err != io.EOF {
				fmt.Fprintf(t, "%v\n", replyError(addr, 0, err))
			}
			sayClosed(t)
			return exitOK
		case <-userDone: // Ctrl-D, Ctrl-C or the end of input
			c.Close()
			sayClosed(t)
			return exitOK
		}
	}
}

// sayClosed prints the last line of a session. The prompt goes first, as
// the terminal redraws it after every line it prints, and none must be
// left behind for the shell's own.
func sayClosed(t *term.Terminal) {
	t.SetPrompt("")
	fmt.Fprintln(t, "Connection to server closed")
}
