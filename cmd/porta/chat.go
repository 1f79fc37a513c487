package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// chatPrompt is shown before each line the user types.
const chatPrompt = "> "

func runChat(e *env, args []string) int {
	fs := newFlagSet("chat", "ADDR")
	cfg := addClientFlags(fs, "wait this long for the connection and for each reply; at a terminal, for the connection, for each message to be sent and, after Ctrl-D, for the last replies",
		"retry connecting for this long until the server is up (0: try once); over UDP, send the first message again while it is refused, except at a terminal")
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
		return exchangeAll(e, c, stdinLines(e.stdin, int(cfg.maxMsg)))
	}
	return chatTerminal(e, in, c)
}

// chatTerminal runs an interactive session: a prompt with line editing and
// history, and replies printed as they arrive, above the prompt. The
// terminal is in raw mode meanwhile; it is restored before chat prints an
// error or exits, even on a stop signal.
func chatTerminal(e *env, in *os.File, c *client) int {
	fd := int(in.Fd())
	// Caught before the terminal goes raw, so that none ends chat with
	// the terminal left raw.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, stopSignals...)
	defer signal.Stop(stop)
	resize := make(chan os.Signal, 1)
	if len(resizeSignals) > 0 { // none would mean all
		signal.Notify(resize, resizeSignals...)
		defer signal.Stop(resize)
	}
	state, err := term.MakeRaw(fd)
	if err != nil {
		fmt.Fprintf(e.stderr, "porta: cannot set up the terminal: %v\n", err)
		return exitFailure
	}
	keys := &keyReader{r: in, interrupt: make(chan struct{})}
	s := &termChat{
		c:       c,
		fd:      fd,
		keys:    keys,
		stop:    stop,
		resize:  resize,
		lines:   make(chan string),
		typed:   make(chan error),
		ended:   make(chan error, 1),
		replied: make(chan struct{}, 1),
		quit:    make(chan struct{}),
	}
	s.out = &termOut{w: e.stdout}
	s.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{keys, s.out}, chatPrompt)
	err = s.run()
	term.Restore(fd, state)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFailure
	}
	return exitOK
}

// termChat is an interactive session at a terminal. Its run loop sends
// the messages and decides when the session ends; one goroutine reads
// the keyboard through the line editor and one receives and prints the
// replies, both reporting on channels.
type termChat struct {
	c      *client
	fd     int
	t      *term.Terminal
	out    *termOut // the line editor's output
	keys   *keyReader
	stop   <-chan os.Signal // stopSignals
	resize <-chan os.Signal // resizeSignals

	lines    chan string   // the lines typed
	typed    chan error    // the end of typing: io.EOF for Ctrl-D and Ctrl-C
	ended    chan error    // the end of the replies: nil after "closed", io.EOF when the server hung up
	replied  chan struct{} // a reply was printed (capacity 1: the count is in answered)
	answered atomic.Int64  // replies printed
	sent     int64         // messages sent; run's own
	quit     chan struct{} // closed when run returns, to release the goroutines
}

// run runs the session and returns nil if it ended cleanly: Ctrl-D with
// the last replies shown, Ctrl-C, a "closed" reply, or the server hanging
// up between replies. Any other end is an error to print, once the
// terminal is restored.
func (s *termChat) run() error {
	defer close(s.quit)
	s.setSize()
	fmt.Fprintf(s.t, "Connected to %s. Type a message and press Enter; Ctrl-D quits.\n", s.c.addr)
	go s.receive()
	go s.readKeys()

	var drain *time.Timer // after Ctrl-D: when to stop waiting for replies
	var drained <-chan time.Time
	for {
		select {
		case line := <-s.lines:
			if err := s.send(line); err != nil {
				return s.fail(err)
			}
		case err := <-s.typed:
			if !errors.Is(err, io.EOF) {
				return s.fail(fmt.Errorf("porta: reading the terminal: %w", err))
			}
			if s.interrupted() || s.answeredAll() {
				return s.close()
			}
			// Ctrl-D: tell the server that no more messages will come,
			// and show the replies still on their way until it hangs up.
			s.c.CloseWrite()
			drain = time.NewTimer(s.c.timeout)
			drained = drain.C
		case <-s.replied:
			if drain != nil {
				if s.answeredAll() {
					return s.close()
				}
				drain.Reset(s.c.timeout)
			}
		case <-drained:
			return s.close()
		case err := <-s.ended:
			if err != nil && err != io.EOF {
				return s.fail(s.c.replyError(err))
			}
			return s.close()
		case <-s.keys.interrupt:
			return s.close()
		case sig := <-s.stop:
			return s.fail(fmt.Errorf("porta: chat stopped by signal: %v", sig))
		case <-s.resize:
			s.setSize()
		}
	}
}

