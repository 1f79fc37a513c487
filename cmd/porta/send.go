package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// clientConfig is what the flags shared by send and chat say.
type clientConfig struct {
	framing  framingFlag
	timeout  time.Duration
	wait     time.Duration
	maxMsg   sizeFlag
	readSize sizeFlag
	tls      *clientTLS // see tls.go
}

// addClientFlags defines the flags that send and chat share; timeoutUsage
// and waitUsage say what --timeout and --wait bound.
func addClientFlags(fs *flagSet, timeoutUsage, waitUsage string) *clientConfig {
	cfg := &clientConfig{
		framing:  framingFlag{f: frame.Line, allowed: []frame.Framing{frame.Line, frame.Length, frame.Raw}},
		maxMsg:   frame.DefaultMaxSize,
		readSize: frame.DefaultReadSize,
	}
	fs.Var(&cfg.framing, "framing", "message framing: line, len or raw; len needs a server in len framing (porta serve --framing len), raw sends no delimiter and takes one read as the reply")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, timeoutUsage)
	fs.DurationVar(&cfg.wait, "wait", 0, waitUsage)
	fs.Var(&cfg.maxMsg, "max-msg", "largest message or reply")
	fs.Var(&cfg.readSize, "read-size", "bytes one raw read takes as a reply")
	cfg.tls = addClientTLSFlags(fs)
	return cfg
}

func runSend(e *env, args []string) int {
	fs := newFlagSet("send", "ADDR [MESSAGE...]")
	cfg := addClientFlags(fs, "wait this long for the connection and for each reply",
		"retry connecting for this long until the server is up (0: try once); over UDP, send the first message again while it is refused")
	rest, code, ok := parseArgs(e, fs, args)
	if !ok {
		return code
	}
	if err := cfg.check(); err != nil {
		return usageFail(e, fs, "%v", err)
	}
	if len(rest) == 0 {
		return usageFail(e, fs, "missing ADDR")
	}
	addr, words := rest[0], rest[1:]
	if err := cfg.checkMessages(addr, words); err != nil {
		return usageFail(e, fs, "%v", err)
	}
	if code, ok := cfg.setupTLS(e, fs, addr); !ok {
		return code
	}
	var messages func() ([]byte, error)
	if len(words) > 0 {
		messages = func() ([]byte, error) {
			if len(words) == 0 {
				return nil, io.EOF
			}
			w := words[0]
			words = words[1:]
			return []byte(w), nil
		}
	} else {
		messages = stdinLines(e.stdin, int(cfg.maxMsg))
	}
	c, err := cfg.dial(addr)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFailure
	}
	defer c.Close()
	return exchangeAll(e, c, messages)
}

// errRawEmpty says why an empty message cannot be sent with raw framing
// over a stream: it would be no bytes at all, and its reply would never
// come.
var errRawEmpty = errors.New("raw framing cannot send an empty message over a stream")

// checkMessages checks the MESSAGE arguments against the framing: line
// framing cannot carry a newline, which would split a message in two, and
// raw framing over a stream cannot carry an empty message. An address
// that does not parse is left for the dial to report.
func (cfg *clientConfig) checkMessages(addr string, words []string) error {
	a, err := porta.ParseAddr(addr)
	packet := err == nil && a.IsPacket() // one datagram per message, whatever the framing
	for i, w := range words {
		switch {
		case packet:
		case cfg.framing.f == frame.Line && strings.Contains(w, "\n"):
			return fmt.Errorf("message %d contains a newline, which line framing would send as two messages; use --framing len", i+1)
		case cfg.framing.f == frame.Raw && w == "":
			return fmt.Errorf("message %d is empty: %w", i+1, errRawEmpty)
		}
	}
	return nil
}

// check validates the flags that the flag package cannot.
func (cfg *clientConfig) check() error {
	if cfg.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if cfg.wait < 0 {
		return errors.New("--wait must not be negative")
	}
	if cfg.maxMsg < 1 || int(cfg.maxMsg) > frame.MaxSizeLimit {
		return fmt.Errorf("--max-msg %s is out of range (1 to 16MiB)", cfg.maxMsg.String())
	}
	if cfg.readSize < 1 {
		return errors.New("--read-size must be at least 1")
	}
	return nil
}

// stdinLines returns a source of messages: the lines of r, without their
// line endings.
func stdinLines(r io.Reader, maxMsg int) func() ([]byte, error) {
	dec := frame.NewDecoder(r, frame.Line, maxMsg)
	return func() ([]byte, error) {
		line, err := dec.Next()
		switch {
		case err == nil, err == io.EOF:
			return line, err
		case errors.Is(err, frame.ErrTooLong):
			return nil, fmt.Errorf("porta: input line too long (limit %d bytes)", maxMsg)
		}
		return nil, fmt.Errorf("porta: reading input: %w", err)
	}
}

