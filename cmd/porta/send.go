package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

// addClientFlags defines the flags that send and chat share.
func addClientFlags(fs *flagSet) *clientConfig {
	cfg := &clientConfig{
		framing:  framingFlag{f: frame.Line, allowed: []frame.Framing{frame.Line, frame.Length, frame.Raw}},
		maxMsg:   frame.DefaultMaxSize,
		readSize: frame.DefaultReadSize,
	}
	fs.Var(&cfg.framing, "framing", "message framing: line, len or raw (raw sends no delimiter and takes one read as the reply)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "wait this long for each reply, and for the connection")
	fs.DurationVar(&cfg.wait, "wait", 0, "retry connecting for this long until the server is up (0: try once)")
	fs.Var(&cfg.maxMsg, "max-msg", "largest message or reply")
	fs.Var(&cfg.readSize, "read-size", "bytes one raw read takes as a reply")
	cfg.tls = addClientTLSFlags(fs)
	return cfg
}

func runSend(e *env, args []string) int {
	fs := newFlagSet("send", "ADDR [MESSAGE...]")
	cfg := addClientFlags(fs)
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
	return exchangeAll(e, c, addr, cfg.timeout, messages)
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
		if errors.Is(err, frame.ErrTooLong) {
			return nil, fmt.Errorf("porta: input line too long (limit %d bytes)", maxMsg)
		}
		return line, err
	}
}

// Connection retry backoff for --wait: quick at first, as a server that is
// starting is usually up within milliseconds.
const (
	waitBackoffMin = 20 * time.Millisecond
	waitBackoffMax = 500 * time.Millisecond
)

// dial connects to addr, retrying while nothing listens for up to --wait.
func (cfg *clientConfig) dial(addr string) (*porta.ClientConn, error) {
	d := porta.Dialer{Framing: cfg.framing.f, Timeout: cfg.timeout, MaxMessageSize: int(cfg.maxMsg), ReadSize: int(cfg.readSize), TLSConfig: cfg.tls.config}
	deadline := time.Now().Add(cfg.wait)
	backoff := waitBackoffMin
	for {
		c, err := d.DialContext(context.Background(), addr)
		if err == nil || errors.Is(err, porta.ErrBadAddress) || !notYetListening(err) || time.Now().Add(backoff).After(deadline) {
			return c, withTLSHint(err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, waitBackoffMax)
	}
}

// notYetListening reports whether a dial error means that a server may
// simply not be up yet.
func notYetListening(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// closedReply is the server's last reply before it hangs up on request.
var closedReply = []byte("closed")

// exchangeAll sends each message, waits for its reply and prints it on its
// own line, until the messages run out or the server replies "closed".
func exchangeAll(e *env, c *porta.ClientConn, addr string, timeout time.Duration, messages func() ([]byte, error)) int {
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	for {
		msg, err := messages()
		if err == io.EOF {
			return exitOK
		}
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			return exitFailure
		}
		c.SetDeadline(time.Now().Add(timeout))
		reply, err := c.Exchange(msg)
		if err != nil {
			fmt.Fprintln(e.stderr, replyError(addr, timeout, err))
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
func replyError(addr string, timeout time.Duration, err error) error {
	var ne interface{ Timeout() bool }
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("porta: no reply from %s within %v", addr, timeout)
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("porta: %s closed the connection before replying", addr)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("porta: connection refused: nothing is listening on %s", addr)
	case errors.Is(err, frame.ErrTooLong):
		return fmt.Errorf("porta: reply from %s too long (raise --max-msg)", addr)
	}
	return fmt.Errorf("porta: %s: %w", addr, err)
}