// send sends a typed line. An empty one cannot be sent with raw framing
// over a stream: chat says so, and the session goes on.
func (s *termChat) send(line string) error {
	if line == "" && s.c.rawStream() {
		fmt.Fprintf(s.t, "porta: %v; nothing sent\n", errRawEmpty)
		return nil
	}
	s.c.Conn().SetWriteDeadline(time.Now().Add(s.c.timeout))
	if err := s.c.Send([]byte(line)); err != nil {
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("porta: %s did not take a message within %v", s.c.addr, s.c.timeout)
		}
		return s.c.replyError(err)
	}
	s.sent++
	return nil
}

// answeredAll reports whether every message sent has had its reply, as
// far as chat can tell: over UDP, one datagram answers one. A stream can
// carry more replies than messages, and ends when the server hangs up.
func (s *termChat) answeredAll() bool {
	return s.c.packet && s.answered.Load() >= s.sent
}

// interrupted reports whether Ctrl-C has been typed.
func (s *termChat) interrupted() bool {
	select {
	case <-s.keys.interrupt:
		return true
	default:
		return false
	}
}

// setSize tells the line editor the terminal's size.
func (s *termChat) setSize() {
	if w, h, err := term.GetSize(s.fd); err == nil {
		s.t.SetSize(w, h)
	}
}

// close ends the session cleanly with its last line. The prompt goes
// first, as the terminal redraws it after every line it prints, and none
// must be left behind for the shell's own.
func (s *termChat) close() error {
	s.c.Close()
	s.t.SetPrompt("")
	fmt.Fprintln(s.t, "Connection to server closed")
	s.out.shut()
	return nil
}

// fail ends the session on err, erasing the prompt so that the error,
// printed once the terminal is restored, starts its own line.
func (s *termChat) fail(err error) error {
	s.c.Close()
	s.t.SetPrompt("")
	s.t.Write(nil)
	s.out.shut()
	return err
}

// termOut is the terminal's output. Once shut, it drops what the line
// editor and the replies still write: keys typed just before a Ctrl-C,
// which the line editor echoes, or a reply, must not follow the
// session's last line, nor reach the terminal once it is restored.
type termOut struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (o *termOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return len(p), nil
	}
	return o.w.Write(p)
}

// shut drops all later writes.
func (o *termOut) shut() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// receive prints the replies as they come, even while the user is
// typing, until the server hangs up, an error, or a "closed" reply.
func (s *termChat) receive() {
	for {
		reply, err := s.c.Receive()
		if err != nil {
			s.ended <- err
			return
		}
		// A copy: the reply is the decoder's buffer, whose next byte may
		// be the start of the next reply.
		s.t.Write(append(reply[:len(reply):len(reply)], '\n'))
		s.answered.Add(1)
		select {
		case s.replied <- struct{}{}:
		default: // run has yet to take the last one, and reads the count after
		}
		if bytes.Equal(reply, closedReply) {
			s.ended <- nil
			return
		}
	}
}

// readKeys reads lines through the line editor until Ctrl-D, Ctrl-C or
// an error, then goes on reading the keyboard so that a Ctrl-C is still
// seen while the last replies come.
func (s *termChat) readKeys() {
	for {
		line, err := s.t.ReadLine()
		if err != nil {
			select {
			case s.typed <- err:
			case <-s.quit:
				return
			}
			io.Copy(io.Discard, s.keys)
			return
		}
		select {
		case s.lines <- line:
		case <-s.quit:
			return
		}
	}
}

// ctrlC is the byte that Ctrl-C types at a terminal in raw mode.
const ctrlC = 3

// keyReader reads the keyboard for the line editor and watches for
// Ctrl-C, which ends a session at once. The line editor reports Ctrl-C
// and Ctrl-D alike, as the end of input.
type keyReader struct {
	r         io.Reader
	once      sync.Once
	interrupt chan struct{} // closed at the first Ctrl-C
}

func (k *keyReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if bytes.IndexByte(p[:n], ctrlC) >= 0 {
		k.once.Do(func() { close(k.interrupt) })
	}
	return n, err
}