// Connection retry backoff for --wait: quick at first, as a server that is
// starting is usually up within milliseconds.
const (
	waitBackoffMin = 20 * time.Millisecond
	waitBackoffMax = 500 * time.Millisecond
)

// retrier paces the attempts of --wait: waitBackoffMin apart at first,
// doubling up to waitBackoffMax, with the last one at the deadline.
type retrier struct {
	deadline time.Time
	backoff  time.Duration
}

// again sleeps until the next attempt and reports whether there is one:
// false once the deadline has passed.
func (r *retrier) again() bool {
	left := time.Until(r.deadline)
	if left <= 0 {
		return false
	}
	time.Sleep(min(r.backoff, left))
	r.backoff = min(2*r.backoff, waitBackoffMax)
	return true
}

// client is a connection of send or chat, with what its exchanges need
// to know.
type client struct {
	*porta.ClientConn
	addr    string        // as the user gave it
	timeout time.Duration // --timeout
	packet  bool          // UDP: one datagram per message, and no end of stream
	retry   *retrier      // what is left of --wait, for a first UDP message
}

// dial connects to addr, retrying while nothing listens for up to --wait.
func (cfg *clientConfig) dial(addr string) (*client, error) {
	a, err := porta.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	d := porta.Dialer{Framing: cfg.framing.f, Timeout: cfg.timeout, MaxMessageSize: int(cfg.maxMsg), ReadSize: int(cfg.readSize), TLSConfig: cfg.tls.config}
	retry := &retrier{deadline: time.Now().Add(cfg.wait), backoff: waitBackoffMin}
	for {
		c, err := d.DialContext(context.Background(), addr)
		if err == nil {
			return &client{ClientConn: c, addr: addr, timeout: cfg.timeout, packet: a.IsPacket(), retry: retry}, nil
		}
		if !notYetListening(err) || !retry.again() {
			return nil, withTLSHint(err)
		}
	}
}

// notYetListening reports whether a dial error means that a server may
// simply not be up yet.
func notYetListening(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// rawStream reports whether c sends raw over a stream, where an empty
// message is no bytes at all.
func (c *client) rawStream() bool { return c.Framing() == frame.Raw && !c.packet }

// exchange sends msg and returns its reply, waiting at most the timeout.
// Over UDP, where a dial always succeeds and only the reply tells whether
// a server listens, a refused first message is sent again until --wait
// has passed.
func (c *client) exchange(msg []byte, first bool) ([]byte, error) {
	for {
		c.SetDeadline(time.Now().Add(c.timeout))
		reply, err := c.Exchange(msg)
		if err == nil || !first || !c.packet || !errors.Is(err, syscall.ECONNREFUSED) || !c.retry.again() {
			return reply, err
		}
	}
}

// closedReply is the server's last reply before it hangs up on request.
var closedReply = []byte("closed")

// exchangeAll sends each message, waits for its reply and prints it on its
// own line, until the messages run out or the server replies "closed".
func exchangeAll(e *env, c *client, messages func() ([]byte, error)) int {
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	for n := 1; ; n++ {
		msg, err := messages()
		if err == io.EOF {
			return exitOK
		}
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			return exitFailure
		}
		if len(msg) == 0 && c.rawStream() {
			// Arguments are checked before: this is a line of stdin.
			fmt.Fprintf(e.stderr, "porta: line %d of the input is empty: %v\n", n, errRawEmpty)
			return exitFailure
		}
		reply, err := c.exchange(msg, n == 1)
		if err != nil {
			fmt.Fprintln(e.stderr, c.replyError(err))
			return exitFailure
		}
		out.Write(reply)
		out.WriteByte('\n')
		if err := out.Flush(); err != nil {
			fmt.Fprintf(e.stderr, "porta: writing output: %v\n", err)
			return exitFailure
		}
		if bytes.Equal(reply, closedReply) {
			return exitOK
		}
	}
}

// replyError says in words why no reply came.
func (c *client) replyError(err error) error {
	var ne interface{ Timeout() bool }
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("porta: no reply from %s within %v", c.addr, c.timeout)
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("porta: %s closed the connection before replying", c.addr)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("porta: connection refused: nothing is listening on %s", c.addr)
	case errors.Is(err, frame.ErrTooLong) && c.Framing() == frame.Length:
		// A length prefix read from a server that frames otherwise is
		// most often too long: "hell" is 1.7 GB.
		return fmt.Errorf("porta: reply from %s too long (raise --max-msg; or the server does not speak len framing, which needs porta serve --framing len)", c.addr)
	case errors.Is(err, frame.ErrTooLong):
		return fmt.Errorf("porta: reply from %s too long (raise --max-msg)", c.addr)
	}
	return fmt.Errorf("porta: %s: %w", c.addr, err)
}
